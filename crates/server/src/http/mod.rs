//! The HTTP listener's routes.
//!
//! One port serves everything HTTP. Today that is:
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | `200 ok` while the server runs |
//! | `GET /flv/{app}/{stream}.flv` | HTTP-FLV: the live stream from its cached GOP on |
//! | `GET /ts/{app}/{stream}.ts` | HTTP-TS (`[srt]`, mounted by the server): the same MPEG-TS SRT readers get, see [`tidewater::srt`] |
//! | `GET /dash/{app}/{stream}/manifest.mpd`, `/dash/time` | DASH (`[dash]`, mounted by the server): see [`tidewater::dash`] |
//! | `GET /hls/{app}/{stream}/index.m3u8`, `/llhls/{app}/{stream}/index.m3u8` (and `master.m3u8`, segments, parts) | HLS and LL-HLS (`[hls]`, mounted by the server): see [`tidewater::hls`] |
//! | `GET /playback/{app}/{stream}/list`, `index.m3u8`, `get`, `files/…`; `GET /playback/{app}/{stream}.mp4` | playback of recordings (`[record]`, mounted by the server): see [`playback`]; guarded (action `playback`) |
//! | `/api/v1/…` | the REST API ([`api`]): streams, [`sessions`], configuration reloads, the [`openapi`] document; guarded (action `api`) |
//! | `GET /api/v1/pulls` | the state of every `[[pull]]` source ([`pulls`]); guarded (action `api`) |
//! | `GET /metrics` | Prometheus metrics ([`metrics`]); guarded (action `metrics`) |
//! | `GET /`, `GET /watch/{app}/{stream}`, `/console/…` | the web console and player pages (`[web]`, mounted by the server): see [`console`] |
//!
//! Protocol and packager crates that serve HTTP expose an `axum::Router`;
//! [`router`] nests each under its prefix as it lands: `/hls/`, `/llhls/`,
//! `/dash/`, `/flv/`, `/ts/`, `/whip/`, `/whep/`. Until then those paths
//! answer 404 like any unknown path. The API and metrics routers
//! ([`api::router_with`], [`metrics::router`]) are plain routers; [`guard`]
//! layers the authorizer's check on each.
//!
//! The server serves these routes on its HTTP listener and, with `[https]`,
//! on its HTTPS listener, with the limits of `[http]` (header read timeout,
//! most open connections): see [`crate::config::HttpConfig`].

pub mod api;
#[cfg(test)]
mod api_tests;
pub mod console;
pub mod cors;
pub mod guard;
pub mod metrics;
pub mod openapi;
pub mod playback;
pub mod pulls;
pub(crate) mod serve;
pub mod sessions;
#[cfg(test)]
mod test_client;

use axum::Router;
use axum::routing::get;
use tidewater::rtmp::PushStatuses;
use tidewater::{Action, Engine};

use crate::reload::Reloader;

pub use serve::Listener;

/// Every HTTP route of the server, over `engine`, without pushes.
pub fn router(engine: Engine) -> Router {
    router_with(engine, PushStatuses::default(), None)
}

/// Every HTTP route of the server, over `engine`, with the status of its pushes.
pub fn router_with_pushes(engine: Engine, pushes: PushStatuses) -> Router {
    router_with(engine, pushes, None)
}

/// Every HTTP route of the server, over `engine`, with the status of its
/// pushes and what reloads its configuration (without one,
/// `POST /api/v1/config/reload` answers `409`). The API is guarded with
/// action `api`, `/metrics` with action `metrics` ([`guard`]); `/healthz`
/// is open. `/metrics` counts the decisions of the reloader's authorizer.
pub fn router_with(engine: Engine, pushes: PushStatuses, reloader: Option<Reloader>) -> Router {
    let auth = reloader.as_ref().map(|r| r.authorization().clone());
    let api = Router::new().nest(
        "/api/v1",
        api::router_with(engine.clone(), pushes, reloader),
    );
    Router::new()
        .route("/healthz", get(healthz))
        .merge(tidewater::rtmp::http_flv_router(engine.context()))
        .merge(guard::guard(
            metrics::router_with_authorization(engine.clone(), auth),
            engine.clone(),
            Action::Metrics,
        ))
        .merge(guard::guard(api, engine, Action::Api))
}

/// `GET /healthz`: the process is up and serving HTTP.
async fn healthz() -> &'static str {
    "ok\n"
}
