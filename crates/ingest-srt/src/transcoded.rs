//! AAC for MPEG-TS readers (SRT, HTTP-TS) of an Opus stream (a WHIP
//! publish): with the `transcode` feature the stream's Opus is converted to
//! AAC-LC once per stream (`tidewater-transcode`, the conversion every
//! reader of the generation shares, started by the first that needs it and
//! stopped after the last) and the PMT announces the AAC track it became.
//! Without the feature an Opus track goes to the muxer as it is.

use std::sync::Arc;
#[cfg(feature = "transcode")]
use std::sync::OnceLock;

use bytes::Bytes;
use tidewater_core::{Catalog, Follower, Frame, FrameRef, TrackInfo};

/// One TS reader's hold on its stream's Opus → AAC conversion.
#[derive(Debug, Clone, Default)]
pub(crate) struct AacFromOpus {
    #[cfg(feature = "transcode")]
    running: Option<Arc<tidewater_transcode::Transcoders>>,
    #[cfg(feature = "transcode")]
    output: OnceLock<tidewater_transcode::AudioOutput>,
    /// The stream, for the log.
    #[cfg_attr(not(feature = "transcode"), allow(dead_code))]
    label: Arc<str>,
}

impl AacFromOpus {
    /// The conversions of the generation `sub` reads.
    pub(crate) fn of(sub: &Follower, label: &str) -> AacFromOpus {
        #[cfg(not(feature = "transcode"))]
        let _ = sub;
        AacFromOpus {
            #[cfg(feature = "transcode")]
            running: sub.generation_state(),
            #[cfg(feature = "transcode")]
            output: OnceLock::new(),
            label: label.into(),
        }
    }

    /// The tracks the muxer announces: the catalog's, with an Opus audio
    /// track replaced by the AAC it is converted to.
    pub(crate) fn tracks(&self, catalog: &Catalog) -> Vec<TrackInfo> {
        catalog
            .tracks()
            .iter()
            .map(|t| self.replaced(catalog, t).unwrap_or_else(|| t.clone()))
            .collect()
    }

    fn replaced(&self, catalog: &Catalog, track: &TrackInfo) -> Option<TrackInfo> {
        // Same track, same clock: the PES keep the Opus track's times.
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

    /// The converted packets of an Opus frame this converts (the shared
    /// derived buffer); `None` for any other frame. Asked before the
    /// frame's TS bytes are made: a derived output is never made inside
    /// another.
    pub(crate) fn convert(&self, frame: &FrameRef<'_>) -> Option<Bytes> {
        self.replaced(frame.catalog(), frame.catalog().track(frame.track)?)?;
        #[cfg(feature = "transcode")]
        {
            let running = self.running.as_ref()?;
            let output = self.output.get_or_init(|| {
                tidewater_transcode::AudioOutput::attach(
                    running,
                    tidewater_core::Codec::Aac,
                    &self.label,
                )
            });
            Some(output.convert(*frame))
        }
        #[cfg(not(feature = "transcode"))]
        None
    }

    /// The AAC frames of a converted buffer, on the Opus track's clock.
    pub(crate) fn frames(buffer: &Bytes, opus: &Frame, catalog: &Catalog) -> Vec<Frame> {
        #[cfg(feature = "transcode")]
        {
            tidewater_transcode::aac_frames(buffer, opus, catalog).collect()
        }
        #[cfg(not(feature = "transcode"))]
        {
            let _ = (buffer, opus, catalog);
            Vec::new()
        }
    }
}
