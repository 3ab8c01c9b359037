//! The LL-HLS and HLS packers on access units recorded from ffmpeg's
//! encoders (x264, x265, AAC), their segments read by ffprobe 5.1: the frames
//! that went in come out, with the codecs, in order. H.265 is proven here:
//! ffmpeg 5.1 cannot publish it over RTMP.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use tidewater_core::{Codec, MediaKind, TrackId, TrackInfo};
use tidewater_media::codec::{AdtsHeader, annexb_nals, build_avcc, build_hvcc, to_length_prefixed};
use tidewater_pkg_hls::ll::LlPacker;
use tidewater_pkg_hls::normalize::{TrackSet, Unit};
use tidewater_pkg_hls::playlist::{Flavour, PlaylistState};
use tidewater_pkg_hls::segmenter::Targets;
use tidewater_pkg_hls::ts::TsPacker;
use tidewater_pkg_hls::validate::Tracker;
use tidewater_tests::TempDir;
use tidewater_tests::tools::{encode_adts, encode_annexb, ffprobe_clean};

const FPS: i64 = 25;
const SECONDS: i64 = 7;

/// Access units (canonical form, keyframe flag) and the decoder configuration.
fn video(path: &Path, h265: bool) -> (Bytes, Vec<(Bytes, bool)>) {
    let data = std::fs::read(path).expect("elementary stream");
    let (mut vps, mut sps, mut pps) = (Vec::new(), Vec::new(), Vec::new());
    let mut frames = Vec::new();
    let mut current: Vec<&[u8]> = Vec::new();
    let mut key = false;
    for nal in annexb_nals(&data) {
        let (aud, param, is_key) = if h265 {
            let t = (nal[0] >> 1) & 0x3f;
            match t {
                32 => vps.push(nal),
                33 => sps.push(nal),
                34 => pps.push(nal),
                _ => {}
            }
            (t == 35, (32..=34).contains(&t), (16..=21).contains(&t))
        } else {
            let t = nal[0] & 0x1f;
            match t {
                7 => sps.push(nal),
                8 => pps.push(nal),
                _ => {}
            }
            (t == 9, t == 7 || t == 8, t == 5)
        };
        if aud {
            if !current.is_empty() {
                frames.push((to_length_prefixed(current.drain(..)), key));
            }
            key = false;
            continue;
        }
        if !param {
            key |= is_key;
            current.push(nal);
        }
    }
    if !current.is_empty() {
        frames.push((to_length_prefixed(current.drain(..)), key));
    }
    let config = if h265 {
        build_hvcc(&vps[..1], &sps[..1], &pps[..1]).expect("hvcC")
    } else {
        build_avcc(&sps[..1], &pps[..1]).expect("avcC")
    };
    (config, frames)
}

fn aac(path: &Path) -> (Bytes, Vec<Bytes>) {
    let data = std::fs::read(path).expect("adts");
    let mut frames = Vec::new();
    let mut config = None;
    let mut i = 0;
    while let Some(h) = AdtsHeader::parse(&data[i..]) {
        config.get_or_insert_with(|| Bytes::copy_from_slice(&h.config().to_bytes().expect("asc")));
        frames.push(Bytes::copy_from_slice(
            &data[i + h.header_len..i + h.frame_len],
        ));
        i += h.frame_len;
    }
    (config.expect("ADTS frames"), frames)
}

fn units(v: &[(Bytes, bool)], a: &[Bytes]) -> Vec<Unit> {
    let start = 900_000;
    let mut out = Vec::new();
    let mut ai = 0;
    for (i, (data, key)) in v.iter().enumerate() {
        let t = start + i as i64 * 90_000 / FPS;
        out.push(Unit {
            track: TrackId(1),
            kind: MediaKind::Video,
            driving: true,
            dts: t,
            pts: t,
            t90: t,
            duration: None,
            keyframe: *key,
            payload: data.clone(),
        });
        while ai < a.len() && start + ai as i64 * 1024 * 90_000 / 48_000 <= t {
            let at = start * 48_000 / 90_000 + ai as i64 * 1024;
            out.push(Unit {
                track: TrackId(2),
                kind: MediaKind::Audio,
                driving: false,
                dts: at,
                pts: at,
                t90: at * 90_000 / 48_000,
                duration: Some(1024),
                keyframe: true,
                payload: a[ai].clone(),
            });
            ai += 1;
        }
    }
    out
}

fn probe(file: &Path) -> (Vec<String>, Vec<usize>) {
    let text = ffprobe_clean(
        &[
            "-count_frames",
            "-show_entries",
            "stream=index,codec_name,nb_read_frames",
            "-of",
            "csv=p=0",
        ],
        file,
    );
    // MPEG-TS lists its streams under the program too: one entry per index.
    let streams: std::collections::BTreeMap<usize, (String, usize)> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let [index, codec, frames] = f[..] else {
                return None;
            };
            Some((
                index.parse().ok()?,
                (codec.to_owned(), frames.trim().parse().ok()?),
            ))
        })
        .collect();
    streams.into_values().unzip()
}

fn package(flavour: Flavour, tracks: Arc<TrackSet>, input: Vec<Unit>, out: &Path) -> usize {
    let targets = Targets {
        segment: 180_000,
        part: Some(18_900),
        max_segment: 900_000,
    };
    let mut pl = PlaylistState::new(flavour, 100, 0.21, "t");
    let mut tracker = Tracker::new();
    let mut version = pl.version();
    enum P {
        Ll(LlPacker),
        Ts(TsPacker),
    }
    let mut p = match flavour {
        Flavour::Fmp4 => P::Ll(LlPacker::new(targets)),
        Flavour::Ts => P::Ts(TsPacker::new(targets)),
    };
    match &mut p {
        P::Ll(p) => p.tracks(tracks, &mut pl).expect("tracks"),
        P::Ts(p) => p.tracks(tracks, &mut pl).expect("tracks"),
    }
    for u in input {
        match &mut p {
            P::Ll(p) => p.unit(u, &mut pl).expect("unit"),
            P::Ts(p) => p.unit(u, &mut pl).expect("unit"),
        }
        if pl.version() != version {
            version = pl.version();
            if let Some(text) = pl.render() {
                tracker
                    .update(&text)
                    .unwrap_or_else(|e| panic!("{e}\n{text}"));
            }
        }
    }
    match &mut p {
        P::Ll(p) => p.finish(&mut pl),
        P::Ts(p) => p.finish(&mut pl),
    }
    let mut file = Vec::new();
    if flavour == Flavour::Fmp4 {
        file.extend_from_slice(&pl.init(0).expect("init"));
    }
    let mut segments = 0;
    for s in pl.segments() {
        file.extend_from_slice(&s.data);
        segments += 1;
    }
    std::fs::write(out, file).expect("write");
    segments
}

fn run(h265: bool) {
    let dir = TempDir::new(if h265 { "hls-h265" } else { "hls-h264" });
    let es = dir.file("v.es");
    let adts = dir.file("a.aac");
    encode_annexb(&es, h265, FPS as u32, SECONDS as u32, 50);
    encode_adts(&adts, SECONDS as u32);
    let (vconfig, vframes) = video(&es, h265);
    let (aconfig, aframes) = aac(&adts);
    assert_eq!(vframes.len() as i64, FPS * SECONDS);
    let codec = if h265 { Codec::H265 } else { Codec::H264 };
    let tracks = Arc::new(TrackSet {
        video: Some(TrackInfo::video(TrackId(1), codec, 320, 240).with_config(vconfig)),
        audio: Some(TrackInfo::audio(TrackId(2), Codec::Aac, 48_000, 2).with_config(aconfig)),
    });
    let input = units(&vframes, &aframes);
    let audio_in = input.iter().filter(|u| u.kind == MediaKind::Audio).count();
    assert!(audio_in + 10 > aframes.len());
    for (flavour, name) in [(Flavour::Fmp4, "ll.mp4"), (Flavour::Ts, "hls.ts")] {
        let out = dir.file(name);
        let segments = package(flavour, tracks.clone(), input.clone(), &out);
        assert!(segments >= 3, "{name}: {segments} segments");
        let (codecs, counts) = probe(&out);
        let want = if h265 { "hevc" } else { "h264" };
        assert_eq!(codecs, [want, "aac"], "{name}");
        assert_eq!(
            counts[0],
            vframes.len(),
            "{name}: every video frame decodes"
        );
        assert_eq!(counts[1], audio_in, "{name}: every audio frame decodes");
    }
}

#[test]
fn h264_and_aac_segments_decode() {
    run(false);
}

#[test]
fn h265_and_aac_segments_decode() {
    run(true);
}
