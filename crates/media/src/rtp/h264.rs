//! H.264 over RTP (RFC 6184, packetization-mode 0 and 1): single NAL unit
//! packets, STAP-A aggregates and FU-A fragments.
//!
//! The depacketizer gathers the NAL units of one access unit (one RTP
//! timestamp, ended by the marker bit or by the next timestamp) and hands
//! them out whole. After a sequence gap it drops the access unit that lost a
//! piece and every following one until the next IDR picture, so a decoder
//! never sees a picture whose references are missing; it also starts at an
//! IDR picture.
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

use super::{MAX_ACCESS_UNIT, Payload, RtpError, RtpPacket, SequenceTracker};

/// NAL unit types (ISO 14496-10 Table 7-1) this module looks at.
pub mod nal_type {
    /// A coded slice of an IDR picture.
    pub const IDR: u8 = 5;
    /// Sequence parameter set.
    pub const SPS: u8 = 7;
    /// Picture parameter set.
    pub const PPS: u8 = 8;
    /// Access unit delimiter.
    pub const AUD: u8 = 9;
    /// RFC 6184 single-time aggregation packet A.
    pub const STAP_A: u8 = 24;
    /// RFC 6184 fragmentation unit A.
    pub const FU_A: u8 = 28;
}

/// The NAL units of one access unit, as the depacketizer assembled them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct H264AccessUnit {
    /// The RTP timestamp (90 kHz).
    pub timestamp: u32,
    /// The NAL units, in order, without start codes or lengths.
    pub nals: Vec<Bytes>,
    /// Whether it holds an IDR slice.
    pub keyframe: bool,
}

impl H264AccessUnit {
    /// The access unit in the kernel's canonical form: each NAL unit
    /// prefixed by its 4-byte length, access unit delimiters left out.
    pub fn to_avcc(&self) -> Bytes {
        let nals = self
            .nals
            .iter()
            .filter(|n| nal_type_of(n) != Some(nal_type::AUD));
        let mut out = BytesMut::with_capacity(self.nals.iter().map(|n| n.len() + 4).sum());
        for nal in nals {
            out.put_u32(nal.len() as u32);
            out.put_slice(nal);
        }
        out.freeze()
    }

    /// The NAL units of type `kind` (SPS, PPS, …) it carries in band.
    pub fn nals_of_type(&self, kind: u8) -> impl Iterator<Item = &Bytes> {
        self.nals
            .iter()
            .filter(move |n| nal_type_of(n) == Some(kind))
    }
}

fn nal_type_of(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b & 0x1f)
}

/// Whether `nal` is a coded slice (VCL NAL unit types 1-5).
fn is_slice(nal: &[u8]) -> bool {
    matches!(nal_type_of(nal), Some(1..=5))
}

/// Reassembles H.264 access units from RTP packets (see the module docs).
#[derive(Debug)]
pub struct H264Depacketizer {
    seq: SequenceTracker,
    nals: Vec<Bytes>,
    len: usize,
    timestamp: Option<u32>,
    fragment: Option<BytesMut>,
    /// The current access unit lost a piece.
    broken: bool,
    /// Drop access units until an IDR picture.
    need_keyframe: bool,
    dropped: u64,
}

impl Default for H264Depacketizer {
    fn default() -> Self {
        Self::new()
    }
}

impl H264Depacketizer {
    /// A depacketizer waiting for its first IDR picture.
    pub fn new() -> Self {
        H264Depacketizer {
            seq: SequenceTracker::default(),
            nals: Vec::new(),
            len: 0,
            timestamp: None,
            fragment: None,
            broken: false,
            need_keyframe: true,
            dropped: 0,
        }
    }

    /// Access units dropped so far (lost pieces, waiting for a keyframe,
    /// over [`MAX_ACCESS_UNIT`]).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Takes one packet; complete access units are appended to `out` (at
    /// most two: the one a new timestamp ends and one this packet ends).
    pub fn push(
        &mut self,
        packet: &RtpPacket,
        out: &mut Vec<H264AccessUnit>,
    ) -> Result<(), RtpError> {
        if !self.seq.next(packet.sequence) {
            // A gap: whatever is being gathered lost a piece, and pictures
            // after it may reference the lost one.
            if !self.nals.is_empty() || self.fragment.is_some() {
                self.broken = true;
            }
            self.fragment = None;
            self.need_keyframe = true;
        }
        if self.timestamp.is_some_and(|ts| ts != packet.timestamp) {
            self.finish(out);
        }
        self.timestamp = Some(packet.timestamp);
        let result = self.payload(&packet.payload);
        if result.is_err() {
            self.broken = true;
        }
        if packet.marker {
            self.finish(out);
        }
        result
    }

    fn payload(&mut self, payload: &Bytes) -> Result<(), RtpError> {
        let header = *payload
            .first()
            .ok_or(RtpError::Malformed("empty H.264 payload"))?;
        match header & 0x1f {
            1..=23 => {
                self.fragment = None;
                self.add(payload.clone());
            }
            nal_type::STAP_A => {
                self.fragment = None;
                let mut rest = payload.slice(1..);
                while !rest.is_empty() {
                    let size = rest
                        .first_chunk::<2>()
                        .map(|s| usize::from(u16::from_be_bytes(*s)))
                        .ok_or(RtpError::Malformed("truncated STAP-A size"))?;
                    let nal = rest
                        .get(2..2 + size)
                        .ok_or(RtpError::Malformed("STAP-A unit past the end"))?;
                    if !nal.is_empty() {
                        self.add(rest.slice(2..2 + size));
                    }
                    rest = rest.slice(2 + size..);
                }
            }
            nal_type::FU_A => {
                let fu = *payload
                    .get(1)
                    .ok_or(RtpError::Malformed("truncated FU-A"))?;
                let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
                let data = payload.get(2..).unwrap_or_default();
                if start {
                    let mut nal = BytesMut::with_capacity(data.len() * 4 + 1);
                    nal.put_u8((header & 0xe0) | (fu & 0x1f));
                    nal.put_slice(data);
                    self.fragment = Some(nal);
                } else if let Some(nal) = self.fragment.as_mut() {
                    if nal.len() + data.len() + self.len > MAX_ACCESS_UNIT {
                        self.fragment = None;
                        self.broken = true;
                        return Ok(());
                    }
                    nal.put_slice(data);
                } else {
                    // A middle or end without its start: lost.
                    self.broken = true;
                    return Ok(());
                }
                if end && let Some(nal) = self.fragment.take() {
                    self.add(nal.freeze());
                }
            }
            _ => {
                return Err(RtpError::Unsupported(
                    "H.264 NAL unit type 0, 25-27 or 29-31",
                ));
            }
        }
        Ok(())
    }

    fn add(&mut self, nal: Bytes) {
        if self.len + nal.len() + 4 > MAX_ACCESS_UNIT {
            self.broken = true;
            return;
        }
        // Parameter sets belong before the picture's first slice (ISO
        // 14496-10 7.4.1.2.3). GStreamer's rtph264pay (config-interval=-1)
        // repeats them before every IDR slice, so a picture of several
        // slices (webrtcbin's x264enc, WHIP) arrives as SPS PPS slice SPS
        // PPS slice: readers that split access units by parsing (ffmpeg's
        // RTSP and MPEG-TS demuxers) took the repeat for a new picture and
        // saw the keyframe as two packets at one time. A repeat is dropped,
        // a new set moved ahead of the slices.
        if matches!(nal_type_of(&nal), Some(nal_type::SPS | nal_type::PPS))
            && let Some(first_slice) = self.nals.iter().position(|n| is_slice(n))
        {
            if !self.nals.contains(&nal) {
                self.len += nal.len() + 4;
                self.nals.insert(first_slice, nal);
            }
            return;
        }
        self.len += nal.len() + 4;
        self.nals.push(nal);
    }

    fn finish(&mut self, out: &mut Vec<H264AccessUnit>) {
        let nals = std::mem::take(&mut self.nals);
        let broken = std::mem::take(&mut self.broken);
        self.len = 0;
        self.fragment = None;
        let Some(timestamp) = self.timestamp else {
            return;
        };
        if nals.is_empty() {
            if broken {
                self.dropped += 1;
            }
            return;
        }
        let keyframe = nals.iter().any(|n| nal_type_of(n) == Some(nal_type::IDR));
        if broken || (self.need_keyframe && !keyframe) {
            self.dropped += 1;
            if broken {
                self.need_keyframe = true;
            }
            return;
        }
        self.need_keyframe = false;
        out.push(H264AccessUnit {
            timestamp,
            nals,
            keyframe,
        });
    }
}

/// Splits an access unit's NAL units into RTP payloads of at most
/// `max_payload` bytes (packetization-mode 1: a NAL unit that fits goes
/// alone, a larger one as FU-A fragments); the last payload has the marker
/// bit. Empty NAL units are skipped. `max_payload` is raised to 16 if lower.
pub fn packetize_h264<'a>(
    nals: impl IntoIterator<Item = &'a [u8]>,
    max_payload: usize,
    out: &mut Vec<Payload>,
) {
    let max = max_payload.max(16);
    let first = out.len();
    for nal in nals {
        let Some((&header, body)) = nal.split_first() else {
            continue;
        };
        if nal.len() <= max {
            out.push(Payload {
                marker: false,
                data: Bytes::copy_from_slice(nal),
            });
            continue;
        }
        let chunks = body.chunks(max - 2);
        let count = chunks.len();
        for (i, chunk) in chunks.enumerate() {
            let mut fu = BytesMut::with_capacity(chunk.len() + 2);
            fu.put_u8((header & 0xe0) | nal_type::FU_A);
            let mut fu_header = header & 0x1f;
            if i == 0 {
                fu_header |= 0x80;
            }
            if i + 1 == count {
                fu_header |= 0x40;
            }
            fu.put_u8(fu_header);
            fu.put_slice(chunk);
            out.push(Payload {
                marker: false,
                data: fu.freeze(),
            });
        }
    }
    if out.len() > first
        && let Some(last) = out.last_mut()
    {
        last.marker = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> RtpPacket {
        RtpPacket {
            marker,
            payload_type: 96,
            sequence: seq,
            timestamp: ts,
            ssrc: 1,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    fn depacketize(
        payloads: &[Payload],
        seq0: u16,
        ts: u32,
        d: &mut H264Depacketizer,
    ) -> Vec<H264AccessUnit> {
        let mut out = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            d.push(
                &packet(seq0.wrapping_add(i as u16), ts, p.marker, &p.data),
                &mut out,
            )
            .expect("valid payload");
        }
        out
    }

    #[test]
    fn packetized_access_units_come_back_whole() {
        let sps = [0x67, 0x42, 0, 0x1f, 1, 2];
        let pps = [0x68, 0xce, 0x3c, 0x80];
        let idr: Vec<u8> = std::iter::once(0x65)
            .chain((0..5000).map(|i| i as u8))
            .collect();
        let mut payloads = Vec::new();
        packetize_h264([&sps[..], &pps[..], &idr[..]], 1200, &mut payloads);
        assert!(payloads.len() > 4, "the IDR slice is fragmented");
        assert!(payloads.iter().all(|p| p.data.len() <= 1200));
        assert_eq!(payloads.iter().filter(|p| p.marker).count(), 1);
        let mut d = H264Depacketizer::new();
        let aus = depacketize(&payloads, 65530, 9000, &mut d);
        assert_eq!(aus.len(), 1);
        assert!(aus[0].keyframe);
        assert_eq!(aus[0].timestamp, 9000);
        assert_eq!(
            aus[0].nals,
            vec![
                Bytes::copy_from_slice(&sps),
                Bytes::copy_from_slice(&pps),
                Bytes::from(idr)
            ]
        );
        let avcc = aus[0].to_avcc();
        assert_eq!(&avcc[..4], &[0, 0, 0, 6]);
        assert_eq!(aus[0].nals_of_type(nal_type::SPS).count(), 1);
    }

    #[test]
    fn parameter_sets_repeated_between_slices_go_before_the_first() {
        // rtph264pay's config-interval=-1 on a two-slice IDR picture.
        let sps = [0x67, 0x42, 0, 0x1f, 1, 2];
        let pps = [0x68, 0xce, 0x3c, 0x80];
        let pps2 = [0x68, 0xce, 0x3c, 0x81];
        let (slice0, slice1) = ([0x65, 0x88, 1], [0x65, 0x80, 2]);
        let mut payloads = Vec::new();
        packetize_h264(
            [&sps[..], &pps, &slice0, &sps, &pps, &pps2, &slice1],
            1200,
            &mut payloads,
        );
        let mut d = H264Depacketizer::new();
        let aus = depacketize(&payloads, 1, 0, &mut d);
        assert_eq!(aus.len(), 1);
        let nals: Vec<&[u8]> = aus[0].nals.iter().map(|n| &n[..]).collect();
        assert_eq!(nals, [&sps[..], &pps, &pps2, &slice0, &slice1]);
        let avcc = aus[0].to_avcc();
        assert_eq!(avcc.len(), nals.iter().map(|n| n.len() + 4).sum::<usize>());
    }

    #[test]
    fn stap_a_is_split_and_aud_left_out_of_avcc() {
        let mut d = H264Depacketizer::new();
        let mut out = Vec::new();
        let stap = [24, 0, 2, 0x09, 0xf0, 0, 3, 0x65, 1, 2];
        d.push(&packet(1, 0, true, &stap), &mut out).expect("valid");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].nals.len(), 2);
        assert_eq!(&out[0].to_avcc()[..], &[0, 0, 0, 3, 0x65, 1, 2]);
    }

    #[test]
    fn loss_drops_until_the_next_keyframe() {
        let mut d = H264Depacketizer::new();
        let mut out = Vec::new();
        d.push(&packet(1, 0, true, &[0x65, 1]), &mut out)
            .expect("valid");
        d.push(&packet(2, 3000, true, &[0x41, 1]), &mut out)
            .expect("valid");
        // Packet 3 is lost.
        d.push(&packet(4, 9000, true, &[0x41, 3]), &mut out)
            .expect("valid");
        d.push(&packet(5, 12000, true, &[0x41, 4]), &mut out)
            .expect("valid");
        d.push(&packet(6, 15000, true, &[0x65, 5]), &mut out)
            .expect("valid");
        let ts: Vec<u32> = out.iter().map(|a| a.timestamp).collect();
        assert_eq!(ts, vec![0, 3000, 15000]);
        assert_eq!(d.dropped(), 2);
    }

    #[test]
    fn a_lost_fragment_drops_its_access_unit() {
        let idr: Vec<u8> = std::iter::once(0x65).chain(0..200).collect();
        let mut payloads = Vec::new();
        packetize_h264([&idr[..]], 64, &mut payloads);
        let mut d = H264Depacketizer::new();
        let mut out = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            if i == 1 {
                continue;
            }
            d.push(&packet(i as u16, 0, p.marker, &p.data), &mut out)
                .expect("valid");
        }
        assert!(out.is_empty());
        // The next keyframe gets through.
        d.push(&packet(100, 3000, true, &[0x65, 9]), &mut out)
            .expect("valid");
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn it_starts_at_a_keyframe_and_ends_units_on_a_new_timestamp() {
        let mut d = H264Depacketizer::new();
        let mut out = Vec::new();
        d.push(&packet(1, 0, false, &[0x41, 1]), &mut out)
            .expect("valid");
        d.push(&packet(2, 3000, false, &[0x65, 2]), &mut out)
            .expect("valid");
        d.push(&packet(3, 6000, false, &[0x41, 3]), &mut out)
            .expect("valid");
        assert_eq!(out.len(), 1, "the P frame before the IDR is dropped");
        assert_eq!(out[0].timestamp, 3000);
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        let mut d = H264Depacketizer::new();
        let mut out = Vec::new();
        assert!(d.push(&packet(1, 0, true, &[]), &mut out).is_err());
        assert!(
            d.push(&packet(2, 0, true, &[24, 0, 9, 1]), &mut out)
                .is_err()
        );
        assert!(d.push(&packet(3, 0, true, &[28]), &mut out).is_err());
        assert!(d.push(&packet(4, 0, true, &[25, 0]), &mut out).is_err());
        assert!(out.is_empty());
    }
}
