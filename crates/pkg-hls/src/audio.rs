//! AAC for the MPEG-TS flavour (TS-HLS) of an Opus stream (a WHIP
//! publish): TS players expect AAC, so with the `transcode` feature the
//! stream's Opus is converted to AAC-LC once per stream
//! (`tidewater-transcode`: the conversion every reader of the publish
//! generation shares — RTMP, HTTP-FLV, SRT, HTTP-TS, pushes — started by
//! the first that needs it, stopped after the last). The packager sees an
//! AAC track in place of the Opus one, on the same clock. The fMP4 flavour
//! (LL-HLS) carries Opus as it is and never asks. Without the feature the
//! TS flavour carries the Opus as it is.

#[cfg(feature = "transcode")]
use std::sync::Arc;

use tidewater_core::{Catalog, Follower, Frame, SharedFrame, TrackInfo};

/// One packager's hold on its stream's Opus → AAC conversion.
#[derive(Debug, Default)]
pub(crate) struct AacFromOpus {
    /// Whether the packager needs AAC (the TS flavour).
    enabled: bool,
    #[cfg(feature = "transcode")]
    running: Option<Arc<tidewater_transcode::Transcoders>>,
    #[cfg(feature = "transcode")]
    output: Option<tidewater_transcode::AudioOutput>,
    /// The stream, for the log.
    #[cfg_attr(not(feature = "transcode"), allow(dead_code))]
    label: String,
}

impl AacFromOpus {
    /// A packager's conversion; `enabled` for one that needs AAC.
    pub(crate) fn new(enabled: bool, label: &str) -> Self {
        AacFromOpus {
            enabled,
            #[cfg(feature = "transcode")]
            running: None,
            #[cfg(feature = "transcode")]
            output: None,
            label: label.to_owned(),
        }
    }

    /// The conversions of the generation `follower` reads (at the start and
    /// after each republish).
    pub(crate) fn generation(&mut self, follower: &Follower) {
        #[cfg(feature = "transcode")]
        if self.enabled {
            self.running = follower.generation_state();
            self.output = None;
        }
        #[cfg(not(feature = "transcode"))]
        let _ = follower;
    }

    /// The tracks the packager sees: the catalog's, with an Opus audio
    /// track replaced by the AAC it is converted to.
    pub(crate) fn tracks(&self, catalog: &Catalog) -> Vec<TrackInfo> {
        catalog
            .tracks()
            .iter()
            .map(|t| self.replaced(catalog, t).unwrap_or_else(|| t.clone()))
            .collect()
    }

    fn replaced(&self, catalog: &Catalog, track: &TrackInfo) -> Option<TrackInfo> {
        if !self.enabled {
            return None;
        }
        #[cfg(feature = "transcode")]
        {
            self.running.as_ref()?;
            tidewater_transcode::aac_in_place_of_opus(catalog, track)
        }
        #[cfg(not(feature = "transcode"))]
        {
            let _ = (catalog, track);
            None
        }
    }

    /// Whether `frame` is converted: then `out` has the AAC frames it
    /// became (none, one or two: 20 ms of Opus against 21.3 ms of AAC),
    /// which the packager sees in its place.
    pub(crate) fn convert(&mut self, frame: &SharedFrame, out: &mut Vec<Frame>) -> bool {
        let catalog = frame.catalog();
        let converted = catalog
            .track(frame.track)
            .and_then(|t| self.replaced(catalog, t));
        if converted.is_none() {
            return false;
        }
        #[cfg(feature = "transcode")]
        if let Some(running) = &self.running {
            let output = self.output.get_or_insert_with(|| {
                tidewater_transcode::AudioOutput::attach(
                    running,
                    tidewater_core::Codec::Aac,
                    &self.label,
                )
            });
            let buffer = output.convert(frame.as_ref());
            out.extend(tidewater_transcode::aac_frames(&buffer, frame, catalog));
        }
        #[cfg(not(feature = "transcode"))]
        let _ = out;
        true
    }
}
