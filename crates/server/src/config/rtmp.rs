//! `[rtmp]` and `[rtmps]`: the RTMP listener (publish and play on one port),
//! the pushes' reconnection schedule, and the RTMPS listener (the same
//! service inside TLS, with `[rtmp]`'s chunk size and timeouts).
//!
//! The rules of the values are `tidewater::rtmp`'s
//! ([`RtmpConfig::validate`](tidewater::rtmp::RtmpConfig::validate),
//! [`PushConfig::validate`](tidewater::rtmp::PushConfig::validate)); this
//! module maps each key to its field and each refusal back to its key.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{FieldKey, field_error, setting_error};
use crate::error::{Error, Result};

/// `[rtmp]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtmpSection {
    /// Whether to listen for RTMP at all (default true).
    pub enabled: bool,
    /// Address and port (default `0.0.0.0:1935`; port 0 picks a free one).
    pub listen: SocketAddr,
    /// The chunk size announced to every player (bytes, in
    /// [`CHUNK_SIZE_RANGE`](tidewater::rtmp::CHUNK_SIZE_RANGE): 128 to
    /// 16777215; default 4096).
    pub chunk_size: u32,
    /// A viewer whose socket accepts nothing for this long is disconnected (default 5000).
    pub write_timeout_ms: u64,
    /// How long a viewer gathers messages between writes (default 200; 0 writes each at once).
    pub coalesce_ms: u64,
    /// Time from a connection's accept to its publish or play request (the
    /// TLS handshake included, for RTMPS); a peer that does not get there is
    /// closed (default 10000).
    pub handshake_timeout_ms: u64,
    /// Most connections open at once on the listener (default 20000; RTMP
    /// and RTMPS count separately).
    pub max_connections: usize,
    /// Most connections open at once from one address (default 200).
    pub max_connections_per_ip: usize,
    /// Most connections open at once from one loopback address (default 2000).
    pub max_connections_per_loopback_ip: usize,
    /// The wait before a push's first reconnection (default 500); it doubles
    /// with each failure in a row, up to `push_retry_max_ms`.
    pub push_retry_initial_ms: u64,
    /// The longest wait between a push's reconnections (default 30000).
    pub push_retry_max_ms: u64,
    /// Failures in a row after which a push gives up until the stream is
    /// published again (default 0: never).
    pub push_max_attempts: u32,
    /// Time for a push to connect and get its publish accepted (default 10000).
    pub push_connect_timeout_ms: u64,
}

/// The RTMP port when none is configured.
pub const DEFAULT_RTMP_PORT: u16 = 1935;

impl Default for RtmpSection {
    fn default() -> Self {
        RtmpSection {
            enabled: true,
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_RTMP_PORT)),
            chunk_size: tidewater::rtmp::DEFAULT_CHUNK_SIZE,
            write_timeout_ms: tidewater::rtmp::DEFAULT_WRITE_TIMEOUT.as_millis() as u64,
            coalesce_ms: tidewater::rtmp::DEFAULT_COALESCE.as_millis() as u64,
            handshake_timeout_ms: tidewater::rtmp::DEFAULT_HANDSHAKE_TIMEOUT.as_millis() as u64,
            max_connections: tidewater::rtmp::DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: tidewater::rtmp::DEFAULT_MAX_CONNECTIONS_PER_IP,
            max_connections_per_loopback_ip:
                tidewater::rtmp::DEFAULT_MAX_CONNECTIONS_PER_LOOPBACK_IP,
            push_retry_initial_ms: 500,
            push_retry_max_ms: 30_000,
            push_max_attempts: 0,
            push_connect_timeout_ms: 10_000,
        }
    }
}

impl RtmpSection {
    /// The RTMP worker's configuration, checked by
    /// [`RtmpConfig::validate`](tidewater::rtmp::RtmpConfig::validate); an
    /// error names the key at fault.
    pub fn worker_config(&self) -> Result<tidewater::rtmp::RtmpConfig> {
        let config = tidewater::rtmp::RtmpConfig {
            listen: self.listen,
            chunk_size: self.chunk_size,
            write_timeout: Duration::from_millis(self.write_timeout_ms),
            coalesce: Duration::from_millis(self.coalesce_ms),
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            max_connections_per_loopback_ip: self.max_connections_per_loopback_ip,
            ..tidewater::rtmp::RtmpConfig::default()
        };
        config.validate().map_err(|e| self.refused(&e))?;
        Ok(config)
    }

    /// The settings every push shares, checked by
    /// [`PushConfig::validate`](tidewater::rtmp::PushConfig::validate)
    /// after the worker's; an error names the key at fault.
    pub fn push_config(&self) -> Result<tidewater::rtmp::PushConfig> {
        let worker = self.worker_config()?;
        let config = tidewater::rtmp::PushConfig {
            chunk_size: worker.chunk_size,
            backoff: tidewater::rtmp::Backoff {
                initial: Duration::from_millis(self.push_retry_initial_ms),
                max: Duration::from_millis(self.push_retry_max_ms),
                max_attempts: self.push_max_attempts,
            },
            connect_timeout: Duration::from_millis(self.push_connect_timeout_ms),
            write_timeout: worker.write_timeout,
            ..tidewater::rtmp::PushConfig::default()
        };
        config.validate().map_err(|e| self.refused(&e))?;
        Ok(config)
    }

    /// Checks the section: the worker's and the pushes' settings.
    pub(super) fn check(&self) -> Result<()> {
        self.push_config().map(drop)
    }

    /// The crate's refusal, at the key of this section that sets the field.
    fn refused(&self, e: &tidewater::rtmp::ConfigError) -> Error {
        let key = match e.field.as_str() {
            "chunk_size" => FieldKey::shown("chunk_size", self.chunk_size),
            "write_timeout" => FieldKey::shown("write_timeout_ms", self.write_timeout_ms),
            "coalesce" => FieldKey::shown("coalesce_ms", self.coalesce_ms),
            "handshake_timeout" => {
                FieldKey::shown("handshake_timeout_ms", self.handshake_timeout_ms)
            }
            "max_connections" => FieldKey::shown("max_connections", self.max_connections),
            "max_connections_per_ip" => {
                FieldKey::shown("max_connections_per_ip", self.max_connections_per_ip)
            }
            "max_connections_per_loopback_ip" => FieldKey::shown(
                "max_connections_per_loopback_ip",
                self.max_connections_per_loopback_ip,
            ),
            "backoff.initial" => {
                FieldKey::shown("push_retry_initial_ms", self.push_retry_initial_ms)
            }
            "backoff.max" => FieldKey::shown("push_retry_max_ms", self.push_retry_max_ms),
            "backoff.max_attempts" => FieldKey::shown("push_max_attempts", self.push_max_attempts),
            "connect_timeout" => {
                FieldKey::shown("push_connect_timeout_ms", self.push_connect_timeout_ms)
            }
            _ => None,
        };
        field_error("rtmp", key, e)
    }
}

/// `[rtmps]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtmpsSection {
    /// Address and port (default `0.0.0.0:1936`).
    pub listen: SocketAddr,
    /// The certificate chain, PEM, leaf first. Without `cert` and `key` there
    /// is no RTMPS listener.
    pub cert: Option<PathBuf>,
    /// The private key of `cert`, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
}

/// The RTMPS port when none is configured.
pub const DEFAULT_RTMPS_PORT: u16 = 1936;

impl Default for RtmpsSection {
    fn default() -> Self {
        RtmpsSection {
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_RTMPS_PORT)),
            cert: None,
            key: None,
        }
    }
}

impl RtmpsSection {
    /// Checks the section: both or neither of `cert` and `key`, and their
    /// files.
    pub(super) fn check(&self) -> Result<()> {
        self.server_tls().map(drop)
    }

    /// The listener's certificate and key, when both are configured; an
    /// error names the key whose file is wrong.
    pub fn server_tls(&self) -> Result<Option<tidewater::rtmp::ServerTls>> {
        match (&self.cert, &self.key) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(setting_error(
                "rtmps.key".into(),
                "missing: rtmps.cert is set, the listener needs its key too".into(),
            )),
            (None, Some(_)) => Err(setting_error(
                "rtmps.cert".into(),
                "missing: rtmps.key is set, the listener needs its certificate too".into(),
            )),
            (Some(cert), Some(key)) => tidewater::rtmp::ServerTls::from_pem_files(cert, key)
                .map(Some)
                .map_err(|e| {
                    let which = if e.to_string().contains("private key") {
                        "rtmps.key"
                    } else {
                        "rtmps.cert"
                    };
                    setting_error(which.into(), tls_reason(&e))
                }),
        }
    }
}

/// The reason of a TLS setup error, without its empty context.
pub(super) fn tls_reason(e: &tidewater::rtmp::Error) -> String {
    match e {
        tidewater::rtmp::Error::Tls { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}
