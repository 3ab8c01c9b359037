//! The guard of the API (`/api/v1/**`, action `api`) and of `/metrics`
//! (action `metrics`): an axum middleware that asks the engine's authorizer
//! before the route runs.
//!
//! The authorizer sees the peer's address (from
//! [`ConnectInfo`](axum::extract::ConnectInfo)), the credentials of the
//! `Authorization` header (Basic or Bearer, see [`tidewater_http::credentials`])
//! and the query string (for `?token=`). A refusal answers as
//! [`tidewater_http::refusal_response`] makes it (`401` with `Basic` and
//! `Bearer` challenges, `403`, `429` with `Retry-After`, `503`), with the
//! API's JSON error body on API routes (codes `unauthorized`, `forbidden`,
//! `rate_limited`, `unavailable`); it is logged at `info` with the peer, the
//! path and the reason, which names the permission that was missing:
//!
//! ```text
//! INFO tidewater_server::http::guard: api request refused peer=192.0.2.7:51000 path=/api/v1/streams reason=anonymous api is allowed from loopback only (no [auth] is configured); add [[auth.users]] with user, password and permissions = [{ action = "api" }]
//! ```
//!
//! and counted as a refusal (`unauthorized`) of the listener it came in on.
//! [`count_refusals`], layered by the server over every route, counts the
//! output routes' refusals the same way.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tidewater::{Action, AuthRequest, Engine, RefusalKind};

use super::api::ApiError;
use super::serve::Listener;

#[derive(Clone)]
struct Guard {
    engine: Engine,
    action: Action,
}

/// `router` with every request (its fallback's too) asked about `action`
/// first.
pub fn guard(router: Router, engine: Engine, action: Action) -> Router {
    router.layer(axum::middleware::from_fn_with_state(
        Guard { engine, action },
        check,
    ))
}

async fn check(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let (peer, query, credentials) = tidewater_http::asker(&request);
    let mut asked = AuthRequest::new(guard.action, "http").credentials(credentials);
    if let Some(peer) = peer {
        asked = asked.peer(peer);
    }
    if let Some(query) = query {
        asked = asked.query(query);
    }
    let refusal = match guard.engine.authorize_request(&asked).await {
        Ok(_) => return next.run(request).await,
        Err(refusal) => refusal,
    };
    guard
        .engine
        .listener_stats(listener(&request))
        .refused("unauthorized");
    log_refusal(guard.action, peer, request.uri().path(), &refusal);
    let response = tidewater_http::refusal_response(&refusal, &guard.engine.realm());
    let mut response = match guard.action {
        Action::Api => json_body(response, &refusal),
        _ => response,
    };
    response.extensions_mut().insert(Counted);
    response
}

/// Marks a response whose refusal is counted already.
#[derive(Clone, Copy, Debug)]
struct Counted;

/// `router` with every answer that turns the client away for want of
/// rights — `401`, `403` or `429` from an output route (HLS, DASH,
/// HTTP-FLV, HTTP-TS, …) — counted as a refusal (`unauthorized`, as the RTMP
/// and SRT listeners name theirs) of the listener the request came in on
/// (`http` or `https`; see [`Listener`]). The guard's own refusals are
/// counted once, `503` included.
///
/// An output route's `503` is not counted: it also means that a stream has
/// nothing to serve yet, which is no refusal.
pub fn count_refusals(router: Router, engine: Engine) -> Router {
    router.layer(axum::middleware::from_fn_with_state(engine, count))
}

async fn count(State(engine): State<Engine>, request: Request, next: Next) -> Response {
    let listener = listener(&request);
    let response = next.run(request).await;
    if matches!(response.status().as_u16(), 401 | 403 | 429)
        && response.extensions().get::<Counted>().is_none()
    {
        engine.listener_stats(listener).refused("unauthorized");
    }
    response
}

fn listener(request: &Request) -> &'static str {
    request
        .extensions()
        .get::<Listener>()
        .map_or("http", |l| l.0)
}

fn log_refusal(action: Action, peer: Option<SocketAddr>, path: &str, refusal: &tidewater::Refusal) {
    let path: String = path.chars().take(256).collect();
    tracing::info!(
        peer = %tidewater_http::who(peer),
        path = %path,
        reason = %refusal,
        "{action} request refused"
    );
}

/// The refusal's status and headers, with the API's JSON error body.
fn json_body(response: Response, refusal: &tidewater::Refusal) -> Response {
    let (mut parts, _) = response.into_parts();
    let code = match refusal.kind() {
        RefusalKind::MissingCredentials | RefusalKind::InvalidCredentials => "unauthorized",
        RefusalKind::Forbidden => "forbidden",
        RefusalKind::RateLimited => "rate_limited",
        RefusalKind::Unavailable => "unavailable",
    };
    let json = ApiError::new(parts.status, code, refusal.to_string()).into_response();
    let (json_parts, body) = json.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    if let Some(content_type) = json_parts.headers.get(header::CONTENT_TYPE) {
        parts
            .headers
            .insert(header::CONTENT_TYPE, content_type.clone());
    }
    Response::from_parts(parts, body)
}
