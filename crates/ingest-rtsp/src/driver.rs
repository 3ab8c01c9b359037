//! The thin tokio driver: one task per connection reads, writes, sleeps
//! until the session's deadline and asks the kernel.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tidewater_core::{
    CancellationToken, Event, IngestContext, ListenerStats, PublishSession, RecvError, Request,
    Subscription, TrackInfo,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::config::RtspConfig;
use crate::egress::{Reader, packetize, rtp_format};
use crate::error::{Error, Result};
use crate::ingest::{Ingest, IngestOutput};
use crate::session::{Session, SessionConfig, SessionEvent, StreamRequest, Transport, status_for};
use crate::udp::{Datagram, QUEUE, Registration, UdpMedia};

/// How long a `DESCRIBE` waits for a live stream's catalog.
const CATALOG_WAIT: Duration = Duration::from_secs(3);

type Closed = Pin<Box<dyn Future<Output = tidewater_core::EndReason> + Send>>;

struct Publishing {
    session: PublishSession,
    ingest: Ingest,
    closed: Closed,
    out: Vec<IngestOutput>,
}

struct Playing {
    subscription: Subscription,
    tracks: Vec<TrackInfo>,
    reader: Option<Reader>,
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
fn ingest_packet(
    p: &mut Publishing,
    track: usize,
    packet: &Bytes,
    rtcp: bool,
    peer: SocketAddr,
) -> tidewater_core::Result<()> {
    if rtcp {
        p.ingest.push_rtcp(track, packet);
        return Ok(());
    }
    p.out.clear();
    if let Err(e) = p.ingest.push(track, packet, &mut p.out) {
        debug!(peer = %peer, "rtsp: RTP packet of track {track} dropped: {e}");
    }
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

/// A sender report after a frame, on the publish's wall clock.
fn report(
    reader: &mut Reader,
    subscription: &Subscription,
    frame: &tidewater_core::Frame,
    catalog: &tidewater_core::Catalog,
    tcp: &mut BytesMut,
    udp: &mut Vec<(u16, Bytes)>,
) {
    let (Some(anchor), Some(track)) = (subscription.clock_anchor(), catalog.track(frame.track))
    else {
        return;
    };
    let wall = anchor.wall_clock_of(frame.pts, track.timescale);
    reader.report(frame.track, wall, tcp, udp);
}

async fn write(wr: &mut OwnedWriteHalf, bytes: &[u8], limit: Duration) -> std::io::Result<()> {
    match tokio::time::timeout(limit, wr.write_all(bytes)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "write timed out",
        )),
    }
}

/// Runs one connection until it ends; the error (if any) carries the peer.
pub(crate) async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: IngestContext,
    config: Arc<RtspConfig>,
    udp_media: Option<UdpMedia>,
    stats: Arc<ListenerStats>,
    shutdown: CancellationToken,
) -> Result<()> {
    let local = stream.local_addr().ok();
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut session = Session::new(
        SessionConfig {
            timeout: config.session_timeout,
            max_request_len: config.max_request_len,
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
    let mut tcp = BytesMut::new();
    let mut udp: Vec<(u16, Bytes)> = Vec::new();
    let mut udp_rtcp: Vec<(u16, Bytes)> = Vec::new();
    let (datagrams_tx, mut datagrams) = mpsc::channel::<Datagram>(QUEUE);
    let mut registration: Option<Registration> = None;
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
                SessionEvent::Describe(req) => match ctx.subscribe(request(&req, peer)).await {
                    Ok(mut subscription) => {
                        let catalog =
                            match tokio::time::timeout(CATALOG_WAIT, subscription.recv()).await {
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
                        let sdp = crate::sdp::describe(&tracks, subscription.id(), &address);
                        session
                            .accept_describe(&sdp, tracks.len())
                            .map_err(|e| ctx_err(e, &session))?;
                        playing = Some(Playing {
                            subscription,
                            tracks,
                            reader: None,
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
                SessionEvent::Play => {
                    registration = register_udp(udp_media.as_ref(), &session, peer, &datagrams_tx);
                    if let Some(p) = playing.as_mut() {
                        info!(peer = %peer, stream = ?session.stream(), "rtsp: playing");
                        p.reader = Some(Reader::new(&p.tracks, session.setups()));
                    }
                }
                SessionEvent::Rtp { track, packet } => {
                    if let Some(p) = publishing.as_mut() {
                        ingest_packet(p, track, &packet, false, peer).map_err(|source| {
                            Error::kernel(source).with_context(Some(peer), session.stream())
                        })?;
                    }
                }
                SessionEvent::Rtcp { track, packet } => {
                    if let Some(p) = publishing.as_mut() {
                        ingest_packet(p, track, &packet, true, peer).map_err(|source| {
                            Error::kernel(source).with_context(Some(peer), session.stream())
                        })?;
                    }
                }
                SessionEvent::Teardown => {}
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
        if session.is_closed() {
            info!(peer = %peer, stream = ?session.stream(), "rtsp: session closed");
            break;
        }
        let deadline = Instant::from_std(session.poll_timeout());
        let sending = playing.as_ref().is_some_and(|p| p.reader.is_some());
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
                    ingest_packet(p, datagram.track, &datagram.data, datagram.rtcp, peer).map_err(|source| {
                        Error::kernel(source).with_context(Some(peer), session.stream())
                    })?;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                session.handle_timeout(Instant::now().into_std()).map_err(|e| ctx_err(e, &session))?;
            }
            reason = async { publishing.as_mut().map(|p| &mut p.closed).expect("guarded").await }, if publishing.is_some() => {
                info!(peer = %peer, stream = ?session.stream(), "rtsp: publish ended: {reason:?}");
                break;
            }
            event = async { playing.as_mut().map(|p| &mut p.subscription).expect("guarded").recv().await }, if sending => {
                let Some(p) = playing.as_mut() else { continue };
                match event {
                    Ok(Event::Frame(frame)) => {
                        let format = rtp_format(config.max_payload);
                        let max = config.max_payload;
                        let packets: Bytes = frame.derived(format, |f, c| packetize(f, c, max));
                        if let Some(reader) = p.reader.as_mut() {
                            reader.stamp(frame.frame().track, &packets, &mut tcp, &mut udp);
                            report(reader, &p.subscription, frame.frame(), frame.catalog(), &mut tcp, &mut udp_rtcp);
                        }
                        // Gather what is already there before writing.
                        while tcp.len() < 256 * 1024 {
                            let Some(Ok(Event::Frame(next))) = p.subscription.try_recv() else { break };
                            let packets = next.derived(format, |f, c| packetize(f, c, max));
                            if let Some(reader) = p.reader.as_mut() {
                                reader.stamp(next.frame().track, &packets, &mut tcp, &mut udp);
                                report(reader, &p.subscription, next.frame(), next.catalog(), &mut tcp, &mut udp_rtcp);
                            }
                        }
                        if let Some(media) = udp_media.as_ref() {
                            for (port, datagram) in udp.drain(..) {
                                let to = SocketAddr::new(peer.ip(), port);
                                if let Err(e) = media.rtp.send_to(&datagram, to).await {
                                    debug!(peer = %peer, "rtsp: udp send to {to}: {e}");
                                }
                                p.subscription.record_sent(datagram.len());
                            }
                        }
                        if let Some(media) = udp_media.as_ref() {
                            for (port, datagram) in udp_rtcp.drain(..) {
                                let to = SocketAddr::new(peer.ip(), port);
                                if let Err(e) = media.rtcp.send_to(&datagram, to).await {
                                    debug!(peer = %peer, "rtsp: udp send to {to}: {e}");
                                }
                            }
                        }
                        udp.clear();
                        udp_rtcp.clear();
                        if !tcp.is_empty() {
                            let bytes = tcp.split();
                            p.subscription.record_sent(bytes.len());
                            write(&mut wr, &bytes, config.write_timeout)
                                .await
                                .map_err(|source| Error::Io { ctx: Default::default(), source }.with_context(Some(peer), session.stream()))?;
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Ended(reason)) => {
                        info!(peer = %peer, stream = ?session.stream(), "rtsp: stream ended: {reason:?}");
                        break;
                    }
                    Err(e) => {
                        info!(peer = %peer, stream = ?session.stream(), "rtsp: reader dropped: {e:?}");
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
