//! Credentials from an RTSP `Authorization` header: `Basic` becomes
//! [`Credentials::UserPass`], `Digest` becomes [`Credentials::Digest`] (with
//! the request method, so the authorizer can check the response), anything
//! else none. A `401` challenges with Digest (a nonce from the authorizer,
//! when it checks Digest: only users with a plain `password` can answer it),
//! SHA-256 first and MD5 second as RFC 7616 §3.7 orders them, and with Basic.
// Reads network input: no indexing, unwrap, expect or panic that a peer
// could reach (issue 18); where an invariant proves one safe, an allow says which.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use base64::Engine as _;
use tidewater_core::{Credentials, DigestCredentials};

/// The longest header value looked at.
const MAX_HEADER: usize = 4096;

/// Parses an `Authorization` header value for a request of `method`.
pub fn credentials(header: &str, method: &str) -> Credentials {
    if header.len() > MAX_HEADER {
        return Credentials::None;
    }
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(rest.trim()) else {
            return Credentials::None;
        };
        let Ok(text) = String::from_utf8(raw) else {
            return Credentials::None;
        };
        return match text.split_once(':') {
            Some((user, pass)) => Credentials::UserPass {
                user: user.to_string(),
                pass: pass.to_string(),
            },
            None => Credentials::None,
        };
    }
    if scheme.eq_ignore_ascii_case("digest") {
        let mut d = DigestCredentials {
            method: method.to_string(),
            ..DigestCredentials::default()
        };
        for (name, value) in params(rest) {
            match name.to_ascii_lowercase().as_str() {
                "username" => d.user = value,
                "realm" => d.realm = value,
                "nonce" => d.nonce = value,
                "uri" => d.uri = value,
                "response" => d.response = value,
                "algorithm" => d.algorithm = Some(value),
                "qop" => d.qop = Some(value),
                "nc" => d.nc = Some(value),
                "cnonce" => d.cnonce = Some(value),
                _ => {}
            }
        }
        if d.user.is_empty() || d.response.is_empty() {
            return Credentials::None;
        }
        return Credentials::Digest(Box::new(d));
    }
    Credentials::None
}

/// `name=value` and `name="quoted, value"` pairs separated by commas.
fn params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() && out.len() < 32 {
        let Some(eq) = rest.find('=') else { break };
        let name = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let Some(end) = quoted.find('"') else { break };
            value = quoted[..end].to_string();
            rest = &quoted[end + 1..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        rest = rest.trim_start().trim_start_matches(',').trim_start();
        out.push((name, value));
    }
    out
}

/// The `WWW-Authenticate` challenge of a 401 answer.
pub fn basic_challenge(realm: &str) -> String {
    format!("Basic realm=\"{}\"", quotable(realm))
}

/// The `WWW-Authenticate` value of a Digest SHA-256 challenge (RFC 7616,
/// `qop="auth"`) in `realm` with `nonce`. It goes before the MD5 one:
/// clients that know SHA-256 take the first challenge they support, and
/// ffmpeg 5.1 (MD5 only) keeps the last Digest challenge of a response.
pub fn digest_sha256_challenge(realm: &str, nonce: &str) -> String {
    format!(
        "Digest realm=\"{}\", nonce=\"{}\", algorithm=SHA-256, qop=\"auth\"",
        quotable(realm),
        quotable(nonce)
    )
}

/// The `WWW-Authenticate` value of a Digest challenge (RFC 2617, MD5, as
/// ffmpeg and GStreamer speak it) in `realm` with `nonce`.
pub fn digest_challenge(realm: &str, nonce: &str) -> String {
    format!(
        "Digest realm=\"{}\", nonce=\"{}\", algorithm=MD5",
        quotable(realm),
        quotable(nonce)
    )
}

/// `text` without what would end or break a quoted string.
fn quotable(text: &str) -> String {
    text.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

/// Whether `d` is the RFC 7616 SHA-256 (`qop=auth`) answer for `password`:
/// the check the auth crate makes, redone here so the tests show that what
/// this crate reads is enough to make it (protocol crates do not depend on
/// the auth crate, not even in tests).
#[cfg(test)]
pub(crate) fn sha256_response_matches(d: &DigestCredentials, password: &str) -> bool {
    use sha2::{Digest as _, Sha256};
    fn h(parts: &[&str]) -> String {
        Sha256::digest(parts.join(":").as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
    let (Some(nc), Some(cnonce), Some(qop)) = (&d.nc, &d.cnonce, &d.qop) else {
        return false;
    };
    let ha1 = h(&[&d.user, &d.realm, password]);
    let ha2 = h(&[&d.method, &d.uri]);
    h(&[&ha1, &d.nonce, nc, cnonce, qop, &ha2]) == d.response
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on what they did not expect"
)]
mod tests {
    use super::*;

    #[test]
    fn basic_and_digest_are_read() {
        assert_eq!(
            credentials("Basic dXNlcjpwYXNz", "ANNOUNCE"),
            Credentials::UserPass {
                user: "user".into(),
                pass: "pass".into()
            }
        );
        let Credentials::Digest(d) = credentials(
            r#"Digest username="u", realm="tidewater", nonce="n1", uri="rtsp://h/live/a", response="abc", qop=auth, nc=00000001, cnonce="c""#,
            "DESCRIBE",
        ) else {
            panic!("digest expected");
        };
        assert_eq!(
            (d.user.as_str(), d.realm.as_str(), d.nonce.as_str()),
            ("u", "tidewater", "n1")
        );
        assert_eq!(
            (d.uri.as_str(), d.response.as_str(), d.method.as_str()),
            ("rtsp://h/live/a", "abc", "DESCRIBE")
        );
        assert_eq!(d.qop.as_deref(), Some("auth"));
        assert_eq!(d.nc.as_deref(), Some("00000001"));
        assert_eq!(credentials("Bearer x", "PLAY"), Credentials::None);
        assert_eq!(credentials("Basic !!!", "PLAY"), Credentials::None);
        assert_eq!(basic_challenge("a\"b"), "Basic realm=\"ab\"");
        assert_eq!(
            digest_sha256_challenge("r", "n"),
            "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256, qop=\"auth\""
        );
    }

    /// RFC 7616 §3.9.1's SHA-256 answer as a client writes it: every field
    /// the verifier needs comes through, the algorithm included.
    #[test]
    fn rfc7616_sha256_authorization_is_read() {
        let header = r#"Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;
        let Credentials::Digest(d) = credentials(header, "GET") else {
            panic!("digest expected");
        };
        assert_eq!(d.algorithm.as_deref(), Some("SHA-256"));
        assert_eq!(
            (d.user.as_str(), d.realm.as_str(), d.uri.as_str()),
            ("Mufasa", "http-auth@example.org", "/dir/index.html")
        );
        assert_eq!(d.nonce, "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v");
        assert_eq!(
            d.cnonce.as_deref(),
            Some("f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")
        );
        assert_eq!(
            d.response,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        assert!(sha256_response_matches(&d, "Circle of Life"));
        assert!(!sha256_response_matches(&d, "Circle Of Life"));
    }
}
