//! Helpers for the SRT end-to-end tests: ffmpeg and srt-live-transmit as
//! publishers and readers.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::ChildGuard;

/// An `srt://` URL for ffmpeg (its `latency` is in microseconds: 120 ms here).
pub fn ffmpeg_srt_url(addr: SocketAddr, streamid: &str) -> String {
    format!("srt://{addr}?streamid={streamid}&latency=120000")
}

/// Starts ffmpeg publishing a generated clip (testsrc2 320x240 at 25 fps,
/// a keyframe every `gop` frames, a 440 Hz sine) in real time as MPEG-TS to
/// `url`, for `seconds`; `vcodec` is `libx264` or `libx265`.
pub fn ffmpeg_publish_ts(url: &str, seconds: u32, gop: u32, vcodec: &str) -> ChildGuard {
    let mut c = Command::new("ffmpeg");
    c.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
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
    let child = c
        .args(["-c:a", "aac", "-b:a", "64k"])
        .args(["-t", &seconds.to_string(), "-f", "mpegts", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run ffmpeg (install the ffmpeg package): {e}"));
    ChildGuard(child)
}

/// ffmpeg writing a clip as MPEG-TS to its standard output, piped into
/// srt-live-transmit sending to `url` (libsrt's own URL syntax: `latency`
/// in milliseconds). Returns both processes.
pub fn slt_publish(url: &str, seconds: u32) -> (ChildGuard, ChildGuard) {
    let mut src = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ])
        .args(["-g", "25", "-c:a", "aac", "-t", &seconds.to_string()])
        .args(["-f", "mpegts", "pipe:1"])
        .stdin(Stdio::null())
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

/// srt-live-transmit reading `url` into the file `out` until the connection
/// ends (or `timeout`); returns whether it ended by itself.
pub fn slt_read(url: &str, out: &Path, timeout: Duration) -> bool {
    let file = std::fs::File::create(out).expect("output file");
    let mut child = ChildGuard(
        Command::new("srt-live-transmit")
            .args(["-a:no", "-q", "-t:60", url, "file://con"])
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run srt-live-transmit (install srt-tools): {e}")),
    );
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.0.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
