//! WHEP viewers of one 2 Mbit/s H.264 stream: the `tidewater` server's CPU
//! per viewer, viewers keeping up, publish → viewer latency and join time,
//! with socket I/O, against real WebRTC peers.
//!
//! For each viewer count N (including 0, the baseline: the publish with
//! its always-on HLS/DASH packagers and no viewer): start
//! `target/release/tidewater` pinned to CPU 0; this process (the load tool,
//! pinned to CPU 1, a two-thread runtime) publishes a pre-encoded clip
//! (x264, 1280x720 at 30 fps, 2 Mbit/s, no B-frames, 2 s GOP; made once with
//! ffmpeg) over RTMP in real time, stamping when it wrote each frame
//! (`whep/publish.rs`), and connects N str0m peers (`whep/viewer.rs`): each
//! `POST`s a receive-only offer to `/whep/live/bench` and runs ICE, DTLS and
//! SRTP over its own loopback UDP socket. Every tenth is a full viewer
//! (str0m decrypts every packet; its first packet must start a keyframe);
//! the others read the RTP header SRTP leaves in the clear, so that one
//! core holds 500 of them. After the ramp and a settling time a window is
//! measured: the server's CPU (utime + stime, all threads), the load tool's,
//! the time each spent runnable but waiting for its CPU (schedstat: other
//! work on a shared machine),
//! viewers keeping up (at least 90 % of the video bytes published in the
//! window), latency from a frame's write to the RTMP socket to the arrival
//! of its last RTP packet at a viewer (p50/p99 over every frame of every
//! viewer; the RTP time is the RTMP time × 90, so the frame is found by
//! its timestamp), and `POST` → first RTP packet (p50/p99).
//!
//! ```text
//! cargo xtask bench whep [OPTIONS]
//! cargo bench -p tidewater-whip --bench whep -- [OPTIONS]
//!
//!   --sizes 0,50,200,500     viewer counts (0 is the baseline)
//!   --window 10              seconds measured
//!   --settle 4               seconds between the last viewer's POST and the window
//!   --joins 50               viewers joining per second during the ramp
//!   --full-every 10          every Nth viewer decrypts (1: all)
//!   --quick                  --sizes 0,50,200 --window 4 --settle 2 (about a minute)
//!   --tidewater-bin PATH     measure this binary instead of building tidewater-server
//! ```
//!
//! Per-viewer CPU is (server CPU at N − at 0) / N. Needs `taskset`
//! (util-linux) and ffmpeg with libx264 (for the clip).

#[path = "whep/publish.rs"]
mod publish;
#[path = "whep/viewer.rs"]
mod viewer;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use publish::Stamps;
use viewer::ViewerStats;

struct Options {
    sizes: Vec<usize>,
    window: u64,
    settle: u64,
    joins: u64,
    full_every: usize,
    bin: Option<PathBuf>,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        sizes: vec![0, 50, 200, 500],
        window: 10,
        settle: 4,
        joins: 50,
        full_every: 10,
        bin: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--sizes" => {
                o.sizes = value()?
                    .split(',')
                    .map(|s| s.trim().parse().map_err(|e| format!("--sizes: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--window" => o.window = value()?.parse().map_err(|e| format!("--window: {e}"))?,
            "--settle" => o.settle = value()?.parse().map_err(|e| format!("--settle: {e}"))?,
            "--joins" => o.joins = value()?.parse().map_err(|e| format!("--joins: {e}"))?,
            "--full-every" => {
                o.full_every = value()?.parse().map_err(|e| format!("--full-every: {e}"))?
            }
            "--quick" => {
                o.sizes = vec![0, 50, 200];
                o.window = 4;
                o.settle = 2;
            }
            "--tidewater-bin" => o.bin = Some(PathBuf::from(value()?)),
            // cargo bench passes --bench; a separator may come through.
            "--bench" | "--" => {}
            other => return Err(format!("unknown option {other}")),
        }
    }
    o.joins = o.joins.max(1);
    o.full_every = o.full_every.max(1);
    Ok(o)
}

/// A child stopped when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("{what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

fn build_server() -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("whep bench: building the tidewater server (release)");
    run(
        Command::new(cargo)
            .args(["build", "--release", "-p", "tidewater-server"])
            .current_dir(workspace()),
        "cargo build --release -p tidewater-server",
    )?;
    Ok(target_dir().join("release").join("tidewater"))
}

/// The 2 Mbit/s clip, made once.
fn clip(dir: &Path) -> Result<PathBuf, String> {
    let path = dir.join("clip-720p30-2M-bf0.flv");
    if path.is_file() {
        return Ok(path);
    }
    eprintln!("whep bench: encoding the clip (once)");
    run(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args([
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=1280x720:rate=30",
                "-t",
                "20",
            ])
            .args([
                "-c:v", "libx264", "-preset", "veryfast", "-bf", "0", "-g", "60",
            ])
            .args([
                "-b:v", "2M", "-maxrate", "2M", "-bufsize", "2M", "-pix_fmt", "yuv420p",
            ])
            .args(["-f", "flv"])
            .arg(&path),
        "ffmpeg (the clip)",
    )?;
    Ok(path)
}

fn free_port(udp: bool) -> Result<u16, String> {
    let port = if udp {
        std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr())
    } else {
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|s| s.local_addr())
    };
    port.map(|a| a.port())
        .map_err(|e| format!("a free port: {e}"))
}

/// utime + stime of `pid`, seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 (1-based); state is field 3.
    (ticks(11) + ticks(12)) / 100.0
}

/// Time the threads of `pid` spent runnable but waiting for a CPU
/// (`/proc/PID/task/*/schedstat`, second field), seconds: on a shared
/// machine, how much of a lag is the machine's rather than the process's.
fn wait_seconds(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    ns as f64 / 1e9
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn wait_live(http: SocketAddr) -> Result<(), String> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if let Ok(mut s) = std::net::TcpStream::connect(http) {
            use std::io::{Read, Write};
            let _ = write!(
                s,
                "GET /api/v1/streams/live/bench HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            );
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if out.starts_with("HTTP/1.1 200") {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err("the stream did not go live in 20 s".into())
}

/// What one N measured.
struct Figures {
    server_cpu: f64,
    line: String,
}

/// One N: a fresh server and publisher; the line of figures.
fn measure(bin: &Path, clip: &Path, dir: &Path, n: usize, o: &Options) -> Result<Figures, String> {
    let (http_port, rtmp_port, udp_port) = (free_port(false)?, free_port(false)?, free_port(true)?);
    let config = dir.join("whep-bench.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http_port}\"\n[rtmp]\nlisten = \"127.0.0.1:{rtmp_port}\"\n\
             [srt]\nlisten = \"127.0.0.1:0\"\n[rtsp]\nlisten = \"127.0.0.1:0\"\nudp_rtp_port = 0\nudp_rtcp_port = 0\n\
             [webrtc]\nudp_listen = \"127.0.0.1:{udp_port}\"\nmax_sessions = {}\n",
            n + 16
        ),
    )
    .map_err(|e| e.to_string())?;
    let log =
        std::fs::File::create(dir.join(format!("server-{n}.log"))).map_err(|e| e.to_string())?;
    let server = Guard(
        Command::new("taskset")
            .args(["-c", "0"])
            .arg(bin)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("taskset {}: {e}", bin.display()))?,
    );
    let http: SocketAddr = ([127, 0, 0, 1], http_port).into();
    let rtmp: SocketAddr = ([127, 0, 0, 1], rtmp_port).into();
    // Two threads on the load tool's CPU: the publisher's pacing does not
    // wait behind a burst of viewers' packets.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let stats: Vec<Arc<ViewerStats>> = (0..n).map(|_| Arc::default()).collect();
    let stamps = Arc::new(Stamps::new());
    let measuring = Arc::new(AtomicBool::new(false));
    let video_bytes = Arc::new(AtomicU64::new(0));
    let pid = server.0.id();
    let load_cpu = || cpu_seconds(std::process::id());
    let result = runtime.block_on(async {
        let publisher = {
            let (stamps, video_bytes, clip) =
                (Arc::clone(&stamps), Arc::clone(&video_bytes), clip.to_path_buf());
            tokio::spawn(async move {
                // The server may still be starting: retry the connection.
                let mut last = String::new();
                for _ in 0..50 {
                    match publish::run(rtmp, &clip, &stamps, &video_bytes).await {
                        Ok(()) => return String::new(),
                        Err(e) if video_bytes.load(Ordering::Relaxed) > 0 => return e,
                        Err(e) => last = e,
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                last
            })
        };
        tokio::task::spawn_blocking(move || wait_live(http))
            .await
            .map_err(|e| e.to_string())??;
        // Let the cached GOP fill before the first viewer.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let failures = Arc::new(AtomicU64::new(0));
        let ramp = tokio::time::Instant::now();
        for (i, s) in stats.iter().enumerate() {
            let (s, failures) = (Arc::clone(s), Arc::clone(&failures));
            let (stamps, measuring) = (Arc::clone(&stamps), Arc::clone(&measuring));
            let full = i % o.full_every == 0;
            tokio::spawn(async move {
                if let Err(e) = viewer::run(http, full, s, stamps, measuring).await
                    && failures.fetch_add(1, Ordering::Relaxed) < 3
                {
                    eprintln!("whep bench: a viewer failed: {e}");
                }
            });
            let next = Duration::from_micros(1_000_000 * (i as u64 + 1) / o.joins);
            tokio::time::sleep_until(ramp + next).await;
        }
        tokio::time::sleep(Duration::from_secs(o.settle)).await;
        if publisher.is_finished() {
            return Err(format!(
                "the RTMP publisher stopped: {}",
                publisher.await.unwrap_or_default()
            ));
        }
        let before: Vec<u64> = stats.iter().map(|s| s.bytes.load(Ordering::Relaxed)).collect();
        let unmatched0: u64 = stats.iter().map(|s| s.unmatched.load(Ordering::Relaxed)).sum();
        let published0 = video_bytes.load(Ordering::Relaxed);
        measuring.store(true, Ordering::Relaxed);
        let me = std::process::id();
        let (wait0, load_wait0) = (wait_seconds(pid), wait_seconds(me));
        let (server0, load0, wall0) = (cpu_seconds(pid), load_cpu(), Instant::now());
        tokio::time::sleep(Duration::from_secs(o.window)).await;
        let (server1, load1, wall) = (cpu_seconds(pid), load_cpu(), wall0.elapsed().as_secs_f64());
        let (wait, load_wait) = (wait_seconds(pid) - wait0, wait_seconds(me) - load_wait0);
        measuring.store(false, Ordering::Relaxed);
        let published = (video_bytes.load(Ordering::Relaxed) - published0) as f64;
        let delivered: Vec<f64> = stats
            .iter()
            .zip(&before)
            .map(|(s, b)| (s.bytes.load(Ordering::Relaxed) - b) as f64)
            .collect();
        let keeping_up = delivered.iter().filter(|d| **d >= 0.9 * published).count();
        let mut sorted = delivered.clone();
        sorted.sort_by(f64::total_cmp);
        let median = percentile(&sorted, 0.5);
        let mut joins: Vec<f64> = stats
            .iter()
            .map(|s| s.join_us.load(Ordering::Relaxed))
            .filter(|j| *j > 0)
            .map(|j| j as f64 / 1000.0)
            .collect();
        joins.sort_by(f64::total_cmp);
        let mut latencies: Vec<f64> = Vec::new();
        for s in &stats {
            if let Ok(l) = s.latencies.lock() {
                latencies.extend(l.iter().map(|us| f64::from(*us) / 1000.0));
            }
        }
        latencies.sort_by(f64::total_cmp);
        let unmatched =
            stats.iter().map(|s| s.unmatched.load(Ordering::Relaxed)).sum::<u64>() - unmatched0;
        let full: Vec<u64> = stats
            .iter()
            .step_by(o.full_every)
            .map(|s| s.first_keyframe.load(Ordering::Relaxed))
            .collect();
        let server_cpu = (server1 - server0) / wall;
        let line = format!(
            "{n:>4} viewers: server {:.1} % of a core (waited for a CPU {:.1} %); load tool {:.1} % \
             (waited {:.1} %); published {:.2} Mbit/s of video, \
             median viewer {:.2}; keeping up {keeping_up}/{n}; \
             latency publish→RTP p50 {:.1} ms p99 {:.1} ms max {:.1} ms ({} frames, {unmatched} unmatched); \
             joined {}/{n}, POST→first RTP p50 {:.0} ms p99 {:.0} ms; \
             full viewers starting on a keyframe {}/{}; failed {}",
            server_cpu * 100.0,
            wait / wall * 100.0,
            (load1 - load0) / wall * 100.0,
            load_wait / wall * 100.0,
            published * 8.0 / wall / 1e6,
            median * 8.0 / wall / 1e6,
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            latencies.last().copied().unwrap_or(f64::NAN),
            latencies.len(),
            joins.len(),
            percentile(&joins, 0.5),
            percentile(&joins, 0.99),
            full.iter().filter(|k| **k == 1).count(),
            full.len(),
            failures.load(Ordering::Relaxed),
        );
        Ok(Figures { server_cpu, line })
    });
    runtime.shutdown_timeout(Duration::from_millis(200));
    result
}

fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("whep bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = (|| -> Result<(), String> {
        let dir = target_dir().join("bench-whep");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let bin = match &o.bin {
            Some(b) => b.clone(),
            None => build_server()?,
        };
        let clip = clip(&dir)?;
        // The load tool (this process, every thread) on CPU 1.
        run(
            Command::new("taskset")
                .args(["-a", "-cp", "1", &std::process::id().to_string()])
                .stdout(Stdio::null()),
            "taskset (util-linux)",
        )?;
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!("whep bench: load average before: {}", load.trim());
        let commit = Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .current_dir(workspace())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        println!("whep bench: commit {commit} (plus uncommitted changes, if any)");
        let mut baseline = None;
        for &n in &o.sizes {
            let Figures {
                server_cpu: cpu,
                line,
            } = measure(&bin, &clip, &dir, n, &o)?;
            println!("{line}");
            if n == 0 {
                baseline = Some(cpu);
            } else if let Some(base) = baseline {
                println!(
                    "      per viewer over the 0-viewer baseline: {:.3} % of a core ({:.0} viewers per core)",
                    (cpu - base) / n as f64 * 100.0,
                    n as f64 / (cpu - base)
                );
            }
        }
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!("whep bench: load average after: {}", load.trim());
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("whep bench: {e}");
            ExitCode::FAILURE
        }
    }
}
