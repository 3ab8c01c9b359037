//! A publish's FLV tags to the kernel's catalog, frames and metadata.
//!
//! [`FlvIngest`] is sans-IO: tags and `onMetaData` go in, [`IngestEvent`]s
//! come out, in the order the kernel must see them.
//!
//! **When the catalog is announced.** Frames need a catalog, and a catalog is
//! only useful with every track in it. The catalog is announced as soon as
//! every expected track has its sequence header: the tracks `onMetaData`
//! names (`videocodecid`, `audiocodecid`), or both when no metadata came.
//! Encoders send every sequence header before the first frame, so without
//! metadata the first coded frame also announces what is there. With
//! metadata naming a track whose header has not come, frames are held for at
//! most [`CATALOG_WAIT_MS`] of media (and bounded in count and bytes), then
//! the catalog is announced with the tracks that are ready. A track whose
//! header comes later, or a header that changes, is a new catalog version.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use rml_rtmp::rml_amf0::Amf0Value;
use tidewater_core::{Codec, Frame, TimestampWrap, TrackInfo, VideoParams};

use crate::amf;
use crate::flv::{AUDIO_TRACK, AudioTag, VIDEO_TRACK, VideoTag, parse_audio_tag, parse_video_tag};
use tidewater_media::codec;

/// Longest span of media (milliseconds) held back while waiting for a
/// sequence header that `onMetaData` announced.
pub const CATALOG_WAIT_MS: u32 = 1_000;
const MAX_PENDING_FRAMES: usize = 512;
const MAX_PENDING_BYTES: usize = 16 << 20;

/// What the kernel must be told, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IngestEvent {
    /// Announce this track set (`PublishSession::set_catalog`).
    Catalog(Vec<TrackInfo>),
    /// Publish this frame.
    Frame(Frame),
    /// Set these metadata entries (`PublishSession::set_metadata`).
    Metadata(Vec<(&'static str, String)>),
    /// Something was dropped; worth one log line (each reason is reported once).
    Dropped(&'static str),
}

#[derive(Clone, Debug)]
struct VideoState {
    codec: Codec,
    record: Bytes,
    length_size: usize,
    size: Option<(u32, u32)>,
}

#[derive(Clone, Debug)]
struct AudioState {
    codec: Codec,
    record: Bytes,
    sample_rate: u32,
    channels: u8,
}

#[derive(Clone, Debug, Default)]
struct Meta {
    seen: bool,
    has_video: bool,
    has_audio: bool,
    width: Option<u32>,
    height: Option<u32>,
    frame_rate: Option<f64>,
    video_kbps: Option<f64>,
    audio_kbps: Option<f64>,
}

/// Turns one publish's tags into kernel events.
#[derive(Debug, Default)]
pub struct FlvIngest {
    video: Option<VideoState>,
    audio: Option<AudioState>,
    meta: Meta,
    announced: Option<Vec<TrackInfo>>,
    pending: VecDeque<Frame>,
    pending_bytes: usize,
    pending_first: Option<u32>,
    reported: Vec<&'static str>,
}

impl FlvIngest {
    /// A fresh publish.
    pub fn new() -> Self {
        Self::default()
    }

    /// The track set last announced, if any.
    pub fn announced(&self) -> Option<&[TrackInfo]> {
        self.announced.as_deref()
    }

    fn report(&mut self, reason: &'static str, out: &mut Vec<IngestEvent>) {
        if !self.reported.contains(&reason) && self.reported.len() < 32 {
            self.reported.push(reason);
            out.push(IngestEvent::Dropped(reason));
        }
    }

    /// One video message (timestamp in RTMP milliseconds).
    pub fn push_video(&mut self, timestamp: u32, body: &Bytes, out: &mut Vec<IngestEvent>) {
        match parse_video_tag(body) {
            Err(_) => self.report("malformed video message", out),
            Ok(VideoTag::Skip("end of sequence" | "video command frame")) => {}
            Ok(VideoTag::Skip(reason)) => self.report(reason, out),
            Ok(VideoTag::Config { codec, record }) => {
                let (length_size, size, record) = match codec {
                    Codec::H264 => match codec::parse_avcc(&record) {
                        Some(c) if c.length_size == 4 => (4, c.size, record),
                        Some(c) => (
                            c.length_size,
                            c.size,
                            codec::with_four_byte_lengths(&record, 4),
                        ),
                        None => return self.report("malformed AVC sequence header", out),
                    },
                    Codec::H265 => match codec::parse_hvcc(&record) {
                        Some(c) if c.length_size == 4 => (4, c.size, record),
                        Some(c) => (
                            c.length_size,
                            c.size,
                            codec::with_four_byte_lengths(&record, codec::HVCC_LENGTH_SIZE_INDEX),
                        ),
                        None => return self.report("malformed HEVC sequence header", out),
                    },
                    _ => (0, None, record),
                };
                self.video = Some(VideoState {
                    codec,
                    record,
                    length_size,
                    size,
                });
                self.on_config(out);
            }
            Ok(VideoTag::Frame {
                codec,
                keyframe,
                cto,
                payload,
            }) => {
                let Some(v) = &self.video else {
                    return self.report("video frames before a sequence header", out);
                };
                if v.codec != codec {
                    return self.report(
                        "video frames of a codec other than the sequence header's",
                        out,
                    );
                }
                let payload = if matches!(v.length_size, 1 | 2) {
                    match codec::to_four_byte_lengths(&payload, v.length_size) {
                        Some(p) => p,
                        None => return self.report("malformed NAL unit lengths", out),
                    }
                } else {
                    payload
                };
                let dts = i64::from(timestamp);
                let frame = Frame::video(
                    VIDEO_TRACK,
                    codec,
                    dts,
                    dts + i64::from(cto),
                    keyframe,
                    payload,
                );
                self.on_frame(timestamp, frame, out);
            }
        }
    }

    /// One audio message (timestamp in RTMP milliseconds).
    pub fn push_audio(&mut self, timestamp: u32, body: &Bytes, out: &mut Vec<IngestEvent>) {
        match parse_audio_tag(body) {
            Err(_) => self.report("malformed audio message", out),
            Ok(AudioTag::Skip("end of sequence")) => {}
            Ok(AudioTag::Skip(reason)) => self.report(reason, out),
            Ok(AudioTag::Config { codec, record }) => {
                let (sample_rate, channels) = match codec {
                    Codec::Aac => match codec::parse_asc(&record) {
                        Some(p) => p,
                        None => return self.report("malformed AAC sequence header", out),
                    },
                    // OpusHead: channel count at 9, input sample rate at 12..16 (LE);
                    // Opus always decodes at 48 kHz.
                    _ => (48_000, record.get(9).copied().unwrap_or(2)),
                };
                self.audio = Some(AudioState {
                    codec,
                    record,
                    sample_rate,
                    channels,
                });
                self.on_config(out);
            }
            Ok(AudioTag::Frame { codec, payload }) => {
                match &self.audio {
                    None => return self.report("audio frames before a sequence header", out),
                    Some(a) if a.codec != codec => {
                        return self.report(
                            "audio frames of a codec other than the sequence header's",
                            out,
                        );
                    }
                    Some(_) => {}
                }
                let frame = Frame::audio(AUDIO_TRACK, codec, i64::from(timestamp), payload);
                self.on_frame(timestamp, frame, out);
            }
        }
    }

    /// An `onMetaData` object.
    pub fn push_metadata(
        &mut self,
        props: &HashMap<String, Amf0Value>,
        out: &mut Vec<IngestEvent>,
    ) {
        let m = &mut self.meta;
        m.seen = true;
        m.has_video = props.contains_key("videocodecid");
        m.has_audio = props.contains_key("audiocodecid");
        let dim = |k| {
            amf::number(props, k)
                .filter(|v| *v >= 1.0 && *v <= 65_536.0)
                .map(|v| v as u32)
        };
        m.width = dim("width");
        m.height = dim("height");
        m.frame_rate = amf::number(props, "framerate")
            .or_else(|| amf::number(props, "videoframerate"))
            .filter(|v| *v > 0.0 && *v <= 1_000.0);
        m.video_kbps = amf::number(props, "videodatarate").filter(|v| *v > 0.0 && *v < 1e7);
        m.audio_kbps = amf::number(props, "audiodatarate").filter(|v| *v > 0.0 && *v < 1e7);
        let mut entries = Vec::new();
        if let Some(w) = m.width {
            entries.push(("width", w.to_string()));
        }
        if let Some(h) = m.height {
            entries.push(("height", h.to_string()));
        }
        if let Some(f) = m.frame_rate {
            entries.push(("framerate", format_number(f)));
        }
        if let Some(e) = amf::string(props, "encoder") {
            entries.push(("encoder", e.chars().take(128).collect()));
        }
        if !entries.is_empty() {
            out.push(IngestEvent::Metadata(entries));
        }
    }

    /// The tracks as they stand (those with a sequence header).
    fn tracks(&self) -> Vec<TrackInfo> {
        let mut tracks = Vec::with_capacity(2);
        if let Some(v) = &self.video {
            let (w, h) = v
                .size
                .or(self.meta.width.zip(self.meta.height))
                .unwrap_or((0, 0));
            let mut t = TrackInfo::video(VIDEO_TRACK, v.codec, w, h)
                .with_timescale(1_000)
                .with_wrap(TimestampWrap::RTMP)
                .with_config(v.record.clone());
            t.video = Some(VideoParams {
                width: w,
                height: h,
                frame_rate: self.meta.frame_rate.map(frame_rate_fraction),
            });
            t.bitrate = self.meta.video_kbps.map(|k| (k * 1000.0) as u32);
            tracks.push(t);
        }
        if let Some(a) = &self.audio {
            let mut t = TrackInfo::audio(AUDIO_TRACK, a.codec, a.sample_rate, a.channels)
                .with_timescale(1_000)
                .with_wrap(TimestampWrap::RTMP)
                .with_config(a.record.clone());
            t.bitrate = self.meta.audio_kbps.map(|k| (k * 1000.0) as u32);
            tracks.push(t);
        }
        tracks
    }

    /// Every expected track has its sequence header.
    fn complete(&self) -> bool {
        let (want_video, want_audio) = if self.meta.seen {
            (self.meta.has_video, self.meta.has_audio)
        } else {
            (true, true)
        };
        (self.video.is_some() || !want_video)
            && (self.audio.is_some() || !want_audio)
            && (self.video.is_some() || self.audio.is_some())
    }

    fn on_config(&mut self, out: &mut Vec<IngestEvent>) {
        if self.announced.is_some() || self.complete() {
            self.announce(out);
        }
    }

    fn announce(&mut self, out: &mut Vec<IngestEvent>) {
        let tracks = self.tracks();
        if tracks.is_empty() {
            return;
        }
        if self.announced.as_ref() != Some(&tracks) {
            out.push(IngestEvent::Catalog(tracks.clone()));
            self.announced = Some(tracks);
        }
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        self.pending_first = None;
        for frame in pending {
            out.push(IngestEvent::Frame(frame));
        }
    }

    fn on_frame(&mut self, timestamp: u32, frame: Frame, out: &mut Vec<IngestEvent>) {
        if self.announced.is_some() {
            out.push(IngestEvent::Frame(frame));
            return;
        }
        self.pending_bytes += frame.payload.len();
        self.pending.push_back(frame);
        let first = *self.pending_first.get_or_insert(timestamp);
        let waited = timestamp.wrapping_sub(first);
        let waited = if waited > u32::MAX / 2 { 0 } else { waited };
        if !self.meta.seen
            || self.complete()
            || waited >= CATALOG_WAIT_MS
            || self.pending.len() >= MAX_PENDING_FRAMES
            || self.pending_bytes >= MAX_PENDING_BYTES
        {
            self.announce(out);
        }
    }
}

fn format_number(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.3}")
    }
}

/// A frame rate as a fraction: integral rates over 1, NTSC rates over 1001.
fn frame_rate_fraction(v: f64) -> (u32, u32) {
    if (v - v.round()).abs() < 1e-3 {
        return (v.round() as u32, 1);
    }
    let ntsc = v * 1001.0 / 1000.0;
    if (ntsc - ntsc.round()).abs() < 1e-2 {
        return ((ntsc.round() as u32) * 1000, 1001);
    }
    ((v * 1000.0).round() as u32, 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater_core::FrameFlags;

    const SPS: [u8; 25] = [
        0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60,
    ];

    fn avc_seq(sps: &[u8]) -> Bytes {
        let mut v = vec![
            0x17,
            0,
            0,
            0,
            0,
            1,
            0x64,
            0,
            0x0d,
            0xff,
            0xe1,
            0,
            sps.len() as u8,
        ];
        v.extend_from_slice(sps);
        v.extend_from_slice(&[1, 0, 4, 0x68, 0xeb, 0xe3, 0xcb]);
        Bytes::from(v)
    }

    fn avc_frame(key: bool, cto: i32) -> Bytes {
        let c = cto.to_be_bytes();
        Bytes::from(vec![
            if key { 0x17 } else { 0x27 },
            1,
            c[1],
            c[2],
            c[3],
            0,
            0,
            0,
            2,
            0x65,
            0x88,
        ])
    }

    const AAC_SEQ: [u8; 4] = [0xaf, 0, 0x12, 0x10];

    fn frames(out: &[IngestEvent]) -> Vec<&Frame> {
        out.iter()
            .filter_map(|e| match e {
                IngestEvent::Frame(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    fn catalogs(out: &[IngestEvent]) -> Vec<&Vec<TrackInfo>> {
        out.iter()
            .filter_map(|e| match e {
                IngestEvent::Catalog(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn avc_and_aac_make_one_catalog_then_frames_with_composition_offsets() {
        let mut ing = FlvIngest::new();
        let mut out = Vec::new();
        ing.push_video(0, &avc_seq(&SPS), &mut out);
        assert!(out.is_empty(), "waits for audio: {out:?}");
        ing.push_audio(0, &Bytes::from_static(&AAC_SEQ), &mut out);
        let cats = catalogs(&out);
        assert_eq!(cats.len(), 1);
        let v = &cats[0][0];
        assert_eq!(
            (v.codec, v.timescale, v.wrap),
            (Codec::H264, 1000, TimestampWrap::RTMP)
        );
        assert_eq!(v.video.map(|p| (p.width, p.height)), Some((320, 240)));
        assert_eq!(v.config.as_deref().map(|c| c[0]), Some(1));
        let a = &cats[0][1];
        assert_eq!(a.codec, Codec::Aac);
        assert_eq!(
            a.audio.map(|p| (p.sample_rate, p.channels)),
            Some((44100, 2))
        );
        assert_eq!(a.config.as_deref(), Some(&[0x12, 0x10][..]));

        out.clear();
        ing.push_video(40, &avc_frame(true, 80), &mut out);
        ing.push_audio(45, &Bytes::from_static(&[0xaf, 1, 0x21]), &mut out);
        ing.push_video(80, &avc_frame(false, -40), &mut out);
        let f = frames(&out);
        assert_eq!(f.len(), 3);
        assert_eq!((f[0].dts, f[0].pts, f[0].is_keyframe()), (40, 120, true));
        assert_eq!(&f[0].payload[..], &[0, 0, 0, 2, 0x65, 0x88]);
        assert_eq!(
            (f[1].track, f[1].pts, f[1].flags),
            (AUDIO_TRACK, 45, FrameFlags::KEYFRAME)
        );
        assert_eq!((f[2].dts, f[2].pts, f[2].is_keyframe()), (80, 40, false));
    }

    #[test]
    fn changed_sequence_header_is_a_new_catalog_and_a_repeat_is_not() {
        let mut ing = FlvIngest::new();
        let mut out = Vec::new();
        ing.push_video(0, &avc_seq(&SPS), &mut out);
        ing.push_audio(0, &Bytes::from_static(&AAC_SEQ), &mut out);
        ing.push_video(0, &avc_frame(true, 0), &mut out);
        ing.push_video(1000, &avc_seq(&SPS), &mut out);
        assert_eq!(catalogs(&out).len(), 1, "same header again: no new catalog");
        // A 1280x720 SPS.
        let sps720 = [
            0x67, 0x42, 0xc0, 0x1f, 0xd9, 0x00, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
            0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x83, 0x24, 0x80,
        ];
        ing.push_video(2000, &avc_seq(&sps720), &mut out);
        ing.push_video(2000, &avc_frame(true, 0), &mut out);
        let cats = catalogs(&out);
        assert_eq!(cats.len(), 2);
        assert_eq!(
            cats[1][0].video.map(|p| (p.width, p.height)),
            Some((1280, 720))
        );
        assert!(matches!(out.last(), Some(IngestEvent::Frame(f)) if f.dts == 2000));
        // A different AudioSpecificConfig (48 kHz) as well.
        ing.push_audio(2100, &Bytes::from_static(&[0xaf, 0, 0x11, 0x90]), &mut out);
        let cats = catalogs(&out);
        assert_eq!(cats.len(), 3);
        assert_eq!(cats[2][1].audio.map(|p| p.sample_rate), Some(48000));
    }

    #[test]
    fn video_only_with_metadata_is_announced_at_once_and_audio_later_adds_a_version() {
        let mut ing = FlvIngest::new();
        let mut out = Vec::new();
        let mut meta = HashMap::new();
        meta.insert("videocodecid".to_string(), Amf0Value::Number(7.0));
        meta.insert("width".to_string(), Amf0Value::Number(320.0));
        meta.insert("height".to_string(), Amf0Value::Number(240.0));
        meta.insert("framerate".to_string(), Amf0Value::Number(29.97));
        meta.insert(
            "encoder".to_string(),
            Amf0Value::Utf8String("Lavf59".into()),
        );
        ing.push_metadata(&meta, &mut out);
        assert_eq!(
            out,
            vec![IngestEvent::Metadata(vec![
                ("width", "320".into()),
                ("height", "240".into()),
                ("framerate", "29.970".into()),
                ("encoder", "Lavf59".into())
            ])]
        );
        out.clear();
        ing.push_video(0, &avc_seq(&SPS), &mut out);
        let cats = catalogs(&out);
        assert_eq!(cats.len(), 1);
        assert_eq!(cats[0].len(), 1);
        assert_eq!(
            cats[0][0].video.and_then(|p| p.frame_rate),
            Some((30000, 1001))
        );
        ing.push_audio(500, &Bytes::from_static(&AAC_SEQ), &mut out);
        assert_eq!(catalogs(&out).len(), 2);
    }

    #[test]
    fn without_metadata_the_first_frame_announces_what_is_there() {
        let mut ing = FlvIngest::new();
        let mut out = Vec::new();
        ing.push_video(0, &avc_seq(&SPS), &mut out);
        assert!(out.is_empty());
        ing.push_video(0, &avc_frame(true, 0), &mut out);
        assert_eq!(catalogs(&out).len(), 1);
        assert_eq!(frames(&out).len(), 1);
    }

    #[test]
    fn a_missing_announced_track_is_waited_for_at_most_a_second_of_media() {
        let mut ing = FlvIngest::new();
        let mut out = Vec::new();
        let mut meta = HashMap::new();
        meta.insert("videocodecid".to_string(), Amf0Value::Number(7.0));
        meta.insert("audiocodecid".to_string(), Amf0Value::Number(10.0));
        ing.push_metadata(&meta, &mut out);
        out.clear();
        ing.push_video(0, &avc_seq(&SPS), &mut out);
        for i in 0..25u32 {
            ing.push_video(i * 40, &avc_frame(i == 0, 0), &mut out);
        }
        assert!(catalogs(&out).is_empty(), "still within a second");
        ing.push_video(1000, &avc_frame(false, 0), &mut out);
        assert_eq!(catalogs(&out).len(), 1);
        let f = frames(&out);
        assert_eq!(f.len(), 26, "held frames are released in order");
        assert!(f.windows(2).all(|w| w[0].dts < w[1].dts));
    }

    #[test]
    fn enhanced_hevc_and_av1_publish() {
        for (fourcc, codec) in [(b"hvc1", Codec::H265), (b"av01", Codec::Av1)] {
            let mut ing = FlvIngest::new();
            let mut out = Vec::new();
            let mut meta = HashMap::new();
            meta.insert("videocodecid".to_string(), Amf0Value::Number(0.0));
            meta.insert("width".to_string(), Amf0Value::Number(640.0));
            meta.insert("height".to_string(), Amf0Value::Number(360.0));
            ing.push_metadata(&meta, &mut out);
            let mut seq = vec![0x90];
            seq.extend_from_slice(fourcc);
            // A minimal record: 23 bytes with lengthSizeMinusOne = 3 at byte
            // 21 and no parameter-set arrays, so the size comes from onMetaData.
            let mut record = vec![1u8; 23];
            record[21] = 0x0f;
            record[22] = 0;
            seq.extend_from_slice(&record);
            ing.push_video(0, &Bytes::from(seq), &mut out);
            let mut coded = vec![0x91];
            coded.extend_from_slice(fourcc);
            if codec == Codec::H265 {
                coded.extend_from_slice(&[0, 0, 33]);
            }
            coded.extend_from_slice(&[0, 0, 0, 1, 0x26]);
            ing.push_video(100, &Bytes::from(coded), &mut out);
            let cats = catalogs(&out);
            assert_eq!(cats.len(), 1, "{fourcc:?}");
            assert_eq!(cats[0][0].codec, codec);
            assert_eq!(
                cats[0][0].video.map(|p| (p.width, p.height)),
                Some((640, 360))
            );
            assert_eq!(cats[0][0].config.as_deref(), Some(&record[..]));
            let f = frames(&out);
            assert_eq!(f.len(), 1);
            let cto = if codec == Codec::H265 { 33 } else { 0 };
            assert_eq!(
                (f[0].codec, f[0].dts, f[0].pts, f[0].is_keyframe()),
                (codec, 100, 100 + cto, true)
            );
        }
    }

    #[test]
    fn hevc_picture_size_comes_from_the_sequence_header() {
        // libx265's parameter sets for 320x240, as ffmpeg writes them.
        const VPS: &[u8] = &[
            0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x04, 0x08, 0x00, 0x00, 0x03, 0x00, 0x9e, 0x08,
            0x00, 0x00, 0x03, 0x00, 0x00, 0x3c, 0x95, 0x98, 0x09,
        ];
        const SPS: &[u8] = &[
            0x42, 0x01, 0x01, 0x04, 0x08, 0x00, 0x00, 0x03, 0x00, 0x9e, 0x08, 0x00, 0x00, 0x03,
            0x00, 0x00, 0x3c, 0x90, 0x01, 0x41, 0x01, 0xe2, 0xcb, 0x2b, 0x34, 0x92, 0x65, 0x78,
            0x0b, 0x70, 0x20, 0x20, 0x00, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x06,
            0x42,
        ];
        const PPS: &[u8] = &[0x44, 0x01, 0xc1, 0x72, 0x86, 0x0c, 0x46, 0x24];
        let record = codec::build_hvcc(&[VPS], &[SPS], &[PPS]).expect("hvcC");
        let mut ing = FlvIngest::new();
        let mut out = Vec::new();
        // No onMetaData at all: the size must come from the SPS.
        let mut seq = vec![0x90];
        seq.extend_from_slice(b"hvc1");
        seq.extend_from_slice(&record);
        ing.push_video(0, &Bytes::from(seq), &mut out);
        let mut coded = vec![0x91];
        coded.extend_from_slice(b"hvc1");
        coded.extend_from_slice(&[0, 0, 0, 0, 0, 0, 3, 0x26, 0x01, 0xaf]);
        ing.push_video(0, &Bytes::from(coded), &mut out);
        ing.push_video(
            1000,
            &Bytes::from_static(&[0x93, b'h', b'v', b'c', b'1']),
            &mut out,
        );
        let cats = catalogs(&out);
        assert_eq!(cats.len(), 1, "{out:?}");
        assert_eq!(cats[0][0].codec, Codec::H265);
        assert_eq!(
            cats[0][0].video.map(|p| (p.width, p.height)),
            Some((320, 240))
        );
    }

    #[test]
    fn frames_before_headers_and_unsupported_codecs_are_reported_once() {
        let mut ing = FlvIngest::new();
        let mut out = Vec::new();
        ing.push_video(0, &avc_frame(true, 0), &mut out);
        ing.push_video(40, &avc_frame(false, 0), &mut out);
        ing.push_audio(0, &Bytes::from_static(&[0x2f, 1, 2]), &mut out);
        assert_eq!(
            out,
            vec![
                IngestEvent::Dropped("video frames before a sequence header"),
                IngestEvent::Dropped("MP3 audio is not supported"),
            ]
        );
    }

    #[test]
    fn two_byte_nal_lengths_are_made_canonical() {
        let mut ing = FlvIngest::new();
        let mut out = Vec::new();
        let mut seq = avc_seq(&SPS).to_vec();
        seq[9] = 0xfd; // lengthSizeMinusOne = 1
        ing.push_video(0, &Bytes::from(seq), &mut out);
        ing.push_video(
            0,
            &Bytes::from_static(&[0x17, 1, 0, 0, 0, 0, 2, 0x65, 0x88]),
            &mut out,
        );
        let cats = catalogs(&out);
        assert_eq!(cats[0][0].config.as_deref().map(|c| c[4] & 3), Some(3));
        assert_eq!(&frames(&out)[0].payload[..], &[0, 0, 0, 2, 0x65, 0x88]);
    }
}
