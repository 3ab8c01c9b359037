//! Helpers shared by tidewater's benchmarks: resident-memory probes, medians,
//! the machine description and the date printed next to every result.
//!
//! The benchmarks themselves live in `benches/` (run them with
//! `cargo xtask bench fanout`, or `cargo bench -p tidewater-bench --bench fanout`);
//! each reports its figures as ratios against an anchor measured in the same
//! process run. See `BENCHMARKS.md` at the repository root for results.
//!
//! The RTMP viewer benchmark (`cargo xtask bench rtmp`, `benches/rtmp.rs`)
//! drives servers with the `rtmp-load` binary (`src/bin/rtmp-load.rs`), whose
//! protocol side is [`rtmp`]. The RTSP reader benchmark (`cargo xtask bench
//! rtsp`, `benches/rtsp.rs`) does the same with `rtsp-load`
//! (`src/bin/rtsp-load.rs`, protocol side [`rtsp`], `/proc` accounting
//! [`procstat`]) against gst-rtsp-server; its harness's process and clip
//! helpers are [`harness`]; `--topology veth` (server and load tool in
//! two network namespaces, each side's receive work on its own CPU) is
//! [`topology`]. The RTSP and SRT benches' `--nice` sets the bench's
//! session's autogroup niceness through [`sched`].

pub mod harness;
pub mod procstat;
pub mod rtmp;
pub mod rtsp;
pub mod sched;
pub mod topology;

use std::time::{SystemTime, UNIX_EPOCH};

/// Resident set size of this process in bytes, from `/proc/self/status`
/// (`VmRSS`), or `None` where that file does not exist.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

/// CPU time used so far by every live thread of this process, in
/// nanoseconds (the first field of each `/proc/self/task/*/schedstat`), or
/// `None` where those files do not exist.
pub fn process_cpu_ns() -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let Ok(task) = task else { continue };
        let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        total += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(total)
}

/// The `VmRSS` line of a `/proc/<pid>/status` text, in bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut fields = line.split_whitespace().skip(1);
    let value: u64 = fields.next()?.parse().ok()?;
    let unit = fields.next().unwrap_or("kB");
    let scale = match unit {
        "kB" | "KB" | "kb" => 1024,
        "mB" | "MB" => 1024 * 1024,
        _ => 1,
    };
    Some(value * scale)
}

/// The median of `values` (the mean of the two middle ones for an even
/// count); `NaN` for none.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// A rate in frames per second, compactly: `41.3 M`, `812 k`.
pub fn format_rate(per_sec: f64) -> String {
    if per_sec >= 1e6 {
        format!("{:.2} M", per_sec / 1e6)
    } else if per_sec >= 1e3 {
        format!("{:.1} k", per_sec / 1e3)
    } else {
        format!("{per_sec:.0}")
    }
}

/// Thousands separated by a space: `10 000`.
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// The CPU model (from `/proc/cpuinfo`) and the number of CPUs this process may use.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let model = field("model name").unwrap_or_else(|| "unknown CPU".to_string());
    let mhz = field("cpu MHz").and_then(|m| m.parse::<f64>().ok());
    let virtual_machine =
        field("flags").is_some_and(|f| f.split_whitespace().any(|x| x == "hypervisor"));
    let mut out = format!("{cpus} CPUs, {model}");
    if let Some(mhz) = mhz {
        out.push_str(&format!(" @ {:.1} GHz", mhz / 1000.0));
    }
    if virtual_machine {
        out.push_str(", virtual machine");
    }
    out
}

/// Today's date (UTC) as `YYYY-MM-DD`.
pub fn today_utc() -> String {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The proleptic Gregorian date of a day number counted from 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t  1234 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss(status), Some(1234 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn rss_of_this_process_is_known_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(rss_bytes().is_some_and(|b| b > 0));
        }
    }

    #[test]
    fn cpu_time_of_this_process_grows_on_linux() {
        if cfg!(target_os = "linux") {
            let before = process_cpu_ns().unwrap_or(0);
            let mut x = 0u64;
            for i in 0..2_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            assert!(process_cpu_ns().unwrap_or(0) > before, "{x}");
        }
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn formatting() {
        assert_eq!(format_rate(41_260_000.0), "41.26 M");
        assert_eq!(format_rate(812_340.0), "812.3 k");
        assert_eq!(format_rate(12.0), "12");
        assert_eq!(group_thousands(10_000), "10 000");
        assert_eq!(group_thousands(100), "100");
        assert_eq!(group_thousands(1_000_000), "1 000 000");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }
}
