//! WHIP signalling (RFC 9725) over HTTP: the axum routes.
// Reads WHIP/WHEP signalling requests (SDP offers, headers, paths) from
// any HTTP client: no indexing, unwrap, expect or panic outside tests
// (RELIABILITY.md, "Lints").
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::expect_used,
        clippy::unwrap_used,
        clippy::panic
    )
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Request as HttpRequest, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tidewater_core::{IngestContext, Request, StreamKey};
use tidewater_http::text;
use tokio::sync::oneshot;
use tracing::info;

use crate::media::{Command, NewPeer, Slot};
use crate::negotiate::{self, Negotiated, Role};
use crate::{PROTOCOL, Shared, trickle};

#[derive(Clone)]
struct WhipState {
    ctx: IngestContext,
    shared: Arc<Shared>,
}

/// The routes (see the crate docs), relative to where the router is mounted.
pub(crate) fn router(ctx: IngestContext, shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/whip/{app}/{stream}",
            post(publish).options(|| async { preflight("POST, OPTIONS", true) }),
        )
        .route(
            "/whip/{app}/{stream}/{session}",
            axum::routing::delete(end)
                .patch(patch)
                .options(|| async { session_preflight() }),
        )
        .route(
            "/whep/{app}/{stream}",
            post(play).options(|| async { preflight("POST, OPTIONS", true) }),
        )
        .route(
            "/whep/{app}/{stream}/{session}",
            axum::routing::delete(end)
                .patch(patch)
                .options(|| async { session_preflight() }),
        )
        .with_state(WhipState { ctx, shared })
}

/// Headers a page of another origin may send and read.
const ALLOWED_HEADERS: &str = "Authorization, Content-Type, If-Match";
const EXPOSED_HEADERS: &str = "Location, ETag, Link, Accept-Post, Accept-Patch";

fn cors(h: &mut HeaderMap) {
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED_HEADERS),
    );
}

fn preflight(methods: &'static str, endpoint: bool) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    cors(h);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(methods),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOWED_HEADERS),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    h.insert(header::ALLOW, HeaderValue::from_static(methods));
    if endpoint {
        h.insert("accept-post", HeaderValue::from_static("application/sdp"));
    }
    r
}

/// The preflight of a session URL: `PATCH` takes trickle fragments.
fn session_preflight() -> Response {
    let mut r = preflight("PATCH, DELETE, OPTIONS", false);
    r.headers_mut().insert(
        "accept-patch",
        HeaderValue::from_static(trickle::CONTENT_TYPE),
    );
    r
}

/// Hands a negotiated peer to the media worker and answers `201` with the
/// SDP answer, its `Location` (`/{route}/{key}/{id}`) and `ETag`.
async fn answered(
    shared: &Shared,
    commands: &tokio::sync::mpsc::Sender<Command>,
    new: NewPeer,
    who: &str,
    route: &str,
    verb: &str,
    answer: String,
) -> Response {
    let (id, key) = (new.id.clone(), new.key.clone());
    let sent = tokio::time::timeout(
        Duration::from_secs(2),
        commands.send(Command::Add(Box::new(new))),
    )
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the WebRTC worker is busy");
    }
    info!(peer = %who, stream = %key, session = %id, "{route}: {verb} answered");
    let mut r = (StatusCode::CREATED, answer).into_response();
    let h = r.headers_mut();
    cors(h);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("/{route}/{key}/{id}")) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{id}\"")) {
        h.insert(header::ETAG, v);
    }
    // STUN/TURN servers for the client (validated: no quotes or controls).
    for server in &shared.config.ice_servers {
        if let Ok(v) = HeaderValue::from_str(&server.link()) {
            h.append(header::LINK, v);
        }
    }
    r
}

/// The answer to an offer or fragment refused by the sans-IO side.
fn refusal(e: &crate::Error) -> Response {
    let (status, message) = match e {
        crate::Error::NoCommonCodec(m) => (StatusCode::NOT_ACCEPTABLE, m.clone()),
        crate::Error::Signalling(m) => (StatusCode::BAD_REQUEST, m.clone()),
        other => (StatusCode::BAD_REQUEST, other.to_string()),
    };
    error(status, message)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let mut r = text(status, message);
    cors(r.headers_mut());
    r
}

fn session_id() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

async fn publish(
    State(state): State<WhipState>,
    Path((app, stream)): Path<(String, String)>,
    request: HttpRequest,
) -> Response {
    let (peer, query, credentials) = tidewater_http::asker(&request);
    let who = tidewater_http::who(peer);
    let is_sdp = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
        });
    if !is_sdp {
        info!(peer = %who, "whip: POST refused: Content-Type is not application/sdp");
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a WHIP offer is application/sdp",
        );
    }
    let key = match tidewater_http::stream_key(PROTOCOL, peer, &app, &stream) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let shared = &state.shared;
    let Some(bound) = shared.bound.borrow().clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the WebRTC media port is not listening",
        );
    };
    // The slot is taken before any work, released by whoever drops it.
    let previous = shared.sessions.fetch_add(1, Ordering::Relaxed);
    let slot = Slot(Arc::clone(&shared.sessions));
    if previous >= shared.config.max_sessions {
        info!(peer = %who, stream = %key, "whip: POST refused: {previous} sessions already");
        return error(StatusCode::SERVICE_UNAVAILABLE, "too many WebRTC sessions");
    }
    let body = match axum::body::to_bytes(request.into_body(), shared.config.max_offer_bytes).await
    {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the offer is larger than {} bytes",
                    shared.config.max_offer_bytes
                ),
            );
        }
    };
    let offer = match negotiate::parse_offer(&body) {
        Ok(o) => o,
        Err(e) => {
            info!(peer = %who, stream = %key, "whip: POST refused: {e}");
            return refusal(&e);
        }
    };
    let mut req = Request::new(key.clone(), PROTOCOL).credentials(credentials);
    if let Some(p) = peer {
        req = req.peer(p);
    }
    if let Some(q) = query {
        req = req.query(q);
    }
    let session = match state.ctx.open_publish(req).await {
        Ok(s) => s,
        Err(e) => return publish_refused(&state.ctx, peer, &key, &e),
    };
    let Negotiated { rtc, answer } =
        match negotiate::answer(offer, Role::Publish, &bound.candidates, Instant::now()) {
            Ok(n) => n,
            Err(e) => {
                info!(peer = %who, stream = %key, "whip: POST refused: {e}");
                return refusal(&e);
            }
        };
    let Some(id) = session_id() else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no randomness for a session id",
        );
    };
    let new = NewPeer {
        id: id.clone(),
        rtc,
        session: Some(session),
        subscription: None,
        resume: None,
        key: key.clone(),
        http_peer: peer,
        slot,
    };
    answered(
        shared,
        &bound.commands,
        new,
        &who,
        "whip",
        "publish",
        answer,
    )
    .await
}

fn publish_refused(
    ctx: &IngestContext,
    peer: Option<SocketAddr>,
    key: &StreamKey,
    e: &tidewater_core::Error,
) -> Response {
    use tidewater_core::Error as E;
    if let E::Unauthorized { refusal, .. } = e {
        let mut r = tidewater_http::refuse(PROTOCOL, peer, key, refusal, &ctx.realm());
        cors(r.headers_mut());
        return r;
    }
    info!(peer = %tidewater_http::who(peer), stream = %key, "whip: publish refused: {e}");
    let status = match e {
        E::AlreadyPublishing { .. } => StatusCode::CONFLICT,
        E::UnknownApp { .. } => StatusCode::NOT_FOUND,
        E::InvalidKey { .. } => StatusCode::BAD_REQUEST,
        E::PublisherLimit { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

async fn end(
    State(state): State<WhipState>,
    Path((app, stream, session)): Path<(String, String, String)>,
) -> Response {
    let Ok(key) = StreamKey::new(&app, &stream) else {
        return error(StatusCode::NOT_FOUND, "no such session");
    };
    let Some(bound) = state.shared.bound.borrow().clone() else {
        return error(StatusCode::NOT_FOUND, "no such session");
    };
    let (reply, answer) = oneshot::channel();
    let asked = bound
        .commands
        .send(Command::Remove {
            id: session,
            key,
            reply,
        })
        .await;
    if asked.is_ok() && answer.await.unwrap_or(false) {
        let mut r = StatusCode::OK.into_response();
        cors(r.headers_mut());
        r
    } else {
        error(StatusCode::NOT_FOUND, "no such session")
    }
}

/// `PATCH {Location}`: trickle ICE (`204`, the fragment's candidates go
/// to the session); an ICE restart is answered `422` (RFC 9725 §4.3.1: a
/// session that trickles but does not restart); `412` when `If-Match` is
/// not the session's ETag.
async fn patch(
    State(state): State<WhipState>,
    Path((app, stream, session)): Path<(String, String, String)>,
    request: HttpRequest,
) -> Response {
    let is_fragment = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(trickle::CONTENT_TYPE))
        });
    if !is_fragment {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a PATCH carries application/trickle-ice-sdpfrag",
        );
    }
    let if_match = request
        .headers()
        .get(header::IF_MATCH)
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let Ok(key) = StreamKey::new(&app, &stream) else {
        return error(StatusCode::NOT_FOUND, "no such session");
    };
    let limit = state.shared.config.max_offer_bytes;
    let Ok(body) = axum::body::to_bytes(request.into_body(), limit).await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the fragment is larger than {limit} bytes"),
        );
    };
    let fragment = match std::str::from_utf8(&body)
        .map_err(|_| crate::Error::Signalling("the fragment is not UTF-8".into()))
        .and_then(trickle::parse_fragment)
    {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let Some(bound) = state.shared.bound.borrow().clone() else {
        return error(StatusCode::NOT_FOUND, "no such session");
    };
    // Checked before the candidates reach a session.
    if let Some(tag) = &if_match
        && !trickle::if_match(tag, &session)
    {
        return error(
            StatusCode::PRECONDITION_FAILED,
            "If-Match is not this session's ETag",
        );
    }
    let restart = if_match.as_deref().is_some_and(trickle::is_restart);
    let candidates = if restart {
        Vec::new()
    } else {
        fragment.candidates
    };
    let (reply, answer) = oneshot::channel();
    let asked = bound
        .commands
        .send(Command::Trickle {
            id: session.clone(),
            key,
            candidates,
            reply,
        })
        .await;
    if asked.is_err() || !answer.await.unwrap_or(false) {
        return error(StatusCode::NOT_FOUND, "no such session");
    }
    if restart {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ICE restarts are not supported: end the session and publish again",
        );
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    cors(r.headers_mut());
    r
}

/// The protocol's name for readers.
const WHEP: &str = "whep";
/// The most events of the cached GOP looked at before answering a viewer.
const MAX_LOOK_AHEAD: usize = 4096;

/// `POST /whep/{app}/{stream}`: a viewer's offer (receive-only) is answered
/// with send-only H.264 and Opus; its media starts at the cached GOP once
/// ICE and DTLS complete.
async fn play(
    State(state): State<WhipState>,
    Path((app, stream)): Path<(String, String)>,
    request: HttpRequest,
) -> Response {
    let (peer, query, credentials) = tidewater_http::asker(&request);
    let who = tidewater_http::who(peer);
    let is_sdp = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
        });
    if !is_sdp {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a WHEP offer is application/sdp",
        );
    }
    let key = match tidewater_http::stream_key(WHEP, peer, &app, &stream) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let shared = &state.shared;
    let Some(bound) = shared.bound.borrow().clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the WebRTC media port is not listening",
        );
    };
    let previous = shared.sessions.fetch_add(1, Ordering::Relaxed);
    let slot = Slot(Arc::clone(&shared.sessions));
    if previous >= shared.config.max_sessions {
        return error(StatusCode::SERVICE_UNAVAILABLE, "too many WebRTC sessions");
    }
    let Ok(body) = axum::body::to_bytes(request.into_body(), shared.config.max_offer_bytes).await
    else {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "the offer is too large");
    };
    let offer = match negotiate::parse_offer(&body) {
        Ok(o) => o,
        Err(e) => return refusal(&e),
    };
    let req = tidewater_http::reader_request(&key, WHEP, peer, query.as_deref(), credentials);
    let resume = (state.ctx.clone(), req.clone());
    let mut subscription = match state.ctx.subscribe(req).await {
        Ok(s) => s,
        Err(e) => {
            let mut r = tidewater_http::refused(WHEP, peer, &key, &e, &state.ctx.realm());
            cors(r.headers_mut());
            return r;
        }
    };
    // The cached GOP shows whether the stream has B-frames; its events are
    // kept and played first.
    let mut taken = Vec::new();
    while taken.len() < MAX_LOOK_AHEAD {
        match subscription.try_recv() {
            Some(Ok(event)) => taken.push(event),
            _ => break,
        }
    }
    let b_frames = taken.iter().any(|e| {
        matches!(e, tidewater_core::Event::Frame(f) if matches!(f.codec, tidewater_core::Codec::H264 | tidewater_core::Codec::H265) && f.pts != f.dts)
    });
    if b_frames {
        info!(peer = %who, stream = %key, "whep: play refused: {}", crate::media::B_FRAMES);
        return error(StatusCode::UNPROCESSABLE_ENTITY, crate::media::B_FRAMES);
    }
    // Video in a codec the viewer's offer lacks is refused rather than
    // played as a black picture.
    let snapshot = state.ctx.stream(&key);
    if let Some(why) = snapshot
        .and_then(|s| s.catalog)
        .and_then(|c| negotiate::uncarried_video(c.catalog().tracks(), &offer))
    {
        info!(peer = %who, stream = %key, "whep: play refused: {why}");
        return error(StatusCode::UNPROCESSABLE_ENTITY, why);
    }
    let Negotiated { rtc, answer } =
        match negotiate::answer(offer, Role::Play, &bound.candidates, Instant::now()) {
            Ok(n) => n,
            Err(e) => return refusal(&e),
        };
    let Some(id) = session_id() else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no randomness for a session id",
        );
    };
    let new = NewPeer {
        id: id.clone(),
        rtc,
        session: None,
        subscription: Some((subscription, taken)),
        resume: Some(resume),
        key: key.clone(),
        http_peer: peer,
        slot,
    };
    answered(shared, &bound.commands, new, &who, "whep", "play", answer).await
}
