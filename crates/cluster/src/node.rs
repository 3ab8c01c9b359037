//! A node joining the cluster: the relay listener, the directory's lease
//! and watch, the claims of what is published here, and the edge pulls.

use std::sync::Arc;
use std::time::Duration;

use tidewater_core::{
    CancellationToken, DuplicatePublish, Engine, SessionKind, StreamEventKind, StreamKey,
};
use tokio::sync::broadcast::error::RecvError;

use crate::config::ClusterConfig;
use crate::directory::{Claim, EtcdDirectory, NodeInfo, StreamMap};
use crate::edge::Edges;
use crate::error::{Error, Result};
use crate::relay::{ClusterSecret, RELAY_PROTOCOL, RelayServer};

/// How often the node's load is refreshed for the directory.
const LOAD_EVERY: Duration = Duration::from_secs(3);

/// A running cluster node. Its tasks stop with the shutdown token it was
/// started with.
#[derive(Debug, Clone)]
pub struct Cluster {
    directory: Arc<EtcdDirectory>,
    edges: Edges,
    relay: Arc<RelayServer>,
}

impl Cluster {
    /// Joins the cluster: binds the relay, registers in etcd, starts the
    /// watch, claims every publish made here from now on, and adds the edge
    /// pulls to `engine`'s on-demand sources. `secret` must be the
    /// authorizer `engine` was built with (wrapping the server's own), so
    /// that relay reads and edge publishes are let in, and so that a
    /// publish of a stream another node holds under `duplicate = "reject"`
    /// is refused at admission.
    pub async fn start(
        engine: Engine,
        config: ClusterConfig,
        secret: Arc<ClusterSecret>,
        shutdown: CancellationToken,
    ) -> Result<Cluster> {
        config.validate().map_err(Error::Config)?;
        let relay = Arc::new(
            RelayServer::new(engine.clone(), Arc::clone(&secret))
                .with_limits(config.relay_hello_timeout, config.relay_max_connections),
        );
        let bound = relay.bound();
        let serving = tokio::spawn({
            let (relay, token, listen) =
                (Arc::clone(&relay), shutdown.clone(), config.relay_listen);
            async move { relay.serve(listen, token).await }
        });
        // The relay binds before the node says where it is.
        let bound = tokio::select! {
            addr = bound.wait() => addr,
            done = serving => {
                let failed = done.map_err(|e| Error::Config(format!("relay task: {e}")))?;
                failed?;
                return Err(Error::Config("relay stopped before binding".into()));
            }
        };
        let relay_addr = if config.relay_advertise.port() == 0 {
            bound
        } else {
            config.relay_advertise
        };
        let info = NodeInfo {
            id: config.node_id.clone(),
            relay: relay_addr,
            advertise: config.advertise.clone(),
            streams: 0,
            readers: 0,
        };
        let directory = EtcdDirectory::connect(&config, info).await?;
        tokio::spawn(Arc::clone(&directory).keep_alive(shutdown.clone()));
        // From now on a publish of a stream held elsewhere under `reject`
        // is refused at admission; until the node stops.
        secret.admission().set(
            engine.clone(),
            Arc::clone(directory.map()),
            config.node_id.clone(),
        );
        tokio::spawn({
            let (secret, token) = (Arc::clone(&secret), shutdown.clone());
            async move {
                token.cancelled().await;
                secret.admission().clear();
            }
        });
        tokio::spawn({
            let engine = engine.clone();
            Arc::clone(&directory).watch(shutdown.clone(), move |key| {
                tracing::warn!(stream = %key, "another node took the stream over: ending the publish here");
                kick_publisher(&engine, &key, None);
            })
        });
        tokio::spawn(claims(
            engine.clone(),
            Arc::clone(&directory),
            shutdown.clone(),
        ));
        tokio::spawn(load(
            engine.clone(),
            Arc::clone(&directory),
            shutdown.clone(),
        ));
        let edges = Edges::new(
            engine.clone(),
            Arc::clone(directory.map()),
            &config,
            shutdown,
        );
        engine.add_on_demand(Arc::new(edges.clone()));
        tracing::info!(node = %config.node_id, relay = %relay_addr, "joined the cluster");
        Ok(Cluster {
            directory,
            edges,
            relay,
        })
    }

    /// The local copy of the stream directory.
    pub fn streams(&self) -> &Arc<StreamMap> {
        self.directory.map()
    }

    /// Streams this node pulls from their origins now.
    pub fn pulling(&self) -> Vec<StreamKey> {
        self.edges.pulling()
    }

    /// Where the relay listens, once bound.
    pub fn relay_addr(&self) -> Option<std::net::SocketAddr> {
        self.relay.bound().get()
    }
}

/// Ends the local (non-relay) publisher of `key` (of `generation`, if given).
fn kick_publisher(engine: &Engine, key: &StreamKey, generation: Option<u64>) {
    for s in engine.sessions() {
        if s.kind == SessionKind::Publisher
            && &s.path == key
            && s.protocol != RELAY_PROTOCOL
            && generation.is_none_or(|g| g == s.generation)
        {
            engine.kick(s.id);
        }
    }
}

/// Claims each stream published here in the directory, and releases it when
/// its publish ends; a claim lost to another node under the `reject`
/// policy ends the publish here.
async fn claims(engine: Engine, directory: Arc<EtcdDirectory>, shutdown: CancellationToken) {
    let mut events = engine.subscribe_events();
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            e = events.recv() => e,
        };
        let event = match event {
            Ok(e) => e,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    "cluster missed {n} stream events: claims may be stale until the next publish"
                );
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        match event.kind {
            StreamEventKind::PublishStarted {
                generation,
                protocol,
                ..
            } if protocol != RELAY_PROTOCOL => {
                let take_over =
                    engine.duplicate_policy(&event.key) == Some(DuplicatePublish::TakeOver);
                match directory.claim(&event.key, generation, take_over).await {
                    Ok(Claim::Granted) => {
                        tracing::info!(stream = %event.key, generation, "stream claimed in the cluster directory");
                    }
                    Ok(Claim::HeldBy(holder)) => {
                        // Admission refuses what the local directory knows
                        // is held elsewhere; this is the race it cannot see
                        // (two nodes admitting at once, or a claim not yet
                        // in this node's watch): the transaction decides.
                        tracing::warn!(stream = %event.key, origin = %holder.node, "publish ended: node {:?} claimed the stream first (duplicate = \"reject\")", holder.node);
                        kick_publisher(&engine, &event.key, Some(generation));
                    }
                    Err(e) => {
                        tracing::error!(stream = %event.key, "cluster claim failed ({e}): the stream is served here but not to other nodes");
                    }
                }
            }
            StreamEventKind::PublishEnded { generation, .. } => {
                if let Err(e) = directory.release(&event.key, generation).await {
                    tracing::warn!(stream = %event.key, "cluster release failed ({e}); the entry goes with the lease");
                }
            }
            _ => {}
        }
    }
}

/// Keeps the node's advertised load current.
async fn load(engine: Engine, directory: Arc<EtcdDirectory>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(LOAD_EVERY) => {}
        }
        let streams = engine.streams();
        let origins = streams
            .iter()
            .filter(|s| s.protocol != RELAY_PROTOCOL)
            .count();
        let readers = streams.iter().map(|s| s.subscribers.len()).sum();
        directory.set_load(origins, readers);
    }
}
