//! `[rtsp] head_timeout_ms` through the binary: a connection that begins a
//! request and never finishes it (all at once, or a byte now and then,
//! which keeps the 60 s session timeout from ever firing) is closed at the
//! head timeout, with one log line naming the peer, while another client
//! on the same listener is answered.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tidewater_tests::{ServerCommand, loopback_config};

/// The head timeout configured for the test (the default is 10 s).
const HEAD_TIMEOUT: Duration = Duration::from_secs(3);
/// Generous: far below the 60 s session timeout, far above the head timeout
/// on a loaded machine.
const CLOSE_DEADLINE: Duration = Duration::from_secs(30);

/// Reads until the server closes the connection: how long after `since`,
/// and what came.
fn until_closed(stream: &mut TcpStream, since: Instant) -> (Duration, Vec<u8>) {
    stream
        .set_read_timeout(Some(CLOSE_DEADLINE))
        .expect("read timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (since.elapsed(), got),
            Ok(n) => got.extend_from_slice(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (since.elapsed(), got);
            }
            Err(e) => panic!(
                "not closed within {CLOSE_DEADLINE:?} ({e}); got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

fn options(rtsp: SocketAddr) -> String {
    let mut c = TcpStream::connect(rtsp).expect("connect");
    c.set_read_timeout(Some(CLOSE_DEADLINE))
        .expect("read timeout");
    c.write_all(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n")
        .expect("write");
    let mut buf = [0u8; 2048];
    let n = c.read(&mut buf).expect("an answer to OPTIONS");
    String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).to_string()
}

#[test]
fn an_incomplete_request_head_is_closed_at_the_head_timeout() {
    let mut server = ServerCommand::with_config(&loopback_config())
        .env(
            "TIDEWATER_RTSP__HEAD_TIMEOUT_MS",
            &HEAD_TIMEOUT.as_millis().to_string(),
        )
        .spawn();
    let rtsp = server.rtsp_addr();

    // One sends half a head at once, one trickles a byte a second.
    let mut silent = TcpStream::connect(rtsp).expect("connect");
    let silent_peer = silent.local_addr().expect("addr");
    let began = Instant::now();
    silent
        .write_all(b"DESCRIBE rtsp://127.0.0.1/live/x RTSP/1.0\r\nCSeq: 1\r\n")
        .expect("partial head");
    let mut trickle = TcpStream::connect(rtsp).expect("connect");
    let trickle_peer = trickle.local_addr().expect("addr");
    let trickle_began = Instant::now();
    let trickler = std::thread::spawn(move || {
        for b in b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX-Slow: yes" {
            if trickle.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        trickle
    });

    // Meanwhile the listener answers others.
    let answer = options(rtsp);
    assert!(answer.starts_with("RTSP/1.0 200"), "{answer}");

    let (after, got) = until_closed(&mut silent, began);
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert!(
        after >= HEAD_TIMEOUT,
        "closed after {after:?}, before the head timeout"
    );
    eprintln!("the silent connection was closed after {after:?}");

    // The trickler's server side is closed too: its writes fail or its read
    // sees the end, well before the 45 bytes (45 s) it would take.
    let mut trickle = trickler.join().expect("trickler");
    let (after, _) = until_closed(&mut trickle, trickle_began);
    assert!(
        after >= HEAD_TIMEOUT && after < CLOSE_DEADLINE,
        "trickler closed after {after:?}"
    );
    eprintln!("the trickling connection was closed after {after:?}");

    for peer in [silent_peer, trickle_peer] {
        let line = server
            .wait_for_line(&format!("peer {peer}: incomplete request"), CLOSE_DEADLINE)
            .unwrap_or_else(|| panic!("no head-timeout line for {peer}:\n{}", server.output()));
        assert!(line.contains("head_timeout_ms"), "{line}");
    }
    let lines = server
        .output()
        .lines()
        .filter(|l| l.contains("incomplete request"))
        .count();
    assert_eq!(lines, 2, "one line per connection:\n{}", server.output());
}
