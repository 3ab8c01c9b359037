//! H.264: picture size from an SPS, and the `AVCDecoderConfigurationRecord`
//! (ISO 14496-15 `avcC`) read and built.
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

use bytes::{BufMut, Bytes, BytesMut};

use super::bits::{Bits, rbsp};

/// NAL unit types of H.264 this crate acts on.
pub mod nal_type {
    /// Coded slice of a non-IDR picture.
    pub const SLICE: u8 = 1;
    /// Coded slice of an IDR picture (a keyframe).
    pub const IDR: u8 = 5;
    /// Supplemental enhancement information.
    pub const SEI: u8 = 6;
    /// Sequence parameter set.
    pub const SPS: u8 = 7;
    /// Picture parameter set.
    pub const PPS: u8 = 8;
    /// Access unit delimiter.
    pub const AUD: u8 = 9;
}

/// The NAL unit type of an H.264 NAL unit (its first byte's low five bits).
pub fn h264_nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b & 0x1f)
}

/// Coded picture size (after cropping) from an H.264 SPS NAL unit (with its header byte).
pub fn h264_sps_size(sps: &[u8]) -> Option<(u32, u32)> {
    let data = rbsp(sps.get(1..)?);
    let mut r = Bits::new(&data);
    let profile_idc = r.bits(8)?;
    let _constraints = r.bits(8)?;
    let _level = r.bits(8)?;
    let _sps_id = r.ue()?;
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = 0;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.bit()?;
        }
        let _bit_depth_luma = r.ue()?;
        let _bit_depth_chroma = r.ue()?;
        let _qpprime = r.bit()?;
        if r.bit()? == 1 {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256) % 256;
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    let _log2_max_frame_num = r.ue()?;
    match r.ue()? {
        0 => {
            let _log2_max_poc_lsb = r.ue()?;
        }
        1 => {
            let _delta_always_zero = r.bit()?;
            let _offset_non_ref = r.se()?;
            let _offset_top_bottom = r.se()?;
            let cycle = r.ue()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                let _ = r.se()?;
            }
        }
        _ => {}
    }
    let _max_refs = r.ue()?;
    let _gaps = r.bit()?;
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = u64::from(r.bit()?);
    if frame_mbs_only == 0 {
        let _mb_adaptive = r.bit()?;
    }
    let _direct_8x8 = r.bit()?;
    let mut width = width_mbs * 16;
    let mut height = (2 - frame_mbs_only) * height_units * 16;
    if r.bit()? == 1 {
        let (left, right, top, bottom) = (
            u64::from(r.ue()?),
            u64::from(r.ue()?),
            u64::from(r.ue()?),
            u64::from(r.ue()?),
        );
        let (crop_x, crop_y) = match (chroma_format_idc, separate_colour_plane) {
            (0, _) | (3, 1) => (1, 2 - frame_mbs_only),
            (1, _) => (2, 2 * (2 - frame_mbs_only)),
            (2, _) => (2, 2 - frame_mbs_only),
            _ => (1, 2 - frame_mbs_only),
        };
        width = width.checked_sub(crop_x * (left + right))?;
        height = height.checked_sub(crop_y * (top + bottom))?;
    }
    Some((u32::try_from(width).ok()?, u32::try_from(height).ok()?))
}

/// What an `AVCDecoderConfigurationRecord` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvcConfig {
    /// `AVCProfileIndication`.
    pub profile: u8,
    /// `profile_compatibility`.
    pub compatibility: u8,
    /// `AVCLevelIndication`.
    pub level: u8,
    /// Bytes of each NAL unit length prefix in frames (1, 2 or 4).
    pub length_size: usize,
    /// The sequence parameter sets, each a NAL unit with its header byte.
    pub sps: Vec<Bytes>,
    /// The picture parameter sets.
    pub pps: Vec<Bytes>,
    /// Picture size from the first SPS, when it parses.
    pub size: Option<(u32, u32)>,
}

/// Parses an `avcC` record.
pub fn parse_avcc(record: &[u8]) -> Option<AvcConfig> {
    let head: &[u8; 5] = record.first_chunk()?;
    if record.len() < 7 || head[0] != 1 {
        return None;
    }
    let length_size = usize::from(head[4] & 3) + 1;
    if length_size == 3 {
        return None;
    }
    let mut rest = record.get(5..)?;
    let mut lists = [Vec::new(), Vec::new()];
    for (i, list) in lists.iter_mut().enumerate() {
        let (&count, tail) = rest.split_first()?;
        let count = if i == 0 { count & 0x1f } else { count };
        rest = tail;
        for _ in 0..count {
            let len = usize::from(u16::from_be_bytes(*rest.first_chunk()?));
            list.push(Bytes::copy_from_slice(rest.get(2..2 + len)?));
            rest = rest.get(2 + len..)?;
        }
    }
    let [sps, pps] = lists;
    let size = sps.first().and_then(|s| h264_sps_size(s));
    Some(AvcConfig {
        profile: head[1],
        compatibility: head[2],
        level: head[3],
        length_size,
        sps,
        pps,
        size,
    })
}

/// Builds an `avcC` record (4-byte NAL lengths) from SPS and PPS NAL units;
/// profile, compatibility and level come from the first SPS. `None` without
/// an SPS or with a parameter set longer than 65535 bytes.
pub fn build_avcc(sps: &[&[u8]], pps: &[&[u8]]) -> Option<Bytes> {
    let first = sps.first()?;
    let head: &[u8; 3] = first.get(1..)?.first_chunk()?;
    if sps.len() > 31 || pps.len() > 255 {
        return None;
    }
    let mut out =
        BytesMut::with_capacity(16 + sps.iter().chain(pps).map(|s| s.len() + 2).sum::<usize>());
    out.put_u8(1);
    out.put_slice(head);
    out.put_u8(0xff);
    out.put_u8(0xe0 | sps.len() as u8);
    for s in sps {
        out.put_u16(u16::try_from(s.len()).ok()?);
        out.put_slice(s);
    }
    out.put_u8(pps.len() as u8);
    for p in pps {
        out.put_u16(u16::try_from(p.len()).ok()?);
        out.put_slice(p);
    }
    // High profiles carry chroma format and bit depths after the lists.
    if matches!(head[0], 100 | 110 | 122 | 144) {
        out.put_slice(&[0xfd, 0xf8, 0xf8, 0]);
    }
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    // SPS of x264 320x240 High profile (as ffmpeg's libx264 writes it).
    pub(crate) const SPS_320X240: [u8; 25] = [
        0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60,
    ];
    const PPS: [u8; 5] = [0x68, 0xeb, 0xe3, 0xcb, 0x22];

    #[test]
    fn sps_size() {
        assert_eq!(h264_sps_size(&SPS_320X240), Some((320, 240)));
        // Constrained baseline 1280x720, as libx264 writes it.
        let sps = [
            0x67, 0x42, 0xc0, 0x1f, 0xd9, 0x00, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
            0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x83, 0x24, 0x80,
        ];
        assert_eq!(h264_sps_size(&sps), Some((1280, 720)));
        // Main 1920x1080: 1088 coded lines cropped to 1080.
        let sps = [
            0x67, 0x4d, 0x40, 0x28, 0xec, 0xa0, 0x3c, 0x01, 0x13, 0xf2, 0xe0, 0x22, 0x00, 0x00,
            0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x64, 0x1e, 0x30, 0x63, 0x2c,
        ];
        assert_eq!(h264_sps_size(&sps), Some((1920, 1080)));
        assert_eq!(h264_sps_size(&[0x67]), None);
        assert_eq!(h264_sps_size(&[0x67, 0x64, 0, 0, 0, 0]), None);
    }

    #[test]
    fn avcc_parse() {
        let mut avcc = vec![1, 0x64, 0, 0x0d, 0xff, 0xe1, 0, SPS_320X240.len() as u8];
        avcc.extend_from_slice(&SPS_320X240);
        avcc.extend_from_slice(&[1, 0, 4, 0x68, 0xeb, 0xe3, 0xcb]);
        let c = parse_avcc(&avcc).expect("parses");
        assert_eq!(c.length_size, 4);
        assert_eq!(c.size, Some((320, 240)));
        assert_eq!((c.profile, c.compatibility, c.level), (0x64, 0, 0x0d));
        assert_eq!(c.sps, vec![Bytes::copy_from_slice(&SPS_320X240)]);
        assert_eq!(c.pps, vec![Bytes::from_static(&[0x68, 0xeb, 0xe3, 0xcb])]);
        assert_eq!(parse_avcc(&avcc[..avcc.len() - 1]), None);
        assert_eq!(parse_avcc(&[1, 2, 3]), None);
    }

    #[test]
    fn avcc_build_round_trips() {
        let rec = build_avcc(&[&SPS_320X240], &[&PPS]).expect("builds");
        let c = parse_avcc(&rec).expect("parses");
        assert_eq!((c.profile, c.level, c.length_size), (0x64, 0x0d, 4));
        assert_eq!(c.sps[0].as_ref(), &SPS_320X240);
        assert_eq!(c.pps[0].as_ref(), &PPS);
        assert_eq!(build_avcc(&[], &[&PPS]), None);
    }
}
