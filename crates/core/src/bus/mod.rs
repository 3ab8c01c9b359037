//! The stream bus: one publish generation's frames, fanned out to every
//! subscriber without locks and without copying payloads.
//!
//! # Shape
//!
//! The bus is an append-only log cut into blocks of [`BLOCK_LEN`] slots. Each
//! slot is a `OnceLock<Entry>` written exactly once by the single publisher
//! (a [`PublishSession`](crate::PublishSession) takes `&mut self` to publish,
//! so there is never a second writer) and read by any number of subscribers
//! with one acquire load: subscribers share cache lines only for reading.
//! Blocks are linked forward; the publisher keeps the retained window (bounded
//! in frames and in bytes) alive and unlinks blocks that fall out of it, so a
//! stalled subscriber pins at most the one block it is reading.
//!
//! The GOP cache is not a second copy: it is the part of the window from the
//! newest keyframe on, marked by an anchor the publisher swaps once per
//! keyframe. A subscription starts by reading that anchor and then simply
//! reads the log forward from it: replay and live are the same sequence, so
//! nothing can be lost or repeated at the seam however the publisher races.
//!
//! # Costs on the publish path
//!
//! One `Arc` store per keyframe (the anchor), one allocation and one `Arc`
//! store per [`BLOCK_LEN`] frames (a new block), plain stores for counters,
//! and the wake-up of parked subscribers (see `wait.rs`). No lock.

mod derived;
mod format;
mod start;
mod subscription;
mod wait;
mod writer;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::SystemTime;

use arc_swap::{ArcSwap, ArcSwapOption};

pub use derived::OutputFormat;
pub(crate) use derived::{DerivedOutputs, GenerationState};
pub use format::{FrameRef, SharedFrame};
pub(crate) use subscription::Raw;
pub use subscription::{Event, EventRef, RecvError, Subscription};
pub(crate) use wait::{WaitList, Waiter};
pub(crate) use writer::Writer;

use crate::catalog::Catalog;
use crate::error::EndReason;
use crate::events::{StreamEvent, StreamEventKind};
use crate::frame::Frame;
use crate::key::StreamKey;
use crate::policy::StreamPolicy;
use crate::qos::{StreamStats, SubscriberStats};
use crate::time::ClockAnchor;

/// Frames per block of the log.
pub const BLOCK_LEN: usize = 32;

/// Bytes charged per retained frame beyond its payload (entry, slot, block share).
pub(crate) const ENTRY_OVERHEAD: usize = 160;

/// One published frame and what travels with it.
#[derive(Debug)]
pub(crate) struct Entry {
    pub frame: Frame,
    /// The catalog this frame was published under, and its version (kept
    /// inline so the receive fast path need not follow the pointer).
    pub catalog: Arc<Catalog>,
    pub catalog_version: u64,
    /// Ingest time, microseconds since the generation started.
    pub ingest_us: u64,
    /// Whether a subscription may start here (the GOP's keyframe).
    pub anchor: bool,
    /// Derived outputs, made by the first consumer that asks for each format.
    pub derived: DerivedOutputs,
}

/// A block of the log.
#[derive(Debug)]
pub(crate) struct Block {
    pub first_seq: u64,
    pub slots: Box<[OnceLock<Entry>]>,
    pub next: ArcSwapOption<Block>,
    /// Set (with `next` cleared) when the block leaves the retained window.
    pub expired: AtomicBool,
    /// Bytes of derived outputs cached in this block; the top bit is set once
    /// the block expired, after which fills are no longer charged to the stream.
    pub derived_bytes: AtomicU64,
    pub meter: Arc<AtomicI64>,
}

const EXPIRED_BIT: u64 = 1 << 63;

impl Block {
    pub fn new(first_seq: u64, meter: Arc<AtomicI64>) -> Self {
        Block {
            first_seq,
            slots: (0..BLOCK_LEN).map(|_| OnceLock::new()).collect(),
            next: ArcSwapOption::empty(),
            expired: AtomicBool::new(false),
            derived_bytes: AtomicU64::new(0),
            meter,
        }
    }

    /// Charges a derived output's size to the stream while the block is retained.
    pub fn charge_derived(&self, bytes: usize) {
        let prev = self.derived_bytes.fetch_add(bytes as u64, Ordering::AcqRel);
        if prev & EXPIRED_BIT == 0 {
            self.meter.fetch_add(bytes as i64, Ordering::AcqRel);
        }
    }

    /// Marks the block expired and releases its derived bytes from the stream's charge.
    pub fn expire(&self) {
        self.expired.store(true, Ordering::Release);
        self.next.store(None);
        let prev = self.derived_bytes.fetch_or(EXPIRED_BIT, Ordering::AcqRel);
        let charged = prev & !EXPIRED_BIT;
        if charged > 0 {
            self.meter.fetch_sub(charged as i64, Ordering::AcqRel);
        }
    }
}

/// One subscriber's own reference to a block: owned frames clone this
/// handle's count, which only that subscriber's thread writes, rather than
/// the block's count, which every subscriber of the stream would write.
#[derive(Debug)]
pub(crate) struct BlockHandle(pub Arc<Block>);

/// Where a subscription may start: the newest cached GOP's keyframe.
#[derive(Debug)]
pub(crate) struct Anchor {
    pub block: Arc<Block>,
    pub seq: u64,
    /// The keyframes of a few GOPs before this one, newest first, for
    /// subscriptions that ask to start with more frames than this GOP holds
    /// (see `start.rs`). Weak: a block that left the window is not kept.
    pub earlier: Vec<(Weak<Block>, u64)>,
}

/// Sends lifecycle events to the event bus and the observer.
pub(crate) struct Emitter {
    pub events: tokio::sync::broadcast::Sender<StreamEvent>,
    pub observer: Arc<dyn crate::events::Observer>,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter").finish_non_exhaustive()
    }
}

impl Emitter {
    pub fn emit(&self, key: &StreamKey, kind: StreamEventKind) {
        let event = StreamEvent {
            key: key.clone(),
            kind,
        };
        self.observer.on_event(&event);
        // No receiver is fine: events are best-effort notifications.
        let _ = self.events.send(event);
    }
}

/// Who publishes a generation, for snapshots and the API.
#[derive(Debug, Clone)]
pub(crate) struct PublishMeta {
    /// The publisher's session id (unique within the engine).
    pub id: u64,
    /// The user it authenticated as, if any.
    pub user: Option<String>,
    pub protocol: &'static str,
    pub peer: Option<std::net::SocketAddr>,
    pub started_wall: SystemTime,
}

/// One publish generation of a stream.
#[derive(Debug)]
pub(crate) struct Bus {
    pub key: StreamKey,
    pub generation: u64,
    pub policy: Arc<StreamPolicy>,
    pub meta: PublishMeta,
    /// Ingest-time origin of this generation.
    pub started: tokio::time::Instant,
    pub head_block: ArcSwap<Block>,
    pub anchor: ArcSwapOption<Anchor>,
    /// Sequence number the next frame will get.
    pub head_seq: AtomicU64,
    /// Oldest sequence number still retained.
    pub tail_seq: AtomicU64,
    /// Ingest time of the newest frame, µs since `started`.
    pub head_time_us: AtomicU64,
    /// 0 while open, else `1 + EndReason` index.
    closed: AtomicU8,
    pub waiters: WaitList,
    pub stats: StreamStats,
    pub meter: Arc<AtomicI64>,
    pub clock_anchor: OnceLock<ClockAnchor>,
    pub catalog: ArcSwapOption<Catalog>,
    pub metadata: Mutex<std::collections::BTreeMap<String, String>>,
    pub subscribers: Mutex<Vec<Weak<SubscriberStats>>>,
    pub emitter: Arc<Emitter>,
    pub live_subscribers: AtomicUsize,
    /// Of those, the server's own readers (packagers, recorders): not
    /// counted against a reader limit.
    pub internal_subscribers: AtomicUsize,
    /// State that derived formats keep across this generation's frames.
    pub state: GenerationState,
}

impl Bus {
    pub fn new(
        key: StreamKey,
        generation: u64,
        policy: Arc<StreamPolicy>,
        meta: PublishMeta,
        emitter: Arc<Emitter>,
    ) -> Arc<Self> {
        let meter = Arc::new(AtomicI64::new(0));
        let first = Arc::new(Block::new(0, Arc::clone(&meter)));
        Arc::new(Bus {
            key,
            generation,
            policy,
            meta,
            started: tokio::time::Instant::now(),
            head_block: ArcSwap::new(first),
            anchor: ArcSwapOption::empty(),
            head_seq: AtomicU64::new(0),
            tail_seq: AtomicU64::new(0),
            head_time_us: AtomicU64::new(0),
            closed: AtomicU8::new(0),
            waiters: WaitList::default(),
            stats: StreamStats::default(),
            meter,
            clock_anchor: OnceLock::new(),
            catalog: ArcSwapOption::empty(),
            metadata: Mutex::new(Default::default()),
            subscribers: Mutex::new(Vec::new()),
            emitter,
            live_subscribers: AtomicUsize::new(0),
            internal_subscribers: AtomicUsize::new(0),
            state: GenerationState::default(),
        })
    }

    /// Microseconds of ingest time since this generation started.
    pub fn now_us(&self) -> u64 {
        tokio::time::Instant::now()
            .saturating_duration_since(self.started)
            .as_micros() as u64
    }

    /// Ends the generation. Returns whether this call ended it.
    pub fn close(&self, reason: EndReason) -> bool {
        let code = 1 + reason as u8;
        let ended = self
            .closed
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if ended {
            self.waiters.notify_all();
        }
        ended
    }

    /// Why the generation ended, if it has.
    pub fn end_reason(&self) -> Option<EndReason> {
        match self.closed.load(Ordering::Acquire) {
            0 => None,
            1 => Some(EndReason::Finished),
            2 => Some(EndReason::Superseded),
            3 => Some(EndReason::Idle),
            4 => Some(EndReason::Shutdown),
            _ => Some(EndReason::Kicked),
        }
    }

    /// Derived-output bytes charged to the stream now.
    pub fn derived_bytes(&self) -> usize {
        self.meter.load(Ordering::Acquire).max(0) as usize
    }
}
