//! AV1 open bitstream units (OBUs, AV1 specification §5.3) in the low
//! overhead form (every OBU with its size field) that ISO-BMFF `av01`
//! samples use, and the `AV1CodecConfigurationRecord` (`av1C`, the AV1
//! ISO-BMFF binding §2.3) built from a sequence header OBU (§5.5).
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

use bytes::{BufMut, Bytes, BytesMut};

use super::bits::Bits;

/// OBU types (AV1 specification §6.2.2).
pub mod obu_type {
    /// Sequence header.
    pub const SEQUENCE_HEADER: u8 = 1;
    /// Temporal delimiter (never stored in ISO-BMFF samples).
    pub const TEMPORAL_DELIMITER: u8 = 2;
    /// Frame header.
    pub const FRAME_HEADER: u8 = 3;
    /// Frame (header and tile group).
    pub const FRAME: u8 = 6;
    /// Tile list (large scale tile decoding only).
    pub const TILE_LIST: u8 = 8;
}

/// The type of an OBU from its first header byte.
pub fn obu_type_of(header: u8) -> u8 {
    (header >> 3) & 0x0f
}

/// Reads an unsigned LEB128 value (at most 8 bytes, §4.10.5); the value
/// and the bytes it took.
pub fn read_leb128(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, b) in data.iter().take(8).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Appends `value` as unsigned LEB128.
pub fn write_leb128(out: &mut BytesMut, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.put_u8(byte);
            return;
        }
        out.put_u8(byte | 0x80);
    }
}

/// One OBU in the low overhead form: `obu` is a complete OBU as RTP
/// carries it (header, optional extension, optional size field, payload);
/// it is appended to `out` with `obu_has_size_field` set. `None` when it
/// is malformed.
pub fn append_sized_obu(out: &mut BytesMut, obu: &[u8]) -> Option<()> {
    let (header, payload, _) = split_obu(obu)?;
    out.put_u8(header.first()? | 0x02);
    out.put_slice(header.get(1..)?);
    write_leb128(out, payload.len() as u64);
    out.put_slice(payload);
    Some(())
}

/// An OBU's header bytes (one or two), its payload (bounded by its size
/// field when it has one) and the bytes the whole OBU takes.
fn split_obu(obu: &[u8]) -> Option<(&[u8], &[u8], usize)> {
    let first = *obu.first()?;
    if first & 0x80 != 0 {
        return None;
    }
    let header_len = if first & 0x04 != 0 { 2 } else { 1 };
    let (header, rest) = obu.split_at_checked(header_len)?;
    if first & 0x02 == 0 {
        return Some((header, rest, obu.len()));
    }
    let (size, used) = read_leb128(rest)?;
    let size = usize::try_from(size).ok()?;
    let payload = rest.get(used..)?.get(..size)?;
    Some((header, payload, header_len + used + size))
}

/// The OBUs of a low overhead temporal unit: (type, whole OBU, payload);
/// ends at the first malformed one.
pub fn sized_obus(mut data: &[u8]) -> impl Iterator<Item = (u8, &[u8], &[u8])> {
    std::iter::from_fn(move || {
        let first = *data.first()?;
        if first & 0x02 == 0 {
            return None;
        }
        let (_, payload, len) = split_obu(data)?;
        let (obu, rest) = data.split_at_checked(len)?;
        data = rest;
        Some((obu_type_of(first), obu, payload))
    })
}

/// Whether a low overhead temporal unit starts a coded video sequence: it
/// has a sequence header and its first frame (header) is a shown key frame.
pub fn av1_is_keyframe(temporal_unit: &[u8]) -> bool {
    let mut sequence_header = false;
    for (kind, _, payload) in sized_obus(temporal_unit) {
        match kind {
            obu_type::SEQUENCE_HEADER => sequence_header = true,
            obu_type::FRAME_HEADER | obu_type::FRAME => {
                let mut b = Bits::new(payload);
                // show_existing_frame 0, frame_type KEY_FRAME (0); streams
                // with a reduced still picture header are not expected here.
                return sequence_header && b.bit() == Some(0) && b.bits(2) == Some(0);
            }
            _ => {}
        }
    }
    false
}

/// What a sequence header says of its stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Av1Sequence {
    /// The largest frame width in pixels.
    pub width: u32,
    /// The largest frame height in pixels.
    pub height: u32,
    /// The `av1C` payload with the sequence header as its config OBU.
    pub av1c: Bytes,
}

/// The [`Av1Sequence`] of the first sequence header OBU of a low overhead
/// temporal unit.
pub fn av1_sequence(temporal_unit: &[u8]) -> Option<Av1Sequence> {
    let (_, obu, payload) =
        sized_obus(temporal_unit).find(|(kind, _, _)| *kind == obu_type::SEQUENCE_HEADER)?;
    let mut b = Bits::new(payload);
    let profile = b.bits(3)? as u8;
    b.skip(1)?; // still_picture
    let reduced = b.bit()? == 1;
    let (level, tier);
    if reduced {
        level = b.bits(5)? as u8;
        tier = 0;
    } else {
        let timing_info = b.bit()? == 1;
        let mut decoder_model = false;
        let mut buffer_delay_bits = 0;
        if timing_info {
            b.skip(64)?;
            if b.bit()? == 1 {
                uvlc(&mut b)?;
            }
            decoder_model = b.bit()? == 1;
            if decoder_model {
                buffer_delay_bits = b.bits(5)? as usize + 1;
                b.skip(32 + 5 + 5)?;
            }
        }
        let initial_display_delay = b.bit()? == 1;
        let points = b.bits(5)? + 1;
        let mut first = None;
        for _ in 0..points {
            b.skip(12)?;
            let l = b.bits(5)? as u8;
            let t = if l > 7 { b.bit()? as u8 } else { 0 };
            first.get_or_insert((l, t));
            if decoder_model && b.bit()? == 1 {
                b.skip(2 * buffer_delay_bits + 1)?;
            }
            if initial_display_delay && b.bit()? == 1 {
                b.skip(4)?;
            }
        }
        (level, tier) = first?;
    }
    let width_bits = b.bits(4)? + 1;
    let height_bits = b.bits(4)? + 1;
    let width = b.bits(width_bits)? + 1;
    let height = b.bits(height_bits)? + 1;
    if !reduced && b.bit()? == 1 {
        b.skip(7)?; // frame id lengths
    }
    b.skip(3)?; // 128×128 superblock, filter intra, intra edge filter
    if !reduced {
        b.skip(4)?; // interintra, masked compound, warped motion, dual filter
        let order_hint = b.bit()? == 1;
        if order_hint {
            b.skip(2)?; // jnt_comp, ref_frame_mvs
        }
        let force_screen_content = if b.bit()? == 1 { 2 } else { b.bit()? };
        if force_screen_content > 0 && b.bit()? == 0 {
            b.skip(1)?; // seq_force_integer_mv
        }
        if order_hint {
            b.skip(3)?;
        }
    }
    b.skip(3)?; // superres, cdef, restoration
    // color_config (§5.5.2).
    let high_bitdepth = b.bit()? == 1;
    let twelve_bit = profile == 2 && high_bitdepth && b.bit()? == 1;
    let mono = profile != 1 && b.bit()? == 1;
    let (mut cp, mut tc, mut mc) = (2, 2, 2);
    if b.bit()? == 1 {
        cp = b.bits(8)?;
        tc = b.bits(8)?;
        mc = b.bits(8)?;
    }
    let (sx, sy, position) = if mono {
        (1, 1, 0)
    } else if cp == 1 && tc == 13 && mc == 0 {
        (0, 0, 0)
    } else {
        b.skip(1)?; // color_range
        let (sx, sy) = match profile {
            0 => (1, 1),
            1 => (0, 0),
            _ if twelve_bit => {
                let sx = b.bit()?;
                (sx, if sx == 1 { b.bit()? } else { 0 })
            }
            _ => (1, 0),
        };
        let position = if sx == 1 && sy == 1 { b.bits(2)? } else { 0 };
        (sx, sy, position)
    };
    let mut av1c = BytesMut::with_capacity(4 + obu.len());
    av1c.put_u8(0x81);
    av1c.put_u8((profile << 5) | (level & 0x1f));
    av1c.put_u8(
        (tier << 7)
            | (u8::from(high_bitdepth) << 6)
            | (u8::from(twelve_bit) << 5)
            | (u8::from(mono) << 4)
            | ((sx as u8) << 3)
            | ((sy as u8) << 2)
            | (position as u8 & 3),
    );
    av1c.put_u8(0);
    av1c.put_slice(obu);
    Some(Av1Sequence {
        width,
        height,
        av1c: av1c.freeze(),
    })
}

/// `uvlc()` (§4.10.3), skipped.
fn uvlc(b: &mut Bits<'_>) -> Option<()> {
    let mut zeros = 0;
    while b.bit()? == 0 {
        zeros += 1;
        if zeros >= 32 {
            return None;
        }
    }
    b.skip(zeros)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::codec::vpx::tests::pack;
    use mp4_atom::Atom;

    /// A sequence header OBU payload: profile 0, level 8 (4.0), no timing
    /// info, one operating point, 640 × 360, 8-bit 4:2:0.
    pub(crate) fn sequence_payload() -> Vec<u8> {
        let mut bits = String::from("000 0 0 0 0 00000 000000000000 01000 0");
        bits += " 1001 1000"; // 10 and 9 bits for the sizes
        bits += &format!(" {:010b} {:09b}", 639, 359);
        bits += " 0 000 0000 1 11 1 1 111"; // ids, tools, order hint
        bits += " 000"; // superres, cdef, restoration
        bits += " 0 0 0 0 10 0 1"; // 8-bit, not mono, no description, range, position, uv
        pack(&bits)
    }

    #[test]
    fn sequence_header_to_av1c() {
        let payload = sequence_payload();
        let mut tu = BytesMut::new();
        // A temporal delimiter, the sequence header, a key frame.
        tu.put_slice(&[0x12, 0]);
        tu.put_u8(0x0a);
        write_leb128(&mut tu, payload.len() as u64);
        tu.put_slice(&payload);
        tu.put_slice(&[0x32, 2, 0x10, 0xff]);
        let s = av1_sequence(&tu).expect("a sequence header");
        assert_eq!((s.width, s.height), (640, 360));
        assert_eq!(&s.av1c[..4], &[0x81, 0x08, 0x0c | 0x02, 0]);
        assert_eq!(s.av1c[4], 0x0a);
        let parsed = mp4_atom::Av1c::decode_body(&mut &s.av1c[..]).expect("parses");
        assert_eq!(parsed.seq_level_idx_0, 8);
        assert!(av1_is_keyframe(&tu));
        // Without the sequence header: not a keyframe.
        assert!(!av1_is_keyframe(&[0x32, 2, 0x10, 0xff]));
        // An inter frame after it (frame_type 1).
        let mut inter = tu.clone();
        let at = inter.len() - 2;
        inter[at] = 0x20;
        assert!(!av1_is_keyframe(&inter));
        assert_eq!(av1_sequence(&[0x0a, 5, 0]), None);
    }

    #[test]
    fn leb128_and_sized_obus() {
        let mut out = BytesMut::new();
        write_leb128(&mut out, 300);
        assert_eq!(&out[..], &[0xac, 0x02]);
        assert_eq!(read_leb128(&out), Some((300, 2)));
        assert_eq!(read_leb128(&[0x80; 9]), None);
        let mut out = BytesMut::new();
        // Without size field, with an extension byte.
        append_sized_obu(&mut out, &[0x34, 0x08, 1, 2, 3]).expect("valid");
        assert_eq!(&out[..], &[0x36, 0x08, 3, 1, 2, 3]);
        // Forbidden bit set.
        assert_eq!(append_sized_obu(&mut out, &[0x80, 1]), None);
        let kinds: Vec<u8> = sized_obus(&out).map(|(k, _, _)| k).collect();
        assert_eq!(kinds, vec![6]);
    }
}
