//! The publish side: one RAII session per publish generation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use crate::bus::{Bus, Emitter, Writer};
use crate::catalog::{Catalog, TrackInfo};
use crate::engine::StreamSlot;
use crate::error::{EndReason, Error, Result};
use crate::events::StreamEventKind;
use crate::frame::{Frame, FrameFlags, MediaKind, TrackId};
use crate::key::StreamKey;
use crate::qos::PublishCounters;
use crate::time::{ClockAction, ClockAnchor, TrackClock, rescale, timescale};

/// Exclusive right to publish one generation of a stream.
///
/// Announce the track set with [`set_catalog`](Self::set_catalog), then
/// [`publish`](Self::publish) frames. Dropping the session (on an early
/// return, an error, a panic) ends its generation; [`finish`](Self::finish)
/// is the explicit form. Ending only ever touches this session's own
/// generation: a session that was taken over or reaped ends nothing when it
/// drops.
#[derive(Debug)]
pub struct PublishSession {
    writer: Writer,
    slot: Arc<StreamSlot>,
    emitter: Arc<Emitter>,
    catalog: Option<Arc<Catalog>>,
    /// Per catalog track, in catalog order.
    clocks: Vec<(TrackId, TrackClock)>,
    has_video: bool,
    counters: PublishCounters,
    ended: bool,
}

impl PublishSession {
    pub(crate) fn new(bus: Arc<Bus>, slot: Arc<StreamSlot>, emitter: Arc<Emitter>) -> Self {
        PublishSession {
            writer: Writer::new(bus),
            slot,
            emitter,
            catalog: None,
            clocks: Vec::new(),
            has_video: false,
            counters: PublishCounters::default(),
            ended: false,
        }
    }

    fn bus(&self) -> &Arc<Bus> {
        self.writer.bus()
    }

    /// The stream.
    pub fn key(&self) -> &StreamKey {
        &self.bus().key
    }

    /// This publish's generation number (1 for a stream's first publish).
    pub fn generation(&self) -> u64 {
        self.bus().generation
    }

    /// This publish session's id (unique within the engine, shared with
    /// readers' ids; what [`Engine::kick`](crate::Engine::kick) takes).
    pub fn id(&self) -> u64 {
        self.bus().meta.id
    }

    /// Resolves with the reason once this publish has ended by anything other
    /// than the session itself: taken over, reaped as idle, kicked by the
    /// operator, engine shutdown. A protocol driver waits on it next to its
    /// socket reads, so that it closes the connection at once even while the
    /// publisher sends nothing (a publisher that sends learns of the end
    /// from [`publish`](Self::publish) failing too).
    ///
    /// The future borrows nothing from the session: it can be spawned or
    /// kept across `&mut` uses of the session.
    pub fn closed(&self) -> impl std::future::Future<Output = EndReason> + Send + 'static + use<> {
        let mut changes = self.slot.watch();
        let bus = Arc::clone(self.bus());
        async move {
            // The slot announces the live generation (0 for none): anything
            // else than this one means it ended. The slot outlives the wait.
            let _ = changes.wait_for(|live| *live != bus.generation).await;
            bus.end_reason().unwrap_or(EndReason::Finished)
        }
    }

    /// The catalog in force.
    pub fn catalog(&self) -> Option<&Arc<Catalog>> {
        self.catalog.as_ref()
    }

    fn check_open(&self) -> Result<()> {
        match self.bus().end_reason() {
            None => Ok(()),
            Some(reason) => Err(Error::PublishEnded {
                key: self.key().clone(),
                generation: self.generation(),
                reason,
            }),
        }
    }

    /// Announces the track set; every later frame is published under it.
    /// Calling it again with a changed set (a new SPS, a new resolution) makes
    /// a new catalog version; calling it with the same set changes nothing.
    /// Timestamps of tracks that stay continue unwrapping where they were.
    pub fn set_catalog(&mut self, tracks: Vec<TrackInfo>) -> Result<Arc<Catalog>> {
        self.check_open()?;
        Catalog::validate(&tracks).map_err(|reason| Error::InvalidCatalog {
            key: self.key().clone(),
            reason,
        })?;
        if let Some(current) = &self.catalog
            && current.tracks() == tracks.as_slice()
        {
            return Ok(Arc::clone(current));
        }
        let version = self.catalog.as_ref().map_or(1, |c| c.version() + 1);
        let clocks = tracks
            .iter()
            .map(|t| {
                let kept = self
                    .clocks
                    .iter()
                    .zip(self.catalog.iter().flat_map(|c| c.tracks()))
                    .find(|((id, _), old)| {
                        *id == t.id && old.timescale == t.timescale && old.wrap == t.wrap
                    })
                    .map(|((_, clock), _)| clock.clone());
                (
                    t.id,
                    kept.unwrap_or_else(|| TrackClock::new(t.wrap, t.timescale)),
                )
            })
            .collect();
        self.has_video = tracks.iter().any(|t| t.kind() == MediaKind::Video);
        let catalog = Arc::new(Catalog::new_version(version, tracks));
        self.clocks = clocks;
        self.catalog = Some(Arc::clone(&catalog));
        self.bus().catalog.store(Some(Arc::clone(&catalog)));
        let (key, generation) = (self.key().clone(), self.generation());
        self.emitter.emit(
            &key,
            StreamEventKind::CatalogChanged {
                generation,
                version,
            },
        );
        Ok(catalog)
    }

    /// Publishes one frame to every subscriber. Never blocks and never waits
    /// for a subscriber; its cost does not grow with the number of
    /// subscribers beyond waking the ones that are parked.
    ///
    /// The frame's decode timestamp is unwrapped and made monotonic for its
    /// track first (see [`TrackClock`]).
    pub fn publish(&mut self, mut frame: Frame) -> Result<()> {
        self.check_open()?;
        let Some(catalog) = &self.catalog else {
            return Err(Error::NoCatalog {
                key: self.key().clone(),
            });
        };
        let Some(pos) = self.clocks.iter().position(|(id, _)| *id == frame.track) else {
            return Err(Error::UnknownTrack {
                key: self.key().clone(),
                track: frame.track,
            });
        };
        let (Some(track), Some((_, clock))) = (catalog.tracks().get(pos), self.clocks.get_mut(pos))
        else {
            return Err(Error::UnknownTrack {
                key: self.key().clone(),
                track: frame.track,
            });
        };
        let track_scale = track.timescale;
        match clock.apply(&mut frame.dts, &mut frame.pts) {
            ClockAction::Kept => {}
            ClockAction::Repaired => self.counters.repaired(&self.writer.bus().stats),
            ClockAction::Rebased => {
                frame.flags = frame.flags | FrameFlags::DISCONTINUITY;
                self.counters.rebased(&self.writer.bus().stats);
            }
        }
        let bus = Arc::clone(self.writer.bus());
        let now_us = bus.now_us();
        bus.clock_anchor.get_or_init(|| ClockAnchor {
            wall: SystemTime::now(),
            media_us: rescale(frame.dts, track_scale, timescale::MICROS),
        });
        let video = frame.kind() == MediaKind::Video;
        let keyframe = frame.is_keyframe();
        let anchor = keyframe && (video || !self.has_video);
        self.counters
            .record(&bus.stats, now_us, frame.payload.len(), video, keyframe);
        let catalog = Arc::clone(catalog);
        self.writer.push(frame, catalog, now_us, anchor);
        Ok(())
    }

    /// Sets a metadata entry shown in snapshots (encoder name, title, …).
    pub fn set_metadata(&self, key: impl Into<String>, value: impl Into<String>) {
        let mut meta = self
            .bus()
            .metadata
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if meta.len() < 64 {
            meta.insert(key.into(), value.into());
        }
    }

    /// A copy of the metadata.
    pub fn metadata(&self) -> BTreeMap<String, String> {
        self.bus()
            .metadata
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The media-time ↔ wall-clock anchor, set by the first frame.
    pub fn clock_anchor(&self) -> Option<ClockAnchor> {
        self.bus().clock_anchor.get().copied()
    }

    /// Ends the publish: subscribers receive every frame already published,
    /// then [`RecvError::Ended`](crate::RecvError::Ended).
    pub async fn finish(mut self) {
        self.end(EndReason::Finished);
    }

    fn end(&mut self, reason: EndReason) {
        if !self.ended {
            self.ended = true;
            let bus = Arc::clone(self.writer.bus());
            self.slot.end(&bus, reason, &self.emitter);
        }
    }
}

impl Drop for PublishSession {
    fn drop(&mut self) {
        self.end(EndReason::Finished);
    }
}
