//! HTTP-FLV: `GET /flv/{app}/{stream}.flv` streams the live stream as an FLV
//! file with chunked transfer encoding, starting at once from the cached GOP.
//!
//! Each response is fed by its own task that receives from the kernel with
//! [`Subscription::recv_ref`](tidewater_core::Subscription::recv_ref) and
//! hands the shared tag bytes to the response body through a small bounded
//! channel. A client that stops reading fills the channel; after the write
//! timeout the task gives up and the response ends, so a stalled client holds
//! no kernel memory for long. A client that is merely slow makes the task fall
//! behind, and the kernel skips it to the next keyframe.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request as HttpRequest, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::{Bytes, BytesMut};
use tidewater_core::{
    Catalog, EventRef, IngestContext, RecvError, Request, StreamKey, Subscription,
};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::egress;
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
            write_timeout: crate::DEFAULT_WRITE_TIMEOUT,
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
        .route("/flv/{app}/{file}", get(serve_flv))
        .with_state(FlvState {
            ctx,
            config: Arc::new(config),
        })
}

/// Messages queued between the feeding task and the response body.
const CHANNEL_DEPTH: usize = 64;

async fn serve_flv(
    State(state): State<FlvState>,
    Path((app, file)): Path<(String, String)>,
    request: HttpRequest,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let who = peer.map_or_else(|| "?".to_string(), |p| p.to_string());
    let Some(stream) = file.strip_suffix(".flv") else {
        return (StatusCode::NOT_FOUND, "expected /flv/{app}/{stream}.flv\n").into_response();
    };
    let key = match StreamKey::new(&app, stream) {
        Ok(k) => k,
        Err(e) => {
            info!(peer = %who, "http-flv request refused: {e}");
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    };
    let mut req = Request::new(key.clone(), "http-flv");
    if let Some(p) = peer {
        req = req.peer(p);
    }
    if let Some(q) = request.uri().query() {
        req = req.query(q);
    }
    let sub = match state.ctx.subscribe(req).await {
        Ok(s) => s,
        Err(e) => {
            info!(peer = %who, stream = %key, "http-flv request refused: {e}");
            let status = match e {
                tidewater_core::Error::Unauthorized { .. } => StatusCode::FORBIDDEN,
                _ => StatusCode::NOT_FOUND,
            };
            return (status, format!("{e}\n")).into_response();
        }
    };
    info!(peer = %who, stream = %key, "http-flv play started");
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let timeout = state.config.write_timeout;
    tokio::spawn(feed(sub, tx, timeout, format!("peer {who} stream {key}")));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "video/x-flv")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(ReceiverStream(rx)))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The response body: what the feeding task sends.
struct ReceiverStream(mpsc::Receiver<Bytes>);

impl futures_core::Stream for ReceiverStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|b| b.map(Ok))
    }
}

/// Receives from the kernel and sends FLV bytes until the publish ends, the
/// client goes away, or the client stops reading for `timeout`.
async fn feed(mut sub: Subscription, tx: mpsc::Sender<Bytes>, timeout: Duration, who: String) {
    let mut header_sent = false;
    let mut pending: Option<Arc<Catalog>> = None;
    loop {
        let bytes = {
            let ev = sub.recv_ref().await;
            match ev {
                Ok(EventRef::Catalog(c)) => {
                    pending = Some(c);
                    continue;
                }
                Ok(EventRef::Skipped { frames }) => {
                    debug!("http-flv {who}: fell behind, skipped {frames} frames");
                    continue;
                }
                Ok(EventRef::Frame(f)) => {
                    if !flv::is_carried(&f, f.catalog()) {
                        continue;
                    }
                    let tag = egress::shared_tag(&f);
                    match pending.take() {
                        None => tag,
                        Some(c) => {
                            let (ts, _) = flv::frame_time(&f, &c);
                            let mut b = BytesMut::new();
                            if !header_sent {
                                header_sent = true;
                                b.extend_from_slice(&egress::file_header(&c));
                            }
                            b.extend_from_slice(&egress::catalog_tags(&c, ts));
                            b.extend_from_slice(&tag);
                            b.freeze()
                        }
                    }
                }
                Err(RecvError::Ended(reason)) => {
                    info!("http-flv {who}: stream ended ({reason})");
                    return;
                }
                Err(RecvError::Evicted) => {
                    warn!("http-flv {who}: evicted for falling behind repeatedly");
                    return;
                }
            }
        };
        if bytes.is_empty() {
            continue;
        }
        match tokio::time::timeout(timeout, tx.send(bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                info!("http-flv {who}: client went away");
                return;
            }
            Err(_) => {
                warn!(
                    "http-flv {who}: client stopped reading for {timeout:?}; ending the response"
                );
                return;
            }
        }
    }
}
