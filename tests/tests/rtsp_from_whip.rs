//! A stream published over WHIP (GStreamer's webrtcbin through
//! `tests/helpers/gst_whip_publish.py`) read back by ffmpeg over RTSP and
//! over TS-HLS: each picture is one packet, decode times strictly rising.
//!
//! webrtcbin's x264enc codes 320x240 in two slices and its rtph264pay
//! repeats SPS and PPS before every IDR slice; the keyframe came out as
//! `SPS PPS slice SPS PPS slice`, and ffmpeg's RTSP and MPEG-TS demuxers,
//! which split access units by parsing, read it as two keyframe packets
//! at one decode time. The depacketizer now puts parameter sets ahead of
//! the picture's first slice.
//!
//! Not this: ffmpeg 5.1 gives the first packet it reads over RTSP no
//! timestamp, whatever the server (gst-rtsp-server too), and numbers from
//! the second; with one track only (a video-only WHIP publish, as the
//! soak's), the first two video packets then both come out at DTS 0.

use std::process::{Command, Stdio};
use std::time::Duration;

use tidewater_tests::child_lines::ChildLines;
use tidewater_tests::python::python_with;
use tidewater_tests::{
    FrameCrc, ServerCommand, ffmpeg_framecrc, ffmpeg_framecrc_input, wait_live, workspace_root,
};

fn publisher(url: &str, seconds: u32) -> ChildLines {
    let check = "import gi, cryptography; gi.require_version('GstWebRTC', '1.0'); \
                 from gi.repository import GstWebRTC";
    let python = python_with(
        check,
        "GStreamer's WebRTC bindings (python3-gi, gir1.2-gst-plugins-bad-1.0, python3-cryptography)",
    );
    let mut cmd = python;
    cmd.arg(workspace_root().join("tests/helpers/gst_whip_publish.py"))
        .arg(url)
        .arg(seconds.to_string());
    ChildLines::spawn(cmd)
}

/// The video stream's packets: one per picture, so decode times strictly
/// rise from the first (the keyframe the reader starts at) on.
fn assert_pictures_whole(what: &str, crc: &FrameCrc, min: usize) {
    let video = crc
        .codecs
        .iter()
        .position(|c| c == "h264")
        .unwrap_or_else(|| panic!("{what}: no h264 in {:?}", crc.codecs)) as u32;
    let packets = crc.stream(video);
    assert!(
        packets.len() >= min,
        "{what}: {} video packets, expected {min}+",
        packets.len()
    );
    let dts: Vec<i64> = packets.iter().map(|p| p.dts).collect();
    assert!(
        dts.windows(2).all(|w| w[1] > w[0]),
        "{what}: video decode times not strictly rising (a picture split in two?): {:?}",
        &dts[..dts.len().min(8)]
    );
    assert!(crc.monotonic(), "{what}: timestamps go back");
}

#[test]
fn a_whip_stream_read_over_rtsp_and_ts_hls_has_one_packet_per_picture() {
    let mut server = ServerCommand::with_config("[http]\nlisten = \"127.0.0.1:0\"\n").spawn();
    let (http, rtsp) = (server.http_addr(), server.rtsp_addr());
    let mut publisher = publisher(&format!("http://{http}/whip/live/gst"), 40);
    let connected = publisher.wait_for_match(Duration::from_secs(60), |l| {
        (l == "dtls connected").then(String::new)
    });
    assert!(
        connected.is_some(),
        "GStreamer's DTLS: {:?}\n{}",
        publisher.seen,
        server.output()
    );
    wait_live(http, "live/gst", Duration::from_secs(30));

    // Each reader starts at the cached GOP's keyframe: the picture that
    // came out as two packets, both keyframes (the encoder makes keyframes
    // a second or more apart: two in a row are one picture split).
    let rtsp_url = format!("rtsp://{rtsp}/live/gst");
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-select_streams",
            "v",
        ])
        .args(["-read_intervals", "%+1", "-show_entries", "packet=flags"])
        .args(["-of", "csv=p=0", &rtsp_url])
        .stdin(Stdio::null())
        .output()
        .expect("ffprobe");
    let flags = String::from_utf8_lossy(&probe.stdout);
    let keys: Vec<bool> = flags
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(2)
        .map(|l| l.starts_with('K'))
        .collect();
    assert_eq!(
        keys,
        [true, false],
        "the first two video packets over RTSP: one keyframe, then a picture that is not: {flags}"
    );
    for transport in ["tcp", "udp"] {
        let crc = ffmpeg_framecrc_input(
            &["-rtsp_transport", transport],
            &rtsp_url,
            &["-t", "3", "-c", "copy"],
            Duration::from_secs(40),
        );
        assert_pictures_whole(&format!("rtsp/{transport}"), &crc, 40);
    }
    let crc = ffmpeg_framecrc(
        &format!("http://{http}/hls/live/gst/index.m3u8"),
        &["-t", "3", "-c", "copy"],
        Duration::from_secs(40),
    );
    assert_pictures_whole("ts-hls", &crc, 40);
    // The picture is decodable as one: decoded frames over RTSP too.
    let decoded = ffmpeg_framecrc_input(
        &["-rtsp_transport", "tcp"],
        &rtsp_url,
        &["-t", "2"],
        Duration::from_secs(40),
    );
    let video = decoded
        .codecs
        .iter()
        .position(|c| c == "rawvideo")
        .unwrap_or_else(|| panic!("decoded video expected: {:?}", decoded.codecs))
        as u32;
    assert!(
        decoded.stream(video).len() >= 25,
        "{} pictures decoded over RTSP",
        decoded.stream(video).len()
    );
}
