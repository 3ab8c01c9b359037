//! Sessions in the API: every publisher and reader, across protocols.
//!
//! `GET /api/v1/sessions` answers `{"sessions": [Session, …]}`, sorted by id:
//!
//! ```json
//! {"sessions": [
//!   {"id": 1, "kind": "publisher", "protocol": "rtmp", "peer": "192.0.2.7:50412", "path": "live/cam1",
//!    "generation": 1, "user": "alice", "started_unix_ms": 1790000000000, "bytes_in": 18000000,
//!    "bytes_out": 0, "frames": 9000, "lag_us": 0, "lag_events": 0, "skipped_frames": 0, "join_time_us": 0},
//!   {"id": 4, "kind": "reader", "protocol": "http-flv", "peer": "198.51.100.3:61001", "path": "live/cam1",
//!    "generation": 1, "user": null, "started_unix_ms": 1790000012000, "bytes_in": 0,
//!    "bytes_out": 2400000, "frames": 1280, "lag_us": 1500, "lag_events": 0, "skipped_frames": 0,
//!    "join_time_us": 850}
//! ]}
//! ```
//!
//! `id` is unique within the server (publishers and readers share the
//! numbering); `kind` is `publisher` or `reader`; `peer` is `null` where the
//! protocol has none (a packager following the stream); `user` is the
//! authenticated user, `null` for anonymous ones; `bytes_in` counts payload
//! bytes a publisher sent, `bytes_out` bytes written to a reader (as its
//! protocol reports them); `frames` are published or delivered frames (a
//! reader's figure is refreshed every 256 frames); `lag_us` (how far behind
//! live at the last check), `lag_events` (times it fell behind and skipped to
//! a keyframe), `skipped_frames` and `join_time_us` (subscribe to first frame)
//! are readers' figures.
//!
//! `DELETE /api/v1/sessions/{id}` ends a session: `204 No Content`, or `404`
//! (`not_found`) when no live session has that id (and `400` (`invalid_id`)
//! when it is not a number). A kicked reader's connection ends at once, the
//! stream goes on; a kicked publisher's stream ends, and its readers see the
//! end as when a publisher leaves (packagers wait for a republish within
//! their grace period).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use tidewater::SessionSnapshot;

use super::api::{ApiError, ApiState};

/// The body of `GET /api/v1/sessions`.
#[derive(Debug, Serialize)]
pub struct SessionList {
    /// Every publisher and reader of the live streams, sorted by id.
    pub sessions: Vec<SessionSnapshot>,
}

/// `GET /api/v1/sessions`.
pub(crate) async fn list_sessions(State(state): State<ApiState>) -> Json<SessionList> {
    Json(SessionList {
        sessions: state.engine.sessions(),
    })
}

/// `DELETE /api/v1/sessions/{id}`.
pub(crate) async fn kick_session(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let Ok(number) = id.parse::<u64>() else {
        let shown: String = id.chars().take(32).collect();
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_id",
            format!("session id {shown:?} is not a number"),
        ));
    };
    if state.engine.kick(number) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no live session has id {number}"),
        ))
    }
}
