//! WHEP viewers of one 2 Mbit/s H.264 stream: the `tidewater` server's CPU
//! per viewer, with socket I/O, against real WebRTC peers.
//!
//! For each viewer count N (including 0, the baseline: the publish with
//! its always-on HLS/DASH packagers and no viewer): start
//! `target/release/tidewater` pinned to CPU 0, publish a pre-encoded clip
//! (x264, 1280x720 at 30 fps, 2 Mbit/s, no B-frames, 2 s GOP; made once
//! with ffmpeg) over RTMP with an ffmpeg copy-publisher pinned to CPU 1,
//! and connect N str0m clients from this process (one thread, pinned to
//! CPU 1): each `POST`s a receive-only offer to `/whep/live/bench`, runs
//! ICE, DTLS and SRTP over its own loopback UDP socket and counts the RTP
//! it receives. After the ramp and a settling time a window is measured:
//! the server's CPU (utime + stime of its process, all threads), this
//! process's CPU (the load tool's), Mbit/s delivered, viewers keeping up
//! (at least 90 % of the median viewer's bytes in the window), and `POST`
//! → first RTP packet (p50/p99).
//!
//! ```text
//! cargo xtask bench whep [OPTIONS]
//! cargo bench -p tidewater-whip --bench whep -- [OPTIONS]
//!
//!   --sizes 0,100            viewer counts (0 is the baseline)
//!   --window 10              seconds measured
//!   --settle 4               seconds between the last viewer's POST and the window
//!   --tidewater-bin PATH     measure this binary instead of building tidewater-server
//! ```
//!
//! Per-viewer CPU is (server CPU at N − at 0) / N. Needs `taskset`
//! (util-linux) and ffmpeg with libx264.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

struct Options {
    sizes: Vec<usize>,
    window: u64,
    settle: u64,
    bin: Option<PathBuf>,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        sizes: vec![0, 100],
        window: 10,
        settle: 4,
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
            "--tidewater-bin" => o.bin = Some(PathBuf::from(value()?)),
            // cargo bench passes --bench; a separator may come through.
            "--bench" | "--" => {}
            other => return Err(format!("unknown option {other}")),
        }
    }
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

#[derive(Default)]
struct ViewerStats {
    bytes: AtomicU64,
    packets: AtomicU64,
    /// POST → first RTP packet, microseconds (0 until then).
    join_us: AtomicU64,
}

/// POSTs `offer` to the WHEP endpoint; the answer's SDP.
async fn post(http: SocketAddr, offer: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(http).await.map_err(|e| e.to_string())?;
    let request = format!(
        "POST /whep/live/bench HTTP/1.1\r\nHost: {http}\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{offer}",
        offer.len()
    );
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    s.read_to_end(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP answer")?;
    if !head.starts_with("HTTP/1.1 201") {
        return Err(format!(
            "{}: {body}",
            head.lines().next().unwrap_or_default()
        ));
    }
    Ok(body.to_owned())
}

/// One viewer: negotiates, then drives its `Rtc` until the process ends.
async fn viewer(http: SocketAddr, stats: Arc<ViewerStats>) -> Result<(), String> {
    let socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_h264(true)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").map_err(|e| e.to_string())?);
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, pending): (_, SdpPendingOffer) = api.apply().ok_or("no offer")?;
    let started = Instant::now();
    let answer = post(http, &offer.to_sdp_string()).await?;
    let answer = SdpAnswer::from_sdp_string(&answer).map_err(|e| e.to_string())?;
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 2048];
    loop {
        let deadline = loop {
            match rtc.poll_output().map_err(|e| e.to_string())? {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                }
                Output::Event(Event::RtpPacket(p)) => {
                    if stats.packets.fetch_add(1, Ordering::Relaxed) == 0 {
                        let us = started.elapsed().as_micros() as u64;
                        stats.join_us.store(us.max(1), Ordering::Relaxed);
                    }
                    stats
                        .bytes
                        .fetch_add(p.payload.len() as u64, Ordering::Relaxed);
                }
                Output::Event(_) => {}
            }
        };
        let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline));
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let (n, source) = r.map_err(|e| e.to_string())?;
                if let Ok(receive) = Receive::new(Protocol::Udp, source, local, &buf[..n]) {
                    rtc.handle_input(Input::Receive(Instant::now(), receive))
                        .map_err(|e| e.to_string())?;
                }
            }
            _ = sleep => {
                rtc.handle_input(Input::Timeout(Instant::now())).map_err(|e| e.to_string())?;
            }
        }
    }
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

/// One N: a fresh server and publisher; the line of figures.
fn measure(
    bin: &Path,
    clip: &Path,
    dir: &Path,
    n: usize,
    o: &Options,
) -> Result<(f64, String), String> {
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
    let _publisher = Guard(
        Command::new("taskset")
            .args([
                "-c",
                "1",
                "ffmpeg",
                "-hide_banner",
                "-loglevel",
                "error",
                "-nostdin",
            ])
            .args(["-re", "-stream_loop", "-1", "-i"])
            .arg(clip)
            .args(["-c", "copy", "-f", "flv"])
            .arg(format!("rtmp://127.0.0.1:{rtmp_port}/live/bench"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("ffmpeg: {e}"))?,
    );
    let http: SocketAddr = ([127, 0, 0, 1], http_port).into();
    wait_live(http)?;
    // Let the cached GOP fill before the first viewer.
    std::thread::sleep(Duration::from_secs(2));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let stats: Vec<Arc<ViewerStats>> = (0..n).map(|_| Arc::default()).collect();
    let pid = server.0.id();
    let load_cpu = || cpu_seconds(std::process::id());
    runtime.block_on(async {
        let failures = Arc::new(AtomicU64::new(0));
        for s in &stats {
            let (s, failures) = (Arc::clone(s), Arc::clone(&failures));
            tokio::spawn(async move {
                if let Err(e) = viewer(http, s).await
                    && failures.fetch_add(1, Ordering::Relaxed) < 3
                {
                    eprintln!("whep bench: a viewer failed: {e}");
                }
            });
            // About 50 joins a second.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_secs(o.settle)).await;
        let before: Vec<u64> = stats.iter().map(|s| s.bytes.load(Ordering::Relaxed)).collect();
        let (server0, load0, wall0) = (cpu_seconds(pid), load_cpu(), Instant::now());
        tokio::time::sleep(Duration::from_secs(o.window)).await;
        let (server1, load1, wall) = (cpu_seconds(pid), load_cpu(), wall0.elapsed().as_secs_f64());
        let delivered: Vec<f64> = stats
            .iter()
            .zip(&before)
            .map(|(s, b)| (s.bytes.load(Ordering::Relaxed) - b) as f64 * 8.0 / wall / 1e6)
            .collect();
        let mut sorted = delivered.clone();
        sorted.sort_by(f64::total_cmp);
        let median = percentile(&sorted, 0.5);
        let keeping_up = delivered.iter().filter(|d| **d >= 0.9 * median).count();
        let mut joins: Vec<f64> = stats
            .iter()
            .map(|s| s.join_us.load(Ordering::Relaxed))
            .filter(|j| *j > 0)
            .map(|j| j as f64 / 1000.0)
            .collect();
        joins.sort_by(f64::total_cmp);
        let server_cpu = (server1 - server0) / wall;
        let line = format!(
            "{n:>4} viewers: server {:.1} % of a core; load tool {:.1} %; delivered {:.1} Mbit/s \
             (median viewer {:.2}); keeping up {keeping_up}/{n}; joined {}/{n}, POST→first RTP p50 {:.0} ms p99 {:.0} ms; \
             failed {}",
            server_cpu * 100.0,
            (load1 - load0) / wall * 100.0,
            delivered.iter().sum::<f64>(),
            if n == 0 { 0.0 } else { median },
            joins.len(),
            percentile(&joins, 0.5),
            percentile(&joins, 0.99),
            failures.load(Ordering::Relaxed),
        );
        Ok((server_cpu, line))
    })
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
        let mut baseline = None;
        for &n in &o.sizes {
            let (cpu, line) = measure(&bin, &clip, &dir, n, &o)?;
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
