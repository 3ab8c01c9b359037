//! `cargo xtask …`: the project's developer tasks.
//!
//! ```text
//! cargo xtask test                       everything CI runs (what `.ci/run` calls)
//! cargo xtask tidy                       crate layering and docs checks, fmt, clippy, cargo-deny
//! cargo xtask bench <name> [args…]       one benchmark; args go to the bench harness
//! cargo xtask fuzz <target> [--seconds N] [-- libFuzzer args…]
//! cargo xtask fuzz --smoke               every fuzz target for 10 s (CI)
//! cargo xtask fuzz --minutes N [--runs M] [target…]   longer runs, a table of executions
//! cargo xtask fuzz --list                the fuzz targets in fuzz/
//! cargo xtask soak [--minutes N] [--sample-secs S] [--warmup-secs W] [--release]
//!                                        the server under churn; RSS, fds, tasks flat
//! ```
//!
//! One module per purpose; this file only dispatches the command line:
//!
//! - [`test`]: the test pipeline;
//! - [`tidy`]: the checks `tidy` and `test` share;
//! - [`bench`] and [`fuzz`]: benchmarks and fuzz targets;
//! - [`soak`]: the server under steady publishing and churning readers;
//! - [`install`]: real clients (apt-get), browser players (`npm ci`),
//!   toolchain components and cargo subcommands (cargo-deny, cargo-fuzz);
//! - [`cmd`]: running children, showing their command lines, passing on
//!   their exit codes, timing steps.
//!
//! Every step runs a child process with inherited stdio, so the tools' own
//! output (compiler errors, test runners' result lines) appears unchanged; a
//! failing child ends the task with the child's exit code and a message
//! naming the step.
//!
//! `test` runs, in order: `clients` (install missing real clients, see
//! [`install::CLIENTS`]), `players` (`npm ci` in `tests/web`: the hls.js and
//! dash.js builds the Chromium tests load, skipped when the lockfile's set is
//! installed), the tidy steps, `build` (the `tidewater` binary and every test
//! target, in one feature resolution), `test` (`cargo test --workspace`, with
//! `TIDEWATER_BIN` pointing at the binary), `loom` (the kernel's loom
//! models, release, in `target/loom`), `fanout` (`bench fanout --quick`:
//! every subscriber checks every frame's own payload), `soak` (2 minutes,
//! see [`soak`]) and the fuzz step (`fuzz smoke` with `CI` set, else `fuzz
//! check`, a `cargo check` of the fuzz crate), then prints each step's time. When
//! cargo-deny is missing it is compiled in the background from the start.
//! With `CI` set, cargo runs with the settings in [`cmd::CI_ENV`].
//!
//! The tidy steps, for `tidy` and `test` alike: `layering` (no protocol
//! crate, `crates/ingest-*`, `crates/pkg-*`, `crates/record` or
//! `crates/cluster`, depends on another workspace crate than the shared seam
//! crates `tidewater-core`, `tidewater-media`, `tidewater-http` and
//! `tidewater-transcode`;
//! `tidewater-tests` is allowed as a dev-dependency), `docs` (every library
//! crate but the internal test and bench support has `#![deny(missing_docs)]`
//! in its `src/lib.rs`), `fmt`, `clippy` and `deny` (`cargo deny check
//! licenses bans sources`).
//!
//! Dependencies are kept to `anyhow` and the standard library on purpose: CI
//! compiles this crate cold before anything else can start.

mod bench;
mod cmd;
mod fuzz;
mod install;
mod soak;
mod test;
mod tidy;

use std::env;
use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::cmd::{Failed, Workspace};

const USAGE: &str = "\
usage: cargo xtask <command> [args…]

commands:
  test                                 everything CI runs: real clients, the tidy checks,
                                       build, all tests (unit, doc, end-to-end), loom models
  tidy                                 crate layering and docs checks, fmt, clippy and cargo-deny
  bench <name> [args…]                 run one benchmark; args are passed to the bench harness
  fuzz <target> [--seconds N] [-- libFuzzer args…]
                                       fuzz one target (default 60 s); needs cargo-fuzz, installed if missing
  fuzz --smoke                         every target for 10 s (CI)
  fuzz --minutes N [--runs M] [target…]
                                       each target N minutes or M executions (10 M), then a table
  fuzz --list                          list the fuzz targets
  soak [--minutes N] [--sample-secs S] [--warmup-secs W] [--release]
                                       publish on every ingest, churn readers on every output,
                                       fail on RSS/fd/task growth > 5 % or a reader that lost frames
  help                                 this text
";

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
            test::test(&ws)
        }
        Some("tidy") => {
            no_args("tidy", &rest)?;
            tidy::tidy(&ws)
        }
        Some("bench") => bench::bench(&ws, &rest),
        Some("fuzz") => fuzz::fuzz(&ws, &rest),
        Some("soak") => soak::soak(&ws, &rest),
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
