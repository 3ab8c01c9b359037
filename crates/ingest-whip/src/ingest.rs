//! Received RTP of one WHIP publish to kernel frames and a catalog, sans-IO.
//!
//! Each negotiated media line (in the order the offer lists them) becomes a
//! kernel track: H.264 (RFC 6184, packetization-mode 1, through
//! [`H264Depacketizer`]) at 90 kHz and Opus (RFC 7587, one packet per RTP
//! packet) at 48 kHz. Browsers send SPS and PPS in band before every IDR
//! picture, so the H.264 decoder configuration comes from the stream; the
//! catalog is announced once every video track has one, and an SPS/PPS
//! that differs is a new catalog version.
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
use tidewater_media::codec::{build_avcc, h264_sps_size};
use tidewater_media::rtp::h264::{H264AccessUnit, H264Depacketizer, nal_type};
use tidewater_media::rtp::{RtpError, RtpPacket};

/// What the ingest hands the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IngestOutput {
    /// A (new version of the) catalog: every track.
    Catalog(Vec<TrackInfo>),
    /// A frame of a track of the last catalog.
    Frame(Frame),
}

/// The codecs a WHIP publish may carry in this version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaCodec {
    /// H.264, packetization-mode 1.
    H264,
    /// Opus.
    Opus,
}

#[derive(Debug)]
enum Depacketizer {
    H264(Box<H264Depacketizer>),
    Opus,
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
        }
    }

    /// Adds a track of `codec`; returns its index for [`Ingest::push`].
    /// Tracks are numbered `TrackId(index + 1)`.
    pub fn add_track(&mut self, codec: MediaCodec) -> usize {
        let id = TrackId(self.tracks.len() as u32 + 1);
        let wrap = TimestampWrap::Bits(32);
        let (info, depacketizer) = match codec {
            MediaCodec::H264 => (
                TrackInfo::video(id, Codec::H264, 0, 0)
                    .with_timescale(90_000)
                    .with_wrap(wrap),
                Depacketizer::H264(Box::default()),
            ),
            MediaCodec::Opus => (
                TrackInfo::audio(id, Codec::Opus, 48_000, 2)
                    .with_timescale(48_000)
                    .with_wrap(wrap),
                Depacketizer::Opus,
            ),
        };
        self.tracks.push(Track {
            info,
            depacketizer,
            offset: None,
            keyframes: 0,
        });
        self.tracks.len() - 1
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
        let mut frames: Vec<(bool, Frame)> = Vec::new();
        let mut pushed = Pushed::default();
        let result = match &mut track.depacketizer {
            Depacketizer::H264(d) => {
                self.units.clear();
                let before = d.dropped();
                let result = d.push(&packet, &mut self.units);
                pushed.wants_keyframe = d.dropped() > before;
                for unit in self.units.drain(..) {
                    let mut changed = false;
                    let sps: Vec<&[u8]> =
                        unit.nals_of_type(nal_type::SPS).map(|n| &n[..]).collect();
                    let pps: Vec<&[u8]> =
                        unit.nals_of_type(nal_type::PPS).map(|n| &n[..]).collect();
                    if !sps.is_empty()
                        && !pps.is_empty()
                        && let Some(avcc) = build_avcc(&sps, &pps)
                        && track.info.config.as_ref() != Some(&avcc)
                    {
                        if let (Some(v), Some((w, h))) = (
                            track.info.video.as_mut(),
                            sps.first().and_then(|s| h264_sps_size(s)),
                        ) {
                            v.width = w;
                            v.height = h;
                        }
                        track.info.config = Some(avcc);
                        changed = true;
                    }
                    if unit.keyframe {
                        track.keyframes += 1;
                    }
                    let ts = i64::from(unit.timestamp);
                    let frame = Frame::video(
                        track.info.id,
                        Codec::H264,
                        ts,
                        ts,
                        unit.keyframe,
                        unit.to_avcc(),
                    );
                    frames.push((changed, frame));
                }
                result
            }
            Depacketizer::Opus => {
                if !packet.payload.is_empty() {
                    let ts = i64::from(packet.timestamp);
                    frames.push((
                        false,
                        Frame::audio(track.info.id, Codec::Opus, ts, packet.payload.clone()),
                    ));
                }
                Ok(())
            }
        };
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
        assert_eq!(ingest.add_track(MediaCodec::H264), 0);
        assert_eq!(ingest.add_track(MediaCodec::Opus), 1);
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
