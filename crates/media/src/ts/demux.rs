//! MPEG-TS bytes → the catalog's tracks and frames in the canonical forms.
// Reads network or file input: no indexing, unwrap, expect or panic
// outside tests (RELIABILITY.md, "Lints").
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::expect_used,
        clippy::unwrap_used,
        clippy::panic
    )
)]

use std::collections::VecDeque;

use bytes::Bytes;
use tidewater_core::{Codec, Frame, FrameFlags, MediaKind, TimestampWrap, TrackId, TrackInfo};

use super::psi::{self, SectionBuffer};
use super::{opus, packet, pes};
use crate::codec::{self, AdtsHeader};
use crate::{Error, Result};

const PACKET: usize = 188;
/// Bytes tolerated without a sync byte before the input is declared not TS.
const MAX_RESYNC: usize = 4 * PACKET;
/// Bytes tolerated before a PAT and PMT are found.
const MAX_BEFORE_PMT: usize = 4 << 20;
/// Largest PES kept (a 4K intra frame is a few MB).
const MAX_PES: usize = 16 << 20;
/// Frames held while waiting for every track's configuration ...
const MAX_HELD: usize = 512;
/// ... or media time (90 kHz): a PMT stream that carries nothing (an audio
/// PID of a silent encoder) delays the catalog by at most this much.
const MAX_HELD_SPAN: i64 = 2 * 90_000;
/// A PCR step larger than this (either way) is a discontinuity: 10 s at 90 kHz.
const PCR_JUMP: i64 = 10 * 90_000;

/// Track id of the video track (as the RTMP ingest numbers them).
pub const VIDEO_TRACK: TrackId = TrackId(1);
/// Track id of the audio track.
pub const AUDIO_TRACK: TrackId = TrackId(2);

/// What the demuxer found.
#[derive(Debug, Clone, PartialEq)]
pub enum DemuxEvent {
    /// The track set (first after the PMT and every track's first parameter
    /// sets; again when a configuration or the stream set changes). Every
    /// track has a 90 kHz timescale and 33-bit timestamp wrap.
    Tracks(Vec<TrackInfo>),
    /// One access unit in the canonical form, pts/dts raw 33-bit 90 kHz.
    Frame(Frame),
}

/// Counters of what the demuxer dropped (for logs and QoS).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DemuxStats {
    /// TS packets seen.
    pub packets: u64,
    /// Continuity-counter gaps, transport errors and resyncs.
    pub discontinuities: u64,
    /// Frames dropped (incomplete, malformed, or waiting for a keyframe).
    pub dropped_frames: u64,
    /// Bytes skipped to find a sync byte.
    pub skipped_bytes: u64,
    /// Frames of unknown length still open when a live input ended, dropped
    /// by [`TsDemuxer::end_live`] (not in `dropped_frames`).
    pub unterminated_at_end: u64,
}

/// A sans-IO MPEG-TS demuxer of the first program of a transport stream:
/// feed bytes with [`push`](TsDemuxer::push), take events with
/// [`poll`](TsDemuxer::poll).
///
/// Carries H.264 (`0x1b`), H.265 (`0x24`), AAC in ADTS (`0x0f`) and Opus
/// (`0x06` with an `Opus` registration descriptor); other streams are
/// ignored. A lost packet (a continuity-counter gap or a transport error)
/// drops the frame it was part of, and on video every frame up to the next
/// keyframe: a corrupt frame is never emitted. Buffers are bounded.
#[derive(Debug, Default)]
pub struct TsDemuxer {
    buf: Vec<u8>,
    resync: usize,
    consumed_before_pmt: usize,
    pat: SectionBuffer,
    pmt_pid: Option<u16>,
    pmt: SectionBuffer,
    pmt_version: Option<u8>,
    pcr_pid: u16,
    last_pcr: Option<u64>,
    streams: Vec<Stream>,
    announced: Option<Vec<TrackInfo>>,
    held: VecDeque<Frame>,
    events: VecDeque<DemuxEvent>,
    stats: DemuxStats,
}

#[derive(Debug)]
struct Stream {
    pid: u16,
    info: TrackInfo,
    ready: bool,
    cc: Option<u8>,
    pes: Option<PesBuffer>,
    /// After a loss on video: frames are dropped until a keyframe.
    need_keyframe: bool,
    discontinuity: bool,
}

#[derive(Debug)]
struct PesBuffer {
    pts: Option<u64>,
    dts: Option<u64>,
    /// Total ES bytes expected, when PES_packet_length says.
    expected: Option<usize>,
    data: Vec<u8>,
    random_access: bool,
}

fn malformed(what: impl Into<String>) -> Error {
    Error::Malformed {
        format: "mpeg-ts",
        what: what.into(),
    }
}

impl TsDemuxer {
    /// A demuxer waiting for a PAT.
    pub fn new() -> Self {
        Self::default()
    }

    /// What was dropped so far.
    pub fn stats(&self) -> DemuxStats {
        self.stats
    }

    /// Feeds bytes (any split). An error means the input is not a usable
    /// transport stream (no sync, bad PSI before any good PMT, no supported
    /// stream); the demuxer should then be dropped.
    pub fn push(&mut self, data: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(data);
        let mut pos = 0;
        let r = loop {
            let Some(p) = self.buf.get(pos..pos + PACKET) else {
                break Ok(());
            };
            if p.first() != Some(&0x47) {
                let skip = self
                    .buf
                    .get(pos + 1..)
                    .unwrap_or_default()
                    .iter()
                    .position(|&b| b == 0x47)
                    .map_or(self.buf.len() - pos, |i| i + 1);
                pos += skip;
                self.resync += skip;
                self.stats.skipped_bytes += skip as u64;
                if self.resync > MAX_RESYNC {
                    break Err(malformed(format!(
                        "no sync byte in {} bytes: not a transport stream",
                        self.resync
                    )));
                }
                continue;
            }
            let p: [u8; PACKET] = match p.try_into() {
                Ok(p) => p,
                Err(_) => break Ok(()),
            };
            pos += PACKET;
            match packet::parse(&p) {
                Ok(pkt) => {
                    self.resync = 0;
                    if let Err(e) = self.on_packet(&pkt) {
                        break Err(e);
                    }
                }
                Err(what) => {
                    // A damaged packet: count it like a loss on its PID.
                    self.stats.discontinuities += 1;
                    self.resync += PACKET;
                    if self.resync > MAX_RESYNC {
                        break Err(malformed(what));
                    }
                }
            }
        };
        self.buf.drain(..pos.min(self.buf.len()));
        r
    }

    /// Bytes held: the partial packet, PES packets being assembled, PSI
    /// sections and frames waiting for the catalog (bounded; for tests).
    pub fn buffered(&self) -> usize {
        self.buf.len()
            + self
                .streams
                .iter()
                .filter_map(|s| s.pes.as_ref())
                .map(|p| p.data.len())
                .sum::<usize>()
            + self.held.iter().map(|f| f.payload.len()).sum::<usize>()
    }

    /// The next event, if any.
    pub fn poll(&mut self) -> Option<DemuxEvent> {
        self.events.pop_front()
    }

    /// Ends the input: PES packets of unbounded length still buffered are
    /// emitted (they end only where the next one starts). For a whole file,
    /// whose last bytes are known to have arrived.
    pub fn flush(&mut self) {
        for i in 0..self.streams.len() {
            self.finish_pes(i);
        }
        self.maybe_announce(true);
    }

    /// Ends a live input that stopped at the sender's whim (a connection
    /// closed): a PES packet of unbounded length still buffered is dropped
    /// and counted in [`unterminated_at_end`](DemuxStats::unterminated_at_end), one of
    /// stated length is emitted only if whole.
    ///
    /// Why not [`flush`](Self::flush): nothing in the stream says whether
    /// the last unbounded PES (video, whose length muxers leave at 0) is
    /// complete. An SRT sender in live mode closes without lingering, so
    /// the packets still in its send buffer never leave it, and that last
    /// frame arrives cut anywhere: every reader would decode a corrupt
    /// picture. Losing the final frame of a publish is the lesser harm.
    #[allow(
        clippy::indexing_slicing,
        reason = "`i` indexes self.streams, a position in it; streams are never removed in between"
    )]
    pub fn end_live(&mut self) {
        for i in 0..self.streams.len() {
            let unbounded = self.streams[i]
                .pes
                .as_ref()
                .is_some_and(|p| p.expected.is_none());
            if unbounded {
                self.streams[i].pes = None;
                self.stats.unterminated_at_end += 1;
            } else {
                self.finish_pes(i);
            }
        }
        self.maybe_announce(true);
    }

    fn on_packet(&mut self, pkt: &packet::Packet<'_>) -> Result<()> {
        self.stats.packets += 1;
        if self.pmt_version.is_none() {
            self.consumed_before_pmt += PACKET;
            if self.consumed_before_pmt > MAX_BEFORE_PMT {
                return Err(malformed(format!(
                    "no PAT and PMT in the first {MAX_BEFORE_PMT} bytes"
                )));
            }
        }
        if pkt.pid == self.pcr_pid
            && let Some(pcr) = pkt.pcr
        {
            let jump = self.last_pcr.is_some_and(|last| {
                (pcr as i64 - last as i64).abs() > PCR_JUMP && !wraps(last, pcr)
            });
            if pkt.discontinuity || jump {
                for s in &mut self.streams {
                    s.discontinuity = true;
                }
            }
            self.last_pcr = Some(pcr);
        }
        if pkt.pid == 0 {
            return self.on_pat(pkt);
        }
        if Some(pkt.pid) == self.pmt_pid {
            return self.on_pmt(pkt);
        }
        let Some(i) = self.streams.iter().position(|s| s.pid == pkt.pid) else {
            return Ok(());
        };
        self.on_es_packet(i, pkt);
        Ok(())
    }

    fn on_pat(&mut self, pkt: &packet::Packet<'_>) -> Result<()> {
        if !pkt.has_payload || pkt.error {
            return Ok(());
        }
        let section = match self.pat.push(pkt.start, pkt.payload) {
            Ok(Some(s)) => s,
            Ok(None) => return Ok(()),
            Err(e) => return self.psi_error("PAT", e),
        };
        match psi::parse_pat(&section) {
            Ok(pid) if pid == 0 || pid == 0x1fff => self.psi_error("PAT", "reserved PMT PID"),
            Ok(pid) => {
                if self.pmt_pid != Some(pid) {
                    self.pmt_pid = Some(pid);
                    self.pmt = SectionBuffer::default();
                }
                Ok(())
            }
            Err(e) => self.psi_error("PAT", e),
        }
    }

    /// A bad table before any good PMT ends the input; after one, a damaged
    /// repeat is ignored (the stream keeps its tables).
    fn psi_error(&mut self, table: &str, what: &str) -> Result<()> {
        if self.pmt_version.is_none() {
            return Err(malformed(format!("bad {table}: {what}")));
        }
        self.stats.discontinuities += 1;
        Ok(())
    }

    fn on_pmt(&mut self, pkt: &packet::Packet<'_>) -> Result<()> {
        if !pkt.has_payload || pkt.error {
            return Ok(());
        }
        let section = match self.pmt.push(pkt.start, pkt.payload) {
            Ok(Some(s)) => s,
            Ok(None) => return Ok(()),
            Err(e) => return self.psi_error("PMT", e),
        };
        let pmt = match psi::parse_pmt(&section) {
            Ok(p) => p,
            Err(e) => return self.psi_error("PMT", e),
        };
        if self.pmt_version == Some(pmt.version) {
            return Ok(());
        }
        let mut streams = Vec::new();
        let (mut video, mut audio) = (false, false);
        for es in &pmt.streams {
            let Some(codec) = codec_of(es) else { continue };
            let (id, taken) = match codec.kind() {
                MediaKind::Video => (VIDEO_TRACK, &mut video),
                MediaKind::Audio => (AUDIO_TRACK, &mut audio),
            };
            if std::mem::replace(taken, true) {
                continue;
            }
            // A stream that keeps its PID and codec keeps its state.
            if let Some(pos) = self
                .streams
                .iter()
                .position(|s| s.pid == es.pid && s.info.codec == codec)
            {
                streams.push(self.streams.swap_remove(pos));
                continue;
            }
            let mut info = match codec.kind() {
                MediaKind::Video => TrackInfo::video(id, codec, 0, 0),
                MediaKind::Audio => TrackInfo::audio(id, codec, 48_000, 2).with_timescale(90_000),
            }
            .with_wrap(TimestampWrap::MPEG_TS);
            let mut ready = false;
            if codec == Codec::Opus {
                let channels = es
                    .descriptors
                    .iter()
                    .find(|(tag, d)| *tag == 0x7f && d.first() == Some(&0x80))
                    .and_then(|(_, d)| d.get(1).copied())
                    .filter(|c| (1..=2).contains(c))
                    .unwrap_or(2);
                info.audio = Some(tidewater_core::AudioParams {
                    sample_rate: 48_000,
                    channels,
                });
                info.config = Some(opus::opus_head(channels));
                ready = true;
            }
            streams.push(Stream {
                pid: es.pid,
                info,
                ready,
                cc: None,
                pes: None,
                need_keyframe: codec.kind() == MediaKind::Video,
                discontinuity: false,
            });
        }
        if streams.is_empty() {
            return Err(malformed(
                "the PMT carries no H.264, H.265, AAC or Opus stream",
            ));
        }
        let first = self.pmt_version.is_none();
        self.pmt_version = Some(pmt.version);
        self.pcr_pid = pmt.pcr_pid;
        self.streams = streams;
        if !first {
            self.maybe_announce(false);
        }
        Ok(())
    }

    #[allow(
        clippy::indexing_slicing,
        reason = "`i` indexes self.streams, found by the caller within the same call; streams are never removed in between"
    )]
    fn on_es_packet(&mut self, i: usize, pkt: &packet::Packet<'_>) {
        let s = &mut self.streams[i];
        // Continuity: a repeated counter is a duplicate packet; a jump is a loss.
        let lost = if pkt.error {
            true
        } else if pkt.has_payload {
            let lost = match s.cc {
                Some(last) if last == pkt.cc && !pkt.discontinuity => return,
                Some(last) => (last + 1) & 0xf != pkt.cc && !pkt.discontinuity,
                None => false,
            };
            s.cc = Some(pkt.cc);
            lost
        } else {
            false
        };
        if lost {
            self.stats.discontinuities += 1;
            let s = &mut self.streams[i];
            if s.pes.take().is_some() {
                self.stats.dropped_frames += 1;
            }
            if s.info.kind() == MediaKind::Video {
                s.need_keyframe = true;
            }
            if pkt.error {
                return;
            }
        }
        if !pkt.has_payload || pkt.scrambled {
            return;
        }
        if pkt.start {
            self.finish_pes(i);
            let s = &mut self.streams[i];
            match pes::parse(pkt.payload) {
                Ok(h) => {
                    let data = pkt.payload.get(h.data_offset..).unwrap_or_default();
                    let expected = (h.packet_len != 0).then(|| h.packet_len + 6 - h.data_offset);
                    s.pes = Some(PesBuffer {
                        pts: h.pts,
                        dts: h.dts,
                        expected,
                        data: data.to_vec(),
                        random_access: pkt.random_access,
                    });
                }
                Err(_) => {
                    self.stats.dropped_frames += 1;
                    if s.info.kind() == MediaKind::Video {
                        s.need_keyframe = true;
                    }
                }
            }
        } else if let Some(p) = &mut self.streams[i].pes {
            if p.data.len() + pkt.payload.len() > MAX_PES {
                self.streams[i].pes = None;
                self.stats.unterminated_at_end += 1;
                return;
            }
            p.data.extend_from_slice(pkt.payload);
        }
        let complete = self.streams[i]
            .pes
            .as_ref()
            .is_some_and(|p| p.expected.is_some_and(|e| p.data.len() >= e));
        if complete {
            self.finish_pes(i);
        }
    }

    #[allow(
        clippy::indexing_slicing,
        reason = "`i` indexes self.streams, found by the caller within the same call; streams are never removed in between"
    )]
    fn finish_pes(&mut self, i: usize) {
        let Some(mut p) = self.streams[i].pes.take() else {
            return;
        };
        if let Some(e) = p.expected {
            if p.data.len() < e {
                self.stats.dropped_frames += 1;
                return;
            }
            p.data.truncate(e);
        }
        let Some(pts) = p.pts else {
            self.stats.dropped_frames += 1;
            return;
        };
        let dts = p.dts.unwrap_or(pts);
        let before = self.events.len() + self.held.len();
        match self.streams[i].info.codec {
            Codec::H264 | Codec::H265 => self.on_video(i, pts, dts, &p),
            Codec::Aac => self.on_aac(i, pts, &p.data),
            Codec::Opus => self.on_opus(i, pts, &p.data),
            _ => {}
        }
        if self.events.len() + self.held.len() == before {
            self.stats.dropped_frames += 1;
        }
    }

    #[allow(
        clippy::indexing_slicing,
        reason = "`i` indexes self.streams, found by the caller within the same call; streams are never removed in between"
    )]
    fn on_video(&mut self, i: usize, pts: u64, dts: u64, p: &PesBuffer) {
        let s = &mut self.streams[i];
        let h264 = s.info.codec == Codec::H264;
        let (mut vps, mut sps, mut pps) = (Vec::new(), Vec::new(), Vec::new());
        let mut keyframe = false;
        let mut nals = Vec::new();
        for nal in codec::annexb_nals(&p.data) {
            if h264 {
                match codec::h264_nal_type(nal) {
                    Some(codec::h264_nal::AUD) => continue,
                    Some(codec::h264_nal::SPS) => sps.push(nal),
                    Some(codec::h264_nal::PPS) => pps.push(nal),
                    Some(codec::h264_nal::IDR) => keyframe = true,
                    _ => {}
                }
            } else {
                match codec::h265_nal_type(nal) {
                    Some(codec::h265_nal::AUD) => continue,
                    Some(codec::h265_nal::VPS) => vps.push(nal),
                    Some(codec::h265_nal::SPS) => sps.push(nal),
                    Some(codec::h265_nal::PPS) => pps.push(nal),
                    Some(t)
                        if (codec::h265_nal::IRAP_FIRST..=codec::h265_nal::IRAP_LAST)
                            .contains(&t) =>
                    {
                        keyframe = true
                    }
                    _ => {}
                }
            }
            nals.push(nal);
        }
        if nals.is_empty() {
            return;
        }
        if !sps.is_empty() && !pps.is_empty() && (h264 || !vps.is_empty()) {
            let (record, size) = if h264 {
                (
                    codec::build_avcc(&sps, &pps),
                    sps.first().and_then(|s| codec::h264_sps_size(s)),
                )
            } else {
                (
                    codec::build_hvcc(&vps, &sps, &pps),
                    sps.first().and_then(|s| codec::h265_sps_size(s)),
                )
            };
            if let Some(record) = record
                && s.info.config.as_ref() != Some(&record)
            {
                s.info.config = Some(record);
                if let (Some(v), Some((w, h))) = (s.info.video.as_mut(), size) {
                    v.width = w;
                    v.height = h;
                }
                s.ready = true;
                self.maybe_announce(false);
            }
        }
        let s = &mut self.streams[i];
        keyframe |= p.random_access && !sps.is_empty();
        if !s.ready || (s.need_keyframe && !keyframe) {
            return;
        }
        s.need_keyframe = false;
        let mut frame = Frame::video(
            s.info.id,
            s.info.codec,
            dts as i64,
            pts as i64,
            keyframe,
            codec::to_length_prefixed(nals),
        );
        if std::mem::take(&mut s.discontinuity) {
            frame.flags = frame.flags.with(FrameFlags::DISCONTINUITY);
        }
        self.emit(frame);
    }

    #[allow(
        clippy::indexing_slicing,
        reason = "`i` indexes self.streams, found by the caller within the same call; streams are never removed in between"
    )]
    fn on_aac(&mut self, i: usize, pts: u64, mut data: &[u8]) {
        let mut n = 0u64;
        while !data.is_empty() {
            let Some(h) = AdtsHeader::parse(data) else {
                return;
            };
            let Some(raw) = data.get(h.header_len..h.frame_len) else {
                return;
            };
            let asc = h.config();
            let s = &mut self.streams[i];
            if let Some(bytes) = asc.to_bytes() {
                let bytes = Bytes::copy_from_slice(&bytes);
                if s.info.config.as_ref() != Some(&bytes) {
                    s.info.config = Some(bytes);
                    s.info.audio = Some(tidewater_core::AudioParams {
                        sample_rate: asc.sample_rate,
                        channels: asc.channels(),
                    });
                    s.ready = true;
                    self.maybe_announce(false);
                }
            }
            let s = &mut self.streams[i];
            if s.ready {
                let offset =
                    n * 1024 * u64::from(h.blocks) * 90_000 / u64::from(asc.sample_rate.max(1));
                let mut frame = Frame::audio(
                    s.info.id,
                    Codec::Aac,
                    ((pts + offset) & ((1 << 33) - 1)) as i64,
                    Bytes::copy_from_slice(raw),
                );
                if std::mem::take(&mut s.discontinuity) {
                    frame.flags = frame.flags.with(FrameFlags::DISCONTINUITY);
                }
                self.emit(frame);
            }
            n += 1;
            data = data.get(h.frame_len..).unwrap_or_default();
        }
    }

    #[allow(
        clippy::indexing_slicing,
        reason = "`i` indexes self.streams, found by the caller within the same call; streams are never removed in between"
    )]
    fn on_opus(&mut self, i: usize, pts: u64, data: &[u8]) {
        let Some(units) = opus::split_access_units(data) else {
            return;
        };
        let mut offset = 0u64;
        for unit in units {
            let s = &mut self.streams[i];
            let mut frame = Frame::audio(
                s.info.id,
                Codec::Opus,
                ((pts + offset) & ((1 << 33) - 1)) as i64,
                Bytes::copy_from_slice(unit),
            );
            if std::mem::take(&mut s.discontinuity) {
                frame.flags = frame.flags.with(FrameFlags::DISCONTINUITY);
            }
            offset += u64::from(opus::packet_samples(unit).unwrap_or(960)) * 90_000 / 48_000;
            self.emit(frame);
        }
    }

    fn emit(&mut self, frame: Frame) {
        if self.announced.is_some() {
            self.events.push_back(DemuxEvent::Frame(frame));
            return;
        }
        self.held.push_back(frame);
        if self.held.len() >= MAX_HELD || self.held_span() > MAX_HELD_SPAN {
            self.maybe_announce(true);
        } else {
            self.maybe_announce(false);
        }
        while self.held.len() > MAX_HELD {
            self.held.pop_front();
            self.stats.dropped_frames += 1;
        }
    }

    /// How much media time the held frames of one track span (90 kHz).
    fn held_span(&self) -> i64 {
        let Some(first) = self.held.front() else {
            return 0;
        };
        self.held
            .iter()
            .rev()
            .find(|f| f.track == first.track)
            .map_or(0, |f| f.dts - first.dts)
    }

    /// Announces the ready tracks when every stream is ready (or `force`
    /// and at least one is), or when the announced set is out of date.
    fn maybe_announce(&mut self, force: bool) {
        let ready: Vec<TrackInfo> = self
            .streams
            .iter()
            .filter(|s| s.ready)
            .map(|s| s.info.clone())
            .collect();
        if ready.is_empty() {
            return;
        }
        let all = ready.len() == self.streams.len();
        match &self.announced {
            None if !(all || force) => return,
            Some(a) if *a == ready => return,
            _ => {}
        }
        self.events.push_back(DemuxEvent::Tracks(ready.clone()));
        self.announced = Some(ready);
        let announced = self.announced.as_deref().unwrap_or_default();
        for f in std::mem::take(&mut self.held) {
            if announced.iter().any(|t| t.id == f.track) {
                self.events.push_back(DemuxEvent::Frame(f));
            }
        }
    }
}

/// Whether `a` → `b` is a 33-bit wrap rather than a jump.
fn wraps(a: u64, b: u64) -> bool {
    let m = 1u64 << 33;
    let forward = (b + m - a) % m;
    forward < PCR_JUMP as u64
}

fn codec_of(es: &psi::PmtStream) -> Option<Codec> {
    match es.stream_type {
        0x1b => Some(Codec::H264),
        0x24 => Some(Codec::H265),
        0x0f => Some(Codec::Aac),
        0x06 if es
            .descriptors
            .iter()
            .any(|(t, d)| *t == 0x05 && d == b"Opus") =>
        {
            Some(Codec::Opus)
        }
        _ => None,
    }
}
