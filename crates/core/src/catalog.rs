//! The catalog: the track set a stream announces before its frames flow.
//!
//! Packagers build PMTs, init segments, MPDs and `CODECS` strings from it, so
//! nobody guesses with timeouts. A mid-stream configuration change (a new SPS,
//! a new resolution) is a new catalog version: subscribers receive it in band,
//! just before the first frame encoded with it, and every frame carries the
//! catalog it was published under, so a cached GOP replays with its own
//! configuration.

use bytes::Bytes;

use crate::frame::{Codec, MediaKind, TrackId};
use crate::time::TimestampWrap;

/// Picture parameters of a video track.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct VideoParams {
    /// Coded width in pixels (0 when unknown).
    pub width: u32,
    /// Coded height in pixels (0 when unknown).
    pub height: u32,
    /// Nominal frame rate as a fraction, when the source says.
    pub frame_rate: Option<(u32, u32)>,
}

/// Sound parameters of an audio track.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct AudioParams {
    /// Samples per second.
    pub sample_rate: u32,
    /// Channel count.
    pub channels: u8,
}

/// One track of a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackInfo {
    /// The id frames of this track carry.
    pub id: TrackId,
    /// The codec.
    pub codec: Codec,
    /// Ticks per second of this track's timestamps.
    pub timescale: u32,
    /// How the ingest protocol's timestamps of this track wrap.
    pub wrap: TimestampWrap,
    /// The decoder configuration in the form the frame module documents
    /// (`avcC`, `hvcC`, `av1C`, AudioSpecificConfig, …), if the codec has one.
    pub config: Option<Bytes>,
    /// Video parameters (video tracks).
    pub video: Option<VideoParams>,
    /// Audio parameters (audio tracks).
    pub audio: Option<AudioParams>,
    /// Nominal bit rate in bits per second, when the source says.
    pub bitrate: Option<u32>,
}

impl TrackInfo {
    /// A video track with a 90 kHz default timescale; adjust fields as needed.
    pub fn video(id: TrackId, codec: Codec, width: u32, height: u32) -> Self {
        TrackInfo {
            id,
            codec,
            timescale: crate::time::timescale::MPEG_90K,
            wrap: TimestampWrap::None,
            config: None,
            video: Some(VideoParams {
                width,
                height,
                frame_rate: None,
            }),
            audio: None,
            bitrate: None,
        }
    }

    /// An audio track whose timescale is its sample rate.
    pub fn audio(id: TrackId, codec: Codec, sample_rate: u32, channels: u8) -> Self {
        TrackInfo {
            id,
            codec,
            timescale: sample_rate.max(1),
            wrap: TimestampWrap::None,
            config: None,
            video: None,
            audio: Some(AudioParams {
                sample_rate,
                channels,
            }),
            bitrate: None,
        }
    }

    /// Sets the timescale.
    pub fn with_timescale(mut self, timescale: u32) -> Self {
        self.timescale = timescale;
        self
    }

    /// Sets the timestamp wrap of the ingest protocol.
    pub fn with_wrap(mut self, wrap: TimestampWrap) -> Self {
        self.wrap = wrap;
        self
    }

    /// Sets the decoder configuration.
    pub fn with_config(mut self, config: Bytes) -> Self {
        self.config = Some(config);
        self
    }

    /// Video or audio.
    pub fn kind(&self) -> MediaKind {
        self.codec.kind()
    }
}

/// A versioned track set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalog {
    version: u64,
    tracks: Vec<TrackInfo>,
}

impl Catalog {
    /// Validates a track set: at least one track, unique ids, non-zero
    /// timescales, parameters matching each codec's kind.
    pub fn validate(tracks: &[TrackInfo]) -> Result<(), &'static str> {
        if tracks.is_empty() {
            return Err("a catalog needs at least one track");
        }
        if tracks.len() > 16 {
            return Err("more than 16 tracks");
        }
        for (i, t) in tracks.iter().enumerate() {
            if t.timescale == 0 {
                return Err("timescale 0");
            }
            if tracks.iter().take(i).any(|o| o.id == t.id) {
                return Err("duplicate track id");
            }
            match t.kind() {
                MediaKind::Video if t.audio.is_some() => {
                    return Err("audio parameters on a video track");
                }
                MediaKind::Audio if t.video.is_some() => {
                    return Err("video parameters on an audio track");
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub(crate) fn new_version(version: u64, tracks: Vec<TrackInfo>) -> Self {
        Catalog { version, tracks }
    }

    /// Version, starting at 1 for a publish's first catalog.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// All tracks.
    pub fn tracks(&self) -> &[TrackInfo] {
        &self.tracks
    }

    /// The track with this id.
    pub fn track(&self, id: TrackId) -> Option<&TrackInfo> {
        self.tracks.iter().find(|t| t.id == id)
    }

    /// The first video track.
    pub fn video(&self) -> Option<&TrackInfo> {
        self.tracks.iter().find(|t| t.kind() == MediaKind::Video)
    }

    /// The first audio track.
    pub fn audio(&self) -> Option<&TrackInfo> {
        self.tracks.iter().find(|t| t.kind() == MediaKind::Audio)
    }
}
