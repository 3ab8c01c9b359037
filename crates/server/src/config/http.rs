//! `[http]`: the HTTP listener (API, health and the HTTP outputs), and the
//! limits that apply to it and to the HTTPS listener.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

use super::setting_error;
use crate::error::Result;

/// The HTTP port when none is configured.
pub const DEFAULT_HTTP_PORT: u16 = 8888;

/// `[http]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address and port to listen on (default `0.0.0.0:8888`; port 0 picks a free one).
    pub listen: SocketAddr,
    /// A client must send a request's whole head (request line and headers)
    /// within this many milliseconds of starting it, or of opening the
    /// connection, else the connection is closed (default 10000): a peer
    /// that trickles headers (slowloris) or connects and sends nothing cannot
    /// hold a connection. Also bounds the TLS handshake of HTTPS.
    pub header_read_timeout_ms: u64,
    /// Most HTTP and HTTPS connections open at once (default 20000); one over
    /// it is closed at once and counted as a refusal (`too_many_connections`) of
    /// its listener.
    pub max_connections: usize,
    /// Origins whose pages may read the outputs (HLS, DASH, HTTP-FLV/TS,
    /// playback) from a browser; `"*"` (the default) is any origin.
    pub cors_origins: Vec<String>,
    /// Origins whose pages may call the API from a browser (default none:
    /// the console is served from the same origin); `"*"` is any origin.
    pub api_cors_origins: Vec<String>,
}

/// The longest `header_read_timeout_ms` accepted (ten minutes).
const MAX_HEADER_READ_TIMEOUT_MS: u64 = 600_000;

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_HTTP_PORT)),
            header_read_timeout_ms: 10_000,
            max_connections: 20_000,
            cors_origins: vec!["*".to_string()],
            api_cors_origins: Vec::new(),
        }
    }
}

impl HttpConfig {
    /// The header read timeout.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// The cross-origin policies.
    pub fn cors(&self) -> crate::http::cors::Cors {
        crate::http::cors::Cors {
            outputs: self.cors_origins.clone(),
            api: self.api_cors_origins.clone(),
        }
    }

    /// Checks the limits and origins.
    pub(super) fn check(&self) -> Result<()> {
        for (key, list) in [
            ("http.cors_origins", &self.cors_origins),
            ("http.api_cors_origins", &self.api_cors_origins),
        ] {
            for origin in list {
                let ok = origin == "*"
                    || ((origin.starts_with("http://") || origin.starts_with("https://"))
                        && !origin.ends_with('/')
                        && axum::http::HeaderValue::from_str(origin).is_ok());
                if !ok {
                    return Err(setting_error(
                        key.into(),
                        format!(
                            "invalid origin {origin:?}: \"*\" or scheme://host[:port], without a path"
                        ),
                    ));
                }
            }
        }
        if !(1..=MAX_HEADER_READ_TIMEOUT_MS).contains(&self.header_read_timeout_ms) {
            return Err(setting_error(
                "http.header_read_timeout_ms".into(),
                format!(
                    "invalid value {}: must be 1..={MAX_HEADER_READ_TIMEOUT_MS}",
                    self.header_read_timeout_ms
                ),
            ));
        }
        if self.max_connections == 0 {
            return Err(setting_error(
                "http.max_connections".into(),
                "invalid value 0: at least one connection must be allowed".into(),
            ));
        }
        Ok(())
    }
}
