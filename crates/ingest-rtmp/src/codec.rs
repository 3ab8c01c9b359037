//! Just enough codec parameter parsing for the catalog: picture size from an
//! H.264 SPS, sample rate and channels from an AAC AudioSpecificConfig, and
//! the NAL length size of an `avcC`/`hvcC` record.

use bytes::{BufMut, Bytes, BytesMut};

/// Reads bits MSB first out of an RBSP (emulation prevention already removed).
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(bit))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Some(v)
    }

    /// Unsigned Exp-Golomb.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.bits(zeros)?;
        Some(((1u64 << zeros) - 1 + u64::from(rest)).min(u64::from(u32::MAX)) as u32)
    }

    /// Signed Exp-Golomb.
    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

/// Removes emulation prevention bytes (00 00 03 → 00 00).
fn rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// Coded picture size (after cropping) from an H.264 SPS NAL unit (with its header byte).
pub fn h264_sps_size(sps: &[u8]) -> Option<(u32, u32)> {
    let data = rbsp(sps.get(1..)?);
    let mut r = Bits {
        data: &data,
        pos: 0,
    };
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
    /// Bytes of each NAL unit length prefix in frames (1, 2 or 4).
    pub length_size: usize,
    /// Picture size from the first SPS, when it parses.
    pub size: Option<(u32, u32)>,
}

/// Parses an `avcC` record.
pub fn parse_avcc(record: &[u8]) -> Option<AvcConfig> {
    if record.len() < 7 || record[0] != 1 {
        return None;
    }
    let length_size = usize::from(record[4] & 3) + 1;
    if length_size == 3 {
        return None;
    }
    let num_sps = usize::from(record[5] & 0x1f);
    let size = match (num_sps, record.get(6..8)) {
        (1.., Some(l)) => {
            let len = usize::from(u16::from_be_bytes([l[0], l[1]]));
            record.get(8..8 + len).and_then(h264_sps_size)
        }
        _ => None,
    };
    Some(AvcConfig { length_size, size })
}

/// The NAL length size of an `hvcC` record (1, 2 or 4).
pub fn hvcc_length_size(record: &[u8]) -> Option<usize> {
    let b = *record.get(21)?;
    match usize::from(b & 3) + 1 {
        3 => None,
        n => Some(n),
    }
}

/// Rewrites a record's length-size field to 4 bytes (the canonical form).
/// `index` is the byte holding `lengthSizeMinusOne` in its low two bits.
pub fn with_four_byte_lengths(record: &Bytes, index: usize) -> Bytes {
    let mut v = record.to_vec();
    if let Some(b) = v.get_mut(index) {
        *b |= 3;
    }
    Bytes::from(v)
}

/// Re-prefixes NAL units from `length_size`-byte lengths to 4-byte lengths.
pub fn to_four_byte_lengths(payload: &[u8], length_size: usize) -> Option<Bytes> {
    let mut out = BytesMut::with_capacity(payload.len() + payload.len() / 8 + 16);
    let mut rest = payload;
    while !rest.is_empty() {
        let head = rest.get(..length_size)?;
        let len = head.iter().fold(0usize, |a, &b| (a << 8) | usize::from(b));
        let nal = rest.get(length_size..length_size + len)?;
        out.put_u32(len as u32);
        out.put_slice(nal);
        rest = &rest[length_size + len..];
    }
    Some(out.freeze())
}

/// Sample rate and channel count from an AAC AudioSpecificConfig.
pub fn parse_asc(asc: &[u8]) -> Option<(u32, u8)> {
    const RATES: [u32; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    let mut r = Bits { data: asc, pos: 0 };
    let mut object_type = r.bits(5)?;
    if object_type == 31 {
        object_type = 32 + r.bits(6)?;
    }
    let _ = object_type;
    let index = r.bits(4)?;
    let rate = if index == 15 {
        r.bits(24)?
    } else {
        *RATES.get(index as usize)?
    };
    let channels = r.bits(4)?;
    // Channel configuration 7 is 8 channels (7.1); 0 means "in the PCE".
    let channels = match channels {
        7 => 8,
        c => c as u8,
    };
    Some((rate, channels))
}

/// An AudioSpecificConfig for AAC-LC at this rate and channel count.
pub fn make_asc(sample_rate: u32, channels: u8) -> Option<[u8; 2]> {
    const RATES: [u32; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    let index = RATES.iter().position(|&r| r == sample_rate)? as u16;
    let v: u16 = (2 << 11) | (index << 7) | (u16::from(channels & 0xf) << 3);
    Some(v.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    // SPS of x264 320x240 High profile (as ffmpeg's libx264 writes it).
    const SPS_320X240: [u8; 25] = [
        0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60,
    ];

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
    fn avcc_and_asc() {
        let mut avcc = vec![1, 0x64, 0, 0x0d, 0xff, 0xe1, 0, SPS_320X240.len() as u8];
        avcc.extend_from_slice(&SPS_320X240);
        avcc.extend_from_slice(&[1, 0, 4, 0x68, 0xeb, 0xe3, 0xcb]);
        assert_eq!(
            parse_avcc(&avcc),
            Some(AvcConfig {
                length_size: 4,
                size: Some((320, 240))
            })
        );
        assert_eq!(parse_asc(&[0x12, 0x10]), Some((44100, 2)));
        assert_eq!(parse_asc(&[0x11, 0x90]), Some((48000, 2)));
        assert_eq!(make_asc(44100, 2), Some([0x12, 0x10]));
        assert_eq!(parse_asc(&[0x17]), None);
    }

    #[test]
    fn two_byte_lengths_become_four() {
        let p = [0, 2, 0xaa, 0xbb, 0, 1, 0xcc];
        assert_eq!(
            to_four_byte_lengths(&p, 2).as_deref(),
            Some(&[0, 0, 0, 2, 0xaa, 0xbb, 0, 0, 0, 1, 0xcc][..])
        );
        assert_eq!(to_four_byte_lengths(&[0, 5, 1], 2), None);
    }
}
