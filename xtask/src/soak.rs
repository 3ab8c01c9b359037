//! `cargo xtask soak [--minutes N] [--sample-secs S] [--release]`: the
//! server under steady publishing and churning readers, its resources
//! sampled, the run failed on growth or on a reader that lost frames.
//!
//! One `tidewater` process (debug build, `--release` for long runs) on
//! loopback ports. A 10 s clip (H.264 320x240 at 25 fps, a keyframe a
//! second, AAC, in MP4 for its global headers) is encoded once into
//! `target/soak/`; ffmpeg publishes it in a loop, in real
//! time, over every ingest: RTMP (`live/rtmp`), SRT (`live/srt`) and RTSP
//! over TCP (`live/rtsp`). One reader thread per output (RTMP, HTTP-FLV,
//! SRT, HTTP-TS, RTSP, HLS, LL-HLS, DASH) runs short ffmpeg readers one
//! after the other, each on the next published stream in turn, copying
//! 4 s of the video's packets to framecrc: each must end by itself, exit 0
//! with nothing on its standard error, and hold a whole run of video (at
//! least 3 s of it, no decode-timestamp step back, and no step longer than
//! one and a half frames: a frame it should have had is missing).
//!
//! Every `--sample-secs` (60; 10 when the run is 5 minutes or shorter) the
//! server's RSS (`/proc/PID/status`), open file descriptors
//! (`/proc/PID/fd`) and tokio tasks (`tidewater_runtime_alive_tasks` on
//! `/metrics`) are written with the readers' counts to
//! `target/soak/soak-<unix time>.csv`. After the warm-up (`--warmup-secs`,
//! by default the first fifth of the run but at least a minute: packagers'
//! windows, caches and the allocator's arenas fill over the first minute of
//! churn), the floor of the last quarter of the
//! samples must stay within 5 % of the ceiling of the first quarter, for
//! each resource (ceiling against floor: readers come and go between
//! samples, so single samples swing; a leak raises the floor past the old
//! ceiling). The run also fails when the server, or a publisher, exits.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::cmd::{Workspace, exe};

/// Allowed growth of each resource after the warm-up.
const MAX_GROWTH: f64 = 0.05;
/// Seconds of packets each reader copies.
const READ_SECONDS: u32 = 4;
/// Video frames a 4 s reader must hold at least (3 s at 25 fps).
const MIN_VIDEO_FRAMES: usize = 75;
/// The clip's frame duration in ms; a step between two video decode
/// timestamps of more than one and a half of it is a missing frame.
const FRAME_MS: f64 = 40.0;
/// How long one reader may take (joining, probing, 4 s of media).
const READER_TIMEOUT: Duration = Duration::from_secs(40);
/// Each output starts a reader at most this often (HLS, LL-HLS and DASH
/// readers take their 4 s from the window at once: unpaced, they would
/// start ffmpeg several times a second on a shared machine).
const READER_CYCLE: Duration = Duration::from_secs(2);
/// How long the server and the first publishes may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The published streams, by ingest.
const SOURCES: [&str; 3] = ["live/rtmp", "live/srt", "live/rtsp"];

#[derive(Debug, Clone)]
struct Options {
    minutes: f64,
    sample: Duration,
    warmup: Duration,
    release: bool,
}

impl Options {
    fn parse(args: &[OsString]) -> Result<Self> {
        let mut minutes: f64 = 2.0;
        let mut sample = None;
        let mut warmup = None;
        let mut release = false;
        let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
        while let Some(arg) = it.next() {
            let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
            match arg.as_str() {
                "--minutes" => {
                    minutes = value("--minutes")?.parse().context("--minutes: a number")?
                }
                "--sample-secs" => {
                    sample = Some(Duration::from_secs(
                        value("--sample-secs")?
                            .parse()
                            .context("--sample-secs: whole seconds")?,
                    ))
                }
                "--warmup-secs" => {
                    warmup = Some(Duration::from_secs(
                        value("--warmup-secs")?
                            .parse()
                            .context("--warmup-secs: whole seconds")?,
                    ))
                }
                "--release" => release = true,
                other => bail!(
                    "unknown argument `{other}`; usage: cargo xtask soak [--minutes N] \
                     [--sample-secs S] [--warmup-secs W] [--release]"
                ),
            }
        }
        if minutes.is_nan() || minutes <= 0.0 {
            bail!("--minutes must be positive");
        }
        let sample = sample.unwrap_or(if minutes <= 5.0 {
            Duration::from_secs(10)
        } else {
            Duration::from_secs(60)
        });
        if sample.is_zero() {
            bail!("--sample-secs must be positive");
        }
        // The packagers' windows, the caches and the allocator's arenas
        // fill over the first minute of churn: growth before that is not a leak.
        let warmup =
            warmup.unwrap_or_else(|| Duration::from_secs_f64((minutes * 60.0 / 5.0).max(60.0)));
        Ok(Self {
            minutes,
            sample,
            warmup,
            release,
        })
    }
}

pub(crate) fn soak(ws: &Workspace, args: &[OsString]) -> Result<()> {
    let opts = Options::parse(args)?;
    let target = ws.target_dir()?;
    let mut build = ws.cargo();
    build.args(["build", "-p", "tidewater-server"]);
    if opts.release {
        build.arg("--release");
    }
    ws.run(&mut build)?;
    let profile = if opts.release { "release" } else { "debug" };
    let bin = target.join(profile).join(exe("tidewater"));
    let dir = target.join("soak");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let clip = dir.join("clip.mp4");
    if !clip.is_file() {
        make_clip(&clip)?;
    }
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let csv_path = dir.join(format!("soak-{stamp}.csv"));
    let log_path = dir.join(format!("soak-{stamp}.server.log"));
    eprintln!(
        "soak: {} min, a sample every {:?}, {} build; curve in {}",
        opts.minutes,
        opts.sample,
        profile,
        csv_path.display()
    );

    let mut server = Server::start(&bin, &log_path)?;
    let publishers = Publishers::start(&clip, &server.addrs, &log_path)?;
    for key in SOURCES {
        server.wait_live(key)?;
    }
    let readers = Readers::start(&server.addrs);
    let result = run(&opts, &mut server, &publishers, &readers, &csv_path);
    let (ok, failures) = readers.stop();
    drop(publishers);
    server.stop();
    let samples = result?;
    eprintln!("soak: {ok} readers checked");
    let verdict = judge(&samples, opts.warmup);
    print_summary(&samples, &verdict, ok, &csv_path);
    if !failures.is_empty() {
        bail!(
            "{} reader(s) failed (server log: {}):\n{}",
            failures.len(),
            log_path.display(),
            failures.join("\n")
        );
    }
    if let Some(why) = verdict.failure() {
        bail!("{why}");
    }
    if ok == 0 {
        bail!("no reader completed");
    }
    Ok(())
}

/// Samples until the end of the run; fails early if the server or a publisher exits.
fn run(
    opts: &Options,
    server: &mut Server,
    publishers: &Publishers,
    readers: &Readers,
    csv_path: &Path,
) -> Result<Vec<Sample>> {
    let mut csv =
        File::create(csv_path).with_context(|| format!("creating {}", csv_path.display()))?;
    writeln!(
        csv,
        "elapsed_s,rss_kib,open_fds,tokio_tasks,readers_ok,readers_failed"
    )?;
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(opts.minutes * 60.0);
    let mut samples = Vec::new();
    let mut next = start;
    loop {
        if let Some(status) = server.exited() {
            bail!("the server exited ({status}) during the soak");
        }
        publishers.check_alive()?;
        let now = Instant::now();
        if now >= next {
            let s = server.sample(start.elapsed(), readers)?;
            writeln!(
                csv,
                "{:.0},{},{},{},{},{}",
                s.elapsed.as_secs_f64(),
                s.rss_kib,
                s.fds,
                s.tasks,
                s.readers_ok,
                s.readers_failed
            )?;
            csv.flush()?;
            eprintln!(
                "soak: {:>5.0} s  rss {} KiB  fds {}  tasks {}  readers ok {} failed {}",
                s.elapsed.as_secs_f64(),
                s.rss_kib,
                s.fds,
                s.tasks,
                s.readers_ok,
                s.readers_failed
            );
            samples.push(s);
            next += opts.sample;
            if now >= end {
                return Ok(samples);
            }
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// One sample of the server's resources.
#[derive(Debug, Clone)]
struct Sample {
    elapsed: Duration,
    rss_kib: u64,
    fds: u64,
    tasks: u64,
    readers_ok: u64,
    readers_failed: u64,
}

/// Growth of each resource after the warm-up.
#[derive(Debug)]
struct Verdict {
    /// `(name, ceiling of the first quarter, floor of the last quarter)`.
    growth: Vec<(&'static str, u64, u64)>,
    /// Why no verdict could be given.
    too_short: Option<String>,
}

impl Verdict {
    fn failure(&self) -> Option<String> {
        if let Some(why) = &self.too_short {
            return Some(why.clone());
        }
        let grown: Vec<String> = self
            .growth
            .iter()
            .filter(|(_, first, last)| growth(*first, *last) > MAX_GROWTH)
            .map(|(name, first, last)| {
                format!(
                    "{name} grew {:.1} % after the warm-up ({first} -> {last})",
                    growth(*first, *last) * 100.0
                )
            })
            .collect();
        (!grown.is_empty()).then(|| grown.join("; "))
    }
}

fn growth(first: u64, last: u64) -> f64 {
    (last as f64 - first as f64) / (first.max(1) as f64)
}

/// A resource's name and how to read it from a sample.
type Resource = (&'static str, fn(&Sample) -> u64);

/// The samples within `warmup` of the start are warm-up; of the rest, the
/// ceiling of the first quarter against the floor of the last quarter.
fn judge(samples: &[Sample], warmup: Duration) -> Verdict {
    let warm = samples
        .iter()
        .position(|s| s.elapsed >= warmup)
        .unwrap_or(samples.len());
    let rest = samples.get(warm..).unwrap_or_default();
    if rest.len() < 4 {
        return Verdict {
            growth: Vec::new(),
            too_short: Some(format!(
                "{} samples after the warm-up: at least 4 are needed (a longer run, a \
                 shorter --sample-secs or --warmup-secs)",
                rest.len()
            )),
        };
    }
    let quarter = rest.len().div_ceil(4);
    let (head, tail) = (&rest[..quarter], &rest[rest.len() - quarter..]);
    let resources: [Resource; 3] = [
        ("RSS (KiB)", |s| s.rss_kib),
        ("open fds", |s| s.fds),
        ("tokio tasks", |s| s.tasks),
    ];
    Verdict {
        growth: resources
            .iter()
            .map(|(name, f)| {
                let ceiling = head.iter().map(f).max().unwrap_or(0);
                let floor = tail.iter().map(f).min().unwrap_or(0);
                (*name, ceiling, floor)
            })
            .collect(),
        too_short: None,
    }
}

fn print_summary(samples: &[Sample], verdict: &Verdict, ok: u64, csv: &Path) {
    let minutes = samples
        .last()
        .map_or(0.0, |s| s.elapsed.as_secs_f64() / 60.0);
    println!(
        "\nsoak summary: {minutes:.1} min, {} samples, {ok} readers checked, curve {}",
        samples.len(),
        csv.display()
    );
    let range = |f: fn(&Sample) -> u64| {
        let min = samples.iter().map(f).min().unwrap_or(0);
        let max = samples.iter().map(f).max().unwrap_or(0);
        (min, max)
    };
    println!(
        "| resource | min | max | first quarter after warm-up (ceiling) | last quarter (floor) | growth |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let ranges = [range(|s| s.rss_kib), range(|s| s.fds), range(|s| s.tasks)];
    for ((name, first, last), (min, max)) in verdict.growth.iter().zip(ranges) {
        println!(
            "| {name} | {min} | {max} | {first} | {last} | {:+.1} % |",
            growth(*first, *last) * 100.0
        );
    }
}

/// Encodes the 10 s clip the publishers loop.
fn make_clip(out: &Path) -> Result<()> {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", "10", "-pix_fmt", "yuv420p", "-c:v", "libx264"])
        .args([
            "-preset",
            "veryfast",
            "-bf",
            "0",
            "-g",
            "25",
            "-keyint_min",
            "25",
        ])
        .args([
            "-sc_threshold",
            "0",
            "-c:a",
            "aac",
            "-b:a",
            "64k",
            "-f",
            "mp4",
        ])
        .arg(out)
        .status()
        .context("could not run ffmpeg (install ffmpeg 5.1)")?;
    if !status.success() {
        bail!("ffmpeg could not encode the soak clip ({status})");
    }
    Ok(())
}

/// The server's listening addresses, from its log.
#[derive(Debug, Clone)]
struct Addrs {
    http: SocketAddr,
    rtmp: SocketAddr,
    srt: SocketAddr,
    rtsp: SocketAddr,
}

/// The running server, its output going to a log file.
struct Server {
    child: Child,
    pid: u32,
    addrs: Addrs,
}

impl Server {
    fn start(bin: &Path, log: &Path) -> Result<Self> {
        if !bin.is_file() {
            bail!("no server binary at {}", bin.display());
        }
        let config = log.with_extension("toml");
        std::fs::write(&config, "[http]\nlisten = \"127.0.0.1:0\"\n")?;
        let mut cmd = Command::new(bin);
        cmd.arg("--config")
            .arg(&config)
            .env("TIDEWATER_RTMP__LISTEN", "127.0.0.1:0")
            .env("TIDEWATER_SRT__LISTEN", "127.0.0.1:0")
            .env("TIDEWATER_RTSP__LISTEN", "127.0.0.1:0")
            .env("TIDEWATER_RTSP__UDP_RTP_PORT", "0")
            .env("TIDEWATER_RTSP__UDP_RTCP_PORT", "0")
            .env("TIDEWATER_WEBRTC__UDP_LISTEN", "127.0.0.1:0")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("could not start {}", bin.display()))?;
        let pid = child.id();
        let file = Arc::new(Mutex::new(
            File::create(log).with_context(|| format!("creating {}", log.display()))?,
        ));
        let (tx, lines) = mpsc::channel::<String>();
        let pipes: [Option<Box<dyn Read + Send>>; 2] = [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ];
        for pipe in pipes.into_iter().flatten() {
            let (tx, file) = (tx.clone(), Arc::clone(&file));
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(mut f) = file.lock() {
                        let _ = writeln!(f, "{line}");
                    }
                    // Only the start's lines are looked at; later ones go to the file.
                    let _ = tx.send(line);
                }
            });
        }
        let addrs = match listening(&lines) {
            Ok(addrs) => addrs,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e.context(format!("server log: {}", log.display())));
            }
        };
        eprintln!(
            "soak: tidewater {pid}: http {} rtmp {} srt {} rtsp {}",
            addrs.http, addrs.rtmp, addrs.srt, addrs.rtsp
        );
        Ok(Self { child, pid, addrs })
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn wait_live(&self, key: &str) -> Result<()> {
        let url = format!("http://{}/api/v1/streams/{key}", self.addrs.http);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(body) = curl(&url)
                && body.contains("\"catalog\"")
                && !body.contains("\"catalog\":null")
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("{key} not live within {START_TIMEOUT:?}");
            }
            thread::sleep(Duration::from_millis(250));
        }
    }

    fn sample(&self, elapsed: Duration, readers: &Readers) -> Result<Sample> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .context("reading the server's /proc status")?;
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("no VmRSS in /proc/PID/status")?;
        let fds = std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .context("reading /proc/PID/fd")?
            .count() as u64;
        let metrics = curl(&format!("http://{}/metrics", self.addrs.http))?;
        let tasks = metrics
            .lines()
            .find_map(|l| l.strip_prefix("tidewater_runtime_alive_tasks "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .context("no tidewater_runtime_alive_tasks on /metrics")? as u64;
        Ok(Sample {
            elapsed,
            rss_kib,
            fds,
            tasks,
            readers_ok: readers.ok.load(Ordering::Relaxed),
            readers_failed: readers.failed.load(Ordering::Relaxed),
        })
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the start's log lines until every listener reported its address.
fn listening(lines: &mpsc::Receiver<String>) -> Result<Addrs> {
    let deadline = Instant::now() + START_TIMEOUT;
    let (mut http, mut rtmp, mut srt, mut rtsp) = (None, None, None, None);
    let addr_after = |line: &str, prefix: &str| -> Option<SocketAddr> {
        line.split(prefix)
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    loop {
        if let (Some(http), Some(rtmp), Some(srt), Some(rtsp)) = (http, rtmp, srt, rtsp) {
            return Ok(Addrs {
                http,
                rtmp,
                srt,
                rtsp,
            });
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .map_err(|_| anyhow::anyhow!("the server did not report its listeners"))?;
        http = http.or_else(|| addr_after(&line, "http listening on "));
        rtmp = rtmp.or_else(|| addr_after(&line, "rtmp listening on "));
        srt = srt.or_else(|| addr_after(&line, "srt listening on "));
        rtsp = rtsp.or_else(|| addr_after(&line, "rtsp listening on "));
    }
}

/// `curl` GET, loopback only; the body, or why not.
fn curl(url: &str) -> Result<String> {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--noproxy", "*"])
        .args(["--max-time", "10", url])
        .stdin(Stdio::null())
        .output()
        .context("could not run curl")?;
    if !out.status.success() {
        bail!(
            "curl {url}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The looping publishers, killed when dropped.
struct Publishers {
    children: Mutex<Vec<(&'static str, Child)>>,
}

impl Publishers {
    fn start(clip: &Path, addrs: &Addrs, logs: &Path) -> Result<Self> {
        let outputs: [(&'static str, Vec<String>); 3] = [
            (
                "rtmp",
                vec![
                    "-f".into(),
                    "flv".into(),
                    format!("rtmp://{}/live/rtmp", addrs.rtmp),
                ],
            ),
            (
                "srt",
                vec![
                    "-f".into(),
                    "mpegts".into(),
                    format!(
                        "srt://{}?streamid=publish:live/srt&latency=200000",
                        addrs.srt
                    ),
                ],
            ),
            (
                "rtsp",
                vec![
                    "-f".into(),
                    "rtsp".into(),
                    "-rtsp_transport".into(),
                    "tcp".into(),
                    format!("rtsp://{}/live/rtsp", addrs.rtsp),
                ],
            ),
        ];
        let mut children = Vec::new();
        for (name, output) in outputs {
            let log = logs.with_extension(format!("{name}-publisher.log"));
            let log = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
            let child = Command::new("ffmpeg")
                .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
                .args(["-stream_loop", "-1", "-i"])
                .arg(clip)
                .args(["-c", "copy"])
                .args(&output)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("could not run ffmpeg (install ffmpeg 5.1)")?;
            children.push((name, child));
        }
        Ok(Self {
            children: Mutex::new(children),
        })
    }

    fn check_alive(&self) -> Result<()> {
        let mut children = self
            .children
            .lock()
            .map_err(|_| anyhow::anyhow!("publishers lock"))?;
        for (name, child) in children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                bail!("the {name} publisher exited ({status}) during the soak");
            }
        }
        Ok(())
    }
}

impl Drop for Publishers {
    fn drop(&mut self) {
        if let Ok(mut children) = self.children.lock() {
            for (_, child) in children.iter_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// One churning reader thread per output.
struct Readers {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    failures: Arc<Mutex<VecDeque<String>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Readers {
    fn start(addrs: &Addrs) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(VecDeque::new()));
        let mut threads = Vec::new();
        for (i, output) in Output::ALL.into_iter().enumerate() {
            let addrs = addrs.clone();
            let (stop, ok, failed, failures) = (
                Arc::clone(&stop),
                Arc::clone(&ok),
                Arc::clone(&failed),
                Arc::clone(&failures),
            );
            threads.push(thread::spawn(move || {
                // Each output starts on a different source, then takes the next.
                let mut turn = i;
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let key = SOURCES[turn % SOURCES.len()];
                    turn += 1;
                    let url = output.url(&addrs, key);
                    match read_once(output, &url) {
                        Ok(()) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        // Stopping kills a reader in flight: not its failure.
                        Err(_) if stop.load(Ordering::Relaxed) => {}
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            let line = format!("{} reading {key}: {e:#}", output.name());
                            eprintln!("soak: {line}");
                            if let Ok(mut f) = failures.lock() {
                                f.push_back(line);
                                // Bounded: the first ones tell, the count says the rest.
                                f.truncate(20);
                            }
                        }
                    }
                    thread::sleep(READER_CYCLE.saturating_sub(started.elapsed()));
                }
            }));
        }
        Self {
            stop,
            ok,
            failed,
            failures,
            threads,
        }
    }

    /// Stops the threads (each after its current reader); the readers that
    /// passed, and the failures.
    fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let failed = self.failed.load(Ordering::Relaxed);
        let mut failures: Vec<String> = self
            .failures
            .lock()
            .map(|f| f.iter().cloned().collect())
            .unwrap_or_default();
        if failed as usize > failures.len() {
            failures.push(format!("… and {} more", failed as usize - failures.len()));
        }
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

/// The outputs readers churn on.
#[derive(Debug, Clone, Copy)]
enum Output {
    Rtmp,
    HttpFlv,
    Srt,
    HttpTs,
    Rtsp,
    Hls,
    LlHls,
    Dash,
}

impl Output {
    const ALL: [Output; 8] = [
        Output::Rtmp,
        Output::HttpFlv,
        Output::Srt,
        Output::HttpTs,
        Output::Rtsp,
        Output::Hls,
        Output::LlHls,
        Output::Dash,
    ];

    fn name(self) -> &'static str {
        match self {
            Output::Rtmp => "rtmp",
            Output::HttpFlv => "http-flv",
            Output::Srt => "srt",
            Output::HttpTs => "http-ts",
            Output::Rtsp => "rtsp",
            Output::Hls => "hls",
            Output::LlHls => "ll-hls",
            Output::Dash => "dash",
        }
    }

    fn url(self, a: &Addrs, key: &str) -> String {
        match self {
            Output::Rtmp => format!("rtmp://{}/{key}", a.rtmp),
            Output::HttpFlv => format!("http://{}/flv/{key}.flv", a.http),
            Output::Srt => format!("srt://{}?streamid=read:{key}&latency=200000", a.srt),
            Output::HttpTs => format!("http://{}/ts/{key}.ts", a.http),
            Output::Rtsp => format!("rtsp://{}/{key}", a.rtsp),
            Output::Hls => format!("http://{}/hls/{key}/index.m3u8", a.http),
            Output::LlHls => format!("http://{}/llhls/{key}/index.m3u8", a.http),
            Output::Dash => format!("http://{}/dash/{key}/manifest.mpd", a.http),
        }
    }
}

/// One reader: 4 s of packets copied to framecrc, checked.
fn read_once(output: Output, url: &str) -> Result<()> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin"]);
    if matches!(output, Output::Rtsp) {
        cmd.args(["-rtsp_transport", "tcp"]);
    }
    cmd.args(["-i", url])
        .args(["-t", &READ_SECONDS.to_string()])
        .args(["-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("could not run ffmpeg")?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + READER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for ffmpeg")? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let (text, errors) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    let Some(status) = status else {
        bail!("still reading after {READER_TIMEOUT:?} (killed); stderr: {errors}");
    };
    if !status.success() || !errors.trim().is_empty() {
        bail!("ffmpeg ended {status}; stderr: {}", errors.trim());
    }
    check_video(&text)
}

/// The framecrc of one video stream: enough frames, none missing.
fn check_video(text: &str) -> Result<()> {
    let mut timebase: Option<f64> = None;
    let mut dts: Vec<i64> = Vec::new();
    for line in text.lines() {
        if let Some(tb) = line.strip_prefix("#tb 0: ") {
            let (num, den) = tb.split_once('/').context("a #tb line without `/`")?;
            let (num, den): (f64, f64) = (num.trim().parse()?, den.trim().parse()?);
            timebase = Some(num / den * 1000.0);
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = line.split(',').map(str::trim);
        let (Some(stream), Some(d)) = (fields.next(), fields.next()) else {
            bail!("not a framecrc packet line: {line:?}");
        };
        if stream != "0" {
            bail!("a packet of stream {stream} where only video was mapped: {line:?}");
        }
        dts.push(
            d.parse()
                .with_context(|| format!("framecrc line {line:?}"))?,
        );
    }
    let ms = timebase.context("no #tb line for the video stream")?;
    if dts.len() < MIN_VIDEO_FRAMES {
        bail!(
            "{} video frames in {READ_SECONDS} s (at least {MIN_VIDEO_FRAMES} expected)",
            dts.len()
        );
    }
    for w in dts.windows(2) {
        let step = (w[1] - w[0]) as f64 * ms;
        if step <= 0.0 {
            bail!(
                "video decode time went back or stood still: {} -> {}",
                w[0],
                w[1]
            );
        }
        if step > 1.5 * FRAME_MS {
            bail!(
                "a gap of {step:.0} ms between two video frames ({} -> {}): frames lost",
                w[0],
                w[1]
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: u64, rss: u64) -> Sample {
        Sample {
            elapsed: Duration::from_secs(i * 10),
            rss_kib: rss,
            fds: 50,
            tasks: 30,
            readers_ok: i,
            readers_failed: 0,
        }
    }

    #[test]
    fn a_flat_curve_passes_and_a_leak_fails() {
        let flat: Vec<Sample> = (0..12)
            .map(|i| sample(i, 100_000 + i % 3 * 1_000))
            .collect();
        let warmup = Duration::from_secs(15);
        assert_eq!(judge(&flat, warmup).failure(), None);
        // The warm-up may grow as it likes.
        let mut warm = flat.clone();
        warm[0].rss_kib = 10_000;
        warm[1].rss_kib = 50_000;
        assert_eq!(judge(&warm, warmup).failure(), None);
        let leak: Vec<Sample> = (0..12).map(|i| sample(i, 100_000 + i * 2_000)).collect();
        let why = judge(&leak, warmup).failure().expect("a leak fails");
        assert!(why.contains("RSS"), "{why}");
    }

    #[test]
    fn too_few_samples_is_no_pass() {
        let few: Vec<Sample> = (0..3).map(|i| sample(i, 100_000)).collect();
        assert!(judge(&few, Duration::ZERO).failure().is_some());
    }

    #[test]
    fn a_missing_frame_fails_the_reader() {
        let head = "#tb 0: 1/1000\n#media_type 0: video\n";
        let whole: String = (0..100)
            .map(|i| format!("0, {}, {}, 40, 100, 0x0\n", i * 40, i * 40))
            .collect();
        assert!(check_video(&format!("{head}{whole}")).is_ok());
        let gap: String = (0..100)
            .filter(|i| *i != 50 && *i != 51)
            .map(|i| format!("0, {}, {}, 40, 100, 0x0\n", i * 40, i * 40))
            .collect();
        assert!(check_video(&format!("{head}{gap}")).is_err());
        assert!(check_video(&format!("{head}0, oops\n")).is_err());
        assert!(check_video(head).is_err());
    }
}
