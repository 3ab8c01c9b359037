//! Settings of the SRT listener: address, latency, and encryption per path.

use std::net::SocketAddr;
use std::time::Duration;

use srt_protocol::options::{KeySize, Passphrase};
use srt_protocol::settings::KeySettings;
use tidewater_core::StreamKey;

use crate::error::{Error, Result};

/// The default SRT port.
pub const DEFAULT_PORT: u16 = 8890;

/// Encryption of one application (`live`) or one stream (`live/cam1`).
#[derive(Clone, PartialEq, Eq)]
pub struct PathEncryption {
    /// `app` or `app/stream`; the most specific entry wins.
    pub path: String,
    /// The passphrase (10 to 79 characters).
    pub passphrase: String,
    /// AES key length in bytes: 16, 24 or 32.
    pub key_length: u16,
}

impl std::fmt::Debug for PathEncryption {
    // The passphrase never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PathEncryption")
            .field("path", &self.path)
            .field("key_length", &self.key_length)
            .finish_non_exhaustive()
    }
}

/// Settings of the SRT worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrtConfig {
    /// Where to listen (UDP; port 0 picks a free port).
    pub listen: SocketAddr,
    /// TSBPD latency of every connection (the larger of this and the caller's applies).
    pub latency: Duration,
    /// Encryption per application or stream; paths not listed are unencrypted.
    pub encryption: Vec<PathEncryption>,
    /// A publisher that sends nothing for this long is disconnected.
    pub read_timeout: Duration,
    /// A reader whose connection accepts nothing for this long is disconnected.
    pub write_timeout: Duration,
    /// Most simultaneous connections.
    pub max_connections: usize,
}

impl Default for SrtConfig {
    fn default() -> Self {
        SrtConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
            latency: Duration::from_millis(120),
            encryption: Vec::new(),
            read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(5),
            max_connections: 1000,
        }
    }
}

impl SrtConfig {
    /// Checks passphrase lengths and key lengths.
    pub fn validate(&self) -> Result<()> {
        for e in &self.encryption {
            let bad =
                |what: String| Error::Config(format!("[srt] encryption for {:?}: {what}", e.path));
            if !(10..=79).contains(&e.passphrase.chars().count()) {
                return Err(bad("the passphrase must be 10 to 79 characters".into()));
            }
            if !matches!(e.key_length, 16 | 24 | 32) {
                return Err(bad(format!(
                    "key length {} (expected 16, 24 or 32)",
                    e.key_length
                )));
            }
            if e.path.is_empty() || e.path.split('/').count() > 2 {
                return Err(bad("the path must be {app} or {app}/{stream}".into()));
            }
        }
        Ok(())
    }

    /// The encryption of a stream: its own entry, else its application's.
    pub fn encryption_for(&self, key: &StreamKey) -> Option<&PathEncryption> {
        let full = key.to_string();
        self.encryption
            .iter()
            .find(|e| e.path == full)
            .or_else(|| self.encryption.iter().find(|e| e.path == key.app()))
    }
}

/// The key size srt-protocol speaks for a key length in bytes.
pub(crate) fn key_size(length: u16) -> KeySize {
    match length {
        24 => KeySize::AES192,
        32 => KeySize::AES256,
        _ => KeySize::AES128,
    }
}

/// The key settings a listener accepts a caller of this path with:
/// `announced` is the key size the caller's handshake announced
/// (`Unspecified` when it said none; srt-protocol then works with 16-byte keys).
pub(crate) fn key_settings(e: &PathEncryption, announced: KeySize) -> Result<KeySettings> {
    let passphrase = Passphrase::try_from(e.passphrase.clone())
        .map_err(|err| Error::Config(format!("[srt] passphrase for {:?}: {err}", e.path)))?;
    Ok(KeySettings {
        key_size: match announced {
            KeySize::Unspecified => KeySize::Unspecified,
            _ => key_size(e.key_length),
        },
        passphrase,
    })
}
