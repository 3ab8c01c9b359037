//! WHEP egress: kernel frames to RTP payloads, once per stream.
//!
//! A frame's RTP payloads (H.264 as RFC 6184 packetization-mode 1 with
//! SPS/PPS from the catalog before every keyframe that lacks them; Opus one
//! payload per frame) are made once per stream as a derived output of the
//! kernel ([`RTP_FORMAT`]) and shared by every viewer; per viewer str0m
//! writes the RTP header (its SSRC, sequence numbers, timestamps) and
//! protects the packet (SRTP).
// Reads what publishers sent (frames of any protocol): no indexing,
// unwrap, expect or panic a peer could reach (issue 18).
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use bytes::{BufMut, Bytes, BytesMut};
use tidewater_core::{Catalog, Codec, Frame, OutputFormat, rescale};
use tidewater_media::codec::parse_avcc;
use tidewater_media::rtp::h264::{nal_type, packetize_h264};

use crate::ingest::MediaCodec;

/// The kernel's derived-output format of WebRTC RTP payloads.
pub const RTP_FORMAT: OutputFormat = OutputFormat::new("webrtc-rtp-payloads");
/// The largest RTP payload made (bytes): room for headers, extensions and
/// SRTP under a 1 280-byte path.
pub const MAX_PAYLOAD: usize = 1100;

/// One RTP payload of a frame, ready for every viewer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// Which of the viewer's media lines carries it.
    pub codec: MediaCodec,
    /// RTP timestamp (90 kHz video, 48 kHz Opus) before the viewer's offset.
    pub time: u32,
    /// The marker bit.
    pub marker: bool,
    /// The payload (a slice of the shared derived output).
    pub payload: Bytes,
}

/// The frame's payloads as one buffer: per payload a marker byte and a
/// 16-bit length, then the bytes. Empty for codecs WHEP does not carry.
pub fn packetize(frame: &Frame, catalog: &Catalog) -> Bytes {
    let mut out = BytesMut::new();
    match frame.codec {
        Codec::H264 => {
            let mut nals: Vec<&[u8]> = Vec::new();
            let mut rest = &frame.payload[..];
            // Length-prefixed NAL units; a truncated last one ends the list.
            while let Some((len, tail)) = rest.split_first_chunk::<4>() {
                let len = u32::from_be_bytes(*len) as usize;
                let Some((nal, next)) = tail.split_at_checked(len) else {
                    break;
                };
                nals.push(nal);
                rest = next;
            }
            let has_sps = nals
                .iter()
                .any(|n| n.first().is_some_and(|b| b & 0x1f == nal_type::SPS));
            let config = catalog
                .track(frame.track)
                .and_then(|t| t.config.as_ref())
                .and_then(|c| parse_avcc(c));
            let mut all: Vec<&[u8]> = Vec::new();
            if frame.is_keyframe()
                && !has_sps
                && let Some(config) = &config
            {
                all.extend(config.sps.iter().map(|n| &n[..]));
                all.extend(config.pps.iter().map(|n| &n[..]));
            }
            all.extend(nals);
            let mut payloads = Vec::new();
            packetize_h264(all, MAX_PAYLOAD, &mut payloads);
            for p in payloads {
                if p.data.len() > usize::from(u16::MAX) {
                    continue;
                }
                out.put_u8(u8::from(p.marker));
                out.put_u16(p.data.len() as u16);
                out.put_slice(&p.data);
            }
        }
        Codec::Opus if frame.payload.len() <= usize::from(u16::MAX) => {
            out.put_u8(0);
            out.put_u16(frame.payload.len() as u16);
            out.put_slice(&frame.payload);
        }
        _ => {}
    }
    out.freeze()
}

/// The items of a derived buffer made by [`packetize`] for a frame of
/// `codec` at `pts` in `timescale`.
pub fn items(buffer: &Bytes, codec: MediaCodec, pts: i64, timescale: u32, out: &mut Vec<Item>) {
    let rate = match codec {
        MediaCodec::H264 => 90_000,
        MediaCodec::Opus => 48_000,
    };
    let time = rescale(pts, timescale, rate) as u32;
    let mut at = 0;
    while let Some(&[marker, high, low]) = buffer.get(at..at + 3) {
        let len = usize::from(u16::from_be_bytes([high, low]));
        let Some(end) = at.checked_add(3 + len).filter(|e| *e <= buffer.len()) else {
            return;
        };
        out.push(Item {
            codec,
            time,
            marker: marker != 0,
            payload: buffer.slice(at + 3..end),
        });
        at = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The items of a derived buffer: one per entry, the marker kept, the
    /// time rescaled; a truncated last entry (never made by `packetize`,
    /// but the reader must not trust its input) ends the list.
    #[test]
    fn items_read_entries_and_stop_at_a_truncated_one() {
        let buffer = Bytes::from_static(&[0, 0, 2, 0xaa, 0xbb, 1, 0, 1, 0xcc, 0, 0, 9, 1]);
        let mut out = Vec::new();
        items(&buffer, MediaCodec::H264, 1_000, 1_000, &mut out);
        let got: Vec<(bool, &[u8], u32)> = out
            .iter()
            .map(|i| (i.marker, &i.payload[..], i.time))
            .collect();
        assert_eq!(
            got,
            vec![
                (false, &[0xaa, 0xbb][..], 90_000),
                (true, &[0xcc][..], 90_000)
            ]
        );
    }
}
