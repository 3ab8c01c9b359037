//! Chaos through the `tidewater` binary, with real clients: what a
//! misbehaving peer or a dying publisher costs everybody else.
//!
//! - a viewer that stops reading and one that reads a trickle, next to 50
//!   that play: the 50 keep their lag, the bad ones are cut off;
//! - the publisher killed with SIGKILL mid-GOP, not coming back (every
//!   reader, ffmpeg's and a str0m WHEP viewer, sees the end within the
//!   follow grace plus its protocol's bound) or coming back within the
//!   grace (every reader plays on);
//! - garbage, truncated handshakes and oversized messages on every port
//!   while a stream plays;
//! - a slowloris of 1 000 idle HTTP connections, and one of 1 000 on each
//!   of RTSP and ICE-TCP;
//! - 1 000 connect/disconnect cycles per second on RTMP and on HTTP for 60 s.
//!
//! A full disk under recording is tested in `tests/tests/record.rs`
//! (`a_full_disk_stops_recording_not_the_stream`; a SIGKILL mid-recording
//! in `kill_9_mid_recording_keeps_every_complete_part`), not repeated here.
//!
//! The tests take turns (one lock): each one loads the 2-core machine on
//! purpose, and the lag comparison must not measure a neighbour's load.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use str0m::media::Direction;
use tidewater_tests::abuse;
use tidewater_tests::metrics::{Scrape, open_fds, raise_fd_limit};
use tidewater_tests::rtmp_viewers::{Reading, Record, ViewerPool, percentile};
use tidewater_tests::srt::ffmpeg_srt_url;
use tidewater_tests::str0m_peer::Str0mPeer;
use tidewater_tests::timed_reader::{TimedReading, spawn_timed};
use tidewater_tests::{
    ServerCommand, ServerProcess, TempDir, curl_command, ffmpeg_framecrc_command, ffmpeg_publish,
    loopback_config, try_http_get, wait_live,
};

/// How long a publish may take to show in the API.
const LIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// One chaos test at a time.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every session the API lists: `(peer, protocol, kind)`.
fn sessions(http: SocketAddr) -> Vec<(String, String, String)> {
    let Ok(r) = try_http_get(&format!("http://{http}/api/v1/sessions")) else {
        return Vec::new();
    };
    let v = r.json();
    v["sessions"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|s| {
                    let field = |k: &str| s[k].as_str().unwrap_or_default().to_string();
                    (field("peer"), field("protocol"), field("kind"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Panics unless no session task panicked (`tidewater_session_panics_total`
/// is 0 on every listener) and the server printed no panic.
fn assert_no_panic(http: SocketAddr, output: &str) {
    let panics = Scrape::get(http).sum("tidewater_session_panics_total", &[]);
    assert_eq!(panics, 0.0, "session panics counted");
    assert!(
        !output.contains("panicked"),
        "the server printed a panic:\n{}",
        output
            .lines()
            .filter(|l| l.contains("panicked"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ---------------------------------------------------------------------------
// 1. A viewer that stops reading, next to 50 that play

/// Viewers that play along.
const PLAYERS: usize = 50;
/// How long each lag measurement lasts.
const LAG_WINDOW: Duration = Duration::from_secs(8);
/// Windows without and with bad viewers, alternating.
const ROUNDS: usize = 3;
/// How far the players' lag p99 may rise while the bad viewers are there.
const LAG_P99_BOUND_MS: f64 = 20.0;
/// `[defaults] max_lag_ms`: behind live by more than this, a viewer skips.
const MAX_LAG_MS: u64 = 1_000;
/// `[rtmp] write_timeout_ms` (the default): a socket that takes no byte for
/// this long is closed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The players' lag p99 in ms over `[from, to)`: every picture's lag, all
/// players pooled; checks each player got pictures then.
fn players_lag_p99(records: &[Record], from: f64, to: f64, what: &str) -> f64 {
    let mut lags = Vec::new();
    let mut worst = Vec::new();
    for (i, r) in records.iter().enumerate() {
        assert!(
            r.error.is_none() && r.closed_at.is_none(),
            "{what}: player {i} stopped: {:?}",
            r.error
        );
        // 25 fps: at least 80 % of the window's pictures.
        let expected = ((to - from) * 25.0 * 0.8) as usize;
        let got = r.pictures_in(from, to);
        assert!(
            got >= expected,
            "{what}: player {i} got {got} pictures, expected {expected}+"
        );
        let mine = r.lags_in(from, to);
        worst.push(mine.iter().copied().fold(0.0, f64::max) * 1e3);
        lags.extend(mine.into_iter().map(|l| l * 1e3));
    }
    eprintln!(
        "{what}: lag p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} pictures; per-player worst p99 {:.1} ms",
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        percentile(&lags, 1.0),
        lags.len(),
        percentile(&worst, 0.99)
    );
    percentile(&lags, 0.99)
}

#[test]
fn a_stalled_viewer_and_a_trickling_one_hurt_only_themselves() {
    let _turn = serial();
    let config = format!(
        "{}[defaults]\nmax_lag_ms = {MAX_LAG_MS}\nmax_skips = 1\nskip_window_ms = 60000\n\
         [rtmp]\nwrite_timeout_ms = {}\n",
        loopback_config(),
        WRITE_TIMEOUT.as_millis()
    );
    let mut server = ServerCommand::with_config(&config).spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    let _publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/live/fan"), 120, 25);
    wait_live(http, "live/fan", LIVE_TIMEOUT);

    let mut pool = ViewerPool::new();
    for _ in 0..PLAYERS {
        pool.add(rtmp, "live", "fan", Reading::Eager);
    }
    pool.wait_keyframes(0..PLAYERS, Duration::from_secs(30));
    // The joins' catch-up (a cached GOP each) is over well before this.
    std::thread::sleep(Duration::from_secs(5));

    // Rounds of a window without bad viewers, then one with a fresh pair:
    // the medians of the rounds are compared, so one hiccup of this loaded
    // machine in one window (it moved a window's p99 by up to 40 ms alone)
    // decides nothing, while a harm the bad viewers do every time shows.
    let mut calm = Vec::new();
    let mut stormy = Vec::new();
    let mut bad_peers = Vec::new();
    for round in 0..ROUNDS {
        let from = pool.now();
        std::thread::sleep(LAG_WINDOW);
        let to = pool.now();
        calm.push((from, to));

        // One viewer stops reading after its first picture (its 4 KiB window
        // fills at once), another reads 4 KiB every 100 ms (41 KB/s, under
        // half of the stream's ≈ 106 KB/s).
        let stalled = pool.add(rtmp, "live", "fan", Reading::Stalled);
        let trickle = pool.add(
            rtmp,
            "live",
            "fan",
            Reading::Trickle {
                bytes: 4096,
                every: Duration::from_millis(100),
            },
        );
        pool.wait_keyframes(stalled..trickle + 1, Duration::from_secs(30));
        let (stalled_peer, trickle_peer) = (
            pool.record(stalled).local.expect("address"),
            pool.record(trickle).local.expect("address"),
        );
        let from = pool.now();
        std::thread::sleep(LAG_WINDOW);
        let to = pool.now();
        stormy.push((from, to));

        // Both bad viewers are gone from the API: the stalled one after the
        // write timeout, the trickling one evicted after skipping.
        let deadline = Instant::now() + WRITE_TIMEOUT + Duration::from_secs(20);
        loop {
            let list = sessions(http);
            let left: Vec<&SocketAddr> = [&stalled_peer, &trickle_peer]
                .into_iter()
                .filter(|p| list.iter().any(|(peer, _, _)| *peer == p.to_string()))
                .collect();
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: still listed: {left:?} (stalled {stalled_peer}, trickling {trickle_peer})"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        bad_peers.push((stalled_peer, trickle_peer));
    }
    let players = pool.records(0..PLAYERS);
    let p99s = |windows: &[(f64, f64)], what: &str| -> Vec<f64> {
        windows
            .iter()
            .enumerate()
            .map(|(i, &(from, to))| players_lag_p99(&players, from, to, &format!("{what} {i}")))
            .collect()
    };
    let calm = p99s(&calm, "without the bad viewers, round");
    let stormy = p99s(&stormy, "with the bad viewers, round");
    let (calm_median, stormy_median) = (percentile(&calm, 0.5), percentile(&stormy, 0.5));
    eprintln!(
        "players' lag p99 per round: {calm:.1?} ms without the bad viewers, {stormy:.1?} ms with \
         them; medians {calm_median:.1} and {stormy_median:.1} ms"
    );
    assert!(
        stormy_median <= calm_median + LAG_P99_BOUND_MS,
        "the players' lag p99 rose from {calm:.1?} ms to {stormy:.1?} ms with the bad viewers \
         (medians {calm_median:.1} and {stormy_median:.1} ms; bound +{LAG_P99_BOUND_MS} ms)"
    );
    let output = server.output();
    let about = |peer: &SocketAddr| {
        output
            .lines()
            .filter(|l| l.contains(&peer.to_string()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (stalled_peer, trickle_peer) in &bad_peers {
        let (stalled_log, trickle_log) = (about(stalled_peer), about(trickle_peer));
        assert!(
            stalled_log.contains("write"),
            "the stalled viewer's end is logged as a write timeout:\n{stalled_log}"
        );
        assert!(
            trickle_log.contains("evicted"),
            "the trickling viewer's eviction is logged:\n{trickle_log}"
        );
    }
    let scrape = Scrape::get(http);
    let rtmp_reader = [("path", "live/fan"), ("protocol", "rtmp")];
    let skips = scrape.sum("tidewater_stream_skips_total", &rtmp_reader);
    let evictions = scrape.sum("tidewater_stream_evictions_total", &rtmp_reader);
    // Each trickling viewer skips twice (`max_skips = 1`) and is evicted.
    assert!(skips >= 2.0 * ROUNDS as f64, "skips counted: {skips}");
    assert_eq!(evictions, ROUNDS as f64, "evictions counted");
    // The players still play.
    for (i, r) in pool.records(0..PLAYERS).iter().enumerate() {
        assert!(
            r.error.is_none() && r.closed_at.is_none() && !r.ended,
            "player {i} stopped: {r:?}"
        );
    }
    assert_no_panic(http, &output);
}

// ---------------------------------------------------------------------------
// 3. Garbage, truncated handshakes and oversized messages on every port

/// `[http] header_read_timeout_ms` and `[rtmp] handshake_timeout_ms` here:
/// how long a truncated handshake may hold its connection.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(3);
/// How long a hostile connection may stay open: the handshake limits
/// (RTSP's `head_timeout_ms`, 10 s by default, is set to the same 3 s here;
/// RTSPS's TLS handshake has a fixed 10 s) and slack for a loaded machine.
const CLOSE_BOUND: Duration = Duration::from_secs(20);

/// A self-signed certificate for 127.0.0.1 and its key, in `dir`.
fn certificate(dir: &TempDir) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    (
        dir.write("cert.pem", &cert.pem()),
        dir.write("key.pem", &key.serialize_pem()),
    )
}

/// The address a log line `PREFIX ADDR` gives; panics with the output if
/// the line does not come.
fn logged_addr(server: &mut ServerProcess, prefix: &str) -> SocketAddr {
    let line = server
        .wait_for_line(prefix, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("no {prefix:?} line:\n{}", server.output()));
    line.split(prefix)
        .nth(1)
        .and_then(|rest| rest.split([' ', ',']).next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// ffmpeg decoding `url` for `seconds` of stream, started now.
fn decoding_reader(
    name: &str,
    url: &str,
    seconds: u32,
    deadline: Instant,
) -> JoinHandle<TimedReading> {
    spawn_timed(
        name,
        ffmpeg_framecrc_command(
            &[],
            url,
            &["-t", &seconds.to_string(), "-fps_mode", "passthrough"],
        ),
        deadline,
    )
}

/// Checks a reader decoded `seconds` of video (90 % of its pictures at least),
/// with rising timestamps, and ended by itself cleanly.
fn assert_decoded_throughout(read: &TimedReading, seconds: u32) {
    let name = &read.name;
    assert!(
        read.status.is_some_and(|s| s.success()),
        "{name}: did not end cleanly by itself ({:?}): {}",
        read.status,
        read.stderr
    );
    let frames = read.frames_of("rawvideo");
    let expected = seconds as usize * 25 * 9 / 10;
    assert!(
        frames >= expected,
        "{name}: {frames} pictures decoded, expected {expected}+ ({:?}): {}",
        read.crc.codecs,
        read.stderr
    );
    assert!(read.crc.monotonic(), "{name}: timestamps not rising");
}

/// HTTP attacks closed for the same cause at the same time.
const SAME_CAUSE: [[&str; 2]; 2] = [
    ["http garbage", "http oversized request"],
    ["https garbage", "https oversized TLS record"],
];

#[test]
fn garbage_on_every_port_closes_that_connection_and_nothing_else() {
    let _turn = serial();
    let dir = TempDir::new("chaos-tls");
    let (cert, key) = certificate(&dir);
    let tls = |section: &str| {
        format!(
            "[{section}]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        )
    };
    let config = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\nheader_read_timeout_ms = {ms}\n\
         [rtmp]\nhandshake_timeout_ms = {ms}\n[rtsp]\nhead_timeout_ms = {ms}\n{}{}{}",
        tls("https"),
        tls("rtmps"),
        tls("rtsps"),
        ms = HANDSHAKE_LIMIT.as_millis()
    );
    let mut server = ServerCommand::with_config(&config).spawn();
    let (http, rtmp, srt, rtsp) = (
        server.http_addr(),
        server.rtmp_addr(),
        server.srt_addr(),
        server.rtsp_addr(),
    );
    let https = logged_addr(&mut server, "https listening on ");
    let rtmps = logged_addr(&mut server, "rtmps listening on ");
    let rtsps = logged_addr(&mut server, "rtsps listening on ");
    let webrtc = logged_addr(&mut server, "WebRTC media on UDP ");
    let _publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/live/calm"), 90, 25);
    wait_live(http, "live/calm", LIVE_TIMEOUT);
    const READ_SECONDS: u32 = 30;
    let reader = decoding_reader(
        "rtmp reader during the attacks",
        &format!("rtmp://{rtmp}/live/calm"),
        READ_SECONDS,
        Instant::now() + Duration::from_secs(READ_SECONDS as u64 + 30),
    );
    std::thread::sleep(Duration::from_secs(2));

    // Every TCP attack at once, each on its own connection and thread.
    let tls_ports = [("rtmps", rtmps), ("rtsps", rtsps), ("https", https)];
    let mut attacks: Vec<(String, SocketAddr, Vec<u8>)> = Vec::new();
    for (name, addr) in [("rtmp", rtmp), ("rtsp", rtsp), ("http", http)]
        .into_iter()
        .chain(tls_ports)
    {
        attacks.push((format!("{name} garbage"), addr, abuse::garbage(4096)));
    }
    attacks.push((
        "rtmp truncated handshake".into(),
        rtmp,
        abuse::rtmp_truncated_handshake(),
    ));
    for (name, addr) in tls_ports {
        attacks.push((
            format!("{name} truncated ClientHello"),
            addr,
            abuse::tls_truncated_hello(),
        ));
        attacks.push((
            format!("{name} oversized TLS record"),
            addr,
            abuse::tls_oversized_record(),
        ));
    }
    let rtsp_uri = format!("OPTIONS rtsp://{rtsp}/live/calm");
    attacks.push((
        "rtsp truncated request".into(),
        rtsp,
        abuse::truncated_head(&rtsp_uri, "RTSP/1.0"),
    ));
    attacks.push((
        "rtsp oversized request".into(),
        rtsp,
        abuse::oversized_head(&rtsp_uri, "RTSP/1.0"),
    ));
    attacks.push((
        "http truncated request".into(),
        http,
        abuse::truncated_head("GET /api/v1/streams", "HTTP/1.1"),
    ));
    attacks.push((
        "http oversized request".into(),
        http,
        abuse::oversized_head("GET /api/v1/streams", "HTTP/1.1"),
    ));
    let mut threads: Vec<JoinHandle<abuse::Outcome>> = attacks
        .into_iter()
        .map(|(what, addr, payload)| {
            std::thread::spawn(move || abuse::tcp(&what, addr, &payload, CLOSE_BOUND))
        })
        .collect();
    threads.push(std::thread::spawn(move || {
        abuse::rtmp_oversized_message(rtmp, CLOSE_BOUND)
    }));
    // And the UDP ports: junk, a truncated handshake, an oversized datagram.
    let srt_junk = abuse::udp(
        srt,
        1000,
        &[
            abuse::srt_truncated_handshake(),
            abuse::oversized_datagram(),
        ],
    );
    let webrtc_junk = abuse::udp(
        webrtc,
        1000,
        &[abuse::stun_truncated_request(), abuse::oversized_datagram()],
    );
    let outcomes: Vec<abuse::Outcome> = threads
        .into_iter()
        .map(|t| t.join().expect("attack"))
        .collect();

    // The UDP listeners still serve: an SRT reader decodes the stream.
    let srt_read = decoding_reader(
        "srt reader after the junk",
        &ffmpeg_srt_url(srt, "read:live/calm"),
        3,
        Instant::now() + Duration::from_secs(30),
    )
    .join()
    .expect("srt reader");
    assert_decoded_throughout(&srt_read, 3);

    let read = reader.join().expect("reader");
    assert_decoded_throughout(&read, READ_SECONDS);
    // Let the last log lines arrive.
    std::thread::sleep(Duration::from_millis(500));
    let output = server.output();
    let mut failures = Vec::new();
    for o in &outcomes {
        let peer = o.local.to_string();
        let logged: Vec<&str> = output.lines().filter(|l| l.contains(&peer)).collect();
        eprintln!(
            "{}: closed after {:?}, answer {:?}; log: {:?}",
            o.what,
            o.closed_after,
            String::from_utf8_lossy(&o.answer[..o.answer.len().min(40)]),
            logged.last()
        );
        if o.closed_after.is_none() {
            failures.push(format!("{}: still open after {CLOSE_BOUND:?}", o.what));
        }
        if logged.is_empty() && !SAME_CAUSE.iter().flatten().any(|w| *w == o.what) {
            failures.push(format!("{}: no log line names its peer {peer}", o.what));
        }
    }
    // HTTP logs one line per cause per 10 s (a slowloris or a scanner would
    // flood the log otherwise): of two attacks with the same cause at once
    // (a bad request head; a bad TLS record), one is named, the other counted.
    for group in SAME_CAUSE {
        let named = outcomes
            .iter()
            .filter(|o| group.contains(&o.what.as_str()))
            .any(|o| output.contains(&format!("connection of {}:", o.local)));
        if !named {
            failures.push(format!("none of {group:?} is logged with its peer"));
        }
    }
    let udp_log = |peer: SocketAddr| {
        output
            .lines()
            .filter(|l| l.contains(&peer.to_string()))
            .count()
    };
    eprintln!(
        "srt junk from {srt_junk}: {} log lines; webrtc junk from {webrtc_junk}: {} log lines",
        udp_log(srt_junk),
        udp_log(webrtc_junk)
    );
    // Junk is logged naming its peer, but not a line per datagram: 20 lines
    // per 10 s per listener (`LogLimiter::per_listener`).
    for (what, peer) in [("srt", srt_junk), ("webrtc", webrtc_junk)] {
        if !(1..=20).contains(&udp_log(peer)) {
            failures.push(format!(
                "{what}: {} log lines for 1 002 junk datagrams",
                udp_log(peer)
            ));
        }
    }
    let scrape = Scrape::get(http);
    let refused = |listener: &str, reason: &str| {
        scrape.sum(
            "tidewater_listener_refusals_total",
            &[("listener", listener), ("reason", reason)],
        )
    };
    for (listener, reason, at_least) in [
        ("http", "header_timeout", 1.0),
        ("https", "handshake_timeout", 1.0),
        ("https", "tls_handshake", 2.0),
    ] {
        let n = refused(listener, reason);
        if n < at_least {
            failures.push(format!(
                "{listener} refusals ({reason}): {n}, expected {at_least}+"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_no_panic(http, &output);
}

// ---------------------------------------------------------------------------
// 2. The publisher killed with SIGKILL mid-GOP

/// `[defaults] follow_grace_ms` here.
const GRACE: Duration = Duration::from_secs(3);
/// The publisher's GOP (frames at 25 fps): 2 s.
const KILL_GOP: u32 = 50;

/// One reader per output that ffmpeg plays, of `key`, started now and killed
/// at `deadline`; with each one's bound: how long after the follow grace
/// it may take to see the end (that protocol's own part).
fn every_reader(
    server: &mut ServerProcess,
    key: &str,
    deadline: Instant,
) -> Vec<(JoinHandle<TimedReading>, Duration)> {
    let (http, rtmp, srt, rtsp) = (
        server.http_addr(),
        server.rtmp_addr(),
        server.srt_addr(),
        server.rtsp_addr(),
    );
    let passthrough: &[&str] = &["-fps_mode", "passthrough"];
    let reader = |name: &str, input: &[&str], url: String| {
        spawn_timed(
            name,
            ffmpeg_framecrc_command(input, &url, passthrough),
            deadline,
        )
    };
    vec![
        (
            reader("rtmp", &[], format!("rtmp://{rtmp}/{key}")),
            END_BOUND_STREAMED,
        ),
        (
            reader("http-flv", &[], format!("http://{http}/flv/{key}.flv")),
            END_BOUND_STREAMED,
        ),
        (
            reader("http-ts", &[], format!("http://{http}/ts/{key}.ts")),
            END_BOUND_STREAMED,
        ),
        (
            reader("srt", &[], ffmpeg_srt_url(srt, &format!("read:{key}"))),
            END_BOUND_STREAMED,
        ),
        (
            reader(
                "rtsp",
                &["-rtsp_transport", "tcp"],
                format!("rtsp://{rtsp}/{key}"),
            ),
            END_BOUND_STREAMED,
        ),
        (
            reader("hls", &[], format!("http://{http}/hls/{key}/index.m3u8")),
            END_BOUND_HLS,
        ),
    ]
}

/// How long after the grace a streamed reader (RTMP, HTTP-FLV, HTTP-TS,
/// SRT, RTSP) may take to see the end and exit: the server's closing
/// words, SRT's linger, ffmpeg's shutdown, on a loaded machine.
const END_BOUND_STREAMED: Duration = Duration::from_secs(5);
/// The same for an HLS reader: the final playlist (`EXT-X-ENDLIST`) is
/// written at the end of the grace; ffmpeg sees it at its next reload (a
/// target duration, 2 s here) and reads the segments it has not read.
const END_BOUND_HLS: Duration = Duration::from_secs(8);
/// The same for DASH, checked on the MPD: it turns `type="static"` at the
/// end of the grace, which a player sees at its next reload
/// (`minimumUpdatePeriod`, 2 s here). ffmpeg 5.1's DASH demuxer is not the
/// reader here: it never ends on a live MPD that turns static (it keeps
/// reloading it), nor follows a second Period; dash.js does both
/// (`tests/tests/dash.rs`).
const END_BOUND_DASH: Duration = Duration::from_secs(2);

/// How long after the grace the server may take to end a WHEP viewer's
/// session (its `whip: session ended` log line): the viewer's feeder
/// follows the stream until the grace ends, then the media worker drops
/// the peer on its next turn, sending RTCP BYE and a DTLS close_notify.
const END_BOUND_WHEP_SESSION: Duration = Duration::from_secs(2);
/// The viewer's own part: how long after that it sees the connection
/// closed (the close_notify arrives at once; slack for a loaded machine).
/// A server that sent nothing would leave the viewer to notice by its
/// unanswered connectivity checks, 4.5 s or more later: over this bound.
const END_BOUND_WHEP_CLIENT: Duration = Duration::from_secs(1);
/// The WHEP viewer's longest STUN retransmission interval (with str0m's
/// default, 3 s, the viewer saw the silent server 23 s after its end).
const WHEP_STUN_RTO: Duration = Duration::from_millis(500);

/// What a str0m WHEP viewer of a stream saw.
#[derive(Debug, Default)]
struct WhepRead {
    /// The server's answer to the offer, when not 201.
    refused: Option<String>,
    connected: bool,
    /// RTP packets received so far, sampled every 100 ms.
    samples: Vec<(Instant, u32)>,
    last_rtp_at: Option<Instant>,
    /// When the viewer saw the connection end (ICE disconnected or a DTLS
    /// close); `None` if not before its deadline.
    ended_at: Option<Instant>,
    /// Whether the server closed it (close_notify) rather than go silent.
    closed: bool,
    keyframe_first: Option<bool>,
}

impl WhepRead {
    /// RTP packets received before `at`.
    fn packets_before(&self, at: Instant) -> u32 {
        self.samples
            .iter()
            .take_while(|(t, _)| *t <= at)
            .last()
            .map_or(0, |&(_, n)| n)
    }
}

/// `POST`s an SDP offer to `path`: the status and body.
fn post_sdp(http: SocketAddr, path: &str, offer: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(http).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {http}\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{offer}",
        offer.len()
    )
    .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| e.to_string())?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("not an HTTP answer: {answer:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    Ok((status, body.to_string()))
}

/// Runs `task` on a thread of its own with a current-thread runtime: the
/// test's clients that need tokio, next to its blocking ones.
fn on_own_runtime<T: Send + 'static>(
    task: impl std::future::Future<Output = T> + Send + 'static,
) -> JoinHandle<T> {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(task)
    })
}

/// A str0m WHEP viewer of `key` on its own thread, started now: it plays
/// until it sees the connection end or `deadline` passes.
fn whep_reader(http: SocketAddr, key: &str, deadline: Instant) -> JoinHandle<WhepRead> {
    let path = format!("/whep/{key}");
    on_own_runtime(async move {
        let mut read = WhepRead::default();
        let (pending, offer) =
            Str0mPeer::offer_with_stun_rto(Direction::RecvOnly, Some(WHEP_STUN_RTO)).await;
        let answer = match post_sdp(http, &path, &offer) {
            Ok((201, answer)) => answer,
            other => {
                read.refused = Some(format!("{other:?}"));
                return read;
            }
        };
        let mut peer = pending.accept(&answer);
        let step = Duration::from_millis(100);
        read.connected = peer
            .pump_until_connected(Duration::from_secs(10), step)
            .await;
        while read.connected && Instant::now() < deadline {
            read.ended_at = peer.pump_until_disconnected(step, step).await;
            read.samples.push((Instant::now(), peer.rtp_received));
            if read.ended_at.is_some() {
                break;
            }
        }
        read.closed = peer.closed_at.is_some();
        read.last_rtp_at = peer.last_rtp_at;
        read.keyframe_first = peer.keyframe_first;
        read
    })
}

/// Polls the MPD of `key` until `check` accepts it; when it did, or `None`
/// after `within`.
fn wait_mpd(
    http: SocketAddr,
    key: &str,
    within: Duration,
    check: impl Fn(&str) -> bool,
) -> Option<Instant> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(r) = try_http_get(&format!("http://{http}/dash/{key}/manifest.mpd"))
            && r.status == 200
            && check(&r.body)
        {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Waits for the next keyframe `viewer` receives and then half a GOP, so
/// what happens next happens mid-GOP.
fn wait_mid_gop(pool: &ViewerPool, viewer: usize) {
    let seen = pool.record(viewer).keyframes.len();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.record(viewer).keyframes.len() == seen {
        assert!(Instant::now() < deadline, "no keyframe within 10 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(KILL_GOP as u64 * 40 / 2));
}

#[test]
fn every_reader_sees_the_end_when_the_publisher_is_killed_mid_gop() {
    let _turn = serial();
    let config = format!(
        "{}[defaults]\nfollow_grace_ms = {}\n",
        loopback_config(),
        GRACE.as_millis()
    );
    let mut server = ServerCommand::with_config(&config).spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    let mut publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/live/killed"), 60, KILL_GOP);
    wait_live(http, "live/killed", LIVE_TIMEOUT);
    let mut pool = ViewerPool::new();
    let clock = pool.add(rtmp, "live", "killed", Reading::Eager);
    let readers = every_reader(
        &mut server,
        "live/killed",
        Instant::now() + Duration::from_secs(40),
    );
    // The publish has no B-frames (x264's zerolatency), which WHEP refuses.
    let whep = whep_reader(
        http,
        "live/killed",
        Instant::now() + Duration::from_secs(40),
    );
    // Let every reader get going (HLS and DASH need segments), then kill.
    std::thread::sleep(Duration::from_secs(6));
    wait_mid_gop(&pool, clock);
    assert!(
        wait_mpd(http, "live/killed", LIVE_TIMEOUT, |m| m
            .contains("type=\"dynamic\""))
        .is_some(),
        "no live MPD"
    );
    let whep_listed = sessions(http)
        .iter()
        .any(|(_, protocol, _)| protocol == "whep");
    publisher.0.kill().expect("SIGKILL the publisher");
    let killed = Instant::now();
    let mut failures = Vec::new();
    // DASH: the MPD turns static (polled on a thread of its own while the
    // server's log is watched here).
    let static_mpd = std::thread::spawn(move || {
        wait_mpd(
            http,
            "live/killed",
            GRACE + END_BOUND_DASH + Duration::from_secs(10),
            |m| m.contains("type=\"static\""),
        )
    });
    // The server ends the WHEP session after the grace, not before it. (The
    // API is no witness: it lists no reader of any protocol while the
    // readers wait out the grace.)
    let whep_end = server
        .wait_for_line(
            "whip: session ended",
            GRACE + END_BOUND_WHEP_SESSION + Duration::from_secs(10),
        )
        .map(|line| (killed.elapsed(), line));
    eprintln!(
        "whep: listed in the API before the kill {whep_listed}; the server ended the session \
         {:?} after the kill (bound {:?}): {:?}",
        whep_end.as_ref().map(|(t, _)| t),
        GRACE + END_BOUND_WHEP_SESSION,
        whep_end.as_ref().map(|(_, l)| l)
    );
    let whep_gone = whep_end.as_ref().map(|(t, _)| *t);
    match &whep_end {
        Some((after, line))
            if whep_listed
                && line.contains("live/killed")
                && *after <= GRACE + END_BOUND_WHEP_SESSION
                && *after + Duration::from_millis(500) >= GRACE => {}
        other => failures.push(format!(
            "whep: listed before the kill {whep_listed}, the session ended {other:?} after it \
             (grace {GRACE:?} + {END_BOUND_WHEP_SESSION:?})"
        )),
    }
    let static_mpd = static_mpd
        .join()
        .expect("MPD poll")
        .map(|t| t.saturating_duration_since(killed));
    eprintln!(
        "dash: the MPD turned static {static_mpd:?} after the kill (bound {:?})",
        GRACE + END_BOUND_DASH
    );
    match static_mpd {
        Some(after) if after <= GRACE + END_BOUND_DASH && after + Duration::from_millis(500) >= GRACE => {}
        other => failures.push(format!(
            "dash: the MPD turned static {other:?} after the kill (grace {GRACE:?} + {END_BOUND_DASH:?})"
        )),
    }
    for (reader, bound) in readers {
        let read = reader.join().expect("reader");
        let name = &read.name;
        let frames = read.frames_of("rawvideo");
        let ended = read.exited_at.map(|t| t.saturating_duration_since(killed));
        eprintln!(
            "{name}: {frames} pictures, ended {ended:?} after the kill (bound {:?})",
            GRACE + bound
        );
        if frames < 25 {
            failures.push(format!(
                "{name}: {frames} pictures decoded: {}",
                read.stderr
            ));
        }
        match ended {
            None => failures.push(format!("{name}: still reading 30 s after the kill")),
            Some(after) if after > GRACE + bound => failures.push(format!(
                "{name}: saw the end {after:?} after the kill (grace {GRACE:?} + {bound:?})"
            )),
            Some(after) if after + Duration::from_millis(500) < GRACE => failures.push(format!(
                "{name}: ended {after:?} after the kill, before the grace ({GRACE:?}): {}",
                read.stderr
            )),
            Some(_) => {}
        }
    }
    // What the WHEP viewer saw: packets until the kill, then the end of
    // the connection after the server ended the session.
    let read = whep.join().expect("whep reader");
    let at_kill = read.packets_before(killed);
    let after = |t: Option<Instant>| t.map(|t| t.saturating_duration_since(killed));
    let (ended, last_rtp) = (after(read.ended_at), after(read.last_rtp_at));
    let whep_bound = GRACE + END_BOUND_WHEP_SESSION + END_BOUND_WHEP_CLIENT;
    eprintln!(
        "whep: {at_kill} RTP packets before the kill (first a keyframe: {:?}), the last {last_rtp:?} \
         after it; the viewer saw the end ({}) {ended:?} after the kill (bound {whep_bound:?})",
        read.keyframe_first,
        if read.closed {
            "DTLS close"
        } else {
            "ICE disconnected"
        }
    );
    if read.refused.is_some()
        || !read.connected
        || at_kill == 0
        || read.keyframe_first != Some(true)
    {
        failures.push(format!(
            "whep: refused {:?}, connected {}, {at_kill} RTP packets before the kill, the \
             first a keyframe {:?}",
            read.refused, read.connected, read.keyframe_first
        ));
    }
    match ended {
        Some(after)
            if read.closed
                && after <= whep_bound
                && after + Duration::from_millis(500) >= GRACE => {}
        other => failures.push(format!(
            "whep: the viewer saw the end {other:?} after the kill, closed by the server {} \
             (grace {GRACE:?} + {END_BOUND_WHEP_SESSION:?} + {END_BOUND_WHEP_CLIENT:?})",
            read.closed
        )),
    }
    // No media after the server ended the session.
    if let (Some(last), Some(gone)) = (last_rtp, whep_gone)
        && last > gone
    {
        failures.push(format!(
            "whep: an RTP packet {last:?} after the kill, the session gone at {gone:?}"
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_no_panic(http, &server.output());
}

#[test]
fn every_reader_plays_on_when_a_killed_publisher_comes_back_within_the_grace() {
    let _turn = serial();
    let config = format!(
        "{}[defaults]\nfollow_grace_ms = {}\n",
        loopback_config(),
        GRACE.as_millis()
    );
    let mut server = ServerCommand::with_config(&config).spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    let url = format!("rtmp://{rtmp}/live/back");
    let mut first = ffmpeg_publish(&url, 60, KILL_GOP);
    wait_live(http, "live/back", LIVE_TIMEOUT);
    let mut pool = ViewerPool::new();
    let clock = pool.add(rtmp, "live", "back", Reading::Eager);
    let started = Instant::now();
    let readers = every_reader(
        &mut server,
        "live/back",
        Instant::now() + Duration::from_secs(45),
    );
    let whep = whep_reader(http, "live/back", Instant::now() + Duration::from_secs(45));
    std::thread::sleep(Duration::from_secs(6));
    wait_mid_gop(&pool, clock);
    first.0.kill().expect("SIGKILL the publisher");
    let killed = Instant::now();
    let first_span = started.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    const SECOND: u32 = 8;
    let mut second = ffmpeg_publish(&url, SECOND, KILL_GOP);
    let republished = Instant::now();
    // DASH opens a second Period for the second publish, in the same MPD.
    let periods = wait_mpd(http, "live/back", Duration::from_secs(SECOND as u64), |m| {
        m.contains("type=\"dynamic\"") && m.matches("<Period ").count() == 2
    });
    assert!(periods.is_some(), "dash: no second Period in the live MPD");
    assert!(
        second
            .wait_for(Duration::from_secs(SECOND as u64 + 15))
            .is_some(),
        "the second publisher did not finish"
    );
    let last_ended = Instant::now();
    let mut failures = Vec::new();
    for (reader, bound) in readers {
        let read = reader.join().expect("reader");
        let name = &read.name;
        let frames = read.frames_of("rawvideo");
        let ended = read
            .exited_at
            .map(|t| t.saturating_duration_since(last_ended));
        // More pictures than the first publish could give (what was sent
        // until the kill plus a cached GOP): pictures of the second were decoded.
        let first_frames = (first_span.as_secs_f64() * 25.0) as usize + KILL_GOP as usize;
        eprintln!(
            "{name}: {frames} pictures (the first publish gave at most {first_frames}), \
             ended {ended:?} after the second, monotonic {}",
            read.crc.monotonic()
        );
        if frames < first_frames + 2 * 25 {
            failures.push(format!(
                "{name}: {frames} pictures, not 2 s more than the first publish's {first_frames}: {}",
                read.stderr
            ));
        }
        if !read.crc.monotonic() {
            failures.push(format!(
                "{name}: timestamps not rising across the republish"
            ));
        }
        match ended {
            None => failures.push(format!("{name}: still reading long after the end")),
            Some(after) if after > GRACE + bound => failures.push(format!(
                "{name}: saw the end {after:?} after the second publish (grace {GRACE:?} + {bound:?})"
            )),
            Some(_) => {}
        }
    }
    // The WHEP viewer plays on the same connection across the republish,
    // and sees the end only after the second publish's grace.
    let read = whep.join().expect("whep reader");
    let (at_kill, at_republish) = (
        read.packets_before(killed),
        read.packets_before(republished),
    );
    let during_second = read.packets_before(last_ended) - at_republish;
    let ended = read
        .ended_at
        .map(|t| t.saturating_duration_since(last_ended));
    let whep_bound = GRACE + END_BOUND_WHEP_SESSION + END_BOUND_WHEP_CLIENT;
    eprintln!(
        "whep: {at_kill} RTP packets before the kill, {} between the kill and the republish, \
         {during_second} during the second publish; the viewer saw the end {ended:?} after it \
         (bound {whep_bound:?})",
        at_republish - at_kill
    );
    if read.refused.is_some() || !read.connected || at_kill == 0 {
        failures.push(format!(
            "whep: refused {:?}, connected {}, {at_kill} RTP packets before the kill",
            read.refused, read.connected
        ));
    }
    // 8 s at 25 fps: a packet a picture at least, half of them.
    if during_second < SECOND * 25 / 2 {
        failures.push(format!(
            "whep: {during_second} RTP packets during the {SECOND} s second publish"
        ));
    }
    match ended {
        Some(after)
            if read.closed
                && after <= whep_bound
                && after + Duration::from_millis(500) >= GRACE => {}
        other => failures.push(format!(
            "whep: the viewer saw the end {other:?} after the second publish, closed by the \
             server {} (grace {GRACE:?} + {END_BOUND_WHEP_SESSION:?} + \
             {END_BOUND_WHEP_CLIENT:?})",
            read.closed
        )),
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_no_panic(http, &server.output());
}

// ---------------------------------------------------------------------------
// 4. A slowloris of 1 000 idle HTTP connections

/// Idle connections the slowloris holds.
const SLOWLORIS: usize = 1_000;
/// `[http] header_read_timeout_ms`: its default, 10 s.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn a_slowloris_of_1000_idle_http_connections_is_closed_by_the_header_timeout() {
    let _turn = serial();
    // The idle connections, the server's ends of them and everything else.
    raise_fd_limit(4 * SLOWLORIS as u64);
    let mut server = ServerCommand::with_config(&loopback_config()).spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    let _publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/live/loris"), 90, 25);
    wait_live(http, "live/loris", LIVE_TIMEOUT);
    let playlist = format!("http://{http}/hls/live/loris/index.m3u8");
    let deadline = Instant::now() + LIVE_TIMEOUT;
    while !try_http_get(&playlist).is_ok_and(|r| r.status == 200 && r.body.contains(".ts")) {
        assert!(Instant::now() < deadline, "no HLS playlist with a segment");
        std::thread::sleep(Duration::from_millis(200));
    }
    let fds_before = open_fds(server.pid());

    // Half send nothing, half the start of a request head and no more.
    let opened = Instant::now();
    let mut idle: Vec<TcpStream> = (0..SLOWLORIS)
        .map(|i| {
            let mut s = TcpStream::connect(http).unwrap_or_else(|e| panic!("connection {i}: {e}"));
            if i % 2 == 1 {
                s.write_all(b"GET /api/v1/streams HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                    .expect("partial head");
            }
            s
        })
        .collect();
    let all_open = opened.elapsed();

    // A normal client meanwhile: the API, a playlist and its newest segment.
    let held = Scrape::get(http).sum(
        "tidewater_listener_open_connections",
        &[("listener", "http")],
    );
    let asked = Instant::now();
    let streams = try_http_get(&format!("http://{http}/api/v1/streams")).expect("the API answers");
    assert_eq!(streams.status, 200, "{}", streams.body);
    assert!(streams.body.contains("live/loris"), "{}", streams.body);
    let list = try_http_get(&playlist).expect("the playlist is served");
    assert_eq!(list.status, 200, "{}", list.body);
    let segment = list
        .body
        .lines()
        .rfind(|l| l.ends_with(".ts"))
        .unwrap_or_else(|| panic!("no segment in\n{}", list.body));
    let seg_url = format!("http://{http}/hls/live/loris/{segment}");
    let out = curl_command()
        .args([
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
            &seg_url,
        ])
        .output()
        .expect("curl");
    let answer = String::from_utf8_lossy(&out.stdout).to_string();
    let served = asked.elapsed();
    eprintln!(
        "{SLOWLORIS} idle connections opened in {all_open:?}, {held} open on the http listener; \
         API, playlist and segment ({answer}) served in {served:?}"
    );
    assert!(held >= SLOWLORIS as f64, "open connections: {held}");
    let (code, size) = answer.split_once(' ').unwrap_or_default();
    assert!(
        code == "200" && size.parse::<u64>().unwrap_or(0) > 1000,
        "segment: {answer}"
    );
    // Served while the idle connections are all still held.
    assert!(
        opened.elapsed() < HEADER_TIMEOUT,
        "the normal client took until {:?}: the test proves nothing",
        opened.elapsed()
    );

    // Each idle connection is closed by the header timeout: not before it,
    // and all soon after.
    let mut early = 0;
    let mut latest = Duration::ZERO;
    let limit = opened + HEADER_TIMEOUT + Duration::from_secs(15);
    for (i, s) in idle.iter_mut().enumerate() {
        let left = limit
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        s.set_read_timeout(Some(left)).expect("read timeout");
        let mut byte = [0u8; 512];
        let closed = loop {
            match s.read(&mut byte) {
                Ok(0) => break true,
                // A 408 or the like before the close is fine.
                Ok(_) => continue,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    break false;
                }
                Err(_) => break true,
            }
        };
        assert!(
            closed,
            "idle connection {i} still open {:?} after it opened",
            opened.elapsed()
        );
        let at = opened.elapsed();
        latest = latest.max(at);
        // Opened at most `all_open` after `opened`: closed at least a timeout later.
        if at + Duration::from_millis(200) < HEADER_TIMEOUT {
            early += 1;
        }
    }
    drop(idle);
    eprintln!("the last idle connection closed {latest:?} after the first opened");
    assert_eq!(
        early, 0,
        "idle connections closed before the header timeout"
    );
    let scrape = Scrape::get(http);
    let timeouts = scrape.sum(
        "tidewater_listener_refusals_total",
        &[("listener", "http"), ("reason", "header_timeout")],
    );
    assert!(
        timeouts >= SLOWLORIS as f64,
        "header timeouts counted: {timeouts}"
    );
    wait_fds_back(server.pid(), fds_before);
    let output = server.output();
    eprintln!("the server logged {} lines", output.lines().count());
    // One line names the first idle peer closed; the others are counted in
    // at most one line per 10 s, not one each.
    let lines = output
        .lines()
        .filter(|l| l.contains("no complete request head"))
        .count();
    assert!(
        (1..=3).contains(&lines),
        "{lines} lines about header timeouts for {SLOWLORIS} connections"
    );
    assert_no_panic(http, &output);
}

/// `[rtsp] session_timeout_ms` here (60 s by default): an RTSP connection
/// that sends nothing is closed by it; one that begins a request and never
/// finishes it by `head_timeout_ms` (10 s by default, as here).
const RTSP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// `[webrtc] idle_timeout_ms` (the default): an ICE-TCP connection that
/// sends nothing, or never finishes a frame, is closed by it.
const ICE_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// `[webrtc] max_sessions` (the default, 256): ICE-TCP holds at most
/// 2 × 256 + 16 connections at once and closes any further one at once.
const ICE_TCP_MAX_CONNECTIONS: usize = 2 * 256 + 16;

/// When each of `conns` (opened at the matching `opened`) was closed by the
/// server, after its opening; `None` for one still open at `limit`.
fn close_times(conns: &[TcpStream], opened: &[Instant], limit: Instant) -> Vec<Option<Duration>> {
    let mut closed: Vec<Option<Duration>> = vec![None; conns.len()];
    for c in conns {
        c.set_nonblocking(true).expect("nonblocking");
    }
    let mut byte = [0u8; 512];
    while Instant::now() < limit && closed.iter().any(Option::is_none) {
        for (i, c) in conns.iter().enumerate() {
            if closed[i].is_some() {
                continue;
            }
            let mut c = c;
            let gone = loop {
                match c.read(&mut byte) {
                    Ok(0) => break true,
                    // An answer before the close is fine.
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                    Err(_) => break true,
                }
            };
            if gone {
                closed[i] = Some(opened[i].elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    closed
}

#[test]
fn a_slowloris_on_the_rtsp_and_ice_tcp_ports_is_closed_by_their_timeouts() {
    let _turn = serial();
    // Two ports' idle connections, the server's ends of them and the rest.
    raise_fd_limit(8 * SLOWLORIS as u64);
    let config = format!(
        "{}[rtsp]\nsession_timeout_ms = {}\nhead_timeout_ms = {}\n",
        loopback_config(),
        RTSP_IDLE_TIMEOUT.as_millis(),
        RTSP_IDLE_TIMEOUT.as_millis()
    );
    let mut server = ServerCommand::with_config(&config).spawn();
    let (http, rtmp, rtsp) = (server.http_addr(), server.rtmp_addr(), server.rtsp_addr());
    // ICE-TCP listens on the media port's number.
    let ice_tcp = logged_addr(&mut server, "WebRTC media on UDP ");
    let _publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/live/loris"), 90, 25);
    wait_live(http, "live/loris", LIVE_TIMEOUT);
    let fds_before = open_fds(server.pid());

    // On each port, half send nothing and half the start of what they
    // would send: an RTSP request head, an ICE-TCP frame announcing 200
    // bytes of which 20 come.
    let mut conns = Vec::new();
    let mut opened = Vec::new();
    for i in 0..2 * SLOWLORIS {
        let (addr, partial): (SocketAddr, &[u8]) = if i < SLOWLORIS {
            (rtsp, b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n")
        } else {
            (
                ice_tcp,
                &[
                    0, 200, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                ],
            )
        };
        let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connection {i}: {e}"));
        if i % 2 == 1 {
            s.write_all(partial).expect("partial");
        }
        opened.push(Instant::now());
        conns.push(s);
    }
    let all_open = opened[0].elapsed();

    // A normal RTSP client meanwhile: ffmpeg reads the stream.
    let read = decoding_reader(
        "rtsp reader during the slowloris",
        &format!("rtsp://{rtsp}/live/loris"),
        3,
        Instant::now() + Duration::from_secs(30),
    );
    let closed = close_times(
        &conns,
        &opened,
        Instant::now() + RTSP_IDLE_TIMEOUT.max(ICE_TCP_IDLE_TIMEOUT) + Duration::from_secs(15),
    );
    let read = read.join().expect("rtsp reader");
    drop(conns);
    let (rtsp_closed, ice_closed) = closed.split_at(SLOWLORIS);
    let summary = |what: &str, times: &[Option<Duration>], timeout: Duration| {
        let open = times.iter().filter(|t| t.is_none()).count();
        let early: Vec<Duration> = times
            .iter()
            .flatten()
            .copied()
            .filter(|t| *t + Duration::from_millis(200) < timeout)
            .collect();
        let latest = times.iter().flatten().max().copied();
        eprintln!(
            "{what}: {SLOWLORIS} idle connections, {} closed before the timeout (the latest of \
             them {:?}), the last closed {latest:?} after it opened, {open} still open",
            early.len(),
            early.iter().max()
        );
        (open, early.len())
    };
    eprintln!("{} connections opened in {all_open:?}", 2 * SLOWLORIS);
    assert_decoded_throughout(&read, 3);
    let (rtsp_open, rtsp_early) = summary("rtsp", rtsp_closed, RTSP_IDLE_TIMEOUT);
    let (ice_open, ice_early) = summary("ice-tcp", ice_closed, ICE_TCP_IDLE_TIMEOUT);
    assert_eq!((rtsp_open, rtsp_early), (0, 0), "rtsp: open, closed early");
    assert_eq!(ice_open, 0, "ice-tcp: still open");
    // Over the connection limit: closed at once; the others held until the
    // idle timeout.
    assert!(
        ice_early <= SLOWLORIS - ICE_TCP_MAX_CONNECTIONS,
        "ice-tcp: {ice_early} closed before the idle timeout (at most {} over the limit)",
        SLOWLORIS - ICE_TCP_MAX_CONNECTIONS
    );
    wait_fds_back(server.pid(), fds_before);
    let output = server.output();
    let count = |text: &str| output.lines().filter(|l| l.contains(text)).count();
    let (rtsp_lines, ice_lines) = (count("rtsp: peer"), count("ICE-TCP connection"));
    eprintln!("log lines: rtsp {rtsp_lines}, ice-tcp {ice_lines}");
    // The listeners' limiters: 20 lines per 10 s each (the RTSP
    // connections end within a few seconds of each other: a window or two).
    assert!(
        (1..=60).contains(&rtsp_lines),
        "{rtsp_lines} lines about RTSP connections for {SLOWLORIS} connections"
    );
    // ICE-TCP's closes share the media port's budget: 20 lines per 10 s.
    assert!(
        (1..=60).contains(&ice_lines),
        "{ice_lines} lines about ICE-TCP closes for {SLOWLORIS} connections"
    );
    assert_no_panic(http, &output);
}

/// Waits until process `pid` holds no more file descriptors than
/// `baseline` (plus the one connection a scrape may hold); panics after 30 s.
fn wait_fds_back(pid: u32, baseline: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = open_fds(pid);
        if now <= baseline + 1 {
            eprintln!("open fds: {now}, {baseline} before");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "open fds: {now}, {baseline} before, 30 s after the last connection closed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------
// 5. 1 000 connect/disconnect cycles per second on RTMP and on HTTP

/// Cycles per second, on each of RTMP and HTTP.
const CHURN_RATE: u32 = 1_000;
/// How long the churn lasts.
const CHURN: Duration = Duration::from_secs(60);

/// What a churn thread did.
#[derive(Debug, Default)]
struct Churned {
    cycles: u64,
    failed_connects: u64,
    /// Every tenth cycle says something and reads an answer.
    answered: u64,
}

/// `CHURN_RATE` connections per second to `addr` for `CHURN`, each reset
/// at once (zero linger: no TIME_WAIT on either side to run out of ports);
/// every tenth sends `hello` first and waits for a byte of answer.
fn churn(addr: SocketAddr, hello: &'static [u8]) -> JoinHandle<Churned> {
    on_own_runtime(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut done = Churned::default();
        let start = tokio::time::Instant::now();
        let step = Duration::from_secs(1) / CHURN_RATE;
        let mut due = start;
        while due < start + CHURN {
            tokio::time::sleep_until(due).await;
            due += step;
            let Ok(Ok(mut s)) =
                tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
                    .await
            else {
                done.failed_connects += 1;
                continue;
            };
            done.cycles += 1;
            if done.cycles % 10 == 0 && s.write_all(hello).await.is_ok() {
                let mut b = [0u8; 1];
                if let Ok(Ok(1)) =
                    tokio::time::timeout(Duration::from_secs(2), s.read(&mut b)).await
                {
                    done.answered += 1;
                }
            }
            let _ = s.set_zero_linger();
        }
        done
    })
}

#[test]
fn a_thousand_connect_disconnect_cycles_per_second_for_a_minute_leave_the_stream_and_fds_alone() {
    let _turn = serial();
    // Connections are reset at once: a few hundred open at most, with slack.
    raise_fd_limit(4_096);
    let config = format!("{}[defaults]\nmax_lag_ms = 1000\n", loopback_config());
    let mut server = ServerCommand::with_config(&config).spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    let _publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/live/churn"), 120, 25);
    wait_live(http, "live/churn", LIVE_TIMEOUT);
    let mut pool = ViewerPool::new();
    let viewer = pool.add(rtmp, "live", "churn", Reading::Eager);
    pool.wait_keyframes(viewer..viewer + 1, Duration::from_secs(20));
    let read_seconds = CHURN.as_secs() as u32 + 5;
    let reader = decoding_reader(
        "http-flv reader during the churn",
        &format!("http://{http}/flv/live/churn.flv"),
        read_seconds,
        Instant::now() + Duration::from_secs(read_seconds as u64 + 30),
    );
    std::thread::sleep(Duration::from_secs(2));
    let fds_before = open_fds(server.pid());
    let from = pool.now();
    let c0c1: &'static [u8] = &[3u8; 1537];
    let threads = [
        ("rtmp", churn(rtmp, c0c1)),
        (
            "http",
            churn(http, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
        ),
    ];
    let mut failures = Vec::new();
    for (name, t) in threads {
        let done = t.join().expect("churn");
        eprintln!("{name}: {done:?}");
        let wanted = CHURN.as_secs() * u64::from(CHURN_RATE);
        if done.cycles < wanted * 95 / 100 || done.failed_connects > 0 {
            failures.push(format!("{name}: {done:?}, {wanted} cycles wanted"));
        }
        if done.answered < done.cycles / 10 * 95 / 100 {
            failures.push(format!(
                "{name}: {} of {} answered",
                done.answered,
                done.cycles / 10
            ));
        }
    }
    let to = pool.now();
    let watched = pool.record(viewer);
    let lags: Vec<f64> = watched
        .lags_in(from, to)
        .into_iter()
        .map(|l| l * 1e3)
        .collect();
    eprintln!(
        "viewer during the churn: lag p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} pictures",
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        percentile(&lags, 1.0),
        lags.len()
    );
    let read = reader.join().expect("reader");
    assert_decoded_throughout(&read, read_seconds);
    // The viewer got (nearly) every picture and never fell a second behind:
    // no skip anywhere on the stream.
    assert!(
        lags.len() as f64 >= (to - from) * 25.0 * 0.9 && watched.error.is_none(),
        "viewer: {} pictures in {:.1} s ({:?})",
        lags.len(),
        to - from,
        watched.error
    );
    let skips = Scrape::get(http).sum("tidewater_stream_skips_total", &[("path", "live/churn")]);
    assert_eq!(skips, 0.0, "readers skipped during the churn");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    wait_fds_back(server.pid(), fds_before);
    let output = server.output();
    let lines = output.lines().count();
    eprintln!("the server logged {lines} lines");
    // Connections that go away before asking for anything are logged 20 per
    // 10 s per listener at most (then counted), not one line each.
    assert!(
        lines <= 200,
        "{lines} log lines for {} connections",
        2 * CHURN.as_secs() * u64::from(CHURN_RATE)
    );
    assert_no_panic(http, &output);
}
