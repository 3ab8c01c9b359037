//! WHEP egress: kernel frames to RTP payloads, once per stream.
//!
//! A frame's RTP payloads (H.264 as RFC 6184 packetization-mode 1 with
//! SPS/PPS from the catalog before every keyframe that lacks them; H.265 as
//! RFC 7798 with VPS/SPS/PPS likewise; VP8 as RFC 7741, VP9 as RFC 9628
//! with a one-byte descriptor, AV1 as the AOM payload format; Opus one
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

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use tidewater_core::{Catalog, Codec, Frame, OutputFormat, rescale};
use tidewater_media::codec::{HevcConfig, parse_avcc, parse_hvcc};
use tidewater_media::rtp::h264::{nal_type, packetize_h264};
use tidewater_media::rtp::h265::{self, nal_type_of as h265_nal_type};
use tidewater_media::rtp::{av1, vp8, vp9};

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
    let config = catalog.track(frame.track).and_then(|t| t.config.as_ref());
    match frame.codec {
        Codec::H264 => {
            let config = config.and_then(|c| parse_avcc(c));
            let nals = nal_units(&frame.payload);
            let has_sps = nals
                .iter()
                .any(|n| n.first().is_some_and(|b| b & 0x1f == nal_type::SPS));
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
            put_all(&mut out, payloads.into_iter().map(|p| (p.marker, p.data)));
        }
        Codec::H265 => {
            let config = config.and_then(|c| parse_hvcc(c));
            h265_payloads(
                &frame.payload,
                frame.is_keyframe(),
                config.as_ref(),
                &mut out,
            );
        }
        Codec::Vp8 | Codec::Vp9 | Codec::Av1 => {
            let mut payloads = Vec::new();
            match frame.codec {
                Codec::Vp8 => vp8::packetize_vp8(&frame.payload, MAX_PAYLOAD, &mut payloads),
                Codec::Vp9 => vp9::packetize_vp9(&frame.payload, MAX_PAYLOAD, &mut payloads),
                _ => av1::packetize_av1(&frame.payload, MAX_PAYLOAD, &mut payloads),
            }
            put_all(&mut out, payloads);
        }
        Codec::Opus => put_all(&mut out, [(false, frame.payload.clone())]),
        _ => {}
    }
    out.freeze()
}

/// Appends the RTP payloads of an H.265 access unit: the parameter sets of
/// `config` (the catalog's `hvcC`: RTMP, SRT and RTSP publishers carry
/// them there only) before a keyframe that has no SPS in band.
fn h265_payloads(payload: &[u8], keyframe: bool, config: Option<&HevcConfig>, out: &mut BytesMut) {
    let nals = nal_units(payload);
    let has_sps = nals
        .iter()
        .any(|n| h265_nal_type(n) == Some(h265::nal_type::SPS));
    let mut all: Vec<&[u8]> = Vec::new();
    if keyframe
        && !has_sps
        && let Some(config) = config
    {
        all.extend(config.vps.iter().map(|n| &n[..]));
        all.extend(config.sps.iter().map(|n| &n[..]));
        all.extend(config.pps.iter().map(|n| &n[..]));
    }
    all.extend(nals);
    let mut payloads = Vec::new();
    h265::packetize_h265(all, MAX_PAYLOAD, &mut payloads);
    put_all(out, payloads.into_iter().map(|p| (p.marker, p.data)));
}

/// Appends each payload with its marker byte and 16-bit length; one too
/// large for the length (never made with [`MAX_PAYLOAD`]) is left out.
fn put_all(out: &mut BytesMut, payloads: impl IntoIterator<Item = (bool, Bytes)>) {
    for (marker, data) in payloads {
        let Ok(len) = u16::try_from(data.len()) else {
            continue;
        };
        out.put_u8(u8::from(marker));
        out.put_u16(len);
        out.put_slice(&data);
    }
}

/// The NAL units of a kernel access unit (H.264 and H.265 alike: 4-byte
/// length prefixes); a truncated last one ends the list.
fn nal_units(payload: &[u8]) -> Vec<&[u8]> {
    let mut nals = Vec::new();
    let mut rest = payload;
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = u32::from_be_bytes(*len) as usize;
        let Some((nal, next)) = tail.split_at_checked(len) else {
            break;
        };
        nals.push(nal);
        rest = next;
    }
    nals
}

/// The items of a derived buffer made by [`packetize`] for a frame of
/// `codec` at `pts` in `timescale`.
pub fn items(buffer: &Bytes, codec: MediaCodec, pts: i64, timescale: u32, out: &mut Vec<Item>) {
    let rate = if codec.is_video() { 90_000 } else { 48_000 };
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

/// Payloads by address and length, hashed by [`AddressHasher`].
type Payloads = HashMap<(usize, usize), (Bytes, Arc<[u8]>), BuildHasherDefault<AddressHasher>>;

/// A multiplicative hash of the words of a key: the keys are addresses
/// the process chose (no peer picks them), looked up once per datagram
/// sent, where the default SipHash was a measurable share of the worker.
#[derive(Debug, Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// The bytes of payloads kept by a [`SharedPayloads`] generation before it
/// is rotated out (two generations are kept: at most about twice this,
/// plus the frames' buffers they slice).
const SHARED_GENERATION_BYTES: usize = 4 << 20;

/// Each payload of the stream's derived output as one `Arc<[u8]>` shared
/// by every viewer's send stream.
///
/// str0m takes a payload as `Arc<[u8]>` (it keeps it for retransmission)
/// and the kernel's derived outputs are `Bytes`, which cannot give one
/// without a copy. Copying per viewer was an allocation above the
/// allocator's small-size cache and a memcpy per datagram sent (with the
/// frees, about a quarter of the worker's CPU at 500 viewers); this copies
/// once per payload and hands every viewer a clone of the same `Arc`.
///
/// A payload is found by the address and length of its bytes. Each entry
/// keeps its `Bytes` (so the buffer it points into stays allocated and the
/// address cannot be reused by another payload while the entry exists).
/// Memory is bounded: entries live in two generations, the newer one
/// rotated out once it holds `SHARED_GENERATION_BYTES` (4 MB); a payload asked
/// for again from the older generation moves to the newer one.
#[derive(Debug, Default)]
pub struct SharedPayloads {
    current: Payloads,
    previous: Payloads,
    current_bytes: usize,
    /// Payloads copied (one per distinct payload, not per viewer).
    pub copies: u64,
}

impl SharedPayloads {
    /// The shared `Arc` of `payload` (copied on its first use).
    pub fn get(&mut self, payload: &Bytes) -> Arc<[u8]> {
        let key = (payload.as_ptr() as usize, payload.len());
        if let Some((_, shared)) = self.current.get(&key) {
            return Arc::clone(shared);
        }
        let entry = match self.previous.remove(&key) {
            Some(entry) => entry,
            None => {
                self.copies += 1;
                (payload.clone(), Arc::<[u8]>::from(&payload[..]))
            }
        };
        let shared = Arc::clone(&entry.1);
        self.current_bytes += payload.len();
        self.current.insert(key, entry);
        if self.current_bytes >= SHARED_GENERATION_BYTES {
            self.previous = std::mem::take(&mut self.current);
            self.current_bytes = 0;
        }
        shared
    }

    /// How many payloads are kept.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    /// An H.265 keyframe without parameter sets in band gets the catalog's
    /// VPS, SPS and PPS first, as single NAL unit packets; a large slice is
    /// cut into FUs within `MAX_PAYLOAD`, the marker on the last; a
    /// keyframe with its own SPS and an inter frame get nothing added.
    #[test]
    #[allow(
        clippy::indexing_slicing,
        reason = "tests: a short list should fail the test"
    )]
    fn h265_keyframes_get_the_catalogs_parameter_sets() {
        let config = HevcConfig {
            length_size: 4,
            vps: vec![Bytes::from_static(&[0x40, 0x01, 0xaa])],
            sps: vec![Bytes::from_static(&[0x42, 0x01, 0xbb])],
            pps: vec![Bytes::from_static(&[0x44, 0x01, 0xcc])],
            size: None,
        };
        let mut idr = vec![0x26, 0x01];
        idr.extend(std::iter::repeat_n(7u8, 3000));
        let mut au = (idr.len() as u32).to_be_bytes().to_vec();
        au.extend(&idr);
        let read = |keyframe: bool, au: &[u8]| {
            let mut out = BytesMut::new();
            h265_payloads(au, keyframe, Some(&config), &mut out);
            let mut items_out = Vec::new();
            items(&out.freeze(), MediaCodec::H265, 0, 90_000, &mut items_out);
            items_out
        };
        let key = read(true, &au);
        let firsts: Vec<u8> = key.iter().map(|i| i.payload[0] >> 1 & 0x3f).collect();
        // VPS, SPS, PPS, then the IDR slice in FUs (type 49).
        assert_eq!(firsts[..4], [32, 33, 34, 49]);
        assert!(key.iter().all(|i| i.payload.len() <= MAX_PAYLOAD));
        assert_eq!(key.iter().filter(|i| i.marker).count(), 1);
        assert!(key.last().is_some_and(|i| i.marker));
        assert_eq!(read(false, &au)[0].payload[0] >> 1 & 0x3f, 49);
        let mut with_sps = 3u32.to_be_bytes().to_vec();
        with_sps.extend([0x42, 0x01, 0xdd]);
        with_sps.extend(&au);
        let own = read(true, &with_sps);
        assert_eq!(&own[0].payload[..], &[0x42, 0x01, 0xdd]);
        assert_eq!(own[1].payload[0] >> 1 & 0x3f, 49);
    }

    /// Every viewer's item of one payload gets the same `Arc`, copied once;
    /// another payload with equal bytes but other memory is its own; the
    /// generations bound what is kept.
    #[test]
    fn a_payload_is_copied_once_for_every_viewer() {
        let mut shared = SharedPayloads::default();
        let buffer = Bytes::from(vec![7u8; 3000]);
        let (a, b) = (buffer.slice(0..1000), buffer.slice(1000..2000));
        let first = shared.get(&a);
        for _ in 0..500 {
            assert!(Arc::ptr_eq(&first, &shared.get(&a.clone())));
        }
        let other = shared.get(&b);
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(&first[..], &a[..]);
        assert_eq!(shared.copies, 2);
        // Equal bytes elsewhere: a payload of its own.
        let elsewhere = Bytes::from(vec![7u8; 1000]);
        assert!(!Arc::ptr_eq(&first, &shared.get(&elsewhere)));
        // Bounded: far more payloads than two generations hold.
        for _ in 0..20_000 {
            shared.get(&Bytes::from(vec![1u8; 1000]));
        }
        assert!(shared.len() <= 2 * SHARED_GENERATION_BYTES / 1000 + 1);
        assert!(!shared.is_empty());
    }
}
