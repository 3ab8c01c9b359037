//! fMP4 written by `tidewater_media::fmp4` and read by ffprobe 5.1: an init
//! segment and fragments concatenated into one file decode to the frames we
//! put in, with the codecs and timestamps we wrote.
//!
//! The media comes from ffmpeg itself (x264 and x265 Annex B, AAC in ADTS),
//! turned into the kernel's canonical forms here.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use tidewater_core::{Codec, TrackId, TrackInfo};
use tidewater_media::fmp4::{self, Sample, TrackRun};
use tidewater_tests::TempDir;
use tidewater_tests::tools::{encode_adts, encode_annexb, ffprobe_clean};

const FPS: u64 = 25;
const SECONDS: u64 = 2;
const VIDEO_TICKS: u32 = 90_000 / FPS as u32;

/// Annex B NAL units (start codes removed).
fn nal_units(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(data.len(), |&n| n - 3);
        // A 4-byte start code leaves a zero before the next 3-byte one.
        while end > s && data[end - 1] == 0 {
            end -= 1;
        }
        nals.push(&data[s..end]);
    }
    nals
}

struct Elementary {
    config: Bytes,
    /// Access units in canonical form (4-byte length prefixes) and whether each is a keyframe.
    frames: Vec<(Bytes, bool)>,
}

/// Splits an Annex B stream into access units at access unit delimiters,
/// keeping parameter sets aside for the decoder configuration.
fn annex_b(path: &Path, h265: bool) -> (Vec<Vec<u8>>, Vec<(Bytes, bool)>) {
    let data = std::fs::read(path).expect("elementary stream");
    let mut params: Vec<Vec<u8>> = Vec::new();
    let mut frames = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let mut key = false;
    let mut flush = |current: &mut Vec<u8>, key: &mut bool| {
        if !current.is_empty() {
            frames.push((Bytes::from(std::mem::take(current)), *key));
        }
        *key = false;
    };
    for nal in nal_units(&data) {
        let (aud, is_param, is_key) = if h265 {
            let t = (nal[0] >> 1) & 0x3f;
            (t == 35, (32..=34).contains(&t), (16..=21).contains(&t))
        } else {
            let t = nal[0] & 0x1f;
            (t == 9, t == 7 || t == 8, t == 5)
        };
        if aud {
            flush(&mut current, &mut key);
            continue;
        }
        if is_param {
            if !params.iter().any(|p| p == nal) {
                params.push(nal.to_vec());
            }
            continue;
        }
        key |= is_key;
        current.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        current.extend_from_slice(nal);
    }
    flush(&mut current, &mut key);
    (params, frames)
}

fn h264(path: &Path) -> Elementary {
    let (params, frames) = annex_b(path, false);
    let sps = params.iter().find(|p| p[0] & 0x1f == 7).expect("SPS");
    let pps = params.iter().find(|p| p[0] & 0x1f == 8).expect("PPS");
    let mut c = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
    c.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    c.extend_from_slice(sps);
    c.push(1);
    c.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    c.extend_from_slice(pps);
    Elementary {
        config: Bytes::from(c),
        frames,
    }
}

fn h265(path: &Path) -> Elementary {
    let (params, frames) = annex_b(path, true);
    // hvcC: Main profile, level 3.1 (what x265 picks for 320x240); the
    // decoder reads the real values from the parameter sets in the arrays.
    let mut c = vec![
        1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93, 0xf0, 0, 0xfc, 0xfd, 0xf8, 0xf8, 0, 0,
        0x0f,
    ];
    c.push(3);
    for t in 32..=34u8 {
        let nals: Vec<&Vec<u8>> = params.iter().filter(|p| (p[0] >> 1) & 0x3f == t).collect();
        c.push(0x80 | t);
        c.extend_from_slice(&(nals.len() as u16).to_be_bytes());
        for n in nals {
            c.extend_from_slice(&(n.len() as u16).to_be_bytes());
            c.extend_from_slice(n);
        }
    }
    Elementary {
        config: Bytes::from(c),
        frames,
    }
}

/// ADTS frames as raw AAC access units, and the AudioSpecificConfig.
fn aac(path: &Path) -> Elementary {
    let data = std::fs::read(path).expect("adts");
    let mut frames = Vec::new();
    let mut config = None;
    let mut i = 0;
    while i + 7 <= data.len() {
        assert_eq!(data[i], 0xff, "ADTS sync");
        let protection_absent = data[i + 1] & 1 == 1;
        let profile = (data[i + 2] >> 6) + 1;
        let freq = (data[i + 2] >> 2) & 0xf;
        let chans = ((data[i + 2] & 1) << 2) | (data[i + 3] >> 6);
        let len = (usize::from(data[i + 3] & 3) << 11)
            | (usize::from(data[i + 4]) << 3)
            | usize::from(data[i + 5] >> 5);
        let header = if protection_absent { 7 } else { 9 };
        config.get_or_insert_with(|| {
            Bytes::from(vec![
                (profile << 3) | (freq >> 1),
                ((freq & 1) << 7) | (chans << 3),
            ])
        });
        frames.push((Bytes::copy_from_slice(&data[i + header..i + len]), true));
        i += len;
    }
    Elementary {
        config: config.expect("an ADTS frame"),
        frames,
    }
}

fn probe(file: &Path, entries: &str, count: bool) -> String {
    let count: &[&str] = if count { &["-count_frames"] } else { &[] };
    let args: Vec<&str> = [count, &["-show_entries", entries, "-of", "csv=p=0"]].concat();
    ffprobe_clean(&args, file)
}

/// Writes init + one fragment per second (video run then audio run) and
/// returns the file.
fn package(
    path: PathBuf,
    video: &TrackInfo,
    v: &Elementary,
    audio: Option<(&TrackInfo, &Elementary)>,
) -> PathBuf {
    let mut tracks = vec![video];
    if let Some((a, _)) = audio {
        tracks.push(a);
    }
    let mut file = fmp4::init_segment(&tracks).expect("init").to_vec();
    let vs: Vec<Sample> = v
        .frames
        .iter()
        .enumerate()
        .map(|(n, (data, key))| Sample {
            dts: n as u64 * u64::from(VIDEO_TICKS),
            duration: VIDEO_TICKS,
            cts_offset: 0,
            keyframe: *key,
            data: data.clone(),
        })
        .collect();
    let as_: Vec<Sample> = audio.map_or_else(Vec::new, |(_, a)| {
        a.frames
            .iter()
            .enumerate()
            .map(|(n, (data, _))| Sample {
                dts: n as u64 * 1024,
                duration: 1024,
                cts_offset: 0,
                keyframe: true,
                data: data.clone(),
            })
            .collect()
    });
    let mut a_at = 0;
    let chunks = vs.chunks(FPS as usize).count();
    for (k, chunk) in vs.chunks(FPS as usize).enumerate() {
        let end_seconds = (chunk[chunk.len() - 1].dts + u64::from(VIDEO_TICKS)) as f64 / 90_000.0;
        let a_end = match as_
            .iter()
            .position(|s| s.dts as f64 / 48_000.0 >= end_seconds)
        {
            Some(end) if k + 1 < chunks => end,
            // The last fragment takes the audio that runs past the video.
            _ => as_.len(),
        };
        let runs = [
            TrackRun {
                track: video.id,
                samples: chunk,
            },
            TrackRun {
                track: TrackId(2),
                samples: &as_[a_at..a_end],
            },
        ];
        let seq = u32::try_from(k + 1).expect("sequence");
        file.extend_from_slice(&fmp4::fragment(seq, &runs).expect("fragment"));
        a_at = a_end;
    }
    std::fs::write(&path, file).expect("write");
    path
}

#[test]
fn h264_and_aac_play_in_ffprobe() {
    let dir = TempDir::new("fmp4-h264");
    let es = dir.file("v.h264");
    let adts = dir.file("a.aac");
    encode_annexb(&es, false, FPS as u32, SECONDS as u32, 25);
    encode_adts(&adts, SECONDS as u32);
    let v = h264(&es);
    let a = aac(&adts);
    assert_eq!(v.frames.len() as u64, FPS * SECONDS);
    assert!(v.frames[0].1, "starts on a keyframe");

    let video = TrackInfo::video(TrackId(1), Codec::H264, 320, 240).with_config(v.config.clone());
    let audio = TrackInfo::audio(TrackId(2), Codec::Aac, 48_000, 2).with_config(a.config.clone());
    let file = package(dir.file("h264_aac.mp4"), &video, &v, Some((&audio, &a)));

    let streams = probe(
        &file,
        "stream=codec_name,width,height,sample_rate,channels,nb_read_frames",
        true,
    );
    let lines: Vec<&str> = streams.lines().collect();
    assert_eq!(lines.len(), 2, "{streams}");
    assert_eq!(
        lines[0],
        format!("h264,320,240,{}", FPS * SECONDS),
        "{streams}"
    );
    // csv columns follow ffprobe's field order: codec_name,sample_rate,channels,nb_read_frames.
    let audio_line: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(audio_line[..3], ["aac", "48000", "2"], "{streams}");
    let audio_frames: usize = audio_line[3].parse().expect("frame count");
    assert!(
        audio_frames + 2 >= a.frames.len(),
        "{audio_frames} of {}",
        a.frames.len()
    );

    // Video packets keep our timestamps: 0, 3600, 7200 … at 90 kHz, keyframes where we said.
    let packets = probe(&file, "packet=stream_index,pts,dts,flags", false);
    let video_packets: Vec<Vec<&str>> = packets
        .lines()
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f[0] == "0")
        .collect();
    assert_eq!(video_packets.len() as u64, FPS * SECONDS);
    for (n, p) in video_packets.iter().enumerate() {
        let want = (n as u64 * u64::from(VIDEO_TICKS)).to_string();
        assert_eq!(
            (p[1], p[2]),
            (want.as_str(), want.as_str()),
            "packet {n}: {p:?}"
        );
        assert_eq!(p[3].starts_with('K'), v.frames[n].1, "packet {n}: {p:?}");
    }
    let audio_pts: Vec<i64> = packets
        .lines()
        .filter(|l| l.starts_with("1,"))
        .map(|l| l.split(',').nth(1).expect("pts").parse().expect("int"))
        .collect();
    assert_eq!(audio_pts.len(), a.frames.len());
    assert!(
        audio_pts.windows(2).all(|w| w[1] - w[0] == 1024),
        "audio pts step by 1024"
    );
}

#[test]
fn h265_plays_in_ffprobe() {
    let dir = TempDir::new("fmp4-h265");
    let es = dir.file("v.h265");
    encode_annexb(&es, true, FPS as u32, SECONDS as u32, 25);
    let v = h265(&es);
    assert_eq!(v.frames.len() as u64, FPS * SECONDS);
    let video = TrackInfo::video(TrackId(1), Codec::H265, 320, 240).with_config(v.config.clone());
    let file = package(dir.file("h265.mp4"), &video, &v, None);
    let streams = probe(
        &file,
        "stream=codec_name,codec_tag_string,width,height,nb_read_frames",
        true,
    );
    assert_eq!(
        streams.trim(),
        format!("hevc,hvc1,320,240,{}", FPS * SECONDS)
    );
}
