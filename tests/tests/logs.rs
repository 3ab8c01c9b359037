//! Logs that help and never hurt, through the binary: a closed or unread
//! standard error neither stops nor slows serving, floods of junk from
//! peers log a bounded number of lines, a taken port fails the start with
//! one line naming its setting before any listener opens, and names with
//! `%` are refused with a log line on every ingest protocol.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tidewater_tests::srt::{ffmpeg_publish_ts, ffmpeg_srt_url};
use tidewater_tests::{
    CLIP_VIDEO, ChildGuard, ServerCommand, TempDir, X264_LIVE, ffmpeg_publish, ffmpeg_realtime,
    server_binary, try_http_get, wait_live,
};

/// Lines per interval the listeners let through (core's `LISTENER_BURST`),
/// plus the one that carries the "suppressed" note.
const BURST_LINES: usize = 21;

/// A free loopback TCP port (bound and released: the server binds it next).
fn free_tcp() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// Every listener on loopback; HTTP on `http`, the others on free ports.
fn config(http: SocketAddr) -> String {
    format!(
        "[http]\nlisten = \"{http}\"\n[rtmp]\nlisten = \"127.0.0.1:0\"\n[srt]\nlisten = \"127.0.0.1:0\"\n\
         [rtsp]\nlisten = \"127.0.0.1:0\"\nudp_rtp_port = 0\nudp_rtcp_port = 0\n\
         [webrtc]\nudp_listen = \"127.0.0.1:0\"\n"
    )
}

/// The binary with `config`, standard error piped (and left to the
/// caller), standard output discarded.
fn spawn_raw(dir: &Path, config: &str, rust_log: Option<&str>) -> Child {
    let path = dir.join("tidewater.toml");
    std::fs::write(&path, config).expect("write the config");
    let mut command = Command::new(server_binary());
    command
        .arg("--config")
        .arg(&path)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars_os() {
        if name
            .to_str()
            .is_none_or(|n| n.starts_with("TIDEWATER") || n == "RUST_LOG")
        {
            command.env_remove(&name);
        }
    }
    if let Some(filter) = rust_log {
        command.env("RUST_LOG", filter);
    }
    command.spawn().expect("run tidewater")
}

/// Polls `/healthz` until it answers 200; panics after `timeout`.
fn wait_healthy(http: SocketAddr, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if try_http_get(&format!("http://{http}/healthz")).is_ok_and(|r| r.status == 200) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz on {http} did not answer 200 within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid}: {status}");
}

/// Waits up to `timeout` for `child` to exit.
fn exit_within(child: &mut ChildGuard, timeout: Duration) -> Option<ExitStatus> {
    child.wait_for(timeout)
}

/// With standard error piped into `head -1` or `head -4` (closed after a
/// few lines), the server starts (no exit 101), serves, and stops on
/// SIGTERM: writing a log line into the closed pipe panics nothing.
#[test]
fn a_closed_log_pipe_neither_kills_nor_wedges_the_server() {
    for lines in [1usize, 4] {
        let dir = TempDir::new("logs-head");
        let http = free_tcp();
        let mut server = ChildGuard(spawn_raw(dir.path(), &config(http), None));
        let stderr = server.0.stderr.take().expect("stderr");
        let head = Command::new("head")
            .arg(format!("-{lines}"))
            .stdin(Stdio::from(stderr))
            .stdout(Stdio::piped())
            .spawn()
            .expect("run head");
        let printed = head.wait_with_output().expect("head's output");
        let printed = String::from_utf8_lossy(&printed.stdout).to_string();
        assert_eq!(printed.lines().count(), lines, "head printed:\n{printed}");
        assert!(printed.contains("tidewater starting"), "{printed}");
        // head has exited: every further line meets a closed pipe.
        wait_healthy(http, Duration::from_secs(20));
        for _ in 0..5 {
            let r = try_http_get(&format!("http://{http}/api/v1/streams")).expect("the API");
            assert_eq!(r.status, 200, "{}", r.body);
        }
        assert_eq!(
            exit_within(&mut server, Duration::from_millis(300)),
            None,
            "the server exited after head -{lines} closed its standard error"
        );
        signal(server.0.id(), "TERM");
        let status = exit_within(&mut server, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("still running 20 s after SIGTERM (head -{lines})"));
        assert!(
            status.success(),
            "head -{lines}: exit {status} (101 is a panic)"
        );
    }
}

/// A standard error nobody reads (the pipe fills at 64 KiB) blocks no task:
/// requests keep being answered at trace level, and SIGTERM still stops
/// the server.
#[test]
fn an_unread_full_log_pipe_does_not_block_serving() {
    let dir = TempDir::new("logs-full");
    let http = free_tcp();
    let mut server = ChildGuard(spawn_raw(dir.path(), &config(http), Some("trace")));
    let mut stderr = server.0.stderr.take().expect("stderr");
    wait_healthy(http, Duration::from_secs(30));
    // Each request logs a trace line or two (about 160 bytes): 10 000 of
    // them are far more than the pipe and the server's queue (8 192 lines)
    // hold. Each must be answered, within a generous deadline (a blocked
    // log write would hold it forever).
    let started = Instant::now();
    for i in 0..10_000 {
        let answer = raw_get(http, "/api/v1/streams")
            .unwrap_or_else(|e| panic!("request {i} with the log pipe full: {e}"));
        assert!(answer.starts_with("HTTP/1.1 200"), "request {i}: {answer}");
    }
    for i in 0..5 {
        let r = try_http_get(&format!("http://{http}/api/v1/streams"))
            .unwrap_or_else(|e| panic!("curl {i} with the log pipe full: {e}"));
        assert_eq!(r.status, 200, "curl {i}: {}", r.body);
    }
    println!(
        "10 000 requests with an unread log pipe: {:?}",
        started.elapsed()
    );
    // The lines that did not fit were dropped and counted, not waited for.
    let metrics = try_http_get(&format!("http://{http}/metrics")).expect("/metrics");
    let dropped: u64 = metrics
        .body
        .lines()
        .find_map(|l| l.strip_prefix("tidewater_log_lines_dropped_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no dropped-lines counter in:\n{}", metrics.body));
    assert!(
        dropped > 0,
        "no log line was dropped: the queue never filled"
    );
    signal(server.0.id(), "TERM");
    let status = exit_within(&mut server, Duration::from_secs(20))
        .expect("still running 20 s after SIGTERM with its log pipe full");
    assert!(status.success(), "exit {status}");
    // The pipe really was full: what it held is at least its capacity.
    let mut held = Vec::new();
    stderr.read_to_end(&mut held).expect("read the pipe");
    assert!(
        held.len() >= 60_000,
        "only {} bytes were logged: the pipe never filled",
        held.len()
    );
}

/// One HTTP/1.1 GET on its own connection: the whole answer, or why not
/// (10 s to connect, write and read it all).
fn raw_get(http: SocketAddr, path: &str) -> Result<String, String> {
    use std::io::Write;
    let limit = Duration::from_secs(10);
    let mut stream =
        std::net::TcpStream::connect_timeout(&http, limit).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(limit))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(limit))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    Ok(answer)
}

/// An SRT handshake (UDT version 5 conclusion) with an extension type the
/// server refuses: one refusal per datagram before rate limiting.
fn refused_handshake() -> Vec<u8> {
    let mut packet = vec![0u8; 16 + 48 + 8];
    packet[0] = 0x80; // control packet, type 0: handshake
    packet[16..20].copy_from_slice(&5u32.to_be_bytes()); // version 5
    packet[36..40].copy_from_slice(&(-1i32).to_be_bytes()); // conclusion
    packet[64..66].copy_from_slice(&99u16.to_be_bytes()); // extension type 99, empty
    packet
}

/// 3 000 refused handshakes and 3 000 junk datagrams on the SRT port log at
/// most a burst of lines and say how many were suppressed; a publisher
/// killed mid-stream and a SIGINT with a publisher live log a few lines.
#[test]
fn srt_floods_and_dropped_publishers_log_a_bounded_number_of_lines() {
    let (mut server, http) = ServerCommand::with_config("")
        .env("TIDEWATER_HTTP__LISTEN", "127.0.0.1:0")
        .start();
    let srt = server.srt_addr();
    let before = server.output().lines().count();
    let junk = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let handshake = refused_handshake();
    let mut noise = 0x9E37_79B9u32;
    for _ in 0..3000 {
        junk.send_to(&handshake, srt).expect("send");
        // xorshift: random-looking datagrams of every first byte.
        let datagram: Vec<u8> = (0..100)
            .map(|_| {
                noise ^= noise << 13;
                noise ^= noise >> 17;
                noise ^= noise << 5;
                noise.to_le_bytes()[0]
            })
            .collect();
        junk.send_to(&datagram, srt).expect("send");
    }
    // The server answers the refused ones: wait for the flood to be read.
    assert!(
        server
            .wait_for_line("suppressed", Duration::from_secs(10))
            .is_some(),
        "no 'suppressed' note after the flood:\n{}",
        server.output()
    );
    std::thread::sleep(Duration::from_secs(1));
    let output = server.output();
    let flood: Vec<&str> = output.lines().skip(before).collect();
    let refusals = flood
        .iter()
        .filter(|l| l.contains("srt connection refused"))
        .count();
    assert!(
        (1..=BURST_LINES).contains(&refusals) && flood.len() <= BURST_LINES + 5,
        "{refusals} refusal lines, {} lines in all for 6 000 datagrams:\n{}",
        flood.len(),
        flood.join("\n")
    );

    // A publisher killed mid-stream.
    let mut killed = ffmpeg_publish_ts(
        &ffmpeg_srt_url(srt, "publish:live/killed"),
        60,
        25,
        "libx264",
    );
    wait_live(http, "live/killed", Duration::from_secs(30));
    let before = server.output().lines().count();
    signal(killed.0.id(), "KILL");
    let _ = killed.wait_for(Duration::from_secs(5));
    assert!(
        server
            .wait_for_line("srt publish finished", Duration::from_secs(30))
            .is_some(),
        "the killed publisher's end was not logged:\n{}",
        server.output()
    );
    std::thread::sleep(Duration::from_secs(2));
    let after_kill = server.output().lines().count() - before;
    assert!(
        after_kill <= 30,
        "{after_kill} lines after a publisher was killed:\n{}",
        server.output()
    );

    // SIGINT with a publisher live (the 22 086-line case).
    let _live = ffmpeg_publish_ts(&ffmpeg_srt_url(srt, "publish:live/on"), 60, 25, "libx264");
    wait_live(http, "live/on", Duration::from_secs(30));
    let before = server.output().lines().count();
    server.signal("INT");
    let (status, output) = server.expect_exit(Duration::from_secs(30));
    assert!(status.success(), "exit {status}:\n{output}");
    let stopping: Vec<&str> = output.lines().skip(before).collect();
    assert!(
        stopping.len() <= 40 && !output.contains("PacketStreamClosed"),
        "{} lines while stopping with a publisher live:\n{}",
        stopping.len(),
        stopping.join("\n")
    );
}

/// A taken port fails the start with one line naming the listener, the
/// address, the OS error and the setting, before any listener opens.
#[test]
fn a_taken_port_fails_the_start_before_any_listener_opens() {
    let taken = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let srt = taken.local_addr().expect("addr");
    let http = free_tcp();
    let mut server = ServerCommand::new()
        .env("TIDEWATER_HTTP__LISTEN", &http.to_string())
        .env("TIDEWATER_SRT__LISTEN", &srt.to_string())
        .spawn();
    let (status, output) = server.expect_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{output}");
    let failures: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("cannot listen"))
        .collect();
    assert_eq!(failures.len(), 1, "{output}");
    let line = failures[0];
    assert!(
        line.contains("[srt] listen")
            && line.contains(&srt.to_string())
            && line.contains("os error"),
        "{line}"
    );
    assert!(
        !output.contains("listening on") && !output.contains("WebRTC media on"),
        "a listener opened before the start failed:\n{output}"
    );
    // And nothing holds the HTTP port.
    TcpListener::bind(http).expect("the HTTP port is free");
}

/// `live/%2e%2e` (and any name with `%`) is refused over RTMP, SRT and RTSP,
/// each with a log line naming the stream and the rule.
#[test]
fn names_with_percent_are_refused_on_every_ingest() {
    let (mut server, http) = ServerCommand::with_config("")
        .env("TIDEWATER_HTTP__LISTEN", "127.0.0.1:0")
        .start();
    let rtmp = server.rtmp_addr();
    let srt = server.srt_addr();
    let rtsp = server.rtsp_addr();
    let rule = "'%' in name";

    let mut publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/live/%2e%2e"), 5, 25);
    let status = publisher
        .wait_for(Duration::from_secs(30))
        .expect("ffmpeg RTMP ends");
    assert!(!status.success(), "ffmpeg published live/%2e%2e over RTMP");
    let line = server
        .wait_for_line("rtmp request refused", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no RTMP refusal:\n{}", server.output()));
    assert!(
        line.contains("live/%2e%2e") && line.contains(rule),
        "{line}"
    );

    let mut publisher = ffmpeg_publish_ts(
        &ffmpeg_srt_url(srt, "publish:live/%2e%2e"),
        5,
        25,
        "libx264",
    );
    let status = publisher
        .wait_for(Duration::from_secs(30))
        .expect("ffmpeg SRT ends");
    assert!(!status.success(), "ffmpeg published live/%2e%2e over SRT");
    let line = server
        .wait_for_line("srt connection refused: stream id", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no SRT refusal:\n{}", server.output()));
    assert!(
        line.contains("live/%2e%2e") && line.contains(rule),
        "{line}"
    );

    // `%2e%2e` in a URL means `..` to URL parsers: `%25` keeps a '%'.
    let mut publisher = ChildGuard(
        ffmpeg_realtime()
            .args(CLIP_VIDEO)
            .args(X264_LIVE)
            .args([
                "-t",
                "5",
                "-f",
                "rtsp",
                &format!("rtsp://{rtsp}/live/a%25b"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run ffmpeg"),
    );
    let status = publisher
        .wait_for(Duration::from_secs(30))
        .expect("ffmpeg RTSP ends");
    assert!(!status.success(), "ffmpeg published live/a%25b over RTSP");
    let line = server
        .wait_for_line("rtsp: ANNOUNCE refused (400)", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no RTSP refusal:\n{}", server.output()));
    assert!(line.contains("live/a%25b") && line.contains(rule), "{line}");

    // Nothing was published.
    let streams = try_http_get(&format!("http://{http}/api/v1/streams")).expect("the API");
    assert!(!streams.body.contains('%'), "{}", streams.body);
}
