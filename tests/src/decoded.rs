//! What ffmpeg decoded of a live stream, and the checks the WebRTC tests
//! make of it: ffmpeg's framecrc of a URL, killed at a deadline; the
//! decoded picture's frame count, size and timestamps; the codecs a live
//! stream's catalog names. `tests/tests/webrtc.rs` and `whip_codecs.rs`
//! share them (they made the same reads and checks in their own copies);
//! any test that reads a publish back with ffmpeg may use them.

use std::process::Stdio;
use std::time::Duration;

use crate::{ChildGuard, CrcLine, FrameCrc, catalog_codecs, ffmpeg_framecrc_command};

/// ffmpeg's framecrc of `url` (input options `input`, output options
/// `output`, e.g. `-t 5`), killed after `timeout`: what it decoded, and
/// whether it ended by itself. Nothing is judged here and its standard
/// error is not read (callers check what it decoded, and ask ffmpeg again
/// for its complaints when it did not end; [`crate::ffmpeg_framecrc`] is
/// the variant that must end cleanly).
pub fn ffmpeg_decode_within(
    input: &[&str],
    url: &str,
    output: &[&str],
    timeout: Duration,
) -> (FrameCrc, bool) {
    let mut child = ChildGuard(
        ffmpeg_framecrc_command(input, url, output)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffmpeg"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::BufReader::new(stdout), &mut text);
        text
    });
    let ended = child.wait_for(timeout).is_some();
    drop(child);
    (FrameCrc::parse(&reader.join().unwrap_or_default()), ended)
}

/// Checks the decoded picture in `crc` (its `rawvideo` stream): there is
/// one, with at least `min_frames` frames, each `width` × `height` YUV
/// 4:2:0, and every stream's timestamps increase. Panics with `summary`
/// (what was read, from where) otherwise; returns the picture's frames.
#[track_caller]
pub fn assert_decoded_video<'a>(
    crc: &'a FrameCrc,
    summary: &str,
    min_frames: usize,
    width: u64,
    height: u64,
) -> Vec<&'a CrcLine> {
    let video = crc
        .codecs
        .iter()
        .position(|c| c == "rawvideo")
        .unwrap_or_else(|| panic!("{summary}: no decoded video")) as u32;
    let frames = crc.stream(video);
    assert!(
        frames.len() >= min_frames,
        "{summary}: {} frames",
        frames.len()
    );
    assert!(
        frames.iter().all(|f| f.size == width * height * 3 / 2),
        "{summary}"
    );
    assert!(crc.monotonic(), "{summary}: timestamps go backwards");
    frames
}

/// The codec names (`H264`, `Opus`, …) of a live stream's catalog, as
/// `/api/v1/streams/{key}` gives it (see [`crate::wait_live`]), sorted.
pub fn sorted_catalog_codecs(live: &serde_json::Value) -> Vec<String> {
    let mut codecs: Vec<String> = catalog_codecs(live)
        .iter()
        .filter_map(|c| c.as_str().map(str::to_owned))
        .collect();
    codecs.sort();
    codecs
}
