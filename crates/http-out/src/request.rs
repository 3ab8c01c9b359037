//! What a request asks for: who asks, with which query, for which stream,
//! and the kernel's answer mapped onto HTTP statuses.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request as HttpRequest};
use axum::http::StatusCode;
use axum::response::Response;
use tidewater_core::{IngestContext, Request, StreamKey, Subscription};
use tracing::info;

use crate::cors::text;

/// The peer of a request (when the server was started with connect info)
/// and its query string, if any.
pub fn peer_and_query(request: &HttpRequest) -> (Option<SocketAddr>, Option<String>) {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    (peer, request.uri().query().map(str::to_owned))
}

/// How a peer is named in log lines (`?` when unknown).
pub fn who(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "?".to_string(), |p| p.to_string())
}

/// The kernel request of a reader of `key` over `protocol`, with the peer
/// and query the authorizer sees.
pub fn reader_request(
    key: &StreamKey,
    protocol: &'static str,
    peer: Option<SocketAddr>,
    query: Option<&str>,
) -> Request {
    let mut req = Request::new(key.clone(), protocol);
    if let Some(p) = peer {
        req = req.peer(p);
    }
    if let Some(q) = query {
        req = req.query(q);
    }
    req
}

/// The answer to a reader the kernel refused (logged with peer and stream):
/// `403` when the authorizer said no, `404` otherwise (not live).
pub fn refused(
    protocol: &str,
    peer: Option<SocketAddr>,
    key: &StreamKey,
    error: &tidewater_core::Error,
) -> Response {
    info!(peer = %who(peer), stream = %key, "{protocol} request refused: {error}");
    let status = match error {
        tidewater_core::Error::Unauthorized { .. } => StatusCode::FORBIDDEN,
        _ => StatusCode::NOT_FOUND,
    };
    text(status, error.to_string())
}

/// The stream key named by `app` and a stream name (refused with `400` if invalid).
pub fn stream_key(
    protocol: &str,
    peer: Option<SocketAddr>,
    app: &str,
    stream: &str,
) -> Result<StreamKey, Refusal> {
    StreamKey::new(app, stream).map_err(|e| {
        info!(peer = %who(peer), "{protocol} request refused: {e}");
        Box::new(text(StatusCode::BAD_REQUEST, e.to_string()))
    })
}

/// A refusal: the whole answer to send (boxed: a response is large).
pub type Refusal = Box<Response>;

/// A reader admitted by [`subscribe_file`].
#[derive(Debug)]
pub struct Play {
    /// The stream it reads.
    pub key: StreamKey,
    /// Its peer, when known.
    pub peer: Option<SocketAddr>,
    /// Its subscription, starting at the cached GOP.
    pub subscription: Subscription,
}

/// Admits a reader of `GET …/{app}/{stream}{ext}` over `protocol`: the file
/// name must end with `ext` (`404` otherwise), name a valid stream (`400`),
/// and the kernel must let this peer, with this query, read it (`403` when
/// the authorizer refuses, `404` when not live). Refusals and the start are
/// logged with peer and stream.
///
/// Only the peer and query are taken from `request` before the returned
/// future starts (a request body is not `Sync`: a handler's future must not
/// hold a reference to it).
pub fn subscribe_file<'a>(
    ctx: &'a IngestContext,
    protocol: &'static str,
    app: &'a str,
    file: &'a str,
    ext: &'a str,
    request: &HttpRequest,
) -> impl Future<Output = Result<Play, Refusal>> + Send + 'a {
    let (peer, query) = peer_and_query(request);
    async move {
        let Some(stream) = file.strip_suffix(ext) else {
            return Err(Box::new(text(
                StatusCode::NOT_FOUND,
                format!("expected {{app}}/{{stream}}{ext}"),
            )));
        };
        let key = stream_key(protocol, peer, app, stream)?;
        let req = reader_request(&key, protocol, peer, query.as_deref());
        let subscription = ctx
            .subscribe(req)
            .await
            .map_err(|e| Box::new(refused(protocol, peer, &key, &e)))?;
        info!(peer = %who(peer), stream = %key, "{protocol} play started");
        Ok(Play {
            key,
            peer,
            subscription,
        })
    }
}
