//! One cross-origin policy for every route: players load media from pages on
//! other origins, so any origin may read, with `GET`, `HEAD` and `OPTIONS`.

use axum::body::Body;
use axum::handler::Handler;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};

/// How long a browser may reuse a preflight answer (one day: the policy
/// never changes while the server runs).
const PREFLIGHT_MAX_AGE: &str = "86400";

/// Response headers a player's script may read besides the safelisted ones:
/// `Date` is what clock synchronisation by `HEAD` reads.
const EXPOSED: &str = "Date";

/// The answer to a CORS preflight (`OPTIONS`): `204` with the policy. Use it
/// as the route's `OPTIONS` handler.
pub async fn preflight() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    insert_all(
        r.headers_mut(),
        [
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD, OPTIONS"),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, "*"),
            (header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE),
        ],
    );
    r
}

/// A `GET` route (`HEAD` included) whose `OPTIONS` answers [`preflight`].
pub fn get_with_preflight<H, T, S>(handler: H) -> MethodRouter<S>
where
    H: Handler<T, S>,
    T: 'static,
    S: Clone + Send + Sync + 'static,
{
    get(handler).options(preflight)
}

/// Sets the headers every answer carries: its `Content-Type`, its
/// `Cache-Control` and the cross-origin policy.
pub fn set_headers(h: &mut HeaderMap, content_type: &'static str, cache: &'static str) {
    insert_all(
        h,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, cache),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED),
        ],
    );
}

fn insert_all<const N: usize>(h: &mut HeaderMap, headers: [(HeaderName, &'static str); N]) {
    for (name, value) in headers {
        h.insert(name, HeaderValue::from_static(value));
    }
}

/// A response of `body` with [`set_headers`].
pub fn reply(
    status: StatusCode,
    content_type: &'static str,
    cache: &'static str,
    body: impl Into<Body>,
) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    set_headers(r.headers_mut(), content_type, cache);
    r
}

/// A plain-text answer (an error, mostly), never cached; a line feed ends
/// the text if it does not already.
pub fn text(status: StatusCode, message: impl Into<String>) -> Response {
    let mut message = message.into();
    if !message.ends_with('\n') {
        message.push('\n');
    }
    reply(status, "text/plain; charset=utf-8", "no-cache", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn preflight_carries_the_policy() {
        let r = preflight().await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let h = r.headers();
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_METHODS],
            "GET, HEAD, OPTIONS"
        );
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], PREFLIGHT_MAX_AGE);
    }

    #[tokio::test]
    async fn text_ends_with_one_line_feed() {
        for m in ["gone", "gone\n"] {
            let r = text(StatusCode::NOT_FOUND, m);
            assert_eq!(r.status(), StatusCode::NOT_FOUND);
            assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
            assert_eq!(r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
            assert_eq!(
                r.headers()[header::CONTENT_TYPE],
                "text/plain; charset=utf-8"
            );
            let body = axum::body::to_bytes(r.into_body(), 64).await;
            assert_eq!(body.ok().as_deref(), Some(&b"gone\n"[..]));
        }
    }
}
