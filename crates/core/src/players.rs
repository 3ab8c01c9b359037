//! Players: readers the kernel does not see as subscriptions.
//!
//! An HLS or DASH player fetches playlists and segments that one packager
//! made from one shared subscription, so the bus knows the packager, not the
//! players. The packager registers each player here (one per signed read
//! token, or per peer address when reads are anonymous), counts what it
//! sends, and drops it after an idle timeout; the engine then lists players
//! with the other sessions and can kick them, which the packager checks on
//! the player's next request.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

use crate::key::StreamKey;
use crate::snapshot::{SessionKind, SessionSnapshot};

/// Who a player is, as its packager registers it.
#[derive(Clone, Debug)]
pub struct PlayerInfo {
    /// The stream it plays.
    pub key: StreamKey,
    /// Its protocol (`hls`, `llhls`, `dash`).
    pub protocol: &'static str,
    /// The address its first request came from.
    pub peer: Option<SocketAddr>,
    /// The user it authenticated as, if any.
    pub user: Option<String>,
}

/// One registered player; unregistered when the last clone is dropped.
///
/// Cheap to clone; the packager keeps one per player and drops it when the
/// player has been idle for its timeout.
#[derive(Clone, Debug)]
pub struct PlayerSession {
    inner: Arc<PlayerEntry>,
}

#[derive(Debug)]
struct PlayerEntry {
    id: u64,
    info: PlayerInfo,
    started_unix_ms: u64,
    bytes_out: AtomicU64,
    requests: AtomicU64,
    kicked: AtomicBool,
    registry: Weak<PlayerRegistry>,
}

impl Drop for PlayerEntry {
    fn drop(&mut self) {
        if let Some(r) = self.registry.upgrade() {
            r.players
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&self.id);
        }
    }
}

impl PlayerSession {
    /// Its session id (what [`Engine::kick`](crate::Engine::kick) takes).
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Who it is.
    pub fn info(&self) -> &PlayerInfo {
        &self.inner.info
    }

    /// Counts one answered request of `bytes` body bytes.
    pub fn record_sent(&self, bytes: u64) {
        self.inner.bytes_out.fetch_add(bytes, Relaxed);
        self.inner.requests.fetch_add(1, Relaxed);
    }

    /// Whether the operator kicked it: its next requests must be refused.
    pub fn is_kicked(&self) -> bool {
        self.inner.kicked.load(Relaxed)
    }
}

/// Every registered player of an engine.
#[derive(Debug, Default)]
pub(crate) struct PlayerRegistry {
    players: Mutex<BTreeMap<u64, Weak<PlayerEntry>>>,
}

impl PlayerRegistry {
    /// Registers a player under session id `id`.
    pub(crate) fn register(self: &Arc<Self>, id: u64, info: PlayerInfo) -> PlayerSession {
        let entry = Arc::new(PlayerEntry {
            id,
            info,
            started_unix_ms: crate::engine::unix_ms(SystemTime::now()),
            bytes_out: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            kicked: AtomicBool::new(false),
            registry: Arc::downgrade(self),
        });
        self.players
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Arc::downgrade(&entry));
        PlayerSession { inner: entry }
    }

    fn live(&self) -> Vec<Arc<PlayerEntry>> {
        self.players
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter_map(Weak::upgrade)
            .filter(|e| !e.kicked.load(Relaxed))
            .collect()
    }

    /// Snapshots of every player not kicked; `generation` names the live
    /// generation of each player's stream (0 when it has none).
    pub(crate) fn snapshots(&self, generation: impl Fn(&StreamKey) -> u64) -> Vec<SessionSnapshot> {
        self.live()
            .iter()
            .map(|e| SessionSnapshot {
                id: e.id,
                kind: SessionKind::Reader,
                protocol: e.info.protocol,
                peer: e.info.peer,
                path: e.info.key.clone(),
                generation: generation(&e.info.key),
                user: e.info.user.clone(),
                started_unix_ms: e.started_unix_ms,
                bytes_in: 0,
                bytes_out: e.bytes_out.load(Relaxed),
                frames: 0,
                lag_us: 0,
                lag_events: 0,
                skipped_frames: 0,
                join_time_us: 0,
            })
            .collect()
    }

    /// Marks player `id` kicked; whether one was registered and not kicked yet.
    pub(crate) fn kick(&self, id: u64) -> bool {
        let entry = self
            .players
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .and_then(Weak::upgrade);
        match entry {
            Some(e) => {
                let first = !e.kicked.swap(true, Relaxed);
                if first {
                    tracing::info!(stream = %e.info.key, session = id, protocol = e.info.protocol, peer = %crate::logs::Peer(e.info.peer), "player kicked by the operator");
                }
                first
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> PlayerInfo {
        PlayerInfo {
            key: StreamKey::parse("live/a").expect("key"),
            protocol: "hls",
            peer: None,
            user: Some("u".into()),
        }
    }

    #[test]
    fn players_are_listed_while_held_and_kicked_once() {
        let registry = Arc::new(PlayerRegistry::default());
        let one = registry.register(7, info());
        one.record_sent(100);
        one.record_sent(50);
        let listed = registry.snapshots(|_| 3);
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].id, listed[0].bytes_out, listed[0].generation),
            (7, 150, 3)
        );
        assert_eq!(listed[0].user.as_deref(), Some("u"));

        assert!(registry.kick(7));
        assert!(one.is_kicked());
        assert!(!registry.kick(7), "a second kick finds nothing to do");
        assert!(registry.snapshots(|_| 3).is_empty());

        let two = registry.register(8, info());
        drop(two);
        assert!(
            registry.snapshots(|_| 0).is_empty(),
            "dropped players leave"
        );
        assert!(!registry.kick(8));
    }
}
