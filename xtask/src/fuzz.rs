//! `cargo xtask fuzz <target> [--seconds N] [-- libFuzzer args…]` and
//! `cargo xtask fuzz --list`: the cargo-fuzz targets in `fuzz/`.

use std::ffi::{OsStr, OsString};

use anyhow::{Result, anyhow, bail};

use crate::cmd::Workspace;
use crate::install::ensure_cargo_tool;

/// Default fuzzing time for `cargo xtask fuzz` without `--seconds`.
const DEFAULT_FUZZ_SECONDS: u64 = 60;

pub(crate) fn fuzz(ws: &Workspace, args: &[OsString]) -> Result<()> {
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
