//! VP8 over RTP (RFC 7741): the payload descriptor (§4.2) is stripped and
//! a frame's partitions joined; a frame begins at a packet with S = 1 and
//! partition index 0, and is a keyframe when the P bit of its VP8 frame
//! tag is 0.
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

use super::RtpError;
use super::frames::{FrameDepacketizer, PayloadFormat, concat};
use crate::codec::vpx::vp8_is_keyframe;

/// The VP8 payload format (see the module docs).
#[derive(Debug, Default)]
pub struct Vp8Format;

/// Reassembles VP8 frames from RTP packets.
pub type Vp8Depacketizer = FrameDepacketizer<Vp8Format>;

impl PayloadFormat for Vp8Format {
    fn strip(&mut self, payload: &Bytes) -> Result<Option<(bool, Bytes)>, RtpError> {
        let short = RtpError::Malformed("VP8 payload descriptor past the end");
        let &first = payload.first().ok_or(short.clone())?;
        let start = first & 0x10 != 0 && first & 0x07 == 0;
        let mut at = 1;
        if first & 0x80 != 0 {
            let &ext = payload.get(1).ok_or(short.clone())?;
            at = 2;
            if ext & 0x80 != 0 {
                // PictureID: 7 bits, or 15 when M is set.
                let &id = payload.get(at).ok_or(short.clone())?;
                at += if id & 0x80 != 0 { 2 } else { 1 };
            }
            if ext & 0x40 != 0 {
                at += 1; // TL0PICIDX
            }
            if ext & 0x30 != 0 {
                at += 1; // TID, Y, KEYIDX
            }
        }
        if at >= payload.len() {
            return Err(short);
        }
        Ok(Some((start, payload.slice(at..))))
    }

    fn frame(&mut self, parts: &[Bytes]) -> Option<(Bytes, bool)> {
        let data = concat(parts);
        let keyframe = vp8_is_keyframe(&data);
        Some((data, keyframe))
    }
}

/// Splits a VP8 frame into RTP payloads of at most `max_payload` bytes,
/// each with a 1-byte descriptor (S set on the first); the marker is set on
/// the last. For tests and for senders of VP8.
pub fn packetize_vp8(frame: &[u8], max_payload: usize, out: &mut Vec<(bool, Bytes)>) {
    let room = max_payload.saturating_sub(1).max(1);
    let count = frame.chunks(room).count();
    for (i, chunk) in frame.chunks(room).enumerate() {
        let mut p = Vec::with_capacity(chunk.len() + 1);
        p.push(if i == 0 { 0x10 } else { 0 });
        p.extend_from_slice(chunk);
        out.push((i + 1 == count, Bytes::from(p)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::RtpPacket;
    use crate::rtp::frames::VideoFrame;

    fn packet(seq: u16, ts: u32, marker: bool, payload: Bytes) -> RtpPacket {
        RtpPacket {
            marker,
            payload_type: 96,
            sequence: seq,
            timestamp: ts,
            ssrc: 1,
            payload,
        }
    }

    fn push_frame(
        d: &mut Vp8Depacketizer,
        seq: &mut u16,
        ts: u32,
        frame: &[u8],
    ) -> Vec<VideoFrame> {
        let mut payloads = Vec::new();
        packetize_vp8(frame, 100, &mut payloads);
        let mut out = Vec::new();
        for (marker, p) in payloads {
            d.push(&packet(*seq, ts, marker, p), &mut out)
                .expect("valid");
            *seq = seq.wrapping_add(1);
        }
        out
    }

    #[test]
    fn frames_reassemble_and_loss_waits_for_a_keyframe() {
        let key: Vec<u8> = std::iter::once(0x10)
            .chain((0..250).map(|i| i as u8))
            .collect();
        let inter: Vec<u8> = std::iter::once(0x11).chain(0..150).collect();
        let mut d = Vp8Depacketizer::new();
        let mut seq = 65_534;
        // An inter frame first: dropped, no keyframe yet.
        assert!(push_frame(&mut d, &mut seq, 0, &inter).is_empty());
        let out = push_frame(&mut d, &mut seq, 3000, &key);
        assert_eq!(out.len(), 1);
        assert!(out[0].keyframe);
        assert_eq!(&out[0].data[..], &key[..]);
        let out = push_frame(&mut d, &mut seq, 6000, &inter);
        assert!(!out[0].keyframe && out[0].data[..] == inter[..]);
        // A lost packet in the middle of a frame: it and the next inter
        // frame are dropped.
        let mut payloads = Vec::new();
        packetize_vp8(&inter, 100, &mut payloads);
        let mut out = Vec::new();
        for (i, (marker, p)) in payloads.into_iter().enumerate() {
            if i != 0 {
                d.push(&packet(seq, 9000, marker, p), &mut out)
                    .expect("valid");
            }
            seq = seq.wrapping_add(1);
        }
        assert!(out.is_empty());
        assert!(push_frame(&mut d, &mut seq, 12_000, &inter).is_empty());
        let dropped = d.dropped();
        assert!(dropped >= 2, "{dropped}");
        let out = push_frame(&mut d, &mut seq, 15_000, &key);
        assert!(out[0].keyframe);
    }

    #[test]
    fn extended_descriptors_are_stripped() {
        let mut f = Vp8Format;
        // X, S; I with a 15-bit picture id, L, T.
        let p = Bytes::from_static(&[0x90, 0xe0, 0x81, 0x02, 0x05, 0x40, 0x10, 0xaa]);
        assert_eq!(
            f.strip(&p),
            Ok(Some((true, Bytes::from_static(&[0x10, 0xaa]))))
        );
        // Partition 1: not a frame start.
        assert_eq!(
            f.strip(&Bytes::from_static(&[0x11, 0]))
                .map(|s| s.map(|s| s.0)),
            Ok(Some(false))
        );
        for bad in [&[][..], &[0x80][..], &[0x90, 0x80][..], &[0x10][..]] {
            assert!(f.strip(&Bytes::copy_from_slice(bad)).is_err(), "{bad:?}");
        }
    }
}
