//! VP9 over RTP (RFC 9628): the payload descriptor (§4.2, flexible and
//! non-flexible modes, with or without a scalability structure) is
//! stripped and a frame's packets joined; B marks a frame's first packet.
//! Only the base spatial layer (SID 0) is kept: a spatially scalable
//! publish (SVC) would need its layer frames joined into a superframe,
//! which this version does not do, and the base layer decodes on its own.
//! A frame is a keyframe when its uncompressed header says so.
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
use crate::codec::vpx::vp9_is_keyframe;

/// The VP9 payload format (see the module docs).
#[derive(Debug, Default)]
pub struct Vp9Format;

/// Reassembles VP9 frames from RTP packets.
pub type Vp9Depacketizer = FrameDepacketizer<Vp9Format>;

const SHORT: RtpError = RtpError::Malformed("VP9 payload descriptor past the end");

/// Reads one byte of the descriptor at `*at`, moving on.
fn byte(payload: &[u8], at: &mut usize) -> Result<u8, RtpError> {
    let b = *payload.get(*at).ok_or(SHORT)?;
    *at += 1;
    Ok(b)
}

impl PayloadFormat for Vp9Format {
    fn strip(&mut self, payload: &Bytes) -> Result<Option<(bool, Bytes)>, RtpError> {
        let mut at = 0;
        let first = byte(payload, &mut at)?;
        let (i, p, l, f, b, v) = (
            first & 0x80 != 0,
            first & 0x40 != 0,
            first & 0x20 != 0,
            first & 0x10 != 0,
            first & 0x08 != 0,
            first & 0x02 != 0,
        );
        if i && byte(payload, &mut at)? & 0x80 != 0 {
            byte(payload, &mut at)?;
        }
        let mut sid = 0;
        if l {
            sid = (byte(payload, &mut at)? >> 1) & 0x07;
            if !f {
                byte(payload, &mut at)?; // TL0PICIDX
            }
        }
        if p && f {
            // Up to three P_DIFF bytes, each with N saying another follows.
            for _ in 0..3 {
                if byte(payload, &mut at)? & 0x01 == 0 {
                    break;
                }
            }
        }
        if v {
            let ss = byte(payload, &mut at)?;
            let layers = usize::from(ss >> 5) + 1;
            if ss & 0x10 != 0 {
                at += 4 * layers;
            }
            if ss & 0x08 != 0 {
                let groups = byte(payload, &mut at)?;
                for _ in 0..groups {
                    let g = byte(payload, &mut at)?;
                    at += usize::from((g >> 2) & 0x03);
                }
            }
        }
        if at >= payload.len() {
            return Err(SHORT);
        }
        if sid != 0 {
            return Ok(None);
        }
        Ok(Some((b, payload.slice(at..))))
    }

    fn frame(&mut self, parts: &[Bytes]) -> Option<(Bytes, bool)> {
        let data = concat(parts);
        let keyframe = vp9_is_keyframe(&data);
        Some((data, keyframe))
    }
}

/// Splits a VP9 frame into RTP payloads of at most `max_payload` bytes,
/// each with a 1-byte non-flexible descriptor (B on the first, E on the
/// last, P on inter frames); the marker is set on the last. For tests and
/// for senders of VP9.
pub fn packetize_vp9(frame: &[u8], max_payload: usize, out: &mut Vec<(bool, Bytes)>) {
    let room = max_payload.saturating_sub(1).max(1);
    let count = frame.chunks(room).count();
    let inter = if vp9_is_keyframe(frame) { 0 } else { 0x40 };
    for (i, chunk) in frame.chunks(room).enumerate() {
        let last = i + 1 == count;
        let mut p = Vec::with_capacity(chunk.len() + 1);
        p.push(inter | if i == 0 { 0x08 } else { 0 } | if last { 0x04 } else { 0 });
        p.extend_from_slice(chunk);
        out.push((last, Bytes::from(p)));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::codec::vpx::tests::pack;
    use crate::rtp::RtpPacket;
    use crate::rtp::frames::VideoFrame;

    /// A packetizer of this module or AV1's: frame, payload size, payloads out.
    pub(crate) type Packetize = fn(&[u8], usize, &mut Vec<(bool, Bytes)>);

    /// Packetizes each `(timestamp, frame)` with `packetize` at
    /// `max_payload` and pushes every packet into `d` in order (payload
    /// type `payload_type`, sequence numbers counting up from `first_seq`):
    /// the frames `d` gave back. Each push must succeed. The VP9 and AV1
    /// tests share it; it sits here, as `pack` sits in the VPX tests,
    /// because only those two use it and `rtp/frames.rs` is not test code.
    pub(crate) fn push_packetized<F: PayloadFormat>(
        d: &mut FrameDepacketizer<F>,
        frames: &[(u32, &[u8])],
        packetize: Packetize,
        max_payload: usize,
        payload_type: u8,
        first_seq: u16,
    ) -> Vec<VideoFrame> {
        let mut out = Vec::new();
        let mut seq = first_seq;
        for &(ts, frame) in frames {
            let mut payloads = Vec::new();
            packetize(frame, max_payload, &mut payloads);
            for (marker, p) in payloads {
                let packet = RtpPacket {
                    marker,
                    payload_type,
                    sequence: seq,
                    timestamp: ts,
                    ssrc: 1,
                    payload: p,
                };
                d.push(&packet, &mut out).expect("valid");
                seq += 1;
            }
        }
        out
    }

    fn keyframe() -> Vec<u8> {
        let mut bits = String::from("10 0 0 0 0 1 0 010010011000001101000010 001 0");
        bits += &format!(" {:016b} {:016b}", 639, 359);
        let mut f = pack(&bits);
        f.extend(0..200u8);
        f
    }

    #[test]
    fn frames_reassemble_with_keyframes_from_the_header() {
        let key = keyframe();
        let inter: Vec<u8> = [0x86].into_iter().chain(0..120).collect();
        let mut d = Vp9Depacketizer::new();
        let frames = [(0u32, &inter[..]), (3000, &key[..]), (6000, &inter[..])];
        let out = push_packetized(&mut d, &frames, packetize_vp9, 64, 98, 10);
        let got: Vec<(u32, bool, usize)> = out
            .iter()
            .map(|f| (f.timestamp, f.keyframe, f.data.len()))
            .collect();
        assert_eq!(
            got,
            vec![(3000, true, key.len()), (6000, false, inter.len())]
        );
        assert_eq!(out[0].data[..], key[..]);
        assert_eq!(d.dropped(), 1);
    }

    #[test]
    fn descriptors_are_stripped_and_upper_layers_skipped() {
        let mut f = Vp9Format;
        // I (15-bit id), L (SID 0, non-flexible: TL0PICIDX), B, V with
        // one layer's size and one group of one reference.
        let p = Bytes::from_static(&[
            0xaa, 0x81, 0x02, 0x00, 0x07, 0x18, 2, 128, 1, 104, 1, 0x04, 0x01, 0x99,
        ]);
        assert_eq!(f.strip(&p), Ok(Some((true, Bytes::from_static(&[0x99])))));
        // Flexible mode, two P_DIFFs.
        let p = Bytes::from_static(&[0x58, 0x03, 0x02, 0x77]);
        assert_eq!(f.strip(&p), Ok(Some((true, Bytes::from_static(&[0x77])))));
        // SID 1: ignored.
        let p = Bytes::from_static(&[0x28, 0x02, 0x00, 0x77]);
        assert_eq!(f.strip(&p), Ok(None));
        for bad in [&[][..], &[0x80][..], &[0x08][..], &[0x02, 0xe0][..]] {
            assert!(f.strip(&Bytes::copy_from_slice(bad)).is_err(), "{bad:?}");
        }
    }
}
