//! WHEP audio of AAC streams: WebRTC carries Opus, so a viewer of an AAC
//! stream gets the stream's shared AAC → Opus conversion
//! (`tidewater-transcode`, one per stream however many viewers, started
//! by the first viewer that needs it and stopped after the last). Without
//! the `transcode` feature such a viewer plays video only.

#[cfg(feature = "transcode")]
mod enabled {
    use std::sync::Arc;

    use tidewater_core::{Codec, FrameRef};
    use tidewater_transcode::{AudioOutput, Transcoders, packets};

    use crate::ingest::MediaCodec;
    use crate::whep::Item;

    /// A viewer's hold on its stream's AAC → Opus conversion.
    #[derive(Debug)]
    pub(crate) struct AacAudio {
        label: String,
        /// The generation being read's conversions.
        running: Option<Arc<Transcoders>>,
        output: Option<AudioOutput>,
    }

    impl AacAudio {
        pub(crate) fn new(label: String) -> AacAudio {
            AacAudio {
                label,
                running: None,
                output: None,
            }
        }

        /// A (new) publish generation is read: its conversions from now on.
        pub(crate) fn generation(&mut self, running: Arc<Transcoders>) {
            self.running = Some(running);
            self.output = None;
        }

        /// The Opus items of an AAC frame; `false` when it is not one this
        /// converts.
        pub(crate) fn items(&mut self, f: FrameRef<'_>, batch: &mut Vec<Item>) -> bool {
            if f.codec != Codec::Aac {
                return false;
            }
            let Some(running) = &self.running else {
                return false;
            };
            let output = self
                .output
                .get_or_insert_with(|| AudioOutput::attach(running, Codec::Opus, &self.label));
            let buffer = output.convert(f);
            for p in packets(&buffer) {
                batch.push(Item {
                    codec: MediaCodec::Opus,
                    // Already 48 kHz ticks: the RTP clock of Opus.
                    time: p.pts as u32,
                    marker: false,
                    payload: p.data,
                });
            }
            true
        }
    }
}

#[cfg(feature = "transcode")]
pub(crate) use enabled::AacAudio;

/// Without the transcoder: nothing is converted.
#[cfg(not(feature = "transcode"))]
#[derive(Debug)]
pub(crate) struct AacAudio;

#[cfg(not(feature = "transcode"))]
impl AacAudio {
    pub(crate) fn new(_label: String) -> AacAudio {
        AacAudio
    }

    pub(crate) fn generation(&mut self, _running: std::sync::Arc<NoTranscoders>) {}

    pub(crate) fn items(
        &mut self,
        _f: tidewater_core::FrameRef<'_>,
        _batch: &mut Vec<crate::whep::Item>,
    ) -> bool {
        false
    }
}

/// The generation state asked for when there is no transcoder.
#[cfg(not(feature = "transcode"))]
#[derive(Debug, Default)]
pub(crate) struct NoTranscoders;

/// The generation state type a viewer asks the kernel for.
#[cfg(feature = "transcode")]
pub(crate) type State = tidewater_transcode::Transcoders;
/// The generation state type a viewer asks the kernel for.
#[cfg(not(feature = "transcode"))]
pub(crate) type State = NoTranscoders;

/// Whether an AAC frame's audio reaches WHEP viewers in this build.
pub(crate) const CARRIES_AAC: bool = cfg!(feature = "transcode");
