//! The crate's one error type.

use std::net::SocketAddr;

/// What went wrong in the SRT worker or one of its connections.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The UDP listener could not bind.
    #[error("cannot bind the SRT listener on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A setting breaks its rule ([`SrtConfig::validate`](crate::SrtConfig::validate)).
    #[error("srt settings: {0}")]
    Config(#[from] crate::ConfigError),
    /// The listener stopped on its own.
    #[error("{0}")]
    Listener(String),
    /// A publisher's MPEG-TS could not be read.
    #[error("peer {peer} stream {stream}: {source}")]
    Demux {
        /// The publisher.
        peer: SocketAddr,
        /// The stream.
        stream: String,
        /// Why.
        #[source]
        source: tidewater_media::Error,
    },
    /// The kernel refused something on a connection.
    #[error("peer {peer} stream {stream}: {source}")]
    Kernel {
        /// The peer.
        peer: SocketAddr,
        /// The stream.
        stream: String,
        /// Why.
        #[source]
        source: Box<tidewater_core::Error>,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
