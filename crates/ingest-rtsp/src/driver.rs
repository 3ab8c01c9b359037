//! The thin tokio driver: one task per connection reads, writes, sleeps
//! until the session's deadline and asks the kernel.
// Reads network input: no indexing, unwrap, expect or panic that a peer
// could reach (issue 18); where an invariant proves one safe, an allow says which.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tidewater_core::{
    CancellationToken, Catalog, Event, EventRef, Follower, Frame, FrameRef, IngestContext,
    ListenerStats, OutputFormat, PublishSession, RecvError, Request, SharedFrame, TrackInfo,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::config::RtspConfig;
use crate::egress::{Reader, packetize, rtp_format};
use crate::error::{Error, Result};
use crate::ingest::{Ingest, IngestOutput};
use crate::interleaved::Interleaved;
use crate::session::{Session, SessionConfig, SessionEvent, StreamRequest, Transport, status_for};
use crate::udp::{Datagram, QUEUE, Registration, UdpMedia};
use crate::udp_send;

/// How long a `DESCRIBE` waits for a live stream's catalog.
const CATALOG_WAIT: Duration = Duration::from_secs(3);
/// How long the answer to the first `PLAY` waits for the first frame (its
/// time goes into `RTP-Info`).
const FIRST_FRAME_WAIT: Duration = Duration::from_secs(1);

type Closed = Pin<Box<dyn Future<Output = tidewater_core::EndReason> + Send>>;

struct Publishing {
    session: PublishSession,
    ingest: Ingest,
    closed: Closed,
    out: Vec<IngestOutput>,
}

struct Playing {
    /// Follows the stream across republishes within its grace.
    follower: Follower,
    /// The tracks described, in `trackID` order.
    tracks: Vec<TrackInfo>,
    /// The playable tracks of the latest catalog.
    latest_tracks: Vec<TrackInfo>,
    reader: Option<Reader>,
    paused: bool,
    /// After a resume: frames wait for the next keyframe.
    need_keyframe: bool,
    /// The latest frame's presentation time and timescale, for `RTP-Info`.
    latest: Option<(i64, u32)>,
    /// Why the session must end (a republish this reader cannot follow).
    end: Option<String>,
}

/// A frame as a follower hands it out, owned or lent.
trait Framed {
    fn frame(&self) -> &Frame;
    fn catalog(&self) -> &Catalog;
    fn is_gop_start(&self) -> bool;
    fn derived(
        &self,
        format: OutputFormat,
        encode: impl FnOnce(&Frame, &Catalog) -> Bytes,
    ) -> Bytes;
}

impl Framed for SharedFrame {
    fn frame(&self) -> &Frame {
        SharedFrame::frame(self)
    }
    fn catalog(&self) -> &Catalog {
        SharedFrame::catalog(self)
    }
    fn is_gop_start(&self) -> bool {
        SharedFrame::is_gop_start(self)
    }
    fn derived(
        &self,
        format: OutputFormat,
        encode: impl FnOnce(&Frame, &Catalog) -> Bytes,
    ) -> Bytes {
        SharedFrame::derived(self, format, encode)
    }
}

impl Framed for FrameRef<'_> {
    fn frame(&self) -> &Frame {
        FrameRef::frame(self)
    }
    fn catalog(&self) -> &Catalog {
        FrameRef::catalog(self)
    }
    fn is_gop_start(&self) -> bool {
        FrameRef::is_gop_start(self)
    }
    fn derived(
        &self,
        format: OutputFormat,
        encode: impl FnOnce(&Frame, &Catalog) -> Bytes,
    ) -> Bytes {
        FrameRef::derived(self, format, encode)
    }
}

/// Where a reader's stamped media goes before it is written.
#[derive(Default)]
struct Outbox {
    tcp: Interleaved,
    udp: Vec<(u16, Bytes)>,
    rtcp: Vec<(u16, Bytes)>,
}

/// Bytes a reader gathers at most before writing, whatever the coalescing.
const OUTBOX_FULL: usize = 256 * 1024;

impl Outbox {
    /// Whether it holds enough to write now.
    fn is_full(&self) -> bool {
        self.tcp.len() >= OUTBOX_FULL || self.udp.len() >= OUTBOX_FULL / 1024
    }
}

impl Playing {
    /// A new catalog (a new version, or a republish's): the described
    /// tracks are pointed at its tracks, or the session ends.
    fn catalog(&mut self, catalog: &Catalog) {
        self.latest_tracks = crate::sdp::playable_tracks(catalog);
        if let Some(reader) = self.reader.as_mut()
            && !reader.rebind(&self.latest_tracks)
        {
            self.end = Some("the stream was published again with other tracks".to_string());
        }
    }

    /// One frame to this reader: packetized once per stream (shared with
    /// every reader), stamped, and a sender report when one is due.
    fn frame<F: Framed>(&mut self, f: &F, max_payload: usize, out: &mut Outbox) {
        let frame = f.frame();
        let catalog = f.catalog();
        if let Some(track) = catalog.track(frame.track) {
            self.latest = Some((frame.pts, track.timescale));
        }
        if self.paused {
            return;
        }
        if self.need_keyframe {
            if !f.is_gop_start() {
                return;
            }
            self.need_keyframe = false;
        }
        let Some(reader) = self.reader.as_mut() else {
            return;
        };
        let packets = f.derived(rtp_format(max_payload), |fr, c| {
            packetize(fr, c, max_payload)
        });
        reader.stamp_frame(frame, catalog, &packets, &mut out.tcp, &mut out.udp);
        if let (Some(anchor), Some(track)) =
            (self.follower.clock_anchor(), catalog.track(frame.track))
        {
            let wall = anchor.wall_clock_of(frame.pts, track.timescale);
            reader.report(frame.track, wall, &mut out.tcp, &mut out.rtcp);
        }
    }

    /// Every event the follower already holds, until the outbox is full.
    fn gather(&mut self, max_payload: usize, out: &mut Outbox) {
        while !out.is_full() && self.end.is_none() {
            let Some(Ok(next)) = self.follower.try_recv_ref() else {
                break;
            };
            let next = owned(next);
            self.event(&next, max_payload, out);
        }
    }

    /// One event of the follower.
    fn event(&mut self, event: &Event, max_payload: usize, out: &mut Outbox) {
        match event {
            Event::Frame(f) => self.frame(f, max_payload, out),
            Event::Catalog(c) => self.catalog(c),
            Event::Discontinuity { generation } => {
                debug!("rtsp: reader follows republish {generation}");
                if let Some(r) = self.reader.as_mut() {
                    r.discontinuity();
                }
            }
            // The kernel resumes a slow reader at a keyframe.
            Event::Skipped { .. } => {}
        }
    }
}

/// An event lent by the follower, owned (a frame becomes a shared handle).
fn owned(event: EventRef<'_>) -> Event {
    match event {
        EventRef::Frame(f) => Event::Frame(f.to_shared()),
        EventRef::Catalog(c) => Event::Catalog(c),
        EventRef::Skipped { frames } => Event::Skipped { frames },
        EventRef::Discontinuity { generation } => Event::Discontinuity { generation },
    }
}

/// Writes what a reader's outbox holds: interleaved media on the
/// connection, datagrams from the server's RTP and RTCP ports.
async fn flush<W: AsyncWrite + Unpin>(
    wr: &mut W,
    out: &mut Outbox,
    p: &Playing,
    udp_media: Option<&UdpMedia>,
    peer: SocketAddr,
    limit: Duration,
) -> std::io::Result<()> {
    if let Some(media) = udp_media {
        // The whole outbox in one system call where the kernel takes it
        // (see udp_send): a refused datagram is logged and skipped.
        let failed = |to: SocketAddr, e: &std::io::Error| {
            debug!(peer = %peer, "rtsp: udp send to {to}: {e}");
        };
        let sent = udp_send::send_all(&media.rtp, peer.ip(), &out.udp, &media.gso, failed).await;
        p.follower.record_sent(sent);
        udp_send::send_all(&media.rtcp, peer.ip(), &out.rtcp, &media.gso, failed).await;
    }
    out.udp.clear();
    out.rtcp.clear();
    if !out.tcp.is_empty() {
        // One vectored write: the reader's heads and headers, and the
        // stream's shared payloads (see interleaved).
        let sent = out.tcp.write_to(wr, limit).await?;
        p.follower.record_sent(sent);
    }
    Ok(())
}

fn session_id(peer: SocketAddr) -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(peer.to_string().as_bytes());
    format!("{:016X}", h.finish())
}

fn request(req: &StreamRequest, peer: SocketAddr) -> Request {
    let mut r = Request::new(req.target.key.clone(), "rtsp")
        .peer(peer)
        .credentials(req.credentials.clone());
    if let Some(q) = &req.target.query {
        r = r.query(q.clone());
    }
    r
}

/// Counts a kernel refusal from the authorizer in the listener's counters
/// (`unauthorized`, or `rate_limited`), as the other listeners do.
fn count_refusal(stats: &ListenerStats, error: &tidewater_core::Error) {
    if let tidewater_core::Error::Unauthorized { refusal, .. } = error {
        stats.refused(match refusal.kind() {
            tidewater_core::RefusalKind::RateLimited => "rate_limited",
            _ => "unauthorized",
        });
    }
}

/// One RTP or RTCP packet of a publish into the kernel.
/// `arrived` is the arrival time of a UDP datagram (gaps are waited for a
/// jitter window), `None` on the TCP connection.
fn ingest_packet(
    p: &mut Publishing,
    track: usize,
    packet: &Bytes,
    rtcp: bool,
    arrived: Option<std::time::Instant>,
    peer: SocketAddr,
) -> tidewater_core::Result<()> {
    if rtcp {
        p.ingest.push_rtcp(track, packet);
        return Ok(());
    }
    p.out.clear();
    let pushed = match arrived {
        Some(now) => p.ingest.push_at(track, packet, now, &mut p.out),
        None => p.ingest.push(track, packet, &mut p.out),
    };
    if let Err(e) = pushed {
        debug!(peer = %peer, "rtsp: RTP packet of track {track} dropped: {e}");
    }
    publish_outputs(p)
}

/// Hands what the ingest made to the kernel.
fn publish_outputs(p: &mut Publishing) -> tidewater_core::Result<()> {
    for output in p.out.drain(..) {
        match output {
            IngestOutput::Catalog(tracks) => {
                p.session.set_catalog(tracks)?;
            }
            IngestOutput::Frame(frame) => p.session.publish(frame)?,
        }
    }
    Ok(())
}

/// Routes the UDP transports of `setups` to this connection.
fn register_udp(
    udp: Option<&UdpMedia>,
    session: &Session,
    peer: SocketAddr,
    tx: &mpsc::Sender<Datagram>,
) -> Option<Registration> {
    let udp = udp?;
    let sources: Vec<(SocketAddr, bool, usize)> = session
        .setups()
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            Some(Transport::Udp { rtp, rtcp }) => Some([
                (SocketAddr::new(peer.ip(), *rtp), false, i),
                (SocketAddr::new(peer.ip(), *rtcp), true, i),
            ]),
            _ => None,
        })
        .flatten()
        .collect();
    if sources.is_empty() {
        return None;
    }
    debug!(peer = %peer, "rtsp: UDP from {sources:?}");
    Some(udp.register(&sources, tx))
}

async fn write<W: AsyncWrite + Unpin>(
    wr: &mut W,
    bytes: &[u8],
    limit: Duration,
) -> std::io::Result<()> {
    match tokio::time::timeout(limit, wr.write_all(bytes)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "write timed out",
        )),
    }
}

/// Runs one connection (TCP, or TLS over TCP) until it ends; the error
/// (if any) carries the peer. `local` is the listener's side of it.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn connection<S: AsyncRead + AsyncWrite + Send + 'static>(
    stream: S,
    local: Option<SocketAddr>,
    peer: SocketAddr,
    ctx: IngestContext,
    config: Arc<RtspConfig>,
    udp_media: Option<UdpMedia>,
    stats: Arc<ListenerStats>,
    shutdown: CancellationToken,
) -> Result<()> {
    let (mut rd, mut wr): (_, WriteHalf<S>) = tokio::io::split(stream);
    let mut session = Session::new(
        SessionConfig {
            timeout: config.session_timeout,
            max_request_len: config.max_request_len,
            head_timeout: config.head_timeout,
            udp: udp_media.is_some(),
            server_ports: udp_media
                .as_ref()
                .map_or((config.rtp_port, config.rtcp_port), UdpMedia::ports),
        },
        session_id(peer),
        Instant::now().into_std(),
    );
    let mut publishing: Option<Publishing> = None;
    let mut playing: Option<Playing> = None;
    let mut buf = vec![0u8; 16 * 1024];
    let mut outbox = Outbox::default();
    let (datagrams_tx, mut datagrams) = mpsc::channel::<Datagram>(QUEUE);
    let mut registration: Option<Registration> = None;
    // When the media gathered for a reader is written ([rtsp] coalesce_ms).
    let mut flush_at: Option<Instant> = None;
    let ctx_err = |e: Error, session: &Session| e.with_context(Some(peer), session.stream());
    loop {
        // Answer what the session gathered; ask the kernel what it needs.
        while let Some(event) = session.poll_event() {
            match event {
                SessionEvent::Announce {
                    request: req,
                    tracks,
                } => {
                    debug!(peer = %peer, stream = %req.target.key, "rtsp: announced {tracks:?}");
                    let ingest = Ingest::new(&tracks);
                    if !ingest.has_tracks() {
                        warn!(peer = %peer, stream = %req.target.key, "rtsp: announce refused: no H.264 or AAC track");
                        session
                            .refuse(415, &ctx.realm(), ctx.digest_nonce().as_deref())
                            .map_err(|e| ctx_err(e, &session))?;
                        continue;
                    }
                    for i in ingest.ignored() {
                        info!(peer = %peer, stream = %req.target.key, "rtsp: announced track {i} ignored: unsupported codec");
                    }
                    match ctx.open_publish(request(&req, peer)).await {
                        Ok(p) => {
                            info!(peer = %peer, stream = %req.target.key, "rtsp: publishing");
                            let closed = Box::pin(p.closed());
                            publishing = Some(Publishing {
                                session: p,
                                ingest,
                                closed,
                                out: Vec::new(),
                            });
                            session
                                .accept_announce()
                                .map_err(|e| ctx_err(e, &session))?;
                        }
                        Err(e) => {
                            warn!(peer = %peer, stream = %req.target.key, "rtsp: publish refused: {e}");
                            count_refusal(&stats, &e);
                            session
                                .refuse(status_for(&e), &ctx.realm(), ctx.digest_nonce().as_deref())
                                .map_err(|e| ctx_err(e, &session))?;
                        }
                    }
                }
                SessionEvent::Describe(req) => match ctx.follow_live(request(&req, peer)).await {
                    Ok(mut follower) => {
                        let catalog =
                            match tokio::time::timeout(CATALOG_WAIT, follower.recv()).await {
                                Ok(Ok(Event::Catalog(c))) => Some(c),
                                _ => None,
                            };
                        let tracks = catalog
                            .as_deref()
                            .map(crate::sdp::playable_tracks)
                            .unwrap_or_default();
                        if tracks.is_empty() {
                            warn!(peer = %peer, stream = %req.target.key, "rtsp: describe refused: no H.264 or AAC track yet");
                            session
                                .refuse(404, &ctx.realm(), ctx.digest_nonce().as_deref())
                                .map_err(|e| ctx_err(e, &session))?;
                            continue;
                        }
                        let address = local.map_or("0.0.0.0".to_string(), |a| a.ip().to_string());
                        let sdp = crate::sdp::describe(&tracks, follower.id(), &address);
                        session
                            .accept_describe(&sdp, tracks.len())
                            .map_err(|e| ctx_err(e, &session))?;
                        playing = Some(Playing {
                            follower,
                            latest_tracks: tracks.clone(),
                            tracks,
                            reader: None,
                            paused: false,
                            need_keyframe: false,
                            latest: None,
                            end: None,
                        });
                    }
                    Err(e) => {
                        info!(peer = %peer, stream = %req.target.key, "rtsp: read refused: {e}");
                        count_refusal(&stats, &e);
                        session
                            .refuse(status_for(&e), &ctx.realm(), ctx.digest_nonce().as_deref())
                            .map_err(|e| ctx_err(e, &session))?;
                    }
                },
                SessionEvent::Record => {
                    debug!(peer = %peer, "rtsp: recording");
                    registration = register_udp(udp_media.as_ref(), &session, peer, &datagrams_tx);
                }
                SessionEvent::Play { resume } => {
                    let Some(p) = playing.as_mut() else {
                        session.accept_play(&[]).map_err(|e| ctx_err(e, &session))?;
                        continue;
                    };
                    if resume {
                        debug!(peer = %peer, "rtsp: resumed");
                        p.paused = false;
                        p.need_keyframe = true;
                        let info = p
                            .reader
                            .as_ref()
                            .map(|r| r.rtp_info(p.latest))
                            .unwrap_or_default();
                        session
                            .accept_play(&info)
                            .map_err(|e| ctx_err(e, &session))?;
                        continue;
                    }
                    registration = register_udp(udp_media.as_ref(), &session, peer, &datagrams_tx);
                    info!(peer = %peer, stream = session.stream().unwrap_or("-"), "rtsp: playing");
                    let mut reader = Reader::new(&p.tracks, session.setups());
                    if !reader.rebind(&p.latest_tracks) {
                        p.end = Some("the stream's tracks changed since DESCRIBE".to_string());
                    }
                    p.reader = Some(reader);
                    // The first frame's time goes into RTP-Info; catalogs
                    // and republishes before it are taken as they come.
                    let deadline = Instant::now() + FIRST_FRAME_WAIT;
                    let first = loop {
                        match tokio::time::timeout_at(deadline, p.follower.recv()).await {
                            Ok(Ok(Event::Frame(f))) => break Some(f),
                            Ok(Ok(other)) => p.event(&other, config.max_payload, &mut outbox),
                            Ok(Err(_)) | Err(_) => break None,
                        }
                    };
                    let at = first.as_ref().and_then(|f| {
                        f.catalog()
                            .track(f.frame().track)
                            .map(|t| (f.frame().pts, t.timescale))
                    });
                    let info = p
                        .reader
                        .as_ref()
                        .map(|r| r.rtp_info(at))
                        .unwrap_or_default();
                    session
                        .accept_play(&info)
                        .map_err(|e| ctx_err(e, &session))?;
                    if let Some(f) = first {
                        p.frame(&f, config.max_payload, &mut outbox);
                    }
                }
                SessionEvent::Pause => {
                    debug!(peer = %peer, "rtsp: paused");
                    if let Some(p) = playing.as_mut() {
                        p.paused = true;
                    }
                }
                SessionEvent::Rtp { track, packet } => {
                    if let Some(p) = publishing.as_mut() {
                        ingest_packet(p, track, &packet, false, None, peer).map_err(|source| {
                            Error::kernel(source).with_context(Some(peer), session.stream())
                        })?;
                    }
                }
                SessionEvent::Rtcp { track, packet } => {
                    if let Some(p) = publishing.as_mut() {
                        ingest_packet(p, track, &packet, true, None, peer).map_err(|source| {
                            Error::kernel(source).with_context(Some(peer), session.stream())
                        })?;
                    }
                }
                SessionEvent::Teardown => {}
                SessionEvent::BadTarget { method, why } => {
                    stats.refused("bad_stream_key");
                    if let Some(note) = stats.log_limit().check_now() {
                        info!(peer = %peer, "rtsp: {method} refused (400): {why}{note}");
                    }
                }
            }
        }
        let out = session.take_output();
        if !out.is_empty() {
            write(&mut wr, &out, config.write_timeout)
                .await
                .map_err(|source| {
                    Error::Io {
                        ctx: Default::default(),
                        source,
                    }
                    .with_context(Some(peer), session.stream())
                })?;
        }
        if let Some(p) = playing.as_ref()
            && flush_at.is_none()
        {
            // Media stamped while answering (the first frame after PLAY).
            flush(
                &mut wr,
                &mut outbox,
                p,
                udp_media.as_ref(),
                peer,
                config.write_timeout,
            )
            .await
            .map_err(|source| {
                Error::Io {
                    ctx: Default::default(),
                    source,
                }
                .with_context(Some(peer), session.stream())
            })?;
            if let Some(why) = &p.end {
                info!(peer = %peer, stream = session.stream().unwrap_or("-"), "rtsp: reader ended: {why}");
                break;
            }
        }
        if session.is_closed() {
            info!(peer = %peer, stream = session.stream().unwrap_or("-"), "rtsp: session closed");
            break;
        }
        let deadline = Instant::from_std(session.poll_timeout());
        // While a flush is due, the follower is not polled: what the
        // stream publishes meanwhile is gathered when it is (coalescing).
        let sending = playing.as_ref().is_some_and(|p| p.reader.is_some()) && flush_at.is_none();
        // The end of a UDP publish's jitter window, when a gap is waited for.
        let jitter = publishing
            .as_ref()
            .and_then(|p| p.ingest.poll_timeout())
            .map(Instant::from_std);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            read = rd.read(&mut buf) => match read {
                Ok(0) => break,
                Ok(n) => {
                    if let Err(e) = session.handle_input(buf.get(..n).unwrap_or_default(), Instant::now().into_std()) {
                        // The answer to bad input (400) goes out before the close.
                        let out = session.take_output();
                        let _ = write(&mut wr, &out, config.write_timeout).await;
                        let _ = wr.shutdown().await;
                        return Err(ctx_err(e, &session));
                    }
                }
                Err(source) => return Err(Error::Io { ctx: Default::default(), source }.with_context(Some(peer), session.stream())),
            },
            Some(datagram) = datagrams.recv(), if registration.is_some() => {
                session.touch(Instant::now().into_std());
                if let Some(p) = publishing.as_mut() {
                    let now = Instant::now().into_std();
                    ingest_packet(p, datagram.track, &datagram.data, datagram.rtcp, Some(now), peer).map_err(|source| {
                        Error::kernel(source).with_context(Some(peer), session.stream())
                    })?;
                }
            }
            _ = async { match jitter { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } }, if jitter.is_some() => {
                if let Some(p) = publishing.as_mut() {
                    p.out.clear();
                    p.ingest.handle_timeout(Instant::now().into_std(), &mut p.out);
                    publish_outputs(p).map_err(|source| {
                        Error::kernel(source).with_context(Some(peer), session.stream())
                    })?;
                }
            }
            _ = async { match flush_at { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } }, if flush_at.is_some() => {
                flush_at = None;
                if let Some(p) = playing.as_mut() {
                    p.gather(config.max_payload, &mut outbox);
                    flush(&mut wr, &mut outbox, p, udp_media.as_ref(), peer, config.write_timeout)
                        .await
                        .map_err(|source| Error::Io { ctx: Default::default(), source }.with_context(Some(peer), session.stream()))?;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                session.handle_timeout(Instant::now().into_std()).map_err(|e| ctx_err(e, &session))?;
            }
            reason = async { match publishing.as_mut() { Some(p) => (&mut p.closed).await, None => std::future::pending().await } }, if publishing.is_some() => {
                info!(peer = %peer, stream = session.stream().unwrap_or("-"), "rtsp: publish ended: {reason}");
                break;
            }
            event = async { match playing.as_mut() { Some(p) => p.follower.recv().await, None => std::future::pending().await } }, if sending => {
                let Some(p) = playing.as_mut() else { continue };
                match event {
                    Ok(event) => {
                        p.event(&event, config.max_payload, &mut outbox);
                        p.gather(config.max_payload, &mut outbox);
                        // UDP readers are not coalesced: their cost is per
                        // datagram, not per system call (GSO), and gathering
                        // measured no gain there, only latency.
                        if config.coalesce.is_zero() || outbox.is_full() || !outbox.udp.is_empty() {
                            flush(&mut wr, &mut outbox, p, udp_media.as_ref(), peer, config.write_timeout)
                                .await
                                .map_err(|source| Error::Io { ctx: Default::default(), source }.with_context(Some(peer), session.stream()))?;
                        } else {
                            flush_at = Some(Instant::now() + config.coalesce);
                        }
                    }
                    Err(RecvError::Ended(reason)) => {
                        info!(peer = %peer, stream = session.stream().unwrap_or("-"), "rtsp: stream ended: {reason}");
                        break;
                    }
                    Err(e) => {
                        info!(peer = %peer, stream = session.stream().unwrap_or("-"), "rtsp: reader dropped: {e:?}");
                        break;
                    }
                }
            }
        }
    }
    drop(registration);
    if let Some(p) = publishing {
        p.session.finish().await;
    }
    let _ = wr.shutdown().await;
    Ok(())
}
