//! How many connections a listener holds open: in all
//! ([`RtmpConfig::max_connections`]) and per peer address
//! ([`RtmpConfig::max_connections_per_ip`], or
//! [`RtmpConfig::max_connections_per_loopback_ip`] for a loopback peer).
//!
//! The accept loop asks [`Limits::admit`] for every accepted socket; the
//! returned [`Admitted`] slot travels with the connection's task and frees
//! its place when it drops, however the connection ends. An IPv4 peer seen
//! through an IPv6 socket (`::ffff:192.0.2.7`) counts as its IPv4 address.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::config::RtmpConfig;

/// The open connections of one listener.
#[derive(Debug)]
pub(crate) struct Limits {
    max: usize,
    per_ip: usize,
    per_loopback_ip: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The listener holds `limit` connections already.
    Listener {
        /// The limit.
        limit: usize,
    },
    /// The peer's address holds `limit` connections already.
    Ip {
        /// The limit that applies to the address.
        limit: usize,
    },
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Listener { limit } => {
                write!(f, "{limit} connections open (max_connections)")
            }
            Refused::Ip { limit } => write!(
                f,
                "{limit} connections open from this address (max_connections_per_ip, or max_connections_per_loopback_ip for a loopback peer)"
            ),
        }
    }
}

/// An admitted connection's place; freed on drop.
#[derive(Debug)]
pub(crate) struct Admitted {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.limits.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.by_ip.remove(&self.ip);
            }
        }
    }
}

impl Limits {
    /// The limits of `config`.
    pub(crate) fn new(config: &RtmpConfig) -> Arc<Limits> {
        Arc::new(Limits {
            max: config.max_connections,
            per_ip: config.max_connections_per_ip,
            per_loopback_ip: config.max_connections_per_loopback_ip,
            open: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a connection from `ip`, or why there is none.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refused> {
        let ip = ip.to_canonical();
        let per_ip = if ip.is_loopback() {
            self.per_loopback_ip
        } else {
            self.per_ip
        };
        let mut open = self.lock();
        if open.total >= self.max {
            return Err(Refused::Listener { limit: self.max });
        }
        if open.by_ip.get(&ip).copied().unwrap_or(0) >= per_ip {
            return Err(Refused::Ip { limit: per_ip });
        }
        *open.by_ip.entry(ip).or_insert(0) += 1;
        open.total += 1;
        Ok(Admitted {
            limits: Arc::clone(self),
            ip,
        })
    }

    /// Connections open now, in all and from `ip`.
    #[cfg(test)]
    fn open(&self, ip: IpAddr) -> (usize, usize) {
        let open = self.lock();
        (
            open.total,
            open.by_ip.get(&ip.to_canonical()).copied().unwrap_or(0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_ip: usize, per_loopback_ip: usize) -> Arc<Limits> {
        Limits::new(&RtmpConfig {
            max_connections: max,
            max_connections_per_ip: per_ip,
            max_connections_per_loopback_ip: per_loopback_ip,
            ..RtmpConfig::default()
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn each_address_gets_its_own_limit_and_a_closed_connection_frees_its_place() {
        let l = limits(100, 2, 3);
        let a = [l.admit(ip("192.0.2.1")), l.admit(ip("192.0.2.1"))];
        assert!(a.iter().all(Result::is_ok));
        assert_eq!(
            l.admit(ip("192.0.2.1")).err(),
            Some(Refused::Ip { limit: 2 })
        );
        // The same address seen through an IPv6 socket is the same peer.
        assert_eq!(
            l.admit(ip("::ffff:192.0.2.1")).err(),
            Some(Refused::Ip { limit: 2 })
        );
        let other = l.admit(ip("192.0.2.2")).expect("another address");
        // Loopback has its own, larger limit.
        let lo: Vec<_> = (0..3).map(|_| l.admit(ip("127.0.0.1"))).collect();
        assert!(lo.iter().all(Result::is_ok));
        assert_eq!(
            l.admit(ip("127.0.0.1")).err(),
            Some(Refused::Ip { limit: 3 })
        );
        assert_eq!(l.admit(ip("::1")).map(drop), Ok(()));
        assert_eq!(l.open(ip("192.0.2.1")), (6, 2));
        drop(a);
        assert_eq!(l.open(ip("192.0.2.1")), (4, 0));
        assert!(l.admit(ip("192.0.2.1")).is_ok());
        drop((other, lo));
        assert_eq!(l.open(ip("127.0.0.1")), (0, 0));
        assert!(l.lock().by_ip.is_empty(), "no entry kept for a closed peer");
    }

    #[test]
    fn the_listener_limit_counts_every_address() {
        let l = limits(2, 10, 10);
        let _a = l.admit(ip("192.0.2.1")).expect("first");
        let b = l.admit(ip("192.0.2.2")).expect("second");
        assert_eq!(
            l.admit(ip("192.0.2.3")).err(),
            Some(Refused::Listener { limit: 2 })
        );
        drop(b);
        assert!(l.admit(ip("192.0.2.3")).is_ok());
    }
}
