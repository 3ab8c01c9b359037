//! Kernel events to file operations, sans-IO: [`Muxer`].
//!
//! - The recorded tracks are the stream's first video and first audio
//!   track; video (or, audio-only, audio) *drives*: files start on its
//!   keyframes and fragments are cut on its frames.
//! - Times are on the *publish timeline*: 0 at the first keyframe of the
//!   publish, in the track's fMP4 timescale (90 kHz video, the sample rate
//!   for audio, rebuilt from sample counts). The `tfdt`s of consecutive
//!   files of one publish therefore continue each other, so their fragments
//!   can be served back to back; a republish starts again at 0.
//! - A fragment closes at every keyframe and at the first frame after the
//!   part target, so every keyframe starts a fragment (HLS segments of a
//!   playback start there). A file closes at the first keyframe after the
//!   segment target, at a republish, a new decoder configuration, a skip,
//!   and at the end.
//! - A video frame's duration is the distance to the next one, so the newest
//!   frame is held back until then (the last one of a file gets the previous
//!   interval).
//! - Audio is cut where the pictures are: the audio of a fragment that
//!   starts on a keyframe (so of a file) starts at the keyframe's
//!   *presentation* time, not its decode time, so that with B-frames (a
//!   composition delay) each file, and each range or HLS segment played
//!   back, starts with sound and picture together. The audio between a
//!   keyframe's decode and presentation times arrives after the keyframe,
//!   so the keyframe (and the frames after it) wait for that audio, at most
//!   [`MAX_AUDIO_WAIT90`] past it, before the fragment before it is cut.

use std::collections::VecDeque;

use bytes::Bytes;
use tidewater_core::{Catalog, Codec, Frame, FrameFlags, MediaKind, TrackInfo, rescale};
use tidewater_media::audio_clock::{AudioClock, aac_frame_samples, opus_packet_samples};
use tidewater_media::fmp4::{self, Sample, TrackRun};

/// Most audio frames held for the next fragment (a bound against a video
/// track that stops while audio goes on).
const MAX_QUEUED_AUDIO: usize = 4096;

/// How long (90 kHz, video decode time) video waits for the audio up to the
/// presentation time of a keyframe (a bound against an audio track that
/// stops).
pub const MAX_AUDIO_WAIT90: i64 = 45_000;

/// Most video frames waiting for that audio.
const MAX_DEFERRED: usize = 256;

/// What the writer does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Start a new file (closing the one open, if any).
    Open(FileStart),
    /// Append a fragment to the open file and flush it.
    Fragment(FragmentOut),
    /// Close the open file.
    Close,
}

/// A new file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStart {
    /// Wall-clock time of its first frame (Unix ms).
    pub start_ms: i64,
    /// Its first frame on the publish timeline (ms).
    pub base_ms: i64,
    /// `ftyp` + `moov`.
    pub init: Bytes,
    /// The recorded codecs, video first (`h264`, `aac`, …).
    pub codecs: Vec<String>,
}

/// A fragment of the open file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FragmentOut {
    /// `moof` + `mdat`.
    pub bytes: Bytes,
    /// Its start relative to the file's first frame (ms).
    pub t_ms: i64,
    /// Its duration (ms, driving track).
    pub duration_ms: i64,
    /// Whether it starts on a keyframe.
    pub keyframe: bool,
}

/// Fragment and segment targets, in 90 kHz ticks.
#[derive(Clone, Copy, Debug)]
pub struct Targets {
    /// Part (fragment) target.
    pub part90: i64,
    /// Segment (file) target.
    pub segment90: i64,
}

#[derive(Debug)]
struct Held {
    dts: i64,
    cts: i32,
    keyframe: bool,
    payload: Bytes,
}

/// A video frame waiting for audio (see [`MAX_AUDIO_WAIT90`]).
#[derive(Debug)]
struct Deferred {
    dts: i64,
    pts: i64,
    frame: Frame,
    wall_ms: i64,
}

#[derive(Debug)]
struct Audio {
    src: TrackInfo,
    out: TrackInfo,
    clock: AudioClock,
    aac_samples: u32,
}

/// Kernel events in, [`Output`]s out.
#[derive(Debug)]
pub struct Muxer {
    targets: Targets,
    video: Option<(TrackInfo, TrackInfo)>,
    audio: Option<Audio>,
    init: Option<(Bytes, Vec<String>)>,
    /// The publish's first driving time (90 kHz, source clock), once seen.
    base90: Option<i64>,
    /// The open file's first driving time (90 kHz, publish timeline).
    file_start: Option<i64>,
    frag_start: Option<i64>,
    videos: Vec<Sample>,
    audios: VecDeque<(i64, Sample)>,
    held: Option<Held>,
    interval: u32,
    need_key: bool,
    sequence: u32,
    dropped: u64,
    /// Audio before this (90 kHz, publish timeline) is not written to the
    /// open file: its first picture's presentation time.
    audio_from: i64,
    /// The newest audio time seen (90 kHz, publish timeline).
    last_audio90: Option<i64>,
    /// Video frames from a keyframe on, waiting for the audio up to
    /// `defer_until`.
    deferred: VecDeque<Deferred>,
    defer_until: i64,
}

impl Muxer {
    /// A muxer cutting at `targets`.
    pub fn new(targets: Targets) -> Self {
        Muxer {
            targets,
            video: None,
            audio: None,
            init: None,
            base90: None,
            file_start: None,
            frag_start: None,
            videos: Vec::new(),
            audios: VecDeque::new(),
            held: None,
            interval: 3000,
            need_key: true,
            sequence: 1,
            dropped: 0,
            audio_from: 0,
            last_audio90: None,
            deferred: VecDeque::new(),
            defer_until: 0,
        }
    }

    /// Frames dropped while waiting for a keyframe after a skip or a drop.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether a file is open.
    pub fn is_open(&self) -> bool {
        self.file_start.is_some()
    }

    /// A catalog: when the recorded tracks change, the open file closes and
    /// the next keyframe starts one with the new init segment. `Err` when
    /// no recorded track can be written to fMP4 (the stream is not recorded
    /// until a catalog that can).
    pub fn catalog(&mut self, catalog: &Catalog, out: &mut Vec<Output>) -> Result<(), String> {
        self.tracks(catalog.tracks(), out)
    }

    /// The tracks of a catalog (see [`catalog`](Self::catalog)).
    pub fn tracks(&mut self, tracks: &[TrackInfo], out: &mut Vec<Output>) -> Result<(), String> {
        let video = tracks.iter().find(|t| t.kind() == MediaKind::Video);
        let audio = tracks.iter().find(|t| t.kind() == MediaKind::Audio);
        let same = self.video.as_ref().map(|v| &v.0) == video
            && self.audio.as_ref().map(|a| &a.src) == audio;
        if same && self.init.is_some() {
            return Ok(());
        }
        self.finish(out);
        self.need_key = true;
        let v = video.map(|v| (v.clone(), v.clone().with_timescale(fmp4::timescale_for(v))));
        let a = audio.map(|a| Audio {
            src: a.clone(),
            out: a.clone().with_timescale(fmp4::timescale_for(a)),
            clock: AudioClock::new(a.timescale, fmp4::timescale_for(a)),
            aac_samples: a.config.as_deref().map_or(1024, aac_frame_samples),
        });
        let mut outs: Vec<&TrackInfo> = Vec::new();
        outs.extend(v.as_ref().map(|v| &v.1));
        outs.extend(a.as_ref().map(|a| &a.out));
        let init = match fmp4::init_segment(&outs) {
            Ok(init) => Some(init),
            Err(e) => {
                self.video = None;
                self.audio = None;
                self.init = None;
                return Err(e.to_string());
            }
        };
        let codecs = outs.iter().map(|t| t.codec.name().to_string()).collect();
        self.init = init.map(|i| (i, codecs));
        self.video = v;
        self.audio = a;
        Ok(())
    }

    /// The stream was published anew: the open file closes, the timeline
    /// restarts at the next keyframe.
    pub fn discontinuity(&mut self, out: &mut Vec<Output>) {
        self.finish(out);
        self.base90 = None;
        self.need_key = true;
        if let Some(a) = &mut self.audio {
            a.clock.reset();
        }
    }

    /// Frames were lost (the kernel skipped the recorder, or the disk queue
    /// was full): the open file closes and recording resumes at the next
    /// keyframe in a new file.
    pub fn skip(&mut self, frames: u64, out: &mut Vec<Output>) {
        self.dropped += frames;
        self.finish(out);
        self.need_key = true;
    }

    /// Like [`skip`](Self::skip), without writing what is pending: used
    /// when the writer cannot take more. Nothing is output.
    pub fn abandon(&mut self) {
        self.reset_pending();
        self.file_start = None;
        self.need_key = true;
        self.dropped += 1;
    }

    /// The end of the stream: what is pending is written, the file closes.
    pub fn end(&mut self, out: &mut Vec<Output>) {
        self.finish(out);
    }

    /// A frame whose first sample arrived at wall-clock `wall_ms` (Unix ms).
    pub fn frame(&mut self, f: &Frame, wall_ms: i64, out: &mut Vec<Output>) {
        if self.init.is_none() {
            return;
        }
        if let Some((src, _)) = self.video.as_ref().filter(|v| v.0.id == f.track) {
            let dts = rescale(f.dts, src.timescale, 90_000);
            let pts = rescale(f.pts, src.timescale, 90_000);
            self.video_in(dts, pts, f, wall_ms, out);
        } else if self.audio.as_ref().is_some_and(|a| a.src.id == f.track) {
            self.audio_frame(f, wall_ms, out);
            if !self.deferred.is_empty() && self.last_audio90.is_some_and(|t| t >= self.defer_until)
            {
                self.flush_deferred(out);
            }
        }
    }

    /// A video frame, held back while a new file waits for its audio.
    fn video_in(&mut self, dts: i64, pts: i64, f: &Frame, wall_ms: i64, out: &mut Vec<Output>) {
        let deferred = Deferred {
            dts,
            pts,
            frame: f.clone(),
            wall_ms,
        };
        if !self.deferred.is_empty() {
            self.deferred.push_back(deferred);
            let waited = self
                .base90
                .is_some_and(|b| dts - b >= self.defer_until + MAX_AUDIO_WAIT90);
            if waited || self.deferred.len() >= MAX_DEFERRED {
                self.flush_deferred(out);
            }
            return;
        }
        if let (Some(base), Some(file)) = (self.base90, self.file_start) {
            let (d, shown) = (dts - base, pts - base);
            // Every keyframe starts a fragment (where a playback may start).
            let starts_fragment = f.is_keyframe() && !self.need_key && d >= file;
            if starts_fragment
                && self.audio.is_some()
                && shown > d
                && self.last_audio90.is_none_or(|t| t < shown)
            {
                self.defer_until = shown;
                self.deferred.push_back(deferred);
                return;
            }
        }
        self.video_frame(dts, pts, f, wall_ms, out);
    }

    fn flush_deferred(&mut self, out: &mut Vec<Output>) {
        while let Some(d) = self.deferred.pop_front() {
            self.video_frame(d.dts, d.pts, &d.frame, d.wall_ms, out);
        }
    }

    fn video_frame(&mut self, dts: i64, pts: i64, f: &Frame, wall_ms: i64, out: &mut Vec<Output>) {
        let keyframe = f.is_keyframe();
        if self.need_key && !keyframe {
            if self.base90.is_some() {
                self.dropped += 1;
            }
            return;
        }
        let base = *self.base90.get_or_insert(dts);
        let d = dts - base;
        if d < 0 || self.held.as_ref().is_some_and(|h| d <= h.dts) {
            // Decode time going backwards: not writable in one track run.
            return;
        }
        if let Some(h) = self.held.take() {
            let duration = u32::try_from(d - h.dts).unwrap_or(u32::MAX);
            self.interval = duration;
            self.videos.push(Sample {
                dts: h.dts.unsigned_abs(),
                duration,
                cts_offset: h.cts,
                keyframe: h.keyframe,
                data: h.payload,
            });
        }
        let shown = (pts - base).max(d);
        self.cut(d, shown, keyframe, out);
        if self.file_start.is_none() {
            if !keyframe {
                self.dropped += 1;
                return;
            }
            self.open(d, shown, wall_ms, out);
        }
        self.frag_start.get_or_insert(d);
        self.held = Some(Held {
            dts: d,
            cts: i32::try_from((pts - base).max(d) - d).unwrap_or(0),
            keyframe,
            payload: f.payload.clone(),
        });
    }

    fn audio_frame(&mut self, f: &Frame, wall_ms: i64, out: &mut Vec<Output>) {
        let driving = self.video.is_none();
        let Some(a) = self.audio.as_mut() else {
            return;
        };
        let samples = match a.src.codec {
            Codec::Opus => match opus_packet_samples(&f.payload) {
                Some(n) => n,
                None => return,
            },
            _ => a.aac_samples,
        };
        let rate = a.out.timescale;
        let t = a
            .clock
            .next(f.pts, samples, f.flags.contains(FrameFlags::DISCONTINUITY));
        if driving && self.need_key {
            self.base90.get_or_insert(rescale(t, rate, 90_000));
        }
        let Some(base) = self.base90 else {
            return;
        };
        let rel = t - rescale(base, 90_000, rate);
        if rel < 0 {
            return;
        }
        let t90 = rescale(rel, rate, 90_000);
        self.last_audio90 = Some(t90);
        let sample = Sample {
            dts: rel.unsigned_abs(),
            duration: samples,
            cts_offset: 0,
            keyframe: true,
            data: f.payload.clone(),
        };
        if driving {
            self.cut(t90, t90, true, out);
            if self.file_start.is_none() {
                self.open(t90, t90, wall_ms, out);
            }
            self.frag_start.get_or_insert(t90);
        } else if self.file_start.is_none() || t90 < self.audio_from {
            return;
        }
        if self.audios.len() >= MAX_QUEUED_AUDIO {
            self.audios.pop_front();
        }
        self.audios.push_back((t90, sample));
    }

    /// Cuts before a driving frame at `t` (90 kHz, publish timeline),
    /// presented at `shown` (where the file's audio ends when it closes).
    fn cut(&mut self, t: i64, shown: i64, keyframe: bool, out: &mut Vec<Output>) {
        let (Some(file), Some(frag)) = (self.file_start, self.frag_start) else {
            return;
        };
        let new_file = keyframe && t - file >= self.targets.segment90;
        let video_key = keyframe && self.video.is_some();
        if new_file || video_key || t - frag >= self.targets.part90 {
            self.emit(if keyframe { shown } else { t }, out);
            self.frag_start = Some(t);
        }
        if new_file {
            out.push(Output::Close);
            self.file_start = None;
            self.frag_start = None;
        }
    }

    fn open(&mut self, t: i64, shown: i64, wall_ms: i64, out: &mut Vec<Output>) {
        let Some((init, codecs)) = &self.init else {
            return;
        };
        // Audio before the file's first picture belongs to the file before
        // (or to none).
        self.audios.retain(|(at, _)| *at >= shown);
        self.audio_from = shown;
        out.push(Output::Open(FileStart {
            start_ms: wall_ms,
            base_ms: t / 90,
            init: init.clone(),
            codecs: codecs.clone(),
        }));
        self.file_start = Some(t);
        self.frag_start = Some(t);
        self.need_key = false;
    }

    /// Writes the pending video samples, and the audio before `audio_cut`
    /// (90 kHz), as a fragment.
    fn emit(&mut self, audio_cut: i64, out: &mut Vec<Output>) {
        let (Some(file), Some(frag)) = (self.file_start, self.frag_start) else {
            return;
        };
        let videos = std::mem::take(&mut self.videos);
        let mut audios = Vec::new();
        while self.audios.front().is_some_and(|(t, _)| *t < audio_cut) {
            if let Some((_, s)) = self.audios.pop_front() {
                audios.push(s);
            }
        }
        let mut runs = Vec::with_capacity(2);
        let duration_ms;
        let keyframe;
        if let Some((_, v)) = &self.video {
            runs.push(TrackRun {
                track: v.id,
                samples: &videos,
            });
            duration_ms = videos.iter().map(|s| i64::from(s.duration)).sum::<i64>() / 90;
            keyframe = videos.first().is_some_and(|s| s.keyframe);
        } else {
            let rate = self.audio.as_ref().map_or(48_000, |a| a.out.timescale);
            let ticks: i64 = audios.iter().map(|s| i64::from(s.duration)).sum();
            duration_ms = rescale(ticks, rate, 1000);
            keyframe = true;
        }
        if let Some(a) = &self.audio {
            runs.push(TrackRun {
                track: a.out.id,
                samples: &audios,
            });
        }
        if videos.is_empty() && (self.video.is_some() || audios.is_empty()) {
            // No driving samples: the audio waits for the next fragment.
            for s in audios.into_iter().rev() {
                let t = rescale(
                    i64::try_from(s.dts).unwrap_or(0),
                    self.audio.as_ref().map_or(48_000, |a| a.out.timescale),
                    90_000,
                );
                self.audios.push_front((t, s));
            }
            return;
        }
        match fmp4::fragment(self.sequence, &runs) {
            Ok(bytes) => {
                self.sequence = self.sequence.wrapping_add(1).max(1);
                out.push(Output::Fragment(FragmentOut {
                    bytes,
                    t_ms: (frag - file) / 90,
                    duration_ms,
                    keyframe,
                }));
            }
            Err(e) => tracing::warn!("record: fragment not written: {e}"),
        }
    }

    /// Writes what is pending and closes the open file.
    fn finish(&mut self, out: &mut Vec<Output>) {
        self.flush_deferred(out);
        if let Some(h) = self.held.take() {
            self.videos.push(Sample {
                dts: h.dts.unsigned_abs(),
                duration: self.interval,
                cts_offset: h.cts,
                keyframe: h.keyframe,
                data: h.payload,
            });
        }
        if self.file_start.is_some() {
            self.emit(i64::MAX, out);
            out.push(Output::Close);
        }
        self.reset_pending();
        self.file_start = None;
    }

    fn reset_pending(&mut self) {
        self.deferred.clear();
        self.held = None;
        self.videos.clear();
        self.audios.clear();
        self.frag_start = None;
    }
}
