//! The thin tokio driver: one task per connection, moving bytes between the
//! socket, the sans-IO [`Session`] and the kernel.
//!
//! The driver owns the socket and the clock and does what the session says:
//! it reads while [`Session::wants_input`], hands the subscription's events
//! over while [`Session::wants_media`], writes what the session queued
//! ([`write_out`]), sleeps until [`Session::poll_timeout`] and calls
//! [`Session::handle_timeout`]. What it decides itself is only what the
//! kernel is asked (open a publish, subscribe), what is logged and what is
//! counted in the listener's [`ListenerStats`].

use std::future::Future;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tidewater_core::{
    EndReason, EventRef, Follower, IngestContext, ListenerStats, OpenConnection, PublishSession,
    RecvError, RefusalKind,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::client::PublishClient;
use crate::config::RtmpConfig;
use crate::egress::{BATCH_MESSAGES, EgressInput, Ending, GenerationShift};
use crate::error::{Context, Error, Result};
use crate::ingest::{FlvIngest, IngestEvent};
use crate::limits::Admitted;
use crate::session::{Session, SessionConfig, SessionEvent, StreamRequest};

/// Bytes read from the socket at a time.
const READ_SIZE: usize = 64 * 1024;
/// How long a refused or ended peer is given to read our last words.
const LINGER: Duration = Duration::from_secs(2);

/// Polls a future once, without waiting.
pub(crate) fn now_or_never<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    match fut
        .as_mut()
        .poll(&mut TaskContext::from_waker(Waker::noop()))
    {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// The time the sans-IO side is given: tokio's clock (which tests can pause).
pub(crate) fn clock() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Sleeps until `deadline`; never returns without one.
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// A sans-IO endpoint whose output the drivers write: the server
/// [`Session`] or the push's [`PublishClient`].
pub(crate) trait Endpoint {
    fn poll_transmit(&mut self, now: Instant) -> bool;
    fn io_slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize;
    fn transmitted(&mut self, n: usize, now: Instant);
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_timeout(&mut self, now: Instant) -> Result<()>;
}

impl Endpoint for Session {
    fn poll_transmit(&mut self, now: Instant) -> bool {
        Session::poll_transmit(self, now)
    }
    fn io_slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        Session::io_slices(self, out)
    }
    fn transmitted(&mut self, n: usize, now: Instant) {
        Session::transmitted(self, n, now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Session::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) -> Result<()> {
        Session::handle_timeout(self, now)
    }
}

impl Endpoint for PublishClient {
    fn poll_transmit(&mut self, now: Instant) -> bool {
        PublishClient::poll_transmit(self, now)
    }
    fn io_slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        PublishClient::io_slices(self, out)
    }
    fn transmitted(&mut self, n: usize, now: Instant) {
        PublishClient::transmitted(self, n, now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        PublishClient::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) -> Result<()> {
        PublishClient::handle_timeout(self, now)
    }
}

/// Writes out everything the endpoint queued, with vectored writes of up to
/// [`BATCH_MESSAGES`] messages, honouring its deadlines (a write that makes
/// no progress in time is the endpoint's error); the bytes written.
pub(crate) async fn write_out<E, W>(ep: &mut E, wr: &mut W, ctx: &Context) -> Result<usize>
where
    E: Endpoint,
    W: AsyncWrite + Unpin,
{
    let mut total = 0;
    let mut now = clock();
    while ep.poll_transmit(now) {
        let deadline = ep.poll_timeout();
        let mut slices = [IoSlice::new(&[]); BATCH_MESSAGES];
        let n = ep.io_slices(&mut slices);
        // The write first: one that completes at once never arms the timer.
        let written = tokio::select! {
            biased;
            r = wr.write_vectored(slices.get(..n).unwrap_or_default()) => Some(r),
            () = sleep_until(deadline) => None,
        };
        now = clock();
        match written {
            None => ep.handle_timeout(now)?,
            Some(Ok(0)) => {
                return Err(Error::Io {
                    ctx: ctx.clone(),
                    source: std::io::ErrorKind::WriteZero.into(),
                });
            }
            Some(Ok(w)) => {
                total += w;
                ep.transmitted(w, now);
            }
            Some(Err(source)) => {
                return Err(Error::Io {
                    ctx: ctx.clone(),
                    source,
                });
            }
        }
    }
    Ok(total)
}

/// What an accepted connection holds while it is open and what it counts
/// with: its place under the listener's limits, its count as open, and the
/// listener's counters (for refusals).
pub(crate) struct Slot {
    /// When it was accepted: the handshake deadline runs from then.
    pub accepted: Instant,
    pub stats: Arc<ListenerStats>,
    pub _admitted: Admitted,
    pub _open: OpenConnection,
}

/// One connection, over any byte stream: a TCP socket's halves, or a TLS
/// stream's (RTMPS).
pub(crate) struct Connection<R, W> {
    rd: R,
    wr: W,
    session: Session,
    ctx: Context,
    ingest: IngestContext,
    inbuf: BytesMut,
    stats: Arc<ListenerStats>,
    /// The listener's name (`rtmp`, `rtmps`), for logs.
    name: &'static str,
}

/// Bytes a viewer's socket may hold that the network has not taken yet
/// (`TCP_NOTSENT_LOWAT`); a write beyond waits.
const MAX_UNSENT: u32 = 128 * 1024;

/// Bounds what the kernel queues for a peer that does not read. Without it
/// the send buffer autotunes to megabytes: a viewer that stops reading
/// holds tens of seconds of the stream there, its lag invisible to the
/// subscription, and one that reads a trickle only frees a third of that
/// buffer (when the kernel wakes a writer) every few tens of seconds, so
/// its writes time out instead of its subscription skipping. With the
/// bound a stalled viewer's write blocks within a second or two of stream
/// and times out after `write_timeout`; a slow one falls behind, skips
/// and is evicted. What is in flight (the congestion window) is not
/// limited, so throughput is not.
fn bound_unsent(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_tcp_notsent_lowat(MAX_UNSENT);
}

/// Runs one accepted TCP connection to its end and logs how it ended.
pub(crate) async fn run_connection(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    ingest: IngestContext,
    config: Arc<RtmpConfig>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    bound_unsent(&stream);
    let (rd, wr) = stream.into_split();
    run_halves(rd, wr, peer, "rtmp", &slot, ingest, &config, shutdown).await;
}

/// Runs one accepted RTMPS connection: the TLS handshake (within the
/// handshake timeout), then the same as [`run_connection`].
pub(crate) async fn run_tls_connection(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    acceptor: tokio_rustls::TlsAcceptor,
    ingest: IngestContext,
    config: Arc<RtmpConfig>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    bound_unsent(&stream);
    let limit = config.handshake_timeout;
    let tls = tokio::select! {
        _ = shutdown.cancelled() => return,
        r = tokio::time::timeout_at((slot.accepted + limit).into(), acceptor.accept(stream)) => r,
    };
    match tls {
        Ok(Ok(tls)) => {
            let (rd, wr) = tokio::io::split(tls);
            run_halves(rd, wr, peer, "rtmps", &slot, ingest, &config, shutdown).await;
        }
        Ok(Err(e)) => {
            slot.stats.refused("tls_handshake");
            if let Some(note) = slot.stats.log_limit().check_now() {
                info!(peer = %peer, "rtmps connection closed: tls handshake failed: {e}{note}");
            }
        }
        Err(_) => {
            slot.stats.refused("handshake_timeout");
            if let Some(note) = slot.stats.log_limit().check_now() {
                warn!(peer = %peer, "rtmps connection closed: no publish or play within {limit:?} (handshake_timeout): the tls handshake did not finish{note}");
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_halves<R, W>(
    rd: R,
    wr: W,
    peer: SocketAddr,
    name: &'static str,
    slot: &Slot,
    ingest: IngestContext,
    config: &RtmpConfig,
    shutdown: CancellationToken,
) where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let session = Session::new(
        SessionConfig {
            chunk_size: config.chunk_size,
            max_message_len: config.max_message_len,
            handshake_timeout: config.handshake_timeout,
            read_timeout: config.read_timeout,
            write_timeout: config.write_timeout,
            coalesce: config.coalesce,
            ..SessionConfig::default()
        },
        slot.accepted,
    );
    let mut conn = Connection {
        rd,
        wr,
        session,
        ctx: Context {
            peer: Some(peer),
            stream: None,
        },
        ingest,
        inbuf: BytesMut::with_capacity(READ_SIZE),
        stats: Arc::clone(&slot.stats),
        name,
    };
    match conn.run(&shutdown).await {
        Ok(()) => {}
        Err(e) => {
            let e = e.in_context(&conn.ctx);
            match &e {
                // Junk and stalled handshakes are what anyone can send at
                // will: their lines are rate-limited per listener.
                e if e.is_bad_input() => {
                    if let Some(note) = slot.stats.log_limit().check_now() {
                        warn!("{name} connection closed on bad input: {e}{note}");
                    }
                }
                Error::WriteTimeout { .. } => warn!("{name} viewer disconnected: {e}"),
                Error::NegotiationTimeout { .. } => {
                    slot.stats.refused("handshake_timeout");
                    if let Some(note) = slot.stats.log_limit().check_now() {
                        warn!("{name} connection closed: {e} (handshake_timeout){note}");
                    }
                }
                Error::Kernel { source, .. }
                    if matches!(**source, tidewater_core::Error::Unauthorized { .. }) =>
                {
                    warn!("{name} request refused: {e}")
                }
                Error::Kernel { .. } => info!("{name} request refused: {e}"),
                _ => info!("{name} connection closed: {e}"),
            }
        }
    }
}

/// The listener's refusal reason for a kernel refusal, if it counts one:
/// `unauthorized`, or `rate_limited` when the authorizer said the peer
/// failed too often.
fn refusal_reason(error: &Error) -> Option<&'static str> {
    let Error::Kernel { source, .. } = error else {
        return None;
    };
    match &**source {
        tidewater_core::Error::Unauthorized { refusal, .. } => Some(match refusal.kind() {
            RefusalKind::RateLimited => "rate_limited",
            _ => "unauthorized",
        }),
        _ => None,
    }
}

/// What a turn of the publish loop came to.
enum Turn {
    Continue,
    Done,
}

impl<R, W> Connection<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    async fn run(&mut self, shutdown: &CancellationToken) -> Result<()> {
        let request = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = self.negotiate() => r,
        };
        // A peer that goes away before asking for anything (a port probe, a
        // load balancer's health check, connection churn) is anyone's to
        // repeat at will: its line is rate-limited per listener, as junk is.
        let request = match request {
            Err(e @ Error::Io { .. }) => {
                if let Some(note) = self.stats.log_limit().check_now() {
                    info!(peer = %self.peer(), "{} connection closed before publishing or playing: {e}{note}", self.name);
                }
                return Ok(());
            }
            r => r?,
        };
        match request {
            None => {
                if let Some(note) = self.stats.log_limit().check_now() {
                    info!(peer = %self.peer(), "{} peer disconnected before publishing or playing{note}", self.name);
                }
                Ok(())
            }
            Some((true, r)) => self.publish(r, shutdown).await,
            Some((false, r)) => self.play(r, shutdown).await,
        }
    }

    fn peer(&self) -> String {
        self.ctx.peer.map_or_else(|| "?".into(), |p| p.to_string())
    }

    fn stream_name(&self) -> &str {
        self.ctx.stream.as_deref().unwrap_or("?")
    }

    /// Reads into `inbuf`; `Ok(false)` on end of stream.
    async fn read_some(rd: &mut R, inbuf: &mut BytesMut, ctx: &Context) -> Result<bool> {
        inbuf.clear();
        inbuf.reserve(READ_SIZE);
        match rd.read_buf(inbuf).await {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(source) => Err(Error::Io {
                ctx: ctx.clone(),
                source,
            }),
        }
    }

    /// Reads once, or applies the session's deadline if it comes first;
    /// `Ok(false)` on end of stream.
    async fn read_or_timeout(&mut self) -> Result<bool> {
        let deadline = self.session.poll_timeout();
        tokio::select! {
            biased;
            r = Self::read_some(&mut self.rd, &mut self.inbuf, &self.ctx) => {
                if r? {
                    self.session.handle_input(&self.inbuf)?;
                    return Ok(true);
                }
                Ok(false)
            }
            () = sleep_until(deadline) => {
                self.session.handle_timeout(clock())?;
                Ok(true)
            }
        }
    }

    /// Writes out what the session queued; the bytes written.
    async fn flush(&mut self) -> Result<usize> {
        write_out(&mut self.session, &mut self.wr, &self.ctx).await
    }

    /// Handshake and commands up to a publish or play request.
    async fn negotiate(&mut self) -> Result<Option<(bool, StreamRequest)>> {
        loop {
            if !self.read_or_timeout().await? {
                return Ok(None);
            }
            self.flush().await?;
            while let Some(event) = self.session.poll_event() {
                match event {
                    SessionEvent::Connected { app } => {
                        debug!(peer = %self.peer(), app, "rtmp connect")
                    }
                    SessionEvent::PublishRequested(r) => return Ok(Some((true, r))),
                    SessionEvent::PlayRequested(r) => return Ok(Some((false, r))),
                    SessionEvent::UnknownCommand { name } => {
                        info!(peer = %self.peer(), "rtmp: ignoring unknown command {name:?}")
                    }
                    _ => {}
                }
            }
        }
    }

    /// Refuses the pending request (the session picks the RTMP status for
    /// the error; an authorizer's refusal is counted), then closes politely.
    async fn refuse(&mut self, error: Error) -> Result<()> {
        if let Some(reason) = refusal_reason(&error) {
            self.stats.refused(reason);
        }
        self.session.refuse(&error)?;
        self.flush().await?;
        self.linger().await;
        Err(error)
    }

    /// Half-closes and waits (briefly) for the peer to close, so that our
    /// last messages are read rather than reset.
    async fn linger(&mut self) {
        let _ = self.wr.shutdown().await;
        let _ = tokio::time::timeout(LINGER, async {
            let mut sink = [0u8; 4096];
            while matches!(self.rd.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }

    /// The kernel request for `r`, or the error that refuses it.
    fn request(
        &mut self,
        r: &StreamRequest,
    ) -> std::result::Result<tidewater_core::Request, Error> {
        self.ctx.stream = Some(r.name());
        r.kernel_request(self.ctx.peer).map_err(|e| self.kernel(e))
    }

    fn kernel(&self, source: tidewater_core::Error) -> Error {
        Error::Kernel {
            ctx: self.ctx.clone(),
            source: Box::new(source),
        }
    }

    async fn publish(&mut self, r: StreamRequest, shutdown: &CancellationToken) -> Result<()> {
        let req = match self.request(&r) {
            Ok(req) => req,
            Err(e) => return self.refuse(e).await,
        };
        let mut publish = match self.ingest.open_publish(req).await {
            Ok(p) => p,
            Err(source) => return self.refuse(self.kernel(source)).await,
        };
        self.session.accept_publish()?;
        self.flush().await?;
        info!(peer = %self.peer(), stream = self.stream_name(), "rtmp publish started");
        let result = self.publish_loop(&mut publish, shutdown).await;
        // Leaving the loop drops the connection: a kicked publisher is
        // closed at once.
        publish.finish().await;
        if result.is_ok() {
            info!(peer = %self.peer(), stream = self.stream_name(), "rtmp publish ended");
        }
        result
    }

    async fn publish_loop(
        &mut self,
        publish: &mut PublishSession,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        let mut flv = FlvIngest::new();
        let mut out = Vec::new();
        // Ended from outside (kicked, taken over, reaped): close even while
        // the publisher sends nothing.
        let mut closed = pin!(publish.closed());
        loop {
            let more = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                reason = &mut closed => {
                    info!(peer = %self.peer(), stream = self.stream_name(), "{} publish ended by the server: {reason}; closing the connection", self.name);
                    return Ok(());
                }
                r = self.read_or_timeout() => r?,
            };
            if !more {
                return Ok(());
            }
            self.flush().await?;
            while let Some(event) = self.session.poll_event() {
                if let Turn::Done = self.on_publish_event(event, &mut flv, &mut out, publish)? {
                    return Ok(());
                }
            }
        }
    }

    /// Passes one session event of a publish on to the kernel.
    fn on_publish_event(
        &self,
        event: SessionEvent,
        flv: &mut FlvIngest,
        out: &mut Vec<IngestEvent>,
        publish: &mut PublishSession,
    ) -> Result<Turn> {
        match event {
            SessionEvent::Metadata(props) => flv.push_metadata(&props, out),
            SessionEvent::Video { timestamp, data } => flv.push_video(timestamp, &data, out),
            SessionEvent::Audio { timestamp, data } => flv.push_audio(timestamp, &data, out),
            SessionEvent::PublishFinished => return Ok(Turn::Done),
            SessionEvent::PublishTimedOut { after } => {
                warn!(peer = %self.peer(), stream = self.stream_name(), "rtmp publisher sent nothing for {after:?}: closing");
                return Ok(Turn::Done);
            }
            SessionEvent::UnknownCommand { name } => {
                info!(peer = %self.peer(), stream = self.stream_name(), "rtmp: ignoring unknown command {name:?}")
            }
            _ => {}
        }
        for e in out.drain(..) {
            let r = match e {
                IngestEvent::Catalog(tracks) => {
                    let summary: Vec<_> = tracks.iter().map(|t| t.codec.name()).collect();
                    debug!(peer = %self.peer(), stream = self.stream_name(), "rtmp catalog: {summary:?}");
                    publish.set_catalog(tracks).map(drop)
                }
                IngestEvent::Frame(frame) => publish.publish(frame),
                IngestEvent::Metadata(entries) => {
                    for (k, v) in entries {
                        publish.set_metadata(k, v);
                    }
                    Ok(())
                }
                IngestEvent::Dropped(reason) => {
                    warn!(peer = %self.peer(), stream = self.stream_name(), "rtmp publish: dropping media: {reason}");
                    Ok(())
                }
            };
            if let Err(source) = r {
                return match source {
                    tidewater_core::Error::PublishEnded { reason, .. } => {
                        info!(peer = %self.peer(), stream = self.stream_name(), "rtmp publish ended by the server: {reason}");
                        Ok(Turn::Done)
                    }
                    source => Err(self.kernel(source)),
                };
            }
        }
        Ok(Turn::Continue)
    }

    async fn play(&mut self, r: StreamRequest, shutdown: &CancellationToken) -> Result<()> {
        let req = match self.request(&r) {
            Ok(req) => req,
            Err(e) => return self.refuse(e).await,
        };
        // A viewer follows: it plays on across a republish within the
        // stream's grace, with new sequence headers and timestamps that keep
        // rising. It starts with enough frames for ffmpeg's probe.
        let req = req.start_video_frames(crate::flv::START_VIDEO_FRAMES);
        let key = req.key.clone();
        let sub = match self.ingest.follow_live(req).await {
            Ok(s) => s,
            Err(source) => return self.refuse(self.kernel(source)).await,
        };
        // Video FLV cannot carry (VP8 from a WHIP publish): refused with the
        // reason rather than played as sound alone.
        if let Some(why) = self
            .ingest
            .stream(&key)
            .and_then(|s| s.catalog)
            .and_then(|c| crate::flv::uncarried_video(c.catalog().tracks()))
        {
            warn!(peer = %self.peer(), stream = self.stream_name(), "{} play refused: {why}", self.name);
            drop(sub);
            self.session.reject("NetStream.Play.Failed", &why)?;
            self.flush().await?;
            self.linger().await;
            return Ok(());
        }
        self.session.accept_play()?;
        if let Some(shift) = sub.generation_state::<GenerationShift>() {
            self.session.set_generation(shift);
        }
        self.set_conversions(&sub);
        sub.record_sent(self.flush().await?);
        info!(peer = %self.peer(), stream = self.stream_name(), "{} play started", self.name);
        self.play_loop(sub, shutdown).await
    }

    /// The stream was published anew: the viewer plays on with the new
    /// generation.
    fn republished(&mut self, sub: &Follower, generation: u64) -> Result<()> {
        info!(peer = %self.peer(), stream = self.stream_name(), generation, "{} viewer follows the republished stream", self.name);
        self.session
            .handle_media(EgressInput::Republished { generation })?;
        if let Some(shift) = sub.generation_state::<GenerationShift>() {
            self.session.set_generation(shift);
        }
        self.set_conversions(sub);
        Ok(())
    }

    /// The generation's audio conversions, for an Opus stream's AAC.
    fn set_conversions(&mut self, sub: &Follower) {
        if let Some(running) = sub.generation_state::<crate::egress::Conversions>() {
            let stream = self.stream_name().to_owned();
            self.session.set_conversions(running, &stream);
        }
    }

    async fn play_loop(&mut self, mut sub: Follower, shutdown: &CancellationToken) -> Result<()> {
        // Made once: a `cancelled()` future registers with the token's
        // shared waiter list, which is not something to do per message.
        let mut cancelled = pin!(shutdown.cancelled());
        loop {
            let deadline = self.session.poll_timeout();
            tokio::select! {
                biased;
                _ = &mut cancelled => self.session.end_play(Ending::Shutdown)?,
                r = Self::read_some(&mut self.rd, &mut self.inbuf, &self.ctx), if self.session.wants_input() => {
                    if !r? {
                        info!(peer = %self.peer(), stream = self.stream_name(), "{} viewer left", self.name);
                        return Ok(());
                    }
                    self.session.handle_input(&self.inbuf)?;
                    while let Some(event) = self.session.poll_event() {
                        if event == SessionEvent::PlayFinished {
                            info!(peer = %self.peer(), stream = self.stream_name(), "{} viewer stopped playing", self.name);
                            return Ok(());
                        }
                    }
                }
                ev = sub.recv_ref(), if self.session.wants_media() => match ev {
                    Err(RecvError::Ended(EndReason::Kicked)) => self.session.handle_media(kicked(&sub))?,
                    Ok(EventRef::Discontinuity { generation }) => self.republished(&sub, generation)?,
                    ev => self.session.handle_media(ev)?,
                },
                // The coalescing window closed: back to waiting for input or media.
                () = sleep_until(deadline), if deadline.is_some() => {
                    self.session.handle_timeout(clock())?;
                    continue;
                }
            }
            // Gather what else is ready, for one vectored write.
            while self.session.wants_media() {
                match sub.try_recv_ref() {
                    Some(Err(RecvError::Ended(EndReason::Kicked))) => {
                        self.session.handle_media(kicked(&sub))?
                    }
                    Some(Ok(EventRef::Discontinuity { generation })) => {
                        self.republished(&sub, generation)?
                    }
                    Some(ev) => self.session.handle_media(ev)?,
                    None => break,
                }
            }
            sub.record_sent(self.flush().await?);
            while let Some(event) = self.session.poll_event() {
                match event {
                    SessionEvent::Skipped { frames } => debug!(
                        "rtmp viewer {}: fell behind, skipped {frames} frames to the next keyframe",
                        self.ctx
                    ),
                    SessionEvent::PlayEnded(ending) => {
                        match ending {
                            Ending::Unpublished(reason) => {
                                debug!("rtmp viewer {}: publish ended ({reason})", self.ctx)
                            }
                            Ending::Evicted => warn!(
                                "rtmp viewer {}: evicted for falling behind repeatedly",
                                self.ctx
                            ),
                            Ending::Kicked => {}
                            Ending::Shutdown => {}
                        }
                        info!(peer = %self.peer(), stream = self.stream_name(), "{} play ended: {}", self.name, ending.description());
                        self.linger().await;
                        return Ok(());
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The end of a viewer that ended with [`EndReason::Kicked`]: this reader
/// kicked by an operator, or the stream of a kicked publisher that was not
/// published again within the grace.
fn kicked(sub: &Follower) -> EgressInput<'static> {
    EgressInput::End(if sub.is_kicked() {
        Ending::Kicked
    } else {
        Ending::Unpublished(EndReason::Kicked)
    })
}
