//! `GET /publish/{app}/{stream}`: the page that publishes the browser's
//! camera and microphone to the stream over WHIP (`POST /whip/{app}/{stream}`,
//! the browser's own `RTCPeerConnection`, H.264 preferred since the ingest
//! takes H.264 and Opus). Like the other pages it is static and open: the
//! WHIP request it makes needs `publish` of the stream.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tidewater::StreamKey;

use super::Console;

const PUBLISH_HTML: &str = include_str!("../../../assets/console/publish.html");

/// What the publish page is told (as JSON inside the page).
#[derive(Debug, Serialize)]
struct PublishConfig {
    app: String,
    stream: String,
    /// Where to send the offer; `null` when `[webrtc]` is off.
    whip: Option<String>,
    /// The stream's player page.
    watch: String,
}

/// `GET /publish/{app}/{stream}`.
pub(super) async fn page(
    State(console): State<Arc<Console>>,
    Path((app, stream)): Path<(String, String)>,
) -> Response {
    let Ok(key) = StreamKey::new(&app, &stream) else {
        return (StatusCode::BAD_REQUEST, "invalid stream name\n").into_response();
    };
    let config = PublishConfig {
        app: key.app().to_string(),
        stream: key.stream().to_string(),
        whip: console.webrtc.then(|| format!("/whip/{key}")),
        watch: format!("/watch/{key}"),
    };
    let html = PUBLISH_HTML.replace("__PUBLISH_CONFIG__", &super::script_json(&config));
    let mut response = super::page(html, "text/html; charset=utf-8", false);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; media-src 'self' blob:; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    response
}
