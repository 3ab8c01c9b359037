//! Sessions in the API: every publisher and reader, across protocols.
//!
//! `GET /api/v1/sessions` answers `{"sessions": [Session, …]}`, sorted by id:
//!
//! ```json
//! {"sessions": [
//!   {"id": 1, "kind": "publisher", "protocol": "rtmp", "peer": "192.0.2.7:50412", "path": "live/cam1",
//!    "generation": 1, "user": "alice", "started_unix_ms": 1790000000000, "bytes_in": 18000000,
//!    "bytes_out": 0, "frames": 9000, "lag_us": 0, "lag_events": 0, "skipped_frames": 0, "join_time_us": 0,
//!    "webrtc": null},
//!   {"id": 4, "kind": "reader", "protocol": "http-flv", "peer": "198.51.100.3:61001", "path": "live/cam1",
//!    "generation": 1, "user": null, "started_unix_ms": 1790000012000, "bytes_in": 0,
//!    "bytes_out": 2400000, "frames": 1280, "lag_us": 1500, "lag_events": 0, "skipped_frames": 0,
//!    "join_time_us": 850, "webrtc": null},
//!   {"id": 5, "kind": "reader", "protocol": "whep", "peer": "198.51.100.9:55536", "path": "live/cam1",
//!    "generation": 1, "user": null, "started_unix_ms": 1790000013000, "bytes_in": 0,
//!    "bytes_out": 0, "frames": 256, "lag_us": 900, "lag_events": 0, "skipped_frames": 0,
//!    "join_time_us": 700,
//!    "webrtc": {"session": "d2dcedb9dd808d59652443d565b8a0fe", "twcc_loss": null, "twcc_rtt_ms": null,
//!      "remb_bps": 828220, "rr_loss": 0.0, "rr_rtt_ms": 2.4, "ingress_loss": null,
//!      "nacks": 0, "plis": 0, "firs": 0}}
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
//! are readers' figures. A WHIP or WHEP session also has `webrtc`: what
//! its peer's RTCP feedback says of the link, refreshed every second
//! (`session`: its WHIP/WHEP id; `twcc_loss` and `twcc_rtt_ms` from
//! transport-wide congestion control feedback, `remb_bps` the receiver's
//! estimate, `rr_loss` and `rr_rtt_ms` from receiver reports,
//! `ingress_loss`, `nacks`, `plis`, `firs`; `null` until reported); `null`
//! for other protocols.
//!
//! `DELETE /api/v1/sessions/{id}` ends a session: `204 No Content`, or `404`
//! (`not_found`) when no live session has that id (and `400` (`invalid_id`)
//! when it is not a number). A kicked reader's connection ends at once, the
//! stream goes on; a kicked publisher's stream ends, and its readers see the
//! end as when a publisher leaves (packagers wait for a republish within
//! their grace period).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Serialize;
use tidewater::SessionSnapshot;
use tidewater::whip::{Whip, qos::LinkQos};

use super::api::{ApiError, ApiState};

/// The body of `GET /api/v1/sessions`.
#[derive(Debug, Serialize)]
pub struct SessionList {
    /// Every publisher and reader of the live streams, sorted by id.
    pub sessions: Vec<Session>,
}

/// One session: the kernel's figures, and a WebRTC session's link.
#[derive(Debug, Serialize)]
pub struct Session {
    /// What every protocol's session has.
    #[serde(flatten)]
    pub session: SessionSnapshot,
    /// A WHIP or WHEP session's link, from its peer's feedback (`null` for
    /// other protocols).
    pub webrtc: Option<WebrtcLink>,
}

/// What a WebRTC peer's feedback says of its link (`tidewater_whip::qos`),
/// refreshed every second.
#[derive(Debug, Serialize)]
pub struct WebrtcLink {
    /// The WHIP/WHEP session id (the last part of its `Location`).
    pub session: String,
    /// Loss of what the server sent in the last second, from TWCC feedback (0–1).
    pub twcc_loss: Option<f32>,
    /// Round trip from TWCC feedback, ms.
    pub twcc_rtt_ms: Option<f64>,
    /// The receiver's last REMB, bit/s.
    pub remb_bps: Option<u64>,
    /// Loss of the video sent, from the receiver reports (0–1).
    pub rr_loss: Option<f32>,
    /// Round trip from the receiver reports, ms.
    pub rr_rtt_ms: Option<f64>,
    /// Loss of what a publisher sent, from the server's own TWCC register (0–1).
    pub ingress_loss: Option<f32>,
    /// NACKs the peer sent.
    pub nacks: u64,
    /// PLIs the peer sent.
    pub plis: u64,
    /// FIRs the peer sent.
    pub firs: u64,
}

impl From<&LinkQos> for WebrtcLink {
    fn from(q: &LinkQos) -> Self {
        WebrtcLink {
            session: q.session.clone(),
            twcc_loss: q.twcc_loss,
            twcc_rtt_ms: q.twcc_rtt_ms,
            remb_bps: q.remb_bps,
            rr_loss: q.rr_loss,
            rr_rtt_ms: q.rr_rtt_ms,
            ingress_loss: q.ingress_loss,
            nacks: q.nacks,
            plis: q.plis,
            firs: q.firs,
        }
    }
}

/// The WebRTC service, when `[webrtc]` is on (a request extension): its
/// sessions' links join their entries in the list.
#[derive(Clone, Debug)]
pub struct WebrtcLinks(pub Whip);

/// `GET /api/v1/sessions`.
pub(crate) async fn list_sessions(
    State(state): State<ApiState>,
    links: Option<Extension<WebrtcLinks>>,
) -> Json<SessionList> {
    let links = links.map(|Extension(l)| l.0.qos()).unwrap_or_default();
    let sessions = state
        .engine
        .sessions()
        .into_iter()
        .map(|session| {
            let webrtc = links
                .iter()
                .find(|l| l.kernel_session == Some(session.id))
                .map(WebrtcLink::from);
            Session { session, webrtc }
        })
        .collect();
    Json(SessionList { sessions })
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
