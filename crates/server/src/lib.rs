//! The tidewater server: the [`tidewater`] kernel behind one binary,
//! `tidewater`, that an operator runs with no arguments.
//!
//! Today it runs the kernel's engine (with its idle reaper and the
//! authorizer of `[auth]`), the RTMP listener (publish and play, by default
//! on `0.0.0.0:1935`), the RTMPS listener when `[rtmps]` has a certificate
//! and key (by default on `0.0.0.0:1936`), the SRT listener, the push worker
//! when any `push` destination is configured, and one HTTP listener, by
//! default on `0.0.0.0:8888` (and the same routes over HTTPS when `[https]`
//! has a certificate and key, by default on `0.0.0.0:8443`), serving
//!
//! - `GET /healthz`: `ok` while the server runs (never guarded);
//! - the HTTP outputs: `/flv/`, `/ts/`, `/hls/`, `/llhls/`, `/dash/`
//!   (each asks the authorizer for `read` of its stream);
//! - `GET /metrics`: Prometheus metrics (guarded: action `metrics`);
//! - `/api/v1/…`: the REST API (guarded: action `api`): streams, sessions,
//!   `POST /api/v1/config/reload`, the OpenAPI document (see [`http::api`]);
//! - `GET /` and `GET /watch/{app}/{stream}`: the web console and player
//!   pages (`[web]`, see [`http::console`]);
//! - `/playback/{app}/{stream}/…`: recordings of `[record]` (guarded: action
//!   `playback`, see [`http::playback`]).
//!
//! Every HTTP connection is bounded by `[http]`'s header read timeout and
//! maximum of open connections ([`http`]). The guard and what a refusal
//! answers and logs: [`http::guard`].
//!
//! The configuration is built in, and a TOML file (`--config FILE`) and
//! `TIDEWATER_…` environment variables override any key: see [`config`] for
//! the schema and the environment mapping. SIGHUP (or
//! `POST /api/v1/config/reload`) reads them again: `[auth]` applies at once,
//! other changes are reported as needing a restart ([`reload`]). SIGINT or
//! SIGTERM stops the server gracefully ([`shutdown`]): it refuses new
//! publishes and ends every live one (playlists get `EXT-X-ENDLIST`, MPDs
//! turn static, recordings close), keeps HTTP serving for `[server]
//! drain_ms` so players fetch the end, closes every session and exits 0.
//!
//! `tidewater hash-password` reads a password from standard input (or
//! `--password`) and prints its argon2id PHC string for `password_hash`.
//!
//! # Example
//!
//! Embedding the server in a test or another program: bind on a free port,
//! publish into its engine in-process, and stop it with a token.
//!
//! ```
//! use tidewater::{CancellationToken, Codec, Request, StreamKey, TrackId, TrackInfo};
//! use tidewater_server::{Config, Server};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tidewater_server::Error> {
//! let config = Config::from_toml_str(
//!     "[http]\nlisten = \"127.0.0.1:0\"\n[rtmp]\nlisten = \"127.0.0.1:0\"\n[srt]\nlisten = \"127.0.0.1:0\"\n[rtsp]\nlisten = \"127.0.0.1:0\"\nudp_rtp_port = 0\nudp_rtcp_port = 0\n[webrtc]\nudp_listen = \"127.0.0.1:0\"",
//! )?;
//! let server = Server::bind(&config).await?;
//! println!("API on http://{}/api/v1/streams", server.local_addr());
//!
//! let key = StreamKey::parse("live/cam1")?;
//! // In-process publishers name an address; with no `[auth]`, anonymous
//! // publish is allowed from loopback only.
//! let from = "127.0.0.1:50000".parse().expect("an address");
//! let mut publisher = server.engine().open_publish(Request::new(key.clone(), "example").peer(from)).await?;
//! publisher.set_catalog(vec![TrackInfo::video(TrackId(1), Codec::H264, 1280, 720)])?;
//! assert_eq!(server.engine().stream(&key).map(|s| s.catalog.is_some()), Some(true));
//!
//! let shutdown = CancellationToken::new();
//! let running = tokio::spawn(server.serve(shutdown.clone()));
//! shutdown.cancel();
//! running.await.expect("the server task")?;
//! # Ok(())
//! # }
//! ```
//!
//! The binary is this plus a command line, logging and signal handling:
//!
//! ```text
//! cargo run --release -p tidewater-server                     # defaults, HTTP on :8888
//! tidewater --config tidewater.toml                           # a file
//! TIDEWATER_HTTP__LISTEN=127.0.0.1:9000 tidewater             # any key from the environment
//! ```
//!
//! # Feature flags
//!
//! None yet. Each protocol will come behind a feature of the same name as in
//! the `tidewater` umbrella crate (`rtmp`, `rtsp`, `srt`, `whip`, `hls`,
//! `dash`), enabled by default in the server.

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

pub mod config;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod logging;
mod preflight;
pub mod reload;
pub mod shutdown;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tidewater::rtmp::{PushStatuses, Rtmp, RtmpPush};
use tidewater::{CancellationToken, Engine, InboundProtocol};
use tidewater_auth::Authorization;
use tokio::net::TcpListener;

pub use config::Config;
pub use error::{Error, Result};
pub use reload::{ConfigSource, ReloadError, ReloadReport, Reloader};
pub use shutdown::{PublishGate, ShutdownSignals};
pub use tls::{CERT_POLL_INTERVAL, TlsFiles};

use http::serve::{HttpListener, Limits};
use tls::LiveTls;

/// How often the idle reaper looks for publishes that stopped sending.
pub const REAP_INTERVAL: Duration = Duration::from_secs(1);

/// How long a shutdown, once drained, waits for the HTTP responses in
/// flight before closing their connections.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A server whose listeners are bound, ready to [`serve`](Self::serve).
#[derive(Debug)]
pub struct Server {
    engine: Engine,
    auth: Authorization,
    reloader: Reloader,
    http: TcpListener,
    http_addr: SocketAddr,
    https: Option<(TcpListener, LiveTls)>,
    https_addr: Option<SocketAddr>,
    limits: Limits,
    cors: http::cors::Cors,
    cert_poll: Duration,
    rtmp: Option<Arc<Rtmp>>,
    rtmps: Option<Arc<Rtmp>>,
    push: Option<Arc<RtmpPush>>,
    dash: Option<tidewater::dash::DashConfig>,
    hls: Option<tidewater::hls::Hls>,
    srt: Option<Arc<tidewater::srt::Srt>>,
    rtsp: Option<Arc<tidewater::rtsp::Rtsp>>,
    rtsps: Option<Arc<tidewater::rtsp::Rtsp>>,
    whip: Option<tidewater::whip::Whip>,
    web: Option<config::WebSection>,
    record: Option<tidewater::record::Recorder>,
    pull: Option<Arc<tidewater_rtsp::pull::RtspPull>>,
    cluster: Option<(
        tidewater::cluster::ClusterConfig,
        Arc<tidewater::cluster::ClusterSecret>,
    )>,
    gate: PublishGate,
    drain: Duration,
}

/// Binds a TCP listener; returns it with its actual address.
async fn bind_tcp(
    what: &'static str,
    addr: SocketAddr,
    key: &'static str,
) -> Result<(TcpListener, SocketAddr)> {
    let error = |os_error| Error::Bind {
        what,
        addr,
        key,
        os_error,
    };
    let listener = TcpListener::bind(addr).await.map_err(error)?;
    let bound = listener.local_addr().map_err(error)?;
    Ok((listener, bound))
}

impl Server {
    /// Builds the engine (with the authorizer of `[auth]`) and binds the
    /// HTTP and HTTPS listeners; logs each bound address (`http listening
    /// on 127.0.0.1:8888`).
    ///
    /// A server bound this way cannot [reload](Reloader::reload) its
    /// configuration until it is told where to read it again:
    /// [`reloads_from`](Self::reloads_from).
    pub async fn bind(config: &Config) -> Result<Server> {
        let auth = config.auth.authorization()?;
        let gate = PublishGate::default();
        // One chain: the engine asks the cluster's authorizer, and the
        // cluster is started with that same one (its admission check).
        let cluster_auth = config.cluster_authorizer(&auth);
        let engine = config.build_engine_gated(&auth, &gate, cluster_auth.clone())?;
        // Every configured port at once, before any listener opens.
        preflight::check(config)?;
        let (http, http_addr) = bind_tcp("http", config.http.listen, "http.listen").await?;
        tracing::info!("http listening on {http_addr}");
        let (https, https_addr) = match config.https.tls_files()? {
            Some(files) => {
                let tls = LiveTls::load(files).map_err(|e| Error::Setting {
                    key: e.key().into(),
                    message: e.to_string(),
                    origin: None,
                })?;
                let (listener, addr) =
                    bind_tcp("https", config.https.listen, "https.listen").await?;
                tracing::info!("https listening on {addr}");
                (Some((listener, tls)), Some(addr))
            }
            None => (None, None),
        };
        let limits = Limits::new(
            config.http.header_read_timeout(),
            config.http.max_connections,
        );
        let cors = config.http.cors();
        let rtmp = match config.rtmp.enabled {
            true => Some(Arc::new(Rtmp::new(config.rtmp.worker_config()?))),
            false => None,
        };
        let rtmps = match config.rtmps.server_tls()? {
            Some(tls) => {
                let worker = tidewater::rtmp::RtmpConfig {
                    listen: config.rtmps.listen,
                    ..config.rtmp.worker_config()?
                };
                Some(Arc::new(Rtmp::with_tls(worker, tls)))
            }
            None => None,
        };
        let routes = config.push_routes()?;
        let push = match routes.is_empty() {
            true => None,
            false => Some(Arc::new(RtmpPush::new(routes, config.rtmp.push_config()?))),
        };
        let dash = config.dash.dash_config()?;
        let hls = match config.hls.hls_config()? {
            Some(c) => Some(
                tidewater::hls::Hls::new(engine.context(), c)
                    .map_err(|e| setting_error("hls", e))?,
            ),
            None => None,
        };
        let srt = match config.srt.worker_config()? {
            Some(c) => Some(Arc::new(
                tidewater::srt::Srt::new(c).map_err(|e| setting_error("srt", e))?,
            )),
            None => None,
        };
        let rtsp = match config.rtsp.worker_config()? {
            Some(c) => Some(Arc::new(
                tidewater::rtsp::Rtsp::new(c).map_err(|e| setting_error("rtsp", e))?,
            )),
            None => None,
        };
        let rtsps = match config.rtsps.worker_config(&config.rtsp)? {
            Some((c, tls)) => Some(Arc::new(
                tidewater::rtsp::Rtsp::with_tls(c, tls).map_err(|e| setting_error("rtsps", e))?,
            )),
            None => None,
        };
        let whip = match config.webrtc.worker_config()? {
            Some(c) => Some(tidewater::whip::Whip::new(c).map_err(|e| setting_error("webrtc", e))?),
            None => None,
        };
        let record = match config.record.record_config()? {
            Some(c) => Some(
                tidewater::record::Recorder::new(engine.context(), c)
                    .map_err(|e| setting_error("record", e))?,
            ),
            None => None,
        };
        let cluster = match (&config.cluster, cluster_auth) {
            (Some(c), Some(secret)) => Some((c.cluster_config()?, secret)),
            _ => None,
        };
        let pull = pull_worker(config, &engine)?;
        let reloader = Reloader::new(None, config.clone(), auth.clone());
        Ok(Server {
            engine,
            auth,
            reloader,
            http,
            http_addr,
            https,
            https_addr,
            limits,
            cors,
            cert_poll: CERT_POLL_INTERVAL,
            rtmp,
            rtmps,
            push,
            dash,
            hls,
            srt,
            rtsp,
            rtsps,
            whip,
            web: config.web.enabled.then(|| config.web.clone()),
            record,
            cluster,
            pull,
            gate,
            drain: config.server.drain(),
        })
    }

    /// How long a graceful stop keeps HTTP serving once every publish
    /// ended (`[server] drain_ms`; see [`shutdown`]).
    pub fn drain(mut self, drain: Duration) -> Self {
        self.drain = drain;
        self
    }

    /// The recorder of `[record]` (`None` when nothing is recorded).
    pub fn recorder(&self) -> Option<&tidewater::record::Recorder> {
        self.record.as_ref()
    }

    /// Reloads read the configuration from `source` (the one it was loaded
    /// from: the same file and variables), on `SIGHUP` (the binary) and on
    /// `POST /api/v1/config/reload`.
    pub fn reloads_from(mut self, source: ConfigSource) -> Self {
        self.reloader = self.reloader.with_source(source);
        self
    }

    /// Looks at the HTTPS certificate and key files this often (default
    /// [`CERT_POLL_INTERVAL`]).
    pub fn cert_poll_interval(mut self, every: Duration) -> Self {
        self.cert_poll = every;
        self
    }

    /// What reloads this server's configuration (from another task, or a
    /// signal handler); works once [`serve`](Self::serve) runs, and before.
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// The authorizer the engine asks (shared: a reload applies to both).
    pub fn authorization(&self) -> &Authorization {
        &self.auth
    }

    /// The bound HTTPS address (`None` without a certificate).
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// The bound RTMPS address, once its listener is up (`None` without a
    /// certificate). The listener binds when [`serve`](Self::serve) starts.
    pub async fn rtmps_addr(&self) -> Option<SocketAddr> {
        match &self.rtmps {
            Some(rtmps) => Some(rtmps.listening().await),
            None => None,
        }
    }

    /// The status of every push (empty when no push is configured).
    pub fn pushes(&self) -> PushStatuses {
        self.push
            .as_ref()
            .map_or_else(PushStatuses::default, |p| p.statuses())
    }

    /// The bound RTMP address, once its listener is up (`None` when RTMP is
    /// disabled). The listener binds when [`serve`](Self::serve) starts.
    pub async fn rtmp_addr(&self) -> Option<SocketAddr> {
        match &self.rtmp {
            Some(rtmp) => Some(rtmp.listening().await),
            None => None,
        }
    }

    /// The bound SRT (UDP) address, once its listener is up (`None` when SRT
    /// is disabled). The listener binds when [`serve`](Self::serve) starts.
    pub async fn srt_addr(&self) -> Option<SocketAddr> {
        match &self.srt {
            Some(srt) => Some(srt.listening().await),
            None => None,
        }
    }

    /// The bound RTSP (TCP) address, once its listener is up (`None` when
    /// RTSP is disabled). The listener binds when [`serve`](Self::serve) starts.
    pub async fn rtsp_addr(&self) -> Option<SocketAddr> {
        match &self.rtsp {
            Some(rtsp) => Some(rtsp.listening().await),
            None => None,
        }
    }

    /// The bound HTTP address (with the actual port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The engine, to publish or subscribe in-process.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Serves until `shutdown` is cancelled, then stops gracefully in the
    /// phases of [`shutdown`]: refuse publishes and end every live one
    /// ([`Engine::shutdown`]) so every output finalizes, keep HTTP serving
    /// for the [drain](Self::drain) (or until no reader is left), then close
    /// the listeners and their sessions (HTTP responses in flight get up to
    /// [`DRAIN_TIMEOUT`]).
    pub async fn serve(self, shutdown: CancellationToken) -> Result<()> {
        let pushes = self.pushes();
        let Server {
            engine,
            auth: _,
            reloader,
            http,
            http_addr,
            https,
            https_addr: _,
            limits,
            cors,
            cert_poll,
            rtmp,
            rtmps,
            push,
            dash,
            hls,
            srt,
            rtsp,
            rtsps,
            whip,
            web,
            record,
            cluster,
            pull,
            gate,
            drain,
        } = self;
        // `shutdown` starts the stop; these end its phases: HTTP stops
        // after the drain, the protocol listeners with it, the background
        // tasks (reaper, packaging and recording services, cluster) last.
        let (stop_pulls, stop_recording, stop_http, stop_workers, background) = (
            CancellationToken::new(),
            CancellationToken::new(),
            CancellationToken::new(),
            CancellationToken::new(),
            CancellationToken::new(),
        );
        // Ends every DASH packager (and HLS's, with `finish_all`) in the
        // first phase.
        let finish_packagers = CancellationToken::new();
        let reaper = engine.spawn_reaper(REAP_INTERVAL, background.child_token());
        if let Some((c, secret)) = cluster {
            // Joined before any listener accepts: a publish is claimed in
            // the directory from the first one. `secret` is the engine's
            // own authorizer chain (`Config::cluster_authorizer`), so the
            // cluster's admission check answers the engine's publishes.
            tidewater::cluster::Cluster::start(engine.clone(), c, secret, background.child_token())
                .await
                .map_err(Error::Cluster)?;
        }
        let console = web.map(|web| http::console::Console {
            rtmp: rtmp.clone().map(http::console::Port::Rtmp),
            rtmps: rtmps.clone().map(http::console::Port::Rtmp),
            srt: srt.clone().map(http::console::Port::Srt),
            rtsp: rtsp.clone().map(http::console::Port::Rtsp),
            hls: hls.is_some(),
            dash: dash.is_some(),
            webrtc: whip.is_some(),
            record: record.is_some(),
            player_scripts_url: web.player_scripts_url,
        });
        // Protocol workers bind their own listeners; one that fails (a port
        // in use) stops the whole server, as a bad HTTP bind does.
        let protocols: Vec<Arc<dyn InboundProtocol>> = rtmp
            .into_iter()
            .chain(rtmps)
            .map(|r| r as Arc<dyn InboundProtocol>)
            .chain(push.map(|p| p as Arc<dyn InboundProtocol>))
            .chain(srt.clone().map(|s| s as Arc<dyn InboundProtocol>))
            .chain(rtsp.map(|r| r as Arc<dyn InboundProtocol>))
            .chain(rtsps.map(|r| r as Arc<dyn InboundProtocol>))
            .chain(pull.clone().map(|p| {
                Arc::new(shutdown::IngestWorker {
                    inner: p,
                    stop: stop_pulls.clone(),
                }) as Arc<dyn InboundProtocol>
            }))
            .chain(
                whip.clone()
                    .map(|w| Arc::new(w) as Arc<dyn InboundProtocol>),
            )
            .collect();
        let mut workers = tokio::spawn({
            let (engine, token) = (engine.clone(), stop_workers.clone());
            async move { engine.serve(protocols, token).await }
        });
        let mut app = http::router_with(engine.clone(), pushes, Some(reloader));
        if let Some(dash) = dash {
            app = app.merge(tidewater::dash::dash_router_until(
                engine.context(),
                dash,
                finish_packagers.clone(),
            ));
        }
        if let Some(srt) = &srt {
            let timeout = srt.config().write_timeout;
            app = app.merge(tidewater::srt::http_ts_router(engine.context(), timeout));
        }
        let hls_packagers = hls.clone();
        if let Some(hls) = hls {
            tokio::spawn(hls.clone().run_always_on(background.child_token()));
            app = app.merge(tidewater::hls::router(hls));
        }
        if let Some(whip) = &whip {
            // The API's sessions list shows WebRTC sessions' links.
            app = app
                .layer(axum::Extension(http::sessions::WebrtcLinks(whip.clone())))
                .merge(whip.router(engine.context()));
        }
        if let Some(console) = console {
            app = app.merge(http::console::router(console));
        }
        let recorder = record.clone();
        if let Some(record) = record {
            let library = record.library().clone();
            // The API shows each stream's recording state through it.
            app = app.layer(axum::Extension(record.clone()));
            tokio::spawn(record.run(stop_recording.clone()));
            app = app.merge(http::playback::router(engine.clone(), library));
        }
        if let Some(pull) = &pull {
            // `GET /api/v1/pulls` reads the states.
            app = app.layer(axum::Extension(pull.statuses()));
        }
        let app = http::cors::apply(app, cors);
        let app = http::guard::count_refusals(app, engine.clone());
        let listeners: Vec<HttpListener> = std::iter::once(HttpListener {
            listener: http,
            name: "http",
            tls: None,
            limits: limits.clone(),
            stats: engine.listener_stats("http"),
        })
        .chain(https.map(|(listener, tls)| {
            tokio::spawn(tls.clone().watch(cert_poll, background.child_token()));
            HttpListener {
                listener,
                name: "https",
                tls: Some(tls),
                limits: limits.clone(),
                stats: engine.listener_stats("https"),
            }
        }))
        .collect();
        let mut server = tokio::spawn({
            let stop_accepting = stop_http.clone();
            async move {
                // Aborting this task drops the set, which aborts the listeners.
                let mut serving = tokio::task::JoinSet::new();
                for listener in listeners {
                    serving.spawn(listener.serve(app.clone(), stop_accepting.clone()));
                }
                while let Some(done) = serving.join_next().await {
                    done.map_err(std::io::Error::other)?;
                }
                Ok::<(), std::io::Error>(())
            }
        });

        let early = tokio::select! {
            biased;
            () = shutdown.cancelled() => None,
            result = &mut server => Some(result),
            result = &mut workers => {
                // A worker failed (a clean return needs the token, which is
                // not cancelled): stop everything and report it.
                let error = match result {
                    Ok(Err(e)) => Error::Kernel(e),
                    Ok(Ok(())) => Error::Http(std::io::Error::other("protocol workers stopped unexpectedly")),
                    Err(e) => Error::Http(std::io::Error::other(e)),
                };
                tracing::error!("{error}");
                gate.close();
                engine.shutdown();
                stop_http.cancel();
                let _ = tokio::time::timeout(DRAIN_TIMEOUT, &mut server).await;
                stop_recording.cancel();
                background.cancel();
                let _ = reaper.await;
                return Err(error);
            }
        };
        let outcome = match early {
            None => {
                let recording = recorder.as_ref().map(|r| (r, &stop_recording));
                // Streams in their follow grace (not live, so not ended by
                // the kernel) end in the packagers too.
                let finish = || {
                    finish_packagers.cancel();
                    if let Some(hls) = &hls_packagers {
                        hls.finish_all();
                    }
                };
                shutdown::stop_ingest(&engine, &gate, &stop_pulls, recording, finish).await;
                // The HTTP server only returns on its own when it failed.
                let failed = tokio::select! {
                    () = shutdown::drain(&engine, drain) => None,
                    result = &mut server => Some(result),
                };
                shutdown::log_closing(&engine);
                stop_http.cancel();
                match failed {
                    Some(result) => flatten(result),
                    None => match tokio::time::timeout(DRAIN_TIMEOUT, &mut server).await {
                        Ok(result) => flatten(result),
                        Err(_) => {
                            tracing::warn!(
                                "http responses still in flight after {DRAIN_TIMEOUT:?}: closing them"
                            );
                            server.abort();
                            Ok(())
                        }
                    },
                }
            }
            // The HTTP server never returns on its own unless it failed.
            Some(result) => {
                gate.close();
                engine.shutdown();
                Err(flatten(result)
                    .err()
                    .unwrap_or_else(|| Error::Http(std::io::Error::other("stopped unexpectedly"))))
            }
        };
        stop_workers.cancel();
        match tokio::time::timeout(DRAIN_TIMEOUT, &mut workers).await {
            Ok(Ok(Err(e))) => tracing::warn!("protocol worker: {e}"),
            Ok(Err(e)) => tracing::warn!("protocol workers: {e}"),
            Ok(Ok(Ok(()))) => {}
            Err(_) => {
                tracing::warn!(
                    "protocol workers still running after {DRAIN_TIMEOUT:?}: stopping them"
                );
                workers.abort();
            }
        }
        stop_recording.cancel();
        background.cancel();
        if let Err(e) = reaper.await {
            tracing::warn!("idle reaper: {e}");
        }
        if outcome.is_ok() {
            tracing::info!("shutdown: http on {http_addr} and every listener closed; stopped");
        }
        outcome
    }
}

/// The worker of `[[pull]]` (`None` without entries); an on-demand pull
/// counts as readers the stream's listed sessions (viewers and HLS/DASH
/// players, not packagers or recorders).
fn pull_worker(
    config: &Config,
    engine: &Engine,
) -> Result<Option<Arc<tidewater_rtsp::pull::RtspPull>>> {
    let specs = config::pull_specs(&config.pull)?;
    if specs.is_empty() {
        return Ok(None);
    }
    let sessions = engine.clone();
    let readers: tidewater_rtsp::pull::ReaderCount = Arc::new(move |key| {
        sessions
            .sessions()
            .iter()
            .filter(|s| s.kind == tidewater::SessionKind::Reader && &s.path == key)
            .count()
    });
    let pull = tidewater_rtsp::pull::RtspPull::new(specs)
        .map_err(|e| setting_error("pull", e))?
        .with_readers(readers);
    let pull = Arc::new(pull);
    // A reader of an on-demand pulled stream starts its pull.
    engine.add_on_demand(pull.clone());
    Ok(Some(pull))
}

/// A section whose values passed the configuration checks but that its
/// protocol crate still refused.
fn setting_error(section: &str, e: impl std::fmt::Display) -> Error {
    Error::Setting {
        key: section.into(),
        message: e.to_string(),
        origin: None,
    }
}

fn flatten(result: Result<std::io::Result<()>, tokio::task::JoinError>) -> Result<()> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Error::Http(e)),
        Err(e) => Err(Error::Http(std::io::Error::other(e))),
    }
}

/// Binds and serves `config` until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    Server::bind(&config).await?.serve(shutdown).await
}

#[cfg(test)]
mod security_tests;
#[cfg(test)]
mod tests;
