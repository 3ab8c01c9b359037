//! A sine through the conversions, checked after decoding: frequency,
//! length and times.

use bytes::{Bytes, BytesMut};
use ff::ChannelLayout;
use ff::format::Sample;
use ff::format::sample::Type as Layout;
use ffmpeg_next as ff;
use tidewater_core::{Codec, TrackId, TrackInfo};
use tidewater_media::codec::{AudioSpecificConfig, make_asc, write_adts};

use crate::pipeline::{OUTPUT_RATE, Packet, Pipeline, output_track};

const FREQ: f64 = 440.0;

fn layout(channels: usize) -> ChannelLayout {
    if channels == 1 {
        ChannelLayout::MONO
    } else {
        ChannelLayout::STEREO
    }
}

/// `seconds` of a 440 Hz sine at `rate`, planar.
fn sine(rate: u32, channels: usize, seconds: f64) -> Vec<Vec<f32>> {
    let n = (f64::from(rate) * seconds) as usize;
    let one: Vec<f32> = (0..n)
        .map(|i| {
            (0.5 * (2.0 * std::f64::consts::PI * FREQ * i as f64 / f64::from(rate)).sin()) as f32
        })
        .collect();
    vec![one; channels]
}

/// Encodes planar samples with libavcodec's `name` encoder: the packets
/// and their times in `rate` ticks.
fn encode(name: &str, format: Sample, rate: u32, planes: &[Vec<f32>]) -> Vec<(i64, Bytes)> {
    crate::pipeline::init();
    let channels = planes.len();
    let codec = ff::encoder::find_by_name(name).expect("encoder");
    let mut setup = ff::codec::Context::new_with_codec(codec)
        .encoder()
        .audio()
        .expect("audio encoder");
    setup.set_rate(rate as i32);
    setup.set_channel_layout(layout(channels));
    setup.set_channels(channels as i32);
    setup.set_format(format);
    setup.set_bit_rate(128_000);
    setup.set_time_base((1, rate as i32));
    let mut encoder = setup.open_as(codec).expect("opens");
    let size = encoder.frame_size() as usize;
    let mut out = Vec::new();
    let mut packet = ff::Packet::empty();
    let total = planes[0].len();
    let mut at = 0;
    while at + size <= total {
        let mut frame = ff::frame::Audio::new(format, size, layout(channels));
        frame.set_rate(rate);
        frame.set_pts(Some(at as i64));
        if format.is_planar() {
            for (c, plane) in planes.iter().enumerate() {
                for (dst, s) in frame
                    .data_mut(c)
                    .chunks_exact_mut(4)
                    .zip(&plane[at..at + size])
                {
                    dst.copy_from_slice(&s.to_ne_bytes());
                }
            }
        } else {
            let data = frame.data_mut(0);
            for i in 0..size {
                for (c, plane) in planes.iter().enumerate() {
                    let o = (i * channels + c) * 4;
                    data[o..o + 4].copy_from_slice(&plane[at + i].to_ne_bytes());
                }
            }
        }
        encoder.send_frame(&frame).expect("encodes");
        while encoder.receive_packet(&mut packet).is_ok() {
            let data = Bytes::copy_from_slice(packet.data().expect("data"));
            out.push((packet.pts().expect("pts"), data));
        }
        at += size;
    }
    out
}

/// Decodes packets (AAC with this AudioSpecificConfig, or Opus): the
/// first channel's samples and the rate.
fn decode(asc: Option<&[u8]>, packets: &[Packet]) -> (Vec<f32>, u32) {
    let (id, asc) = match asc {
        Some(asc) => (ff::codec::Id::AAC, AudioSpecificConfig::parse(asc)),
        None => (ff::codec::Id::OPUS, None),
    };
    crate::pipeline::init();
    let codec = ff::decoder::find(id).expect("decoder");
    let mut decoder = ff::codec::Context::new_with_codec(codec)
        .decoder()
        .audio()
        .expect("opens");
    let mut samples = Vec::new();
    let mut rate = 0;
    let mut frame = ff::frame::Audio::empty();
    for p in packets {
        let packet = match &asc {
            Some(asc) => {
                let mut adts = BytesMut::new();
                write_adts(asc, p.data.len(), &mut adts).expect("adts");
                adts.extend_from_slice(&p.data);
                ff::Packet::copy(&adts)
            }
            None => ff::Packet::copy(&p.data),
        };
        decoder.send_packet(&packet).expect("decodes");
        while decoder.receive_frame(&mut frame).is_ok() {
            rate = frame.rate();
            let n = frame.samples();
            assert_eq!(frame.format(), Sample::F32(Layout::Planar));
            samples.extend(
                frame.data(0)[..n * 4]
                    .chunks_exact(4)
                    .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
            );
        }
    }
    (samples, rate)
}

/// The frequency of a decoded sine, from its upward zero crossings over
/// its middle (away from the codecs' start-up).
fn frequency(samples: &[f32], rate: u32) -> f64 {
    let middle = &samples[samples.len() / 4..samples.len() * 3 / 4];
    let ups: Vec<usize> = middle
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] < 0.0 && w[1] >= 0.0)
        .map(|(i, _)| i)
        .collect();
    let (first, last) = (ups[0], ups[ups.len() - 1]);
    (ups.len() - 1) as f64 * f64::from(rate) / (last - first) as f64
}

fn check_times(packets: &[Packet], step: i64, first_near: i64) {
    assert!(
        (packets[0].pts - first_near).abs() <= 2 * step,
        "first packet at {} for input starting at {first_near}",
        packets[0].pts
    );
    for w in packets.windows(2) {
        assert_eq!(w[1].pts - w[0].pts, step, "contiguous times");
    }
}

#[test]
fn a_sine_through_aac_to_opus_keeps_its_frequency_and_length() {
    // (AAC rate, channels, the track's timescale: the rate, or RTMP's ms)
    for (rate, channels, timescale) in [(44_100, 2, 44_100), (44_100, 1, 1000), (48_000, 2, 48_000)]
    {
        let seconds = 2.0;
        let input = sine(rate, channels, seconds);
        let aac = encode("aac", Sample::F32(Layout::Planar), rate, &input);
        let asc = make_asc(rate, channels as u8).expect("asc");
        let track = TrackInfo::audio(TrackId(2), Codec::Aac, rate, channels as u8)
            .with_timescale(timescale)
            .with_config(Bytes::copy_from_slice(&asc));
        let mut pipeline = Pipeline::new(&track, Codec::Opus).expect("AAC to Opus");
        assert_eq!(pipeline.frame_size(), 960);
        let mut out = Vec::new();
        // A start at 10 s: the output is on the input's timeline.
        let start = 10 * i64::from(rate);
        for (pts, data) in &aac {
            let pts = (start + pts) * i64::from(timescale) / i64::from(rate);
            pipeline.push(pts, data, &mut out).expect("converts");
        }
        check_times(&out, 960, 10 * 48_000 - 1024 * 48_000 / i64::from(rate));
        assert_eq!(pipeline.realigned(), 0, "{rate} Hz in {timescale} ticks");
        let (decoded, out_rate) = decode(None, &out);
        assert_eq!(out_rate, OUTPUT_RATE);
        let f = frequency(&decoded, out_rate);
        assert!((f - FREQ).abs() < 1.0, "{f} Hz from {rate} Hz x{channels}");
        // Each AAC packet is 1 024 input samples; what is left over is less
        // than one Opus frame, plus the codecs' delays (AAC priming 1 024,
        // Opus look-ahead 312).
        let fed = aac.len() as f64 * 1024.0 * 48_000.0 / f64::from(rate);
        let missing = fed - decoded.len() as f64;
        assert!(
            (-400.0..=960.0 + 1200.0).contains(&missing),
            "{} samples decoded of {fed}",
            decoded.len()
        );
    }
}

#[test]
fn a_sine_through_opus_to_aac_keeps_its_frequency_and_length() {
    let input = sine(48_000, 2, 2.0);
    let opus = encode("libopus", Sample::F32(Layout::Packed), 48_000, &input);
    let track = TrackInfo::audio(TrackId(2), Codec::Opus, 48_000, 2);
    let mut pipeline = Pipeline::new(&track, Codec::Aac).expect("Opus to AAC");
    assert_eq!(pipeline.frame_size(), 1024);
    let mut out = Vec::new();
    for (pts, data) in &opus {
        pipeline
            .push(*pts + 96_000, data, &mut out)
            .expect("converts");
    }
    check_times(&out, 1024, 96_000 - 1024);
    let out_track = output_track(&track, Codec::Aac).expect("AAC track");
    let asc = out_track.config.expect("an AudioSpecificConfig");
    assert_eq!(&asc[..], &[0x11, 0x90], "AAC-LC, 48 kHz, stereo");
    let (decoded, rate) = decode(Some(&asc), &out);
    assert_eq!(rate, 48_000);
    let f = frequency(&decoded, rate);
    assert!((f - FREQ).abs() < 1.0, "{f} Hz");
    let fed = opus.len() as f64 * 960.0;
    let missing = fed - decoded.len() as f64;
    assert!(
        (-400.0..=1024.0 + 1400.0).contains(&missing),
        "{} samples decoded of {fed}",
        decoded.len()
    );
}

#[test]
fn bad_packets_are_skipped_and_the_stream_goes_on() {
    let input = sine(44_100, 2, 1.0);
    let aac = encode("aac", Sample::F32(Layout::Planar), 44_100, &input);
    let asc = make_asc(44_100, 2).expect("asc");
    let track = TrackInfo::audio(TrackId(2), Codec::Aac, 44_100, 2)
        .with_config(Bytes::copy_from_slice(&asc));
    let mut pipeline = Pipeline::new(&track, Codec::Opus).expect("AAC to Opus");
    let mut out = Vec::new();
    let mut errors = 0;
    for (i, (pts, data)) in aac.iter().enumerate() {
        let garbage: Vec<u8> = (0..data.len()).map(|b| (b * 7 + i) as u8).collect();
        let payload: &[u8] = if i % 5 == 2 { &garbage } else { data };
        if pipeline.push(*pts, payload, &mut out).is_err() {
            errors += 1;
        }
    }
    // Too long for ADTS, and empty: refused without a panic.
    assert!(
        pipeline
            .push(1_000_000, &vec![0u8; 9000], &mut out)
            .is_err()
    );
    let _ = pipeline.push(1_001_024, &[], &mut out);
    assert!(
        pipeline.bad_packets >= 1,
        "the too-long packet is counted ({errors} refused in the stream)"
    );
    assert!(out.len() > 30, "{} packets", out.len());
    // An older packet than the last is dropped, not decoded again.
    let before = out.len();
    pipeline
        .push(0, &aac[1].1, &mut out)
        .expect("dropped quietly");
    assert_eq!(out.len(), before);
}

#[test]
fn unsupported_sources_are_refused_by_name() {
    let track = TrackInfo::audio(TrackId(2), Codec::Aac, 44_100, 2);
    let e = Pipeline::new(&track, Codec::Opus).expect_err("no config");
    assert!(e.to_string().contains("AudioSpecificConfig"), "{e}");
    let opus = TrackInfo::audio(TrackId(2), Codec::Opus, 48_000, 2);
    assert!(Pipeline::new(&opus, Codec::Opus).is_err());
    assert!(output_track(&opus, Codec::H264).is_none());
}

#[test]
fn minutes_of_aac_to_opus_stay_on_the_input_timeline() {
    // Two minutes of 48 kHz stereo AAC with RTMP's millisecond times: the
    // Opus times are contiguous and end within a frame of the input's.
    let seconds = 120.0;
    let input = sine(48_000, 2, seconds);
    let aac = encode("aac", Sample::F32(Layout::Planar), 48_000, &input);
    let asc = make_asc(48_000, 2).expect("asc");
    let track = TrackInfo::audio(TrackId(2), Codec::Aac, 48_000, 2)
        .with_timescale(1000)
        .with_config(Bytes::copy_from_slice(&asc));
    let mut pipeline = Pipeline::new(&track, Codec::Opus).expect("AAC to Opus");
    let mut out = Vec::new();
    for (pts, data) in &aac {
        pipeline.push(pts / 48, data, &mut out).expect("converts");
    }
    check_times(&out, 960, -1024);
    assert_eq!(pipeline.realigned(), 0);
    let (last_in, _) = aac[aac.len() - 1];
    let last_out = out[out.len() - 1].pts;
    assert!(
        (last_in - last_out).abs() <= 2 * 960,
        "after {seconds} s: input at {last_in}, output at {last_out} (48 kHz ticks)"
    );
}
