//! The seam traits protocol crates depend on instead of the concrete [`Engine`].

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::bus::Subscription;
use crate::engine::{Engine, Request};
use crate::error::Result;
use crate::events::StreamEvent;
use crate::follow::Follower;
use crate::key::StreamKey;
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
    /// Snapshots of every live stream.
    fn streams(&self) -> Vec<StreamSnapshot>;
    /// A snapshot of one live stream.
    fn stream(&self, key: &StreamKey) -> Option<StreamSnapshot>;
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
    fn streams(&self) -> Vec<StreamSnapshot> {
        Engine::streams(self)
    }
    fn stream(&self, key: &StreamKey) -> Option<StreamSnapshot> {
        Engine::stream(self, key)
    }
}

impl EventBus for Engine {
    fn subscribe_events(&self) -> broadcast::Receiver<StreamEvent> {
        Engine::subscribe_events(self)
    }
}
