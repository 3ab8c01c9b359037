//! SRT publish and read by stream id for the tidewater kernel, with MPEG-TS
//! in and out, and HTTP-TS (`GET /ts/{app}/{stream}.ts`) from the same bytes.
//!
//! - **Publish**: a caller with stream id `publish:live/cam1` (or the libsrt
//!   access-control form `#!::r=live/cam1,m=publish`) sends MPEG-TS; the
//!   [`TsDemuxer`](tidewater_media::ts::TsDemuxer) turns it into the
//!   catalog (from the PMT and the first parameter sets) and frames in the
//!   kernel's canonical forms (H.264, H.265, AAC, Opus). Lost packets drop
//!   frames up to the next keyframe; a corrupt frame is never published.
//! - **Read**: a caller with `read:live/cam1` (or `#!::r=live/cam1`,
//!   `m=request`) receives the stream as MPEG-TS, starting at once from the
//!   cached GOP. The TS bytes are made once per frame per stream through the
//!   kernel's derived-output cache and shared by every SRT reader and HTTP-TS
//!   response. Continuity counters run on across frames, so the muxer is
//!   state kept per stream behind a mutex; each frame's bytes are made once,
//!   in publish order, by the first reader to reach it (the leading reader).
//!   A reader that falls behind is skipped by the kernel to the next keyframe
//!   and sees the counters jump there: its demuxer counts a loss and resumes
//!   at that keyframe, whose bytes start with a PAT and PMT and whose first
//!   packet carries `random_access_indicator`.
//! - **Stream ids** may carry credentials for the authorizer
//!   (`publish:live/cam1:user:pass`, `read:live/cam1?token=…`). A missing or
//!   malformed stream id, or a refusal, rejects the handshake with a reason
//!   code and one log line naming the peer.
//! - **Encryption** per application or stream ([`PathEncryption`]): the
//!   listener reads the stream id first, then accepts with that path's key; a
//!   caller with a wrong or no passphrase fails the handshake, one announcing
//!   a different key length is rejected before it.
//!
//! ```no_run
//! use std::sync::Arc;
//! use tidewater_core::{AppSpec, CancellationToken, Engine, InboundProtocol};
//! use tidewater_ingest_srt::{Srt, SrtConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::builder().app("live", AppSpec::default()).build()?;
//! let srt = Arc::new(Srt::new(SrtConfig {
//!     listen: "127.0.0.1:8890".parse()?,
//!     ..SrtConfig::default()
//! })?);
//! // ffmpeg -re -i in.mp4 -c copy -f mpegts "srt://127.0.0.1:8890?streamid=publish:live/x"
//! engine.serve(vec![srt as Arc<dyn InboundProtocol>], CancellationToken::new()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # With libsrt 1.5 (ffmpeg 5.1, srt-live-transmit)
//!
//! srt-tokio 0.4.4 interoperates as a listener with libsrt 1.5 callers in
//! both directions, stream id intact, AES encryption included. Where it
//! does not behave, this crate works around it:
//!
//! - srt-protocol 0.4.4 panics (`unimplemented!`) in its listener task
//!   (`protocol/pending_connection/hsv5.rs`, `gen_access_control_response`)
//!   when the key length a caller announces differs from the one it is
//!   accepted with, and when a caller encrypts on a path accepted without a
//!   key. The listener sees the announced key length (`pbkeylen`) before it
//!   answers, so those callers are rejected first (a clean `BadSecret` /
//!   `Unsecure` rejection and a log line). A caller that encrypts *without*
//!   announcing a key length cannot be told from one that does not encrypt:
//!   on a path with a passphrase that is fine (it is accepted with
//!   16-byte keys and srt-protocol rejects a wrong or missing passphrase
//!   itself; a path with 24- or 32-byte keys asks the caller to set
//!   `pbkeylen`), but on a path without one srt-protocol panics. The worker
//!   then logs `srt listener … stopped unexpectedly; binding again` and binds
//!   again within 100 ms; connections open at that moment are lost with the
//!   listener's socket (tested: `the_listener_comes_back_after_srt_protocol_panics`).
//! - srt-tokio's default send buffer is 46592 bytes, 32 packets: a reader
//!   that starts from the cached GOP overflows it at once, srt-tokio drops
//!   the oldest packets without being able to retransmit them, and a libsrt
//!   receiver waits on the gap until its too-late drop discards everything
//!   behind it (srt-live-transmit logs `RCV-DROPPED`). The listener is set to
//!   libsrt's default of 8192 packets.
//! - A stream id that is not UTF-8 or longer than 512 bytes arrives as none
//!   (`listen.rs`, "TODO: handle StreamId parsing error"): such callers are
//!   rejected as having no stream id.
//!
//! Readers do not survive a republish: when the publish ends, each SRT reader
//! and HTTP-TS response ends too (callers reconnect).
//!
//! # Feature flags
//!
//! None.

#![deny(missing_docs)]

mod config;
mod error;
mod http_ts;
mod listener;
mod output;
mod publish;
mod read;
pub mod screen;
pub mod streamid;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use srt_tokio::SrtListener;
use srt_tokio::options::{ListenerOptions, SocketOptions};
use tidewater_core::{BoundAddr, CancellationToken, InboundProtocol, IngestContext};
use tokio::task::JoinSet;
use tracing::{info, warn};

pub use config::{ConfigError, DEFAULT_PORT, MAX_LATENCY, PathEncryption, SrtConfig};
pub use error::{Error, Result};
pub use http_ts::http_ts_router;

/// The SRT worker: publish and read on one UDP listener.
#[derive(Debug)]
pub struct Srt {
    config: Arc<SrtConfig>,
    bound: BoundAddr,
}

impl Srt {
    /// A worker with these settings (checked); it binds when served.
    pub fn new(config: SrtConfig) -> Result<Srt> {
        config.validate()?;
        Ok(Srt {
            config: Arc::new(config),
            bound: BoundAddr::new(),
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &SrtConfig {
        &self.config
    }

    /// The address the listener is bound to, while serving.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.bound.get()
    }

    /// Waits until the listener is bound and returns its address.
    pub async fn listening(&self) -> SocketAddr {
        self.bound.wait().await
    }

    async fn bind(
        &self,
        addr: SocketAddr,
    ) -> Result<(SrtListener, srt_tokio::SrtIncoming, SocketAddr)> {
        let bind_err = |source| Error::Bind { addr, source };
        let udp = udp_socket(addr).map_err(bind_err)?;
        // srt-tokio wants the port it listens on up front: bind first, then tell it.
        let local = udp.local_addr().map_err(bind_err)?;
        let mut socket = SocketOptions::default();
        socket.receiver.latency = self.config.latency;
        socket.sender.peer_latency = self.config.latency;
        // srt-tokio's default send buffer is 46592 bytes (32 packets): a reader
        // starting from the cached GOP overflows it, srt-tokio then drops the
        // oldest packets without being able to retransmit them, and a libsrt
        // receiver stalls on the gap until its too-late drop. libsrt's own
        // default is 8192 packets.
        socket.sender.buffer_size = srt_tokio::options::ByteCount(8192 * 1456);
        let options = ListenerOptions::with(local, socket).map_err(|e| {
            bind_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                e.to_string(),
            ))
        })?;
        let (listener, incoming) = SrtListener::bind_with_socket(options, udp)
            .await
            .map_err(bind_err)?;
        Ok((listener, incoming, local))
    }
}

/// Socket buffers of the listener's UDP socket: every connection shares it.
const UDP_BUFFER: usize = 8 << 20;

/// A non-blocking UDP socket bound to `addr`, with large buffers (the
/// kernel may cap them; that is not an error).
fn udp_socket(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let _ = socket.set_recv_buffer_size(UDP_BUFFER);
    let _ = socket.set_send_buffer_size(UDP_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}

#[async_trait]
impl InboundProtocol for Srt {
    fn name(&self) -> &'static str {
        "srt"
    }

    async fn serve(
        &self,
        ctx: IngestContext,
        shutdown: CancellationToken,
    ) -> tidewater_core::Result<()> {
        let protocol_err = |e: Error| tidewater_core::Error::Protocol {
            protocol: "srt",
            source: Box::new(e),
        };
        let (mut listener, mut incoming, local) =
            self.bind(self.config.listen).await.map_err(protocol_err)?;
        info!(
            "srt listening on {local} (udp, latency {:?})",
            self.config.latency
        );
        self.bound.set(Some(local));
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                req = incoming.incoming().next() => match req {
                    Some(req) => {
                        if connections.len() >= self.config.max_connections {
                            warn!(peer = %req.remote(), "srt: {} connections open, refusing another", connections.len());
                            let reason = srt_protocol::packet::RejectReason::Server(
                                srt_protocol::packet::ServerRejectReason::Overload,
                            );
                            tokio::spawn(async move { let _ = req.reject(reason).await; });
                            continue;
                        }
                        connections.spawn(listener::handle(
                            req,
                            ctx.clone(),
                            Arc::clone(&self.config),
                            shutdown.clone(),
                        ));
                    }
                    None => {
                        // The listener task ended on its own (srt-protocol panicked
                        // on a handshake): bind again on the same address.
                        warn!("srt listener on {local} stopped unexpectedly; binding again");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        match self.bind(local).await {
                            Ok((l, i, _)) => {
                                listener = l;
                                incoming = i;
                            }
                            Err(e) => {
                                self.bound.set(None);
                                return Err(protocol_err(e));
                            }
                        }
                    }
                },
            }
        }
        // The listener's close unwraps its task's result: keep a panic there in its own task.
        let _ = tokio::spawn(async move { listener.close().await }).await;
        tidewater_core::drain_connections(&mut connections).await;
        self.bound.set(None);
        info!("srt listener on {local} stopped");
        Ok(())
    }
}
