//! Frame assembly shared by the VP8, VP9 and AV1 depacketizers: packets of
//! one RTP timestamp are one frame (temporal unit), ended by the marker bit
//! or the next timestamp; after a sequence gap or a malformed packet the
//! frame is dropped and so is everything until the next keyframe (the
//! H.264 path's rule). Each payload format says where its descriptor ends,
//! whether a packet begins a frame, and how the frame's bytes become the
//! canonical form.
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

use super::{MAX_ACCESS_UNIT, RtpError, RtpPacket, SequenceTracker};

/// One assembled frame in the kernel's canonical form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoFrame {
    /// The RTP timestamp (90 kHz).
    pub timestamp: u32,
    /// The frame: a VP8 or VP9 frame as decoders take it, or an AV1
    /// temporal unit of OBUs with size fields and no temporal delimiter.
    pub data: Bytes,
    /// Whether a decoder can start at it.
    pub keyframe: bool,
}

/// What a payload format does with its packets.
pub trait PayloadFormat: Default + std::fmt::Debug {
    /// The payload after its descriptor, whether the packet begins a frame,
    /// or `None` when the packet is to be ignored (a layer not kept).
    fn strip(&mut self, payload: &Bytes) -> Result<Option<(bool, Bytes)>, RtpError>;
    /// The frame in canonical form from its packets' payloads (descriptors
    /// stripped) and whether it is a keyframe; `None` when malformed.
    fn frame(&mut self, parts: &[Bytes]) -> Option<(Bytes, bool)>;
}

/// Reassembles frames of payload format `F` (see the module docs).
#[derive(Debug, Default)]
pub struct FrameDepacketizer<F: PayloadFormat> {
    format: F,
    seq: SequenceTracker,
    parts: Vec<Bytes>,
    len: usize,
    timestamp: Option<u32>,
    broken: bool,
    /// Whether the frame's first packet was a frame start.
    started: bool,
    /// Set until the first keyframe and after every loss.
    seen_keyframe: bool,
    dropped: u64,
}

impl<F: PayloadFormat> FrameDepacketizer<F> {
    /// A depacketizer waiting for its first keyframe.
    pub fn new() -> Self {
        Self::default()
    }

    /// Frames dropped so far (lost packets, malformed ones, or frames
    /// before a keyframe).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Takes one packet (in sequence order); complete frames are appended
    /// to `out`.
    pub fn push(&mut self, packet: &RtpPacket, out: &mut Vec<VideoFrame>) -> Result<(), RtpError> {
        if !self.seq.next(packet.sequence) {
            self.broken |= !self.parts.is_empty() || self.timestamp == Some(packet.timestamp);
            self.seen_keyframe = false;
        }
        if self.timestamp.is_some_and(|ts| ts != packet.timestamp) {
            self.finish(out);
        }
        self.timestamp = Some(packet.timestamp);
        match self.format.strip(&packet.payload) {
            Ok(Some((start, body))) => {
                if self.parts.is_empty() {
                    self.started = start;
                }
                if self.len + body.len() > MAX_ACCESS_UNIT {
                    self.broken = true;
                } else if !self.broken {
                    self.len += body.len();
                    self.parts.push(body);
                }
            }
            Ok(None) => {}
            Err(e) => {
                self.broken = true;
                if packet.marker {
                    self.finish(out);
                }
                return Err(e);
            }
        }
        if packet.marker {
            self.finish(out);
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<VideoFrame>) {
        let parts = std::mem::take(&mut self.parts);
        let broken = std::mem::take(&mut self.broken);
        self.len = 0;
        let Some(timestamp) = self.timestamp.take() else {
            return;
        };
        if parts.is_empty() && !broken {
            return;
        }
        let assembled = if broken || !self.started {
            None
        } else {
            self.format.frame(&parts)
        };
        match assembled {
            Some((data, keyframe)) if keyframe || self.seen_keyframe => {
                self.seen_keyframe = true;
                out.push(VideoFrame {
                    timestamp,
                    data,
                    keyframe,
                });
            }
            Some(_) => self.dropped += 1,
            None => {
                self.dropped += 1;
                self.seen_keyframe = false;
            }
        }
    }
}

/// The parts of a frame as one buffer (no copy for a one-packet frame).
pub(crate) fn concat(parts: &[Bytes]) -> Bytes {
    match parts {
        [one] => one.clone(),
        _ => Bytes::from(parts.concat()),
    }
}
