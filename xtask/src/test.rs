//! `cargo xtask test`: everything CI runs, in order: the real clients and
//! browser players (see [`crate::install`]), the tidy steps (see
//! [`crate::tidy`]), one build, the tests, the kernel's loom models, the
//! fan-out and RTSP benches' quick runs, a 2-minute soak, and the fuzz targets (a 10 s
//! smoke run each when `CI` is set, a check otherwise).

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

use anyhow::{Result, bail};

use crate::cmd::{Steps, Workspace, exe};
use crate::install::{Install, ensure_clients, ensure_players};
use crate::tidy::tidy_steps;

pub(crate) fn test(ws: &Workspace) -> Result<()> {
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
    // The fan-out bench's quick run: lossless, in order, each frame's own
    // payload checked by every subscriber (seconds; its figures are not kept).
    steps.run("fanout", || {
        crate::bench::bench(ws, &["fanout".into(), "--quick".into()])
    })?;
    // The RTSP bench's quick run against the debug binary built above: 5
    // readers over TCP and over UDP from tidewater and from gst-rtsp-server;
    // it fails when a server does not start or a reader fails, ends or gets
    // no keyframe (its figures are not kept).
    steps.run("rtsp bench", || {
        crate::bench::bench(
            ws,
            &[
                "rtsp".into(),
                "--quick".into(),
                "--tidewater-bin".into(),
                bin.clone().into(),
            ],
        )
    })?;
    // A short soak: every ingest publishing, readers churning on every
    // output, RSS, fds and tokio tasks flat (see `crate::soak`).
    steps.run("soak", || {
        crate::soak::soak(ws, &["--minutes".into(), "2".into()])
    })?;
    // Every fuzz target for 10 s in CI (cargo-fuzz on the stable toolchain,
    // see `crate::fuzz`); elsewhere only that the fuzz crate still builds:
    // a check instead of a sanitizer build and 10 s per target.
    if env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false") {
        steps.run("fuzz smoke", || crate::fuzz::smoke(ws))?;
    } else {
        steps.run("fuzz check", || crate::fuzz::check(ws))?;
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
