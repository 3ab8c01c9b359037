//! HTTP output plumbing shared by the tidewater protocol and packager
//! crates (HTTP-FLV, HTTP-TS, HLS, DASH), so that every HTTP route answers
//! the same way:
//!
//! - [`preflight`], [`get_with_preflight`], [`set_headers`], [`reply`],
//!   [`text`]: one cross-origin policy (any origin; `GET`, `HEAD`, `OPTIONS`), `Content-Type` and
//!   `Cache-Control` on every answer, plain-text errors;
//! - [`asker`], [`credentials`], [`reader_request`], [`refused`],
//!   [`refusal_response`]: who asks and with which credentials (`Basic`,
//!   `Bearer`, `?token=`), the kernel request the authorizer sees, and its
//!   refusals as `401` (with `WWW-Authenticate`), `403`, `429`, `503` or
//!   `404`;
//! - [`subscribe_file`]: the whole admission of a reader of
//!   `…/{app}/{stream}.{ext}`, logged with peer and stream;
//! - [`live`] and [`Feed`]: a chunked live response fed by a task through a
//!   bounded channel, following the stream across republishes (a
//!   [`LiveEncoder`] is told of each generation), ended when the stream
//!   really ends or the client stops reading for a while;
//!   [`chunks_body`] for a body whose chunks are known up front.
//!
//! It has no errors of its own: every refusal is already an HTTP response.
//!
//! # A shared seam crate
//!
//! `tidewater-http` is a shared seam crate, like `tidewater-media`: the HTTP
//! output plumbing every protocol crate that serves HTTP uses (CORS, peer and
//! query extraction, the admission of `{stream}.{ext}` requests, the chunked
//! live body). Protocol crates (`ingest-*`, `pkg-*`, and the recorder and
//! cluster crates to come) may depend on it, on `tidewater-media` and on
//! `tidewater-core`, but never on one another; `cargo xtask tidy` checks
//! that.
//!
//! # Example
//!
//! A live route serving each frame's payload as is:
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use axum::Router;
//! use axum::extract::{Path, Request, State};
//! use axum::response::Response;
//! use tidewater_core::{EventRef, IngestContext};
//!
//! async fn serve(
//!     State(ctx): State<IngestContext>,
//!     Path((app, file)): Path<(String, String)>,
//!     request: Request,
//! ) -> Response {
//!     let play = match tidewater_http::subscribe_file(&ctx, "raw", &app, &file, ".raw", &request).await {
//!         Ok(p) => p,
//!         Err(refusal) => return *refusal,
//!     };
//!     let (response, feed) = tidewater_http::live(
//!         "raw",
//!         "application/octet-stream",
//!         play.key,
//!         play.peer,
//!         Duration::from_secs(10),
//!     );
//!     tokio::spawn(feed.run(play.subscription, |event: EventRef<'_>| match event {
//!         EventRef::Frame(f) => f.payload.clone(),
//!         _ => Default::default(),
//!     }));
//!     response
//! }
//!
//! fn router(ctx: IngestContext) -> Router {
//!     Router::new()
//!         .route("/raw/{app}/{file}", tidewater_http::get_with_preflight(serve))
//!         .with_state(ctx)
//! }
//! ```
//!
//! # Feature flags
//!
//! None.

#![deny(missing_docs)]
// Modules here read network or file input: no indexing, unwrap, expect or
// panic outside tests (RELIABILITY.md, "Lints").
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::expect_used,
        clippy::unwrap_used,
        clippy::panic
    )
)]

mod auth;
mod cors;
mod live;
mod request;

pub use auth::{credentials, refusal_response, refusal_status, refuse};
pub use cors::{get_with_preflight, preflight, reply, set_headers, text};
pub use live::{CHANNEL_DEPTH, Ending, Feed, LiveEncoder, channel_body, chunks_body, live};
pub use request::{
    Play, Refusal, asker, peer_and_query, reader_request, refused, stream_key, subscribe_file,
    subscribe_file_starting, who,
};
