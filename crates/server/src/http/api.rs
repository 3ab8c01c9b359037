//! The REST API, mounted under `/api/v1`.
//!
//! | request | answer |
//! |---|---|
//! | `GET /api/v1/streams` | `{"streams": [StreamView, …]}`: every live stream, sorted by key |
//! | `GET /api/v1/streams/{app}/{stream}` | one [`StreamView`], or 404 when it is not live |
//! | `GET /api/v1/streams/{app}/{stream}/pushes` | `{"pushes": [PushView, …]}`, or 404 when the stream is neither live nor pushed |
//! | `GET /api/v1/sessions` | `{"sessions": [Session, …]}`: every publisher and reader, sorted by id (see [`sessions`](super::sessions)) |
//! | `DELETE /api/v1/sessions/{id}` | ends the session: `204`, or 404 when no live session has that id |
//! | `POST /api/v1/config/reload` | reads the configuration again: [`ReloadReport`] (`{"applied": ["auth"], "restart_required": ["http"]}`), `400` (`invalid_config`) when it does not load, changing nothing; see [`crate::reload`] |
//! | `GET /api/v1/pulls` | `{"pulls": [PullView, …]}`: every `[[pull]]` source and its state (see [`pulls`](super::pulls)) |
//! | `GET /api/v1/openapi.json` | the OpenAPI 3.1 document of this API (see [`openapi`](super::openapi)) |
//!
//! A [`StreamView`] is the kernel's [`StreamSnapshot`] serialized as is plus
//! `pushes`, the stream's pushes in configuration order, and `recording`
//! ([`RecordingView`]; `null` when no `[record]` path matches the stream):
//!
//! ```json
//! {"on": true, "current_segment": "2026-12-07T06-23-44-123Z.mp4", "bytes": 1843211,
//!  "last_error": null, "keyframe_drops": 0, "disk_errors": 0}
//! ```
//!
//! `on` is false before the recording starts and after a write error (a
//! full disk) stopped it; `last_error` then says why (`disk full`). A
//! stream pulled from a camera has `pull` (a [`PullView`](super::pulls::PullView),
//! as `GET /api/v1/pulls` lists it; `null` for other streams). A snapshot has `key`,
//! `generation`, `protocol`, `peer`, `started_unix_ms`, `metadata`, `catalog`
//! (`version` and `tracks` with codec, `codec_string` (the RFC 6381 string
//! players and packagers use, `avc1.64001f`, `mp4a.40.2`; `null` while the
//! decoder configuration does not say), timescale and video/audio parameters;
//! `null` until the publisher announces one), `qos` (frames, bytes,
//! keyframes, fps, bitrate, subscriber and lag counters), `subscribers` (each
//! with its own lag and drop counters) and `derived_bytes`.
//!
//! A push ([`PushView`]) is listed from the start of the publish until the
//! stream ends for good (so also while it waits for a republish):
//!
//! ```json
//! {"url": "rtmp://backup:1935/live/cam1", "state": "reconnecting", "attempts": 4,
//!  "failures_in_row": 2, "connected_since_unix_ms": null, "next_attempt_unix_ms": 1790000001500,
//!  "last_errors": [{"at_unix_ms": 1790000000500, "message": "stream rtmp://backup:1935/live/cam1: i/o error: Connection refused (os error 111)"}]}
//! ```
//!
//! `state` is `starting` (first connection), `active` (publishing; then
//! `connected_since_unix_ms` is set), `reconnecting` (waiting or trying
//! again, with capped exponential backoff) or `failed` (gave up after
//! `rtmp.push_max_attempts` failures in a row, until the next publish).
//! `attempts` counts every connection attempt; `last_errors` keeps the last
//! five, oldest first. URLs are shown without their query.
//!
//! Errors are JSON too, with a stable `code` and a human `message`:
//!
//! ```json
//! {"error": {"code": "not_found", "message": "stream live/cam1 is not being published"}}
//! ```
//!
//! Codes: `not_found` (404: no such live stream or session, or no such API
//! route), `invalid_key` (400: the names are not a valid stream key),
//! `invalid_id` (400: a session id that is not a number),
//! `invalid_config` (400: a reload found a configuration that does not
//! load), `not_reloadable` (409: the server has no configuration source to
//! read again) and `method_not_allowed` (405: the route exists, not with
//! that method); and from the guard, before any route: `unauthorized`
//! (401, with `WWW-Authenticate: Basic` and `Bearer` challenges),
//! `forbidden` (403), `rate_limited` (429) and `unavailable` (503).
//!
//! The router is a plain [`axum::Router`]: the server layers its guard on
//! top ([`guard`](super::guard), action `api`).

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use axum::{Json, Router};
use serde::Serialize;
use tidewater::record::{Recorder, StreamStatus};
use tidewater::rtmp::{PushSnapshot, PushStatuses};
use tidewater::{Engine, StreamKey, StreamSnapshot};

use crate::reload::{ReloadError, ReloadReport, Reloader};

#[derive(Clone)]
pub(crate) struct ApiState {
    pub(crate) engine: Engine,
    pushes: PushStatuses,
    reloader: Option<Reloader>,
}

/// The API's routes, with their state (no pushes).
pub fn router(engine: Engine) -> Router {
    router_with(engine, PushStatuses::default(), None)
}

/// The API's routes over `engine`, showing `pushes`.
pub fn router_with_pushes(engine: Engine, pushes: PushStatuses) -> Router {
    router_with(engine, pushes, None)
}

/// The API's routes over `engine`, showing `pushes`, reloading the
/// configuration with `reloader`.
pub fn router_with(engine: Engine, pushes: PushStatuses, reloader: Option<Reloader>) -> Router {
    routes()
        .into_iter()
        .fold(Router::new(), |router, (path, methods)| {
            router.route(path, methods)
        })
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(ApiState {
            engine,
            pushes,
            reloader,
        })
}

/// Every route of the API (paths relative to `/api/v1`, in the syntax the
/// OpenAPI document uses too), as one table so that a test can hold it
/// against the document.
pub(crate) fn routes() -> Vec<(&'static str, MethodRouter<ApiState>)> {
    vec![
        ("/streams", get(list_streams)),
        ("/streams/{app}/{stream}", get(get_stream)),
        ("/streams/{app}/{stream}/pushes", get(get_pushes)),
        ("/sessions", get(super::sessions::list_sessions)),
        ("/pulls", get(super::pulls::list_pulls)),
        ("/sessions/{id}", delete(super::sessions::kick_session)),
        ("/config/reload", post(reload_config)),
        ("/openapi.json", get(super::openapi::document)),
    ]
}

/// The body of `GET /api/v1/streams`.
#[derive(Debug, Serialize)]
pub struct StreamList {
    /// Every live stream, sorted by key.
    pub streams: Vec<StreamView>,
}

/// A live stream: the kernel's snapshot and the stream's pushes.
#[derive(Debug, Serialize)]
pub struct StreamView {
    /// The kernel's snapshot, flattened.
    #[serde(flatten)]
    pub snapshot: StreamSnapshot,
    /// The stream's pushes.
    pub pushes: Vec<PushView>,
    /// Its recording, when a `[record]` path matches it.
    pub recording: Option<RecordingView>,
    /// The `[[pull]]` that publishes it, when it is pulled from a camera.
    pub pull: Option<super::pulls::PullView>,
}

/// The recording state of a stream.
#[derive(Debug, Serialize)]
pub struct RecordingView {
    /// Being recorded now.
    pub on: bool,
    /// The file being written.
    pub current_segment: Option<String>,
    /// Bytes written by the current (or last) recording run.
    pub bytes: u64,
    /// Why recording stopped, when a write failed.
    pub last_error: Option<String>,
    /// Times recording dropped to the next keyframe, since the server started.
    pub keyframe_drops: u64,
    /// Times a write error stopped recording the stream, since the server started.
    pub disk_errors: u64,
}

impl From<StreamStatus> for RecordingView {
    fn from(s: StreamStatus) -> Self {
        RecordingView {
            on: s.recording,
            current_segment: s.current,
            bytes: s.bytes,
            last_error: s.error,
            keyframe_drops: s.keyframe_drops,
            disk_errors: s.disk_errors,
        }
    }
}

/// The server's recorder, when `[record]` records anything: a request
/// extension the server layers on (the API's own state stays the same
/// with or without it).
type Recordings = Option<Extension<Recorder>>;

/// The state of the server's `[[pull]]` sources, when there are any (a
/// request extension, as [`Recordings`]).
type Pulls = Option<Extension<tidewater_rtsp::pull::PullStatuses>>;

fn pull_of(pulls: &Pulls, key: &StreamKey) -> Option<super::pulls::PullView> {
    pulls
        .as_ref()
        .and_then(|Extension(p)| p.of(key))
        .map(super::pulls::PullView::from)
}

fn recording_of(recordings: &Recordings, key: &StreamKey) -> Option<RecordingView> {
    recordings
        .as_ref()
        .and_then(|Extension(r)| r.status_of(key))
        .map(RecordingView::from)
}

/// The body of `GET /api/v1/streams/{app}/{stream}/pushes`.
#[derive(Debug, Serialize)]
pub struct PushList {
    /// The stream's pushes.
    pub pushes: Vec<PushView>,
}

/// One push.
#[derive(Debug, Serialize)]
pub struct PushView {
    /// The destination, without its query.
    pub url: String,
    /// `starting`, `active`, `reconnecting` or `failed`.
    pub state: &'static str,
    /// Connection attempts so far.
    pub attempts: u64,
    /// Failures since the last stable connection.
    pub failures_in_row: u32,
    /// Since when it publishes (Unix ms), while active.
    pub connected_since_unix_ms: Option<u64>,
    /// When the next attempt is due (Unix ms), while waiting to reconnect.
    pub next_attempt_unix_ms: Option<u64>,
    /// The last errors, oldest first.
    pub last_errors: Vec<PushErrorView>,
}

/// One recorded push error.
#[derive(Debug, Serialize)]
pub struct PushErrorView {
    /// When (Unix ms).
    pub at_unix_ms: u64,
    /// What happened.
    pub message: String,
}

impl From<PushSnapshot> for PushView {
    fn from(p: PushSnapshot) -> Self {
        let s = p.status;
        PushView {
            url: p.url,
            state: s.state.as_str(),
            attempts: s.attempts,
            failures_in_row: s.failures_in_row,
            connected_since_unix_ms: s.connected_since_unix_ms,
            next_attempt_unix_ms: s.next_attempt_unix_ms,
            last_errors: s
                .last_errors
                .into_iter()
                .map(|e| PushErrorView {
                    at_unix_ms: e.at_unix_ms,
                    message: e.message,
                })
                .collect(),
        }
    }
}

fn push_views(pushes: &PushStatuses, key: &StreamKey) -> Option<Vec<PushView>> {
    pushes
        .of(key)
        .map(|l| l.into_iter().map(PushView::from).collect())
}

/// An API error: an HTTP status and a JSON body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// Names the codecs of a snapshot's tracks (RFC 6381), which the kernel
/// leaves to the server.
fn named(mut snapshot: StreamSnapshot) -> StreamSnapshot {
    snapshot.name_codecs(tidewater_media::rfc6381::codec_string);
    snapshot
}

async fn list_streams(
    State(state): State<ApiState>,
    recordings: Recordings,
    pulls: Pulls,
) -> Json<StreamList> {
    let mut pushes = state.pushes.all();
    Json(StreamList {
        streams: state
            .engine
            .streams()
            .into_iter()
            .map(named)
            .map(|snapshot| StreamView {
                pushes: pushes
                    .remove(&snapshot.key)
                    .map(|l| l.into_iter().map(PushView::from).collect())
                    .unwrap_or_default(),
                recording: recording_of(&recordings, &snapshot.key),
                pull: pull_of(&pulls, &snapshot.key),
                snapshot,
            })
            .collect(),
    })
}

fn parse_key(app: &str, stream: &str) -> Result<StreamKey, ApiError> {
    StreamKey::new(app, stream)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_key", e.to_string()))
}

async fn get_stream(
    State(state): State<ApiState>,
    recordings: Recordings,
    pulls: Pulls,
    Path((app, stream)): Path<(String, String)>,
) -> Result<Json<StreamView>, ApiError> {
    let key = parse_key(&app, &stream)?;
    let snapshot = state.engine.stream(&key).map(named).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("stream {key} is not being published"),
        )
    })?;
    Ok(Json(StreamView {
        pushes: push_views(&state.pushes, &key).unwrap_or_default(),
        recording: recording_of(&recordings, &key),
        pull: pull_of(&pulls, &key),
        snapshot,
    }))
}

async fn get_pushes(
    State(state): State<ApiState>,
    Path((app, stream)): Path<(String, String)>,
) -> Result<Json<PushList>, ApiError> {
    let key = parse_key(&app, &stream)?;
    match push_views(&state.pushes, &key) {
        Some(pushes) => Ok(Json(PushList { pushes })),
        None if state.engine.stream(&key).is_some() => Ok(Json(PushList { pushes: vec![] })),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("stream {key} is not being published"),
        )),
    }
}

/// `POST /api/v1/config/reload`.
async fn reload_config(
    State(state): State<ApiState>,
    request: axum::extract::Request,
) -> Result<Json<ReloadReport>, ApiError> {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    tracing::info!(
        "configuration reload asked for over the API by {}",
        tidewater_http::who(peer)
    );
    let reloaded = match &state.reloader {
        Some(reloader) => reloader.reload().await,
        None => Err(ReloadError::NoSource),
    };
    reloaded.map(Json).map_err(|e| match e {
        ReloadError::Config(e) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_config", e.to_string())
        }
        other => ApiError::new(StatusCode::CONFLICT, "not_reloadable", other.to_string()),
    })
}

async fn unknown_route(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no API route /api/v1{}", uri.path()),
    )
}

async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("/api/v1{} does not answer {method}", uri.path()),
    )
}
