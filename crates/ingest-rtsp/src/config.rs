//! Settings of the RTSP listener, and the one place their rules live.
//!
//! [`RtspConfig::validate`] refuses a setting with a [`ConfigError`] naming
//! the field and the rule it breaks (`session_timeout must be positive`);
//! [`Rtsp::new`](crate::Rtsp::new) calls it.
// Checks the operator's `[rtsp]` settings: no indexing, unwrap, expect or
// panic outside tests (RELIABILITY.md, "Lints").
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::expect_used,
        clippy::unwrap_used,
        clippy::panic
    )
)]

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

/// The RTSP port (TCP) by default.
pub const DEFAULT_PORT: u16 = 8554;
/// The server's RTP port for UDP transport by default (RTCP is the next).
pub const DEFAULT_RTP_PORT: u16 = 8000;
/// The server's RTCP port for UDP transport by default.
pub const DEFAULT_RTCP_PORT: u16 = 8001;
/// A session without requests or media for this long is closed, by default
/// (announced to clients in the `Session` header's `timeout`).
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// A request begun must be complete (head and body) this long after its
/// first byte, by default.
pub const DEFAULT_HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest request (head and body) accepted, by default.
pub const DEFAULT_MAX_REQUEST_LEN: usize = 64 * 1024;
/// The largest RTP payload sent to readers, by default (fits a 1500-byte
/// Ethernet MTU with IP, UDP and RTP headers).
pub const DEFAULT_MAX_PAYLOAD: usize = 1400;
/// How long a reader's socket may accept no bytes before it is dropped, by default.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a reader gathers frames before writing them, by default (about
/// one frame at 25 fps: see [`RtspConfig::coalesce`]).
pub const DEFAULT_COALESCE: Duration = Duration::from_millis(40);
/// The longest [`RtspConfig::coalesce`] accepted: it adds that much latency.
pub const MAX_COALESCE: Duration = Duration::from_millis(500);
/// Simultaneous connections one listener accepts, by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// The accepted request-length limits.
pub const MAX_REQUEST_LEN_RANGE: RangeInclusive<usize> = 1024..=1024 * 1024;
/// The accepted RTP payload sizes.
pub const MAX_PAYLOAD_RANGE: RangeInclusive<usize> = 256..=65_000;

/// A setting refused by [`RtspConfig::validate`]: the field and the rule its
/// value breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} {rule}")]
pub struct ConfigError {
    /// The field (`session_timeout`, `rtp_port`, …).
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

/// Settings of the RTSP listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtspConfig {
    /// Where to listen for RTSP over TCP (port 0 picks a free port; see
    /// [`Rtsp::listening`](crate::Rtsp::listening)).
    pub listen: SocketAddr,
    /// Whether clients may ask for RTP over UDP (`client_port=`); when
    /// false, such a `SETUP` gets `461 Unsupported Transport` and clients
    /// fall back to TCP interleaving. When true, the listener binds
    /// [`rtp_port`](Self::rtp_port) and [`rtcp_port`](Self::rtcp_port) on the
    /// listen address's IP and fails to start if it cannot.
    pub udp: bool,
    /// The server's RTP port for UDP transport (on the listen address's
    /// IP). Even, and [`rtcp_port`](Self::rtcp_port) is the next port; both
    /// 0 picks two free ports (for tests).
    pub rtp_port: u16,
    /// The server's RTCP port for UDP transport.
    pub rtcp_port: u16,
    /// A session without requests or media for this long is closed.
    pub session_timeout: Duration,
    /// A request begun must be complete (head and body) this long after
    /// its first byte, or the connection is closed.
    pub head_timeout: Duration,
    /// The longest request (head and body) accepted, in [`MAX_REQUEST_LEN_RANGE`].
    pub max_request_len: usize,
    /// The largest RTP payload sent to readers, in [`MAX_PAYLOAD_RANGE`].
    pub max_payload: usize,
    /// A reader whose socket accepts no bytes for this long is dropped.
    pub write_timeout: Duration,
    /// How long a TCP (interleaved) reader gathers the stream's frames
    /// before writing them in one write: fewer system calls, TCP segments
    /// and wake-ups per reader, at up to this much added latency; zero
    /// writes each frame as it comes. UDP readers write each frame at once
    /// (their cost is per datagram). At most [`MAX_COALESCE`].
    pub coalesce: Duration,
    /// Whether a UDP reader's run of equal-sized datagrams (a frame's
    /// fragments) goes to the kernel as one message with UDP GSO (Linux
    /// 4.18 and later); turned off by itself when the kernel refuses it.
    pub udp_gso: bool,
    /// Most simultaneous connections on this listener; more are closed at
    /// accept and counted as refused.
    pub max_connections: usize,
}

impl Default for RtspConfig {
    fn default() -> Self {
        RtspConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
            udp: true,
            rtp_port: DEFAULT_RTP_PORT,
            rtcp_port: DEFAULT_RTCP_PORT,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            head_timeout: DEFAULT_HEAD_TIMEOUT,
            max_request_len: DEFAULT_MAX_REQUEST_LEN,
            max_payload: DEFAULT_MAX_PAYLOAD,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            coalesce: DEFAULT_COALESCE,
            udp_gso: true,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl RtspConfig {
    /// Checks every setting; the first one broken is the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.session_timeout.is_zero() {
            return Err(ConfigError::new("session_timeout", "must be positive"));
        }
        if self.head_timeout.is_zero() {
            return Err(ConfigError::new("head_timeout", "must be positive"));
        }
        if self.write_timeout.is_zero() {
            return Err(ConfigError::new("write_timeout", "must be positive"));
        }
        if self.coalesce > MAX_COALESCE {
            return Err(ConfigError::new(
                "coalesce",
                format!("must be at most {} ms", MAX_COALESCE.as_millis()),
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::new("max_connections", "must be positive"));
        }
        if !MAX_REQUEST_LEN_RANGE.contains(&self.max_request_len) {
            return Err(ConfigError::new(
                "max_request_len",
                format!(
                    "must be {}..={}",
                    MAX_REQUEST_LEN_RANGE.start(),
                    MAX_REQUEST_LEN_RANGE.end()
                ),
            ));
        }
        if !MAX_PAYLOAD_RANGE.contains(&self.max_payload) {
            return Err(ConfigError::new(
                "max_payload",
                format!(
                    "must be {}..={}",
                    MAX_PAYLOAD_RANGE.start(),
                    MAX_PAYLOAD_RANGE.end()
                ),
            ));
        }
        if self.rtp_port != 0 || self.rtcp_port != 0 {
            if !self.rtp_port.is_multiple_of(2) {
                return Err(ConfigError::new("rtp_port", "must be even"));
            }
            if Some(self.rtcp_port) != self.rtp_port.checked_add(1) {
                return Err(ConfigError::new("rtcp_port", "must be rtp_port + 1"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_rules_name_their_field() {
        assert_eq!(RtspConfig::default().validate(), Ok(()));
        let bad = |c: RtspConfig| c.validate().expect_err("refused").field;
        let d = RtspConfig::default;
        assert_eq!(
            bad(RtspConfig {
                session_timeout: Duration::ZERO,
                ..d()
            }),
            "session_timeout"
        );
        assert_eq!(
            bad(RtspConfig {
                rtp_port: 8001,
                rtcp_port: 8002,
                ..d()
            }),
            "rtp_port"
        );
        assert_eq!(
            bad(RtspConfig {
                rtcp_port: 9000,
                ..d()
            }),
            "rtcp_port"
        );
        assert_eq!(
            bad(RtspConfig {
                max_request_len: 10,
                ..d()
            }),
            "max_request_len"
        );
        assert_eq!(
            bad(RtspConfig {
                max_payload: 10,
                ..d()
            }),
            "max_payload"
        );
        assert_eq!(
            bad(RtspConfig {
                coalesce: MAX_COALESCE + Duration::from_millis(1),
                ..d()
            }),
            "coalesce"
        );
        assert_eq!(
            bad(RtspConfig {
                head_timeout: Duration::ZERO,
                ..d()
            }),
            "head_timeout"
        );
        assert_eq!(
            RtspConfig {
                rtp_port: 0,
                rtcp_port: 0,
                ..d()
            }
            .validate(),
            Ok(())
        );
    }
}
