//! AAC over RTP in RFC 3640 `mpeg4-generic`, mode AAC-hbr (and any mode
//! described by `sizelength` / `indexlength` / `indexdeltalength` without
//! CTS, DTS or RAP fields): AU headers, then the access units.
//!
//! One packet carries one or more whole access units, or one fragment of a
//! large one (then the packets up to the marker bit carry the rest). The
//! `n`-th unit of a packet has the packet's timestamp plus `n` times the
//! frame length (1024 samples).
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

/// Samples per AAC frame (AAC-LC).
pub const AAC_FRAME_SAMPLES: u32 = 1024;

/// The AU-header layout of an `mpeg4-generic` stream, from its SDP `fmtp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuHeaderLayout {
    /// `sizelength`: bits of the AU size (13 for AAC-hbr).
    pub size_length: u8,
    /// `indexlength`: bits of the first AU index (3 for AAC-hbr).
    pub index_length: u8,
    /// `indexdeltalength`: bits of later AU index deltas (3 for AAC-hbr).
    pub index_delta_length: u8,
}

impl AuHeaderLayout {
    /// AAC-hbr: 13-bit sizes, 3-bit indices.
    pub const AAC_HBR: AuHeaderLayout = AuHeaderLayout {
        size_length: 13,
        index_length: 3,
        index_delta_length: 3,
    };
}

/// Reassembles AAC access units from RFC 3640 packets.
#[derive(Debug)]
pub struct AacDepacketizer {
    layout: AuHeaderLayout,
    seq: SequenceTracker,
    /// A fragmented unit being gathered: its timestamp, announced size, bytes so far.
    fragment: Option<(u32, usize, BytesMut)>,
    dropped: u64,
}

impl AacDepacketizer {
    /// A depacketizer for this AU-header layout. Layouts with fields over 16
    /// bits or without a size field are refused when packets arrive.
    pub fn new(layout: AuHeaderLayout) -> Self {
        AacDepacketizer {
            layout,
            seq: SequenceTracker::default(),
            fragment: None,
            dropped: 0,
        }
    }

    /// Access units (or fragments) lost or refused so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Takes one packet; complete access units with their RTP timestamps are
    /// appended to `out`.
    pub fn push(
        &mut self,
        packet: &RtpPacket,
        out: &mut Vec<(u32, Bytes)>,
    ) -> Result<(), RtpError> {
        if !self.seq.next(packet.sequence) && self.fragment.take().is_some() {
            self.dropped += 1;
        }
        let l = self.layout;
        if l.size_length == 0
            || l.size_length > 16
            || l.index_length > 16
            || l.index_delta_length > 16
        {
            return Err(RtpError::Unsupported("AU-header layout"));
        }
        let p = &packet.payload;
        let header_bits = p
            .first_chunk::<2>()
            .map(|b| usize::from(u16::from_be_bytes(*b)))
            .ok_or(RtpError::Malformed("no AU-headers-length"))?;
        let header_bytes = header_bits.div_ceil(8);
        let headers = p
            .get(2..2 + header_bytes)
            .ok_or(RtpError::Malformed("AU headers past the end"))?;
        let mut data = p.slice(2 + header_bytes..);
        let mut bits = BitReader {
            data: headers,
            pos: 0,
            limit: header_bits,
        };
        let mut sizes = Vec::new();
        let mut first = true;
        while bits.remaining() > 0 {
            let size = bits
                .read(l.size_length)
                .ok_or(RtpError::Malformed("truncated AU header"))?;
            let index_len = if first {
                l.index_length
            } else {
                l.index_delta_length
            };
            bits.read(index_len)
                .ok_or(RtpError::Malformed("truncated AU header"))?;
            first = false;
            sizes.push(size as usize);
            if sizes.len() > 64 {
                return Err(RtpError::Malformed("more than 64 AU headers"));
            }
        }
        // A fragment of one large unit.
        if let [size] = sizes[..]
            && (size > data.len() || self.fragment.is_some())
        {
            if size > MAX_ACCESS_UNIT {
                self.fragment = None;
                self.dropped += 1;
                return Err(RtpError::Malformed("AU larger than the limit"));
            }
            let frag = match self.fragment.take() {
                Some((ts, total, buf)) if ts == packet.timestamp && total == size => {
                    (ts, total, buf)
                }
                Some(_) => {
                    self.dropped += 1;
                    (packet.timestamp, size, BytesMut::with_capacity(size))
                }
                None => (packet.timestamp, size, BytesMut::with_capacity(size)),
            };
            let (ts, total, mut buf) = frag;
            if buf.len() + data.len() > total {
                self.dropped += 1;
                return Err(RtpError::Malformed("fragments longer than their AU"));
            }
            buf.put_slice(&data);
            if buf.len() == total {
                out.push((ts, buf.freeze()));
            } else if packet.marker {
                self.dropped += 1;
            } else {
                self.fragment = Some((ts, total, buf));
            }
            return Ok(());
        }
        for (i, size) in sizes.into_iter().enumerate() {
            if size > data.len() {
                self.dropped += 1;
                return Err(RtpError::Malformed("AU past the end"));
            }
            let ts = packet
                .timestamp
                .wrapping_add(AAC_FRAME_SAMPLES.wrapping_mul(i as u32));
            out.push((ts, data.split_to(size)));
        }
        Ok(())
    }
}

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    limit: usize,
}

impl BitReader<'_> {
    fn remaining(&self) -> usize {
        self.limit.saturating_sub(self.pos)
    }

    fn read(&mut self, n: u8) -> Option<u32> {
        let n = usize::from(n);
        if n > self.remaining() {
            return None;
        }
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.data.get(self.pos / 8)?;
            v = (v << 1) | u32::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Some(v)
    }
}

/// One access unit as an AAC-hbr payload (one 16-bit AU header, size and
/// index 0) with the marker bit; `None` for a unit of 8192 bytes or more,
/// which a 13-bit size cannot carry.
pub fn packetize_aac(au: &[u8]) -> Option<Payload> {
    let size = u16::try_from(au.len()).ok().filter(|s| *s < 1 << 13)?;
    let mut out = BytesMut::with_capacity(au.len() + 4);
    out.put_u16(16);
    out.put_u16(size << 3);
    out.put_slice(au);
    Some(Payload {
        marker: true,
        data: out.freeze(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u16, ts: u32, marker: bool, payload: Vec<u8>) -> RtpPacket {
        RtpPacket {
            marker,
            payload_type: 97,
            sequence: seq,
            timestamp: ts,
            ssrc: 1,
            payload: Bytes::from(payload),
        }
    }

    #[test]
    fn one_unit_round_trips() {
        let au = vec![0x21u8; 300];
        let p = packetize_aac(&au).expect("fits");
        let mut d = AacDepacketizer::new(AuHeaderLayout::AAC_HBR);
        let mut out = Vec::new();
        d.push(&packet(1, 1000, p.marker, p.data.to_vec()), &mut out)
            .expect("valid");
        assert_eq!(out, vec![(1000, Bytes::from(au))]);
        assert!(packetize_aac(&[0; 8192]).is_none());
    }

    #[test]
    fn several_units_get_consecutive_timestamps() {
        // Two headers (32 bits): sizes 2 and 3.
        let payload = vec![0, 32, 0, 2 << 3, 0, 3 << 3, 1, 1, 2, 2, 2];
        let mut d = AacDepacketizer::new(AuHeaderLayout::AAC_HBR);
        let mut out = Vec::new();
        d.push(&packet(1, 5000, true, payload), &mut out)
            .expect("valid");
        assert_eq!(
            out,
            vec![
                (5000, Bytes::from_static(&[1, 1])),
                (6024, Bytes::from_static(&[2, 2, 2]))
            ]
        );
    }

    #[test]
    fn a_fragmented_unit_is_gathered_and_a_lost_fragment_drops_it() {
        let header = |size: u16| vec![0, 16, (size >> 5) as u8, (size << 3) as u8];
        let mut d = AacDepacketizer::new(AuHeaderLayout::AAC_HBR);
        let mut out = Vec::new();
        let mut a = header(6);
        a.extend_from_slice(&[1, 2, 3]);
        let mut b = header(6);
        b.extend_from_slice(&[4, 5, 6]);
        d.push(&packet(1, 0, false, a.clone()), &mut out)
            .expect("valid");
        d.push(&packet(2, 0, true, b.clone()), &mut out)
            .expect("valid");
        assert_eq!(out, vec![(0, Bytes::from_static(&[1, 2, 3, 4, 5, 6]))]);
        out.clear();
        d.push(&packet(3, 1024, false, a), &mut out).expect("valid");
        d.push(&packet(5, 1024, true, b), &mut out).expect("valid");
        assert!(out.is_empty());
        assert!(d.dropped() >= 1);
    }

    #[test]
    fn malformed_payloads_are_errors() {
        let mut d = AacDepacketizer::new(AuHeaderLayout::AAC_HBR);
        let mut out = Vec::new();
        assert!(d.push(&packet(1, 0, true, vec![0]), &mut out).is_err());
        assert!(
            d.push(&packet(2, 0, true, vec![0, 64, 0]), &mut out)
                .is_err()
        );
        assert!(
            d.push(&packet(3, 0, true, vec![0, 32, 0, 16, 0, 16, 1]), &mut out)
                .is_err()
        );
        assert!(out.is_empty());
    }
}
