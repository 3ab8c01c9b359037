//! HTTP-TS: `GET /ts/{app}/{stream}.ts` streams the live stream as MPEG-TS
//! with chunked transfer encoding, starting at once from the cached GOP. The
//! bytes are the same shared ones SRT readers get.
//!
//! Each response is fed by its own task (see [`tidewater_http::Feed`]); a
//! client that stops reading for the write timeout has its response ended.

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request as HttpRequest, State};
use axum::response::Response;
use bytes::Bytes;
use tidewater_core::{EventRef, IngestContext};
use tidewater_http::get_with_preflight;

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
    let ts = TsOutput::of(&play.subscription, &play.key);
    let (response, feed) = tidewater_http::live(
        PROTOCOL,
        "video/mp2t",
        play.key,
        play.peer,
        state.write_timeout,
    );
    tokio::spawn(async move {
        feed.run(play.subscription, |event| match event {
            EventRef::Frame(f) => ts.bytes(&f),
            _ => Bytes::new(),
        })
        .await;
    });
    response
}
