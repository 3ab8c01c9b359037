//! Edge pulls: a reader here of a stream another node holds starts one
//! pull of it (however many readers come), which publishes it locally,
//! follows the stream to a new origin when the directory says it moved,
//! and stops once nobody here has read it for the idle grace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidewater_core::logs::LogLimiter;
use tidewater_core::{
    CancellationToken, Engine, OnDemandSource, PublishSession, SessionKind, StreamKey,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::ClusterConfig;
use crate::directory::{Holder, StreamMap};
use crate::error::Error;
use crate::relay::{PullOutcome, pull};

/// A pull that streamed at least this long before failing counts as
/// having worked: the failover clock starts again from its failure.
const STREAMED: Duration = Duration::from_secs(2);
/// The pause between attempts on a failing origin.
const RETRY: Duration = Duration::from_millis(500);
/// How often readers are counted for the idle grace.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// The edge side of a node: an [`OnDemandSource`] the engine asks.
#[derive(Clone, Debug)]
pub struct Edges(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    engine: Engine,
    map: Arc<StreamMap>,
    node: String,
    secret: String,
    pull_wait: Duration,
    idle_grace: Duration,
    failover_grace: Duration,
    pulls: Mutex<HashMap<StreamKey, JoinHandle<()>>>,
    shutdown: CancellationToken,
    /// Failed attempts are retried every [`RETRY`] for up to
    /// `failover_grace`, per stream: their lines share one budget, with a
    /// count of those left out.
    failures: LogLimiter,
}

impl Edges {
    /// The edge side of `engine`, pulling what `map` says other nodes hold.
    pub fn new(
        engine: Engine,
        map: Arc<StreamMap>,
        config: &ClusterConfig,
        shutdown: CancellationToken,
    ) -> Self {
        Edges(Arc::new(Inner {
            engine,
            map,
            node: config.node_id.clone(),
            secret: config.secret.clone(),
            pull_wait: config.pull_wait,
            idle_grace: config.idle_grace,
            failover_grace: config.failover_grace,
            pulls: Mutex::default(),
            shutdown,
            failures: LogLimiter::per_listener(),
        }))
    }

    /// Streams being pulled now.
    pub fn pulling(&self) -> Vec<StreamKey> {
        let pulls = self.0.pulls.lock().unwrap_or_else(|p| p.into_inner());
        let mut keys: Vec<_> = pulls
            .iter()
            .filter(|(_, h)| !h.is_finished())
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys
    }
}

impl OnDemandSource for Edges {
    fn request(&self, key: &StreamKey) -> Option<Duration> {
        let holder = self.0.map.holder(key)?;
        if holder.node == self.0.node || self.0.shutdown.is_cancelled() {
            return None;
        }
        let mut pulls = self.0.pulls.lock().unwrap_or_else(|p| p.into_inner());
        if pulls.get(key).is_none_or(JoinHandle::is_finished) {
            tracing::info!(stream = %key, origin = %holder.node, "edge pull starting");
            let task = tokio::spawn(run(Arc::clone(&self.0), key.clone()));
            pulls.insert(key.clone(), task);
        }
        Some(self.0.pull_wait)
    }
}

/// Who holds `key`, when it is another node.
fn origin(inner: &Inner, key: &StreamKey) -> Option<Holder> {
    inner.map.holder(key).filter(|h| h.node != inner.node)
}

/// Returns when the directory says another node holds `key` than `from`.
/// A key that merely vanishes (etcd restarted empty, the origin's lease
/// lapsing while it still streams) does not stop a working pull: a dead
/// origin ends it through its connection, a stream that ends by its end
/// message.
async fn moved(inner: &Inner, key: &StreamKey, from: &Holder) {
    let mut changes = inner.map.changes();
    loop {
        if let Some(now) = inner.map.holder(key)
            && (&now.node, now.relay) != (&from.node, from.relay)
        {
            return;
        }
        if changes.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// Readers of `key` here that are someone's: viewers over any protocol and
/// HLS/DASH players (listed while they request), not the server's own
/// packagers and recorders, which subscribe to every live stream when
/// always-on (the default) and would keep every pull going forever.
fn readers_here(engine: &Engine, key: &StreamKey) -> usize {
    engine
        .sessions()
        .iter()
        .filter(|s| s.kind == SessionKind::Reader && s.path == *key)
        .count()
}

/// Returns once nobody has read `key` here for the idle grace.
async fn idle(inner: &Inner, key: &StreamKey) {
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(IDLE_CHECK).await;
        let readers = readers_here(&inner.engine, key);
        if readers > 0 {
            since = Instant::now();
        } else if since.elapsed() >= inner.idle_grace {
            return;
        }
    }
}

/// One stream's pull, from start to stop.
async fn run(inner: Arc<Inner>, key: StreamKey) {
    let mut session: Option<PublishSession> = None;
    // Whether a local publish was ever opened: from then on the pull looks
    // for the stream through a failover.
    let mut streamed = false;
    // Since when no origin has streamed to us.
    let mut orphan_since = Instant::now();
    loop {
        // Before the first catalog only the reader's wait is worth waiting;
        // after it, the pull waits for a failover.
        let grace = if streamed {
            inner.failover_grace
        } else {
            inner.pull_wait
        };
        if orphan_since.elapsed() >= grace {
            tracing::info!(stream = %key, "edge pull stopped: no origin has the stream");
            break;
        }
        let Some(holder) = origin(&inner, &key) else {
            // No node holds the stream any more (its origin's lease expired,
            // or its publish ended there) and our pull failed: the local
            // publish ends like a publish on a single server, so readers here
            // follow the next one (the kernel's follow grace), and a
            // publisher reconnecting to this very node is not refused as a
            // duplicate of a pull of nothing.
            if let Some(s) = session.take() {
                tracing::info!(stream = %key, "no node holds the stream: the pulled publish ends, readers wait for the next");
                s.finish().await;
            }
            let mut changes = inner.map.changes();
            tokio::select! {
                () = inner.shutdown.cancelled() => break,
                _ = changes.changed() => {}
                () = tokio::time::sleep(RETRY) => {}
            }
            continue;
        };
        let started = Instant::now();
        let outcome = tokio::select! {
            () = inner.shutdown.cancelled() => break,
            () = idle(&inner, &key) => {
                tracing::info!(stream = %key, "edge pull stopped: no reader for {:?}", inner.idle_grace);
                break;
            }
            () = moved(&inner, &key, &holder) => {
                tracing::info!(stream = %key, from = %holder.node, "origin moved: following it");
                None
            }
            r = pull(&inner.engine, &key, holder.relay, &inner.node, &inner.secret, &mut session) => Some(r),
        };
        if started.elapsed() >= STREAMED {
            orphan_since = Instant::now();
        }
        streamed |= session.is_some();
        match outcome {
            None => continue,
            Some(Ok(PullOutcome::Ended(reason))) => {
                tracing::info!(stream = %key, origin = %holder.node, "origin's stream ended: {reason}");
            }
            Some(Ok(PullOutcome::NotFound)) => {}
            Some(Err(e)) => {
                if let Some(note) = inner.failures.check_now() {
                    let hint = match &e {
                        Error::Refused { reason, .. } if reason == "wrong cluster secret" => {
                            " (set the same [cluster] secret on every node)"
                        }
                        _ => "",
                    };
                    // The grace the next attempts run under.
                    let (grace, setting) = if streamed {
                        (inner.failover_grace, "failover_grace_ms")
                    } else {
                        (inner.pull_wait, "pull_wait_ms")
                    };
                    tracing::warn!(
                        stream = %key,
                        origin = %holder.node,
                        "edge pull of {key} from node {:?} at {} failed: {e}{hint}; \
                         trying again within {grace:?} ([cluster] {setting}){note}",
                        holder.node,
                        holder.relay,
                    );
                }
            }
        }
        let live_here = inner.engine.stream(&key).map(|s| s.generation);
        if session
            .as_ref()
            .is_some_and(|s| live_here != Some(s.generation()))
        {
            // Our publish here was ended (taken over, kicked): start afresh.
            session = None;
        }
        let mut changes = inner.map.changes();
        tokio::select! {
            () = inner.shutdown.cancelled() => break,
            _ = changes.changed() => {}
            () = tokio::time::sleep(RETRY) => {}
        }
    }
    // Forgotten before the publish ends, so a reader arriving now starts a
    // new pull instead of joining this one's end.
    inner
        .pulls
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&key);
    if let Some(s) = session {
        s.finish().await;
    }
}
