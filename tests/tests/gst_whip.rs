//! GStreamer publishes over WHIP through the `tidewater` binary: webrtcbin
//! 1.22 (`tests/helpers/gst_whip_publish.py`) sends videotestsrc through
//! x264enc (constrained baseline) and audiotestsrc through opusenc, and
//! ffmpeg's ffprobe decodes the stream over RTMP and LL-HLS.
//!
//! The publisher's encoder makes one keyframe at the start and then only
//! when asked, so every later keyframe the readers decode was asked for by
//! the server (PLI every `keyframe_interval_ms`) and answered by GStreamer:
//! the RTCP the server sends is decrypted and acted on.
//!
//! webrtcbin needs two things from the helper (both GStreamer 1.22
//! limits, see its module doc): an ECDSA certificate (its own is RSA,
//! which str0m's DTLS refuses, checked here too) given while its DTLS
//! elements are still in the NULL state, and that certificate's
//! fingerprint written into the offer.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use tidewater_tests::child_lines::ChildLines;
use tidewater_tests::python::python_with;
use tidewater_tests::{
    ProbedFrames, ServerCommand, catalog_codecs, ffprobe_frames_command, wait_live, workspace_root,
};

/// The Python with GStreamer's bindings (python3-gi,
/// gir1.2-gst-plugins-bad-1.0) and `cryptography`.
fn python() -> Command {
    let check = "import gi, cryptography; gi.require_version('GstWebRTC', '1.0'); \
                 from gi.repository import GstWebRTC";
    python_with(
        check,
        "GStreamer's WebRTC bindings (python3-gi, gir1.2-gst-plugins-bad-1.0, python3-cryptography)",
    )
}

fn helper() -> PathBuf {
    workspace_root().join("tests/helpers/gst_whip_publish.py")
}

/// The publisher: its output lines (standard output and error), kept for
/// failure messages.
struct Publisher(ChildLines);

impl Publisher {
    fn spawn(url: &str, seconds: u32, extra: &[&str]) -> Publisher {
        let mut cmd = python();
        cmd.arg(helper())
            .arg(url)
            .arg(seconds.to_string())
            .args(extra);
        Publisher(ChildLines::spawn(cmd))
    }

    /// The first line equal to `prefix` or starting with `prefix ` (its
    /// rest), within `timeout`.
    fn wait_for(&mut self, prefix: &str, timeout: Duration) -> Option<String> {
        self.0.wait_for_match(timeout, |l| {
            (l == prefix)
                .then(String::new)
                .or_else(|| l.strip_prefix(&format!("{prefix} ")).map(str::to_owned))
        })
    }
}

/// ffprobe decoding `seconds` of `url`.
fn decode(url: &str, seconds: u32) -> ProbedFrames {
    let out = ffprobe_frames_command(url)
        .args(["-read_intervals", &format!("%+{seconds}")])
        .output()
        .expect("ffprobe");
    ProbedFrames::parse(&out, url)
}

fn stream<'a>(
    frames: &'a ProbedFrames,
    kind: &str,
) -> &'a std::collections::HashMap<String, String> {
    frames
        .streams
        .iter()
        .find(|s| s.get("codec_type").is_some_and(|t| t == kind))
        .unwrap_or_else(|| panic!("no {kind} stream: {:?}", frames.streams))
}

#[test]
fn gstreamer_webrtcbin_publishes_over_whip_and_ffmpeg_decodes_it_over_rtmp_and_ll_hls() {
    let mut server = ServerCommand::with_config("[http]\nlisten = \"127.0.0.1:0\"\n").spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    let mut publisher = Publisher::spawn(&format!("http://{http}/whip/live/gst"), 30, &[]);
    assert_eq!(
        publisher
            .wait_for("status", Duration::from_secs(60))
            .as_deref(),
        Some("201"),
        "the WHIP POST: {:?}\n{}",
        publisher.0.seen,
        server.output()
    );
    assert!(
        publisher
            .wait_for("dtls connected", Duration::from_secs(60))
            .is_some(),
        "GStreamer's DTLS: {:?}\n{}",
        publisher.0.seen,
        server.output()
    );
    let live = wait_live(http, "live/gst", Duration::from_secs(30));
    assert_eq!(live["protocol"], "whip", "{live}");
    let mut codecs: Vec<String> = catalog_codecs(&live)
        .iter()
        .filter_map(|c| c.as_str().map(str::to_owned))
        .collect();
    codecs.sort();
    assert_eq!(codecs, ["H264", "Opus"], "{live}");

    // Two readers at once, 8 s of decoded frames each: over RTMP the Opus
    // arrives transcoded to AAC, LL-HLS carries it as it came.
    let readers: Vec<_> = [
        ("rtmp", format!("rtmp://{rtmp}/live/gst"), "aac"),
        (
            "ll-hls",
            format!("http://{http}/llhls/live/gst/index.m3u8"),
            "opus",
        ),
    ]
    .into_iter()
    .map(|(name, url, audio)| std::thread::spawn(move || (name, audio, decode(&url, 8))))
    .collect();
    for reader in readers {
        let (name, audio_codec, frames) = reader.join().expect("reader");
        let video = stream(&frames, "video");
        assert_eq!(video["codec_name"], "h264", "{name}: {video:?}");
        assert_eq!(
            (
                video.get("width").map(String::as_str),
                video.get("height").map(String::as_str)
            ),
            (Some("320"), Some("240")),
            "{name}: {video:?}"
        );
        let audio = stream(&frames, "audio");
        assert_eq!(audio["codec_name"], audio_codec, "{name}: {audio:?}");
        assert_eq!(audio["sample_rate"], "48000", "{name}: {audio:?}");
        // 8 s at 25 fps is 200 pictures; a busy machine may join late.
        assert!(
            frames.video.len() >= 100,
            "{name}: {} video frames",
            frames.video.len()
        );
        assert!(
            frames.video.windows(2).all(|w| w[1].0 > w[0].0),
            "{name}: video times go backwards: {:?}",
            frames.video
        );
        // 20 ms Opus frames (LL-HLS) or 21.3 ms AAC frames (RTMP).
        assert!(
            frames.audio.len() >= 150,
            "{name}: {} audio frames",
            frames.audio.len()
        );
        assert!(
            frames.audio.windows(2).all(|w| w[1] > w[0]),
            "{name}: audio times go backwards: {:?}",
            frames.audio
        );
        // The reader starts at the cached GOP's keyframe; the encoder makes
        // no other keyframe by itself in 40 s (key-int-max=1000), so any
        // further one is the answer to the server's keyframe request.
        let keyframes: Vec<f64> = frames
            .video
            .iter()
            .filter(|(_, key)| *key)
            .map(|(t, _)| *t)
            .collect();
        assert!(
            keyframes.len() >= 2,
            "{name}: keyframes at {keyframes:?}: the server's requests were not answered"
        );
    }

    let summary = publisher
        .wait_for("done", Duration::from_secs(60))
        .unwrap_or_else(|| panic!("the publisher did not end: {:?}", publisher.0.seen));
    let summary: serde_json::Value =
        serde_json::from_str(&summary).unwrap_or_else(|e| panic!("{summary}: {e}"));
    assert_eq!(summary["error"], "", "{summary}");
    assert!(
        summary["keyframe_requests"].as_u64() >= Some(2),
        "GStreamer saw the server's PLIs: {summary}"
    );
    assert!(
        server
            .wait_for_line("ended by DELETE", Duration::from_secs(10))
            .is_some(),
        "the publisher's DELETE ends its session: {}",
        server.output()
    );
}

/// webrtcbin's own certificate is RSA: str0m's DTLS asks for an ECDSA one
/// and ends the session, saying so. (When this starts to fail, the server
/// takes RSA client certificates: update the README and the helper.)
#[test]
fn gstreamer_webrtcbin_with_its_rsa_certificate_is_refused_at_dtls() {
    let mut server = ServerCommand::with_config("[http]\nlisten = \"127.0.0.1:0\"\n").spawn();
    let http = server.http_addr();
    let mut publisher = Publisher::spawn(&format!("http://{http}/whip/live/rsa"), 10, &["--rsa"]);
    assert_eq!(
        publisher
            .wait_for("status", Duration::from_secs(60))
            .as_deref(),
        Some("201"),
        "the WHIP POST: {:?}",
        publisher.0.seen
    );
    assert!(
        server
            .wait_for_line("no client certificate received", Duration::from_secs(30))
            .is_some(),
        "{}",
        server.output()
    );
    let summary = publisher
        .wait_for("done", Duration::from_secs(60))
        .unwrap_or_else(|| panic!("the publisher did not end: {:?}", publisher.0.seen));
    assert!(
        !publisher.0.seen.iter().any(|l| l == "dtls connected"),
        "{summary}: {:?}",
        publisher.0.seen
    );
}
