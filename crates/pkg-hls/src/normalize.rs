//! Kernel frames to packaging units: one continuous timeline for the whole
//! life of a packager, whatever the publisher does.
//!
//! - The packaged tracks are the stream's first video track and first audio
//!   track; the video one (or, audio-only, the audio one) *drives* the
//!   segmenting.
//! - Video times go to 90 kHz ([`fmp4::to_track_time`]); audio times are
//!   rebuilt from sample counts in the sample-rate timescale
//!   ([`AudioClock`]), not rescaled from the 1 kHz RTMP times.
//! - The timeline starts at [`TIMELINE_START`] and continues across a
//!   republish: the new publish's first driving frame is placed where the
//!   previous one ended, so PTS/PCR and `tfdt` keep increasing and only the
//!   playlist's `EXT-X-DISCONTINUITY` says what happened.
//! - Until the first driving frame of a publish has been seen, other frames
//!   are dropped (the timeline is anchored on the driving track).

use std::sync::Arc;

use bytes::Bytes;
use tidewater_core::{Catalog, Codec, Frame, FrameFlags, MediaKind, TrackId, TrackInfo, rescale};
use tidewater_media::audio_clock::{AudioClock, aac_frame_samples, opus_packet_samples};
use tidewater_media::fmp4;

/// Where a packager's timeline starts, in 90 kHz ticks (10 s: room for
/// audio that precedes the first video frame without going negative).
pub const TIMELINE_START: i64 = 900_000;

/// The tracks being packaged, in their packaging timescales.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackSet {
    /// Video track (timescale 90 kHz), if any.
    pub video: Option<TrackInfo>,
    /// Audio track (timescale: its sample rate; 48 kHz for Opus), if any.
    pub audio: Option<TrackInfo>,
}

impl TrackSet {
    /// The packaged tracks, video first.
    pub fn tracks(&self) -> Vec<&TrackInfo> {
        self.video.iter().chain(self.audio.iter()).collect()
    }

    /// The track that drives segmenting.
    pub fn driving(&self) -> Option<TrackId> {
        self.video.as_ref().or(self.audio.as_ref()).map(|t| t.id)
    }
}

/// One frame, ready to package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    /// Its track.
    pub track: TrackId,
    /// Video or audio.
    pub kind: MediaKind,
    /// Whether it belongs to the driving track.
    pub driving: bool,
    /// Decode time, track packaging timescale.
    pub dts: i64,
    /// Presentation time, track packaging timescale.
    pub pts: i64,
    /// Decode time on the common 90 kHz timeline.
    pub t90: i64,
    /// Duration in the track timescale when known from the payload (audio).
    pub duration: Option<u32>,
    /// A random-access point.
    pub keyframe: bool,
    /// The payload in canonical form.
    pub payload: Bytes,
}

/// What [`Normalizer::frame`] and [`Normalizer::catalog`] produce.
#[derive(Clone, Debug)]
pub enum Normalized {
    /// The tracks changed (first catalog, or a different track set or
    /// decoder configuration): the units that follow use these.
    Tracks(Arc<TrackSet>),
    /// A unit.
    Unit(Unit),
}

#[derive(Debug)]
struct AudioState {
    clock: AudioClock,
    /// Samples per frame for AAC (from the AudioSpecificConfig).
    aac_samples: u32,
}

/// Kernel events in, [`Normalized`] out. Sans-IO.
#[derive(Debug)]
pub struct Normalizer {
    /// The kernel's track infos of the current tracks (to read frames).
    source_video: Option<TrackInfo>,
    source_audio: Option<TrackInfo>,
    tracks: Option<Arc<TrackSet>>,
    audio: Option<AudioState>,
    /// Added to every 90 kHz time of the current publish.
    offset90: i64,
    /// Set until the first driving frame of a publish fixes `offset90`.
    rebase: bool,
    /// The end of the timeline so far (90 kHz): where a new publish starts.
    end90: i64,
    /// The last driving frame's time and the interval before it (90 kHz).
    last_driving90: Option<i64>,
    interval90: i64,
}

impl Default for Normalizer {
    fn default() -> Self {
        Normalizer {
            source_video: None,
            source_audio: None,
            tracks: None,
            audio: None,
            offset90: 0,
            rebase: true,
            end90: TIMELINE_START,
            last_driving90: None,
            interval90: 0,
        }
    }
}

impl Normalizer {
    /// A normalizer whose timeline starts at [`TIMELINE_START`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The current track set.
    pub fn tracks(&self) -> Option<&Arc<TrackSet>> {
        self.tracks.as_ref()
    }

    /// The end of the timeline so far (90 kHz): the last driving frame plus
    /// the interval before it, or the end of the latest audio frame.
    pub fn end90(&self) -> i64 {
        self.end90
    }

    /// The last interval between driving frames (90 kHz), 0 before two.
    pub fn interval90(&self) -> i64 {
        self.interval90
    }

    /// A catalog (first, new version, or after a republish).
    pub fn catalog(&mut self, catalog: &Catalog) -> Option<Normalized> {
        self.set_tracks(catalog.tracks()).map(Normalized::Tracks)
    }

    /// The tracks of a catalog (its first video and first audio track are
    /// packaged); the new track set when it differs from the current one.
    pub fn set_tracks(&mut self, tracks: &[TrackInfo]) -> Option<Arc<TrackSet>> {
        let video = tracks
            .iter()
            .find(|t| t.kind() == MediaKind::Video)
            .cloned();
        let audio = tracks
            .iter()
            .find(|t| t.kind() == MediaKind::Audio)
            .cloned();
        let set = TrackSet {
            video: video
                .as_ref()
                .map(|v| v.clone().with_timescale(fmp4::timescale_for(v))),
            audio: audio
                .as_ref()
                .map(|a| a.clone().with_timescale(fmp4::timescale_for(a))),
        };
        let audio_changed = self
            .source_audio
            .as_ref()
            .map(|a| (a.codec, a.timescale, &a.config))
            != audio.as_ref().map(|a| (a.codec, a.timescale, &a.config));
        if audio_changed || self.audio.is_none() {
            self.audio = audio.as_ref().map(|a| AudioState {
                clock: AudioClock::new(a.timescale, fmp4::timescale_for(a)),
                aac_samples: a.config.as_deref().map_or(1024, aac_frame_samples),
            });
        }
        self.source_video = video;
        self.source_audio = audio;
        if self.tracks.as_deref() == Some(&set) {
            return None;
        }
        let set = Arc::new(set);
        self.tracks = Some(set.clone());
        Some(set)
    }

    /// A new publish follows: its timeline is rebased onto the end of this one.
    pub fn discontinuity(&mut self) {
        self.rebase = true;
        self.last_driving90 = None;
        if let Some(a) = &mut self.audio {
            a.clock.reset();
        }
    }

    /// A frame of the current publish; `None` when it is not packaged (a
    /// track beyond the first video and audio, a frame before the first
    /// driving one, an unreadable Opus packet).
    pub fn frame(&mut self, frame: &Frame) -> Option<Unit> {
        let tracks = self.tracks.clone()?;
        let driving = tracks.driving()? == frame.track;
        let discontinuity = frame.flags.contains(FrameFlags::DISCONTINUITY);
        if let Some(src) = self.source_video.as_ref().filter(|v| v.id == frame.track) {
            let out = tracks.video.as_ref()?;
            let dts_raw = rescale(frame.dts, src.timescale, out.timescale);
            let pts_raw = rescale(frame.pts, src.timescale, out.timescale);
            if self.rebase {
                if !driving {
                    return None;
                }
                self.offset90 = self.end90 - dts_raw;
                self.rebase = false;
            }
            let dts = dts_raw + self.offset90;
            let unit = Unit {
                track: frame.track,
                kind: MediaKind::Video,
                driving,
                dts,
                // B-frames: presentation never before decode in the output.
                pts: (pts_raw + self.offset90).max(dts),
                t90: dts,
                duration: None,
                keyframe: frame.is_keyframe(),
                payload: frame.payload.clone(),
            };
            self.note_driving(&unit);
            return Some(unit);
        }
        let src = self.source_audio.as_ref().filter(|a| a.id == frame.track)?;
        let out = tracks.audio.as_ref()?;
        let state = self.audio.as_mut()?;
        let samples = match src.codec {
            Codec::Opus => opus_packet_samples(&frame.payload)?,
            _ => state.aac_samples,
        };
        let rate = out.timescale;
        let t = state.clock.next(frame.pts, samples, discontinuity);
        if self.rebase {
            if !driving {
                return None;
            }
            self.offset90 = self.end90 - rescale(t, rate, 90_000);
            self.rebase = false;
        }
        let t = t + rescale(self.offset90, 90_000, rate);
        let unit = Unit {
            track: frame.track,
            kind: MediaKind::Audio,
            driving,
            dts: t,
            pts: t,
            t90: rescale(t, rate, 90_000),
            duration: Some(samples),
            keyframe: true,
            payload: frame.payload.clone(),
        };
        let end = rescale(t + i64::from(samples), rate, 90_000);
        self.end90 = self.end90.max(end);
        if driving {
            self.note_driving(&unit);
        }
        Some(unit)
    }

    fn note_driving(&mut self, unit: &Unit) {
        if !unit.driving {
            return;
        }
        if let Some(last) = self.last_driving90 {
            let step = unit.t90 - last;
            if step > 0 {
                self.interval90 = step;
            }
        }
        self.last_driving90 = Some(unit.t90);
        let end = match unit.duration {
            Some(d) => unit.t90 + rescale(i64::from(d), rate_of(unit, self), 90_000),
            None => unit.t90 + self.interval90,
        };
        self.end90 = self.end90.max(end);
    }
}

fn rate_of(unit: &Unit, n: &Normalizer) -> u32 {
    let tracks = n.tracks.as_deref();
    let info = match unit.kind {
        MediaKind::Video => tracks.and_then(|t| t.video.as_ref()),
        MediaKind::Audio => tracks.and_then(|t| t.audio.as_ref()),
    };
    info.map_or(90_000, |i| i.timescale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater_core::{Codec, Frame};

    /// Sets the tracks as a catalog would (a `Catalog` is only made by the kernel).
    pub(crate) fn set(n: &mut Normalizer, video: Option<TrackInfo>, audio: Option<TrackInfo>) {
        n.source_video = video.clone();
        n.source_audio = audio.clone();
        n.audio = audio.as_ref().map(|a| AudioState {
            clock: AudioClock::new(a.timescale, fmp4::timescale_for(a)),
            aac_samples: 1024,
        });
        n.tracks = Some(Arc::new(TrackSet {
            video: video.map(|v| {
                let ts = fmp4::timescale_for(&v);
                v.with_timescale(ts)
            }),
            audio: audio.map(|a| {
                let ts = fmp4::timescale_for(&a);
                a.with_timescale(ts)
            }),
        }));
    }

    #[test]
    fn rtmp_times_become_continuous_across_a_republish() {
        let mut n = Normalizer::new();
        let v = TrackInfo::video(TrackId(1), Codec::H264, 640, 360).with_timescale(1000);
        let a = TrackInfo::audio(TrackId(2), Codec::Aac, 48_000, 2).with_timescale(1000);
        set(&mut n, Some(v), Some(a));
        // Audio before the first video frame is dropped.
        assert!(
            n.frame(&Frame::audio(TrackId(2), Codec::Aac, 4990, Bytes::new()))
                .is_none()
        );
        let k = n
            .frame(&Frame::video(
                TrackId(1),
                Codec::H264,
                5000,
                5080,
                true,
                Bytes::new(),
            ))
            .expect("unit");
        assert_eq!(
            (k.t90, k.dts, k.pts),
            (TIMELINE_START, TIMELINE_START, TIMELINE_START + 7200)
        );
        let times: Vec<i64> = [5000, 5021, 5043, 5064]
            .into_iter()
            .filter_map(|ms| n.frame(&Frame::audio(TrackId(2), Codec::Aac, ms, Bytes::new())))
            .map(|u| u.dts)
            .collect();
        // The dropped frame at 4990 ms still counted: it lasts until 5011.3 ms.
        let base = TIMELINE_START * 48_000 / 90_000 + 544;
        assert_eq!(times, [base, base + 1024, base + 2048, base + 3072]);
        let f = n
            .frame(&Frame::video(
                TrackId(1),
                Codec::H264,
                5040,
                5040,
                false,
                Bytes::new(),
            ))
            .expect("unit");
        assert_eq!(f.t90, TIMELINE_START + 3600);
        // The audio runs furthest: four frames from 5011.3 ms end at 5096.7 ms.
        assert_eq!(n.end90(), TIMELINE_START + 8700);

        // Republish with times from 0: continues at the end.
        n.discontinuity();
        let k2 = n
            .frame(&Frame::video(
                TrackId(1),
                Codec::H264,
                0,
                0,
                true,
                Bytes::new(),
            ))
            .expect("unit");
        assert_eq!(k2.t90, TIMELINE_START + 8700);
        let a2 = n
            .frame(&Frame::audio(TrackId(2), Codec::Aac, 0, Bytes::new()))
            .expect("unit");
        assert_eq!(a2.t90, TIMELINE_START + 8700);
    }

    #[test]
    fn unknown_tracks_and_bad_opus_are_skipped() {
        let mut n = Normalizer::new();
        let a = TrackInfo::audio(TrackId(2), Codec::Opus, 48_000, 2);
        set(&mut n, None, Some(a));
        assert!(
            n.frame(&Frame::audio(
                TrackId(9),
                Codec::Opus,
                0,
                Bytes::from_static(&[0xf8])
            ))
            .is_none()
        );
        assert!(
            n.frame(&Frame::audio(TrackId(2), Codec::Opus, 0, Bytes::new()))
                .is_none()
        );
        let u = n
            .frame(&Frame::audio(
                TrackId(2),
                Codec::Opus,
                0,
                Bytes::from_static(&[0xf8]),
            ))
            .expect("unit");
        assert!(u.driving);
        assert_eq!(u.duration, Some(960));
    }
}
