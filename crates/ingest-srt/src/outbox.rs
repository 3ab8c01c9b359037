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
    loop {
        match socket.try_io(tokio::io::Interest::WRITABLE, || {
            sendmmsg(socket, outbox, from)
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

/// One `sendmmsg` of up to [`BATCH`] packets from `from` on: how many the
/// kernel took.
#[cfg(target_os = "linux")]
fn sendmmsg(socket: &UdpSocket, outbox: &Outbox, from: usize) -> io::Result<usize> {
    use rustix::net::addr::SocketAddrArg;
    use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};

    let batch: Vec<(&[u8], SocketAddr)> = outbox.datagrams(from).take(BATCH).collect();
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
