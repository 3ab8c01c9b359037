//! RTP (RFC 3550) packets and the payload formats shared by the RTSP server
//! and, later, WebRTC: depacketizers turn RTP payloads into the kernel's
//! canonical access units (see `tidewater_core`'s frame module) and
//! packetizers do the reverse.
//!
//! | codec | payload format | depacketizer | packetizer |
//! |---|---|---|---|
//! | H.264 | RFC 6184 (single NAL unit, STAP-A, FU-A; packetization-mode 1) | [`h264::H264Depacketizer`] | [`h264::packetize_h264`] |
//! | H.265 | RFC 7798 (single NAL unit, AP, FU; no DONL) | [`h265::H265Depacketizer`] | [`h265::packetize_h265`] |
//! | AAC | RFC 3640 `mpeg4-generic`, AAC-hbr (13-bit sizes, 3-bit indices) | [`aac::AacDepacketizer`] | [`aac::packetize_aac`] |
//! | AAC | RFC 6416 `MP4A-LATM` (`cpresent=0`, AAC-LC) | [`latm::LatmDepacketizer`] | — |
//! | VP8 | RFC 7741 | [`vp8::Vp8Depacketizer`] | [`vp8::packetize_vp8`] |
//! | VP9 | RFC 9628 (base spatial layer only) | [`vp9::Vp9Depacketizer`] | [`vp9::packetize_vp9`] |
//! | AV1 | AOM RTP payload format for AV1 v1.0 | [`av1::Av1Depacketizer`] | [`av1::packetize_av1`] |
//!
//! Everything here is bounded and never panics on network input: a packet
//! that does not parse is an [`RtpError`], an access unit growing past
//! [`MAX_ACCESS_UNIT`] is dropped, and after a gap in sequence numbers the
//! video depacketizer drops everything until the next keyframe.
//!
//! Packetizers produce RTP *payloads* with a marker bit each; the RTP header
//! (sequence number, timestamp, SSRC) is written per receiver with
//! [`write_header`], so that one packetization of a frame serves every
//! receiver of a stream.
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

pub mod aac;
pub mod av1;
pub mod dts;
pub mod frames;
pub mod h264;
pub mod h265;
pub mod latm;
pub mod vp8;
pub mod vp9;

use bytes::{BufMut, Bytes, BytesMut};

/// The largest access unit a depacketizer assembles (8 MiB); larger ones
/// are dropped.
pub const MAX_ACCESS_UNIT: usize = 8 << 20;

/// The RTP header length without CSRCs or extension.
pub const HEADER_LEN: usize = 12;

/// Why an RTP packet or payload was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtpError {
    /// Shorter than its headers say, or not version 2.
    #[error("malformed RTP packet: {0}")]
    Malformed(&'static str),
    /// A payload this depacketizer does not handle.
    #[error("unsupported RTP payload: {0}")]
    Unsupported(&'static str),
}

/// A parsed RTP packet; the payload shares the input buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpPacket {
    /// Marker bit (the last packet of an access unit for video).
    pub marker: bool,
    /// Payload type.
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Media timestamp, in the payload format's clock rate.
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
    /// The payload, without padding.
    pub payload: Bytes,
}

impl RtpPacket {
    /// Parses one RTP packet (RFC 3550 §5.1): CSRCs and a header extension
    /// are skipped, padding removed.
    pub fn parse(packet: &Bytes) -> Result<RtpPacket, RtpError> {
        let head: &[u8; HEADER_LEN] = packet
            .first_chunk()
            .ok_or(RtpError::Malformed("shorter than 12 bytes"))?;
        if head[0] >> 6 != 2 {
            return Err(RtpError::Malformed("version is not 2"));
        }
        let padding = head[0] & 0x20 != 0;
        let extension = head[0] & 0x10 != 0;
        let csrcs = usize::from(head[0] & 0x0f);
        let mut start = HEADER_LEN + 4 * csrcs;
        if extension {
            let &[_, _, len_hi, len_lo] = packet
                .get(start..)
                .and_then(|r| r.first_chunk::<4>())
                .ok_or(RtpError::Malformed("truncated header extension"))?;
            start += 4 + 4 * usize::from(u16::from_be_bytes([len_hi, len_lo]));
        }
        let mut end = packet.len();
        if padding {
            let pad = usize::from(*packet.last().unwrap_or(&0));
            if pad == 0 {
                return Err(RtpError::Malformed("zero padding length"));
            }
            end = end
                .checked_sub(pad)
                .ok_or(RtpError::Malformed("padding longer than the packet"))?;
        }
        if start > end {
            return Err(RtpError::Malformed("headers longer than the packet"));
        }
        Ok(RtpPacket {
            marker: head[1] & 0x80 != 0,
            payload_type: head[1] & 0x7f,
            sequence: u16::from_be_bytes([head[2], head[3]]),
            timestamp: u32::from_be_bytes([head[4], head[5], head[6], head[7]]),
            ssrc: u32::from_be_bytes([head[8], head[9], head[10], head[11]]),
            payload: packet.slice(start..end),
        })
    }
}

/// Writes a 12-byte RTP header (version 2, no padding, extension or CSRCs).
pub fn write_header(
    out: &mut BytesMut,
    marker: bool,
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
) {
    out.put_u8(0x80);
    out.put_u8((u8::from(marker) << 7) | (payload_type & 0x7f));
    out.put_u16(sequence);
    out.put_u32(timestamp);
    out.put_u32(ssrc);
}

/// One RTP payload made by a packetizer, with its marker bit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    /// The marker bit of the packet that carries it.
    pub marker: bool,
    /// The payload bytes.
    pub data: Bytes,
}

/// The timing part of an RTCP sender report (RFC 3550 §6.4.1): which
/// media timestamp was current at which wall-clock (NTP) time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderReport {
    /// The sender's SSRC.
    pub ssrc: u32,
    /// NTP timestamp: seconds since 1900 in the high 32 bits, the fraction in the low 32.
    pub ntp: u64,
    /// The RTP timestamp of the same instant.
    pub rtp_timestamp: u32,
}

/// The first sender report in a compound RTCP packet, if there is one.
pub fn parse_sender_report(mut packet: &[u8]) -> Option<SenderReport> {
    // Every RTCP packet: V=2, P, count; PT; length in 32-bit words minus one.
    for _ in 0..16 {
        let head: &[u8; 4] = packet.first_chunk()?;
        if head[0] >> 6 != 2 {
            return None;
        }
        let len = (usize::from(u16::from_be_bytes([head[2], head[3]])) + 1) * 4;
        let body = packet.get(..len)?;
        if head[1] == 200 {
            let b: &[u8; 20] = body.get(4..)?.first_chunk()?;
            let word = |i: usize| {
                b.get(i..)
                    .and_then(|w| w.first_chunk::<4>())
                    .map_or(0, |w| u32::from_be_bytes(*w))
            };
            return Some(SenderReport {
                ssrc: word(0),
                ntp: (u64::from(word(4)) << 32) | u64::from(word(8)),
                rtp_timestamp: word(12),
            });
        }
        packet = packet.get(len..)?;
    }
    None
}

/// Puts one stream's packets back in sequence order (UDP may reorder
/// them): after a gap, later packets are held waiting for the missing ones
/// (a jitter window) until [`ReorderBuffer::HOLD`] are held or, when the
/// caller gives arrival times ([`push_at`](Self::push_at)),
/// [`ReorderBuffer::WINDOW_TIME`] has passed since the gap was seen
/// ([`poll_timeout`](Self::poll_timeout) /
/// [`handle_timeout`](Self::handle_timeout)); then the gap is given up as
/// lost and what follows is released (a video depacketizer then skips to
/// the next keyframe). Duplicates and packets older than the last one
/// released are dropped.
#[derive(Debug, Default)]
pub struct ReorderBuffer {
    next: Option<u16>,
    slots: std::collections::VecDeque<Option<RtpPacket>>,
    held: usize,
    /// When the oldest gap still waited for was seen.
    gap_since: Option<std::time::Instant>,
}

impl ReorderBuffer {
    /// Packets held behind a gap before it is given up.
    pub const HOLD: usize = 16;
    /// How long a gap is waited for (with arrival times given): reordering
    /// on a network path is a few milliseconds; a lost packet should not
    /// stall the stream for long.
    pub const WINDOW_TIME: std::time::Duration = std::time::Duration::from_millis(50);
    /// A packet this far ahead of the expected one restarts the sequence.
    const WINDOW: u16 = 512;

    /// [`push`](Self::push) of a packet that arrived at `now`: a gap it
    /// opens is waited for at most [`WINDOW_TIME`](Self::WINDOW_TIME).
    pub fn push_at(
        &mut self,
        packet: RtpPacket,
        now: std::time::Instant,
        out: &mut Vec<RtpPacket>,
    ) {
        self.push(packet, out);
        if self.held == 0 {
            self.gap_since = None;
        } else {
            self.gap_since.get_or_insert(now);
            self.handle_timeout(now, out);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called: the end
    /// of the window of the gap being waited for, if any.
    pub fn poll_timeout(&self) -> Option<std::time::Instant> {
        self.gap_since.map(|t| t + Self::WINDOW_TIME)
    }

    /// Gives up the gap being waited for once its window ended at `now`:
    /// the packets held after it are released, up to the next gap (whose
    /// window starts now).
    pub fn handle_timeout(&mut self, now: std::time::Instant, out: &mut Vec<RtpPacket>) {
        if self.poll_timeout().is_some_and(|end| now >= end) {
            self.skip_gap(out);
            self.gap_since = (self.held > 0).then_some(now);
        }
    }

    /// Skips to the first packet held and releases what is in order from it.
    fn skip_gap(&mut self, out: &mut Vec<RtpPacket>) {
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.next = self.next.map(|n| n.wrapping_add(1));
        }
        self.release(out);
    }

    /// Takes one packet; the packets now in order are appended to `out`.
    pub fn push(&mut self, packet: RtpPacket, out: &mut Vec<RtpPacket>) {
        let Some(next) = self.next else {
            self.next = Some(packet.sequence.wrapping_add(1));
            out.push(packet);
            return;
        };
        let ahead = packet.sequence.wrapping_sub(next);
        if ahead >= 0x8000 {
            return; // older than what was released: late or a duplicate
        }
        if ahead >= Self::WINDOW {
            // A jump (a restarted sender, a long loss): release what is held.
            self.flush(out);
            self.next = Some(packet.sequence.wrapping_add(1));
            out.push(packet);
            return;
        }
        let at = usize::from(ahead);
        while self.slots.len() <= at {
            self.slots.push_back(None);
        }
        if let Some(slot) = self.slots.get_mut(at)
            && slot.is_none()
        {
            *slot = Some(packet);
            self.held += 1;
        }
        self.release(out);
        if self.held > Self::HOLD {
            // Give up on the gap: skip to the first packet held.
            self.skip_gap(out);
        }
    }

    fn release(&mut self, out: &mut Vec<RtpPacket>) {
        while let Some(Some(_)) = self.slots.front() {
            if let Some(Some(p)) = self.slots.pop_front() {
                self.held -= 1;
                self.next = Some(p.sequence.wrapping_add(1));
                out.push(p);
            }
        }
    }

    /// Releases everything held, in order, gaps and all.
    pub fn flush(&mut self, out: &mut Vec<RtpPacket>) {
        for p in self.slots.drain(..).flatten() {
            self.next = Some(p.sequence.wrapping_add(1));
            out.push(p);
        }
        self.held = 0;
        self.gap_since = None;
    }
}

/// Tracks sequence numbers: whether a packet follows the previous one.
#[derive(Clone, Copy, Debug, Default)]
pub struct SequenceTracker {
    last: Option<u16>,
}

impl SequenceTracker {
    /// Records `seq`; `false` when packets were lost (or reordered) before it.
    pub fn next(&mut self, seq: u16) -> bool {
        let in_order = self.last.is_none_or(|last| last.wrapping_add(1) == seq);
        self.last = Some(seq);
        in_order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_written_parses_back() {
        let mut out = BytesMut::new();
        write_header(&mut out, true, 96, 65535, 0xdead_beef, 7);
        out.put_slice(b"payload");
        let p = RtpPacket::parse(&out.freeze()).expect("parses");
        assert!(p.marker);
        assert_eq!(
            (p.payload_type, p.sequence, p.timestamp, p.ssrc),
            (96, 65535, 0xdead_beef, 7)
        );
        assert_eq!(&p.payload[..], b"payload");
    }

    #[test]
    fn csrcs_extension_and_padding_are_skipped() {
        let mut raw = vec![0xb1, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        raw.extend_from_slice(&[9, 9, 9, 9]); // one CSRC
        raw.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // extension, 1 word
        raw.extend_from_slice(b"xy");
        raw.extend_from_slice(&[0, 0, 3]); // padding of 3
        let p = RtpPacket::parse(&Bytes::from(raw)).expect("parses");
        assert_eq!(&p.payload[..], b"xy");
    }

    #[test]
    fn bad_packets_are_errors() {
        assert!(RtpPacket::parse(&Bytes::from_static(&[0x80, 0, 0])).is_err());
        assert!(RtpPacket::parse(&Bytes::from_static(&[0x40; 12])).is_err());
        // Padding longer than the packet.
        let mut raw = vec![0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        raw.push(200);
        assert!(RtpPacket::parse(&Bytes::from(raw)).is_err());
        // Extension past the end.
        assert!(
            RtpPacket::parse(&Bytes::from_static(&[
                0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9
            ]))
            .is_err()
        );
    }

    #[test]
    fn a_sender_report_is_found_in_a_compound_packet() {
        // An empty receiver report, then a sender report.
        let mut raw = vec![0x80, 201, 0, 1, 0, 0, 0, 9];
        raw.extend_from_slice(&[0x80, 200, 0, 6, 0, 0, 0, 7]);
        raw.extend_from_slice(&[0, 0, 0, 1, 0x80, 0, 0, 0, 0, 0, 0x0b, 0xb8]);
        raw.extend_from_slice(&[0; 8]);
        let sr = parse_sender_report(&raw).expect("found");
        assert_eq!(
            sr,
            SenderReport {
                ssrc: 7,
                ntp: (1 << 32) | 0x8000_0000,
                rtp_timestamp: 3000
            }
        );
        assert_eq!(parse_sender_report(&raw[..8]), None);
        assert_eq!(parse_sender_report(&raw[..20]), None, "truncated");
        assert_eq!(parse_sender_report(&[0x80, 200, 0xff, 0xff]), None);
    }

    fn seqs(out: &[RtpPacket]) -> Vec<u16> {
        out.iter().map(|p| p.sequence).collect()
    }

    fn numbered(seq: u16) -> RtpPacket {
        RtpPacket {
            marker: false,
            payload_type: 96,
            sequence: seq,
            timestamp: 0,
            ssrc: 1,
            payload: Bytes::new(),
        }
    }

    #[test]
    fn reordered_packets_come_out_in_order_across_the_wrap() {
        let mut r = ReorderBuffer::default();
        let mut out = Vec::new();
        for seq in [65534, 0, 65535, 1, 1, 65535, 3, 2] {
            r.push(numbered(seq), &mut out);
        }
        assert_eq!(
            seqs(&out),
            vec![65534, 65535, 0, 1, 2, 3],
            "duplicates and late packets dropped"
        );
    }

    #[test]
    fn a_lost_packet_is_given_up_after_the_hold() {
        let mut r = ReorderBuffer::default();
        let mut out = Vec::new();
        r.push(numbered(10), &mut out);
        // 11 is lost.
        for seq in 12..12 + ReorderBuffer::HOLD as u16 {
            r.push(numbered(seq), &mut out);
        }
        assert_eq!(seqs(&out), vec![10], "held while 11 may come");
        r.push(numbered(12 + ReorderBuffer::HOLD as u16), &mut out);
        assert_eq!(out.len(), 2 + ReorderBuffer::HOLD);
        assert!(seqs(&out).windows(2).all(|w| w[1] > w[0]));
        // 11 arriving now is too late.
        r.push(numbered(11), &mut out);
        assert_eq!(out.len(), 2 + ReorderBuffer::HOLD);
    }

    #[test]
    fn a_gap_is_waited_for_a_window_of_time_then_given_up() {
        use std::time::{Duration, Instant};
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut r = ReorderBuffer::default();
        let mut out = Vec::new();
        r.push_at(numbered(1), ms(0), &mut out);
        assert_eq!(r.poll_timeout(), None);
        // 2 is late by 10 ms: reordered, not lost.
        r.push_at(numbered(3), ms(1), &mut out);
        assert_eq!(r.poll_timeout(), Some(ms(1) + ReorderBuffer::WINDOW_TIME));
        r.push_at(numbered(2), ms(11), &mut out);
        assert_eq!(seqs(&out), vec![1, 2, 3]);
        assert_eq!(r.poll_timeout(), None);
        // 4 is lost: 5 and 6 wait for the window, then go out without it.
        r.push_at(numbered(5), ms(20), &mut out);
        r.push_at(numbered(6), ms(30), &mut out);
        r.handle_timeout(ms(69), &mut out);
        assert_eq!(seqs(&out), vec![1, 2, 3], "still within the window");
        r.handle_timeout(ms(70), &mut out);
        assert_eq!(seqs(&out), vec![1, 2, 3, 5, 6]);
        assert_eq!(r.poll_timeout(), None);
        // 4 arriving now is too late; 7 follows at once.
        r.push_at(numbered(4), ms(71), &mut out);
        r.push_at(numbered(7), ms(72), &mut out);
        assert_eq!(seqs(&out), vec![1, 2, 3, 5, 6, 7]);
        // A packet arriving after the window ended gives the gap up too.
        r.push_at(numbered(9), ms(80), &mut out);
        r.push_at(numbered(10), ms(200), &mut out);
        assert_eq!(seqs(&out), vec![1, 2, 3, 5, 6, 7, 9, 10]);
    }

    #[test]
    fn a_jump_restarts_the_sequence() {
        let mut r = ReorderBuffer::default();
        let mut out = Vec::new();
        r.push(numbered(1), &mut out);
        r.push(numbered(3), &mut out);
        r.push(numbered(3000), &mut out);
        r.push(numbered(3001), &mut out);
        assert_eq!(seqs(&out), vec![1, 3, 3000, 3001]);
    }

    #[test]
    fn sequence_gaps_are_seen_across_the_wrap() {
        let mut t = SequenceTracker::default();
        assert!(t.next(65534));
        assert!(t.next(65535));
        assert!(t.next(0));
        assert!(!t.next(2));
    }
}
