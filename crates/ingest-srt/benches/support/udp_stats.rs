//! The kernel's UDP counters the SRT bench reads around its window, to say
//! where datagrams were lost or waited: the system's receive-buffer drops
//! (`/proc/net/snmp`, `Udp: RcvbufErrors`) and, per process, its UDP
//! sockets' drops and queues (`/proc/net/udp`, `/proc/net/udp6`, matched by
//! the socket inodes of `/proc/PID/fd`).
//!
//! On loopback a datagram sent stays charged to the sender's socket
//! (`tx_queue`) until the receiver reads it: the server's one listening
//! socket's `tx_queue` is therefore what its readers have not read yet,
//! and sends fail with `EAGAIN` once it reaches the socket's send buffer.

use std::collections::HashSet;

/// `Udp: RcvbufErrors` of `/proc/net/snmp`: datagrams dropped, system-wide,
/// because a receiving socket's buffer was full.
pub fn rcvbuf_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next()?, udp.next()?);
    let at = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// What a process's UDP sockets hold, summed over them.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sockets {
    /// Datagrams dropped on receive since each socket was made.
    pub drops: u64,
    /// Bytes sent and not yet read by their receivers (loopback).
    pub tx_queue: u64,
    /// Bytes received and not yet read by the process.
    pub rx_queue: u64,
    /// How many sockets.
    pub count: usize,
}

/// The UDP sockets of process `pid` (all of them, IPv4 and IPv6).
pub fn of_process(pid: u32) -> Sockets {
    let inodes: HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    let mut s = Sockets::default();
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
            let f: Vec<&str> = line.split_whitespace().collect();
            let Some(inode) = f.get(9).and_then(|v| v.parse::<u64>().ok()) else {
                continue;
            };
            if !inodes.contains(&inode) {
                continue;
            }
            let hex = |v: &str| u64::from_str_radix(v, 16).unwrap_or(0);
            let (tx, rx) = f
                .get(4)
                .and_then(|q| q.split_once(':'))
                .unwrap_or(("0", "0"));
            s.tx_queue += hex(tx);
            s.rx_queue += hex(rx);
            s.drops += f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
            s.count += 1;
        }
    }
    s
}
