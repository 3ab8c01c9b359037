//! The scheduler's view of a process, for the benches (SRT, RTSP): how long its
//! threads ran and how long they were ready to run but waited for a CPU
//! (`/proc/PID/task/*/schedstat`), and the session-wide niceness Linux's
//! autogroups apply.
//!
//! With `kernel.sched_autogroup_enabled` (the default on most
//! distributions) a process's niceness only orders it within its session:
//! each session (an engineer's shell, a build) gets an equal share of a
//! busy CPU whatever its processes' niceness. `renice` alone then does
//! not give the measured server its CPU back; the session's own niceness
//! (`/proc/self/autogroup`) does. The processes a bench starts stay in its
//! session and share its autogroup, so [`AutogroupNice`] moves them with
//! it; started under `setsid`, the bench's session (and autogroup) is its
//! own and leaves the shell it came from alone.

/// Nanoseconds the threads of `pid` ran and waited on a run queue, summed.
pub fn run_and_wait_ns(pid: u32) -> Option<(u64, u64)> {
    let mut sum = (0u64, 0u64);
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        let mut f = s.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(0));
        sum.0 += f.next().unwrap_or(0);
        sum.1 += f.next().unwrap_or(0);
    }
    Some(sum)
}

/// Sets this session's autogroup niceness to `nice` while it lives, and
/// puts the previous value back when dropped. Does nothing (and says so)
/// where autogroups are off or the file cannot be written.
#[derive(Debug)]
pub struct AutogroupNice {
    previous: Option<i32>,
}

impl AutogroupNice {
    /// Applies `nice` to this process's autogroup.
    pub fn set(nice: i32) -> AutogroupNice {
        let enabled = std::fs::read_to_string("/proc/sys/kernel/sched_autogroup_enabled")
            .is_ok_and(|s| s.trim() == "1");
        let previous = enabled
            .then(|| std::fs::read_to_string("/proc/self/autogroup").ok())
            .flatten()
            .and_then(|s| s.rsplit_once("nice ")?.1.trim().parse().ok());
        match previous {
            Some(_) if std::fs::write("/proc/self/autogroup", nice.to_string()).is_ok() => {
                eprintln!("bench: this session's autogroup runs at niceness {nice}");
                AutogroupNice { previous }
            }
            _ => {
                eprintln!("bench: autogroup niceness not set (autogroups off, or not permitted)");
                AutogroupNice { previous: None }
            }
        }
    }
}

impl Drop for AutogroupNice {
    fn drop(&mut self) {
        if let Some(n) = self.previous {
            let _ = std::fs::write("/proc/self/autogroup", n.to_string());
        }
    }
}
