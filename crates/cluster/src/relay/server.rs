//! The origin side of the relay: a TCP listener that answers an edge's
//! [`Message::Hello`] with the stream it asks for, read from the kernel
//! like any other reader, and the authorizer that lets the cluster's
//! nodes in.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use subtle::ConstantTimeEq;
use tidewater_core::{
    AuthRequest, Authorizer, BoundAddr, CancellationToken, Credentials, Engine, Event, Identity,
    ListenerStats, RecvError, Refusal, Request, StreamKey,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::codec::{Decoder, Encoder};

use super::codec::{Message, RefuseCode, RelayCodec};
use super::hello::{Failure, Hello, read_hello};
use crate::admission::AdmissionSlot;
use crate::config::{DEFAULT_RELAY_HELLO_TIMEOUT, DEFAULT_RELAY_MAX_CONNECTIONS};
use crate::error::{Error, Result};

/// The protocol name relay sessions carry (listed with the sessions, and
/// how the cluster tells its own publishes from a publisher's).
pub const RELAY_PROTOCOL: &str = "relay";

/// The video frames a pull starts with (an earlier cached GOP when the
/// newest is shorter): the edge's first readers, which join as the pull
/// starts, get at once what RTMP and HTTP-FLV viewers ask of a cache
/// (ffmpeg analyses 40 video frames of FLV before it shows one), so a cold
/// edge joins as fast as a warm one.
const RELAY_START_VIDEO_FRAMES: usize = 40;
/// The relay port's name in the kernel's listener counters (metrics
/// `tidewater_listener_*{listener="relay"}`): connections, and those closed
/// before a pull started, by cause.
pub const LISTENER: &str = "relay";
/// How often an idle relay says it is alive.
pub(crate) const PING_EVERY: Duration = Duration::from_secs(1);

/// The cluster's shared secret, as an [`Authorizer`] in front of the
/// server's own: a request that presents the secret as its token is a
/// node of the cluster (an edge's pull at the origin, the pull's publish at
/// the edge) and may publish and read; every other request is the inner
/// authorizer's to answer. Once its node joined the cluster, it also refuses
/// a publish the directory says another node holds under
/// `duplicate = "reject"` (after the inner authorizer let it in: a peer
/// without credentials learns nothing of the cluster).
pub struct ClusterSecret {
    secret: String,
    inner: Arc<dyn Authorizer>,
    admission: AdmissionSlot,
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSecret").finish_non_exhaustive()
    }
}

impl ClusterSecret {
    /// `secret` in front of `inner`.
    pub fn new(secret: impl Into<String>, inner: Arc<dyn Authorizer>) -> Self {
        ClusterSecret {
            secret: secret.into(),
            inner,
            admission: AdmissionSlot::default(),
        }
    }

    /// Whether `token` is the secret (in constant time; an empty secret
    /// never matches).
    pub fn matches(&self, token: &str) -> bool {
        !self.secret.is_empty() && bool::from(self.secret.as_bytes().ct_eq(token.as_bytes()))
    }

    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    /// The cluster-wide duplicate check of publishes (set by
    /// [`Cluster::start`](crate::Cluster::start)).
    pub(crate) fn admission(&self) -> &AdmissionSlot {
        &self.admission
    }

    /// The credentials a node presents.
    pub fn credentials(&self) -> Credentials {
        Credentials::Token(self.secret.clone())
    }
}

#[async_trait]
impl Authorizer for ClusterSecret {
    async fn authorize(&self, request: &AuthRequest) -> Result<Identity, Refusal> {
        if request.protocol == RELAY_PROTOCOL
            && request.action.has_stream()
            && let Credentials::Token(token) = &request.credentials
            && self.matches(token)
        {
            return Ok(Identity::named("cluster"));
        }
        let identity = self.inner.authorize(request).await?;
        self.admission.check(request)?;
        Ok(identity)
    }
    fn read_token(&self, key: &StreamKey, who: &Identity, ip: Option<IpAddr>) -> Option<String> {
        self.inner.read_token(key, who, ip)
    }
    fn realm(&self) -> String {
        self.inner.realm()
    }
    fn digest_nonce(&self) -> Option<String> {
        self.inner.digest_nonce()
    }
}

/// The relay listener of an origin.
#[derive(Debug)]
pub struct RelayServer {
    engine: Engine,
    secret: Arc<ClusterSecret>,
    bound: Arc<BoundAddr>,
    /// How long a connection has to send its hello.
    hello_timeout: Duration,
    /// Most relay connections at once (each edge holds one per stream it
    /// pulls): past it, new connections are closed at once, so that whoever
    /// reaches the port cannot make the origin hold unbounded sockets.
    max_connections: usize,
}

impl RelayServer {
    /// A listener serving `engine`'s streams to edges that know `secret`,
    /// with the default limits ([`DEFAULT_RELAY_HELLO_TIMEOUT`],
    /// [`DEFAULT_RELAY_MAX_CONNECTIONS`]).
    pub fn new(engine: Engine, secret: Arc<ClusterSecret>) -> Self {
        RelayServer {
            engine,
            secret,
            bound: Arc::new(BoundAddr::new()),
            hello_timeout: DEFAULT_RELAY_HELLO_TIMEOUT,
            max_connections: DEFAULT_RELAY_MAX_CONNECTIONS,
        }
    }

    /// The same, closing a connection that has not sent its whole hello
    /// within `hello_timeout`, and any past `max_connections` open at once
    /// (`[cluster] relay_hello_timeout_ms` and `relay_max_connections`;
    /// [`ClusterConfig::validate`](crate::ClusterConfig::validate) bounds
    /// them).
    pub fn with_limits(mut self, hello_timeout: Duration, max_connections: usize) -> Self {
        self.hello_timeout = hello_timeout;
        self.max_connections = max_connections;
        self
    }

    /// Where it listens, once bound.
    pub fn bound(&self) -> Arc<BoundAddr> {
        Arc::clone(&self.bound)
    }

    /// Binds `listen` and serves until `shutdown`.
    pub async fn serve(&self, listen: SocketAddr, shutdown: CancellationToken) -> Result<()> {
        let listener = TcpListener::bind(listen).await?;
        self.bound.set(Some(listener.local_addr()?));
        tracing::info!("cluster relay listening on {}", listener.local_addr()?);
        let stats = self.engine.listener_stats(LISTENER);
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => {
                    let (socket, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!("relay: accepting a connection on the relay port ([cluster] relay_listen) failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    if connections.len() >= self.max_connections {
                        stats.refused("too_many_connections");
                        if let Some(note) = stats.log_limit().check_now() {
                            let max = self.max_connections;
                            tracing::warn!(%peer, "relay: closed the connection from {peer}: {max} relay connections are open already ([cluster] relay_max_connections){note}");
                        }
                        drop(socket);
                        continue;
                    }
                    let (engine, secret, stop) = (self.engine.clone(), Arc::clone(&self.secret), shutdown.clone());
                    let hello_timeout = self.hello_timeout;
                    let stats = Arc::clone(&stats);
                    connections.spawn(async move {
                        let _open = stats.accepted();
                        serve_edge(engine, secret, socket, peer, stop, &stats, hello_timeout).await;
                    });
                }
            }
        }
        self.bound.set(None);
        tidewater_core::drain_connections(&mut connections).await;
        Ok(())
    }
}

/// Reads one message, within `limit`.
pub(crate) async fn read_message(
    socket: &mut TcpStream,
    buf: &mut BytesMut,
    limit: Duration,
) -> Result<Option<Message>> {
    let read = async {
        loop {
            if let Some(msg) = RelayCodec.decode(buf)? {
                return Ok(Some(msg));
            }
            if socket.read_buf(buf).await? == 0 {
                return Ok(None);
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .map_err(|_| Error::Timeout(limit))?
}

/// Writes one message.
pub(crate) async fn write_message(
    socket: &mut TcpStream,
    buf: &mut BytesMut,
    msg: &Message,
) -> Result<()> {
    buf.clear();
    RelayCodec.encode(msg, buf)?;
    socket.write_all(buf).await?;
    Ok(())
}

async fn refuse(socket: &mut TcpStream, code: RefuseCode, reason: impl Into<String>) -> Result<()> {
    let reason: String = reason.into();
    let mut out = BytesMut::new();
    write_message(
        socket,
        &mut out,
        &Message::Refused {
            code,
            reason: reason.chars().take(200).collect(),
        },
    )
    .await
}

/// Serves one connection to the relay port: its hello, then the stream it
/// asks for. Logs how it ended, naming the peer: a connection closed before
/// a pull started (anyone can open one) on the relay listener's rate-limited
/// budget, with the lines left out counted on the next.
async fn serve_edge(
    engine: Engine,
    secret: Arc<ClusterSecret>,
    mut socket: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
    stats: &ListenerStats,
    hello_timeout: Duration,
) {
    let _ = socket.set_nodelay(true);
    let mut inbuf = BytesMut::new();
    let hello = match read_hello(&mut socket, &mut inbuf, hello_timeout).await {
        Ok(hello) => hello,
        Err(failure) => {
            stats.refused(failure.reason());
            if let Some(note) = stats.log_limit().check_now() {
                tracing::warn!(%peer, "relay: closed the connection from {peer} before any pull: {failure}{note}");
            }
            if let Failure::Version(_) = failure {
                // The node's own version would read this: say why by name.
                let _ = refuse(&mut socket, RefuseCode::Other, failure.to_string()).await;
            }
            return;
        }
    };
    // The edge's own words, shown quoted and cut short: it passed no check yet.
    let key: String = hello.key.chars().take(200).collect();
    let node: String = hello.node.chars().take(64).collect();
    if let Err(e) = pull_for_edge(engine, secret, socket, peer, shutdown, stats, hello).await {
        tracing::info!(%peer, "relay: the pull of {key:?} by node {node:?} from {peer} ended: {e}");
    }
}

/// Answers a hello: refused, or the stream until it ends, the edge leaves
/// or `shutdown`.
async fn pull_for_edge(
    engine: Engine,
    secret: Arc<ClusterSecret>,
    mut socket: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
    stats: &ListenerStats,
    hello: Hello,
) -> Result<()> {
    let Hello { node, token, key } = hello;
    if !secret.matches(&token) {
        stats.refused("unauthorized");
        if let Some(note) = stats.log_limit().check_now() {
            tracing::warn!(
                %peer,
                "relay: refused a pull of {:?} by node {:?} from {peer}: its token is not this node's cluster secret (set the same [cluster] secret on every node){note}",
                key.chars().take(200).collect::<String>(),
                node.chars().take(64).collect::<String>(),
            );
        }
        return refuse(
            &mut socket,
            RefuseCode::Unauthorized,
            "wrong cluster secret",
        )
        .await;
    }
    let Ok(key) = StreamKey::parse(&key) else {
        return refuse(&mut socket, RefuseCode::Other, "malformed stream key").await;
    };
    // Only what is live here: a stream in its follow grace would replay its
    // last GOP as if live.
    let Some(live) = engine.stream(&key) else {
        return refuse(
            &mut socket,
            RefuseCode::NotFound,
            format!("{key} is not live"),
        )
        .await;
    };
    let request = Request::new(key.clone(), RELAY_PROTOCOL)
        .start_video_frames(RELAY_START_VIDEO_FRAMES)
        .peer(peer)
        .credentials(secret.credentials())
        .user(format!(
            "node:{}",
            node.chars().take(64).collect::<String>()
        ));
    let mut follower = match engine.follow(request).await {
        Ok(f) => f,
        Err(e) => return refuse(&mut socket, RefuseCode::NotFound, e.to_string()).await,
    };
    tracing::info!(stream = %key, %peer, node = %node, "relay: node {node:?} at {peer} pulls {key}");
    let mut out = BytesMut::with_capacity(64 * 1024);
    write_message(
        &mut socket,
        &mut out,
        &Message::Accepted {
            generation: live.generation,
        },
    )
    .await?;
    let (mut rd, mut wr) = socket.into_split();
    // The edge sends nothing after its hello: a read that ends means it left.
    let mut gone = [0u8; 1];
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => Err(RecvError::Ended(tidewater_core::EndReason::Shutdown)),
            _ = rd.read(&mut gone) => return Ok(()),
            ev = tokio::time::timeout(PING_EVERY, follower.recv()) => match ev {
                Ok(ev) => ev,
                Err(_) => {
                    out.clear();
                    RelayCodec.encode(&Message::Ping, &mut out)?;
                    wr.write_all(&out).await?;
                    continue;
                }
            },
        };
        let msg = match event {
            Ok(Event::Catalog(c)) => Message::Catalog(c.tracks().to_vec()),
            Ok(Event::Frame(f)) => Message::Frame(f.frame().clone()),
            Ok(Event::Discontinuity { generation }) => Message::Discontinuity { generation },
            Ok(Event::Skipped { .. }) => continue,
            Err(RecvError::Ended(reason)) => Message::End(reason),
            Err(RecvError::Evicted) => return Err(Error::Evicted),
        };
        out.clear();
        RelayCodec.encode(&msg, &mut out)?;
        wr.write_all(&out).await?;
        follower.record_sent(out.len());
        if matches!(msg, Message::End(_)) {
            return Ok(());
        }
    }
}
