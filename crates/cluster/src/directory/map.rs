//! The stream directory's layout in etcd and its local copy, sans-IO: key
//! paths, the JSON values, and the map a watch keeps up to date.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tidewater_core::StreamKey;
use tokio::sync::watch;

/// Every key of the cluster starts with this.
pub const ROOT: &str = "/tidewater/";
/// Streams: `/tidewater/streams/{app}/{stream}`.
pub const STREAMS: &str = "/tidewater/streams/";
/// Nodes: `/tidewater/nodes/{node_id}`.
pub const NODES: &str = "/tidewater/nodes/";

/// The etcd key of a stream.
pub fn stream_path(key: &StreamKey) -> String {
    format!("{STREAMS}{}/{}", key.app(), key.stream())
}

/// The etcd key of a node.
pub fn node_path(id: &str) -> String {
    format!("{NODES}{id}")
}

/// The stream a key names, if it is a stream key.
pub fn parse_stream_path(path: &[u8]) -> Option<StreamKey> {
    let rest = std::str::from_utf8(path).ok()?.strip_prefix(STREAMS)?;
    StreamKey::parse(rest).ok()
}

/// Who holds a stream: the value of its key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The origin's node id.
    pub node: String,
    /// Where the origin's relay listens.
    pub relay: SocketAddr,
    /// The origin's publish generation of the stream.
    pub generation: u64,
}

impl Holder {
    /// The value stored in etcd.
    pub fn to_value(&self) -> String {
        // Serializing three plain fields cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a stored value (`None`: not a holder, ignored).
    pub fn from_value(value: &[u8]) -> Option<Holder> {
        serde_json::from_slice(value).ok()
    }
}

/// What a node says about itself, under its lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its id.
    pub id: String,
    /// Where its relay listens.
    pub relay: SocketAddr,
    /// Addresses viewers and publishers reach it at (`rtmp://…`, `http://…`).
    pub advertise: Vec<String>,
    /// Live streams it holds as an origin.
    pub streams: usize,
    /// Readers of every stream here (edge pulls' readers included).
    pub readers: usize,
}

/// The local copy of `/tidewater/streams/`, kept by a watch; readers wait
/// on [`changes`](Self::changes) for it to move.
#[derive(Debug)]
pub struct StreamMap {
    holders: Mutex<HashMap<StreamKey, Holder>>,
    changes: watch::Sender<u64>,
}

impl Default for StreamMap {
    fn default() -> Self {
        StreamMap {
            holders: Mutex::default(),
            changes: watch::channel(0).0,
        }
    }
}

impl StreamMap {
    fn bump(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StreamKey, Holder>> {
        self.holders.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Who holds `key`, if anyone.
    pub fn holder(&self, key: &StreamKey) -> Option<Holder> {
        self.lock().get(key).cloned()
    }

    /// Every stream and its holder.
    pub fn all(&self) -> Vec<(StreamKey, Holder)> {
        let mut all: Vec<_> = self
            .lock()
            .iter()
            .map(|(k, h)| (k.clone(), h.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// A receiver told of every change.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Replaces everything with a fresh listing (after a (re)connect).
    pub fn reset<'a>(&self, entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) {
        let fresh = entries
            .into_iter()
            .filter_map(|(k, v)| Some((parse_stream_path(k)?, Holder::from_value(v)?)))
            .collect();
        *self.lock() = fresh;
        self.bump();
    }

    /// A key was put.
    pub fn put(&self, path: &[u8], value: &[u8]) {
        let (Some(key), Some(holder)) = (parse_stream_path(path), Holder::from_value(value)) else {
            return;
        };
        self.lock().insert(key, holder);
        self.bump();
    }

    /// A key was deleted (or its lease expired).
    pub fn delete(&self, path: &[u8]) {
        let Some(key) = parse_stream_path(path) else {
            return;
        };
        if self.lock().remove(&key).is_some() {
            self.bump();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(node: &str, generation: u64) -> Holder {
        Holder {
            node: node.into(),
            relay: "127.0.0.1:7000".parse().expect("addr"),
            generation,
        }
    }

    #[test]
    fn paths_round_trip_and_foreign_keys_are_ignored() {
        let key = StreamKey::parse("live/cam").expect("key");
        assert_eq!(stream_path(&key), "/tidewater/streams/live/cam");
        assert_eq!(parse_stream_path(stream_path(&key).as_bytes()), Some(key));
        assert_eq!(parse_stream_path(b"/tidewater/nodes/a"), None);
        assert_eq!(parse_stream_path(b"/tidewater/streams/../x"), None);
        assert_eq!(parse_stream_path(b"/tidewater/streams/\xff/x"), None);
    }

    #[test]
    fn the_map_follows_puts_deletes_and_resets() {
        let map = StreamMap::default();
        let mut changes = map.changes();
        let key = StreamKey::parse("live/cam").expect("key");
        let path = stream_path(&key);
        map.put(path.as_bytes(), holder("a", 1).to_value().as_bytes());
        assert_eq!(map.holder(&key), Some(holder("a", 1)));
        assert!(changes.has_changed().expect("sender alive"));
        changes.mark_unchanged();
        // A value that is not a holder changes nothing.
        map.put(path.as_bytes(), b"{not json");
        assert_eq!(map.holder(&key), Some(holder("a", 1)));
        assert!(!changes.has_changed().expect("sender alive"));
        map.put(path.as_bytes(), holder("b", 4).to_value().as_bytes());
        assert_eq!(map.holder(&key).map(|h| h.node), Some("b".into()));
        map.delete(path.as_bytes());
        assert_eq!(map.holder(&key), None);
        let other = stream_path(&StreamKey::parse("live/other").expect("key"));
        let value = holder("c", 2).to_value();
        map.reset([(other.as_bytes(), value.as_bytes())]);
        assert_eq!(map.all().len(), 1);
    }
}
