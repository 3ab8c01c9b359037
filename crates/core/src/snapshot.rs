//! Point-in-time views of streams for the API and metrics.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::bus::Bus;
use crate::catalog::{AudioParams, Catalog, VideoParams};
use crate::frame::{Codec, MediaKind, TrackId};
use crate::key::StreamKey;
use crate::qos::{QosSnapshot, SubscriberSnapshot};

/// A live stream as the API shows it.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct StreamSnapshot {
    /// `app/stream`.
    pub key: StreamKey,
    /// The publish generation.
    pub generation: u64,
    /// The ingest protocol.
    pub protocol: &'static str,
    /// The publisher's address.
    pub peer: Option<SocketAddr>,
    /// When the publish started (Unix milliseconds).
    pub started_unix_ms: u64,
    /// Metadata the ingest set (encoder, title, …).
    pub metadata: BTreeMap<String, String>,
    /// The catalog in force, once announced.
    pub catalog: Option<CatalogSnapshot>,
    /// Counters and rates.
    pub qos: QosSnapshot,
    /// Current subscribers.
    pub subscribers: Vec<SubscriberSnapshot>,
    /// Bytes of derived outputs cached for this stream.
    pub derived_bytes: usize,
}

/// A catalog as the API shows it (decoder configurations by size only).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct CatalogSnapshot {
    /// Its version.
    pub version: u64,
    /// Its tracks.
    pub tracks: Vec<TrackSnapshot>,
}

/// One track as the API shows it.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct TrackSnapshot {
    /// Track id.
    pub id: TrackId,
    /// Video or audio.
    pub kind: MediaKind,
    /// Codec.
    pub codec: Codec,
    /// Timescale.
    pub timescale: u32,
    /// Video parameters.
    pub video: Option<VideoParams>,
    /// Audio parameters.
    pub audio: Option<AudioParams>,
    /// Size of the decoder configuration in bytes (0 if none).
    pub config_bytes: usize,
}

impl CatalogSnapshot {
    /// Summarizes a catalog.
    pub fn of(catalog: &Catalog) -> Self {
        CatalogSnapshot {
            version: catalog.version(),
            tracks: catalog
                .tracks()
                .iter()
                .map(|t| TrackSnapshot {
                    id: t.id,
                    kind: t.kind(),
                    codec: t.codec,
                    timescale: t.timescale,
                    video: t.video,
                    audio: t.audio,
                    config_bytes: t.config.as_ref().map_or(0, |c| c.len()),
                })
                .collect(),
        }
    }
}

impl StreamSnapshot {
    pub(crate) fn of(bus: &Arc<Bus>) -> Self {
        let subscribers = bus
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|w| w.upgrade())
            .map(|s| s.snapshot())
            .collect();
        StreamSnapshot {
            key: bus.key.clone(),
            generation: bus.generation,
            protocol: bus.meta.protocol,
            peer: bus.meta.peer,
            started_unix_ms: crate::engine::unix_ms(bus.meta.started_wall),
            metadata: bus
                .metadata
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            catalog: bus.catalog.load_full().map(|c| CatalogSnapshot::of(&c)),
            qos: bus.stats.snapshot(),
            subscribers,
            derived_bytes: bus.derived_bytes(),
        }
    }
}
