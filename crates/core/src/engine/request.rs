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
    /// A reader or publisher inside the server rather than a peer: never
    /// asked of the authorizer.
    ///
    /// - A reader (a packager, a recorder) reads on the server's behalf and
    ///   its players are authorized request by request; it is not listed by
    ///   [`Engine::sessions`](crate::Engine::sessions) (the players it serves
    ///   are, see [`PlayerSession`](crate::PlayerSession)).
    /// - A publisher is trusted: only an in-process source the operator
    ///   configured (a `[[pull]]` camera) may publish this way. It is still
    ///   listed, and still meets the application's duplicate-publish and
    ///   publisher limits.
    ///
    /// Never set it from a peer's input: no protocol listener, relay or API
    /// request may build an internal request.
    pub internal: bool,
    /// How many video frames a reader asks to start with: 0 (the default)
    /// starts at the newest cached GOP's keyframe; more starts, while that
    /// GOP holds fewer, at the keyframe of an earlier GOP still retained
    /// and within `max_lag`, so a client that analyses that many frames
    /// before it shows one (ffmpeg reading FLV: 40) shows one at once. The
    /// price is starting that much further behind live.
    pub start_video_frames: usize,
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
            internal: false,
            start_video_frames: 0,
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

    /// Marks the request as the server's own ([`internal`](Self::internal)):
    /// the authorizer is not asked. For readers built by the server's code
    /// (packagers, recorders) and for publishes of in-process sources the
    /// operator configured (camera pulls) only, never for a peer.
    pub fn internal(mut self) -> Self {
        self.internal = true;
        self
    }

    /// Asks to start with at least `frames` video frames when the window
    /// has them (see [`start_video_frames`](Self::start_video_frames)).
    pub fn start_video_frames(mut self, frames: usize) -> Self {
        self.start_video_frames = frames;
        self
    }

    /// Sets the authenticated user shown with the session.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }
}
