//! RTSP through the `tidewater` binary with GStreamer as the client:
//! `rtspclientsink` publishes H.264 and Opus (over TCP and UDP) or AAC (in
//! LATM, GStreamer's default AAC payload), `rtspsrc`
//! plays over TCP and UDP (what GStreamer published, and an RTMP publish
//! with AAC), each checked by the frames and samples it decoded.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tidewater_tests::{
    ChildGuard, FrameCrc, ServerCommand, TempDir, ffmpeg_framecrc_input, ffmpeg_publish,
    loopback_config, wait_live,
};

/// Bytes of one decoded 320x240 I420 picture.
const PICTURE: u64 = 320 * 240 * 3 / 2;
/// Bytes of one second of 48 kHz stereo S16 audio.
const AUDIO_SECOND: u64 = 48_000 * 2 * 2;

/// `gst-launch-1.0 -e` with `pipeline`, quiet, not started.
fn gst(pipeline: &str) -> Command {
    let mut cmd = Command::new("gst-launch-1.0");
    cmd.arg("-e")
        .args(pipeline.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// GStreamer publishing 320x240 H.264 at 25 fps (a keyframe a second,
/// no B-frames) and 48 kHz stereo Opus to `url` with `rtspclientsink`
/// over `protocols` (`tcp` or `udp`), for `seconds`.
fn gst_publish(url: &str, protocols: &str, seconds: u32) -> ChildGuard {
    gst_publish_with(url, protocols, seconds, "opusenc")
}

/// [`gst_publish`] with the audio encoded by `encoder` (`opusenc`, or
/// `avenc_aac ! aacparse`: AAC, which rtspclientsink sends as MP4A-LATM).
fn gst_publish_with(url: &str, protocols: &str, seconds: u32, encoder: &str) -> ChildGuard {
    let frames = seconds * 25;
    let pipeline = format!(
        "rtspclientsink name=s location={url} protocols={protocols} \
         videotestsrc is-live=true num-buffers={frames} ! video/x-raw,width=320,height=240,framerate=25/1 \
         ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 ! h264parse ! s. \
         audiotestsrc is-live=true ! audio/x-raw,rate=48000,channels=2 ! {encoder} ! s."
    );
    ChildGuard(
        gst(&pipeline)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run gst-launch-1.0: {e}")),
    )
}

/// What `rtspsrc` decoded from `url` over `protocols` in `seconds`:
/// (pictures, bytes of 48 kHz stereo S16 audio).
fn gst_play(url: &str, protocols: &str, seconds: u64, dir: &Path) -> (u64, u64) {
    let video = dir.join(format!("{protocols}.yuv"));
    let audio = dir.join(format!("{protocols}.pcm"));
    let pipeline = format!(
        "rtspsrc location={url} protocols={protocols} name=src \
         src. ! application/x-rtp,media=video ! rtph264depay ! h264parse ! avdec_h264 \
         ! videoconvert ! video/x-raw,format=I420,width=320,height=240 ! filesink location={} \
         src. ! application/x-rtp,media=audio ! decodebin ! audioconvert ! audioresample \
         ! audio/x-raw,format=S16LE,rate=48000,channels=2 ! filesink location={}",
        video.display(),
        audio.display()
    );
    let mut child = ChildGuard(
        gst(&pipeline)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run gst-launch-1.0: {e}")),
    );
    std::thread::sleep(Duration::from_secs(seconds));
    // SIGINT: with -e the pipeline drains (end of stream) before it exits.
    let _ = Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status();
    child.wait_for(Duration::from_secs(10));
    drop(child);
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    (size(&video) / PICTURE, size(&audio))
}

/// ffmpeg decoding `seconds` of `url` over RTSP/TCP.
fn ffmpeg_read(url: &str, seconds: u32) -> FrameCrc {
    ffmpeg_framecrc_input(
        &["-rtsp_transport", "tcp"],
        url,
        &["-t", &seconds.to_string()],
        Duration::from_secs(30),
    )
}

#[test]
fn gstreamer_publishes_over_tcp_and_udp_and_plays_over_both() {
    let mut server = ServerCommand::with_config(&loopback_config()).spawn();
    let (http, rtsp) = (server.http_addr(), server.rtsp_addr());
    let dir = TempDir::new("rtsp-gst");
    for publish in ["tcp", "udp"] {
        let key = format!("live/gst-{publish}");
        let url = format!("rtsp://{rtsp}/{key}");
        let _publisher = gst_publish(&url, publish, 30);
        let live = wait_live(http, &key, Duration::from_secs(15)).to_string();
        assert!(
            live.to_lowercase().contains("h264") && live.to_lowercase().contains("opus"),
            "{live}"
        );

        let crc = ffmpeg_read(&url, 3);
        let video = crc.codecs.iter().position(|c| c == "rawvideo");
        let audio = crc.codecs.iter().position(|c| c.starts_with("pcm_"));
        let (Some(video), Some(audio)) = (video, audio) else {
            panic!("ffmpeg decoded {:?}", crc.codecs)
        };
        assert!(
            crc.stream(video as u32).len() >= 60,
            "ffmpeg: {} pictures of a {publish} publish",
            crc.stream(video as u32).len()
        );
        assert!(!crc.stream(audio as u32).is_empty(), "ffmpeg: no Opus");
        assert!(crc.monotonic(), "ffmpeg: timestamps go back");

        for play in ["tcp", "udp"] {
            let (pictures, audio) = gst_play(&url, play, 4, dir.path());
            assert!(
                pictures >= 75,
                "rtspsrc/{play} of a {publish} publish: {pictures} pictures decoded in 4 s"
            );
            assert!(
                audio >= 2 * AUDIO_SECOND,
                "rtspsrc/{play} of a {publish} publish: {audio} bytes of audio decoded in 4 s"
            );
        }
    }
}

#[test]
fn rtspsrc_plays_an_rtmp_publish_with_aac_over_tcp_and_udp() {
    let mut server = ServerCommand::with_config(&loopback_config()).spawn();
    let (http, rtmp, rtsp) = (server.http_addr(), server.rtmp_addr(), server.rtsp_addr());
    let dir = TempDir::new("rtsp-gst-aac");
    let _publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/live/aac"), 30, 25);
    wait_live(http, "live/aac", Duration::from_secs(15));
    for play in ["tcp", "udp"] {
        let (pictures, audio) = gst_play(&format!("rtsp://{rtsp}/live/aac"), play, 4, dir.path());
        assert!(
            pictures >= 75,
            "rtspsrc/{play}: {pictures} pictures decoded in 4 s"
        );
        assert!(
            audio >= 2 * AUDIO_SECOND,
            "rtspsrc/{play}: {audio} bytes of AAC decoded in 4 s"
        );
    }
}

#[test]
fn gstreamer_publishes_aac_in_latm_read_over_rtsp_and_rtmp() {
    let mut server = ServerCommand::with_config(&loopback_config()).spawn();
    let (http, rtmp, rtsp) = (server.http_addr(), server.rtmp_addr(), server.rtsp_addr());
    let url = format!("rtsp://{rtsp}/live/latm");
    let _publisher = gst_publish_with(&url, "tcp", 30, "avenc_aac ! aacparse");
    let live = wait_live(http, "live/latm", Duration::from_secs(15)).to_string();
    assert!(live.to_lowercase().contains("aac"), "{live}");
    for url in [url.clone(), format!("rtmp://{rtmp}/live/latm")] {
        let crc = if url.starts_with("rtsp") {
            ffmpeg_read(&url, 3)
        } else {
            tidewater_tests::ffmpeg_framecrc(&url, &["-t", "3"], Duration::from_secs(30))
        };
        let audio = crc
            .codecs
            .iter()
            .position(|c| c.starts_with("pcm_"))
            .unwrap_or_else(|| panic!("{url}: no decoded audio in {:?}", crc.codecs));
        // 3 s of 1024-sample frames at 48 kHz: about 140.
        let frames = crc.stream(audio as u32).len();
        assert!(frames >= 120, "{url}: {frames} AAC frames decoded");
        assert!(
            crc.codecs.iter().any(|c| c == "rawvideo"),
            "{url}: {:?}",
            crc.codecs
        );
        assert!(crc.monotonic(), "{url}: timestamps go back");
    }
}
