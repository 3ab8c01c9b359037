//! `cargo xtask bench <name> [args…]`: one benchmark against its anchor.

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

use std::ffi::OsString;

use anyhow::{Result, bail};

use crate::cmd::Workspace;

/// Benchmarks reachable as `cargo xtask bench <name>`.
const BENCHES: &[Bench] = &[
    Bench {
        name: "fanout",
        about: "stream bus fan-out against the arcly-stream anchor (criterion)",
        run: |ws, args| criterion(ws, "tidewater-bench", "fanout", args),
    },
    Bench {
        name: "rtmp",
        about: "RTMP viewers per core: the tidewater server against nginx-rtmp (rtmp-load); \
                --auth: join time with and without [[auth.users]]",
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
        name: "metrics",
        about: "/metrics render time at 1 000 live streams against registered prometheus-client metrics",
        run: |ws, args| criterion(ws, "tidewater-bench", "metrics", args),
    },
    Bench {
        name: "whep",
        about: "WHEP viewers of one 2 Mbit/s H.264 stream: server CPU, viewers keeping up, \
                publish -> RTP latency p50/p99, join time (str0m viewers in the bench process)",
        run: |ws, args| criterion(ws, "tidewater-whip", "whep", args),
    },
    Bench {
        name: "webrtc",
        about: "the same as `whep` (the name the WebRTC issue uses)",
        run: |ws, args| criterion(ws, "tidewater-whip", "whep", args),
    },
    Bench {
        name: "srt",
        about: "SRT readers per core for one 4 Mbit/s stream; SRT in -> SRT out latency p50/p99",
        run: |ws, args| criterion(ws, "tidewater-ingest-srt", "srt", args),
    },
    Bench {
        name: "rtsp",
        about: "RTSP readers per core for one 2 Mbit/s stream (TCP and UDP) against \
                gst-rtsp-server; RTSP in -> RTSP out latency, join time; --topology veth: \
                server and load tool in two network namespaces, receive work on each side's CPU",
        run: |ws, args| criterion(ws, "tidewater-bench", "rtsp", args),
    },
    Bench {
        name: "record",
        about: "recording CPU per stream-second against ffmpeg's segment muxer; list and range \
                times over 30 days of 60 s segments",
        run: |ws, args| criterion(ws, "tidewater-bench", "record", args),
    },
];

#[derive(Debug, Clone, Copy)]
struct Bench {
    name: &'static str,
    about: &'static str,
    run: fn(&Workspace, &[OsString]) -> Result<()>,
}

pub(crate) fn bench(ws: &Workspace, args: &[OsString]) -> Result<()> {
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
    (bench.run)(ws, args.get(1..).unwrap_or_default())
}

/// A criterion benchmark: `cargo bench -p <package> --bench <bench> -- args…`.
fn criterion(ws: &Workspace, package: &str, bench: &str, args: &[OsString]) -> Result<()> {
    ws.run(
        ws.cargo()
            .args(["bench", "-p", package, "--bench", bench, "--"])
            .args(args),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn benches_are_well_formed() {
        let mut names = BTreeSet::new();
        for bench in BENCHES {
            assert!(names.insert(bench.name), "duplicate bench {}", bench.name);
        }
    }
}
