//! Kernel frames to RTP for readers: packetized **once per stream** and
//! track in the kernel's derived-output cache, then stamped per reader.
//!
//! [`packetize`] turns a frame into its RTP packets with a placeholder
//! header (sequence 0, SSRC 0, the timestamp in the RTP clock rate) and
//! stores them as `[u16 length][packet]…`; every reader of the stream gets
//! those same bytes ([`rtp_format`]). [`Reader`] then writes each packet's
//! header with its own sequence number, SSRC and timestamp offset (the
//! only per-reader work): for TCP interleaving (`$ channel length`) the
//! head and header are the reader's and the payload a slice of the shared
//! bytes ([`Interleaved`]); for UDP, each datagram a copy.
//!
//! H.264 keyframes carry the catalog's SPS and PPS in band ahead of the IDR
//! slice when the frame does not already, so a reader that lost or ignored
//! the SDP's `sprop-parameter-sets` still decodes.

// Stamps what the publisher sent (frames of any publish protocol) for
// readers: no indexing, unwrap, expect or panic that input could reach
// (RELIABILITY.md "Lints"); the unit tests are exempt.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use tidewater_core::{Catalog, Codec, Frame, OutputFormat, TrackId, TrackInfo, rescale};
use tidewater_media::codec::length_prefixed_nals;
use tidewater_media::codec::{parse_avcc, parse_hvcc};
use tidewater_media::rtp::aac::packetize_aac;
use tidewater_media::rtp::h264::{nal_type, packetize_h264};
use tidewater_media::rtp::h265::{self, packetize_h265};
use tidewater_media::rtp::{HEADER_LEN, Payload, write_header};

use crate::interleaved::Interleaved;
use crate::sdp::{AUDIO_PAYLOAD_TYPE, VIDEO_PAYLOAD_TYPE};
use crate::session::{RtpInfo, Transport};

/// The derived-output format of RTP packets at a payload size.
pub fn rtp_format(max_payload: usize) -> OutputFormat {
    OutputFormat::new("rtp").with_param(max_payload as u64)
}

/// The RTP clock rate of a track in descriptions we write.
pub fn clock_rate(track: &TrackInfo) -> u32 {
    match track.codec {
        Codec::Aac | Codec::Opus => track
            .audio
            .map_or(track.timescale, |a| a.sample_rate.max(1)),
        _ => 90_000,
    }
}

/// A frame's RTP packets with placeholder headers (see the module docs);
/// empty for a codec this crate does not packetize.
pub fn packetize(frame: &Frame, catalog: &Catalog, max_payload: usize) -> Bytes {
    let Some(track) = catalog.track(frame.track) else {
        return Bytes::new();
    };
    let ts = rescale(frame.pts, track.timescale.max(1), clock_rate(track)) as u32;
    let mut payloads: Vec<Payload> = Vec::new();
    let pt = match frame.codec {
        Codec::H264 => {
            let Some(nals) = length_prefixed_nals(&frame.payload, 4) else {
                return Bytes::new();
            };
            let has_sps = nals
                .iter()
                .any(|n| n.first().map(|b| b & 0x1f) == Some(nal_type::SPS));
            let config = track.config.as_ref().and_then(|c| parse_avcc(c));
            let mut all: Vec<&[u8]> = Vec::new();
            if frame.is_keyframe()
                && !has_sps
                && let Some(config) = &config
            {
                all.extend(config.sps.iter().map(|n| &n[..]));
                all.extend(config.pps.iter().map(|n| &n[..]));
            }
            all.extend(
                nals.iter()
                    .filter(|n| n.first().map(|b| b & 0x1f) != Some(nal_type::AUD)),
            );
            packetize_h264(all, max_payload, &mut payloads);
            VIDEO_PAYLOAD_TYPE
        }
        Codec::H265 => {
            let Some(nals) = length_prefixed_nals(&frame.payload, 4) else {
                return Bytes::new();
            };
            let kind = |n: &[u8]| h265::nal_type_of(n);
            let has_sps = nals.iter().any(|n| kind(n) == Some(h265::nal_type::SPS));
            let config = track.config.as_ref().and_then(|c| parse_hvcc(c));
            let mut all: Vec<&[u8]> = Vec::new();
            if frame.is_keyframe()
                && !has_sps
                && let Some(config) = &config
            {
                all.extend(
                    config
                        .vps
                        .iter()
                        .chain(&config.sps)
                        .chain(&config.pps)
                        .map(|n| &n[..]),
                );
            }
            all.extend(nals.iter().filter(|n| kind(n) != Some(h265::nal_type::AUD)));
            packetize_h265(all, max_payload, &mut payloads);
            VIDEO_PAYLOAD_TYPE
        }
        Codec::Opus => {
            // RFC 7587: one Opus packet per RTP packet.
            payloads.push(Payload {
                marker: false,
                data: frame.payload.clone(),
            });
            AUDIO_PAYLOAD_TYPE
        }
        Codec::Aac => {
            let Some(p) = packetize_aac(&frame.payload) else {
                return Bytes::new();
            };
            payloads.push(p);
            AUDIO_PAYLOAD_TYPE
        }
        _ => return Bytes::new(),
    };
    let mut out =
        BytesMut::with_capacity(payloads.iter().map(|p| p.data.len() + HEADER_LEN + 2).sum());
    for p in payloads {
        out.put_u16((HEADER_LEN + p.data.len()) as u16);
        write_header(&mut out, p.marker, pt, 0, ts, 0);
        out.put_slice(&p.data);
    }
    out.freeze()
}

#[derive(Clone, Debug)]
struct ReaderTrack {
    id: TrackId,
    /// Its `trackID` in the description.
    index: usize,
    codec: Codec,
    /// The RTP clock rate described.
    clock: u32,
    /// Added to timestamps after a republish, in the RTP clock.
    shift: u32,
    transport: Transport,
    ssrc: u32,
    sequence: u16,
    offset: u32,
    sent: u64,
    octets: u64,
    /// The RTP timestamp of the last packet stamped.
    last_ts: Option<u32>,
    /// When the last sender report was made (wall clock of its media time).
    last_report: Option<SystemTime>,
}

/// How often a reader gets a sender report per track, in media time.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Seconds from the NTP epoch (1900) to the Unix epoch.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// A wall-clock time as a 64-bit NTP timestamp.
pub fn ntp_time(wall: SystemTime) -> u64 {
    let since = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs().wrapping_add(NTP_UNIX_OFFSET);
    let frac = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// One reader's stamping state: per described track its transport, SSRC,
/// next sequence number and timestamp offset.
///
/// A reader plays on across a republish ([`Reader::discontinuity`]): the
/// new publish's tracks are matched to the described ones by codec and
/// clock rate ([`Reader::rebind`]), and its timestamps are moved to follow
/// the last frame sent, one [`REPUBLISH_GAP`] later, on every track alike
/// (so tracks stay in sync); sequence numbers and SSRCs carry on, and the
/// new parameter sets go in band before its first keyframe.
#[derive(Debug)]
pub struct Reader {
    tracks: Vec<ReaderTrack>,
    /// Media time moved by this much (microseconds) after republishes.
    shift_us: i64,
    /// The latest presentation time sent (microseconds, shifted).
    last_us: Option<i64>,
    /// Set at a republish: the next frame decides the new shift.
    rebase: bool,
}

/// How far after the last frame of a publish the first frame of the next
/// one is placed, for a reader that plays on across the republish.
pub const REPUBLISH_GAP: Duration = Duration::from_millis(40);

/// A random-looking 32-bit value (process-keyed hashing; not secret).
fn random_u32(salt: u64) -> u32 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(salt);
    h.finish() as u32
}

impl Reader {
    /// A reader of `tracks` (the described tracks, in `trackID` order) over
    /// the transports its `SETUP`s chose; tracks not set up are not sent.
    pub fn new(tracks: &[TrackInfo], setups: &[Option<Transport>]) -> Reader {
        let tracks = tracks
            .iter()
            .zip(setups)
            .enumerate()
            .filter_map(|(i, (t, s))| {
                s.map(|transport| ReaderTrack {
                    id: t.id,
                    index: i,
                    codec: t.codec,
                    clock: clock_rate(t),
                    shift: 0,
                    transport,
                    ssrc: random_u32(i as u64 * 2 + 1),
                    sequence: random_u32(i as u64 * 2 + 2) as u16,
                    offset: random_u32(i as u64 * 2 + 3),
                    sent: 0,
                    octets: 0,
                    last_ts: None,
                    last_report: None,
                })
            })
            .collect();
        Reader {
            tracks,
            shift_us: 0,
            last_us: None,
            rebase: false,
        }
    }

    /// The stream was published anew: the next frame stamped follows the
    /// last one sent (see the type's docs).
    pub fn discontinuity(&mut self) {
        self.rebase = true;
    }

    /// Points the described tracks at the tracks of a (new) catalog, each
    /// to the first unused one of the same codec and clock rate; `false`
    /// (nothing changed) when a track set up has none.
    pub fn rebind(&mut self, tracks: &[TrackInfo]) -> bool {
        let mut used = vec![false; tracks.len()];
        let mut ids = Vec::with_capacity(self.tracks.len());
        for t in &self.tracks {
            let Some((n, taken)) = tracks
                .iter()
                .zip(used.iter_mut())
                .find(|(n, taken)| !**taken && n.codec == t.codec && clock_rate(n) == t.clock)
            else {
                return false;
            };
            *taken = true;
            ids.push(n.id);
        }
        for (t, id) in self.tracks.iter_mut().zip(ids) {
            t.id = id;
        }
        true
    }

    /// The `RTP-Info` of every track set up for a play position at
    /// presentation time `pts` (in `timescale`): the next sequence number
    /// and the RTP time of that instant on each track's clock (the
    /// timestamp the frame at `pts` goes out with on its own track).
    pub fn rtp_info(&self, at: Option<(i64, u32)>) -> Vec<RtpInfo> {
        self.tracks
            .iter()
            .map(|t| RtpInfo {
                track: t.index,
                seq: t.sequence,
                rtptime: at.map(|(pts, timescale)| {
                    (rescale(pts, timescale.max(1), t.clock) as u32)
                        .wrapping_add(t.offset)
                        .wrapping_add(t.shift)
                }),
            })
            .collect()
    }

    /// [`stamp`](Self::stamp) for a frame, first placing a republish's
    /// first frame after the last one sent.
    pub fn stamp_frame(
        &mut self,
        frame: &Frame,
        catalog: &Catalog,
        packets: &Bytes,
        tcp: &mut Interleaved,
        udp: &mut Vec<(u16, Bytes)>,
    ) {
        let timescale = catalog.track(frame.track).map_or(1, |t| t.timescale.max(1));
        let us = rescale(frame.pts, timescale, 1_000_000);
        if std::mem::take(&mut self.rebase)
            && let Some(last) = self.last_us
        {
            self.shift_us = last + REPUBLISH_GAP.as_micros() as i64 - us;
            for t in &mut self.tracks {
                t.shift = rescale(self.shift_us, 1_000_000, t.clock) as u32;
            }
        }
        let shown = us + self.shift_us;
        self.last_us = Some(self.last_us.map_or(shown, |l| l.max(shown)));
        self.stamp(frame.track, packets, tcp, udp);
    }

    /// The transport a frame of `track` goes over, if it is sent at all.
    pub fn transport(&self, track: TrackId) -> Option<Transport> {
        self.tracks
            .iter()
            .find(|t| t.id == track)
            .map(|t| t.transport)
    }

    /// Packets sent per track, in `trackID` order.
    pub fn sent(&self) -> Vec<u64> {
        self.tracks.iter().map(|t| t.sent).collect()
    }

    /// Stamps `packets` (from [`packetize`]) of `track` for this reader:
    /// interleaved frames appended to `tcp` (the per-reader head and RTP
    /// header, then the shared payload, not copied), or datagrams pushed to
    /// `udp` with the client's RTP port.
    pub fn stamp(
        &mut self,
        track: TrackId,
        packets: &Bytes,
        tcp: &mut Interleaved,
        udp: &mut Vec<(u16, Bytes)>,
    ) {
        let Some(t) = self.tracks.iter_mut().find(|t| t.id == track) else {
            return;
        };
        // UDP: each packet is copied once into one buffer per call that the
        // datagrams are split from, and its 12-byte header patched there
        // (no allocation per packet). TCP: only the head and header are
        // this reader's; the payload is a slice of the shared packets.
        let mut datagrams = match t.transport {
            Transport::Udp { .. } => BytesMut::with_capacity(packets.len()),
            Transport::Tcp { .. } => BytesMut::new(),
        };
        let mut lens: Vec<usize> = Vec::new();
        let mut at = 0;
        while let Some(len) = packets
            .get(at..at + 2)
            .and_then(|l| l.try_into().ok())
            .map(|l: [u8; 2]| usize::from(u16::from_be_bytes(l)))
        {
            let start = at + 2;
            at = start + len;
            let Some(packet) = packets.get(start..at) else {
                break;
            };
            let Some(stamped) = packet.get(..HEADER_LEN) else {
                continue;
            };
            let mut header = [0u8; HEADER_LEN];
            header.copy_from_slice(stamped);
            let ts = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
            let ts = ts.wrapping_add(t.offset).wrapping_add(t.shift);
            header[2..4].copy_from_slice(&t.sequence.to_be_bytes());
            header[4..8].copy_from_slice(&ts.to_be_bytes());
            header[8..12].copy_from_slice(&t.ssrc.to_be_bytes());
            match t.transport {
                Transport::Tcp { rtp, .. } => {
                    let [hi, lo] = (len as u16).to_be_bytes();
                    let mut head = [0u8; 4 + HEADER_LEN];
                    head[..4].copy_from_slice(&[b'$', rtp, hi, lo]);
                    head[4..].copy_from_slice(&header);
                    tcp.put_own(&head);
                    tcp.put_shared(packets.slice(start + HEADER_LEN..at));
                }
                Transport::Udp { .. } => {
                    datagrams.put_slice(&header);
                    datagrams.put_slice(packet.get(HEADER_LEN..).unwrap_or_default());
                    lens.push(len);
                }
            }
            t.sequence = t.sequence.wrapping_add(1);
            t.sent += 1;
            t.octets += (len - HEADER_LEN) as u64;
            t.last_ts = Some(ts);
        }
        if let Transport::Udp { rtp, .. } = t.transport {
            for len in lens {
                udp.push((rtp, datagrams.split_to(len).freeze()));
            }
        }
    }
}

impl Reader {
    /// A sender report (RFC 3550 §6.4.1) for `track`, when the last one is
    /// [`REPORT_INTERVAL`] old or there was none: `wall` is the wall-clock
    /// time of the frame just stamped (the kernel's clock anchor of the
    /// publish maps media time to it), so every track's reports share one
    /// clock and players can sync them. Appended to `tcp` on the RTCP
    /// channel, or pushed to `udp` with the client's RTCP port.
    pub fn report(
        &mut self,
        track: TrackId,
        wall: SystemTime,
        tcp: &mut Interleaved,
        udp: &mut Vec<(u16, Bytes)>,
    ) {
        let Some(t) = self.tracks.iter_mut().find(|t| t.id == track) else {
            return;
        };
        let Some(rtp_ts) = t.last_ts else { return };
        if t.last_report
            .is_some_and(|last| wall.duration_since(last).unwrap_or_default() < REPORT_INTERVAL)
        {
            return;
        }
        t.last_report = Some(wall);
        let mut sr = BytesMut::with_capacity(32);
        if let Transport::Tcp { rtcp, .. } = t.transport {
            sr.put_u8(b'$');
            sr.put_u8(rtcp);
            sr.put_u16(28);
        }
        sr.put_u8(0x80);
        sr.put_u8(200);
        sr.put_u16(6);
        sr.put_u32(t.ssrc);
        sr.put_u64(ntp_time(wall));
        sr.put_u32(rtp_ts);
        sr.put_u32(t.sent as u32);
        sr.put_u32(t.octets as u32);
        match t.transport {
            Transport::Tcp { .. } => tcp.put_own(&sr),
            Transport::Udp { rtcp, .. } => udp.push((rtcp, sr.freeze())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater_core::{AppSpec, Engine, Request, StreamKey};
    use tidewater_media::codec::build_avcc;
    use tidewater_media::rtp::RtpPacket;
    use tidewater_media::rtp::h264::H264Depacketizer;

    async fn catalog() -> (std::sync::Arc<Catalog>, Vec<TrackInfo>) {
        let video = TrackInfo::video(TrackId(1), Codec::H264, 320, 240)
            .with_timescale(1000)
            .with_config(build_avcc(&[&[0x67, 0x42, 0, 0x1e]], &[&[0x68, 0xce]]).expect("avcc"));
        let audio = TrackInfo::audio(TrackId(2), Codec::Aac, 48_000, 2)
            .with_config(Bytes::from_static(&[0x11, 0x90]));
        let tracks = vec![video, audio];
        let engine = Engine::builder()
            .default_app(AppSpec::default())
            .build()
            .expect("engine");
        let key = StreamKey::parse("live/egress").expect("key");
        let mut publish = engine
            .open_publish(Request::new(key, "test"))
            .await
            .expect("publish");
        (
            publish.set_catalog(tracks.clone()).expect("catalog"),
            tracks,
        )
    }

    #[tokio::test]
    async fn a_keyframe_goes_out_with_its_parameter_sets_and_readers_differ_only_in_stamps() {
        let (catalog, tracks) = catalog().await;
        let mut payload = BytesMut::new();
        payload.put_u32(3000);
        payload.put_u8(0x65);
        payload.put_slice(&[7; 2999]);
        let frame = Frame::video(TrackId(1), Codec::H264, 2000, 2000, true, payload.freeze());
        let packets = packetize(&frame, &catalog, 1200);
        let setups = [Some(Transport::Tcp { rtp: 0, rtcp: 1 }), None];
        let (mut a, mut b) = (Reader::new(&tracks, &setups), Reader::new(&tracks, &setups));
        let (mut ta, mut tb, mut udp) =
            (Interleaved::default(), Interleaved::default(), Vec::new());
        a.stamp(TrackId(1), &packets, &mut ta, &mut udp);
        b.stamp(TrackId(1), &packets, &mut tb, &mut udp);
        b.stamp(TrackId(2), &packets, &mut tb, &mut udp);
        assert!(udp.is_empty());
        assert_eq!(ta.len(), tb.len(), "audio was not set up for b");
        // Depacketize what reader a got: SPS, PPS and the slice, 180 000 ticks at 90 kHz.
        let mut d = H264Depacketizer::new();
        let mut units = Vec::new();
        let mut rest = ta.to_bytes();
        let mut timestamps = Vec::new();
        while rest.len() >= 4 {
            assert_eq!((rest[0], rest[1]), (b'$', 0));
            let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
            let packet = RtpPacket::parse(&rest.slice(4..4 + len)).expect("rtp");
            timestamps.push(packet.timestamp);
            d.push(&packet, &mut units).expect("valid");
            rest = rest.slice(4 + len..);
        }
        assert_eq!(units.len(), 1);
        assert_eq!(units[0].nals.len(), 3);
        assert_eq!(units[0].nals[2].len(), 3000);
        assert!(timestamps.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(a.sent(), vec![timestamps.len() as u64]);
    }

    #[tokio::test]
    async fn sender_reports_map_each_tracks_rtp_time_to_one_wall_clock() {
        use tidewater_media::rtp::parse_sender_report;
        let (catalog, tracks) = catalog().await;
        let setups = [
            Some(Transport::Tcp { rtp: 0, rtcp: 1 }),
            Some(Transport::Udp {
                rtp: 5000,
                rtcp: 5001,
            }),
        ];
        let mut r = Reader::new(&tracks, &setups);
        let (mut tcp, mut udp, mut rtcp) = (Interleaved::default(), Vec::new(), Vec::new());
        let start = UNIX_EPOCH + Duration::from_secs(1_000_000);
        // Video at 1 kHz (RTMP-like) 2 s, audio at 48 kHz 2 s: the same instant.
        let mut payload = BytesMut::new();
        payload.put_u32(2);
        payload.put_slice(&[0x65, 1]);
        let video = Frame::video(TrackId(1), Codec::H264, 2000, 2000, true, payload.freeze());
        let audio = Frame::audio(
            TrackId(2),
            Codec::Aac,
            96_000,
            Bytes::from_static(&[1, 2, 3]),
        );
        for frame in [&video, &audio] {
            r.stamp(
                frame.track,
                &packetize(frame, &catalog, 1200),
                &mut tcp,
                &mut udp,
            );
            r.report(frame.track, start, &mut tcp, &mut rtcp);
        }
        // A second report within the interval is not made.
        r.report(
            TrackId(2),
            start + Duration::from_millis(500),
            &mut tcp,
            &mut rtcp,
        );
        assert_eq!(rtcp.len(), 1);
        assert_eq!(rtcp[0].0, 5001);
        let audio_sr = parse_sender_report(&rtcp[0].1).expect("audio SR");
        // The video SR is the last interleaved frame, on channel 1.
        let tcp = tcp.to_bytes();
        let at = tcp.len() - 32;
        assert_eq!(&tcp[at..at + 2], &[b'$', 1]);
        let video_sr = parse_sender_report(&tcp[at + 4..]).expect("video SR");
        assert_eq!(video_sr.ntp, audio_sr.ntp);
        assert_eq!(video_sr.ntp >> 32, 1_000_000 + NTP_UNIX_OFFSET);
        let offset = |i: usize| r.tracks[i].offset;
        assert_eq!(video_sr.rtp_timestamp.wrapping_sub(offset(0)), 180_000);
        assert_eq!(audio_sr.rtp_timestamp.wrapping_sub(offset(1)), 96_000);
    }

    #[tokio::test]
    async fn readers_of_a_stream_share_one_packetization_per_frame() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tidewater_core::Event;
        let engine = Engine::builder()
            .default_app(AppSpec::default())
            .build()
            .expect("engine");
        let key = StreamKey::parse("live/shared").expect("key");
        let mut publish = engine
            .open_publish(Request::new(key.clone(), "test"))
            .await
            .expect("publish");
        let (_, tracks) = catalog().await;
        publish.set_catalog(tracks.clone()).expect("catalog");
        let mut subs = Vec::new();
        for _ in 0..3 {
            subs.push(
                engine
                    .subscribe(Request::new(key.clone(), "test"))
                    .await
                    .expect("subscribe"),
            );
        }
        let mut payload = BytesMut::new();
        payload.put_u32(2);
        payload.put_slice(&[0x65, 1]);
        publish
            .publish(Frame::video(
                TrackId(1),
                Codec::H264,
                0,
                0,
                true,
                payload.freeze(),
            ))
            .expect("published");
        publish
            .publish(Frame::audio(
                TrackId(2),
                Codec::Aac,
                0,
                Bytes::from_static(&[1, 2]),
            ))
            .expect("published");
        let encoded = AtomicUsize::new(0);
        let mut outputs = Vec::new();
        for sub in &mut subs {
            let mut reader = Reader::new(
                &tracks,
                &[
                    Some(Transport::Tcp { rtp: 0, rtcp: 1 }),
                    Some(Transport::Tcp { rtp: 2, rtcp: 3 }),
                ],
            );
            let mut tcp = Interleaved::default();
            while let Some(Ok(event)) = sub.try_recv() {
                if let Event::Frame(f) = event {
                    let packets = f.derived(rtp_format(1200), |frame, catalog| {
                        encoded.fetch_add(1, Ordering::Relaxed);
                        packetize(frame, catalog, 1200)
                    });
                    reader.stamp(f.frame().track, &packets, &mut tcp, &mut Vec::new());
                }
            }
            outputs.push(tcp);
        }
        // Two frames, packetized once each for three readers.
        assert_eq!(encoded.load(Ordering::Relaxed), 2);
        assert!(
            outputs
                .iter()
                .all(|o| o.len() == outputs[0].len() && !o.is_empty())
        );
    }

    #[tokio::test]
    async fn a_reader_plays_on_across_a_republish_with_other_track_ids() {
        let (catalog, tracks) = catalog().await;
        let setups = [
            Some(Transport::Tcp { rtp: 0, rtcp: 1 }),
            Some(Transport::Tcp { rtp: 2, rtcp: 3 }),
        ];
        let mut r = Reader::new(&tracks, &setups);
        let video = |id: u32, pts: i64| {
            let mut payload = BytesMut::new();
            payload.put_u32(2);
            payload.put_slice(&[0x65, 1]);
            Frame::video(TrackId(id), Codec::H264, pts, pts, true, payload.freeze())
        };
        let stamped = |r: &mut Reader, frame: &Frame, catalog: &Catalog| {
            let mut tcp = Interleaved::default();
            r.stamp_frame(
                frame,
                catalog,
                &packetize(frame, catalog, 1200),
                &mut tcp,
                &mut Vec::new(),
            );
            let mut rtp = Vec::new();
            let mut rest = tcp.to_bytes();
            while rest.len() >= 4 {
                let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
                rtp.push(RtpPacket::parse(&rest.slice(4..4 + len)).expect("rtp"));
                rest = rest.slice(4 + len..);
            }
            rtp
        };
        // The first publish: video at 1 kHz, 5 s in.
        let before = stamped(&mut r, &video(1, 5000), &catalog);
        let info = r.rtp_info(Some((5000, 1000)));
        let last = before.last().expect("packets");
        // The republish restarts at 0 with the video as track 7.
        let engine = Engine::builder()
            .default_app(AppSpec::default())
            .build()
            .expect("engine");
        let mut publish = engine
            .open_publish(Request::new(
                StreamKey::parse("live/again").expect("key"),
                "test",
            ))
            .await
            .expect("publish");
        let mut moved = tracks.clone();
        moved[0].id = TrackId(7);
        moved[1].id = TrackId(8);
        let again = publish.set_catalog(moved.clone()).expect("catalog");
        r.discontinuity();
        assert!(r.rebind(&moved));
        let after = stamped(&mut r, &video(7, 0), &again);
        let first = after.first().expect("packets of the new publish");
        assert_eq!(first.sequence, last.sequence.wrapping_add(1));
        assert_eq!(first.ssrc, last.ssrc);
        assert_eq!(first.timestamp.wrapping_sub(last.timestamp), 40 * 90);
        // RTP-Info at the first position named the first packet exactly.
        assert_eq!(info[0].rtptime, Some(before[0].timestamp));
        assert_eq!(
            info[0].seq,
            before[0].sequence.wrapping_add(before.len() as u16)
        );
        // A republish without the described codecs cannot be followed.
        let audio_only = vec![moved[1].clone()];
        assert!(!r.rebind(&audio_only));
    }

    #[tokio::test]
    async fn aac_frames_become_one_packet_each_in_the_sample_clock() {
        let (catalog, tracks) = catalog().await;
        let frame = Frame::audio(
            TrackId(2),
            Codec::Aac,
            48_000,
            Bytes::from_static(&[1, 2, 3]),
        );
        let packets = packetize(&frame, &catalog, 1200);
        let mut r = Reader::new(
            &tracks,
            &[
                None,
                Some(Transport::Udp {
                    rtp: 5000,
                    rtcp: 5001,
                }),
            ],
        );
        let mut udp = Vec::new();
        r.stamp(TrackId(2), &packets, &mut Interleaved::default(), &mut udp);
        assert_eq!(udp.len(), 1);
        assert_eq!(udp[0].0, 5000);
        let p = RtpPacket::parse(&udp[0].1).expect("rtp");
        assert_eq!(&p.payload[..], &[0, 16, 0, 3 << 3, 1, 2, 3]);
        assert!(p.marker);
        let mut plain = Interleaved::default();
        let mut r2 = Reader::new(&tracks, &[None, Some(Transport::Udp { rtp: 1, rtcp: 2 })]);
        r2.stamp(TrackId(2), &packets, &mut plain, &mut udp);
        let q = RtpPacket::parse(&udp[1].1).expect("rtp");
        assert_eq!(q.timestamp.wrapping_sub(r2.tracks[0].offset), 48_000);
    }
}
