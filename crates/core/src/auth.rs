//! The auth seam: one trait asked on every publish and every read.

use std::fmt;
use std::net::SocketAddr;

use async_trait::async_trait;

use crate::key::StreamKey;

/// What a peer asks to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "lowercase")
)]
pub enum Action {
    /// Push a stream in.
    Publish,
    /// Watch or package a stream.
    Read,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Publish => "publish",
            Action::Read => "read",
        })
    }
}

/// Credentials a protocol extracted from its handshake.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Credentials {
    /// None were offered.
    #[default]
    None,
    /// A user name and password (RTSP, SRT stream id `:user:pass`, …).
    UserPass {
        /// User name.
        user: String,
        /// Password.
        pass: String,
    },
    /// A bearer token (`?token=…`, WHIP `Authorization: Bearer`).
    Token(String),
}

impl fmt::Debug for Credentials {
    // Secrets never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::UserPass { user, .. } => write!(f, "UserPass({user}, ***)"),
            Credentials::Token(_) => f.write_str("Token(***)"),
        }
    }
}

/// Everything the authorizer is told about a request.
#[derive(Clone, Debug)]
pub struct AuthRequest {
    /// Publish or read.
    pub action: Action,
    /// The stream.
    pub key: StreamKey,
    /// The remote address, if the protocol has one.
    pub peer: Option<SocketAddr>,
    /// The protocol's name (`rtmp`, `srt`, `hls`, …).
    pub protocol: &'static str,
    /// Credentials from the handshake.
    pub credentials: Credentials,
    /// The raw query string that came with the stream name, if any.
    pub query: Option<String>,
}

impl AuthRequest {
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

/// Decides whether a publish or read may go ahead.
#[async_trait]
pub trait Authorizer: Send + Sync + 'static {
    /// `Ok(())` to allow; `Err(reason)` to refuse (the reason is logged and,
    /// where the protocol can, told to the peer).
    async fn authorize(&self, request: &AuthRequest) -> Result<(), String>;
}

/// Allows everything: the default.
#[derive(Clone, Copy, Debug, Default)]
pub struct PermitAll;

#[async_trait]
impl Authorizer for PermitAll {
    async fn authorize(&self, _request: &AuthRequest) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_token_lookup() {
        let req = AuthRequest {
            action: Action::Publish,
            key: StreamKey::parse("live/a").expect("key"),
            peer: None,
            protocol: "rtmp",
            credentials: Credentials::None,
            query: Some("a=1&token=s3cret&flag".into()),
        };
        assert_eq!(req.query_param("a"), Some("1"));
        assert_eq!(req.token(), Some("s3cret"));
        assert_eq!(req.query_param("flag"), Some(""));
        assert_eq!(req.query_param("zzz"), None);
        let shown = format!(
            "{:?}",
            Credentials::UserPass {
                user: "u".into(),
                pass: "p".into()
            }
        );
        assert!(!shown.contains('p') || shown.contains("***"));
    }
}
