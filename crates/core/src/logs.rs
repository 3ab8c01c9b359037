//! Helpers for log lines that every protocol writes the same way: a peer
//! shown plainly, and a limiter for warnings a remote party can trigger at
//! will (one per datagram or per connection attempt).
//!
//! A listener that logs every junk datagram or refused handshake lets
//! anyone on the network fill the operator's disk and bury the lines that
//! matter. [`LogLimiter`] lets the first lines of each interval through,
//! says once that it starts suppressing, and reports how many it suppressed
//! on the next line it lets through. One limiter belongs to one listener
//! (or one kind of line of a listener), not to the process: it bounds the
//! lines of all peers together, which is what protects the log when the
//! peers are many or spoofed; each line still names its peer.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A peer address as a log line shows it: `127.0.0.1:47542`, or
/// `in-process` for a publisher or reader without one (never `Some(..)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub Option<SocketAddr>);

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => f.write_str("in-process"),
        }
    }
}

/// Lines per interval a [`LogLimiter::per_listener`] lets through.
pub const LISTENER_BURST: u32 = 20;
/// The interval of a [`LogLimiter::per_listener`].
pub const LISTENER_INTERVAL: Duration = Duration::from_secs(10);

/// Lets the first `burst` lines of each `interval` through and counts the
/// rest (see the module docs). Cheap when quiet: one uncontended lock.
#[derive(Debug)]
pub struct LogLimiter {
    burst: u32,
    interval: Duration,
    state: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    start: Option<Instant>,
    passed: u32,
    /// Suppressed in this window.
    suppressed: u64,
    /// Suppressed in earlier windows and not reported yet.
    unreported: u64,
}

/// What to append to a line the limiter lets through: nothing, that lines
/// are being suppressed from now on, or how many were suppressed before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// An ordinary line.
    None,
    /// The last line let through in this interval.
    Suppressing {
        /// For how long at most.
        interval: Duration,
    },
    /// The first line after lines were suppressed.
    Suppressed {
        /// How many.
        count: u64,
    },
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Note::None => Ok(()),
            Note::Suppressing { interval } => write!(
                f,
                " (… more lines like this are suppressed for up to {}s)",
                interval.as_secs()
            ),
            Note::Suppressed { count } => write!(f, " (… {count} more suppressed before this)"),
        }
    }
}

impl LogLimiter {
    /// `burst` lines per `interval` (a `burst` of 0 counts as 1).
    pub fn new(burst: u32, interval: Duration) -> Self {
        LogLimiter {
            burst: burst.max(1),
            interval,
            state: Mutex::new(Window::default()),
        }
    }

    /// The limiter the listeners use for what peers can trigger:
    /// [`LISTENER_BURST`] lines per [`LISTENER_INTERVAL`].
    pub fn per_listener() -> Self {
        Self::new(LISTENER_BURST, LISTENER_INTERVAL)
    }

    /// Whether a line at `now` is let through, and what to append to it
    /// (`None`: drop the line, it is counted). `now` is passed in so that
    /// tests drive the limiter on a virtual clock.
    pub fn check(&self, now: Instant) -> Option<Note> {
        let mut w = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let expired = w
            .start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.interval);
        if expired {
            w.unreported += w.suppressed;
            w.suppressed = 0;
            w.passed = 0;
            w.start = Some(now);
        }
        if w.passed >= self.burst {
            w.suppressed += 1;
            return None;
        }
        w.passed += 1;
        if w.unreported > 0 {
            let count = std::mem::take(&mut w.unreported);
            return Some(Note::Suppressed { count });
        }
        Some(if w.passed == self.burst {
            Note::Suppressing {
                interval: self.interval,
            }
        } else {
            Note::None
        })
    }

    /// [`check`](Self::check) at the current time.
    pub fn check_now(&self) -> Option<Note> {
        self.check(Instant::now())
    }

    /// Lines suppressed and not yet reported on a line let through.
    pub fn pending(&self) -> u64 {
        let w = self.state.lock().unwrap_or_else(|p| p.into_inner());
        w.suppressed + w.unreported
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(limiter: &LogLimiter, at: Instant, n: usize) -> Vec<Option<Note>> {
        (0..n).map(|_| limiter.check(at)).collect()
    }

    #[test]
    fn lets_the_burst_through_then_counts() {
        let t0 = Instant::now();
        let limiter = LogLimiter::new(3, Duration::from_secs(10));
        let first = run(&limiter, t0, 1000);
        let passed: Vec<Note> = first.iter().flatten().copied().collect();
        assert_eq!(
            passed,
            [
                Note::None,
                Note::None,
                Note::Suppressing {
                    interval: Duration::from_secs(10)
                }
            ]
        );
        assert_eq!(limiter.pending(), 997);
        // Still inside the interval: nothing more.
        assert_eq!(limiter.check(t0 + Duration::from_millis(9_999)), None);
        // The next interval's first line carries the count, once.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(limiter.check(later), Some(Note::Suppressed { count: 998 }));
        assert_eq!(limiter.check(later), Some(Note::None));
        assert_eq!(limiter.pending(), 0);
    }

    #[test]
    fn quiet_intervals_lose_no_count() {
        let t0 = Instant::now();
        let limiter = LogLimiter::new(1, Duration::from_secs(1));
        assert_eq!(
            limiter.check(t0),
            Some(Note::Suppressing {
                interval: Duration::from_secs(1)
            })
        );
        assert_eq!(limiter.check(t0), None);
        assert_eq!(limiter.check(t0 + Duration::from_millis(500)), None);
        // Several silent intervals later the count is still reported.
        let note = limiter.check(t0 + Duration::from_secs(60));
        assert_eq!(note, Some(Note::Suppressed { count: 2 }));
        assert_eq!(
            note.map(|n| n.to_string()).as_deref(),
            Some(" (… 2 more suppressed before this)")
        );
    }

    #[test]
    fn bounded_lines_per_interval_under_a_flood() {
        let t0 = Instant::now();
        let limiter = LogLimiter::per_listener();
        // 3 000 junk datagrams over 2 virtual seconds: one interval.
        let passed = (0..3000u64)
            .filter(|i| limiter.check(t0 + Duration::from_micros(i * 666)).is_some())
            .count();
        assert_eq!(passed, LISTENER_BURST as usize);
    }

    #[test]
    fn a_clock_going_backwards_is_harmless() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let limiter = LogLimiter::new(1, Duration::from_secs(1));
        assert!(limiter.check(t0).is_some());
        assert_eq!(limiter.check(t0 - Duration::from_secs(50)), None);
    }

    #[test]
    fn peers_show_plainly() {
        let addr: SocketAddr = "127.0.0.1:47542".parse().expect("an address");
        assert_eq!(Peer(Some(addr)).to_string(), "127.0.0.1:47542");
        assert_eq!(Peer(None).to_string(), "in-process");
    }
}
