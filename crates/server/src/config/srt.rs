//! `[srt]`: the SRT listener (publish and read by stream id), its
//! connection limits and handshake timeout, HTTP-TS's write timeout, and
//! `[[srt.encryption]]`.
//!
//! The rules of the values are `tidewater::srt`'s
//! ([`SrtConfig::validate`](tidewater::srt::SrtConfig::validate)); this
//! module maps each key to its field and each refusal back to its key
//! (`srt.encryption[0].passphrase`, whose value is never shown).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::{FieldKey, field_error};
use crate::error::{Error, Result};

/// `[srt]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SrtSection {
    /// Whether to run the SRT listener and serve `/ts/` (default true).
    pub enabled: bool,
    /// UDP address and port (default `0.0.0.0:8890`).
    pub listen: SocketAddr,
    /// TSBPD latency of every connection (default 120).
    pub latency_ms: u64,
    /// A publisher that sends nothing for this long is closed (default 10000).
    pub read_timeout_ms: u64,
    /// A reader (SRT or HTTP-TS) that accepts nothing for this long is closed (default 5000).
    pub write_timeout_ms: u64,
    /// A caller whose handshake has not completed this long after its first
    /// packet is forgotten (default 5000).
    pub handshake_timeout_ms: u64,
    /// Most callers at once, connected or in their handshake (default 20000).
    pub max_connections: usize,
    /// Most callers at once from one address (default 200).
    pub max_connections_per_ip: usize,
    /// Most callers at once from one loopback address (default 2000).
    pub max_connections_per_loopback_ip: usize,
    /// Encryption per application or stream (`[[srt.encryption]]`).
    pub encryption: Vec<SrtEncryption>,
}

/// `[[srt.encryption]]`: one application's or stream's passphrase.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SrtEncryption {
    /// `app` or `app/stream` (the most specific entry wins).
    pub path: String,
    /// 10 to 79 bytes.
    pub passphrase: String,
    /// AES key length in bytes: 16 (default), 24 or 32.
    #[serde(default = "default_key_length")]
    pub key_length: u16,
}

fn default_key_length() -> u16 {
    16
}

impl std::fmt::Debug for SrtEncryption {
    // The passphrase never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtEncryption")
            .field("path", &self.path)
            .field("key_length", &self.key_length)
            .finish_non_exhaustive()
    }
}

impl Default for SrtSection {
    fn default() -> Self {
        let d = tidewater::srt::SrtConfig::default();
        SrtSection {
            enabled: true,
            listen: d.listen,
            latency_ms: d.latency.as_millis() as u64,
            read_timeout_ms: d.read_timeout.as_millis() as u64,
            write_timeout_ms: d.write_timeout.as_millis() as u64,
            handshake_timeout_ms: d.handshake_timeout.as_millis() as u64,
            max_connections: d.max_connections,
            max_connections_per_ip: d.max_connections_per_ip,
            max_connections_per_loopback_ip: d.max_connections_per_loopback_ip,
            encryption: Vec::new(),
        }
    }
}

impl SrtSection {
    /// The SRT worker's configuration (`None` when disabled), checked by
    /// [`SrtConfig::validate`](tidewater::srt::SrtConfig::validate); an
    /// error names the key at fault.
    pub fn worker_config(&self) -> Result<Option<tidewater::srt::SrtConfig>> {
        if !self.enabled {
            return Ok(None);
        }
        let config = tidewater::srt::SrtConfig {
            listen: self.listen,
            latency: Duration::from_millis(self.latency_ms),
            read_timeout: Duration::from_millis(self.read_timeout_ms),
            write_timeout: Duration::from_millis(self.write_timeout_ms),
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            max_connections_per_loopback_ip: self.max_connections_per_loopback_ip,
            encryption: self
                .encryption
                .iter()
                .map(|e| tidewater::srt::PathEncryption {
                    path: e.path.clone(),
                    passphrase: e.passphrase.clone(),
                    key_length: e.key_length,
                })
                .collect(),
        };
        config.validate().map_err(|e| self.refused(&e))?;
        Ok(Some(config))
    }

    /// Checks the section (nothing when disabled).
    pub(super) fn check(&self) -> Result<()> {
        self.worker_config().map(drop)
    }

    /// The crate's refusal, at the key of this section that sets the field.
    fn refused(&self, e: &tidewater::srt::ConfigError) -> Error {
        let key = match e.field.as_str() {
            "latency" => FieldKey::shown("latency_ms", self.latency_ms),
            "read_timeout" => FieldKey::shown("read_timeout_ms", self.read_timeout_ms),
            "write_timeout" => FieldKey::shown("write_timeout_ms", self.write_timeout_ms),
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
            // `encryption[I].NAME`: the same names here.
            field => self
                .encryption_entry(field)
                .and_then(|(entry, name)| match name {
                    "passphrase" => FieldKey::secret(field),
                    "key_length" => FieldKey::shown(field, entry.key_length),
                    "path" => FieldKey::shown(field, format!("{:?}", entry.path)),
                    _ => None,
                }),
        };
        field_error("srt", key, e)
    }

    /// The entry and key an `encryption[I].NAME` field names.
    fn encryption_entry<'a>(&self, field: &'a str) -> Option<(&SrtEncryption, &'a str)> {
        let (index, name) = field.strip_prefix("encryption[")?.split_once("].")?;
        Some((self.encryption.get(index.parse::<usize>().ok()?)?, name))
    }
}
