//! Who asks to publish or read, and how they identify themselves.

use std::net::SocketAddr;

use crate::auth::Credentials;
use crate::key::StreamKey;

/// A publish or read request, as a protocol hands it to the engine.
#[derive(Clone, Debug)]
pub struct Request {
    /// The stream.
    pub key: StreamKey,
    /// The protocol (`rtmp`, `srt`, `hls`, …).
    pub protocol: &'static str,
    /// The peer's address, where the protocol has one.
    pub peer: Option<SocketAddr>,
    /// Credentials from the handshake.
    pub credentials: Credentials,
    /// The query string that came with the stream name.
    pub query: Option<String>,
    /// The user the protocol already authenticated, if any: shown with the
    /// session (API, logs). A user the authorizer recognizes takes its place.
    pub user: Option<String>,
}

impl Request {
    /// A request with no peer, credentials or query.
    pub fn new(key: StreamKey, protocol: &'static str) -> Self {
        Request {
            key,
            protocol,
            peer: None,
            credentials: Credentials::None,
            query: None,
            user: None,
        }
    }

    /// Sets the peer address.
    pub fn peer(mut self, peer: SocketAddr) -> Self {
        self.peer = Some(peer);
        self
    }

    /// Sets the credentials.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Sets the query string.
    pub fn query(mut self, query: impl Into<String>) -> Self {
        self.query = Some(query.into());
        self
    }

    /// Sets the authenticated user shown with the session.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }
}
