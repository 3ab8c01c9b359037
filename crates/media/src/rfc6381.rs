//! RFC 6381 codec strings (`avc1.64001f`, `hvc1.1.6.L93.B0`, `mp4a.40.2`) from a track's decoder configuration.
//!
//! These go in HLS `CODECS` attributes and DASH `@codecs`; browsers
//! (`MediaSource.isTypeSupported`) refuse a stream whose string they cannot
//! parse, so each one is built from the configuration record the track
//! carries (see [`tidewater_core::frame`]), never guessed from the codec name.
//!
//! ```
//! use bytes::Bytes;
//! use tidewater_core::{Codec, TrackId, TrackInfo};
//! use tidewater_media::rfc6381::codec_string;
//!
//! let avc = TrackInfo::video(TrackId(1), Codec::H264, 1280, 720)
//!     .with_config(Bytes::from_static(&[0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1]));
//! assert_eq!(codec_string(&avc).as_deref(), Some("avc1.64001f"));
//!
//! let aac = TrackInfo::audio(TrackId(2), Codec::Aac, 48_000, 2)
//!     .with_config(Bytes::from_static(&[0x11, 0x90]));
//! assert_eq!(codec_string(&aac).as_deref(), Some("mp4a.40.2"));
//! ```
//!
//! The sample-entry names follow what the fMP4 writer puts in the init
//! segment: `avc1` and `hvc1` (parameter sets in the sample entry), `av01`,
//! `vp09`, `vp08`, `mp4a`, `Opus` (written `opus`, as browsers expect).
// Reads network or file input: no indexing, unwrap, expect or panic
// outside tests (RELIABILITY.md, "Lints").
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::expect_used,
        clippy::unwrap_used,
        clippy::panic
    )
)]

use std::fmt::Write as _;

use tidewater_core::{Codec, TrackInfo};

/// The RFC 6381 codec string of a track, or `None` when its configuration is
/// missing or too short to say (a codec whose string needs no configuration,
/// Opus and VP8, always has one).
pub fn codec_string(info: &TrackInfo) -> Option<String> {
    let config = info.config.as_deref();
    match info.codec {
        Codec::H264 => avc(config?),
        Codec::H265 => hevc(config?),
        Codec::Av1 => av1(config?),
        Codec::Vp9 => Some(
            config
                .and_then(vp9)
                .unwrap_or_else(|| "vp09.00.10.08".into()),
        ),
        Codec::Vp8 => Some("vp8".into()),
        Codec::Aac => aac(config?),
        Codec::Opus => Some("opus".into()),
        // `Codec` is non-exhaustive: a codec added later has no string yet.
        _ => None,
    }
}

/// `avc1.PPCCLL`: profile_idc, constraint flags and level_idc, bytes 1..4 of
/// the `AVCDecoderConfigurationRecord`.
fn avc(c: &[u8]) -> Option<String> {
    let &[_, profile, constraints, level] = c.first_chunk::<4>()?;
    Some(format!("avc1.{profile:02x}{constraints:02x}{level:02x}"))
}

/// `hvc1.[A-C]<profile_idc>.<compat>.<L|H><level>[.<constraint byte>]*`
/// (ISO/IEC 14496-15 Annex E): the 32 compatibility flags in reverse bit
/// order as hex without leading zeros, the six constraint bytes in hex with
/// trailing zero bytes left out.
fn hevc(c: &[u8]) -> Option<String> {
    let c: &[u8; 13] = c.first_chunk()?;
    let profile_space = c[1] >> 6;
    let tier_high = c[1] & 0x20 != 0;
    let profile_idc = c[1] & 0x1f;
    let compat = u32::from_be_bytes([c[2], c[3], c[4], c[5]]).reverse_bits();
    let constraints = &c[6..12];
    let level = c[12];
    let mut s = String::from("hvc1.");
    if profile_space > 0 {
        s.push(char::from(b'A' + profile_space - 1));
    }
    let _ = write!(
        s,
        "{profile_idc}.{compat:X}.{}{level}",
        if tier_high { 'H' } else { 'L' }
    );
    let kept = constraints
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1);
    for b in constraints.iter().take(kept) {
        let _ = write!(s, ".{b:X}");
    }
    Some(s)
}

/// `av01.P.LLT.DD` from the `AV1CodecConfigurationRecord`: profile, level
/// index (two digits), tier (`M`/`H`), bit depth (two digits).
fn av1(c: &[u8]) -> Option<String> {
    let &[_, b0, b1] = c.first_chunk::<3>()?;
    let profile = b0 >> 5;
    let level = b0 & 0x1f;
    let tier = if b1 & 0x80 != 0 { 'H' } else { 'M' };
    let high_bitdepth = b1 & 0x40 != 0;
    let twelve_bit = b1 & 0x20 != 0;
    let depth = match (high_bitdepth, twelve_bit) {
        (true, true) => 12,
        (true, false) => 10,
        _ => 8,
    };
    Some(format!("av01.{profile}.{level:02}{tier}.{depth:02}"))
}

/// `vp09.PP.LL.DD` from a `VPCodecConfigurationRecord`, with or without the
/// `vpcC` full-box header (version 1, flags 0) in front.
fn vp9(c: &[u8]) -> Option<String> {
    // A bare record starts with the profile (0..=3) and a level of at least
    // 10; the full-box form starts with version 1 and three zero flag bytes.
    let record = match c.split_first_chunk::<4>() {
        Some((&[1, 0, 0, 0], rest)) if c.len() >= 12 => rest,
        _ => c,
    };
    let &[profile, level, bits] = record.first_chunk::<3>()?;
    let depth = bits >> 4;
    Some(format!("vp09.{profile:02}.{level:02}.{depth:02}"))
}

/// `mp4a.40.<audioObjectType>` from the AudioSpecificConfig (an escape value
/// 31 is followed by six more bits, plus 32).
fn aac(c: &[u8]) -> Option<String> {
    let first = *c.first()?;
    let mut aot = u32::from(first >> 3);
    if aot == 31 {
        let second = *c.get(1)?;
        aot = 32 + ((u32::from(first & 0x07) << 3) | u32::from(second >> 5));
    }
    if aot == 0 {
        return None;
    }
    Some(format!("mp4a.40.{aot}"))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tidewater_core::{Codec, TrackId, TrackInfo};

    use super::codec_string;

    fn hex(s: &str) -> Bytes {
        tidewater_tests::hex_bytes(s).into()
    }

    fn video(codec: Codec, config: &str) -> Option<String> {
        codec_string(&TrackInfo::video(TrackId(1), codec, 640, 360).with_config(hex(config)))
    }

    fn audio(codec: Codec, config: &str) -> Option<String> {
        codec_string(&TrackInfo::audio(TrackId(2), codec, 48_000, 2).with_config(hex(config)))
    }

    // The configuration records below were written by ffmpeg 5.1 (libx264,
    // libx265, libaom, libvpx-vp9, its AAC encoder) into MP4 files.

    #[test]
    fn h264_high_31() {
        assert_eq!(
            video(Codec::H264, "0164001fffe1001a6764001facd9").as_deref(),
            Some("avc1.64001f")
        );
        assert_eq!(
            video(Codec::H264, "01f4001effe1").as_deref(),
            Some("avc1.f4001e")
        );
        assert_eq!(video(Codec::H264, "0164").as_deref(), None);
    }

    #[test]
    fn h265_main_from_x265() {
        // x265 Main, level 2.1 (63), progressive_source + frame_only constraint flags.
        assert_eq!(
            video(
                Codec::H265,
                "0101600000009000000000003ff000fcfdf8f800000f04"
            )
            .as_deref(),
            Some("hvc1.1.6.L63.90")
        );
    }

    #[test]
    fn h265_spec_examples() {
        // ISO/IEC 14496-15 Annex E: Main profile, compatible with Main and Main10, level 3.1, one constraint byte.
        assert_eq!(
            video(Codec::H265, "010160000000b000000000005d").as_deref(),
            Some("hvc1.1.6.L93.B0")
        );
        // Main 10, high tier, level 4 (120), profile space 1.
        assert_eq!(
            video(Codec::H265, "0162200000009000000000007800").as_deref(),
            Some("hvc1.A2.4.H120.90")
        );
        assert_eq!(video(Codec::H265, "0101600000").as_deref(), None);
    }

    #[test]
    fn av1_from_libaom() {
        assert_eq!(
            video(Codec::Av1, "81010c000a0b0000000cc4ff6736be4010").as_deref(),
            Some("av01.0.01M.08")
        );
        // Profile 2, level 13, high tier, 12 bits.
        assert_eq!(
            video(Codec::Av1, "814de0").as_deref(),
            Some("av01.2.13H.12")
        );
    }

    #[test]
    fn vp9_box_and_record() {
        assert_eq!(
            video(Codec::Vp9, "010000000015820202020000").as_deref(),
            Some("vp09.00.21.08")
        );
        assert_eq!(
            video(Codec::Vp9, "0228a202020200").as_deref(),
            Some("vp09.02.40.10")
        );
        let bare = TrackInfo::video(TrackId(1), Codec::Vp9, 640, 360);
        assert_eq!(codec_string(&bare).as_deref(), Some("vp09.00.10.08"));
    }

    #[test]
    fn aac_object_types() {
        assert_eq!(audio(Codec::Aac, "1190").as_deref(), Some("mp4a.40.2"));
        // HE-AAC (SBR) as ffmpeg's aac_he profile writes it.
        assert_eq!(audio(Codec::Aac, "298856e5").as_deref(), Some("mp4a.40.5"));
        // Escape: 31 then 6 bits (0b000010) -> 34.
        assert_eq!(audio(Codec::Aac, "f840").as_deref(), Some("mp4a.40.34"));
        assert_eq!(audio(Codec::Aac, "f8").as_deref(), None);
        assert_eq!(audio(Codec::Aac, "").as_deref(), None);
        let no_config = TrackInfo::audio(TrackId(2), Codec::Aac, 48_000, 2);
        assert_eq!(codec_string(&no_config), None);
    }

    #[test]
    fn config_free_codecs() {
        let opus = TrackInfo::audio(TrackId(2), Codec::Opus, 48_000, 2);
        assert_eq!(codec_string(&opus).as_deref(), Some("opus"));
        let vp8 = TrackInfo::video(TrackId(1), Codec::Vp8, 640, 360);
        assert_eq!(codec_string(&vp8).as_deref(), Some("vp8"));
    }
}
