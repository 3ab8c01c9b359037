//! Quality-of-service figures: per stream (written only by its publisher, as
//! plain stores of publisher-private counters) and per subscriber (written
//! only by that subscriber, plus the one byte counter its protocol driver
//! adds to). Readers take snapshots; nothing on a frame's path is a lock.
//!
//! The totals of readers that left a generation are kept per reader protocol
//! (under a lock taken once per departure), so the per-stream, per-protocol
//! counters of [`StreamMetrics`] only ever grow while the generation lives.
#![allow(
    clippy::indexing_slicing,
    reason = "fixed arrays indexed by bucket() and a modulo of their length, and a list index just found or pushed; counters of the server's own, no input is parsed here"
)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::bus::Waiter;
use crate::key::StreamKey;

/// Who a session is: its engine-unique id, protocol, address and user.
#[derive(Clone, Debug)]
pub(crate) struct SessionInfo {
    pub id: u64,
    pub protocol: &'static str,
    pub peer: Option<SocketAddr>,
    pub user: Option<String>,
    /// A reader inside the server (a packager, a recorder): not listed with
    /// the sessions, whose players it serves are.
    pub internal: bool,
    /// Video frames the reader asks to start with (see
    /// [`Request::start_video_frames`](crate::Request::start_video_frames)).
    pub start_video_frames: usize,
}

/// Counters of one publish generation.
#[derive(Debug, Default)]
pub(crate) struct StreamStats {
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    pub keyframes: AtomicU64,
    pub fps_milli: AtomicU64,
    pub bitrate_bps: AtomicU64,
    pub ts_repaired: AtomicU64,
    pub ts_rebased: AtomicU64,
    pub subscribers: AtomicUsize,
    pub subscribers_total: AtomicU64,
    pub lag_events: AtomicU64,
    pub skipped_frames: AtomicU64,
    pub evictions: AtomicU64,
    /// Totals of the readers that left this generation, per protocol.
    pub departed: Mutex<Vec<ReaderMetrics>>,
}

/// A point-in-time copy of a stream's QoS.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct QosSnapshot {
    /// Frames published (all tracks).
    pub frames: u64,
    /// Payload bytes published.
    pub bytes: u64,
    /// Video keyframes published.
    pub keyframes: u64,
    /// Video frames per second over the sliding window.
    pub fps: f64,
    /// Bits per second (all tracks) over the sliding window.
    pub bitrate_bps: u64,
    /// Timestamps nudged forward to stay monotonic.
    pub timestamps_repaired: u64,
    /// Timestamp jumps rebased as discontinuities.
    pub timestamps_rebased: u64,
    /// Subscribers now.
    pub subscribers: usize,
    /// Subscribers ever joined.
    pub subscribers_total: u64,
    /// Times a subscriber fell behind and skipped to a keyframe.
    pub lag_events: u64,
    /// Frames subscribers skipped.
    pub skipped_frames: u64,
    /// Subscribers evicted for staying behind.
    pub evictions: u64,
}

impl StreamStats {
    pub fn snapshot(&self) -> QosSnapshot {
        QosSnapshot {
            frames: self.frames.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            keyframes: self.keyframes.load(Relaxed),
            fps: self.fps_milli.load(Relaxed) as f64 / 1000.0,
            bitrate_bps: self.bitrate_bps.load(Relaxed),
            timestamps_repaired: self.ts_repaired.load(Relaxed),
            timestamps_rebased: self.ts_rebased.load(Relaxed),
            subscribers: self.subscribers.load(Relaxed),
            subscribers_total: self.subscribers_total.load(Relaxed),
            lag_events: self.lag_events.load(Relaxed),
            skipped_frames: self.skipped_frames.load(Relaxed),
            evictions: self.evictions.load(Relaxed),
        }
    }
}

/// Publisher-private counters behind [`StreamStats`]: the publisher counts in
/// plain integers and publishes with stores, so the hot path has no
/// read-modify-write on a shared line.
#[derive(Debug, Default)]
pub(crate) struct PublishCounters {
    frames: u64,
    bytes: u64,
    keyframes: u64,
    repaired: u64,
    rebased: u64,
    window: RateWindow,
}

impl PublishCounters {
    pub fn record(
        &mut self,
        stats: &StreamStats,
        now_us: u64,
        bytes: usize,
        video: bool,
        keyframe: bool,
    ) {
        self.frames += 1;
        self.bytes += bytes as u64;
        stats.frames.store(self.frames, Relaxed);
        stats.bytes.store(self.bytes, Relaxed);
        if video && keyframe {
            self.keyframes += 1;
            stats.keyframes.store(self.keyframes, Relaxed);
        }
        if let Some((fps_milli, bps)) = self.window.record(now_us, bytes as u64, video) {
            stats.fps_milli.store(fps_milli, Relaxed);
            stats.bitrate_bps.store(bps, Relaxed);
        }
    }

    pub fn repaired(&mut self, stats: &StreamStats) {
        self.repaired += 1;
        stats.ts_repaired.store(self.repaired, Relaxed);
    }

    pub fn rebased(&mut self, stats: &StreamStats) {
        self.rebased += 1;
        stats.ts_rebased.store(self.rebased, Relaxed);
    }
}

const WINDOW_SECS: usize = 5;

/// Frames and bytes per second over the last few whole seconds of ingest time.
#[derive(Debug, Default)]
pub(crate) struct RateWindow {
    /// (second, video frames, bytes) per slot, indexed by second modulo the window.
    slots: [(u64, u64, u64); WINDOW_SECS],
    first_second: Option<u64>,
    current: u64,
}

impl RateWindow {
    /// Counts one frame; when a second rolls over, returns the new
    /// (fps × 1000, bits per second) over the completed seconds in the window.
    pub fn record(&mut self, now_us: u64, bytes: u64, video: bool) -> Option<(u64, u64)> {
        let second = now_us / 1_000_000;
        let first = *self.first_second.get_or_insert(second);
        let mut rolled = None;
        if second != self.current {
            // Seconds in the window that have completed: (current - WINDOW, current].
            let end = second;
            let start = end.saturating_sub(WINDOW_SECS as u64).max(first);
            if let Some(span) = end.checked_sub(start).filter(|s| *s > 0) {
                let (mut frames, mut total) = (0, 0);
                for &(s, f, b) in &self.slots {
                    if s >= start && s < end {
                        frames += f;
                        total += b;
                    }
                }
                rolled = Some((frames * 1000 / span, total * 8 / span));
            }
            self.current = second;
        }
        let slot = &mut self.slots[(second % WINDOW_SECS as u64) as usize];
        if slot.0 != second {
            *slot = (second, 0, 0);
        }
        slot.1 += u64::from(video);
        slot.2 += bytes;
        rolled
    }
}

/// Counters of one subscriber, written only by it (the byte counter also by
/// its protocol driver, the kick flag once by whoever kicks it).
#[derive(Debug)]
pub(crate) struct SubscriberStats {
    pub info: SessionInfo,
    pub joined_unix_ms: u64,
    pub join_time_us: AtomicU64,
    pub delivered: AtomicU64,
    pub skipped: AtomicU64,
    pub lag_events: AtomicU64,
    pub lag_us: AtomicU64,
    pub evicted: AtomicBool,
    /// Bytes the protocol driver wrote for it ([`Subscription::record_sent`](crate::Subscription::record_sent)).
    pub bytes_sent: AtomicU64,
    /// Lag samples, one per block of the log it reads while live.
    pub lag: Histogram,
    /// Set once by [`Engine::kick`](crate::Engine::kick).
    pub kicked: AtomicBool,
    /// Set (under the stream's `departed` lock) when its totals moved there.
    pub left: AtomicBool,
    /// The subscription's parking spot, to wake it when kicked.
    pub waiter: Arc<Waiter>,
}

/// A point-in-time copy of one subscriber's QoS.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SubscriberSnapshot {
    /// Its id, unique within the engine.
    pub id: u64,
    /// The protocol it reads with.
    pub protocol: &'static str,
    /// Its address, where the protocol has one.
    pub peer: Option<SocketAddr>,
    /// The user it authenticated as, if any.
    pub user: Option<String>,
    /// When it joined (Unix milliseconds).
    pub joined_unix_ms: u64,
    /// Time from subscribing to its first frame, in microseconds (0 until then).
    pub join_time_us: u64,
    /// Frames delivered (published every 256 frames and when it ends).
    pub delivered: u64,
    /// Bytes its protocol driver reported writing to the peer.
    pub bytes_sent: u64,
    /// Frames skipped after falling behind.
    pub skipped: u64,
    /// Times it fell behind.
    pub lag_events: u64,
    /// How far behind live it was at its last check, in microseconds of ingest time.
    pub lag_us: u64,
    /// Whether it was evicted.
    pub evicted: bool,
}

impl SubscriberStats {
    pub fn new(info: SessionInfo, waiter: Arc<Waiter>) -> Self {
        SubscriberStats {
            info,
            joined_unix_ms: crate::engine::unix_ms(std::time::SystemTime::now()),
            join_time_us: Default::default(),
            delivered: Default::default(),
            skipped: Default::default(),
            lag_events: Default::default(),
            lag_us: Default::default(),
            evicted: Default::default(),
            bytes_sent: Default::default(),
            lag: Histogram::default(),
            kicked: Default::default(),
            left: Default::default(),
            waiter,
        }
    }

    pub fn snapshot(&self) -> SubscriberSnapshot {
        SubscriberSnapshot {
            id: self.info.id,
            protocol: self.info.protocol,
            peer: self.info.peer,
            user: self.info.user.clone(),
            joined_unix_ms: self.joined_unix_ms,
            join_time_us: self.join_time_us.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
            skipped: self.skipped.load(Relaxed),
            lag_events: self.lag_events.load(Relaxed),
            lag_us: self.lag_us.load(Relaxed),
            evicted: self.evicted.load(Relaxed),
        }
    }

    /// Ends the subscription at its next receive and wakes it if it is
    /// parked. Returns whether this call kicked it.
    pub fn kick(&self) -> bool {
        let first = !self.kicked.swap(true, Relaxed);
        // The subscription looks at the flag again after parking (see
        // `poll_events`), so a kick racing with its parking is not lost.
        self.waiter.wake();
        first
    }

    pub fn is_kicked(&self) -> bool {
        self.kicked.load(Relaxed)
    }

    /// Adds this subscriber's figures to `m` (a live one counts as a reader now).
    fn add_to(&self, m: &mut ReaderMetrics, live: bool) {
        if live && !self.is_kicked() {
            m.readers += 1;
        }
        m.bytes_out += self.bytes_sent.load(Relaxed);
        m.frames_out += self.delivered.load(Relaxed);
        m.skips += self.lag_events.load(Relaxed);
        m.skipped_frames += self.skipped.load(Relaxed);
        m.evictions += u64::from(self.evicted.load(Relaxed));
        m.kicks += u64::from(self.is_kicked());
        self.lag.add_to(&mut m.lag);
        let join = self.join_time_us.load(Relaxed);
        if join > 0 {
            m.join_time.observe(join);
        }
    }
}

/// The entry of `protocol` in a per-protocol list, made if missing.
fn entry<'a>(list: &'a mut Vec<ReaderMetrics>, protocol: &'static str) -> &'a mut ReaderMetrics {
    let at = match list.iter().position(|m| m.protocol == protocol) {
        Some(at) => at,
        None => {
            list.push(ReaderMetrics::new(protocol));
            list.len() - 1
        }
    };
    &mut list[at]
}

impl StreamStats {
    /// Moves a departing subscriber's totals into the per-protocol totals of
    /// the generation (once; the metrics stop reading it live from then on).
    pub fn reader_left(&self, sub: &SubscriberStats) {
        let mut departed = self.departed.lock().unwrap_or_else(|p| p.into_inner());
        if sub.left.swap(true, Relaxed) {
            return;
        }
        sub.add_to(entry(&mut departed, sub.info.protocol), false);
    }

    /// The per-protocol reader totals of the generation: those that left plus
    /// the `live` ones.
    pub fn reader_metrics(
        &self,
        live: &Mutex<Vec<std::sync::Weak<SubscriberStats>>>,
    ) -> Vec<ReaderMetrics> {
        // Holding `departed` while reading the live list: a subscriber is
        // counted either there or here, never twice and never not at all.
        let departed = self.departed.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = departed.clone();
        let subs = live.lock().unwrap_or_else(|p| p.into_inner());
        for sub in subs.iter().filter_map(std::sync::Weak::upgrade) {
            if !sub.left.load(Relaxed) {
                sub.add_to(entry(&mut out, sub.info.protocol), true);
            }
        }
        drop(subs);
        drop(departed);
        out.sort_by(|a, b| a.protocol.cmp(b.protocol));
        out
    }
}

/// Upper bounds, in microseconds, of the buckets of the kernel's latency
/// histograms (reader lag and join time): 5 ms to 10 s, and one more bucket
/// for everything above.
pub const LATENCY_BUCKETS_US: [u64; 11] = [
    5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000,
];

const BUCKETS: usize = LATENCY_BUCKETS_US.len() + 1;

/// The bucket of a value: the first whose bound is at least the value.
fn bucket(us: u64) -> usize {
    LATENCY_BUCKETS_US.partition_point(|b| *b < us)
}

/// A latency histogram one writer observes into.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    counts: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, us: u64) {
        self.counts[bucket(us)].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    fn add_to(&self, into: &mut HistogramSnapshot) {
        for (sum, count) in into.counts.iter_mut().zip(&self.counts) {
            *sum += count.load(Relaxed);
        }
        into.sum_us += self.sum_us.load(Relaxed);
    }
}

/// A latency histogram over [`LATENCY_BUCKETS_US`]: observations per bucket
/// (not cumulative; the last bucket holds those above the last bound) and
/// their sum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct HistogramSnapshot {
    /// Observations per bucket: `counts[i]` are those at most
    /// `LATENCY_BUCKETS_US[i]` and above the bound before; the last, those
    /// above every bound.
    pub counts: [u64; BUCKETS],
    /// The sum of every observation, in microseconds.
    pub sum_us: u64,
}

impl HistogramSnapshot {
    /// How many observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Counts one observation.
    pub fn observe(&mut self, us: u64) {
        self.counts[bucket(us)] += 1;
        self.sum_us += us;
    }

    /// Adds another histogram's observations.
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum_us += other.sum_us;
    }

    /// Each bucket's upper bound in microseconds (`None`: unbounded) and its count.
    pub fn buckets(&self) -> impl Iterator<Item = (Option<u64>, u64)> + '_ {
        LATENCY_BUCKETS_US
            .iter()
            .map(|b| Some(*b))
            .chain(std::iter::once(None))
            .zip(self.counts.iter().copied())
    }
}

/// What the readers of one protocol did with one publish generation: those
/// reading now and those that left it, added up. The counters only grow
/// while the generation lives.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ReaderMetrics {
    /// The readers' protocol.
    pub protocol: &'static str,
    /// Readers now (kicked ones that have not gone yet excluded).
    pub readers: u64,
    /// Bytes their protocol drivers reported writing.
    pub bytes_out: u64,
    /// Frames delivered to them.
    pub frames_out: u64,
    /// Times one fell behind and skipped to a keyframe.
    pub skips: u64,
    /// Frames skipped that way.
    pub skipped_frames: u64,
    /// Readers evicted for staying behind.
    pub evictions: u64,
    /// Readers an operator kicked.
    pub kicks: u64,
    /// Lag samples (one per 32 frames read while live).
    pub lag: HistogramSnapshot,
    /// Join times (subscribe to first frame), one per reader that got a frame.
    pub join_time: HistogramSnapshot,
}

impl ReaderMetrics {
    fn new(protocol: &'static str) -> Self {
        ReaderMetrics {
            protocol,
            readers: 0,
            bytes_out: 0,
            frames_out: 0,
            skips: 0,
            skipped_frames: 0,
            evictions: 0,
            kicks: 0,
            lag: HistogramSnapshot::default(),
            join_time: HistogramSnapshot::default(),
        }
    }
}

/// One live stream's figures for metrics, per publish and per reader
/// protocol ([`Engine::stream_metrics`](crate::Engine::stream_metrics)).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct StreamMetrics {
    /// The stream.
    pub key: StreamKey,
    /// Its live publish generation.
    pub generation: u64,
    /// The publisher's protocol.
    pub protocol: &'static str,
    /// Frames published.
    pub frames_in: u64,
    /// Payload bytes published.
    pub bytes_in: u64,
    /// Per reader protocol, sorted by protocol.
    pub readers: Vec<ReaderMetrics>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_reports_rates_of_completed_seconds() {
        let mut w = RateWindow::default();
        let mut last = None;
        // 30 video frames of 1000 bytes per second for 7 seconds, on virtual time.
        for i in 0..(30 * 7) {
            let now = i * 1_000_000 / 30;
            if let Some(r) = w.record(now, 1_000, true) {
                last = Some(r);
            }
        }
        let (fps_milli, bps) = last.expect("rolled");
        assert_eq!(fps_milli, 30_000);
        assert_eq!(bps, 240_000);
    }

    #[test]
    fn histogram_buckets_hold_values_up_to_their_bound() {
        let mut h = HistogramSnapshot::default();
        for us in [0, 5_000, 5_001, 10_000_000, 10_000_001, 3_600_000_000] {
            h.observe(us);
        }
        let buckets: Vec<_> = h.buckets().filter(|(_, n)| *n > 0).collect();
        assert_eq!(
            buckets,
            [
                (Some(5_000), 2),
                (Some(10_000), 1),
                (Some(10_000_000), 1),
                (None, 2)
            ]
        );
        assert_eq!(h.count(), 6);
        let mut twice = h;
        twice.merge(&h);
        assert_eq!(twice.count(), 12);
        assert_eq!(twice.sum_us, 2 * h.sum_us);
    }
}
