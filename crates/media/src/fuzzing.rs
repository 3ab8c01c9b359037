//! Entry points shared by the fuzz targets (`fuzz/`) and their stable
//! property-test twins. Not a stable API.
#![allow(
    clippy::expect_used,
    reason = "the fuzz entry points' own harness: a broken property must stop the run"
)]

use bytes::Bytes;
use tidewater_core::{Codec, TrackId, TrackInfo};

use crate::codec;
use crate::ts::{DemuxEvent, TsDemuxer};

/// Feeds `data` to a fresh [`TsDemuxer`] as SRT datagrams would arrive: the
/// first byte picks the read size (so every split point gets exercised), the
/// rest is the byte stream. Never panics; returns the demuxer's error for
/// bad input. Asserts what it holds stays bounded and every frame it emits
/// is well formed: of an announced track, video in 4-byte length-prefixed
/// NAL units that fill the payload exactly.
pub fn ts_demux(data: &[u8]) -> crate::Result<()> {
    let Some((&first, stream)) = data.split_first() else {
        return Ok(());
    };
    let step = usize::from(first) * 7 + 1;
    let mut d = TsDemuxer::new();
    let mut tracks: Vec<TrackInfo> = Vec::new();
    for piece in stream.chunks(step) {
        d.push(piece)?;
        drain(&mut d, &mut tracks);
        assert!(d.buffered() <= 64 << 20, "unbounded buffering");
    }
    d.flush();
    drain(&mut d, &mut tracks);
    Ok(())
}

fn drain(d: &mut TsDemuxer, tracks: &mut Vec<TrackInfo>) {
    while let Some(ev) = d.poll() {
        match ev {
            DemuxEvent::Tracks(t) => {
                assert!(
                    tidewater_core::Catalog::validate(&t).is_ok(),
                    "invalid track set"
                );
                *tracks = t;
            }
            DemuxEvent::Frame(f) => {
                assert!(
                    tracks.iter().any(|t| t.id == f.track),
                    "frame before its track"
                );
                assert!((0..1 << 33).contains(&f.pts) && (0..1 << 33).contains(&f.dts));
                if matches!(f.codec, Codec::H264 | Codec::H265) {
                    let nals = codec::length_prefixed_nals(&f.payload, 4);
                    assert!(
                        nals.is_some_and(|n| !n.is_empty()),
                        "malformed video payload"
                    );
                }
            }
        }
    }
}

/// The codec records a publisher controls, picked by the first byte (mod
/// 6), the rest being the record: `avcC`, `hvcC`, AudioSpecificConfig, an
/// ADTS header, an `OpusHead` (or `dOps` body), and a bare H.264/H.265 SPS.
/// Each is parsed, and what parses is built again where the crate builds
/// that record (the same parameter sets, config or header come back), then
/// used as a track's configuration by every consumer of the catalog: the
/// fMP4 init segment, the RFC 6381 codec string and the TS muxer. Never
/// panics.
pub fn codec_record(data: &[u8]) {
    let Some((&first, record)) = data.split_first() else {
        return;
    };
    let config = Bytes::copy_from_slice(record);
    let track = match first % 6 {
        0 => {
            if let Some(c) = codec::parse_avcc(record) {
                assert!(matches!(c.length_size, 1 | 2 | 4));
                let sps: Vec<&[u8]> = c.sps.iter().map(|b| &b[..]).collect();
                let pps: Vec<&[u8]> = c.pps.iter().map(|b| &b[..]).collect();
                if let Some(built) = codec::build_avcc(&sps, &pps) {
                    let again = codec::parse_avcc(&built).expect("a built avcC parses");
                    assert_eq!((again.sps, again.pps), (c.sps, c.pps), "avcC round trip");
                }
                let _ = codec::with_four_byte_lengths(&config, 4);
            }
            TrackInfo::video(TrackId(1), Codec::H264, 0, 0).with_config(config)
        }
        1 => {
            if let Some(c) = codec::parse_hvcc(record) {
                assert!(matches!(c.length_size, 1 | 2 | 4));
                let list = |l: &[Bytes]| l.iter().map(|b| b.to_vec()).collect::<Vec<_>>();
                let (vps, sps, pps) = (list(&c.vps), list(&c.sps), list(&c.pps));
                if let Some(built) = codec::build_hvcc(&refs(&vps), &refs(&sps), &refs(&pps)) {
                    let again = codec::parse_hvcc(&built).expect("a built hvcC parses");
                    assert_eq!(
                        (again.vps, again.sps, again.pps),
                        (c.vps, c.sps, c.pps),
                        "hvcC round trip"
                    );
                }
                let _ = codec::with_four_byte_lengths(&config, codec::HVCC_LENGTH_SIZE_INDEX);
            }
            TrackInfo::video(TrackId(1), Codec::H265, 0, 0).with_config(config)
        }
        2 => {
            let mut info = TrackInfo::audio(TrackId(2), Codec::Aac, 48_000, 2);
            if let Some(asc) = codec::AudioSpecificConfig::parse(record) {
                if let Some(bytes) = asc.to_bytes() {
                    assert_eq!(
                        codec::AudioSpecificConfig::parse(&bytes),
                        Some(asc),
                        "AudioSpecificConfig round trip"
                    );
                }
                if let Some((rate, channels)) = codec::parse_asc(record) {
                    info = TrackInfo::audio(TrackId(2), Codec::Aac, rate, channels);
                }
            }
            info.with_config(config)
        }
        3 => {
            if let Some(h) = codec::AdtsHeader::parse(record) {
                assert!(h.frame_len >= h.header_len && (1..=4).contains(&h.blocks));
                let asc = h.config();
                let mut out = bytes::BytesMut::new();
                if codec::write_adts(&asc, h.frame_len - h.header_len, &mut out).is_some() {
                    let again =
                        codec::AdtsHeader::parse(&out).expect("a written ADTS header parses");
                    assert_eq!(again.header_len, 7);
                    assert_eq!(again.frame_len, h.frame_len - h.header_len + 7);
                    assert_eq!(again.sample_rate, h.sample_rate);
                    assert_eq!(again.channel_config, h.channel_config);
                }
                if let Some(bytes) = asc.to_bytes() {
                    let _ = codec::AudioSpecificConfig::parse(&bytes);
                }
            }
            TrackInfo::audio(TrackId(2), Codec::Aac, 48_000, 2)
        }
        4 => TrackInfo::audio(TrackId(2), Codec::Opus, 48_000, 2).with_config(config),
        _ => {
            let _ = codec::h264_sps_size(record);
            let _ = codec::h265_sps_size(record);
            if codec::parse_h265_sps(record).is_some() {
                let _ = codec::build_hvcc(&[], &[record], &[]);
            }
            if let Some(avcc) = codec::build_avcc(&[record], &[]) {
                let _ = codec::parse_avcc(&avcc);
            }
            TrackInfo::video(TrackId(1), Codec::H264, 0, 0)
        }
    };
    let _ = crate::fmp4::init_segment(&[&track]);
    let _ = crate::rfc6381::codec_string(&track);
    let _ = crate::ts::TsMuxer::new(std::slice::from_ref(&track));
}

fn refs(list: &[Vec<u8>]) -> Vec<&[u8]> {
    list.iter().map(|b| &b[..]).collect()
}

/// Feeds a packet stream to the VP8, VP9 or AV1 depacketizer (the first
/// byte picks it) and the codec-record readers: after it, each packet is a
/// length byte and an RTP packet. Never panics; asserts every frame is
/// within [`crate::rtp::MAX_ACCESS_UNIT`] and not empty, and that a
/// keyframe's configuration record, when one is read from it, parses as
/// the fMP4 sample entry needs.
pub fn rtp_video_frames(data: &[u8]) {
    use crate::rtp::av1::Av1Depacketizer;
    use crate::rtp::frames::VideoFrame;
    use crate::rtp::vp8::Vp8Depacketizer;
    use crate::rtp::vp9::Vp9Depacketizer;
    use crate::rtp::{MAX_ACCESS_UNIT, RtpPacket};

    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let mut vp8 = Vp8Depacketizer::new();
    let mut vp9 = Vp9Depacketizer::new();
    let mut av1 = Av1Depacketizer::new();
    let mut frames: Vec<VideoFrame> = Vec::new();
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (packet, next) = tail.split_at(len);
        rest = next;
        let Ok(packet) = RtpPacket::parse(&Bytes::copy_from_slice(packet)) else {
            continue;
        };
        let codec = match first % 3 {
            0 => {
                let _ = vp8.push(&packet, &mut frames);
                Codec::Vp8
            }
            1 => {
                let _ = vp9.push(&packet, &mut frames);
                Codec::Vp9
            }
            _ => {
                let _ = av1.push(&packet, &mut frames);
                Codec::Av1
            }
        };
        for f in frames.drain(..) {
            assert!(!f.data.is_empty() && f.data.len() <= MAX_ACCESS_UNIT);
            let config = match codec {
                Codec::Vp8 => codec::vpx::vp8_keyframe(&f.data).map(|k| k.vpcc),
                Codec::Vp9 => codec::vpx::vp9_keyframe(&f.data).map(|k| k.vpcc),
                _ => codec::av1::av1_sequence(&f.data).map(|s| s.av1c),
            };
            if let Some(config) = config {
                let info = TrackInfo::video(TrackId(1), codec, 16, 16).with_config(config);
                crate::fmp4::init_segment(&[&info]).expect("a record read from a keyframe");
            }
        }
    }
}
