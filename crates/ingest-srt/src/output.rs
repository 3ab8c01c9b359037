//! The MPEG-TS output of a stream, built once per frame and shared by every
//! SRT reader and HTTP-TS response through the kernel's derived-output cache.
//!
//! Continuity counters must run on across frames, so the muxer is state kept
//! per publish generation, in the kernel's
//! [`generation_state`](Subscription::generation_state), behind a mutex (it
//! is dropped with the generation; nothing is kept per process). Each frame's bytes are
//! made once, by the first consumer that reaches it (the leading reader), in
//! publish order; every other consumer gets the same bytes. A reader that
//! falls behind and is skipped to the next keyframe therefore sees the
//! counters jump there: to its demuxer that is a loss, after which it resumes
//! at the keyframe (whose first packet carries `random_access_indicator`
//! and is preceded by a PAT and PMT).
//!
//! Readers follow their stream across a republish: each then takes the new
//! generation's output with [`TsOutput::follow`]. The first to do so links
//! the new generation's state to the one it read, and the new muxer
//! continues that one ([`TsMuxer::continue_from`]): continuity counters
//! carry on, the PMT takes the next version, and the timestamps are shifted
//! to go on one frame after the last ones sent, so a reader across the
//! republish sees one stream (ffmpeg's timestamp-discontinuity heuristics
//! never come into play). A generation no follower reached first (a reader
//! that joined it anew encoded its first frame) starts its own timeline;
//! its first packet of each track then carries `discontinuity_indicator`.

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tidewater_core::{Catalog, Follower, Frame, FrameRef, OutputFormat, StreamKey};
use tidewater_media::ts::TsMuxer;

use crate::transcoded::AacFromOpus;
use tracing::warn;

/// The derived-output format of TS bytes (shared by SRT and HTTP-TS).
const FORMAT: OutputFormat = OutputFormat::new("mpegts");

/// Audio-only streams repeat the PAT and PMT every this many frames.
const PSI_EVERY_AUDIO_FRAMES: u32 = 20;

#[derive(Debug, Default)]
struct TsState {
    muxer: Option<TsMuxer>,
    catalog_version: u64,
    since_psi: u32,
    failed_version: Option<u64>,
    /// The previous generation's state, linked by the first reader that
    /// followed from it, until this generation's muxer continues its own.
    previous: Option<Arc<Mutex<TsState>>>,
}

/// One consumer's handle on a stream's TS output.
#[derive(Debug, Clone)]
pub(crate) struct TsOutput {
    state: Arc<Mutex<TsState>>,
    key: StreamKey,
    generation: u64,
    /// An Opus stream's audio as AAC (see [`AacFromOpus`]).
    aac: AacFromOpus,
}

impl TsOutput {
    /// The TS output of the publish generation `sub` reads (take it again
    /// after each republish).
    pub(crate) fn of(sub: &Follower, key: &StreamKey) -> TsOutput {
        TsOutput {
            // Between generations (never, right after attaching) a state
            // of its own: nothing is shared, nothing breaks.
            state: sub.generation_state().unwrap_or_default(),
            key: key.clone(),
            generation: sub.generation(),
            aac: AacFromOpus::of(sub, &key.to_string()),
        }
    }

    /// The output of the generation `sub` reads after a republish, for a
    /// reader that read this one: see the [module docs](self).
    pub(crate) fn follow(&self, sub: &Follower) -> TsOutput {
        let next = TsOutput::of(sub, &self.key);
        if !Arc::ptr_eq(&next.state, &self.state) {
            let mut st = next.state.lock().unwrap_or_else(|p| p.into_inner());
            if st.muxer.is_none() && st.previous.is_none() {
                st.previous = Some(Arc::clone(&self.state));
            }
        }
        next
    }

    /// The TS bytes of this frame (possibly empty: a codec TS does not carry).
    pub(crate) fn bytes(&self, frame: &FrameRef<'_>) -> Bytes {
        let gop_start = frame.is_gop_start();
        let converted = self.aac.convert(frame);
        if converted.as_ref().is_some_and(Bytes::is_empty) {
            // The conversion waits for more input.
            return Bytes::new();
        }
        let encode = |f: &Frame, c: &Catalog| self.encode(f, c, gop_start, converted.as_ref());
        frame.derived(FORMAT, encode)
    }

    fn encode(
        &self,
        frame: &Frame,
        catalog: &Catalog,
        gop_start: bool,
        converted: Option<&Bytes>,
    ) -> Bytes {
        let tracks = self.aac.tracks(catalog);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = BytesMut::with_capacity(frame.payload.len() + frame.payload.len() / 20 + 400);
        let mut psi = gop_start && frame.kind() == tidewater_core::MediaKind::Video;
        if st.muxer.is_none() || st.catalog_version != catalog.version() {
            if st.failed_version == Some(catalog.version()) {
                return Bytes::new();
            }
            let made = match st.muxer.as_mut() {
                Some(m) => m.set_tracks(&tracks),
                None => {
                    // Locks the previous generation's state while holding
                    // this one's: states are only ever linked backwards.
                    let previous = st.previous.take();
                    let continued = previous.as_ref().and_then(|p| {
                        let p = p.lock().unwrap_or_else(|p| p.into_inner());
                        p.muxer.as_ref().map(|m| TsMuxer::continue_from(m, &tracks))
                    });
                    match continued {
                        Some(made) => made,
                        None => TsMuxer::new(&tracks).map(|mut m| {
                            // A republish nobody followed first: readers
                            // see the counters and timestamps start anew.
                            if self.generation > 1 {
                                m.mark_discontinuity((self.generation % 32) as u8);
                            }
                            m
                        }),
                    }
                    .map(|m| {
                        st.muxer = Some(m);
                    })
                }
            };
            if let Err(e) = made {
                warn!(stream = %self.key, "mpeg-ts output: {e}; nothing is sent for this catalog");
                st.failed_version = Some(catalog.version());
                return Bytes::new();
            }
            st.catalog_version = catalog.version();
            psi = true;
        }
        if catalog.video().is_none() {
            st.since_psi += 1;
            if st.since_psi >= PSI_EVERY_AUDIO_FRAMES {
                psi = true;
            }
        }
        let Some(muxer) = st.muxer.as_mut() else {
            return Bytes::new();
        };
        if psi {
            muxer.write_psi(&mut out);
        }
        let converted = converted.map(|buffer| AacFromOpus::frames(buffer, frame, catalog));
        let frames = converted.as_deref().unwrap_or(std::slice::from_ref(frame));
        for frame in frames {
            if let Err(e) = muxer.write_frame(frame, &mut out) {
                warn!(stream = %self.key, "mpeg-ts output: frame skipped: {e}");
            }
        }
        if psi {
            st.since_psi = 0;
        }
        out.freeze()
    }
}
