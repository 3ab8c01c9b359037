//! Quality-of-service figures: per stream (written only by its publisher, as
//! plain stores of publisher-private counters) and per subscriber (written
//! only by that subscriber). Readers take snapshots; nothing here is a lock.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

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

/// Counters of one subscriber, written only by it.
#[derive(Debug)]
pub(crate) struct SubscriberStats {
    pub id: u64,
    pub protocol: &'static str,
    pub peer: Option<SocketAddr>,
    pub joined_unix_ms: u64,
    pub join_time_us: AtomicU64,
    pub delivered: AtomicU64,
    pub skipped: AtomicU64,
    pub lag_events: AtomicU64,
    pub lag_us: AtomicU64,
    pub evicted: AtomicBool,
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
    /// When it joined (Unix milliseconds).
    pub joined_unix_ms: u64,
    /// Time from subscribing to its first frame, in microseconds (0 until then).
    pub join_time_us: u64,
    /// Frames delivered.
    pub delivered: u64,
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
    pub fn snapshot(&self) -> SubscriberSnapshot {
        SubscriberSnapshot {
            id: self.id,
            protocol: self.protocol,
            peer: self.peer,
            joined_unix_ms: self.joined_unix_ms,
            join_time_us: self.join_time_us.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            skipped: self.skipped.load(Relaxed),
            lag_events: self.lag_events.load(Relaxed),
            lag_us: self.lag_us.load(Relaxed),
            evicted: self.evicted.load(Relaxed),
        }
    }
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
}
