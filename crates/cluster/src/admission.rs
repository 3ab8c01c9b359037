//! Publish admission across the cluster: under `duplicate = "reject"`, a
//! publish of a stream that the directory says another node holds is
//! refused before it is accepted, as a duplicate on one server is, instead
//! of being accepted and then ended when the etcd transaction loses.
//!
//! The check reads the node's local copy of the directory (no etcd round
//! trip per publish), so it can be stale by the watch's delay: two nodes
//! admitting the same stream at once both pass it, and the claim's
//! transaction stays the final arbiter (the loser is ended, see
//! [`Cluster`](crate::Cluster)).

use std::sync::{Arc, RwLock};

use tidewater_core::{Action, AuthRequest, DuplicatePublish, Engine, Refusal};

use crate::directory::StreamMap;
use crate::relay::RELAY_PROTOCOL;

/// The listener counters the refusals are counted in (reason
/// `already_publishing`, as SRT counts a local duplicate).
pub(crate) const STATS: &str = "cluster";

/// What the check needs of a running node.
struct Admission {
    engine: Engine,
    map: Arc<StreamMap>,
    node: String,
}

/// Where the running node's admission check lives: empty until the node
/// joined the cluster (every publish passes), emptied again when it stops
/// (the engine holds the authorizer that holds this: no cycle outlives it).
#[derive(Default)]
pub(crate) struct AdmissionSlot(RwLock<Option<Admission>>);

impl AdmissionSlot {
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    /// Checks publishes against `map` from now on (node `node`, policies of
    /// `engine`'s applications).
    pub(crate) fn set(&self, engine: Engine, map: Arc<StreamMap>, node: String) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(Admission { engine, map, node });
    }

    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    /// Stops checking (the node left the cluster).
    pub(crate) fn clear(&self) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Refuses a publish (not the cluster's own relay publishes) of a stream
    /// another node holds, when its application rejects duplicates.
    pub(crate) fn check(&self, request: &AuthRequest) -> Result<(), Refusal> {
        if request.action != Action::Publish || request.protocol == RELAY_PROTOCOL {
            return Ok(());
        }
        let Some(key) = &request.key else {
            return Ok(());
        };
        let guard = self.0.read().unwrap_or_else(|p| p.into_inner());
        let Some(admission) = guard.as_ref() else {
            return Ok(());
        };
        if admission.engine.duplicate_policy(key) != Some(DuplicatePublish::Reject) {
            return Ok(());
        }
        match admission.map.holder(key) {
            // This node's own entry (an earlier publish here): the claim
            // renews it.
            Some(holder) if holder.node != admission.node => {
                let reason = format!(
                    "{key} is held by node {:?} of the cluster ([cluster]) and its application \
                     rejects a second publisher (duplicate = \"reject\"): publish to that node, \
                     or set duplicate = \"take_over\" to move the stream here",
                    holder.node
                );
                tracing::warn!(
                    stream = %key,
                    origin = %holder.node,
                    peer = %request.peer.map_or_else(|| "in-process".to_string(), |p| p.to_string()),
                    protocol = request.protocol,
                    "publish refused: {reason}"
                );
                // Counted as the cluster's own cause: the protocol's
                // listener counts it with its authorizer's refusals.
                admission
                    .engine
                    .listener_stats(STATS)
                    .refused("already_publishing");
                Err(Refusal::forbidden(reason))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use tidewater_core::{
        AppSpec, AuthRequest, Authorizer, DuplicatePublish, Engine, Error, Identity, PermitAll,
        Refusal, RefusalKind, Request, StreamKey,
    };

    use crate::directory::{Holder, StreamMap, stream_path};
    use crate::relay::{ClusterSecret, RELAY_PROTOCOL};

    /// Lets in only peers that present a token (any token).
    struct TokensOnly;

    #[async_trait]
    impl Authorizer for TokensOnly {
        async fn authorize(&self, request: &AuthRequest) -> Result<Identity, Refusal> {
            match request.credentials {
                tidewater_core::Credentials::Token(_) => Ok(Identity::named("someone")),
                _ => Err(Refusal::new(RefusalKind::MissingCredentials, "a token")),
            }
        }
    }

    /// The builder takes an authorizer by value; the test keeps a handle.
    struct Shared(Arc<ClusterSecret>);

    #[async_trait]
    impl Authorizer for Shared {
        async fn authorize(&self, request: &AuthRequest) -> Result<Identity, Refusal> {
            self.0.authorize(request).await
        }
    }

    /// Node `b`'s engine (`live` rejects duplicates, `open` takes over) and
    /// its directory, in which node `a` holds `live/held` and `open/held`
    /// and `b` itself holds `live/mine`.
    fn node_b(inner: Arc<dyn Authorizer>) -> (Engine, Arc<ClusterSecret>) {
        let secret = Arc::new(ClusterSecret::new("s3cret-s3cret", inner));
        let engine = Engine::builder()
            .app("live", AppSpec::default())
            .app(
                "open",
                AppSpec {
                    duplicate: DuplicatePublish::TakeOver,
                    ..AppSpec::default()
                },
            )
            .authorizer(Shared(Arc::clone(&secret)))
            .build()
            .expect("engine");
        let map = Arc::new(StreamMap::default());
        for (key, node) in [("live/held", "a"), ("open/held", "a"), ("live/mine", "b")] {
            let holder = Holder {
                node: node.into(),
                relay: "127.0.0.1:7935".parse().expect("addr"),
                generation: 1,
            };
            map.put(
                stream_path(&key_of(key)).as_bytes(),
                holder.to_value().as_bytes(),
            );
        }
        secret.admission().set(engine.clone(), map, "b".into());
        (engine, secret)
    }

    fn key_of(key: &str) -> StreamKey {
        StreamKey::parse(key).expect("key")
    }

    #[tokio::test]
    async fn a_publish_held_by_another_node_under_reject_is_refused_naming_it() {
        let (engine, _) = node_b(Arc::new(PermitAll));
        let refused = engine
            .open_publish(Request::new(key_of("live/held"), "rtmp"))
            .await
            .expect_err("held by a");
        let Error::Unauthorized { refusal, .. } = &refused else {
            panic!("not a refusal: {refused}");
        };
        assert_eq!(refusal.kind(), RefusalKind::Forbidden);
        for part in [
            "live/held",
            "node \"a\"",
            "[cluster]",
            "duplicate = \"reject\"",
        ] {
            assert!(refusal.reason().contains(part), "{part}: {refusal}");
        }
        // Nothing was opened here: no publish, nothing for readers.
        assert!(engine.streams().is_empty());
        let counted = engine.listeners();
        let cluster = counted.iter().find(|l| l.name == super::STATS);
        assert_eq!(
            cluster.map(|l| l.refusals.clone()),
            Some(vec![("already_publishing", 1)])
        );
    }

    #[tokio::test]
    async fn take_over_own_entries_unheld_streams_and_relay_publishes_pass() {
        let (engine, _) = node_b(Arc::new(PermitAll));
        for key in ["open/held", "live/mine", "live/free"] {
            let publish = engine.open_publish(Request::new(key_of(key), "rtmp")).await;
            assert!(publish.is_ok(), "{key}: {:?}", publish.err());
        }
        let relay = engine
            .open_publish(Request {
                credentials: tidewater_core::Credentials::Token("s3cret-s3cret".into()),
                ..Request::new(key_of("live/held"), RELAY_PROTOCOL)
            })
            .await;
        assert!(relay.is_ok(), "{:?}", relay.err());
    }

    #[tokio::test]
    async fn the_servers_authorizer_answers_first_and_a_stopped_node_checks_nothing() {
        let (engine, secret) = node_b(Arc::new(TokensOnly));
        // Without credentials the peer is asked for them, and told nothing
        // of the cluster.
        let refused = engine
            .open_publish(Request::new(key_of("live/held"), "rtmp"))
            .await
            .expect_err("no token");
        let Error::Unauthorized { refusal, .. } = &refused else {
            panic!("not a refusal: {refused}");
        };
        assert_eq!(refusal.kind(), RefusalKind::MissingCredentials);
        assert!(!refusal.reason().contains("node"), "{refusal}");
        secret.admission().clear();
        let publish = engine
            .open_publish(Request {
                credentials: tidewater_core::Credentials::Token("user".into()),
                ..Request::new(key_of("live/held"), "rtmp")
            })
            .await;
        assert!(publish.is_ok(), "{:?}", publish.err());
    }
}
