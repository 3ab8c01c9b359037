//! `cargo xtask bench dash`: what DASH packaging costs, against ffmpeg's
//! DASH muxer on the same input in the same run, and how soon a frame's
//! chunk leaves the HTTP response in low-latency mode.
//!
//! 1. **CPU per stream-second.** ffmpeg makes a clip (720p30 H.264 + 48 kHz
//!    AAC, 2 s GOP) as MPEG-TS. The anchor is ffmpeg's own muxer:
//!    `ffmpeg -i clip.ts -c copy -f dash` minus `ffmpeg -i clip.ts -c copy
//!    -f null` (the same demuxing with no muxer), CPU from the children's
//!    `/proc` accounting. tidewater: the clip's frames (demuxed beforehand by
//!    `tidewater_media::ts`) through the packager, an MPD written at every
//!    cut, CPU of the thread from `/proc/thread-self/schedstat`.
//! 2. **Chunk latency.** A kernel and the DASH routes on loopback in this
//!    process; the clip published in real time; a client reads the video
//!    segments in progress with chunked transfer and, for every `moof` it
//!    receives, takes the time since that frame was published.
//!
//! `BENCH_DASH_SECONDS` sets the clip length (default 120) and
//! `BENCH_DASH_LIVE_SECONDS` the real-time part (default 20).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use tidewater_core::{AppSpec, Engine, Frame, Request, StreamKey, TrackInfo};
use tidewater_media::ts::{DemuxEvent, TsDemuxer};
use tidewater_pkg_dash::mpd::{self, MpdOptions};
use tidewater_pkg_dash::packager::{Packager, PackagerConfig};
use tidewater_pkg_dash::{DashConfig, dash_router};

fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let seconds = env_secs("BENCH_DASH_SECONDS", 120);
    let live_seconds = env_secs("BENCH_DASH_LIVE_SECONDS", 20);
    let dir = std::env::temp_dir().join(format!("tidewater-dash-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let clip = dir.join("clip.ts");
    make_clip(&clip, seconds);
    let (tracks, frames) = demux(&clip);
    println!(
        "clip: {seconds} s, {} frames, tracks {:?}",
        frames.len(),
        tracks.iter().map(|t| t.codec.name()).collect::<Vec<_>>()
    );

    // 1. CPU per stream-second.
    const RUNS: u32 = 5;
    let ffmpeg_dash = ffmpeg_cpu(&clip, &dir, true, RUNS);
    let ffmpeg_null = ffmpeg_cpu(&clip, &dir, false, RUNS);
    let ffmpeg_muxer = ffmpeg_dash.saturating_sub(ffmpeg_null);
    let ours = packager_cpu(&tracks, &frames, RUNS);
    let per_s = |d: Duration| d.as_secs_f64() * 1e3 / f64::from(RUNS) / seconds as f64;
    println!("CPU per stream-second (mean of {RUNS} runs):");
    println!(
        "  ffmpeg -c copy -f dash      {:>8.3} ms  (demux + mux)",
        per_s(ffmpeg_dash)
    );
    println!(
        "  ffmpeg -c copy -f null      {:>8.3} ms  (demux only)",
        per_s(ffmpeg_null)
    );
    println!(
        "  ffmpeg DASH muxer           {:>8.3} ms  (difference)",
        per_s(ffmpeg_muxer)
    );
    println!(
        "  tidewater packager          {:>8.3} ms  (chunks + segments + MPD per cut)",
        per_s(ours)
    );
    if !ffmpeg_muxer.is_zero() {
        println!(
            "  ratio tidewater / ffmpeg muxer: {:.2}",
            ours.as_secs_f64() / ffmpeg_muxer.as_secs_f64()
        );
    }

    // 2. Chunk latency in low-latency mode.
    let latencies = chunk_latencies(&tracks, &frames, Duration::from_secs(live_seconds));
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "low-latency chunk out after publish ({} video chunks): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn make_clip(path: &Path, seconds: u64) {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "60"])
        .args(["-keyint_min", "60", "-sc_threshold", "0", "-b:v", "3M"])
        .args(["-c:a", "aac", "-b:a", "128k", "-t", &seconds.to_string()])
        .arg(path)
        .status()
        .expect("ffmpeg runs (install the ffmpeg package)");
    assert!(status.success(), "ffmpeg could not make the clip");
}

fn demux(path: &Path) -> (Vec<TrackInfo>, Vec<Frame>) {
    let data = std::fs::read(path).expect("clip");
    let mut demux = TsDemuxer::new();
    demux.push(&data).expect("TS");
    demux.flush();
    let mut tracks = Vec::new();
    let mut frames = Vec::new();
    while let Some(ev) = demux.poll() {
        match ev {
            DemuxEvent::Tracks(t) => tracks = t,
            DemuxEvent::Frame(f) => frames.push(f),
        }
    }
    assert!(!tracks.is_empty() && !frames.is_empty());
    (tracks, frames)
}

/// CPU (user + system) of this process's waited-for children so far.
fn children_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // cutime and cstime are fields 16 and 17 (1-based), i.e. 13 and 14 after ')'.
    let ticks: u64 = [13, 14]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

fn ffmpeg_cpu(clip: &Path, dir: &Path, dash: bool, runs: u32) -> Duration {
    let before = children_cpu();
    for i in 0..runs {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i"])
            .arg(clip)
            .args(["-c", "copy"]);
        if dash {
            let out = dir.join(format!("ff{i}"));
            std::fs::create_dir_all(&out).expect("out dir");
            cmd.args(["-tag:v", "avc1", "-tag:a", "mp4a"])
                .args(["-f", "dash", "-seg_duration", "2", "-use_timeline", "1"])
                .arg(out.join("manifest.mpd"));
        } else {
            cmd.args(["-f", "null", "-"]);
        }
        let status = cmd.stdin(Stdio::null()).status().expect("ffmpeg");
        assert!(status.success());
    }
    children_cpu().saturating_sub(before)
}

/// CPU time of the calling thread, nanosecond resolution.
fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    let ns: u64 = s
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

fn packager_cpu(tracks: &[TrackInfo], frames: &[Frame], runs: u32) -> Duration {
    let opts = MpdOptions {
        time_url: "http://127.0.0.1/dash/time".into(),
        latency_target: Duration::from_millis(1500),
        token: None,
    };
    let base = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut total = Duration::ZERO;
    let mut mpd_bytes = 0usize;
    for _ in 0..runs {
        let start = thread_cpu();
        let mut p = Packager::new(PackagerConfig::default());
        p.on_tracks(tracks);
        let mut cuts = 0;
        for f in frames {
            let wall = base + Duration::from_micros((f.dts.max(0) as u64) * 100 / 9);
            p.on_frame(f, wall).expect("packaged");
            let now = p
                .periods()
                .back()
                .and_then(|x| x.tracks.first())
                .map_or(0, |t| t.segments.len());
            if now != cuts {
                cuts = now;
                if let Some(x) = mpd::write(&p, wall, &opts) {
                    mpd_bytes += x.len();
                }
            }
        }
        total += thread_cpu().saturating_sub(start);
    }
    assert!(mpd_bytes > 0);
    total
}

/// Publishes the clip in real time for `live` and reads the video segments
/// in progress; returns the sorted publish-to-receipt times.
fn chunk_latencies(tracks: &[TrackInfo], frames: &[Frame], live: Duration) -> Vec<Duration> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let engine = rt.block_on(async {
        Engine::builder()
            .default_app(AppSpec::default())
            .build()
            .expect("engine")
    });
    let config = DashConfig {
        low_latency: true,
        ..DashConfig::default()
    };
    let router = dash_router(engine.context(), config);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    rt.spawn(async move {
        let _ = axum::serve(listener, router).await;
    });

    // Publish instants by decode time (90 kHz, relative to the first keyframe).
    let published: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let video: Vec<Frame> = frames.to_vec();
    let first_key = video
        .iter()
        .find(|f| f.is_keyframe() && f.kind() == tidewater_core::MediaKind::Video)
        .map(|f| f.dts)
        .expect("a keyframe");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let publisher = {
        let engine = engine.clone();
        let tracks = tracks.to_vec();
        let published = Arc::clone(&published);
        rt.spawn(async move {
            let key = StreamKey::parse("live/bench").expect("key");
            let mut session = engine
                .open_publish(Request::new(key, "bench"))
                .await
                .expect("publish");
            session.set_catalog(tracks).expect("catalog");
            let start = tokio::time::Instant::now();
            let mut signalled = false;
            for f in video.into_iter().skip_while(|f| f.dts < first_key) {
                let at = Duration::from_micros(((f.dts - first_key).max(0) as u64) * 100 / 9);
                if at > live {
                    break;
                }
                tokio::time::sleep_until(start + at).await;
                let is_video = f.kind() == tidewater_core::MediaKind::Video;
                let rel = f.dts - first_key;
                if is_video {
                    lock(&published).insert(rel, Instant::now());
                }
                if session.publish(f).is_err() {
                    break;
                }
                if !signalled {
                    signalled = true;
                    let _ = ready_tx.send(());
                }
            }
            session.finish().await;
        })
    };
    ready_rx.recv().expect("the first frame was published");

    // The first MPD request starts the packager on the cached keyframe.
    let mpd = http_get(addr, "/dash/live/bench/manifest.mpd");
    assert!(mpd.contains("availabilityTimeComplete"), "{mpd}");
    let mut latencies = Vec::new();
    let deadline = Instant::now() + live;
    let mut number = 1u64;
    while Instant::now() < deadline {
        let got = read_segment(
            addr,
            &format!("/dash/live/bench/p1-v1-{number}.m4s"),
            |tfdt| {
                let received = Instant::now();
                if let Some(sent) = lock(&published).get(&(tfdt as i64)) {
                    latencies.push(received.saturating_duration_since(*sent));
                }
            },
        );
        if !got {
            std::thread::sleep(Duration::from_millis(20));
        }
        number += 1;
    }
    rt.block_on(async {
        let _ = publisher.await;
    });
    latencies.sort();
    latencies
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut body = Vec::new();
    read_response(addr, path, |chunk| body.extend_from_slice(chunk));
    String::from_utf8_lossy(&body).into_owned()
}

/// Reads one segment, calling `on_tfdt` with the `tfdt` of every `moof`
/// the moment its bytes arrived; false when it was not served.
fn read_segment(addr: SocketAddr, path: &str, mut on_tfdt: impl FnMut(u64)) -> bool {
    let mut pending: Vec<u8> = Vec::new();
    read_response(addr, path, |chunk| {
        pending.extend_from_slice(chunk);
        // Whole boxes only: a moof followed by its mdat.
        while let Some(size) = pending
            .get(0..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        {
            if size < 8 || pending.len() < size {
                break;
            }
            if &pending[4..8] == b"moof"
                && let Some(t) = tfdt(&pending[..size])
            {
                on_tfdt(t);
            }
            pending.drain(..size);
        }
    })
}

fn tfdt(moof: &[u8]) -> Option<u64> {
    let at = moof.windows(4).position(|w| w == b"tfdt")?;
    let version = *moof.get(at + 4)?;
    let v = moof.get(at + 8..)?;
    if version == 1 {
        Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?))
    } else {
        Some(u64::from(u32::from_be_bytes(v.get(..4)?.try_into().ok()?)))
    }
}

/// A minimal HTTP/1.1 GET over loopback that hands each body piece (each
/// chunk of a chunked response) to `on_body` as it arrives.
fn read_response(addr: SocketAddr, path: &str, mut on_body: impl FnMut(&[u8])) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || !line.contains(" 200 ") {
        return false;
    }
    let mut chunked = false;
    let mut length: Option<usize> = None;
    loop {
        line.clear();
        if reader.read_line(&mut line).is_err() {
            return false;
        }
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if l == "transfer-encoding: chunked" {
            chunked = true;
        }
        if let Some(v) = l.strip_prefix("content-length: ") {
            length = v.parse().ok();
        }
    }
    if !chunked {
        let mut body = vec![0; length.unwrap_or(0)];
        if reader.read_exact(&mut body).is_err() {
            return false;
        }
        on_body(&body);
        return true;
    }
    loop {
        line.clear();
        if reader.read_line(&mut line).is_err() {
            return false;
        }
        let Ok(size) = usize::from_str_radix(line.trim(), 16) else {
            return false;
        };
        if size == 0 {
            return true;
        }
        let mut chunk = vec![0; size + 2];
        if reader.read_exact(&mut chunk).is_err() {
            return false;
        }
        on_body(&chunk[..size]);
    }
}
