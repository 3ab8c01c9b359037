//! Credentials from an HTTP request, and the authorizer's refusals as HTTP
//! answers, the same for every route (outputs, playlists, the API, metrics).

use std::net::SocketAddr;

use axum::http::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tidewater_core::{Credentials, Refusal, RefusalKind};

use crate::cors::text;

/// The credentials an HTTP request carries: `Authorization: Basic …` (a
/// user and password) or `Authorization: Bearer …` (a JWT, a signed read
/// token, or anything an HTTP hook understands). A `?token=` in the query is
/// not copied here: the authorizer reads it from the query itself.
///
/// A malformed header counts as no credentials (the request is then decided
/// as anonymous, which refuses it wherever credentials are needed).
pub fn credentials(headers: &HeaderMap) -> Credentials {
    let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return Credentials::None;
    };
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        return Credentials::Token(rest.to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD
            .decode(rest)
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        if let Some((user, pass)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
            return Credentials::UserPass {
                user: user.to_string(),
                pass: pass.to_string(),
            };
        }
    }
    Credentials::None
}

/// The HTTP status of a refusal: `401` when credentials are missing or
/// wrong (the client may retry with others), `403` when they were fine but
/// grant nothing here, `429` over the rate limit, `503` when the deciding
/// service (the HTTP hook) is unavailable.
pub fn refusal_status(kind: RefusalKind) -> StatusCode {
    match kind {
        RefusalKind::MissingCredentials | RefusalKind::InvalidCredentials => {
            StatusCode::UNAUTHORIZED
        }
        RefusalKind::Forbidden => StatusCode::FORBIDDEN,
        RefusalKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        RefusalKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The answer to a request the authorizer refused: [`refusal_status`], with
/// `WWW-Authenticate: Basic realm="…"` and `Bearer realm="…"` challenges on
/// a `401`, and `Retry-After` on a `429`. The body says why (the refusal's
/// reason names the permission that was missing), as the log line does.
pub fn refusal_response(refusal: &Refusal, realm: &str) -> Response {
    let status = refusal_status(refusal.kind());
    let mut response = text(status, format!("{refusal}\n"));
    let headers = response.headers_mut();
    if status == StatusCode::UNAUTHORIZED {
        // Quotes and backslashes would break the quoted string.
        let realm: String = realm
            .chars()
            .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
            .collect();
        for scheme in ["Basic", "Bearer"] {
            let value = format!("{scheme} realm=\"{realm}\"");
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.append(WWW_AUTHENTICATE, v);
            }
        }
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        headers.insert(RETRY_AFTER, HeaderValue::from_static("60"));
    }
    response
}

/// Logs a refused request (peer, what it asked for, why) and answers it with
/// [`refusal_response`].
pub fn refuse(
    protocol: &str,
    peer: Option<SocketAddr>,
    what: &dyn std::fmt::Display,
    refusal: &Refusal,
    realm: &str,
) -> Response {
    tracing::info!(peer = %crate::who(peer), "{protocol} request for {what} refused: {refusal}");
    refusal_response(refusal, realm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).expect("header"));
        h
    }

    #[test]
    fn basic_and_bearer_are_read() {
        // "alice:open:sesame": a colon in the password stays in it.
        let basic = format!("Basic {}", STANDARD.encode("alice:open:sesame"));
        assert_eq!(
            credentials(&headers(&basic)),
            Credentials::UserPass {
                user: "alice".into(),
                pass: "open:sesame".into()
            }
        );
        assert_eq!(
            credentials(&headers("bearer abc.def")),
            Credentials::Token("abc.def".into())
        );
        assert_eq!(credentials(&HeaderMap::new()), Credentials::None);
    }

    #[test]
    fn malformed_headers_are_no_credentials() {
        for bad in [
            "Basic !!!",
            "Basic",
            "Bearer",
            "Bearer   ",
            "Digest x",
            "Basic bm9jb2xvbg==",
        ] {
            assert_eq!(credentials(&headers(bad)), Credentials::None, "{bad}");
        }
    }

    #[test]
    fn refusals_map_to_statuses_and_challenges() {
        let missing = Refusal::new(RefusalKind::MissingCredentials, "no credentials");
        let r = refusal_response(&missing, "tide\"water");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let challenges: Vec<_> = r
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().expect("ascii"))
            .collect();
        assert_eq!(
            challenges,
            ["Basic realm=\"tidewater\"", "Bearer realm=\"tidewater\""]
        );

        let forbidden = refusal_response(&Refusal::forbidden("no"), "r");
        assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
        assert!(forbidden.headers().get(WWW_AUTHENTICATE).is_none());

        let limited = refusal_response(&Refusal::new(RefusalKind::RateLimited, "slow down"), "r");
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(limited.headers().get(RETRY_AFTER).is_some());

        let down = refusal_response(&Refusal::new(RefusalKind::Unavailable, "hook down"), "r");
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
