//! The protocol seam: long-lived workers that own their listeners.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::bus::Subscription;
use crate::engine::{Engine, Request};
use crate::error::{Error, Result};
use crate::events::StreamEvent;
use crate::follow::Follower;
use crate::key::StreamKey;
use crate::registry::{ListenerRegistry, ListenerStats, Registry};
use crate::session::PublishSession;
use crate::snapshot::StreamSnapshot;

/// The address a protocol worker's listener is bound to: set when it binds
/// (port 0 resolved), cleared when it stops, awaited by whoever needs to
/// connect (the server's startup log, tests).
#[derive(Debug)]
pub struct BoundAddr(watch::Sender<Option<SocketAddr>>);

impl Default for BoundAddr {
    fn default() -> Self {
        BoundAddr(watch::Sender::new(None))
    }
}

impl BoundAddr {
    /// Not bound yet.
    pub fn new() -> BoundAddr {
        BoundAddr::default()
    }

    /// The listener is bound to `addr` (or, with `None`, no longer is).
    pub fn set(&self, addr: Option<SocketAddr>) {
        self.0.send_replace(addr);
    }

    /// The bound address, while bound.
    pub fn get(&self) -> Option<SocketAddr> {
        *self.0.borrow()
    }

    /// Waits until the listener is bound and returns its address (never
    /// returns if it never binds).
    pub async fn wait(&self) -> SocketAddr {
        let mut rx = self.0.subscribe();
        // The sender lives as long as `self`: the wait ends with an address.
        if let Ok(bound) = rx.wait_for(Option::is_some).await
            && let Some(addr) = *bound
        {
            return addr;
        }
        std::future::pending().await
    }
}

/// A protocol worker (RTMP, RTSP, SRT, WHIP, …): binds its listener(s),
/// accepts connections, and bridges them to the kernel through its
/// [`IngestContext`].
#[async_trait]
pub trait InboundProtocol: Send + Sync + 'static {
    /// A short stable name (`rtmp`, `srt`, …) for logs.
    fn name(&self) -> &'static str;

    /// Runs until `shutdown` is cancelled, then returns promptly. An `Err`
    /// (a listener that cannot bind, say) is fatal: it stops every sibling.
    async fn serve(&self, ctx: IngestContext, shutdown: CancellationToken) -> Result<()>;
}

/// What a protocol worker reaches the kernel through. Cheap to clone.
#[derive(Clone)]
pub struct IngestContext {
    registry: Arc<dyn Registry>,
    listeners: Arc<ListenerRegistry>,
}

impl std::fmt::Debug for IngestContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestContext").finish_non_exhaustive()
    }
}

impl IngestContext {
    /// A context over any registry, with listener counters of its own (a
    /// context from [`Engine::context`] shares the engine's).
    pub fn new(registry: Arc<dyn Registry>) -> Self {
        IngestContext {
            registry,
            listeners: Arc::default(),
        }
    }

    /// The connection counters of listener `name` (`rtmp`, `rtmps`, `srt`, …),
    /// made on first use: a worker gets them once when it starts and bumps
    /// them per connection (see [`ListenerStats`]).
    pub fn listener_stats(&self, name: &'static str) -> Arc<ListenerStats> {
        self.listeners.get(name)
    }

    /// Claims a stream for publishing.
    pub async fn open_publish(&self, req: Request) -> Result<PublishSession> {
        crate::contain::note_stream(&req.key);
        self.registry.open_publish(req).await
    }

    /// Subscribes to a live stream.
    pub async fn subscribe(&self, req: Request) -> Result<Subscription> {
        crate::contain::note_stream(&req.key);
        self.registry.subscribe(req).await
    }

    /// Follows a stream across republishes.
    pub async fn follow(&self, req: Request) -> Result<Follower> {
        crate::contain::note_stream(&req.key);
        self.registry.follow(req).await
    }

    /// Follows a stream that is live now, for a viewer that plays on across
    /// republishes (see [`Engine::follow_live`]).
    pub async fn follow_live(&self, req: Request) -> Result<Follower> {
        crate::contain::note_stream(&req.key);
        self.registry.follow_live(req).await
    }

    /// Snapshots of live streams.
    pub fn streams(&self) -> Vec<StreamSnapshot> {
        self.registry.streams()
    }

    /// A snapshot of one live stream.
    pub fn stream(&self, key: &StreamKey) -> Option<StreamSnapshot> {
        self.registry.stream(key)
    }

    /// Whether `key` is live, once the on-demand sources (a cluster edge
    /// pull, an on-demand camera) had a bounded time to start it: for
    /// readers that check liveness before following, like packagers.
    pub async fn await_source(&self, key: &StreamKey) -> bool {
        self.registry.await_source(key).await
    }

    /// Asks the authorizer about a request that is not a subscription (an
    /// HLS or DASH playlist or segment): `Err` carries why not, and its
    /// [`RefusalKind`](crate::RefusalKind) the HTTP status to answer.
    pub async fn authorize(
        &self,
        request: &crate::AuthRequest,
    ) -> std::result::Result<crate::Identity, crate::Refusal> {
        self.registry.authorize(request).await
    }

    /// A short-lived token for `who` to read `key` again without
    /// credentials, for `?token=` in playlist URIs; `None` when a peer at
    /// `ip` may read `key` anonymously (then URIs stay plain and cacheable).
    pub fn read_token(
        &self,
        key: &StreamKey,
        who: &crate::Identity,
        ip: Option<std::net::IpAddr>,
    ) -> Option<String> {
        self.registry.read_token(key, who, ip)
    }

    /// The realm of HTTP `WWW-Authenticate` and RTSP challenges.
    pub fn realm(&self) -> String {
        self.registry.realm()
    }

    /// A fresh nonce for an RTSP Digest challenge, when the authorizer can
    /// check Digest responses (`None`: challenge with Basic only).
    pub fn digest_nonce(&self) -> Option<String> {
        self.registry.digest_nonce()
    }

    /// Registers an HLS or DASH player as a session, listed and kickable
    /// until the handle is dropped (see [`PlayerSession`](crate::PlayerSession)).
    pub fn register_player(&self, info: crate::PlayerInfo) -> crate::PlayerSession {
        self.registry.register_player(info)
    }

    /// Lifecycle events.
    pub fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<StreamEvent> {
        self.registry.subscribe_events()
    }

    /// The registry itself.
    pub fn registry(&self) -> &Arc<dyn Registry> {
        &self.registry
    }
}

impl Engine {
    /// A context for protocol workers backed by this engine.
    pub fn context(&self) -> IngestContext {
        IngestContext {
            registry: Arc::new(self.clone()),
            listeners: Arc::clone(&self.inner.listeners),
        }
    }

    /// Runs protocol workers until `shutdown` is cancelled or one fails; then
    /// cancels the rest, waits for every one of them, ends every publish and
    /// returns the first failure.
    pub async fn serve(
        &self,
        protocols: Vec<Arc<dyn InboundProtocol>>,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let mut workers = JoinSet::new();
        for protocol in protocols {
            let (ctx, token) = (self.context(), shutdown.clone());
            workers.spawn(async move {
                let name = protocol.name();
                tracing::debug!(protocol = name, "worker starting");
                let result = protocol.serve(ctx, token.clone()).await;
                if let Err(e) = &result {
                    tracing::error!(protocol = name, "worker failed: {e}");
                    token.cancel();
                }
                result
            });
        }
        let mut first_error = None;
        while let Some(joined) = workers.join_next().await {
            let result = joined.unwrap_or_else(|e| {
                shutdown.cancel();
                Err(Error::Protocol {
                    protocol: "worker",
                    source: Box::new(e),
                })
            });
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        self.shutdown();
        first_error.map_or(Ok(()), Err)
    }
}

/// How long a stopping listener lets its connections finish on their own.
pub const CONNECTION_GRACE: Duration = Duration::from_millis(250);

/// Ends a stopping listener's connection tasks: they saw the same shutdown
/// token, so most end by themselves within [`CONNECTION_GRACE`]; the rest
/// are aborted and awaited.
pub async fn drain_connections<T: 'static>(connections: &mut JoinSet<T>) {
    let _ = tokio::time::timeout(CONNECTION_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.shutdown().await;
}

#[cfg(test)]
mod bound_addr_tests {
    use super::BoundAddr;
    use std::net::SocketAddr;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_waiter_gets_the_address_once_it_is_set() {
        let bound = Arc::new(BoundAddr::new());
        assert_eq!(bound.get(), None);
        let waiter = tokio::spawn({
            let bound = Arc::clone(&bound);
            async move { bound.wait().await }
        });
        tokio::task::yield_now().await;
        let addr: SocketAddr = "127.0.0.1:1935".parse().expect("address");
        bound.set(Some(addr));
        assert_eq!(waiter.await.expect("waiter"), addr);
        assert_eq!(bound.get(), Some(addr));
        bound.set(None);
        assert_eq!(bound.get(), None);
    }
}
