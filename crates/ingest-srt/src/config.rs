//! Settings of the SRT listener: address, latency, encryption per path,
//! connection limits and timeouts, and their rules: [`SrtConfig::validate`] is the one check, run by
//! [`Srt::new`](crate::Srt::new) too. A refusal is a [`ConfigError`] naming
//! the field as [`SrtConfig`] names it (`encryption[0].passphrase`), so an
//! application taking the settings from its users can report it next to
//! its own name for the setting.

use std::net::SocketAddr;
use std::time::Duration;

use srt_protocol::options::{KeySize, Passphrase};
use srt_protocol::settings::KeySettings;
use tidewater_core::StreamKey;

use crate::error::{Error, Result};

/// The default SRT port.
pub const DEFAULT_PORT: u16 = 8890;

/// The longest [`SrtConfig::latency`] accepted.
pub const MAX_LATENCY: Duration = Duration::from_secs(60);

/// The default [`SrtConfig::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;

/// The default [`SrtConfig::max_connections_per_ip`].
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 200;

/// The default [`SrtConfig::max_connections_per_loopback_ip`].
pub const DEFAULT_MAX_CONNECTIONS_PER_LOOPBACK_IP: usize = 2_000;

/// The default [`SrtConfig::handshake_timeout`].
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest [`SrtConfig::handshake_timeout`] accepted.
pub const MAX_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// A setting refused by [`SrtConfig::validate`]: the field, as named in
/// [`SrtConfig`] (`latency`, `encryption[1].key_length`), and the rule its
/// value breaks. It never shows a passphrase.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} {rule}")]
pub struct ConfigError {
    /// The field.
    pub field: String,
    /// The rule, worded to follow the field (`must be positive`).
    pub rule: String,
}

/// Encryption of one application (`live`) or one stream (`live/cam1`).
#[derive(Clone, PartialEq, Eq)]
pub struct PathEncryption {
    /// `app` or `app/stream`; the most specific entry wins.
    pub path: String,
    /// The passphrase: 10 to 79 bytes (srt-protocol's rule).
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
    /// TSBPD latency of every connection (the larger of this and the caller's
    /// applies); at most [`MAX_LATENCY`].
    pub latency: Duration,
    /// Encryption per application or stream; paths not listed are unencrypted.
    pub encryption: Vec<PathEncryption>,
    /// A publisher that sends nothing for this long is disconnected (positive).
    pub read_timeout: Duration,
    /// A reader whose connection accepts nothing for this long is
    /// disconnected (positive).
    pub write_timeout: Duration,
    /// Most callers at once, connected or in the middle of their handshake
    /// (default [`DEFAULT_MAX_CONNECTIONS`]); one more is refused in its
    /// handshake (`REJX_OVERLOAD`). At least 1.
    pub max_connections: usize,
    /// Most callers at once from one IP address, loopback excepted (default
    /// [`DEFAULT_MAX_CONNECTIONS_PER_IP`]); at least 1.
    pub max_connections_per_ip: usize,
    /// Most callers at once from one loopback address (`127.0.0.0/8`, `::1`:
    /// local encoders, restreamers and tests; default
    /// [`DEFAULT_MAX_CONNECTIONS_PER_LOOPBACK_IP`]); at least 1.
    pub max_connections_per_loopback_ip: usize,
    /// A caller whose handshake has not completed this long after its first
    /// packet is forgotten and its state freed (default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`]); positive, at most
    /// [`MAX_HANDSHAKE_TIMEOUT`]. libsrt callers give up after 3 s by default.
    pub handshake_timeout: Duration,
}

impl Default for SrtConfig {
    fn default() -> Self {
        SrtConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
            latency: Duration::from_millis(120),
            encryption: Vec::new(),
            read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(5),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            max_connections_per_loopback_ip: DEFAULT_MAX_CONNECTIONS_PER_LOOPBACK_IP,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

impl SrtConfig {
    /// Checks the settings: positive `read_timeout` and `write_timeout`,
    /// `latency` at most [`MAX_LATENCY`], `handshake_timeout` positive and at
    /// most [`MAX_HANDSHAKE_TIMEOUT`], `max_connections`,
    /// `max_connections_per_ip` and `max_connections_per_loopback_ip` at
    /// least 1, then each encryption entry in order: a passphrase srt-protocol accepts (10 to 79 bytes), a key
    /// length of 16, 24 or 32, a path `{app}` or `{app}/{stream}`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: String, rule: String| Err(ConfigError { field, rule });
        for (field, value) in [
            ("read_timeout", self.read_timeout),
            ("write_timeout", self.write_timeout),
        ] {
            if value.is_zero() {
                return bad(field.into(), "must be positive".into());
            }
        }
        if self.latency > MAX_LATENCY {
            return bad("latency".into(), format!("must be at most {MAX_LATENCY:?}"));
        }
        if self.handshake_timeout.is_zero() {
            return bad("handshake_timeout".into(), "must be positive".into());
        }
        if self.handshake_timeout > MAX_HANDSHAKE_TIMEOUT {
            return bad(
                "handshake_timeout".into(),
                format!("must be at most {MAX_HANDSHAKE_TIMEOUT:?}"),
            );
        }
        for (field, value) in [
            ("max_connections", self.max_connections),
            ("max_connections_per_ip", self.max_connections_per_ip),
            (
                "max_connections_per_loopback_ip",
                self.max_connections_per_loopback_ip,
            ),
        ] {
            if value == 0 {
                return bad(field.into(), "must be at least 1".into());
            }
        }
        for (i, e) in self.encryption.iter().enumerate() {
            let field = |name: &str| format!("encryption[{i}].{name}");
            if Passphrase::try_from(e.passphrase.clone()).is_err() {
                return bad(
                    field("passphrase"),
                    format!(
                        "must be 10 to 79 bytes long, not {} (path {:?})",
                        e.passphrase.len(),
                        e.path
                    ),
                );
            }
            if !matches!(e.key_length, 16 | 24 | 32) {
                return bad(
                    field("key_length"),
                    format!("must be 16, 24 or 32 (path {:?})", e.path),
                );
            }
            if e.path.is_empty() || e.path.split('/').count() > 2 {
                return bad(field("path"), "must be {app} or {app}/{stream}".into());
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
    // Checked by `SrtConfig::validate`, which `Srt::new` runs.
    let passphrase = Passphrase::try_from(e.passphrase.clone()).map_err(|_| {
        Error::Config(ConfigError {
            field: "encryption.passphrase".into(),
            rule: format!("must be 10 to 79 bytes long (path {:?})", e.path),
        })
    })?;
    Ok(KeySettings {
        key_size: match announced {
            KeySize::Unspecified => KeySize::Unspecified,
            _ => key_size(e.key_length),
        },
        passphrase,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, passphrase: &str, key_length: u16) -> PathEncryption {
        PathEncryption {
            path: path.into(),
            passphrase: passphrase.into(),
            key_length,
        }
    }

    /// The field `validate` refuses `config` for.
    fn refused(config: SrtConfig) -> String {
        config.validate().expect_err("refused").field
    }

    #[test]
    fn defaults_are_valid() {
        let d = SrtConfig::default();
        assert_eq!(d.validate(), Ok(()));
        assert_eq!(
            (
                d.max_connections,
                d.max_connections_per_ip,
                d.max_connections_per_loopback_ip,
                d.handshake_timeout
            ),
            (20_000, 200, 2_000, Duration::from_secs(5))
        );
    }

    #[test]
    fn every_rule_names_its_field() {
        let d = SrtConfig::default;
        let zero = Duration::ZERO;
        assert_eq!(
            refused(SrtConfig {
                read_timeout: zero,
                ..d()
            }),
            "read_timeout"
        );
        assert_eq!(
            refused(SrtConfig {
                write_timeout: zero,
                ..d()
            }),
            "write_timeout"
        );
        assert_eq!(
            refused(SrtConfig {
                latency: Duration::from_millis(60_001),
                ..d()
            }),
            "latency"
        );
        for timeout in [zero, Duration::from_millis(60_001)] {
            assert_eq!(
                refused(SrtConfig {
                    handshake_timeout: timeout,
                    ..d()
                }),
                "handshake_timeout"
            );
        }
        assert_eq!(
            refused(SrtConfig {
                max_connections: 0,
                ..d()
            }),
            "max_connections"
        );
        assert_eq!(
            refused(SrtConfig {
                max_connections_per_ip: 0,
                ..d()
            }),
            "max_connections_per_ip"
        );
        assert_eq!(
            refused(SrtConfig {
                max_connections_per_loopback_ip: 0,
                ..d()
            }),
            "max_connections_per_loopback_ip"
        );
        let lowest = SrtConfig {
            max_connections: 1,
            max_connections_per_ip: 1,
            max_connections_per_loopback_ip: 1,
            handshake_timeout: Duration::from_millis(1),
            ..d()
        };
        assert_eq!(lowest.validate(), Ok(()));
        let ok = entry("live", "0123456789", 16);
        let with = |e: PathEncryption| SrtConfig {
            encryption: vec![ok.clone(), e],
            ..d()
        };
        assert_eq!(with(ok.clone()).validate(), Ok(()));
        assert_eq!(
            refused(with(entry("x", "short", 16))),
            "encryption[1].passphrase"
        );
        assert_eq!(
            refused(with(entry("x", "0123456789", 20))),
            "encryption[1].key_length"
        );
        assert_eq!(
            refused(with(entry("a/b/c", "0123456789", 32))),
            "encryption[1].path"
        );
    }

    #[test]
    fn the_passphrase_rule_is_srt_protocols_and_is_never_shown() {
        // 40 two-byte characters: 80 bytes, which srt-protocol refuses.
        let long = "é".repeat(40);
        let e = SrtConfig {
            encryption: vec![entry("live", &long, 16)],
            ..SrtConfig::default()
        }
        .validate()
        .expect_err("refused");
        assert!(!e.to_string().contains('é'), "{e}");
        assert!(e.to_string().contains("10 to 79 bytes"), "{e}");
        // Five of them are 10 bytes: accepted, and usable.
        let five = entry("live", &"é".repeat(5), 16);
        assert!(key_settings(&five, KeySize::Unspecified).is_ok());
        let config = SrtConfig {
            encryption: vec![five],
            ..SrtConfig::default()
        };
        assert_eq!(config.validate(), Ok(()));
    }
}
