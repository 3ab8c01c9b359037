//! The media port's send path: every datagram the peers' state machines
//! produce during one wake-up of the worker goes out in as few system calls
//! as the kernel takes.
//!
//! One `sendto` per datagram made the system-call entry a large part of a
//! WHEP viewer's cost (a 2 Mbit/s stream is about 200 datagrams a second
//! per viewer). The worker instead queues each peer's datagrams here
//! ([`Outbox::push`]) and flushes them once per wake-up ([`Outbox::flush`]):
//! on Linux one `sendmmsg` per socket carries the datagrams of every peer
//! that had something to send, and a run of one peer's equal-sized
//! datagrams (a frame's SRTP packets, the last one shorter) goes out as one
//! `sendmsg` with UDP segmentation offload (`UDP_SEGMENT`, through nix:
//! rustix builds no such control message), which takes the run through the
//! IP and UDP layers once. A kernel or route that refuses GSO (no checksum
//! offload) turns it off and the runs go out as single datagrams.
//!
//! Sending stays best effort, as UDP is: a datagram the kernel refuses
//! (an ICMP error of an earlier send surfacing, a size it rejects) is
//! skipped and counted, and when the socket's buffer is full the rest of
//! the batch is dropped and counted rather than stalling every other peer's
//! worker (WebRTC recovers: NACK, then a keyframe). The queue is bounded
//! ([`MAX_QUEUED`]): reaching it flushes early.
// Runs on every datagram the peers' state machines make: no indexing,
// unwrap, expect or panic (issue 18).
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::media::Socket;

/// The most datagrams queued before a flush is forced (about 12 MB of
/// 1 200-byte datagrams).
pub(crate) const MAX_QUEUED: usize = 10_000;
/// The most datagrams handed to one system call (the kernel's `UIO_MAXIOV`).
#[cfg(target_os = "linux")]
const BATCH: usize = 1024;

/// Counters of the send path.
#[derive(Debug, Default)]
pub struct SendStats {
    /// Datagrams the kernel took.
    pub datagrams: AtomicU64,
    /// System calls made to send them.
    pub calls: AtomicU64,
    /// Datagrams dropped: refused by the kernel or the socket buffer full.
    pub dropped: AtomicU64,
    /// Of `datagrams`, those sent in GSO runs (one `sendmsg` each).
    pub segmented: AtomicU64,
}

/// One datagram waiting for the flush.
struct Queued {
    /// Index into the worker's sockets.
    socket: usize,
    to: SocketAddr,
    data: Vec<u8>,
}

/// The worker's sockets and the datagrams queued for them (see the module
/// docs). Owned by the one worker task: the queue needs no lock.
pub(crate) struct Outbox {
    sockets: Vec<Socket>,
    queue: RefCell<Vec<Queued>>,
    /// Whether GSO is still tried (off once the kernel refused it).
    gso: Cell<bool>,
}

impl Outbox {
    /// An outbox sending from `sockets` (the media port's, by local address).
    pub(crate) fn new(sockets: Vec<Socket>) -> Outbox {
        Outbox {
            sockets,
            queue: RefCell::new(Vec::new()),
            gso: Cell::new(true),
        }
    }

    /// Queues `data` for `to` from the socket bound to `source` (the first
    /// socket when none is: str0m names the candidate's address).
    pub(crate) fn push(
        &self,
        source: SocketAddr,
        to: SocketAddr,
        data: Vec<u8>,
        stats: &SendStats,
    ) {
        let socket = self
            .sockets
            .iter()
            .position(|(addr, _)| *addr == source)
            .unwrap_or(0);
        let full = {
            let mut queue = self.queue.borrow_mut();
            queue.push(Queued { socket, to, data });
            queue.len() >= MAX_QUEUED
        };
        if full {
            self.flush(stats);
        }
    }

    /// Sends everything queued, in order per socket.
    pub(crate) fn flush(&self, stats: &SendStats) {
        let mut queue = self.queue.take();
        if queue.is_empty() {
            return;
        }
        for (index, (_, socket)) in self.sockets.iter().enumerate() {
            let mine: Vec<&Queued> = queue.iter().filter(|q| q.socket == index).collect();
            if !mine.is_empty() {
                send(socket, &mine, stats, &self.gso);
            }
        }
        // Give the allocation back (the next wake-up reuses it) unless a
        // push happened meanwhile (it cannot: one task owns the outbox).
        queue.clear();
        let mut slot = self.queue.borrow_mut();
        if slot.is_empty() && slot.capacity() < queue.capacity() {
            *slot = queue;
        }
    }
}

/// Sends `datagrams` from `socket` in order: each run of one peer's
/// datagrams that GSO can carry ([`gso_run`]) in one `sendmsg`, the others
/// with `sendmmsg` in batches. A refused datagram is skipped; a full buffer
/// drops the rest. GSO is turned off for good (`gso`) when the kernel or
/// the route refuses it (no checksum offload: `EIO`).
#[cfg(target_os = "linux")]
fn send(
    socket: &tokio::net::UdpSocket,
    datagrams: &[&Queued],
    stats: &SendStats,
    gso: &Cell<bool>,
) {
    let (mut at, mut singles) = (0, 0);
    while let Some(rest) = datagrams.get(at..).filter(|r| !r.is_empty()) {
        let run = if gso.get() { gso_run(rest) } else { 1 };
        if run < 2 {
            at += 1;
            continue;
        }
        let pending = datagrams.get(singles..at).unwrap_or_default();
        if !send_batch(socket, pending, stats) {
            let left = datagrams.len() - at;
            stats.dropped.fetch_add(left as u64, Ordering::Relaxed);
            return;
        }
        let group = rest.get(..run).unwrap_or(rest);
        stats.calls.fetch_add(1, Ordering::Relaxed);
        match send_gso(socket, group) {
            Ok(_) => {
                stats.datagrams.fetch_add(run as u64, Ordering::Relaxed);
                stats.segmented.fetch_add(run as u64, Ordering::Relaxed);
            }
            Err(nix::errno::Errno::EAGAIN) => {
                stats
                    .dropped
                    .fetch_add(rest.len() as u64, Ordering::Relaxed);
                return;
            }
            Err(
                nix::errno::Errno::EIO
                | nix::errno::Errno::EINVAL
                | nix::errno::Errno::ENOPROTOOPT
                | nix::errno::Errno::EOPNOTSUPP,
            ) => {
                // Sent as single datagrams from here on.
                gso.set(false);
                singles = at;
                continue;
            }
            Err(_) => {
                stats.dropped.fetch_add(run as u64, Ordering::Relaxed);
            }
        }
        at += run;
        singles = at;
    }
    let pending = datagrams.get(singles..).unwrap_or_default();
    send_batch(socket, pending, stats);
}

/// The most datagrams in one GSO send (the kernel's `UDP_MAX_SEGMENTS` is
/// 64 on older kernels).
#[cfg(target_os = "linux")]
const GSO_SEGMENTS: usize = 64;
/// The most bytes in one GSO send (an IP packet's limit, with headroom).
#[cfg(target_os = "linux")]
const GSO_BYTES: usize = 60_000;

/// How many datagrams at the start of `rest` one GSO send carries: the
/// consecutive ones to the first one's destination that have its size, and
/// one shorter last one (a frame's SRTP packets: equal-sized but the last).
/// Below 2 there is nothing to gain.
#[cfg(target_os = "linux")]
fn gso_run(rest: &[&Queued]) -> usize {
    let Some(first) = rest.first() else {
        return 0;
    };
    let size = first.data.len();
    if size == 0 || size > usize::from(u16::MAX) {
        return 1;
    }
    let (mut n, mut bytes) = (1, size);
    for q in rest.iter().skip(1) {
        let len = q.data.len();
        if n == GSO_SEGMENTS
            || q.to != first.to
            || len == 0
            || len > size
            || bytes + len > GSO_BYTES
        {
            break;
        }
        n += 1;
        bytes += len;
        if len < size {
            break;
        }
    }
    n
}

/// One `sendmsg` of `group` (see [`gso_run`]) with `UDP_SEGMENT`: the
/// kernel cuts it into the datagrams again, past its IP and UDP layers once.
#[cfg(target_os = "linux")]
fn send_gso(socket: &tokio::net::UdpSocket, group: &[&Queued]) -> nix::Result<usize> {
    use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrStorage, sendmsg};
    use std::os::fd::AsRawFd;

    let first = group.first().ok_or(nix::errno::Errno::EINVAL)?;
    let size = u16::try_from(first.data.len()).map_err(|_| nix::errno::Errno::EINVAL)?;
    let iov: Vec<std::io::IoSlice<'_>> = group
        .iter()
        .map(|q| std::io::IoSlice::new(&q.data))
        .collect();
    let to = SockaddrStorage::from(first.to);
    sendmsg(
        socket.as_raw_fd(),
        &iov,
        &[ControlMessage::UdpGsoSegments(&size)],
        MsgFlags::MSG_DONTWAIT,
        Some(&to),
    )
}

/// Sends `datagrams` with `sendmmsg` in batches; a refused datagram is
/// skipped. `false` when the socket's buffer was full (the rest of
/// `datagrams` dropped and counted).
#[cfg(target_os = "linux")]
fn send_batch(socket: &tokio::net::UdpSocket, datagrams: &[&Queued], stats: &SendStats) -> bool {
    use rustix::io::Errno;

    let mut at = 0;
    while let Some(rest) = datagrams.get(at..).filter(|r| !r.is_empty()) {
        let batch = rest.get(..BATCH).unwrap_or(rest);
        stats.calls.fetch_add(1, Ordering::Relaxed);
        match sendmmsg(socket, batch) {
            // Zero taken without an error would loop: count it as refused.
            Ok(0) => {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                at += 1;
            }
            Ok(n) => {
                stats.datagrams.fetch_add(n as u64, Ordering::Relaxed);
                at += n;
            }
            Err(Errno::AGAIN) => {
                stats
                    .dropped
                    .fetch_add(rest.len() as u64, Ordering::Relaxed);
                return false;
            }
            Err(Errno::INTR) => {}
            // The kernel reports an error only for the first datagram.
            Err(_) => {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                at += 1;
            }
        }
    }
    true
}

/// One `sendmmsg`: how many datagrams the kernel took.
#[cfg(target_os = "linux")]
fn sendmmsg(socket: &tokio::net::UdpSocket, batch: &[&Queued]) -> rustix::io::Result<usize> {
    use rustix::net::addr::SocketAddrArg;
    use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};

    let addrs: Vec<SocketAddrAny> = batch.iter().map(|q| q.to.as_any()).collect();
    let iovs: Vec<[std::io::IoSlice<'_>; 1]> = batch
        .iter()
        .map(|q| [std::io::IoSlice::new(&q.data)])
        .collect();
    let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> = batch
        .iter()
        .map(|_| SendAncillaryBuffer::default())
        .collect();
    let mut msgs: Vec<MMsgHdr<'_>> = addrs
        .iter()
        .zip(&iovs)
        .zip(controls.iter_mut())
        .map(|((addr, iov), control)| MMsgHdr::new_with_addr(addr, iov, control))
        .collect();
    rustix::net::sendmmsg(socket, &mut msgs, SendFlags::DONTWAIT)
}

/// Elsewhere, one `sendto` per datagram.
#[cfg(not(target_os = "linux"))]
fn send(
    socket: &tokio::net::UdpSocket,
    datagrams: &[&Queued],
    stats: &SendStats,
    _gso: &Cell<bool>,
) {
    for q in datagrams {
        stats.calls.fetch_add(1, Ordering::Relaxed);
        match socket.try_send_to(&q.data, q.to) {
            Ok(_) => stats.datagrams.fetch_add(1, Ordering::Relaxed),
            Err(_) => stats.dropped.fetch_add(1, Ordering::Relaxed),
        };
    }
}

#[cfg(all(test, target_os = "linux"))]
#[allow(
    clippy::indexing_slicing,
    clippy::expect_used,
    reason = "tests: a failed set-up should stop the test"
)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use tokio::net::UdpSocket;

    async fn receiver() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        rustix::net::sockopt::set_socket_recv_buffer_size(&s, 1 << 20).expect("buffer");
        s
    }

    /// Datagrams queued for twelve peers, more than one system call's
    /// batch, arrive whole and in order at each, in one flush. (Small
    /// datagrams, at most 100 a peer: every receive buffer holds them.)
    #[tokio::test]
    async fn a_flush_delivers_every_peers_datagrams_in_order() {
        let server = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        let local = server.local_addr().expect("addr");
        let outbox = Outbox::new(vec![(local, Arc::clone(&server))]);
        let stats = SendStats::default();
        let mut peers = Vec::new();
        for _ in 0..12 {
            peers.push(receiver().await);
        }
        let mut sent: Vec<Vec<Vec<u8>>> = vec![Vec::new(); peers.len()];
        for i in 0..1200u16 {
            let peer = usize::from(i) % peers.len();
            let mut d = vec![(i % 251) as u8; 20 + usize::from(i % 11) * 10];
            d[..2].copy_from_slice(&i.to_be_bytes());
            sent[peer].push(d.clone());
            let to = peers[peer].local_addr().expect("addr");
            outbox.push(local, to, d, &stats);
        }
        // Nothing leaves before the flush.
        let mut buf = vec![0u8; 2048];
        assert!(peers[0].try_recv(&mut buf).is_err());
        outbox.flush(&stats);
        assert_eq!(stats.datagrams.load(Ordering::Relaxed), 1200);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
        // 1 200 datagrams on one socket: two system calls, not 1 200.
        assert_eq!(stats.calls.load(Ordering::Relaxed), 2);
        for (socket, want) in peers.iter().zip(&sent) {
            for d in want {
                let n = socket.recv(&mut buf).await.expect("recv");
                assert_eq!(buf.get(..n), Some(&d[..]));
            }
        }
    }

    /// A datagram the kernel refuses (too large for UDP) is counted and
    /// skipped; the ones after it still go.
    #[tokio::test]
    async fn a_refused_datagram_does_not_stop_the_rest() {
        let server = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        let local = server.local_addr().expect("addr");
        let outbox = Outbox::new(vec![(local, Arc::clone(&server))]);
        let stats = SendStats::default();
        let a = receiver().await;
        let to = a.local_addr().expect("addr");
        outbox.push(local, to, b"first".to_vec(), &stats);
        outbox.push(local, to, vec![0u8; 70_000], &stats);
        outbox.push(local, to, b"third".to_vec(), &stats);
        outbox.flush(&stats);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(stats.datagrams.load(Ordering::Relaxed), 2);
        let mut buf = vec![0u8; 2048];
        let n = a.recv(&mut buf).await.expect("recv");
        assert_eq!(buf.get(..n), Some(&b"first"[..]));
        let n = a.recv(&mut buf).await.expect("recv");
        assert_eq!(buf.get(..n), Some(&b"third"[..]));
    }

    /// A frame's run of equal-sized datagrams (the last one shorter) to one
    /// peer goes out as one GSO send and arrives as the datagrams it was,
    /// in order, between another peer's datagrams.
    #[tokio::test]
    async fn a_frame_to_one_peer_goes_out_segmented_and_arrives_whole() {
        let server = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        let local = server.local_addr().expect("addr");
        let outbox = Outbox::new(vec![(local, Arc::clone(&server))]);
        let stats = SendStats::default();
        let (a, b) = (receiver().await, receiver().await);
        let (to_a, to_b) = (a.local_addr().expect("addr"), b.local_addr().expect("addr"));
        let mut want_a = Vec::new();
        for i in 0..11u8 {
            let len = if i == 10 { 300 } else { 1000 };
            let d = vec![i; len];
            want_a.push(d.clone());
            outbox.push(local, to_a, d, &stats);
        }
        outbox.push(local, to_b, b"between".to_vec(), &stats);
        outbox.push(local, to_a, vec![99; 1000], &stats);
        want_a.push(vec![99; 1000]);
        outbox.flush(&stats);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
        assert_eq!(stats.datagrams.load(Ordering::Relaxed), 13);
        // The 11 of the frame in one GSO send; the other two as singles.
        assert_eq!(stats.segmented.load(Ordering::Relaxed), 11);
        let mut buf = vec![0u8; 70_000];
        for d in &want_a {
            let n = a.recv(&mut buf).await.expect("recv");
            assert_eq!(buf.get(..n), Some(&d[..]));
        }
        let n = b.recv(&mut buf).await.expect("recv");
        assert_eq!(buf.get(..n), Some(&b"between"[..]));
    }

    /// Runs: the same destination, the first one's size, one shorter last.
    #[test]
    fn gso_runs_end_at_a_shorter_datagram_or_another_peer() {
        let to = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let q = |port, len| Queued {
            socket: 0,
            to: to(port),
            data: vec![0; len],
        };
        let list = [
            q(1, 100),
            q(1, 100),
            q(1, 40),
            q(1, 100),
            q(2, 100),
            q(2, 120),
        ];
        let refs: Vec<&Queued> = list.iter().collect();
        assert_eq!(gso_run(&refs), 3);
        assert_eq!(gso_run(&refs[3..]), 1);
        assert_eq!(gso_run(&refs[4..]), 1);
        // Bounded by bytes, then by the segment count.
        let many: Vec<Queued> = (0..100).map(|_| q(1, 1000)).collect();
        let refs: Vec<&Queued> = many.iter().collect();
        assert_eq!(gso_run(&refs), 60);
        let small: Vec<Queued> = (0..100).map(|_| q(1, 100)).collect();
        let refs: Vec<&Queued> = small.iter().collect();
        assert_eq!(gso_run(&refs), GSO_SEGMENTS);
    }

    /// The queue is bounded: reaching the limit sends what is queued.
    #[tokio::test]
    async fn a_full_queue_flushes_by_itself() {
        let server = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        let local = server.local_addr().expect("addr");
        let outbox = Outbox::new(vec![(local, Arc::clone(&server))]);
        let stats = SendStats::default();
        let a = receiver().await;
        let to = a.local_addr().expect("addr");
        for _ in 0..MAX_QUEUED {
            outbox.push(local, to, vec![7u8; 10], &stats);
        }
        assert_eq!(stats.datagrams.load(Ordering::Relaxed), MAX_QUEUED as u64);
        assert!(outbox.queue.borrow().is_empty());
    }
}
