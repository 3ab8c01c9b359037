//! The publisher's side of the log: appending, the GOP anchor, and keeping
//! the retained window inside its frame and byte bounds.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Anchor, BLOCK_LEN, Block, Bus, ENTRY_OVERHEAD, Entry};
use crate::catalog::Catalog;
use crate::frame::Frame;

#[derive(Debug)]
struct Retained {
    block: Arc<Block>,
    frames: usize,
    bytes: usize,
}

#[derive(Debug, Clone, Copy)]
struct Gop {
    seq: u64,
    frames: usize,
    bytes: usize,
}

/// Publisher-private state of one generation's log. Only the one
/// [`PublishSession`](crate::PublishSession) of the generation owns it.
#[derive(Debug)]
pub(crate) struct Writer {
    bus: Arc<Bus>,
    current: Arc<Block>,
    index: usize,
    next_seq: u64,
    retained: VecDeque<Retained>,
    retained_frames: usize,
    retained_bytes: usize,
    gop: Option<Gop>,
}

impl Writer {
    pub fn new(bus: Arc<Bus>) -> Self {
        let current = bus.head_block.load_full();
        let retained = VecDeque::from([Retained { block: Arc::clone(&current), frames: 0, bytes: 0 }]);
        Writer { bus, current, index: 0, next_seq: 0, retained, retained_frames: 0, retained_bytes: 0, gop: None }
    }

    pub fn bus(&self) -> &Arc<Bus> {
        &self.bus
    }

    /// Appends one frame (already validated and clock-corrected) and wakes subscribers.
    pub fn push(&mut self, frame: Frame, catalog: Arc<Catalog>, ingest_us: u64, anchor: bool) {
        if self.index == BLOCK_LEN {
            let block = Arc::new(Block::new(self.next_seq, Arc::clone(&self.bus.meter)));
            self.current.next.store(Some(Arc::clone(&block)));
            self.bus.head_block.store(Arc::clone(&block));
            self.retained.push_back(Retained { block: Arc::clone(&block), frames: 0, bytes: 0 });
            self.current = block;
            self.index = 0;
        }
        let seq = self.next_seq;
        let bytes = frame.payload.len() + ENTRY_OVERHEAD;
        let entry = Entry { frame, catalog, ingest_us, anchor, derived: Default::default() };
        // The only writer of this slot: it is empty.
        let _ = self.current.slots[self.index].set(entry);
        self.index += 1;
        self.next_seq += 1;

        if let Some(back) = self.retained.back_mut() {
            back.frames += 1;
            back.bytes += bytes;
        }
        self.retained_frames += 1;
        self.retained_bytes += bytes;

        let policy = &self.bus.policy;
        if anchor {
            self.gop = Some(Gop { seq, frames: 1, bytes });
            self.bus.anchor.store(Some(Arc::new(Anchor { block: Arc::clone(&self.current), seq })));
        } else if let Some(gop) = &mut self.gop {
            gop.frames += 1;
            gop.bytes += bytes;
            if gop.frames > policy.gop_frames || gop.bytes > policy.gop_bytes {
                // Too long to cache: late joiners wait for the next keyframe.
                self.gop = None;
                self.bus.anchor.store(None);
            }
        }
        self.enforce_bounds();

        self.bus.head_time_us.store(ingest_us, Ordering::Relaxed);
        self.bus.head_seq.store(seq + 1, Ordering::Release);
        self.bus.waiters.notify_all();
    }

    /// Expires whole blocks from the front until the window fits its bounds.
    /// The block being written is never expired.
    fn enforce_bounds(&mut self) {
        let policy = Arc::clone(&self.bus.policy);
        while self.retained.len() > 1 {
            let bytes = self.retained_bytes + self.bus.derived_bytes();
            if self.retained_frames <= policy.ring_frames && bytes <= policy.ring_bytes {
                break;
            }
            let Some(front) = self.retained.pop_front() else { break };
            let front_end = front.block.first_seq + front.frames as u64;
            if self.gop.is_some_and(|g| g.seq < front_end) {
                // The ring cannot hold the whole GOP: stop offering it.
                self.gop = None;
                self.bus.anchor.store(None);
            }
            self.retained_frames -= front.frames;
            self.retained_bytes -= front.bytes;
            front.block.expire();
            if let Some(new_front) = self.retained.front() {
                self.bus.tail_seq.store(new_front.block.first_seq, Ordering::Release);
            }
        }
    }

    /// Frames and bytes (payloads plus derived outputs) retained now.
    #[cfg(test)]
    pub fn retained(&self) -> (usize, usize) {
        (self.retained_frames, self.retained_bytes + self.bus.derived_bytes())
    }
}
