//! The MPEG-TS output of a stream, built once per frame and shared by every
//! SRT reader and HTTP-TS response through the kernel's derived-output cache.
//!
//! Continuity counters must run on across frames, so the muxer is state kept
//! per stream (and publish generation) behind a mutex. Each frame's bytes are
//! made once, by the first consumer that reaches it (the leading reader), in
//! publish order; every other consumer gets the same bytes. A reader that
//! falls behind and is skipped to the next keyframe therefore sees the
//! counters jump there: to its demuxer that is a loss, after which it resumes
//! at the keyframe (whose first packet carries `random_access_indicator`
//! and is preceded by a PAT and PMT).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use bytes::{Bytes, BytesMut};
use tidewater_core::{Catalog, Frame, FrameRef, IngestContext, OutputFormat, StreamKey};
use tidewater_media::ts::TsMuxer;
use tracing::warn;

/// The derived-output format of TS bytes (shared by SRT and HTTP-TS).
static FORMAT: LazyLock<Option<OutputFormat>> =
    LazyLock::new(|| OutputFormat::register("mpegts").ok());

/// Audio-only streams repeat the PAT and PMT every this many frames.
const PSI_EVERY_AUDIO_FRAMES: u32 = 20;

type Streams = HashMap<(StreamKey, u64), Arc<Mutex<TsState>>>;
static STREAMS: LazyLock<Mutex<Streams>> = LazyLock::new(|| Mutex::new(HashMap::new()));

#[derive(Debug, Default)]
struct TsState {
    muxer: Option<TsMuxer>,
    catalog_version: u64,
    since_psi: u32,
    failed_version: Option<u64>,
}

/// One consumer's handle on a stream's TS output.
#[derive(Debug, Clone)]
pub(crate) struct TsOutput {
    state: Arc<Mutex<TsState>>,
    key: StreamKey,
}

impl TsOutput {
    /// The output of this publish generation of `key` (created on first use;
    /// states of generations no longer live are dropped here).
    pub(crate) fn of(ctx: &IngestContext, key: &StreamKey, generation: u64) -> TsOutput {
        let mut streams = STREAMS.lock().unwrap_or_else(|p| p.into_inner());
        let state = Arc::clone(
            streams
                .entry((key.clone(), generation))
                .or_insert_with(|| Arc::new(Mutex::new(TsState::default()))),
        );
        if streams.len() > 1 {
            let live: HashMap<StreamKey, u64> = ctx
                .streams()
                .into_iter()
                .map(|s| (s.key, s.generation))
                .collect();
            streams.retain(|(k, g), s| live.get(k) == Some(g) || Arc::strong_count(s) > 1);
        }
        TsOutput {
            state,
            key: key.clone(),
        }
    }

    /// The TS bytes of this frame (possibly empty: a codec TS does not carry).
    pub(crate) fn bytes(&self, frame: &FrameRef<'_>) -> Bytes {
        let gop_start = frame.is_gop_start();
        let encode = |f: &Frame, c: &Catalog| self.encode(f, c, gop_start);
        match *FORMAT {
            Some(format) => frame.derived(format, encode),
            None => encode(frame.frame(), frame.catalog()),
        }
    }

    fn encode(&self, frame: &Frame, catalog: &Catalog, gop_start: bool) -> Bytes {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = BytesMut::with_capacity(frame.payload.len() + frame.payload.len() / 20 + 400);
        let mut psi = gop_start && frame.kind() == tidewater_core::MediaKind::Video;
        if st.muxer.is_none() || st.catalog_version != catalog.version() {
            if st.failed_version == Some(catalog.version()) {
                return Bytes::new();
            }
            let made = match st.muxer.as_mut() {
                Some(m) => m.set_tracks(catalog.tracks()),
                None => TsMuxer::new(catalog.tracks()).map(|m| {
                    st.muxer = Some(m);
                }),
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
        if let Err(e) = muxer.write_frame(frame, &mut out) {
            warn!(stream = %self.key, "mpeg-ts output: frame skipped: {e}");
        }
        if psi {
            st.since_psi = 0;
        }
        out.freeze()
    }
}

/// Drops the state of a stream generation that ended.
pub(crate) fn forget(key: &StreamKey, generation: u64) {
    let mut streams = STREAMS.lock().unwrap_or_else(|p| p.into_inner());
    streams.remove(&(key.clone(), generation));
}
