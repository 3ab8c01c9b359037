//! Joining an RTMP stream with ffmpeg's default probing, through the
//! `tidewater` binary: every one of 20 joins at spread GOP phases decodes its
//! first frame within 1 s (ffmpeg's FLV probe analyses 40 video frames before
//! it shows one; a viewer joining a young GOP is started at an earlier
//! keyframe and the replay is not metered out by write coalescing).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tidewater_tests::{
    ChildGuard, FrameCrc, ServerCommand, ffmpeg_publish, loopback_config, wait_live,
};

/// The bound on a join: from starting ffmpeg to its first decoded frame
/// (the frame's line in its framecrc output).
const BOUND: Duration = Duration::from_secs(1);
/// A 4 s GOP at 25 fps, as in the measurement.
const GOP: u32 = 100;

/// One join: ffmpeg decoding the first video frame of `url`; how long it
/// took to print that frame (from starting ffmpeg) and whether it did.
fn join(url: &str) -> (Duration, bool) {
    let started = Instant::now();
    let mut child = ChildGuard(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i", url])
            .args(["-map", "0:v:0", "-frames:v", "1", "-f", "framecrc", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run ffmpeg: {e}")),
    );
    let stdout = child.0.stdout.take().expect("piped stdout");
    let mut text = String::new();
    let mut took = None;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if took.is_none() && !line.starts_with('#') && !line.trim().is_empty() {
            took = Some(started.elapsed());
        }
        text.push_str(&line);
        text.push('\n');
    }
    let crc = FrameCrc::parse(&text);
    let decoded = crc.codecs == ["rawvideo"] && crc.lines.len() == 1;
    (took.unwrap_or_else(|| started.elapsed()), decoded)
}

#[test]
fn twenty_ffmpeg_joins_at_any_gop_phase_show_a_frame_within_a_second() {
    let mut server = ServerCommand::with_config(&loopback_config()).spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    let url = format!("rtmp://{rtmp}/live/join");
    let _publisher = ffmpeg_publish(&url, 60, GOP);
    wait_live(http, "live/join", Duration::from_secs(15));
    // A whole GOP and some: an earlier keyframe exists for young GOPs.
    std::thread::sleep(Duration::from_secs(5));
    let mut joins = Vec::new();
    for i in 0..20u64 {
        // Spread over the 4 s GOP: each join takes a few hundred ms, plus
        // a pause that differs from join to join.
        std::thread::sleep(Duration::from_millis(i * 173 % 500));
        joins.push(join(&url));
    }
    let times: Vec<String> = joins
        .iter()
        .map(|(t, _)| format!("{:.2}", t.as_secs_f64()))
        .collect();
    // The figures (BENCHMARKS.md): `-- --nocapture` shows them.
    println!("first frame per join (s): {}", times.join(" "));
    assert!(
        joins.iter().all(|(_, decoded)| *decoded),
        "every join decodes a frame: {joins:?}"
    );
    assert!(
        joins.iter().all(|(t, _)| *t <= BOUND),
        "first frame within {BOUND:?} for every join; got (s): {}",
        times.join(" ")
    );
}
