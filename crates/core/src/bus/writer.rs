//! The publisher's side of the log: appending, the GOP anchor, and keeping
//! the retained window inside its frame and byte bounds.
#![allow(
    clippy::indexing_slicing,
    reason = "the ring's slot indexes are checked against BLOCK_LEN where they are made; no network or file input is read here"
)]

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

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
    bounds: Bounds,
    /// The latest keyframes (newest last), offered with each anchor as its
    /// `earlier` ones.
    keyframes: VecDeque<(Weak<Block>, u64)>,
}

/// Keyframes of earlier GOPs an anchor offers.
const EARLIER_KEYFRAMES: usize = 4;

/// The policy's bounds, copied out of it once.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    ring_frames: usize,
    ring_bytes: usize,
    gop_frames: usize,
    gop_bytes: usize,
}

impl Writer {
    pub fn new(bus: Arc<Bus>) -> Self {
        let current = bus.head_block.load_full();
        let p = &bus.policy;
        let bounds = Bounds {
            ring_frames: p.ring_frames,
            ring_bytes: p.ring_bytes,
            gop_frames: p.gop_frames,
            gop_bytes: p.gop_bytes,
        };
        let retained = VecDeque::from([Retained {
            block: Arc::clone(&current),
            frames: 0,
            bytes: 0,
        }]);
        Writer {
            bus,
            current,
            index: 0,
            next_seq: 0,
            retained,
            retained_frames: 0,
            retained_bytes: 0,
            gop: None,
            bounds,
            keyframes: VecDeque::with_capacity(EARLIER_KEYFRAMES + 1),
        }
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
            self.retained.push_back(Retained {
                block: Arc::clone(&block),
                frames: 0,
                bytes: 0,
            });
            self.current = block;
            self.index = 0;
        }
        let seq = self.next_seq;
        let bytes = frame.payload.len() + ENTRY_OVERHEAD;
        let catalog_version = catalog.version();
        let entry = Entry {
            frame,
            catalog,
            catalog_version,
            ingest_us,
            anchor,
            derived: Default::default(),
        };
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

        if anchor {
            self.gop = Some(Gop {
                seq,
                frames: 1,
                bytes,
            });
            // Once per keyframe: a short vector of weak references.
            let earlier = self.keyframes.iter().rev().cloned().collect();
            self.bus.anchor.store(Some(Arc::new(Anchor {
                block: Arc::clone(&self.current),
                seq,
                earlier,
            })));
            if self.keyframes.len() == EARLIER_KEYFRAMES {
                self.keyframes.pop_front();
            }
            self.keyframes
                .push_back((Arc::downgrade(&self.current), seq));
        } else if let Some(gop) = &mut self.gop {
            gop.frames += 1;
            gop.bytes += bytes;
            if gop.frames > self.bounds.gop_frames || gop.bytes > self.bounds.gop_bytes {
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
        while self.retained.len() > 1 {
            let bytes = self.retained_bytes + self.bus.derived_bytes();
            if self.retained_frames <= self.bounds.ring_frames && bytes <= self.bounds.ring_bytes {
                break;
            }
            let Some(front) = self.retained.pop_front() else {
                break;
            };
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
                self.bus
                    .tail_seq
                    .store(new_front.block.first_seq, Ordering::Release);
            }
        }
    }

    /// Frames and bytes (payloads plus derived outputs) retained now.
    #[cfg(test)]
    pub fn retained(&self) -> (usize, usize) {
        (
            self.retained_frames,
            self.retained_bytes + self.bus.derived_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::bus::{Emitter, OutputFormat, PublishMeta, Subscription};
    use crate::catalog::TrackInfo;
    use crate::events::NoopObserver;
    use crate::frame::{Codec, TrackId};
    use crate::key::StreamKey;
    use crate::policy::StreamPolicy;

    fn bus(policy: StreamPolicy) -> Arc<Bus> {
        let (events, _) = tokio::sync::broadcast::channel(16);
        let emitter = Arc::new(Emitter {
            events,
            observer: Arc::new(NoopObserver),
        });
        let meta = PublishMeta {
            id: 1,
            user: None,
            protocol: "test",
            peer: None,
            started_wall: std::time::SystemTime::now(),
        };
        let key = StreamKey::parse("live/bytes").expect("key");
        Bus::new(key, 1, Arc::new(policy), meta, emitter)
    }

    fn catalog() -> Arc<Catalog> {
        Arc::new(Catalog::new_version(
            1,
            vec![TrackInfo::video(TrackId(1), Codec::H264, 64, 64)],
        ))
    }

    fn frame(i: u64, size: usize, gop: u64) -> (Frame, bool) {
        let key = i.is_multiple_of(gop);
        (
            Frame::video(
                TrackId(1),
                Codec::H264,
                i as i64,
                i as i64,
                key,
                Bytes::from(vec![0u8; size]),
            ),
            key,
        )
    }

    #[tokio::test]
    async fn ring_stays_within_its_byte_bound() {
        let policy = StreamPolicy {
            ring_bytes: 256 << 10,
            gop_bytes: 128 << 10,
            ..StreamPolicy::default()
        };
        let bound = policy.ring_bytes;
        let bus = bus(policy);
        let mut w = Writer::new(Arc::clone(&bus));
        let cat = catalog();
        for i in 0..2_000 {
            let (f, key) = frame(i, 4_096, 25);
            w.push(f, Arc::clone(&cat), i, key);
            let (_, bytes) = w.retained();
            assert!(bytes <= bound, "frame {i}: {bytes} retained > {bound}");
        }
        let (frames, bytes) = w.retained();
        // Bounded by bytes long before the 4096-frame bound.
        assert!(frames < 64 + bound / 4_096, "{frames} frames");
        assert!(bytes > bound / 2, "the window is used: {bytes}");
        assert!(bus.tail_seq.load(Ordering::Relaxed) > 1_500);
    }

    #[tokio::test]
    async fn derived_outputs_count_against_the_byte_bound_and_are_released() {
        let policy = StreamPolicy {
            ring_bytes: 256 << 10,
            gop_bytes: 64 << 10,
            ..StreamPolicy::default()
        };
        let bound = policy.ring_bytes;
        let bus = bus(policy);
        let format = OutputFormat::new("test-double");
        let mut w = Writer::new(Arc::clone(&bus));
        let mut sub = Subscription::attach(
            Arc::clone(&bus),
            crate::qos::SessionInfo {
                id: 2,
                protocol: "test",
                peer: None,
                user: None,
                internal: false,
                start_video_frames: 0,
            },
        );
        let cat = catalog();
        for i in 0..1_000 {
            let (f, key) = frame(i, 2_048, 10);
            w.push(f, Arc::clone(&cat), i, key);
            while let Some(Ok(ev)) = sub.try_recv() {
                if let crate::bus::Event::Frame(f) = ev {
                    // A derived output as large as the payload doubles the footprint.
                    let out = f.derived(format, |fr, _| fr.payload.clone());
                    assert_eq!(out.len(), 2_048);
                }
            }
            let (_, bytes) = w.retained();
            assert!(
                bytes <= bound + BLOCK_LEN * (2_048 + ENTRY_OVERHEAD),
                "frame {i}: {bytes}"
            );
        }
        let (frames, _) = w.retained();
        assert!(
            frames * (2 * 2_048 + ENTRY_OVERHEAD) <= bound + BLOCK_LEN * 4_096,
            "{frames} frames retained"
        );
        assert!(bus.derived_bytes() <= bound);
    }

    #[tokio::test]
    async fn a_gop_larger_than_its_bound_is_not_offered() {
        let policy = StreamPolicy {
            gop_bytes: 40 << 10,
            ..StreamPolicy::default()
        };
        let bus = bus(policy);
        let mut w = Writer::new(Arc::clone(&bus));
        let cat = catalog();
        for i in 0..9 {
            let (f, key) = frame(i, 4_096, 100);
            w.push(f, Arc::clone(&cat), i, key);
        }
        assert!(bus.anchor.load().is_some(), "9 × 4 KiB fits");
        for i in 9..12 {
            let (f, key) = frame(i, 4_096, 100);
            w.push(f, Arc::clone(&cat), i, key);
        }
        assert!(bus.anchor.load().is_none(), "12 × 4 KiB does not");
    }
}
