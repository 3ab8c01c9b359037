//! The directory's etcd driver: the node's lease and registration, the
//! claims of the streams it holds, and the watch that keeps the local map.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use tidewater_core::logs::LogLimiter;
use tidewater_core::{CancellationToken, StreamKey};

use super::map::{Holder, NodeInfo, STREAMS, StreamMap, node_path, stream_path};
use crate::config::ClusterConfig;
use crate::error::{Error, Result};

/// How long to wait before retrying etcd after a failure.
const RETRY: Duration = Duration::from_secs(1);
/// Retry lines about etcd let through per [`ETCD_LOG_INTERVAL`]: the
/// registration and the watch each retry every [`RETRY`] while etcd is
/// away, which would be two lines a second.
const ETCD_LOG_BURST: u32 = 4;
/// See [`ETCD_LOG_BURST`].
const ETCD_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// The result of claiming a stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// This node holds it now.
    Granted,
    /// Another node holds it (and the policy keeps it there).
    HeldBy(Holder),
}

/// A stream this node put, with the revision of its put.
#[derive(Clone, Debug)]
struct Owned {
    value: String,
    revision: i64,
}

/// This node's view of and presence in the directory.
pub struct EtcdDirectory {
    client: Client,
    info: Mutex<NodeInfo>,
    ttl: i64,
    lease: AtomicI64,
    owned: Mutex<HashMap<StreamKey, Owned>>,
    map: Arc<StreamMap>,
    /// The rate limit of the retry loops' lines (with a count of the rest).
    failures: LogLimiter,
}

impl std::fmt::Debug for EtcdDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdDirectory")
            .field("node", &self.lock_info().id)
            .field("lease", &self.lease.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl EtcdDirectory {
    /// Connects to etcd and registers the node under a new lease.
    pub async fn connect(config: &ClusterConfig, info: NodeInfo) -> Result<Arc<Self>> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(3));
        if let Some((user, pass)) = &config.etcd_user {
            options = options.with_user(user.clone(), pass.clone());
        }
        #[cfg(feature = "tls")]
        if let Some(ca) = &config.etcd_ca {
            let pem = std::fs::read(ca)
                .map_err(|e| Error::Config(format!("etcd CA {}: {e}", ca.display())))?;
            options = options.with_tls(
                etcd_client::TlsOptions::new()
                    .ca_certificate(etcd_client::Certificate::from_pem(pem)),
            );
        }
        #[cfg(not(feature = "tls"))]
        if config.etcd_ca.is_some() {
            return Err(Error::Config(
                "etcd TLS needs the `tls` feature of tidewater-cluster".into(),
            ));
        }
        let client = Client::connect(&config.etcd, Some(options)).await?;
        let dir = Arc::new(EtcdDirectory {
            client,
            info: Mutex::new(info),
            ttl: i64::try_from(config.lease_ttl.as_secs().max(2)).unwrap_or(10),
            lease: AtomicI64::new(0),
            owned: Mutex::default(),
            map: Arc::default(),
            failures: LogLimiter::new(ETCD_LOG_BURST, ETCD_LOG_INTERVAL),
        });
        dir.register().await?;
        Ok(dir)
    }

    /// The local copy of the stream directory.
    pub fn map(&self) -> &Arc<StreamMap> {
        &self.map
    }

    /// This node's id.
    pub fn node_id(&self) -> String {
        self.lock_info().id.clone()
    }

    fn lock_info(&self) -> std::sync::MutexGuard<'_, NodeInfo> {
        self.info.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_owned(&self) -> std::sync::MutexGuard<'_, HashMap<StreamKey, Owned>> {
        self.owned.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lease_opts(&self) -> PutOptions {
        PutOptions::new().with_lease(self.lease.load(Ordering::Relaxed))
    }

    /// Grants a lease and puts the node and every stream it holds under it
    /// (at start, and again after the lease was lost: etcd restarted or
    /// unreachable past the TTL).
    async fn register(&self) -> Result<()> {
        let mut client = self.client.clone();
        let lease = client.lease_grant(self.ttl, None).await?.id();
        self.lease.store(lease, Ordering::Relaxed);
        let info = self.lock_info().clone();
        let value = serde_json::to_string(&info).unwrap_or_default();
        client
            .put(node_path(&info.id), value, Some(self.lease_opts()))
            .await?;
        let owned: Vec<_> = self
            .lock_owned()
            .iter()
            .map(|(k, o)| (k.clone(), o.value.clone()))
            .collect();
        for (key, value) in owned {
            let rev = client
                .put(stream_path(&key), value.clone(), Some(self.lease_opts()))
                .await?
                .header()
                .map_or(0, |h| h.revision());
            if let Some(o) = self.lock_owned().get_mut(&key) {
                o.revision = rev;
            }
        }
        tracing::info!(node = %info.id, lease, "registered in the cluster directory");
        Ok(())
    }

    /// Updates the load the node advertises (written on the next renewal).
    pub fn set_load(&self, streams: usize, readers: usize) {
        let mut info = self.lock_info();
        info.streams = streams;
        info.readers = readers;
    }

    /// Keeps the lease alive (and the node's load current) until
    /// `shutdown`, registering anew whenever the lease is lost; then
    /// revokes it, so the node's streams leave the directory at once.
    pub async fn keep_alive(self: Arc<Self>, shutdown: CancellationToken) {
        let every = Duration::from_secs((self.ttl as u64 / 3).max(1));
        loop {
            let failed = tokio::select! {
                () = shutdown.cancelled() => break,
                e = self.renew(every) => e,
            };
            // Once per outage: not on the retries' budget.
            tracing::warn!(
                "cluster: the node's etcd lease could not be renewed ({failed}): registering again every {}s; \
                 its streams leave the directory {}s after the last renewal ([cluster] etcd, lease_ttl_ms)",
                RETRY.as_secs(),
                self.ttl
            );
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(RETRY) => {}
                }
                match self.register().await {
                    Ok(()) => break,
                    Err(e) => {
                        if let Some(note) = self.failures.check_now() {
                            tracing::warn!(
                                "cluster: registering with etcd failed ({e}); trying again every {}s ([cluster] etcd){note}",
                                RETRY.as_secs()
                            );
                        }
                    }
                }
            }
        }
        let lease = self.lease.load(Ordering::Relaxed);
        let mut client = self.client.clone();
        let _ = tokio::time::timeout(Duration::from_secs(2), client.lease_revoke(lease)).await;
    }

    /// Renews the lease every `every` until that fails.
    async fn renew(&self, every: Duration) -> Error {
        let mut client = self.client.clone();
        let lease = self.lease.load(Ordering::Relaxed);
        let (mut keeper, mut responses) = match client.lease_keep_alive(lease).await {
            Ok(k) => k,
            Err(e) => return e.into(),
        };
        loop {
            if let Err(e) = keeper.keep_alive().await {
                return e.into();
            }
            match tokio::time::timeout(every * 2, responses.message()).await {
                Ok(Ok(Some(r))) if r.ttl() > 0 => {}
                Ok(Ok(_)) => return Error::Config("lease expired".into()),
                Ok(Err(e)) => return e.into(),
                Err(_) => return Error::Timeout(every * 2),
            }
            let info = self.lock_info().clone();
            let value = serde_json::to_string(&info).unwrap_or_default();
            if let Err(e) = client
                .put(node_path(&info.id), value, Some(self.lease_opts()))
                .await
            {
                return e.into();
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Claims `key` for this node's publish `generation`. With `take_over`
    /// the claim always wins; otherwise a stream held by another node stays
    /// there (one etcd transaction decides: the key is created only if it
    /// does not exist).
    pub async fn claim(&self, key: &StreamKey, generation: u64, take_over: bool) -> Result<Claim> {
        let info = self.lock_info().clone();
        let value = Holder {
            node: info.id.clone(),
            relay: info.relay,
            generation,
        }
        .to_value();
        let path = stream_path(key);
        let put = TxnOp::put(path.clone(), value.clone(), Some(self.lease_opts()));
        let txn = if take_over {
            Txn::new().and_then([put])
        } else {
            Txn::new()
                .when([Compare::create_revision(path.clone(), CompareOp::Equal, 0)])
                .and_then([put])
                .or_else([TxnOp::get(path.clone(), None)])
        };
        let mut client = self.client.clone();
        let response = client.txn(txn).await?;
        let revision = response.header().map_or(0, |h| h.revision());
        if !response.succeeded() {
            let holder = response.op_responses().into_iter().find_map(|r| match r {
                TxnOpResponse::Get(g) => g
                    .kvs()
                    .first()
                    .and_then(|kv| Holder::from_value(kv.value())),
                _ => None,
            });
            match holder {
                // This node's own entry from an earlier publish: renew it.
                Some(h) if h.node == info.id => {
                    return Box::pin(self.claim(key, generation, true)).await;
                }
                Some(h) => return Ok(Claim::HeldBy(h)),
                // Deleted in between: try again.
                None => return Box::pin(self.claim(key, generation, false)).await,
            }
        }
        self.lock_owned()
            .insert(key.clone(), Owned { value, revision });
        Ok(Claim::Granted)
    }

    /// Releases `key` if this node's publish `generation` still holds it.
    pub async fn release(&self, key: &StreamKey, generation: u64) -> Result<()> {
        let value = {
            let mut owned = self.lock_owned();
            let Some(o) = owned.get(key) else {
                return Ok(());
            };
            if Holder::from_value(o.value.as_bytes()).map(|h| h.generation) != Some(generation) {
                return Ok(());
            }
            owned.remove(key).map(|o| o.value).unwrap_or_default()
        };
        let path = stream_path(key);
        let txn = Txn::new()
            .when([Compare::value(path.clone(), CompareOp::Equal, value)])
            .and_then([TxnOp::delete(path, None)]);
        let mut client = self.client.clone();
        client.txn(txn).await?;
        Ok(())
    }

    /// Whether a put of `key` at `revision` by another node took a stream
    /// this node held: then it is forgotten here and `true` is returned (the
    /// local publish must end).
    fn lost_to(&self, key: &StreamKey, revision: i64) -> bool {
        let mut owned = self.lock_owned();
        match owned.get(key) {
            Some(o) if revision > o.revision => {
                owned.remove(key);
                true
            }
            _ => false,
        }
    }

    /// Keeps the local map up to date until `shutdown`: lists the prefix,
    /// then watches it from the next revision, starting over after any
    /// failure. `lost` is called with each stream another node took from
    /// this one.
    pub async fn watch(self: Arc<Self>, shutdown: CancellationToken, lost: impl Fn(StreamKey)) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                e = self.watch_once(&lost) => {
                    if let Some(note) = self.failures.check_now() {
                        tracing::warn!(
                            "cluster: watching the stream directory in etcd failed ({e}): listing it again in {}s; \
                             this node learns of streams and moves late meanwhile ([cluster] etcd){note}",
                            RETRY.as_secs()
                        );
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(RETRY) => {}
            }
        }
    }

    async fn watch_once(&self, lost: &impl Fn(StreamKey)) -> Error {
        let mut client = self.client.clone();
        let listing = match client
            .get(STREAMS, Some(GetOptions::new().with_prefix()))
            .await
        {
            Ok(l) => l,
            Err(e) => return e.into(),
        };
        let revision = listing.header().map_or(0, |h| h.revision());
        self.map
            .reset(listing.kvs().iter().map(|kv| (kv.key(), kv.value())));
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let mut stream = match client.watch(STREAMS, Some(options)).await {
            Ok(s) => s,
            Err(e) => return e.into(),
        };
        let me = self.node_id();
        loop {
            let response = match stream.message().await {
                Ok(Some(r)) => r,
                Ok(None) => return Error::Config("watch closed by etcd".into()),
                Err(e) => return e.into(),
            };
            if response.canceled() {
                return Error::Config("watch cancelled by etcd (compacted?)".into());
            }
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                match event.event_type() {
                    EventType::Put => {
                        self.map.put(kv.key(), kv.value());
                        if let (Some(key), Some(h)) = (
                            super::map::parse_stream_path(kv.key()),
                            Holder::from_value(kv.value()),
                        ) && h.node != me
                            && self.lost_to(&key, kv.mod_revision())
                        {
                            lost(key);
                        }
                    }
                    EventType::Delete => self.map.delete(kv.key()),
                }
            }
        }
    }
}
