//! Recording and playback through the `tidewater` binary (`[record]`):
//! ffmpeg publishes over RTMP (H.264 with B-frames + AAC) and over SRT
//! (H.265 + AAC); ffprobe decodes every recorded segment; the list, the HLS
//! VOD playlist (ffmpeg, and hls.js in Chromium with a seek) and the MP4
//! range download play what was recorded; `kill -9` mid-recording and a
//! restart keep everything up to the last complete part; retention deletes
//! old segments and keeps the one being written; a full disk (a small tmpfs)
//! stops recording, never the stream.
//!
//! Segments are 2 s and parts 500 ms here, so each test takes seconds.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tidewater_tests::browser::{Player, PlayerRun, play_in_chromium};
use tidewater_tests::srt::{ffmpeg_publish_ts, ffmpeg_srt_url};
use tidewater_tests::{
    ChildGuard, ProbedFrames, ServerCommand, TempDir, curl_command, ffmpeg_framecrc,
    ffmpeg_publish_bframes_command, ffprobe_frames_command, http_get, loopback_config, wait_json,
    wait_live,
};

const LIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// One video frame at 25 fps, seconds.
const FRAME: f64 = 0.04;

/// A server configuration recording `live/*` into `dir` in 2 s segments of
/// 500 ms parts, plus `extra` lines of `[record]`. A publish that ends is
/// over after 500 ms (the grace for a republish, during which the recorder
/// keeps its last part).
fn record_config(dir: &Path, extra: &str) -> String {
    format!(
        "{}[defaults]\nfollow_grace_ms = 500\n[record]\npaths = [\"live/*\"]\ndir = {:?}\nsegment_s = 2\npart_ms = 500\n{extra}",
        loopback_config(),
        dir.display().to_string()
    )
}

/// The segment files of `key` under `dir`, oldest first.
fn segment_files(dir: &Path, key: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(key))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "mp4"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// ffprobe decoding every frame of a file or URL; panics on any complaint.
fn decode(target: &str) -> ProbedFrames {
    let out = ffprobe_frames_command(target)
        .output()
        .expect("ffprobe runs");
    assert!(
        out.stderr.is_empty(),
        "ffprobe {target} complained: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ProbedFrames::parse(&out, target)
}

/// Checks what a recorded piece decodes to: the codecs, frames in time
/// order, starting on a keyframe, sound starting within a frame of the
/// first picture.
/// Returns what ffprobe decoded, the video frames and their duration
/// (seconds).
fn check_decoded(target: &str, what: &str, video_codec: &str) -> (ProbedFrames, usize, f64) {
    let p = decode(target);
    let mut codecs: Vec<&str> = Vec::new();
    // An HLS input lists its streams twice (under the program and alone).
    for c in p.streams.iter().filter_map(|s| s.get("codec_name")) {
        if !codecs.contains(&c.as_str()) {
            codecs.push(c);
        }
    }
    assert_eq!(codecs, [video_codec, "aac"], "{what}");
    assert!(
        p.video.first().is_some_and(|v| v.1),
        "{what}: starts on a keyframe"
    );
    assert!(
        p.video.windows(2).all(|w| w[1].0 > w[0].0),
        "{what}: video times increase"
    );
    assert!(
        p.audio.windows(2).all(|w| w[1] > w[0]),
        "{what}: audio times increase"
    );
    let (v0, a0) = (p.video[0].0, p.audio.first().copied().unwrap_or(f64::NAN));
    assert!(
        (v0 - a0).abs() <= FRAME + 0.001,
        "{what}: sound starts at {a0}, the picture at {v0}"
    );
    let last = p.video.last().map_or(v0, |v| v.0);
    assert!(!p.audio.is_empty(), "{what}: audio");
    let (n, d) = (p.video.len(), last - v0 + FRAME);
    (p, n, d)
}

/// Downloads `url` into `file` with curl; returns its status and headers
/// (lower-cased names).
fn download(url: &str, file: &Path) -> (u16, Vec<(String, String)>) {
    let head = file.with_extension("head");
    let out = curl_command()
        .args(["--max-time", "30", "-D"])
        .arg(&head)
        .arg("-o")
        .arg(file)
        .arg(url)
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&head).expect("headers");
    let mut lines = text.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The spans of `/playback/{key}/list`: (start, duration seconds).
fn list(http: SocketAddr, key: &str) -> Vec<(String, f64)> {
    let r = http_get(&format!("http://{http}/playback/{key}/list"));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| {
            (
                s["start"].as_str().expect("start").to_string(),
                s["duration"].as_f64().expect("duration"),
            )
        })
        .collect()
}

/// An RFC 3339 time as a query value.
fn q(time: &str) -> String {
    time.replace(':', "%3A").replace('+', "%2B")
}

/// Seconds into the day of an RFC 3339 time in UTC (`…T06:23:44.123Z`, as
/// the server writes them).
fn day_seconds(time: &str) -> f64 {
    let (_, rest) = time.split_once('T').expect("a date-time");
    let clock = rest.trim_end_matches('Z');
    let parts: Vec<f64> = clock
        .split(':')
        .map(|p| p.parse().expect("a number"))
        .collect();
    parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
}

/// `time` (see [`day_seconds`]) plus `secs`.
fn plus(time: &str, secs: f64) -> String {
    let (date, _) = time.split_once('T').expect("a date-time");
    let total = day_seconds(time) + secs;
    assert!(total < 86_400.0, "the test does not cross midnight");
    let (h, m) = ((total / 3600.0).floor(), ((total % 3600.0) / 60.0).floor());
    format!("{date}T{h:02}:{m:02}:{:06.3}Z", total % 60.0)
}

/// Polls until the stream's recording is off (the publish ended and the
/// last file is closed and indexed): the API no longer lists it and the
/// list has a span.
fn wait_recorded(http: SocketAddr, key: &str) -> Vec<(String, f64)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let gone = http_get(&format!("http://{http}/api/v1/streams/{key}")).status == 404;
        let spans = list(http, key);
        if gone && !spans.is_empty() {
            // The recorder writes its last part when the grace ends.
            std::thread::sleep(Duration::from_millis(1500));
            let last = list(http, key);
            if last == spans {
                return last;
            }
        }
        assert!(Instant::now() < deadline, "{key} not recorded: {spans:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn publish_rtmp(rtmp: SocketAddr, key: &str, seconds: u32) -> ChildGuard {
    let child = ffmpeg_publish_bframes_command(&format!("rtmp://{rtmp}/{key}"), seconds, 25)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg runs");
    ChildGuard(child)
}

#[test]
fn an_rtmp_publish_is_recorded_and_played_back_as_mp4_and_hls() {
    let dir = TempDir::new("record-rtmp");
    let rec = dir.path().join("rec");
    let mut server = ServerCommand::with_config(&record_config(&rec, "")).spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    let mut publisher = publish_rtmp(rtmp, "live/cam", 7);
    wait_live(http, "live/cam", LIVE_TIMEOUT);

    // While it publishes, the API shows the recording.
    let stream = wait_json(
        &format!("http://{http}/api/v1/streams/live/cam"),
        LIVE_TIMEOUT,
        |v| v["recording"]["bytes"].as_u64().unwrap_or(0) > 0,
    );
    let recording = &stream["recording"];
    assert_eq!(recording["on"], true, "{recording}");
    assert!(
        recording["current_segment"]
            .as_str()
            .is_some_and(|f| f.ends_with(".mp4")),
        "{recording}"
    );
    assert_eq!(recording["last_error"], serde_json::Value::Null);
    assert_eq!(recording["disk_errors"], 0);
    assert!(
        publisher
            .wait_for(Duration::from_secs(30))
            .is_some_and(|s| s.success())
    );
    let spans = wait_recorded(http, "live/cam");

    // Every segment decodes: 7 s at 25 fps in all, each file on its own.
    let files = segment_files(&rec, "live/cam");
    assert!(files.len() >= 3, "2 s segments of 7 s: {files:?}");
    let (mut video, mut seconds) = (0, 0.0);
    for f in &files {
        let (_, v, d) = check_decoded(f.to_str().expect("utf-8"), &f.display().to_string(), "h264");
        assert!(
            (d - v as f64 * FRAME).abs() < 0.001,
            "{}: {v} frames over {d} s",
            f.display()
        );
        video += v;
        seconds += d;
    }
    assert!((174..=175).contains(&video), "{video} of 175 frames");
    assert_eq!(spans.len(), 1, "{spans:?}");
    let (start, duration) = spans[0].clone();
    assert!((duration - 7.0).abs() <= FRAME + 0.001, "{spans:?}");
    assert!(
        (seconds - duration).abs() <= FRAME + 0.001,
        "{seconds} vs {duration}"
    );

    // The whole span as HLS VOD: ffmpeg decodes every frame.
    let playlist = format!(
        "http://{http}/playback/live/cam/index.m3u8?start={}&duration={duration}",
        q(&start)
    );
    let text = http_get(&playlist).body;
    assert!(text.contains("#EXT-X-ENDLIST"), "{text}");
    let (_, v, _) = check_decoded(&playlist, "the VOD playlist", "h264");
    assert_eq!(v, video, "the playlist plays every recorded frame");

    // The whole span as one MP4.
    let whole = dir.path().join("whole.mp4");
    let url = format!(
        "http://{http}/playback/live/cam.mp4?start={}&duration={duration}",
        q(&start)
    );
    let (status, headers) = download(&url, &whole);
    assert_eq!(status, 200, "{headers:?}");
    assert_eq!(header(&headers, "content-type"), Some("video/mp4"));
    assert_eq!(
        header(&headers, "x-tidewater-range-end"),
        None,
        "one publish"
    );
    let (_, v, d) = check_decoded(whole.to_str().expect("utf-8"), "the whole MP4", "h264");
    assert_eq!(v, video);
    assert!((d - duration).abs() <= FRAME + 0.001, "{d} vs {duration}");

    // 2 s from the middle (3.5 s in): from the keyframe at 3 s, whole GOPs.
    let middle = dir.path().join("middle.mp4");
    let url = format!(
        "http://{http}/playback/live/cam.mp4?start={}&duration=2",
        q(&plus(&start, 3.5))
    );
    let (status, headers) = download(&url, &middle);
    assert_eq!(status, 200, "{headers:?}");
    let range_start = header(&headers, "x-tidewater-range-start").expect("the range's start");
    assert!(
        (day_seconds(range_start) - day_seconds(&start) - 3.0).abs() < 0.02,
        "{range_start} is 3 s after {start}"
    );
    let (p, v, _) = check_decoded(middle.to_str().expect("utf-8"), "the middle MP4", "h264");
    // From 3 s up to the end of the GOP holding 5.5 s: 3 GOPs of 25 frames.
    assert_eq!(v, 75, "{:?}", &p.video[..3]);
    assert!(
        p.video.iter().filter(|f| f.1).count() == 3,
        "a keyframe a second"
    );
    drop(server);
}

#[test]
fn h265_over_srt_is_recorded() {
    let dir = TempDir::new("record-srt");
    let rec = dir.path().join("rec");
    let mut server = ServerCommand::with_config(&record_config(&rec, "")).spawn();
    let (http, srt) = (server.http_addr(), server.srt_addr());
    let mut publisher =
        ffmpeg_publish_ts(&ffmpeg_srt_url(srt, "publish:live/hevc"), 5, 25, "libx265");
    wait_live(http, "live/hevc", LIVE_TIMEOUT);
    assert!(
        publisher
            .wait_for(Duration::from_secs(30))
            .is_some_and(|s| s.success())
    );
    let spans = wait_recorded(http, "live/hevc");
    assert_eq!(spans.len(), 1, "{spans:?}");
    let files = segment_files(&rec, "live/hevc");
    assert!(files.len() >= 2, "{files:?}");
    let mut video = 0;
    for f in &files {
        video += check_decoded(f.to_str().expect("utf-8"), &f.display().to_string(), "hevc").1;
    }
    // 125 frames published; SRT may lose the very last one at the end.
    assert!((124..=125).contains(&video), "{video} of 125 frames");
    assert!(
        (spans[0].1 - video as f64 * FRAME).abs() <= FRAME + 0.001,
        "{spans:?}"
    );
}

#[test]
fn kill_9_mid_recording_keeps_every_complete_part() {
    let dir = TempDir::new("record-kill");
    let rec = dir.path().join("rec");
    let config = record_config(&rec, "");
    let mut server = ServerCommand::with_config(&config).spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    let _publisher = publish_rtmp(rtmp, "live/crash", 30);
    wait_live(http, "live/crash", LIVE_TIMEOUT);
    // About 5 s in, between parts as it may be.
    wait_json(
        &format!("http://{http}/api/v1/streams/live/crash"),
        LIVE_TIMEOUT,
        // Video (25/s) and AAC (about 43/s) frames: about 5 s.
        |v| v["qos"]["frames"].as_u64().unwrap_or(0) > 5 * 68,
    );
    server.signal("KILL");
    server.wait_exit(Duration::from_secs(10)).expect("killed");
    let before: u64 = segment_files(&rec, "live/crash")
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();

    let mut server = ServerCommand::with_config(&config).spawn();
    let http: SocketAddr = server.http_addr();
    let spans = list(http, "live/crash");
    assert_eq!(spans.len(), 1, "{spans:?}");
    let (start, duration) = spans[0].clone();
    assert!(duration > 3.5, "{spans:?}");
    let after: u64 = segment_files(&rec, "live/crash")
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    assert!(
        after <= before && after + 256 * 1024 > before,
        "{before} -> {after}"
    );

    // The MP4 of it and the HLS VOD of it decode every recorded frame,
    // cleanly: the repaired tail is gone.
    let mp4 = dir.path().join("crash.mp4");
    let (status, headers) = download(&format!("http://{http}/playback/live/crash.mp4"), &mp4);
    assert_eq!(status, 200, "{headers:?}");
    let (_, video, d) = check_decoded(
        mp4.to_str().expect("utf-8"),
        "the MP4 after the crash",
        "h264",
    );
    assert!((d - duration).abs() <= FRAME + 0.001, "{d} vs {duration}");
    let playlist = format!(
        "http://{http}/playback/live/crash/index.m3u8?start={}&duration={duration}",
        q(&start)
    );
    assert_eq!(
        check_decoded(&playlist, "the playlist after the crash", "h264").1,
        video
    );
    // Every file is whole again.
    for f in segment_files(&rec, "live/crash") {
        decode(f.to_str().expect("utf-8"));
    }
    drop(server);
}

#[test]
fn hls_js_plays_the_vod_playlist_and_seeks() {
    let dir = TempDir::new("record-hlsjs");
    let rec = dir.path().join("rec");
    let mut server = ServerCommand::with_config(&record_config(&rec, "")).spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    let mut publisher = publish_rtmp(rtmp, "live/vod", 8);
    wait_live(http, "live/vod", LIVE_TIMEOUT);
    assert!(
        publisher
            .wait_for(Duration::from_secs(30))
            .is_some_and(|s| s.success())
    );
    let spans = wait_recorded(http, "live/vod");
    let (start, duration) = spans[0].clone();
    let url = format!(
        "http://{http}/playback/live/vod/index.m3u8?start={}&duration={duration}",
        q(&start)
    );
    let run = PlayerRun::new(Player::HlsJs, url, Duration::from_secs(8)).seek_to(5.0);
    let report = play_in_chromium(&run);
    assert!(
        !report
            .errors
            .iter()
            .any(|e| e.contains("(fatal)") || e.starts_with("page")),
        "{}",
        report.summary()
    );
    assert!(
        report.events.iter().any(|e| e.starts_with("seeked 5")),
        "{}",
        report.summary()
    );
    // After the seek it plays on from 5 s to the end (8 s).
    let after: Vec<f64> = report
        .samples
        .iter()
        .map(|s| s.current_time)
        .skip_while(|t| *t < 5.0)
        .collect();
    assert!(
        after.last().is_some_and(|t| *t > 6.5),
        "{}",
        report.summary()
    );
    drop(server);
}

#[test]
fn retention_deletes_old_segments_and_keeps_the_current_one() {
    let dir = TempDir::new("record-retention");
    let rec = dir.path().join("rec");
    let mut server =
        ServerCommand::with_config(&record_config(&rec, "retention = \"3s\"\nsweep_s = 1\n"))
            .spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    let _publisher = publish_rtmp(rtmp, "live/old", 30);
    wait_live(http, "live/old", LIVE_TIMEOUT);
    // 12 s of 2 s segments: the first ones ended more than 3 s ago.
    std::thread::sleep(Duration::from_secs(12));
    assert!(
        server
            .wait_for_line("retention deleted", Duration::from_secs(5))
            .is_some(),
        "{}",
        server.output()
    );
    let stream = http_get(&format!("http://{http}/api/v1/streams/live/old")).json();
    let current = stream["recording"]["current_segment"]
        .as_str()
        .expect("a file being written")
        .to_string();
    let files = segment_files(&rec, "live/old");
    let names: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_name()?.to_str().map(str::to_string))
        .collect();
    assert!(names.contains(&current), "{current} kept: {names:?}");
    // About 3 s kept plus the one being written, of six written.
    assert!(names.len() <= 4, "{names:?}");
    let spans = list(http, "live/old");
    assert!(spans[0].1 < 8.0, "the list follows: {spans:?}");
    drop(server);
}

/// Unmounts on drop.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_stops_recording_not_the_stream() {
    let dir = TempDir::new("record-full");
    let rec = dir.path().join("small");
    std::fs::create_dir_all(&rec).expect("dir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=128k", "tmpfs"])
        .arg(&rec)
        .stderr(Stdio::piped())
        .output();
    match mounted {
        Ok(out) if out.status.success() => {}
        other => {
            eprintln!(
                "a_full_disk_stops_recording_not_the_stream: SKIPPED: cannot mount a tmpfs \
                 (needs root, as CI runs): {other:?}"
            );
            return;
        }
    }
    let _mounted = Mounted(rec.clone());
    let mut server = ServerCommand::with_config(&record_config(&rec, "")).spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    let mut publisher = publish_rtmp(rtmp, "live/full", 10);
    wait_live(http, "live/full", LIVE_TIMEOUT);
    // A reader over RTMP from the start to the end of the publish.
    let reader = {
        let url = format!("rtmp://{rtmp}/live/full");
        std::thread::spawn(move || ffmpeg_framecrc(&url, &[], Duration::from_secs(40)))
    };
    assert!(
        server
            .wait_for_line("writing failed (disk full)", Duration::from_secs(20))
            .is_some(),
        "{}",
        server.output()
    );
    let stream = wait_json(
        &format!("http://{http}/api/v1/streams/live/full"),
        Duration::from_secs(5),
        |v| v["recording"]["on"] == false,
    );
    let recording = &stream["recording"];
    assert_eq!(recording["last_error"], "disk full", "{recording}");
    assert_eq!(recording["disk_errors"], 1, "{recording}");
    assert!(
        publisher
            .wait_for(Duration::from_secs(30))
            .is_some_and(|s| s.success())
    );
    // The reader ends, cleanly, with the publish.
    let crc = reader.join().expect("reader");
    assert!(crc.monotonic(), "the reader's timestamps go forward");
    let v = crc
        .codecs
        .iter()
        .position(|c| c == "rawvideo")
        .expect("decoded video");
    let video = crc.stream(v as u32).len();
    // Joined about a second in at the cached GOP (1 s): most of 10 s.
    assert!(video >= 200, "the reader kept playing: {video} frames");
    // What was written plays, up to its last complete part.
    let files: Vec<PathBuf> = segment_files(&rec, "live/full")
        .into_iter()
        .filter(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 0))
        .collect();
    assert!(
        !files.is_empty(),
        "something was recorded before the disk filled"
    );
    for f in &files {
        let p = decode(f.to_str().expect("utf-8"));
        assert!(!p.video.is_empty(), "{}", f.display());
    }
    drop(server);
}
