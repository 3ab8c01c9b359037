//! Installing what the tasks need: the real clients the end-to-end tests
//! drive (apt-get), the browser players (`npm ci` in `tests/web`), toolchain
//! components (rustup) and cargo subcommands such as cargo-deny and
//! cargo-fuzz (`cargo install`, in the foreground or in the background).

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

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::cmd::{Failed, Workspace, exit_code, find_command};

/// A real client the end-to-end tests drive, and the Debian/Ubuntu package
/// that provides it. This is the one list to extend when a test needs a new
/// client; `cargo xtask test` installs what is missing (as root, with apt-get)
/// or fails naming the packages.
pub(crate) const CLIENTS: &[Client] = &[
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
    // The stand-in IP camera of the RTSP pull tests: gst-rtsp-server
    // driven from Python (tests/helpers/rtsp_camera.py).
    Client {
        package: "python3-gi",
        probe: Probe::Package,
    },
    Client {
        package: "gir1.2-gst-rtsp-server-1.0",
        probe: Probe::Package,
    },
    Client {
        package: "gstreamer1.0-plugins-good",
        probe: Probe::Package,
    },
    Client {
        package: "gstreamer1.0-plugins-bad",
        probe: Probe::Package,
    },
    Client {
        package: "gstreamer1.0-plugins-ugly",
        probe: Probe::Package,
    },
    Client {
        package: "gstreamer1.0-libav",
        probe: Probe::Package,
    },
    // GStreamer as an RTSP client of the server (rtspclientsink publishes,
    // rtspsrc plays): gst-launch-1.0 and the RTSP plugins.
    Client {
        package: "gstreamer1.0-tools",
        probe: Probe::Command("gst-launch-1.0"),
    },
    Client {
        package: "gstreamer1.0-rtsp",
        probe: Probe::Package,
    },
    // The WHEP viewer of tests/webrtc_clients.rs (tests/helpers/aiortc_whep.py).
    Client {
        package: "python3-aiortc",
        probe: Probe::Package,
    },
    // The WHIP publisher of tests/gst_whip.rs (tests/helpers/gst_whip_publish.py):
    // webrtcbin from Python, its ICE (libnice) and its ECDSA certificate.
    Client {
        package: "gir1.2-gst-plugins-bad-1.0",
        probe: Probe::Package,
    },
    Client {
        package: "gstreamer1.0-nice",
        probe: Probe::Package,
    },
    Client {
        package: "python3-cryptography",
        probe: Probe::Package,
    },
    // The cluster tests run their own etcd; etcd-client builds with protoc.
    Client {
        package: "etcd-server",
        probe: Probe::Command("etcd"),
    },
    Client {
        package: "protobuf-compiler",
        probe: Probe::Command("protoc"),
    },
    // tidewater-transcode (AAC <-> Opus) links FFmpeg's libraries through
    // ffmpeg-next, whose binding runs bindgen (clang) and pkg-config.
    Client {
        package: "pkg-config",
        probe: Probe::Command("pkg-config"),
    },
    Client {
        package: "clang",
        probe: Probe::Command("clang"),
    },
    Client {
        package: "libclang-dev",
        probe: Probe::Package,
    },
    Client {
        package: "libavcodec-dev",
        probe: Probe::Package,
    },
    Client {
        package: "libavformat-dev",
        probe: Probe::Package,
    },
    Client {
        package: "libavutil-dev",
        probe: Probe::Package,
    },
    Client {
        package: "libswresample-dev",
        probe: Probe::Package,
    },
];

#[derive(Debug, Clone, Copy)]
pub(crate) struct Client {
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

/// Installs the missing real clients (as root on Debian/Ubuntu), or fails
/// naming the packages to install.
pub(crate) fn ensure_clients(ws: &Workspace) -> Result<()> {
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
pub(crate) fn ensure_players(ws: &Workspace) -> Result<()> {
    let web = ws.root.join("tests/web");
    let lock = web.join("package-lock.json");
    // npm copies the lockfile into node_modules on every install: equal
    // contents mean this exact set is installed.
    let installed = web.join("node_modules/.package-lock.json");
    let wanted = std::fs::read(&lock).with_context(|| format!("reading {}", lock.display()))?;
    if let Ok(have) = std::fs::read(&installed)
        && lockfile_packages(&have) == lockfile_packages(&wanted)
    {
        eprintln!("xtask: browser players present");
        return Ok(());
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
pub(crate) fn ensure_component(ws: &Workspace, subcommand: &str, component: &str) -> Result<()> {
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
pub(crate) fn ensure_cargo_tool(ws: &Workspace, subcommand: &str, krate: &str) -> Result<()> {
    if ws.quiet_ok(ws.cargo().args([subcommand, "--version"])) {
        return Ok(());
    }
    eprintln!("xtask: `cargo {subcommand}` not found; installing {krate} (takes minutes)");
    ws.run(ws.cargo().args(["install", "--locked", krate]))
}

/// A `cargo install` running in the background, its output in a log file.
/// Dropped without `wait` (an earlier step failed), it is stopped.
#[derive(Debug)]
pub(crate) struct Install {
    child: Option<Child>,
    krate: &'static str,
    log: PathBuf,
}

impl Install {
    pub(crate) fn start_if_missing(
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

    pub(crate) fn wait(mut self) -> Result<()> {
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
        for line in lines.iter().skip(lines.len().saturating_sub(40)) {
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

fn is_root() -> bool {
    // `Uid:` lists the real, effective, saved and filesystem ids; apt-get
    // cares about the effective one.
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(line) = status.lines().find(|l| l.starts_with("Uid:"))
    {
        return line.split_whitespace().nth(2) == Some("0");
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
    fn clients_are_well_formed() {
        for client in CLIENTS {
            assert!(!client.package.is_empty());
        }
    }
}
