//! The engine: applications and their streams, publish generations, the
//! idle reaper, and the concrete registry behind the seam traits.

mod builder;
mod ondemand;
mod reaper;
mod request;
mod sessions;
mod slot;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

pub use builder::EngineBuilder;
pub use ondemand::OnDemandSource;
pub use request::Request;
pub(crate) use slot::StreamSlot;

use crate::auth::{Action, AuthRequest, Authorizer, Identity, Refusal};
use crate::bus::{Bus, Emitter, PublishMeta, Subscription};
use crate::error::{EndReason, Error, Result};
use crate::events::{StreamEvent, StreamEventKind};
use crate::follow::Follower;
use crate::key::StreamKey;
use crate::players::{PlayerInfo, PlayerRegistry, PlayerSession};
use crate::policy::{AppSpec, DuplicatePublish};
use crate::qos::SessionInfo;
use crate::registry::ListenerRegistry;
use crate::session::PublishSession;
use crate::snapshot::StreamSnapshot;

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Refuses a reader (not an internal one) of a stream that has `max` (not 0)
/// readers already. Checked at admission: two racing readers may both pass
/// at the limit, which is a bound on resources, not an exact count.
fn check_reader_limit(req: &Request, max: usize, bus: &Bus) -> Result<()> {
    if max == 0 || req.internal {
        return Ok(());
    }
    let readers = bus
        .live_subscribers
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(
            bus.internal_subscribers
                .load(std::sync::atomic::Ordering::Relaxed),
        );
    if readers >= max {
        tracing::info!(stream = %req.key, protocol = req.protocol, peer = %crate::logs::Peer(req.peer), "reader refused: the stream has {readers} readers, its application allows {max} (max_readers)");
        return Err(Error::ReaderLimit {
            key: req.key.clone(),
            limit: max,
        });
    }
    Ok(())
}

/// The kernel: every stream of every application. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<EngineInner>,
}

pub(crate) struct EngineInner {
    apps: HashMap<String, AppSpec>,
    default_app: Option<AppSpec>,
    streams: Mutex<HashMap<StreamKey, Arc<StreamSlot>>>,
    pub(crate) emitter: Arc<Emitter>,
    auth: Arc<dyn Authorizer>,
    /// Ids of publish and read sessions alike.
    next_session: AtomicU64,
    pub(crate) listeners: Arc<ListenerRegistry>,
    /// HLS and DASH players, registered by their packagers.
    pub(crate) players: Arc<PlayerRegistry>,
    /// Sources started when a reader asks for a stream that is not live.
    pub(crate) on_demand: ondemand::OnDemandSources,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("apps", &self.inner.apps.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts configuring an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    fn app(&self, key: &StreamKey) -> Result<&AppSpec> {
        self.inner
            .apps
            .get(key.app())
            .or(self.inner.default_app.as_ref())
            .ok_or_else(|| Error::UnknownApp {
                app: key.app().to_string(),
                key: key.clone(),
            })
    }

    async fn authorize(&self, action: Action, req: &Request) -> Result<Identity> {
        // The server's own readers (packagers, recorders) and sources (pulls
        // the operator configured) were built by its code, never from a
        // peer's input: the readers serve players that are authorized request
        // by request, and a configured source is the operator's own.
        if req.internal {
            return Ok(Identity::anonymous());
        }
        let auth = AuthRequest {
            action,
            key: Some(req.key.clone()),
            peer: req.peer,
            protocol: req.protocol,
            credentials: req.credentials.clone(),
            query: req.query.clone(),
            id: None,
        };
        self.inner
            .auth
            .authorize(&auth)
            .await
            .map_err(|refusal| Error::Unauthorized {
                action,
                key: req.key.clone(),
                peer: req.peer,
                refusal,
            })
    }

    /// Asks the authorizer about any request: a stream's playlist or
    /// segment, the API, the metrics. Publishes and subscriptions are
    /// asked for by [`open_publish`](Self::open_publish),
    /// [`subscribe`](Self::subscribe) and [`follow`](Self::follow) themselves.
    pub async fn authorize_request(
        &self,
        request: &AuthRequest,
    ) -> std::result::Result<Identity, Refusal> {
        self.inner.auth.authorize(request).await
    }

    /// The authorizer's short-lived read token for `who` on `key`, for
    /// playlist URIs; `None` when a peer at `ip` may read `key` anonymously
    /// (see [`Authorizer::read_token`]).
    pub fn read_token(
        &self,
        key: &StreamKey,
        who: &Identity,
        ip: Option<std::net::IpAddr>,
    ) -> Option<String> {
        self.inner.auth.read_token(key, who, ip)
    }

    /// The realm of HTTP and RTSP challenges ([`Authorizer::realm`]).
    pub fn realm(&self) -> String {
        self.inner.auth.realm()
    }

    /// A Digest nonce for an RTSP challenge ([`Authorizer::digest_nonce`]).
    pub fn digest_nonce(&self) -> Option<String> {
        self.inner.auth.digest_nonce()
    }

    /// Registers an HLS or DASH player (see [`PlayerSession`]): listed with
    /// the sessions and kickable until the returned handle is dropped.
    pub fn register_player(&self, info: PlayerInfo) -> PlayerSession {
        self.inner.players.register(self.next_session_id(), info)
    }

    /// Claims a stream for publishing, after asking the authorizer.
    pub async fn open_publish(&self, req: Request) -> Result<PublishSession> {
        let app = self.app(&req.key)?.clone();
        let identity = self.authorize(Action::Publish, &req).await?;
        let id = self.next_session_id();
        let policy = Arc::new(app.policy_for(req.key.stream()).clone());
        let (bus, slot, superseded) = {
            let mut streams = self.inner.streams.lock().unwrap_or_else(|p| p.into_inner());
            // Counted only when limited: opening stays O(1) otherwise.
            let live_in_app = if app.max_publishers > 0 {
                streams
                    .values()
                    .filter(|s| {
                        s.key.app() == req.key.app() && s.live().is_some() && s.key != req.key
                    })
                    .count()
            } else {
                0
            };
            let slot = Arc::clone(
                streams
                    .entry(req.key.clone())
                    .or_insert_with(|| Arc::new(StreamSlot::new(req.key.clone()))),
            );
            let current = slot.live();
            if current.is_some() && app.duplicate == DuplicatePublish::Reject {
                return Err(Error::AlreadyPublishing {
                    key: req.key.clone(),
                    peer: current.as_ref().and_then(|bus| bus.meta.peer),
                });
            }
            if current.is_none() && app.max_publishers > 0 && live_in_app >= app.max_publishers {
                return Err(Error::PublisherLimit {
                    app: req.key.app().to_string(),
                    limit: app.max_publishers,
                    key: req.key.clone(),
                });
            }
            let generation = slot.next_generation();
            let meta = PublishMeta {
                id,
                user: identity.user.or_else(|| req.user.clone()),
                protocol: req.protocol,
                peer: req.peer,
                started_wall: SystemTime::now(),
            };
            let bus = Bus::new(
                req.key.clone(),
                generation,
                policy,
                meta,
                Arc::clone(&self.inner.emitter),
            );
            let superseded = current.filter(|old| old.close(EndReason::Superseded));
            slot.set_live(Arc::clone(&bus));
            (bus, slot, superseded)
        };
        if let Some(old) = superseded {
            tracing::info!(stream = %req.key, generation = old.generation, "publish taken over by {}", crate::logs::Peer(req.peer));
            self.emit(
                &req.key,
                StreamEventKind::PublishEnded {
                    generation: old.generation,
                    reason: EndReason::Superseded,
                },
            );
        }
        tracing::info!(stream = %req.key, generation = bus.generation, session = id, protocol = req.protocol, peer = %crate::logs::Peer(req.peer), "publish started");
        self.emit(
            &req.key,
            StreamEventKind::PublishStarted {
                generation: bus.generation,
                protocol: req.protocol,
                peer: req.peer,
            },
        );
        Ok(PublishSession::new(
            bus,
            slot,
            Arc::clone(&self.inner.emitter),
        ))
    }

    fn live_slot(&self, key: &StreamKey) -> Option<Arc<StreamSlot>> {
        self.inner
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// Subscribes to the live publish of a stream, after asking the authorizer.
    /// The subscription ends with that publish.
    pub async fn subscribe(&self, req: Request) -> Result<Subscription> {
        let max_readers = self.app(&req.key)?.max_readers;
        let identity = self.authorize(Action::Read, &req).await?;
        // Authorized first: a refused reader never starts an on-demand source.
        self.await_source(&req.key).await;
        let bus = self
            .live_slot(&req.key)
            .and_then(|s| s.live())
            .ok_or_else(|| Error::NotFound {
                key: req.key.clone(),
            })?;
        check_reader_limit(&req, max_readers, &bus)?;
        let info = self.session_info(&req, identity);
        Ok(Subscription::attach(bus, info))
    }

    /// The next session id: unique within the engine, for publishers and
    /// readers alike.
    fn next_session_id(&self) -> u64 {
        self.inner
            .next_session
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1
    }

    /// A new reader session's id and who it is.
    fn session_info(&self, req: &Request, identity: Identity) -> SessionInfo {
        SessionInfo {
            id: self.next_session_id(),
            protocol: req.protocol,
            peer: req.peer,
            user: identity.user.or_else(|| req.user.clone()),
            internal: req.internal,
            start_video_frames: req.start_video_frames,
        }
    }

    /// Follows a stream across republishes (for packagers, recorders and
    /// relays): it must be live now or have ended less than its grace period ago.
    pub async fn follow(&self, req: Request) -> Result<Follower> {
        let app = self.app(&req.key)?;
        let grace = app.policy_for(req.key.stream()).follow_grace;
        let max_readers = app.max_readers;
        let identity = self.authorize(Action::Read, &req).await?;
        self.await_source(&req.key).await;
        let slot = self.live_slot(&req.key).ok_or_else(|| Error::NotFound {
            key: req.key.clone(),
        })?;
        if let Some(bus) = slot.live() {
            check_reader_limit(&req, max_readers, &bus)?;
        }
        let info = self.session_info(&req, identity);
        Ok(Follower::new(slot, info, grace))
    }

    /// Every stream slot, copied out so the table's lock is not held while using them.
    fn slots(&self) -> Vec<Arc<StreamSlot>> {
        let streams = self.inner.streams.lock().unwrap_or_else(|p| p.into_inner());
        streams.values().cloned().collect()
    }

    /// Snapshots of every stream that is live now.
    pub fn streams(&self) -> Vec<StreamSnapshot> {
        let mut out: Vec<_> = self
            .slots()
            .iter()
            .filter_map(|s| s.live())
            .map(|b| StreamSnapshot::of(&b))
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// A snapshot of one live stream.
    pub fn stream(&self, key: &StreamKey) -> Option<StreamSnapshot> {
        self.live_slot(key)
            .and_then(|s| s.live())
            .map(|b| StreamSnapshot::of(&b))
    }

    /// Lifecycle events of every stream.
    pub fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<StreamEvent> {
        self.inner.emitter.events.subscribe()
    }

    pub(crate) fn emit(&self, key: &StreamKey, kind: StreamEventKind) {
        self.inner.emitter.emit(key, kind);
    }

    /// Ends every live publish (followers and subscribers see
    /// [`EndReason::Shutdown`]). Publishing sessions get errors from then on.
    pub fn shutdown(&self) {
        for slot in self.slots() {
            if let Some(bus) = slot.live() {
                slot.end(&bus, EndReason::Shutdown, &self.inner.emitter);
            }
        }
    }
}
