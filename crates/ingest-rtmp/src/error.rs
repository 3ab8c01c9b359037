//! The crate's one error type, carrying the peer and stream it concerns.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Who an error concerns: the peer and, once known, the stream (`app/stream`).
///
/// The sans-IO [`Session`](crate::session::Session) knows neither; the driver
/// fills both in before it logs or returns an error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// The remote address.
    pub peer: Option<SocketAddr>,
    /// The stream (`app/stream`, without the query), once the peer named one.
    pub stream: Option<String>,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.peer, &self.stream) {
            (Some(peer), Some(stream)) => write!(f, "peer {peer} stream {stream}"),
            (Some(peer), None) => write!(f, "peer {peer}"),
            // A push that did not get as far as a connection: its URL says where.
            (None, Some(stream)) => write!(f, "stream {stream}"),
            (None, None) => f.write_str("peer ?"),
        }
    }
}

/// Everything that can go wrong on an RTMP or HTTP-FLV connection, or with the listener.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The RTMP handshake failed (bad version byte, malformed packets).
    #[error("{ctx}: handshake failed: {reason}")]
    Handshake {
        /// Peer and stream.
        ctx: Context,
        /// What was wrong.
        reason: String,
    },
    /// A chunk could not be parsed (unknown chunk stream, bad chunk size, …).
    #[error("{ctx}: malformed chunk: {reason}")]
    Chunk {
        /// Peer and stream.
        ctx: Context,
        /// What was wrong.
        reason: String,
    },
    /// A message longer than the configured limit was announced.
    #[error("{ctx}: message of {len} bytes exceeds the limit of {max} bytes")]
    MessageTooLong {
        /// Peer and stream.
        ctx: Context,
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A complete message could not be decoded (AMF0, control messages).
    #[error("{ctx}: malformed message: {reason}")]
    Message {
        /// Peer and stream.
        ctx: Context,
        /// What was wrong.
        reason: String,
    },
    /// The peer broke the command sequence (publish before connect, …).
    #[error("{ctx}: protocol violation: {reason}")]
    Protocol {
        /// Peer and stream.
        ctx: Context,
        /// What was wrong.
        reason: String,
    },
    /// The kernel refused or ended something (stream taken, not live, auth, …).
    #[error("{ctx}: {source}")]
    Kernel {
        /// Peer and stream.
        ctx: Context,
        /// The kernel's error.
        #[source]
        source: Box<tidewater_core::Error>,
    },
    /// Reading from or writing to the socket failed.
    #[error("{ctx}: i/o error: {source}")]
    Io {
        /// Peer and stream.
        ctx: Context,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A socket write made no progress for longer than the write timeout.
    #[error("{ctx}: socket write blocked for more than {after:?}")]
    WriteTimeout {
        /// Peer and stream.
        ctx: Context,
        /// The write timeout.
        after: Duration,
    },
    /// The peer did not get as far as publishing or playing in time.
    #[error("{ctx}: no publish or play within {after:?}")]
    NegotiationTimeout {
        /// Peer and stream.
        ctx: Context,
        /// The allowed time.
        after: Duration,
    },
    /// A push destination refused the connection or the publish (an `_error`
    /// result or an `onStatus` error).
    #[error("{ctx}: refused by the destination: {code} ({description})")]
    Refused {
        /// Destination address and URL.
        ctx: Context,
        /// The status code (`NetStream.Publish.BadName`, `NetConnection.Connect.Rejected`, …).
        code: String,
        /// The destination's description.
        description: String,
    },
    /// A TLS handshake failed, or TLS could not be set up (certificate or
    /// key files, roots).
    #[error("{ctx}: tls: {reason}")]
    Tls {
        /// Peer and stream (the file names, when setting up).
        ctx: Context,
        /// What went wrong.
        reason: String,
    },
    /// A step with a deadline did not finish in time (connecting to a push
    /// destination, its handshake and publish).
    #[error("{ctx}: {what} did not finish within {after:?}")]
    Timeout {
        /// Peer and stream.
        ctx: Context,
        /// The step.
        what: &'static str,
        /// The allowed time.
        after: Duration,
    },
    /// A push destination URL is not usable.
    #[error("invalid push url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL (with its query removed).
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A setting breaks its rule ([`RtmpConfig::validate`](crate::RtmpConfig::validate),
    /// [`PushConfig::validate`](crate::PushConfig::validate)).
    #[error("rtmp settings: {0}")]
    Config(#[from] crate::ConfigError),
    /// The listener could not be bound.
    // No "rtmp:" prefix: the kernel's worker error names the protocol.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The context of every variant that has one: one list for the shared and
/// the mutable accessor (match ergonomics give `&` or `&mut` from `$e`).
macro_rules! context_of {
    ($e:expr) => {
        match $e {
            Error::Handshake { ctx, .. }
            | Error::Chunk { ctx, .. }
            | Error::MessageTooLong { ctx, .. }
            | Error::Message { ctx, .. }
            | Error::Protocol { ctx, .. }
            | Error::Kernel { ctx, .. }
            | Error::Io { ctx, .. }
            | Error::WriteTimeout { ctx, .. }
            | Error::NegotiationTimeout { ctx, .. }
            | Error::Refused { ctx, .. }
            | Error::Tls { ctx, .. }
            | Error::Timeout { ctx, .. } => Some(ctx),
            Error::Bind { .. } | Error::InvalidUrl { .. } | Error::Config(_) => None,
        }
    };
}

impl Error {
    /// The peer and stream this error concerns (none for [`Error::Bind`],
    /// [`Error::InvalidUrl`] and [`Error::Config`]).
    pub fn context(&self) -> Option<&Context> {
        context_of!(self)
    }

    fn context_mut(&mut self) -> Option<&mut Context> {
        context_of!(self)
    }

    /// The same error with the peer and stream of `ctx` filled in where unknown.
    pub fn in_context(mut self, ctx: &Context) -> Self {
        if let Some(own) = self.context_mut() {
            if own.peer.is_none() {
                own.peer = ctx.peer;
            }
            if own.stream.is_none() {
                own.stream.clone_from(&ctx.stream);
            }
        }
        self
    }

    /// Whether the error is the peer's fault (bad input or protocol misuse)
    /// rather than an I/O condition or a refusal.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::Handshake { .. }
                | Error::Chunk { .. }
                | Error::MessageTooLong { .. }
                | Error::Message { .. }
                | Error::Protocol { .. }
        )
    }

    pub(crate) fn chunk(reason: impl Into<String>) -> Self {
        Error::Chunk {
            ctx: Context::default(),
            reason: reason.into(),
        }
    }

    pub(crate) fn message(reason: impl Into<String>) -> Self {
        Error::Message {
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

    pub(crate) fn protocol(reason: impl Into<String>) -> Self {
        Error::Protocol {
            ctx: Context::default(),
            reason: reason.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
