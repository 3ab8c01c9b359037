//! One push's worker: follows the stream, connects to the destination,
//! drives the sans-IO [`PublishClient`] over TCP or TLS, and reconnects with
//! the backoff its [`PushMachine`](super::status::PushMachine) decides.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tidewater_core::{
    CancellationToken, Catalog, Event, Follower, IngestContext, RecvError, Request, SharedFrame,
    StreamKey,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::status::{self, PushEntry, PushStatuses, unix_ms};
use super::{PushConfig, PushTarget, REBASE_GAP_MS};
use crate::client::{ClientConfig, ClientEvent, PublishClient};
use crate::driver::{WriteQueue, now_or_never, write_queue};
use crate::error::{Context, Error, Result};
use crate::tls::ClientTls;
use crate::{egress, flv};

const READ_SIZE: usize = 16 * 1024;

/// How a drain of the follower ended.
enum Drained {
    /// The stream ended for good (or the follower was evicted).
    Ended,
    /// A new publish began.
    Republished,
}

/// Reads and drops the follower's events while not connected, so that the
/// end of the stream (or a republish) is noticed.
///
/// The future is kept across every connection attempt and wait of a
/// disconnected spell rather than re-created for each: a follower waiting
/// for a republish starts its grace period anew on every call, and a
/// destination that fails fast would otherwise keep a push of an ended
/// stream alive for ever.
async fn drain(follower: &mut Follower) -> Drained {
    loop {
        match follower.recv().await {
            Err(_) => return Drained::Ended,
            Ok(Event::Discontinuity { .. }) => return Drained::Republished,
            Ok(_) => {}
        }
    }
}

/// How an active connection ended without an error.
enum Finished {
    /// The stream ended for good.
    Ended,
    /// The server is shutting down.
    Shutdown,
}

/// What a disconnected push does next.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// Connect now.
    Connect,
    /// Connect at this time.
    Wait(Instant),
    /// Gave up: wait for a republish.
    Failed,
}

/// How a disconnected spell ended.
enum Disconnected {
    Shutdown,
    Drained(Drained),
    Connected(Box<PushConn>),
}

/// One push's task.
pub(super) struct Push {
    pub(super) ctx: IngestContext,
    pub(super) key: StreamKey,
    pub(super) target: PushTarget,
    pub(super) entry: Arc<PushEntry>,
    pub(super) config: Arc<PushConfig>,
    pub(super) statuses: PushStatuses,
}

impl Push {
    fn request(&self) -> Request {
        Request::new(self.key.clone(), "rtmp-push")
    }

    pub(super) async fn run(self, shutdown: CancellationToken) {
        let url = self.entry.url().to_string();
        let mut follower = match self.ctx.follow(self.request()).await {
            Ok(f) => f,
            Err(e) => {
                info!(stream = %self.key, "rtmp push to {url} not started: {e}");
                self.remove();
                return;
            }
        };
        let mut phase = Phase::Connect;
        loop {
            let spell = {
                let drained = drain(&mut follower);
                tokio::pin!(drained);
                self.disconnected(&mut phase, drained.as_mut(), &shutdown)
                    .await
            };
            let ended = match spell {
                Disconnected::Shutdown => break,
                Disconnected::Drained(Drained::Republished) => {
                    if matches!(phase, Phase::Failed) {
                        self.entry.with(|m| m.restart());
                        phase = Phase::Connect;
                    }
                    continue;
                }
                Disconnected::Drained(Drained::Ended) => true,
                Disconnected::Connected(mut conn) => {
                    self.entry
                        .with(|m| m.on_connected(Instant::now(), unix_ms()));
                    info!(stream = %self.key, "rtmp push to {url} active");
                    // From the cached GOP: a keyframe first, no backlog.
                    match self.ctx.follow(self.request()).await {
                        Err(_) => {
                            conn.close().await;
                            true
                        }
                        Ok(f) => {
                            follower = f;
                            match conn.stream(&mut follower, &shutdown).await {
                                Ok(Finished::Shutdown) => break,
                                Ok(Finished::Ended) => {
                                    info!(stream = %self.key, "rtmp push to {url}: the stream ended");
                                    true
                                }
                                Err(e) => {
                                    phase = self.fail(e);
                                    false
                                }
                            }
                        }
                    }
                }
            };
            if ended {
                match self.finish_or_follow().await {
                    Some(f) => {
                        follower = f;
                        phase = Phase::Connect;
                    }
                    None => break,
                }
            }
        }
        self.remove();
        debug!(stream = %self.key, "rtmp push to {url} stopped");
    }

    /// Connects, waits and retries per `phase` until connected, the stream
    /// ends or is republished (`drained`), or shutdown.
    async fn disconnected(
        &self,
        phase: &mut Phase,
        mut drained: std::pin::Pin<&mut impl std::future::Future<Output = Drained>>,
        shutdown: &CancellationToken,
    ) -> Disconnected {
        loop {
            match *phase {
                Phase::Connect => {
                    self.entry.with(|m| m.on_attempt());
                    tokio::select! {
                        _ = shutdown.cancelled() => return Disconnected::Shutdown,
                        d = &mut drained => return Disconnected::Drained(d),
                        r = connect(&self.target, &self.key, &self.config) => match r {
                            Ok(conn) => return Disconnected::Connected(Box::new(conn)),
                            Err(e) => *phase = self.fail(e),
                        },
                    }
                }
                Phase::Wait(at) => tokio::select! {
                    _ = shutdown.cancelled() => return Disconnected::Shutdown,
                    d = &mut drained => return Disconnected::Drained(d),
                    _ = tokio::time::sleep_until(at) => *phase = Phase::Connect,
                },
                Phase::Failed => tokio::select! {
                    _ = shutdown.cancelled() => return Disconnected::Shutdown,
                    d = &mut drained => return Disconnected::Drained(d),
                },
            }
        }
    }

    /// Records a failure; the phase that follows.
    fn fail(&self, e: Error) -> Phase {
        let url = self.entry.url();
        let message = e.to_string();
        let next = self
            .entry
            .with(|m| m.on_failure(Instant::now(), unix_ms(), message.clone()));
        match next {
            status::Next::RetryAfter(delay) => {
                warn!(stream = %self.key, "rtmp push to {url} failed, retrying in {delay:?}: {message}");
                Phase::Wait(Instant::now() + delay)
            }
            status::Next::GiveUp => {
                warn!(stream = %self.key, "rtmp push to {url} failed, giving up until the stream is published again: {message}");
                Phase::Failed
            }
        }
    }

    /// The stream ended for good: removes the push's entry, unless the
    /// stream is live again (a publish that started as the grace expired);
    /// then a new follower is returned and the push goes on.
    async fn finish_or_follow(&self) -> Option<Follower> {
        if self.statuses.remove_unless(&self.key, &self.entry, || {
            self.ctx.stream(&self.key).is_some()
        }) {
            return None;
        }
        self.ctx.follow(self.request()).await.ok()
    }

    fn remove(&self) {
        self.statuses.remove(&self.key, &self.entry);
    }
}

type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// The platform roots, loaded once for every `rtmps://` push without a CA.
fn platform_tls() -> Result<ClientTls> {
    static ROOTS: OnceLock<std::result::Result<ClientTls, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| ClientTls::platform_roots().map_err(|e| e.to_string()))
        .clone()
        .map_err(Error::tls)
}

/// A connection publishing to a destination.
struct PushConn {
    rd: Reader,
    wr: Writer,
    client: PublishClient,
    ctx: Context,
    write_timeout: Duration,
    inbuf: BytesMut,
}

/// Connects, handshakes (TLS, then RTMP) and gets the publish accepted.
async fn connect(target: &PushTarget, key: &StreamKey, config: &PushConfig) -> Result<PushConn> {
    let mut ctx = Context {
        peer: None,
        stream: Some(target.url.display_for(key)),
    };
    let limit = config.connect_timeout;
    let result = tokio::time::timeout(limit, connect_inner(target, key, config, &mut ctx)).await;
    match result {
        Ok(r) => r.map_err(|e| e.in_context(&ctx)),
        Err(_) => Err(Error::Timeout {
            ctx,
            what: "connecting and publishing",
            after: limit,
        }),
    }
}

async fn connect_inner(
    target: &PushTarget,
    key: &StreamKey,
    config: &PushConfig,
    ctx: &mut Context,
) -> Result<PushConn> {
    let url = &target.url;
    let io = |source| Error::Io {
        ctx: Context::default(),
        source,
    };
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(io)?;
    ctx.peer = tcp.peer_addr().ok();
    let _ = tcp.set_nodelay(true);
    let (rd, wr): (Reader, Writer) = if url.secure {
        let tls = match &target.tls {
            Some(t) => t.clone(),
            None => platform_tls()?,
        };
        let name = rustls::pki_types::ServerName::try_from(url.host.clone())
            .map_err(|e| Error::tls(format!("bad server name {:?}: {e}", url.host)))?;
        let stream = tls
            .connector()
            .connect(name, tcp)
            .await
            .map_err(|e| Error::tls(format!("handshake: {e}")))?;
        let (r, w) = tokio::io::split(stream);
        (Box::new(r), Box::new(w))
    } else {
        let (r, w) = tcp.into_split();
        (Box::new(r), Box::new(w))
    };
    let client = PublishClient::new(ClientConfig {
        app: url.app.clone(),
        tc_url: url.tc_url(),
        stream: url.stream_for(key),
        chunk_size: config.chunk_size,
        max_message_len: config.max_message_len,
    })?;
    let mut conn = PushConn {
        rd,
        wr,
        client,
        ctx: ctx.clone(),
        write_timeout: config.write_timeout,
        inbuf: BytesMut::with_capacity(READ_SIZE),
    };
    conn.flush().await?;
    while !conn.client.is_publishing() {
        conn.read().await?;
        conn.flush().await?;
    }
    while conn.client.poll_event().is_some() {}
    Ok(conn)
}

/// The RTMP timestamps a push sends: the stream's own, shifted after a
/// republish so that they go on from the last one sent.
#[derive(Debug, Default)]
struct Timeline {
    shift: u32,
    last: Option<u32>,
    rebase: bool,
}

impl Timeline {
    /// The shift for a frame at RTMP time `ts`.
    fn shift_for(&mut self, ts: u32) -> u32 {
        if std::mem::take(&mut self.rebase)
            && let Some(last) = self.last
        {
            self.shift = last.wrapping_add(REBASE_GAP_MS).wrapping_sub(ts);
        }
        let out = ts.wrapping_add(self.shift);
        // Later in the 32-bit circle: the newest timestamp sent.
        if self.last.is_none_or(|l| out.wrapping_sub(l) < 0x8000_0000) {
            self.last = Some(out);
        }
        self.shift
    }
}

impl PushConn {
    async fn flush(&mut self) -> Result<()> {
        while let Some(b) = self.client.take_output() {
            let mut q = std::collections::VecDeque::from([b]);
            write_queue(&mut self.wr, &mut q, self.write_timeout, &self.ctx).await?;
        }
        Ok(())
    }

    /// Reads what the destination sent and feeds it to the client.
    async fn read(&mut self) -> Result<()> {
        self.inbuf.clear();
        self.inbuf.reserve(READ_SIZE);
        let n = self
            .rd
            .read_buf(&mut self.inbuf)
            .await
            .map_err(|source| Error::Io {
                ctx: self.ctx.clone(),
                source,
            })?;
        if n == 0 {
            return Err(Error::Io {
                ctx: self.ctx.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the destination closed the connection",
                ),
            });
        }
        self.client
            .handle_input(&self.inbuf)
            .map_err(|e| e.in_context(&self.ctx))
    }

    /// Queues what the client answers (acknowledgements, pongs); fails on an
    /// error status from the destination.
    fn after_read(&mut self, out: &mut Outgoing) -> Result<()> {
        if let Some(b) = self.client.take_output() {
            out.push(b);
        }
        while let Some(ev) = self.client.poll_event() {
            if let ClientEvent::Status { level, code } = ev {
                if level == "error" {
                    return Err(Error::Refused {
                        ctx: self.ctx.clone(),
                        code,
                        description: "after the publish started".into(),
                    });
                }
                debug!("rtmp push {}: status {code}", self.ctx);
            }
        }
        Ok(())
    }

    /// Ends the publish politely and closes.
    async fn close(&mut self) {
        if self.client.unpublish().is_ok() {
            let _ = self.flush().await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.wr.shutdown()).await;
    }

    /// Sends the followed stream until it ends, the server stops, or the
    /// connection fails.
    async fn stream(
        &mut self,
        follower: &mut Follower,
        shutdown: &CancellationToken,
    ) -> Result<Finished> {
        let stream_id = self
            .client
            .stream_id()
            .unwrap_or(crate::session::SHARED_STREAM_ID);
        let chunk_size = self.client.chunk_size();
        let mut out = Outgoing {
            out: WriteQueue::default(),
            pending_catalog: None,
            timeline: Timeline::default(),
            chunk_size,
            stream_id,
        };
        loop {
            let mut ended;
            {
                // One receive, kept while the destination's input is read:
                // dropping it mid-wait would restart a republish grace period.
                let next = follower.recv();
                tokio::pin!(next);
                loop {
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => {
                            ended = Some(Finished::Shutdown);
                            break;
                        }
                        r = self.read() => {
                            r?;
                            self.after_read(&mut out)?;
                        }
                        ev = &mut next => {
                            ended = out.on_event(ev, &self.ctx)?;
                            break;
                        }
                    }
                    if !out.out.is_empty() {
                        out.out
                            .write_to(&mut self.wr, self.write_timeout, &self.ctx)
                            .await?;
                    }
                }
            }
            while ended.is_none() && out.out.has_room() {
                match now_or_never(follower.recv()) {
                    Some(ev) => ended = out.on_event(ev, &self.ctx)?,
                    None => break,
                }
            }
            out.out
                .write_to(&mut self.wr, self.write_timeout, &self.ctx)
                .await?;
            if let Some(finished) = ended {
                self.close().await;
                return Ok(finished);
            }
        }
    }
}

/// What a push connection queues to write.
struct Outgoing {
    out: WriteQueue,
    pending_catalog: Option<Arc<Catalog>>,
    timeline: Timeline,
    chunk_size: u32,
    stream_id: u32,
}

impl Outgoing {
    fn push(&mut self, b: Bytes) {
        self.out.push(b);
    }

    fn on_event(
        &mut self,
        ev: std::result::Result<Event, RecvError>,
        ctx: &Context,
    ) -> Result<Option<Finished>> {
        match ev {
            Ok(Event::Catalog(c)) => self.pending_catalog = Some(c),
            Ok(Event::Frame(f)) => self.frame(&f),
            Ok(Event::Skipped { frames }) => {
                debug!("rtmp push {ctx}: fell behind, skipped {frames} frames to the next keyframe")
            }
            Ok(Event::Discontinuity { generation }) => {
                debug!("rtmp push {ctx}: the stream was published anew (generation {generation})");
                self.timeline.rebase = true;
            }
            Err(RecvError::Ended(_)) => return Ok(Some(Finished::Ended)),
            Err(RecvError::Evicted) => {
                return Err(Error::Protocol {
                    ctx: ctx.clone(),
                    reason: "the push fell behind the stream repeatedly (evicted)".into(),
                });
            }
        }
        Ok(None)
    }

    fn frame(&mut self, f: &SharedFrame) {
        let catalog = f.catalog();
        if !flv::is_carried(f.frame(), catalog) {
            return;
        }
        let (ts, _) = flv::frame_time(f.frame(), catalog);
        let shift = self.timeline.shift_for(ts);
        if let Some(c) = self.pending_catalog.take() {
            let (cts, _) = flv::frame_time(f.frame(), &c);
            self.push(crate::client::set_data_frame(
                &c,
                self.chunk_size,
                self.stream_id,
            ));
            self.push(egress::sequence_header_chunks(
                &c,
                self.chunk_size,
                self.stream_id,
                cts.wrapping_add(shift),
            ));
        }
        let chunks = if shift == 0 {
            egress::shared_chunks(&f.as_ref(), self.chunk_size, self.stream_id)
        } else {
            egress::frame_chunks_shifted(f.frame(), catalog, self.chunk_size, self.stream_id, shift)
        };
        self.push(chunks);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_republish_continues_after_the_last_timestamp_sent() {
        let mut t = Timeline::default();
        assert_eq!(t.shift_for(1_000), 0);
        assert_eq!(t.shift_for(5_000), 0);
        assert_eq!(t.shift_for(4_990), 0, "an earlier audio frame");
        t.rebase = true;
        // The new publish starts at 0: it goes on 40 ms after 5 000.
        assert_eq!(t.shift_for(0), 5_040);
        assert_eq!(t.shift_for(40), 5_040);
        // Across the 32-bit wrap.
        let mut t = Timeline::default();
        t.shift_for(u32::MAX - 10);
        t.rebase = true;
        let shift = t.shift_for(100);
        assert_eq!(100u32.wrapping_add(shift), (u32::MAX - 10).wrapping_add(40));
    }
}
