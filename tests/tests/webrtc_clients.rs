//! WebRTC through the `tidewater` binary with clients other than Chromium:
//! aiortc plays an ffmpeg RTMP publish over WHEP
//! (`tests/helpers/aiortc_whep.py`) and decodes it with its own decoders
//! (PyAV's H.264 and Opus); the figures it prints are checked against
//! what ffmpeg published.
//!
//! Not here, and why (Debian 12, GStreamer 1.22): `simple-whip-client`
//! aborts before sending anything (it links libsoup 2 while libnice,
//! through gupnp-igd, loads libsoup 3: "Using libsoup2 and libsoup3 in the
//! same process is not supported"); webrtcbin driven directly reaches the
//! server but its DTLS certificate is RSA, which str0m 0.25's DTLS (ECDSA
//! only) refuses ("no client certificate received"), and giving webrtcbin
//! an ECDSA certificate makes its own DTLS refuse the server's certificate
//! (alert 48). See the WHIP section of the crate docs of `tidewater-whip`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tidewater_tests::{
    CLIP_VIDEO, ChildGuard, ServerCommand, X264_LIVE, clip_audio, ffmpeg_realtime, fixed_gop,
    wait_live, workspace_root,
};

/// The Python with Debian's aiortc.
fn python() -> Command {
    let python = ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .args(["-c", "import aiortc"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .expect("python3 with aiortc (python3-aiortc): cargo xtask install");
    Command::new(python)
}

fn helper(name: &str) -> PathBuf {
    workspace_root().join("tests/helpers").join(name)
}

/// A child whose standard output lines arrive on a channel.
struct Lines {
    _child: ChildGuard,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn spawn(mut cmd: Command) -> Lines {
        let mut child = ChildGuard(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("python3"),
        );
        let (tx, lines) = mpsc::channel();
        for pipe in [
            child
                .0
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .0
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Lines {
            _child: child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The rest of the first line starting with `prefix`, within `timeout`.
    fn wait_for(&mut self, prefix: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        if let Some(l) = self.seen.iter().find(|l| l.starts_with(prefix)) {
            return Some(l[prefix.len()..].to_owned());
        }
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.lines.recv_timeout(left) else {
                break;
            };
            self.seen.push(line.clone());
            if let Some(rest) = line.strip_prefix(prefix) {
                return Some(rest.to_owned());
            }
        }
        None
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
    let report = viewer
        .wait_for("{", Duration::from_secs(60))
        .unwrap_or_else(|| panic!("aiortc said: {:?}\n{}", viewer.seen, server.output()));
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
