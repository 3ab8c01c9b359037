//! HTTP-TS: `GET /ts/{app}/{stream}.ts` streams the live stream as MPEG-TS
//! with chunked transfer encoding, starting at once from the cached GOP. The
//! bytes are the same shared ones SRT readers get.
//!
//! Each response is fed by its own task through a small bounded channel; a
//! client that stops reading for the write timeout has its response ended.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request as HttpRequest, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use tidewater_core::{EventRef, IngestContext, RecvError, Request, StreamKey, Subscription};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::output::{self, TsOutput};

/// Responses queued between the feeding task and the response body.
const CHANNEL_DEPTH: usize = 64;

#[derive(Clone)]
struct TsState {
    ctx: IngestContext,
    write_timeout: Duration,
}

/// The HTTP-TS routes (`GET /ts/{app}/{stream}.ts`), relative to where the
/// router is mounted; a client that reads nothing for `write_timeout` is dropped.
pub fn http_ts_router(ctx: IngestContext, write_timeout: Duration) -> Router {
    Router::new()
        .route("/ts/{app}/{file}", get(serve_ts))
        .with_state(TsState { ctx, write_timeout })
}

async fn serve_ts(
    State(state): State<TsState>,
    Path((app, file)): Path<(String, String)>,
    request: HttpRequest,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let who = peer.map_or_else(|| "?".to_string(), |p| p.to_string());
    let Some(stream) = file.strip_suffix(".ts") else {
        return (StatusCode::NOT_FOUND, "expected /ts/{app}/{stream}.ts\n").into_response();
    };
    let key = match StreamKey::new(&app, stream) {
        Ok(k) => k,
        Err(e) => {
            info!(peer = %who, "http-ts request refused: {e}");
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    };
    let mut req = Request::new(key.clone(), "http-ts");
    if let Some(p) = peer {
        req = req.peer(p);
    }
    if let Some(q) = request.uri().query() {
        req = req.query(q);
    }
    let sub = match state.ctx.subscribe(req).await {
        Ok(s) => s,
        Err(e) => {
            info!(peer = %who, stream = %key, "http-ts request refused: {e}");
            let status = match e {
                tidewater_core::Error::Unauthorized { .. } => StatusCode::FORBIDDEN,
                _ => StatusCode::NOT_FOUND,
            };
            return (status, format!("{e}\n")).into_response();
        }
    };
    info!(peer = %who, stream = %key, "http-ts play started");
    let ts = TsOutput::of(&state.ctx, &key, sub.generation());
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    tokio::spawn(feed(sub, ts, tx, state.write_timeout, key, who));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "video/mp2t")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(ReceiverStream(rx)))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

struct ReceiverStream(mpsc::Receiver<Bytes>);

impl futures_core::Stream for ReceiverStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|b| b.map(Ok))
    }
}

async fn feed(
    mut sub: Subscription,
    ts: TsOutput,
    tx: mpsc::Sender<Bytes>,
    timeout: Duration,
    key: StreamKey,
    who: String,
) {
    let generation = sub.generation();
    loop {
        let bytes = match sub.recv_ref().await {
            Ok(EventRef::Catalog(_)) => continue,
            Ok(EventRef::Skipped { frames }) => {
                debug!(peer = %who, stream = %key, "http-ts fell behind, skipped {frames} frames");
                continue;
            }
            Ok(EventRef::Frame(f)) => ts.bytes(&f),
            Err(RecvError::Ended(reason)) => {
                info!(peer = %who, stream = %key, "http-ts: stream ended ({reason})");
                output::forget(&key, generation);
                return;
            }
            Err(RecvError::Evicted) => {
                warn!(peer = %who, stream = %key, "http-ts: evicted for falling behind repeatedly");
                return;
            }
        };
        if bytes.is_empty() {
            continue;
        }
        match tokio::time::timeout(timeout, tx.send(bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                info!(peer = %who, stream = %key, "http-ts: client went away");
                return;
            }
            Err(_) => {
                warn!(peer = %who, stream = %key, "http-ts: client stopped reading for {timeout:?}; ending the response");
                return;
            }
        }
    }
}
