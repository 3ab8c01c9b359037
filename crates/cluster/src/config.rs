//! What a node needs to join a cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How long an edge has to send its whole hello by default (the relay's
/// `relay_hello_timeout`): an edge sends it at once after connecting.
pub const DEFAULT_RELAY_HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// The most relay connections at once by default (`relay_max_connections`).
pub const DEFAULT_RELAY_MAX_CONNECTIONS: usize = 4096;
/// The shortest hello timeout accepted: an edge on a slow link still gets its
/// connect's round trips and a hello of a few hundred bytes through.
pub const MIN_RELAY_HELLO_TIMEOUT: Duration = Duration::from_millis(100);
/// The longest hello timeout accepted: past it, a peer that connects and says
/// nothing holds a slot of `relay_max_connections` for longer than any edge
/// needs.
pub const MAX_RELAY_HELLO_TIMEOUT: Duration = Duration::from_secs(60);

/// A node's cluster settings (the server's `[cluster]` section).
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// etcd endpoints (`http://127.0.0.1:2379`).
    pub etcd: Vec<String>,
    /// etcd user and password, when etcd has auth enabled.
    pub etcd_user: Option<(String, String)>,
    /// A CA certificate (PEM) to verify etcd's TLS certificate with
    /// (`https://` endpoints; needs the `tls` feature).
    pub etcd_ca: Option<PathBuf>,
    /// This node's id, unique in the cluster.
    pub node_id: String,
    /// Where the relay listens for edges.
    pub relay_listen: SocketAddr,
    /// The relay address other nodes connect to (`relay_listen` when it is
    /// not a wildcard).
    pub relay_advertise: SocketAddr,
    /// Addresses viewers and publishers reach this node at, for the
    /// directory (informational).
    pub advertise: Vec<String>,
    /// The node lease's time to live: a node that dies leaves the directory
    /// (with its streams) this long after its last renewal.
    pub lease_ttl: Duration,
    /// The shared secret nodes authenticate each other with.
    pub secret: String,
    /// How long an edge keeps pulling a stream nobody reads here.
    pub idle_grace: Duration,
    /// How long a reader waits for an edge pull to start.
    pub pull_wait: Duration,
    /// How long an edge's pull whose origin went away looks for the stream
    /// on another node before it stops (readers here follow it within
    /// this and their follow grace: a discontinuity, not an end).
    pub failover_grace: Duration,
    /// How long a connection to the relay port has to send its whole hello
    /// before it is closed (default [`DEFAULT_RELAY_HELLO_TIMEOUT`]; between
    /// [`MIN_RELAY_HELLO_TIMEOUT`] and [`MAX_RELAY_HELLO_TIMEOUT`]).
    pub relay_hello_timeout: Duration,
    /// The most relay connections open at once (each edge holds one per
    /// stream it pulls); past it, new ones are closed at once (default
    /// [`DEFAULT_RELAY_MAX_CONNECTIONS`]; at least 1).
    pub relay_max_connections: usize,
}

impl ClusterConfig {
    /// A configuration with the defaults for everything but the identity.
    pub fn new(
        etcd: Vec<String>,
        node_id: impl Into<String>,
        relay_listen: SocketAddr,
        secret: impl Into<String>,
    ) -> Self {
        ClusterConfig {
            etcd,
            etcd_user: None,
            etcd_ca: None,
            node_id: node_id.into(),
            relay_listen,
            relay_advertise: relay_listen,
            advertise: Vec::new(),
            lease_ttl: Duration::from_secs(10),
            secret: secret.into(),
            idle_grace: Duration::from_secs(10),
            pull_wait: Duration::from_secs(5),
            failover_grace: Duration::from_secs(20),
            relay_hello_timeout: DEFAULT_RELAY_HELLO_TIMEOUT,
            relay_max_connections: DEFAULT_RELAY_MAX_CONNECTIONS,
        }
    }

    /// Checks that the settings hold together.
    pub fn validate(&self) -> Result<(), String> {
        if self.etcd.is_empty() {
            return Err("etcd needs at least one endpoint".into());
        }
        if self.node_id.is_empty()
            || !self
                .node_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err("node_id must be non-empty letters, digits, '-', '_' or '.'".into());
        }
        if self.secret.len() < 16 {
            return Err("secret must be at least 16 characters".into());
        }
        if self.lease_ttl < Duration::from_secs(2) {
            return Err("lease_ttl must be at least 2 s".into());
        }
        if !(MIN_RELAY_HELLO_TIMEOUT..=MAX_RELAY_HELLO_TIMEOUT).contains(&self.relay_hello_timeout)
        {
            return Err(format!(
                "relay_hello_timeout must be between {} and {} ms, not {} ms",
                MIN_RELAY_HELLO_TIMEOUT.as_millis(),
                MAX_RELAY_HELLO_TIMEOUT.as_millis(),
                self.relay_hello_timeout.as_millis()
            ));
        }
        if self.relay_max_connections == 0 {
            return Err("relay_max_connections must be at least 1".into());
        }
        if self.relay_advertise.ip().is_unspecified() || self.relay_advertise.port() == 0 {
            return Err("the relay address other nodes connect to must be a concrete address and port (set relay_advertise)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, reason = "tests fail by panicking")]
mod tests {
    use super::*;

    fn config() -> ClusterConfig {
        ClusterConfig::new(
            vec!["http://127.0.0.1:2379".into()],
            "a",
            SocketAddr::from(([127, 0, 0, 1], 7935)),
            "0123456789abcdef",
        )
    }

    #[test]
    fn relay_limits_default_to_the_former_constants_and_are_bounded() {
        let c = config();
        assert_eq!(c.relay_hello_timeout, Duration::from_secs(5));
        assert_eq!(c.relay_max_connections, 4096);
        c.validate().expect("defaults are valid");

        for (ms, ok) in [(99, false), (100, true), (60_000, true), (60_001, false)] {
            let mut c = config();
            c.relay_hello_timeout = Duration::from_millis(ms);
            match c.validate() {
                Ok(()) => assert!(ok, "{ms} ms accepted"),
                Err(e) => {
                    assert!(!ok, "{ms} ms refused: {e}");
                    assert!(e.contains("relay_hello_timeout"), "{e}");
                }
            }
        }
        let mut c = config();
        c.relay_max_connections = 0;
        let e = c.validate().expect_err("no connections");
        assert!(e.contains("relay_max_connections"), "{e}");
        c.relay_max_connections = 1;
        c.validate().expect("one connection");
    }
}
