//! `[cluster]`: this server as one node of a cluster whose stream directory
//! is in etcd (see [`tidewater::cluster`]). Absent, nothing changes.
//!
//! ```toml
//! [cluster]
//! etcd = ["http://127.0.0.1:2379"]
//! node_id = "a"
//! secret = "a long random string shared by every node"
//! relay_listen = "0.0.0.0:7935"
//! relay_advertise = "10.0.0.1:7935"   # what other nodes connect to
//! advertise = ["rtmp://10.0.0.1:1935/", "http://10.0.0.1:8888/"]
//! lease_ttl_ms = 10000
//! relay_hello_timeout_ms = 5000       # a relay connection's time to say hello
//! relay_max_connections = 4096        # relay connections open at once
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tidewater::cluster::ClusterConfig;

use super::setting_error;
use crate::error::Result;

/// `[cluster]`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// etcd endpoints (`http://host:2379`, `https://…` with `etcd_ca`).
    pub etcd: Vec<String>,
    /// This node's id, unique in the cluster (letters, digits, `-_.`).
    pub node_id: String,
    /// The secret every node shares (at least 16 characters): the relay's
    /// credentials.
    pub secret: String,
    /// Where the relay listens for other nodes (default `0.0.0.0:7935`).
    #[serde(default = "default_relay_listen")]
    pub relay_listen: SocketAddr,
    /// The relay address other nodes connect to (default `relay_listen`,
    /// which must then be a concrete address).
    #[serde(default)]
    pub relay_advertise: Option<SocketAddr>,
    /// Addresses viewers and publishers reach this node at, shown in the
    /// directory (default none).
    #[serde(default)]
    pub advertise: Vec<String>,
    /// The node lease's time to live (default 10000): a dead node's
    /// streams leave the directory this long after its last renewal.
    #[serde(default = "default_lease_ttl_ms")]
    pub lease_ttl_ms: u64,
    /// How long an edge keeps pulling a stream nobody reads here (default 10000).
    #[serde(default = "default_idle_grace_ms")]
    pub idle_grace_ms: u64,
    /// How long a reader at an edge waits for the pull to start (default 5000).
    #[serde(default = "default_pull_wait_ms")]
    pub pull_wait_ms: u64,
    /// How long an edge whose origin went away waits for the stream on
    /// another node before ending it (default 20000).
    #[serde(default = "default_failover_grace_ms")]
    pub failover_grace_ms: u64,
    /// How long a connection to the relay port has to send its whole hello
    /// before it is closed (default 5000, 100–60000).
    #[serde(default = "default_relay_hello_timeout_ms")]
    pub relay_hello_timeout_ms: u64,
    /// The most relay connections open at once, each edge holding one per
    /// stream it pulls; past it, new ones are closed at once (default 4096,
    /// at least 1).
    #[serde(default = "default_relay_max_connections")]
    pub relay_max_connections: usize,
    /// etcd user, when etcd has auth enabled.
    #[serde(default)]
    pub etcd_user: Option<String>,
    /// etcd password (with `etcd_user`).
    #[serde(default)]
    pub etcd_password: Option<String>,
    /// A CA certificate (PEM) to verify etcd's TLS certificate with.
    #[serde(default)]
    pub etcd_ca: Option<PathBuf>,
}

impl std::fmt::Debug for ClusterSection {
    // The secret and the etcd password never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSection")
            .field("etcd", &self.etcd)
            .field("node_id", &self.node_id)
            .field("relay_listen", &self.relay_listen)
            .field("relay_advertise", &self.relay_advertise)
            .field("lease_ttl_ms", &self.lease_ttl_ms)
            .finish_non_exhaustive()
    }
}

fn default_relay_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 7935))
}
fn default_lease_ttl_ms() -> u64 {
    10_000
}
fn default_idle_grace_ms() -> u64 {
    10_000
}
fn default_pull_wait_ms() -> u64 {
    5_000
}
fn default_failover_grace_ms() -> u64 {
    20_000
}
fn default_relay_hello_timeout_ms() -> u64 {
    u64::try_from(tidewater::cluster::DEFAULT_RELAY_HELLO_TIMEOUT.as_millis()).unwrap_or(5_000)
}
fn default_relay_max_connections() -> usize {
    tidewater::cluster::DEFAULT_RELAY_MAX_CONNECTIONS
}

impl ClusterSection {
    /// The node's cluster settings, checked.
    pub fn cluster_config(&self) -> Result<ClusterConfig> {
        let mut c = ClusterConfig::new(
            self.etcd.clone(),
            self.node_id.clone(),
            self.relay_listen,
            self.secret.clone(),
        );
        c.relay_advertise = self.relay_advertise.unwrap_or(self.relay_listen);
        c.advertise = self.advertise.clone();
        c.lease_ttl = Duration::from_millis(self.lease_ttl_ms);
        c.idle_grace = Duration::from_millis(self.idle_grace_ms);
        c.pull_wait = Duration::from_millis(self.pull_wait_ms);
        c.failover_grace = Duration::from_millis(self.failover_grace_ms);
        c.relay_hello_timeout = Duration::from_millis(self.relay_hello_timeout_ms);
        c.relay_max_connections = self.relay_max_connections;
        // Named by their own keys, before the checks of the whole section.
        use tidewater::cluster::{MAX_RELAY_HELLO_TIMEOUT as MAX, MIN_RELAY_HELLO_TIMEOUT as MIN};
        if !(MIN..=MAX).contains(&c.relay_hello_timeout) {
            return Err(setting_error(
                "cluster.relay_hello_timeout_ms".into(),
                format!(
                    "must be between {} and {} (milliseconds), not {}",
                    MIN.as_millis(),
                    MAX.as_millis(),
                    self.relay_hello_timeout_ms
                ),
            ));
        }
        if self.relay_max_connections == 0 {
            return Err(setting_error(
                "cluster.relay_max_connections".into(),
                "must be at least 1".into(),
            ));
        }
        c.etcd_ca = self.etcd_ca.clone();
        c.etcd_user = match (&self.etcd_user, &self.etcd_password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (None, None) => None,
            _ => {
                return Err(setting_error(
                    "cluster.etcd_user".into(),
                    "etcd_user and etcd_password go together".into(),
                ));
            }
        };
        c.validate()
            .map_err(|e| setting_error("cluster".into(), e))?;
        Ok(c)
    }

    pub(super) fn check(&self) -> Result<()> {
        self.cluster_config().map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(toml_text: &str) -> ClusterSection {
        toml::from_str(toml_text).expect("section")
    }

    #[test]
    fn defaults_fill_what_is_left_out_and_bad_values_name_the_section() {
        let s = section(
            "etcd = [\"http://127.0.0.1:2379\"]\nnode_id = \"a\"\nsecret = \"0123456789abcdef\"\nrelay_listen = \"127.0.0.1:7935\"",
        );
        let c = s.cluster_config().expect("valid");
        assert_eq!(c.lease_ttl, Duration::from_secs(10));
        assert_eq!(c.relay_advertise, s.relay_listen);
        // A wildcard listen needs an advertised relay address.
        let s = section(
            "etcd = [\"http://127.0.0.1:2379\"]\nnode_id = \"a\"\nsecret = \"0123456789abcdef\"",
        );
        let e = s.cluster_config().expect_err("wildcard").to_string();
        assert!(
            e.contains("cluster") && e.contains("relay_advertise"),
            "{e}"
        );
        let s = section(
            "etcd = [\"http://127.0.0.1:2379\"]\nnode_id = \"a\"\nsecret = \"short\"\nrelay_listen = \"127.0.0.1:7935\"",
        );
        assert!(s.cluster_config().is_err());
        assert!(!format!("{s:?}").contains("short"));
    }

    #[test]
    fn relay_limits_default_and_bad_values_name_their_key() {
        let base = "etcd = [\"http://127.0.0.1:2379\"]\nnode_id = \"a\"\nsecret = \"0123456789abcdef\"\nrelay_listen = \"127.0.0.1:7935\"\n";
        let c = section(base).cluster_config().expect("valid");
        assert_eq!(c.relay_hello_timeout, Duration::from_secs(5));
        assert_eq!(c.relay_max_connections, 4096);

        let c = section(&format!(
            "{base}relay_hello_timeout_ms = 1500\nrelay_max_connections = 64"
        ))
        .cluster_config()
        .expect("valid");
        assert_eq!(c.relay_hello_timeout, Duration::from_millis(1500));
        assert_eq!(c.relay_max_connections, 64);

        for (extra, key) in [
            (
                "relay_hello_timeout_ms = 0",
                "cluster.relay_hello_timeout_ms",
            ),
            (
                "relay_hello_timeout_ms = 60001",
                "cluster.relay_hello_timeout_ms",
            ),
            ("relay_max_connections = 0", "cluster.relay_max_connections"),
        ] {
            let e = section(&format!("{base}{extra}"))
                .cluster_config()
                .expect_err(extra)
                .to_string();
            assert!(e.contains(key), "{extra}: {e}");
        }
    }
}
