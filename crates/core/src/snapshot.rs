//! Point-in-time views of streams for the API and metrics.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::bus::Bus;
use crate::catalog::{AudioParams, Catalog, TrackInfo, VideoParams};
use crate::frame::{Codec, MediaKind, TrackId};
use crate::key::StreamKey;
use crate::qos::{QosSnapshot, StreamMetrics, SubscriberSnapshot, SubscriberStats};

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
    /// The catalog itself, for [`name_codecs`](Self::name_codecs).
    #[cfg_attr(feature = "serde", serde(skip))]
    source: Arc<Catalog>,
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
    /// The RFC 6381 codec string (`avc1.64001f`, `mp4a.40.2`, `opus`), once
    /// named: the kernel knows no container syntax and leaves it `None`;
    /// whoever shows snapshots fills it with
    /// [`CatalogSnapshot::name_codecs`] (the server does, with
    /// `tidewater-media`'s `rfc6381::codec_string`).
    pub codec_string: Option<String>,
}

impl CatalogSnapshot {
    /// Summarizes a catalog.
    pub fn of(catalog: &Catalog) -> Self {
        Self::of_shared(Arc::new(catalog.clone()))
    }

    /// Summarizes a catalog the snapshot keeps a reference to.
    pub(crate) fn of_shared(catalog: Arc<Catalog>) -> Self {
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
                    codec_string: None,
                })
                .collect(),
            source: catalog,
        }
    }

    /// The catalog summarized.
    pub fn catalog(&self) -> &Catalog {
        &self.source
    }

    /// Fills every track's [`codec_string`](TrackSnapshot::codec_string) with
    /// what `name` makes of the track (its decoder configuration included).
    pub fn name_codecs(&mut self, name: impl Fn(&TrackInfo) -> Option<String>) {
        for (track, info) in self.tracks.iter_mut().zip(self.source.tracks()) {
            track.codec_string = name(info);
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
            catalog: bus.catalog.load_full().map(CatalogSnapshot::of_shared),
            qos: bus.stats.snapshot(),
            subscribers,
            derived_bytes: bus.derived_bytes(),
        }
    }
}

impl StreamSnapshot {
    /// Fills the codec strings of the catalog's tracks (see
    /// [`CatalogSnapshot::name_codecs`]).
    pub fn name_codecs(&mut self, name: impl Fn(&TrackInfo) -> Option<String>) {
        if let Some(catalog) = &mut self.catalog {
            catalog.name_codecs(name);
        }
    }
}

/// Whether a session publishes or reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "lowercase")
)]
pub enum SessionKind {
    /// It publishes the stream.
    Publisher,
    /// It reads the stream (a viewer, a packager, a relay, a recorder).
    Reader,
}

/// One publisher or reader of a live stream, as the API lists it
/// ([`Engine::sessions`](crate::Engine::sessions)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct SessionSnapshot {
    /// Its id, unique within the engine (what [`Engine::kick`](crate::Engine::kick) takes).
    pub id: u64,
    /// Publisher or reader.
    pub kind: SessionKind,
    /// Its protocol (`rtmp`, `srt`, `http-flv`, `hls`, …).
    pub protocol: &'static str,
    /// The peer's address, where the protocol has one.
    pub peer: Option<SocketAddr>,
    /// The stream (`app/stream`).
    pub path: StreamKey,
    /// The publish generation it publishes or reads.
    pub generation: u64,
    /// The user it authenticated as, if any.
    pub user: Option<String>,
    /// When it started (Unix milliseconds).
    pub started_unix_ms: u64,
    /// Payload bytes received from it (publishers; 0 for readers).
    pub bytes_in: u64,
    /// Bytes its protocol driver wrote to it (readers; 0 for publishers).
    pub bytes_out: u64,
    /// Frames published (publishers) or delivered (readers; published every
    /// 256 frames).
    pub frames: u64,
    /// How far behind live it was at its last check, in microseconds (readers).
    pub lag_us: u64,
    /// Times it fell behind and skipped to a keyframe (readers).
    pub lag_events: u64,
    /// Frames it skipped that way (readers).
    pub skipped_frames: u64,
    /// Subscribe to first frame, in microseconds (readers; 0 until then).
    pub join_time_us: u64,
}

impl SessionSnapshot {
    /// The publisher of a generation.
    pub(crate) fn publisher(bus: &Bus) -> Self {
        let qos = bus.stats.snapshot();
        SessionSnapshot {
            id: bus.meta.id,
            kind: SessionKind::Publisher,
            protocol: bus.meta.protocol,
            peer: bus.meta.peer,
            path: bus.key.clone(),
            generation: bus.generation,
            user: bus.meta.user.clone(),
            started_unix_ms: crate::engine::unix_ms(bus.meta.started_wall),
            bytes_in: qos.bytes,
            bytes_out: 0,
            frames: qos.frames,
            lag_us: 0,
            lag_events: 0,
            skipped_frames: 0,
            join_time_us: 0,
        }
    }

    /// A reader of a generation.
    pub(crate) fn reader(bus: &Bus, stats: &SubscriberStats) -> Self {
        let s = stats.snapshot();
        SessionSnapshot {
            id: s.id,
            kind: SessionKind::Reader,
            protocol: s.protocol,
            peer: s.peer,
            path: bus.key.clone(),
            generation: bus.generation,
            user: s.user,
            started_unix_ms: s.joined_unix_ms,
            bytes_in: 0,
            bytes_out: s.bytes_sent,
            frames: s.delivered,
            lag_us: s.lag_us,
            lag_events: s.lag_events,
            skipped_frames: s.skipped,
            join_time_us: s.join_time_us,
        }
    }
}

impl StreamMetrics {
    pub(crate) fn of(bus: &Bus) -> Self {
        let qos = bus.stats.snapshot();
        StreamMetrics {
            key: bus.key.clone(),
            generation: bus.generation,
            protocol: bus.meta.protocol,
            frames_in: qos.frames,
            bytes_in: qos.bytes,
            readers: bus.stats.reader_metrics(&bus.subscribers),
        }
    }
}
