//! The crate's error.

use std::net::SocketAddr;

/// What went wrong in the WHIP service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The media socket could not be bound or used.
    #[error("webrtc: UDP {addr}: {source}")]
    Io {
        /// The socket's address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The settings are invalid.
    #[error("webrtc: {0}")]
    Config(String),
    /// A WebRTC session failed (its peer and stream are named).
    #[error("webrtc session of {stream} from {peer}: {message}")]
    Session {
        /// The remote address, when known.
        peer: String,
        /// The stream.
        stream: String,
        /// What failed.
        message: String,
    },
}
