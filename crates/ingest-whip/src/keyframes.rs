//! When to ask a WHIP publisher for a keyframe, sans-IO on the caller's
//! clock.
//!
//! Browsers encode one keyframe at the start of a publish and then only
//! when asked (a PLI or FIR): nothing else in WebRTC needs more, since a
//! WebRTC viewer asks for one itself. Every other output does need them
//! regularly: a reader joining late (RTMP, SRT, TS) starts at the cached
//! GOP's keyframe, and the HLS/DASH packagers cut segments only on
//! keyframes. So a publish is asked for a keyframe on a timer, every
//! `interval` after the last keyframe or request, next to the requests
//! made for a lost packet or a viewer; all of them share one rate limit
//! (`min_gap`), so that together they never exceed it.

use std::time::{Duration, Instant};

/// Why a keyframe request is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The depacketizer lost an access unit, or no keyframe came yet.
    Loss,
    /// A WebRTC viewer asked.
    Viewer,
    /// The periodic timer.
    Timer,
}

/// The keyframe-request schedule of one publish (see the module docs).
#[derive(Clone, Debug)]
pub struct KeyframeRequests {
    /// Zero: no periodic requests.
    interval: Duration,
    min_gap: Duration,
    /// When the timer counts from: the video's start, its last keyframe
    /// or the last request, whichever is latest.
    anchor: Option<Instant>,
    last_request: Option<Instant>,
    sent: u64,
}

impl KeyframeRequests {
    /// A schedule asking every `interval` (zero: never on a timer), with
    /// at least `min_gap` between any two requests.
    pub fn new(interval: Duration, min_gap: Duration) -> KeyframeRequests {
        KeyframeRequests {
            interval,
            min_gap,
            anchor: None,
            last_request: None,
            sent: 0,
        }
    }

    /// The publish's video started (its first packet): the timer runs from
    /// now on.
    pub fn video_started(&mut self, now: Instant) {
        self.anchor.get_or_insert(now);
    }

    /// A keyframe arrived: the next timed request is an interval later.
    pub fn keyframe(&mut self, now: Instant) {
        self.advance(now);
    }

    /// Whether a request for `reason` may go out now; when it may, it is
    /// counted as sent at `now`.
    pub fn request(&mut self, now: Instant, _reason: Reason) -> bool {
        if self
            .last_request
            .is_some_and(|t| now.saturating_duration_since(t) < self.min_gap)
        {
            return false;
        }
        self.last_request = Some(now);
        self.sent += 1;
        self.advance(now);
        true
    }

    /// When the timer wants a request next (`None`: disabled, or the video
    /// has not started).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.interval.is_zero() {
            return None;
        }
        let due = self.anchor? + self.interval;
        Some(match self.last_request {
            Some(last) => due.max(last + self.min_gap),
            None => due,
        })
    }

    /// The clock reached `now`: whether a timed request is to go out now
    /// (counted as sent when it is).
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        match self.poll_timeout() {
            Some(due) if due <= now => self.request(now, Reason::Timer),
            _ => false,
        }
    }

    /// Requests sent so far, whatever their reason.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    fn advance(&mut self, now: Instant) {
        if self.anchor.is_none_or(|a| a < now) {
            self.anchor = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_timer_asks_every_interval_after_the_last_keyframe() {
        let t0 = Instant::now();
        let mut k = KeyframeRequests::new(2000 * MS, 500 * MS);
        assert_eq!(k.poll_timeout(), None, "no video yet");
        assert!(!k.handle_timeout(t0 + 10_000 * MS));
        k.video_started(t0);
        k.keyframe(t0);
        assert_eq!(k.poll_timeout(), Some(t0 + 2000 * MS));
        assert!(!k.handle_timeout(t0 + 1999 * MS));
        assert!(k.handle_timeout(t0 + 2000 * MS));
        assert_eq!(k.sent(), 1);
        // The publisher answers 40 ms later; the next one is 2 s after that.
        k.keyframe(t0 + 2040 * MS);
        assert_eq!(k.poll_timeout(), Some(t0 + 4040 * MS));
        // A publisher that sends keyframes on its own is never asked.
        for i in 1..10 {
            k.keyframe(t0 + 2040 * MS + i * 1500 * MS);
            assert!(!k.handle_timeout(t0 + 2040 * MS + i * 1500 * MS + 1499 * MS));
        }
        assert_eq!(k.sent(), 1);
        // A late wake-up sends one request, not one per missed interval.
        let late = t0 + 60_000 * MS;
        assert!(k.handle_timeout(late));
        assert!(!k.handle_timeout(late));
        assert_eq!(k.poll_timeout(), Some(late + 2000 * MS));
    }

    #[test]
    fn timer_and_other_requests_share_one_rate_limit() {
        let t0 = Instant::now();
        let mut k = KeyframeRequests::new(600 * MS, 500 * MS);
        k.video_started(t0);
        // A viewer asks at 550 ms: allowed, and the timer restarts from it.
        assert!(k.request(t0 + 550 * MS, Reason::Viewer));
        assert_eq!(k.poll_timeout(), Some(t0 + 1150 * MS));
        // A loss at 900 ms is within the gap: refused.
        assert!(!k.request(t0 + 900 * MS, Reason::Loss));
        assert!(k.handle_timeout(t0 + 1150 * MS));
        // Viewers asking all the time: never more than one per 500 ms.
        let mut at = Vec::new();
        for ms in (1150..5000).step_by(10) {
            let now = t0 + ms * MS;
            if k.request(now, Reason::Viewer) | k.handle_timeout(now) {
                at.push(ms);
            }
        }
        assert!(at.windows(2).all(|w| w[1] - w[0] >= 500), "{at:?}");
        // A keyframe right after a request does not let the timer undercut
        // the gap.
        let mut k = KeyframeRequests::new(100 * MS, 500 * MS);
        k.video_started(t0);
        assert!(k.handle_timeout(t0 + 100 * MS));
        k.keyframe(t0 + 110 * MS);
        assert_eq!(k.poll_timeout(), Some(t0 + 600 * MS));
    }

    #[test]
    fn zero_disables_the_timer_only() {
        let t0 = Instant::now();
        let mut k = KeyframeRequests::new(Duration::ZERO, 500 * MS);
        k.video_started(t0);
        assert_eq!(k.poll_timeout(), None);
        assert!(!k.handle_timeout(t0 + 3_600_000 * MS));
        assert!(k.request(t0, Reason::Loss));
        assert_eq!(k.sent(), 1);
    }
}
