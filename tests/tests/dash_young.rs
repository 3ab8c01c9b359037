//! ffmpeg's DASH demuxer as the first viewer of a young stream, through the
//! `tidewater` binary with the default config (low-latency DASH).
//!
//! ffmpeg 5.1 reads a `$Number$` MPD once and computes its oldest segment as
//! `(now - availabilityStartTime) - timeShiftBufferDepth` in unsigned whole
//! seconds. While the MPD announced the configured 12 s to a stream younger
//! than that, the difference wrapped round: every segment looked too old to
//! it and each request went back to the segment its clock called live. When
//! the publisher's frames reach the server ahead of the stream's clock
//! anchor, as they do after an encoder's first second arrived late (a slow
//! connection, a loaded machine: the soak's readers met it), the reader asks
//! for the next segment before its clock has reached it, and so fetched the
//! one it had just read, again and again: decode time stood still. The
//! server now announces a depth no deeper than the stream is old.

use std::process::{Command, Stdio};
use std::time::Duration;

use tidewater_tests::{
    CLIP_VIDEO, ChildGuard, FrameCrc, ServerCommand, X264_LIVE, clip_audio, ffmpeg_framecrc_text,
    ffmpeg_realtime, fixed_gop, http_get, loopback_config, wait_live,
};

const LIVE_TIMEOUT: Duration = Duration::from_secs(15);
/// How old the stream is when the reader opens it.
const AGE: Duration = Duration::from_secs(2);
/// Media the reader decodes, seconds (`-t`); at least 8 s must come out.
const READ_SECONDS: u32 = 10;

/// An encoder whose first second reaches the server late: ffmpeg encodes the
/// clip (25 fps, a keyframe every 2 s, AAC) in real time into a pipe, and a
/// second ffmpeg, started a second later, copies it to `url` over RTMP. The
/// server's clock anchor is the first frame's (late) arrival; the backlog
/// follows at once and every later frame arrives about a second ahead of
/// the anchor's clock. Both processes are killed when the guards drop.
fn late_start_publisher(url: &str, seconds: u32) -> (ChildGuard, ChildGuard) {
    let mut encoder = ChildGuard(
        ffmpeg_realtime()
            .args(CLIP_VIDEO)
            .args(clip_audio(44_100))
            .args(X264_LIVE)
            .args(fixed_gop(50))
            .args(["-c:a", "aac", "-b:a", "64k"])
            .args(["-t", &seconds.to_string(), "-f", "flv", "-"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run ffmpeg: {e}")),
    );
    let pipe = encoder
        .0
        .stdout
        .take()
        .expect("the encoder's stdout is piped");
    std::thread::sleep(Duration::from_secs(1));
    let relay = ChildGuard(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
            .args(["-f", "flv", "-i", "pipe:0", "-c", "copy", "-f", "flv", url])
            .stdin(Stdio::from(pipe))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run ffmpeg: {e}")),
    );
    (encoder, relay)
}

/// `timeShiftBufferDepth` of an MPD, in seconds.
fn depth_seconds(mpd: &str) -> f64 {
    let value = mpd
        .split("timeShiftBufferDepth=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no timeShiftBufferDepth in\n{mpd}"));
    value
        .strip_prefix("PT")
        .and_then(|s| s.strip_suffix('S'))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("timeShiftBufferDepth {value:?} is not PTnS"))
}

/// Seconds per tick of a stream's time base in framecrc text (`#tb N: 1/25`).
fn timebase(framecrc: &str, stream: u32) -> f64 {
    let prefix = format!("#tb {stream}: ");
    framecrc
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|tb| tb.trim().split_once('/'))
        .and_then(|(n, d)| Some(n.parse::<f64>().ok()? / d.parse::<f64>().ok()?))
        .unwrap_or_else(|| panic!("no time base for stream {stream}"))
}

#[test]
fn ffmpeg_opens_a_two_second_old_stream_and_decodes_with_rising_timestamps() {
    let config = loopback_config();
    let mut server = ServerCommand::with_config(&config).spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    let _publisher = late_start_publisher(&format!("rtmp://{rtmp}/live/young"), 40);
    wait_live(http, "live/young", LIVE_TIMEOUT);
    std::thread::sleep(AGE);

    let mpd_url = format!("http://{http}/dash/live/young/manifest.mpd");
    let mpd = http_get(&mpd_url);
    assert_eq!(mpd.status, 200, "{}", mpd.body);
    // The configured buffer is 12 s (6 segments of 2 s); a stream this
    // young can only offer what it has.
    let depth = depth_seconds(&mpd.body);
    assert!(
        (1.0..12.0).contains(&depth),
        "timeShiftBufferDepth {depth} s at about {AGE:?} old\n{}",
        mpd.body
    );

    // Every decoded frame with its own timestamp (no frame-rate conversion
    // that would drop repeats).
    let text = ffmpeg_framecrc_text(
        &mpd_url,
        &["-t", &READ_SECONDS.to_string(), "-fps_mode", "passthrough"],
        Duration::from_secs(90),
    );
    let crc = FrameCrc::parse(&text);
    let video = crc
        .codecs
        .iter()
        .position(|c| c == "rawvideo")
        .expect("decoded video") as u32;
    let audio = crc
        .codecs
        .iter()
        .position(|c| c.starts_with("pcm_"))
        .expect("decoded audio") as u32;
    for (index, per_second, what) in [(video, 25.0, "video"), (audio, 44_100.0 / 1024.0, "audio")] {
        let frames = crc.stream(index);
        let tb = timebase(&text, index);
        let (Some(first), Some(last)) = (frames.first(), frames.last()) else {
            panic!("no {what} frames");
        };
        for w in frames.windows(2) {
            assert!(
                w[1].pts > w[0].pts,
                "{what} timestamps do not rise: {} then {} ({} frames)",
                w[0].pts,
                w[1].pts,
                frames.len()
            );
        }
        let span = (last.pts - first.pts) as f64 * tb;
        assert!(
            span >= 8.0,
            "{what}: {span:.2} s of media decoded, {} frames",
            frames.len()
        );
        // Rising timestamps and no more frames than the media holds: none
        // read twice.
        let expected = span * per_second;
        assert!(
            (frames.len() as f64) <= expected + 2.0 && (frames.len() as f64) >= expected * 0.95,
            "{what}: {} frames over {span:.2} s",
            frames.len()
        );
    }
    drop(server);
}
