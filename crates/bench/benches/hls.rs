//! HLS and LL-HLS packaging: CPU per stream-second against ffmpeg's HLS
//! segmenter on the same input in the same run, and LL-HLS part latency over
//! HTTP.
//!
//! **Packaging CPU.** Two clips (60 s of testsrc2 + sine, 1280×720 at 30 fps,
//! H.264 constant 2 or 8 Mbit/s without B-frames, a keyframe every 2 s, AAC
//! 128 kbit/s 48 kHz) are generated once into `target/bench-media/` as
//! MPEG-TS. For each clip, repeated `--loops` times back to back with
//! continuous times:
//!
//! - tidewater: the clip's access units as the kernel hands them to a
//!   packager (canonical forms, 1 kHz timestamps as from RTMP) go through the
//!   packager's normalizer and the TS packer (classic HLS) or the fMP4 packer
//!   (LL-HLS, 200 ms parts), the playlist rendered after every change (as if
//!   one client polled continuously); the thread's CPU time is measured
//!   (`/proc/thread-self/schedstat`).
//! - ffmpeg: `ffmpeg -stream_loop N -i clip.ts -c copy -f hls -hls_time 2
//!   -hls_list_size 6 -hls_flags delete_segments` (TS segments), and the
//!   same from an MP4 copy of the clip with `-hls_segment_type fmp4` (MP4
//!   input, so its AAC needs no bitstream filter, which ffmpeg 5.1 breaks
//!   with `-stream_loop`), into a directory in `/dev/shm` when it exists, as
//!   fast as it can go; its CPU is the children's CPU of this process
//!   (`/proc/self/stat`, 10 ms ticks: hence the long runs). ffmpeg also has
//!   to read its input: `ffmpeg -c copy -f null` on each input is measured
//!   too and reported, so the segmenter's own cost can be told apart.
//!
//! Each is run `--reps` times (3); the median is reported.
//!
//! **LL-HLS latency.** In this process: a kernel, the HLS service and its
//! routes on 127.0.0.1, a publisher pacing the 2 Mbit/s clip's frames in
//! real time, and a client that follows the preload hints (`GET` of the
//! hinted part, which blocks until the part is complete, then a blocking
//! playlist reload for the next hint). For each part: the time from the
//! publish of its last frame, and of its first frame, to the moment its
//! bytes had arrived at the client, p50 and p99 over `--latency-seconds`.
//!
//! ```text
//! cargo xtask bench hls [OPTIONS]
//! cargo bench -p tidewater-bench --bench hls -- [OPTIONS]
//!
//!   --quick                 smoke run: 1 loop, 1 rep, 8 s of latency
//!   --loops 10              clip repetitions per packaging run (10 × 60 s)
//!   --reps 3                runs of each measurement; the median is reported
//!   --latency-seconds 30    how long the latency client follows parts
//! ```

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mp4_atom::Decode as _;
use tidewater_bench::{machine, median, today_utc};
use tidewater_core::{AppSpec, Codec, Engine, Frame, Request, StreamKey, TrackId, TrackInfo};
use tidewater_media::codec::{AdtsHeader, annexb_nals, build_avcc, to_length_prefixed};
use tidewater_pkg_hls::ll::LlPacker;
use tidewater_pkg_hls::normalize::{Normalizer, TIMELINE_START, TrackSet};
use tidewater_pkg_hls::playlist::{Flavour, PlaylistState};
use tidewater_pkg_hls::segmenter::Targets;
use tidewater_pkg_hls::ts::TsPacker;
use tidewater_pkg_hls::{Hls, HlsConfig};

const CLIP_SECONDS: u32 = 60;
const FPS: i64 = 30;

#[derive(Debug)]
struct Options {
    loops: u32,
    reps: usize,
    latency_seconds: u64,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            loops: 10,
            reps: 3,
            latency_seconds: 30,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| -> Result<u64, String> {
                it.next()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| format!("{name} needs a number"))
            };
            match a.as_str() {
                "--quick" => {
                    o.loops = 1;
                    o.reps = 1;
                    o.latency_seconds = 8;
                }
                "--loops" => o.loops = value("--loops")?.clamp(1, 100) as u32,
                "--reps" => o.reps = value("--reps")?.clamp(1, 20) as usize,
                "--latency-seconds" => {
                    o.latency_seconds = value("--latency-seconds")?.clamp(4, 600)
                }
                // cargo bench passes --bench to harness-less benches.
                "--bench" => {}
                other => return Err(format!("unknown option {other}")),
            }
        }
        Ok(o)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("hls bench: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hls bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn target_dir() -> PathBuf {
    // This bench's executable lives in target/<profile>/deps/.
    std::env::current_exe()
        .ok()
        .and_then(|p| p.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"))
}

fn ffmpeg(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ffmpeg: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ffmpeg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// The clip at `mbps`: (clip.ts, clip.mp4, video.h264, audio.aac), made once.
fn clip(mbps: u32) -> Result<(PathBuf, PathBuf, PathBuf, PathBuf), String> {
    let dir = target_dir().join("bench-media");
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let name = format!("hls-testsrc2-720p30-h264-{mbps}M-nob-aac128k-gop2s-{CLIP_SECONDS}s");
    let ts = dir.join(format!("{name}.ts"));
    let h264 = dir.join(format!("{name}.h264"));
    let aac = dir.join(format!("{name}.aac"));
    let mp4 = dir.join(format!("{name}.mp4"));
    if !(ts.exists() && h264.exists() && aac.exists() && mp4.exists()) {
        eprintln!("hls bench: encoding {}", ts.display());
        let rate = format!("{mbps}M");
        let secs = CLIP_SECONDS.to_string();
        let tmp = dir.join(format!("{name}.tmp.ts"));
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x720:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            &secs,
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-tune",
            "zerolatency",
            "-bf",
            "0",
            "-g",
            "60",
            "-keyint_min",
            "60",
            "-sc_threshold",
            "0",
            "-b:v",
            &rate,
            "-minrate",
            &rate,
            "-maxrate",
            &rate,
            "-bufsize",
            &rate,
            "-x264-params",
            "aud=1:nal-hrd=cbr",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            "-ac",
            "2",
            "-f",
            "mpegts",
            tmp.to_str().ok_or("path")?,
        ])?;
        let t = tmp.to_str().ok_or("path")?;
        ffmpeg(&[
            "-i",
            t,
            "-map",
            "0:v",
            "-c",
            "copy",
            "-f",
            "h264",
            h264.to_str().ok_or("path")?,
        ])?;
        ffmpeg(&[
            "-i",
            t,
            "-map",
            "0:a",
            "-c",
            "copy",
            "-f",
            "adts",
            aac.to_str().ok_or("path")?,
        ])?;
        ffmpeg(&[
            "-i",
            t,
            "-c",
            "copy",
            "-bsf:a",
            "aac_adtstoasc",
            "-f",
            "mp4",
            mp4.to_str().ok_or("path")?,
        ])?;
        fs::rename(&tmp, &ts).map_err(|e| e.to_string())?;
    }
    Ok((ts, mp4, h264, aac))
}

/// The clip as the kernel would hand it to a packager: the catalog's tracks
/// (1 kHz timestamps, as from RTMP) and the frames interleaved by time.
struct Clip {
    tracks: Vec<TrackInfo>,
    frames: Vec<Frame>,
    video_frames: usize,
    duration_ms: i64,
}

fn load(h264: &Path, aac: &Path) -> Result<Clip, String> {
    let v = fs::read(h264).map_err(|e| e.to_string())?;
    let (mut sps, mut pps) = (None, None);
    let mut video: Vec<(Bytes, bool)> = Vec::new();
    let mut current: Vec<&[u8]> = Vec::new();
    let mut key = false;
    for nal in annexb_nals(&v) {
        match nal[0] & 0x1f {
            9 => {
                if !current.is_empty() {
                    video.push((to_length_prefixed(current.drain(..)), key));
                }
                key = false;
            }
            7 => {
                sps.get_or_insert(nal);
            }
            8 => {
                pps.get_or_insert(nal);
            }
            t => {
                key |= t == 5;
                current.push(nal);
            }
        }
    }
    if !current.is_empty() {
        video.push((to_length_prefixed(current.drain(..)), key));
    }
    let avcc = build_avcc(&[sps.ok_or("no SPS")?], &[pps.ok_or("no PPS")?]).ok_or("avcC")?;
    let a = fs::read(aac).map_err(|e| e.to_string())?;
    let mut audio = Vec::new();
    let mut asc = None;
    let mut i = 0;
    while let Some(h) = a.get(i..).and_then(AdtsHeader::parse) {
        asc.get_or_insert_with(|| h.config().to_bytes());
        audio.push(Bytes::copy_from_slice(
            &a[i + h.header_len..i + h.frame_len],
        ));
        i += h.frame_len;
    }
    let asc = asc.flatten().ok_or("no AAC")?;
    let tracks = vec![
        TrackInfo::video(TrackId(1), Codec::H264, 1280, 720)
            .with_timescale(1000)
            .with_config(avcc),
        TrackInfo::audio(TrackId(2), Codec::Aac, 48_000, 2)
            .with_timescale(1000)
            .with_config(Bytes::copy_from_slice(&asc)),
    ];
    let mut frames = Vec::with_capacity(video.len() + audio.len());
    let mut ai = 0;
    for (n, (data, key)) in video.iter().enumerate() {
        let ms = n as i64 * 1000 / FPS;
        while ai < audio.len() && (ai as i64 * 1024 * 1000 / 48_000) <= ms {
            let at = ai as i64 * 1024 * 1000 / 48_000;
            frames.push(Frame::audio(TrackId(2), Codec::Aac, at, audio[ai].clone()));
            ai += 1;
        }
        frames.push(Frame::video(
            TrackId(1),
            Codec::H264,
            ms,
            ms,
            *key,
            data.clone(),
        ));
    }
    Ok(Clip {
        tracks,
        frames,
        video_frames: video.len(),
        duration_ms: video.len() as i64 * 1000 / FPS,
    })
}

/// CPU time of the calling thread, nanoseconds.
fn thread_cpu_ns() -> u64 {
    fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// CPU of waited-for children, seconds (`cutime + cstime` of `/proc/self/stat`).
fn children_cpu_s() -> f64 {
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name's closing parenthesis; cutime and cstime
    // are fields 16 and 17 of the whole line.
    let rest = stat.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = [13, 14]
        .iter()
        .filter_map(|&i| f.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}

fn targets() -> Targets {
    let c = HlsConfig::default();
    Targets {
        segment: 180_000,
        part: Some(c.part_target_declared()),
        max_segment: 900_000,
    }
}

/// Our packaging of `loops` back-to-back copies: CPU seconds, segments made.
fn package(clip: &Clip, flavour: Flavour, loops: u32) -> (f64, usize) {
    let mut pl = PlaylistState::new(flavour, 6, 0.21, "bench");
    let mut norm = Normalizer::new();
    let mut ts = TsPacker::new(targets());
    let mut ll = LlPacker::new(targets());
    let mut segments = 0;
    let mut last_msn = None;
    let mut version = 0;
    let mut rendered = 0usize;
    let start = thread_cpu_ns();
    let set: Option<Arc<TrackSet>> = norm.set_tracks(&clip.tracks);
    if let Some(set) = set {
        match flavour {
            Flavour::Ts => ts.tracks(set, &mut pl).expect("tracks"),
            Flavour::Fmp4 => ll.tracks(set, &mut pl).expect("tracks"),
        }
    }
    for l in 0..i64::from(loops) {
        let shift = l * clip.duration_ms;
        for f in &clip.frames {
            let mut f = f.clone();
            f.dts += shift;
            f.pts += shift;
            if let Some(u) = norm.frame(&f) {
                let r = match flavour {
                    Flavour::Ts => ts.unit(u, &mut pl),
                    Flavour::Fmp4 => ll.unit(u, &mut pl),
                };
                r.expect("unit");
            }
            if pl.version() != version {
                version = pl.version();
                if let Some(text) = pl.render() {
                    rendered += text.len();
                }
                let pos = pl.position().msn;
                if last_msn != Some(pos) {
                    last_msn = Some(pos);
                    segments += 1;
                }
            }
        }
    }
    let cpu = thread_cpu_ns().saturating_sub(start) as f64 / 1e9;
    assert!(rendered > 0);
    (cpu, segments)
}

/// ffmpeg's CPU seconds for `args` on `loops` copies of `input`.
fn ffmpeg_cpu(input: &Path, loops: u32, out: Option<(&Path, bool)>) -> Result<f64, String> {
    let loop_arg = (loops - 1).to_string();
    let mut cmd = Command::new("ffmpeg");
    cmd.args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-y",
        "-stream_loop",
        &loop_arg,
        "-i",
    ])
    .arg(input)
    .args(["-c", "copy"]);
    match out {
        Some((dir, fmp4)) => {
            let _ = fs::remove_dir_all(dir);
            fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            cmd.args([
                "-f",
                "hls",
                "-hls_time",
                "2",
                "-hls_list_size",
                "6",
                "-hls_flags",
                "delete_segments",
            ]);
            if fmp4 {
                cmd.args(["-hls_segment_type", "fmp4"]);
            }
            cmd.arg(dir.join("index.m3u8"));
        }
        None => {
            cmd.args(["-f", "null", "-"]);
        }
    }
    let before = children_cpu_s();
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("ffmpeg failed: {status}"));
    }
    Ok(children_cpu_s() - before)
}

fn run(o: &Options) -> Result<(), String> {
    println!("# HLS packaging bench, {} ({})", today_utc(), machine());
    println!(
        "clip {CLIP_SECONDS} s × {} loops per run, {} runs each, median shown (CPU ms per stream-second)\n",
        o.loops, o.reps
    );
    let shm = Path::new("/dev/shm");
    let scratch = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
    .join(format!("tidewater-hls-bench-{}", std::process::id()));
    println!(
        "| input | tidewater TS | ffmpeg hls (TS) | ratio | tidewater LL-HLS fMP4 | ffmpeg hls fMP4 | ratio | ffmpeg reading only (`-f null`), TS / MP4 input |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut latency_clip = None;
    for mbps in [2u32, 8] {
        let (ts_path, mp4_path, h264, aac) = clip(mbps)?;
        let clip = load(&h264, &aac)?;
        let stream_secs = clip.duration_ms as f64 / 1000.0 * f64::from(o.loops);
        let per = |cpu: f64| cpu / stream_secs * 1000.0;
        let (mut ours_ts, mut ours_ll, mut ff_ts, mut ff_ll) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut read_ts, mut read_mp4) = (Vec::new(), Vec::new());
        for _ in 0..o.reps {
            let (cpu, segs) = package(&clip, Flavour::Ts, o.loops);
            assert!(segs as f64 >= stream_secs / 2.5, "{segs} segments");
            ours_ts.push(per(cpu));
            ours_ll.push(per(package(&clip, Flavour::Fmp4, o.loops).0));
            ff_ts.push(per(ffmpeg_cpu(
                &ts_path,
                o.loops,
                Some((&scratch.join("ts"), false)),
            )?));
            ff_ll.push(per(ffmpeg_cpu(
                &mp4_path,
                o.loops,
                Some((&scratch.join("fmp4"), true)),
            )?));
            read_ts.push(per(ffmpeg_cpu(&ts_path, o.loops, None)?));
            read_mp4.push(per(ffmpeg_cpu(&mp4_path, o.loops, None)?));
        }
        let (a, b, c, d) = (
            median(&ours_ts),
            median(&ff_ts),
            median(&ours_ll),
            median(&ff_ll),
        );
        let (e, f) = (median(&read_ts), median(&read_mp4));
        println!(
            "| {mbps} Mbit/s ({} frames/loop) | {a:.3} | {b:.3} | {:.2}× | {c:.3} | {d:.3} | {:.2}× | {e:.3} / {f:.3} |",
            clip.video_frames,
            a / b,
            c / d
        );
        if mbps == 2 {
            latency_clip = Some(clip);
        }
    }
    let _ = fs::remove_dir_all(&scratch);
    println!("\n(ratio: tidewater's CPU over ffmpeg's; below 1 is cheaper)\n");
    let clip = latency_clip.ok_or("no clip")?;
    latency(&clip, o.latency_seconds)
}

/// One blocking HTTP/1.1 GET on loopback: status and body.
fn get(addr: SocketAddr, path: &str) -> Result<(u16, Vec<u8>), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no header end")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    Ok((status, raw[end + 4..].to_vec()))
}

fn hint(playlist: &str) -> Option<String> {
    let line = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))?;
    let uri = line.split("URI=\"").nth(1)?;
    Some(uri.split('"').next()?.to_owned())
}

/// The first and last video frame indices of a part (from its `tfdt` and
/// sample count) and its video duration in 90 kHz ticks.
fn part_frames(part: &[u8]) -> Option<(i64, i64)> {
    let mut buf = part;
    let moof = mp4_atom::Moof::decode(&mut buf).ok()?;
    let traf = moof.traf.iter().find(|t| t.tfhd.track_id == 1)?;
    let base = traf.tfdt.as_ref()?.base_media_decode_time as i64;
    let n = traf.trun.first()?.samples.len() as i64;
    if n == 0 {
        return None;
    }
    let first = ((base - TIMELINE_START) as f64 / 3000.0).round() as i64;
    Some((first, first + n - 1))
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

fn latency(clip: &Clip, seconds: u64) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let engine = Engine::builder()
        .app("live", AppSpec::default())
        .build()
        .map_err(|e| e.to_string())?;
    let hls = Hls::new(engine.context(), HlsConfig::default()).map_err(|e| e.to_string())?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    rt.spawn(async move {
        let _ = axum::serve(listener, tidewater_pkg_hls::router(hls)).await;
    });
    // Publish times of the video frames, by index.
    let published: Arc<Mutex<Vec<Option<Instant>>>> =
        Arc::new(Mutex::new(vec![None; clip.video_frames * 4]));
    let (tracks, frames) = (clip.tracks.clone(), clip.frames.clone());
    let (pubs, run_for) = (published.clone(), Duration::from_secs(seconds + 6));
    let clip_ms = clip.duration_ms;
    let publisher = rt.spawn(async move {
        let key = StreamKey::parse("live/bench").expect("key");
        let mut s = engine
            .open_publish(Request::new(key, "bench"))
            .await
            .expect("publish");
        s.set_catalog(tracks).expect("catalog");
        let start = tokio::time::Instant::now();
        let mut index = 0usize;
        'outer: for l in 0..4i64 {
            for f in &frames {
                let mut f = f.clone();
                f.dts += l * clip_ms;
                f.pts += l * clip_ms;
                let at = start + Duration::from_millis(u64::try_from(f.dts).unwrap_or(0));
                if at.duration_since(start) > run_for {
                    break 'outer;
                }
                tokio::time::sleep_until(at).await;
                let video = f.track == TrackId(1);
                let now = Instant::now();
                s.publish(f).expect("frame");
                if video {
                    if let Some(slot) = pubs.lock().expect("lock").get_mut(index) {
                        *slot = Some(now);
                    }
                    index += 1;
                }
            }
        }
        s.finish().await;
    });
    std::thread::sleep(Duration::from_millis(300));
    let (status, body) = get(addr, "/llhls/live/bench/index.m3u8")?;
    if status != 200 {
        return Err(format!("playlist: {status}"));
    }
    let mut next = hint(&String::from_utf8_lossy(&body)).ok_or("no preload hint")?;
    let (mut after_last, mut after_first) = (Vec::new(), Vec::new());
    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until {
        let (status, part) = get(addr, &format!("/llhls/live/bench/{next}"))?;
        let done = Instant::now();
        if status != 200 {
            return Err(format!("part {next}: {status}"));
        }
        if let Some((first, last)) = part_frames(&part) {
            let p = published.lock().expect("lock");
            let at = |i: i64| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| p.get(i).copied().flatten())
            };
            if let (Some(f), Some(l)) = (at(first), at(last)) {
                after_last.push(done.duration_since(l).as_secs_f64() * 1000.0);
                after_first.push(done.duration_since(f).as_secs_f64() * 1000.0);
            }
        }
        let (msn, idx) = next
            .trim_end_matches(".m4s")
            .rsplit_once('-')
            .and_then(|(_, n)| n.split_once('.'))
            .ok_or("hint name")?;
        let (status, body) = get(
            addr,
            &format!("/llhls/live/bench/index.m3u8?_HLS_msn={msn}&_HLS_part={idx}"),
        )?;
        if status != 200 {
            return Err(format!("blocking reload: {status}"));
        }
        next = hint(&String::from_utf8_lossy(&body)).ok_or("no preload hint")?;
    }
    publisher.abort();
    println!(
        "## LL-HLS part latency (2 Mbit/s clip published in real time, 200 ms parts, {} parts)\n",
        after_last.len()
    );
    println!("| from | p50 ms | p99 ms |");
    println!("|---|---|---|");
    println!(
        "| last frame of the part published → part received | {:.1} | {:.1} |",
        percentile(&after_last, 0.5),
        percentile(&after_last, 0.99)
    );
    println!(
        "| first frame of the part published → part received | {:.1} | {:.1} |",
        percentile(&after_first, 0.5),
        percentile(&after_first, 0.99)
    );
    if after_last.len() < 10 {
        return Err("too few parts measured".into());
    }
    Ok(())
}
