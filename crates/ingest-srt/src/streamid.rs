//! The SRT stream id: who asks for what.
//!
//! Two forms are read:
//!
//! - `publish:{app}/{stream}` and `read:{app}/{stream}`, optionally followed
//!   by `:{user}:{pass}` or by a query `?token=…` (both reach the authorizer);
//! - the libsrt access-control form `#!::r={app}/{stream},m=publish`
//!   (`m=request`, the default, reads; `u=` names a user, other keys are ignored).

// This module reads what the network sends: no panics on it.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use tidewater_core::{Credentials, StreamKey};

/// Publish or read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The caller sends MPEG-TS.
    Publish,
    /// The caller receives MPEG-TS.
    Read,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Publish => "publish",
            Mode::Read => "read",
        })
    }
}

/// A parsed stream id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRequest {
    /// Publish or read.
    pub mode: Mode,
    /// The stream.
    pub key: StreamKey,
    /// User and password, or the query's token.
    pub credentials: Credentials,
    /// The query after `?`, if any (for the authorizer).
    pub query: Option<String>,
}

/// Why a stream id was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamIdError {
    /// No stream id in the handshake.
    #[error("no stream id (expected publish:{{app}}/{{stream}} or read:{{app}}/{{stream}})")]
    Missing,
    /// A form this server does not read.
    #[error("malformed stream id: {0}")]
    Malformed(&'static str),
    /// The path is not a valid stream key.
    #[error("bad stream key: {0}")]
    Key(String),
}

/// Reads a stream id.
pub fn parse(id: Option<&str>) -> Result<StreamRequest, StreamIdError> {
    let id = id.filter(|s| !s.is_empty()).ok_or(StreamIdError::Missing)?;
    if let Some(rest) = id.strip_prefix("#!::") {
        return parse_access_control(rest);
    }
    let (mode, rest) = if let Some(r) = id.strip_prefix("publish:") {
        (Mode::Publish, r)
    } else if let Some(r) = id.strip_prefix("read:") {
        (Mode::Read, r)
    } else {
        return Err(StreamIdError::Malformed(
            "expected publish:{app}/{stream}, read:{app}/{stream} or #!::r={app}/{stream},m=publish",
        ));
    };
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (rest, None),
    };
    let (path, credentials) = match path.split_once(':') {
        None => (path, None),
        Some((p, userpass)) => match userpass.split_once(':') {
            Some((user, pass)) if !user.is_empty() => (
                p,
                Some(Credentials::UserPass {
                    user: user.to_owned(),
                    pass: pass.to_owned(),
                }),
            ),
            _ => {
                return Err(StreamIdError::Malformed(
                    "expected :{user}:{pass} after the path",
                ));
            }
        },
    };
    let credentials = credentials
        .or_else(|| token(query.as_deref()).map(Credentials::Token))
        .unwrap_or_default();
    Ok(StreamRequest {
        mode,
        key: key(path)?,
        credentials,
        query,
    })
}

/// The longest part of a stream id a log line shows.
const SHOWN: usize = 96;

/// A stream id as log lines show it: what comes before a query (`?…`) or
/// credentials (`:{user}:{pass}`), and of the access-control form only the
/// keys `r`, `m`, `u` and `t`; at most 96 characters, `…` where something
/// was left out. A token or password never shows, even in a stream id that
/// does not parse.
pub fn shown(id: &str) -> String {
    let kept = match id.strip_prefix("#!::") {
        Some(rest) => {
            let pairs: Vec<&str> = rest
                .split(',')
                .filter(|kv| matches!(kv.split_once('='), Some(("r" | "m" | "u" | "t", _))))
                .map(|kv| kv.split('?').next().unwrap_or_default())
                .collect();
            format!("#!::{}", pairs.join(","))
        }
        None => {
            let mut end = id.find('?').unwrap_or(id.len());
            // `publish:{path}:{user}:{pass}`: the second colon starts the credentials.
            if let Some((second, _)) = id[..end].match_indices(':').nth(1) {
                end = second;
            }
            id[..end].to_string()
        }
    };
    let mut out: String = kept.chars().take(SHOWN).collect();
    if out.len() < id.len() {
        out.push('…');
    }
    out
}

fn token(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| v.to_owned())
}

fn key(path: &str) -> Result<StreamKey, StreamIdError> {
    let (app, stream) = path
        .split_once('/')
        .ok_or(StreamIdError::Malformed("the path must be {app}/{stream}"))?;
    StreamKey::new(app, stream).map_err(|e| StreamIdError::Key(e.to_string()))
}

fn parse_access_control(rest: &str) -> Result<StreamRequest, StreamIdError> {
    let (mut resource, mut mode, mut user) = (None, Mode::Read, None);
    for pair in rest.split(',') {
        let (k, v) = pair.split_once('=').ok_or(StreamIdError::Malformed(
            "access-control keys are key=value",
        ))?;
        match k {
            "r" => resource = Some(v),
            "m" => {
                mode = match v {
                    "publish" => Mode::Publish,
                    "request" => Mode::Read,
                    _ => return Err(StreamIdError::Malformed("m= must be publish or request")),
                }
            }
            "u" => user = Some(v),
            _ => {}
        }
    }
    let resource = resource.ok_or(StreamIdError::Malformed("no r= resource"))?;
    let (path, query) = match resource.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (resource, None),
    };
    let credentials = match (token(query.as_deref()), user) {
        (Some(t), _) => Credentials::Token(t),
        (None, Some(u)) => Credentials::UserPass {
            user: u.to_owned(),
            pass: String::new(),
        },
        (None, None) => Credentials::None,
    };
    Ok(StreamRequest {
        mode,
        key: key(path)?,
        credentials,
        query,
    })
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]
mod tests {
    use super::*;

    #[test]
    fn simple_forms() {
        let r = parse(Some("publish:live/x")).expect("parses");
        assert_eq!(
            (r.mode, r.key.to_string()),
            (Mode::Publish, "live/x".into())
        );
        assert_eq!(r.credentials, Credentials::None);
        let r = parse(Some("read:live/x:alice:secret")).expect("parses");
        assert_eq!(r.mode, Mode::Read);
        assert_eq!(
            r.credentials,
            Credentials::UserPass {
                user: "alice".into(),
                pass: "secret".into()
            }
        );
        let r = parse(Some("read:live/x?token=abc&z=1")).expect("parses");
        assert_eq!(r.credentials, Credentials::Token("abc".into()));
        assert_eq!(r.query.as_deref(), Some("token=abc&z=1"));
    }

    #[test]
    fn access_control_form() {
        let r = parse(Some("#!::r=live/x,m=publish")).expect("parses");
        assert_eq!(
            (r.mode, r.key.to_string()),
            (Mode::Publish, "live/x".into())
        );
        let r = parse(Some("#!::u=bob,r=live/y")).expect("parses");
        assert_eq!(r.mode, Mode::Read);
        assert_eq!(r.key.to_string(), "live/y");
        assert!(matches!(r.credentials, Credentials::UserPass { .. }));
    }

    #[test]
    fn credentials_and_queries_are_never_shown() {
        assert_eq!(shown("publish:live/x"), "publish:live/x");
        assert_eq!(shown("read:live/x:alice:secret"), "read:live/x…");
        assert_eq!(shown("publsh:live/x:alice:secret"), "publsh:live/x…");
        assert_eq!(shown("read:live/x?token=abc"), "read:live/x…");
        assert_eq!(shown("#!::r=live/x,m=publish"), "#!::r=live/x,m=publish");
        assert_eq!(
            shown("#!::r=live/x?token=abc,m=publish,s=secret"),
            "#!::r=live/x,m=publish…"
        );
        let long = "a".repeat(200);
        assert_eq!(shown(&long).chars().count(), SHOWN + 1);
        assert_eq!(shown(""), "");
    }

    #[test]
    fn refusals() {
        assert_eq!(parse(None), Err(StreamIdError::Missing));
        assert_eq!(parse(Some("")), Err(StreamIdError::Missing));
        assert!(matches!(
            parse(Some("live/x")),
            Err(StreamIdError::Malformed(_))
        ));
        assert!(matches!(
            parse(Some("publish:x")),
            Err(StreamIdError::Malformed(_))
        ));
        assert!(matches!(
            parse(Some("publish:live/x:alice")),
            Err(StreamIdError::Malformed(_))
        ));
        assert!(matches!(
            parse(Some("#!::m=publish")),
            Err(StreamIdError::Malformed(_))
        ));
        assert!(matches!(
            parse(Some("#!::r=live/x,m=play")),
            Err(StreamIdError::Malformed(_))
        ));
        assert!(matches!(
            parse(Some("publish:live/../x")),
            Err(StreamIdError::Key(_))
        ));
    }
}
