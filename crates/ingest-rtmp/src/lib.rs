//! RTMP for the tidewater kernel: publish and play on one port (RTMP and
//! RTMPS), push to other RTMP/RTMPS servers, and HTTP-FLV.
//!
//! - **Publish** `rtmp://host:1935/{app}/{stream}`. FLV tag bodies become kernel frames and a catalog:
//!   H.264 and AAC, Enhanced RTMP `hvc1` / `av01` / `vp09`, `onMetaData` into
//!   the stream's metadata (see [`flv`] and [`ingest`] for the mapping and
//!   for when the catalog is announced).
//! - **Play** on the same port: a viewer gets `onMetaData`, the sequence
//!   headers and the cached GOP at once, then live frames. Each frame's RTMP
//!   chunks are built **once per stream** in the kernel's derived-output cache
//!   and the same bytes are written to every viewer, several messages per
//!   vectored write (see [`egress`]). A viewer that falls behind is skipped to
//!   the next keyframe by the kernel; one whose socket stays blocked longer
//!   than [`RtmpConfig::write_timeout`] is disconnected. When the publisher
//!   leaves, viewers get `NetStream.Play.UnpublishNotify` and Stream EOF.
//! - **Credentials**: `?user=…&pass=…` or `?token=…` on the stream name of a
//!   publish or play (`rtmp://host/live/cam?user=a&pass=b`), or on the
//!   `connect` (`rtmp://host/live?user=a&pass=b` as OBS's server, the stream
//!   key plain): user and password become the kernel's
//!   `Credentials::UserPass`, a token `Credentials::Token` and stays in the
//!   query; values are percent-decoded (`+` is not a space); the query,
//!   without `user` and `pass`, goes to the authorizer with the peer address,
//!   and the stream key never includes it. A refusal gets
//!   `NetStream.Publish.Denied` or `NetStream.Play.Failed` with the
//!   authorizer's reason, a log line (peer, stream, reason, which names the
//!   missing permission) and a count in the listener's counters
//!   (`unauthorized`, or `rate_limited`), and the connection is closed.
//! - **Sessions**: bytes written to each RTMP viewer are counted on its
//!   subscription (HTTP-FLV's by the shared live-response code). An
//!   operator's kick ends a viewer with `NetStream.Play.Stop` and Stream EOF
//!   and closes a publisher's connection at once, even while it sends
//!   nothing.
//! - **Limits**, counted as refusals in the listener's counters
//!   (`IngestContext::listener_stats("rtmp")`, or `"rtmps"`):
//!   [`RtmpConfig::max_connections`] per listener,
//!   [`RtmpConfig::max_connections_per_ip`] per peer address (a separate,
//!   larger [`RtmpConfig::max_connections_per_loopback_ip`] for loopback
//!   peers): a connection over a limit is closed at accept with a log line
//!   (`too_many_connections`). A peer that has not asked to publish or play
//!   [`RtmpConfig::handshake_timeout`] after the accept (TLS handshake
//!   included) is closed likewise (`handshake_timeout`).
//! - **HTTP-FLV**: [`http_flv_router`] serves `GET /flv/{app}/{stream}.flv`
//!   with the same instant start, streamed with chunked transfer.
//! - **RTMPS**: [`Rtmp::with_tls`] serves exactly the same inside TLS
//!   (rustls; certificate and key from PEM files with
//!   [`ServerTls::from_pem_files`], read again when they change: see
//!   [`tls`]). The connection driver is generic over the byte stream: a TCP
//!   socket's halves or a TLS stream's.
//! - **Push**: [`RtmpPush`] republishes streams to `rtmp://` and `rtmps://`
//!   destinations ([`PushRoutes`]: per stream, per application or for every
//!   stream), following each stream across republishes, reconnecting with
//!   capped exponential backoff and keeping a status per push
//!   ([`PushStatuses`]: `starting | active | reconnecting | failed`, attempts,
//!   connected-since, last errors). See [`push`] for the behaviour, [`client`]
//!   for the publishing state machine and [`tls`] for how destinations are
//!   verified (platform roots via `rustls-native-certs`, or a CA file).
//! - A refused publish or play (unknown application, taken stream, refused by
//!   the authorizer, stream not live) gets an `onStatus` error
//!   (`NetStream.Publish.BadName`, `NetStream.Publish.Denied`,
//!   `NetStream.Play.StreamNotFound`, `NetStream.Play.Failed`) and a log line
//!   with the peer and the stream. Bad input closes only its own connection,
//!   with a log line naming the peer (and the stream, once known).
//!
//! The protocol logic is sans-IO, over `rml_rtmp`'s handshake, message types
//! and chunk serializer: bytes, kernel events and time in; bytes, events and
//! deadlines out; no socket, no clock. [`session::Session`] is the server
//! side and [`client::PublishClient`] a push's; both send a stream through
//! one [`egress::Egress`] (shared chunks, re-sent headers, rebasing, the
//! closing messages), pick the RTMP status for a kernel refusal, and keep
//! the handshake, read, write, coalescing and connect deadlines
//! (`poll_timeout` / `handle_timeout`, tested on virtual time);
//! [`push::status::PushMachine`] keeps a push's state and backoff. Thin
//! tokio drivers run one task per connection and per push: they read,
//! write, sleep until the next deadline and ask the kernel.
//!
//! ```
//! use std::sync::Arc;
//! use tidewater_core::{AppSpec, CancellationToken, Engine, InboundProtocol};
//! use tidewater_ingest_rtmp::{Rtmp, RtmpConfig, http_flv_router};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::builder().app("live", AppSpec::default()).build()?;
//! let rtmp = Arc::new(Rtmp::new(RtmpConfig {
//!     listen: "127.0.0.1:0".parse()?,
//!     ..RtmpConfig::default()
//! }));
//! let shutdown = CancellationToken::new();
//! let workers: Vec<Arc<dyn InboundProtocol>> = vec![rtmp.clone()];
//! let server = tokio::spawn({
//!     let (engine, shutdown) = (engine.clone(), shutdown.clone());
//!     async move { engine.serve(workers, shutdown).await }
//! });
//! let addr = rtmp.listening().await;
//! println!("publish to rtmp://{addr}/live/STREAM");
//!
//! // Pushing every stream of `live` elsewhere is one more worker:
//! use tidewater_ingest_rtmp::{PushConfig, PushRoutes, PushTarget, RtmpPush};
//! let mut routes = PushRoutes::new();
//! routes.set_app("live", vec![PushTarget::parse("rtmp://backup.example/live", None)?]);
//! let _push = Arc::new(RtmpPush::new(routes, PushConfig::default()));
//! // … served like `rtmp`; `_push.statuses()` is the read side for an API.
//!
//! // HTTP-FLV routes, to merge into the application's HTTP router.
//! let _http: axum::Router = http_flv_router(engine.context());
//!
//! shutdown.cancel();
//! server.await??;
//! # Ok(())
//! # }
//! ```
//!
//! # Decisions
//!
//! - **Why not `rml_rtmp`'s `ServerSession`.** Its input path panics on a
//!   short `@setDataFrame`, its AMF0 decoder recurses without bound, its chunk
//!   deserializer keeps one partial message for all chunk streams (and
//!   underflows when a header changes mid-message), it numbers play streams
//!   per connection and it refuses requests with `_error` results only. The
//!   session here keeps `rml_rtmp`'s handshake, message types and chunk
//!   serializer and replaces the input path with bounded code
//!   ([`chunk::ChunkReader`], a depth-limited AMF0 decoder).
//! - **One chunk size, one stream id.** Every connection is told the same
//!   outbound chunk size ([`RtmpConfig::chunk_size`]) at `connect`, and the
//!   first stream a connection creates is stream 1
//!   ([`session::SHARED_STREAM_ID`]), as with `ServerSession`. Shared media
//!   chunks use full (type 0) headers on chunk streams 7 and 8, which the
//!   command serializer (2 to 6) never touches. A player on another stream id
//!   (a client that created several streams) gets chunks built for it alone.
//! - **Input held while a request is answered.** After a publish or play
//!   request the session parses nothing more until the kernel answered, so
//!   media a client pipelines behind `publish` is not lost and a
//!   `deleteStream` behind `play` is not applied before the play exists.
//! - **Refusals close politely.** A refused peer gets its `onStatus` error,
//!   then a half-close and a short wait for it to hang up.
//! - **Unknown commands do not close.** Encoders send vendor commands; an
//!   unknown one is logged and, if it expects an answer, answered with
//!   `_error` (`NetConnection.Call.Failed`). Malformed chunks, messages and
//!   AMF0, over-long messages and command-order violations do close the
//!   connection, with one log line naming the peer and stream.
//! - **Silent publishers** are closed after [`RtmpConfig::read_timeout`];
//!   connections that neither publish nor play within
//!   [`RtmpConfig::handshake_timeout`] likewise (for RTMPS the TLS handshake
//!   counts against the same limit, from the accept). The clock stops at the
//!   publish or play request: the kernel's answer (an authorizer asking an
//!   external hook) has its own limits.
//! - **Limits apply at accept, before any byte is read**: a refused
//!   connection costs one accept and one close. Per-address counting uses
//!   the canonical address (`::ffff:192.0.2.7` is `192.0.2.7`); loopback
//!   gets its own limit because local tools, tests and a reverse proxy on
//!   the same host share one address.
//! - **Players get no `onStatus` data message.** Some servers send
//!   `NetStream.Data.Start` as a data message after `play`; ffmpeg's FLV
//!   demuxer lists any script data other than `onMetaData`, `onCuePoint`
//!   and `|RtmpSampleAccess` as a data stream of unknown codec, and an
//!   `onMetaData` at a non-zero time as a subtitle stream. So players get
//!   `|RtmpSampleAccess` and `onMetaData`, always at time 0, and ffprobe
//!   lists exactly the media streams.
//! - **Our own push client, not `rml_rtmp`'s `ClientSession`**: the
//!   destination's input goes through the same bounded reader and AMF0
//!   decoder as any peer's, and media goes out as the prebuilt chunks RTMP
//!   viewers share (see [`client`]).
//! - **A push survives a republish on the same connection**: it sends the
//!   new sequence headers and shifts the new publish's timestamps to go on
//!   [`push::REBASE_GAP_MS`] after the last one sent, so the destination
//!   sees one stream with increasing timestamps. Every (re)connection starts
//!   from the cached GOP.
//! - **Players survive a republish too**: an RTMP or HTTP-FLV viewer
//!   follows its stream ([`Follower`](tidewater_core::Follower)); within the
//!   stream's `follow_grace` it gets the new `onMetaData` and sequence
//!   headers and timestamps shifted to go on rising, shared by every player
//!   of the generation so chunks are still built once per frame (see
//!   [`egress`]); it ends when nobody publishes again within the grace.
//! - **A join gets enough frames for ffmpeg's probe**: players ask the
//!   kernel to start with [`flv::START_VIDEO_FRAMES`] video frames (an
//!   earlier GOP when the newest is younger), and a turn that fills a write
//!   batch opens no coalescing window, so a cached GOP goes out at once.
//! - **Pushes are a worker of the protocol seam** ([`InboundProtocol`]):
//!   long-lived, started and stopped with the listeners, reaching the kernel
//!   through [`IngestContext`] (lifecycle events to start, followers to read).
//!
//! # Feature flags
//!
//! None: RTMP and RTMPS publish and play, push and HTTP-FLV are always
//! built (TLS is rustls with the `ring` provider).

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

mod amf;
pub mod chunk;
pub mod client;
mod config;
mod control;
mod driver;
pub mod egress;
mod error;
pub mod flv;
#[doc(hidden)]
pub mod fuzzing;
mod http_flv;
pub mod ingest;
mod limits;
pub mod push;
mod query;
pub mod session;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tidewater_core::{BoundAddr, CancellationToken, InboundProtocol, IngestContext};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{info, warn};

pub use config::{
    CHUNK_SIZE_RANGE, ConfigError, DEFAULT_CHUNK_SIZE, DEFAULT_COALESCE, DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_IP,
    DEFAULT_MAX_CONNECTIONS_PER_LOOPBACK_IP, DEFAULT_WRITE_TIMEOUT, MAX_COALESCE,
    MAX_MESSAGE_LEN_RANGE, RtmpConfig,
};
pub use error::{Context, Error, Result};
pub use http_flv::{HttpFlvConfig, http_flv_router, http_flv_router_with};
pub use push::{
    Backoff, PushConfig, PushRoutes, PushSnapshot, PushState, PushStatuses, PushTarget, RtmpPush,
};
pub use tls::{ClientTls, ServerTls};

/// The RTMP worker: publish and play on one listener (RTMPS with
/// [`Rtmp::with_tls`]).
#[derive(Debug)]
pub struct Rtmp {
    config: Arc<RtmpConfig>,
    tls: Option<ServerTls>,
    bound: BoundAddr,
}

impl Rtmp {
    /// A worker with these settings; it binds when served.
    ///
    /// [`RtmpConfig::validate`] is the check of the settings: call it first
    /// with settings that come from users. `new` accepts any settings; as a
    /// last resort it clamps a chunk size or message limit that `validate`
    /// refuses into the range `validate` accepts, with a warning (a value
    /// `validate` accepts is never changed).
    pub fn new(config: RtmpConfig) -> Rtmp {
        if let Err(e) = config.validate() {
            warn!(
                "rtmp: invalid settings ({e}); starting anyway, chunk_size and max_message_len clamped into range"
            );
        }
        Rtmp {
            config: Arc::new(config.clamped()),
            tls: None,
            bound: BoundAddr::new(),
        }
    }

    /// An RTMPS worker: the same service, each connection inside TLS with
    /// this certificate (the TLS handshake counts against
    /// [`RtmpConfig::handshake_timeout`]).
    pub fn with_tls(config: RtmpConfig, tls: ServerTls) -> Rtmp {
        Rtmp {
            tls: Some(tls),
            ..Rtmp::new(config)
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &RtmpConfig {
        &self.config
    }

    /// The address the listener is bound to, while serving.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.bound.get()
    }

    /// Waits until the listener is bound and returns its address (never
    /// returns if binding fails: bound the wait).
    pub async fn listening(&self) -> SocketAddr {
        self.bound.wait().await
    }
}

#[async_trait]
impl InboundProtocol for Rtmp {
    fn name(&self) -> &'static str {
        if self.tls.is_some() { "rtmps" } else { "rtmp" }
    }

    async fn serve(
        &self,
        ctx: IngestContext,
        shutdown: CancellationToken,
    ) -> tidewater_core::Result<()> {
        let addr = self.config.listen;
        let name = self.name();
        let listener =
            TcpListener::bind(addr)
                .await
                .map_err(|source| tidewater_core::Error::Protocol {
                    protocol: name,
                    source: Box::new(Error::Bind { addr, source }),
                })?;
        let local = listener.local_addr().unwrap_or(addr);
        info!("{name} listening on {local}");
        let mut tls = self.tls.clone().map(tls::Reloading::new);
        let mut reload_check = tokio::time::interval(tls::RELOAD_CHECK_INTERVAL);
        reload_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stats = ctx.listener_stats(name);
        let limits = limits::Limits::new(&self.config);
        self.bound.set(Some(local));
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = reload_check.tick(), if tls.as_ref().is_some_and(|t| t.files_known()) => {
                    if let Some(tls) = &mut tls {
                        match tls.check() {
                            Ok(true) => info!("{name}: certificate and key read again from their files"),
                            Ok(false) => {}
                            Err(e) => warn!("{name}: keeping the certificate in service: {e}"),
                        }
                    }
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let admitted = match limits.admit(peer.ip()) {
                            Ok(a) => a,
                            Err(why) => {
                                stats.refused("too_many_connections");
                                if let Some(note) = stats.log_limit().check_now() {
                                    warn!(peer = %peer, "{name}: connection refused: {why}{note}");
                                }
                                drop(stream);
                                continue;
                            }
                        };
                        let slot = driver::Slot {
                            accepted: driver::clock(),
                            stats: Arc::clone(&stats),
                            _admitted: admitted,
                            _open: stats.accepted(),
                        };
                        match &tls {
                            // A panic in a connection's task ends that connection alone.
                            None => connections.spawn(tidewater_core::contained(
                                &stats,
                                peer,
                                driver::run_connection(
                                    stream,
                                    peer,
                                    slot,
                                    ctx.clone(),
                                    Arc::clone(&self.config),
                                    shutdown.clone(),
                                ),
                            )),
                            Some(tls) => connections.spawn(tidewater_core::contained(
                                &stats,
                                peer,
                                driver::run_tls_connection(
                                    stream,
                                    peer,
                                    slot,
                                    tls.acceptor().clone(),
                                    ctx.clone(),
                                    Arc::clone(&self.config),
                                    shutdown.clone(),
                                ),
                            )),
                        };
                    }
                    Err(e) => {
                        // Out of descriptors and the like: pause rather than spin.
                        warn!("{name} accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        drop(listener);
        tidewater_core::drain_connections(&mut connections).await;
        self.bound.set(None);
        info!("{name} listener on {local} stopped");
        Ok(())
    }
}
