//! Classic HLS packing: units into MPEG-TS segments (each starting with a
//! PAT and PMT, then the frames as they arrive). Sans-IO: it writes into a
//! [`PlaylistState`].
//!
//! Frames go out in arrival order; a segment ends where the driving frame
//! that starts the next one begins. Audio interleaved slightly ahead of or
//! behind the video stays in the segment it arrived in, which players
//! accept for TS. Continuity counters run on across segments and catalog
//! changes (one muxer per packager), and PTS/PCR follow the continuous
//! packaging timeline.

use std::sync::Arc;

use bytes::BytesMut;
use tidewater_core::{Frame, FrameFlags, MediaKind, TrackInfo};
use tidewater_media::ts::TsMuxer;

use crate::Error;
use crate::normalize::{TrackSet, Unit};
use crate::playlist::PlaylistState;
use crate::segmenter::{HZ, Segmenter, Step, Targets};

/// The classic HLS packer of one stream.
#[derive(Debug)]
pub struct TsPacker {
    seg: Segmenter,
    mux: Option<TsMuxer>,
    tracks: Option<Arc<TrackSet>>,
    open: bool,
    buf: BytesMut,
}

impl TsPacker {
    /// A packer cutting at `targets` (its part target is ignored).
    pub fn new(targets: Targets) -> Self {
        TsPacker {
            seg: Segmenter::new(Targets {
                part: None,
                ..targets
            }),
            mux: None,
            tracks: None,
            open: false,
            buf: BytesMut::with_capacity(64 * 1024),
        }
    }

    /// New tracks: the segment in progress closes and the next one starts
    /// after a discontinuity with the new PMT.
    pub fn tracks(&mut self, set: Arc<TrackSet>, pl: &mut PlaylistState) -> Result<(), Error> {
        let infos: Vec<TrackInfo> = set.tracks().into_iter().cloned().collect();
        match &mut self.mux {
            Some(mux) => {
                mux.set_tracks(&infos)
                    .map_err(|e| Error::Package(e.to_string()))?;
                self.discontinuity(pl);
            }
            None => {
                self.mux = Some(TsMuxer::new(&infos).map_err(|e| Error::Package(e.to_string()))?);
            }
        }
        self.tracks = Some(set);
        Ok(())
    }

    packer_endings!();

    /// One unit.
    pub fn unit(&mut self, u: Unit, pl: &mut PlaylistState) -> Result<(), Error> {
        if u.driving {
            let seg_start = self.seg.current().map_or(u.t90, |c| c.0);
            match self.seg.driving(u.t90, u.keyframe) {
                Step::Drop => return Ok(()),
                Step::Start => self.begin(pl),
                Step::CutSegment { .. } => {
                    if let Some(td) = self.seg.target_duration() {
                        pl.set_target_duration(td);
                    }
                    pl.end_segment(secs(u.t90 - seg_start));
                    self.begin(pl);
                }
                Step::Continue | Step::CutPart => {}
            }
        } else if !self.open {
            return Ok(());
        }
        self.write(&u);
        pl.append_ts(&self.buf);
        self.buf.clear();
        Ok(())
    }

    fn begin(&mut self, pl: &mut PlaylistState) {
        pl.begin_segment();
        self.open = true;
        if let Some(mux) = &mut self.mux {
            mux.write_psi(&mut self.buf);
        }
    }

    fn write(&mut self, u: &Unit) {
        let (Some(mux), Some(tracks)) = (&mut self.mux, &self.tracks) else {
            return;
        };
        let info = match u.kind {
            MediaKind::Video => tracks.video.as_ref(),
            MediaKind::Audio => tracks.audio.as_ref(),
        };
        let Some(info) = info else {
            return;
        };
        let frame = Frame {
            track: u.track,
            codec: info.codec,
            flags: if u.keyframe {
                FrameFlags::KEYFRAME
            } else {
                FrameFlags::empty()
            },
            pts: u.pts,
            dts: u.dts,
            payload: u.payload.clone(),
        };
        if let Err(e) = mux.write_frame(&frame, &mut self.buf) {
            tracing::debug!("hls: frame of track {} not muxed: {e}", u.track.0);
        }
    }

    fn close(&mut self, pl: &mut PlaylistState) {
        if let Some(end) = self.seg.end() {
            let seg_start = self.seg.current().map_or(end, |c| c.0);
            self.seg.close(end);
            if let Some(td) = self.seg.target_duration() {
                pl.set_target_duration(td);
            }
            pl.end_segment(secs(end - seg_start));
        }
        self.open = false;
    }
}

fn secs(ticks: i64) -> f64 {
    ticks.max(0) as f64 / HZ as f64
}
