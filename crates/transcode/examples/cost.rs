//! CPU per transcoded stream: `cargo run --release -p tidewater-transcode
//! --example cost -- [seconds]` puts `seconds` (default 60) of a 44.1 kHz
//! stereo sine, AAC-encoded beforehand, through AAC → Opus, and 48 kHz
//! stereo Opus through Opus → AAC, on one thread, and prints the CPU time
//! each conversion took per second of audio (the share of one core a
//! real-time stream costs).

use std::time::Instant;

use bytes::Bytes;
use ff::ChannelLayout;
use ff::format::Sample;
use ff::format::sample::Type as Layout;
use ffmpeg_next as ff;
use tidewater_core::{Codec, TrackId, TrackInfo};
use tidewater_media::codec::make_asc;
use tidewater_transcode::Pipeline;

/// CPU time of this thread (user + system) in seconds, from /proc.
fn thread_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime is the
    // 12th and stime the 13th of them, in clock ticks (100 a second).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    (fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0)) as f64 / 100.0
}

fn encode(name: &str, format: Sample, rate: u32, seconds: u32) -> Vec<(i64, Bytes)> {
    let codec = ff::encoder::find_by_name(name).expect("encoder");
    let mut setup = ff::codec::Context::new_with_codec(codec)
        .encoder()
        .audio()
        .expect("audio encoder");
    setup.set_rate(rate as i32);
    setup.set_channel_layout(ChannelLayout::STEREO);
    setup.set_channels(2);
    setup.set_format(format);
    setup.set_bit_rate(128_000);
    setup.set_time_base((1, rate as i32));
    let mut encoder = setup.open_as(codec).expect("opens");
    let size = encoder.frame_size() as usize;
    let total = (rate * seconds) as usize;
    let mut out = Vec::new();
    let mut packet = ff::Packet::empty();
    let mut at = 0;
    while at + size <= total {
        let mut frame = ff::frame::Audio::new(format, size, ChannelLayout::STEREO);
        frame.set_rate(rate);
        frame.set_pts(Some(at as i64));
        let sample = |i: usize| {
            (0.4 * (2.0 * std::f64::consts::PI * 440.0 * (at + i) as f64 / f64::from(rate)).sin())
                as f32
        };
        if format.is_planar() {
            for c in 0..2 {
                for (i, dst) in frame.data_mut(c).chunks_exact_mut(4).take(size).enumerate() {
                    dst.copy_from_slice(&sample(i).to_ne_bytes());
                }
            }
        } else {
            for (i, dst) in frame.data_mut(0).chunks_exact_mut(8).take(size).enumerate() {
                let s = sample(i).to_ne_bytes();
                dst[..4].copy_from_slice(&s);
                dst[4..].copy_from_slice(&s);
            }
        }
        encoder.send_frame(&frame).expect("encodes");
        while encoder.receive_packet(&mut packet).is_ok() {
            let data = Bytes::copy_from_slice(packet.data().unwrap_or_default());
            out.push((packet.pts().unwrap_or(0), data));
        }
        at += size;
    }
    out
}

fn run(what: &str, track: &TrackInfo, target: Codec, input: &[(i64, Bytes)], seconds: u32) {
    let mut pipeline = Pipeline::new(track, target).expect("pipeline");
    let mut out = Vec::new();
    let (cpu, wall) = (thread_cpu(), Instant::now());
    for (pts, data) in input {
        out.clear();
        pipeline.push(*pts, data, &mut out).expect("converts");
    }
    let (cpu, wall) = (thread_cpu() - cpu, wall.elapsed().as_secs_f64());
    println!(
        "{what}: {seconds} s of audio in {cpu:.2} s CPU ({wall:.2} s wall): {:.2} % of a core per stream",
        cpu / f64::from(seconds) * 100.0
    );
}

fn main() {
    let seconds: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    // Any pipeline initialises libav*; this one also checks the encoders exist.
    let probe = TrackInfo::audio(TrackId(2), Codec::Opus, 48_000, 2);
    Pipeline::new(&probe, Codec::Aac).expect("libavcodec with aac and libopus");
    let aac = encode("aac", Sample::F32(Layout::Planar), 44_100, seconds);
    let asc = make_asc(44_100, 2).expect("asc");
    let track = TrackInfo::audio(TrackId(2), Codec::Aac, 44_100, 2)
        .with_config(Bytes::copy_from_slice(&asc));
    run(
        "AAC 44.1 kHz stereo -> Opus 48 kHz 96 kbit/s",
        &track,
        Codec::Opus,
        &aac,
        seconds,
    );
    let opus = encode("libopus", Sample::F32(Layout::Packed), 48_000, seconds);
    run(
        "Opus 48 kHz stereo -> AAC-LC 48 kHz 128 kbit/s",
        &probe,
        Codec::Aac,
        &opus,
        seconds,
    );
}
