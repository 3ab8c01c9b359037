//! Where a benchmark's server and load tool talk: over loopback (the
//! default) or over a veth pair between two network namespaces the bench
//! makes (`--topology veth`), each side's receive work on its own CPU.
//!
//! On loopback a send runs the receiver's whole kernel receive path
//! (netif_rx → backlog → softirq → udp_rcv / tcp_v4_rcv) on the *sending*
//! CPU: a server pinned to CPU 0 is charged for its readers' receive work,
//! which on a real network runs on the viewers' machines. With
//! [`Topology::Veth`] the server (and its anchor) run in a "server"
//! namespace and the load tool in a "client" namespace, joined by a veth
//! pair with a private /30; RPS on each veth's receive queue steers that
//! side's receive work to that side's CPU. The server's CPU then holds its
//! own send path and its own receive path only.
//!
//! Namespaces are named `twbench{pid}-{n}-srv` / `-cli` and removed when
//! the [`Net`] drops (on a panic's unwinding too); the ones an earlier run
//! left when it was killed (Ctrl-C, SIGKILL) are removed by the next one
//! at start-up, recognised by the prefix and a pid that no longer runs.
//! Needs root and iproute2's `ip`.
//!
//! ```no_run
//! use tidewater_bench::topology::{Net, Topology};
//! # fn main() -> Result<(), String> {
//! let net = Net::new(Topology::Veth, 0, 1)?;
//! let mut server = net.server(tidewater_bench::harness::pinned(0, None, "my-server"));
//! server.arg(format!("--listen={}:8554", net.server_ip()));
//! let load = net.client(tidewater_bench::harness::pinned(1, None, "my-load-tool"));
//! # let _ = load;
//! # Ok(())
//! # }
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The first characters of every namespace a bench makes.
pub const PREFIX: &str = "twbench";
/// The veth's name on both sides (each in its own namespace).
const DEV: &str = "tw0";

/// How a benchmark's processes reach each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Topology {
    /// Everything in the machine's namespace, on 127.0.0.1.
    #[default]
    Loopback,
    /// Server and client namespaces joined by a veth pair, RPS steering
    /// each side's receive work to that side's CPU.
    Veth,
}

impl Topology {
    /// `loopback` or `veth`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "loopback" | "lo" => Ok(Topology::Loopback),
            "veth" => Ok(Topology::Veth),
            other => Err(format!("--topology {other:?}: loopback or veth")),
        }
    }

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Topology::Loopback => "loopback",
            Topology::Veth => "veth",
        }
    }
}

/// The network a benchmark runs on; a veth topology's namespaces are
/// removed when it drops.
#[derive(Debug)]
pub struct Net {
    veth: Option<Veth>,
}

#[derive(Debug)]
struct Veth {
    server_ns: String,
    client_ns: String,
    server_ip: Ipv4Addr,
    client_ip: Ipv4Addr,
    server_cpu: usize,
    client_cpu: usize,
}

/// Runs `ip ARGS`, with its complaint as the error.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2; --topology veth needs it): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed (--topology veth needs root): {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The pid in a bench namespace's name (`twbench{pid}-…`).
pub fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

/// Deletes bench namespaces whose process is gone (a run killed before
/// its [`Net`] dropped).
pub fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = owner_pid(name) else { continue };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("bench: removing namespace {name} left by an earlier run");
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// The hexadecimal CPU mask of one CPU, as `rps_cpus` takes it.
pub fn cpu_mask(cpu: usize) -> String {
    // Groups of 32 bits separated by commas for CPUs past 31.
    let mut words = vec![0u32; cpu / 32 + 1];
    words[cpu / 32] = 1 << (cpu % 32);
    words
        .iter()
        .rev()
        .map(|w| format!("{w:x}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl Net {
    /// The network of `topology`; for veth, makes the two namespaces with
    /// the server side's receive work steered to `server_cpu` and the
    /// client side's to `client_cpu`.
    pub fn new(topology: Topology, server_cpu: usize, client_cpu: usize) -> Result<Self, String> {
        match topology {
            Topology::Loopback => Ok(Net { veth: None }),
            Topology::Veth => Veth::make(server_cpu, client_cpu).map(|v| Net { veth: Some(v) }),
        }
    }

    /// [`Net::new`], then [`Net::receive_cpus`] checked against what the
    /// topology claims (loopback: the sender's CPU; veth: the receiver's),
    /// so that a benchmark never reports figures from a topology that does
    /// not hold; the CPUs measured, for the report.
    pub fn checked(
        topology: Topology,
        server_cpu: usize,
        client_cpu: usize,
    ) -> Result<(Net, (usize, usize)), String> {
        if topology == Topology::Veth {
            for tool in ["ip", "python3"] {
                if !crate::harness::have(tool) {
                    return Err(format!(
                        "{tool} is not installed (--topology veth needs it)"
                    ));
                }
            }
        }
        let net = Net::new(topology, server_cpu, client_cpu)?;
        let measured = net.receive_cpus(server_cpu, client_cpu)?;
        let expected = match topology {
            Topology::Loopback => (client_cpu, server_cpu),
            Topology::Veth => (server_cpu, client_cpu),
        };
        if server_cpu != client_cpu && measured != expected {
            return Err(format!(
                "{}: the kernel received client → server on CPU {} and server → client on CPU \
                 {}, not {} and {}",
                net.describe(),
                measured.0,
                measured.1,
                expected.0,
                expected.1
            ));
        }
        Ok((net, measured))
    }

    /// The topology this is.
    pub fn topology(&self) -> Topology {
        if self.veth.is_some() {
            Topology::Veth
        } else {
            Topology::Loopback
        }
    }

    /// The address servers listen on and clients connect to.
    pub fn server_ip(&self) -> IpAddr {
        self.veth
            .as_ref()
            .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |v| IpAddr::V4(v.server_ip))
    }

    /// The address a server binds: 127.0.0.1 on loopback; in the server
    /// namespace, whose only interfaces are its own loopback and the veth,
    /// 0.0.0.0, so that a publisher next to the server still comes from
    /// 127.0.0.1 (as servers want for an anonymous publish) while readers
    /// come across the veth.
    pub fn listen_ip(&self) -> IpAddr {
        if self.veth.is_some() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        }
    }

    /// The client side's address (the load tool's source address).
    pub fn client_ip(&self) -> IpAddr {
        self.veth
            .as_ref()
            .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |v| IpAddr::V4(v.client_ip))
    }

    /// The server namespace's name, if there is one.
    pub fn server_namespace(&self) -> Option<&str> {
        self.veth.as_ref().map(|v| v.server_ns.as_str())
    }

    /// The client namespace's name, if there is one.
    pub fn client_namespace(&self) -> Option<&str> {
        self.veth.as_ref().map(|v| v.client_ns.as_str())
    }

    /// `cmd` to run on the server side (`ip netns exec` execs it, so the
    /// child's pid is still the program's). Its program, arguments,
    /// environment and directory carry over, its stdio does not (`Command`
    /// does not tell it): wrap first, then set stdio.
    pub fn server(&self, cmd: Command) -> Command {
        within(self.server_namespace(), cmd)
    }

    /// `cmd` to run on the client side.
    pub fn client(&self, cmd: Command) -> Command {
        within(self.client_namespace(), cmd)
    }

    /// Whether something accepts TCP at `addr`, tried from the client side.
    pub fn accepts(&self, addr: SocketAddr) -> bool {
        match self.client_namespace() {
            None => std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok(),
            // bash's /dev/tcp: a connect from inside the namespace, with no
            // tool beyond the shell.
            Some(ns) => Command::new("ip")
                .args(["netns", "exec", ns, "timeout", "1", "bash", "-c"])
                .arg(format!("exec 3<>/dev/tcp/{}/{}", addr.ip(), addr.port()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
        }
    }

    /// Waits until something accepts TCP at the server's `port` (from the
    /// client side), while `alive` says the server runs, for up to `limit`.
    pub fn wait_listening(
        &self,
        port: u16,
        limit: Duration,
        mut alive: impl FnMut() -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let addr = SocketAddr::new(self.server_ip(), port);
        loop {
            if !alive() {
                return Err(format!("the server exited before listening on {addr}"));
            }
            if self.accepts(addr) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("nothing listens on {addr} after {limit:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One line for a report: the topology and, for veth, the addresses
    /// and where each side's receive work is steered.
    pub fn describe(&self) -> String {
        match &self.veth {
            None => "loopback (127.0.0.1): a sender's CPU runs its receiver's kernel receive path"
                .into(),
            Some(v) => format!(
                "veth between namespaces {} ({}, receive work on CPU {}) and {} ({}, receive work \
                 on CPU {}) by RPS",
                v.server_ns, v.server_ip, v.server_cpu, v.client_ns, v.client_ip, v.client_cpu
            ),
        }
    }
}

/// Wraps a command to run on one side of a [`Net`].
type Side = fn(&Net, Command) -> Command;

/// The sending half of [`Net::receive_cpus`]'s probe: binds a UDP socket
/// on `argv[1]`, prints its port, reads the receiver's port from stdin and
/// sends it 32 datagrams.
const SENDER: &str = "import socket,sys
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind((sys.argv[1],0))
print(s.getsockname()[1],flush=True)
port=int(sys.stdin.readline())
for _ in range(32): s.sendto(bytes(1000),(sys.argv[2],port))";

/// The receiving half: a UDP socket on `argv[1]` connected to the sender
/// (`argv[2]`:`argv[3]`; the kernel records the receiving CPU for connected
/// sockets only) prints its port, takes one datagram and prints the CPU
/// that ran its kernel receive (`SO_INCOMING_CPU`, 49).
const RECEIVER: &str = "import socket,sys
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind((sys.argv[1],0))
s.connect((sys.argv[2],int(sys.argv[3]))); s.settimeout(10)
print(s.getsockname()[1],flush=True)
s.recv(2048)
print(s.getsockopt(socket.SOL_SOCKET,49),flush=True)";

impl Net {
    /// The CPUs that ran the kernel's receive path for datagrams from the
    /// client to the server and from the server to the client, each sender
    /// pinned to its side's CPU and each receiver to its own (`python3`,
    /// read with `SO_INCOMING_CPU`). On loopback it is the sender's CPU; on
    /// veth with RPS, the receiver's.
    pub fn receive_cpus(
        &self,
        server_cpu: usize,
        client_cpu: usize,
    ) -> Result<(usize, usize), String> {
        let to_server = self.probe(true, server_cpu, client_cpu)?;
        let to_client = self.probe(false, client_cpu, server_cpu)?;
        Ok((to_server, to_client))
    }

    /// One probe towards the server side (`to_server`) or the client side.
    fn probe(&self, to_server: bool, rx_cpu: usize, tx_cpu: usize) -> Result<usize, String> {
        use crate::harness::{Guard, pinned};
        use std::io::{BufRead, Write as _};
        let (rx_ip, tx_ip) = if to_server {
            (self.server_ip(), self.client_ip())
        } else {
            (self.client_ip(), self.server_ip())
        };
        let (rx_side, tx_side): (Side, Side) = if to_server {
            (Net::server, Net::client)
        } else {
            (Net::client, Net::server)
        };
        let line = |out: &mut dyn BufRead, what: &str| -> Result<String, String> {
            let mut text = String::new();
            match out.read_line(&mut text) {
                Ok(n) if n > 0 => Ok(text.trim().to_string()),
                _ => Err(format!("the probe's {what} printed nothing")),
            }
        };
        let mut tx = tx_side(self, pinned(tx_cpu, None, "python3"));
        tx.args(["-c", SENDER, &tx_ip.to_string(), &rx_ip.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut tx = Guard::spawn("probe sender", &mut tx)?;
        let mut tx_out =
            std::io::BufReader::new(tx.take_stdout().ok_or("the sender has no stdout")?);
        let tx_port = line(&mut tx_out, "sender")?;
        let mut rx = rx_side(self, pinned(rx_cpu, None, "python3"));
        rx.args([
            "-c",
            RECEIVER,
            &rx_ip.to_string(),
            &tx_ip.to_string(),
            &tx_port,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
        let mut rx = Guard::spawn("probe receiver", &mut rx)?;
        let mut rx_out =
            std::io::BufReader::new(rx.take_stdout().ok_or("the receiver has no stdout")?);
        let rx_port = line(&mut rx_out, "receiver")?;
        let mut stdin = tx.take_stdin().ok_or("the sender has no stdin")?;
        writeln!(stdin, "{rx_port}").map_err(|e| format!("probe sender: {e}"))?;
        drop(stdin);
        let cpu = line(&mut rx_out, "receiver")?;
        cpu.parse()
            .map_err(|_| format!("the probe's receiver printed {cpu:?}, not a CPU"))
    }
}

/// `ip netns exec NS cmd…`, or `cmd` as it is without a namespace.
fn within(ns: Option<&str>, cmd: Command) -> Command {
    let Some(ns) = ns else { return cmd };
    let mut out = Command::new("ip");
    out.args(["netns", "exec", ns])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => out.env(k, v),
            None => out.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        out.current_dir(dir);
    }
    out
}

impl Veth {
    fn make(server_cpu: usize, client_cpu: usize) -> Result<Veth, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        remove_stale();
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = format!("{PREFIX}{pid}-{n}");
        // A /30 in 10.16.0.0–10.250.255.252 from the clock and the pid, so
        // two runs' addresses never look alike in logs.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let seed = nanos ^ pid.rotate_left(13) ^ n.wrapping_mul(0x9e37_79b9);
        let (a, b, c) = (
            16 + (seed % 235) as u8,
            (seed >> 8) as u8,
            (seed >> 16) as u8 & 0xfc,
        );
        let veth = Veth {
            server_ns: format!("{base}-srv"),
            client_ns: format!("{base}-cli"),
            server_ip: Ipv4Addr::new(10, a, b, c + 1),
            client_ip: Ipv4Addr::new(10, a, b, c + 2),
            server_cpu,
            client_cpu,
        };
        // From here on, a failure drops `veth`, which deletes what exists.
        ip(&["netns", "add", &veth.server_ns])?;
        ip(&["netns", "add", &veth.client_ns])?;
        ip(&[
            "-n",
            &veth.server_ns,
            "link",
            "add",
            DEV,
            "type",
            "veth",
            "peer",
            "name",
            DEV,
            "netns",
            &veth.client_ns,
        ])?;
        for (ns, addr, cpu) in [
            (&veth.server_ns, veth.server_ip, server_cpu),
            (&veth.client_ns, veth.client_ip, client_cpu),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/30"), "dev", DEV])?;
            ip(&["-n", ns, "link", "set", DEV, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            steer(ns, cpu)?;
        }
        Ok(veth)
    }
}

/// Sets RPS on the namespace's veth receive queue to `cpu` and reads it
/// back (`ip netns exec` mounts that namespace's /sys).
fn steer(ns: &str, cpu: usize) -> Result<(), String> {
    let file = format!("/sys/class/net/{DEV}/queues/rx-0/rps_cpus");
    let mask = cpu_mask(cpu);
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c"])
        .arg(format!("echo {mask} > {file} && cat {file}"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip netns exec: {e}"))?;
    let read = String::from_utf8_lossy(&out.stdout);
    // The kernel prints the mask zero-padded to the machine's CPU count.
    let got = read.trim().trim_start_matches(['0', ',']);
    if !out.status.success() || got != mask.trim_start_matches(['0', ',']) {
        return Err(format!(
            "RPS on {ns}'s {DEV} did not take CPU mask {mask} (read back {:?}; a kernel without \
             CONFIG_RPS cannot steer receive work): {}",
            read.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth, and with it the
        // peer. Processes still inside keep it alive until they exit: their
        // guards stop them before this drops.
        for ns in [&self.client_ns, &self.server_ns] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Whether a load tool may target `ip`: a loopback address, or a private
/// IPv4 address (10/8, 169.254/16) seen from inside a namespace a bench
/// made (the veth pair of [`Net`]); the error says why not.
pub fn allowed_target(ip: IpAddr) -> Result<(), String> {
    if ip.is_loopback() {
        return Ok(());
    }
    let private = match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 10 || v4.is_link_local(),
        IpAddr::V6(_) => false,
    };
    if private && in_own_namespace() {
        return Ok(());
    }
    Err(format!(
        "refusing {ip}: this load tool targets loopback, or a private address from a bench's \
         own network namespace (--topology veth)"
    ))
}

/// Whether this process runs in a network namespace a bench made: one
/// named with [`PREFIX`] under `/run/netns` (where `ip netns add` pins it)
/// that is the same namespace as `/proc/self/ns/net`.
fn in_own_namespace() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(own) = std::fs::metadata("/proc/self/ns/net") else {
        return false;
    };
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return false;
    };
    entries.flatten().any(|e| {
        e.file_name().to_string_lossy().starts_with(PREFIX)
            && e.metadata()
                .is_ok_and(|m| m.ino() == own.ino() && m.dev() == own.dev())
    })
}

/// NET_RX softirqs handled so far on each CPU (`/proc/softirqs`): where
/// receive work ran.
pub fn net_rx_per_cpu() -> Vec<u64> {
    let text = std::fs::read_to_string("/proc/softirqs").unwrap_or_default();
    parse_net_rx(&text)
}

/// The NET_RX row of a `/proc/softirqs` text.
pub fn parse_net_rx(text: &str) -> Vec<u64> {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix("NET_RX:"))
        .map(|row| {
            row.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_and_names() {
        assert_eq!(cpu_mask(0), "1");
        assert_eq!(cpu_mask(1), "2");
        assert_eq!(cpu_mask(5), "20");
        assert_eq!(cpu_mask(33), "2,0");
        assert_eq!(owner_pid("twbench1234-0-srv"), Some(1234));
        assert!(allowed_target(IpAddr::V4(Ipv4Addr::LOCALHOST)).is_ok());
        // This test runs in the machine's namespace: no other address.
        assert!(allowed_target(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 1))).is_err());
        assert!(allowed_target(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))).is_err());
        assert_eq!(owner_pid("twlab1234-0"), None);
        assert_eq!(owner_pid("twbenchx-0-cli"), None);
        assert_eq!(Topology::parse("veth"), Ok(Topology::Veth));
        assert!(Topology::parse("wire").is_err());
    }

    #[test]
    fn net_rx_row() {
        let text = "                    CPU0       CPU1\n          HI:          0          1\n\
                    \x20     NET_TX:         10         20\n      NET_RX:     123456       7890\n";
        assert_eq!(parse_net_rx(text), vec![123_456, 7_890]);
        assert!(parse_net_rx("").is_empty());
    }

    #[test]
    fn loopback_runs_commands_as_they_are() {
        let net = Net::new(Topology::Loopback, 0, 1).expect("loopback");
        let cmd = net.server(Command::new("true"));
        assert_eq!(cmd.get_program(), "true");
        assert_eq!(net.server_ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    }

    /// The point of the veth topology, checked on the kernel: on loopback
    /// the sender's CPU runs the receive; on veth with RPS, the receiver's.
    /// Needs root, `ip` and `python3`, as the benches that use it do.
    #[test]
    fn receive_work_runs_on_the_receivers_cpu_with_veth_only() {
        if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
            return;
        }
        let lo = Net::new(Topology::Loopback, 0, 1).expect("loopback");
        assert_eq!(
            lo.receive_cpus(0, 1),
            Ok((1, 0)),
            "loopback: the sender's CPU"
        );
        let veth = Net::new(Topology::Veth, 0, 1).expect("veth (needs root)");
        let names = [
            veth.server_namespace().expect("server ns").to_string(),
            veth.client_namespace().expect("client ns").to_string(),
        ];
        assert_eq!(
            veth.receive_cpus(0, 1),
            Ok((0, 1)),
            "veth: the receiver's CPU"
        );
        drop(veth);
        let list = Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip");
        let list = String::from_utf8_lossy(&list.stdout);
        for name in names {
            assert!(!list.contains(&name), "{name} left behind");
        }
    }

    /// A namespace left by a run that was killed (its pid gone) is removed
    /// by the next one; one whose process still runs is left alone.
    #[test]
    fn namespaces_of_killed_runs_are_removed() {
        let mut child = Command::new("true").spawn().expect("true");
        let dead = child.id();
        child.wait().expect("wait");
        let stale = format!("{PREFIX}{dead}-0-srv");
        let live = format!("{PREFIX}{}-99-srv", std::process::id());
        for ns in [&stale, &live] {
            ip(&["netns", "add", ns]).expect("ip netns add (needs root)");
        }
        remove_stale();
        let list = Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip");
        let list = String::from_utf8_lossy(&list.stdout).to_string();
        let _ = ip(&["netns", "del", &live]);
        let _ = ip(&["netns", "del", &stale]);
        assert!(!list.contains(&stale), "{stale} was not removed");
        assert!(
            list.contains(&live),
            "{live} of a running process was removed"
        );
    }
}
