//! What a connection has to write, in order: its own control and command
//! messages (serialized into one growing buffer) and shared media chunks
//! (`Bytes` from the stream's derived-output cache, queued by reference),
//! handed to the driver as slices for vectored writes; and the write
//! deadline.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

/// Most messages one vectored write takes (and a batch gathers).
pub const BATCH_MESSAGES: usize = 64;
/// Most bytes a batch gathers.
pub const BATCH_BYTES: usize = 512 * 1024;

/// A connection's outgoing bytes and its write deadline.
///
/// The driver asks [`ready`](Self::ready) whether anything is to be written
/// (this arms the write deadline), writes [`io_slices`](Self::io_slices) and
/// reports what the socket took with [`advance`](Self::advance): each bit of
/// progress moves the deadline on, and a write that makes none for
/// `write_timeout` is [`expired`](Self::expired). Queueing a message never
/// copies a shared one and allocates nothing once the queue has grown to
/// its working size.
#[derive(Debug)]
pub struct Transmit {
    /// Whole messages, oldest first.
    queue: VecDeque<Bytes>,
    /// Bytes in `queue`.
    queued: usize,
    /// Control and command messages not yet sealed into `queue`.
    control: BytesMut,
    write_timeout: Duration,
    /// When the write in progress started or last made progress.
    since: Option<Instant>,
}

impl Transmit {
    /// Nothing to write; a write must make progress within `write_timeout`.
    pub fn new(write_timeout: Duration) -> Self {
        Transmit {
            queue: VecDeque::new(),
            queued: 0,
            control: BytesMut::new(),
            write_timeout,
            since: None,
        }
    }

    /// The buffer control and command messages are serialized into; they go
    /// out before anything queued after them.
    pub fn control(&mut self) -> &mut BytesMut {
        &mut self.control
    }

    /// Queues a message (nothing for an empty one), after the control
    /// messages serialized so far.
    pub fn push(&mut self, b: Bytes) {
        self.seal();
        if !b.is_empty() {
            self.queued += b.len();
            self.queue.push_back(b);
        }
    }

    fn seal(&mut self) {
        if !self.control.is_empty() {
            let b = self.control.split().freeze();
            self.queued += b.len();
            self.queue.push_back(b);
        }
    }

    /// Whether another message may still join this batch (fewer than
    /// [`BATCH_MESSAGES`] and [`BATCH_BYTES`] waiting).
    pub fn has_room(&self) -> bool {
        self.queue.len() < BATCH_MESSAGES && self.queued < BATCH_BYTES
    }

    /// Whether nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.control.is_empty()
    }

    /// Whether something is to be written; if so the write deadline runs
    /// from `now`, unless it already runs.
    pub fn ready(&mut self, now: Instant) -> bool {
        self.seal();
        if self.queue.is_empty() {
            self.since = None;
            return false;
        }
        self.since.get_or_insert(now);
        true
    }

    /// Fills `out` with what waits (after [`ready`](Self::ready)), oldest
    /// first; returns how many slices it filled.
    pub fn io_slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, b) in out.iter_mut().zip(self.queue.iter()) {
            *slot = IoSlice::new(b);
            n += 1;
        }
        n
    }

    /// The socket took `n` bytes at `now`.
    pub fn advance(&mut self, n: usize, now: Instant) {
        let mut left = n;
        while left > 0 {
            let Some(front) = self.queue.front_mut() else {
                break;
            };
            if front.len() <= left {
                left -= front.len();
                self.queue.pop_front();
            } else {
                front.advance(left);
                left = 0;
            }
        }
        self.queued = self.queued.saturating_sub(n - left);
        if n > 0 {
            self.since = (!self.queue.is_empty()).then_some(now);
        }
    }

    /// When the write in progress fails for want of progress.
    pub fn deadline(&self) -> Option<Instant> {
        self.since.map(|t| t + self.write_timeout)
    }

    /// Whether the write in progress made no progress for the write timeout.
    pub fn expired(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|d| now >= d)
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> Duration {
        self.write_timeout
    }

    /// Everything waiting, as one buffer (for callers that write it
    /// themselves; copies only when several messages wait).
    pub fn take_all(&mut self) -> Option<Bytes> {
        self.seal();
        self.queued = 0;
        self.since = None;
        match self.queue.len() {
            0 => None,
            1 => self.queue.pop_front(),
            _ => {
                let mut all = BytesMut::new();
                for b in self.queue.drain(..) {
                    all.extend_from_slice(&b);
                }
                Some(all.freeze())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_keep_their_place_and_the_deadline_follows_progress() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut t = Transmit::new(5 * s);
        assert!(!t.ready(t0) && t.deadline().is_none());
        t.control().extend_from_slice(b"ping");
        t.push(Bytes::from_static(b"media"));
        t.control().extend_from_slice(b"status");
        assert!(t.ready(t0));
        assert_eq!(t.deadline(), Some(t0 + 5 * s));
        let mut slices = [IoSlice::new(&[]); BATCH_MESSAGES];
        let n = t.io_slices(&mut slices);
        let order: Vec<&[u8]> = slices[..n].iter().map(|s| &s[..]).collect();
        assert_eq!(order, [&b"ping"[..], b"media", b"status"]);
        // A partial write at 3 s moves the deadline on; none by 8 s expires.
        t.advance(6, t0 + 3 * s);
        assert!(t.ready(t0 + 4 * s));
        assert_eq!(t.deadline(), Some(t0 + 8 * s));
        assert!(!t.expired(t0 + 7 * s));
        assert!(t.expired(t0 + 8 * s));
        let mut slices = [IoSlice::new(&[]); BATCH_MESSAGES];
        let n = t.io_slices(&mut slices);
        assert_eq!(&slices[0][..], b"dia");
        assert_eq!(n, 2);
        t.advance(9, t0 + 9 * s);
        assert!(t.is_empty() && t.deadline().is_none());
        assert!(t.has_room());
    }

    #[test]
    fn a_batch_is_bounded_in_messages_and_bytes() {
        let mut t = Transmit::new(Duration::from_secs(1));
        for _ in 0..BATCH_MESSAGES {
            assert!(t.has_room());
            t.push(Bytes::from_static(b"x"));
        }
        assert!(!t.has_room());
        let mut t = Transmit::new(Duration::from_secs(1));
        t.push(Bytes::from(vec![0; BATCH_BYTES]));
        assert!(!t.has_room());
        t.advance(BATCH_BYTES, Instant::now());
        assert!(t.has_room());
        t.control().extend_from_slice(b"ab");
        t.push(Bytes::from_static(b"cd"));
        assert_eq!(t.take_all().as_deref(), Some(&b"abcd"[..]));
        assert_eq!(t.take_all(), None);
    }
}
