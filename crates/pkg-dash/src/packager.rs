//! The sans-IO packager of one stream: catalogs and frames in, periods of
//! per-track CMAF segments out, each segment a list of chunks (one `moof` +
//! `mdat` per frame) that grows while the segment is produced.
//!
//! It holds no clock and no socket: the driver hands it each event with the
//! wall-clock time the kernel's clock anchor gives for it, and readers (the
//! MPD writer, the segment routes) look at its state under the driver's lock.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tidewater_core::time::rescale;
use tidewater_core::{Codec, Frame, FrameFlags, MediaKind, TrackInfo};
use tidewater_media::audio_clock::{AudioClock, aac_frame_samples, opus_packet_samples};
use tidewater_media::{fmp4, rfc6381};

/// How segments are cut and announced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackagerConfig {
    /// Target segment duration: segments are cut at the first keyframe on
    /// or after each multiple of it (a quarter of it early is accepted).
    pub target: Duration,
    /// Complete segments kept per track (the time-shift window).
    pub window: usize,
    /// Low-latency mode: the MPD announces segments by `$Number$` on the
    /// target-duration grid and they are served while being produced.
    pub low_latency: bool,
}

impl Default for PackagerConfig {
    fn default() -> Self {
        PackagerConfig {
            target: Duration::from_secs(2),
            window: 6,
            low_latency: false,
        }
    }
}

/// One segment of one track.
#[derive(Clone, Debug)]
pub struct Segment {
    /// `$Number$`, per period, from 1.
    pub number: u64,
    /// Decode time of its first sample, track timescale, period-relative.
    pub start: u64,
    /// Its exact duration once the next segment started (or the period ended).
    pub duration: Option<u64>,
    /// `moof` + `mdat` chunks, in order.
    pub chunks: Vec<Bytes>,
    /// Total bytes of the chunks.
    pub size: usize,
}

impl Segment {
    /// Whether it is complete.
    pub fn is_complete(&self) -> bool {
        self.duration.is_some()
    }
}

/// One track of a period: its representation.
#[derive(Debug)]
pub struct Track {
    /// The catalog's description.
    pub info: TrackInfo,
    /// `Representation@id`: `v1`, `a2`, …
    pub rep_id: String,
    /// RFC 6381 codec string.
    pub codecs: Option<String>,
    /// fMP4 timescale (90 kHz video, the sample rate audio).
    pub timescale: u32,
    /// Its init segment.
    pub init: Bytes,
    /// Segments in the window, oldest first; the last may be in progress.
    pub segments: VecDeque<Segment>,
    /// Period origin in this track's timescale (stream media time).
    origin: i64,
    audio_clock: Option<AudioClock>,
    aac_samples: u32,
    last_dts: Option<u64>,
    /// The last distance between two decode times (the duration given to
    /// the newest sample, whose successor is not known yet).
    last_step: u32,
    sequence: u32,
}

impl Track {
    /// Bits per second over the complete segments in the window, else the
    /// catalog's nominal bit rate, else a guess by kind.
    pub fn bandwidth(&self) -> u64 {
        let (bytes, ticks) = self
            .segments
            .iter()
            .filter_map(|s| s.duration.map(|d| (s.size as u64, d)))
            .fold((0u64, 0u64), |(b, t), (sb, st)| (b + sb, t + st));
        if ticks > 0 && bytes > 0 {
            return bytes * 8 * u64::from(self.timescale) / ticks;
        }
        match (self.info.bitrate, self.info.kind()) {
            (Some(b), _) if b > 0 => u64::from(b),
            (_, MediaKind::Video) => 1_000_000,
            (_, MediaKind::Audio) => 128_000,
        }
    }

    /// Frame rate as the catalog says, else measured from decode steps.
    pub fn frame_rate(&self) -> Option<(u32, u32)> {
        if self.info.kind() != MediaKind::Video {
            return None;
        }
        if let Some(fr) = self.info.video.and_then(|v| v.frame_rate)
            && fr.0 > 0
            && fr.1 > 0
        {
            return Some(fr);
        }
        (self.last_dts.is_some() && self.last_step > 0).then(|| {
            let fps = (f64::from(self.timescale) / f64::from(self.last_step)).round();
            (fps.clamp(1.0, 1_000.0) as u32, 1)
        })
    }

    /// The segment of this number, if still in the window.
    pub fn segment(&self, number: u64) -> Option<&Segment> {
        self.segments.iter().find(|s| s.number == number)
    }

    fn close_current(&mut self, end: u64) {
        if let Some(s) = self.segments.back_mut().filter(|s| !s.is_complete()) {
            s.duration = Some(end.saturating_sub(s.start).max(1));
        }
    }

    fn end_time(&self) -> u64 {
        self.last_dts
            .map_or(0, |d| d + u64::from(self.last_step.max(1)))
    }
}

/// A period: one publish generation under one catalog.
#[derive(Debug)]
pub struct Period {
    /// `Period@id` (and the `p{id}-` prefix of its segment names).
    pub id: u32,
    /// `Period@start`, from the availability start time.
    pub start: Duration,
    /// Set once the period ended.
    pub duration: Option<Duration>,
    /// Its tracks, in catalog order.
    pub tracks: Vec<Track>,
    /// The video track whose keyframes decide the cuts (none: audio only).
    leader: Option<usize>,
}

impl Period {
    /// The track whose representation id is `rep`.
    pub fn track(&self, rep: &str) -> Option<&Track> {
        self.tracks.iter().find(|t| t.rep_id == rep)
    }

    /// Whether every track has at least one complete segment.
    pub fn has_complete_segments(&self) -> bool {
        !self.tracks.is_empty()
            && self
                .tracks
                .iter()
                .all(|t| t.segments.iter().any(Segment::is_complete))
    }

    /// Whether any track has started a segment.
    pub fn has_segments(&self) -> bool {
        self.tracks.iter().any(|t| !t.segments.is_empty())
    }

    /// The end of its media so far, from its start.
    fn media_end(&self) -> Duration {
        let us = self
            .tracks
            .iter()
            .map(|t| rescale(t.end_time() as i64, t.timescale, 1_000_000))
            .max()
            .unwrap_or(0);
        Duration::from_micros(us.max(0) as u64)
    }
}

/// Why a frame was not packaged (the driver logs it once per kind).
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The catalog has a track the fMP4 writer cannot describe.
    #[error("track {track} ({codec}) cannot be packaged: {source}")]
    Track {
        /// Track id.
        track: u32,
        /// Codec name.
        codec: &'static str,
        /// Why.
        source: tidewater_media::Error,
    },
    /// A fragment could not be written.
    #[error("fragment of track {track}: {source}")]
    Fragment {
        /// Track id.
        track: u32,
        /// Why.
        source: tidewater_media::Error,
    },
}

/// The packager of one stream.
#[derive(Debug)]
pub struct Packager {
    config: PackagerConfig,
    ast: Option<SystemTime>,
    periods: VecDeque<Period>,
    next_period: u32,
    tracks: Option<Arc<[TrackInfo]>>,
    /// The active (last) period takes no more frames: the next frame opens a new one.
    closed: bool,
    /// The stream ended for good ([`finish`](Self::finish)).
    ended: bool,
    changes: u64,
}

impl Packager {
    /// A packager with nothing yet.
    pub fn new(config: PackagerConfig) -> Self {
        Packager {
            config,
            ast: None,
            periods: VecDeque::new(),
            next_period: 1,
            tracks: None,
            closed: true,
            ended: false,
            changes: 0,
        }
    }

    /// Its settings.
    pub fn config(&self) -> &PackagerConfig {
        &self.config
    }

    /// `MPD@availabilityStartTime`: the wall-clock time of the first
    /// period's origin.
    pub fn availability_start(&self) -> Option<SystemTime> {
        self.ast
    }

    /// Periods in the window, oldest first.
    pub fn periods(&self) -> &VecDeque<Period> {
        &self.periods
    }

    /// The period of this id.
    pub fn period(&self, id: u32) -> Option<&Period> {
        self.periods.iter().find(|p| p.id == id)
    }

    /// Counts every change (a chunk, a cut, a period): readers wait on it.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Whether an MPD can be written: a period with a complete segment per
    /// track (in low-latency mode, a started one is enough).
    pub fn ready(&self) -> bool {
        self.periods.iter().any(|p| {
            if self.config.low_latency {
                p.has_segments()
            } else {
                p.has_complete_segments()
            }
        })
    }

    /// Media a player can buffer right away: the complete segments of the
    /// newest period's first track.
    pub fn buffered(&self) -> Duration {
        self.periods
            .back()
            .and_then(|p| p.tracks.first())
            .map_or(Duration::ZERO, |t| {
                let ticks: u64 = t.segments.iter().filter_map(|s| s.duration).sum();
                Duration::from_micros(ticks * 1_000_000 / u64::from(t.timescale.max(1)))
            })
    }

    /// A catalog (version): a period under a different track set ends, and
    /// the next frame opens a new one.
    pub fn on_tracks(&mut self, tracks: &[TrackInfo]) {
        if self.tracks.as_deref() != Some(tracks) {
            self.end_period();
            self.tracks = Some(tracks.into());
        }
    }

    /// The stream ended for good: its period ends (every segment complete)
    /// and the MPD turns static. Frames after it are ignored.
    pub fn finish(&mut self) {
        self.end_period();
        if !self.ended {
            self.ended = true;
            self.changes += 1;
        }
    }

    /// Whether the stream ended ([`finish`](Self::finish)).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The stream was published anew (a republish): its period ends.
    pub fn on_discontinuity(&mut self) {
        self.end_period();
        self.tracks = None;
    }

    /// One frame; `wall` is the wall-clock time of its decode timestamp.
    pub fn on_frame(&mut self, frame: &Frame, wall: SystemTime) -> Result<(), PackError> {
        if self.ended {
            return Ok(());
        }
        let Some(tracks) = self.tracks.clone() else {
            return Ok(());
        };
        let Some(info) = tracks.iter().find(|t| t.id == frame.track) else {
            return Ok(());
        };
        if self.closed {
            // A period starts at the first video track's keyframe (at any
            // frame when the stream is audio only).
            let starts = match tracks.iter().find(|t| t.kind() == MediaKind::Video) {
                Some(v) => v.id == frame.track && frame.is_keyframe(),
                None => true,
            };
            if !starts {
                return Ok(());
            }
            self.open_period(&tracks, frame, info, wall)?;
        }
        self.push(frame)?;
        self.changes += 1;
        Ok(())
    }

    fn open_period(
        &mut self,
        catalog: &[TrackInfo],
        frame: &Frame,
        info: &TrackInfo,
        wall: SystemTime,
    ) -> Result<(), PackError> {
        let origin_us = rescale(frame.dts, info.timescale, 1_000_000);
        let ast = *self.ast.get_or_insert(wall);
        let mut start = wall.duration_since(ast).unwrap_or(Duration::ZERO);
        if let Some(prev) = self.periods.back() {
            let prev_end = prev.start + prev.duration.unwrap_or(Duration::ZERO);
            start = start.max(prev_end);
        }
        let mut tracks = Vec::new();
        for t in catalog {
            let init = fmp4::init_segment(&[t]).map_err(|source| PackError::Track {
                track: t.id.0,
                codec: t.codec.name(),
                source,
            })?;
            let timescale = fmp4::timescale_for(t);
            let prefix = if t.kind() == MediaKind::Video {
                'v'
            } else {
                'a'
            };
            let audio_clock =
                (t.kind() == MediaKind::Audio).then(|| AudioClock::new(t.timescale, timescale));
            let aac_samples = match (t.codec, &t.config) {
                (Codec::Aac, Some(c)) => aac_frame_samples(c),
                _ => 1024,
            };
            let default_step = t
                .video
                .and_then(|v| v.frame_rate)
                .filter(|(n, d)| *n > 0 && *d > 0)
                .map_or(timescale / 25, |(n, d)| {
                    (u64::from(timescale) * u64::from(d) / u64::from(n)) as u32
                });
            tracks.push(Track {
                info: t.clone(),
                rep_id: format!("{prefix}{}", t.id.0),
                codecs: rfc6381::codec_string(t),
                timescale,
                init,
                segments: VecDeque::new(),
                origin: rescale(origin_us, 1_000_000, timescale),
                audio_clock,
                aac_samples,
                last_dts: None,
                last_step: default_step.max(1),
                sequence: 1,
            });
        }
        let leader = tracks
            .iter()
            .position(|t| t.info.kind() == MediaKind::Video);
        self.periods.push_back(Period {
            id: self.next_period,
            start,
            duration: None,
            tracks,
            leader,
        });
        self.next_period += 1;
        self.closed = false;
        Ok(())
    }

    fn end_period(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        if let Some(p) = self.periods.back_mut() {
            for t in &mut p.tracks {
                let end = t.end_time();
                t.close_current(end);
            }
            p.duration = Some(p.media_end());
            self.changes += 1;
        }
    }

    fn push(&mut self, frame: &Frame) -> Result<(), PackError> {
        let config = self.config.clone();
        let Some(period) = self.periods.back_mut() else {
            return Ok(());
        };
        let Some(ti) = period.tracks.iter().position(|t| t.info.id == frame.track) else {
            return Ok(());
        };
        let leader = period.leader;
        // The leader's newest segment: its number and start in microseconds.
        let lead = leader.and_then(|l| {
            let t = period.tracks.get(l)?;
            t.segments
                .back()
                .map(|s| (s.number, rescale(s.start as i64, t.timescale, 1_000_000)))
        });
        let Some(track) = period.tracks.get_mut(ti) else {
            return Ok(());
        };
        let is_video = track.info.kind() == MediaKind::Video;

        // Decode time in the track's timescale, relative to the period
        // origin; audio times are rebuilt from sample counts.
        let samples = match frame.codec {
            Codec::Opus => opus_packet_samples(&frame.payload).unwrap_or(960),
            _ => track.aac_samples,
        };
        let dts = match &mut track.audio_clock {
            Some(clock) => {
                let discontinuity = frame.flags.contains(FrameFlags::DISCONTINUITY);
                clock.next(frame.pts, samples, discontinuity) - track.origin
            }
            None => fmp4::to_track_time(frame.dts, &track.info) - track.origin,
        };
        if dts < 0 {
            // Before the period's first video keyframe.
            return Ok(());
        }
        let mut dts = dts as u64;
        if let Some(last) = track.last_dts {
            dts = dts.max(last + 1);
        }

        let cut = if Some(ti) == leader || leader.is_none() {
            // Cuts follow the target grid, at random-access points.
            let n = grid_number(&config, dts, track.timescale);
            match track.segments.back() {
                _ if !frame.is_keyframe() => None,
                None => Some(if config.low_latency { n } else { 1 }),
                Some(cur) if n > grid_number(&config, cur.start, track.timescale) => {
                    Some(if config.low_latency {
                        n
                    } else {
                        cur.number + 1
                    })
                }
                Some(_) => None,
            }
        } else {
            // Followers cut once the leader's newest segment started, at
            // their first random-access point at or after its start.
            let Some((number, start_us)) = lead else {
                return Ok(());
            };
            let mine = track.segments.back().map(|s| s.number);
            let start = rescale(start_us, 1_000_000, track.timescale).max(0) as u64;
            // A timeline needs consecutive numbers per representation (the
            // leader may have cut twice before this track's next frame); on
            // the low-latency grid a number is a time slot.
            (mine.is_none_or(|m| number > m) && dts >= start && frame.is_keyframe()).then(|| {
                match mine {
                    Some(m) if !config.low_latency => m + 1,
                    _ => number,
                }
            })
        };
        if track.segments.is_empty() && cut.is_none() {
            return Ok(());
        }
        // No keyframe for ten targets: a segment cannot grow without bound
        // in memory, so the period ends here and the next keyframe opens a
        // new one (the frames in between are not packaged).
        let overlong = cut.is_none()
            && (Some(ti) == leader || leader.is_none())
            && track.segments.back().is_some_and(|s| {
                !s.is_complete()
                    && dts.saturating_sub(s.start) > 10 * target_ticks(&config, track.timescale)
            });
        if overlong {
            self.end_period();
            return Ok(());
        }

        // The newest sample's duration is a guess (the last step) until the
        // next one arrives; segment durations are always exact.
        if is_video {
            if let Some(last) = track.last_dts {
                track.last_step = u32::try_from(dts - last).unwrap_or(u32::MAX).max(1);
            }
        } else {
            track.last_step = samples.max(1);
        }
        if let Some(number) = cut {
            track.close_current(dts);
            track.segments.push_back(Segment {
                number,
                start: dts,
                duration: None,
                chunks: Vec::new(),
                size: 0,
            });
        }

        let cts = fmp4::to_track_time(frame.pts, &track.info)
            - fmp4::to_track_time(frame.dts, &track.info);
        let sample = fmp4::Sample {
            dts,
            duration: track.last_step,
            cts_offset: i32::try_from(cts).unwrap_or(0),
            keyframe: frame.is_keyframe(),
            data: frame.payload.clone(),
        };
        let chunk = fmp4::fragment(
            track.sequence,
            &[fmp4::TrackRun {
                track: track.info.id,
                samples: std::slice::from_ref(&sample),
            }],
        )
        .map_err(|source| PackError::Fragment {
            track: track.info.id.0,
            source,
        })?;
        track.sequence = track.sequence.wrapping_add(1).max(1);
        track.last_dts = Some(dts);
        if let Some(seg) = track.segments.back_mut() {
            seg.size += chunk.len();
            seg.chunks.push(chunk);
        }
        if cut.is_some() {
            self.trim();
        }
        Ok(())
    }

    /// Keeps `window` complete segments per track over all periods and
    /// drops periods left without segments.
    fn trim(&mut self) {
        let window = self.config.window.max(1);
        loop {
            let complete: usize = self
                .periods
                .iter()
                .map(|p| {
                    p.tracks
                        .iter()
                        .map(|t| t.segments.iter().filter(|s| s.is_complete()).count())
                        .max()
                        .unwrap_or(0)
                })
                .sum();
            if complete <= window {
                break;
            }
            let Some(first) = self.periods.front_mut() else {
                break;
            };
            // The oldest number of the oldest period goes from every track.
            let oldest = first
                .tracks
                .iter()
                .filter_map(|t| {
                    t.segments
                        .front()
                        .filter(|s| s.is_complete())
                        .map(|s| s.number)
                })
                .min();
            match oldest {
                Some(n) => {
                    for t in &mut first.tracks {
                        while t
                            .segments
                            .front()
                            .is_some_and(|s| s.number <= n && s.is_complete())
                        {
                            t.segments.pop_front();
                        }
                    }
                }
                None => {
                    if self.periods.len() > 1 {
                        self.periods.pop_front();
                    } else {
                        break;
                    }
                }
            }
            if self.periods.len() > 1
                && self
                    .periods
                    .front()
                    .is_some_and(|p| p.tracks.iter().all(|t| t.segments.is_empty()))
            {
                self.periods.pop_front();
            }
        }
    }
}

/// The target duration in `timescale` ticks.
fn target_ticks(config: &PackagerConfig, timescale: u32) -> u64 {
    rescale(config.target.as_millis() as i64, 1_000, timescale).max(1) as u64
}

/// The cell of the target-duration grid a period time falls in, from 1 (a
/// quarter of a target early counts as the next cell, absorbing keyframe
/// jitter).
fn grid_number(config: &PackagerConfig, t: u64, timescale: u32) -> u64 {
    let target = target_ticks(config, timescale);
    1 + (t + target / 4) / target
}
