//! A subscriber's cursor over one generation's log.
#![allow(
    clippy::indexing_slicing,
    reason = "the ring's slot indexes are checked against BLOCK_LEN where they are made; no network or file input is read here"
)]

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::Ordering::{self, Relaxed};
use std::task::{Context, Poll};

use super::{Anchor, BLOCK_LEN, Block, BlockHandle, Bus, FrameRef, SharedFrame, Waiter};
use crate::catalog::Catalog;
use crate::error::EndReason;
use crate::events::StreamEventKind;
use crate::frame::MediaKind;
use crate::qos::{SessionInfo, SubscriberStats};
use crate::time::{rescale, timescale};

/// What a subscription yields, in order.
#[derive(Clone, Debug)]
pub enum Event {
    /// The catalog that the following frames were published under. Always
    /// the first event, and again before the first frame of every new version.
    Catalog(Arc<Catalog>),
    /// A frame.
    Frame(SharedFrame),
    /// The subscriber fell behind; this many frames were skipped and delivery
    /// resumes at the keyframe that follows.
    Skipped {
        /// Frames skipped.
        frames: u64,
    },
    /// (Followers only.) The stream was published anew: timestamps restart and
    /// a catalog follows. `generation` is the new publish's number.
    Discontinuity {
        /// The new generation.
        generation: u64,
    },
}

/// Why a subscription stopped yielding events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// The publish it belonged to ended (after every frame of it was delivered).
    #[error("stream ended: {0}")]
    Ended(EndReason),
    /// It stayed behind live past the policy and was evicted.
    #[error("subscriber evicted for falling behind")]
    Evicted,
}

// A kicked subscription ends with `Ended(EndReason::Kicked)` (see
// `Subscription::is_kicked`) rather than a variant of its own, so that
// protocol drivers' exhaustive matches on `RecvError` keep compiling.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Deliver every frame.
    Live,
    /// Discard until the next GOP start; `lag_from` is where skipping began
    /// when it is a lag (counted), `None` when the subscriber just joined.
    AwaitKeyframe { lag_from: Option<u64> },
}

/// A live view of one publish generation of a stream: the cached GOP, then
/// every later frame, until the publish ends.
///
/// A subscription that keeps up receives every frame exactly once, in
/// publish order. One that falls behind (its position left the ring, or it is
/// more than the policy's `max_lag` behind) resumes at the newest keyframe,
/// or the next one, never mid-GOP; the skip is reported as
/// [`Event::Skipped`], counted, and after `max_skips` within `skip_window`
/// the subscription is evicted.
///
/// Two ways to receive: [`recv`](Self::recv) yields owned events (a
/// [`SharedFrame`] costs one reference-count increment), and
/// [`recv_ref`](Self::recv_ref) lends the frame straight out of the log,
/// touching no shared counter at all — the cheapest way for a consumer that
/// serializes the frame (or its [derived output](FrameRef::derived)) before
/// asking for the next one.
#[derive(Debug)]
pub struct Subscription {
    bus: Arc<Bus>,
    block: Arc<Block>,
    seq: u64,
    /// Every condition of the fast path holds: live mode, nothing pending,
    /// first frame delivered, not evicted. (Audio held back by the start
    /// floor is checked per frame.)
    fast: bool,
    mode: Mode,
    catalog_version: u64,
    /// A frame of `block` held back while its catalog or a skip is yielded first.
    pending: Option<usize>,
    /// This subscriber's own reference to `block`, cloned into each owned
    /// [`SharedFrame`]: its count lives on a line no other subscriber writes,
    /// so owned receives do not contend on the block's shared count.
    handle: Option<Arc<BlockHandle>>,
    audio_floor_us: Option<i64>,
    waiter: Arc<Waiter>,
    stats: Arc<SubscriberStats>,
    skips: VecDeque<tokio::time::Instant>,
    joined: tokio::time::Instant,
    first_delivered: bool,
    delivered: u64,
    evicted: bool,
    /// Started at an earlier GOP than the newest (see `start.rs`): `max_lag`
    /// does not apply before this sequence number, the newest keyframe at
    /// the start, so the replay is not skipped forward.
    replay_until: u64,
}

/// What the receive machinery produces before it is turned into an owned or
/// a borrowed event.
pub(crate) enum Raw {
    Catalog(Arc<Catalog>),
    /// A frame at this index of the subscription's current block.
    Frame(usize),
    Skipped(u64),
}

/// An event lent by [`Subscription::recv_ref`].
#[derive(Debug)]
pub enum EventRef<'a> {
    /// The catalog of the frames that follow (see [`Event::Catalog`]).
    Catalog(Arc<Catalog>),
    /// A frame, borrowed from the log.
    Frame(FrameRef<'a>),
    /// Frames were skipped (see [`Event::Skipped`]).
    Skipped {
        /// Frames skipped.
        frames: u64,
    },
    /// (Followers only.) The stream was published anew (see
    /// [`Event::Discontinuity`]).
    Discontinuity {
        /// The new generation.
        generation: u64,
    },
}

/// Prunes dead entries from a stream's subscriber list once it is this many
/// times larger than the live count, so attaching stays O(1) amortized.
const PRUNE_FACTOR: usize = 2;

/// The delivered-frames counter is published every this many frames.
const STATS_EVERY: u64 = 8 * BLOCK_LEN as u64;

impl Subscription {
    pub(crate) fn attach(bus: Arc<Bus>, info: SessionInfo) -> Self {
        let (id, protocol) = (info.id, info.protocol);
        if info.internal {
            bus.internal_subscribers.fetch_add(1, Relaxed);
        }
        let waiter = Arc::new(Waiter::default());
        let stats = Arc::new(SubscriberStats::new(info, Arc::clone(&waiter)));
        let live = bus.live_subscribers.fetch_add(1, Relaxed) + 1;
        {
            let mut subs = bus.subscribers.lock().unwrap_or_else(|p| p.into_inner());
            if subs.len() >= PRUNE_FACTOR * live.max(16) {
                subs.retain(|w| w.strong_count() > 0);
            }
            subs.push(Arc::downgrade(&stats));
        }
        bus.stats.subscribers.store(live, Relaxed);
        bus.stats.subscribers_total.fetch_add(1, Relaxed);
        bus.emitter
            .emit(&bus.key, StreamEventKind::SubscriberJoined { id, protocol });

        let start_video = stats.info.start_video_frames;
        let mut replay_until = 0;
        let mut start = |anchor: &super::Anchor| {
            let (block, seq) = super::start::start_point(&bus, anchor, start_video);
            replay_until = anchor.seq;
            (block, seq, Mode::Live)
        };
        let (block, seq, mode) = match bus.anchor.load_full() {
            Some(anchor) => start(&anchor),
            None => {
                let head = bus.head_block.load_full();
                // A keyframe may have landed between the two loads.
                match bus.anchor.load_full() {
                    Some(anchor) => start(&anchor),
                    None => {
                        let seq = head.first_seq;
                        (head, seq, Mode::AwaitKeyframe { lag_from: None })
                    }
                }
            }
        };
        Subscription {
            bus,
            block,
            seq,
            fast: false,
            mode,
            catalog_version: 0,
            pending: None,
            handle: None,
            audio_floor_us: None,
            waiter,
            stats,
            skips: VecDeque::new(),
            joined: tokio::time::Instant::now(),
            first_delivered: false,
            delivered: 0,
            evicted: false,
            replay_until,
        }
    }

    /// This subscriber's id (unique within the engine).
    pub fn id(&self) -> u64 {
        self.stats.info.id
    }

    /// Counts `bytes` written to the peer for this subscription (after the
    /// driver's write: the per-session and per-stream "bytes out"). A
    /// relaxed add on this subscriber's own counter: cheap enough to call
    /// once per write.
    #[inline]
    pub fn record_sent(&self, bytes: usize) {
        self.stats.bytes_sent.fetch_add(bytes as u64, Relaxed);
    }

    /// Whether an operator kicked this subscription
    /// ([`Engine::kick`](crate::Engine::kick)): it then ends with
    /// [`RecvError::Ended`]`(`[`EndReason::Kicked`]`)` while the stream goes on
    /// (the same reason for the end of a kicked publisher's stream tells the
    /// two apart only through this).
    pub fn is_kicked(&self) -> bool {
        self.stats.is_kicked()
    }

    /// The publish generation this subscription reads.
    pub fn generation(&self) -> u64 {
        self.bus.generation
    }

    /// State of type `T` shared by every consumer of this publish generation,
    /// made with `T::default()` by the first that asks and dropped with the
    /// generation: where a derived format keeps what runs on across frames
    /// (a muxer's continuity counters), with nothing kept per process.
    pub fn generation_state<T: Default + Send + Sync + 'static>(&self) -> std::sync::Arc<T> {
        self.bus.state.get::<T>()
    }

    /// The publish's media-time ↔ wall-clock anchor, once its first frame arrived
    /// (for `PROGRAM-DATE-TIME`, `availabilityStartTime`, latency figures).
    pub fn clock_anchor(&self) -> Option<crate::time::ClockAnchor> {
        self.bus.clock_anchor.get().copied()
    }

    /// The next event; `Err` once the publish ended (after its last frame) or
    /// the subscriber was evicted.
    #[inline]
    pub async fn recv(&mut self) -> Result<Event, RecvError> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next event, lending the frame out of the log: no reference count
    /// is touched. Call [`FrameRef::to_shared`] to keep a frame past the next receive.
    #[inline]
    pub async fn recv_ref(&mut self) -> Result<EventRef<'_>, RecvError> {
        let raw = poll_fn(|cx| self.poll_raw(cx)).await?;
        Ok(self.lend(raw))
    }

    /// A raw event as a borrowed one.
    #[inline]
    pub(crate) fn lend(&self, raw: Raw) -> EventRef<'_> {
        match raw {
            Raw::Frame(index) => EventRef::Frame(FrameRef::new(&self.block, index)),
            Raw::Catalog(catalog) => EventRef::Catalog(catalog),
            Raw::Skipped(frames) => EventRef::Skipped { frames },
        }
    }

    /// The next event if one is ready now, lending the frame (see [`recv_ref`](Self::recv_ref)).
    pub fn try_recv_ref(&mut self) -> Option<Result<EventRef<'_>, RecvError>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.poll_raw(&mut cx) {
            Poll::Ready(Ok(raw)) => Some(Ok(self.lend(raw))),
            Poll::Ready(Err(e)) => Some(Err(e)),
            Poll::Pending => None,
        }
    }

    /// The next event if one is ready now, without waiting.
    pub fn try_recv(&mut self) -> Option<Result<Event, RecvError>> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        match self.poll_recv(&mut cx) {
            Poll::Ready(r) => Some(r),
            Poll::Pending => None,
        }
    }

    /// Polls for the next event.
    #[inline]
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Event, RecvError>> {
        let raw = match self.poll_raw(cx) {
            Poll::Ready(Ok(raw)) => raw,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        Poll::Ready(Ok(self.own(raw)))
    }

    /// A raw event as an owned one.
    #[inline]
    pub(crate) fn own(&mut self, raw: Raw) -> Event {
        match raw {
            Raw::Frame(index) => Event::Frame(SharedFrame::new(self.handle(), index)),
            Raw::Catalog(catalog) => Event::Catalog(catalog),
            Raw::Skipped(frames) => Event::Skipped { frames },
        }
    }

    /// This subscriber's handle to its current block, made anew when the block changed.
    #[inline]
    fn handle(&mut self) -> Arc<BlockHandle> {
        match &self.handle {
            Some(h) if Arc::ptr_eq(&h.0, &self.block) => Arc::clone(h),
            _ => {
                let h = Arc::new(BlockHandle(Arc::clone(&self.block)));
                self.handle = Some(Arc::clone(&h));
                h
            }
        }
    }

    /// The next frame of the current block when nothing special applies;
    /// everything else goes to [`poll_slow`](Self::poll_slow).
    #[inline]
    pub(crate) fn poll_raw(&mut self, cx: &mut Context<'_>) -> Poll<Result<Raw, RecvError>> {
        // The kick flag lives on this subscriber's own line: a plain load.
        if self.fast && !self.stats.kicked.load(Relaxed) {
            let index = self.seq.wrapping_sub(self.block.first_seq) as usize;
            if index < BLOCK_LEN
                && !self.block.expired.load(Ordering::Acquire)
                && let Some(entry) = self.block.slots[index].get()
            {
                let held_back =
                    self.audio_floor_us.is_some() && entry.frame.kind() == MediaKind::Audio;
                if entry.catalog_version == self.catalog_version && !held_back {
                    self.seq += 1;
                    self.delivered += 1;
                    return Poll::Ready(Ok(Raw::Frame(index)));
                }
            }
        }
        self.poll_slow(cx)
    }

    fn poll_slow(&mut self, cx: &mut Context<'_>) -> Poll<Result<Raw, RecvError>> {
        let result = self.poll_events(cx);
        self.fast = self.mode == Mode::Live
            && self.pending.is_none()
            && self.first_delivered
            && !self.evicted;
        result
    }

    fn poll_events(&mut self, cx: &mut Context<'_>) -> Poll<Result<Raw, RecvError>> {
        if self.stats.is_kicked() {
            return Poll::Ready(Err(self.kicked()));
        }
        if self.evicted {
            return Poll::Ready(Err(RecvError::Evicted));
        }
        if let Some(index) = self.pending.take() {
            return Poll::Ready(Ok(self.yield_frame(index)));
        }
        if let Some(event) = self.step() {
            return Poll::Ready(event);
        }
        self.bus.waiters.register(&self.waiter, cx.waker());
        // A kick between the check above and parking woke nobody: look again.
        if self.stats.is_kicked() {
            return Poll::Ready(Err(self.kicked()));
        }
        if let Some(event) = self.step() {
            return Poll::Ready(event);
        }
        if let Some(reason) = self.bus.end_reason() {
            // Everything published before the end is visible now.
            if let Some(event) = self.step() {
                return Poll::Ready(event);
            }
            self.flush_stats();
            return Poll::Ready(Err(RecvError::Ended(reason)));
        }
        Poll::Pending
    }

    /// The end of a kicked subscription.
    #[cold]
    fn kicked(&mut self) -> RecvError {
        self.pending = None;
        self.flush_stats();
        RecvError::Ended(EndReason::Kicked)
    }

    /// Advances over the log until there is something to yield, or nothing yet.
    fn step(&mut self) -> Option<Result<Raw, RecvError>> {
        loop {
            // The block left the ring while we were in it: its frames are
            // still readable, but the subscriber is behind by a whole ring.
            if self.mode == Mode::Live && self.block.expired.load(Ordering::Acquire) {
                self.fall_behind();
                continue;
            }
            let index = (self.seq - self.block.first_seq) as usize;
            if index >= BLOCK_LEN {
                let next = self.block.next.load_full();
                match next {
                    Some(next) => {
                        self.block = next;
                        if self.block.first_seq.is_multiple_of(STATS_EVERY) {
                            self.flush_stats();
                        }
                        if self.mode == Mode::Live && self.is_behind() {
                            self.fall_behind();
                        }
                        continue;
                    }
                    None if self.block.expired.load(Ordering::Acquire) => {
                        self.fall_behind();
                        continue;
                    }
                    None => return None,
                }
            }
            let entry = self.block.slots[index].get()?;
            self.seq += 1;
            if let Mode::AwaitKeyframe { lag_from } = self.mode {
                if !entry.anchor {
                    continue;
                }
                self.mode = Mode::Live;
                if let Some(from) = lag_from {
                    let skipped = self.seq - 1 - from;
                    self.start_gop(index);
                    self.pending = Some(index);
                    if self.record_skip(skipped) {
                        return Some(Err(RecvError::Evicted));
                    }
                    return Some(Ok(Raw::Skipped(skipped)));
                }
            }
            if entry.anchor && !self.first_delivered {
                self.start_gop(index);
            }
            if let Some(floor) = self.audio_floor_us {
                let frame = FrameRef::new(&self.block, index);
                if frame.kind() == MediaKind::Audio {
                    if track_time_us(&frame) < floor {
                        continue;
                    }
                    self.audio_floor_us = None;
                }
            }
            return Some(Ok(self.yield_frame(index)));
        }
    }

    /// The frame, preceded by its catalog if that is new to this subscriber.
    fn yield_frame(&mut self, index: usize) -> Raw {
        let frame = FrameRef::new(&self.block, index);
        if frame.entry().catalog_version != self.catalog_version {
            self.catalog_version = frame.entry().catalog_version;
            let catalog = Arc::clone(frame.catalog());
            self.pending = Some(index);
            return Raw::Catalog(catalog);
        }
        if !self.first_delivered {
            self.first_delivered = true;
            let waited = tokio::time::Instant::now().saturating_duration_since(self.joined);
            self.stats
                .join_time_us
                .store(waited.as_micros().max(1) as u64, Relaxed);
        }
        self.delivered += 1;
        Raw::Frame(index)
    }

    /// A subscription (re)starts at a GOP's keyframe: audio from before the
    /// keyframe's presentation time is not delivered.
    fn start_gop(&mut self, index: usize) {
        let keyframe = FrameRef::new(&self.block, index);
        // Only a stream with audio has audio to hold back.
        self.audio_floor_us = (keyframe.kind() == MediaKind::Video
            && keyframe.catalog().audio().is_some())
        .then(|| track_time_us(&keyframe));
    }

    /// Whether the cursor has left the ring or is further behind live than the policy allows.
    fn is_behind(&self) -> bool {
        if self.seq < self.bus.tail_seq.load(Ordering::Acquire) {
            return true;
        }
        let index = (self.seq - self.block.first_seq) as usize;
        let Some(entry) = self.block.slots.get(index).and_then(|s| s.get()) else {
            return false;
        };
        let head = self.bus.head_time_us.load(Relaxed);
        let lag = head.saturating_sub(entry.ingest_us);
        self.stats.lag_us.store(lag, Relaxed);
        self.stats.lag.observe(lag);
        lag > self.bus.policy.max_lag.as_micros() as u64 && self.seq >= self.replay_until
    }

    /// Jumps to the newest cached keyframe if it is ahead, else discards until the next one.
    fn fall_behind(&mut self) {
        let from = self.seq;
        let anchor: Option<Arc<Anchor>> = self.bus.anchor.load_full();
        match anchor {
            Some(a) if a.seq > self.seq => {
                self.block = Arc::clone(&a.block);
                self.seq = a.seq;
            }
            _ if self.block.expired.load(Ordering::Acquire) => {
                let head = self.bus.head_block.load_full();
                if head.first_seq > self.seq {
                    self.seq = head.first_seq;
                    self.block = head;
                }
            }
            _ => {}
        }
        let lag_from = match self.mode {
            Mode::AwaitKeyframe { lag_from: Some(f) } => f,
            _ => from,
        };
        self.mode = Mode::AwaitKeyframe {
            lag_from: Some(lag_from),
        };
    }

    /// Counts a skip; returns whether the subscriber is now evicted.
    fn record_skip(&mut self, skipped: u64) -> bool {
        let id = self.stats.info.id;
        self.stats.skipped.fetch_add(skipped, Relaxed);
        self.stats.lag_events.fetch_add(1, Relaxed);
        self.bus.stats.lag_events.fetch_add(1, Relaxed);
        self.bus.stats.skipped_frames.fetch_add(skipped, Relaxed);
        self.bus.emitter.emit(
            &self.bus.key,
            StreamEventKind::SubscriberLagged { id, skipped },
        );
        let now = tokio::time::Instant::now();
        let window = self.bus.policy.skip_window;
        while self
            .skips
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > window)
        {
            self.skips.pop_front();
        }
        self.skips.push_back(now);
        if self.skips.len() > self.bus.policy.max_skips as usize {
            self.evicted = true;
            self.pending = None;
            self.stats.evicted.store(true, Relaxed);
            self.bus.stats.evictions.fetch_add(1, Relaxed);
            self.bus
                .emitter
                .emit(&self.bus.key, StreamEventKind::SubscriberEvicted { id });
            tracing::info!(stream = %self.bus.key, subscriber = id, "subscriber evicted: fell behind {} times within {:?}", self.skips.len(), window);
        }
        self.evicted
    }

    fn flush_stats(&self) {
        self.stats.delivered.store(self.delivered, Relaxed);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.flush_stats();
        self.bus.stats.reader_left(&self.stats);
        if self.stats.info.internal {
            self.bus.internal_subscribers.fetch_sub(1, Relaxed);
        }
        let left = self.bus.live_subscribers.fetch_sub(1, Relaxed) - 1;
        self.bus.stats.subscribers.store(left, Relaxed);
        self.bus.emitter.emit(
            &self.bus.key,
            StreamEventKind::SubscriberLeft {
                id: self.stats.info.id,
            },
        );
    }
}

/// A frame's presentation time in microseconds, by its own track's timescale.
fn track_time_us(frame: &FrameRef<'_>) -> i64 {
    let scale = frame
        .catalog()
        .track(frame.track)
        .map_or(timescale::MICROS, |t| t.timescale);
    rescale(frame.pts, scale, timescale::MICROS)
}
