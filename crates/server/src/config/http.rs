//! `[http]`: the HTTP listener (API, health and the HTTP outputs).

use std::net::{Ipv4Addr, SocketAddr};

use serde::Deserialize;

/// The HTTP port when none is configured.
pub const DEFAULT_HTTP_PORT: u16 = 8888;

/// `[http]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address and port to listen on (default `0.0.0.0:8888`; port 0 picks a free one).
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_HTTP_PORT)),
        }
    }
}
