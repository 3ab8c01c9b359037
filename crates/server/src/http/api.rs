//! The REST API, mounted under `/api/v1`.
//!
//! | request | answer |
//! |---|---|
//! | `GET /api/v1/streams` | `{"streams": [StreamSnapshot, …]}`: every live stream, sorted by key |
//! | `GET /api/v1/streams/{app}/{stream}` | one [`StreamSnapshot`], or 404 when it is not live |
//!
//! A snapshot is the kernel's [`StreamSnapshot`] serialized as is: `key`,
//! `generation`, `protocol`, `peer`, `started_unix_ms`, `metadata`, `catalog`
//! (`version` and `tracks` with codec, timescale and video/audio parameters;
//! `null` until the publisher announces one), `qos` (frames, bytes,
//! keyframes, fps, bitrate, subscriber and lag counters), `subscribers` (each
//! with its own lag and drop counters) and `derived_bytes`.
//!
//! Errors are JSON too, with a stable `code` and a human `message`:
//!
//! ```json
//! {"error": {"code": "not_found", "message": "stream live/cam1 is not being published"}}
//! ```
//!
//! Codes: `not_found` (404: no such live stream, or no such API route) and
//! `invalid_key` (400: the names are not a valid stream key).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tidewater::{Engine, StreamKey, StreamSnapshot};

/// The API's routes, with their state.
pub fn router(engine: Engine) -> Router {
    Router::new()
        .route("/streams", get(list_streams))
        .route("/streams/{app}/{stream}", get(get_stream))
        .fallback(unknown_route)
        .with_state(engine)
}

/// The body of `GET /api/v1/streams`.
#[derive(Debug, Serialize)]
pub struct StreamList {
    /// Every live stream, sorted by key.
    pub streams: Vec<StreamSnapshot>,
}

/// An API error: an HTTP status and a JSON body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
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

async fn list_streams(State(engine): State<Engine>) -> Json<StreamList> {
    Json(StreamList {
        streams: engine.streams(),
    })
}

async fn get_stream(
    State(engine): State<Engine>,
    Path((app, stream)): Path<(String, String)>,
) -> Result<Json<StreamSnapshot>, ApiError> {
    let key = StreamKey::new(&app, &stream)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_key", e.to_string()))?;
    engine.stream(&key).map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("stream {key} is not being published"),
        )
    })
}

async fn unknown_route(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no API route /api/v1{}", uri.path()),
    )
}
