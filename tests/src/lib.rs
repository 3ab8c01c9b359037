//! End-to-end test support: run the real `tidewater` binary as a child
//! process, with a configuration written to a temporary directory, and talk
//! to it with real clients (`curl` today; ffmpeg, GStreamer and browsers as
//! the protocols land).
//!
//! The binary is `$TIDEWATER_BIN` when set, else
//! `<workspace>/target/debug/tidewater` (`cargo xtask test` builds it first;
//! by hand: `cargo build -p tidewater-server`). A missing binary or a
//! missing client fails the test with a message saying how to get it: these
//! tests never skip.
//!
//! Every server these helpers start listens on 127.0.0.1 only, and is killed
//! when its [`ServerProcess`] drops.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub mod abuse;
pub mod auth;
pub mod browser;
pub mod child_lines;
pub mod decoded;
pub mod gst_whip;
pub mod metrics;
pub mod netns;
pub mod page;
pub mod page_scripts;
pub mod python;
pub mod rtmp_viewers;
pub mod srt;
pub mod str0m_peer;
pub mod timed_reader;
pub mod tools;

/// How long a server may take to report that it is listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The text of the log line that reports the HTTP address.
pub const HTTP_LISTENING: &str = "http listening on ";
/// The log line prefix that gives the RTMP listener's address.
pub const RTMP_LISTENING: &str = "rtmp listening on ";
/// The log line prefix that gives the RTMPS listener's address.
pub const RTMPS_LISTENING: &str = "rtmps listening on ";
/// The log line prefix that gives the SRT listener's (UDP) address.
pub const SRT_LISTENING: &str = "srt listening on ";
/// The log line of the bound RTSP (TCP) listener.
pub const RTSP_LISTENING: &str = "rtsp listening on ";

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The `tidewater` binary under test; panics with instructions when it is missing.
pub fn server_binary() -> PathBuf {
    let path = match std::env::var_os("TIDEWATER_BIN") {
        Some(path) => PathBuf::from(path),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .filter(|dir| dir.is_absolute())
                .unwrap_or_else(|| workspace_root().join("target"));
            target
                .join("debug")
                .join(format!("tidewater{}", std::env::consts::EXE_SUFFIX))
        }
    };
    assert!(
        path.is_file(),
        "the tidewater binary is not at {}: build it with `cargo build -p tidewater-server` \
         (`cargo xtask test` does) or set TIDEWATER_BIN to its path",
        path.display()
    );
    path
}

/// A directory under the system's temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a fresh directory whose name starts with `label`.
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "tidewater-{label}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir { path }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in it.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes a file in it; returns the file's path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// How to start the server: its configuration file, environment and arguments.
#[derive(Debug, Default, Clone)]
pub struct ServerCommand {
    config: Option<String>,
    env: Vec<(String, String)>,
    args: Vec<String>,
}

impl ServerCommand {
    /// No file, no overrides: the built-in defaults. Remember those listen on
    /// every interface: give a loopback `http.listen` before spawning. (RTMP
    /// is always moved to a free loopback port unless the test sets
    /// `TIDEWATER_RTMP__LISTEN` itself.)
    pub fn new() -> Self {
        Self::default()
    }

    /// A command whose configuration file is `toml`.
    pub fn with_config(toml: &str) -> Self {
        Self::new().config(toml)
    }

    /// Writes `toml` as the configuration file and passes `--config FILE`.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_string());
        self
    }

    /// Sets an environment variable for the server.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Adds a command-line argument.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// Starts the server without waiting for it to listen.
    pub fn spawn(self) -> ServerProcess {
        let binary = server_binary();
        let dir = TempDir::new("server");
        let mut command = Command::new(&binary);
        command
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The server reads every TIDEWATER_ variable (and RUST_LOG): give it
        // only the ones this test chose, not the test runner's.
        for (name, _) in std::env::vars_os() {
            if name
                .to_str()
                .is_none_or(|n| n.starts_with("TIDEWATER") || n == "RUST_LOG")
            {
                command.env_remove(&name);
            }
        }
        if let Some(toml) = &self.config {
            let path = dir.write("tidewater.toml", toml);
            command.arg("--config").arg(path);
        }
        command.args(&self.args);
        // Tests never listen beyond loopback, and parallel servers must not
        // fight over the default RTMP port: a test that cares sets its own.
        if !self.env.iter().any(|(k, _)| k == "TIDEWATER_RTMP__LISTEN") {
            command.env("TIDEWATER_RTMP__LISTEN", "127.0.0.1:0");
        }
        // The same for SRT's UDP port.
        if !self.env.iter().any(|(k, _)| k == "TIDEWATER_SRT__LISTEN") {
            command.env("TIDEWATER_SRT__LISTEN", "127.0.0.1:0");
        }
        // And RTSP's TCP port and its RTP/RTCP UDP pair.
        if !self.env.iter().any(|(k, _)| k == "TIDEWATER_RTSP__LISTEN") {
            command.env("TIDEWATER_RTSP__LISTEN", "127.0.0.1:0");
            command.env("TIDEWATER_RTSP__UDP_RTP_PORT", "0");
            command.env("TIDEWATER_RTSP__UDP_RTCP_PORT", "0");
        }
        // And WebRTC's UDP port.
        if !self
            .env
            .iter()
            .any(|(k, _)| k == "TIDEWATER_WEBRTC__UDP_LISTEN")
        {
            command.env("TIDEWATER_WEBRTC__UDP_LISTEN", "127.0.0.1:0");
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
        let (tx, lines) = mpsc::channel();
        for stream in [
            child.stdout.take().map(box_read),
            child.stderr.take().map(box_read),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        ServerProcess {
            child,
            lines,
            seen: Vec::new(),
            _dir: dir,
        }
    }

    /// Starts the server and waits until it reports its HTTP address.
    pub fn start(self) -> (ServerProcess, SocketAddr) {
        let mut server = self.spawn();
        let addr = server.http_addr();
        (server, addr)
    }
}

fn box_read(r: impl Read + Send + 'static) -> Box<dyn Read + Send> {
    Box::new(r)
}

/// A running `tidewater` process; killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    _dir: TempDir,
}

impl ServerProcess {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line it has printed so far (standard output and error).
    pub fn output(&mut self) -> String {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }

    /// Waits until it prints a line containing `text`; returns that line, or
    /// `None` if the timeout passes or the process closes its output first.
    /// Lines printed earlier count too.
    pub fn wait_for_line(&mut self, text: &str, timeout: Duration) -> Option<String> {
        if let Some(line) = self.seen.iter().find(|l| l.contains(text)) {
            return Some(line.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(text);
                    self.seen.push(line);
                    if found {
                        return self.seen.last().cloned();
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Waits for the `http listening on ADDR` line and returns ADDR; panics
    /// with the server's output if it does not come.
    pub fn http_addr(&mut self) -> SocketAddr {
        self.listening_addr(HTTP_LISTENING)
    }

    /// Waits for the `rtmp listening on ADDR` line and returns ADDR.
    pub fn rtmp_addr(&mut self) -> SocketAddr {
        self.listening_addr(RTMP_LISTENING)
    }

    /// Waits for the `rtmps listening on ADDR` line and returns ADDR.
    pub fn rtmps_addr(&mut self) -> SocketAddr {
        self.listening_addr(RTMPS_LISTENING)
    }

    /// Waits for the `srt listening on ADDR` line and returns ADDR (UDP).
    pub fn srt_addr(&mut self) -> SocketAddr {
        self.listening_addr(SRT_LISTENING)
    }

    /// Waits for the `rtsp listening on ADDR` line and returns ADDR (TCP).
    pub fn rtsp_addr(&mut self) -> SocketAddr {
        self.listening_addr(RTSP_LISTENING)
    }

    fn listening_addr(&mut self, prefix: &str) -> SocketAddr {
        let Some(line) = self.wait_for_line(prefix, START_TIMEOUT) else {
            let status = self.wait_exit(Duration::from_millis(200));
            panic!(
                "the server did not log {prefix:?} within {START_TIMEOUT:?} (exit status {status:?}); output:\n{}",
                self.output()
            );
        };
        let addr = line
            .split(prefix)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next());
        addr.and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in the log line {line:?}"))
    }

    /// Sends a signal (`TERM`, `INT`, …) with `kill`.
    pub fn signal(&self, name: &str) {
        send_signal(self.pid(), name);
    }

    /// Waits for the process to exit; `None` if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => return None,
                Err(e) => panic!("cannot wait for the server: {e}"),
            }
        }
    }

    /// Waits for the process to exit and for its output to close; panics
    /// with the output if it takes longer than `timeout`.
    pub fn expect_exit(&mut self, timeout: Duration) -> (ExitStatus, String) {
        let Some(status) = self.wait_exit(timeout) else {
            panic!(
                "the server still runs after {timeout:?}; output:\n{}",
                self.output()
            );
        };
        // Collect what it printed up to its exit.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        (status, self.seen.join("\n"))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The `curl` client; panics with instructions when it is missing.
pub fn curl_command() -> Command {
    static FOUND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let found = *FOUND.get_or_init(|| {
        let status = Command::new("curl")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        status.is_ok_and(|s| s.success())
    });
    assert!(
        found,
        "curl is not installed: install it (Debian/Ubuntu: apt-get install curl)"
    );
    let mut command = Command::new("curl");
    // Loopback only: never through a proxy the environment may name.
    command.args([
        "--silent",
        "--show-error",
        "--noproxy",
        "*",
        "--max-time",
        "10",
    ]);
    command
}

/// An HTTP response as curl received it.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The `Content-Type` header, empty if none.
    pub content_type: String,
    /// The body.
    pub body: String,
}

impl HttpResponse {
    /// The body parsed as JSON; panics naming the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// Fetches `url` with curl (GET); panics if curl cannot connect.
pub fn http_get(url: &str) -> HttpResponse {
    try_http_get(url).unwrap_or_else(|e| panic!("{e}"))
}

/// Fetches `url` with curl (GET); `Err` with curl's complaint if it fails
/// (cannot connect, timeout).
pub fn try_http_get(url: &str) -> Result<HttpResponse, String> {
    const MARK: &str = "\n--tidewater-test--\n";
    let output = curl_command()
        .args([
            "--write-out",
            &format!("{MARK}%{{http_code}}\n%{{content_type}}"),
            url,
        ])
        .output()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "curl {url} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let text =
        String::from_utf8(output.stdout).map_err(|e| format!("curl {url}: not UTF-8: {e}"))?;
    let (body, trailer) = text
        .rsplit_once(MARK)
        .ok_or_else(|| format!("curl {url}: no status in {text:?}"))?;
    let (status, content_type) = trailer.split_once('\n').unwrap_or((trailer, ""));
    let status = status
        .trim()
        .parse()
        .map_err(|e| format!("curl {url}: status {status:?}: {e}"))?;
    Ok(HttpResponse {
        status,
        content_type: content_type.trim().to_string(),
        body: body.to_string(),
    })
}

/// A minimal configuration that listens on a free loopback port.
pub fn loopback_config() -> String {
    "[http]\nlisten = \"127.0.0.1:0\"\n".to_string()
}

/// A child process (ffmpeg, ffprobe, …) killed when dropped.
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends the signal `name` (`TERM`, `INT`, …) to process `pid` with `kill`.
fn send_signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
    assert!(status.success(), "kill -{name} {pid} failed: {status}");
}

impl ChildGuard {
    /// Sends a signal (`TERM`, `INT`, …) with `kill`: `INT` stops ffmpeg
    /// cleanly, as Ctrl-C does.
    pub fn signal(&self, name: &str) {
        send_signal(self.0.id(), name);
    }

    /// Waits up to `timeout` for the process to end by itself: its exit
    /// status, or `None` if it still runs.
    pub fn wait_for(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The generated picture as ffmpeg input: testsrc2 320x240 at 25 fps.
pub const CLIP_VIDEO: [&str; 4] = ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"];

/// The generated sound as ffmpeg input: a 440 Hz sine at `sample_rate`.
pub fn clip_audio(sample_rate: u32) -> [String; 4] {
    [
        "-f".into(),
        "lavfi".into(),
        "-i".into(),
        format!("sine=frequency=440:sample_rate={sample_rate}"),
    ]
}

/// x264 tuned for live: the fastest preset, no frame delay.
pub const X264_LIVE: [&str; 6] = [
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-tune",
    "zerolatency",
];

/// A keyframe every `gop` frames exactly (no scene-cut keyframes).
pub fn fixed_gop(gop: u32) -> [String; 6] {
    [
        "-g".into(),
        gop.to_string(),
        "-keyint_min".into(),
        gop.to_string(),
        "-sc_threshold".into(),
        "0".into(),
    ]
}

/// ffmpeg, quiet, without standard input, reading its inputs in real time.
pub fn ffmpeg_realtime() -> Command {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .stdin(Stdio::null());
    cmd
}

/// Spawns `cmd` (an ffmpeg), its standard output discarded; panics with
/// instructions when ffmpeg is missing.
pub(crate) fn spawn_ffmpeg(cmd: &mut Command) -> ChildGuard {
    let child = cmd
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run ffmpeg (install the ffmpeg package): {e}"));
    ChildGuard(child)
}

/// Starts ffmpeg publishing a generated clip (testsrc2 320x240 at 25 fps with
/// a keyframe every `gop` frames, and a 440 Hz sine; H.264 + AAC) in real
/// time to `url` as FLV, for `seconds`.
pub fn ffmpeg_publish(url: &str, seconds: u32, gop: u32) -> ChildGuard {
    spawn_ffmpeg(
        ffmpeg_realtime()
            .args(CLIP_VIDEO)
            .args(clip_audio(44_100))
            .args(X264_LIVE)
            .args(fixed_gop(gop))
            .args(["-c:a", "aac", "-b:a", "64k"])
            .args(["-t", &seconds.to_string(), "-f", "flv", url])
            .stderr(Stdio::piped()),
    )
}

/// ffmpeg publishing the generated clip (testsrc2 320x240 at 25 fps, a
/// 440 Hz sine at 44.1 kHz) in real time to `url` as FLV, for `seconds`, as
/// H.264 *with B-frames* (x264's `veryfast` preset, a keyframe every `gop`
/// frames) and AAC; not started (for callers that drive the process
/// themselves, e.g. under tokio, and read its exit status and errors).
pub fn ffmpeg_publish_bframes_command(url: &str, seconds: u32, gop: u32) -> Command {
    let mut cmd = ffmpeg_realtime();
    cmd.args(CLIP_VIDEO)
        .args(clip_audio(44_100))
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        ])
        .args(["-g", &gop.to_string(), "-c:a", "aac"])
        .args(["-t", &seconds.to_string(), "-f", "flv", url]);
    cmd
}

/// ffmpeg reading `url` and writing its streams, copied (`-c copy`), as
/// MPEG-TS to `out` (a file, overwritten, or `-` for its standard output);
/// `args` go between the input and the output (e.g. `-t 2`). Quiet, without
/// standard input; not started.
pub fn ffmpeg_copy_ts_command(url: &str, args: &[&str], out: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(["-i", url])
        .args(args)
        .args(["-c", "copy", "-f", "mpegts"])
        .arg(out)
        .stdin(Stdio::null());
    cmd
}

/// Starts ffmpeg publishing one track of the generated clip in real time to
/// `url` as FLV, for `seconds`: the picture (H.264, 2 s GOP) when `video`,
/// else the sound (AAC).
pub fn ffmpeg_publish_one_track(url: &str, video: bool, seconds: u32) -> ChildGuard {
    let mut cmd = ffmpeg_realtime();
    if video {
        cmd.args(CLIP_VIDEO).args(X264_LIVE).args(fixed_gop(50));
    } else {
        cmd.args(clip_audio(44_100))
            .args(["-c:a", "aac", "-b:a", "64k"]);
    }
    spawn_ffmpeg(
        cmd.args(["-t", &seconds.to_string(), "-f", "flv", url])
            .stderr(Stdio::null()),
    )
}

/// The codecs of a live stream's catalog (as [`wait_live`] returns it), in track order.
pub fn catalog_codecs(live: &serde_json::Value) -> Vec<serde_json::Value> {
    live["catalog"]["tracks"]
        .as_array()
        .expect("tracks")
        .iter()
        .map(|t| t["codec"].clone())
        .collect()
}

/// The bytes a hex string spells (a test vector); panics on anything else.
pub fn hex_bytes(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd-length hex: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
                .unwrap_or_else(|| panic!("not hex at {i}: {s}"))
        })
        .collect()
}

/// Polls the API until `app/stream` is live with a catalog; panics after `timeout`.
pub fn wait_live(http: SocketAddr, key: &str, timeout: Duration) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(r) = try_http_get(&format!("http://{http}/api/v1/streams/{key}"))
            && r.status == 200
        {
            let v = r.json();
            if !v["catalog"].is_null() {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{key} not live within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One packet or frame line of ffmpeg's `framecrc` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrcLine {
    /// Stream index.
    pub stream: u32,
    /// Decode timestamp in the stream's time base.
    pub dts: i64,
    /// Presentation timestamp.
    pub pts: i64,
    /// Size in bytes.
    pub size: u64,
    /// Checksum of the data.
    pub crc: String,
}

/// What ffmpeg's `framecrc` muxer printed: each stream's codec, and the lines.
#[derive(Debug, Default)]
pub struct FrameCrc {
    /// `#codec_id N: NAME` per stream.
    pub codecs: Vec<String>,
    /// Every packet or frame.
    pub lines: Vec<CrcLine>,
}

impl FrameCrc {
    /// Parses framecrc text; panics on a line it cannot read.
    pub fn parse(text: &str) -> FrameCrc {
        let mut out = FrameCrc::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("#codec_id ") {
                let (_, name) = rest
                    .split_once(": ")
                    .unwrap_or_else(|| panic!("framecrc: a codec line without a name: {line:?}"));
                out.codecs.push(name.trim().to_string());
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            // Every other line is a packet: a line that is not one is a
            // failure of the reader (or of this parser), never skipped.
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            assert!(f.len() >= 6, "framecrc: not a packet line: {line:?}");
            let num = |s: &str| {
                s.parse::<i64>()
                    .unwrap_or_else(|e| panic!("framecrc {line:?}: {e}"))
            };
            out.lines.push(CrcLine {
                stream: u32::try_from(num(f[0]))
                    .unwrap_or_else(|e| panic!("framecrc {line:?}: {e}")),
                dts: num(f[1]),
                pts: num(f[2]),
                size: u64::try_from(num(f[4])).unwrap_or_else(|e| panic!("framecrc {line:?}: {e}")),
                crc: f[5].to_string(),
            });
        }
        out
    }

    /// The lines of one stream.
    pub fn stream(&self, index: u32) -> Vec<&CrcLine> {
        self.lines.iter().filter(|l| l.stream == index).collect()
    }

    /// Whether each stream's decode timestamps strictly increase.
    pub fn monotonic(&self) -> bool {
        (0..self.codecs.len() as u32)
            .all(|i| self.stream(i).windows(2).all(|w| w[1].dts > w[0].dts))
    }
}

/// ffmpeg reading `url` (with the input options `input`, e.g. `-rw_timeout`)
/// into framecrc on its standard output, with `output` before the output
/// (e.g. `-c copy` for packets instead of decoded frames). Quiet, without
/// standard input; not started.
pub fn ffmpeg_framecrc_command(input: &[&str], url: &str, output: &[&str]) -> Command {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(input)
        .args(["-i", url])
        .args(output)
        .args(["-f", "framecrc", "-"])
        .stdin(Stdio::null());
    cmd
}

/// How a child (ffmpeg, ffprobe, …) that a helper ran ended, with what it
/// printed on its standard error.
#[derive(Debug)]
pub struct ToolRun {
    /// Its standard output.
    pub stdout: String,
    /// Its standard error (`-loglevel error`: empty when nothing went wrong).
    pub stderr: String,
    /// Its exit status; `None` when it still ran at the deadline and the
    /// helper killed it.
    pub status: Option<ExitStatus>,
}

impl ToolRun {
    /// Whether it exited by itself with status 0 and printed nothing on its
    /// standard error.
    pub fn clean(&self) -> bool {
        self.status.is_some_and(|s| s.success()) && self.stderr.trim().is_empty()
    }

    /// Whether the helper killed it at the deadline (it did not end by itself).
    pub fn killed_at_deadline(&self) -> bool {
        self.status.is_none()
    }

    /// Panics, naming it `what`, unless it ended [`clean`](Self::clean)ly.
    pub fn expect_clean(&self, what: &str) {
        match self.status {
            None => panic!(
                "{what} still ran at its deadline (killed); stderr: {}",
                self.stderr
            ),
            Some(status) => assert!(
                self.clean(),
                "{what} did not end cleanly ({status}); stderr: {}",
                self.stderr
            ),
        }
    }

    /// Panics, naming it `what`, if it failed: a non-zero exit or anything on
    /// its standard error. Being killed at the deadline is allowed (for
    /// callers that read a live source until then, and say so).
    pub fn expect_clean_or_killed_at_deadline(&self, what: &str) {
        if self.killed_at_deadline() {
            assert!(
                self.stderr.trim().is_empty(),
                "{what} complained before its deadline: {}",
                self.stderr
            );
        } else {
            self.expect_clean(what);
        }
    }
}

/// ffmpeg 5.1 reading `srt://` has no end of stream but the connection's
/// close, which libsrt reports to it as an error: it then prints
/// `URL: Input/output error` (repeated) and exits with status 0. That block,
/// and only at the end of its standard error, is the stream's end, not a
/// failure: this returns `run` without it (and anything else left as it was).
fn without_srt_end(mut run: ToolRun, url: &str) -> ToolRun {
    if !url.starts_with("srt://") {
        return run;
    }
    let end = format!("{url}: Input/output error");
    let mut lines: Vec<&str> = run.stderr.lines().collect();
    while let Some(last) = lines.last() {
        let repeated = last.trim_start().starts_with("Last message repeated ");
        if *last == end || repeated {
            lines.pop();
        } else {
            break;
        }
    }
    run.stderr = lines.join("\n");
    run
}

/// Runs `cmd` with its standard output and error piped, killing it after
/// `timeout`; returns both outputs and its exit status (`None`: killed at
/// the deadline). Never panics on what the child does; only if it cannot start.
pub fn run_until(mut cmd: Command, timeout: Duration) -> ToolRun {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = ChildGuard(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program} (install ffmpeg 5.1): {e}")),
    );
    let read_all = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = read_all(child.0.stdout.take().map(box_read));
    let stderr = read_all(child.0.stderr.take().map(box_read));
    let status = child.wait_for(timeout);
    drop(child);
    ToolRun {
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        status,
    }
}

/// Runs ffmpeg reading `url` into framecrc on standard output, with `args`
/// before the output (e.g. `-c copy` for packets instead of decoded
/// frames), for at most `timeout`; reports how it ended without judging it
/// (for callers that expect a refusal).
pub fn ffmpeg_framecrc_run(url: &str, args: &[&str], timeout: Duration) -> ToolRun {
    run_until(ffmpeg_framecrc_command(&[], url, args), timeout)
}

/// [`ffmpeg_framecrc_run`] that must end by itself within `timeout`, with
/// status 0 and nothing on its standard error (it ends at its `-t`, or when
/// the server ends the stream; over SRT that end is the one complaint
/// allowed: libsrt reports the close as an error); the parsed output. Panics otherwise.
pub fn ffmpeg_framecrc(url: &str, args: &[&str], timeout: Duration) -> FrameCrc {
    FrameCrc::parse(&ffmpeg_framecrc_text(url, args, timeout))
}

/// [`ffmpeg_framecrc`] with the input options `input` (e.g.
/// `-rtsp_transport tcp`): it must end by itself, cleanly, within `timeout`.
pub fn ffmpeg_framecrc_input(
    input: &[&str],
    url: &str,
    output: &[&str],
    timeout: Duration,
) -> FrameCrc {
    let run = run_until(ffmpeg_framecrc_command(input, url, output), timeout);
    let run = without_srt_end(run, url);
    run.expect_clean(&format!("ffmpeg reading {url} {input:?} {output:?}"));
    FrameCrc::parse(&run.stdout)
}

/// [`ffmpeg_framecrc`], the framecrc text as ffmpeg printed it.
pub fn ffmpeg_framecrc_text(url: &str, args: &[&str], timeout: Duration) -> String {
    let run = without_srt_end(ffmpeg_framecrc_run(url, args, timeout), url);
    run.expect_clean(&format!("ffmpeg reading {url} {args:?}"));
    run.stdout
}

/// [`ffmpeg_framecrc`] on a thread of its own, for readers in parallel.
pub fn spawn_framecrc(
    url: String,
    args: &'static [&'static str],
    timeout: Duration,
) -> std::thread::JoinHandle<FrameCrc> {
    std::thread::spawn(move || ffmpeg_framecrc(&url, args, timeout))
}

/// What ffprobe saw of a live URL in a few seconds of reading: its streams
/// (`codec_type:codec_name`, in index order) and each stream's packet decode
/// timestamps (seconds).
#[derive(Debug, Default)]
pub struct ProbedPackets {
    /// `video:h264`, `audio:aac`, …
    pub streams: Vec<String>,
    /// Decode timestamps per stream index.
    pub dts: Vec<Vec<f64>>,
}

impl ProbedPackets {
    /// The packets of the first stream of `kind` (`video`, `audio`).
    pub fn packets(&self, kind: &str) -> &[f64] {
        self.streams
            .iter()
            .position(|s| s.starts_with(&format!("{kind}:")))
            .and_then(|i| self.dts.get(i))
            .map_or(&[], Vec::as_slice)
    }

    /// Whether every stream's decode timestamps strictly increase.
    pub fn monotonic(&self) -> bool {
        self.dts.iter().all(|d| d.windows(2).all(|w| w[1] > w[0]))
    }
}

/// Runs ffprobe on `url` for `seconds` of packets (`-read_intervals`),
/// killing it after `timeout`; panics if it fails or does not finish.
pub fn ffprobe_packets(url: &str, seconds: u32, timeout: Duration) -> ProbedPackets {
    let mut child = ChildGuard(
        Command::new("ffprobe")
            .args(["-v", "error", "-rw_timeout", "10000000"])
            .args(["-read_intervals", &format!("%+{seconds}")])
            .args([
                "-show_entries",
                "stream=index,codec_type,codec_name:packet=stream_index,dts_time",
            ])
            .args(["-of", "compact=p=0", url])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run ffprobe (install the ffmpeg package): {e}")),
    );
    let mut stdout = child.0.stdout.take().expect("piped stdout");
    let mut stderr = child.0.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = child.wait_for(timeout);
    drop(child);
    let text = reader.join().unwrap_or_default();
    let errors = errors.join().unwrap_or_default();
    let status = status.unwrap_or_else(|| panic!("ffprobe {url} still runs after {timeout:?}"));
    assert!(
        status.success(),
        "ffprobe {url} failed ({status}): {errors}"
    );
    // Packets come first, the streams at the end: index both.
    let mut streams = Vec::new();
    let mut dts: Vec<Vec<f64>> = Vec::new();
    for line in text.lines() {
        let kv: std::collections::HashMap<&str, &str> =
            line.split('|').filter_map(|f| f.split_once('=')).collect();
        if let (Some(index), Some(kind)) = (kv.get("index"), kv.get("codec_type")) {
            let codec = kv.get("codec_name").copied().unwrap_or("?");
            if let Ok(i) = index.parse::<usize>() {
                streams.push((i, format!("{kind}:{codec}")));
            }
        } else if let (Some(index), Some(t)) = (kv.get("stream_index"), kv.get("dts_time"))
            && let (Ok(i), Ok(t)) = (index.parse::<usize>(), t.parse::<f64>())
            && i < 16
        {
            if dts.len() <= i {
                dts.resize(i + 1, Vec::new());
            }
            dts[i].push(t);
        }
    }
    streams.sort();
    if dts.len() < streams.len() {
        dts.resize(streams.len(), Vec::new());
    }
    ProbedPackets {
        streams: streams.into_iter().map(|(_, s)| s).collect(),
        dts,
    }
}

/// ffprobe decoding every frame of `url` until it ends: the streams (codec,
/// type, picture size, sample rate, channels) and each frame's type, time
/// and keyframe flag, as [`ProbedFrames::parse`] reads them. Not started.
pub fn ffprobe_frames_command(url: &str) -> Command {
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error", "-rw_timeout", "15000000"])
        .args([
            "-show_entries",
            "stream=codec_name,codec_type,width,height,sample_rate,channels:frame=media_type,key_frame,best_effort_timestamp_time",
        ])
        .args(["-of", "compact=p=0", url])
        .stdin(Stdio::null());
    cmd
}

/// What an [`ffprobe_frames_command`] decoded.
#[derive(Debug, Default)]
pub struct ProbedFrames {
    /// Each stream's entries (`codec_type`, `codec_name`, `width`, …).
    pub streams: Vec<HashMap<String, String>>,
    /// Each video frame's time (seconds) and whether it is a keyframe.
    pub video: Vec<(f64, bool)>,
    /// Each audio frame's time (seconds).
    pub audio: Vec<f64>,
}

impl ProbedFrames {
    /// Parses the output of an [`ffprobe_frames_command`]; panics with its
    /// errors, naming it `what`, unless it succeeded.
    pub fn parse(out: &Output, what: &str) -> ProbedFrames {
        assert!(
            out.status.success(),
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut p = ProbedFrames::default();
        for line in text.lines() {
            let kv: HashMap<String, String> = line
                .split('|')
                .filter_map(|f| f.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            if kv.contains_key("codec_type") {
                p.streams.push(kv);
            } else if let Some(kind) = kv.get("media_type") {
                let Some(t) = kv
                    .get("best_effort_timestamp_time")
                    .and_then(|t| t.parse::<f64>().ok())
                else {
                    continue;
                };
                match kind.as_str() {
                    "video" => p
                        .video
                        .push((t, kv.get("key_frame").is_some_and(|k| k == "1"))),
                    "audio" => p.audio.push(t),
                    _ => {}
                }
            }
        }
        p
    }
}

/// Polls `GET url` until `check` accepts the JSON body; returns it, or
/// panics with the last body after `timeout`.
pub fn wait_json(
    url: &str,
    timeout: Duration,
    mut check: impl FnMut(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        if let Ok(r) = try_http_get(url)
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&r.body)
        {
            if check(&v) {
                return v;
            }
            last = Some(v);
        }
        assert!(
            Instant::now() < deadline,
            "GET {url}: not as expected within {timeout:?}; last: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
