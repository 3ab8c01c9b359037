//! The Python interpreter the tests' helper scripts run on (GStreamer's
//! RTSP server and WebRTC bindings, aiortc), found once per script kind by
//! the imports the script needs.

use std::process::{Command, Stdio};

/// A `Command` for the first of `/usr/bin/python3` and `python3` that runs
/// `check` (the imports a helper script needs) cleanly; panics naming
/// `packages` (what `cargo xtask install` provides) when none does.
pub fn python_with(check: &str, packages: &str) -> Command {
    let python = ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .args(["-c", check])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .unwrap_or_else(|| panic!("python3 with {packages}: cargo xtask install"));
    Command::new(python)
}
