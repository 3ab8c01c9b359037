//! VP8 and VP9 frame headers: whether a frame is a keyframe, its size, and
//! the `VPCodecConfigurationRecord` (the `vpcC` box of the VP codec
//! ISO-BMFF binding, <https://www.webmproject.org/vp9/mp4/>) a keyframe
//! implies. VP8 (RFC 6386 §9.1) and VP9 (the VP9 bitstream specification,
//! §6.2 "uncompressed header") carry no separate decoder configuration, so
//! the record is derived from the first keyframe.
// Reads network input: no indexing, unwrap, expect or panic outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::expect_used,
        clippy::unwrap_used,
        clippy::panic
    )
)]

use bytes::Bytes;

use super::bits::Bits;

/// What a VP8 or VP9 keyframe says of its stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VpxKeyframe {
    /// Picture width in pixels.
    pub width: u32,
    /// Picture height in pixels.
    pub height: u32,
    /// The `vpcC` payload: version 1, flags 0, then the record (the form
    /// enhanced RTMP carries and the catalog keeps).
    pub vpcc: Bytes,
}

/// Whether a VP8 frame is a keyframe: bit 0 of its frame tag is 0.
pub fn vp8_is_keyframe(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 1 == 0)
}

/// The size and `vpcC` of a VP8 keyframe (`None` for an inter frame or a
/// malformed one): the 3-byte frame tag (its version is the profile), the
/// start code `9d 01 2a`, then 14-bit width and height.
pub fn vp8_keyframe(frame: &[u8]) -> Option<VpxKeyframe> {
    let &[tag, _, _, s0, s1, s2, w0, w1, h0, h1] = frame.first_chunk::<10>()?;
    if tag & 1 != 0 || [s0, s1, s2] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let profile = (tag >> 1) & 7;
    let width = u32::from(u16::from_le_bytes([w0, w1]) & 0x3fff);
    let height = u32::from(u16::from_le_bytes([h0, h1]) & 0x3fff);
    // VP8 is 8-bit 4:2:0, BT.601 (RFC 6386 §9.2, color space 0).
    Some(VpxKeyframe {
        width,
        height,
        vpcc: record(profile, level(width, height), 8, 1, false, 6),
    })
}

/// Whether a VP9 frame (or superframe: its first frame decides) is a
/// keyframe: `frame_type` 0 in the uncompressed header, not a shown
/// existing frame.
pub fn vp9_is_keyframe(frame: &[u8]) -> bool {
    vp9_header(frame).is_some_and(|h| h.keyframe)
}

/// The size and `vpcC` of a VP9 keyframe (`None` for an inter frame or a
/// malformed one), from the uncompressed header: profile, bit depth,
/// colour space and range, subsampling, frame size.
pub fn vp9_keyframe(frame: &[u8]) -> Option<VpxKeyframe> {
    let h = vp9_header(frame)?;
    if !h.keyframe {
        return None;
    }
    let mut b = h.rest;
    let bit_depth = if h.profile >= 2 {
        if b.bit()? == 1 { 12 } else { 10 }
    } else {
        8
    };
    let color_space = b.bits(3)?;
    // CS_RGB is 7.
    let (full_range, chroma) = if color_space != 7 {
        let full = b.bit()? == 1;
        let chroma = if h.profile == 1 || h.profile == 3 {
            let (x, y) = (b.bit()?, b.bit()?);
            b.skip(1)?;
            match (x, y) {
                (1, 1) => 1,
                (1, 0) => 2,
                _ => 3,
            }
        } else {
            // 4:2:0; the record's "colocated with luma" value, as ffmpeg writes.
            1
        };
        (full, chroma)
    } else {
        if h.profile == 1 || h.profile == 3 {
            b.skip(1)?;
        }
        (true, 3)
    };
    let width = b.bits(16)? + 1;
    let height = b.bits(16)? + 1;
    // VP9 colour space → ISO/IEC 23091-2 matrix coefficients.
    let matrix = match color_space {
        1 | 3 => 6,
        2 => 1,
        4 => 7,
        5 => 9,
        7 => 0,
        _ => 2,
    };
    Some(VpxKeyframe {
        width,
        height,
        vpcc: record(
            h.profile,
            level(width, height),
            bit_depth,
            chroma,
            full_range,
            matrix,
        ),
    })
}

struct Vp9Header<'a> {
    profile: u8,
    keyframe: bool,
    /// The reader after the frame sync code of a keyframe.
    rest: Bits<'a>,
}

fn vp9_header(frame: &[u8]) -> Option<Vp9Header<'_>> {
    let mut b = Bits::new(frame);
    if b.bits(2)? != 2 {
        return None;
    }
    let low = b.bit()?;
    let high = b.bit()?;
    let profile = (high << 1 | low) as u8;
    if profile == 3 {
        b.skip(1)?;
    }
    if b.bit()? == 1 {
        // show_existing_frame: a repeat of a decoded frame, never a keyframe.
        return Some(Vp9Header {
            profile,
            keyframe: false,
            rest: b,
        });
    }
    let keyframe = b.bit()? == 0;
    // show_frame, error_resilient_mode.
    b.skip(2)?;
    if keyframe && b.bits(24)? != 0x49_83_42 {
        return None;
    }
    Some(Vp9Header {
        profile,
        keyframe,
        rest: b,
    })
}

/// The smallest VP9 level (Annex A) whose picture size holds the frame;
/// the record needs one and the frame rate is not known here.
fn level(width: u32, height: u32) -> u8 {
    let size = u64::from(width) * u64::from(height);
    const LEVELS: [(u64, u8); 8] = [
        (36_864, 10),
        (73_728, 11),
        (122_880, 20),
        (245_760, 21),
        (552_960, 30),
        (983_040, 31),
        (2_228_224, 40),
        (8_912_896, 50),
    ];
    LEVELS
        .iter()
        .find(|(max, _)| size <= *max)
        .map_or(60, |(_, l)| *l)
}

/// A `vpcC` payload (version 1, flags 0) with unspecified primaries and
/// transfer unless the matrix says BT.709.
fn record(profile: u8, level: u8, bit_depth: u8, chroma: u8, full: bool, matrix: u8) -> Bytes {
    let described = if matrix == 1 { 1 } else { 2 };
    Bytes::from(vec![
        1,
        0,
        0,
        0,
        profile,
        level,
        (bit_depth << 4) | (chroma << 1) | u8::from(full),
        described,
        described,
        matrix,
        0,
        0,
    ])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn vp8_keyframe_header() {
        // Frame tag: keyframe, version 0, shown; start code; 640 × 360.
        let frame = [
            0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01, 0xff,
        ];
        assert!(vp8_is_keyframe(&frame));
        let k = vp8_keyframe(&frame).expect("a keyframe");
        assert_eq!((k.width, k.height), (640, 360));
        assert_eq!(&k.vpcc[..6], &[1, 0, 0, 0, 0, 21]);
        assert!(!vp8_is_keyframe(&[0x11, 0, 0]));
        assert_eq!(vp8_keyframe(&[0x11, 0, 0, 0x9d, 1, 0x2a, 0, 0, 0, 0]), None);
        assert_eq!(vp8_keyframe(&frame[..9]), None);
    }

    #[test]
    fn vp9_keyframe_header() {
        // frame_marker 2, profile 0, show_existing 0, key, shown, not
        // error resilient; sync code; BT.601 limited range; 640 × 360.
        let mut bits = String::from("10 0 0 0 0 1 0");
        bits += " 010010011000001101000010";
        bits += " 001 0";
        bits += &format!(" {:016b} {:016b}", 639, 359);
        let frame = pack(&bits);
        assert!(vp9_is_keyframe(&frame));
        let k = vp9_keyframe(&frame).expect("a keyframe");
        assert_eq!((k.width, k.height), (640, 360));
        assert_eq!(&k.vpcc[..], &[1, 0, 0, 0, 0, 21, 0x82, 2, 2, 6, 0, 0]);
        assert_eq!(
            crate::rfc6381::codec_string(
                &tidewater_core::TrackInfo::video(
                    tidewater_core::TrackId(1),
                    tidewater_core::Codec::Vp9,
                    640,
                    360
                )
                .with_config(k.vpcc.clone())
            )
            .as_deref(),
            Some("vp09.00.21.08")
        );
        // An inter frame: frame_type 1.
        let inter = pack("10 0 0 0 1 1 0 00000000");
        assert!(!vp9_is_keyframe(&inter));
        assert_eq!(vp9_keyframe(&inter), None);
        // Profile 2 (10 bit).
        let mut bits = String::from("10 0 1 0 0 1 0 010010011000001101000010 0 010 1");
        bits += &format!(" {:016b} {:016b}", 1279, 719);
        let k = vp9_keyframe(&pack(&bits)).expect("a keyframe");
        assert_eq!((k.vpcc[4], k.vpcc[6] >> 4, k.vpcc[6] & 1), (2, 10, 1));
        assert_eq!(vp9_keyframe(&[0x82]), None);
        assert!(!vp9_is_keyframe(&[]));
    }

    /// Bits written as '0'/'1' (spaces ignored), padded with zeros.
    pub(crate) fn pack(bits: &str) -> Vec<u8> {
        let bits: Vec<u8> = bits
            .bytes()
            .filter(|b| *b != b' ')
            .map(|b| b - b'0')
            .collect();
        bits.chunks(8)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u8, |acc, (i, b)| acc | (b << (7 - i)))
            })
            .collect()
    }
}
