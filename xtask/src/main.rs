//! `cargo xtask …`: the project's developer tasks.
//!
//! ```text
//! cargo xtask test                       everything CI runs (what `.ci/run` calls)
//! cargo xtask tidy                       fmt, clippy and cargo-deny only
//! cargo xtask bench <name> [args…]       one benchmark; args go to the bench harness
//! cargo xtask fuzz <target> [--seconds N] [-- libFuzzer args…]
//! cargo xtask fuzz --list                the fuzz targets in fuzz/
//! ```
//!
//! Every step runs a child process with inherited stdio, so the tools' own
//! output (compiler errors, test runners' result lines) appears unchanged; a
//! failing child ends the task with the child's exit code and a message
//! naming the step.
//!
//! `test` runs, in order: `clients` (install missing real clients, see
//! [`CLIENTS`]), `players` (`npm ci` in `tests/web`: the hls.js and dash.js
//! builds the Chromium tests load, skipped when the lockfile's set is
//! installed), `fmt`, `clippy`, `deny` (`cargo deny check licenses bans
//! sources`), `build` (the `tidewater` binary and every test target, in one
//! feature resolution), `test` (`cargo test --workspace`, with `TIDEWATER_BIN`
//! pointing at the binary) and `loom` (the kernel's loom models, release, in
//! `target/loom`), then prints each step's time. When cargo-deny is missing it
//! is compiled in the background from the start. With `CI` set, cargo runs with
//! the settings in [`CI_ENV`].
//!
//! Dependencies are kept to `anyhow` and the standard library on purpose: CI
//! compiles this crate cold before anything else can start.

use std::collections::BTreeSet;
use std::env;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

const USAGE: &str = "\
usage: cargo xtask <command> [args…]

commands:
  test                                 everything CI runs: real clients, fmt, clippy, cargo-deny,
                                       build, all tests (unit, doc, end-to-end), loom models
  tidy                                 fmt, clippy and cargo-deny only
  bench <name> [args…]                 run one benchmark; args are passed to the bench harness
  fuzz <target> [--seconds N] [-- libFuzzer args…]
                                       fuzz one target (default 60 s); needs cargo-fuzz, installed if missing
  fuzz --list                          list the fuzz targets
  help                                 this text
";

/// A real client the end-to-end tests drive, and the Debian/Ubuntu package
/// that provides it. This is the one list to extend when a test needs a new
/// client; `cargo xtask test` installs what is missing (as root, with apt-get)
/// or fails naming the packages.
const CLIENTS: &[Client] = &[
    Client {
        package: "curl",
        probe: Probe::Command("curl"),
    },
    Client {
        package: "ffmpeg",
        probe: Probe::Command("ffmpeg"),
    },
    Client {
        package: "ffmpeg",
        probe: Probe::Command("ffprobe"),
    },
    Client {
        package: "chromium",
        probe: Probe::Command("chromium"),
    },
    Client {
        package: "nodejs",
        probe: Probe::Command("node"),
    },
    Client {
        package: "npm",
        probe: Probe::Command("npm"),
    },
    Client {
        package: "srt-tools",
        probe: Probe::Command("srt-live-transmit"),
    },
];

/// Benchmarks reachable as `cargo xtask bench <name>`.
const BENCHES: &[Bench] = &[
    Bench {
        name: "fanout",
        about: "stream bus fan-out against the arcly-stream anchor (criterion)",
        run: |ws, args| criterion(ws, "tidewater-bench", "fanout", args),
    },
    Bench {
        name: "rtmp",
        about: "RTMP viewers per core: the tidewater server against nginx-rtmp (rtmp-load)",
        run: |ws, args| criterion(ws, "tidewater-bench", "rtmp", args),
    },
    Bench {
        name: "dash",
        about: "DASH packaging CPU against ffmpeg's DASH muxer; low-latency chunk-out time",
        run: |ws, args| criterion(ws, "tidewater-pkg-dash", "dash", args),
    },
    Bench {
        name: "hls",
        about: "HLS/LL-HLS packaging CPU against ffmpeg's segmenter, LL-HLS part latency",
        run: |ws, args| criterion(ws, "tidewater-bench", "hls", args),
    },
    Bench {
        name: "srt",
        about: "SRT readers per core for one 4 Mbit/s stream; SRT in -> SRT out latency p50/p99",
        run: |ws, args| criterion(ws, "tidewater-ingest-srt", "srt", args),
    },
];

/// Default fuzzing time for `cargo xtask fuzz` without `--seconds`.
const DEFAULT_FUZZ_SECONDS: u64 = 60;

#[derive(Debug, Clone, Copy)]
struct Client {
    package: &'static str,
    probe: Probe,
}

/// How to tell whether a client is present.
#[derive(Debug, Clone, Copy)]
#[allow(dead_code)] // `Package` is for clients without a command (plugins, modules).
enum Probe {
    /// An executable of this name on `PATH`.
    Command(&'static str),
    /// The Debian package itself is installed (`dpkg-query`); for packages
    /// that add no command, such as GStreamer plugin sets or nginx modules.
    Package,
}

#[derive(Debug, Clone, Copy)]
struct Bench {
    name: &'static str,
    about: &'static str,
    run: fn(&Workspace, &[OsString]) -> Result<()>,
}

/// A child process that did not succeed; carries the exit code to propagate.
#[derive(Debug)]
struct Failed {
    command: String,
    code: u8,
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` exited with code {}", self.command, self.code)
    }
}

impl std::error::Error for Failed {}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("\nxtask: error: {err:#}");
            let code = err
                .chain()
                .find_map(|cause| cause.downcast_ref::<Failed>())
                .map_or(1, |failed| failed.code);
            ExitCode::from(code)
        }
    }
}

fn real_main() -> Result<()> {
    let mut args = env::args_os().skip(1);
    let Some(command) = args.next() else {
        eprint!("{USAGE}");
        bail!("no command given");
    };
    let rest: Vec<OsString> = args.collect();
    let ws = Workspace::locate()?;
    match command.to_str() {
        Some("test") => {
            no_args("test", &rest)?;
            test(&ws)
        }
        Some("tidy") => {
            no_args("tidy", &rest)?;
            tidy(&ws)
        }
        Some("bench") => bench(&ws, &rest),
        Some("fuzz") => fuzz(&ws, &rest),
        Some("help" | "-h" | "--help") => {
            print!("{USAGE}");
            Ok(())
        }
        _ => {
            eprint!("{USAGE}");
            bail!("unknown command `{}`", command.to_string_lossy())
        }
    }
}

fn no_args(command: &str, rest: &[OsString]) -> Result<()> {
    if let Some(arg) = rest.first() {
        bail!(
            "`cargo xtask {command}` takes no arguments (got `{}`)",
            arg.to_string_lossy()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// test and tidy

fn test(ws: &Workspace) -> Result<()> {
    let mut steps = Steps::new("test");
    let target = ws.target_dir()?;
    // A missing cargo-deny takes minutes to compile: start that now, so it
    // overlaps with apt-get and the checks before the step that needs it.
    let deny_install = Install::start_if_missing(ws, &target, "deny", "cargo-deny")?;
    steps.run("clients", || ensure_clients(ws))?;
    steps.run("players", || ensure_players(ws))?;
    tidy_steps(ws, &mut steps, deny_install)?;

    // One build for the binary and the tests: `--workspace --tests` resolves
    // features exactly as `cargo test --workspace` does (dev-dependencies
    // included), so the test step reuses every artifact built here and only
    // adds doc tests and examples. A narrower `-p tidewater-server` build
    // would resolve different features and compile the tree a second time.
    steps.run("build", || {
        ws.run(
            ws.cargo()
                .args(["build", "--workspace", "--bins", "--tests"]),
        )
    })?;
    let bin = target.join("debug").join(exe("tidewater"));
    steps.run("test", || {
        if !bin.is_file() {
            bail!("the server binary is missing at {}", bin.display());
        }
        ws.run(
            ws.cargo()
                .args(["test", "--workspace"])
                .env("TIDEWATER_BIN", &bin),
        )
    })?;

    match loom_suite(ws) {
        Some(suite) => {
            let loom_target = target.join("loom");
            steps.run("loom", || {
                ws.run(
                    ws.cargo()
                        .args(["test", "-p", "tidewater-core", "--release"])
                        .args(suite.args)
                        .env("RUSTFLAGS", format!("--cfg {}", suite.cfg))
                        .env_remove("CARGO_ENCODED_RUSTFLAGS")
                        .env("CARGO_TARGET_DIR", &loom_target),
                )
            })?;
        }
        None => steps.skip("loom", "tidewater-core has no loom models yet"),
    }
    steps.finish();
    Ok(())
}

/// How to run the kernel's loom models: a `--cfg` that swaps in loom's
/// atomics, and the `cargo test -p tidewater-core` arguments selecting them.
#[derive(Debug)]
struct LoomSuite {
    cfg: &'static str,
    args: &'static [&'static str],
}

/// Finds the kernel's loom models. They are built under a cfg of the kernel's
/// own (`tidewater_loom`, so that tokio, bytes and the rest do not switch to
/// their own loom builds) and live next to the code they model, named
/// `loom_*`; an integration test `tests/loom_wait.rs` under the common `loom`
/// cfg is run too if that is where they are.
fn loom_suite(ws: &Workspace) -> Option<LoomSuite> {
    let core = ws.root.join("crates/core");
    let manifest = std::fs::read_to_string(core.join("Cargo.toml")).unwrap_or_default();
    if manifest.contains("cfg(tidewater_loom)") {
        Some(LoomSuite {
            cfg: "tidewater_loom",
            args: &["--lib", "loom"],
        })
    } else if core.join("tests/loom_wait.rs").is_file() {
        Some(LoomSuite {
            cfg: "loom",
            args: &["--test", "loom_wait"],
        })
    } else {
        None
    }
}

fn tidy(ws: &Workspace) -> Result<()> {
    let mut steps = Steps::new("tidy");
    tidy_steps(ws, &mut steps, None)?;
    steps.finish();
    Ok(())
}

fn tidy_steps(ws: &Workspace, steps: &mut Steps, deny_install: Option<Install>) -> Result<()> {
    steps.run("fmt", || {
        ensure_component(ws, "fmt", "rustfmt")?;
        ws.run(ws.cargo().args(["fmt", "--all", "--", "--check"]))
    })?;
    steps.run("clippy", || {
        ensure_component(ws, "clippy", "clippy")?;
        ws.run(ws.cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    steps.run("deny", || {
        match deny_install {
            Some(install) => install.wait()?,
            None => ensure_cargo_tool(ws, "deny", "cargo-deny")?,
        }
        ws.run(
            ws.cargo()
                .args(["deny", "check", "licenses", "bans", "sources"]),
        )
    })
}

/// Installs the missing real clients (as root on Debian/Ubuntu), or fails
/// naming the packages to install.
fn ensure_clients(ws: &Workspace) -> Result<()> {
    let missing = missing_packages();
    if missing.is_empty() {
        eprintln!("xtask: all real clients present");
        return Ok(());
    }
    let list = missing.iter().copied().collect::<Vec<_>>().join(" ");
    if !is_root() {
        bail!("real clients missing; install these Debian/Ubuntu packages (as root): {list}");
    }
    if find_command("apt-get").is_none() {
        bail!(
            "real clients missing and apt-get is not available; install the equivalents of: {list}"
        );
    }
    eprintln!("xtask: installing {list}");
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null());
        ws.run(&mut cmd)
    };
    apt(&["update"])?;
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend(missing.iter().copied());
    apt(&install)?;

    let still = missing_packages();
    if !still.is_empty() {
        let list = still.into_iter().collect::<Vec<_>>().join(" ");
        bail!("real clients still missing after apt-get install: {list}");
    }
    Ok(())
}

/// Installs the browser players the Chromium tests load (`tests/web`, pinned
/// by its lockfile) unless the installed set already matches the lockfile.
fn ensure_players(ws: &Workspace) -> Result<()> {
    let web = ws.root.join("tests/web");
    let lock = web.join("package-lock.json");
    // npm copies the lockfile into node_modules on every install: equal
    // contents mean this exact set is installed.
    let installed = web.join("node_modules/.package-lock.json");
    let wanted = std::fs::read(&lock).with_context(|| format!("reading {}", lock.display()))?;
    if let Ok(have) = std::fs::read(&installed) {
        if lockfile_packages(&have) == lockfile_packages(&wanted) {
            eprintln!("xtask: browser players present");
            return Ok(());
        }
    }
    ws.run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&web)
            .stdin(Stdio::null()),
    )
}

/// The package entries of an npm lockfile, ignoring its root entry (which
/// `node_modules/.package-lock.json` does not carry).
fn lockfile_packages(lock: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(lock)
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.starts_with("\"node_modules/")
                || l.starts_with("\"version\"")
                || l.starts_with("\"integrity\"")
        })
        .map(str::to_owned)
        .collect()
}

fn missing_packages() -> BTreeSet<&'static str> {
    CLIENTS
        .iter()
        .filter(|client| !client.present())
        .map(|client| client.package)
        .collect()
}

impl Client {
    fn present(&self) -> bool {
        match self.probe {
            Probe::Command(name) => find_command(name).is_some(),
            Probe::Package => Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", self.package])
                .stderr(Stdio::null())
                .output()
                .is_ok_and(|out| {
                    out.status.success()
                        && String::from_utf8_lossy(&out.stdout).ends_with(" installed")
                }),
        }
    }
}

/// Adds a toolchain component (`rustfmt`, `clippy`) with rustup when cargo
/// does not have it; a minimal toolchain profile ships without them.
fn ensure_component(ws: &Workspace, subcommand: &str, component: &str) -> Result<()> {
    if ws.quiet_ok(ws.cargo().args([subcommand, "--version"])) {
        return Ok(());
    }
    if find_command("rustup").is_none() {
        bail!("`cargo {subcommand}` is not available; install the `{component}` component");
    }
    eprintln!("xtask: adding the {component} toolchain component");
    ws.run(Command::new("rustup").args(["component", "add", component]))
}

/// Installs a cargo subcommand from source when `cargo <sub> --version` fails.
fn ensure_cargo_tool(ws: &Workspace, subcommand: &str, krate: &str) -> Result<()> {
    if ws.quiet_ok(ws.cargo().args([subcommand, "--version"])) {
        return Ok(());
    }
    eprintln!("xtask: `cargo {subcommand}` not found; installing {krate} (takes minutes)");
    ws.run(ws.cargo().args(["install", "--locked", krate]))
}

/// A `cargo install` running in the background, its output in a log file.
/// Dropped without `wait` (an earlier step failed), it is stopped.
#[derive(Debug)]
struct Install {
    child: Option<Child>,
    krate: &'static str,
    log: PathBuf,
}

impl Install {
    fn start_if_missing(
        ws: &Workspace,
        target: &Path,
        subcommand: &str,
        krate: &'static str,
    ) -> Result<Option<Self>> {
        if ws.quiet_ok(ws.cargo().args([subcommand, "--version"])) {
            return Ok(None);
        }
        let dir = target.join("xtask");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let log = dir.join(format!("install-{krate}.log"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        eprintln!(
            "xtask: `cargo {subcommand}` not found; installing {krate} in the background (log: {})",
            log.display()
        );
        let child = ws
            .cargo()
            .args(["install", "--locked", krate])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("could not start `cargo install --locked {krate}`"))?;
        Ok(Some(Self {
            child: Some(child),
            krate,
            log,
        }))
    }

    fn wait(mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        eprintln!("xtask: waiting for the {} install to finish", self.krate);
        let status = child.wait().context("waiting for cargo install")?;
        if status.success() {
            eprintln!("xtask: {} installed", self.krate);
            return Ok(());
        }
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        eprintln!("xtask: the end of {}:", self.log.display());
        for line in &lines[lines.len().saturating_sub(40)..] {
            eprintln!("{line}");
        }
        Err(Failed {
            command: format!("cargo install --locked {}", self.krate),
            code: exit_code(status),
        }
        .into())
    }
}

impl Drop for Install {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// bench and fuzz

fn bench(ws: &Workspace, args: &[OsString]) -> Result<()> {
    let list = || {
        BENCHES
            .iter()
            .map(|b| format!("  {:<16} {}", b.name, b.about))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let Some(name) = args.first() else {
        bail!(
            "usage: cargo xtask bench <name> [args…]\nbenchmarks:\n{}",
            list()
        );
    };
    let name = name.to_string_lossy();
    let Some(bench) = BENCHES.iter().find(|b| b.name == name) else {
        bail!("unknown benchmark `{name}`; benchmarks:\n{}", list());
    };
    (bench.run)(ws, &args[1..])
}

/// A criterion benchmark: `cargo bench -p <package> --bench <bench> -- args…`.
fn criterion(ws: &Workspace, package: &str, bench: &str, args: &[OsString]) -> Result<()> {
    ws.run(
        ws.cargo()
            .args(["bench", "-p", package, "--bench", bench, "--"])
            .args(args),
    )
}

fn fuzz(ws: &Workspace, args: &[OsString]) -> Result<()> {
    const FUZZ_USAGE: &str = "usage: cargo xtask fuzz <target> [--seconds N] [-- libFuzzer args…] | cargo xtask fuzz --list";
    let mut target = None;
    let mut list = false;
    let mut seconds = DEFAULT_FUZZ_SECONDS;
    let mut extra: Vec<OsString> = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.to_str() {
            Some("--") => {
                extra.extend(iter.by_ref().cloned());
            }
            Some("--list") => list = true,
            Some("--seconds") => {
                let value = iter
                    .next()
                    .ok_or_else(|| anyhow!("--seconds needs a value\n{FUZZ_USAGE}"))?;
                seconds = parse_seconds(value)?;
            }
            Some(s) if s.starts_with("--seconds=") => {
                seconds = parse_seconds(OsStr::new(&s["--seconds=".len()..]))?;
            }
            Some(s) if s.starts_with('-') => bail!("unknown option `{s}`\n{FUZZ_USAGE}"),
            _ if target.is_none() => target = Some(arg.clone()),
            _ => bail!(
                "unexpected argument `{}`\n{FUZZ_USAGE}",
                arg.to_string_lossy()
            ),
        }
    }

    let dir = ws.root.join("fuzz");
    if !dir.join("Cargo.toml").is_file() {
        bail!(
            "there is no fuzz crate yet ({} is missing)",
            dir.join("Cargo.toml").display()
        );
    }
    ensure_cargo_tool(ws, "fuzz", "cargo-fuzz")?;
    // cargo-fuzz passes nightly-only flags (sanitizers); RUSTC_BOOTSTRAP lets
    // the stable toolchain accept them.
    let mut cmd = ws.cargo();
    cmd.current_dir(&dir).env("RUSTC_BOOTSTRAP", "1");
    if list {
        cmd.args(["fuzz", "list"]);
    } else {
        let Some(target) = target else {
            bail!("no fuzz target given\n{FUZZ_USAGE}");
        };
        cmd.args(["fuzz", "run"])
            .arg(target)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .args(extra);
    }
    ws.run(&mut cmd)
}

fn parse_seconds(value: &OsStr) -> Result<u64> {
    value.to_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
        anyhow!(
            "--seconds wants a whole number, got `{}`",
            value.to_string_lossy()
        )
    })
}

// ---------------------------------------------------------------------------
// plumbing

#[derive(Debug)]
struct Workspace {
    root: PathBuf,
    cargo: OsString,
    /// Environment for every cargo command, see [`CI_ENV`].
    cargo_env: Vec<(&'static str, &'static str)>,
}

/// Build settings for CI machines (`CI` set), which build everything once
/// from scratch: incremental compilation only costs there, and full debug
/// info makes the debug build and its links much larger for no use (line
/// tables keep backtraces readable). A variable already set wins.
const CI_ENV: &[(&str, &str)] = &[
    ("CARGO_INCREMENTAL", "0"),
    ("CARGO_PROFILE_DEV_DEBUG", "line-tables-only"),
];

impl Workspace {
    fn locate() -> Result<Self> {
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
    fn cargo(&self) -> Command {
        let mut cmd = Command::new(&self.cargo);
        cmd.current_dir(&self.root)
            .envs(self.cargo_env.iter().copied());
        cmd
    }

    /// Runs a command with inherited stdio; a failure carries its exit code.
    fn run(&self, cmd: &mut Command) -> Result<()> {
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
    fn quiet_ok(&self, cmd: &mut Command) -> bool {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// Cargo's target directory, wherever configuration puts it.
    fn target_dir(&self) -> Result<PathBuf> {
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
struct Steps {
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
    fn new(task: &'static str) -> Self {
        Self {
            task,
            started: Instant::now(),
            done: Vec::new(),
        }
    }

    fn run(&mut self, name: &'static str, step: impl FnOnce() -> Result<()>) -> Result<()> {
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

    fn skip(&mut self, name: &'static str, why: &'static str) {
        eprintln!("\n==> xtask {}: {name} skipped: {why}", self.task);
        self.done.push((name, Outcome::Skipped(why)));
    }

    fn finish(&self) {
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

fn exit_code(status: std::process::ExitStatus) -> u8 {
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

fn find_command(name: &str) -> Option<PathBuf> {
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

fn exe(name: &str) -> String {
    format!("{name}{}", env::consts::EXE_SUFFIX)
}

fn is_root() -> bool {
    // `Uid:` lists the real, effective, saved and filesystem ids; apt-get
    // cares about the effective one.
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(line) = status.lines().find(|l| l.starts_with("Uid:")) {
            return line.split_whitespace().nth(2) == Some("0");
        }
    }
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout.trim_ascii() == b"0")
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

    #[test]
    fn benches_and_clients_are_well_formed() {
        let mut names = BTreeSet::new();
        for bench in BENCHES {
            assert!(names.insert(bench.name), "duplicate bench {}", bench.name);
        }
        for client in CLIENTS {
            assert!(!client.package.is_empty());
        }
    }
}
