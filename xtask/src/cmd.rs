//! Running child processes: the workspace's cargo, commands shown as a shell
//! would, exit codes carried up to `main`, and the timed steps of a task.

// It reads what child processes print (ffmpeg's framecrc and logs, the
// server's metrics, cargo's output): an unexpected line is an error or is
// skipped, never a panic of the task.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

use std::env;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A child process that did not succeed; carries the exit code to propagate.
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) command: String,
    pub(crate) code: u8,
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` exited with code {}", self.command, self.code)
    }
}

impl std::error::Error for Failed {}

#[derive(Debug)]
pub(crate) struct Workspace {
    pub(crate) root: PathBuf,
    cargo: OsString,
    /// Environment for every cargo command, see [`CI_ENV`].
    cargo_env: Vec<(&'static str, &'static str)>,
}

/// Build settings for CI machines (`CI` set), which build everything once
/// from scratch: incremental compilation only costs there, and full debug
/// info makes the debug build and its links much larger for no use (line
/// tables keep backtraces readable). A variable already set wins.
pub(crate) const CI_ENV: &[(&str, &str)] = &[
    ("CARGO_INCREMENTAL", "0"),
    ("CARGO_PROFILE_DEV_DEBUG", "line-tables-only"),
];

impl Workspace {
    pub(crate) fn locate() -> Result<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask must live one level below the workspace root")?
            .to_path_buf();
        // The cargo that runs us (`cargo xtask`), so nested builds use the
        // same toolchain; plain `cargo` when run some other way.
        let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let ci = env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
        let cargo_env: Vec<_> = if ci {
            CI_ENV
                .iter()
                .copied()
                .filter(|(key, _)| env::var_os(key).is_none())
                .collect()
        } else {
            Vec::new()
        };
        if !cargo_env.is_empty() {
            let shown: Vec<String> = cargo_env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            eprintln!("xtask: CI build settings: {}", shown.join(" "));
        }
        Ok(Self {
            root,
            cargo,
            cargo_env,
        })
    }

    /// A cargo command in the workspace root.
    pub(crate) fn cargo(&self) -> Command {
        let mut cmd = Command::new(&self.cargo);
        cmd.current_dir(&self.root)
            .envs(self.cargo_env.iter().copied());
        cmd
    }

    /// Runs a command with inherited stdio; a failure carries its exit code.
    pub(crate) fn run(&self, cmd: &mut Command) -> Result<()> {
        if cmd.get_current_dir().is_none() {
            cmd.current_dir(&self.root);
        }
        let shown = show(cmd, &self.cargo_env);
        eprintln!("xtask: $ {shown}");
        let status = cmd
            .status()
            .with_context(|| format!("could not start `{shown}`"))?;
        if status.success() {
            return Ok(());
        }
        Err(Failed {
            command: shown,
            code: exit_code(status),
        }
        .into())
    }

    /// Whether a command succeeds, its output discarded.
    pub(crate) fn quiet_ok(&self, cmd: &mut Command) -> bool {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// Cargo's target directory, wherever configuration puts it.
    pub(crate) fn target_dir(&self) -> Result<PathBuf> {
        let out = self
            .cargo()
            .args(["metadata", "--no-deps", "--format-version", "1"])
            .stderr(Stdio::inherit())
            .output()
            .context("could not run `cargo metadata`")?;
        if !out.status.success() {
            bail!("`cargo metadata` failed");
        }
        let json = String::from_utf8(out.stdout).context("`cargo metadata` printed non-UTF-8")?;
        json_string_field(&json, "target_directory")
            .map(PathBuf::from)
            .context("`cargo metadata` output has no target_directory")
    }
}

/// The value of the first `"key":"…"` string field in a JSON document.
/// Enough for cargo metadata's top-level paths without a JSON dependency.
fn json_string_field(json: &str, key: &str) -> Option<String> {
    let needle = format!("\"{key}\":\"");
    let start = json.find(&needle)? + needle.len();
    let mut value = String::new();
    let mut chars = json[start..].chars();
    loop {
        match chars.next()? {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                'n' => value.push('\n'),
                't' => value.push('\t'),
                'r' => value.push('\r'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    value.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
}

/// Runs named steps, timing each, and prints a summary at the end or on the
/// first failure.
#[derive(Debug)]
pub(crate) struct Steps {
    task: &'static str,
    started: Instant,
    done: Vec<(&'static str, Outcome)>,
}

#[derive(Debug)]
enum Outcome {
    Ok(Duration),
    Failed(Duration),
    Skipped(&'static str),
}

impl Steps {
    pub(crate) fn new(task: &'static str) -> Self {
        Self {
            task,
            started: Instant::now(),
            done: Vec::new(),
        }
    }

    pub(crate) fn run(
        &mut self,
        name: &'static str,
        step: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        eprintln!("\n==> xtask {}: {name}", self.task);
        let start = Instant::now();
        let result = step();
        let elapsed = start.elapsed();
        match result {
            Ok(()) => {
                self.done.push((name, Outcome::Ok(elapsed)));
                Ok(())
            }
            Err(err) => {
                self.done.push((name, Outcome::Failed(elapsed)));
                self.summary();
                Err(err.context(format!(
                    "`cargo xtask {}` failed at step `{name}`",
                    self.task
                )))
            }
        }
    }

    pub(crate) fn skip(&mut self, name: &'static str, why: &'static str) {
        eprintln!("\n==> xtask {}: {name} skipped: {why}", self.task);
        self.done.push((name, Outcome::Skipped(why)));
    }

    pub(crate) fn finish(&self) {
        self.summary();
        eprintln!("xtask {}: all steps passed", self.task);
    }

    fn summary(&self) {
        eprintln!("\nxtask {}: step times", self.task);
        for (name, outcome) in &self.done {
            match outcome {
                Outcome::Ok(t) => eprintln!("  {name:<8} {:>8.1} s", t.as_secs_f64()),
                Outcome::Failed(t) => {
                    eprintln!("  {name:<8} {:>8.1} s  FAILED", t.as_secs_f64());
                }
                Outcome::Skipped(why) => eprintln!("  {name:<8}  skipped  ({why})"),
            }
        }
        eprintln!(
            "  {:<8} {:>8.1} s",
            "total",
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// The command line as a shell would show it, environment overrides first
/// (except the common ones in `hidden`, announced once).
fn show(cmd: &Command, hidden: &[(&str, &str)]) -> String {
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter(|(k, _)| !hidden.iter().any(|(h, _)| OsStr::new(h) == *k))
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), quote(v?))))
        .collect();
    let program = Path::new(cmd.get_program());
    let name = if program.file_stem() == Some(OsStr::new("cargo")) {
        OsStr::new("cargo")
    } else {
        cmd.get_program()
    };
    parts.push(quote(name));
    parts.extend(cmd.get_args().map(quote));
    parts.join(" ")
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=./:,+@%".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

pub(crate) fn exit_code(status: std::process::ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        // A code outside 1..=255 still has to read as a failure.
        return u8::try_from(code).ok().filter(|&c| c != 0).unwrap_or(1);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return u8::try_from(128 + signal).unwrap_or(1);
        }
    }
    1
}

pub(crate) fn find_command(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(exe(name)))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

pub(crate) fn exe(name: &str) -> String {
    format!("{name}{}", env::consts::EXE_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_field_is_unescaped() {
        let json = r#"{"packages":[],"target_directory":"/a \"b\"\\c\u00e9","version":1}"#;
        assert_eq!(
            json_string_field(json, "target_directory").as_deref(),
            Some("/a \"b\"\\cé")
        );
        assert_eq!(json_string_field(json, "workspace_root"), None);
    }

    #[test]
    fn commands_are_shown_quoted() {
        let mut cmd = Command::new("/somewhere/bin/cargo");
        cmd.args(["test", "--cfg loom"])
            .env("RUSTFLAGS", "--cfg loom")
            .env("CARGO_INCREMENTAL", "0");
        assert_eq!(
            show(&cmd, &[("CARGO_INCREMENTAL", "0")]),
            "RUSTFLAGS='--cfg loom' cargo test '--cfg loom'"
        );
    }
}
