//! GStreamer's webrtcbin as a WHIP publisher:
//! `tests/helpers/gst_whip_publish.py` under a Python that has GStreamer's
//! WebRTC bindings. `tests/tests/whip_codecs.rs` starts it here; the other
//! tests that start it (`gst_whip`, `rtsp_from_whip`, `whep_codecs`) may
//! too, rather than each finding the Python and the script again.

use std::time::Duration;

use crate::child_lines::ChildLines;
use crate::python::python_with;
use crate::workspace_root;

/// Starts the helper publishing to the WHIP endpoint `url` for `seconds`,
/// with `extra` options (`--h265`, …); its output lines are kept for
/// checks and failure messages. Panics, naming what to install, without a
/// Python that has the bindings.
pub fn spawn_gst_whip_publish(url: &str, seconds: u32, extra: &[&str]) -> ChildLines {
    let check = "import gi, cryptography; gi.require_version('GstWebRTC', '1.0'); \
                 from gi.repository import GstWebRTC";
    let mut cmd = python_with(
        check,
        "GStreamer's WebRTC bindings (python3-gi, gir1.2-gst-plugins-bad-1.0, python3-cryptography)",
    );
    cmd.arg(workspace_root().join("tests/helpers/gst_whip_publish.py"))
        .arg(url)
        .arg(seconds.to_string())
        .args(extra);
    ChildLines::spawn(cmd)
}

/// The HTTP status the helper printed for its offer (`status 201`), waited
/// for up to `timeout`; `None` when it printed none by then.
pub fn whip_status(publisher: &mut ChildLines, timeout: Duration) -> Option<String> {
    publisher.wait_for_match(timeout, |l| l.strip_prefix("status ").map(str::to_owned))
}
