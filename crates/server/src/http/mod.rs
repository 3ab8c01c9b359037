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
//! | `/api/v1/…` | the REST API ([`api`]): streams, [`sessions`], the [`openapi`] document |
//! | `GET /metrics` | Prometheus metrics ([`metrics`]) |
//!
//! Protocol and packager crates that serve HTTP expose an `axum::Router`;
//! [`router`] nests each under its prefix as it lands: `/hls/`, `/llhls/`,
//! `/dash/`, `/flv/`, `/ts/`, `/whip/`, `/whep/`. Until then those paths
//! answer 404 like any unknown path. The API and metrics routers
//! ([`api::router_with_pushes`], [`metrics::router`]) are plain routers, so
//! what guards them can be layered on each.

pub mod api;
#[cfg(test)]
mod api_tests;
pub mod metrics;
pub mod openapi;
pub mod sessions;
#[cfg(test)]
mod test_client;

use axum::Router;
use axum::routing::get;
use tidewater::Engine;
use tidewater::rtmp::PushStatuses;

/// Every HTTP route of the server, over `engine`, without pushes.
pub fn router(engine: Engine) -> Router {
    router_with_pushes(engine, PushStatuses::default())
}

/// Every HTTP route of the server, over `engine`, with the status of its pushes.
pub fn router_with_pushes(engine: Engine, pushes: PushStatuses) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .merge(tidewater::rtmp::http_flv_router(engine.context()))
        .merge(metrics::router(engine.clone()))
        .nest("/api/v1", api::router_with_pushes(engine, pushes))
}

/// `GET /healthz`: the process is up and serving HTTP.
async fn healthz() -> &'static str {
    "ok\n"
}
