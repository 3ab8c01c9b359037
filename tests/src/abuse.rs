//! Hostile peers for the chaos tests: garbage, truncated handshakes and
//! oversized messages, over TCP and UDP, each from its own socket so the
//! server's log lines about it can be told apart (by the peer's port).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// What the server did with one hostile TCP connection.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What was sent (`rtmp garbage`, …).
    pub what: String,
    /// The connection's local address: the peer the server logs.
    pub local: SocketAddr,
    /// How long after the payload the server closed it; `None`: still open at the deadline.
    pub closed_after: Option<Duration>,
    /// The first bytes the server answered (up to 256).
    pub answer: Vec<u8>,
}

/// Bytes that no protocol starts with: a fixed pseudo-random sequence.
pub fn garbage(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9E37_79B9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Never 3 (the RTMP version), 0x16 (a TLS handshake record) or a letter.
            match (x >> 24) as u8 {
                3 | 0x16 | b'A'..=b'Z' | b'a'..=b'z' => 0xFF,
                b => b,
            }
        })
        .collect()
}

/// RTMP C0 and the first half of C1, then nothing.
pub fn rtmp_truncated_handshake() -> Vec<u8> {
    let mut v = vec![3u8];
    v.extend(std::iter::repeat_n(0x5A, 700));
    v
}

/// The start of a TLS ClientHello record announcing 512 bytes, of which
/// only 32 come.
pub fn tls_truncated_hello() -> Vec<u8> {
    let mut v = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03,
    ];
    v.extend(std::iter::repeat_n(0x11, 21));
    v
}

/// A TLS record header announcing 65 535 bytes (over the 16 KiB + 2 KiB
/// a record may hold), followed by 64 KiB.
pub fn tls_oversized_record() -> Vec<u8> {
    let mut v = vec![0x16, 0x03, 0x03, 0xFF, 0xFF];
    v.extend(std::iter::repeat_n(0x22, 64 * 1024));
    v
}

/// A request line and one header of `protocol` (`HTTP/1.1`, `RTSP/1.0`),
/// without the blank line that ends the head.
pub fn truncated_head(method_and_uri: &str, protocol: &str) -> Vec<u8> {
    format!("{method_and_uri} {protocol}\r\nCSeq: 1\r\nHost: 127.0.0.1\r\n").into_bytes()
}

/// A request head whose one header is 1 MiB long.
pub fn oversized_head(method_and_uri: &str, protocol: &str) -> Vec<u8> {
    let mut v = format!("{method_and_uri} {protocol}\r\nCSeq: 1\r\nX-Big: ").into_bytes();
    v.extend(std::iter::repeat_n(b'a', 1 << 20));
    v.extend_from_slice(b"\r\n\r\n");
    v
}

/// Connects to `addr` and sends `payload` (ignoring a write the server cut
/// short); then reads until the server closes the connection or `limit`
/// passes.
pub fn tcp(what: &str, addr: SocketAddr, payload: &[u8], limit: Duration) -> Outcome {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{what}: connect {addr}: {e}"));
    let local = s.local_addr().expect("local address");
    let _ = s.write_all(payload);
    read_to_close(what, s, local, limit, Vec::new())
}

/// RTMP: a complete handshake, then a chunk announcing a 16 MiB − 1
/// message (over every sane `max_message_len`) and its first bytes.
pub fn rtmp_oversized_message(addr: SocketAddr, limit: Duration) -> Outcome {
    let what = "rtmp oversized message";
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{what}: connect {addr}: {e}"));
    let local = s.local_addr().expect("local address");
    let mut c0c1 = vec![3u8];
    c0c1.extend(std::iter::repeat_n(0u8, 1536));
    let _ = s.write_all(&c0c1);
    // S0 S1 S2.
    let mut answer = vec![0u8; 1 + 2 * 1536];
    let _ = s.set_read_timeout(Some(limit));
    if s.read_exact(&mut answer).is_ok() {
        // C2 echoes S1.
        let _ = s.write_all(&answer[1..1537]);
        // fmt 0, chunk stream 3; timestamp 0; length 0xFFFFFF; type 20 (AMF0 command); stream 0.
        let mut chunk = vec![0x03, 0, 0, 0, 0xFF, 0xFF, 0xFF, 20, 0, 0, 0, 0];
        chunk.extend(std::iter::repeat_n(0x05, 128));
        let _ = s.write_all(&chunk);
    }
    read_to_close(what, s, local, limit, answer)
}

fn read_to_close(
    what: &str,
    mut s: TcpStream,
    local: SocketAddr,
    limit: Duration,
    mut answer: Vec<u8>,
) -> Outcome {
    let sent = Instant::now();
    let deadline = sent + limit;
    let mut buf = [0u8; 4096];
    let closed_after = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break None;
        }
        let _ = s.set_read_timeout(Some(left));
        match s.read(&mut buf) {
            Ok(0) => break Some(sent.elapsed()),
            Ok(n) => {
                let room = 256usize.saturating_sub(answer.len()).min(n);
                answer.extend_from_slice(&buf[..room]);
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue;
            }
            // Reset: closed without reading the rest of what was sent.
            Err(_) => break Some(sent.elapsed()),
        }
    };
    Outcome {
        what: what.to_string(),
        local,
        closed_after,
        answer,
    }
}

/// Sends `count` garbage datagrams of 1 to 1 500 bytes, then each of
/// `extra` (truncated handshakes, oversized datagrams), to `addr` from one
/// socket; returns that socket's address.
pub fn udp(addr: SocketAddr, count: usize, extra: &[Vec<u8>]) -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
    let junk = garbage(1500 + count);
    for i in 0..count {
        let len = 1 + (i * 7919) % 1500;
        let _ = s.send_to(&junk[i..i + len], addr);
        if i % 100 == 99 {
            // Paced a little: junk, not a flood the kernel drops.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    for d in extra {
        let _ = s.send_to(d, addr);
    }
    s.local_addr().expect("local address")
}

/// An SRT control packet (handshake type) cut after its header and 8 bytes.
pub fn srt_truncated_handshake() -> Vec<u8> {
    let mut v = vec![0x80, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    v.extend_from_slice(&[0, 0, 0, 5, 0, 0, 0, 2]);
    v
}

/// A STUN binding request header announcing 100 bytes of attributes, with 4.
pub fn stun_truncated_request() -> Vec<u8> {
    let mut v = vec![0x00, 0x01, 0x00, 0x64, 0x21, 0x12, 0xA4, 0x42];
    v.extend(std::iter::repeat_n(0x33, 12));
    v.extend_from_slice(&[0x00, 0x06, 0x00, 0x20]);
    v
}

/// A 65 000-byte datagram (loopback carries it whole).
pub fn oversized_datagram() -> Vec<u8> {
    garbage(65_000)
}
