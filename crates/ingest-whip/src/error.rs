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
    /// The ICE-TCP listener could not be bound (`[webrtc] transports`
    /// names `tcp`).
    #[error(
        "webrtc: cannot listen on TCP {addr} for ICE-TCP ([webrtc] transports has \"tcp\"; \
         the TCP port of udp_listen's number): {source}"
    )]
    Tcp {
        /// The listener's address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The settings are invalid.
    #[error("webrtc: {0}")]
    Config(String),
    /// A signalling request (an offer, a trickle fragment) cannot be used.
    #[error("webrtc signalling: {0}")]
    Signalling(String),
    /// An offer str0m cannot answer (`400`).
    #[error("the offer cannot be answered: {0}")]
    Unanswerable(String),
    /// An offer without a codec the server takes (`406`).
    #[error("{0}")]
    NoCommonCodec(String),
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
