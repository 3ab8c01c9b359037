//! LL-HLS packing: units into fMP4 parts (one `moof` + `mdat` with a run
//! per track), parts into segments. Sans-IO: it writes into a
//! [`PlaylistState`].
//!
//! A video sample's duration is the distance to the next video frame, so the
//! newest video frame is held until the next one arrives; audio durations
//! come from the payload's sample count. When a part closes at the driving
//! frame's time `t`, it takes the held-back video samples before `t` and the
//! audio received so far that starts before `t` (audio arriving late goes in
//! the next part: every track's run stays continuous).

use std::collections::VecDeque;
use std::sync::Arc;

use tidewater_media::fmp4::{self, Sample, TrackRun};

use crate::Error;
use crate::normalize::{TrackSet, Unit};
use crate::playlist::{Part, PlaylistState};
use crate::segmenter::{HZ, Segmenter, Step, Targets};

/// The LL-HLS packer of one stream.
#[derive(Debug)]
pub struct LlPacker {
    seg: Segmenter,
    tracks: Option<Arc<TrackSet>>,
    video: Vec<Sample>,
    held: Option<Unit>,
    audio: VecDeque<(i64, Sample)>,
    sequence: u32,
    open: bool,
}

impl LlPacker {
    /// A packer cutting at `targets` (with a part target).
    pub fn new(targets: Targets) -> Self {
        LlPacker {
            seg: Segmenter::new(targets),
            tracks: None,
            video: Vec::new(),
            held: None,
            audio: VecDeque::new(),
            sequence: 1,
            open: false,
        }
    }

    /// New tracks: the segment in progress closes, a new init segment
    /// applies from the next one, after a discontinuity.
    pub fn tracks(&mut self, set: Arc<TrackSet>, pl: &mut PlaylistState) -> Result<(), Error> {
        let init = fmp4::init_segment(&set.tracks()).map_err(|e| Error::Package(e.to_string()))?;
        if self.tracks.is_some() {
            self.discontinuity(pl);
        }
        pl.set_init(init);
        self.tracks = Some(set);
        Ok(())
    }

    packer_endings!();

    /// One unit.
    pub fn unit(&mut self, u: Unit, pl: &mut PlaylistState) -> Result<(), Error> {
        if !u.driving {
            if self.open {
                self.audio
                    .push_back((u.t90, sample(&u, u.duration.unwrap_or(0))));
            }
            return Ok(());
        }
        if let Some(prev) = self.held.take() {
            let d = u32::try_from((u.dts - prev.dts).max(1)).unwrap_or(u32::MAX);
            self.video.push(sample(&prev, d));
        }
        let (seg_start, part_start) = self.seg.current().unwrap_or((u.t90, u.t90));
        match self.seg.driving(u.t90, u.keyframe) {
            Step::Drop => {
                self.video.clear();
                return Ok(());
            }
            Step::Start => {
                pl.begin_segment();
                self.open = true;
            }
            Step::Continue => {}
            Step::CutPart => self.emit_part(u.t90, u.t90, part_start, pl)?,
            Step::CutSegment { .. } => {
                self.emit_part(u.t90, u.t90, part_start, pl)?;
                if let Some(td) = self.seg.target_duration() {
                    pl.set_target_duration(td);
                }
                pl.end_segment(secs(u.t90 - seg_start));
                pl.begin_segment();
            }
        }
        if u.duration.is_some() {
            // Audio drives (no video track): its duration is known now.
            self.audio
                .push_back((u.t90, sample(&u, u.duration.unwrap_or(0))));
        } else {
            self.held = Some(u);
        }
        Ok(())
    }

    /// Closes the segment in progress where the last frame ends.
    fn close(&mut self, pl: &mut PlaylistState) {
        let Some(end) = self.seg.end() else {
            self.reset();
            return;
        };
        let (seg_start, part_start) = self.seg.current().unwrap_or((end, end));
        if let Some(prev) = self.held.take() {
            let d = u32::try_from((end - prev.t90).max(1)).unwrap_or(u32::MAX);
            self.video.push(sample(&prev, d));
        }
        if let Err(e) = self.emit_part(end, i64::MAX, part_start, pl) {
            tracing::warn!("llhls: last part not packaged: {e}");
        }
        self.seg.close(end);
        if let Some(td) = self.seg.target_duration() {
            pl.set_target_duration(td);
        }
        pl.end_segment(secs(end - seg_start));
        self.reset();
    }

    fn reset(&mut self) {
        self.video.clear();
        self.held = None;
        self.audio.clear();
        self.open = false;
    }

    /// Emits the part ending at `cut` with the video held so far and the
    /// audio starting before `audio_cut`.
    fn emit_part(
        &mut self,
        cut: i64,
        audio_cut: i64,
        part_start: i64,
        pl: &mut PlaylistState,
    ) -> Result<(), Error> {
        let Some(tracks) = self.tracks.clone() else {
            return Ok(());
        };
        let video = std::mem::take(&mut self.video);
        let mut audio = Vec::new();
        while self.audio.front().is_some_and(|(t, _)| *t < audio_cut) {
            if let Some((_, s)) = self.audio.pop_front() {
                audio.push(s);
            }
        }
        if video.is_empty() && audio.is_empty() {
            return Ok(());
        }
        let mut runs = Vec::with_capacity(2);
        if let Some(v) = &tracks.video {
            runs.push(TrackRun {
                track: v.id,
                samples: &video,
            });
        }
        if let Some(a) = &tracks.audio {
            runs.push(TrackRun {
                track: a.id,
                samples: &audio,
            });
        }
        let data =
            fmp4::fragment(self.sequence, &runs).map_err(|e| Error::Package(e.to_string()))?;
        self.sequence = self.sequence.wrapping_add(1).max(1);
        let independent = match &tracks.video {
            Some(_) => video.first().is_some_and(|s| s.keyframe),
            None => true,
        };
        pl.add_part(Part {
            duration: secs(cut - part_start),
            independent,
            data,
        });
        Ok(())
    }
}

fn sample(u: &Unit, duration: u32) -> Sample {
    Sample {
        dts: u64::try_from(u.dts).unwrap_or(0),
        duration,
        cts_offset: i32::try_from(u.pts - u.dts).unwrap_or(0),
        keyframe: u.keyframe,
        data: u.payload.clone(),
    }
}

fn secs(ticks: i64) -> f64 {
    ticks.max(0) as f64 / HZ as f64
}
