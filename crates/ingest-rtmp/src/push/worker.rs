//! One push's worker: follows the stream, connects to the destination,
//! drives the sans-IO [`PublishClient`] over TCP or TLS, and reconnects with
//! the backoff its [`PushMachine`](super::status::PushMachine) decides.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use tidewater_core::{
    CancellationToken, Event, Follower, IngestContext, RecvError, Request, StreamKey,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::status::{self, PushEntry, PushStatuses, unix_ms};
use super::{PushConfig, PushTarget};
use crate::client::{ClientConfig, ClientEvent, PublishClient};
use crate::driver::{clock, now_or_never, sleep_until, write_out};
use crate::egress::{EgressInput, Ending};
use crate::error::{Context, Error, Result};
use crate::tls::ClientTls;

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

/// A connection publishing to a destination: the socket and the sans-IO
/// client it drives.
struct PushConn {
    rd: Reader,
    wr: Writer,
    client: PublishClient,
    ctx: Context,
    inbuf: BytesMut,
    /// The pushed stream's key, naming it in the conversion's log.
    source: String,
}

/// Connects, handshakes (TLS, then RTMP) and gets the publish accepted,
/// all within the client's connect deadline.
async fn connect(target: &PushTarget, key: &StreamKey, config: &PushConfig) -> Result<PushConn> {
    let mut ctx = Context {
        peer: None,
        stream: Some(target.url.display_for(key)),
    };
    connect_inner(target, key, config, &mut ctx)
        .await
        .map_err(|e| e.in_context(&ctx))
}

async fn connect_inner(
    target: &PushTarget,
    key: &StreamKey,
    config: &PushConfig,
    ctx: &mut Context,
) -> Result<PushConn> {
    let url = &target.url;
    let mut client = PublishClient::new(
        ClientConfig {
            app: url.app.clone(),
            tc_url: url.tc_url(),
            stream: url.stream_for(key),
            chunk_size: config.chunk_size,
            max_message_len: config.max_message_len,
            connect_timeout: config.connect_timeout,
            write_timeout: config.write_timeout,
        },
        clock(),
    )?;
    let (rd, wr) = {
        let open = open(target, ctx);
        tokio::pin!(open);
        loop {
            let deadline = client.poll_timeout();
            tokio::select! {
                biased;
                r = &mut open => break r?,
                () = sleep_until(deadline) => client.handle_timeout(clock())?,
            }
        }
    };
    let mut conn = PushConn {
        rd,
        wr,
        client,
        ctx: ctx.clone(),
        inbuf: BytesMut::with_capacity(READ_SIZE),
        source: key.to_string(),
    };
    conn.flush().await?;
    while !conn.client.is_publishing() {
        let deadline = conn.client.poll_timeout();
        tokio::select! {
            biased;
            r = conn.read() => r?,
            () = sleep_until(deadline) => conn.client.handle_timeout(clock())?,
        }
        conn.flush().await?;
    }
    while conn.client.poll_event().is_some() {}
    Ok(conn)
}

/// The TCP connection, inside TLS for `rtmps://`.
async fn open(target: &PushTarget, ctx: &mut Context) -> Result<(Reader, Writer)> {
    let url = &target.url;
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|source| Error::Io {
            ctx: Context::default(),
            source,
        })?;
    ctx.peer = tcp.peer_addr().ok();
    let _ = tcp.set_nodelay(true);
    if !url.secure {
        let (r, w) = tcp.into_split();
        return Ok((Box::new(r), Box::new(w)));
    }
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
    Ok((Box::new(r), Box::new(w)))
}

impl PushConn {
    async fn flush(&mut self) -> Result<()> {
        write_out(&mut self.client, &mut self.wr, &self.ctx)
            .await
            .map(drop)
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

    /// Hands one event of the followed stream to the client.
    fn media<'a>(&mut self, input: impl Into<EgressInput<'a>>) -> Result<()> {
        self.client
            .handle_media(input)
            .map_err(|e| e.in_context(&self.ctx))
    }

    /// Logs the client's events; the ending, if it came.
    fn events(&mut self) -> Option<Ending> {
        let mut ended = None;
        while let Some(ev) = self.client.poll_event() {
            match ev {
                ClientEvent::Status { code, .. } => {
                    debug!("rtmp push {}: status {code}", self.ctx)
                }
                ClientEvent::Skipped { frames } => debug!(
                    "rtmp push {}: fell behind, skipped {frames} frames to the next keyframe",
                    self.ctx
                ),
                ClientEvent::Republished { generation } => debug!(
                    "rtmp push {}: the stream was published anew (generation {generation})",
                    self.ctx
                ),
                ClientEvent::Ended(ending) => ended = Some(ending),
                ClientEvent::Connected | ClientEvent::Publishing { .. } => {}
            }
        }
        ended
    }

    /// Ends the publish (unless the client ended it already, at the end of
    /// the stream), writes that out as well as it can, and closes.
    async fn close(&mut self) {
        let _ = self.client.unpublish();
        let _ = self.flush().await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.wr.shutdown()).await;
    }

    /// The conversions of the generation `follower` reads (an Opus
    /// stream's audio is pushed as AAC, converted once per stream).
    fn set_conversions(&mut self, follower: &Follower) {
        if let Some(running) = follower.generation_state::<crate::egress::Conversions>() {
            self.client.set_conversions(running, &self.source);
        }
    }

    /// Hands one event to the client; after a republish, the new
    /// generation's conversions.
    fn media_event(
        &mut self,
        ev: &std::result::Result<Event, RecvError>,
        follower: &Follower,
    ) -> Result<()> {
        self.media(ev)?;
        if matches!(ev, Ok(Event::Discontinuity { .. })) {
            self.set_conversions(follower);
        }
        Ok(())
    }

    /// Sends the followed stream until it ends, the server stops, or the
    /// connection fails.
    async fn stream(
        &mut self,
        follower: &mut Follower,
        shutdown: &CancellationToken,
    ) -> Result<Finished> {
        self.set_conversions(follower);
        loop {
            let mut republished = false;
            {
                // One receive, kept while the destination's input is read:
                // dropping it mid-wait would restart a republish grace period.
                let next = follower.recv();
                tokio::pin!(next);
                loop {
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => {
                            self.media(EgressInput::End(Ending::Shutdown))?;
                            break;
                        }
                        r = self.read() => {
                            r?;
                            // Statuses only: an ending comes with media.
                            self.events();
                        }
                        ev = &mut next => {
                            self.media(&ev)?;
                            republished = matches!(ev, Ok(Event::Discontinuity { .. }));
                            break;
                        }
                    }
                    self.flush().await?;
                }
            }
            if republished {
                self.set_conversions(follower);
            }
            while self.client.wants_media() {
                match now_or_never(follower.recv()) {
                    Some(ev) => self.media_event(&ev, follower)?,
                    None => break,
                }
            }
            match self.events() {
                None => self.flush().await?,
                Some(ending) => {
                    self.close().await;
                    return Ok(match ending {
                        Ending::Shutdown => Finished::Shutdown,
                        _ => Finished::Ended,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::PushUrl;

    #[tokio::test]
    async fn a_destination_that_never_answers_times_out_on_the_clients_deadline() {
        // A listener that accepts and then says nothing.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let _silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let target = PushTarget {
            url: PushUrl::parse(&format!("rtmp://{addr}/live/out")).expect("url"),
            tls: None,
        };
        let config = PushConfig {
            connect_timeout: Duration::from_millis(300),
            ..PushConfig::default()
        };
        let key = StreamKey::parse("live/cam").expect("key");
        let started = Instant::now();
        let e = match connect(&target, &key, &config).await {
            Err(e) => e,
            Ok(_) => panic!("connected to a silent destination"),
        };
        assert!(
            matches!(e, Error::Timeout { what: "connecting and publishing", after, .. } if after == Duration::from_millis(300)),
            "{e}"
        );
        assert_eq!(e.context().and_then(|c| c.peer), Some(addr));
        assert!(started.elapsed() >= Duration::from_millis(300));
    }
}
