//! Settings of the crate's workers, and the one place their rules live.
//!
//! [`RtmpConfig::validate`] and [`PushConfig::validate`] are the checks of
//! the listener's and the pushes' settings: a refusal is a [`ConfigError`]
//! naming the field and the rule it breaks (`chunk_size must be
//! 128..=16777215`), which an application taking the settings from its users
//! reports next to its own name for the setting (the server says
//! `rtmp.chunk_size: …`).
//!
//! # When settings are not validated
//!
//! [`Rtmp::new`](crate::Rtmp::new) stays infallible for existing callers:
//! `validate` is the documented check, and `new` only repairs, as a last
//! resort, what would break the protocol: it clamps
//! [`chunk_size`](RtmpConfig::chunk_size) into [`CHUNK_SIZE_RANGE`] and
//! [`max_message_len`](RtmpConfig::max_message_len) into
//! [`MAX_MESSAGE_LEN_RANGE`], exactly the ranges `validate` accepts (so a
//! value `validate` accepts is never changed), and it logs a warning with
//! `validate`'s refusal, so nothing is corrected silently. The push client
//! clamps its chunk size into the same range.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use crate::chunk::MAX_RTMP_MESSAGE;
use crate::push::PushConfig;

/// The outbound chunk size announced to every peer by default.
pub const DEFAULT_CHUNK_SIZE: u32 = 4096;
/// How long a socket write may make no progress before the peer is dropped, by default.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a viewer gathers messages before writing them, by default.
pub const DEFAULT_COALESCE: Duration = Duration::from_millis(200);
/// Time from accepting a connection to its publish or play request, by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Simultaneous connections one listener accepts, by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
/// Simultaneous connections from one non-loopback address, by default.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 200;
/// Simultaneous connections from one loopback address, by default (local
/// tools, tests and a reverse proxy on the same host open many).
pub const DEFAULT_MAX_CONNECTIONS_PER_LOOPBACK_IP: usize = 2000;

/// The outbound chunk sizes accepted: at least RTMP's initial 128 bytes, at
/// most the longest message a chunk header can announce (24 bits), beyond
/// which a larger chunk never carries more.
pub const CHUNK_SIZE_RANGE: RangeInclusive<u32> = 128..=MAX_RTMP_MESSAGE as u32;
/// The longest-message limits accepted: at least 1 KiB (commands must fit),
/// at most what a chunk header can announce.
pub const MAX_MESSAGE_LEN_RANGE: RangeInclusive<usize> = 1024..=MAX_RTMP_MESSAGE;
/// The longest [`RtmpConfig::coalesce`] accepted: it adds that much latency.
pub const MAX_COALESCE: Duration = Duration::from_secs(1);

/// A setting refused by [`RtmpConfig::validate`] or [`PushConfig::validate`]:
/// the field, as named in the settings type (`backoff.max` for a nested one),
/// and the rule its value breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} {rule}")]
pub struct ConfigError {
    /// The field (`chunk_size`, `write_timeout`, `backoff.initial`, …).
    pub field: String,
    /// The rule, worded to follow the field (`must be positive`).
    pub rule: String,
}

impl ConfigError {
    fn new(field: &str, rule: impl Into<String>) -> Self {
        ConfigError {
            field: field.to_string(),
            rule: rule.into(),
        }
    }
}

/// Settings of the RTMP listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtmpConfig {
    /// Where to listen (port 0 picks a free port; see [`Rtmp::listening`](crate::Rtmp::listening)).
    pub listen: SocketAddr,
    /// The outbound chunk size, announced (Set Chunk Size) to every peer.
    /// Every viewer shares chunks built at this size. In [`CHUNK_SIZE_RANGE`].
    pub chunk_size: u32,
    /// A viewer whose socket accepts no bytes for this long is disconnected
    /// (positive).
    pub write_timeout: Duration,
    /// Time from accepting a connection (the TLS handshake included, for
    /// RTMPS) to its publish or play request; a peer that does not get there
    /// is closed with a log line and counted as refused
    /// (`handshake_timeout`). Positive.
    pub handshake_timeout: Duration,
    /// A publisher that sends nothing for this long is disconnected.
    pub read_timeout: Duration,
    /// Longest message accepted from a peer, in bytes, in
    /// [`MAX_MESSAGE_LEN_RANGE`] (at most 16 MiB − 1).
    pub max_message_len: usize,
    /// Most simultaneous connections on this listener; more are closed on
    /// accept with a log line and counted as refused
    /// (`too_many_connections`). Positive.
    pub max_connections: usize,
    /// Most simultaneous connections from one IP address that is not a
    /// loopback address; more are closed on accept like the above. Positive.
    pub max_connections_per_ip: usize,
    /// Most simultaneous connections from one loopback address (`127.0.0.0/8`,
    /// `::1`). Positive.
    pub max_connections_per_loopback_ip: usize,
    /// After each write a viewer waits this long before gathering what has
    /// been published meanwhile, so a live viewer is woken and makes a
    /// syscall a few times per window rather than once per message. It adds
    /// at most this much latency ([`MAX_COALESCE`] at most); zero writes
    /// every message as it comes.
    pub coalesce: Duration,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        RtmpConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 1935)),
            chunk_size: DEFAULT_CHUNK_SIZE,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            read_timeout: Duration::from_secs(30),
            max_message_len: 8 << 20,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            max_connections_per_loopback_ip: DEFAULT_MAX_CONNECTIONS_PER_LOOPBACK_IP,
            coalesce: DEFAULT_COALESCE,
        }
    }
}

impl RtmpConfig {
    /// Checks the settings, in field order: `chunk_size` in
    /// [`CHUNK_SIZE_RANGE`], positive `write_timeout` and
    /// `handshake_timeout`, `max_message_len` in [`MAX_MESSAGE_LEN_RANGE`],
    /// positive `max_connections`, `max_connections_per_ip` and
    /// `max_connections_per_loopback_ip`, `coalesce` at most
    /// [`MAX_COALESCE`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_chunk_size(self.chunk_size)?;
        check_positive("write_timeout", self.write_timeout)?;
        check_positive("handshake_timeout", self.handshake_timeout)?;
        if !MAX_MESSAGE_LEN_RANGE.contains(&self.max_message_len) {
            return Err(ConfigError::new(
                "max_message_len",
                format!("must be {MAX_MESSAGE_LEN_RANGE:?}"),
            ));
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
                return Err(ConfigError::new(field, "must be at least 1"));
            }
        }
        if self.coalesce > MAX_COALESCE {
            return Err(ConfigError::new(
                "coalesce",
                format!("must be at most {MAX_COALESCE:?} (it adds that much latency)"),
            ));
        }
        Ok(())
    }

    /// The settings [`Rtmp::new`](crate::Rtmp::new) runs with: the ones
    /// `validate` checks as ranges clamped into them (see the
    /// [module docs](self)).
    pub(crate) fn clamped(self) -> RtmpConfig {
        RtmpConfig {
            chunk_size: clamp_chunk_size(self.chunk_size),
            max_message_len: self
                .max_message_len
                .clamp(*MAX_MESSAGE_LEN_RANGE.start(), *MAX_MESSAGE_LEN_RANGE.end()),
            ..self
        }
    }
}

impl PushConfig {
    /// Checks the settings every push shares: `chunk_size` in
    /// [`CHUNK_SIZE_RANGE`], then positive `write_timeout`,
    /// `backoff.initial`, `backoff.max` and `connect_timeout`, and
    /// `backoff.max` at least `backoff.initial`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_chunk_size(self.chunk_size)?;
        for (field, value) in [
            ("write_timeout", self.write_timeout),
            ("backoff.initial", self.backoff.initial),
            ("backoff.max", self.backoff.max),
            ("connect_timeout", self.connect_timeout),
        ] {
            check_positive(field, value)?;
        }
        if self.backoff.max < self.backoff.initial {
            return Err(ConfigError::new(
                "backoff.max",
                format!(
                    "must be at least backoff.initial ({:?})",
                    self.backoff.initial
                ),
            ));
        }
        Ok(())
    }
}

/// `chunk_size` clamped into [`CHUNK_SIZE_RANGE`].
pub(crate) fn clamp_chunk_size(chunk_size: u32) -> u32 {
    chunk_size.clamp(*CHUNK_SIZE_RANGE.start(), *CHUNK_SIZE_RANGE.end())
}

fn check_chunk_size(chunk_size: u32) -> Result<(), ConfigError> {
    if CHUNK_SIZE_RANGE.contains(&chunk_size) {
        Ok(())
    } else {
        Err(ConfigError::new(
            "chunk_size",
            format!("must be {CHUNK_SIZE_RANGE:?}"),
        ))
    }
}

fn check_positive(field: &str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        Err(ConfigError::new(field, "must be positive"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::Backoff;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(RtmpConfig::default().validate(), Ok(()));
        assert_eq!(PushConfig::default().validate(), Ok(()));
    }

    #[test]
    fn chunk_size_rule_names_the_field_and_the_range() {
        for ok in [128, 4096, 65_536, 65_537, 0x00ff_ffff] {
            let config = RtmpConfig {
                chunk_size: ok,
                ..RtmpConfig::default()
            };
            assert_eq!(config.validate(), Ok(()), "{ok}");
            assert_eq!(
                config.clone().clamped(),
                config,
                "an accepted value is kept"
            );
        }
        for bad in [0, 127, 0x0100_0000, u32::MAX] {
            let config = RtmpConfig {
                chunk_size: bad,
                ..RtmpConfig::default()
            };
            let e = config.validate().expect_err("refused");
            assert_eq!(e.field, "chunk_size");
            assert_eq!(e.to_string(), "chunk_size must be 128..=16777215");
            assert!(CHUNK_SIZE_RANGE.contains(&config.clamped().chunk_size));
        }
    }

    #[test]
    fn new_keeps_what_validate_accepts_and_clamps_the_rest() {
        let accepted = RtmpConfig {
            chunk_size: 65_537,
            max_message_len: 1024,
            ..RtmpConfig::default()
        };
        assert_eq!(crate::Rtmp::new(accepted.clone()).config(), &accepted);
        let refused = RtmpConfig {
            chunk_size: 100,
            max_message_len: usize::MAX,
            ..RtmpConfig::default()
        };
        let e = refused.validate().expect_err("refused");
        assert_eq!(e.field, "chunk_size");
        let rtmp = crate::Rtmp::new(refused);
        assert_eq!(rtmp.config().chunk_size, 128);
        assert_eq!(rtmp.config().max_message_len, MAX_RTMP_MESSAGE);
        assert_eq!(rtmp.config().validate(), Ok(()));
    }

    #[test]
    fn every_rule_names_its_field() {
        let rtmp = |f: fn(&mut RtmpConfig)| {
            let mut c = RtmpConfig::default();
            f(&mut c);
            c.validate().expect_err("refused").field
        };
        assert_eq!(rtmp(|c| c.write_timeout = Duration::ZERO), "write_timeout");
        assert_eq!(rtmp(|c| c.max_message_len = 100), "max_message_len");
        assert_eq!(
            rtmp(|c| c.handshake_timeout = Duration::ZERO),
            "handshake_timeout"
        );
        assert_eq!(rtmp(|c| c.max_connections = 0), "max_connections");
        assert_eq!(
            rtmp(|c| c.max_connections_per_ip = 0),
            "max_connections_per_ip"
        );
        assert_eq!(
            rtmp(|c| c.max_connections_per_loopback_ip = 0),
            "max_connections_per_loopback_ip"
        );
        assert_eq!(
            rtmp(|c| c.coalesce = Duration::from_millis(1001)),
            "coalesce"
        );
        let push = |f: fn(&mut PushConfig)| {
            let mut c = PushConfig::default();
            f(&mut c);
            c.validate().expect_err("refused").to_string()
        };
        assert_eq!(
            push(|c| c.chunk_size = 64),
            "chunk_size must be 128..=16777215"
        );
        assert_eq!(
            push(|c| c.backoff.initial = Duration::ZERO),
            "backoff.initial must be positive"
        );
        assert_eq!(
            push(|c| c.connect_timeout = Duration::ZERO),
            "connect_timeout must be positive"
        );
        assert_eq!(
            push(|c| {
                c.backoff = Backoff {
                    initial: Duration::from_millis(500),
                    max: Duration::from_millis(100),
                    max_attempts: 0,
                }
            }),
            "backoff.max must be at least backoff.initial (500ms)"
        );
    }
}
