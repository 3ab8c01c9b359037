//! ICE-TCP (RFC 6544) on the media port's number: for clients whose
//! network blocks UDP.
//!
//! The server announces one passive TCP host candidate (`tcptype passive`)
//! per media address, on the TCP port with the UDP port's number; a client
//! connects and sends its ICE checks, DTLS and SRTP on the connection, each
//! packet behind a two-byte length (RFC 4571 framing, read and written with
//! `tokio_util`'s length-delimited codec). This module only moves frames:
//! each frame read becomes a `Datagram` for the media worker (marked
//! TCP), which demultiplexes it as it does UDP — the first STUN binding
//! request's ICE username picks the session, then the remote address — and
//! the state machines' TCP transmits come back through `Conns::send`.
//!
//! Bounds and failures:
//!
//! - a frame is at most 65 535 bytes (the framing's limit); the read buffer
//!   holds at most about two frames;
//! - each connection has a queue of [`CONN_QUEUE`] frames to write: a peer
//!   that does not read fast enough has frames skipped (counted as dropped
//!   sends; WebRTC recovers with NACK and keyframes, as with UDP loss), and
//!   one whose writes stall for the idle timeout is closed;
//! - an empty frame, a connection that ends inside a frame, or a frame no
//!   session takes (garbage, an unknown ICE username: the worker decides)
//!   closes the connection, logged naming the peer at the rate the media
//!   port's junk lines have ([`crate::junk`]);
//! - at most [`max_connections`] connections at once (a connection over it is
//!   closed at once), and one that sends nothing for the idle timeout is
//!   closed, so idle connections cannot hold the slots for long.
// Reads anyone's bytes: no indexing, unwrap, expect or panic.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use str0m::net::Protocol;
use tidewater_core::CancellationToken;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};
use tracing::debug;

use crate::junk::{Junk, Strangers};
use crate::media::{Datagram, MediaStats};
use crate::send::SendStats;

/// The largest frame RFC 4571's two-byte length can carry.
pub const MAX_FRAME: usize = 65_535;
/// Frames queued for one connection's writer (a 2 Mbit/s stream is about
/// 200 packets a second: over two seconds of it).
pub const CONN_QUEUE: usize = 512;
/// Bytes of queued frames written with one system call.
const WRITE_BATCH: usize = 64 * 1024;

/// The most ICE-TCP connections at once for `max_sessions` sessions: two
/// each (a client may connect to two of the server's addresses) and a few
/// for connections not yet matched.
pub fn max_connections(max_sessions: usize) -> usize {
    max_sessions.saturating_mul(2).saturating_add(16)
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(2)
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

/// One open connection, as the worker reaches it.
struct Handle {
    tx: mpsc::Sender<Bytes>,
    close: CancellationToken,
    /// Tells this connection from a later one of the same address.
    serial: u64,
}

/// The next connection's [`Handle::serial`].
static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The open connections by remote address: where the state machines' TCP
/// transmits go. Shared by the worker and the connection tasks.
#[derive(Default)]
pub(crate) struct Conns {
    map: Mutex<HashMap<SocketAddr, Handle>>,
}

impl Conns {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Handle>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `data` for the connection of `remote`; skipped (counted as
    /// dropped) when that connection's queue is full or it has closed.
    pub(crate) fn send(&self, remote: SocketAddr, data: Vec<u8>, stats: &SendStats) {
        let sent = self
            .lock()
            .get(&remote)
            .is_some_and(|h| h.tx.try_send(Bytes::from(data)).is_ok());
        let counter = if sent {
            &stats.datagrams
        } else {
            &stats.dropped
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Closes the connection of `remote` (a frame no session takes, or its
    /// session ended); whether there was one.
    pub(crate) fn close(&self, remote: SocketAddr) -> bool {
        match self.lock().remove(&remote) {
            Some(h) => {
                h.close.cancel();
                true
            }
            None => false,
        }
    }
}

/// What a connection task needs (cheap to clone).
#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) datagrams: mpsc::Sender<Datagram>,
    pub(crate) conns: Arc<Conns>,
    pub(crate) stats: Arc<MediaStats>,
    pub(crate) strangers: Strangers,
    /// A connection silent this long (or whose writes stall this long) is
    /// closed.
    pub(crate) idle: Duration,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) shutdown: CancellationToken,
}

/// Accepts connections on `listener` until `shutdown`.
pub(crate) async fn accept(listener: TcpListener, ctx: Ctx) {
    let Ok(local) = listener.local_addr() else {
        return;
    };
    loop {
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, remote)) => {
                let Ok(permit) = Arc::clone(&ctx.slots).try_acquire_owned() else {
                    ctx.strangers
                        .closed(remote, None, "too many ICE-TCP connections open");
                    continue;
                };
                tokio::spawn(connection(stream, local, remote, ctx.clone(), permit));
            }
            Err(e) => {
                // Out of descriptors, mostly: wait rather than spin.
                debug!("whip: TCP {local}: accept: {e}");
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
}

/// Why a connection ended.
enum Ended {
    /// The peer closed it between frames.
    Eof,
    /// The framing is broken (logged and counted as malformed).
    Framing(&'static str),
    /// Nothing read, or a write stalled, for the idle timeout.
    Idle,
    /// A socket error.
    Io(std::io::Error),
    /// The worker is gone.
    Worker,
}

async fn connection(
    stream: TcpStream,
    local: SocketAddr,
    remote: SocketAddr,
    ctx: Ctx,
    _permit: OwnedSemaphorePermit,
) {
    // Media is latency-sensitive and already packetized.
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel(CONN_QUEUE);
    let close = ctx.shutdown.child_token();
    let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
    let replaced = ctx.conns.lock().insert(
        remote,
        Handle {
            tx,
            close: close.clone(),
            serial,
        },
    );
    if let Some(old) = replaced {
        old.close.cancel();
    }
    debug!(peer = %remote, "whip: ICE-TCP connection on {local}");
    let ended = tokio::select! {
        // Closed by the worker (which says why) or the server stopping.
        _ = close.cancelled() => None,
        e = read(rd, local, remote, &ctx) => Some(e),
        e = write(wr, rx, ctx.idle) => Some(e),
    };
    {
        let mut map = ctx.conns.lock();
        // Only this connection's entry: a new one from the same address
        // may have replaced it.
        if map.get(&remote).is_some_and(|h| h.serial == serial) {
            map.remove(&remote);
        }
    }
    match ended {
        Some(Ended::Framing(why)) => {
            ctx.strangers.closed(remote, Some(Junk::Malformed), why);
        }
        Some(Ended::Idle) => ctx.strangers.closed(
            remote,
            None,
            "nothing received, or writes stalled, for the idle timeout",
        ),
        Some(Ended::Io(e)) => debug!(peer = %remote, "whip: ICE-TCP connection: {e}"),
        Some(Ended::Eof | Ended::Worker) | None => {
            debug!(peer = %remote, "whip: ICE-TCP connection closed");
        }
    }
}

/// Reads frames and hands each to the worker.
async fn read(mut rd: OwnedReadHalf, local: SocketAddr, remote: SocketAddr, ctx: &Ctx) -> Ended {
    let mut codec = codec();
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        // Every complete frame first: the buffer then holds less than one
        // frame before the next read (bounded by the framing).
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) if frame.is_empty() => return Ended::Framing("an empty frame"),
                Ok(Some(frame)) => {
                    ctx.stats.datagrams.fetch_add(1, Ordering::Relaxed);
                    let datagram = Datagram {
                        received: Instant::now(),
                        source: remote,
                        destination: local,
                        data: frame.freeze(),
                        proto: Protocol::Tcp,
                    };
                    match ctx.datagrams.try_send(datagram) {
                        Ok(()) => {}
                        // The worker is behind: dropped as a full UDP
                        // socket buffer would.
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            ctx.stats.overflow.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return Ended::Worker,
                    }
                }
                Ok(None) => break,
                // Cannot happen with a two-byte length (at most the
                // maximum); closed as broken framing all the same.
                Err(_) => return Ended::Framing("a frame over 65535 bytes"),
            }
        }
        match tokio::time::timeout(ctx.idle, rd.read_buf(&mut buf)).await {
            Err(_) => return Ended::Idle,
            Ok(Ok(0)) if buf.is_empty() => return Ended::Eof,
            Ok(Ok(0)) => return Ended::Framing("the connection ended inside a frame"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Ended::Io(e),
        }
    }
}

/// Writes the queued frames, batched, each behind its length.
async fn write(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Bytes>, idle: Duration) -> Ended {
    let mut codec = codec();
    let mut out = BytesMut::new();
    while let Some(first) = rx.recv().await {
        out.clear();
        let mut next = Some(first);
        while let Some(frame) = next.take() {
            // Only a frame over the framing's limit is refused: skipped.
            let _ = codec.encode(frame, &mut out);
            if out.len() < WRITE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        match tokio::time::timeout(idle, wr.write_all(&out)).await {
            Err(_) => return Ended::Idle,
            Ok(Err(e)) => return Ended::Io(e),
            Ok(Ok(())) => {}
        }
    }
    Ended::Worker
}

/// Binds the ICE-TCP listeners: one per address in `addrs`.
pub(crate) async fn bind(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, crate::Error> {
    let mut listeners = Vec::new();
    for &addr in addrs {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| crate::Error::Tcp { addr, source })?;
        listeners.push(listener);
    }
    Ok(listeners)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests: a missing frame should fail the test"
)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_skips_frames_and_a_closed_connection_takes_none() {
        let conns = Conns::default();
        let remote: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let (tx, mut rx) = mpsc::channel(CONN_QUEUE);
        let close = CancellationToken::new();
        conns.lock().insert(
            remote,
            Handle {
                tx,
                close: close.clone(),
                serial: 0,
            },
        );
        let stats = SendStats::default();
        // A peer that reads nothing: the queue fills, then frames are
        // skipped and counted, never queued without bound.
        for _ in 0..CONN_QUEUE + 10 {
            conns.send(remote, vec![0x80; 100], &stats);
        }
        assert_eq!(stats.datagrams.load(Ordering::Relaxed), CONN_QUEUE as u64);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 10);
        assert!(rx.try_recv().is_ok());
        // Closing cancels the connection's task and forgets it.
        assert!(conns.close(remote));
        assert!(close.is_cancelled());
        assert!(!conns.close(remote));
        conns.send(remote, vec![0x80; 100], &stats);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 11);
    }

    #[test]
    fn frames_carry_a_two_byte_length_and_split_reads_join() {
        let mut c = codec();
        let mut out = BytesMut::new();
        c.encode(Bytes::from_static(b"\x00\x01stun"), &mut out)
            .unwrap();
        assert_eq!(&out[..], b"\x00\x06\x00\x01stun");
        // Read in two parts: nothing until the frame is complete.
        let mut buf = BytesMut::from(&out[..3]);
        assert!(c.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&out[3..]);
        assert_eq!(&c.decode(&mut buf).unwrap().unwrap()[..], b"\x00\x01stun");
        // The largest length the framing has is accepted.
        let mut big = BytesMut::from(&[0xff, 0xff][..]);
        big.extend_from_slice(&vec![0u8; MAX_FRAME]);
        assert_eq!(c.decode(&mut big).unwrap().unwrap().len(), MAX_FRAME);
    }
}
