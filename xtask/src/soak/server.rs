//! The soak's server process and its publishers.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::Sample;
use super::readers::Readers;

/// How long the server and the first publishes may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Encodes the 10 s clip the publishers loop.
pub(super) fn make_clip(out: &Path) -> Result<()> {
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
pub(super) struct Addrs {
    pub(super) http: SocketAddr,
    pub(super) rtmp: SocketAddr,
    pub(super) srt: SocketAddr,
    pub(super) rtsp: SocketAddr,
}

/// The running server, its output going to a log file.
pub(super) struct Server {
    child: Child,
    pid: u32,
    pub(super) addrs: Addrs,
}

impl Server {
    pub(super) fn start(bin: &Path, log: &Path) -> Result<Self> {
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

    pub(super) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub(super) fn wait_live(&self, key: &str) -> Result<()> {
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

    pub(super) fn sample(&self, elapsed: Duration, readers: &Readers) -> Result<Sample> {
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
            readers_ok: readers.ok(),
            readers_failed: readers.failed(),
        })
    }

    pub(super) fn stop(self) {
        drop(self);
    }
}

// Killed on every way out, an early error (a stream that never went live) too.
impl Drop for Server {
    fn drop(&mut self) {
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
pub(super) struct Publishers {
    children: Mutex<Vec<(&'static str, Child)>>,
}

impl Publishers {
    pub(super) fn start(clip: &Path, addrs: &Addrs, logs: &Path) -> Result<Self> {
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

    pub(super) fn check_alive(&self) -> Result<()> {
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
