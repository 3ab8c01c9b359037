//! H.265: picture size and profile from an SPS, and the
//! `HEVCDecoderConfigurationRecord` (ISO 14496-15 `hvcC`) read and built.
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

/// NAL unit types of H.265 this crate acts on.
pub mod nal_type {
    /// First IRAP type (BLA_W_LP); IRAP pictures are 16..=23 (keyframes).
    pub const IRAP_FIRST: u8 = 16;
    /// Last IRAP type (reserved IRAP 23).
    pub const IRAP_LAST: u8 = 23;
    /// Video parameter set.
    pub const VPS: u8 = 32;
    /// Sequence parameter set.
    pub const SPS: u8 = 33;
    /// Picture parameter set.
    pub const PPS: u8 = 34;
    /// Access unit delimiter.
    pub const AUD: u8 = 35;
}

/// The NAL unit type of an H.265 NAL unit (bits 1..7 of its first byte).
pub fn h265_nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| (b >> 1) & 0x3f)
}

/// What the SPS says that `hvcC` repeats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HevcSps {
    /// `general_profile_space`, `general_tier_flag`, `general_profile_idc` as one byte.
    pub profile_byte: u8,
    /// `general_profile_compatibility_flags`.
    pub compatibility: u32,
    /// The 48 constraint-indicator bits.
    pub constraints: [u8; 6],
    /// `general_level_idc`.
    pub level: u8,
    /// `sps_max_sub_layers_minus1 + 1`.
    pub sub_layers: u8,
    /// `sps_temporal_id_nesting_flag`.
    pub temporal_id_nested: bool,
    /// `chroma_format_idc`.
    pub chroma_format: u8,
    /// `bit_depth_luma_minus8`.
    pub bit_depth_luma_minus8: u8,
    /// `bit_depth_chroma_minus8`.
    pub bit_depth_chroma_minus8: u8,
    /// Picture size after the conformance window.
    pub width: u32,
    /// Picture height after the conformance window.
    pub height: u32,
}

/// Parses the parts of an H.265 SPS NAL unit (with its 2-byte header) that
/// the catalog and `hvcC` need.
pub fn parse_h265_sps(sps: &[u8]) -> Option<HevcSps> {
    let data = rbsp(sps.get(2..)?);
    let mut r = Bits::new(&data);
    let _vps_id = r.bits(4)?;
    let max_sub_layers_minus1 = r.bits(3)?;
    let temporal_id_nested = r.bit()? == 1;
    // profile_tier_level(1, max_sub_layers_minus1)
    let profile_byte = r.bits(8)? as u8;
    let compatibility = r.bits(32)?;
    let mut constraints = [0u8; 6];
    for c in &mut constraints {
        *c = r.bits(8)? as u8;
    }
    let level = r.bits(8)? as u8;
    let mut present = [(false, false); 8];
    for p in present.iter_mut().take(max_sub_layers_minus1 as usize) {
        *p = (r.bit()? == 1, r.bit()? == 1);
    }
    if max_sub_layers_minus1 > 0 {
        for _ in max_sub_layers_minus1..8 {
            r.skip(2)?;
        }
    }
    for &(profile, level) in present.iter().take(max_sub_layers_minus1 as usize) {
        if profile {
            r.skip(88)?;
        }
        if level {
            r.skip(8)?;
        }
    }
    let _sps_id = r.ue()?;
    let chroma_format = r.ue()?;
    if chroma_format > 3 {
        return None;
    }
    if chroma_format == 3 {
        let _separate_colour_plane = r.bit()?;
    }
    let mut width = u64::from(r.ue()?);
    let mut height = u64::from(r.ue()?);
    if r.bit()? == 1 {
        let (sub_w, sub_h) = match chroma_format {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let (l, rt, t, b) = (
            u64::from(r.ue()?),
            u64::from(r.ue()?),
            u64::from(r.ue()?),
            u64::from(r.ue()?),
        );
        width = width.checked_sub(sub_w * (l + rt))?;
        height = height.checked_sub(sub_h * (t + b))?;
    }
    let bit_depth_luma_minus8 = u8::try_from(r.ue()?).ok()?;
    let bit_depth_chroma_minus8 = u8::try_from(r.ue()?).ok()?;
    Some(HevcSps {
        profile_byte,
        compatibility,
        constraints,
        level,
        sub_layers: max_sub_layers_minus1 as u8 + 1,
        temporal_id_nested,
        chroma_format: chroma_format as u8,
        bit_depth_luma_minus8,
        bit_depth_chroma_minus8,
        width: u32::try_from(width).ok()?,
        height: u32::try_from(height).ok()?,
    })
}

/// Picture size from an H.265 SPS NAL unit.
pub fn h265_sps_size(sps: &[u8]) -> Option<(u32, u32)> {
    parse_h265_sps(sps).map(|s| (s.width, s.height))
}

/// What an `HEVCDecoderConfigurationRecord` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HevcConfig {
    /// Bytes of each NAL unit length prefix in frames (1, 2 or 4).
    pub length_size: usize,
    /// Video parameter sets.
    pub vps: Vec<Bytes>,
    /// Sequence parameter sets.
    pub sps: Vec<Bytes>,
    /// Picture parameter sets.
    pub pps: Vec<Bytes>,
    /// Picture size from the first SPS, when it parses.
    pub size: Option<(u32, u32)>,
}

/// The byte of `hvcC` that holds `lengthSizeMinusOne` in its low two bits.
pub const HVCC_LENGTH_SIZE_INDEX: usize = 21;

/// The NAL length size of an `hvcC` record (1, 2 or 4).
pub fn hvcc_length_size(record: &[u8]) -> Option<usize> {
    let b = *record.get(HVCC_LENGTH_SIZE_INDEX)?;
    match usize::from(b & 3) + 1 {
        3 => None,
        n => Some(n),
    }
}

/// Parses an `hvcC` record.
pub fn parse_hvcc(record: &[u8]) -> Option<HevcConfig> {
    let length_size = hvcc_length_size(record)?;
    let arrays = *record.get(22)?;
    let mut rest = record.get(23..)?;
    let (mut vps, mut sps, mut pps) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..arrays {
        let (&[head, count_hi, count_lo], tail) = rest.split_first_chunk::<3>()?;
        let kind = head & 0x3f;
        let count = u16::from_be_bytes([count_hi, count_lo]);
        rest = tail;
        for _ in 0..count {
            let len = usize::from(u16::from_be_bytes(*rest.first_chunk()?));
            let nal = Bytes::copy_from_slice(rest.get(2..2 + len)?);
            rest = rest.get(2 + len..)?;
            match kind {
                nal_type::VPS => vps.push(nal),
                nal_type::SPS => sps.push(nal),
                nal_type::PPS => pps.push(nal),
                _ => {}
            }
        }
    }
    let size = sps.first().and_then(|s| h265_sps_size(s));
    Some(HevcConfig {
        length_size,
        vps,
        sps,
        pps,
        size,
    })
}

/// Builds an `hvcC` record (4-byte NAL lengths) from VPS, SPS and PPS NAL
/// units; the general profile fields come from the first SPS, which must parse.
pub fn build_hvcc(vps: &[&[u8]], sps: &[&[u8]], pps: &[&[u8]]) -> Option<Bytes> {
    let s = parse_h265_sps(sps.first()?)?;
    let mut out = BytesMut::with_capacity(
        64 + vps
            .iter()
            .chain(sps)
            .chain(pps)
            .map(|n| n.len() + 2)
            .sum::<usize>(),
    );
    out.put_u8(1);
    out.put_u8(s.profile_byte);
    out.put_u32(s.compatibility);
    out.put_slice(&s.constraints);
    out.put_u8(s.level);
    out.put_u16(0xf000); // min_spatial_segmentation_idc 0
    out.put_u8(0xfc); // parallelismType 0 (unknown)
    out.put_u8(0xfc | s.chroma_format);
    out.put_u8(0xf8 | (s.bit_depth_luma_minus8 & 7));
    out.put_u8(0xf8 | (s.bit_depth_chroma_minus8 & 7));
    out.put_u16(0); // avgFrameRate unknown
    out.put_u8(((s.sub_layers & 7) << 3) | (u8::from(s.temporal_id_nested) << 2) | 3);
    let arrays: Vec<(u8, &[&[u8]])> = [
        (nal_type::VPS, vps),
        (nal_type::SPS, sps),
        (nal_type::PPS, pps),
    ]
    .into_iter()
    .filter(|(_, l)| !l.is_empty())
    .collect();
    out.put_u8(arrays.len() as u8);
    for (kind, list) in arrays {
        out.put_u8(0x80 | kind);
        out.put_u16(u16::try_from(list.len()).ok()?);
        for n in list {
            out.put_u16(u16::try_from(n.len()).ok()?);
            out.put_slice(n);
        }
    }
    Some(out.freeze())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    // Parameter sets of libx265 (Format Range Extensions 4:4:4, 320x240, level 2) as ffmpeg writes them.
    pub(crate) const VPS: &[u8] = &[
        0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x04, 0x08, 0x00, 0x00, 0x03, 0x00, 0x9e, 0x08, 0x00,
        0x00, 0x03, 0x00, 0x00, 0x3c, 0x95, 0x98, 0x09,
    ];
    pub(crate) const SPS: &[u8] = &[
        0x42, 0x01, 0x01, 0x04, 0x08, 0x00, 0x00, 0x03, 0x00, 0x9e, 0x08, 0x00, 0x00, 0x03, 0x00,
        0x00, 0x3c, 0x90, 0x01, 0x41, 0x01, 0xe2, 0xcb, 0x2b, 0x34, 0x92, 0x65, 0x78, 0x0b, 0x70,
        0x20, 0x20, 0x00, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x06, 0x42,
    ];
    pub(crate) const PPS: &[u8] = &[0x44, 0x01, 0xc1, 0x72, 0x86, 0x0c, 0x46, 0x24];

    #[test]
    fn sps_parses() {
        let s = parse_h265_sps(SPS).expect("parses");
        assert_eq!((s.width, s.height), (320, 240));
        assert_eq!(s.profile_byte & 0x1f, 4);
        assert_eq!(s.level, 60);
        assert_eq!(s.chroma_format, 3);
        assert_eq!(parse_h265_sps(&SPS[..8]), None);
    }

    #[test]
    fn hvcc_round_trips() {
        let rec = build_hvcc(&[VPS], &[SPS], &[PPS]).expect("builds");
        assert_eq!(hvcc_length_size(&rec), Some(4));
        let c = parse_hvcc(&rec).expect("parses");
        assert_eq!(c.vps[0].as_ref(), VPS);
        assert_eq!(c.sps[0].as_ref(), SPS);
        assert_eq!(c.pps[0].as_ref(), PPS);
        assert_eq!(c.size, Some((320, 240)));
        assert_eq!(parse_hvcc(&rec[..rec.len() - 2]), None);
    }
}
