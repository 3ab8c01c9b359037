//! The crate's one error type, carrying the peer and stream it concerns.

use std::fmt;
use std::net::SocketAddr;

/// Who an error concerns: the peer and, once known, the stream (`app/stream`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// The remote address.
    pub peer: Option<SocketAddr>,
    /// The stream, once the peer named one.
    pub stream: Option<String>,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.peer, &self.stream) {
            (Some(peer), Some(stream)) => write!(f, "peer {peer} stream {stream}"),
            (Some(peer), None) => write!(f, "peer {peer}"),
            (None, Some(stream)) => write!(f, "stream {stream}"),
            (None, None) => f.write_str("peer ?"),
        }
    }
}

/// Everything that can go wrong on an RTSP connection or with the listener.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bytes that are neither an RTSP request nor an interleaved frame, or a
    /// request over the length limit.
    #[error("{ctx}: malformed input: {reason}")]
    Malformed {
        /// Peer and stream.
        ctx: Context,
        /// What was wrong.
        reason: String,
    },
    /// The session saw no request or media for its timeout.
    #[error("{ctx}: session timed out")]
    Timeout {
        /// Peer and stream.
        ctx: Context,
    },
    /// A request was begun and not completed within the head timeout
    /// (`[rtsp] head_timeout_ms`).
    #[error(
        "{ctx}: incomplete request ({received} bytes) after {after:?}, closed ([rtsp] head_timeout_ms)"
    )]
    HeadTimeout {
        /// Peer and stream.
        ctx: Context,
        /// The head timeout.
        after: std::time::Duration,
        /// The bytes of the request received.
        received: usize,
    },
    /// The kernel refused or ended something.
    #[error("{ctx}: {source}")]
    Kernel {
        /// Peer and stream.
        ctx: Context,
        /// The kernel's error.
        source: Box<tidewater_core::Error>,
    },
    /// A socket failed.
    #[error("{ctx}: {source}")]
    Io {
        /// Peer and stream.
        ctx: Context,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A setting was refused (see [`RtspConfig::validate`](crate::RtspConfig::validate)).
    #[error("rtsp.{0}")]
    Config(#[from] crate::config::ConfigError),
    /// The RTSPS certificate or key cannot be used, or a TLS handshake failed.
    #[error("{ctx}: tls: {reason}")]
    Tls {
        /// Peer and stream.
        ctx: Context,
        /// What was wrong.
        reason: String,
    },
}

impl Error {
    pub(crate) fn malformed(reason: impl Into<String>) -> Self {
        Error::Malformed {
            ctx: Context::default(),
            reason: reason.into(),
        }
    }

    pub(crate) fn tls(reason: impl Into<String>) -> Self {
        Error::Tls {
            ctx: Context::default(),
            reason: reason.into(),
        }
    }

    pub(crate) fn kernel(source: tidewater_core::Error) -> Self {
        Error::Kernel {
            ctx: Context::default(),
            source: Box::new(source),
        }
    }

    /// The same error with the peer and stream filled in.
    pub fn with_context(mut self, peer: Option<SocketAddr>, stream: Option<&str>) -> Self {
        let ctx = match &mut self {
            Error::Malformed { ctx, .. }
            | Error::Timeout { ctx }
            | Error::HeadTimeout { ctx, .. }
            | Error::Kernel { ctx, .. }
            | Error::Io { ctx, .. }
            | Error::Tls { ctx, .. } => ctx,
            Error::Config(_) => return self,
        };
        ctx.peer = ctx.peer.or(peer);
        if ctx.stream.is_none() {
            ctx.stream = stream.map(str::to_string);
        }
        self
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
