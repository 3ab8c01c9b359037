//! The peers the listener knows — callers in the middle of their handshake
//! and open connections, one entry per address — counted per IP against the
//! connection limits, and handshakes that take too long found for the
//! listener to forget. Sans-IO: time is given, never read, so the rules are
//! tested on virtual time.

// This module reads what the network sends: no panics on it.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::config::SrtConfig;

/// How many peers may be known at once, and how long a handshake may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Peers in all (handshakes and connections).
    pub(crate) max_connections: usize,
    /// Peers from one IP address.
    pub(crate) per_ip: usize,
    /// Peers from one loopback address (`127.0.0.0/8`, `::1`), instead of
    /// `per_ip`.
    pub(crate) per_loopback_ip: usize,
    /// A handshake that has not opened a connection this long after its
    /// first packet is forgotten.
    pub(crate) handshake_timeout: Duration,
}

impl Limits {
    /// The limits of these settings.
    pub(crate) fn of(config: &SrtConfig) -> Limits {
        Limits {
            max_connections: config.max_connections,
            per_ip: config.max_connections_per_ip,
            per_loopback_ip: config.max_connections_per_loopback_ip,
            handshake_timeout: config.handshake_timeout,
        }
    }

    /// The limit of peers from `ip`.
    fn of_ip(&self, ip: IpAddr) -> usize {
        if ip.is_loopback() {
            self.per_loopback_ip
        } else {
            self.per_ip
        }
    }
}

/// Why a new caller is not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Over {
    /// `max_connections` peers are known.
    Total {
        /// The limit.
        limit: usize,
    },
    /// The caller's IP address has its limit of peers.
    Ip {
        /// The address.
        ip: IpAddr,
        /// The limit.
        limit: usize,
    },
}

impl std::fmt::Display for Over {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Over::Total { limit } => write!(
                f,
                "{limit} connections and handshakes in progress already (max_connections)"
            ),
            Over::Ip { ip, limit } if ip.is_loopback() => write!(
                f,
                "{limit} connections and handshakes in progress from {ip} already (max_connections_per_loopback_ip)"
            ),
            Over::Ip { ip, limit } => write!(
                f,
                "{limit} connections and handshakes in progress from {ip} already (max_connections_per_ip)"
            ),
        }
    }
}

/// One known peer.
#[derive(Debug)]
pub(crate) enum Peer<H, O> {
    /// A caller in the middle of its handshake, since `started`.
    Handshake {
        /// Its first handshake packet.
        started: Instant,
        /// What the listener keeps of it.
        state: H,
    },
    /// An open connection.
    Open(O),
}

/// The known peers by address, and their number per IP address.
#[derive(Debug)]
pub(crate) struct Peers<H, O> {
    limits: Limits,
    peers: HashMap<SocketAddr, Peer<H, O>>,
    per_ip: HashMap<IpAddr, usize>,
}

/// The address a peer is counted under: an IPv4-mapped IPv6 address as the
/// IPv4 address it is.
fn ip_of(addr: SocketAddr) -> IpAddr {
    addr.ip().to_canonical()
}

impl<H, O> Peers<H, O> {
    /// No peers yet.
    pub(crate) fn new(limits: Limits) -> Self {
        Peers {
            limits,
            peers: HashMap::new(),
            per_ip: HashMap::new(),
        }
    }

    /// The limits in force.
    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// How many peers are known.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }

    /// How many peers of this IP address are known.
    pub(crate) fn count_of(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&ip.to_canonical()).copied().unwrap_or(0)
    }

    /// Whether a caller from `addr`, not known yet, may start a handshake.
    pub(crate) fn admit(&self, addr: SocketAddr) -> Result<(), Over> {
        let ip = ip_of(addr);
        let limit = self.limits.of_ip(ip);
        if self.count_of(ip) >= limit {
            return Err(Over::Ip { ip, limit });
        }
        if self.peers.len() >= self.limits.max_connections {
            return Err(Over::Total {
                limit: self.limits.max_connections,
            });
        }
        Ok(())
    }

    /// Starts the handshake of a caller from `addr` at `now`, unless the
    /// address is known already; whether it was started. The limits are
    /// [`admit`](Self::admit)'s to check.
    pub(crate) fn start(&mut self, addr: SocketAddr, now: Instant, state: H) -> bool {
        if self.peers.contains_key(&addr) {
            return false;
        }
        self.peers.insert(
            addr,
            Peer::Handshake {
                started: now,
                state,
            },
        );
        *self.per_ip.entry(ip_of(addr)).or_insert(0) += 1;
        true
    }

    /// The handshake state of `addr`, if it is in the middle of one.
    pub(crate) fn handshake_mut(&mut self, addr: SocketAddr) -> Option<&mut H> {
        match self.peers.get_mut(&addr) {
            Some(Peer::Handshake { state, .. }) => Some(state),
            _ => None,
        }
    }

    /// The open connection of `addr`.
    pub(crate) fn connection(&self, addr: SocketAddr) -> Option<&O> {
        match self.peers.get(&addr) {
            Some(Peer::Open(o)) => Some(o),
            _ => None,
        }
    }

    /// The handshake of `addr` opened `connection`; returns the handshake's
    /// state (`None` if it had none: the connection is counted anew).
    pub(crate) fn open(&mut self, addr: SocketAddr, connection: O) -> Option<H> {
        let before = self.peers.insert(addr, Peer::Open(connection));
        match before {
            Some(Peer::Handshake { state, .. }) => Some(state),
            Some(Peer::Open(_)) => None,
            None => {
                *self.per_ip.entry(ip_of(addr)).or_insert(0) += 1;
                None
            }
        }
    }

    /// Forgets `addr`, handshake or connection.
    pub(crate) fn remove(&mut self, addr: SocketAddr) -> Option<Peer<H, O>> {
        let peer = self.peers.remove(&addr)?;
        let ip = ip_of(addr);
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
        Some(peer)
    }

    /// Forgets `addr` if it is in the middle of a handshake; its state.
    pub(crate) fn remove_handshake(&mut self, addr: SocketAddr) -> Option<H> {
        match self.peers.get(&addr) {
            Some(Peer::Handshake { .. }) => match self.remove(addr) {
                Some(Peer::Handshake { state, .. }) => Some(state),
                _ => None,
            },
            _ => None,
        }
    }

    /// The callers whose handshake started more than the handshake timeout
    /// before `now`.
    pub(crate) fn expired(&self, now: Instant) -> Vec<SocketAddr> {
        let timeout = self.limits.handshake_timeout;
        self.peers
            .iter()
            .filter(|(_, p)| {
                matches!(p, Peer::Handshake { started, .. }
                    if now.saturating_duration_since(*started) > timeout)
            })
            .map(|(addr, _)| *addr)
            .collect()
    }

    /// The open connections for which `closed` holds.
    pub(crate) fn closed(&self, closed: impl Fn(&O) -> bool) -> Vec<SocketAddr> {
        self.peers
            .iter()
            .filter(|(_, p)| matches!(p, Peer::Open(o) if closed(o)))
            .map(|(addr, _)| *addr)
            .collect()
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_connections: 5,
            per_ip: 2,
            per_loopback_ip: 3,
            handshake_timeout: Duration::from_secs(5),
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn a_handshake_is_forgotten_after_the_timeout_whatever_it_sends() {
        let t0 = Instant::now();
        let mut peers: Peers<u32, ()> = Peers::new(limits());
        let (slow, late, done) = (
            addr("192.0.2.1:1000"),
            addr("192.0.2.2:1000"),
            addr("192.0.2.3:1000"),
        );
        assert!(peers.start(slow, t0, 1));
        assert!(peers.start(late, t0 + Duration::from_secs(3), 2));
        assert!(peers.start(done, t0, 3));
        assert_eq!(peers.open(done, ()), Some(3));
        // Packets of a known caller do not restart its clock.
        assert!(!peers.start(slow, t0 + Duration::from_secs(4), 9));
        assert_eq!(peers.handshake_mut(slow), Some(&mut 1));
        assert!(peers.expired(t0 + Duration::from_secs(5)).is_empty());
        assert_eq!(peers.expired(t0 + Duration::from_millis(5001)), [slow]);
        let mut both = peers.expired(t0 + Duration::from_secs(9));
        both.sort();
        assert_eq!(both, [slow, late]);
        // An open connection never expires; a forgotten handshake frees its slot.
        assert_eq!(peers.remove_handshake(slow), Some(1));
        assert_eq!(peers.remove_handshake(done), None);
        assert_eq!(peers.expired(t0 + Duration::from_secs(3600)), [late]);
        assert_eq!((peers.len(), peers.count_of(slow.ip())), (2, 0));
    }

    #[test]
    fn each_ip_has_its_limit_and_loopback_its_own() {
        let t0 = Instant::now();
        let mut peers: Peers<(), ()> = Peers::new(limits());
        let a = |port: u16| SocketAddr::from(([198, 51, 100, 7], port));
        assert_eq!(peers.admit(a(1)), Ok(()));
        peers.start(a(1), t0, ());
        peers.start(a(2), t0, ());
        peers.open(a(2), ());
        let over = Over::Ip {
            ip: a(3).ip(),
            limit: 2,
        };
        assert_eq!(peers.admit(a(3)), Err(over));
        assert!(
            over.to_string().contains("max_connections_per_ip"),
            "{over}"
        );
        // An IPv4-mapped IPv6 caller is the same address.
        let mapped = addr("[::ffff:198.51.100.7]:4");
        assert_eq!(peers.admit(mapped), Err(over));
        // Another address is not affected; loopback has the higher limit.
        assert_eq!(peers.admit(addr("198.51.100.8:1")), Ok(()));
        peers.start(addr("127.0.0.1:1"), t0, ());
        peers.start(addr("127.0.0.1:2"), t0, ());
        assert_eq!(peers.admit(addr("127.0.0.1:3")), Ok(()));
        peers.start(addr("127.0.0.1:3"), t0, ());
        let over = peers.admit(addr("127.0.0.1:4")).expect_err("over");
        assert!(
            over.to_string().contains("max_connections_per_loopback_ip"),
            "{over}"
        );
        // Five peers known: the total limit holds for everyone.
        assert_eq!(
            peers.admit(addr("203.0.113.9:1")),
            Err(Over::Total { limit: 5 })
        );
        // A peer that leaves frees its slot.
        assert!(matches!(peers.remove(a(2)), Some(Peer::Open(()))));
        assert_eq!(peers.admit(a(3)), Ok(()));
        assert_eq!(peers.count_of(a(1).ip()), 1);
        assert!(peers.remove(a(2)).is_none());
        assert_eq!(peers.count_of(a(1).ip()), 1);
    }

    #[test]
    fn closed_connections_are_found() {
        let t0 = Instant::now();
        let mut peers: Peers<(), bool> = Peers::new(limits());
        let (a, b) = (addr("192.0.2.1:1"), addr("192.0.2.1:2"));
        peers.start(a, t0, ());
        peers.open(a, true);
        peers.start(b, t0, ());
        peers.open(b, false);
        assert_eq!(peers.closed(|c| *c), [a]);
        assert_eq!(peers.connection(b), Some(&false));
        assert!(peers.handshake_mut(b).is_none());
    }
}
