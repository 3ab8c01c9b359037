//! WebRTC through the `tidewater` binary with clients other than Chromium:
//! aiortc plays an ffmpeg RTMP publish over WHEP
//! (`tests/helpers/aiortc_whep.py`) and decodes it with its own decoders
//! (PyAV's H.264 and Opus); the figures it prints are checked against
//! what ffmpeg published, and its feedback (REMB, receiver reports) shows in
//! the API's sessions list. Junk on the media port is counted and logged
//! with its peer, at a bounded rate.
//!
//! GStreamer's webrtcbin publishing over WHIP is in `gst_whip.rs`. Not
//! tested (Debian 12): `simple-whip-client` aborts before sending anything
//! (it links libsoup 2 while libnice, through gupnp-igd, loads libsoup 3:
//! "Using libsoup2 and libsoup3 in the same process is not supported").
//! See the WHIP section of the crate docs of `tidewater-whip`.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tidewater_tests::child_lines::ChildLines;
use tidewater_tests::metrics::Scrape;
use tidewater_tests::python::python_with;
use tidewater_tests::{
    CLIP_VIDEO, ChildGuard, ServerCommand, ServerProcess, X264_LIVE, clip_audio, ffmpeg_realtime,
    fixed_gop, wait_live, workspace_root,
};

/// The Python with Debian's aiortc.
fn python() -> Command {
    python_with("import aiortc", "aiortc (python3-aiortc)")
}

fn helper(name: &str) -> PathBuf {
    workspace_root().join("tests/helpers").join(name)
}

/// The viewer's lines; `wait_for` gives the rest of the first line starting with `prefix`.
struct Lines(ChildLines);

impl Lines {
    fn spawn(cmd: Command) -> Lines {
        Lines(ChildLines::spawn(cmd))
    }

    fn wait_for(&mut self, prefix: &str, timeout: Duration) -> Option<String> {
        self.0
            .wait_for_match(timeout, |l| l.strip_prefix(prefix).map(str::to_owned))
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn aiortc_plays_an_rtmp_publish_over_whep_and_decodes_it() {
    let mut server = ServerCommand::with_config("[http]\nlisten = \"127.0.0.1:0\"\n").spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    // 320x240 at 25 fps, a keyframe a second, no B-frames; AAC at 44.1 kHz
    // (WHEP carries it transcoded to 48 kHz Opus).
    let _publisher = ChildGuard(
        ffmpeg_realtime()
            .args(CLIP_VIDEO)
            .args(clip_audio(44_100))
            .args(X264_LIVE)
            .args(fixed_gop(25))
            .args(["-bf", "0", "-c:a", "aac", "-b:a", "64k"])
            .args(["-t", "40", "-f", "flv", &format!("rtmp://{rtmp}/live/cam")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffmpeg"),
    );
    wait_live(http, "live/cam", Duration::from_secs(30));
    let seconds = 6.0;
    let mut cmd = python();
    cmd.arg(helper("aiortc_whep.py"))
        .arg(format!("http://{http}/whep/live/cam"))
        .arg(seconds.to_string());
    let mut viewer = Lines::spawn(cmd);
    // While it plays, the API's sessions list shows its link as its
    // feedback tells it: aiortc sends REMB and receiver reports.
    let deadline = Instant::now() + Duration::from_secs(30);
    let link = loop {
        let sessions = tidewater_tests::http_get(&format!("http://{http}/api/v1/sessions")).json();
        let link = sessions["sessions"].as_array().and_then(|all| {
            all.iter()
                .find(|s| s["protocol"] == "whep")
                .map(|s| s["webrtc"].clone())
        });
        if let Some(link) = link.filter(|l| l["remb_bps"].is_u64() && l["rr_rtt_ms"].is_f64()) {
            break link;
        }
        assert!(
            Instant::now() < deadline,
            "no WebRTC link figures in the sessions list: {sessions}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        link["remb_bps"].as_u64() > Some(10_000),
        "the viewer's REMB: {link}"
    );
    assert!(
        link["rr_rtt_ms"].as_f64().is_some_and(|ms| ms < 1_000.0),
        "a loopback round trip: {link}"
    );
    let report = viewer
        .wait_for("{", Duration::from_secs(60))
        .unwrap_or_else(|| panic!("aiortc said: {:?}\n{}", viewer.0.seen, server.output()));
    let got = json(&format!("{{{report}"));
    assert_eq!(got["status"], 201, "{got}");
    assert_eq!(got["video_codec"], "video/H264", "{got}");
    assert_eq!(got["audio_codec"], "audio/opus", "{got}");
    // The picture as published, at its rate: 6 s of 25 fps (the cached GOP
    // first, so a little more; a busy machine may connect later).
    let frames = got["video_frames"].as_u64().unwrap_or(0);
    assert!(
        (100..=200).contains(&frames),
        "{frames} video frames: {got}"
    );
    assert_eq!(
        (got["width"].as_u64(), got["height"].as_u64()),
        (Some(320), Some(240)),
        "{got}"
    );
    let pts: Vec<i64> = got["video_pts"]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_i64).collect())
        .unwrap_or_default();
    assert!(
        pts.windows(2).all(|w| w[1] > w[0]),
        "video timestamps rise: {pts:?}"
    );
    // 25 fps on the 90 kHz clock: 3 600 ticks a frame.
    let steps: Vec<i64> = pts.windows(2).map(|w| w[1] - w[0]).collect();
    let regular = steps.iter().filter(|&&d| d == 3_600).count();
    assert!(
        regular * 10 >= steps.len() * 9,
        "frames 40 ms apart: {steps:?}"
    );
    // The sound: AAC from the publish, Opus (48 kHz) over WebRTC, decoded:
    // about 50 frames of 20 ms a second.
    assert_eq!(got["sample_rate"], 48_000, "{got}");
    let audio = got["audio_frames"].as_u64().unwrap_or(0);
    assert!(audio >= 200, "{audio} audio frames: {got}");
    let samples = got["audio_samples"].as_u64().unwrap_or(0);
    assert!(
        samples >= audio * 960,
        "{samples} samples in {audio} frames: {got}"
    );
}

/// The `ADDR` of the server's first `prefix ADDR` line.
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

#[test]
fn junk_on_the_media_port_is_counted_and_logged_naming_its_peer_at_a_bounded_rate() {
    let mut server = ServerCommand::with_config("[http]\nlisten = \"127.0.0.1:0\"\n").spawn();
    let http = server.http_addr();
    let media = logged_addr(&mut server, "WebRTC media on UDP ");
    let socket = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let from = socket.local_addr().expect("local address");
    // 1 000 datagrams that are neither STUN, DTLS, RTP nor RTCP, and 20
    // RTP-looking ones from an address no session has; in bursts of 20 so
    // that a busy server's socket buffer never overflows (the counts are
    // exact).
    let rtp = [
        0x80u8, 0x60, 0, 1, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 0x65, 0x88,
    ];
    for burst in 0..51 {
        for _ in 0..20 {
            let datagram: &[u8] = if burst < 50 { b"hello, junk" } else { &rtp };
            socket.send_to(datagram, media).expect("send");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let refused = |reason: &str| {
        Scrape::get(http).sum(
            "tidewater_listener_refusals_total",
            &[("listener", "webrtc"), ("reason", reason)],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while (refused("malformed"), refused("unknown_peer")) != (1_000.0, 20.0) {
        assert!(
            Instant::now() < deadline,
            "webrtc refusals: malformed {}, unknown_peer {} (1 000 and 20 sent)\n{}",
            refused("malformed"),
            refused("unknown_peer"),
            server.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Logged with the peer's address, but not a line per datagram: the
    // listeners' limit (20 lines per 10 s, the last saying more are
    // suppressed).
    let output = server.output();
    let lines: Vec<&str> = output
        .lines()
        .filter(|l| l.contains(&from.to_string()))
        .collect();
    assert!(
        (1..=20).contains(&lines.len()),
        "{} lines name {from}:\n{output}",
        lines.len()
    );
    assert!(
        lines
            .iter()
            .all(|l| l.contains("webrtc: dropped a datagram")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("suppressed")),
        "the last line says more are suppressed: {lines:#?}"
    );
    // The server goes on: its API answers and nothing panicked.
    assert!(!output.contains("panicked"), "{output}");
    assert_eq!(
        tidewater_tests::http_get(&format!("http://{http}/api/v1/streams")).status,
        200
    );
}
