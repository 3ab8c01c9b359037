//! A connection's outgoing packets, gathered per wake-up and sent in as few
//! system calls as the kernel takes.
//!
//! A reader's connection wakes once per frame or so with a dozen data
//! packets to send (a 4 Mbit/s stream's frame is about 13 packets of 1316
//! bytes), plus the ACK2s and keep-alives of its timers. One `sendto` each
//! made the system-call entry a large share of a reader's cost; on Linux
//! the packets of one wake-up go out in one `sendmmsg` instead. Where the
//! kernel takes only part of a batch (the socket buffer filled), the rest
//! goes from the packet where it stopped once the socket is writable. A
//! packet the kernel refuses (an unreachable address, a size it rejects) is
//! skipped and reported, as a failed `sendto` was, and the rest still goes.
//!
//! A reader's data packets of one wake-up are equal-sized but the last (a
//! frame cut into 1316-byte messages), all to one peer: on Linux such a run
//! goes out as one `sendmsg` with `UDP_SEGMENT` (GSO), which takes the
//! kernel's IP and UDP send path once for the run instead of once per
//! packet; the kernel cuts it into the same datagrams. Where the kernel or
//! the route refuses GSO, it is turned off for the process and the packets
//! go one datagram each, as before.

// This module writes what the network reads: no panics on it.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::io;
use std::net::SocketAddr;

use srt_protocol::packet::Packet;
use tokio::net::UdpSocket;
use tracing::debug;

/// The most packets handed to one system call (the kernel takes at most
/// 1024 in one `sendmmsg`).
#[cfg(target_os = "linux")]
const BATCH: usize = 256;
/// The most datagrams in one GSO send (the kernel's `UDP_MAX_SEGMENTS` is
/// 64 on older kernels).
#[cfg(target_os = "linux")]
const GSO_SEGMENTS: usize = 64;
/// The most bytes in one GSO send (an IP packet's limit, with headroom).
#[cfg(target_os = "linux")]
const GSO_BYTES: usize = 60_000;
/// Whether GSO is still used: cleared for the process when the kernel
/// refuses it once.
#[cfg(target_os = "linux")]
static GSO: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Packets serialized back to back, waiting to be sent.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    bytes: Vec<u8>,
    /// Each packet's end in `bytes`, and where it goes.
    packets: Vec<(usize, SocketAddr)>,
}

impl Outbox {
    /// Adds `packet`, for `to`.
    pub(crate) fn push(&mut self, packet: &Packet, to: SocketAddr) {
        packet.serialize(&mut self.bytes);
        self.packets.push((self.bytes.len(), to));
    }

    /// How many packets wait.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.packets.len()
    }

    /// The packets from `from` on, as `(bytes, destination)`.
    fn datagrams(&self, from: usize) -> impl Iterator<Item = (&[u8], SocketAddr)> {
        let starts = std::iter::once(0).chain(self.packets.iter().map(|(end, _)| *end));
        starts
            .zip(self.packets.iter())
            .skip(from)
            .map(|(start, (end, to))| (self.bytes.get(start..*end).unwrap_or_default(), *to))
    }

    /// Where packet `i` starts in `bytes`.
    #[cfg(target_os = "linux")]
    fn start(&self, i: usize) -> usize {
        match i.checked_sub(1) {
            Some(before) => self.packets.get(before).map_or(0, |(end, _)| *end),
            None => 0,
        }
    }

    /// How many packets from `from` on one GSO send carries: the
    /// consecutive ones to the first one's destination that have its size,
    /// and one shorter last one. Below 2 there is nothing to gain.
    #[cfg(target_os = "linux")]
    fn gso_run(&self, from: usize) -> usize {
        if !GSO.load(std::sync::atomic::Ordering::Relaxed) {
            return 1;
        }
        let mut packets = self.datagrams(from);
        let Some((first, to)) = packets.next() else {
            return 0;
        };
        let size = first.len();
        if size == 0 || size > usize::from(u16::MAX) {
            return 1;
        }
        let (mut n, mut bytes) = (1, size);
        for (data, next_to) in packets {
            let len = data.len();
            if n == GSO_SEGMENTS
                || next_to != to
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

    /// How many packets from `from` on go one datagram each before the
    /// next GSO run (at most [`BATCH`]).
    #[cfg(target_os = "linux")]
    fn singles(&self, from: usize) -> usize {
        let mut n = 0;
        while n < BATCH && from + n < self.packets.len() && self.gso_run(from + n) < 2 {
            n += 1;
        }
        n
    }

    /// Sends every packet, in order, and empties the outbox. A packet the
    /// kernel refuses is logged and skipped.
    pub(crate) async fn flush(&mut self, socket: &UdpSocket) {
        let mut at = 0;
        while at < self.packets.len() {
            match send_some(socket, self, at).await {
                Ok(n) => at += n,
                Err(e) => {
                    if let Some((_, to)) = self.packets.get(at) {
                        debug!(peer = %to, "srt: sending a packet failed: {e}");
                    }
                    at += 1;
                }
            }
        }
        self.bytes.clear();
        self.packets.clear();
    }
}

/// Sends packets of `outbox` from `from` on (at least one, unless an error
/// is returned, which concerns that one), waiting while the socket's
/// buffer is full: how many were sent.
#[cfg(target_os = "linux")]
async fn send_some(socket: &UdpSocket, outbox: &Outbox, from: usize) -> io::Result<usize> {
    let run = outbox.gso_run(from);
    if run >= 2 {
        let sent = loop {
            match socket.try_io(tokio::io::Interest::WRITABLE, || {
                send_gso(socket, outbox, from, run)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket.writable().await?,
                other => break other,
            }
        };
        match sent {
            Ok(_) => return Ok(run),
            // No GSO on this kernel or route (no checksum offload: EIO):
            // one datagram each from here on, starting with this run.
            Err(e) if gso_refused(&e) => {
                debug!("srt: the kernel refused UDP GSO ({e}); sending one datagram per packet");
                GSO.store(false, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => return Err(e),
        }
    }
    let count = outbox.singles(from).max(1);
    loop {
        match socket.try_io(tokio::io::Interest::WRITABLE, || {
            sendmmsg(socket, outbox, from, count)
        }) {
            // The kernel reports an error only when the first packet failed;
            // zero sent would otherwise loop for ever.
            Ok(0) => return Err(io::Error::other("no packet sent")),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket.writable().await?,
            Err(e) => return Err(e),
        }
    }
}

/// Whether an error of a GSO send means the kernel or the route does not
/// do GSO (rather than concerning these packets).
#[cfg(target_os = "linux")]
fn gso_refused(e: &io::Error) -> bool {
    use nix::errno::Errno;
    e.raw_os_error().is_some_and(|code| {
        [
            Errno::EIO,
            Errno::EINVAL,
            Errno::ENOPROTOOPT,
            Errno::EOPNOTSUPP,
        ]
        .iter()
        .any(|r| *r as i32 == code)
    })
}

/// One `sendmsg` of the `run` packets from `from` on (see
/// [`Outbox::gso_run`]), contiguous in the outbox, with `UDP_SEGMENT` set
/// to the first one's size.
#[cfg(target_os = "linux")]
fn send_gso(socket: &UdpSocket, outbox: &Outbox, from: usize, run: usize) -> io::Result<usize> {
    use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrStorage, sendmsg};
    use std::os::fd::AsRawFd;

    let invalid = || io::Error::from(io::ErrorKind::InvalidInput);
    let (first, to) = outbox.datagrams(from).next().ok_or_else(invalid)?;
    let size = u16::try_from(first.len()).map_err(|_| invalid())?;
    let end = outbox.start(from + run);
    let bytes = outbox
        .bytes
        .get(outbox.start(from)..end)
        .ok_or_else(invalid)?;
    let to = SockaddrStorage::from(to);
    Ok(sendmsg(
        socket.as_raw_fd(),
        &[io::IoSlice::new(bytes)],
        &[ControlMessage::UdpGsoSegments(&size)],
        MsgFlags::MSG_DONTWAIT,
        Some(&to),
    )?)
}

/// One `sendmmsg` of `count` packets (at most [`BATCH`]) from `from` on:
/// how many the kernel took.
#[cfg(target_os = "linux")]
fn sendmmsg(socket: &UdpSocket, outbox: &Outbox, from: usize, count: usize) -> io::Result<usize> {
    use rustix::net::addr::SocketAddrArg;
    use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};

    let batch: Vec<(&[u8], SocketAddr)> = outbox.datagrams(from).take(count.min(BATCH)).collect();
    let addrs: Vec<SocketAddrAny> = batch.iter().map(|(_, to)| to.as_any()).collect();
    let iovs: Vec<[io::IoSlice<'_>; 1]> =
        batch.iter().map(|(d, _)| [io::IoSlice::new(d)]).collect();
    let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> =
        batch.iter().map(|_| Default::default()).collect();
    let mut msgs: Vec<MMsgHdr<'_>> = addrs
        .iter()
        .zip(&iovs)
        .zip(controls.iter_mut())
        .map(|((addr, iov), control)| MMsgHdr::new_with_addr(addr, iov, control))
        .collect();
    Ok(rustix::net::sendmmsg(
        socket,
        &mut msgs,
        SendFlags::empty(),
    )?)
}

/// Elsewhere, one `sendto` per packet.
#[cfg(not(target_os = "linux"))]
async fn send_some(socket: &UdpSocket, outbox: &Outbox, from: usize) -> io::Result<usize> {
    match outbox.datagrams(from).next() {
        Some((data, to)) => socket.send_to(data, to).await.map(|_| 1),
        None => Ok(0),
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use srt_protocol::packet::{
        DataEncryption, DataPacket, MsgNumber, PacketLocation, SeqNumber, SocketId, TimeStamp,
    };

    fn data(seq: u32, len: usize) -> Packet {
        Packet::Data(DataPacket {
            seq_number: SeqNumber::new_truncate(seq),
            message_loc: PacketLocation::ONLY,
            in_order_delivery: false,
            encryption: DataEncryption::None,
            retransmitted: false,
            message_number: MsgNumber::new_truncate(seq),
            timestamp: TimeStamp::from_micros(seq),
            dest_sockid: SocketId(7),
            payload: Bytes::from(vec![(seq % 251) as u8; len]),
        })
    }

    async fn receiver() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        // Room for every packet a test sends: the kernel drops what does not fit.
        socket2::SockRef::from(&s)
            .set_recv_buffer_size(4 << 20)
            .expect("buffer");
        s
    }

    /// Every packet of a flush arrives whole and in order at its
    /// destination, batches longer than one system call takes included,
    /// and the outbox is empty afterwards.
    #[tokio::test]
    async fn a_flush_delivers_every_packet_in_order() {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let (a, b) = (receiver().await, receiver().await);
        let (to_a, to_b) = (a.local_addr().expect("a"), b.local_addr().expect("b"));
        let mut outbox = Outbox::default();
        for seq in 0..600u32 {
            let to = if seq == 300 { to_b } else { to_a };
            outbox.push(&data(seq, 100 + (seq as usize % 7) * 200), to);
        }
        assert_eq!(outbox.len(), 600);
        outbox.flush(&server).await;
        assert_eq!(outbox.len(), 0);
        let mut buf = [0u8; 2000];
        for seq in (0..600u32).filter(|s| *s != 300) {
            let n = a.recv(&mut buf).await.expect("recv");
            let packet = Packet::parse(&mut &buf[..n], false).expect("parse");
            assert_eq!(packet, data(seq, 100 + (seq as usize % 7) * 200));
        }
        let n = b.recv(&mut buf).await.expect("recv");
        assert_eq!(
            Packet::parse(&mut &buf[..n], false).expect("parse"),
            data(300, 100 + 300 % 7 * 200)
        );
    }

    /// A frame's run of equal-sized packets and its shorter last one, to
    /// one peer (what goes out with GSO), arrives as the same datagrams, in
    /// order, with another peer's packet and a run longer than one GSO send
    /// between them.
    #[tokio::test]
    async fn a_run_of_equal_packets_arrives_as_separate_datagrams() {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let (a, b) = (receiver().await, receiver().await);
        let (to_a, to_b) = (a.local_addr().expect("a"), b.local_addr().expect("b"));
        let size = |seq: u32| if seq % 100 == 99 { 500 } else { 1316 };
        let mut outbox = Outbox::default();
        for seq in 0..300u32 {
            outbox.push(&data(seq, size(seq)), to_a);
            if seq == 150 {
                outbox.push(&data(10_000, 1316), to_b);
            }
        }
        outbox.flush(&server).await;
        let mut buf = [0u8; 2000];
        for seq in 0..300u32 {
            let n = a.recv(&mut buf).await.expect("recv");
            let packet = Packet::parse(&mut &buf[..n], false).expect("parse");
            assert_eq!(packet, data(seq, size(seq)), "packet {seq}");
        }
        let n = b.recv(&mut buf).await.expect("recv");
        assert_eq!(
            Packet::parse(&mut &buf[..n], false).expect("parse"),
            data(10_000, 1316)
        );
    }

    /// A packet the kernel refuses (too large for a datagram) is skipped;
    /// the packets after it still go.
    #[tokio::test]
    async fn a_refused_packet_is_skipped_and_the_rest_goes() {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let a = receiver().await;
        let to = a.local_addr().expect("a");
        let mut outbox = Outbox::default();
        outbox.push(&data(1, 1316), to);
        outbox.push(&data(2, 70_000), to);
        outbox.push(&data(3, 1316), to);
        outbox.flush(&server).await;
        let mut buf = [0u8; 2000];
        for seq in [1, 3] {
            let n = a.recv(&mut buf).await.expect("recv");
            assert_eq!(
                Packet::parse(&mut &buf[..n], false).expect("parse"),
                data(seq, 1316)
            );
        }
    }
}
