//! What a node needs to join a cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
        if self.relay_advertise.ip().is_unspecified() || self.relay_advertise.port() == 0 {
            return Err("the relay address other nodes connect to must be a concrete address and port (set relay_advertise)".into());
        }
        Ok(())
    }
}
