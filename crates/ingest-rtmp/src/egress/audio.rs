//! AAC for FLV readers (RTMP players, HTTP-FLV) of an Opus stream (a WHIP
//! publish): ffmpeg and most players do not decode enhanced-RTMP Opus, so
//! with the `transcode` feature the stream's Opus is converted to AAC-LC
//! once per stream (`tidewater-transcode`, the conversion every reader of
//! the generation shares, started by the first that needs it) and each
//! converted packet becomes an AAC tag of the Opus track. The catalog's
//! Opus track is announced as the AAC track it became (sequence header,
//! `onMetaData`). Without the feature the Opus goes out as enhanced RTMP.

use std::sync::Arc;

use tidewater_core::{Catalog, Frame, FrameRef, TrackInfo};

/// The generation state a reader hands to [`AacFromOpus::generation`].
#[cfg(feature = "transcode")]
pub type Conversions = tidewater_transcode::Transcoders;
/// The generation state a reader hands to [`AacFromOpus::generation`]
/// (nothing is converted without the `transcode` feature).
#[cfg(not(feature = "transcode"))]
#[derive(Debug, Default)]
pub struct Conversions;

/// One reader's hold on its stream's Opus → AAC conversion.
#[derive(Debug, Default)]
pub struct AacFromOpus {
    running: Option<Arc<Conversions>>,
    /// The stream, for the log.
    label: String,
    #[cfg(feature = "transcode")]
    output: Option<tidewater_transcode::AudioOutput>,
}

impl AacFromOpus {
    /// The conversions of the generation read next (at the start and after
    /// each republish).
    pub fn generation(&mut self, running: Arc<Conversions>, label: &str) {
        self.running = Some(running);
        label.clone_into(&mut self.label);
        #[cfg(feature = "transcode")]
        {
            self.output = None;
        }
    }

    /// The AAC track a catalog's Opus audio track goes out as; `None` when
    /// the audio is not converted (not Opus, or no transcoder).
    pub fn replaced_audio(&self, catalog: &Catalog) -> Option<TrackInfo> {
        let audio = catalog.audio()?;
        self.running.as_ref()?;
        // Same track, same clock: the tags keep the Opus track's times.
        #[cfg(feature = "transcode")]
        {
            tidewater_transcode::aac_in_place_of_opus(catalog, audio)
        }
        #[cfg(not(feature = "transcode"))]
        {
            let _ = audio;
            None
        }
    }

    /// Whether `f` is audio this converts (then [`frames`](Self::frames)
    /// gives what goes out in its place).
    pub fn converts(&self, f: &Frame, catalog: &Catalog) -> bool {
        f.codec == tidewater_core::Codec::Opus
            && catalog.audio().is_some_and(|a| a.id == f.track)
            && self.replaced_audio(catalog).is_some()
    }

    /// The AAC frames an Opus frame became (none, one or two: 20 ms of
    /// Opus against 21.3 ms of AAC), as frames of the same track at the
    /// track's timescale.
    pub fn frames(&mut self, f: FrameRef<'_>, out: &mut Vec<Frame>) {
        #[cfg(feature = "transcode")]
        {
            let Some(running) = &self.running else {
                return;
            };
            let output = self.output.get_or_insert_with(|| {
                tidewater_transcode::AudioOutput::attach(
                    running,
                    tidewater_core::Codec::Aac,
                    &self.label,
                )
            });
            let buffer = output.convert(f);
            out.extend(tidewater_transcode::aac_frames(&buffer, &f, f.catalog()));
        }
        #[cfg(not(feature = "transcode"))]
        let _ = (f, out);
    }
}
