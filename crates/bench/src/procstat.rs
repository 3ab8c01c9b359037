//! Process and CPU accounting from `/proc` for the load tools: a process
//! tree's CPU time, every CPU's busy and softirq time, per-CPU kernel
//! threads, and nearest-rank percentiles, shared by `rtmp-load` and `rtsp-load`.

use std::process::Command;

/// Nearest-rank percentile of sorted values (`NaN` for none).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `getconf CLK_TCK` (the unit of `/proc/PID/stat` times), 100 if unknown.
pub fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(100.0)
}

/// utime + stime, in clock ticks, of the given processes and all their
/// descendants (each process's figure covers all its threads); `None` when
/// none of them exists.
pub fn tree_cpu_ticks(roots: &[u32]) -> Option<u64> {
    let mut procs: Vec<(u32, u32, u64)> = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((ppid, ticks)) = parse_stat(&stat) {
            procs.push((pid, ppid, ticks));
        }
    }
    let mut members: Vec<u32> = roots
        .iter()
        .copied()
        .filter(|r| procs.iter().any(|p| p.0 == *r))
        .collect();
    if members.is_empty() {
        return None;
    }
    let mut i = 0;
    while i < members.len() {
        let parent = members[i];
        for p in &procs {
            if p.1 == parent && !members.contains(&p.0) {
                members.push(p.0);
            }
        }
        i += 1;
    }
    Some(
        procs
            .iter()
            .filter(|p| members.contains(&p.0))
            .map(|p| p.2)
            .sum(),
    )
}

/// One CPU's counters from `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTicks {
    /// user + nice + system + irq + softirq (not idle, iowait or steal).
    pub busy: u64,
    /// softirq alone.
    pub softirq: u64,
}

/// Every CPU's counters (`cpu0`, `cpu1`, … in order), empty where unknown.
///
/// A process's utime + stime add up to its scheduler run time, which (without
/// IRQ time accounting, as on the kernels measured) includes softirq work run
/// in its context: on loopback, the receiving half of every TCP segment it
/// sends. The pinned CPU's busy time beyond the server's own CPU is work the
/// server did not do (other processes, timers): a check that the server had
/// its CPU to itself.
pub fn cpu_ticks() -> Vec<CpuTicks> {
    std::fs::read_to_string("/proc/stat")
        .map(|s| parse_proc_stat(&s))
        .unwrap_or_default()
}

/// The per-CPU lines of a `/proc/stat` text.
pub fn parse_proc_stat(text: &str) -> Vec<CpuTicks> {
    text.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .filter_map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .map(|v| v.parse().unwrap_or(0))
                .collect();
            // user nice system idle iowait irq softirq steal …
            let at = |i: usize| f.get(i).copied().unwrap_or(0);
            (f.len() >= 7).then(|| CpuTicks {
                busy: at(0) + at(1) + at(2) + at(5) + at(6),
                softirq: at(6),
            })
        })
        .collect()
}

/// CPU time (clock ticks) of the per-CPU kernel threads (`ksoftirqd/N`,
/// `kworker/N:…`, …), indexed by their CPU. On a CPU that runs only the
/// server they mostly do its network work: softirqs deferred to
/// `ksoftirqd` when there are many, TCP timers.
pub fn kthread_ticks() -> Vec<u64> {
    let mut per_cpu: Vec<u64> = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return per_cpu;
    };
    for entry in dir.flatten() {
        if !entry
            .file_name()
            .to_str()
            .is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((ppid, ticks)) = parse_stat(&stat) else {
            continue;
        };
        // Kernel threads are children of kthreadd (pid 2).
        if ppid != 2 {
            continue;
        }
        if let Some(cpu) = kthread_cpu(&stat) {
            if per_cpu.len() <= cpu {
                per_cpu.resize(cpu + 1, 0);
            }
            per_cpu[cpu] += ticks;
        }
    }
    per_cpu
}

/// The CPU a per-CPU kernel thread is bound to, from its name in a
/// `/proc/PID/stat` line: `ksoftirqd/3` → 3, `kworker/1:2H-events` → 1;
/// `None` for unbound ones (`kworker/u8:0`).
pub fn kthread_cpu(stat: &str) -> Option<usize> {
    let name = &stat[stat.find('(')? + 1..stat.rfind(')')?];
    let after = &name[name.find('/')? + 1..];
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// `(ppid, utime + stime)` from a `/proc/PID/stat` line.
pub fn parse_stat(stat: &str) -> Option<(u32, u64)> {
    // The command name is in parentheses and may contain anything.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) … utime(11) stime(12).
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// The CPU counters a load tool reads at both ends of its measuring window:
/// the server's process trees, the tool's own process, every CPU and the
/// per-CPU kernel threads.
#[derive(Debug, Clone)]
pub struct CpuSample {
    server: Option<u64>,
    own: Option<u64>,
    cpus: Vec<CpuTicks>,
    kthreads: Vec<u64>,
}

impl CpuSample {
    /// Reads the counters now; `server_pids` may be empty (no server figure).
    pub fn take(server_pids: &[u32]) -> CpuSample {
        CpuSample {
            server: if server_pids.is_empty() {
                None
            } else {
                tree_cpu_ticks(server_pids)
            },
            own: tree_cpu_ticks(&[std::process::id()]),
            cpus: cpu_ticks(),
            kthreads: kthread_ticks(),
        }
    }

    /// The server's CPU ticks at this sample (`None` without server pids).
    pub fn server_ticks(&self) -> Option<u64> {
        self.server
    }
}

/// What the processes and CPUs used between two [`CpuSample`]s, in cores
/// (CPU-seconds per second of the window).
#[derive(Debug, Clone)]
pub struct CpuWindow {
    /// The server's process trees.
    pub server: Option<f64>,
    /// The load tool itself.
    pub own: Option<f64>,
    /// Per CPU, comma-separated: busy (user, nice, system, irq, softirq).
    pub busy: String,
    /// Per CPU, comma-separated: softirq alone.
    pub softirq: String,
    /// Per CPU, comma-separated: that CPU's kernel threads.
    pub kthreads: String,
}

impl CpuWindow {
    /// The use between `start` and `end`, `secs` apart; `clk_tck` from
    /// [`clock_ticks_per_second`].
    pub fn between(start: &CpuSample, end: &CpuSample, clk_tck: f64, secs: f64) -> CpuWindow {
        let cores = |ticks: u64| ticks as f64 / clk_tck / secs;
        let tree = |a: Option<u64>, b: Option<u64>| Some(cores(b?.saturating_sub(a?)));
        let per_cpu = |pick: fn(&CpuTicks) -> u64| -> String {
            start
                .cpus
                .iter()
                .zip(&end.cpus)
                .map(|(a, b)| format!("{:.3}", cores(pick(b).saturating_sub(pick(a)))))
                .collect::<Vec<_>>()
                .join(",")
        };
        let kthreads = (0..end.cpus.len())
            .map(|i| {
                let at = |v: &[u64]| v.get(i).copied().unwrap_or(0);
                format!(
                    "{:.3}",
                    cores(at(&end.kthreads).saturating_sub(at(&start.kthreads)))
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        CpuWindow {
            server: tree(start.server, end.server),
            own: tree(start.own, end.own),
            busy: per_cpu(|c| c.busy),
            softirq: per_cpu(|c| c.softirq),
            kthreads,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_and_process_trees() {
        let line = "1234 (a (b) c) S 77 1234 1234 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 3 0 \
                    5000 1000000 500 18446744073709551615";
        assert_eq!(parse_stat(line), Some((77, 280)));
        assert_eq!(parse_stat("garbage"), None);
        if cfg!(target_os = "linux") {
            let me = std::process::id();
            let a = tree_cpu_ticks(&[me]).expect("own stat");
            assert!(tree_cpu_ticks(&[me]).expect("own stat") >= a);
            assert_eq!(tree_cpu_ticks(&[u32::MAX]), None);
        }
    }

    #[test]
    fn proc_stat_cpus_and_kernel_threads() {
        let text = "cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 10 1 5 100 7 2 3 4 0 0\n\
                    cpu1 20 0 6 90 1 0 1 0 0 0\nintr 5 5\n";
        let cpus = parse_proc_stat(text);
        assert_eq!(
            cpus.iter().map(|c| (c.busy, c.softirq)).collect::<Vec<_>>(),
            vec![(21, 3), (27, 1)]
        );
        assert_eq!(kthread_cpu("14 (ksoftirqd/0) S 2 0 0"), Some(0));
        assert_eq!(kthread_cpu("12 (kworker/u8:0-kv) I 2 0"), None);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 100.0);
        assert_eq!(percentile(&v, 0.99), 198.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
