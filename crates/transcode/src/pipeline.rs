//! One stream's audio conversion: decode, resample to 48 kHz, queue,
//! encode. Sans-IO: packets and their times in, packets and their times
//! out; the caller decides when and on which thread it runs.

use bytes::{Bytes, BytesMut};
use ff::ChannelLayout;
use ff::format::Sample;
use ff::format::sample::Type as Layout;
use ff::software::resampling;
use ffmpeg_next as ff;
use tidewater_core::{Codec, TrackInfo, rescale};
use tidewater_media::codec::{AudioSpecificConfig, make_asc, write_adts};

use crate::error::Error;
use crate::fifo::Fifo;

/// The rate of every output: Opus's only rate, and the rate of the AAC
/// made from Opus (no resampling on that side).
pub const OUTPUT_RATE: u32 = 48_000;
/// Opus bit rate per channel (bit/s): 96 kbit/s for stereo, 64 for mono.
const OPUS_BITRATE: [usize; 2] = [64_000, 96_000];
/// AAC-LC bit rate (bit/s) by channel count.
const AAC_BITRATE: [usize; 2] = [96_000, 128_000];

/// The bitrate of `table` for `channels` (mono or stereo; more are mixed
/// to stereo, none counts as mono).
fn bitrate(table: [usize; 2], channels: usize) -> usize {
    let [mono, stereo] = table;
    if channels <= 1 { mono } else { stereo }
}
/// Samples queued at most between decoder and encoder (per channel): one
/// second, far more than one input packet ever leaves behind.
const FIFO_CAPACITY: usize = OUTPUT_RATE as usize;

/// One encoded packet and its presentation time in [`OUTPUT_RATE`] ticks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Presentation time (48 kHz ticks), on the input's timeline.
    pub pts: i64,
    /// The encoded packet (a raw AAC access unit, or one Opus packet).
    pub data: Bytes,
}

/// The track a conversion of `source` to `target` produces: 48 kHz, the
/// source's channel count capped at two, and for AAC its AudioSpecificConfig.
/// `None` when `target` is not an audio codec this crate makes.
pub fn output_track(source: &TrackInfo, target: Codec) -> Option<TrackInfo> {
    let channels = source_channels(source).clamp(1, 2);
    let mut track = TrackInfo::audio(source.id, target, OUTPUT_RATE, channels);
    track.wrap = tidewater_core::TimestampWrap::None;
    match target {
        Codec::Aac => {
            let asc = make_asc(OUTPUT_RATE, channels)?;
            track.config = Some(Bytes::copy_from_slice(&asc));
            track.bitrate = Some(bitrate(AAC_BITRATE, usize::from(channels)) as u32);
        }
        Codec::Opus => track.bitrate = Some(bitrate(OPUS_BITRATE, usize::from(channels)) as u32),
        _ => return None,
    }
    Some(track)
}

/// The channel count a track announces (its catalog parameters, else its
/// AudioSpecificConfig), 2 when neither says.
fn source_channels(track: &TrackInfo) -> u8 {
    let said = track.audio.map_or(0, |a| a.channels);
    if said > 0 {
        return said;
    }
    track
        .config
        .as_deref()
        .and_then(AudioSpecificConfig::parse)
        .map_or(2, |a| a.channels())
}

/// Initialises libav* once per process.
pub(crate) fn init() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        // libav* would print every bad packet to stderr: errors are
        // reported through this crate's log instead.
        let _ = ff::init();
        ff::util::log::set_level(ff::util::log::Level::Quiet);
    });
}

/// A running conversion of one source track to one target codec.
pub struct Pipeline {
    target: Codec,
    /// The source's timescale, for the input's timestamps.
    timescale: u32,
    /// For an AAC source: what to write ADTS headers from.
    asc: Option<AudioSpecificConfig>,
    decoder: ff::decoder::Audio,
    resampler: Option<Resampler>,
    fifo: Fifo,
    encoder: ff::encoder::audio::Encoder,
    encoder_format: Sample,
    layout: ChannelLayout,
    channels: usize,
    frame_size: usize,
    /// The last input's time (output ticks): older input is dropped.
    last_input: Option<i64>,
    /// Input packets that did not decode (skipped).
    pub(crate) bad_packets: u64,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("target", &self.target)
            .field("timescale", &self.timescale)
            .field("channels", &self.channels)
            .field("frame_size", &self.frame_size)
            .field("queued", &self.fifo.len())
            .finish_non_exhaustive()
    }
}

/// A resampler and the input it was made for (rebuilt when that changes).
struct Resampler {
    from: (Sample, u64, u32),
    context: resampling::Context,
}

impl Pipeline {
    /// A conversion of `source` (AAC or Opus) to `target` (Opus or AAC).
    pub fn new(source: &TrackInfo, target: Codec) -> Result<Pipeline, Error> {
        init();
        let out = output_track(source, target).ok_or(Error::Unsupported {
            what: format!("{} as a target", target.name()),
        })?;
        let channels = usize::from(out.audio.map_or(2, |a| a.channels));
        let (decoder_id, asc) = match source.codec {
            Codec::Aac => {
                let asc = source
                    .config
                    .as_deref()
                    .and_then(AudioSpecificConfig::parse)
                    .ok_or(Error::Unsupported {
                        what: "AAC without a readable AudioSpecificConfig".into(),
                    })?;
                // The decoder is fed ADTS (it takes no configuration
                // otherwise through the safe API): check it can be said so.
                write_adts(&asc, 0, &mut BytesMut::new()).ok_or_else(|| Error::Unsupported {
                    what: format!(
                        "AAC object type {} at {} Hz, {} channels",
                        asc.object_type, asc.sample_rate, asc.channel_config
                    ),
                })?;
                if asc.channel_config == 0 {
                    return Err(Error::Unsupported {
                        what: "AAC with its channels in a program config element".into(),
                    });
                }
                (ff::codec::Id::AAC, Some(asc))
            }
            Codec::Opus => (ff::codec::Id::OPUS, None),
            other => {
                return Err(Error::Unsupported {
                    what: format!("{} as a source", other.name()),
                });
            }
        };
        if source.codec == target {
            return Err(Error::Unsupported {
                what: format!("{} to itself", target.name()),
            });
        }
        let codec = ff::decoder::find(decoder_id).ok_or(Error::Missing {
            what: "decoder",
            name: decoder_id_name(decoder_id),
        })?;
        let decoder = ff::codec::Context::new_with_codec(codec)
            .decoder()
            .audio()
            .map_err(|e| Error::Codec {
                step: "opening the decoder",
                source: e,
            })?;
        let layout = if channels == 1 {
            ChannelLayout::MONO
        } else {
            ChannelLayout::STEREO
        };
        let (name, encoder_format, bitrate) = match target {
            Codec::Opus => (
                "libopus",
                Sample::F32(Layout::Packed),
                bitrate(OPUS_BITRATE, channels),
            ),
            _ => (
                "aac",
                Sample::F32(Layout::Planar),
                bitrate(AAC_BITRATE, channels),
            ),
        };
        let codec = ff::encoder::find_by_name(name).ok_or(Error::Missing {
            what: "encoder",
            name,
        })?;
        let mut setup = ff::codec::Context::new_with_codec(codec)
            .encoder()
            .audio()
            .map_err(|e| Error::Codec {
                step: "making the encoder",
                source: e,
            })?;
        setup.set_rate(OUTPUT_RATE as i32);
        setup.set_channel_layout(layout);
        setup.set_channels(channels as i32);
        setup.set_format(encoder_format);
        setup.set_bit_rate(bitrate);
        setup.set_time_base((1, OUTPUT_RATE as i32));
        let encoder = setup.open_as(codec).map_err(|e| Error::Codec {
            step: "opening the encoder",
            source: e,
        })?;
        let frame_size = match encoder.frame_size() {
            0 => 960,
            n => n as usize,
        };
        Ok(Pipeline {
            target,
            timescale: source.timescale.max(1),
            asc,
            decoder,
            resampler: None,
            // Realigned when the input strays by more than one output frame.
            fifo: Fifo::new(channels, frame_size as i64, FIFO_CAPACITY),
            encoder,
            encoder_format,
            layout,
            channels,
            frame_size,
            last_input: None,
            bad_packets: 0,
        })
    }

    /// The codec made.
    pub fn target(&self) -> Codec {
        self.target
    }

    /// Samples per output packet (960 for Opus, 1 024 for AAC).
    pub fn frame_size(&self) -> usize {
        self.frame_size
    }

    /// Times the output was moved to follow the input's timestamps.
    pub fn realigned(&self) -> u64 {
        self.fifo.realigned
    }

    /// Converts one input packet presented at `pts` (the source track's
    /// timescale), adding the packets it completes to `out`. Input older
    /// than the last one is dropped; a packet that does not decode is
    /// skipped (counted, `Err` for the caller to log) and the stream goes
    /// on with the next.
    pub fn push(&mut self, pts: i64, payload: &[u8], out: &mut Vec<Packet>) -> Result<(), Error> {
        let time = rescale(pts, self.timescale, OUTPUT_RATE);
        if self.last_input.is_some_and(|last| time <= last) {
            return Ok(());
        }
        self.last_input = Some(time);
        let packet = match &self.asc {
            Some(asc) => {
                let mut adts = BytesMut::with_capacity(payload.len() + 7);
                if write_adts(asc, payload.len(), &mut adts).is_none() {
                    self.bad_packets += 1;
                    return Err(Error::BadInput {
                        why: format!("{} bytes is too long for one AAC frame", payload.len()),
                    });
                }
                adts.extend_from_slice(payload);
                ff::Packet::copy(&adts)
            }
            None => ff::Packet::copy(payload),
        };
        if let Err(e) = self.decoder.send_packet(&packet) {
            self.bad_packets += 1;
            // A decoder that refuses input may hold a bad state: start it
            // afresh, the next packet decodes on its own (AAC, Opus).
            self.decoder.flush();
            return Err(Error::BadInput {
                why: format!("the decoder refused it: {e}"),
            });
        }
        let mut offset = 0i64;
        let mut decoded = ff::frame::Audio::empty();
        while self.decoder.receive_frame(&mut decoded).is_ok() {
            let samples = self.resample(&decoded)?;
            let planes: Vec<&[f32]> = samples.iter().map(Vec::as_slice).collect();
            self.fifo.push(time + offset, &planes);
            offset += planes.first().map_or(0, |p| p.len()) as i64;
            self.encode(out)?;
        }
        Ok(())
    }

    /// Decoded samples at 48 kHz in the output's channel count, planar.
    fn resample(&mut self, frame: &ff::frame::Audio) -> Result<Vec<Vec<f32>>, Error> {
        let mut layout = frame.channel_layout();
        if layout.bits() == 0 {
            layout = ChannelLayout::default(i32::from(frame.channels()));
        }
        let from = (frame.format(), layout.bits(), frame.rate());
        let wanted = Sample::F32(Layout::Planar);
        if self.resampler.as_ref().is_none_or(|r| r.from != from) {
            let context = resampling::Context::get(
                frame.format(),
                layout,
                frame.rate(),
                wanted,
                self.layout,
                OUTPUT_RATE,
            )
            .map_err(|e| Error::Codec {
                step: "making the resampler",
                source: e,
            })?;
            self.resampler = Some(Resampler { from, context });
        }
        let Some(resampler) = self.resampler.as_mut() else {
            return Ok(Vec::new());
        };
        // Room for every sample this input makes at the new rate plus what
        // the filter held back, so nothing piles up inside the resampler.
        let room = frame.samples() * OUTPUT_RATE as usize / frame.rate().max(1) as usize + 256;
        let mut input = frame.clone();
        input.set_channel_layout(layout);
        let mut output = ff::frame::Audio::new(wanted, room, self.layout);
        resampler
            .context
            .run(&input, &mut output)
            .map_err(|e| Error::Codec {
                step: "resampling",
                source: e,
            })?;
        let n = output.samples();
        Ok((0..self.channels)
            .map(|c| {
                output
                    .data(c)
                    .get(..n * 4)
                    .unwrap_or_default()
                    .chunks_exact(4)
                    .map(|b| b.try_into().map_or(0.0, f32::from_ne_bytes))
                    .collect()
            })
            .collect())
    }

    /// Encodes every whole frame queued.
    fn encode(&mut self, out: &mut Vec<Packet>) -> Result<(), Error> {
        while let Some((time, planes)) = self.fifo.pop(self.frame_size) {
            let mut frame =
                ff::frame::Audio::new(self.encoder_format, self.frame_size, self.layout);
            frame.set_rate(OUTPUT_RATE);
            frame.set_pts(Some(time));
            if self.encoder_format.is_planar() {
                for (c, plane) in planes.iter().enumerate() {
                    let data = frame.data_mut(c);
                    for (dst, s) in data.chunks_exact_mut(4).zip(plane) {
                        dst.copy_from_slice(&s.to_ne_bytes());
                    }
                }
            } else {
                let data = frame.data_mut(0);
                let mut at = 0;
                for i in 0..self.frame_size {
                    for plane in &planes {
                        if let (Some(dst), Some(s)) = (data.get_mut(at..at + 4), plane.get(i)) {
                            dst.copy_from_slice(&s.to_ne_bytes());
                        }
                        at += 4;
                    }
                }
            }
            self.encoder.send_frame(&frame).map_err(|e| Error::Codec {
                step: "encoding",
                source: e,
            })?;
            let mut packet = ff::Packet::empty();
            while self.encoder.receive_packet(&mut packet).is_ok() {
                if let Some(data) = packet.data() {
                    out.push(Packet {
                        pts: packet.pts().unwrap_or(time),
                        data: Bytes::copy_from_slice(data),
                    });
                }
            }
        }
        Ok(())
    }
}

fn decoder_id_name(id: ff::codec::Id) -> &'static str {
    match id {
        ff::codec::Id::AAC => "aac",
        _ => "opus",
    }
}
