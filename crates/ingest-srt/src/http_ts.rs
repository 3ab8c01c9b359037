//! HTTP-TS: `GET /ts/{app}/{stream}.ts` streams the live stream as MPEG-TS
//! with chunked transfer encoding, starting at once from the cached GOP. The
//! bytes are the same shared ones SRT readers get.
//!
//! Each response is fed by its own task (see [`tidewater_http::Feed`]); a
//! client that stops reading for the write timeout has its response ended.
//! A response follows its stream across a republish within the stream's
//! `follow_grace` (see [`TsOutput`] for what the TS shows there).

// This module reads what the network sends (a request's path): no panics on it.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request as HttpRequest, State};
use axum::response::Response;
use bytes::Bytes;
use tidewater_core::{EventRef, Follower, IngestContext, StreamKey};
use tidewater_http::{LiveEncoder, get_with_preflight};

use crate::output::TsOutput;

/// The name of the protocol in the kernel and the log.
const PROTOCOL: &str = "http-ts";

#[derive(Clone)]
struct TsState {
    ctx: IngestContext,
    write_timeout: Duration,
}

/// The HTTP-TS routes (`GET /ts/{app}/{stream}.ts`), relative to where the
/// router is mounted; a client that reads nothing for `write_timeout` is dropped.
pub fn http_ts_router(ctx: IngestContext, write_timeout: Duration) -> Router {
    Router::new()
        .route("/ts/{app}/{file}", get_with_preflight(serve_ts))
        .with_state(TsState { ctx, write_timeout })
}

async fn serve_ts(
    State(state): State<TsState>,
    Path((app, file)): Path<(String, String)>,
    request: HttpRequest,
) -> Response {
    let play =
        match tidewater_http::subscribe_file(&state.ctx, PROTOCOL, &app, &file, ".ts", &request)
            .await
        {
            Ok(p) => p,
            Err(refusal) => return *refusal,
        };
    // Video TS cannot carry (VP8, VP9, AV1 from WHIP): refused with the
    // reason rather than served as sound alone.
    if let Some(why) = state
        .ctx
        .stream(&play.key)
        .and_then(|s| s.catalog)
        .and_then(|c| tidewater_media::codec::ts_uncarried_video(c.catalog().tracks()))
    {
        tracing::warn!(peer = %tidewater_http::who(play.peer), stream = %play.key, "http-ts play refused: {why}");
        return tidewater_http::text(axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE, why);
    }
    let encoder = TsEncoder {
        ts: None,
        key: play.key.clone(),
    };
    let (response, feed) = tidewater_http::live(
        PROTOCOL,
        "video/mp2t",
        play.key,
        play.peer,
        state.write_timeout,
    );
    tokio::spawn(async move {
        feed.run(play.subscription, encoder).await;
    });
    response
}

/// A response's TS: the shared output of the generation it reads.
struct TsEncoder {
    ts: Option<TsOutput>,
    key: StreamKey,
}

impl LiveEncoder for TsEncoder {
    fn generation(&mut self, follower: &Follower) {
        self.ts = Some(match &self.ts {
            Some(ts) => ts.follow(follower),
            None => TsOutput::of(follower, &self.key),
        });
    }

    fn encode(&mut self, event: EventRef<'_>) -> Bytes {
        match (event, &self.ts) {
            (EventRef::Frame(f), Some(ts)) => ts.bytes(&f),
            _ => Bytes::new(),
        }
    }
}
