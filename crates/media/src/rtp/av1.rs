//! AV1 over RTP (the AOM "RTP Payload Format For AV1", v1.0): each packet
//! has an aggregation header (Z: the first OBU element continues the
//! previous packet's last; Y: the last one continues in the next packet;
//! W: how many elements, the last without a length when non-zero) and OBU
//! elements. A temporal unit's elements are joined back into OBUs, each
//! written with its size field (the low overhead form ISO-BMFF samples
//! use); temporal delimiters and tile lists are left out. A temporal unit
//! with a sequence header and a key frame is a keyframe.
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

use bytes::{Bytes, BytesMut};

use super::RtpError;
use super::frames::{FrameDepacketizer, PayloadFormat};
use crate::codec::av1::{
    append_sized_obu, av1_is_keyframe, obu_type, obu_type_of, read_leb128, write_leb128,
};

/// The AV1 payload format (see the module docs).
#[derive(Debug, Default)]
pub struct Av1Format;

/// Reassembles AV1 temporal units from RTP packets.
pub type Av1Depacketizer = FrameDepacketizer<Av1Format>;

impl PayloadFormat for Av1Format {
    fn strip(&mut self, payload: &Bytes) -> Result<Option<(bool, Bytes)>, RtpError> {
        let &header = payload.first().ok_or(RtpError::Malformed(
            "AV1 payload without aggregation header",
        ))?;
        if payload.len() < 2 {
            return Err(RtpError::Malformed("AV1 payload without an OBU element"));
        }
        // The whole payload is kept: joining needs each packet's Z, Y, W.
        Ok(Some((header & 0x80 == 0, payload.clone())))
    }

    fn frame(&mut self, parts: &[Bytes]) -> Option<(Bytes, bool)> {
        let mut out = BytesMut::new();
        let mut pending: Option<Vec<u8>> = None;
        for part in parts {
            let (&header, mut rest) = part.split_first()?;
            let (z, y, w) = (header & 0x80 != 0, header & 0x40 != 0, (header >> 4) & 3);
            let mut elements = Vec::new();
            let mut index = 0u8;
            while !rest.is_empty() {
                index = index.saturating_add(1);
                let element = if w != 0 && index == w {
                    std::mem::take(&mut rest)
                } else {
                    let (len, used) = read_leb128(rest)?;
                    let len = usize::try_from(len).ok()?;
                    let element = rest.get(used..)?.get(..len)?;
                    rest = rest.get(used + len..)?;
                    element
                };
                elements.push(element);
            }
            let count = elements.len();
            for (i, element) in elements.into_iter().enumerate() {
                let mut obu = if i == 0 && z {
                    // A continuation needs the fragment it continues.
                    pending.take()?
                } else {
                    if pending.is_some() {
                        return None;
                    }
                    Vec::new()
                };
                obu.extend_from_slice(element);
                if i + 1 == count && y {
                    pending = Some(obu);
                } else {
                    let kind = obu_type_of(*obu.first()?);
                    if kind != obu_type::TEMPORAL_DELIMITER && kind != obu_type::TILE_LIST {
                        append_sized_obu(&mut out, &obu)?;
                    }
                }
            }
        }
        if pending.is_some() || out.is_empty() {
            return None;
        }
        let data = out.freeze();
        let keyframe = av1_is_keyframe(&data);
        Some((data, keyframe))
    }
}

/// Splits a low overhead temporal unit into RTP payloads of at most
/// `max_payload` bytes (raised to 8 if lower). The OBUs (without their size
/// fields) are packed one after the other as length-prefixed elements
/// (W = 0), an OBU that does not fit the rest of a packet fragmented
/// across packets with Y/Z: a packet starts a new OBU only where the one
/// before it ended, so a receiver that takes a packet with Z = 0 as the
/// start of a frame (Chromium, without the dependency descriptor) finds
/// the whole temporal unit, the sequence header of a keyframe included
/// (except where an OBU ends within a byte of a packet's end: no fragment
/// fits there, so the next packet starts the next OBU with Z = 0).
/// N is set on a keyframe's first packet, the marker on the last.
/// Temporal delimiters and tile lists are left out, as the payload format
/// says a sender should. For tests and for senders of AV1 (WHEP).
pub fn packetize_av1(temporal_unit: &[u8], max_payload: usize, out: &mut Vec<(bool, Bytes)>) {
    let keyframe = av1_is_keyframe(temporal_unit);
    // The room for elements after the one-byte aggregation header.
    let room = max_payload.max(8) - 1;
    // (Z, Y, elements) of each packet.
    let mut packets: Vec<(bool, bool, BytesMut)> = Vec::new();
    let mut body = BytesMut::new();
    let mut continues = false;
    for (kind, obu, payload) in crate::codec::av1::sized_obus(temporal_unit) {
        if kind == obu_type::TEMPORAL_DELIMITER || kind == obu_type::TILE_LIST {
            continue;
        }
        let header_len = if obu.first().is_some_and(|h| h & 0x04 != 0) {
            2
        } else {
            1
        };
        let mut bare: Vec<u8> = obu.iter().take(header_len).copied().collect();
        if let Some(h) = bare.first_mut() {
            *h &= !0x02;
        }
        bare.extend_from_slice(payload);
        let mut rest = &bare[..];
        loop {
            let left = room.saturating_sub(body.len());
            if leb128_len(rest.len()) + rest.len() <= left {
                write_leb128(&mut body, rest.len() as u64);
                body.extend_from_slice(rest);
                break;
            }
            let take = left.saturating_sub(leb128_len(left)).min(rest.len());
            let Some((part, tail)) = rest.split_at_checked(take).filter(|_| take > 0) else {
                // Not a byte of room left: the packet ends after a whole OBU.
                packets.push((continues, false, std::mem::take(&mut body)));
                continues = false;
                continue;
            };
            write_leb128(&mut body, part.len() as u64);
            body.extend_from_slice(part);
            packets.push((continues, true, std::mem::take(&mut body)));
            continues = true;
            rest = tail;
        }
    }
    if !body.is_empty() {
        packets.push((continues, false, body));
    }
    let count = packets.len();
    for (i, (z, y, body)) in packets.into_iter().enumerate() {
        let mut header = u8::from(z) << 7 | u8::from(y) << 6;
        if i == 0 && keyframe {
            header |= 0x08;
        }
        let mut p = BytesMut::with_capacity(body.len() + 1);
        p.extend_from_slice(&[header]);
        p.extend_from_slice(&body);
        out.push((i + 1 == count, p.freeze()));
    }
}

/// The bytes of `value` as LEB128.
fn leb128_len(value: usize) -> usize {
    let bits = usize::BITS - value.leading_zeros();
    (bits as usize).div_ceil(7).max(1)
}

/// A low overhead OBU of `kind` with `payload` (for tests).
pub fn sized_obu(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    bytes::BufMut::put_u8(&mut out, (kind << 3) | 0x02);
    write_leb128(&mut out, payload.len() as u64);
    bytes::BufMut::put_slice(&mut out, payload);
    out.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::av1::tests::sequence_payload;
    use crate::rtp::vp9::tests::push_packetized;

    fn key() -> Vec<u8> {
        let mut tu = sized_obu(obu_type::SEQUENCE_HEADER, &sequence_payload());
        let frame: Vec<u8> = std::iter::once(0x10)
            .chain(0..=255)
            .chain(0..=255)
            .collect();
        tu.extend(sized_obu(obu_type::FRAME, &frame));
        tu
    }

    #[test]
    fn temporal_units_round_trip_through_fragments() {
        let key = key();
        let inter = sized_obu(obu_type::FRAME, &[0x20, 1, 2, 3]);
        let mut d = Av1Depacketizer::new();
        let units = [(0u32, &inter[..]), (3000, &key[..]), (6000, &inter[..])];
        let out = push_packetized(&mut d, &units, packetize_av1, 100, 45, 0);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0].keyframe && !out[1].keyframe);
        assert_eq!(out[0].data[..], key[..]);
        assert_eq!(out[1].data[..], inter[..]);
        assert_eq!(d.dropped(), 1);
    }

    /// A packet starts a new OBU only where the one before ended: a
    /// keyframe's first packet has the sequence header and the frame's
    /// start (N set), every later one continues the frame (Z set), and a
    /// temporal delimiter is left out.
    #[test]
    fn a_keyframe_packs_its_obus_so_only_its_first_packet_starts_one() {
        let mut tu = sized_obu(obu_type::TEMPORAL_DELIMITER, &[]);
        tu.extend(key());
        let mut out = Vec::new();
        packetize_av1(&tu, 100, &mut out);
        assert!(out.len() > 2, "{out:?}");
        assert!(out.iter().all(|(_, p)| p.len() <= 100));
        assert_eq!(out[0].1[0] & 0xf8, 0x48, "N and Y, no Z: {:?}", out[0]);
        assert!(out[1..].iter().all(|(_, p)| p[0] & 0x80 != 0));
        let markers: Vec<bool> = out.iter().map(|(m, _)| *m).collect();
        assert_eq!(markers.iter().filter(|m| **m).count(), 1);
        assert_eq!(markers.last(), Some(&true));
        let mut d = Av1Depacketizer::new();
        let got = push_packetized(&mut d, &[(0u32, &tu[..])], packetize_av1, 100, 45, 0);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].data[..], key()[..]);
    }

    #[test]
    fn aggregated_elements_and_bad_fragments() {
        let mut f = Av1Format;
        // W = 0: two length-prefixed elements, a temporal delimiter (left
        // out) and a frame OBU without size field.
        let p = Bytes::from_static(&[0x08, 1, 0x10, 3, 0x30, 0x10, 0xaa]);
        let (start, body) = f.strip(&p).expect("valid").expect("kept");
        assert!(start);
        assert_eq!(
            f.frame(&[body]).map(|(d, _)| d.to_vec()),
            Some(vec![0x32, 2, 0x10, 0xaa])
        );
        // A continuation without its start, a fragment never finished, an
        // element past the end.
        for bad in [
            &[0x90, 0x30, 1][..],
            &[0x50, 0x30, 1][..],
            &[0x00, 9, 0x30][..],
        ] {
            assert_eq!(f.frame(&[Bytes::copy_from_slice(bad)]), None, "{bad:?}");
        }
        assert!(f.strip(&Bytes::from_static(&[0x10])).is_err());
    }
}
