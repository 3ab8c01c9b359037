//! Received RTP of one WHIP publish to kernel frames and a catalog, sans-IO.
//!
//! Each negotiated media line (in the order the offer lists them) becomes a
//! kernel track: video at 90 kHz and Opus (RFC 7587, one packet per RTP
//! packet) at 48 kHz. The video depacketizers (`tidewater_media::rtp`):
//!
//! | codec | payload format | decoder configuration, from the stream |
//! |---|---|---|
//! | H.264 | RFC 6184, packetization-mode 1 | `avcC` from the SPS/PPS before each IDR |
//! | H.265 | RFC 7798 (no DONL) | `hvcC` from the VPS/SPS/PPS before each IRAP |
//! | VP8 | RFC 7741 | `vpcC` from each keyframe's header |
//! | VP9 | RFC 9628, base spatial layer | `vpcC` from each keyframe's uncompressed header |
//! | AV1 | AOM RTP payload format v1.0 | `av1C` from each keyframe's sequence header OBU |
//!
//! The catalog is announced once every video track has its configuration,
//! and a configuration that differs (a new resolution) is a new catalog
//! version.
//!
//! # Timestamps
//!
//! RTP timestamps start at a random value per track; each track is moved
//! onto one stream timeline at its first packet: its first packet's
//! arrival time since the stream's first packet, plus
//! [`TIMELINE_START`]. A/V sync is thus as good as the difference of the
//! tracks' first packets' network delays (a few milliseconds on a LAN);
//! using the RTCP sender reports' NTP times is left for later. Timestamps
//! keep the 32-bit RTP wrap, which the kernel unwraps. Decode timestamps
//! equal presentation timestamps (WebRTC encoders send no B-frames).

use std::time::Instant;

use bytes::Bytes;
use tidewater_core::{Codec, Frame, TimestampWrap, TrackId, TrackInfo};
use tidewater_media::codec::av1::av1_sequence;
use tidewater_media::codec::vpx::{vp8_keyframe, vp9_keyframe};
use tidewater_media::codec::{build_avcc, build_hvcc, h264_sps_size, h265_nal, h265_sps_size};
use tidewater_media::rtp::av1::Av1Depacketizer;
use tidewater_media::rtp::frames::VideoFrame;
use tidewater_media::rtp::h264::{H264AccessUnit, H264Depacketizer, nal_type};
use tidewater_media::rtp::h265::{H265AccessUnit, H265Depacketizer};
use tidewater_media::rtp::vp8::Vp8Depacketizer;
use tidewater_media::rtp::vp9::Vp9Depacketizer;
use tidewater_media::rtp::{RtpError, RtpPacket};

/// What the ingest hands the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IngestOutput {
    /// A (new version of the) catalog: every track.
    Catalog(Vec<TrackInfo>),
    /// A frame of a track of the last catalog.
    Frame(Frame),
}

/// The codecs of a WHEP viewer's media lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaCodec {
    /// H.264, packetization-mode 1.
    H264,
    /// VP8 (RFC 7741).
    Vp8,
    /// VP9 (RFC 9628).
    Vp9,
    /// AV1 (the AOM RTP payload format).
    Av1,
    /// H.265 (RFC 7798).
    H265,
    /// Opus.
    Opus,
}

impl MediaCodec {
    /// Whether it is a video codec (90 kHz RTP clock).
    pub fn is_video(self) -> bool {
        self != MediaCodec::Opus
    }
}

impl From<MediaCodec> for Codec {
    fn from(c: MediaCodec) -> Codec {
        match c {
            MediaCodec::H264 => Codec::H264,
            MediaCodec::Vp8 => Codec::Vp8,
            MediaCodec::Vp9 => Codec::Vp9,
            MediaCodec::Av1 => Codec::Av1,
            MediaCodec::H265 => Codec::H265,
            MediaCodec::Opus => Codec::Opus,
        }
    }
}

#[derive(Debug)]
enum Depacketizer {
    H264(Box<H264Depacketizer>),
    H265(Box<H265Depacketizer>),
    Vp8(Box<Vp8Depacketizer>),
    Vp9(Box<Vp9Depacketizer>),
    Av1(Box<Av1Depacketizer>),
    Opus,
}

/// A frame from a video depacketizer before it becomes a kernel frame: the
/// decoder configuration and picture size it carries (keyframes), whether
/// it is a keyframe, its timestamp and canonical payload.
struct Picture {
    config: Option<(Bytes, Option<(u32, u32)>)>,
    keyframe: bool,
    timestamp: u32,
    payload: Bytes,
}

#[derive(Debug)]
struct Track {
    info: TrackInfo,
    depacketizer: Depacketizer,
    /// Added to RTP timestamps (modulo 2^32) to put the track on the stream timeline.
    offset: Option<u32>,
    keyframes: u64,
}

/// What one packet did besides producing frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    /// The video depacketizer dropped an access unit (a lost packet or a
    /// stream not yet at a keyframe): the publisher should send a keyframe.
    pub wants_keyframe: bool,
}

/// RTP of one publish to frames (see the module docs).
#[derive(Debug)]
pub struct Ingest {
    tracks: Vec<Track>,
    origin: Option<Instant>,
    announced: bool,
    units: Vec<H264AccessUnit>,
    hevc_units: Vec<H265AccessUnit>,
    frames: Vec<VideoFrame>,
}

impl Default for Ingest {
    fn default() -> Self {
        Self::new()
    }
}

impl Ingest {
    /// An ingest without tracks; add them with [`Ingest::add_track`].
    pub fn new() -> Ingest {
        Ingest {
            tracks: Vec::new(),
            origin: None,
            announced: false,
            units: Vec::new(),
            hevc_units: Vec::new(),
            frames: Vec::new(),
        }
    }

    /// Adds a track of `codec` (the video codecs of the module docs, or
    /// Opus); returns its index for [`Ingest::push`], or `None` for a codec
    /// a publish cannot carry. Tracks are numbered `TrackId(index + 1)`.
    pub fn add_track(&mut self, codec: impl Into<Codec>) -> Option<usize> {
        let codec = codec.into();
        let id = TrackId(self.tracks.len() as u32 + 1);
        let wrap = TimestampWrap::Bits(32);
        let depacketizer = match codec {
            Codec::H264 => Depacketizer::H264(Box::default()),
            Codec::H265 => Depacketizer::H265(Box::default()),
            Codec::Vp8 => Depacketizer::Vp8(Box::default()),
            Codec::Vp9 => Depacketizer::Vp9(Box::default()),
            Codec::Av1 => Depacketizer::Av1(Box::default()),
            Codec::Opus => Depacketizer::Opus,
            _ => return None,
        };
        let info = if codec == Codec::Opus {
            TrackInfo::audio(id, Codec::Opus, 48_000, 2).with_timescale(48_000)
        } else {
            TrackInfo::video(id, codec, 0, 0).with_timescale(90_000)
        };
        self.tracks.push(Track {
            info: info.with_wrap(wrap),
            depacketizer,
            offset: None,
            keyframes: 0,
        });
        Some(self.tracks.len() - 1)
    }

    /// The number of tracks.
    pub fn track_count(&self) -> usize {
        self.tracks.len()
    }

    /// Keyframes published so far on track `index`.
    pub fn keyframes(&self, index: usize) -> u64 {
        self.tracks.get(index).map_or(0, |t| t.keyframes)
    }

    /// Whether the catalog was announced.
    pub fn catalog_ready(&self) -> bool {
        self.announced
    }

    /// One RTP packet of track `index`, received at `arrival`.
    pub fn push(
        &mut self,
        index: usize,
        packet: RtpPacket,
        arrival: Instant,
        out: &mut Vec<IngestOutput>,
    ) -> Result<Pushed, RtpError> {
        let origin = *self.origin.get_or_insert(arrival);
        let Some(track) = self.tracks.get_mut(index) else {
            return Ok(Pushed::default());
        };
        let offset = *track.offset.get_or_insert_with(|| {
            let rate = u128::from(track.info.timescale);
            let since = arrival.saturating_duration_since(origin).as_nanos();
            let ticks = (since * rate / 1_000_000_000) as u32;
            ticks
                .wrapping_add((TIMELINE_START.as_secs() as u32).wrapping_mul(track.info.timescale))
                .wrapping_sub(packet.timestamp)
        });
        let mut packet = packet;
        packet.timestamp = packet.timestamp.wrapping_add(offset);
        let mut pictures: Vec<Picture> = Vec::new();
        let mut pushed = Pushed::default();
        let dropped_before = track.depacketizer.dropped();
        let result = match &mut track.depacketizer {
            Depacketizer::H264(d) => {
                self.units.clear();
                let result = d.push(&packet, &mut self.units);
                pictures.extend(self.units.drain(..).map(|unit| {
                    let sps: Vec<&[u8]> =
                        unit.nals_of_type(nal_type::SPS).map(|n| &n[..]).collect();
                    let pps: Vec<&[u8]> =
                        unit.nals_of_type(nal_type::PPS).map(|n| &n[..]).collect();
                    let config = build_avcc(&sps, &pps)
                        .map(|c| (c, sps.first().and_then(|s| h264_sps_size(s))));
                    Picture {
                        config,
                        keyframe: unit.keyframe,
                        timestamp: unit.timestamp,
                        payload: unit.to_avcc(),
                    }
                }));
                result
            }
            Depacketizer::H265(d) => {
                self.hevc_units.clear();
                let result = d.push(&packet, &mut self.hevc_units);
                pictures.extend(self.hevc_units.drain(..).map(|unit| {
                    let of =
                        |kind| -> Vec<&[u8]> { unit.nals_of_type(kind).map(|n| &n[..]).collect() };
                    let (vps, sps, pps) = (of(h265_nal::VPS), of(h265_nal::SPS), of(h265_nal::PPS));
                    let config = build_hvcc(&vps, &sps, &pps)
                        .map(|c| (c, sps.first().and_then(|s| h265_sps_size(s))));
                    Picture {
                        config,
                        keyframe: unit.keyframe,
                        timestamp: unit.timestamp,
                        payload: unit.to_hvcc(),
                    }
                }));
                result
            }
            Depacketizer::Vp8(d) => {
                let result = d.push(&packet, &mut self.frames);
                pictures.extend(self.frames.drain(..).map(|f| {
                    let config = vp8_keyframe(&f.data).map(|k| (k.vpcc, Some((k.width, k.height))));
                    Picture::of(f, config)
                }));
                result
            }
            Depacketizer::Vp9(d) => {
                let result = d.push(&packet, &mut self.frames);
                pictures.extend(self.frames.drain(..).map(|f| {
                    let config = vp9_keyframe(&f.data).map(|k| (k.vpcc, Some((k.width, k.height))));
                    Picture::of(f, config)
                }));
                result
            }
            Depacketizer::Av1(d) => {
                let result = d.push(&packet, &mut self.frames);
                pictures.extend(self.frames.drain(..).map(|f| {
                    let config = f
                        .keyframe
                        .then(|| av1_sequence(&f.data))
                        .flatten()
                        .map(|s| (s.av1c, Some((s.width, s.height))));
                    Picture::of(f, config)
                }));
                result
            }
            Depacketizer::Opus => Ok(()),
        };
        pushed.wants_keyframe = track.depacketizer.dropped() > dropped_before;
        let mut frames: Vec<(bool, Frame)> = Vec::new();
        if matches!(track.depacketizer, Depacketizer::Opus) && !packet.payload.is_empty() {
            let ts = i64::from(packet.timestamp);
            frames.push((
                false,
                Frame::audio(track.info.id, Codec::Opus, ts, packet.payload.clone()),
            ));
        }
        for picture in pictures {
            let mut changed = false;
            if let Some((config, size)) = picture.config
                && track.info.config.as_ref() != Some(&config)
            {
                if let (Some(v), Some((w, h))) = (track.info.video.as_mut(), size) {
                    v.width = w;
                    v.height = h;
                }
                track.info.config = Some(config);
                changed = true;
            }
            if picture.keyframe {
                track.keyframes += 1;
            }
            let ts = i64::from(picture.timestamp);
            let frame = Frame::video(
                track.info.id,
                track.info.codec,
                ts,
                ts,
                picture.keyframe,
                picture.payload,
            );
            frames.push((changed, frame));
        }
        for (changed, frame) in frames {
            if changed || !self.announced {
                self.announce(out);
            }
            if self.announced {
                out.push(IngestOutput::Frame(frame));
            }
        }
        result.map(|()| pushed)
    }

    fn announce(&mut self, out: &mut Vec<IngestOutput>) {
        if self.tracks.is_empty()
            || self
                .tracks
                .iter()
                .any(|t| t.info.config.is_none() && t.info.codec != Codec::Opus)
        {
            return;
        }
        self.announced = true;
        out.push(IngestOutput::Catalog(
            self.tracks.iter().map(|t| t.info.clone()).collect(),
        ));
    }
}

impl Picture {
    fn of(f: VideoFrame, config: Option<(Bytes, Option<(u32, u32)>)>) -> Picture {
        Picture {
            config,
            keyframe: f.keyframe,
            timestamp: f.timestamp,
            payload: f.data,
        }
    }
}

impl Depacketizer {
    /// Frames the video depacketizer dropped so far (0 for Opus).
    fn dropped(&self) -> u64 {
        match self {
            Depacketizer::H264(d) => d.dropped(),
            Depacketizer::H265(d) => d.dropped(),
            Depacketizer::Vp8(d) => d.dropped(),
            Depacketizer::Vp9(d) => d.dropped(),
            Depacketizer::Av1(d) => d.dropped(),
            Depacketizer::Opus => 0,
        }
    }
}

/// The media time a stream's first packet maps to.
pub const TIMELINE_START: std::time::Duration = std::time::Duration::from_secs(10);

/// An RTP packet for the depacketizers from its parsed header fields and payload.
pub fn packet(
    marker: bool,
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    payload: Bytes,
) -> RtpPacket {
    RtpPacket {
        marker,
        payload_type,
        sequence,
        timestamp,
        ssrc,
        payload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tidewater_media::rtp::h264::packetize_h264;

    const SPS: &[u8] = &[
        0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80, 0xbf, 0xe5, 0x84, 0x00, 0x00, 0x03, 0x00, 0x04,
        0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x58, 0xba, 0x80,
    ];
    const PPS: &[u8] = &[0x68, 0xce, 0x0f, 0xc8];

    fn video(
        ingest: &mut Ingest,
        seq: &mut u16,
        ts: u32,
        nals: &[&[u8]],
        at: Instant,
    ) -> (Vec<IngestOutput>, bool) {
        let mut payloads = Vec::new();
        packetize_h264(nals.iter().copied(), 1200, &mut payloads);
        let mut out = Vec::new();
        let mut wants = false;
        for p in payloads {
            let pushed = ingest
                .push(0, packet(p.marker, 102, *seq, ts, 9, p.data), at, &mut out)
                .expect("valid");
            wants |= pushed.wants_keyframe;
            *seq = seq.wrapping_add(1);
        }
        (out, wants)
    }

    #[test]
    fn in_band_parameter_sets_make_the_catalog_and_tracks_share_a_timeline() {
        let mut ingest = Ingest::new();
        assert_eq!(ingest.add_track(MediaCodec::H264), Some(0));
        assert_eq!(ingest.add_track(MediaCodec::Opus), Some(1));
        let t0 = Instant::now();
        let mut out = Vec::new();
        // Audio first: it waits for the video configuration.
        ingest
            .push(
                1,
                packet(true, 111, 5, 4_000_000_000, 7, Bytes::from_static(b"op")),
                t0,
                &mut out,
            )
            .expect("valid");
        assert!(out.is_empty());
        let mut seq = 65_534;
        let idr = vec![0x65; 3000];
        let (out, _) = video(
            &mut ingest,
            &mut seq,
            1234,
            &[SPS, PPS, &idr],
            t0 + Duration::from_millis(100),
        );
        let IngestOutput::Catalog(tracks) = &out[0] else {
            panic!("catalog first: {out:?}")
        };
        assert_eq!(tracks.len(), 2);
        assert!(tracks[0].video.is_some_and(|v| v.width > 0));
        let IngestOutput::Frame(f) = &out[1] else {
            panic!("a frame")
        };
        assert!(f.is_keyframe());
        // 10 s plus the 100 ms after the stream's first packet, at 90 kHz.
        assert_eq!(f.pts, 900_000 + 9_000);
        let (out, _) = video(&mut ingest, &mut seq, 1234 + 3000, &[&[0x41, 1, 2]], t0);
        let IngestOutput::Frame(f) = &out[0] else {
            panic!("a frame")
        };
        assert_eq!(f.pts, 909_000 + 3000);
        let mut out = Vec::new();
        ingest
            .push(
                1,
                packet(true, 111, 6, 4_000_000_960, 7, Bytes::from_static(b"op")),
                t0,
                &mut out,
            )
            .expect("valid");
        let IngestOutput::Frame(f) = &out[0] else {
            panic!("a frame")
        };
        assert_eq!((f.codec, f.pts), (Codec::Opus, 480_000 + 960));
    }

    #[test]
    fn a_lost_packet_asks_for_a_keyframe_and_drops_until_one() {
        let mut ingest = Ingest::new();
        ingest.add_track(MediaCodec::H264);
        let t0 = Instant::now();
        let mut seq = 0;
        let idr = vec![0x65; 100];
        let (out, wants) = video(&mut ingest, &mut seq, 0, &[SPS, PPS, &idr], t0);
        assert_eq!(out.len(), 2);
        assert!(!wants);
        seq += 1; // lost
        let (out, wants) = video(&mut ingest, &mut seq, 3000, &[&[0x41, 1]], t0);
        assert!(out.is_empty(), "{out:?}");
        assert!(wants);
        let (out, _) = video(&mut ingest, &mut seq, 6000, &[&[0x41, 1]], t0);
        assert!(out.is_empty());
        let (out, _) = video(&mut ingest, &mut seq, 9000, &[SPS, PPS, &idr], t0);
        assert!(matches!(&out[..], [IngestOutput::Frame(f)] if f.is_keyframe()));
        assert_eq!(ingest.keyframes(0), 2);
    }

    #[test]
    fn vp8_keyframes_make_the_catalog_and_a_loss_asks_for_a_keyframe() {
        use tidewater_media::rtp::vp8::packetize_vp8;
        let mut ingest = Ingest::new();
        assert_eq!(ingest.add_track(Codec::Vp8), Some(0));
        assert_eq!(ingest.add_track(Codec::Aac), None);
        let t0 = Instant::now();
        // A 640 × 360 keyframe, then an inter frame.
        let mut key = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01];
        key.extend([7; 2000]);
        let inter = vec![0x11; 300];
        let mut seq = 1u16;
        let mut send = |ingest: &mut Ingest, ts: u32, frame: &[u8], lose: bool| {
            let mut payloads = Vec::new();
            packetize_vp8(frame, 1000, &mut payloads);
            let (mut out, mut wants) = (Vec::new(), false);
            for (i, (marker, p)) in payloads.into_iter().enumerate() {
                if !(lose && i == 0) {
                    let pushed = ingest
                        .push(0, packet(marker, 96, seq, ts, 9, p), t0, &mut out)
                        .expect("valid");
                    wants |= pushed.wants_keyframe;
                }
                seq = seq.wrapping_add(1);
            }
            (out, wants)
        };
        let (out, _) = send(&mut ingest, 0, &key, false);
        let IngestOutput::Catalog(tracks) = &out[0] else {
            panic!("catalog first: {out:?}")
        };
        assert_eq!(tracks[0].codec, Codec::Vp8);
        assert!(
            tracks[0]
                .video
                .is_some_and(|v| (v.width, v.height) == (640, 360))
        );
        assert!(tracks[0].config.as_ref().is_some_and(|c| c.len() == 12));
        assert!(
            matches!(&out[1], IngestOutput::Frame(f) if f.is_keyframe() && f.payload[..] == key[..])
        );
        let (out, _) = send(&mut ingest, 3000, &inter, false);
        assert!(matches!(&out[..], [IngestOutput::Frame(f)] if !f.is_keyframe()));
        let (out, wants) = send(&mut ingest, 6000, &key, true);
        assert!(out.is_empty() && wants);
        let (out, _) = send(&mut ingest, 9000, &key, false);
        assert!(matches!(&out[..], [IngestOutput::Frame(f)] if f.is_keyframe()));
        assert_eq!(ingest.keyframes(0), 2);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut ingest = Ingest::new();
        ingest.add_track(MediaCodec::H264);
        let mut out = Vec::new();
        for payload in [&b""[..], &[0x7c][..], &[0x78, 0, 5][..], &[0x1f; 3][..]] {
            let _ = ingest.push(
                0,
                packet(true, 102, 1, 0, 1, Bytes::copy_from_slice(payload)),
                Instant::now(),
                &mut out,
            );
        }
        assert!(
            ingest
                .push(
                    7,
                    packet(true, 1, 1, 0, 1, Bytes::new()),
                    Instant::now(),
                    &mut out
                )
                .is_ok()
        );
    }
}
