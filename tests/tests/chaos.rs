//! Chaos through the `tidewater` binary, with real clients: what a
//! misbehaving peer or a dying publisher costs everybody else.
//!
//! - a viewer that stops reading and one that reads a trickle, next to 50
//!   that play: the 50 keep their lag, the bad ones are cut off;
//! - the publisher killed with SIGKILL mid-GOP, not coming back (every
//!   reader sees the end within the follow grace plus its protocol's bound)
//!   or coming back within the grace (every reader plays on);
//! - garbage, truncated handshakes and oversized messages on every port
//!   while a stream plays;
//! - a slowloris of 1 000 idle HTTP connections;
//! - 1 000 connect/disconnect cycles per second on RTMP and on HTTP for 60 s.
//!
//! A full disk under recording is tested in `tests/tests/record.rs`
//! (`a_full_disk_stops_recording_not_the_stream`; a SIGKILL mid-recording
//! in `kill_9_mid_recording_keeps_every_complete_part`), not repeated here.
//!
//! The tests take turns (one lock): each one loads the 2-core machine on
//! purpose, and the lag comparison must not measure a neighbour's load.

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tidewater_tests::metrics::Scrape;
use tidewater_tests::rtmp_viewers::{Reading, Record, ViewerPool, percentile};
use tidewater_tests::{ServerCommand, ffmpeg_publish, loopback_config, try_http_get, wait_live};

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
const LAG_WINDOW: Duration = Duration::from_secs(12);
/// How far the players' lag p99 may move when the bad viewers join.
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
    std::thread::sleep(Duration::from_secs(2));
    let calm_from = pool.now();
    std::thread::sleep(LAG_WINDOW);
    let calm_to = pool.now();

    // One viewer stops reading after its first picture (its 4 KiB window
    // fills at once), another reads 4 KiB every 100 ms (41 KB/s, under half
    // of the stream's ≈ 106 KB/s).
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
    let stormy_from = pool.now();
    std::thread::sleep(LAG_WINDOW);
    let stormy_to = pool.now();

    let players = pool.records(0..PLAYERS);
    let calm = players_lag_p99(&players, calm_from, calm_to, "without the bad viewers");
    let stormy = players_lag_p99(&players, stormy_from, stormy_to, "with the bad viewers");
    eprintln!("players' lag p99: {calm:.1} ms without the bad viewers, {stormy:.1} ms with them");
    assert!(
        (stormy - calm).abs() <= LAG_P99_BOUND_MS,
        "the players' lag p99 moved from {calm:.1} ms to {stormy:.1} ms (bound ±{LAG_P99_BOUND_MS} ms)"
    );

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
            "still listed: {left:?} (stalled {stalled_peer}, trickling {trickle_peer})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let output = server.output();
    let about = |peer: &SocketAddr| {
        output
            .lines()
            .filter(|l| l.contains(&peer.to_string()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (stalled_log, trickle_log) = (about(&stalled_peer), about(&trickle_peer));
    assert!(
        stalled_log.contains("write"),
        "the stalled viewer's end is logged as a write timeout:\n{stalled_log}"
    );
    assert!(
        trickle_log.contains("evicted"),
        "the trickling viewer's eviction is logged:\n{trickle_log}"
    );
    let scrape = Scrape::get(http);
    let rtmp_reader = [("path", "live/fan"), ("protocol", "rtmp")];
    let skips = scrape.sum("tidewater_stream_skips_total", &rtmp_reader);
    let evictions = scrape.sum("tidewater_stream_evictions_total", &rtmp_reader);
    assert!(skips >= 2.0, "skips counted: {skips}");
    assert_eq!(evictions, 1.0, "evictions counted");
    // The players still play.
    for (i, r) in pool.records(0..PLAYERS).iter().enumerate() {
        assert!(
            r.error.is_none() && r.closed_at.is_none() && !r.ended,
            "player {i} stopped: {r:?}"
        );
    }
    assert_no_panic(http, &output);
}
