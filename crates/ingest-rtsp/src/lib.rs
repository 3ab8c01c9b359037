//! RTSP for the tidewater kernel: publish (`ANNOUNCE` / `RECORD`) and read
//! (`DESCRIBE` / `PLAY`) on one port, RTP interleaved on the RTSP
//! connection or over UDP.
//!
//! - **Stream names** come from the URL path: `rtsp://host:8554/{app}/{stream}`;
//!   track URLs (`…/trackID=0`, `…/streamid=0`) map back to the same stream.
//!   A query (`?token=…`) goes to the authorizer with the peer address.
//! - **Publish** (`ffmpeg -f rtsp -rtsp_transport tcp rtsp://host:8554/live/cam1`):
//!   the `ANNOUNCE`d SDP (read with `sdp-types`) names the tracks; H.264
//!   (RFC 6184: single NAL unit, STAP-A, FU-A), H.265 (RFC 7798: single NAL
//!   unit, AP, FU), AAC (RFC 3640 `mpeg4-generic` AAC-hbr, and RFC 6416
//!   `MP4A-LATM` as GStreamer sends it) and Opus
//!   (RFC 7587) become kernel frames in their canonical form (AVCC / HVCC,
//!   raw AAC, Opus packets) with `avcC` / `hvcC` / AudioSpecificConfig in
//!   the catalog (see [`ingest`]). A lost packet drops the access unit and
//!   every picture up to the next IDR / IRAP picture. Tracks are put on one
//!   timeline from the publisher's RTCP sender reports.
//! - **Read** (`ffplay -rtsp_transport tcp rtsp://host:8554/live/cam1`):
//!   `DESCRIBE` answers with an SDP made from the stream's catalog; after
//!   `PLAY` the reader starts at the cached GOP. Each frame's RTP packets
//!   are built **once per stream** in the kernel's derived-output cache and
//!   only the sequence number, SSRC and timestamp offset differ per reader
//!   (see [`egress`]). Readers get an RTCP sender report per track once a
//!   second, each track's RTP time on the publish's wall clock, so players
//!   sync audio and video. `PLAY` answers with `Range` and `RTP-Info`
//!   (each track's first sequence number and the RTP time of the first
//!   frame sent); `PAUSE` stops the media and a later `PLAY` resumes it at
//!   the next keyframe. A reader follows its stream across a republish
//!   within the stream's follow grace: the new publish's tracks are
//!   matched to the described ones by codec and clock rate, timestamps
//!   carry on 40 ms after the last frame sent, and the new parameter sets
//!   go in band before the first keyframe (a republish with other codecs
//!   ends the session).
//! - **Credentials**: `Authorization: Basic` becomes
//!   `Credentials::UserPass`, `Digest` becomes `Credentials::Digest` (the
//!   authorizer checks the response against its nonce), `?token=` stays in
//!   the query. A refusal for missing or wrong credentials is a `401` with a
//!   `WWW-Authenticate: Basic realm=…` challenge; other refusals are `403`,
//!   `404`, `453` (stream taken) or `503`, each with a log line.
//! - **Transports**: `RTP/AVP/TCP;interleaved=…` on the RTSP connection, or
//!   `RTP/AVP;unicast;client_port=…` over UDP from and to the server's RTP
//!   and RTCP ports ([`RtspConfig::rtp_port`] / [`RtspConfig::rtcp_port`],
//!   8000/8001; [`RtspConfig::udp`] turns UDP off, and then clients asking
//!   for it get `461` and fall back to TCP). The two UDP sockets are shared
//!   by every session; a publisher's datagrams are routed to its session by
//!   their source address (its IP and `client_port`), others are dropped.
//! - **RTSPS** ([`Rtsp::with_tls`], `rtsps://host:8322/…`): the same
//!   service inside TLS (rustls), RTP interleaved on the connection only;
//!   the certificate and key files are read again when they change
//!   ([`ServerTls`], as RTMPS does).
//! - **Sessions** expire after [`RtspConfig::session_timeout`] (60 s) without
//!   a request or media; `GET_PARAMETER` / `SET_PARAMETER` keep them alive.
//!   The listener counts connections in
//!   `IngestContext::listener_stats("rtsp")`: accepted, and refused with
//!   `too_many_connections` at accept or `unauthorized` / `rate_limited`
//!   when the authorizer refuses a publish or read.
//!
//! The protocol logic is sans-IO: [`session::Session`] takes bytes and time
//! and gives responses, events and a deadline; [`ingest::Ingest`] turns RTP
//! into frames; [`egress`] turns frames into RTP. The tokio driver reads,
//! writes, sleeps until the deadline and asks the kernel. The RTP payload
//! formats live in `tidewater_media::rtp`, to be shared with WebRTC.
//!
//! ```
//! use std::sync::Arc;
//! use tidewater_core::{AppSpec, CancellationToken, Engine, InboundProtocol};
//! use tidewater_rtsp::{Rtsp, RtspConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::builder().app("live", AppSpec::default()).build()?;
//! let rtsp = Arc::new(Rtsp::new(RtspConfig {
//!     listen: "127.0.0.1:0".parse()?,
//!     // RTP/RTCP over UDP on two free ports (8000/8001 by default).
//!     rtp_port: 0,
//!     rtcp_port: 0,
//!     ..RtspConfig::default()
//! })?);
//! let shutdown = CancellationToken::new();
//! let workers: Vec<Arc<dyn InboundProtocol>> = vec![rtsp.clone()];
//! let server = tokio::spawn({
//!     let (engine, shutdown) = (engine.clone(), shutdown.clone());
//!     async move { engine.serve(workers, shutdown).await }
//! });
//! let addr = rtsp.listening().await;
//! println!("publish to rtsp://{addr}/live/STREAM");
//! shutdown.cancel();
//! server.await??;
//! # Ok(())
//! # }
//! ```
//!
//! # Decisions
//!
//! - **One RTSP session per connection.** A session id is issued at the
//!   first `SETUP` and checked on every later request, but the session
//!   lives and dies with its TCP connection (as ffmpeg, GStreamer and VLC
//!   use it); requests of one session over several connections are not
//!   supported.
//! - **Input held while the kernel answers** an `ANNOUNCE` or `DESCRIBE`:
//!   a pipelined `SETUP` is not answered before its stream exists.
//! - **Decode timestamps are derived** on ingest (RTP carries presentation
//!   times only) from a reorder depth, without holding frames back: the
//!   H.264 SPS states it (`max_num_reorder_frames`), else it is learned
//!   from the pictures that arrive out of order (see
//!   `tidewater_media::rtp::dts`). A stream whose SPS does not state its
//!   depth has one picture with a repaired decode time, at the first
//!   reordered picture.
//!
//! # Feature flags
//!
//! - `pull`: [`pull`], pulling streams from RTSP sources (IP cameras,
//!   other RTSP servers) with the `retina` client, and where it falls short.
//!
//! # Not yet
//!
//! - AV1, VP8/VP9 payloads (tracks of codecs other than H.264, H.265, AAC
//!   and Opus are ignored on publish and left out of `DESCRIBE`); AAC in
//!   LATM with in-band configuration (`cpresent=1`) or other than AAC-LC
//!   style objects; an `OpusHead` for Opus tracks (none is made).
//! - Receiver reports from readers are only keep-alives (no loss or jitter
//!   statistics).
//! - Later sender reports of a publisher (only those before a track's first
//!   packet place it on the timeline).
//! - `PLAY` with a `Range` (live streams play from the cached GOP) or
//!   `Scale`.
//! - Digest with SHA-256 (RFC 7616): challenges offer MD5, which ffmpeg and
//!   GStreamer speak.
//! - UDP: NAT traversal (datagrams must come from the peer's own IP and
//!   `client_port`), multicast.
//! - Several RTSP sessions on one connection or one session over several
//!   connections; SRTP (RTSPS carries RTP interleaved only).

#![deny(missing_docs)]

mod auth;
mod config;
mod driver;
pub mod egress;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod ingest;
pub mod interleaved;
#[cfg(feature = "pull")]
pub mod pull;
pub mod sdp;
pub mod session;
pub mod target;
mod tls;
mod udp;
mod udp_send;

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use tidewater_core::{BoundAddr, CancellationToken, InboundProtocol, IngestContext};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{info, warn};

pub use auth::{basic_challenge, credentials, digest_challenge, digest_sha256_challenge};
pub use config::{
    ConfigError, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PAYLOAD, DEFAULT_MAX_REQUEST_LEN,
    DEFAULT_PORT, DEFAULT_RTCP_PORT, DEFAULT_RTP_PORT, DEFAULT_SESSION_TIMEOUT,
    DEFAULT_WRITE_TIMEOUT, MAX_PAYLOAD_RANGE, MAX_REQUEST_LEN_RANGE, RtspConfig,
};
pub use error::{Context, Error, Result};
pub use tls::{RELOAD_CHECK_INTERVAL, ServerTls};

/// How long a TLS handshake on the RTSPS listener may take.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The RTSP worker: publish and read on one TCP listener (RTSPS when made
/// [`with_tls`](Rtsp::with_tls)).
#[derive(Debug)]
pub struct Rtsp {
    config: Arc<RtspConfig>,
    bound: BoundAddr,
    tls: Option<Arc<ServerTls>>,
}

impl Rtsp {
    /// A worker with these settings, refused when
    /// [`RtspConfig::validate`] refuses them; it binds when served.
    pub fn new(config: RtspConfig) -> Result<Rtsp, ConfigError> {
        config.validate()?;
        Ok(Rtsp {
            config: Arc::new(config),
            bound: BoundAddr::new(),
            tls: None,
        })
    }

    /// An RTSPS worker: the same service inside TLS with this certificate,
    /// RTP interleaved on the connection only (`udp` is turned off: SRTP
    /// is not offered, and plain RTP next to a TLS session would defeat it).
    pub fn with_tls(config: RtspConfig, tls: ServerTls) -> Result<Rtsp, ConfigError> {
        let mut rtsp = Rtsp::new(RtspConfig {
            udp: false,
            ..config
        })?;
        rtsp.tls = Some(Arc::new(tls));
        Ok(rtsp)
    }

    /// The settings in force.
    pub fn config(&self) -> &RtspConfig {
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
impl InboundProtocol for Rtsp {
    fn name(&self) -> &'static str {
        if self.tls.is_some() { "rtsps" } else { "rtsp" }
    }

    async fn serve(
        &self,
        ctx: IngestContext,
        shutdown: CancellationToken,
    ) -> tidewater_core::Result<()> {
        let addr = self.config.listen;
        let listener =
            TcpListener::bind(addr)
                .await
                .map_err(|source| tidewater_core::Error::Protocol {
                    protocol: "rtsp",
                    source: Box::new(Error::Io {
                        ctx: Context::default(),
                        source: std::io::Error::new(
                            source.kind(),
                            format!("cannot listen on {addr}: {source}"),
                        ),
                    }),
                })?;
        let local = listener.local_addr().unwrap_or(addr);
        let name = self.name();
        info!("{name} listening on {local}");
        let stats = ctx.listener_stats(name);
        let mut receivers = JoinSet::new();
        let udp_media = if self.config.udp {
            let ip = local.ip();
            let media = udp::UdpMedia::bind(
                SocketAddr::new(ip, self.config.rtp_port),
                SocketAddr::new(ip, self.config.rtcp_port),
                self.config.udp_gso,
            )
            .await
            .map_err(|source| tidewater_core::Error::Protocol {
                protocol: "rtsp",
                source: Box::new(Error::Io {
                    ctx: Context::default(),
                    source: std::io::Error::new(
                        source.kind(),
                        format!(
                            "cannot bind the RTP/RTCP ports {}/{} on {ip}: {source}",
                            self.config.rtp_port, self.config.rtcp_port
                        ),
                    ),
                }),
            })?;
            let (rtp, rtcp) = media.ports();
            info!("rtsp RTP/RTCP over UDP on {ip} ports {rtp}/{rtcp}");
            for receiver in media.receivers() {
                receivers.spawn(receiver);
            }
            Some(media)
        } else {
            None
        };
        self.bound.set(Some(local));
        let mut connections = JoinSet::new();
        // A full listener refuses every further connection attempt: a line
        // for each would flood the log.
        let refusals = tidewater_core::logs::LogLimiter::per_listener();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if connections.len() >= self.config.max_connections {
                            stats.refused("too_many_connections");
                            if let Some(note) = refusals.check_now() {
                                warn!(peer = %peer, "rtsp: connection refused: {} connections open ([rtsp] max_connections){note}", self.config.max_connections);
                            }
                            continue;
                        }
                        let open = stats.accepted();
                        let (ctx, config, shutdown) = (ctx.clone(), Arc::clone(&self.config), shutdown.clone());
                        let udp_media = udp_media.clone();
                        let stats = Arc::clone(&stats);
                        let tls = self.tls.as_ref().map(|t| t.acceptor());
                        // A panic in a connection's task ends that connection alone.
                        let contain = Arc::clone(&stats);
                        let lines = Arc::clone(&stats);
                        connections.spawn(tidewater_core::contained(&contain, peer, async move {
                            let _open = open;
                            let local = stream.local_addr().ok();
                            let _ = stream.set_nodelay(true);
                            let result = match tls {
                                None => driver::connection(stream, local, peer, ctx, config, udp_media, stats, shutdown).await,
                                Some(acceptor) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                    Ok(Ok(stream)) => driver::connection(stream, local, peer, ctx, config, udp_media, stats, shutdown).await,
                                    Ok(Err(e)) => Err(Error::tls(format!("handshake failed: {e}")).with_context(Some(peer), None)),
                                    Err(_) => Err(Error::tls("handshake timed out").with_context(Some(peer), None)),
                                },
                            };
                            // A peer can end connections at will (resets,
                            // junk): the listener's limiter bounds the lines.
                            if let Err(e) = result
                                && let Some(note) = lines.log_limit().check_now()
                            {
                                warn!("{name}: {e}{note}");
                            }
                        }));
                    }
                    Err(e) => {
                        warn!("rtsp: accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
            }
        }
        self.bound.set(None);
        tidewater_core::drain_connections(&mut connections).await;
        receivers.shutdown().await;
        Ok(())
    }
}
