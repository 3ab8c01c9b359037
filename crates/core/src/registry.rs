//! The seam traits protocol crates depend on instead of the concrete
//! [`Engine`], and the per-listener counters protocol workers bump.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::broadcast;

use std::net::IpAddr;

use crate::auth::{AuthRequest, Identity, Refusal};
use crate::bus::Subscription;
use crate::engine::{Engine, Request};
use crate::error::Result;
use crate::events::StreamEvent;
use crate::follow::Follower;
use crate::key::StreamKey;
use crate::players::{PlayerInfo, PlayerSession};
use crate::session::PublishSession;
use crate::snapshot::StreamSnapshot;

/// The publish side: what ingest protocols use.
#[async_trait]
pub trait PublishRegistry: Send + Sync + 'static {
    /// Claims a stream for publishing (authorizing it first).
    async fn open_publish(&self, req: Request) -> Result<PublishSession>;
}

/// The playback side: what egress protocols, packagers, recorders and relays use.
#[async_trait]
pub trait PlaybackRegistry: Send + Sync + 'static {
    /// Subscribes to the live publish of a stream (authorizing it first).
    async fn subscribe(&self, req: Request) -> Result<Subscription>;
    /// Follows a stream across republishes (authorizing it first).
    async fn follow(&self, req: Request) -> Result<Follower>;
    /// Follows a stream that is live now, for a viewer (see [`Engine::follow_live`]).
    async fn follow_live(&self, req: Request) -> Result<Follower>;
    /// Snapshots of every live stream.
    fn streams(&self) -> Vec<StreamSnapshot>;
    /// A snapshot of one live stream.
    fn stream(&self, key: &StreamKey) -> Option<StreamSnapshot>;
    /// Asks the authorizer about a request that is not a subscription (an
    /// HLS or DASH playlist or segment of a packager already running).
    async fn authorize(&self, request: &AuthRequest) -> std::result::Result<Identity, Refusal>;
    /// A short-lived read token for playlist URIs (see [`Authorizer::read_token`](crate::Authorizer::read_token)).
    fn read_token(&self, key: &StreamKey, who: &Identity, ip: Option<IpAddr>) -> Option<String>;
    /// The realm of HTTP and RTSP challenges.
    fn realm(&self) -> String;
    /// A Digest nonce for an RTSP challenge, when the authorizer checks Digest.
    fn digest_nonce(&self) -> Option<String>;
    /// Registers an HLS or DASH player as a session (see [`PlayerSession`]).
    fn register_player(&self, info: PlayerInfo) -> PlayerSession;
    /// Whether `key` is live, after asking the on-demand sources to start it
    /// when it is not (see [`Engine::await_source`]); registries without
    /// such sources answer whether it is live now.
    async fn await_source(&self, key: &StreamKey) -> bool {
        self.stream(key).is_some()
    }
}

/// Lifecycle events.
pub trait EventBus: Send + Sync + 'static {
    /// Receives every lifecycle event from now on.
    fn subscribe_events(&self) -> broadcast::Receiver<StreamEvent>;
}

/// All three sides together: what a protocol worker is handed.
pub trait Registry: PublishRegistry + PlaybackRegistry + EventBus {}

impl<T: PublishRegistry + PlaybackRegistry + EventBus> Registry for T {}

#[async_trait]
impl PublishRegistry for Engine {
    async fn open_publish(&self, req: Request) -> Result<PublishSession> {
        Engine::open_publish(self, req).await
    }
}

#[async_trait]
impl PlaybackRegistry for Engine {
    async fn subscribe(&self, req: Request) -> Result<Subscription> {
        Engine::subscribe(self, req).await
    }
    async fn follow(&self, req: Request) -> Result<Follower> {
        Engine::follow(self, req).await
    }
    async fn follow_live(&self, req: Request) -> Result<Follower> {
        Engine::follow_live(self, req).await
    }
    fn streams(&self) -> Vec<StreamSnapshot> {
        Engine::streams(self)
    }
    fn stream(&self, key: &StreamKey) -> Option<StreamSnapshot> {
        Engine::stream(self, key)
    }
    async fn authorize(&self, request: &AuthRequest) -> std::result::Result<Identity, Refusal> {
        Engine::authorize_request(self, request).await
    }
    fn read_token(&self, key: &StreamKey, who: &Identity, ip: Option<IpAddr>) -> Option<String> {
        Engine::read_token(self, key, who, ip)
    }
    fn realm(&self) -> String {
        Engine::realm(self)
    }
    fn digest_nonce(&self) -> Option<String> {
        Engine::digest_nonce(self)
    }
    fn register_player(&self, info: PlayerInfo) -> PlayerSession {
        Engine::register_player(self, info)
    }
    async fn await_source(&self, key: &StreamKey) -> bool {
        Engine::await_source(self, key).await
    }
}

impl EventBus for Engine {
    fn subscribe_events(&self) -> broadcast::Receiver<StreamEvent> {
        Engine::subscribe_events(self)
    }
}

/// Connection counters of one listener (`rtmp`, `rtmps`, `srt`, …), bumped
/// by its protocol worker and shown by the server's metrics.
///
/// A worker gets its listener's counters once, from
/// [`IngestContext::listener_stats`](crate::IngestContext::listener_stats),
/// then counts each accepted connection with [`accepted`](Self::accepted)
/// (keeping the returned guard for as long as the connection is open) and
/// each refusal with [`refused`](Self::refused):
///
/// ```
/// use tidewater_core::{AppSpec, Engine};
///
/// let engine = Engine::builder().app("live", AppSpec::default()).build().unwrap();
/// let stats = engine.context().listener_stats("rtmp");
/// let connection = stats.accepted();
/// stats.refused("unauthorized");
/// drop(connection);
/// let listed = engine.listeners();
/// assert_eq!((listed[0].connections, listed[0].open), (1, 0));
/// assert_eq!(listed[0].refusals, [("unauthorized", 1)]);
/// ```
#[derive(Debug)]
pub struct ListenerStats {
    name: &'static str,
    connections: AtomicU64,
    open: AtomicU64,
    refusals: Mutex<Vec<(&'static str, u64)>>,
    panics: AtomicU64,
    log: crate::logs::LogLimiter,
}

impl ListenerStats {
    /// Counters of a listener named `name`, all zero.
    pub fn new(name: &'static str) -> Self {
        ListenerStats {
            name,
            connections: AtomicU64::new(0),
            open: AtomicU64::new(0),
            refusals: Mutex::new(Vec::new()),
            panics: AtomicU64::new(0),
            log: crate::logs::LogLimiter::per_listener(),
        }
    }

    /// The limiter of this listener's lines that peers can cause at will
    /// (refused connections, failed handshakes): see [`crate::logs`].
    pub fn log_limit(&self) -> &crate::logs::LogLimiter {
        &self.log
    }

    /// The listener's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Counts an accepted connection; it counts as open until the returned
    /// guard drops.
    pub fn accepted(self: &Arc<Self>) -> OpenConnection {
        self.connections.fetch_add(1, Relaxed);
        self.open.fetch_add(1, Relaxed);
        OpenConnection(Arc::clone(self))
    }

    /// Counts a connection or request turned away for `reason`: a short,
    /// fixed, snake_case word of the protocol's own (`unauthorized`,
    /// `handshake`, `limit`, `bad_stream_id`, …), never text from the peer,
    /// so that the set of reasons (a metric label) stays bounded.
    pub fn refused(&self, reason: &'static str) {
        let mut refusals = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        match refusals.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => refusals.push((reason, 1)),
        }
    }

    /// Counts a session task that panicked (see [`contained`](crate::contained)).
    pub fn panicked(&self) {
        self.panics.fetch_add(1, Relaxed);
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> ListenerSnapshot {
        let mut refusals = self
            .refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        refusals.sort_unstable();
        ListenerSnapshot {
            name: self.name,
            connections: self.connections.load(Relaxed),
            open: self.open.load(Relaxed),
            refusals,
            panics: self.panics.load(Relaxed),
        }
    }
}

/// An accepted connection, counted open until dropped
/// ([`ListenerStats::accepted`]).
#[derive(Debug)]
pub struct OpenConnection(Arc<ListenerStats>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Relaxed);
    }
}

/// A point-in-time copy of one listener's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ListenerSnapshot {
    /// The listener's name.
    pub name: &'static str,
    /// Connections accepted so far.
    pub connections: u64,
    /// Connections open now.
    pub open: u64,
    /// Refusals so far by reason, sorted by reason.
    pub refusals: Vec<(&'static str, u64)>,
    /// Session tasks that panicked (each ended alone, see
    /// [`contained`](crate::contained)).
    pub panics: u64,
}

/// Every listener's counters, by name: one per engine (and so per server),
/// shared by every [`IngestContext`](crate::IngestContext) the engine makes.
#[derive(Debug, Default)]
pub(crate) struct ListenerRegistry {
    listeners: Mutex<Vec<Arc<ListenerStats>>>,
}

impl ListenerRegistry {
    /// The counters of listener `name`, made on first use.
    pub fn get(&self, name: &'static str) -> Arc<ListenerStats> {
        let mut listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = listeners.iter().find(|l| l.name == name) {
            return Arc::clone(found);
        }
        let made = Arc::new(ListenerStats::new(name));
        listeners.push(Arc::clone(&made));
        made
    }

    /// Every listener's counters, sorted by name.
    pub fn snapshot(&self) -> Vec<ListenerSnapshot> {
        let listeners: Vec<_> = self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut out: Vec<_> = listeners.iter().map(|l| l.snapshot()).collect();
        out.sort_by(|a, b| a.name.cmp(b.name));
        out
    }
}
