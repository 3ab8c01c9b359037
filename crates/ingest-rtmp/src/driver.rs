//! The thin tokio driver: one task per connection, moving bytes between the
//! socket, the sans-IO [`Session`] and the kernel.

use std::collections::VecDeque;
use std::future::Future;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tidewater_core::{
    Catalog, EventRef, IngestContext, PublishSession, RecvError, Request, StreamKey, Subscription,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::RtmpConfig;
use crate::egress;
use crate::error::{Context, Error, Result};
use crate::flv;
use crate::ingest::{FlvIngest, IngestEvent};
use crate::session::{Session, SessionConfig, SessionEvent, StreamRequest};

/// Bytes read from the socket at a time.
const READ_SIZE: usize = 64 * 1024;
/// Most messages and bytes gathered for one vectored write.
const BATCH_MESSAGES: usize = 64;
const BATCH_BYTES: usize = 512 * 1024;
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

/// One connection, over any byte stream: a TCP socket's halves, or a TLS
/// stream's (RTMPS).
pub(crate) struct Connection<R, W> {
    rd: R,
    wr: W,
    session: Session,
    ctx: Context,
    ingest: IngestContext,
    config: Arc<RtmpConfig>,
    inbuf: BytesMut,
}

/// Runs one accepted TCP connection to its end and logs how it ended.
pub(crate) async fn run_connection(
    stream: TcpStream,
    peer: SocketAddr,
    ingest: IngestContext,
    config: Arc<RtmpConfig>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    run_halves(rd, wr, peer, ingest, config, shutdown).await;
}

/// Runs one accepted RTMPS connection: the TLS handshake (within the
/// handshake timeout), then the same as [`run_connection`].
pub(crate) async fn run_tls_connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    ingest: IngestContext,
    config: Arc<RtmpConfig>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let limit = config.handshake_timeout;
    let tls = tokio::select! {
        _ = shutdown.cancelled() => return,
        r = tokio::time::timeout(limit, acceptor.accept(stream)) => r,
    };
    match tls {
        Ok(Ok(tls)) => {
            let (rd, wr) = tokio::io::split(tls);
            run_halves(rd, wr, peer, ingest, config, shutdown).await;
        }
        Ok(Err(e)) => info!(peer = %peer, "rtmps connection closed: tls handshake failed: {e}"),
        Err(_) => info!(peer = %peer, "rtmps connection closed: no tls handshake within {limit:?}"),
    }
}

async fn run_halves<R, W>(
    rd: R,
    wr: W,
    peer: SocketAddr,
    ingest: IngestContext,
    config: Arc<RtmpConfig>,
    shutdown: CancellationToken,
) where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let session = Session::new(SessionConfig {
        chunk_size: config.chunk_size,
        max_message_len: config.max_message_len,
        ..SessionConfig::default()
    });
    let mut conn = Connection {
        rd,
        wr,
        session,
        ctx: Context {
            peer: Some(peer),
            stream: None,
        },
        ingest,
        config,
        inbuf: BytesMut::with_capacity(READ_SIZE),
    };
    match conn.run(&shutdown).await {
        Ok(()) => {}
        Err(e) => {
            let e = e.in_context(&conn.ctx);
            match &e {
                e if e.is_bad_input() => warn!("rtmp connection closed on bad input: {e}"),
                Error::WriteTimeout { .. } => warn!("rtmp viewer disconnected: {e}"),
                Error::Kernel { .. } => info!("rtmp request refused: {e}"),
                _ => info!("rtmp connection closed: {e}"),
            }
        }
    }
}

impl<R, W> Connection<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    async fn run(&mut self, shutdown: &CancellationToken) -> Result<()> {
        let limit = self.config.handshake_timeout;
        let request = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = tokio::time::timeout(limit, self.negotiate()) => match r {
                Ok(r) => r?,
                Err(_) => return Err(Error::NegotiationTimeout { ctx: self.ctx.clone(), after: limit }),
            },
        };
        match request {
            None => {
                info!(peer = %self.peer(), "rtmp peer disconnected before publishing or playing");
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

    async fn flush(&mut self) -> Result<()> {
        while let Some(bytes) = self.session.take_output() {
            let mut q = VecDeque::from([bytes]);
            write_queue(&mut self.wr, &mut q, self.config.write_timeout, &self.ctx).await?;
        }
        Ok(())
    }

    /// Handshake and commands up to a publish or play request.
    async fn negotiate(&mut self) -> Result<Option<(bool, StreamRequest)>> {
        loop {
            if !Self::read_some(&mut self.rd, &mut self.inbuf, &self.ctx).await? {
                return Ok(None);
            }
            self.session.handle_input(&self.inbuf)?;
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

    /// Refuses the pending request with an RTMP status, then closes politely.
    async fn refuse(&mut self, code: &str, error: Error) -> Result<()> {
        let description = error.to_string();
        self.session.reject(code, &description)?;
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

    fn key(&mut self, r: &StreamRequest) -> std::result::Result<(StreamKey, Request), Error> {
        self.ctx.stream = Some(r.name());
        let key = StreamKey::new(&r.app, &r.stream).map_err(|source| Error::Kernel {
            ctx: self.ctx.clone(),
            source: Box::new(source),
        })?;
        let mut req = Request::new(key.clone(), "rtmp");
        if let Some(peer) = self.ctx.peer {
            req = req.peer(peer);
        }
        if let Some(q) = &r.query {
            req = req.query(q.clone());
        }
        Ok((key, req))
    }

    async fn publish(&mut self, r: StreamRequest, shutdown: &CancellationToken) -> Result<()> {
        let req = match self.key(&r) {
            Ok((_, req)) => req,
            Err(e) => return self.refuse("NetStream.Publish.BadName", e).await,
        };
        let mut publish = match self.ingest.open_publish(req).await {
            Ok(p) => p,
            Err(source) => {
                let code = match &source {
                    tidewater_core::Error::Unauthorized { .. }
                    | tidewater_core::Error::PublisherLimit { .. } => "NetStream.Publish.Denied",
                    _ => "NetStream.Publish.BadName",
                };
                let e = Error::Kernel {
                    ctx: self.ctx.clone(),
                    source: Box::new(source),
                };
                return self.refuse(code, e).await;
            }
        };
        self.session.accept_publish()?;
        self.flush().await?;
        info!(peer = %self.peer(), stream = self.stream_name(), "rtmp publish started");
        let result = self.publish_loop(&mut publish, shutdown).await;
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
        let idle = self.config.read_timeout;
        loop {
            let more = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                r = tokio::time::timeout(idle, Self::read_some(&mut self.rd, &mut self.inbuf, &self.ctx)) => match r {
                    Ok(r) => r?,
                    Err(_) => {
                        warn!(peer = %self.peer(), stream = self.stream_name(), "rtmp publisher sent nothing for {idle:?}: closing");
                        return Ok(());
                    }
                },
            };
            if !more {
                return Ok(());
            }
            self.session.handle_input(&self.inbuf)?;
            self.flush().await?;
            while let Some(event) = self.session.poll_event() {
                match event {
                    SessionEvent::Metadata(props) => flv.push_metadata(&props, &mut out),
                    SessionEvent::Video { timestamp, data } => {
                        flv.push_video(timestamp, &data, &mut out)
                    }
                    SessionEvent::Audio { timestamp, data } => {
                        flv.push_audio(timestamp, &data, &mut out)
                    }
                    SessionEvent::PublishFinished => return Ok(()),
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
                                Ok(())
                            }
                            source => Err(Error::Kernel {
                                ctx: self.ctx.clone(),
                                source: Box::new(source),
                            }),
                        };
                    }
                }
            }
        }
    }

    async fn play(&mut self, r: StreamRequest, shutdown: &CancellationToken) -> Result<()> {
        let req = match self.key(&r) {
            Ok((_, req)) => req,
            Err(e) => return self.refuse("NetStream.Play.StreamNotFound", e).await,
        };
        let sub = match self.ingest.subscribe(req).await {
            Ok(s) => s,
            Err(source) => {
                let code = match &source {
                    tidewater_core::Error::Unauthorized { .. } => "NetStream.Play.Failed",
                    _ => "NetStream.Play.StreamNotFound",
                };
                let e = Error::Kernel {
                    ctx: self.ctx.clone(),
                    source: Box::new(source),
                };
                return self.refuse(code, e).await;
            }
        };
        self.session.accept_play()?;
        self.flush().await?;
        info!(peer = %self.peer(), stream = self.stream_name(), "rtmp play started");
        self.play_loop(sub, shutdown).await
    }

    async fn play_loop(
        &mut self,
        mut sub: Subscription,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        let stream_id = self
            .session
            .play_stream_id()
            .unwrap_or(crate::session::SHARED_STREAM_ID);
        let chunk_size = self.session.chunk_size();
        let mut viewer = Viewer {
            out: WriteQueue::default(),
            pending_catalog: None,
            chunk_size,
            stream_id,
        };
        // Made once: a `cancelled()` future registers with the token's
        // shared waiter list, which is not something to do per message.
        let mut cancelled = std::pin::pin!(shutdown.cancelled());
        let coalesce = self.config.coalesce;
        let ended = loop {
            tokio::select! {
                biased;
                _ = &mut cancelled => break Some("server shutting down"),
                r = Self::read_some(&mut self.rd, &mut self.inbuf, &self.ctx) => {
                    if !r? {
                        info!(peer = %self.peer(), stream = self.stream_name(), "rtmp viewer left");
                        return Ok(());
                    }
                    self.session.handle_input(&self.inbuf)?;
                    if let Some(b) = self.session.take_output() {
                        viewer.push(b);
                    }
                    while let Some(event) = self.session.poll_event() {
                        if event == SessionEvent::PlayFinished {
                            info!(peer = %self.peer(), stream = self.stream_name(), "rtmp viewer stopped playing");
                            return Ok(());
                        }
                    }
                }
                ev = sub.recv_ref() => {
                    if let Some(reason) = viewer.on_event(ev, &self.ctx) {
                        break Some(reason);
                    }
                }
            }
            // Gather what else is ready, for one vectored write.
            let mut ended = None;
            while viewer.out.has_room() {
                match now_or_never(sub.recv_ref()) {
                    Some(ev) => {
                        if let Some(reason) = viewer.on_event(ev, &self.ctx) {
                            ended = Some(reason);
                            break;
                        }
                    }
                    None => break,
                }
            }
            viewer
                .out
                .write_to(&mut self.wr, self.config.write_timeout, &self.ctx)
                .await?;
            if ended.is_some() {
                break ended;
            }
            if !coalesce.is_zero() {
                // Let a few messages accumulate: the viewer is not parked on
                // the stream meanwhile, so the publisher does not wake it per
                // message. What the peer sends waits in the socket until then.
                tokio::select! {
                    biased;
                    _ = &mut cancelled => break Some("server shutting down"),
                    () = tokio::time::sleep(coalesce) => {}
                }
            }
        };
        let reason = ended.unwrap_or("stream ended");
        viewer
            .out
            .write_to(&mut self.wr, self.config.write_timeout, &self.ctx)
            .await?;
        self.session.end_play(reason)?;
        self.flush().await?;
        info!(peer = %self.peer(), stream = self.stream_name(), "rtmp play ended: {reason}");
        self.linger().await;
        Ok(())
    }
}

/// Shared chunk bytes waiting for one vectored write; the batch is bounded
/// in messages and bytes. Viewers and pushes both write through it.
#[derive(Debug, Default)]
pub(crate) struct WriteQueue {
    queue: VecDeque<Bytes>,
    bytes: usize,
}

impl WriteQueue {
    /// Queues a message (nothing for an empty one).
    pub(crate) fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.bytes += b.len();
            self.queue.push_back(b);
        }
    }

    /// Whether another message may still join this batch.
    pub(crate) fn has_room(&self) -> bool {
        self.queue.len() < BATCH_MESSAGES && self.bytes < BATCH_BYTES
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Writes everything queued (see [`write_queue`]).
    pub(crate) async fn write_to<W: AsyncWriteExt + Unpin>(
        &mut self,
        wr: &mut W,
        timeout: Duration,
        ctx: &Context,
    ) -> Result<()> {
        write_queue(wr, &mut self.queue, timeout, ctx).await?;
        self.bytes = 0;
        Ok(())
    }
}

/// Per-viewer state of the play loop: the write queue of shared chunk bytes.
struct Viewer {
    out: WriteQueue,
    pending_catalog: Option<Arc<Catalog>>,
    chunk_size: u32,
    stream_id: u32,
}

impl Viewer {
    fn push(&mut self, b: Bytes) {
        self.out.push(b);
    }

    /// Queues what an event needs sent; `Some(reason)` when the play is over.
    fn on_event(
        &mut self,
        ev: std::result::Result<EventRef<'_>, RecvError>,
        ctx: &Context,
    ) -> Option<&'static str> {
        match ev {
            Ok(EventRef::Catalog(c)) => self.pending_catalog = Some(c),
            Ok(EventRef::Frame(f)) => {
                if !flv::is_carried(&f, f.catalog()) {
                    return None;
                }
                if let Some(c) = self.pending_catalog.take() {
                    let (ts, _) = flv::frame_time(&f, &c);
                    self.push(egress::catalog_chunks(
                        &c,
                        self.chunk_size,
                        self.stream_id,
                        ts,
                    ));
                }
                self.push(egress::shared_chunks(&f, self.chunk_size, self.stream_id));
            }
            Ok(EventRef::Skipped { frames }) => {
                debug!(
                    "rtmp viewer {ctx}: fell behind, skipped {frames} frames to the next keyframe"
                );
            }
            Err(RecvError::Ended(reason)) => {
                debug!("rtmp viewer {ctx}: publish ended ({reason})");
                return Some("publisher ended the stream");
            }
            Err(RecvError::Evicted) => {
                warn!("rtmp viewer {ctx}: evicted for falling behind repeatedly");
                return Some("viewer too slow");
            }
        }
        None
    }
}

/// Writes the queue out with vectored writes (up to 64 messages a call); a
/// write that makes no progress within `timeout` fails the connection.
pub(crate) async fn write_queue<W: AsyncWriteExt + Unpin>(
    wr: &mut W,
    queue: &mut VecDeque<Bytes>,
    timeout: Duration,
    ctx: &Context,
) -> Result<()> {
    while !queue.is_empty() {
        let mut slices = [IoSlice::new(&[]); BATCH_MESSAGES];
        let mut n = 0;
        for (slot, b) in slices.iter_mut().zip(queue.iter()) {
            *slot = IoSlice::new(b);
            n += 1;
        }
        let written = match tokio::time::timeout(timeout, wr.write_vectored(&slices[..n])).await {
            Err(_) => {
                return Err(Error::WriteTimeout {
                    ctx: ctx.clone(),
                    after: timeout,
                });
            }
            Ok(Ok(0)) => {
                return Err(Error::Io {
                    ctx: ctx.clone(),
                    source: std::io::ErrorKind::WriteZero.into(),
                });
            }
            Ok(Ok(w)) => w,
            Ok(Err(source)) => {
                return Err(Error::Io {
                    ctx: ctx.clone(),
                    source,
                });
            }
        };
        let mut left = written;
        while left > 0 {
            let Some(front) = queue.front_mut() else {
                break;
            };
            if front.len() <= left {
                left -= front.len();
                queue.pop_front();
            } else {
                front.advance(left);
                left = 0;
            }
        }
    }
    Ok(())
}
