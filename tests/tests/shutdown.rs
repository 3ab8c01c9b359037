//! Graceful stop and restart of the `tidewater` binary (`[server]
//! drain_ms`): ffmpeg publishes over RTMP into a server that packages HLS,
//! LL-HLS and DASH and records; ffmpeg reads HLS, LL-HLS, RTMP, RTSP, SRT,
//! HTTP-FLV and HTTP-TS. On
//! SIGTERM every output finalizes (the playlists end with `EXT-X-ENDLIST`,
//! the MPD turns static, the recording's last file decodes to its end and is
//! in the index), a new publish is refused, the HLS readers end by
//! themselves having decoded up to the last frame of the last segment, the
//! other readers end cleanly, and the server exits 0 once the drain is over.
//! A restart on the same ports and directory lists the recording and takes
//! the publisher back at once. A second signal exits at once.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tidewater_tests::{
    ChildGuard, ProbedFrames, ServerCommand, TempDir, ffmpeg_publish, ffprobe_frames_command,
    http_get, loopback_config, try_http_get, wait_json, wait_live,
};

const LIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// The drain of these tests (`[server] drain_ms`): room for the checks made
/// during it on a busy machine (fetches, two ffprobes, a refused publish).
const DRAIN: Duration = Duration::from_millis(9_000);
/// What the stop may take beyond the drain: finalizing, closing, and a busy
/// machine (the phases themselves take milliseconds).
const STOP_MARGIN: Duration = Duration::from_secs(8);
/// One video frame at 25 fps, seconds.
const FRAME: f64 = 0.04;

/// A server recording `live/*` into `dir` (2 s segments of 500 ms parts),
/// packaging HLS from the publish on, with `drain` and its RTMP and HTTP
/// listeners on `rtmp` and `http`.
fn config(dir: &Path, drain: Duration) -> String {
    format!(
        "{}[server]\ndrain_ms = {}\n[hls]\nalways_on_all = true\n[record]\npaths = [\"live/*\"]\ndir = {:?}\nsegment_s = 2\npart_ms = 500\n",
        loopback_config(),
        drain.as_millis(),
        dir.display().to_string()
    )
}

/// A free loopback TCP port (bound and released: the server binds it next).
fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn server(dir: &Path, drain: Duration, rtmp: SocketAddr, http: SocketAddr) -> ServerCommand {
    ServerCommand::with_config(&config(dir, drain))
        .env("TIDEWATER_RTMP__LISTEN", &rtmp.to_string())
        .env("TIDEWATER_HTTP__LISTEN", &http.to_string())
}

/// An ffmpeg decoding `url` into framecrc, its output and errors collected.
struct Reader {
    child: ChildGuard,
    out: Option<JoinHandle<String>>,
    err: Option<JoinHandle<String>>,
}

/// What a reader printed, once it ended.
struct ReaderEnd {
    status: Option<ExitStatus>,
    /// Per stream: each packet's pts in seconds (input timestamps, `-copyts`).
    pts: Vec<Vec<f64>>,
    errors: String,
}

impl Reader {
    fn start(url: &str) -> Reader {
        // RTP over the RTSP connection: the one transport every setup has.
        let transport: &[&str] = match url.starts_with("rtsp:") {
            true => &["-rtsp_transport", "tcp"],
            false => &["-rw_timeout", "15000000"],
        };
        let mut child = ChildGuard(
            Command::new("ffmpeg")
                .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
                .args(transport)
                .args(["-copyts", "-i", url])
                .args(["-f", "framecrc", "-"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run ffmpeg (install the ffmpeg package): {e}")),
        );
        let collect = |mut r: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = r.read_to_string(&mut text);
                text
            })
        };
        let out = child.0.stdout.take().map(|o| collect(Box::new(o)));
        let err = child.0.stderr.take().map(|e| collect(Box::new(e)));
        Reader { child, out, err }
    }

    /// Waits up to `timeout` for it to end by itself (killed after).
    fn finish(mut self, timeout: Duration) -> ReaderEnd {
        let status = self.child.wait_for(timeout);
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        let join =
            |h: Option<JoinHandle<String>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
        let (text, errors) = (join(self.out.take()), join(self.err.take()));
        ReaderEnd {
            status,
            pts: framecrc_pts(&text),
            errors,
        }
    }
}

/// framecrc's packets as pts in seconds per stream (its `#tb` lines give
/// each stream's time base); panics on a line it cannot read.
fn framecrc_pts(text: &str) -> Vec<Vec<f64>> {
    let mut bases: Vec<f64> = Vec::new();
    let mut pts: Vec<Vec<f64>> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("#tb ") {
            let (index, base) = rest.split_once(": ").expect("#tb N: a/b");
            let (a, b) = base.split_once('/').expect("a/b");
            let i: usize = index.parse().expect("stream index");
            let base = a.trim().parse::<f64>().expect("a") / b.trim().parse::<f64>().expect("b");
            if bases.len() <= i {
                bases.resize(i + 1, 0.0);
                pts.resize(i + 1, Vec::new());
            }
            bases[i] = base;
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            assert!(f.len() >= 6, "framecrc: not a packet line: {line:?}");
            let i: usize = f[0].parse().expect("stream index");
            let t: i64 = f[2].parse().expect("pts");
            let base = *bases.get(i).expect("a #tb line for every stream");
            pts[i].push(t as f64 * base);
        }
    }
    pts
}

fn increasing(v: &[f64]) -> bool {
    v.windows(2).all(|w| w[1] > w[0])
}

/// The recorded files of `key` under `dir`, oldest first.
fn recorded(dir: &Path, key: &str) -> Vec<PathBuf> {
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

/// ffprobe decoding every frame of `file`; panics on any complaint.
fn decode(file: &Path) -> ProbedFrames {
    let target = file.display().to_string();
    let out = ffprobe_frames_command(&target)
        .output()
        .expect("ffprobe runs");
    assert!(
        out.stderr.is_empty(),
        "ffprobe {target} complained: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ProbedFrames::parse(&out, &target)
}

/// Polls `GET url` until `check` accepts the body; returns it.
fn wait_body(url: &str, timeout: Duration, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let last = try_http_get(url);
        if let Ok(r) = &last
            && r.status == 200
            && check(&r.body)
        {
            return r.body.clone();
        }
        assert!(
            Instant::now() < deadline,
            "GET {url}: not as expected within {timeout:?}; last: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The URIs of a media playlist's segments.
fn segments(playlist: &str) -> Vec<&str> {
    playlist
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// The largest video pts (seconds) in one MPEG-TS segment, as ffprobe reads it.
fn last_video_pts(url: &str) -> f64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v"])
        .args(["-show_entries", "packet=pts_time", "-of", "csv=p=0", url])
        .stdin(Stdio::null())
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "ffprobe {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse::<f64>().ok())
        .fold(f64::NAN, f64::max)
}

/// The reader sessions of the API, by protocol.
fn readers(http: SocketAddr, protocol: &str) -> Vec<serde_json::Value> {
    let v = http_get(&format!("http://{http}/api/v1/sessions")).json();
    v["sessions"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter(|s| s["kind"] == "reader" && s["protocol"] == protocol)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn sigterm_finalizes_every_output_drains_exits_0_and_a_restart_serves_the_recording() {
    let dir = TempDir::new("shutdown-record");
    let (rtmp, http) = (free_port(), free_port());
    let mut srv = server(dir.path(), DRAIN, rtmp, http).spawn();
    assert_eq!(srv.http_addr(), http);
    assert_eq!(srv.rtmp_addr(), rtmp);
    let key = "live/cam";
    let publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/{key}"), 120, 25);
    wait_live(http, key, LIVE_TIMEOUT);
    let hls = format!("http://{http}/hls/{key}/index.m3u8");
    let llhls = format!("http://{http}/llhls/{key}/index.m3u8");
    let mpd = format!("http://{http}/dash/{key}/manifest.mpd");
    // Three complete segments before the readers join (they start there).
    wait_body(&hls, LIVE_TIMEOUT, |p| segments(p).len() >= 3);

    let hls_reader = Reader::start(&hls);
    let ll_reader = Reader::start(&llhls);
    let (srt, rtsp) = (srv.srt_addr(), srv.rtsp_addr());
    let live_readers = [
        ("rtmp", format!("rtmp://{rtmp}/{key}")),
        ("rtsp", format!("rtsp://{rtsp}/{key}")),
        (
            "srt",
            format!("srt://{srt}?streamid=read:{key}&latency=120000"),
        ),
        ("http-flv", format!("http://{http}/flv/{key}.flv")),
        ("http-ts", format!("http://{http}/ts/{key}.ts")),
    ]
    .map(|(name, url)| (name, Reader::start(&url)));
    // Every reader is playing (the RTMP one has had 256 frames, audio and
    // video: the API's count moves by that much) before the stop.
    let deadline = Instant::now() + LIVE_TIMEOUT;
    loop {
        let rtmp_frames = readers(http, "rtmp")
            .first()
            .and_then(|s| s["frames"].as_u64())
            .unwrap_or(0);
        let playing: Vec<&str> = ["hls", "llhls", "rtsp", "srt", "http-flv", "http-ts"]
            .into_iter()
            .filter(|p| !readers(http, p).is_empty())
            .collect();
        if rtmp_frames >= 256 && playing.len() == 6 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "readers not playing: rtmp {rtmp_frames} frames, {playing:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    srv.signal("TERM");
    let stopped_at = Instant::now();
    srv.wait_for_line("shutdown: draining", STOP_MARGIN)
        .unwrap_or_else(|| panic!("no drain within {STOP_MARGIN:?}:\n{}", srv.output()));

    // During the drain: every output is final.
    let final_hls = http_get(&hls).body;
    assert!(final_hls.ends_with("#EXT-X-ENDLIST\n"), "{final_hls}");
    let final_ll = http_get(&llhls).body;
    assert!(final_ll.ends_with("#EXT-X-ENDLIST\n"), "{final_ll}");
    let static_mpd = http_get(&mpd).body;
    assert!(static_mpd.contains("type=\"static\""), "{static_mpd}");
    assert!(
        static_mpd.contains("mediaPresentationDuration=\"PT"),
        "{static_mpd}"
    );
    assert!(!static_mpd.contains("minimumUpdatePeriod"), "{static_mpd}");
    // A DASH player that comes now plays the window to its end.
    let out = ffprobe_frames_command(&mpd).output().expect("ffprobe runs");
    let dash = ProbedFrames::parse(&out, "ffprobe of the static MPD");
    assert!(
        out.stderr.is_empty(),
        "ffprobe of the static MPD: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dash.video.len() >= 100 && dash.video.windows(2).all(|w| w[1].0 > w[0].0),
        "the static MPD: {} video frames",
        dash.video.len()
    );
    assert!(dash.audio.len() >= 100, "the static MPD: audio");
    let last_segment = segments(&final_hls)
        .last()
        .map(|s| format!("http://{http}/hls/{key}/{s}"))
        .expect("segments in the final playlist");
    let end_pts = last_video_pts(&last_segment);
    // A new publish is refused, and says why.
    let mut late = ffmpeg_publish(&format!("rtmp://{rtmp}/live/late"), 5, 25);
    let late_status = late.wait_for(Duration::from_secs(20));
    assert!(
        late_status.is_some_and(|s| !s.success()),
        "a publish during the drain: {late_status:?}"
    );
    srv.wait_for_line("the server is shutting down", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("the late publish was not refused:\n{}", srv.output()));

    // The HLS readers end by themselves, having decoded up to the last frame.
    for (name, reader) in [("hls", hls_reader), ("llhls", ll_reader)] {
        let end = reader.finish(DRAIN + STOP_MARGIN);
        assert!(
            end.status.is_some_and(|s| s.success()),
            "{name} reader: {:?}; {}",
            end.status,
            end.errors
        );
        assert!(end.errors.is_empty(), "{name} reader: {}", end.errors);
        let video = end.pts.first().expect("a video stream");
        assert!(
            video.len() >= 100,
            "{name} reader: {} video frames",
            video.len()
        );
        assert!(increasing(video), "{name} reader: video pts not increasing");
        assert!(
            end.pts
                .get(1)
                .is_some_and(|a| a.len() > 100 && increasing(a)),
            "{name} reader: audio"
        );
        // Both packagers keep the stream's timestamps: the LL-HLS reader's
        // last frame is the same as the MPEG-TS segment's.
        let last = video.last().copied().unwrap_or(f64::NAN);
        assert!(
            (last - end_pts).abs() <= FRAME / 2.0,
            "{name} reader stopped at {last}, the stream ended at {end_pts}"
        );
    }
    // The RTMP, RTSP, SRT, HTTP-FLV and HTTP-TS readers end cleanly with
    // what they played (they saw the end in the first phase).
    let mut rtmp_video = 0;
    for (name, reader) in live_readers {
        let end = reader.finish(DRAIN + STOP_MARGIN);
        assert!(
            end.status.is_some_and(|s| s.success()),
            "{name} reader: {:?}; {}",
            end.status,
            end.errors
        );
        // ffmpeg 5.1's libsrt reports the end of an SRT connection (the
        // sender's shutdown, at any end of a stream) as an I/O error, and
        // exits 0: only that is let through.
        let unexpected = end.errors.lines().any(|l| {
            name != "srt"
                || !(l.ends_with("Input/output error") || l.contains("Last message repeated"))
        });
        assert!(!unexpected, "{name} reader: {}", end.errors);
        let video = end.pts.first().expect("a video stream");
        assert!(
            video.len() >= 50 && increasing(video),
            "{name} reader: {} video frames, pts {:?}",
            video.len(),
            video.windows(2).find(|w| w[1] <= w[0])
        );
        if name == "rtmp" {
            rtmp_video = video.len();
        }
    }

    // The server exits 0 once the drain is over, having logged each phase.
    let (status, output) = srv.expect_exit(DRAIN + STOP_MARGIN);
    let took = stopped_at.elapsed();
    assert!(status.success(), "exit {status}:\n{output}");
    // HLS players are sessions until their idle timeout: the drain lasts
    // all of drain_ms.
    assert!(
        took >= DRAIN && took < DRAIN + STOP_MARGIN,
        "stopped in {took:?}"
    );
    let draining = format!("shutdown: draining for up to {} ms", DRAIN.as_millis());
    for line in [
        "shutdown: publishes refused; 1 live stream(s) ended (live/cam); every packaging finalized; 1 recording(s) closed",
        &draining,
        "shutdown: drained; closing",
        "every listener closed; stopped",
    ] {
        assert!(output.contains(line), "no {line:?} in:\n{output}");
    }
    drop(publisher);

    // The recording: every file decodes entirely, the last one up to the
    // stop, and each is in the index.
    let files = recorded(dir.path(), key);
    assert!(files.len() >= 2, "{files:?}");
    let index =
        std::fs::read_to_string(dir.path().join(key).join("index.jsonl")).expect("the index");
    let mut recorded_frames = 0;
    for f in &files {
        let p = decode(f);
        assert!(
            p.video.first().is_some_and(|v| v.1),
            "{}: starts on a keyframe",
            f.display()
        );
        assert!(
            p.video.windows(2).all(|w| w[1].0 > w[0].0),
            "{}",
            f.display()
        );
        assert!(!p.audio.is_empty(), "{}", f.display());
        recorded_frames += p.video.len();
        let name = f.file_name().and_then(|n| n.to_str()).expect("a name");
        assert!(index.contains(name), "{name} not in the index:\n{index}");
    }
    // Everything the RTMP reader played was recorded too (it joined later).
    assert!(
        rtmp_video >= 90 && recorded_frames >= rtmp_video,
        "recorded {recorded_frames} frames, the RTMP reader played {rtmp_video}"
    );

    // A restart on the same ports and directory: the publisher is taken
    // back at once and the recording is listed.
    let mut again = server(dir.path(), DRAIN, rtmp, http).spawn();
    assert_eq!(again.rtmp_addr(), rtmp, "{}", again.output());
    assert_eq!(again.http_addr(), http);
    let list = wait_json(
        &format!("http://{http}/playback/{key}/list"),
        LIVE_TIMEOUT,
        |v| v.as_array().is_some_and(|a| !a.is_empty()),
    );
    let listed: f64 = list
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["duration"].as_f64()).sum())
        .unwrap_or(0.0);
    assert!(
        listed >= recorded_frames as f64 * FRAME - 1.0,
        "listed {listed} s of {recorded_frames} recorded frames: {list}"
    );
    let _back = ffmpeg_publish(&format!("rtmp://{rtmp}/{key}"), 30, 25);
    wait_live(http, key, LIVE_TIMEOUT);
    again.signal("TERM");
    let (status, output) = again.expect_exit(DRAIN + STOP_MARGIN);
    assert!(status.success(), "exit {status}:\n{output}");
}

#[test]
fn a_second_signal_exits_at_once() {
    let dir = TempDir::new("shutdown-twice");
    let long = Duration::from_secs(120);
    let mut srv = ServerCommand::with_config(&config(dir.path(), long)).spawn();
    let (http, rtmp) = (srv.http_addr(), srv.rtmp_addr());
    let _publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/live/twice"), 60, 25);
    wait_live(http, "live/twice", LIVE_TIMEOUT);
    // A player keeps the drain going for all of drain_ms.
    wait_body(
        &format!("http://{http}/hls/live/twice/index.m3u8"),
        LIVE_TIMEOUT,
        |p| !segments(p).is_empty(),
    );
    srv.signal("TERM");
    srv.wait_for_line("shutdown: draining for up to 120000 ms", STOP_MARGIN)
        .unwrap_or_else(|| panic!("no drain:\n{}", srv.output()));
    assert!(
        srv.wait_exit(Duration::from_secs(1)).is_none(),
        "the drain did not hold"
    );
    srv.signal("INT");
    let at = Instant::now();
    let (status, output) = srv.expect_exit(Duration::from_secs(5));
    // 130: interrupted, as a shell reports a process stopped by a signal.
    assert_eq!(status.code(), Some(130), "{status}:\n{output}");
    assert!(at.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_stream_in_its_follow_grace_is_finalized_too() {
    let dir = TempDir::new("shutdown-grace");
    // The publisher leaves and the stop comes within the grace, while the
    // packagers and the recorder still wait for a republish.
    let config = format!(
        "{}[defaults]\nfollow_grace_ms = 60000\n",
        config(dir.path(), DRAIN)
    );
    let mut srv = ServerCommand::with_config(&config).spawn();
    let (http, rtmp) = (srv.http_addr(), srv.rtmp_addr());
    let key = "live/left";
    let mut publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/{key}"), 5, 25);
    wait_live(http, key, LIVE_TIMEOUT);
    let hls = format!("http://{http}/hls/{key}/index.m3u8");
    let mpd = format!("http://{http}/dash/{key}/manifest.mpd");
    let playlist = wait_body(&hls, LIVE_TIMEOUT, |p| !segments(p).is_empty());
    assert!(!playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
    assert!(
        publisher
            .wait_for(LIVE_TIMEOUT)
            .is_some_and(|s| s.success()),
        "the publisher"
    );
    wait_json(
        &format!("http://{http}/api/v1/streams"),
        LIVE_TIMEOUT,
        |v| v["streams"].as_array().is_some_and(Vec::is_empty),
    );
    // Still waiting for a republish: no end yet.
    let playlist = http_get(&hls).body;
    assert!(!playlist.contains("#EXT-X-ENDLIST"), "{playlist}");

    srv.signal("TERM");
    srv.wait_for_line("shutdown: draining", STOP_MARGIN)
        .unwrap_or_else(|| panic!("no drain:\n{}", srv.output()));
    let playlist = http_get(&hls).body;
    assert!(playlist.ends_with("#EXT-X-ENDLIST\n"), "{playlist}");
    let manifest = http_get(&mpd).body;
    assert!(manifest.contains("type=\"static\""), "{manifest}");
    let (status, output) = srv.expect_exit(DRAIN + STOP_MARGIN);
    assert!(status.success(), "exit {status}:\n{output}");
    assert!(
        output.contains(
            "0 live stream(s) ended (none); every packaging finalized; 1 recording(s) closed"
        ),
        "{output}"
    );
    // Its recording is complete and indexed.
    let files = recorded(dir.path(), key);
    let index =
        std::fs::read_to_string(dir.path().join(key).join("index.jsonl")).expect("the index");
    let frames: usize = files
        .iter()
        .map(|f| {
            let name = f.file_name().and_then(|n| n.to_str()).expect("a name");
            assert!(index.contains(name), "{name} not in the index:\n{index}");
            decode(f).video.len()
        })
        .sum();
    // ffmpeg published 5 s at 25 fps; the recording starts at its first keyframe.
    assert!(frames >= 100, "{frames} video frames recorded of 125");
}
