//! H.265 over RTP (RFC 7798, without DONL: `sprop-max-don-diff` 0): single
//! NAL unit packets, aggregation packets (AP) and fragmentation units (FU).
//!
//! Like [`h264`](super::h264): access units are gathered per RTP timestamp
//! (ended by the marker bit or the next timestamp), the depacketizer starts
//! at an IRAP picture, and after a sequence gap it drops everything until
//! the next IRAP picture.
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

/// NAL unit types (ITU-T H.265 Table 7-1, RFC 7798) this module looks at.
pub mod nal_type {
    /// The first IRAP (random access) picture type (BLA_W_LP).
    pub const IRAP_FIRST: u8 = 16;
    /// The last IRAP type (reserved IRAP 23).
    pub const IRAP_LAST: u8 = 23;
    /// Video parameter set.
    pub const VPS: u8 = 32;
    /// Sequence parameter set.
    pub const SPS: u8 = 33;
    /// Picture parameter set.
    pub const PPS: u8 = 34;
    /// Access unit delimiter.
    pub const AUD: u8 = 35;
    /// RFC 7798 aggregation packet.
    pub const AP: u8 = 48;
    /// RFC 7798 fragmentation unit.
    pub const FU: u8 = 49;
}

/// The NAL unit type of an H.265 NAL unit.
pub fn nal_type_of(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| (b >> 1) & 0x3f)
}

/// The NAL units of one access unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct H265AccessUnit {
    /// The RTP timestamp (90 kHz).
    pub timestamp: u32,
    /// The NAL units, in order, without start codes or lengths.
    pub nals: Vec<Bytes>,
    /// Whether it holds an IRAP picture.
    pub keyframe: bool,
}

impl H265AccessUnit {
    /// The access unit in the kernel's canonical form: 4-byte lengths,
    /// access unit delimiters left out.
    pub fn to_hvcc(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.nals.iter().map(|n| n.len() + 4).sum());
        for nal in self
            .nals
            .iter()
            .filter(|n| nal_type_of(n) != Some(nal_type::AUD))
        {
            out.put_u32(nal.len() as u32);
            out.put_slice(nal);
        }
        out.freeze()
    }

    /// The NAL units of type `kind` (VPS, SPS, PPS, …) it carries in band.
    pub fn nals_of_type(&self, kind: u8) -> impl Iterator<Item = &Bytes> {
        self.nals
            .iter()
            .filter(move |n| nal_type_of(n) == Some(kind))
    }
}

/// Reassembles H.265 access units from RTP packets (see the module docs).
#[derive(Debug)]
pub struct H265Depacketizer {
    seq: SequenceTracker,
    nals: Vec<Bytes>,
    len: usize,
    timestamp: Option<u32>,
    fragment: Option<BytesMut>,
    broken: bool,
    need_keyframe: bool,
    dropped: u64,
}

impl Default for H265Depacketizer {
    fn default() -> Self {
        Self::new()
    }
}

impl H265Depacketizer {
    /// A depacketizer waiting for its first IRAP picture.
    pub fn new() -> Self {
        H265Depacketizer {
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

    /// Access units dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Takes one packet; complete access units are appended to `out`.
    pub fn push(
        &mut self,
        packet: &RtpPacket,
        out: &mut Vec<H265AccessUnit>,
    ) -> Result<(), RtpError> {
        if !self.seq.next(packet.sequence) {
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
        let &[h0, h1] = payload
            .first_chunk::<2>()
            .ok_or(RtpError::Malformed("H.265 payload shorter than its header"))?;
        match (h0 >> 1) & 0x3f {
            0..=47 => {
                self.fragment = None;
                self.add(payload.clone());
            }
            nal_type::AP => {
                self.fragment = None;
                let mut rest = payload.slice(2..);
                while !rest.is_empty() {
                    let size = rest
                        .first_chunk::<2>()
                        .map(|s| usize::from(u16::from_be_bytes(*s)))
                        .ok_or(RtpError::Malformed("truncated AP size"))?;
                    if rest.get(2..2 + size).is_none() {
                        return Err(RtpError::Malformed("AP unit past the end"));
                    }
                    if size >= 2 {
                        self.add(rest.slice(2..2 + size));
                    }
                    rest = rest.slice(2 + size..);
                }
            }
            nal_type::FU => {
                let fu = *payload.get(2).ok_or(RtpError::Malformed("truncated FU"))?;
                let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
                let data = payload.get(3..).unwrap_or_default();
                if start {
                    let mut nal = BytesMut::with_capacity(data.len() * 4 + 2);
                    nal.put_u8((h0 & 0x81) | ((fu & 0x3f) << 1));
                    nal.put_u8(h1);
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
                    self.broken = true;
                    return Ok(());
                }
                if end && let Some(nal) = self.fragment.take() {
                    self.add(nal.freeze());
                }
            }
            _ => return Err(RtpError::Unsupported("H.265 PACI or reserved payload type")),
        }
        Ok(())
    }

    fn add(&mut self, nal: Bytes) {
        if self.len + nal.len() + 4 > MAX_ACCESS_UNIT {
            self.broken = true;
            return;
        }
        // Parameter sets belong before the picture's first slice; a
        // payloader repeating them before every IRAP slice (rtph265pay with
        // config-interval=-1, as rtph264pay: see the H.264 depacketizer)
        // would make one picture read as two: a repeat is dropped, a new
        // set moved ahead of the slices.
        if matches!(
            nal_type_of(&nal),
            Some(nal_type::VPS | nal_type::SPS | nal_type::PPS)
        ) && let Some(first_slice) = self
            .nals
            .iter()
            .position(|n| nal_type_of(n).is_some_and(|t| t < 32))
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

    fn finish(&mut self, out: &mut Vec<H265AccessUnit>) {
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
        let keyframe = nals.iter().any(|n| {
            nal_type_of(n)
                .is_some_and(|t| (nal_type::IRAP_FIRST..=nal_type::IRAP_LAST).contains(&t))
        });
        if broken || (self.need_keyframe && !keyframe) {
            self.dropped += 1;
            if broken {
                self.need_keyframe = true;
            }
            return;
        }
        self.need_keyframe = false;
        out.push(H265AccessUnit {
            timestamp,
            nals,
            keyframe,
        });
    }
}

/// Splits an access unit's NAL units into RTP payloads of at most
/// `max_payload` bytes (single NAL unit packets, or FUs for larger ones);
/// the last payload has the marker bit. NAL units shorter than their
/// 2-byte header are skipped; `max_payload` is raised to 16 if lower.
pub fn packetize_h265<'a>(
    nals: impl IntoIterator<Item = &'a [u8]>,
    max_payload: usize,
    out: &mut Vec<Payload>,
) {
    let max = max_payload.max(16);
    let first = out.len();
    for nal in nals {
        let Some((header, body)) = nal.split_first_chunk::<2>() else {
            continue;
        };
        if nal.len() <= max {
            out.push(Payload {
                marker: false,
                data: Bytes::copy_from_slice(nal),
            });
            continue;
        }
        let kind = (header[0] >> 1) & 0x3f;
        let chunks = body.chunks(max - 3);
        let count = chunks.len();
        for (i, chunk) in chunks.enumerate() {
            let mut fu = BytesMut::with_capacity(chunk.len() + 3);
            fu.put_u8((header[0] & 0x81) | (nal_type::FU << 1));
            fu.put_u8(header[1]);
            let mut fu_header = kind;
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

    #[test]
    fn parameter_sets_repeated_between_slices_go_before_the_first() {
        let vps = [0x40, 0x01, 0x0c];
        let sps = [0x42, 0x01, 0x01, 0x60];
        let pps = [0x44, 0x01, 0xc1];
        // Two IDR_W_RADL (19) slices, the parameter sets repeated between.
        let (slice0, slice1) = ([0x26, 0x01, 0x80, 1], [0x26, 0x01, 0x40, 2]);
        let mut payloads = Vec::new();
        packetize_h265(
            [&vps[..], &sps, &pps, &slice0, &vps, &sps, &pps, &slice1],
            1000,
            &mut payloads,
        );
        let mut d = H265Depacketizer::new();
        let mut out = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            d.push(&packet(i as u16, 90, p.marker, &p.data), &mut out)
                .expect("valid");
        }
        assert_eq!(out.len(), 1);
        let nals: Vec<&[u8]> = out[0].nals.iter().map(|n| &n[..]).collect();
        assert_eq!(nals, [&vps[..], &sps, &pps, &slice0, &slice1]);
    }

    #[test]
    fn packetized_access_units_come_back_whole() {
        let vps = [0x40, 0x01, 0x0c];
        let sps = [0x42, 0x01, 0x01, 0x60];
        let pps = [0x44, 0x01, 0xc1];
        // IDR_W_RADL (19): header 0x26 0x01.
        let idr: Vec<u8> = [0x26, 0x01]
            .into_iter()
            .chain((0..4000).map(|i| i as u8))
            .collect();
        let mut payloads = Vec::new();
        packetize_h265(
            [&vps[..], &sps[..], &pps[..], &idr[..]],
            1000,
            &mut payloads,
        );
        assert!(payloads.len() > 4);
        assert!(payloads.iter().all(|p| p.data.len() <= 1000));
        let mut d = H265Depacketizer::new();
        let mut out = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            d.push(&packet(i as u16, 90, p.marker, &p.data), &mut out)
                .expect("valid");
        }
        assert_eq!(out.len(), 1);
        assert!(out[0].keyframe);
        assert_eq!(out[0].nals.last().map(|n| n.to_vec()), Some(idr));
        assert_eq!(out[0].nals_of_type(nal_type::SPS).count(), 1);
        assert_eq!(&out[0].to_hvcc()[..6], &[0, 0, 0, 3, 0x40, 0x01]);
    }

    #[test]
    fn aggregation_packets_are_split_and_loss_waits_for_irap() {
        let mut d = H265Depacketizer::new();
        let mut out = Vec::new();
        // AP: VPS and an IDR slice.
        let ap = [0x60, 0x01, 0, 3, 0x40, 0x01, 0x0c, 0, 3, 0x26, 0x01, 9];
        d.push(&packet(1, 0, true, &ap), &mut out).expect("valid");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].nals.len(), 2);
        // A trailing picture (type 1), then a gap: dropped until the next IRAP.
        d.push(&packet(2, 3000, true, &[0x02, 0x01, 1]), &mut out)
            .expect("valid");
        d.push(&packet(4, 9000, true, &[0x02, 0x01, 3]), &mut out)
            .expect("valid");
        d.push(&packet(5, 12000, true, &[0x26, 0x01, 4]), &mut out)
            .expect("valid");
        let ts: Vec<u32> = out.iter().map(|a| a.timestamp).collect();
        assert_eq!(ts, vec![0, 3000, 12000]);
    }

    #[test]
    fn malformed_payloads_are_errors() {
        let mut d = H265Depacketizer::new();
        let mut out = Vec::new();
        assert!(d.push(&packet(1, 0, true, &[0x26]), &mut out).is_err());
        assert!(
            d.push(&packet(2, 0, true, &[0x60, 0x01, 0, 9, 1]), &mut out)
                .is_err()
        );
        assert!(
            d.push(&packet(3, 0, true, &[0x62, 0x01]), &mut out)
                .is_err()
        );
        assert!(
            d.push(&packet(4, 0, true, &[0x64, 0x01, 0]), &mut out)
                .is_err()
        );
        assert!(out.is_empty());
    }
}
