//! What a request asks for: who asks, with which query, for which stream,
//! and the kernel's answer mapped onto HTTP statuses.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request as HttpRequest};
use axum::http::StatusCode;
use axum::response::Response;
use tidewater_core::{Credentials, Follower, IngestContext, Request, StreamKey};
use tracing::info;

use crate::cors::text;

/// The peer of a request (when the server was started with connect info),
/// its query string, if any, and the credentials of its `Authorization`
/// header ([`credentials`](crate::credentials)).
pub fn asker(request: &HttpRequest) -> (Option<SocketAddr>, Option<String>, Credentials) {
    let (peer, query) = peer_and_query(request);
    (peer, query, crate::credentials(request.headers()))
}

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

/// The kernel request of a reader of `key` over `protocol`, with the peer,
/// query and credentials the authorizer sees.
pub fn reader_request(
    key: &StreamKey,
    protocol: &'static str,
    peer: Option<SocketAddr>,
    query: Option<&str>,
    credentials: Credentials,
) -> Request {
    let mut req = Request::new(key.clone(), protocol).credentials(credentials);
    if let Some(p) = peer {
        req = req.peer(p);
    }
    if let Some(q) = query {
        req = req.query(q);
    }
    req
}

/// The answer to a reader the kernel refused (logged with peer and stream):
/// the authorizer's refusal as [`refusal_response`](crate::refusal_response)
/// makes it (`401` with challenges in `realm`, `403`, `429`, `503`), `503`
/// when the stream has all the readers its application allows, `404`
/// otherwise (not live).
pub fn refused(
    protocol: &str,
    peer: Option<SocketAddr>,
    key: &StreamKey,
    error: &tidewater_core::Error,
    realm: &str,
) -> Response {
    info!(peer = %who(peer), stream = %key, "{protocol} request refused: {error}");
    match error {
        tidewater_core::Error::Unauthorized { refusal, .. } => {
            crate::refusal_response(refusal, realm)
        }
        tidewater_core::Error::ReaderLimit { .. } => {
            text(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
        }
        _ => text(StatusCode::NOT_FOUND, error.to_string()),
    }
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
    /// Its subscription, starting at the cached GOP and following the
    /// stream across republishes.
    pub subscription: Follower,
}

/// Admits a reader of `GET …/{app}/{stream}{ext}` over `protocol`: the file
/// name must end with `ext` (`404` otherwise), name a valid stream (`400`),
/// and the kernel must let this peer, with this query and these credentials
/// (`Authorization: Basic`/`Bearer`, `?token=`), read it (see [`refused`]
/// for the answers when not), `404` when not live. Refusals and the start are
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
    subscribe_file_starting(ctx, protocol, app, file, ext, request, 0)
}

/// [`subscribe_file`] for a reader that asks to start with at least
/// `start_video_frames` video frames (see
/// [`Request::start_video_frames`](tidewater_core::Request::start_video_frames)).
pub fn subscribe_file_starting<'a>(
    ctx: &'a IngestContext,
    protocol: &'static str,
    app: &'a str,
    file: &'a str,
    ext: &'a str,
    request: &HttpRequest,
    start_video_frames: usize,
) -> impl Future<Output = Result<Play, Refusal>> + Send + 'a {
    let (peer, query, credentials) = asker(request);
    async move {
        let Some(stream) = file.strip_suffix(ext) else {
            return Err(Box::new(text(
                StatusCode::NOT_FOUND,
                format!("expected {{app}}/{{stream}}{ext}"),
            )));
        };
        let key = stream_key(protocol, peer, app, stream)?;
        let req = reader_request(&key, protocol, peer, query.as_deref(), credentials)
            .start_video_frames(start_video_frames);
        let subscription = ctx
            .follow_live(req)
            .await
            .map_err(|e| Box::new(refused(protocol, peer, &key, &e, &ctx.realm())))?;
        info!(peer = %who(peer), stream = %key, "{protocol} play started");
        Ok(Play {
            key,
            peer,
            subscription,
        })
    }
}
