//! fMP4 / CMAF: init segments (`ftyp` + `moov`) and fragments (`moof` +
//! `mdat`), written with `mp4-atom`.
//!
//! Built for live packagers (LL-HLS parts, DASH segments and CMAF chunks):
//! a track's init segment is made once per catalog version, and each
//! fragment is one `moof` + `mdat` pair holding one run of samples per track.
//!
//! # Using it
//!
//! 1. Pick each track's fMP4 timescale with [`timescale_for`] (90 kHz for
//!    video, the sample rate for audio) and convert frame timestamps into it
//!    with [`to_track_time`] (frames carry the catalog's timescale, which for
//!    RTMP is 1 kHz).
//! 2. Write the init segment once with [`init_segment`]: one track for
//!    per-track (DASH) initialisation, or several for a muxed one. Each
//!    track's `track_ID` in the file is its [`TrackId`](tidewater_core::TrackId).
//! 3. For every fragment, collect the samples of each track as [`Sample`]s
//!    (decode time, duration, composition offset, keyframe, payload in the
//!    kernel's canonical form: length-prefixed NAL units, raw AAC, OBUs…) and
//!    call [`fragment`] with a strictly increasing sequence number (the
//!    `mfhd` sequence, starting at 1). The `tfdt` of each run is the decode
//!    time of its first sample; `trun` data offsets point into the `mdat`
//!    (`default-base-is-moof`), so fragments can be served or concatenated
//!    independently.
//!
//! A sample's duration is the distance to the next sample of its track:
//! a packager holds back the last frame of a track until the next one
//! arrives (or uses the previous duration when it must close early).
//!
//! ```
//! use bytes::Bytes;
//! use tidewater_core::{Codec, TrackId, TrackInfo};
//! use tidewater_media::fmp4::{self, Sample, TrackRun};
//!
//! # fn main() -> tidewater_media::Result<()> {
//! // avcC of a 1280x720 High profile stream (SPS and PPS abridged).
//! let avcc = Bytes::from_static(&[
//!     1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 2, 0x68, 0xee,
//! ]);
//! let video = TrackInfo::video(TrackId(1), Codec::H264, 1280, 720).with_config(avcc);
//! assert_eq!(fmp4::timescale_for(&video), 90_000);
//!
//! let init = fmp4::init_segment(&[&video])?;
//! assert_eq!(&init[4..8], b"ftyp");
//!
//! let samples = [
//!     Sample { dts: 0, duration: 3000, cts_offset: 0, keyframe: true, data: Bytes::from_static(&[0, 0, 0, 1, 0x65]) },
//!     Sample { dts: 3000, duration: 3000, cts_offset: 0, keyframe: false, data: Bytes::from_static(&[0, 0, 0, 1, 0x41]) },
//! ];
//! let chunk = fmp4::fragment(1, &[TrackRun { track: TrackId(1), samples: &samples }])?;
//! assert_eq!(&chunk[4..8], b"moof");
//! # Ok(())
//! # }
//! ```
//!
//! # Codecs
//!
//! | codec | sample entry | from the catalog's config |
//! |---|---|---|
//! | H.264 | `avc1` + `avcC` | `AVCDecoderConfigurationRecord` |
//! | H.265 | `hvc1` + `hvcC` | `HEVCDecoderConfigurationRecord` |
//! | AV1 | `av01` + `av1C` | `AV1CodecConfigurationRecord` |
//! | AAC | `mp4a` + `esds` | `AudioSpecificConfig` |
//! | Opus | `Opus` + `dOps` | `dOps` body, or an `OpusHead` packet; stereo 48 kHz without one |
//!
//! VP8 and VP9 are refused ([`Error::Unsupported`](crate::Error::Unsupported)):
//! no ingest produces them with the configuration record their sample entries need.
//! `avc1`/`hvc1` mean parameter sets come from the init segment; in-band
//! repeats in the samples are harmless.

mod fragment;
mod init;
mod sample_entry;

pub use fragment::{Sample, TrackRun, fragment};
pub use init::{init_segment, timescale_for, to_track_time};

#[cfg(test)]
mod tests;
