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
//! - **Operators**: every connection served is counted in the listener's
//!   counters (`IngestContext::listener_stats("srt")`: accepted, open) and
//!   every refusal by a fixed reason: `bad_stream_id`, `malformed`,
//!   `unsupported` (file mode, packet filters, groups, HSv4), `unsecure`,
//!   `bad_key_length`, `bad_passphrase`, `unauthorized`, `not_found`,
//!   `already_publishing`, `too_many_publishers`, `too_many_connections`,
//!   `handshake_timeout`, `internal`, `refused` (any other kernel refusal).
//!   Datagrams dropped for what they are count there too: `not_srt` (not an
//!   SRT packet at all) and `no_session` (SRT-shaped, but of no connection
//!   or handshake: junk, or a packet late after a close); they are logged
//!   like refusals, `srt: dropped a datagram from {peer}: …`.
//!   Each refusal is one log line, `srt connection refused: …`, rate-limited
//!   per listener (20 lines per 10 s, then a count of those suppressed), with
//!   the peer and the stream (a stream id that does not parse is shown without
//!   credentials or query). An operator's kick
//!   ([`Engine::kick`](tidewater_core::Engine::kick)) of a reader or a
//!   publisher shuts its connection down at once (a shutdown to the peer,
//!   nothing more sent), even if the publisher sends nothing; the bytes sent
//!   to each reader are counted per frame (`Subscription::record_sent`).
//! - **Limits** ([`SrtConfig`]): callers at once, connected or in their
//!   handshake, in all (`max_connections`, 20 000), per IP address
//!   (`max_connections_per_ip`, 200) and per loopback address
//!   (`max_connections_per_loopback_ip`, 2 000); a caller over a limit is
//!   answered `REJX_OVERLOAD` (2402, libsrt's "server overloaded") at its
//!   first handshake packet, before anything of it is kept — its stream id is
//!   not known yet then — and libsrt gives up at once. A caller whose
//!   handshake has not completed within `handshake_timeout` (5 s) of its
//!   first packet is forgotten and its place freed.
//! - **Encryption** per application or stream ([`PathEncryption`]): the
//!   listener reads the stream id first, then accepts with that path's key; a
//!   caller with a wrong passphrase fails the handshake, one with none, or
//!   announcing a different key length, or encrypting on a path without a
//!   passphrase, is rejected before it.
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
//! SRT is srt-protocol 0.4.4's sans-IO state machines — its
//! `MultiplexListener` for handshakes, a `DuplexConnection` per connection —
//! driven by this crate's own tokio code, which owns the UDP socket
//! (`demux`, `connection`). They interoperate with libsrt 1.5 callers in both
//! directions, stream id intact, AES encryption included. Where srt-protocol
//! does not behave, this crate works around it:
//!
//! - **Handshakes that make srt-protocol panic never reach it.** srt-protocol
//!   0.4.4 panics (`unimplemented!`, `get_u8` past the end) in its packet
//!   parser on a handshake with a congestion-control extension (every libsrt
//!   caller in file mode, `transtype=file`), a packet filter or socket group
//!   extension, or an empty string extension, and on SRT control packets with
//!   an empty string or short group message; and in its listener
//!   (`protocol/pending_connection/hsv5.rs`) when accepting a caller that sends
//!   key material on a path without a passphrase — the issue's
//!   `srt-live-transmit "srt://…?streamid=read:live/x&passphrase=…"`, and
//!   ffmpeg with `passphrase=` — key material of the wrong kind, or a key size
//!   other than the one accepted with; it never answers the acceptance of a
//!   handshake without the HSv5 request. With srt-tokio 0.4.4 each of these
//!   killed the one listener task that reads the socket for every connection:
//!   all publishers and readers were cut. srt-tokio gives no way in: its
//!   listener reads the socket itself, its packet socket is private and its
//!   connections cannot be made from srt-protocol's outside it. So this crate
//!   owns the socket. Every datagram first passes [`screen`], a sans-IO
//!   reader of just the control header, the handshake CIF and the HSv5
//!   extensions (walked exactly as srt-protocol walks them): what its parser
//!   would panic on is refused with libsrt's code (`REJ_CONGESTION`,
//!   `REJ_FILTER`, `REJ_GROUP`, `REJ_ROGUE`) or, if not a handshake, dropped.
//!   What passes is parsed by srt-protocol, and the key material, handshake
//!   request and announced key length of each conclusion are checked before
//!   the listener is asked to accept it: a caller with a passphrase on a path
//!   without one gets `REJ_UNSECURE`, a key length mismatch `REJ_BADSECRET`,
//!   the rest `REJ_ROGUE`. Each refusal is one log line,
//!   `srt connection refused: {mode} {path}: {why}`, with the peer. Should
//!   srt-protocol still panic on a packet, the panic is caught at that call
//!   (the parser, or the listener's step for that peer) and only that peer's
//!   handshake is forgotten; a panic in a connection's own code ends that
//!   connection's task only. The defect of srt-tokio 0.4.4 (one stray caller
//!   cuts every session) is closed: tested with the issue's callers while a
//!   publish and its reader go on, the reader decoding every frame
//!   (`tests/screening.rs`), and the screen is fuzzed
//!   (`fuzz/fuzz_targets/srt_screen.rs`, twin `tests/screen_props.rs`).
//!
//!   Why not the alternatives: a second UDP hop in front of srt-tokio (an
//!   in-process relay) would cost a send and a receive more per packet in each
//!   direction and hide the peers' addresses behind per-peer relay sockets;
//!   restarting srt-tokio's listener after a panic (what this crate did
//!   before) rebinds within 100 ms but drops every open connection; moving to
//!   libsrt (the maintained implementation) means a C library and unsafe
//!   bindings for what a screen in front of srt-protocol settles. Measured
//!   cost (release build, this 2-core machine): the screen takes about 7 ns
//!   on a data packet and 95 ns on a libsrt conclusion, next to srt-protocol's
//!   own parse of the same packets (about 105 ns and 310 ns); the driver does
//!   the work srt-tokio's did (one receive, one parse, one queue per packet),
//!   and `cargo bench -p tidewater-ingest-srt --bench srt -- --sizes 200,400`
//!   against the server before and after this change measured the same
//!   server CPU within the runs' noise (200 readers: 0.31 to 0.47 cores
//!   before, 0.31 to 0.43 after; 400 readers: 0.68 to 0.73 before, 0.58 to
//!   0.78 after).
//! - The listener's packets reach a connection through a bounded queue that
//!   never blocks the listener (a full queue drops the packet; SRT
//!   retransmits it): a slow connection only hurts itself. A connection's
//!   task takes what waits for it when it wakes (up to 64 routed packets:
//!   a reader's ACKs; up to 128 messages: a frame's dozen), runs
//!   srt-protocol's timers, then sends everything srt-protocol has to send in
//!   one `sendmmsg` (`outbox`), not one `sendto` per packet, and a run of
//!   equal-sized data packets to the reader (a frame) as one `sendmsg` with
//!   UDP GSO (`UDP_SEGMENT`) where the kernel takes it. The task that reads
//!   the socket runs outside tokio's cooperative budget (it yields every
//!   2048 datagrams): under the budget it read 128 datagrams, then waited
//!   behind every connection's task while the socket's queue — every
//!   reader's ACKs and the publishers' packets — grew. Closed connections
//!   and handshakes older than [`SrtConfig::handshake_timeout`] are forgotten
//!   twice a second (srt-protocol's listener keeps them for ever), and a
//!   packet from an unknown peer that is not an induction is dropped rather
//!   than opening a session.
//! - srt-protocol's default send buffer is 46592 bytes, 32 packets: a reader
//!   that starts from the cached GOP overflows it at once, srt-protocol drops
//!   the oldest packets without being able to retransmit them, and a libsrt
//!   receiver waits on the gap until its too-late drop discards everything
//!   behind it (srt-live-transmit logs `RCV-DROPPED`). The listener is set to
//!   libsrt's default of 8192 packets.
//! - srt-protocol sends its shutdown as soon as a reader has acknowledged
//!   the last packet, and libsrt then drops what it holds for play-out: the
//!   last latency's worth of the stream. When the stream ends, a reader's
//!   connection stays open one latency (and 250 ms) longer, so it plays all.
//! - A stream id longer than 512 bytes arrives as none (`listen.rs`, "TODO:
//!   handle StreamId parsing error"): such callers are rejected as having no
//!   stream id; one that is not UTF-8 is refused by the screen.
//! - srt-live-transmit 1.5 sometimes reports a rejection and then does not
//!   exit (Haivision/srt#2776); the refusal is still made and logged.
//!
//! Readers survive a republish: when the publish ends, each SRT reader and
//! HTTP-TS response waits up to the stream's `follow_grace` and plays on with
//! the new publish as one continuous MPEG-TS (the new muxer continues the
//! old one's continuity counters, PMT version and timeline; see the
//! `output` module); it ends when nobody publishes again within the grace.
//!
//! # Feature flags
//!
//! None.

#![deny(missing_docs)]
// The crate reads what the network sends (handshakes, packets, stream ids,
// TS) and its config: no indexing, slicing, unwrap, expect or panic outside
// tests. The parsing modules also deny it in their own first lines.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::expect_used,
        clippy::unwrap_used,
        clippy::panic
    )
)]

mod config;
mod connection;
mod demux;
mod error;
mod http_ts;
mod listener;
mod outbox;
mod output;
mod peers;
mod publish;
mod read;
pub mod screen;
pub mod streamid;
mod transcoded;

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use srt_protocol::options::{ByteCount, ListenerOptions, SocketOptions};
use srt_protocol::settings::ConnInitSettings;
use tidewater_core::{BoundAddr, CancellationToken, InboundProtocol, IngestContext, ListenerStats};
use tokio::task::JoinSet;
use tracing::info;

pub use config::{
    ConfigError, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_IP, DEFAULT_MAX_CONNECTIONS_PER_LOOPBACK_IP, DEFAULT_PORT,
    MAX_HANDSHAKE_TIMEOUT, MAX_LATENCY, PathEncryption, SrtConfig,
};
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

    fn bind(
        &self,
        addr: SocketAddr,
        stats: Arc<ListenerStats>,
    ) -> Result<(demux::Listener, SocketAddr)> {
        let bind_err = |source| Error::Bind { addr, source };
        let udp = udp_socket(addr).map_err(bind_err)?;
        let local = udp.local_addr().map_err(bind_err)?;
        let mut socket = SocketOptions::default();
        socket.receiver.latency = self.config.latency;
        socket.sender.peer_latency = self.config.latency;
        // srt-protocol's default send buffer is 46592 bytes (32 packets): a
        // reader starting from the cached GOP overflows it, srt-protocol then
        // drops the oldest packets without being able to retransmit them, and
        // a libsrt receiver stalls on the gap until its too-late drop.
        // libsrt's own default is 8192 packets.
        socket.sender.buffer_size = ByteCount(8192 * 1456);
        let options = ListenerOptions::with(local, socket).map_err(|e| {
            bind_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                e.to_string(),
            ))
        })?;
        let settings = ConnInitSettings::from(options.into_value().socket);
        let limits = peers::Limits::of(&self.config);
        let listener = demux::spawn(udp, settings, limits, stats).map_err(bind_err)?;
        Ok((listener, local))
    }
}

/// Socket buffers of the listener's UDP socket: every connection shares it.
const UDP_BUFFER: usize = 8 << 20;

/// A non-blocking UDP socket bound to `addr`, with large buffers (the
/// kernel may cap them: not an error, but logged, since every reader's
/// ACKs wait in the one receive buffer).
fn udp_socket(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let _ = socket.set_recv_buffer_size(UDP_BUFFER);
    let _ = socket.set_send_buffer_size(UDP_BUFFER);
    // Linux reports twice what it grants (the doubling covers its
    // bookkeeping) and grants at most net.core.rmem_max / wmem_max.
    let granted = |got: std::io::Result<usize>| got.map_or(0, |b| b / 2);
    let (recv, send) = (
        granted(socket.recv_buffer_size()),
        granted(socket.send_buffer_size()),
    );
    if recv < UDP_BUFFER || send < UDP_BUFFER {
        info!(
            "srt: the kernel capped the listener's socket buffers at {recv} bytes (receive) and {send} (send) of {UDP_BUFFER} asked; with hundreds of readers raise net.core.rmem_max and wmem_max"
        );
    }
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
        let stats = ctx.listener_stats("srt");
        let (mut listener, local) = self
            .bind(self.config.listen, Arc::clone(&stats))
            .map_err(protocol_err)?;
        info!(
            "srt listening on {local} (udp, latency {:?})",
            self.config.latency
        );
        self.bound.set(Some(local));
        let mut connections = JoinSet::new();
        let ended = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break None,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                ended = &mut listener.task => break Some(ended),
                // The listener holds callers to the connection limits.
                Some(req) = listener.requests.recv() => {
                    // A panic in a connection's task ends that connection alone.
                    let peer = req.remote();
                    connections.spawn(tidewater_core::contained(
                        &stats,
                        peer,
                        listener::handle(
                            req,
                            ctx.clone(),
                            Arc::clone(&self.config),
                            Arc::clone(&stats),
                            shutdown.clone(),
                        ),
                    ));
                }
            }
        };
        // The connections close with the listener still routing their packets.
        tidewater_core::drain_connections(&mut connections).await;
        drop(listener);
        self.bound.set(None);
        if let Some(ended) = ended {
            // The task that owns the socket never returns; it can only panic.
            let why = ended
                .err()
                .map_or("it returned".to_string(), |e| e.to_string());
            return Err(protocol_err(Error::Listener(format!(
                "the srt listener on {local} ended: {why}"
            ))));
        }
        info!("srt listener on {local} stopped");
        Ok(())
    }
}
