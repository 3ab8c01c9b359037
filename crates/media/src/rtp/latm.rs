//! AAC in LATM (RFC 6416 `MP4A-LATM`, `cpresent=0`): what GStreamer's
//! `rtpmp4apay` sends. The configuration travels out of band as a
//! `StreamMuxConfig` (the `config` parameter), from which
//! [`latm_audio_specific_config`] takes the AudioSpecificConfig; each RTP
//! packet (or run of packets up to the marker bit, for a fragmented frame)
//! carries one `AudioMuxElement`: per subframe a `PayloadLengthInfo` (bytes
//! of 255 and a last byte, summed) and that many bytes of raw AAC.
//!
//! Only the common form is read: `audioMuxVersion` 0, one program and one
//! layer, all streams with the same time framing, and an AudioSpecificConfig
//! of an AAC object type with an explicit sampling frequency index (not
//! the escape) and no extension (AAC-LC and the like). Others are
//! [`RtpError::Unsupported`].
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

use bytes::{Bytes, BytesMut};

use super::{MAX_ACCESS_UNIT, RtpError, RtpPacket, SequenceTracker};

/// Reads bits MSB first; a read past the end is `None`.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Bits { data, pos: 0 }
    }

    fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.pos / 8)?;
        self.pos += 1;
        Some(u32::from((byte >> (7 - (self.pos - 1) % 8)) & 1))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n.min(32)).try_fold(0u32, |v, _| Some((v << 1) | self.bit()?))
    }
}

/// The AudioSpecificConfig inside a `StreamMuxConfig` (the `config`
/// parameter, hex-decoded), and its number of subframes per element;
/// `None` for the forms this module does not read (see the module docs).
pub fn latm_audio_specific_config(stream_mux_config: &[u8]) -> Option<(Bytes, usize)> {
    let mut r = Bits::new(stream_mux_config);
    if r.bit()? != 0 {
        return None; // audioMuxVersion 1
    }
    let same_time_framing = r.bit()?;
    let sub_frames = r.bits(6)? as usize + 1;
    let programs = r.bits(4)?;
    let layers = r.bits(3)?;
    if same_time_framing != 1 || programs != 0 || layers != 0 {
        return None;
    }
    let object_type = r.bits(5)?;
    let frequency_index = r.bits(4)?;
    let channels = r.bits(4)?;
    // GASpecificConfig: frameLengthFlag, dependsOnCoreCoder, extensionFlag.
    let ga = r.bits(3)?;
    if !matches!(object_type, 1..=4 | 6 | 7) || frequency_index >= 13 || ga & 0b011 != 0 {
        return None;
    }
    // A backward-compatible extension (syncExtensionType 0x2b7) may
    // follow: SBR signalled explicitly, as GStreamer does; the core
    // configuration is what decoders need (they find SBR themselves).
    let next = r.bits(11)?;
    let frame_length_type = if next == 0x2b7 {
        if r.bits(5)? != 5 {
            return None;
        }
        if r.bit()? == 1 {
            let index = r.bits(4)?;
            if index == 15 {
                return None;
            }
        }
        r.bits(3)?
    } else {
        next >> 8
    };
    // frameLengthType 0: payload lengths in the elements.
    if frame_length_type != 0 {
        return None;
    }
    let asc = (object_type << 11) | (frequency_index << 7) | (channels << 3) | ga;
    Some((
        Bytes::copy_from_slice(&(asc as u16).to_be_bytes()),
        sub_frames,
    ))
}

/// LATM payloads to raw AAC frames (see the module docs).
#[derive(Debug)]
pub struct LatmDepacketizer {
    sub_frames: usize,
    frames_per_packet_ticks: u32,
    pending: BytesMut,
    pending_ts: u32,
    broken: bool,
    sequence: SequenceTracker,
}

impl LatmDepacketizer {
    /// A depacketizer for elements of `sub_frames` frames of 1024 samples
    /// (the RTP clock is the sample rate).
    pub fn new(sub_frames: usize) -> LatmDepacketizer {
        LatmDepacketizer {
            sub_frames: sub_frames.max(1),
            frames_per_packet_ticks: 1024,
            pending: BytesMut::new(),
            pending_ts: 0,
            broken: false,
            sequence: SequenceTracker::default(),
        }
    }

    /// One packet; the frames it completes go to `out` as (timestamp, AAC).
    pub fn push(
        &mut self,
        packet: &RtpPacket,
        out: &mut Vec<(u32, Bytes)>,
    ) -> Result<(), RtpError> {
        if !self.sequence.next(packet.sequence) {
            // A lost piece: the element being gathered is incomplete.
            self.broken = !self.pending.is_empty();
        }
        if self.pending.is_empty() {
            self.pending_ts = packet.timestamp;
            self.broken = false;
        }
        if self.pending.len() + packet.payload.len() > MAX_ACCESS_UNIT {
            self.pending.clear();
            return Err(RtpError::Malformed("LATM element too large"));
        }
        self.pending.extend_from_slice(&packet.payload);
        if !packet.marker {
            return Ok(());
        }
        let element = self.pending.split().freeze();
        if std::mem::take(&mut self.broken) {
            return Ok(());
        }
        let mut rest = &element[..];
        let mut ts = self.pending_ts;
        for _ in 0..self.sub_frames {
            let mut len = 0usize;
            loop {
                let (&b, tail) = rest
                    .split_first()
                    .ok_or(RtpError::Malformed("LATM length past the end"))?;
                rest = tail;
                len += usize::from(b);
                if b != 255 {
                    break;
                }
            }
            if len > rest.len() {
                return Err(RtpError::Malformed("LATM frame past the end"));
            }
            let (frame, tail) = rest.split_at(len);
            rest = tail;
            if !frame.is_empty() {
                out.push((ts, element.slice_ref(frame)));
            }
            ts = ts.wrapping_add(self.frames_per_packet_ticks);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u16, marker: bool, ts: u32, payload: &[u8]) -> RtpPacket {
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
    fn gstreamers_config_gives_the_audio_specific_config() {
        // rtpmp4apay for avenc_aac at 48 kHz stereo: config=40002320adca00
        // (AAC-LC, then an explicit "no SBR" extension).
        let (asc, subframes) =
            latm_audio_specific_config(&[0x40, 0x00, 0x23, 0x20, 0xad, 0xca, 0x00]).expect("reads");
        assert_eq!(&asc[..], &[0x11, 0x90], "AAC-LC, 48 kHz, 2 channels");
        assert_eq!(subframes, 1);
        // Without the extension (44.1 kHz stereo).
        let (asc, _) =
            latm_audio_specific_config(&[0x40, 0x00, 0x24, 0x20, 0x3f, 0xc0]).expect("reads");
        assert_eq!(&asc[..], &[0x12, 0x10]);
        assert_eq!(
            latm_audio_specific_config(&[0x80, 0, 0, 0]),
            None,
            "version 1"
        );
        assert_eq!(latm_audio_specific_config(&[0x40]), None, "truncated");
    }

    #[test]
    fn frames_come_out_whole_across_fragments_and_lengths_over_255() {
        let mut d = LatmDepacketizer::new(1);
        let mut out = Vec::new();
        let frame = vec![7u8; 300];
        let mut element = vec![255, 45];
        element.extend_from_slice(&frame);
        d.push(&packet(1, false, 1024, &element[..100]), &mut out)
            .expect("valid");
        assert!(out.is_empty());
        d.push(&packet(2, true, 1024, &element[100..]), &mut out)
            .expect("valid");
        assert_eq!(out, vec![(1024, Bytes::from(frame))]);
        // A lost fragment drops the element; the next one gets through.
        d.push(&packet(3, false, 2048, &element[..100]), &mut out)
            .expect("valid");
        d.push(&packet(5, true, 2048, &[3, 1, 2, 3]), &mut out)
            .expect("valid");
        d.push(&packet(6, true, 3072, &[2, 9, 9]), &mut out)
            .expect("valid");
        assert_eq!(out.len(), 2);
        assert_eq!(out[1], (3072, Bytes::from_static(&[9, 9])));
        assert!(d.push(&packet(7, true, 4096, &[9, 1]), &mut out).is_err());
    }
}
