//! Several hosts on one machine: Linux network namespaces on a private
//! bridge, made with `ip` (iproute2) and removed when the [`Lab`] drops,
//! unwinding from a panic included.
//!
//! A lab is a namespace holding a bridge (the "switch") and one namespace
//! per host, each joined to the bridge by a veth pair, with an address in
//! `10.X.Y.0/24`. Nothing is added to the machine's own namespace: no
//! interface, no route, so traffic stays inside the lab (each host also
//! has its own loopback). Two labs never see each other (each has its own
//! bridge); their subnets are drawn at random per lab all the same, so that
//! their addresses never look alike in logs, and every name carries the
//! test process's id, so parallel test binaries never collide. A lab left
//! behind by a killed test process is removed by the next one.
//!
//! Code runs "on" a host with [`Host::run`]: a thread of its own that
//! enters the host's namespace first (`setns`, what `ip netns exec` does).
//! Sockets that thread opens and processes it (or threads it spawns)
//! start live in that namespace, so every helper of this crate works
//! unchanged on a host.
//!
//! Needs root (`CAP_SYS_ADMIN` and `CAP_NET_ADMIN`) and iproute2's `ip`;
//! without them a test fails saying so, it never skips.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The first characters of every namespace a lab makes.
const PREFIX: &str = "twlab";

/// A bridge in a namespace of its own and the hosts joined to it; every
/// namespace is deleted on drop.
#[derive(Debug)]
pub struct Lab {
    /// `twlab{pid}-{n}`.
    name: String,
    subnet: [u8; 3],
    hub: String,
    hosts: Mutex<Vec<String>>,
}

/// A host of a [`Lab`]: a network namespace with one address on the lab's
/// bridge.
#[derive(Debug, Clone)]
pub struct Host {
    ns: String,
    addr: Ipv4Addr,
}

/// Runs `ip ARGS`; panics with its complaint when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| {
        panic!("cannot run `ip` (install iproute2; network namespace tests need it and root): {e}")
    });
    assert!(
        out.status.success(),
        "`ip {}` failed (network namespace tests need root): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Deletes namespaces of labs whose test process is gone (killed before
/// its labs dropped).
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

impl Lab {
    /// Makes the bridge's namespace; panics (saying why) without root or `ip`.
    pub fn new() -> Lab {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        remove_stale();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("{PREFIX}{pid}-{n}");
        // A subnet per lab: 10.(16..=250).(0..=255), from the clock, the
        // process and the lab's number.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let seed = nanos ^ pid.rotate_left(11) ^ n.wrapping_mul(0x9e37_79b9);
        let subnet = [10, 16 + (seed % 235) as u8, (seed >> 8) as u8];
        let hub = format!("{name}-hub");
        let lab = Lab {
            name,
            subnet,
            hub: hub.clone(),
            hosts: Mutex::new(Vec::new()),
        };
        ip(&["netns", "add", &hub]);
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        lab
    }

    /// A new host named `label` (letters and digits), joined to the bridge
    /// with the next address of the lab's subnet.
    pub fn host(&self, label: &str) -> Host {
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let index = u8::try_from(hosts.len() + 2).expect("at most 250 hosts in a lab");
        let ns = format!("{}-{label}", self.name);
        ip(&["netns", "add", &ns]);
        hosts.push(ns.clone());
        // The bridge's end is named after the host's index: interface names
        // are at most 15 bytes.
        let port = format!("h{index}");
        ip(&[
            "-n", &self.hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
            &ns,
        ]);
        ip(&["-n", &self.hub, "link", "set", &port, "master", "br0", "up"]);
        let [a, b, c] = self.subnet;
        let addr = Ipv4Addr::new(a, b, c, index);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        Host { ns, addr }
    }
}

impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // A namespace lives on while a process is in it: processes started
        // on the hosts are killed by their own guards, dropped before this.
        let hosts = std::mem::take(self.hosts.get_mut().unwrap_or_else(|e| e.into_inner()));
        for ns in hosts.iter().chain([&self.hub]) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

impl Host {
    /// Its address on the lab's bridge.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// Its namespace's name (for `ip netns exec NAME …`).
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// Runs `f` on a thread in this host's namespace and returns what it
    /// returns (a panic in `f` goes on unwinding in the caller).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            let thread = scope.spawn(|| {
                self.enter();
                f()
            });
            match thread.join() {
                Ok(value) => value,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Moves the calling thread into this host's namespace.
    fn enter(&self) {
        let path = format!("/var/run/netns/{}", self.ns);
        let file = File::open(&path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
        rustix::thread::move_into_link_name_space(
            file.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap_or_else(|e| panic!("cannot enter {} (needs root): {e}", self.ns));
    }
}
