//! `cargo xtask fuzz`: the cargo-fuzz targets in `fuzz/`.
//!
//! - `fuzz <target> [--seconds N] [-- libFuzzer args…]`: one target;
//! - `fuzz --smoke`: every target for 10 s (what CI runs);
//! - `fuzz --minutes N [--runs M] [target…]`: every (or each named) target
//!   in turn until N minutes or M executions (10 M by default), whichever
//!   comes first, then a table of executions and crashes per target;
//! - `fuzz --list`.
//!
//! cargo-fuzz passes nightly-only flags (`-Z` sanitizer and coverage
//! options); `RUSTC_BOOTSTRAP=1` lets the stable toolchain accept them, so
//! CI machines with only stable need no nightly download. Targets are built
//! with debug assertions (overflow checks) on. Each run reads the checked-in
//! seeds in `fuzz/corpus/<target>/` and writes what it finds to
//! `fuzz/target/corpus/<target>/`, so the seeds stay as checked in; a crash
//! is saved under `fuzz/artifacts/<target>/`.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::cmd::Workspace;
use crate::install::ensure_cargo_tool;

/// Default fuzzing time for `cargo xtask fuzz <target>` without `--seconds`.
const DEFAULT_FUZZ_SECONDS: u64 = 60;
/// Time per target of `--smoke`.
const SMOKE_SECONDS: u64 = 10;
/// Executions per target at most for `--minutes` without `--runs`.
const DEFAULT_RUNS: u64 = 10_000_000;

const FUZZ_USAGE: &str = "usage: cargo xtask fuzz <target> [--seconds N] [-- libFuzzer args…]
       cargo xtask fuzz --smoke
       cargo xtask fuzz --minutes N [--runs M] [target…]
       cargo xtask fuzz --list";

pub(crate) fn fuzz(ws: &Workspace, args: &[OsString]) -> Result<()> {
    let mut targets: Vec<String> = Vec::new();
    let mut list = false;
    let mut smoke_run = false;
    let mut seconds = None;
    let mut minutes = None;
    let mut runs = None;
    let mut extra: Vec<OsString> = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = |name: &str| {
            iter.next()
                .ok_or_else(|| anyhow!("{name} needs a value\n{FUZZ_USAGE}"))
                .and_then(|v| parse_number(name, v))
        };
        match arg.to_str() {
            Some("--") => extra.extend(iter.by_ref().cloned()),
            Some("--list") => list = true,
            Some("--smoke") => smoke_run = true,
            Some("--seconds") => seconds = Some(value("--seconds")?),
            Some("--minutes") => minutes = Some(value("--minutes")?),
            Some("--runs") => runs = Some(value("--runs")?),
            Some(s) if s.starts_with('-') => bail!("unknown option `{s}`\n{FUZZ_USAGE}"),
            Some(s) => targets.push(s.to_string()),
            None => bail!("a target name is not UTF-8\n{FUZZ_USAGE}"),
        }
    }

    let dir = fuzz_dir(ws)?;
    if list {
        for t in target_names(&dir)? {
            println!("{t}");
        }
        return Ok(());
    }
    if smoke_run {
        if !targets.is_empty() || minutes.is_some() || seconds.is_some() {
            bail!("--smoke runs every target for {SMOKE_SECONDS} s\n{FUZZ_USAGE}");
        }
        return smoke(ws);
    }
    if let Some(minutes) = minutes {
        if seconds.is_some() || !extra.is_empty() {
            bail!("--minutes takes no --seconds or libFuzzer arguments\n{FUZZ_USAGE}");
        }
        let all = target_names(&dir)?;
        let chosen = if targets.is_empty() {
            all
        } else {
            known(&all, targets)?
        };
        let limit = Limit {
            seconds: minutes.saturating_mul(60),
            runs: runs.unwrap_or(DEFAULT_RUNS),
        };
        return campaign(ws, &dir, &chosen, limit);
    }
    if runs.is_some() {
        bail!("--runs goes with --minutes\n{FUZZ_USAGE}");
    }
    let [target] = targets.as_slice() else {
        bail!("one fuzz target expected\n{FUZZ_USAGE}");
    };
    ensure_cargo_tool(ws, "fuzz", "cargo-fuzz")?;
    let mut cmd = fuzz_cargo(ws, &dir);
    cmd.args(["fuzz", "run", "--debug-assertions", target])
        .arg(scratch_corpus(&dir, target)?)
        .args(seeds(&dir, target))
        .arg("--")
        .arg(format!(
            "-max_total_time={}",
            seconds.unwrap_or(DEFAULT_FUZZ_SECONDS)
        ))
        .args(extra);
    ws.run(&mut cmd)
}

/// Every target for [`SMOKE_SECONDS`]: the step `cargo xtask test` runs in CI.
pub(crate) fn smoke(ws: &Workspace) -> Result<()> {
    let dir = fuzz_dir(ws)?;
    let targets = target_names(&dir)?;
    campaign(
        ws,
        &dir,
        &targets,
        Limit {
            seconds: SMOKE_SECONDS,
            runs: u64::MAX,
        },
    )
}

/// `cargo check` of the fuzz crate with the stable toolchain (no sanitizer
/// flags): that it still builds against the crates it fuzzes.
pub(crate) fn check(ws: &Workspace) -> Result<()> {
    let dir = fuzz_dir(ws)?;
    let mut cmd = ws.cargo();
    cmd.current_dir(&dir)
        .args(["check", "--bins", "--target-dir"])
        .arg(dir.join("target").join("check"));
    ws.run(&mut cmd)
}

/// When a target's run stops: after `seconds` or `runs` executions.
#[derive(Clone, Copy, Debug)]
struct Limit {
    seconds: u64,
    runs: u64,
}

/// What one target's run did, from libFuzzer's final statistics.
#[derive(Debug)]
struct Outcome {
    target: String,
    executions: Option<u64>,
    wall: Duration,
    failed: Option<String>,
}

/// Builds every target once, runs each in turn, prints a table; fails if
/// any target crashed (after running the rest).
fn campaign(ws: &Workspace, dir: &Path, targets: &[String], limit: Limit) -> Result<()> {
    ensure_cargo_tool(ws, "fuzz", "cargo-fuzz")?;
    let started = Instant::now();
    let mut build = fuzz_cargo(ws, dir);
    build.args(["fuzz", "build", "--debug-assertions"]);
    ws.run(&mut build)?;
    let built = started.elapsed();
    let logs = dir.join("target").join("logs");
    fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let mut outcomes = Vec::new();
    for target in targets {
        outcomes.push(run_one(ws, dir, &logs, target, limit)?);
    }
    eprintln!(
        "\nxtask: fuzzing: build {:.0} s, runs {:.0} s ({} targets, each until {} s or {} executions)",
        built.as_secs_f64(),
        (started.elapsed() - built).as_secs_f64(),
        targets.len(),
        limit.seconds,
        if limit.runs == u64::MAX {
            "unlimited".to_string()
        } else {
            limit.runs.to_string()
        }
    );
    eprintln!(
        "{:<16} {:>12} {:>8} {:>10}  result",
        "target", "executions", "seconds", "exec/s"
    );
    for o in &outcomes {
        let secs = o.wall.as_secs_f64();
        let (execs, rate) = match o.executions {
            Some(n) => (n.to_string(), format!("{:.0}", n as f64 / secs.max(0.001))),
            None => ("?".into(), "?".into()),
        };
        eprintln!(
            "{:<16} {:>12} {:>8.0} {:>10}  {}",
            o.target,
            execs,
            secs,
            rate,
            o.failed.as_deref().unwrap_or("no crash")
        );
    }
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.failed.is_some())
        .map(|o| o.target.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "fuzz targets failed: {} (logs in {}, inputs in {})",
            failed.join(", "),
            logs.display(),
            dir.join("artifacts").display()
        );
    }
    Ok(())
}

fn run_one(ws: &Workspace, dir: &Path, logs: &Path, target: &str, limit: Limit) -> Result<Outcome> {
    let log_path = logs.join(format!("{target}.log"));
    let log =
        fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    // The binary `cargo fuzz build` made, run directly: `cargo fuzz run` would
    // build again whenever a source changed since (and rebuild the crates
    // every target shares once per target).
    let binary = built_binary(ws, dir, target)?;
    let artifacts = dir.join("artifacts").join(target);
    fs::create_dir_all(&artifacts).with_context(|| format!("creating {}", artifacts.display()))?;
    let mut cmd = Command::new(&binary);
    cmd.current_dir(dir)
        // As cargo-fuzz runs its targets.
        .env("ASAN_OPTIONS", "detect_odr_violation=0")
        .arg(scratch_corpus(dir, target)?)
        .args(seeds(dir, target))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg(format!("-max_total_time={}", limit.seconds))
        // An input that takes this long is a hang: a failure.
        .arg("-timeout=30")
        .arg("-print_final_stats=1");
    if limit.runs != u64::MAX {
        cmd.arg(format!("-runs={}", limit.runs));
    }
    eprintln!("xtask: fuzz {target} (log: {})", log_path.display());
    let started = Instant::now();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("could not start {}", binary.display()))?;
    let wall = started.elapsed();
    let text = fs::read_to_string(&log_path).unwrap_or_default();
    let executions = text
        .lines()
        .rev()
        .filter_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .find_map(|n| n.trim().parse().ok());
    let failed = (!status.success()).then(|| {
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        for line in tail.iter().rev() {
            eprintln!("  {target}: {line}");
        }
        let artifact = text
            .lines()
            .find_map(|l| l.split_once("Test unit written to ").map(|(_, p)| p.trim()));
        match artifact {
            Some(p) => format!("CRASH ({p})"),
            None => format!("FAILED ({status})"),
        }
    });
    Ok(Outcome {
        target: target.to_string(),
        executions,
        wall,
        failed,
    })
}

/// Where `cargo fuzz build` put `target`'s binary: the fuzz crate's target
/// directory (`CARGO_TARGET_DIR` if set), the host triple, release.
fn built_binary(ws: &Workspace, dir: &Path, target: &str) -> Result<PathBuf> {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .context("could not run `rustc -vV`")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let host = text
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .context("`rustc -vV` names no host")?
        .trim()
        .to_string();
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => dir.join(d),
        None => dir.join("target"),
    };
    let binary = target_dir
        .join(host)
        .join("release")
        .join(crate::cmd::exe(target));
    if !binary.is_file() {
        bail!(
            "{} is missing after `cargo fuzz build` (in {})",
            binary.display(),
            ws.root.display()
        );
    }
    Ok(binary)
}

fn fuzz_dir(ws: &Workspace) -> Result<PathBuf> {
    let dir = ws.root.join("fuzz");
    if !dir.join("Cargo.toml").is_file() {
        bail!(
            "there is no fuzz crate yet ({} is missing)",
            dir.join("Cargo.toml").display()
        );
    }
    Ok(dir)
}

/// `cargo` in the fuzz crate, the stable toolchain taking nightly flags.
fn fuzz_cargo(ws: &Workspace, dir: &Path) -> Command {
    let mut cmd = ws.cargo();
    cmd.current_dir(dir).env("RUSTC_BOOTSTRAP", "1");
    cmd
}

/// The checked-in seeds of `target`, if it has any (libFuzzer stops on a
/// corpus directory that does not exist).
fn seeds(dir: &Path, target: &str) -> Option<PathBuf> {
    Some(dir.join("corpus").join(target)).filter(|d| d.is_dir())
}

/// Where a run writes the inputs it finds (outside the checked-in seeds).
fn scratch_corpus(dir: &Path, target: &str) -> Result<PathBuf> {
    let path = dir.join("target").join("corpus").join(target);
    fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
    Ok(path)
}

/// The `[[bin]]` names of the fuzz crate's manifest, in order.
fn target_names(dir: &Path) -> Result<Vec<String>> {
    let manifest = dir.join("Cargo.toml");
    let text =
        fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin
            && let Some(value) = line.strip_prefix("name").map(str::trim_start)
            && let Some(value) = value.strip_prefix('=')
        {
            names.push(value.trim().trim_matches('"').to_string());
        }
    }
    if names.is_empty() {
        bail!("{} lists no fuzz targets", manifest.display());
    }
    Ok(names)
}

fn known(all: &[String], wanted: Vec<String>) -> Result<Vec<String>> {
    for w in &wanted {
        if !all.contains(w) {
            bail!("no fuzz target `{w}` (there are: {})", all.join(", "));
        }
    }
    Ok(wanted)
}

fn parse_number(name: &str, value: &OsStr) -> Result<u64> {
    value.to_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
        anyhow!(
            "{name} wants a whole number, got `{}`",
            value.to_string_lossy()
        )
    })
}
