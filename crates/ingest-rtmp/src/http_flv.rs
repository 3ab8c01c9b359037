//! HTTP-FLV: `GET /flv/{app}/{stream}.flv` streams the live stream as an FLV
//! file with chunked transfer encoding, starting at once from the cached GOP.
//!
//! A response follows its stream: when the publisher comes back within the
//! stream's `follow_grace` (a reconnecting encoder, a take-over) it goes on
//! with the new `onMetaData` and sequence headers, and timestamps that keep
//! rising; it ends when the stream really ends.
//!
//! Each response is fed by its own task (see [`tidewater_http::Feed`]) that
//! receives from the kernel with
//! [`Follower::recv_ref`](tidewater_core::Follower::recv_ref) and
//! hands the shared tag bytes to the response body through a small bounded
//! channel. A client that stops reading for the write timeout has its
//! response ended; one that is merely slow is skipped to the next keyframe.
//! The feed counts every chunk handed to the body as sent on the reader's
//! session, and a reader an operator kicks ends at its next receive.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request as HttpRequest, State};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use tidewater_core::{Catalog, EventRef, Follower, IngestContext};
use tidewater_http::{LiveEncoder, get_with_preflight};

use crate::egress::{self, AacFromOpus, Conversions, GenerationShift, Timeline};
use crate::flv;

/// Settings of the HTTP-FLV routes.
#[derive(Clone, Debug)]
pub struct HttpFlvConfig {
    /// How long a response may stay unread before it is ended.
    pub write_timeout: Duration,
}

impl Default for HttpFlvConfig {
    fn default() -> Self {
        HttpFlvConfig {
            write_timeout: crate::config::DEFAULT_WRITE_TIMEOUT,
        }
    }
}

#[derive(Clone)]
struct FlvState {
    ctx: IngestContext,
    config: Arc<HttpFlvConfig>,
}

/// The HTTP-FLV routes (`GET /flv/{app}/{stream}.flv`), relative to where the
/// router is mounted, with default settings.
pub fn http_flv_router(ctx: IngestContext) -> Router {
    http_flv_router_with(ctx, HttpFlvConfig::default())
}

/// [`http_flv_router`] with explicit settings.
pub fn http_flv_router_with(ctx: IngestContext, config: HttpFlvConfig) -> Router {
    Router::new()
        .route("/flv/{app}/{file}", get_with_preflight(serve_flv))
        .with_state(FlvState {
            ctx,
            config: Arc::new(config),
        })
}

/// The name of the protocol in the kernel and the log.
const PROTOCOL: &str = "http-flv";

async fn serve_flv(
    State(state): State<FlvState>,
    Path((app, file)): Path<(String, String)>,
    request: HttpRequest,
) -> Response {
    let play = match tidewater_http::subscribe_file_starting(
        &state.ctx,
        PROTOCOL,
        &app,
        &file,
        ".flv",
        &request,
        flv::START_VIDEO_FRAMES,
    )
    .await
    {
        Ok(p) => p,
        Err(refusal) => return *refusal,
    };
    // Video FLV cannot carry (VP8 from a WHIP publish): refused with the
    // reason rather than served as sound alone.
    if let Some(why) = state
        .ctx
        .stream(&play.key)
        .and_then(|s| s.catalog)
        .and_then(|c| flv::uncarried_video(c.catalog().tracks()))
    {
        tracing::warn!(peer = %tidewater_http::who(play.peer), stream = %play.key, "http-flv play refused: {why}");
        return tidewater_http::text(axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE, why);
    }
    let encoder = FlvEncoder {
        stream: play.key.to_string(),
        ..FlvEncoder::default()
    };
    let (response, feed) = tidewater_http::live(
        PROTOCOL,
        "video/x-flv",
        play.key,
        play.peer,
        state.config.write_timeout,
    );
    tokio::spawn(feed.run(play.subscription, encoder));
    response
}

/// What a response sends for each event: the file header and the catalog's
/// tags before the first frame, the catalog's tags again before the first
/// frame after a catalog change or a republish, and each carried frame's
/// shared tag. After a republish the timestamps go on from the last one
/// sent, shifted as the RTMP players of the generation are (see
/// [`GenerationShift`]).
#[derive(Default)]
struct FlvEncoder {
    header_sent: bool,
    pending: Option<Arc<Catalog>>,
    timeline: Timeline,
    /// The stream, for the log.
    stream: String,
    /// An Opus stream's audio as AAC (see [`AacFromOpus`]).
    aac: AacFromOpus,
}

impl LiveEncoder for FlvEncoder {
    fn generation(&mut self, follower: &Follower) {
        // A separate cell from the RTMP players': FLV tags and RTMP chunks
        // are built apart, and the two may have read different ends.
        if let Some(shift) = follower.generation_state::<FlvShift>() {
            self.timeline.next_generation(Arc::clone(&shift.0));
        }
        if let Some(running) = follower.generation_state::<Conversions>() {
            self.aac.generation(running, &self.stream);
        }
    }

    fn encode(&mut self, event: EventRef<'_>) -> Bytes {
        match event {
            EventRef::Catalog(c) => {
                self.pending = Some(c);
                Bytes::new()
            }
            EventRef::Frame(f) => {
                if !flv::is_carried(&f, f.catalog()) {
                    return Bytes::new();
                }
                let converted = self.aac.converts(&f, f.catalog()).then(|| {
                    let mut frames = Vec::new();
                    self.aac.frames(f, &mut frames);
                    frames
                });
                if converted.as_ref().is_some_and(Vec::is_empty) {
                    return Bytes::new();
                }
                let shift = self.timeline.shift_for(flv::frame_time(&f, f.catalog()).0);
                let tag = match &converted {
                    // The tags of the conversion's packets, shared as the
                    // packets are.
                    Some(frames) => egress::shared_aac_tags(&f, frames, shift),
                    None => egress::shared_tag(&f, shift),
                };
                match self.pending.take() {
                    None => tag,
                    Some(c) => {
                        let (ts, _) = flv::frame_time(&f, &c);
                        let mut b = BytesMut::new();
                        if !self.header_sent {
                            self.header_sent = true;
                            b.extend_from_slice(&egress::file_header(&c));
                        }
                        b.extend_from_slice(&egress::catalog_tags_with(
                            &c,
                            self.aac.replaced_audio(&c).as_ref(),
                            ts.wrapping_add(shift),
                        ));
                        b.extend_from_slice(&tag);
                        b.freeze()
                    }
                }
            }
            EventRef::Skipped { .. } | EventRef::Discontinuity { .. } => Bytes::new(),
        }
    }
}

/// The timestamp shift of a generation's HTTP-FLV readers.
#[derive(Default)]
struct FlvShift(Arc<GenerationShift>);
