//! The server's `/metrics`, parsed with a Prometheus text parser, and the
//! process figures the chaos tests watch from outside (open descriptors,
//! the descriptor limit).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;

use crate::try_http_get;

/// One scrape of `/metrics`: every sample's family name (counters without
/// their `_total`, as the parser gives them), labels and value.
#[derive(Debug, Default)]
pub struct Scrape {
    samples: Vec<(String, HashMap<String, String>, f64)>,
}

impl Scrape {
    /// `GET http://{http}/metrics`, parsed; panics if it fails or does not parse.
    pub fn get(http: SocketAddr) -> Scrape {
        let r = try_http_get(&format!("http://{http}/metrics")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status, 200, "/metrics: {}", r.body);
        let parsed = prometheus_parse::Scrape::parse(r.body.lines().map(|l| Ok(l.to_string())))
            .unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{}", r.body));
        let samples = parsed
            .samples
            .into_iter()
            .filter_map(|s| {
                let v = match s.value {
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v) => v,
                    _ => return None,
                };
                let labels = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                Some((s.metric, labels, v))
            })
            .collect();
        Scrape { samples }
    }

    /// The sum of the samples of `family` (with or without `_total`) whose
    /// labels include every one of `labels`; 0 when there are none.
    pub fn sum(&self, family: &str, labels: &[(&str, &str)]) -> f64 {
        let bare = family.strip_suffix("_total").unwrap_or(family);
        self.samples
            .iter()
            .filter(|(name, _, _)| name == bare || name == family)
            .filter(|(_, l, _)| {
                labels
                    .iter()
                    .all(|(k, v)| l.get(*k).is_some_and(|x| x == v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }
}

/// Open file descriptors of process `pid` (Linux `/proc`); panics if it
/// cannot be read.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("cannot list /proc/{pid}/fd: {e}"))
        .count()
}

/// Raises this process's soft limit of open files to at least `wanted`
/// (within the hard limit; with `prlimit`, from util-linux), so the test and
/// the servers it starts afterwards (they inherit it) can hold that many;
/// panics if the limit stays below `wanted`.
pub fn raise_fd_limit(wanted: u64) {
    let pid = std::process::id().to_string();
    let read = |which: &str| -> u64 {
        let out = Command::new("prlimit")
            .args(["--pid", &pid, "--nofile", "--noheadings", "--raw"])
            .args(["-o", which])
            .output()
            .unwrap_or_else(|e| panic!("cannot run prlimit (util-linux): {e}"));
        let text = String::from_utf8_lossy(&out.stdout);
        let text = text.trim();
        if text == "unlimited" {
            u64::MAX
        } else {
            text.parse()
                .unwrap_or_else(|e| panic!("prlimit -o {which}: {text:?}: {e}"))
        }
    };
    if read("SOFT") >= wanted {
        return;
    }
    let hard = read("HARD");
    assert!(
        hard >= wanted,
        "the hard limit of open files is {hard}, below the {wanted} this test needs: raise it (ulimit -Hn)"
    );
    let status = Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={wanted}:{hard}")])
        .status()
        .unwrap_or_else(|e| panic!("cannot run prlimit: {e}"));
    assert!(status.success(), "prlimit --nofile={wanted}: {status}");
    assert!(read("SOFT") >= wanted, "the soft limit did not rise");
}
