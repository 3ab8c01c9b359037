//! The frame model: one access unit of one track.
//!
//! # Canonical payload forms
//!
//! Every ingest converts to these forms once per frame, and every egress
//! converts from them once per frame per output format (see
//! [`OutputFormat`](crate::OutputFormat)), never per viewer.
//!
//! | codec | payload of a [`Frame`] | decoder configuration in the [`Catalog`](crate::Catalog) |
//! |---|---|---|
//! | H.264 | NAL units, each prefixed by its 4-byte big-endian length (AVCC); no start codes, no AUD | `AVCDecoderConfigurationRecord` (ISO 14496-15 `avcC`) |
//! | H.265 | NAL units, 4-byte length prefixes (HVCC) | `HEVCDecoderConfigurationRecord` (`hvcC`) |
//! | AV1 | the temporal unit's OBUs in low-overhead form (`obu_has_size_field` = 1), no temporal delimiter | `AV1CodecConfigurationRecord` (`av1C`) |
//! | VP8, VP9 | one compressed frame as the encoder produced it | VP9: `VPCodecConfigurationRecord` (`vpcC`) if known; VP8: none |
//! | AAC | one raw access unit: no ADTS header, no LATM | `AudioSpecificConfig` |
//! | Opus | one Opus packet | `OpusHead` body (`dOps` layout) if known |
//!
//! Parameter sets may also appear in band (an encoder repeating SPS/PPS before
//! each IDR); they change nothing for the kernel. A new decoder configuration
//! is announced as a new catalog version, not as a frame.

use bytes::Bytes;

/// Identifies a track within one stream (for example 1 for video, 2 for audio).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct TrackId(pub u32);

/// What kind of media a track carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "lowercase")
)]
pub enum MediaKind {
    /// Pictures.
    Video,
    /// Sound.
    Audio,
}

/// A codec the kernel knows the canonical payload form of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum Codec {
    /// H.264 / AVC.
    H264,
    /// H.265 / HEVC.
    H265,
    /// AV1.
    Av1,
    /// VP8.
    Vp8,
    /// VP9.
    Vp9,
    /// AAC (any profile).
    Aac,
    /// Opus.
    Opus,
}

impl Codec {
    /// Video or audio.
    pub const fn kind(self) -> MediaKind {
        match self {
            Codec::H264 | Codec::H265 | Codec::Av1 | Codec::Vp8 | Codec::Vp9 => MediaKind::Video,
            Codec::Aac | Codec::Opus => MediaKind::Audio,
        }
    }

    /// A short lowercase name, stable for logs and the API (`h264`, `aac`, …).
    pub const fn name(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::H265 => "h265",
            Codec::Av1 => "av1",
            Codec::Vp8 => "vp8",
            Codec::Vp9 => "vp9",
            Codec::Aac => "aac",
            Codec::Opus => "opus",
        }
    }
}

/// Per-frame flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FrameFlags(u8);

impl FrameFlags {
    /// A random-access point: decoding can start here (an IDR/IRAP picture; every audio frame).
    pub const KEYFRAME: FrameFlags = FrameFlags(1);
    /// The timeline does not continue from the previous frame of this track
    /// (set by the kernel's clock when it rebases a jump, or by ingest).
    pub const DISCONTINUITY: FrameFlags = FrameFlags(2);

    /// No flags.
    pub const fn empty() -> Self {
        FrameFlags(0)
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: FrameFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` with the flags of `other` added.
    pub const fn with(self, other: FrameFlags) -> Self {
        FrameFlags(self.0 | other.0)
    }
}

impl std::ops::BitOr for FrameFlags {
    type Output = FrameFlags;
    fn bitor(self, rhs: FrameFlags) -> FrameFlags {
        self.with(rhs)
    }
}

/// One access unit of one track.
///
/// Timestamps are integers in the track's own timescale (see
/// [`TrackInfo::timescale`](crate::TrackInfo::timescale)). Ingest hands the
/// kernel raw decode timestamps (wrapping as the protocol wraps them); the
/// kernel unwraps them and makes them monotonic per track before any
/// subscriber sees the frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The track this frame belongs to; it must be in the stream's catalog.
    pub track: TrackId,
    /// The codec of the payload (the same as the track's).
    pub codec: Codec,
    /// Keyframe and discontinuity flags.
    pub flags: FrameFlags,
    /// Presentation timestamp, track timescale.
    pub pts: i64,
    /// Decode timestamp, track timescale.
    pub dts: i64,
    /// The access unit in its canonical form (see the module docs). Shared by
    /// every subscriber: cloning a frame never copies the payload.
    pub payload: Bytes,
}

impl Frame {
    /// A video access unit.
    pub fn video(
        track: TrackId,
        codec: Codec,
        dts: i64,
        pts: i64,
        keyframe: bool,
        payload: Bytes,
    ) -> Self {
        let flags = if keyframe {
            FrameFlags::KEYFRAME
        } else {
            FrameFlags::empty()
        };
        Frame {
            track,
            codec,
            flags,
            pts,
            dts,
            payload,
        }
    }

    /// An audio access unit (always a random-access point).
    pub fn audio(track: TrackId, codec: Codec, pts: i64, payload: Bytes) -> Self {
        Frame {
            track,
            codec,
            flags: FrameFlags::KEYFRAME,
            pts,
            dts: pts,
            payload,
        }
    }

    /// Whether decoding can start at this frame.
    pub fn is_keyframe(&self) -> bool {
        self.flags.contains(FrameFlags::KEYFRAME)
    }

    /// Video or audio.
    pub fn kind(&self) -> MediaKind {
        self.codec.kind()
    }
}
