//! Sending a reader's datagrams in as few system calls as the kernel takes.
//!
//! With one `sendto` per RTP datagram per reader, a few hundred UDP readers
//! of a 2 Mbit/s stream spent the server's time in system-call entry and
//! fell behind live; on Linux a reader's datagrams (a frame's, or the few
//! frames gathered before a flush) go out in one `sendmmsg` instead. Where
//! the kernel takes only part of a batch (the socket buffer filled), the
//! rest is sent from the datagram where it stopped once the socket is
//! writable again. A datagram the kernel refuses (an unreachable address, a
//! size it rejects) is skipped and reported, as a failed `sendto` was: it
//! concerns this reader's destination only, and the rest of the batch
//! still goes.

use std::io;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use tokio::net::UdpSocket;

/// The most datagrams handed to one system call (the kernel takes at most
/// 1024; a flush rarely holds more than a few dozen).
#[cfg(target_os = "linux")]
const BATCH: usize = 256;

/// Sends each `(port, datagram)` to `ip` at that port from `socket`, in
/// order; `failed` is told of each datagram the kernel refused, which is
/// then skipped. Returns the bytes sent.
pub(crate) async fn send_all(
    socket: &UdpSocket,
    ip: IpAddr,
    datagrams: &[(u16, Bytes)],
    mut failed: impl FnMut(SocketAddr, &io::Error),
) -> usize {
    let mut sent = 0;
    let mut at = 0;
    while let Some(rest) = datagrams.get(at..).filter(|r| !r.is_empty()) {
        match send_some(socket, ip, rest).await {
            Ok((n, bytes)) => {
                at += n;
                sent += bytes;
            }
            Err(e) => {
                if let Some((port, _)) = rest.first() {
                    failed(SocketAddr::new(ip, *port), &e);
                }
                at += 1;
            }
        }
    }
    sent
}

/// Sends a prefix of `datagrams` (at least one, unless an error is
/// returned, which concerns the first), waiting while the socket's buffer
/// is full: how many were sent and their bytes.
#[cfg(target_os = "linux")]
async fn send_some(
    socket: &UdpSocket,
    ip: IpAddr,
    datagrams: &[(u16, Bytes)],
) -> io::Result<(usize, usize)> {
    let batch = datagrams.get(..BATCH).unwrap_or(datagrams);
    loop {
        match socket.try_io(tokio::io::Interest::WRITABLE, || {
            sendmmsg(socket, ip, batch)
        }) {
            // The kernel reports an error only when the first datagram
            // failed; zero sent would otherwise loop forever.
            Ok(0) => return Err(io::Error::other("no datagram sent")),
            Ok(n) => {
                let bytes = batch.iter().take(n).map(|(_, d)| d.len()).sum();
                return Ok((n, bytes));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket.writable().await?,
            Err(e) => return Err(e),
        }
    }
}

/// One `sendmmsg` of `datagrams` to `ip`: how many the kernel took.
#[cfg(target_os = "linux")]
fn sendmmsg(socket: &UdpSocket, ip: IpAddr, datagrams: &[(u16, Bytes)]) -> io::Result<usize> {
    use rustix::net::addr::SocketAddrArg;
    use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};

    let addrs: Vec<SocketAddrAny> = datagrams
        .iter()
        .map(|(port, _)| SocketAddr::new(ip, *port).as_any())
        .collect();
    let iovs: Vec<[io::IoSlice<'_>; 1]> = datagrams
        .iter()
        .map(|(_, d)| [io::IoSlice::new(d)])
        .collect();
    let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> =
        datagrams.iter().map(|_| Default::default()).collect();
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

/// Elsewhere, one `sendto` per datagram.
#[cfg(not(target_os = "linux"))]
async fn send_some(
    socket: &UdpSocket,
    ip: IpAddr,
    datagrams: &[(u16, Bytes)],
) -> io::Result<(usize, usize)> {
    let Some((port, data)) = datagrams.first() else {
        return Ok((0, 0));
    };
    let n = socket.send_to(data, SocketAddr::new(ip, *port)).await?;
    Ok((1, n))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A receiving socket with room for every datagram a test sends (the
    /// kernel drops what does not fit, and a test would wait for it).
    async fn receiver() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        rustix::net::sockopt::set_socket_recv_buffer_size(&s, 1 << 20).expect("buffer");
        s
    }

    /// Every datagram of a batch arrives, whole and in order, at the port
    /// it was meant for, including batches longer than one system call
    /// takes and a datagram to a second port in between.
    #[tokio::test]
    async fn batches_arrive_whole_in_order() {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let (a, b) = (receiver().await, receiver().await);
        let (pa, pb) = (
            a.local_addr().expect("addr").port(),
            b.local_addr().expect("addr").port(),
        );
        let mut datagrams = Vec::new();
        for i in 0..400u16 {
            let port = if i == 300 { pb } else { pa };
            let len = 20 + usize::from(i % 7) * 100;
            let mut d = vec![(i % 251) as u8; len];
            d[..2].copy_from_slice(&i.to_be_bytes());
            datagrams.push((port, Bytes::from(d)));
        }
        let total: usize = datagrams.iter().map(|(_, d)| d.len()).sum();
        let mut errors = 0;
        let sent = send_all(&server, IpAddr::from([127, 0, 0, 1]), &datagrams, |_, _| {
            errors += 1
        })
        .await;
        assert_eq!(errors, 0);
        assert_eq!(sent, total);
        let mut buf = vec![0u8; 2048];
        for (port, want) in &datagrams {
            let sock = if *port == pb { &b } else { &a };
            let n = sock.recv(&mut buf).await.expect("recv");
            assert_eq!(&buf[..n], &want[..]);
        }
    }

    /// A datagram the kernel refuses (too large for UDP) is reported and
    /// skipped; the ones after it in the batch still arrive.
    #[tokio::test]
    async fn a_refused_datagram_does_not_stop_the_rest() {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let a = receiver().await;
        let port = a.local_addr().expect("addr").port();
        let datagrams = vec![
            (port, Bytes::from_static(b"first")),
            (port, Bytes::from(vec![0u8; 70_000])),
            (port, Bytes::from_static(b"third")),
        ];
        let mut refused = Vec::new();
        let sent = send_all(
            &server,
            IpAddr::from([127, 0, 0, 1]),
            &datagrams,
            |to, _| refused.push(to.port()),
        )
        .await;
        assert_eq!(refused, vec![port]);
        assert_eq!(sent, 10);
        let mut buf = vec![0u8; 2048];
        let n = a.recv(&mut buf).await.expect("recv");
        assert_eq!(&buf[..n], b"first");
        let n = a.recv(&mut buf).await.expect("recv");
        assert_eq!(&buf[..n], b"third");
    }
}
