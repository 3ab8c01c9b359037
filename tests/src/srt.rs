//! Helpers for the SRT end-to-end tests: ffmpeg and srt-live-transmit as
//! publishers and readers.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{
    CLIP_VIDEO, ChildGuard, X264_LIVE, clip_audio, ffmpeg_realtime, spawn_ffmpeg, wait_live,
};

/// An `srt://` URL for ffmpeg (its `latency` is in microseconds: 120 ms here).
pub fn ffmpeg_srt_url(addr: SocketAddr, streamid: &str) -> String {
    format!("srt://{addr}?streamid={streamid}&latency=120000")
}

/// Starts ffmpeg publishing a generated clip (testsrc2 320x240 at 25 fps,
/// a keyframe every `gop` frames, a 440 Hz sine) in real time as MPEG-TS to
/// `url`, for `seconds`; `vcodec` is `libx264` or `libx265`.
pub fn ffmpeg_publish_ts(url: &str, seconds: u32, gop: u32, vcodec: &str) -> ChildGuard {
    spawn_ffmpeg(ffmpeg_publish_ts_command(url, seconds, gop, vcodec).stderr(Stdio::null()))
}

/// The ffmpeg command [`ffmpeg_publish_ts`] runs, not started (for callers
/// that drive the process themselves).
pub fn ffmpeg_publish_ts_command(url: &str, seconds: u32, gop: u32, vcodec: &str) -> Command {
    let mut c = ffmpeg_realtime();
    c.args(CLIP_VIDEO)
        .args(clip_audio(48_000))
        .args([
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            vcodec,
            "-preset",
            "ultrafast",
        ])
        .args(["-g", &gop.to_string(), "-keyint_min", &gop.to_string()]);
    if vcodec == "libx265" {
        c.args(["-x265-params", "log-level=none"]);
    } else {
        c.args(["-tune", "zerolatency", "-sc_threshold", "0"]);
    }
    c.args(["-c:a", "aac", "-b:a", "64k"])
        .args(["-t", &seconds.to_string(), "-f", "mpegts", url]);
    c
}

/// Starts ffmpeg publishing `seconds` of H.265 (2 s GOP) + AAC over SRT to
/// `srt` as `key` (`app/stream`), and waits until the server at `http`
/// reports it live with H.265 as its first track.
pub fn publish_h265_live(
    http: SocketAddr,
    srt: SocketAddr,
    key: &str,
    seconds: u32,
    timeout: Duration,
) -> ChildGuard {
    let publisher = ffmpeg_publish_ts(
        &ffmpeg_srt_url(srt, &format!("publish:{key}")),
        seconds,
        50,
        "libx265",
    );
    let live = wait_live(http, key, timeout);
    assert_eq!(live["catalog"]["tracks"][0]["codec"], "H265", "{live}");
    publisher
}

/// ffmpeg writing a clip as MPEG-TS to its standard output, piped into
/// srt-live-transmit sending to `url` (libsrt's own URL syntax: `latency`
/// in milliseconds). Returns both processes.
pub fn slt_publish(url: &str, seconds: u32) -> (ChildGuard, ChildGuard) {
    let mut src = ffmpeg_realtime()
        .args(CLIP_VIDEO)
        .args(clip_audio(48_000))
        .args(X264_LIVE)
        .args(["-g", "25", "-c:a", "aac", "-t", &seconds.to_string()])
        .args(["-f", "mpegts", "pipe:1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run ffmpeg: {e}"));
    let stdout = src.stdout.take().expect("piped stdout");
    let slt = Command::new("srt-live-transmit")
        .args(["-a:no", "-q", "-t:60", "-chunk:1316", "file://con", url])
        .stdin(stdout)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run srt-live-transmit (install srt-tools): {e}"));
    (ChildGuard(src), ChildGuard(slt))
}

/// srt-live-transmit reading `url` into the file `out` (created) until the
/// connection ends, giving up after `seconds` (its `-t`); not started.
pub fn slt_read_command(url: &str, out: &Path, seconds: u32) -> Command {
    let file = std::fs::File::create(out).expect("output file");
    let mut cmd = Command::new("srt-live-transmit");
    cmd.args(["-a:no", "-q", &format!("-t:{seconds}"), url, "file://con"])
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(Stdio::null());
    cmd
}

/// srt-live-transmit reading `url` into the file `out` until the connection
/// ends (or `timeout`); returns whether it ended by itself.
pub fn slt_read(url: &str, out: &Path, timeout: Duration) -> bool {
    let mut child = ChildGuard(
        slt_read_command(url, out, 60)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run srt-live-transmit (install srt-tools): {e}")),
    );
    child.wait_for(timeout).is_some()
}
