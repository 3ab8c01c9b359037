//! Recording: CPU per recorded stream-second against ffmpeg's segment muxer
//! on the same clip in the same run, and the time to list and to open a
//! range in 30 days of 60 s segments.
//!
//! **Recording CPU.** A clip (60 s of testsrc2 + sine, 1280×720 at 30 fps,
//! H.264 about 2 Mbit/s with B-frames, a keyframe every 2 s, AAC 128 kbit/s
//! 48 kHz) is generated once into `target/bench-media/` as FLV, so its frames
//! come with RTMP's 1 kHz times. Repeated `--loops` times back to back with
//! continuous times:
//!
//! - tidewater: the frames go through the recorder's muxer
//!   ([`tidewater_record::Muxer`], 60 s files of 1 s fragments, the
//!   defaults) and its file operations are done as the recorder's writer
//!   thread does them (one `write` per fragment, `fsync` and an index line
//!   when a file closes), in one thread whose CPU time is measured
//!   (`/proc/thread-self/schedstat`);
//! - ffmpeg: `ffmpeg -stream_loop N -i clip.flv -c copy -f segment
//!   -segment_time 60 -segment_format mp4 -reset_timestamps 1`, plain MP4
//!   segments and fragmented ones (`-segment_format_options
//!   movflags=+empty_moov+default_base_moof+frag_keyframe:frag_duration=1000000`,
//!   what tidewater writes), as fast as it can go; its CPU is the children's
//!   CPU of this process (`/proc/self/stat`, 10 ms ticks). ffmpeg also has
//!   to read its input: `ffmpeg -c copy -f null` is measured and reported
//!   too.
//!
//! Both write into `/dev/shm` when it exists (the CPU, not the disk, is
//! measured). Each is run `--reps` times (3); the median is reported.
//!
//! **Listing and opening a range.** A synthetic stream directory: 30 days
//! of 60 s segments (43 200 files, each with a small init segment) and
//! their index (60 fragments of 1 s each, a keyframe every 2 s). Timed, as
//! the server does them: the repair on start ([`Library::rebuild`], done
//! in the background before recording; it reads the index and keeps it),
//! then, as the playback routes call them, [`Library::spans`] (the list),
//! [`Library::range`] of one hour on day 15 (the MP4 download's plan) and
//! [`Library::playlist`] of the same hour; and a range on a library that
//! did not repair first (the index parsed by the request). Median of
//! `--reps`.
//!
//! ```text
//! cargo xtask bench record [OPTIONS]
//! cargo bench -p tidewater-bench --bench record -- [OPTIONS]
//!
//!   --quick        smoke run: 1 loop, 1 rep, 3 days of segments
//!   --loops 10     clip repetitions per recording run (10 × 60 s)
//!   --reps 3       runs of each measurement; the median is reported
//!   --days 30      days of 60 s segments in the synthetic index
//! ```

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use bytes::Bytes;
use tidewater_bench::{machine, median, today_utc};
use tidewater_core::{Codec, Frame, StreamKey, TrackId, TrackInfo};
use tidewater_record::index::{self, Fragment, Segment};
use tidewater_record::{Library, Muxer, Output, Targets};

const CLIP_SECONDS: i64 = 60;

#[derive(Debug)]
struct Options {
    loops: u32,
    reps: usize,
    days: i64,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            loops: 10,
            reps: 3,
            days: 30,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .and_then(|v| v.parse::<i64>().ok())
                    .filter(|v| *v > 0)
                    .ok_or_else(|| format!("{name} needs a positive number"))
            };
            match a.as_str() {
                "--quick" => {
                    o.loops = 1;
                    o.reps = 1;
                    o.days = 3;
                }
                "--loops" => o.loops = value("--loops")? as u32,
                "--reps" => o.reps = value("--reps")? as usize,
                "--days" => o.days = value("--days")?,
                // cargo bench passes --bench to harness=false benches.
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
            eprintln!("record bench: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("record bench: error: {e}");
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

/// A scratch directory, in memory when `/dev/shm` exists.
fn scratch(name: &str) -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("tidewater-bench-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
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

fn thread_cpu_ns() -> u64 {
    fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// CPU of waited-for children, seconds (`cutime + cstime` of `/proc/self/stat`).
fn children_cpu_s() -> f64 {
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = [13, 14]
        .iter()
        .filter_map(|&i| f.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}

/// The clip, made once.
fn clip() -> Result<PathBuf, String> {
    let dir = target_dir().join("bench-media");
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join("record-720p30-2m.flv");
    if path.is_file() {
        return Ok(path);
    }
    eprintln!(
        "record bench: encoding the clip (once) into {}",
        path.display()
    );
    let t = CLIP_SECONDS.to_string();
    let tmp = dir.join("record-720p30-2m.tmp.flv");
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
        &t,
        "-c:v",
        "libx264",
        "-preset",
        "superfast",
        "-bf",
        "2",
        "-b:v",
        "2M",
        "-maxrate",
        "2M",
        "-bufsize",
        "4M",
        "-g",
        "60",
        "-keyint_min",
        "60",
        "-sc_threshold",
        "0",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-b:a",
        "128k",
        "-f",
        "flv",
        tmp.to_str().ok_or("non-UTF-8 path")?,
    ])?;
    fs::rename(&tmp, &path).map_err(|e| e.to_string())?;
    Ok(path)
}

/// The tracks and frames of an FLV file (H.264 + AAC), times in ms.
fn read_flv(path: &Path) -> Result<(Vec<TrackInfo>, Vec<Frame>), String> {
    let data = fs::read(path).map_err(|e| e.to_string())?;
    let mut at = 9 + 4;
    let (mut avcc, mut asc) = (None, None);
    let mut frames = Vec::new();
    while at + 11 <= data.len() {
        let kind = data[at];
        let size = usize::from(data[at + 1]) << 16
            | usize::from(data[at + 2]) << 8
            | usize::from(data[at + 3]);
        let ts = (i64::from(data[at + 7]) << 24)
            | i64::from(data[at + 4]) << 16
            | i64::from(data[at + 5]) << 8
            | i64::from(data[at + 6]);
        let Some(body) = data.get(at + 11..at + 11 + size) else {
            break;
        };
        at += 11 + size + 4;
        match kind {
            9 if body.len() > 5 => {
                let cts = i64::from(
                    (i32::from(body[2]) << 24 | i32::from(body[3]) << 16 | i32::from(body[4]) << 8)
                        >> 8,
                );
                let payload = Bytes::copy_from_slice(&body[5..]);
                match body[1] {
                    0 => avcc = Some(payload),
                    1 => frames.push(Frame::video(
                        TrackId(1),
                        Codec::H264,
                        ts,
                        ts + cts,
                        body[0] >> 4 == 1,
                        payload,
                    )),
                    _ => {}
                }
            }
            8 if body.len() > 2 => {
                let payload = Bytes::copy_from_slice(&body[2..]);
                match body[1] {
                    0 => asc = Some(payload),
                    _ => frames.push(Frame::audio(TrackId(2), Codec::Aac, ts, payload)),
                }
            }
            _ => {}
        }
    }
    let tracks = vec![
        TrackInfo::video(TrackId(1), Codec::H264, 1280, 720)
            .with_config(avcc.ok_or("no avcC in the clip")?)
            .with_timescale(1000),
        TrackInfo::audio(TrackId(2), Codec::Aac, 48_000, 1)
            .with_config(asc.ok_or("no AudioSpecificConfig in the clip")?)
            .with_timescale(1000),
    ];
    Ok((tracks, frames))
}

/// Records `loops` repetitions of the frames into `dir` as the recorder
/// does; returns the thread's CPU seconds and the files written.
fn record_once(
    tracks: &[TrackInfo],
    frames: &[Frame],
    loops: u32,
    dir: &Path,
) -> Result<(f64, usize), String> {
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let cpu0 = thread_cpu_ns();
    let mut mux = Muxer::new(Targets {
        part90: 90_000,
        segment90: 60 * 90_000,
    });
    let mut outs = Vec::new();
    mux.tracks(tracks, &mut outs)?;
    let mut open: Option<(File, Segment)> = None;
    let mut files = 0;
    let wall0 = 1_800_000_000_000_i64;
    for l in 0..i64::from(loops) {
        let shift = l * CLIP_SECONDS * 1000;
        for f in frames {
            let mut f = f.clone();
            f.dts += shift;
            f.pts += shift;
            mux.frame(&f, wall0 + f.dts, &mut outs);
            for op in outs.drain(..) {
                write_op(dir, op, &mut open, &mut files)?;
            }
        }
    }
    mux.end(&mut outs);
    for op in outs.drain(..) {
        write_op(dir, op, &mut open, &mut files)?;
    }
    let cpu = (thread_cpu_ns() - cpu0) as f64 / 1e9;
    Ok((cpu, files))
}

/// One writer operation, as the recorder's writer thread does it.
fn write_op(
    dir: &Path,
    op: Output,
    open: &mut Option<(File, Segment)>,
    files: &mut usize,
) -> Result<(), String> {
    let e = |e: std::io::Error| e.to_string();
    match op {
        Output::Open(start) => {
            close(dir, open)?;
            let name = tidewater_record::time::file_name(start.start_ms);
            let mut file = File::create(dir.join(&name)).map_err(e)?;
            file.write_all(&start.init).map_err(e)?;
            *open = Some((
                file,
                Segment {
                    file: name,
                    start_ms: start.start_ms,
                    base_ms: start.base_ms,
                    init_len: start.init.len() as u64,
                    codecs: start.codecs,
                    fragments: Vec::new(),
                },
            ));
            *files += 1;
        }
        Output::Fragment(f) => {
            if let Some((file, s)) = open.as_mut() {
                let offset = s.bytes();
                file.write_all(&f.bytes).map_err(e)?;
                s.fragments.push(Fragment {
                    offset,
                    len: f.bytes.len() as u64,
                    t_ms: f.t_ms,
                    duration_ms: f.duration_ms,
                    key: f.keyframe,
                });
            }
        }
        Output::Close => close(dir, open)?,
    }
    Ok(())
}

fn close(dir: &Path, open: &mut Option<(File, Segment)>) -> Result<(), String> {
    if let Some((file, s)) = open.take() {
        file.sync_data().map_err(|e| e.to_string())?;
        index::append_index(dir, &s).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// ffmpeg's CPU seconds for `args` (children's CPU before and after).
fn ffmpeg_cpu(args: &[&str]) -> Result<f64, String> {
    let before = children_cpu_s();
    ffmpeg(args)?;
    Ok(children_cpu_s() - before)
}

fn recording(opts: &Options) -> Result<(), String> {
    let clip = clip()?;
    let (tracks, frames) = read_flv(&clip)?;
    let clip_s = clip.to_str().ok_or("non-UTF-8 path")?.to_string();
    let seconds = (CLIP_SECONDS * i64::from(opts.loops)) as f64;
    let loops_arg = (opts.loops - 1).to_string();
    let (mut ours, mut plain, mut frag, mut read) = (vec![], vec![], vec![], vec![]);
    for rep in 0..opts.reps {
        let dir = scratch("record-tidewater");
        let (cpu, files) = record_once(&tracks, &frames, opts.loops, &dir)?;
        let _ = fs::remove_dir_all(&dir);
        ours.push(cpu);

        let dir = scratch("record-ffmpeg");
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let pattern = dir.join("seg%05d.mp4");
        let pattern = pattern.to_str().ok_or("non-UTF-8 path")?;
        let common = [
            "-stream_loop",
            &loops_arg,
            "-i",
            &clip_s,
            "-c",
            "copy",
            "-f",
            "segment",
            "-segment_time",
            "60",
            "-segment_format",
            "mp4",
            "-reset_timestamps",
            "1",
        ];
        plain.push(ffmpeg_cpu(&[&common[..], &[pattern]].concat())?);
        let fragmented = [
            &common[..],
            &[
                "-segment_format_options",
                "movflags=+empty_moov+default_base_moof+frag_keyframe:frag_duration=1000000",
                pattern,
            ],
        ]
        .concat();
        frag.push(ffmpeg_cpu(&fragmented)?);
        read.push(ffmpeg_cpu(&[
            "-stream_loop",
            &loops_arg,
            "-i",
            &clip_s,
            "-c",
            "copy",
            "-f",
            "null",
            "-",
        ])?);
        let _ = fs::remove_dir_all(&dir);
        eprintln!(
            "record bench: rep {}: tidewater {cpu:.3} s ({files} files), ffmpeg mp4 {:.2} s, fmp4 {:.2} s, read {:.2} s",
            rep + 1,
            plain[rep],
            frag[rep],
            read[rep]
        );
    }
    let per = |v: &[f64]| median(v) / seconds * 1e6;
    let (t, p, f, r) = (per(&ours), per(&plain), per(&frag), per(&read));
    println!(
        "recording CPU per stream-second ({} s of 720p30 2 Mbit/s H.264 + AAC, {} reps, median):",
        seconds, opts.reps
    );
    println!("  tidewater recorder (fMP4, 60 s files, 1 s parts): {t:.1} µs");
    println!(
        "  ffmpeg -f segment -segment_format mp4:          {p:.1} µs  (tidewater {:.2}x)",
        t / p
    );
    println!(
        "  ffmpeg -f segment, fragmented mp4 (1 s frags):  {f:.1} µs  (tidewater {:.2}x)",
        t / f
    );
    println!("  of which ffmpeg reading its input (-f null):    {r:.1} µs");
    Ok(())
}

/// A synthetic stream directory of `days` of 60 s segments; returns its
/// library, key and first start.
fn synthetic(days: i64) -> Result<(PathBuf, StreamKey, i64), String> {
    let root = scratch("record-index");
    let key = StreamKey::parse("live/month").map_err(|e| e.to_string())?;
    let dir = index::stream_dir(&root, &key);
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let init = vec![0u8; 700];
    let start0 = 1_790_000_000_000_i64;
    let segments = days * 24 * 60;
    let mut text = String::new();
    for i in 0..segments {
        let start = start0 + i * 60_000;
        let mut offset = init.len() as u64;
        let fragments: Vec<Fragment> = (0..60)
            .map(|j| {
                let len = if j % 2 == 0 { 60_000 } else { 25_000 };
                let f = Fragment {
                    offset,
                    len,
                    t_ms: j * 1000,
                    duration_ms: 1000,
                    key: j % 2 == 0,
                };
                offset += len;
                f
            })
            .collect();
        let s = Segment {
            file: tidewater_record::time::file_name(start),
            start_ms: start,
            base_ms: i * 60_000,
            init_len: init.len() as u64,
            codecs: vec!["h264".into(), "aac".into()],
            fragments,
        };
        fs::write(dir.join(&s.file), &init).map_err(|e| e.to_string())?;
        text.push_str(&serde_json::to_string(&s).map_err(|e| e.to_string())?);
        text.push('\n');
    }
    fs::write(dir.join(index::INDEX_FILE), text).map_err(|e| e.to_string())?;
    Ok((root, key, start0))
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn listing(opts: &Options) -> Result<(), String> {
    let t0 = Instant::now();
    let (root, key, start0) = synthetic(opts.days)?;
    let size = fs::metadata(index::stream_dir(&root, &key).join(index::INDEX_FILE))
        .map_err(|e| e.to_string())?
        .len();
    eprintln!(
        "record bench: {} segments written in {:.1} s (index {:.1} MB)",
        opts.days * 1440,
        t0.elapsed().as_secs_f64(),
        size as f64 / 1e6
    );
    let day15 = start0 + (opts.days / 2) * 86_400_000 + 3_600_000 * 12 + 30_000;
    let hour = 3_600_000;
    let (mut start, mut cold_list, mut warm_list) = (vec![], vec![], vec![]);
    let (mut cold_range, mut warm_range, mut warm_playlist) = (vec![], vec![], vec![]);
    for _ in 0..opts.reps {
        let lib = Library::new(&root);
        let t = Instant::now();
        lib.rebuild(&key).map_err(|e| e.to_string())?;
        start.push(ms(t));
        let t = Instant::now();
        let spans = lib.spans(&key);
        cold_list.push(ms(t));
        if spans.len() != 1 {
            return Err(format!("one span expected: {spans:?}"));
        }
        let t = Instant::now();
        let _ = lib.spans(&key);
        warm_list.push(ms(t));
        let t = Instant::now();
        let plan = lib.range(&key, day15, hour).ok_or("no range")?;
        warm_range.push(ms(t));
        if plan.pieces.len() < 60 * 30 {
            return Err(format!("a short range: {} pieces", plan.pieces.len()));
        }
        let t = Instant::now();
        let pl = lib
            .playlist(&key, day15, hour, |f| f.to_string())
            .ok_or("no playlist")?;
        warm_playlist.push(ms(t));
        if !pl.contains("#EXT-X-ENDLIST") {
            return Err("a playlist without an end".into());
        }
        let lib = Library::new(&root);
        let t = Instant::now();
        let _ = lib.range(&key, day15, hour).ok_or("no range")?;
        cold_range.push(ms(t));
    }
    let _ = fs::remove_dir_all(&root);
    println!(
        "playback queries over {} days of 60 s segments ({} files, index {:.0} MB; median of {}):",
        opts.days,
        opts.days * 1440,
        size as f64 / 1e6,
        opts.reps
    );
    println!(
        "  repair and index read on start (background): {:.0} ms",
        median(&start)
    );
    println!(
        "  list (spans):              first request {:.1} ms, then {:.2} ms",
        median(&cold_list),
        median(&warm_list)
    );
    println!(
        "  open a 1 h range (MP4):    {:.2} ms; without the start's index read {:.0} ms",
        median(&warm_range),
        median(&cold_range)
    );
    println!(
        "  1 h VOD playlist:          {:.2} ms",
        median(&warm_playlist)
    );
    Ok(())
}

fn run(opts: &Options) -> Result<(), String> {
    println!(
        "tidewater record bench, {} ({}), loops {}, reps {}",
        today_utc(),
        machine(),
        opts.loops,
        opts.reps
    );
    recording(opts)?;
    listing(opts)
}
