//! SRT readers per core and SRT in → SRT out latency of the `tidewater`
//! server.
//!
//! ```text
//! cargo xtask bench srt [OPTIONS]
//! cargo bench -p tidewater-ingest-srt --bench srt -- [OPTIONS]
//!
//!   --quick                smoke run: 20 and 50 readers, 4 s window
//!   --sizes 50,100,200     reader counts (default 50,100,200)
//!   --window 10            seconds measured after the readers settle
//!   --tidewater-bin PATH   measure this binary instead of building `tidewater-server`
//!   --load srt-tokio|raw   the readers: srt-tokio callers (default) or lighter raw
//!                          readers (see below)
//!   --server-cpus 0        the CPUs the server is pinned to (`0-1`: both);
//!                          several sets separated by `/` (`0/0-1`) measure
//!                          each size on each set in turn, in the same run,
//!                          and report each set's CPU per reader against the
//!                          first set's of the same size and round
//!   --rounds 1             repeat each size's sets this many times,
//!                          alternating (`0/0-1` with 2 rounds: 0, 0-1, 0, 0-1)
//!   --no-latency           skip the latency measurement
//!   --gst                  also measure the libsrt anchor at each size: GStreamer
//!                          `srtsrc mode=listener ! srtsink mode=listener` (gst 1.22,
//!                          libsrt 1.5; srtsink serves every caller), same load
//!   --nice -10             run everything (this process, the server, the
//!                          publisher) at this niceness (below 0 needs root),
//!                          and this session's autogroup too (restored at the
//!                          end; see tidewater_bench::sched): on a machine busy with
//!                          builds in other sessions, they get their CPU
//! ```
//!
//! **Readers per core.** For each reader count N: a fresh server pinned to
//! CPU 0 (SRT latency 120 ms), one 4 Mbit/s stream published by ffmpeg
//! (`-re -stream_loop -1 -c copy -f mpegts srt://…`) from a pre-encoded clip,
//! and N SRT readers in this process, pinned to CPU 1 with the publisher:
//! srt-tokio callers by default (about as costly in CPU as the server), or
//! light raw readers (`--load raw`, `support/raw_reader.rs`: srt-protocol's
//! caller handshake, then counting and a full ACK every 10 ms when there is
//! something new, with the RTT measured from the ACK2s, as libsrt
//! acknowledges; no NAKs). They cost about 1.3 ms of CPU per reader-second
//! against srt-tokio's ~1.8 (BENCHMARKS.md). After the readers connect and settle, a window
//! measures the server's CPU (utime + stime of its process, all threads), the
//! bytes each reader received, and how many kept up (at least 95 % of the
//! stream's rate). Readers per core is N divided by the cores the server used.
//!
//! **Latency.** One publisher and one reader, both srt-tokio callers here,
//! with 120 ms TSBPD latency on every leg. The publisher sends the clip in
//! 1316-byte messages paced by its decode timestamps; the time at which each
//! video frame became complete at the publisher (the demuxer's own view of
//! what it sent) is compared with when the reader's demuxer completed the
//! same frame. Reported: p50/p99 over the frames sent after the reader
//! joined (its cached-GOP burst excluded).
//!
//! The clip (30 s of testsrc2 + sine, 1280×720 at 30 fps, H.264 at a
//! constant 3.9 Mbit/s with filler, AAC 96 kbit/s, a keyframe every 2 s, in
//! MPEG-TS) is generated once into `target/bench-media/`. Everything runs on
//! 127.0.0.1; every process started here is stopped on the way out.

// The bench reads what the server sends (and the server's log): no
// indexing, slicing, unwrap, expect or panic on it.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::HashMap;
use std::env;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use srt_tokio::SrtSocket;
use tidewater_media::ts::{DemuxEvent, TsDemuxer, VIDEO_TRACK};

#[path = "support/raw_reader.rs"]
mod raw_reader;
#[path = "support/udp_stats.rs"]
mod udp_stats;

use tidewater_bench::procstat::{CpuSample, CpuWindow, clock_ticks_per_second};
use tidewater_bench::sched;

const CLIP_NAME: &str = "srt-testsrc2-720p30-h264-3900k-aac96k-gop2s-30s.ts";
const LATENCY: Duration = Duration::from_millis(120);
const MESSAGE: usize = 1316;

struct Options {
    sizes: Vec<usize>,
    raw: bool,
    /// CPU sets the server is pinned to, each measured at every size.
    server_cpus: Vec<String>,
    rounds: usize,
    latency: bool,
    nice: Option<i32>,
    gst: bool,
    window: Duration,
    settle: Duration,
    bin: Option<PathBuf>,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        sizes: vec![50, 100, 200],
        raw: false,
        server_cpus: vec!["0".into()],
        rounds: 1,
        latency: true,
        nice: None,
        gst: false,
        window: Duration::from_secs(10),
        settle: Duration::from_secs(5),
        bin: None,
    };
    let mut args = env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bench" => {}
            "--quick" => {
                o.sizes = vec![20, 50];
                o.window = Duration::from_secs(4);
                o.settle = Duration::from_secs(3);
            }
            "--sizes" => {
                let v = args.next().ok_or("--sizes needs a value")?;
                o.sizes = v
                    .split(',')
                    .map(|s| s.trim().parse().map_err(|e| format!("--sizes {s}: {e}")))
                    .collect::<Result<_, _>>()?;
            }
            "--window" => {
                let v = args.next().ok_or("--window needs a value")?;
                o.window = Duration::from_secs(v.parse().map_err(|e| format!("--window: {e}"))?);
            }
            "--load" => match args.next().as_deref() {
                Some("raw") => o.raw = true,
                Some("srt-tokio") => o.raw = false,
                other => return Err(format!("--load raw|srt-tokio, not {other:?}")),
            },
            "--server-cpus" => {
                let v = args.next().ok_or("--server-cpus needs a list")?;
                o.server_cpus = v.split('/').map(|s| s.trim().to_string()).collect();
                if o.server_cpus.iter().any(String::is_empty) {
                    return Err(format!("--server-cpus {v}: an empty CPU set"));
                }
            }
            "--rounds" => {
                let v = args.next().ok_or("--rounds needs a value")?;
                o.rounds = v.parse().map_err(|e| format!("--rounds {v}: {e}"))?;
                if o.rounds == 0 {
                    return Err("--rounds must be at least 1".into());
                }
            }
            "--no-latency" => o.latency = false,
            "--gst" => o.gst = true,
            "--nice" => {
                let v = args.next().ok_or("--nice needs a value")?;
                o.nice = Some(v.parse().map_err(|e| format!("--nice: {e}"))?);
            }
            "--tidewater-bin" => {
                o.bin = Some(args.next().ok_or("--tidewater-bin needs a path")?.into())
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(o)
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

fn clip() -> Result<PathBuf, String> {
    let dir = target_dir().join("bench-media");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let clip = dir.join(CLIP_NAME);
    if clip.is_file() {
        return Ok(clip);
    }
    eprintln!("srt bench: generating {}", clip.display());
    let partial = dir.join(format!("{CLIP_NAME}.partial"));
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-t", "30", "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "veryfast",
        ])
        .args([
            "-b:v", "3900k", "-minrate", "3900k", "-maxrate", "3900k", "-bufsize", "3900k",
        ])
        .args([
            "-x264-params",
            "nal-hrd=cbr:force-cfr=1",
            "-g",
            "60",
            "-keyint_min",
            "60",
        ])
        .args([
            "-sc_threshold",
            "0",
            "-c:a",
            "aac",
            "-b:a",
            "96k",
            "-f",
            "mpegts",
        ])
        .arg(&partial)
        .status()
        .map_err(|e| format!("ffmpeg: {e}"))?;
    if !status.success() {
        return Err(format!("ffmpeg could not generate the clip ({status})"));
    }
    std::fs::rename(&partial, &clip).map_err(|e| format!("{}: {e}", clip.display()))?;
    Ok(clip)
}

fn build_tidewater() -> Result<PathBuf, String> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    eprintln!("srt bench: building the tidewater server (release)");
    let status = Command::new(&cargo)
        .args(["build", "--release", "-p", "tidewater-server"])
        .current_dir(workspace())
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`cargo build --release -p tidewater-server` failed ({status})"
        ));
    }
    let bin = target_dir().join("release").join("tidewater");
    bin.is_file()
        .then_some(bin.clone())
        .ok_or_else(|| format!("no binary at {}", bin.display()))
}

/// A child process killed on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CPUs of the machine, read before this process pins itself.
fn cpus() -> usize {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Starts the server (pinned to CPU 0 on a machine with two or more) and
/// returns it with its SRT address.
fn start_server(bin: &Path, server_cpus: &str) -> Result<(Guard, SocketAddr), String> {
    let mut cmd = if cpus() >= 2 {
        let mut c = Command::new("taskset");
        c.args(["-c", server_cpus]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    for (name, _) in env::vars_os() {
        if name
            .to_str()
            .is_none_or(|n| n.starts_with("TIDEWATER") || n == "RUST_LOG")
        {
            cmd.env_remove(&name);
        }
    }
    let mut child = cmd
        .env("TIDEWATER_HTTP__LISTEN", "127.0.0.1:0")
        .env("TIDEWATER_RTMP__LISTEN", "127.0.0.1:0")
        .env("TIDEWATER_SRT__LISTEN", "127.0.0.1:0")
        .env("TIDEWATER_RTSP__LISTEN", "127.0.0.1:0")
        .env("TIDEWATER_RTSP__UDP_RTP_PORT", "0")
        .env("TIDEWATER_RTSP__UDP_RTCP_PORT", "0")
        .env("TIDEWATER_WEBRTC__UDP_LISTEN", "127.0.0.1:0")
        .env("TIDEWATER_LOG__LEVEL", "warn,tidewater_ingest_srt=info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let (tx, rx) = mpsc::channel();
    for out in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let guard = Guard(child);
    let deadline = Instant::now() + Duration::from_secs(15);
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if let Some(rest) = line.split("srt listening on ").nth(1)
            && let Some(addr) = rest.split_whitespace().next().and_then(|a| a.parse().ok())
        {
            // Keep draining so the server never blocks on a full pipe.
            std::thread::spawn(move || {
                while let Ok(line) = rx.recv() {
                    if line.contains("WARN") || line.contains("ERROR") {
                        eprintln!("server: {line}");
                    }
                }
            });
            return Ok((guard, addr));
        }
    }
    Err("the server did not log its SRT address".into())
}

/// The libsrt anchor: GStreamer relaying what ffmpeg publishes to one
/// listener port to every caller of another (srtsink in listener mode
/// serves several callers; stream ids are not read). Pinned as the server
/// is; returns it with the readers' address and the publisher's.
fn start_gst(server_cpus: &str) -> Result<(Guard, SocketAddr, SocketAddr), String> {
    let free = || {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map_err(|e| e.to_string())
    };
    let (input, output) = (free()?, free()?);
    let ms = LATENCY.as_millis();
    let mut c = Command::new("taskset");
    c.args(["-c", server_cpus, "gst-launch-1.0", "-q"])
        .arg("srtsrc")
        .arg(format!("uri=srt://{input}?mode=listener&latency={ms}"))
        .args(["!", "queue", "!", "srtsink"])
        .arg(format!("uri=srt://{output}?mode=listener&latency={ms}"))
        .args(["wait-for-connection=false", "sync=false"]);
    let child = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("gst-launch-1.0: {e}"))?;
    // Its listeners are up when a caller is answered: wait_live probes that.
    Ok((Guard(child), output, input))
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// The server's process id under `taskset` (which execs it: the same pid).
fn server_pid(g: &Guard) -> u32 {
    g.0.id()
}

fn pin_self_to_cpu1() {
    if cpus() >= 2 {
        let _ = Command::new("taskset")
            .args(["-a", "-cp", "1", &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status();
    }
}

fn publish_ffmpeg(clip: &Path, addr: SocketAddr, key: &str) -> Result<Guard, String> {
    let mut c = if cpus() >= 2 {
        let mut c = Command::new("taskset");
        c.args(["-c", "1", "ffmpeg"]);
        c
    } else {
        Command::new("ffmpeg")
    };
    let child = c
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-re",
            "-stream_loop",
            "-1",
        ])
        .arg("-i")
        .arg(clip)
        .args(["-c", "copy", "-f", "mpegts"])
        .arg(format!(
            "srt://{addr}?streamid=publish:{key}&latency=120000&pkt_size=1316"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("ffmpeg: {e}"))?;
    Ok(Guard(child))
}

/// Waits until `key` is live: a reader is accepted (bounded).
async fn wait_live(addr: SocketAddr, key: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let id = format!("read:{key}");
    while Instant::now() < deadline {
        let call = SrtSocket::builder().latency(LATENCY).call(addr, Some(&id));
        if let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_secs(2), call).await {
            let _ = s.close().await;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("{key} did not go live within 20 s"))
}

async fn reader(
    addr: SocketAddr,
    key: String,
    count: Arc<raw_reader::Counts>,
    failed: Arc<AtomicU64>,
) {
    let Ok(mut s) = SrtSocket::builder()
        .latency(LATENCY)
        .call(addr, Some(&format!("read:{key}")))
        .await
    else {
        eprintln!("srt bench: a reader could not connect");
        failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    while let Some(Ok((_, data))) = s.next().await {
        count.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
    }
}

struct LoadResult {
    readers: usize,
    cores: f64,
    /// CPU this process (the readers) used, in cores.
    load_cores: f64,
    kept_up: usize,
    mbps: f64,
    /// Packets the raw readers never received (0 with srt-tokio's).
    lost: u64,
    /// Readers that could not connect.
    failed: usize,
    /// The machine's 1-minute load average at the window's end.
    loadavg: f64,
    /// Every CPU's busy time and softirq time in the window.
    cpus: CpuWindow,
    /// Datagrams dropped for a full receive buffer in the window: on the
    /// server's sockets, on the load tool's, and system-wide.
    drops: (u64, u64, u64),
    /// The most the server's sockets held in the window (sampled every
    /// 100 ms), in KiB: sent and not yet read by the readers (`tx_queue`),
    /// received and not yet read by the server (`rx_queue`).
    peak_queues: (u64, u64),
    /// Seconds per second the server's threads waited, ready to run, for a
    /// CPU (summed over its threads): CPU taken by other processes.
    run_queue_wait: f64,
}

fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn load(
    bin: Option<&Path>,
    server_cpus: &str,
    clip: &Path,
    n: usize,
    o: &Options,
    stream_bps: f64,
) -> Result<LoadResult, String> {
    let key = "live/bench";
    let (server, addr, _publisher) = match bin {
        Some(bin) => {
            let (server, addr) = start_server(bin, server_cpus)?;
            let publisher = publish_ffmpeg(clip, addr, key)?;
            (server, addr, publisher)
        }
        None => {
            let (server, addr, input) = start_gst(server_cpus)?;
            std::thread::sleep(Duration::from_millis(500));
            let publisher = publish_ffmpeg(clip, input, key)?;
            (server, addr, publisher)
        }
    };
    // srt-tokio's socket tasks need a worker thread besides the one driving this.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let counts: Vec<Arc<raw_reader::Counts>> = (0..n).map(|_| Arc::default()).collect();
    let failed = Arc::new(AtomicU64::new(0));
    let pid = server_pid(&server);
    let (window, settle, raw) = (o.window, o.settle, o.raw);
    rt.block_on(wait_live(addr, key))?;
    let result = rt.block_on(async {
        let mut tasks = Vec::new();
        for (i, c) in counts.iter().enumerate() {
            let (c, failed) = (Arc::clone(c), Arc::clone(&failed));
            tasks.push(if raw {
                tokio::spawn(async move {
                    if let Err(e) = raw_reader::run(addr, format!("read:{key}"), LATENCY, c).await {
                        eprintln!("srt bench: a raw reader: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                })
            } else {
                tokio::spawn(reader(addr, key.to_string(), c, failed))
            });
            if i % 20 == 19 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        tokio::time::sleep(settle).await;
        let before: Vec<u64> = counts
            .iter()
            .map(|c| c.bytes.load(Ordering::Relaxed))
            .collect();
        let lost0: u64 = counts.iter().map(|c| c.lost.load(Ordering::Relaxed)).sum();
        let cpu0 = cpu_seconds(pid);
        let own0 = cpu_seconds(std::process::id());
        let sample0 = CpuSample::take(&[pid]);
        let (srv0, load0) = (
            udp_stats::of_process(pid),
            udp_stats::of_process(std::process::id()),
        );
        let sys0 = udp_stats::rcvbuf_errors();
        let sched0 = sched::run_and_wait_ns(pid);
        let t0 = Instant::now();
        let mut peak_queues = (0, 0);
        while t0.elapsed() < window {
            tokio::time::sleep(Duration::from_millis(100).min(window.saturating_sub(t0.elapsed())))
                .await;
            let s = udp_stats::of_process(pid);
            peak_queues.0 = peak_queues.0.max(s.tx_queue / 1024);
            peak_queues.1 = peak_queues.1.max(s.rx_queue / 1024);
        }
        let cpu1 = cpu_seconds(pid);
        let own1 = cpu_seconds(std::process::id());
        let sample1 = CpuSample::take(&[pid]);
        let (srv1, load1) = (
            udp_stats::of_process(pid),
            udp_stats::of_process(std::process::id()),
        );
        let sys1 = udp_stats::rcvbuf_errors();
        let sched1 = sched::run_and_wait_ns(pid);
        let secs = t0.elapsed().as_secs_f64();
        let after: Vec<u64> = counts
            .iter()
            .map(|c| c.bytes.load(Ordering::Relaxed))
            .collect();
        let lost1: u64 = counts.iter().map(|c| c.lost.load(Ordering::Relaxed)).sum();
        let loadavg = loadavg();
        for t in tasks {
            t.abort();
        }
        let rates: Vec<f64> = before
            .iter()
            .zip(&after)
            .map(|(b, a)| (a - b) as f64 * 8.0 / secs)
            .collect();
        let cores = match (cpu0, cpu1) {
            (Some(a), Some(b)) => (b - a) / secs,
            _ => f64::NAN,
        };
        LoadResult {
            readers: n,
            cores,
            load_cores: match (own0, own1) {
                (Some(a), Some(b)) => (b - a) / secs,
                _ => f64::NAN,
            },
            kept_up: rates.iter().filter(|r| **r >= 0.95 * stream_bps).count(),
            mbps: rates.iter().sum::<f64>() / 1e6,
            lost: lost1 - lost0,
            failed: failed.load(Ordering::Relaxed) as usize,
            loadavg,
            cpus: CpuWindow::between(&sample0, &sample1, clock_ticks_per_second(), secs),
            drops: (
                srv1.drops.saturating_sub(srv0.drops),
                load1.drops.saturating_sub(load0.drops),
                match (sys0, sys1) {
                    (Some(a), Some(b)) => b.saturating_sub(a),
                    _ => 0,
                },
            ),
            peak_queues,
            run_queue_wait: match (sched0, sched1) {
                (Some(a), Some(b)) => b.1.saturating_sub(a.1) as f64 / 1e9 / secs,
                _ => f64::NAN,
            },
        }
    });
    drop(rt);
    Ok(result)
}

/// When each video frame (by pts) became complete, for a demuxer fed `chunks` in order.
fn completions(chunks: &[&[u8]]) -> Vec<Vec<i64>> {
    let mut d = TsDemuxer::new();
    chunks
        .iter()
        .map(|c| {
            let _ = d.push(c);
            let mut done = Vec::new();
            while let Some(ev) = d.poll() {
                if let DemuxEvent::Frame(f) = ev
                    && f.track == VIDEO_TRACK
                {
                    done.push(f.pts);
                }
            }
            done
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let last = sorted.len().saturating_sub(1);
    let i = (last as f64 * p).round() as usize;
    sorted.get(i.min(last)).copied().unwrap_or(f64::NAN)
}

fn latency(bin: &Path, clip: &Path) -> Result<(f64, f64, usize), String> {
    let (_server, addr) = start_server(bin, "0")?;
    let data = std::fs::read(clip).map_err(|e| e.to_string())?;
    let chunks: Vec<&[u8]> = data.chunks(MESSAGE).collect();
    let done = completions(&chunks);
    // Pace by the frames' timestamps: chunk i goes out when the clock reaches
    // the last frame it completes.
    let first = done.iter().flatten().copied().min().unwrap_or(0);
    let mut due = Vec::with_capacity(chunks.len());
    let mut last = 0i64;
    for d in &done {
        if let Some(m) = d.iter().max() {
            last = last.max(m - first);
        }
        due.push(Duration::from_micros((last.max(0) as u64) * 1000 / 90));
    }
    // srt-tokio's socket tasks need a worker thread besides the one driving this.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        // srt-tokio's default send buffer (32 packets) cannot hold a keyframe.
        let mut publisher = SrtSocket::builder()
            .latency(LATENCY)
            .set(|o| o.sender.buffer_size = srt_tokio::options::ByteCount(8192 * 1456))
            .call(addr, Some("publish:live/latency"))
            .await
            .map_err(|e| format!("publish: {e}"))?;
        let t0 = Instant::now();
        let sent: Arc<std::sync::Mutex<HashMap<i64, Instant>>> = Arc::default();
        let joined = Arc::new(std::sync::Mutex::new(None::<Instant>));
        let received: Arc<std::sync::Mutex<Vec<(i64, Instant)>>> = Arc::default();
        let reader = {
            let (received, joined) = (Arc::clone(&received), Arc::clone(&joined));
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(3)).await;
                let Ok(mut s) = SrtSocket::builder()
                    .latency(LATENCY)
                    .call(addr, Some("read:live/latency"))
                    .await
                else {
                    return;
                };
                *joined.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                let mut d = TsDemuxer::new();
                while let Some(Ok((_, bytes))) = s.next().await {
                    if d.push(&bytes).is_err() {
                        return;
                    }
                    let now = Instant::now();
                    while let Some(ev) = d.poll() {
                        if let DemuxEvent::Frame(f) = ev
                            && f.track == VIDEO_TRACK
                        {
                            received
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push((f.pts, now));
                        }
                    }
                }
            })
        };
        for ((chunk, due), done) in chunks.iter().zip(&due).zip(&done) {
            tokio::time::sleep_until((t0 + *due).into()).await;
            publisher
                .send((Instant::now(), bytes::Bytes::copy_from_slice(chunk)))
                .await
                .map_err(|e| format!("send: {e}"))?;
            let now = Instant::now();
            let mut s = sent.lock().unwrap_or_else(|p| p.into_inner());
            for pts in done {
                s.insert(*pts, now);
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let _ = publisher.close().await;
        let _ = tokio::time::timeout(Duration::from_secs(3), reader).await;
        let joined = joined
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .ok_or("the reader never joined")?;
        let sent = sent.lock().unwrap_or_else(|p| p.into_inner());
        let mut ms: Vec<f64> = received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|(pts, at)| {
                let s = sent.get(pts)?;
                (*s > joined + Duration::from_secs(1))
                    .then(|| at.duration_since(*s).as_secs_f64() * 1000.0)
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        Ok((percentile(&ms, 0.5), percentile(&ms, 0.99), ms.len()))
    })
}

fn run() -> Result<(), String> {
    let o = options()?;
    let _ = cpus();
    let clip = clip()?;
    let bin = match &o.bin {
        Some(b) => b.clone(),
        None => build_tidewater()?,
    };
    // Held to the end of the run; the autogroup's niceness is put back then.
    let _autogroup = o.nice.map(sched::AutogroupNice::set);
    if let Some(n) = o.nice {
        // Inherited by every thread and process started from here on.
        let status = Command::new("renice")
            .args(["-n", &n.to_string(), "-p", &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("renice: {e}"))?;
        if !status.success() {
            return Err(format!("renice -n {n} failed ({status})"));
        }
    }
    pin_self_to_cpu1();
    let size = std::fs::metadata(&clip).map_err(|e| e.to_string())?.len();
    let stream_bps = size as f64 * 8.0 / 30.0;
    println!(
        "SRT bench: {} CPUs, clip {:.2} Mbit/s (TS), latency 120 ms on every leg",
        cpus(),
        stream_bps / 1e6
    );
    if o.latency {
        let (p50, p99, frames) = latency(&bin, &clip)?;
        println!(
            "\nSRT in -> SRT out, video frame complete at the publisher -> complete at the reader ({frames} frames): p50 {p50:.0} ms, p99 {p99:.0} ms\n"
        );
    }
    println!(
        "readers: {}; server on CPUs {} ({} round(s)); the load tool and the publisher on CPU 1",
        if o.raw { "raw (light)" } else { "srt-tokio" },
        o.server_cpus.join(" and "),
        o.rounds
    );
    println!(
        "| server | server CPUs | readers | server CPU (cores) | readers per core | server ms CPU per reader-second | readers keeping up (>= 95 % of the stream rate) | delivered Mbit/s | packets lost | load tool's CPU (cores) | load average | CPU busy (cpu0,cpu1…) | softirq | rcvbuf drops: server / load tool / system | server socket peak tx / rx queue (KiB) | server's run-queue wait (s/s) |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|---:|");
    let servers: Vec<(&str, Option<&Path>)> = if o.gst {
        vec![("tidewater", Some(&bin)), ("gst srtsink", None)]
    } else {
        vec![("tidewater", Some(&bin))]
    };
    for &n in &o.sizes {
        for _round in 0..o.rounds {
            // Each server's CPU per reader on the first set of this size and round.
            let mut first: HashMap<&str, f64> = HashMap::new();
            for set in &o.server_cpus {
                for (name, server) in &servers {
                    let r = load(*server, set, &clip, n, &o, stream_bps)?;
                    let per_reader = r.cores * 1000.0 / r.readers as f64;
                    let against = match first.get(name) {
                        Some(f) => format!(" ({:+.1} %)", (per_reader / f - 1.0) * 100.0),
                        None => {
                            first.insert(name, per_reader);
                            String::new()
                        }
                    };
                    print_row(name, set, &r, per_reader, &against);
                }
            }
        }
    }
    Ok(())
}

/// One row of the table: `against` is the change of CPU per reader from the
/// first CPU set's run of the same size and round (empty for that run).
fn print_row(name: &str, set: &str, r: &LoadResult, per_reader: f64, against: &str) {
    println!(
        "| {name} | {set} | {} | {:.3} | {:.0} | {:.3}{against} | {}/{}{} | {:.1} | {} | {:.2} | {:.1} | {} | {} | {} / {} / {} | {} / {} | {:.2} |",
        r.readers,
        r.cores,
        r.readers as f64 / r.cores,
        per_reader,
        r.kept_up,
        r.readers,
        if r.failed > 0 {
            format!(" ({} failed to connect)", r.failed)
        } else {
            String::new()
        },
        r.mbps,
        r.lost,
        r.load_cores,
        r.loadavg,
        r.cpus.busy,
        r.cpus.softirq,
        r.drops.0,
        r.drops.1,
        r.drops.2,
        r.peak_queues.0,
        r.peak_queues.1,
        r.run_queue_wait
    );
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("srt bench: {e}");
            ExitCode::FAILURE
        }
    }
}
