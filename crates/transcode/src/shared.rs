//! One conversion per stream and target codec, however many readers, as a
//! derived output of the kernel.
//!
//! The kernel keeps, per publish generation, one value of each type a
//! reader asks for ([`Subscription::generation_state`]); [`Transcoders`]
//! is that value: weak references to the conversions running for the
//! generation. A reader that needs a codec [`attach`](AudioOutput::attach)es
//! to the running conversion or starts one; the conversion is dropped (its
//! decoder and encoder freed) when the last reader holding it lets go, and
//! with the generation at the latest. A republish is a new generation:
//! readers follow it (the kernel's follow path) and attach anew.
//!
//! Each source frame's converted packets are the frame's derived output in
//! [`format`]`(target)`, made by whichever reader asks first (under the
//! conversion's lock, so the decoder sees frames in stream order) and
//! shared by every other: the work is done once per frame, not per reader.
//! A reader that fell behind and asks for a frame older than the
//! conversion's last input gets nothing for it (no packets), never a
//! second decode.
//!
//! [`Subscription::generation_state`]: tidewater_core::Subscription::generation_state

use std::sync::{Arc, Mutex, Weak};

use bytes::{BufMut, Bytes, BytesMut};
use tidewater_core::{Catalog, Codec, Frame, FrameRef, OutputFormat, TrackInfo};
use tracing::{info, warn};

use crate::pipeline::{Packet, Pipeline, output_track};

/// The derived-output format of a frame converted to `target`.
pub fn format(target: Codec) -> OutputFormat {
    const FORMAT: OutputFormat = OutputFormat::new("transcoded-audio");
    FORMAT.with_param(match target {
        Codec::Opus => 1,
        Codec::Aac => 2,
        _ => 0,
    })
}

/// A publish generation's running conversions (kept by the kernel as the
/// generation's state: see the module docs).
#[derive(Debug, Default)]
pub struct Transcoders {
    running: Mutex<Vec<(Codec, Weak<Shared>)>>,
    /// Per target codec, the time of the last packet made in this
    /// generation: a conversion started again after its readers left (its
    /// first packets reach back by the encoder's delay) never hands out a
    /// packet at or before one already handed out.
    last_pts: Mutex<Vec<(Codec, i64)>>,
}

impl Transcoders {
    /// Keeps the packets after the last one made for `target`.
    fn keep_later(&self, target: Codec, packets: &mut Vec<Packet>) {
        let mut last = self.last_pts.lock().unwrap_or_else(|p| p.into_inner());
        let at = match last.iter().position(|(c, _)| *c == target) {
            Some(i) => i,
            None => {
                last.push((target, i64::MIN));
                last.len() - 1
            }
        };
        let Some((_, entry)) = last.get_mut(at) else {
            return;
        };
        packets.retain(|p| p.pts > *entry);
        if let Some(p) = packets.last() {
            *entry = p.pts;
        }
    }
}

/// One conversion shared by a stream's readers.
#[derive(Debug)]
struct Shared {
    target: Codec,
    /// The generation's conversions (for the last packet time made).
    running: Arc<Transcoders>,
    /// The stream, for the log.
    label: String,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The source track the pipeline was made for.
    source: Option<TrackInfo>,
    pipeline: Option<Pipeline>,
    /// Whether a failure to start was logged (once per source track).
    failed: bool,
    /// Packets skipped so far (logged at the first and every 500th).
    skipped: u64,
    packets: Vec<Packet>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        info!(stream = %self.label, "transcode: audio to {} stopped (no reader needs it)", self.target.name());
    }
}

/// A reader's hold on its stream's conversion to one codec: cheap to keep,
/// and the conversion runs while any reader holds one.
#[derive(Clone, Debug)]
pub struct AudioOutput {
    shared: Arc<Shared>,
}

impl AudioOutput {
    /// The generation's conversion to `target` (Opus or AAC), started now
    /// if no reader holds one. `label` names the stream in the log.
    pub fn attach(running: &Arc<Transcoders>, target: Codec, label: &str) -> AudioOutput {
        let mut list = running.running.lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|(_, weak)| weak.strong_count() > 0);
        if let Some(shared) = list
            .iter()
            .find(|(codec, _)| *codec == target)
            .and_then(|(_, weak)| weak.upgrade())
        {
            return AudioOutput { shared };
        }
        info!(stream = %label, "transcode: audio to {} started for a reader", target.name());
        let shared = Arc::new(Shared {
            target,
            running: Arc::clone(running),
            label: label.to_owned(),
            state: Mutex::default(),
        });
        list.push((target, Arc::downgrade(&shared)));
        AudioOutput { shared }
    }

    /// The codec made.
    pub fn target(&self) -> Codec {
        self.shared.target
    }

    /// The track the packets belong to, for a source track: what a muxer
    /// announces in place of the source's.
    pub fn output_track(&self, source: &TrackInfo) -> Option<TrackInfo> {
        output_track(source, self.shared.target)
    }

    /// The converted packets of an audio frame, as the shared derived
    /// buffer ([`packets`] reads it). Empty while the conversion waits for
    /// more input, for a frame older than the last converted, and when the
    /// source cannot be converted (logged once).
    pub fn convert(&self, frame: FrameRef<'_>) -> Bytes {
        frame.derived(format(self.shared.target), |f, catalog| {
            self.shared.make(f, catalog)
        })
    }
}

impl Shared {
    /// Runs the conversion on one source frame (under the lock: frames in order).
    fn make(&self, frame: &Frame, catalog: &Catalog) -> Bytes {
        let Some(source) = catalog.track(frame.track) else {
            return Bytes::new();
        };
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let state = &mut *state;
        if state.source.as_ref() != Some(source) {
            // The first frame, or a new catalog changed the track.
            state.source = Some(source.clone());
            state.failed = false;
            state.pipeline = match Pipeline::new(source, self.target) {
                Ok(p) => Some(p),
                Err(e) => {
                    warn!(stream = %self.label, "transcode: {} audio cannot be converted to {}: {e}; readers that need it get no audio",
                        source.codec.name(), self.target.name());
                    state.failed = true;
                    None
                }
            };
        }
        let Some(pipeline) = state.pipeline.as_mut() else {
            return Bytes::new();
        };
        state.packets.clear();
        if let Err(e) = pipeline.push(frame.pts, &frame.payload, &mut state.packets) {
            state.skipped += 1;
            if state.skipped % 500 == 1 {
                warn!(stream = %self.label, skipped = state.skipped, "transcode: {e}");
            }
        }
        self.running.keep_later(self.target, &mut state.packets);
        encode_packets(&state.packets)
    }
}

/// The derived buffer of packets: per packet its time (8 bytes), length
/// (4 bytes) and bytes, big-endian.
fn encode_packets(packets: &[Packet]) -> Bytes {
    let mut out = BytesMut::with_capacity(packets.iter().map(|p| 12 + p.data.len()).sum());
    for p in packets {
        out.put_i64(p.pts);
        out.put_u32(p.data.len() as u32);
        out.put_slice(&p.data);
    }
    out.freeze()
}

/// The packets of a buffer [`AudioOutput::convert`] returned, in order;
/// their times are in 48 kHz ticks ([`crate::OUTPUT_RATE`]).
pub fn packets(buffer: &Bytes) -> impl Iterator<Item = Packet> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let (pts, len) = buffer.get(at..at + 12)?.split_first_chunk::<8>()?;
        let pts = *pts;
        let len = u32::from_be_bytes(len.try_into().ok()?) as usize;
        let end = at.checked_add(12 + len).filter(|e| *e <= buffer.len())?;
        let packet = Packet {
            pts: i64::from_be_bytes(pts),
            data: buffer.slice(at + 12..end),
        };
        at = end;
        Some(packet)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_round_trips() {
        let ps = vec![
            Packet {
                pts: -5,
                data: Bytes::from_static(b"ab"),
            },
            Packet {
                pts: 1 << 40,
                data: Bytes::new(),
            },
        ];
        let buf = encode_packets(&ps);
        assert_eq!(packets(&buf).collect::<Vec<_>>(), ps);
        // A cut buffer yields the whole packets before the cut only.
        let cut = buf.slice(..buf.len() - 1);
        assert_eq!(packets(&cut).count(), 1);
    }

    #[test]
    fn one_conversion_per_target_while_held() {
        let running = Arc::new(Transcoders::default());
        let a = AudioOutput::attach(&running, Codec::Opus, "live/a");
        let b = AudioOutput::attach(&running, Codec::Opus, "live/a");
        let c = AudioOutput::attach(&running, Codec::Aac, "live/a");
        assert!(Arc::ptr_eq(&a.shared, &b.shared));
        assert!(!Arc::ptr_eq(&a.shared, &c.shared));
        let weak = Arc::downgrade(&a.shared);
        drop((a, b));
        assert_eq!(weak.strong_count(), 0, "stopped when the last reader left");
        let d = AudioOutput::attach(&running, Codec::Opus, "live/a");
        assert_eq!(d.target(), Codec::Opus);
    }

    #[test]
    fn a_restarted_conversion_never_steps_back() {
        let running = Transcoders::default();
        let packet = |pts| Packet {
            pts,
            data: Bytes::new(),
        };
        let mut first = vec![packet(0), packet(960), packet(1920)];
        running.keep_later(Codec::Opus, &mut first);
        assert_eq!(first.len(), 3);
        // Started again: its first packets reach back before 1920.
        let mut again = vec![packet(1500), packet(1920), packet(2460)];
        running.keep_later(Codec::Opus, &mut again);
        assert_eq!(again, vec![packet(2460)]);
        // Another target is kept apart.
        let mut aac = vec![packet(0)];
        running.keep_later(Codec::Aac, &mut aac);
        assert_eq!(aac.len(), 1);
    }
}
