//! Push: republishing live streams to other RTMP / RTMPS servers.
//!
//! [`RtmpPush`] is a long-lived worker (run like the listener, through the
//! kernel's [`InboundProtocol`] seam). It watches the kernel's lifecycle
//! events; when a publish of a stream with destinations in its
//! [`PushRoutes`] starts, it starts one push per destination. Each push:
//!
//! - **follows** the stream with a kernel
//!   [`Follower`](tidewater_core::Follower), so it survives a republish
//!   within the stream's `follow_grace`: it goes on on the same
//!   connection, sends the new sequence headers and shifts the new
//!   publish's timestamps to continue after the last ones sent (the
//!   destination's viewers see one continuous stream). It stops, with
//!   `FCUnpublish` / `deleteStream`, when the stream ends for good;
//! - publishes as an RTMP client ([`crate::client::PublishClient`], sans-IO,
//!   whose [`Egress`](crate::egress::Egress) is the one RTMP players use),
//!   over TCP or TLS (`rtmps://`, see [`crate::tls`]). Media chunks come from
//!   the stream's derived-output cache, the very bytes its RTMP viewers get,
//!   when the destination hands out stream id 1 (nginx-rtmp and tidewater
//!   do) and no republish shifted the timestamps; otherwise they are built
//!   for the push alone. An Opus stream's audio (a WHIP publish) is pushed
//!   as AAC with the `transcode` feature, from the conversion the stream's
//!   RTMP players share (most receivers take no Opus in FLV);
//! - starts from the cached GOP on every (re)connection: a new kernel
//!   follower is opened once the destination accepted the publish, so the
//!   destination gets a keyframe first and no backlog;
//! - reconnects after any failure with capped exponential backoff
//!   ([`Backoff`]: 0.5 s doubling to 30 s by default, starting over once a
//!   connection stayed up [`status::STABLE_AFTER`]), and keeps a status
//!   ([`PushState`]: `starting`, `active`, `reconnecting`, `failed`) with the
//!   attempt count, since when it is connected and the last
//!   [`status::KEPT_ERRORS`] errors. With [`Backoff::max_attempts`] set, a
//!   push gives up after that many failures in a row (`failed`) until the
//!   stream is published anew.
//!
//! [`PushStatuses`] is the read side for an API: every push of every stream,
//! listed while the push lives (from the publish to the end of the stream).
//!
//! The pieces: the route table ([`PushRoutes`], `routes.rs`: which
//! destinations apply to which stream), [`status`] (each push's sans-IO
//! state and backoff machine, and the table the API reads), [`target`]
//! (destination URLs), and one push's worker (`worker.rs`: the connect /
//! retry / backoff loop, doing what the push machine and the sans-IO client
//! decide, and the socket I/O). [`RtmpPush`] starts a worker per
//! destination as publishes start.
//!
//! A push reads the stream like any reader: the kernel's authorizer is asked
//! (action read, protocol `rtmp-push`, no peer address), and the push shows
//! among the stream's subscribers. Destination URLs are shown and logged
//! without their query, which often carries a stream key.

mod routes;
pub mod status;
pub mod target;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tidewater_core::{
    CancellationToken, InboundProtocol, IngestContext, StreamEvent, StreamEventKind, StreamKey,
};
use tokio::task::JoinSet;
use tracing::info;

pub use routes::{PushRoutes, PushTarget};
pub use status::{
    Backoff, PushError, PushMachine, PushSnapshot, PushSnapshotStatus, PushState, PushStatuses,
};
pub use target::PushUrl;

pub use crate::egress::REBASE_GAP_MS;

/// Settings shared by every push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushConfig {
    /// The outbound chunk size (the listener's, so chunks are shared).
    pub chunk_size: u32,
    /// Reconnection schedule.
    pub backoff: Backoff,
    /// Time to connect, handshake and get the publish accepted.
    pub connect_timeout: Duration,
    /// A destination whose socket accepts nothing this long is dropped (and reconnected).
    pub write_timeout: Duration,
    /// Longest message accepted from a destination.
    pub max_message_len: usize,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            chunk_size: crate::config::DEFAULT_CHUNK_SIZE,
            backoff: Backoff::default(),
            connect_timeout: Duration::from_secs(10),
            write_timeout: crate::config::DEFAULT_WRITE_TIMEOUT,
            max_message_len: 1 << 20,
        }
    }
}

/// The push worker: starts and runs every configured push.
#[derive(Debug)]
pub struct RtmpPush {
    routes: Arc<PushRoutes>,
    config: Arc<PushConfig>,
    statuses: PushStatuses,
}

impl RtmpPush {
    /// A worker for these routes.
    pub fn new(routes: PushRoutes, config: PushConfig) -> RtmpPush {
        RtmpPush {
            routes: Arc::new(routes),
            config: Arc::new(config),
            statuses: PushStatuses::default(),
        }
    }

    /// The read side of every push's status.
    pub fn statuses(&self) -> PushStatuses {
        self.statuses.clone()
    }

    fn start(
        &self,
        ctx: &IngestContext,
        key: &StreamKey,
        tasks: &mut JoinSet<()>,
        shutdown: &CancellationToken,
    ) {
        let targets = self.routes.targets(key);
        if targets.is_empty() {
            return;
        }
        for target in targets {
            let url = target.url.display_for(key);
            let Some(entry) = self.statuses.add(key, url.clone(), self.config.backoff) else {
                continue;
            };
            info!(stream = %key, "rtmp push to {url} starting");
            tasks.spawn(
                worker::Push {
                    ctx: ctx.clone(),
                    key: key.clone(),
                    target: target.clone(),
                    entry,
                    config: Arc::clone(&self.config),
                    statuses: self.statuses.clone(),
                }
                .run(shutdown.clone()),
            );
        }
    }
}

#[async_trait]
impl InboundProtocol for RtmpPush {
    fn name(&self) -> &'static str {
        "rtmp-push"
    }

    async fn serve(
        &self,
        ctx: IngestContext,
        shutdown: CancellationToken,
    ) -> tidewater_core::Result<()> {
        use tokio::sync::broadcast::error::RecvError as Lag;
        let mut events = ctx.subscribe_events();
        let mut tasks = JoinSet::new();
        // Streams live before the worker subscribed.
        for s in ctx.streams() {
            self.start(&ctx, &s.key, &mut tasks, &shutdown);
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                ev = events.recv() => match ev {
                    Ok(StreamEvent { key, kind: StreamEventKind::PublishStarted { .. } }) => {
                        self.start(&ctx, &key, &mut tasks, &shutdown);
                    }
                    Ok(_) => {}
                    Err(Lag::Lagged(_)) => {
                        for s in ctx.streams() {
                            self.start(&ctx, &s.key, &mut tasks, &shutdown);
                        }
                    }
                    Err(Lag::Closed) => {
                        shutdown.cancelled().await;
                        break;
                    }
                },
            }
        }
        // Pushes saw the token: they unpublish and close. Give them a moment.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tasks.shutdown().await;
        Ok(())
    }
}
