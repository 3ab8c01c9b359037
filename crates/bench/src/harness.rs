//! Process, directory and clip helpers for the benchmark harnesses that
//! start servers and load tools as child processes (`benches/rtsp.rs`;
//! `benches/rtmp.rs`).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long a stopped process gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Guard {
    name: &'static str,
    child: Child,
    log: Option<PathBuf>,
}

impl Guard {
    /// Starts `cmd`.
    pub fn spawn(name: &'static str, cmd: &mut Command) -> Result<Self, String> {
        let child = cmd
            .spawn()
            .map_err(|e| format!("could not start {name}: {e}"))?;
        Ok(Self {
            name,
            child,
            log: None,
        })
    }

    /// Names the log file error messages quote.
    pub fn with_log(mut self, log: PathBuf) -> Self {
        self.log = Some(log);
        self
    }

    /// Its piped stdout, once.
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// Its piped stdin, once.
    pub fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.stdin.take()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last lines of its log, as `": …"`.
    pub fn log_tail(&self) -> String {
        self.log.as_deref().map(tail_of).unwrap_or_default()
    }

    /// Waits up to `limit`; `None` if still running then (it is then stopped).
    pub fn wait_timeout(&mut self, limit: Duration) -> Result<Option<ExitStatus>, String> {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(Some(status)),
                Ok(None) if Instant::now() >= deadline => {
                    self.stop();
                    return Ok(None);
                }
                Ok(None) => sleep(Duration::from_millis(100)),
                Err(e) => return Err(format!("waiting for {}: {e}", self.name)),
            }
        }
    }

    /// SIGTERM, then SIGKILL after a grace.
    pub fn stop(&mut self) {
        if !self.alive() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if !self.alive() {
                return;
            }
            sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits until something accepts TCP on 127.0.0.1:`port`, or the
    /// process exits, for up to `limit`.
    pub fn wait_listening(&mut self, port: u16, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        loop {
            if !self.alive() {
                return Err(format!("{} exited at start{}", self.name, self.log_tail()));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} does not listen on 127.0.0.1:{port} after {limit:?}",
                    self.name
                ));
            }
            sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A scratch directory removed when dropped.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory under the system's temporary one.
    pub fn new(bench: &str, tag: &str) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!(
            "tidewater-{bench}-bench-{}-{tag}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The last lines of a log file, as `": …"` for an error message.
pub fn tail_of(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
    format!(": {tail}")
}

/// `taskset -c CPU [prlimit --nofile=N:N] program`: both exec the program,
/// so the child's pid is the program's.
pub fn pinned(cpu: usize, nofile: Option<u64>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    pinned_to(&cpu.to_string(), nofile, program)
}

/// [`pinned`] to a `taskset` CPU list (`0,1`, `0-3`): the program may run on
/// any of them.
pub fn pinned_to(cpus: &str, nofile: Option<u64>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", cpus]);
    if let Some(n) = nofile {
        cmd.arg("prlimit").arg(format!("--nofile={n}:{n}"));
    }
    cmd.arg(program);
    cmd
}

/// `nice -n N` in front of a command (`nice` execs it, so the child's pid
/// stays the program's), or the command as it is. Niceness only orders
/// processes within their autogroup: see [`crate::sched`].
pub fn niced(nice: Option<i32>, cmd: Command) -> Command {
    let Some(n) = nice else { return cmd };
    let mut out = Command::new("nice");
    out.args(["-n", &n.to_string()])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    out
}

/// The open-file limit to give children: `want`, capped at the hard limit
/// (raising that needs privileges a sandbox may not have).
pub fn nofile_limit(want: u64) -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let hard = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|h| h.parse::<u64>().ok());
    hard.map_or(want, |h| h.min(want))
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("bind: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local_addr: {e}"))
}

/// Whether `cmd` is on the `PATH`.
pub fn have(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(cmd).is_file()))
}

/// The `key=value` fields of a load tool's `RESULT` line.
#[derive(Debug, Clone, Default)]
pub struct Fields(pub HashMap<String, String>);

impl Fields {
    /// Reads a `RESULT k=v …` line.
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix("RESULT ")?;
        Some(Fields(
            rest.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ))
    }

    /// A number field.
    pub fn num(&self, key: &str) -> Option<f64> {
        self.0.get(key)?.parse().ok()
    }

    /// Element `i` of a comma-separated list field.
    pub fn nth(&self, key: &str, i: usize) -> Option<f64> {
        self.0.get(key)?.split(',').nth(i)?.parse().ok()
    }

    /// A field as text, `?` when absent.
    pub fn text(&self, key: &str) -> &str {
        self.0.get(key).map_or("?", String::as_str)
    }
}

/// Generates a clip with `ffmpeg` once into `dir/name` (`args` between the
/// common options and the output); later runs reuse it.
pub fn ensure_clip(dir: &Path, name: &str, args: &[&str]) -> Result<PathBuf, String> {
    let clip = dir.join(name);
    if clip.is_file() {
        return Ok(clip);
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let partial = dir.join(format!("{name}.partial.mp4"));
    eprintln!("bench: generating {}", clip.display());
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(args)
        .arg(&partial)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("ffmpeg: {e}"))?;
    if !status.success() {
        let _ = std::fs::remove_file(&partial);
        return Err(format!("ffmpeg could not generate the clip ({status})"));
    }
    std::fs::rename(&partial, &clip).map_err(|e| format!("{}: {e}", clip.display()))?;
    Ok(clip)
}

/// `cargo build --release -p tidewater-server` into `target`; the binary.
pub fn build_tidewater(workspace: &Path, target: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    eprintln!("bench: building the tidewater server (release)");
    let status = Command::new(&cargo)
        .args(["build", "--release", "-p", "tidewater-server"])
        .env("CARGO_TARGET_DIR", target)
        .current_dir(workspace)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`cargo build --release -p tidewater-server` failed ({status})"
        ));
    }
    let bin = target.join("release").join("tidewater");
    if !bin.is_file() {
        return Err(format!("no binary at {}", bin.display()));
    }
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines() {
        let f = Fields::parse("RESULT a=1.5 b=x cpu=0.1,0.2").expect("a result");
        assert_eq!(f.num("a"), Some(1.5));
        assert_eq!(f.text("b"), "x");
        assert_eq!(f.text("c"), "?");
        assert_eq!(f.nth("cpu", 1), Some(0.2));
        assert!(Fields::parse("other").is_none());
    }

    #[test]
    fn guards_stop_their_process() {
        let mut g = Guard::spawn("sleep", Command::new("sleep").arg("30")).expect("sleep");
        assert!(g.alive());
        g.stop();
        assert!(!g.alive());
        let dir = TempDir::new("harness", "t").expect("dir");
        let path = dir.0.clone();
        assert!(path.is_dir());
        drop(dir);
        assert!(!path.exists());
    }
}
