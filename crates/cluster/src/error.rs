//! The crate's one error type.

use std::net::SocketAddr;

/// What can go wrong in the cluster: the directory, the relay, a pull.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A socket failed.
    #[error("cluster i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A relay message broke the wire format (the peer is not a tidewater
    /// node of this version, or the bytes are corrupt).
    #[error("relay message malformed: {0}")]
    Malformed(&'static str),
    /// A relay message announced a body over the limit.
    #[error("relay message of {0} bytes is over the {max} byte limit", max = crate::relay::MAX_BODY)]
    TooLarge(usize),
    /// The peer speaks another version of the relay format.
    #[error("relay version {0} is not supported (this node speaks {v})", v = crate::relay::VERSION)]
    Version(u8),
    /// A codec this version of the relay has no number for.
    #[error("codec {0} has no relay code")]
    Codec(&'static str),
    /// The origin refused the pull.
    #[error("origin {origin} refused the pull: {reason}")]
    Refused {
        /// The origin's relay address.
        origin: SocketAddr,
        /// What it said.
        reason: String,
    },
    /// The edge fell behind live past the stream's lag policy (`max_lag_ms`,
    /// `max_skips` within `skip_window_ms`) and its relay was evicted.
    #[error(
        "the edge fell behind live too often (the stream's max_lag_ms, max_skips and skip_window_ms) and was evicted"
    )]
    Evicted,
    /// The relay peer said nothing for too long.
    #[error("relay peer silent for {0:?}")]
    Timeout(std::time::Duration),
    /// The kernel refused a publish or a read.
    #[error(transparent)]
    Core(#[from] tidewater_core::Error),
    /// etcd answered with an error or could not be reached.
    #[cfg(feature = "etcd")]
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// The `[cluster]` settings do not hold together.
    #[error("cluster configuration: {0}")]
    Config(String),
}

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
