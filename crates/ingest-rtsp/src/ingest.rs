//! Published RTP to kernel frames and a catalog, sans-IO.
//!
//! Each announced track with a codec this crate depacketizes becomes a
//! kernel track (`TrackId(m= index + 1)`): H.264 (RFC 6184), H.265
//! (RFC 7798), AAC (RFC 3640 `mpeg4-generic`) and Opus (RFC 7587); other
//! tracks are ignored with a log line by the driver.
//!
//! # Timestamps
//!
//! Timestamps are in the track's RTP clock rate (90 kHz video, the sample
//! rate for audio) with a 32-bit wrap the kernel unwraps; the kernel's clock
//! also makes them monotonic per track. Each track's RTP timestamps start
//! at a random value, so they are moved onto one stream timeline before the
//! kernel sees them (its GOP start and audio alignment compare tracks):
//! when an RTCP sender report of a track arrived before its first RTP
//! packet (ffmpeg sends one first), the track's timeline is the report's
//! wall-clock time since the stream's first report, plus
//! [`TIMELINE_START`], so tracks keep the sender's A/V sync; otherwise the
//! track starts at [`TIMELINE_START`] at its first packet
//! (sync within the difference of the tracks' first packets; using later
//! sender reports is left for later).
//!
//! RTP carries presentation timestamps only; video decode timestamps are
//! derived with [`DtsDeriver`]: the reorder depth comes from the H.264
//! SPS (`max_num_reorder_frames`) or is learned from the pictures that
//! arrive out of order (H.265, an SPS that does not say), and decode times
//! trail presentation times by that many frames, without holding any
//! frame back. Audio decode times are presentation times.
//!
//! The catalog is announced once every track has its decoder
//! configuration: H.264 from `sprop-parameter-sets` or, failing that, the
//! first in-band SPS and PPS; H.265 likewise from `sprop-vps` / `sprop-sps`
//! / `sprop-pps` or in band; AAC from the `config` parameter; Opus needs
//! none. An in-band SPS/PPS that differs from the announced one is a new
//! catalog version.
//! Frames before the catalog are dropped (video waits for an IDR anyway);
//! a video track announced without parameter sets that never sends them
//! in band holds the catalog back (no timeout yet).
//!
//! Packets are put back in sequence order first (UDP may reorder them):
//! after a gap, later packets wait for the missing ones up to
//! `ReorderBuffer::HOLD` packets or, for packets pushed with their arrival
//! time ([`Ingest::push_at`], UDP), `ReorderBuffer::WINDOW_TIME` (50 ms; the
//! driver calls [`Ingest::handle_timeout`] at [`Ingest::poll_timeout`]).
//! Then the gap counts as a loss: the access unit it touched is dropped and
//! video resumes at the next keyframe (the depacketizers never hand out a
//! picture with a piece missing).
// Reads network input: no indexing, unwrap, expect or panic that a peer
// could reach (issue 18); where an invariant proves one safe, an allow says which.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::time::Instant;

use bytes::Bytes;
use tidewater_core::{Codec, Frame, TimestampWrap, TrackId, TrackInfo};
use tidewater_media::codec::parse_asc;
use tidewater_media::codec::{build_avcc, build_hvcc, h264_sps_size, h265_sps_size};
use tidewater_media::rtp::aac::{AacDepacketizer, AuHeaderLayout};
use tidewater_media::rtp::dts::{DtsDeriver, h264_reorder_depth};
use tidewater_media::rtp::h264::{H264AccessUnit, H264Depacketizer, nal_type};
use tidewater_media::rtp::h265::{self, H265AccessUnit, H265Depacketizer};
use tidewater_media::rtp::latm::{LatmDepacketizer, latm_audio_specific_config};
use tidewater_media::rtp::{ReorderBuffer, RtpError, RtpPacket, SenderReport, parse_sender_report};

use crate::sdp::SdpTrack;

/// What the ingest hands the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IngestOutput {
    /// A (new version of the) catalog: every supported track.
    Catalog(Vec<TrackInfo>),
    /// A frame of a track of the last catalog.
    Frame(Frame),
}

#[derive(Debug)]
enum Depacketizer {
    H264(Box<H264Depacketizer>),
    /// RFC 7587: one Opus packet per RTP packet.
    Opus,
    H265(Box<H265Depacketizer>),
    Aac(AacDepacketizer),
    /// AAC in LATM (`MP4A-LATM`, GStreamer's default).
    Latm(LatmDepacketizer),
}

#[derive(Debug)]
struct Track {
    info: TrackInfo,
    depacketizer: Depacketizer,
    payload_type: u8,
    /// The last sender report before the first packet.
    report: Option<SenderReport>,
    /// Added to RTP timestamps (modulo 2^32) to put the track on the stream's timeline.
    offset: Option<u32>,
    /// Puts UDP's reordered packets back in order.
    reorder: ReorderBuffer,
    /// Decode times of video pictures (RTP carries presentation times).
    dts: DtsDeriver,
}

/// RTP of one publish to frames (see the module docs).
#[derive(Debug)]
pub struct Ingest {
    tracks: Vec<Option<Track>>,
    announced: bool,
    /// The NTP time the stream's timeline starts at (the first sender report).
    ntp_origin: Option<u64>,
    units: Vec<H264AccessUnit>,
    hevc_units: Vec<H265AccessUnit>,
    ordered: Vec<RtpPacket>,
    audio: Vec<(u32, Bytes)>,
}

impl Ingest {
    /// An ingest for the announced tracks.
    pub fn new(announced: &[SdpTrack]) -> Ingest {
        let tracks = announced
            .iter()
            .enumerate()
            .map(|(i, t)| track(TrackId(i as u32 + 1), t))
            .collect();
        Ingest {
            tracks,
            announced: false,
            ntp_origin: None,
            units: Vec::new(),
            hevc_units: Vec::new(),
            ordered: Vec::new(),
            audio: Vec::new(),
        }
    }

    /// The announced tracks this ingest ignores (unsupported codecs), by index.
    pub fn ignored(&self) -> impl Iterator<Item = usize> + '_ {
        self.tracks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.is_none())
            .map(|(i, _)| i)
    }

    /// Whether any announced track is supported.
    pub fn has_tracks(&self) -> bool {
        self.tracks.iter().any(Option::is_some)
    }

    /// One RTCP packet about announced track `index`: a sender report before
    /// the track's first RTP packet places the track on the stream's
    /// timeline (see the module docs).
    pub fn push_rtcp(&mut self, index: usize, packet: &[u8]) {
        if let Some(Some(track)) = self.tracks.get_mut(index)
            && track.offset.is_none()
            && let Some(report) = parse_sender_report(packet)
        {
            track.report = Some(report);
        }
    }

    /// One RTP packet of announced track `index` (TCP: gaps are waited
    /// for by packet count only).
    pub fn push(
        &mut self,
        index: usize,
        packet: &Bytes,
        out: &mut Vec<IngestOutput>,
    ) -> Result<(), RtpError> {
        self.push_inner(index, packet, None, out)
    }

    /// One RTP packet of announced track `index` that arrived at `now`
    /// (UDP): a gap it opens is waited for at most the jitter window.
    pub fn push_at(
        &mut self,
        index: usize,
        packet: &Bytes,
        now: Instant,
        out: &mut Vec<IngestOutput>,
    ) -> Result<(), RtpError> {
        self.push_inner(index, packet, Some(now), out)
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called: the
    /// earliest end of a jitter window waited through.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.tracks
            .iter()
            .flatten()
            .filter_map(|t| t.reorder.poll_timeout())
            .min()
    }

    /// Gives up the gaps whose jitter window ended at `now`; what was held
    /// behind them goes through the depacketizers.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<IngestOutput>) {
        for index in 0..self.tracks.len() {
            let Some(Some(track)) = self.tracks.get_mut(index) else {
                continue;
            };
            let mut ordered = std::mem::take(&mut self.ordered);
            track.reorder.handle_timeout(now, &mut ordered);
            for packet in ordered.drain(..) {
                // A bad payload was already counted when it arrived.
                let _ = self.depacketize(index, packet, out);
            }
            self.ordered = ordered;
        }
    }

    fn push_inner(
        &mut self,
        index: usize,
        packet: &Bytes,
        now: Option<Instant>,
        out: &mut Vec<IngestOutput>,
    ) -> Result<(), RtpError> {
        let Some(Some(track)) = self.tracks.get_mut(index) else {
            return Ok(());
        };
        let packet = RtpPacket::parse(packet)?;
        if packet.payload_type != track.payload_type {
            return Ok(()); // comfort noise, FEC, …: not ours
        }
        let mut ordered = std::mem::take(&mut self.ordered);
        match now {
            Some(now) => track.reorder.push_at(packet, now, &mut ordered),
            None => track.reorder.push(packet, &mut ordered),
        }
        let mut result = Ok(());
        for packet in ordered.drain(..) {
            if let Err(e) = self.depacketize(index, packet, out) {
                result = Err(e);
            }
        }
        self.ordered = ordered;
        result
    }

    /// One packet of track `index`, in sequence order, through its depacketizer.
    fn depacketize(
        &mut self,
        index: usize,
        packet: RtpPacket,
        out: &mut Vec<IngestOutput>,
    ) -> Result<(), RtpError> {
        let Some(Some(track)) = self.tracks.get_mut(index) else {
            return Ok(());
        };
        let offset = *track.offset.get_or_insert_with(|| match track.report {
            Some(report) => {
                let origin = *self.ntp_origin.get_or_insert(report.ntp);
                // Seconds since the origin, as a 32.32 fixed-point signed value.
                let since = report.ntp.wrapping_sub(origin) as i64;
                let ticks = ((i128::from(since) * i128::from(track.info.timescale)) >> 32) as i64;
                (ticks as u32)
                    .wrapping_add(timeline_start(track.info.timescale))
                    .wrapping_sub(report.rtp_timestamp)
            }
            None => timeline_start(track.info.timescale).wrapping_sub(packet.timestamp),
        });
        let mut packet = packet;
        packet.timestamp = packet.timestamp.wrapping_add(offset);
        let mut frames: Vec<(bool, Frame)> = Vec::new();
        let result = match &mut track.depacketizer {
            Depacketizer::H264(d) => {
                self.units.clear();
                let result = d.push(&packet, &mut self.units);
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
                        track
                            .dts
                            .set_depth(sps.first().and_then(|s| h264_reorder_depth(s)));
                        changed = true;
                    }
                    let ts = i64::from(unit.timestamp);
                    let frame = Frame::video(
                        track.info.id,
                        Codec::H264,
                        track.dts.next(unit.timestamp),
                        ts,
                        unit.keyframe,
                        unit.to_avcc(),
                    );
                    frames.push((changed, frame));
                }
                result
            }
            Depacketizer::H265(d) => {
                self.hevc_units.clear();
                let result = d.push(&packet, &mut self.hevc_units);
                for unit in self.hevc_units.drain(..) {
                    let mut changed = false;
                    let sets = |kind| {
                        unit.nals_of_type(kind)
                            .map(|n| &n[..])
                            .collect::<Vec<&[u8]>>()
                    };
                    let (vps, sps, pps) = (
                        sets(h265::nal_type::VPS),
                        sets(h265::nal_type::SPS),
                        sets(h265::nal_type::PPS),
                    );
                    if !vps.is_empty()
                        && !sps.is_empty()
                        && !pps.is_empty()
                        && let Some(hvcc) = build_hvcc(&vps, &sps, &pps)
                        && track.info.config.as_ref() != Some(&hvcc)
                    {
                        if let (Some(v), Some((w, h))) = (
                            track.info.video.as_mut(),
                            sps.first().and_then(|s| h265_sps_size(s)),
                        ) {
                            v.width = w;
                            v.height = h;
                        }
                        track.info.config = Some(hvcc);
                        changed = true;
                    }
                    let ts = i64::from(unit.timestamp);
                    let frame = Frame::video(
                        track.info.id,
                        Codec::H265,
                        track.dts.next(unit.timestamp),
                        ts,
                        unit.keyframe,
                        unit.to_hvcc(),
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
            Depacketizer::Latm(d) => {
                self.audio.clear();
                let result = d.push(&packet, &mut self.audio);
                for (ts, au) in self.audio.drain(..) {
                    frames.push((
                        false,
                        Frame::audio(track.info.id, Codec::Aac, i64::from(ts), au),
                    ));
                }
                result
            }
            Depacketizer::Aac(d) => {
                self.audio.clear();
                let result = d.push(&packet, &mut self.audio);
                for (ts, au) in self.audio.drain(..) {
                    frames.push((
                        false,
                        Frame::audio(track.info.id, Codec::Aac, i64::from(ts), au),
                    ));
                }
                result
            }
        };
        for (changed, frame) in frames {
            // The catalog precedes the first frame and every frame that
            // needs a new configuration.
            if changed || !self.announced {
                self.announce(out);
            }
            if self.announced {
                out.push(IngestOutput::Frame(frame));
            }
        }
        result
    }

    /// Announces the catalog if every supported track has its configuration.
    fn announce(&mut self, out: &mut Vec<IngestOutput>) {
        let infos: Vec<&TrackInfo> = self.tracks.iter().flatten().map(|t| &t.info).collect();
        // Opus needs no decoder configuration (its OpusHead is optional).
        if infos.is_empty()
            || infos
                .iter()
                .any(|t| t.config.is_none() && t.codec != Codec::Opus)
        {
            return;
        }
        self.announced = true;
        out.push(IngestOutput::Catalog(infos.into_iter().cloned().collect()));
    }

    /// Whether the catalog was announced.
    pub fn catalog_ready(&self) -> bool {
        self.announced
    }
}

/// Where the stream's timeline starts, in ticks of `timescale`:
/// [`TIMELINE_START`] after 0, so that a track whose first packet precedes
/// the origin a little does not start just below the 32-bit wrap (which
/// the kernel would unwrap as far ahead of the other tracks).
fn timeline_start(timescale: u32) -> u32 {
    (TIMELINE_START.as_secs() as u32).wrapping_mul(timescale)
}

/// The media time the first sender report (or, without one, each track's
/// first packet) maps to.
pub const TIMELINE_START: std::time::Duration = std::time::Duration::from_secs(10);

fn track(id: TrackId, sdp: &SdpTrack) -> Option<Track> {
    let wrap = TimestampWrap::Bits(32);
    match sdp.codec()? {
        Codec::H264 => {
            let mut info = TrackInfo::video(id, Codec::H264, 0, 0)
                .with_timescale(sdp.clock_rate)
                .with_wrap(wrap);
            let sets = sdp.sprop_parameter_sets();
            let sps: Vec<&[u8]> = sets
                .iter()
                .filter(|n| n.first().map(|b| b & 0x1f) == Some(nal_type::SPS))
                .map(|n| &n[..])
                .collect();
            let pps: Vec<&[u8]> = sets
                .iter()
                .filter(|n| n.first().map(|b| b & 0x1f) == Some(nal_type::PPS))
                .map(|n| &n[..])
                .collect();
            if !pps.is_empty() {
                info.config = build_avcc(&sps, &pps);
            }
            // Without an SPS yet the depth is learned until one comes.
            let depth = match sps.first() {
                Some(s) => h264_reorder_depth(s),
                None => None,
            };
            if let (Some(v), Some((w, h))) = (
                info.video.as_mut(),
                sps.first().and_then(|s| h264_sps_size(s)),
            ) {
                v.width = w;
                v.height = h;
            }
            Some(Track {
                info,
                depacketizer: Depacketizer::H264(Box::default()),
                payload_type: sdp.payload_type,
                report: None,
                offset: None,
                reorder: ReorderBuffer::default(),
                dts: DtsDeriver::new(depth, sdp.clock_rate / 30),
            })
        }
        Codec::H265 => {
            let mut info = TrackInfo::video(id, Codec::H265, 0, 0)
                .with_timescale(sdp.clock_rate)
                .with_wrap(wrap);
            let (vps, sps, pps) = (
                sdp.sprop("sprop-vps"),
                sdp.sprop("sprop-sps"),
                sdp.sprop("sprop-pps"),
            );
            fn refs(sets: &[Vec<u8>]) -> Vec<&[u8]> {
                sets.iter().map(|n| &n[..]).collect()
            }
            info.config = build_hvcc(&refs(&vps), &refs(&sps), &refs(&pps));
            if let (Some(v), Some((w, h))) = (
                info.video.as_mut(),
                sps.first().and_then(|s| h265_sps_size(s)),
            ) {
                v.width = w;
                v.height = h;
            }
            Some(Track {
                info,
                depacketizer: Depacketizer::H265(Box::default()),
                payload_type: sdp.payload_type,
                report: None,
                offset: None,
                reorder: ReorderBuffer::default(),
                dts: DtsDeriver::new(None, sdp.clock_rate / 30),
            })
        }
        Codec::Opus => {
            // RFC 7587: the rtpmap always says 48000/2; sprop-stereo says what is sent.
            let channels = if sdp.fmtp_number("sprop-stereo") == Some(0) {
                1
            } else {
                2
            };
            Some(Track {
                info: TrackInfo::audio(id, Codec::Opus, 48_000, channels)
                    .with_timescale(sdp.clock_rate)
                    .with_wrap(wrap),
                depacketizer: Depacketizer::Opus,
                payload_type: sdp.payload_type,
                report: None,
                offset: None,
                reorder: ReorderBuffer::default(),
                dts: DtsDeriver::new(Some(0), 1),
            })
        }
        Codec::Aac if sdp.encoding == "MP4A-LATM" => {
            let (config, sub_frames) = latm_audio_specific_config(&sdp.config()?)?;
            let (rate, channels) =
                parse_asc(&config).unwrap_or((sdp.clock_rate, sdp.channels.unwrap_or(2)));
            Some(Track {
                info: TrackInfo::audio(id, Codec::Aac, rate, channels)
                    .with_timescale(sdp.clock_rate)
                    .with_wrap(wrap)
                    .with_config(config),
                depacketizer: Depacketizer::Latm(LatmDepacketizer::new(sub_frames)),
                payload_type: sdp.payload_type,
                report: None,
                offset: None,
                reorder: ReorderBuffer::default(),
                dts: DtsDeriver::new(Some(0), 1),
            })
        }
        Codec::Aac => {
            let config = sdp.config()?;
            let (rate, channels) =
                parse_asc(&config).unwrap_or((sdp.clock_rate, sdp.channels.unwrap_or(2)));
            let info = TrackInfo::audio(id, Codec::Aac, rate, channels)
                .with_timescale(sdp.clock_rate)
                .with_wrap(wrap)
                .with_config(Bytes::from(config));
            let number = |name: &str, default: u8| {
                sdp.fmtp_number(name)
                    .and_then(|n| u8::try_from(n).ok())
                    .unwrap_or(default)
            };
            let layout = AuHeaderLayout {
                size_length: number("sizelength", 13),
                index_length: number("indexlength", 3),
                index_delta_length: number("indexdeltalength", 3),
            };
            Some(Track {
                info,
                depacketizer: Depacketizer::Aac(AacDepacketizer::new(layout)),
                payload_type: sdp.payload_type,
                report: None,
                offset: None,
                reorder: ReorderBuffer::default(),
                dts: DtsDeriver::new(Some(0), 1),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on what they did not expect"
)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use tidewater_media::rtp::aac::packetize_aac;
    use tidewater_media::rtp::h264::packetize_h264;
    use tidewater_media::rtp::write_header;

    const SPS: &[u8] = &[
        0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80, 0xbf, 0xe5, 0x84, 0x00, 0x00, 0x03, 0x00, 0x04,
        0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x58, 0xba, 0x80,
    ];
    const PPS: &[u8] = &[0x68, 0xce, 0x0f, 0xc8];

    fn sdp(sprop: bool) -> Vec<SdpTrack> {
        use base64::Engine as _;
        let b64 = |n: &[u8]| base64::engine::general_purpose::STANDARD.encode(n);
        let sprop = if sprop {
            format!(";sprop-parameter-sets={},{}", b64(SPS), b64(PPS))
        } else {
            String::new()
        };
        let text = format!(
            "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=x\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1{sprop}\r\n\
m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\na=fmtp:97 mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1190\r\n\
m=application 0 RTP/AVP 107\r\na=rtpmap:107 vnd.onvif.metadata/90000\r\n"
        );
        crate::sdp::parse(text.as_bytes()).expect("sdp")
    }

    fn packets(
        pt: u8,
        seq: &mut u16,
        ts: u32,
        payloads: &[tidewater_media::rtp::Payload],
    ) -> Vec<Bytes> {
        payloads
            .iter()
            .map(|p| {
                let mut out = BytesMut::new();
                write_header(&mut out, p.marker, pt, *seq, ts, 1);
                *seq = seq.wrapping_add(1);
                out.extend_from_slice(&p.data);
                out.freeze()
            })
            .collect()
    }

    #[test]
    fn frames_follow_the_catalog_with_rtp_timestamps() {
        let mut ingest = Ingest::new(&sdp(true));
        assert_eq!(ingest.ignored().collect::<Vec<_>>(), vec![2]);
        let mut out = Vec::new();
        let (mut vseq, mut aseq) = (100u16, 7u16);
        for i in 0..4u32 {
            let mut payloads = Vec::new();
            let slice: Vec<u8> = if i == 0 {
                vec![0x65; 3000]
            } else {
                vec![0x41; 500]
            };
            packetize_h264([&slice[..]], 1200, &mut payloads);
            for p in packets(
                96,
                &mut vseq,
                4_294_964_000u32.wrapping_add(i * 3000),
                &payloads,
            ) {
                ingest.push(0, &p, &mut out).expect("valid");
            }
            let au = packetize_aac(&[0x21; 200]).expect("fits");
            for p in packets(97, &mut aseq, i * 1024, &[au]) {
                ingest.push(1, &p, &mut out).expect("valid");
            }
        }
        let IngestOutput::Catalog(tracks) = &out[0] else {
            panic!("catalog first: {:?}", out[0])
        };
        assert_eq!(tracks.len(), 2);
        assert_eq!(
            (tracks[0].codec, tracks[0].timescale),
            (Codec::H264, 90_000)
        );
        assert!(tracks[0].config.is_some());
        assert_eq!((tracks[1].codec, tracks[1].timescale), (Codec::Aac, 48_000));
        let frames: Vec<&Frame> = out
            .iter()
            .filter_map(|o| match o {
                IngestOutput::Frame(f) => Some(f),
                _ => None,
            })
            .collect();
        let video: Vec<i64> = frames
            .iter()
            .filter(|f| f.codec == Codec::H264)
            .map(|f| f.pts)
            .collect();
        let audio: Vec<i64> = frames
            .iter()
            .filter(|f| f.codec == Codec::Aac)
            .map(|f| f.pts)
            .collect();
        // Without sender reports each track starts at 10 s (across the wrap, too).
        assert_eq!(video, vec![900_000, 903_000, 906_000, 909_000]);
        assert_eq!(audio, vec![480_000, 481_024, 482_048, 483_072]);
        assert!(
            frames
                .iter()
                .find(|f| f.codec == Codec::H264)
                .is_some_and(|f| f.is_keyframe())
        );
        assert_eq!(
            &frames[0].payload[..4],
            &[0, 0, 0x0b, 0xb8],
            "AVCC length of the 3000-byte slice"
        );
    }

    #[test]
    fn sender_reports_put_the_tracks_on_one_timeline() {
        let mut ingest = Ingest::new(&sdp(true));
        let report = |ssrc: u32, ntp: u64, rtp: u32| {
            let mut r = vec![0x80, 200, 0, 6];
            r.extend_from_slice(&ssrc.to_be_bytes());
            r.extend_from_slice(&ntp.to_be_bytes());
            r.extend_from_slice(&rtp.to_be_bytes());
            r.extend_from_slice(&[0; 8]);
            r
        };
        // Video's report at 1 s (RTP 1000), audio's half a second later (RTP 500).
        ingest.push_rtcp(0, &report(1, 1 << 32, 1000));
        ingest.push_rtcp(1, &report(2, (1 << 32) + (1 << 31), 500));
        let mut out = Vec::new();
        let mut payloads = Vec::new();
        packetize_h264([&[0x65u8, 1][..]], 1200, &mut payloads);
        ingest
            .push(0, &packets(96, &mut 0, 1000 + 9000, &payloads)[0], &mut out)
            .expect("valid");
        let au = packetize_aac(&[1; 10]).expect("fits");
        ingest
            .push(1, &packets(97, &mut 0, 500 + 4800, &[au])[0], &mut out)
            .expect("valid");
        let pts: Vec<(Codec, i64)> = out
            .iter()
            .filter_map(|o| match o {
                IngestOutput::Frame(f) => Some((f.codec, f.pts)),
                _ => None,
            })
            .collect();
        // Video 0.1 s after its report; audio 0.5 + 0.1 s after the origin;
        // the origin at 10 s.
        assert_eq!(
            pts,
            vec![
                (Codec::H264, 900_000 + 9000),
                (Codec::Aac, 480_000 + 24_000 + 4800)
            ]
        );
    }

    #[test]
    fn a_track_that_starts_before_the_origin_does_not_wrap() {
        let mut ingest = Ingest::new(&sdp(true));
        let report = |ntp: u64, rtp: u32| {
            let mut r = vec![0x80, 200, 0, 6, 0, 0, 0, 1];
            r.extend_from_slice(&ntp.to_be_bytes());
            r.extend_from_slice(&rtp.to_be_bytes());
            r.extend_from_slice(&[0; 8]);
            r
        };
        // The audio report comes first (the origin); video's is 0.5 s earlier.
        ingest.push_rtcp(1, &report((1 << 32) + (1 << 31), 0));
        ingest.push_rtcp(0, &report(1 << 32, 0));
        let mut out = Vec::new();
        let au = packetize_aac(&[1; 10]).expect("fits");
        ingest
            .push(1, &packets(97, &mut 0, 0, &[au])[0], &mut out)
            .expect("valid");
        let mut payloads = Vec::new();
        packetize_h264([&[0x65u8, 1][..]], 1200, &mut payloads);
        ingest
            .push(0, &packets(96, &mut 0, 0, &payloads)[0], &mut out)
            .expect("valid");
        let pts: Vec<i64> = out
            .iter()
            .filter_map(|o| match o {
                IngestOutput::Frame(f) => Some(f.pts),
                _ => None,
            })
            .collect();
        assert_eq!(pts, vec![480_000, 900_000 - 45_000]);
    }

    #[test]
    fn reordered_fragments_still_make_the_picture() {
        let mut ingest = Ingest::new(&sdp(true));
        let mut payloads = Vec::new();
        packetize_h264([&[0x65u8; 3000][..]], 1000, &mut payloads);
        let mut seq = 0;
        let mut p = packets(96, &mut seq, 0, &payloads);
        assert!(p.len() >= 3);
        p.swap(1, 2);
        let mut out = Vec::new();
        for packet in &p {
            ingest.push(0, packet, &mut out).expect("valid");
        }
        let frames: Vec<usize> = out
            .iter()
            .filter_map(|o| match o {
                IngestOutput::Frame(f) => Some(f.payload.len()),
                _ => None,
            })
            .collect();
        assert_eq!(frames, vec![3004]);
    }

    #[test]
    fn udp_loss_waits_the_jitter_window_then_skips_to_the_next_keyframe() {
        use std::time::Duration;
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut ingest = Ingest::new(&sdp(true));
        let mut out = Vec::new();
        let mut seq = 0u16;
        // Pictures of 3 packets each: IDR, P, P (loses its middle packet),
        // P, then IDR, P; 40 ms apart.
        let pictures: [(u8, u32); 6] = [
            (0x65, 0),
            (0x41, 1),
            (0x41, 2),
            (0x41, 3),
            (0x65, 4),
            (0x41, 5),
        ];
        let mut sent = Vec::new();
        for (nal, i) in pictures {
            let mut payloads = Vec::new();
            packetize_h264([&vec![nal; 2500][..]], 1000, &mut payloads);
            assert_eq!(payloads.len(), 3);
            for p in packets(96, &mut seq, i * 3600, &payloads) {
                sent.push((i, p));
            }
        }
        // Within a picture the packets come swapped (reordered, not lost).
        sent.swap(3, 4);
        let lost = 7; // the middle of picture 2
        let mut decoded: Vec<(u64, i64)> = Vec::new();
        let mut drain = |out: &mut Vec<IngestOutput>, now: u64| {
            for o in out.drain(..) {
                if let IngestOutput::Frame(f) = o {
                    decoded.push((now, f.pts));
                }
            }
        };
        for (n, (i, p)) in sent.iter().enumerate() {
            let now = u64::from(*i) * 40 + n as u64 % 3;
            if n != lost {
                ingest.push_at(0, p, at(now), &mut out).expect("valid");
            }
            drain(&mut out, now);
            if let Some(deadline) = ingest.poll_timeout()
                && deadline <= at(now + 1)
            {
                ingest.handle_timeout(deadline, &mut out);
                drain(&mut out, now);
            }
        }
        let pts: Vec<i64> = decoded.iter().map(|d| (d.1 - 900_000) / 3600).collect();
        // The reordered picture 1 is whole; 2 lost a piece and 3 refers to
        // it: both dropped, never handed out broken; 4 (IDR) and 5 follow.
        assert_eq!(pts, vec![0, 1, 4, 5]);
        // The gap was held no longer than the window: the stream did not
        // stall past it (picture 4 went out when it arrived).
        assert!(
            decoded
                .iter()
                .all(|(t, p)| *t <= 40 * ((p - 900_000) / 3600 + 1) as u64)
        );
    }

    #[test]
    fn without_sprop_the_in_band_parameter_sets_make_the_catalog() {
        let mut ingest = Ingest::new(&sdp(false));
        let mut out = Vec::new();
        let mut seq = 0u16;
        let au = packetize_aac(&[1; 10]).expect("fits");
        ingest
            .push(1, &packets(97, &mut 0, 0, &[au])[0], &mut out)
            .expect("valid");
        assert!(out.is_empty(), "audio waits for the video config");
        let mut payloads = Vec::new();
        packetize_h264([SPS, PPS, &[0x65, 1, 2][..]], 1200, &mut payloads);
        for p in packets(96, &mut seq, 0, &payloads) {
            ingest.push(0, &p, &mut out).expect("valid");
        }
        let IngestOutput::Catalog(tracks) = &out[0] else {
            panic!("catalog first")
        };
        assert!(tracks[0].video.is_some_and(|v| v.width > 0));
        assert!(matches!(out[1], IngestOutput::Frame(ref f) if f.is_keyframe()));
    }
}
