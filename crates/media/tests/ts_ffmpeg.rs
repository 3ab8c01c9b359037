//! MPEG-TS against ffmpeg/ffprobe 5.1: streams ffmpeg muxes (x264 and x265
//! with B-frames, AAC) demux to the frames ffprobe counts, and the same
//! frames muxed again by `TsMuxer` decode in ffprobe with the same codecs,
//! counts and monotonic timestamps.

use std::path::Path;

use bytes::BytesMut;
use tidewater_core::{Codec, Frame, TrackInfo};
use tidewater_media::ts::{DemuxEvent, TsDemuxer, TsMuxer};
use tidewater_tests::TempDir;
use tidewater_tests::tools::{count_frames, encode_sine, encode_ts, frame_pts};

/// A 2 s TS from ffmpeg: 50 pictures (GOP 25, B-frames) and AAC at 48 kHz.
fn source(dir: &TempDir, vcodec: &str) -> Vec<u8> {
    let path = dir.file("in.ts");
    let picture = "testsrc=size=320x240:rate=25";
    encode_ts(&path, picture, 2, vcodec, 25, &["-bf", "2"]);
    std::fs::read(&path).expect("read ts")
}

fn demux(data: &[u8]) -> (Vec<TrackInfo>, Vec<Frame>) {
    let mut d = TsDemuxer::new();
    let mut tracks = Vec::new();
    let mut frames = Vec::new();
    for chunk in data.chunks(1316) {
        d.push(chunk).expect("ffmpeg's TS demuxes");
        while let Some(ev) = d.poll() {
            match ev {
                DemuxEvent::Tracks(t) => tracks.push(t),
                DemuxEvent::Frame(f) => frames.push(f),
            }
        }
    }
    d.flush();
    while let Some(ev) = d.poll() {
        if let DemuxEvent::Frame(f) = ev {
            frames.push(f);
        }
    }
    assert_eq!(tracks.len(), 1, "one catalog: {tracks:?}");
    (tracks.remove(0), frames)
}

/// (codec name, frames decoded) of each stream, and (media type, pts) of each frame.
type Probe = (Vec<(String, u64)>, Vec<(String, i64)>);

fn probe(path: &Path) -> Probe {
    (count_frames(path), frame_pts(path))
}

fn check(vcodec: &str, codec: Codec, name: &str) {
    let dir = TempDir::new(&format!("ts-{name}"));
    let input = source(&dir, vcodec);
    let (tracks, frames) = demux(&input);
    assert_eq!(tracks[0].codec, codec);
    assert_eq!(
        tracks[0].video.map(|v| (v.width, v.height)),
        Some((320, 240))
    );
    assert_eq!(tracks[1].codec, Codec::Aac);
    assert_eq!(
        tracks[1].audio.map(|a| (a.sample_rate, a.channels)),
        Some((48_000, 1))
    );
    let video: Vec<&Frame> = frames.iter().filter(|f| f.codec == codec).collect();
    let audio = frames.iter().filter(|f| f.codec == Codec::Aac).count();
    let (in_streams, _) = probe(&dir.file("in.ts"));
    assert_eq!(
        video.len() as u64,
        in_streams[0].1,
        "video frames as ffprobe counts them"
    );
    assert_eq!(
        audio as u64, in_streams[1].1,
        "audio frames as ffprobe counts them"
    );
    let keys: Vec<usize> = video
        .iter()
        .enumerate()
        .filter(|(_, f)| f.is_keyframe())
        .map(|(i, _)| i)
        .collect();
    // Two GOPs (x265's open GOP puts the second CRA before its leading pictures in decode order).
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[0], 0);
    assert!(
        video.windows(2).all(|w| w[0].dts < w[1].dts),
        "dts increase"
    );
    assert!(video.iter().any(|f| f.pts != f.dts), "B-frames reordered");

    // Mux them again and let ffprobe decode our output.
    let mut mux = TsMuxer::new(&tracks).expect("muxer");
    let mut out = BytesMut::new();
    for (i, f) in frames.iter().enumerate() {
        if i % 40 == 0 {
            mux.write_psi(&mut out);
        }
        mux.write_frame(f, &mut out).expect("mux");
    }
    let path = dir.file("out.ts");
    std::fs::write(&path, &out).expect("write");
    let (streams, decoded) = probe(&path);
    let want_name = if codec == Codec::H264 { "h264" } else { "hevc" };
    assert_eq!(
        streams,
        vec![
            (want_name.to_owned(), video.len() as u64),
            ("aac".to_owned(), audio as u64)
        ]
    );
    let audio_pts: Vec<i64> = decoded
        .iter()
        .filter(|(k, _)| k == "audio")
        .map(|(_, p)| *p)
        .collect();
    assert!(
        audio_pts.windows(2).all(|w| w[0] < w[1]),
        "audio pts increase"
    );
    let mut video_pts: Vec<i64> = decoded
        .iter()
        .filter(|(k, _)| k == "video")
        .map(|(_, p)| *p)
        .collect();
    let mut sent: Vec<i64> = video.iter().map(|f| f.pts).collect();
    video_pts.sort_unstable();
    sent.sort_unstable();
    assert_eq!(video_pts, sent, "every picture decoded at the pts we wrote");

    // And our output demuxes back to the same frames.
    let (tracks2, frames2) = demux(&out);
    assert_eq!(tracks2, tracks);
    assert_eq!(frames2.len(), frames.len());
    for (a, b) in frames.iter().zip(&frames2) {
        assert_eq!(
            (a.track, a.pts, a.dts, a.is_keyframe(), &a.payload),
            (b.track, b.pts, b.dts, b.is_keyframe(), &b.payload)
        );
    }
}

#[test]
fn h264_and_aac_from_ffmpeg_round_trip() {
    check("libx264", Codec::H264, "h264");
}

#[test]
fn h265_and_aac_from_ffmpeg_round_trip() {
    check("libx265", Codec::H265, "h265");
}

#[test]
fn opus_from_ffmpeg_round_trips() {
    let dir = TempDir::new("ts-opus");
    let input = dir.file("in.ts");
    encode_sine(&input, 2, "libopus", "mpegts");
    let data = std::fs::read(&input).expect("read");
    let (tracks, frames) = demux(&data);
    assert_eq!(tracks.len(), 1);
    assert_eq!(tracks[0].codec, Codec::Opus);
    assert_eq!(
        tracks[0].audio.map(|a| (a.sample_rate, a.channels)),
        Some((48_000, 2))
    );
    let (streams, _) = probe(&input);
    assert_eq!(streams, vec![("opus".to_owned(), frames.len() as u64)]);
    assert!(
        frames.windows(2).all(|w| w[0].pts < w[1].pts),
        "pts increase"
    );

    let mut mux = TsMuxer::new(&tracks).expect("muxer");
    let mut out = BytesMut::new();
    mux.write_psi(&mut out);
    for f in &frames {
        mux.write_frame(f, &mut out).expect("mux");
    }
    let path = dir.file("out.ts");
    std::fs::write(&path, &out).expect("write");
    let (streams, decoded) = probe(&path);
    assert_eq!(streams, vec![("opus".to_owned(), frames.len() as u64)]);
    assert_eq!(decoded.len(), frames.len());
}
