//! A stream name's slot: it outlives each publish and numbers its generations.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwapOption;
use tokio::sync::watch;

use crate::bus::{Bus, Emitter};
use crate::error::EndReason;
use crate::events::StreamEventKind;
use crate::key::StreamKey;

/// The live generation of one stream name, if any, and its history.
#[derive(Debug)]
pub(crate) struct StreamSlot {
    pub key: StreamKey,
    live: ArcSwapOption<Bus>,
    /// The newest generation, ended or not: a follower that was parked while a
    /// short publish came and went still reads what it retained.
    latest: ArcSwapOption<Bus>,
    generations: AtomicU64,
    /// The live generation's number, 0 while none; followers wait on it.
    changes: watch::Sender<u64>,
    /// When the last generation ended (for the grace period and clean-up).
    ended_at: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl StreamSlot {
    pub fn new(key: StreamKey) -> Self {
        StreamSlot {
            key,
            live: ArcSwapOption::empty(),
            latest: ArcSwapOption::empty(),
            generations: AtomicU64::new(0),
            changes: watch::channel(0).0,
            ended_at: std::sync::Mutex::new(None),
        }
    }

    /// The live, not yet ended generation.
    pub fn live(&self) -> Option<Arc<Bus>> {
        self.live.load_full().filter(|b| b.end_reason().is_none())
    }

    /// The newest generation, even if it has ended.
    pub fn latest(&self) -> Option<Arc<Bus>> {
        self.latest.load_full()
    }

    pub fn next_generation(&self) -> u64 {
        self.generations.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Installs a new live generation. Transitions are serialized by the
    /// `ended_at` lock (a control path, never the publish path) so the live
    /// pointer and the generation followers watch always agree.
    pub fn set_live(&self, bus: Arc<Bus>) {
        let _guard = self.ended_at.lock().unwrap_or_else(|p| p.into_inner());
        let generation = bus.generation;
        self.latest.store(Some(Arc::clone(&bus)));
        self.live.store(Some(bus));
        self.changes.send_replace(generation);
    }

    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn ended_at(&self) -> Option<tokio::time::Instant> {
        *self.ended_at.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends `bus` if it is still this slot's live generation (a successor is
    /// never touched). Returns whether this call ended it.
    pub fn end(&self, bus: &Arc<Bus>, reason: EndReason, emitter: &Emitter) -> bool {
        let ended = bus.close(reason);
        {
            let mut ended_at = self.ended_at.lock().unwrap_or_else(|p| p.into_inner());
            if self
                .live
                .load()
                .as_ref()
                .is_some_and(|c| Arc::ptr_eq(c, bus))
            {
                self.live.store(None);
                *ended_at = Some(tokio::time::Instant::now());
                self.changes.send_replace(0);
            }
        }
        if ended {
            tracing::info!(stream = %self.key, generation = bus.generation, "publish ended: {reason}");
            emitter.emit(
                &self.key,
                StreamEventKind::PublishEnded {
                    generation: bus.generation,
                    reason,
                },
            );
        }
        ended
    }
}
