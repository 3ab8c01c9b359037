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
//!
//! Within that `sendmmsg`, a run of datagrams to one port that are all of
//! the batch's largest size but the last (a frame's FU-A fragments) is one
//! message with UDP GSO (a `UDP_SEGMENT` control message): the kernel takes
//! it through its UDP/IP send path once and splits it into the same
//! datagrams. When the kernel refuses GSO (`EIO`: no checksum offload on
//! the route's device; `EINVAL`: a segment over the route's MTU), it is
//! turned off for the listener with one log line and the batch goes again
//! one datagram per message; `[rtsp] udp_gso = false` turns it off from the
//! start (a kernel before 4.18 ignores the control message and would send
//! the run as one oversized datagram).

// Sends to addresses readers gave: no indexing, unwrap, expect or panic
// (RELIABILITY.md "Lints"); the unit tests are exempt.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

use std::io;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use tokio::net::UdpSocket;

#[cfg(target_os = "linux")]
use std::ops::Range;
use std::sync::atomic::AtomicBool;
#[cfg(target_os = "linux")]
use std::sync::atomic::Ordering;

/// The most datagrams one GSO message carries (the kernel's
/// `UDP_MAX_SEGMENTS` is 64 on older kernels).
#[cfg(target_os = "linux")]
const GSO_SEGMENTS: usize = 64;

/// The most bytes one GSO message carries (one IP datagram's payload).
#[cfg(target_os = "linux")]
const GSO_BYTES: usize = 65_000;

/// The most datagrams handed to one system call (the kernel takes at most
/// 1024; a flush rarely holds more than a few dozen).
#[cfg(target_os = "linux")]
const BATCH: usize = 256;

/// Sends each `(port, datagram)` to `ip` at that port from `socket`, in
/// order, with UDP GSO while `gso` is set (the kernel's refusal clears it);
/// `failed` is told of each datagram the kernel refused, which is then
/// skipped. Returns the bytes sent.
pub(crate) async fn send_all(
    socket: &UdpSocket,
    ip: IpAddr,
    datagrams: &[(u16, Bytes)],
    gso: &AtomicBool,
    mut failed: impl FnMut(SocketAddr, &io::Error),
) -> usize {
    let mut sent = 0;
    let mut at = 0;
    while let Some(rest) = datagrams.get(at..).filter(|r| !r.is_empty()) {
        match send_some(socket, ip, rest, gso).await {
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
    allowed: &AtomicBool,
) -> io::Result<(usize, usize)> {
    send_some_with(socket, ip, datagrams, allowed, &kernel_send).await
}

/// One system call for a batch: GSO messages of `runs`, or one message
/// per datagram without them; how many datagrams the kernel took.
#[cfg(target_os = "linux")]
fn kernel_send(
    socket: &UdpSocket,
    ip: IpAddr,
    batch: &[(u16, Bytes)],
    runs: Option<&[Range<usize>]>,
) -> io::Result<usize> {
    match runs {
        Some(runs) => sendmmsg_gso(socket, ip, batch, runs),
        None => sendmmsg(socket, ip, batch),
    }
}

/// [`send_some`] through `send` (the kernel, or in tests a kernel that
/// refuses GSO as one without checksum offload does).
#[cfg(target_os = "linux")]
async fn send_some_with(
    socket: &UdpSocket,
    ip: IpAddr,
    datagrams: &[(u16, Bytes)],
    allowed: &AtomicBool,
    send: &impl Fn(&UdpSocket, IpAddr, &[(u16, Bytes)], Option<&[Range<usize>]>) -> io::Result<usize>,
) -> io::Result<(usize, usize)> {
    let batch = datagrams.get(..BATCH).unwrap_or(datagrams);
    loop {
        let runs = if allowed.load(Ordering::Relaxed) {
            runs(batch)
        } else {
            Vec::new()
        };
        // Worth it, and only possible, with a run of several datagrams.
        let gso = runs.iter().any(|r| r.len() > 1);
        let sent = socket.try_io(tokio::io::Interest::WRITABLE, || {
            send(socket, ip, batch, gso.then_some(runs.as_slice()))
        });
        match sent {
            // The kernel reports an error only when the first datagram
            // failed; zero sent would otherwise loop forever.
            Ok(0) => return Err(io::Error::other("no datagram sent")),
            Ok(n) => {
                let bytes = batch.iter().take(n).map(|(_, d)| d.len()).sum();
                return Ok((n, bytes));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket.writable().await?,
            // Refused for the first message, which GSO made of several
            // datagrams: GSO is off from now on and the batch goes again.
            Err(e) if gso && refused_gso(&e, &runs) => {
                if allowed.swap(false, Ordering::Relaxed) {
                    tracing::warn!(
                        "rtsp: UDP GSO refused by the kernel ({e}); UDP readers are sent one datagram per message from now on"
                    );
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether the error of a GSO `sendmmsg` of `runs` is the kernel's
/// refusal of GSO: an error the kernel gives for GSO (see the module docs)
/// for a first message that GSO made of several datagrams. Any other error
/// concerns the first datagram, which is then skipped as it would be
/// without GSO.
#[cfg(target_os = "linux")]
fn refused_gso(e: &io::Error, runs: &[Range<usize>]) -> bool {
    runs.first().is_some_and(|r| r.len() > 1) && gso_errno(e)
}

/// Whether an error is one the kernel gives for a GSO message it refuses.
#[cfg(target_os = "linux")]
fn gso_errno(e: &io::Error) -> bool {
    use rustix::io::Errno;
    [Errno::IO, Errno::INVAL]
        .iter()
        .any(|refused| e.raw_os_error() == Some(refused.raw_os_error()))
}

/// The messages a GSO `sendmmsg` of `datagrams` is made of, as ranges of
/// datagrams: a run goes to one port, and every datagram of it but the last
/// has the batch's largest size `s` (the last may be shorter), within the
/// kernel's limits; every other datagram is a message of its own. The
/// kernel splits a message longer than `s` into datagrams of `s` bytes and
/// a shorter last one, which is then exactly the run.
#[cfg(target_os = "linux")]
fn runs(datagrams: &[(u16, Bytes)]) -> Vec<Range<usize>> {
    let s = datagrams.iter().map(|(_, d)| d.len()).max().unwrap_or(0);
    let most = GSO_SEGMENTS.min(GSO_BYTES / s.max(1));
    let mut runs: Vec<Range<usize>> = Vec::new();
    let mut open = false;
    for (i, (port, d)) in datagrams.iter().enumerate() {
        let extend = open
            && runs.last().is_some_and(|r| {
                r.len() < most && datagrams.get(r.start).is_some_and(|(p, _)| p == port)
            });
        match runs.last_mut() {
            Some(r) if extend => r.end = i + 1,
            _ => runs.push(i..i + 1),
        }
        // Only a datagram of the full size may be followed in its message.
        open = d.len() == s;
    }
    runs
}

/// One `sendmmsg` of `datagrams` to `ip`, each of `runs` one message with
/// UDP GSO: how many datagrams the kernel took.
#[cfg(target_os = "linux")]
fn sendmmsg_gso(
    socket: &UdpSocket,
    ip: IpAddr,
    datagrams: &[(u16, Bytes)],
    runs: &[Range<usize>],
) -> io::Result<usize> {
    use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
    use std::os::fd::AsRawFd;

    let s = datagrams.iter().map(|(_, d)| d.len()).max().unwrap_or(0);
    let segment = u16::try_from(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let iovs: Vec<Vec<io::IoSlice<'_>>> = runs
        .iter()
        .map(|r| {
            datagrams
                .get(r.clone())
                .unwrap_or_default()
                .iter()
                .map(|(_, d)| io::IoSlice::new(d))
                .collect()
        })
        .collect();
    let addrs: Vec<Option<SockaddrStorage>> = runs
        .iter()
        .map(|r| {
            datagrams
                .get(r.start)
                .map(|(port, _)| SockaddrStorage::from(SocketAddr::new(ip, *port)))
        })
        .collect();
    let control = [ControlMessage::UdpGsoSegments(&segment)];
    let mut headers: MultiHeaders<SockaddrStorage> =
        MultiHeaders::preallocate(runs.len(), Some(nix::cmsg_space!(u16)));
    let messages = nix::sys::socket::sendmmsg(
        socket.as_raw_fd(),
        &mut headers,
        &iovs,
        &addrs,
        control,
        MsgFlags::empty(),
    )?
    .count();
    Ok(runs.iter().take(messages).map(Range::len).sum())
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
    _gso: &AtomicBool,
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
        let sent = send_all(
            &server,
            IpAddr::from([127, 0, 0, 1]),
            &datagrams,
            &AtomicBool::new(true),
            |_, _| errors += 1,
        )
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
            &AtomicBool::new(true),
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

    /// Runs: one port, every datagram but the last of the largest size, at
    /// most as many as the kernel takes; everything else alone.
    #[test]
    fn runs_are_full_sized_datagrams_to_one_port_and_a_last_one() {
        let d = |port: u16, len: usize| (port, Bytes::from(vec![0u8; len]));
        let batch = vec![
            d(1, 1412),
            d(1, 1412),
            d(1, 300), // ends the frame's run
            d(1, 1412),
            d(2, 1412), // another port
            d(2, 200),
            d(2, 1412), // a short one above cannot be followed
            d(1, 100),
        ];
        assert_eq!(runs(&batch), vec![0..3, 3..4, 4..6, 6..7, 7..8]);
        let long: Vec<_> = (0..100).map(|_| d(1, 1412)).collect();
        let most = GSO_BYTES / 1412;
        assert_eq!(runs(&long).first(), Some(&(0..most)));
        assert_eq!(runs(&long).iter().map(Range::len).sum::<usize>(), 100);
        // Too large to segment: every datagram alone.
        let huge = vec![d(1, 70_000), d(1, 70_000)];
        assert_eq!(runs(&huge), vec![0..1, 1..2]);
    }

    /// A refusal is only an `EIO` or `EINVAL` for a first message of
    /// several datagrams: the same errors for a message of one datagram,
    /// or other errors, concern that datagram.
    #[test]
    fn only_the_kernels_gso_errors_on_a_run_are_a_refusal() {
        use rustix::io::Errno;
        let err = |e: Errno| io::Error::from_raw_os_error(e.raw_os_error());
        assert!(refused_gso(&err(Errno::IO), &[0..3, 3..4]));
        assert!(refused_gso(&err(Errno::INVAL), &[0..2, 2..3]));
        assert!(!refused_gso(&err(Errno::IO), &[0..1, 1..3]));
        assert!(!refused_gso(&err(Errno::MSGSIZE), &[0..3, 3..4]));
        assert!(!refused_gso(&err(Errno::HOSTUNREACH), &[0..3, 3..4]));
        assert!(!refused_gso(&err(Errno::IO), &[]));
    }

    /// A kernel that refuses GSO (as one does without checksum offload on
    /// the route's device: `EIO`) turns GSO off at the first GSO message,
    /// once; the batch then goes out one datagram per message, every
    /// datagram whole and in order and none reported as failed, and later
    /// batches are never offered GSO again.
    #[tokio::test]
    async fn after_the_kernel_refuses_gso_datagrams_still_go_out() {
        use std::sync::atomic::AtomicUsize;
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let (video, audio) = (receiver().await, receiver().await);
        let (pv, pa) = (
            video.local_addr().expect("addr").port(),
            audio.local_addr().expect("addr").port(),
        );
        let gso_calls = AtomicUsize::new(0);
        let refusing = |socket: &UdpSocket,
                        ip: IpAddr,
                        batch: &[(u16, Bytes)],
                        runs: Option<&[Range<usize>]>| {
            if runs.is_some() {
                gso_calls.fetch_add(1, Ordering::Relaxed);
                return Err(io::Error::from_raw_os_error(
                    rustix::io::Errno::IO.raw_os_error(),
                ));
            }
            kernel_send(socket, ip, batch, None)
        };
        let frame = |n: &mut u16, fragments: usize, last: usize| {
            let mut out = Vec::new();
            for i in 0..=fragments {
                let len = if i == fragments { last } else { 1412 };
                let mut d = vec![(*n % 251) as u8; len];
                d[..2].copy_from_slice(&n.to_be_bytes());
                out.push((pv, Bytes::from(d)));
                *n += 1;
            }
            let mut a = vec![9u8; 210];
            a[..2].copy_from_slice(&n.to_be_bytes());
            out.push((pa, Bytes::from(a)));
            *n += 1;
            out
        };
        let mut n = 0u16;
        let gso = AtomicBool::new(true);
        let mut all = Vec::new();
        for (fragments, last) in [(8, 333), (5, 1000), (11, 17)] {
            let batch = frame(&mut n, fragments, last);
            assert!(runs(&batch).iter().any(|r| r.len() > 1));
            let mut at = 0;
            while at < batch.len() {
                let (sent, _) = send_some_with(
                    &server,
                    IpAddr::from([127, 0, 0, 1]),
                    &batch[at..],
                    &gso,
                    &refusing,
                )
                .await
                .expect("no datagram refused");
                at += sent;
            }
            all.extend(batch);
        }
        assert!(
            !gso.load(Ordering::Relaxed),
            "GSO still on after the refusal"
        );
        assert_eq!(
            gso_calls.load(Ordering::Relaxed),
            1,
            "GSO offered again after the refusal"
        );
        let mut buf = vec![0u8; 65_536];
        for (port, want) in &all {
            let sock = if *port == pa { &audio } else { &video };
            // Generous: a missing datagram fails the test rather than hang it.
            let got = tokio::time::timeout(std::time::Duration::from_secs(30), sock.recv(&mut buf))
                .await
                .expect("every datagram arrives")
                .expect("recv");
            assert_eq!(&buf[..got], &want[..]);
        }
    }

    /// Frames of equal-sized fragments and a shorter last one, with audio
    /// datagrams to another port between them, arrive as the datagrams they
    /// were (the kernel's GSO split them where they began), in order, and
    /// GSO stays on: the kernel took it.
    #[tokio::test]
    async fn gso_messages_arrive_as_the_datagrams_they_were() {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let (video, audio) = (receiver().await, receiver().await);
        let (pv, pa) = (
            video.local_addr().expect("addr").port(),
            audio.local_addr().expect("addr").port(),
        );
        let mut datagrams = Vec::new();
        let mut n = 0u16;
        for frame in 0..20usize {
            for i in 0..=(frame % 12) {
                let len = if i == frame % 12 {
                    100 + frame * 37
                } else {
                    1412
                };
                let mut d = vec![(n % 251) as u8; len];
                d[..2].copy_from_slice(&n.to_be_bytes());
                datagrams.push((pv, Bytes::from(d)));
                n += 1;
            }
            let mut a = vec![7u8; 200 + frame];
            a[..2].copy_from_slice(&n.to_be_bytes());
            datagrams.push((pa, Bytes::from(a)));
            n += 1;
        }
        assert!(runs(&datagrams).iter().any(|r| r.len() > 5));
        let total: usize = datagrams.iter().map(|(_, d)| d.len()).sum();
        let mut errors = 0;
        let gso = AtomicBool::new(true);
        let sent = send_all(
            &server,
            IpAddr::from([127, 0, 0, 1]),
            &datagrams,
            &gso,
            |_, _| errors += 1,
        )
        .await;
        assert_eq!((errors, sent), (0, total));
        assert!(
            gso.load(Ordering::Relaxed),
            "the kernel refused GSO on loopback"
        );
        let mut buf = vec![0u8; 65_536];
        for (port, want) in &datagrams {
            let sock = if *port == pa { &audio } else { &video };
            let got = sock.recv(&mut buf).await.expect("recv");
            assert_eq!(&buf[..got], &want[..]);
        }
    }
}
