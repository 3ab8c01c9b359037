//! `GET /api/v1/pulls`: the state of every `[[pull]]` source.
//!
//! ```json
//! {"pulls": [{"path": "cams/door", "url": "rtsp://viewer@192.168.1.20:554/stream1",
//!   "transport": "auto", "connected_transport": "tcp", "on_demand": false,
//!   "state": "live", "since_unix_ms": 1796630400000, "attempts": 0, "connections": 1,
//!   "last_error": null, "last_error_unix_ms": null}]}
//! ```
//!
//! `state` is `idle` (on demand, nobody reading), `connecting`, `live` or
//! `retrying`; `attempts` counts failures in a row. The URL never shows
//! the password. A live pulled stream's object (`GET
//! /api/v1/streams/{app}/{stream}`) has the same as `pull`, protocol
//! `rtsp-pull`, and the source and transport in its `metadata`.

use axum::{Extension, Json};
use serde::Serialize;
use tidewater_rtsp::pull::{PullSnapshot, PullStatuses};

/// The body of `GET /api/v1/pulls`.
#[derive(Debug, Serialize)]
pub struct PullList {
    /// Every pull, in configuration order.
    pub pulls: Vec<PullView>,
}

/// One pull.
#[derive(Debug, Serialize)]
pub struct PullView {
    /// The stream it publishes (`app/stream`).
    pub path: String,
    /// The source, with the user and without the password.
    pub url: String,
    /// `tcp`, `udp` or `auto`, as configured.
    pub transport: String,
    /// The transport of the current or last connection.
    pub connected_transport: Option<String>,
    /// Whether it connects only while read.
    pub on_demand: bool,
    /// `idle`, `connecting`, `live` or `retrying`.
    pub state: &'static str,
    /// Since when it is in that state.
    pub since_unix_ms: u64,
    /// Failed attempts in a row.
    pub attempts: u32,
    /// Connections made since the server started.
    pub connections: u64,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it happened.
    pub last_error_unix_ms: Option<u64>,
}

impl From<PullSnapshot> for PullView {
    fn from(p: PullSnapshot) -> Self {
        PullView {
            path: p.key.to_string(),
            url: p.url,
            transport: p.transport,
            connected_transport: p.connected_transport,
            on_demand: p.on_demand,
            state: p.state.as_str(),
            since_unix_ms: p.since_unix_ms,
            attempts: p.attempts,
            connections: p.connections,
            last_error: p.last_error,
            last_error_unix_ms: p.last_error_unix_ms,
        }
    }
}

/// `GET /api/v1/pulls` (an empty list without `[[pull]]`).
pub(crate) async fn list_pulls(pulls: Option<Extension<PullStatuses>>) -> Json<PullList> {
    let pulls = pulls
        .map(|Extension(p)| p.all())
        .unwrap_or_default()
        .into_iter()
        .map(PullView::from)
        .collect();
    Json(PullList { pulls })
}
