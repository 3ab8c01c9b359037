//! The auth seam: one trait asked on every publish and read, and by the
//! server for its API and metrics.
//!
//! The seam knows no protocol and no crypto. A protocol extracts what the
//! peer offered ([`Credentials`]), the kernel or the server builds an
//! [`AuthRequest`], and an [`Authorizer`] answers with the [`Identity`] it
//! recognized or a [`Refusal`]. The refusal's [`RefusalKind`] lets each
//! protocol choose its wire answer:
//!
//! | kind | HTTP | RTMP / SRT / RTSP |
//! |---|---|---|
//! | [`MissingCredentials`](RefusalKind::MissingCredentials), [`InvalidCredentials`](RefusalKind::InvalidCredentials) | `401` with `WWW-Authenticate` | unauthorized (RTSP: `401` with a challenge) |
//! | [`Forbidden`](RefusalKind::Forbidden) | `403` | unauthorized / denied |
//! | [`RateLimited`](RefusalKind::RateLimited) | `429` | unauthorized / denied |
//! | [`Unavailable`](RefusalKind::Unavailable) | `503` | unauthorized / denied |

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use async_trait::async_trait;

use crate::key::StreamKey;

/// What a peer asks to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Action {
    /// Push a stream in.
    Publish,
    /// Watch or package a live stream.
    Read,
    /// Play back a recording.
    Playback,
    /// Use the server's API (no stream key).
    Api,
    /// Read the server's metrics (no stream key).
    Metrics,
}

impl Action {
    /// Every action, in declaration order.
    pub const ALL: [Action; 5] = [
        Action::Publish,
        Action::Read,
        Action::Playback,
        Action::Api,
        Action::Metrics,
    ];

    /// The lowercase name (`publish`, `read`, `playback`, `api`, `metrics`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Read => "read",
            Action::Playback => "playback",
            Action::Api => "api",
            Action::Metrics => "metrics",
        }
    }

    /// Whether the action is about one stream (publish, read, playback) rather
    /// than the whole server (api, metrics).
    pub const fn has_stream(self) -> bool {
        matches!(self, Action::Publish | Action::Read | Action::Playback)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not one of the actions' lowercase names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownAction(pub String);

impl fmt::Display for UnknownAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown action {:?} (expected publish, read, playback, api or metrics)",
            self.0
        )
    }
}

impl std::error::Error for UnknownAction {}

impl FromStr for Action {
    type Err = UnknownAction;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownAction(s.chars().take(32).collect()))
    }
}

/// Credentials a protocol extracted from its handshake.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Credentials {
    /// None were offered.
    #[default]
    None,
    /// A user name and password (HTTP Basic, RTMP `?user=…&pass=…`, SRT
    /// stream id `:user:pass`, …).
    UserPass {
        /// User name.
        user: String,
        /// Password.
        pass: String,
    },
    /// A bearer token (`Authorization: Bearer …`, `?token=…`): a JWT, a
    /// signed read token, or anything an external hook understands.
    Token(String),
    /// An HTTP/RTSP Digest response (RFC 2617 / RFC 7616): the password itself
    /// is never sent, only a hash over it and the server's nonce.
    Digest(Box<DigestCredentials>),
}

impl fmt::Debug for Credentials {
    // Secrets never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::UserPass { user, .. } => write!(f, "UserPass({user}, ***)"),
            Credentials::Token(_) => f.write_str("Token(***)"),
            Credentials::Digest(d) => write!(f, "Digest({d:?})"),
        }
    }
}

impl Credentials {
    /// The user name the credentials claim, if they name one.
    pub fn user(&self) -> Option<&str> {
        match self {
            Credentials::UserPass { user, .. } => Some(user),
            Credentials::Digest(d) => Some(&d.user),
            Credentials::None | Credentials::Token(_) => None,
        }
    }
}

/// The parameters of a Digest `Authorization` header (RFC 2617 §3.2.2,
/// RFC 7616 §3.4), as an RTSP or HTTP server parsed them.
///
/// Without `qop` the response is `MD5(HA1:nonce:HA2)`; with `qop=auth` it is
/// `MD5(HA1:nonce:nc:cnonce:qop:HA2)`, where `HA1 = MD5(user:realm:password)`
/// and `HA2 = MD5(method:uri)`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct DigestCredentials {
    /// `username`.
    pub user: String,
    /// `realm`, as the server announced it.
    pub realm: String,
    /// `nonce`, as the server issued it.
    pub nonce: String,
    /// `uri`: the request target the client hashed.
    pub uri: String,
    /// The request method (`DESCRIBE`, `ANNOUNCE`, `GET`, …).
    pub method: String,
    /// `response`: the hex digest the client computed.
    pub response: String,
    /// `algorithm`, if the client named one (`MD5` when absent).
    pub algorithm: Option<String>,
    /// `qop` (`auth`), if the client used one.
    pub qop: Option<String>,
    /// `nc`, the nonce count (hex), with `qop`.
    pub nc: Option<String>,
    /// `cnonce`, the client nonce, with `qop`.
    pub cnonce: Option<String>,
}

impl fmt::Debug for DigestCredentials {
    // The response allows an offline guess of the password: it stays hidden.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestCredentials")
            .field("user", &self.user)
            .field("realm", &self.realm)
            .field("uri", &self.uri)
            .field("method", &self.method)
            .field("algorithm", &self.algorithm)
            .field("qop", &self.qop)
            .finish_non_exhaustive()
    }
}

/// Everything the authorizer is told about a request.
///
/// Built with [`AuthRequest::new`] and the setters:
///
/// ```
/// use tidewater_core::{Action, AuthRequest, Credentials, StreamKey};
///
/// let publish = AuthRequest::new(Action::Publish, "rtmp")
///     .key(StreamKey::parse("live/cam1").unwrap())
///     .peer("192.0.2.7:50000".parse().unwrap())
///     .query("token=abc");
/// assert_eq!(publish.token(), Some("abc"));
/// assert_eq!(publish.to_string(), "publish live/cam1 from 192.0.2.7");
///
/// // The API and metrics have no stream.
/// let api = AuthRequest::new(Action::Api, "http")
///     .credentials(Credentials::Token("jwt".into()));
/// assert!(api.key.is_none());
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AuthRequest {
    /// What the peer asks to do.
    pub action: Action,
    /// The stream, for publish, read and playback; `None` for the API and metrics.
    pub key: Option<StreamKey>,
    /// The remote address, if the protocol has one.
    pub peer: Option<SocketAddr>,
    /// The protocol's name (`rtmp`, `srt`, `hls`, `http`, …).
    pub protocol: &'static str,
    /// Credentials from the handshake.
    pub credentials: Credentials,
    /// The raw query string that came with the stream name, if any.
    pub query: Option<String>,
    /// The session or connection id the server gave the request, if any
    /// (told to external hooks, never used to decide).
    pub id: Option<String>,
}

impl AuthRequest {
    /// A request for `action` over `protocol`, with no stream, peer,
    /// credentials, query or id yet.
    pub fn new(action: Action, protocol: &'static str) -> Self {
        AuthRequest {
            action,
            key: None,
            peer: None,
            protocol,
            credentials: Credentials::None,
            query: None,
            id: None,
        }
    }

    /// Sets the stream.
    pub fn key(mut self, key: StreamKey) -> Self {
        self.key = Some(key);
        self
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

    /// Sets the session or connection id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The value of a query parameter (`token` in `?token=abc`), not percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .as_deref()?
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// The token: bearer credentials, else the `token` query parameter.
    pub fn token(&self) -> Option<&str> {
        match &self.credentials {
            Credentials::Token(t) => Some(t),
            _ => self.query_param("token"),
        }
    }
}

impl fmt::Display for AuthRequest {
    /// `publish live/cam1 from 192.0.2.7`: what was asked, without
    /// credentials; a refusal is logged as `{request} refused: {refusal}`,
    /// the same line as [`Error::Unauthorized`](crate::Error::Unauthorized)'s.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.action.as_str())?;
        if let Some(key) = &self.key {
            write!(f, " {key}")?;
        }
        match self.peer {
            Some(p) => write!(f, " from {}", p.ip()),
            None => f.write_str(" from an unknown address"),
        }
    }
}

/// Who an authorizer recognized.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Identity {
    /// The user name, or `None` for an anonymous peer.
    pub user: Option<String>,
}

impl Identity {
    /// An anonymous peer.
    pub fn anonymous() -> Self {
        Identity { user: None }
    }

    /// A named user.
    pub fn named(user: impl Into<String>) -> Self {
        Identity {
            user: Some(user.into()),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.user {
            Some(u) => write!(f, "user {u}"),
            None => f.write_str("anonymous"),
        }
    }
}

/// What kind of refusal: lets a protocol choose its wire answer (see the
/// [module docs](self) for the mapping).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "snake_case")
)]
pub enum RefusalKind {
    /// No credentials were offered and anonymous access does not cover the
    /// request: ask for credentials (HTTP `401` with `WWW-Authenticate`).
    MissingCredentials,
    /// The credentials were wrong (unknown user, wrong password, invalid or
    /// expired token): ask again (HTTP `401` with `WWW-Authenticate`).
    InvalidCredentials,
    /// The peer is known (or anonymous access is fine in general) but lacks the
    /// permission, or its address is not allowed (HTTP `403`).
    Forbidden,
    /// Too many failed attempts from this address (HTTP `429`).
    RateLimited,
    /// What decides could not be asked (an external hook or key set failed):
    /// refused, try later (HTTP `503`).
    Unavailable,
}

impl RefusalKind {
    /// Whether asking for (other) credentials could help: HTTP answers `401`
    /// with `WWW-Authenticate`, RTSP a new challenge.
    pub const fn challenge(self) -> bool {
        matches!(
            self,
            RefusalKind::MissingCredentials | RefusalKind::InvalidCredentials
        )
    }
}

/// Why an authorizer refused: a kind for the wire and a reason for people.
///
/// The reason is safe to log and to tell the peer: it never contains a secret.
/// It says what is missing and, where the authorizer knows, what would grant
/// it. Its [`Display`](fmt::Display) is the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    kind: RefusalKind,
    reason: String,
}

impl Refusal {
    /// A refusal of `kind`.
    pub fn new(kind: RefusalKind, reason: impl Into<String>) -> Self {
        Refusal {
            kind,
            reason: reason.into(),
        }
    }

    /// A [`RefusalKind::Forbidden`] refusal.
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Refusal::new(RefusalKind::Forbidden, reason)
    }

    /// What kind of refusal.
    pub fn kind(&self) -> RefusalKind {
        self.kind
    }

    /// The reason, for logs and the peer.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Refusal {}

/// A plain reason is a [`RefusalKind::Forbidden`] refusal.
impl From<String> for Refusal {
    fn from(reason: String) -> Self {
        Refusal::forbidden(reason)
    }
}

/// A plain reason is a [`RefusalKind::Forbidden`] refusal.
impl From<&str> for Refusal {
    fn from(reason: &str) -> Self {
        Refusal::forbidden(reason)
    }
}

/// Decides whether a request may go ahead.
#[async_trait]
pub trait Authorizer: Send + Sync + 'static {
    /// `Ok(identity)` to allow; `Err(refusal)` to refuse (the refusal is
    /// logged and, where the protocol can, told to the peer).
    async fn authorize(&self, request: &AuthRequest) -> Result<Identity, Refusal>;

    /// A short-lived token that lets `who`, once authorized to read `key`,
    /// fetch it again without sending credentials: HLS and DASH put it in
    /// the URIs of their playlists and segments as `?token=…`, and
    /// [`authorize`](Self::authorize) must accept it there for `read` of
    /// `key`. `None` (the default) when a peer at `ip` may read `key`
    /// anonymously anyway, so that URIs stay plain and cacheable.
    fn read_token(&self, key: &StreamKey, who: &Identity, ip: Option<IpAddr>) -> Option<String> {
        let _ = (key, who, ip);
        None
    }

    /// The realm named in HTTP `WWW-Authenticate` and RTSP challenges.
    fn realm(&self) -> String {
        "tidewater".to_string()
    }

    /// A fresh nonce for a Digest challenge (RTSP), when this authorizer can
    /// check Digest responses against it; `None` (the default) when it
    /// cannot, and only Basic is offered.
    fn digest_nonce(&self) -> Option<String> {
        None
    }
}

/// Allows everything: the kernel's default, for embedders that decide
/// elsewhere.
#[derive(Clone, Copy, Debug, Default)]
pub struct PermitAll;

#[async_trait]
impl Authorizer for PermitAll {
    async fn authorize(&self, _request: &AuthRequest) -> Result<Identity, Refusal> {
        Ok(Identity::anonymous())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_token_lookup() {
        let req = AuthRequest::new(Action::Publish, "rtmp")
            .key(StreamKey::parse("live/a").expect("key"))
            .query("a=1&token=s3cret&flag");
        assert_eq!(req.query_param("a"), Some("1"));
        assert_eq!(req.token(), Some("s3cret"));
        assert_eq!(req.query_param("flag"), Some(""));
        assert_eq!(req.query_param("zzz"), None);
        let bearer = req.clone().credentials(Credentials::Token("b".into()));
        assert_eq!(bearer.token(), Some("b"));
    }

    #[test]
    fn debug_hides_secrets() {
        let shown = format!(
            "{:?}",
            Credentials::UserPass {
                user: "u".into(),
                pass: "hunter2".into()
            }
        );
        assert_eq!(shown, "UserPass(u, ***)");
        assert_eq!(
            format!("{:?}", Credentials::Token("hunter2".into())),
            "Token(***)"
        );
        let digest = Credentials::Digest(Box::new(DigestCredentials {
            user: "Mufasa".into(),
            response: "6629fae49393a05397450978507c4ef1".into(),
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093".into(),
            ..DigestCredentials::default()
        }));
        let shown = format!("{digest:?}");
        assert!(shown.contains("Mufasa"), "{shown}");
        assert!(!shown.contains("6629fae4"), "{shown}");
        assert_eq!(digest.user(), Some("Mufasa"));
    }

    #[test]
    fn actions_round_trip_their_names() {
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>(), Ok(a));
            assert_eq!(a.to_string(), a.as_str());
        }
        assert!("Publish".parse::<Action>().is_err());
        assert!(Action::Playback.has_stream());
        assert!(!Action::Metrics.has_stream());
    }

    #[test]
    fn request_display_names_no_secret() {
        let req = AuthRequest::new(Action::Read, "srt")
            .key(StreamKey::parse("live/a").expect("key"))
            .credentials(Credentials::UserPass {
                user: "u".into(),
                pass: "hunter2".into(),
            });
        assert_eq!(req.to_string(), "read live/a from an unknown address");
        let api = AuthRequest::new(Action::Api, "http").peer("[::1]:80".parse().expect("addr"));
        assert_eq!(api.to_string(), "api from ::1");
    }

    #[test]
    fn refusals_carry_a_kind() {
        let r: Refusal = "bad token".into();
        assert_eq!(r.kind(), RefusalKind::Forbidden);
        assert_eq!(r.to_string(), "bad token");
        assert!(RefusalKind::MissingCredentials.challenge());
        assert!(RefusalKind::InvalidCredentials.challenge());
        assert!(!RefusalKind::Forbidden.challenge());
    }
}
