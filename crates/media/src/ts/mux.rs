//! Frames in the canonical forms → 188-byte MPEG-TS packets.

use bytes::{BufMut, Bytes, BytesMut};
use mpeg2ts::es::{StreamId, StreamType};
use mpeg2ts::pes::PesHeader;
use mpeg2ts::time::{ClockReference, Timestamp};
use mpeg2ts::ts::payload::{self, Pat, Pes, Pmt};
use mpeg2ts::ts::{
    AdaptationField, ContinuityCounter, Descriptor, EsInfo, Pid, ProgramAssociation,
    TransportScramblingControl, TsHeader, TsPacket, TsPacketWriter, TsPayload, VersionNumber,
    WriteTsPacket,
};
use tidewater_core::{Codec, Frame, MediaKind, TrackId, TrackInfo, rescale};

use super::{AUDIO_PID, PMT_PID, PROGRAM_NUMBER, VIDEO_PID, opus};
use crate::codec::{self, AudioSpecificConfig};
use crate::{Error, Result};

const TIMESTAMP_MASK: i64 = (1 << 33) - 1;
/// Room for a TS packet's payload after its 4-byte header.
const PAYLOAD: usize = TsPacket::SIZE - 4;

/// A muxer of one program with at most one video and one audio track.
///
/// Video goes on PID 0x100, audio on 0x101, the PMT on 0x1000; the PCR rides
/// on the video PID, or on the audio PID when there is no video. Continuity
/// counters are per PID and carry on across [`TsMuxer::set_tracks`], so one
/// muxer serves a whole stream, catalog changes included.
#[derive(Debug)]
pub struct TsMuxer {
    tracks: Vec<MuxTrack>,
    pcr_pid: u16,
    pat_cc: u8,
    pmt_cc: u8,
    pmt_version: u8,
    /// Added to every timestamp (90 kHz): 0 unless this muxer continues another.
    offset: i64,
    /// The latest decode time written (90 kHz, offset applied, not wrapped).
    end: Option<i64>,
    /// A continuation's first frame: the decode time it is shifted to.
    rebase_to: Option<i64>,
}

/// The gap (90 kHz) a continuation leaves between the last frame of the
/// muxer it continues and its own first frame: one frame at 25 fps.
const CONTINUATION_GAP: i64 = 3_600;

#[derive(Debug)]
struct MuxTrack {
    id: TrackId,
    codec: Codec,
    pid: u16,
    timescale: u32,
    cc: u8,
    /// Video: the parameter sets of the config record as Annex-B, inserted
    /// before each keyframe that does not carry its own.
    param_sets: Bytes,
    /// AAC: the config that ADTS headers repeat.
    asc: Option<AudioSpecificConfig>,
    /// Opus: channel count for the PMT's extension descriptor.
    channels: u8,
    /// The next packet carries `discontinuity_indicator` (see
    /// [`TsMuxer::mark_discontinuity`]).
    discontinuity: bool,
}

fn ts_error(e: mpeg2ts::Error) -> Error {
    Error::Malformed {
        format: "mpeg-ts",
        what: format!("writing a packet: {e}"),
    }
}

impl MuxTrack {
    fn new(info: &TrackInfo, pid: u16) -> Result<Self> {
        let unsupported = |what: &str| Error::Unsupported {
            format: "mpeg-ts",
            what: what.to_owned(),
        };
        let mut param_sets = BytesMut::new();
        let mut asc = None;
        let mut channels = info.audio.map_or(2, |a| a.channels);
        match info.codec {
            Codec::H264 => {
                if let Some(c) = info.config.as_deref().and_then(codec::parse_avcc) {
                    codec::write_annexb(
                        c.sps.iter().chain(&c.pps).map(|n| n.as_ref()),
                        &mut param_sets,
                    );
                }
            }
            Codec::H265 => {
                if let Some(c) = info.config.as_deref().and_then(codec::parse_hvcc) {
                    codec::write_annexb(
                        c.vps.iter().chain(&c.sps).chain(&c.pps).map(|n| n.as_ref()),
                        &mut param_sets,
                    );
                }
            }
            Codec::Aac => {
                let parsed = match (&info.config, info.audio) {
                    (Some(c), _) => AudioSpecificConfig::parse(c),
                    (None, Some(a)) => codec::make_asc(a.sample_rate, a.channels)
                        .and_then(|b| AudioSpecificConfig::parse(&b)),
                    (None, None) => None,
                };
                asc = Some(
                    parsed
                        .ok_or_else(|| unsupported("AAC without a usable AudioSpecificConfig"))?,
                );
            }
            Codec::Opus => {
                if let Some(c) = info.config.as_deref() {
                    channels = opus::channels_of_config(c).unwrap_or(channels);
                }
            }
            other => return Err(unsupported(other.name())),
        }
        Ok(MuxTrack {
            id: info.id,
            codec: info.codec,
            pid,
            timescale: info.timescale,
            cc: 0,
            param_sets: param_sets.freeze(),
            asc,
            channels,
            discontinuity: false,
        })
    }

    fn stream_type(&self) -> StreamType {
        match self.codec {
            Codec::H264 => StreamType::H264,
            Codec::H265 => StreamType::H265,
            Codec::Aac => StreamType::AdtsAac,
            _ => StreamType::Mpeg2PacketizedData,
        }
    }

    fn descriptors(&self) -> Vec<Descriptor> {
        match self.codec {
            // Registration "Opus" and the DVB extension descriptor with the channel configuration.
            Codec::Opus => vec![
                Descriptor {
                    tag: 0x05,
                    data: b"Opus".to_vec(),
                },
                Descriptor {
                    tag: 0x7f,
                    data: vec![0x80, self.channels],
                },
            ],
            _ => Vec::new(),
        }
    }

    fn stream_id(&self) -> u8 {
        match self.codec.kind() {
            MediaKind::Video => StreamId::VIDEO_MIN,
            _ if self.codec == Codec::Opus => StreamId::PRIVATE_STREAM_1,
            MediaKind::Audio => StreamId::AUDIO_MIN,
        }
    }

    fn next_cc(&mut self) -> ContinuityCounter {
        next_cc(&mut self.cc)
    }
}

fn next_cc(cc: &mut u8) -> ContinuityCounter {
    let v = *cc;
    *cc = (v + 1) & 0xf;
    // Always 0..=15.
    ContinuityCounter::from_u8(v).unwrap_or_default()
}

fn header(pid: u16, cc: ContinuityCounter) -> Result<TsHeader> {
    Ok(TsHeader {
        transport_error_indicator: false,
        transport_priority: false,
        pid: Pid::new(pid).map_err(ts_error)?,
        transport_scrambling_control: TransportScramblingControl::NotScrambled,
        continuity_counter: cc,
    })
}

impl TsMuxer {
    /// A muxer for the first video and the first audio track of `tracks`
    /// (H.264, H.265, AAC, Opus).
    pub fn new(tracks: &[TrackInfo]) -> Result<TsMuxer> {
        let mut m = TsMuxer {
            tracks: Vec::new(),
            pcr_pid: VIDEO_PID,
            pat_cc: 0,
            pmt_cc: 0,
            pmt_version: 0,
            offset: 0,
            end: None,
            rebase_to: None,
        };
        m.set_tracks(tracks)?;
        Ok(m)
    }

    /// A muxer that continues `previous`'s output as one stream (a
    /// republish): the same PIDs, continuity counters carried on, a PMT of
    /// the next version, and timestamps shifted so that the first frame
    /// written comes one frame (40 ms) after the last one `previous` wrote.
    /// A demuxer reading across sees no discontinuity at all.
    pub fn continue_from(previous: &TsMuxer, tracks: &[TrackInfo]) -> Result<TsMuxer> {
        let mut m = TsMuxer::new(tracks)?;
        m.pat_cc = previous.pat_cc;
        m.pmt_cc = previous.pmt_cc;
        m.pmt_version = (previous.pmt_version + 1) & 0x1f;
        for t in &mut m.tracks {
            if let Some(old) = previous.tracks.iter().find(|o| o.pid == t.pid) {
                t.cc = old.cc;
            }
        }
        m.rebase_to = previous.end.map(|end| end + CONTINUATION_GAP);
        m.end = previous.end;
        Ok(m)
    }

    /// Takes a new track set (a new catalog version); continuity counters
    /// carry on, and the PMT version advances when the track set changed.
    pub fn set_tracks(&mut self, tracks: &[TrackInfo]) -> Result<()> {
        let mut next = Vec::new();
        let video = tracks.iter().find(|t| t.kind() == MediaKind::Video);
        let audio = tracks.iter().find(|t| t.kind() == MediaKind::Audio);
        for (info, pid) in [(video, VIDEO_PID), (audio, AUDIO_PID)] {
            if let Some(info) = info {
                let mut t = MuxTrack::new(info, pid)?;
                if let Some(old) = self.tracks.iter().find(|o| o.pid == pid) {
                    t.cc = old.cc;
                }
                next.push(t);
            }
        }
        if next.is_empty() {
            return Err(Error::Unsupported {
                format: "mpeg-ts",
                what: "a track set without video or audio".into(),
            });
        }
        let changed = !self.tracks.is_empty()
            && (self.tracks.len() != next.len()
                || self.tracks.iter().zip(&next).any(|(a, b)| {
                    a.codec != b.codec || a.pid != b.pid || a.channels != b.channels
                }));
        if changed {
            self.pmt_version = (self.pmt_version + 1) & 0x1f;
        }
        self.pcr_pid = if video.is_some() {
            VIDEO_PID
        } else {
            AUDIO_PID
        };
        self.tracks = next;
        Ok(())
    }

    /// The stream starts anew (a republish): the next packet of each track
    /// carries `discontinuity_indicator`, telling a demuxer that the
    /// continuity counters and the timestamps (PCR, PTS) jump there, and the
    /// PMT takes `pmt_version` (modulo 32) so that it reads as a new one.
    pub fn mark_discontinuity(&mut self, pmt_version: u8) {
        self.pmt_version = pmt_version & 0x1f;
        for t in &mut self.tracks {
            t.discontinuity = true;
        }
    }

    /// The PID carrying the PCR.
    pub fn pcr_pid(&self) -> u16 {
        self.pcr_pid
    }

    /// Writes a PAT and a PMT (two packets).
    pub fn write_psi(&mut self, out: &mut BytesMut) {
        // Writing a PAT/PMT of at most two streams into 188 bytes cannot fail;
        // the only errors mpeg2ts reports are for values this muxer never makes.
        let _ = self.try_write_psi(out);
    }

    fn try_write_psi(&mut self, out: &mut BytesMut) -> Result<()> {
        let version = VersionNumber::from_u8(self.pmt_version).map_err(ts_error)?;
        let pat = TsPacket {
            header: header(Pid::PAT, next_cc(&mut self.pat_cc))?,
            adaptation_field: None,
            payload: Some(TsPayload::Pat(Pat {
                transport_stream_id: 1,
                version_number: VersionNumber::new(),
                table: vec![ProgramAssociation {
                    program_num: PROGRAM_NUMBER,
                    program_map_pid: Pid::new(PMT_PID).map_err(ts_error)?,
                }],
            })),
        };
        let mut es_info = Vec::with_capacity(self.tracks.len());
        for t in &self.tracks {
            es_info.push(EsInfo {
                stream_type: t.stream_type(),
                elementary_pid: Pid::new(t.pid).map_err(ts_error)?,
                descriptors: t.descriptors(),
            });
        }
        let pmt = TsPacket {
            header: header(PMT_PID, next_cc(&mut self.pmt_cc))?,
            adaptation_field: None,
            payload: Some(TsPayload::Pmt(Pmt {
                program_num: PROGRAM_NUMBER,
                pcr_pid: Some(Pid::new(self.pcr_pid).map_err(ts_error)?),
                version_number: version,
                program_info: Vec::new(),
                es_info,
            })),
        };
        let mut w = TsPacketWriter::new(out.writer());
        w.write_ts_packet(&pat).map_err(ts_error)?;
        w.write_ts_packet(&pmt).map_err(ts_error)?;
        Ok(())
    }

    /// Writes one frame as a PES in TS packets. Frames of tracks the muxer
    /// does not carry are skipped. On error nothing is written.
    pub fn write_frame(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<()> {
        let pcr_pid = self.pcr_pid;
        let Some(t) = self.tracks.iter_mut().find(|t| t.id == frame.track) else {
            return Ok(());
        };
        let es = elementary_stream(t, frame)?;
        let raw_dts = rescale(frame.dts, t.timescale, 90_000);
        if let Some(to) = self.rebase_to.take() {
            self.offset = to - raw_dts;
        }
        let dts = raw_dts + self.offset;
        self.end = Some(self.end.map_or(dts, |e| e.max(dts)));
        let pts = (rescale(frame.pts, t.timescale, 90_000) + self.offset) & TIMESTAMP_MASK;
        let dts = dts & TIMESTAMP_MASK;
        let keyframe = frame.is_keyframe();
        let pcr = (t.pid == pcr_pid).then_some(dts);
        let start = out.len();
        let r = write_pes(
            t,
            &es,
            pts as u64,
            dts as u64,
            keyframe,
            pcr.map(|p| p as u64),
            out,
        );
        if r.is_err() {
            out.truncate(start);
        }
        r
    }
}

/// The frame's elementary-stream bytes: Annex-B with an AUD (video), ADTS
/// (AAC), Opus control header (Opus).
fn elementary_stream(t: &MuxTrack, frame: &Frame) -> Result<BytesMut> {
    let malformed = |what: &str| Error::Malformed {
        format: "frame",
        what: format!("{} on track {}: {what}", frame.codec.name(), frame.track.0),
    };
    let mut es = BytesMut::with_capacity(frame.payload.len() + t.param_sets.len() + 32);
    match t.codec {
        Codec::H264 | Codec::H265 => {
            let nals = codec::length_prefixed_nals(&frame.payload, 4)
                .ok_or_else(|| malformed("NAL unit lengths overrun the payload"))?;
            let h264 = t.codec == Codec::H264;
            let nal_type = |n: &[u8]| {
                if h264 {
                    codec::h264_nal_type(n)
                } else {
                    codec::h265_nal_type(n)
                }
            };
            let (aud_type, sps_type) = if h264 {
                (codec::h264_nal::AUD, codec::h264_nal::SPS)
            } else {
                (codec::h265_nal::AUD, codec::h265_nal::SPS)
            };
            if h264 {
                es.put_slice(&[0, 0, 0, 1, 0x09, 0xf0]);
            } else {
                es.put_slice(&[0, 0, 0, 1, 0x46, 0x01, 0x50]);
            }
            let has_sps = nals.iter().any(|n| nal_type(n) == Some(sps_type));
            if frame.is_keyframe() && !has_sps {
                es.put_slice(&t.param_sets);
            }
            codec::write_annexb(
                nals.into_iter().filter(|n| nal_type(n) != Some(aud_type)),
                &mut es,
            );
        }
        Codec::Aac => {
            let asc = t
                .asc
                .as_ref()
                .ok_or_else(|| malformed("no AudioSpecificConfig"))?;
            codec::write_adts(asc, frame.payload.len(), &mut es)
                .ok_or_else(|| malformed("frame or config not expressible in ADTS"))?;
            es.put_slice(&frame.payload);
        }
        Codec::Opus => {
            opus::write_control_header(frame.payload.len(), &mut es);
            es.put_slice(&frame.payload);
        }
        _ => return Err(malformed("codec not carried in MPEG-TS")),
    }
    Ok(es)
}

fn write_pes(
    t: &mut MuxTrack,
    es: &[u8],
    pts: u64,
    dts: u64,
    keyframe: bool,
    pcr: Option<u64>,
    out: &mut BytesMut,
) -> Result<()> {
    let with_dts = dts != pts && t.codec.kind() == MediaKind::Video;
    let pes_header = PesHeader {
        stream_id: StreamId::new(t.stream_id()),
        priority: false,
        data_alignment_indicator: true,
        copyright: false,
        original_or_copy: false,
        pts: Some(Timestamp::new(pts).map_err(ts_error)?),
        dts: if with_dts {
            Some(Timestamp::new(dts).map_err(ts_error)?)
        } else {
            None
        },
        escr: None,
    };
    let header_len = 9 + if with_dts { 10 } else { 5 };
    // PES_packet_length counts the bytes after it; 0 (unbounded) is allowed for video only.
    let pes_len = es.len() + header_len - 6;
    let pes_packet_len = match u16::try_from(pes_len) {
        Ok(l) => l,
        Err(_) if t.codec.kind() == MediaKind::Video => 0,
        Err(_) => {
            return Err(Error::Unsupported {
                format: "mpeg-ts",
                what: format!("an audio frame of {} bytes", es.len()),
            });
        }
    };
    let discontinuity = std::mem::take(&mut t.discontinuity);
    let adaptation_field = if pcr.is_some() || keyframe || discontinuity {
        Some(AdaptationField {
            discontinuity_indicator: discontinuity,
            random_access_indicator: keyframe,
            es_priority_indicator: false,
            pcr: match pcr {
                Some(p) => Some(ClockReference::new(p * 300).map_err(ts_error)?),
                None => None,
            },
            opcr: None,
            splice_countdown: None,
            transport_private_data: Vec::new(),
            extension: None,
        })
    } else {
        None
    };
    let af_len = match (&adaptation_field, pcr) {
        (None, _) => 0,
        (Some(_), Some(_)) => 8,
        (Some(_), None) => 2,
    };
    let first = es.len().min(PAYLOAD - af_len - header_len);
    let (head, mut rest) = es.split_at(first);
    let mut w = TsPacketWriter::new(out.writer());
    let packet = TsPacket {
        header: header(t.pid, t.next_cc())?,
        adaptation_field,
        payload: Some(TsPayload::PesStart(Pes {
            header: pes_header,
            pes_packet_len,
            data: payload::Bytes::new(head).map_err(ts_error)?,
        })),
    };
    w.write_ts_packet(&packet).map_err(ts_error)?;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(PAYLOAD));
        rest = tail;
        let packet = TsPacket {
            header: header(t.pid, t.next_cc())?,
            adaptation_field: None,
            payload: Some(TsPayload::PesContinuation(
                payload::Bytes::new(chunk).map_err(ts_error)?,
            )),
        };
        w.write_ts_packet(&packet).map_err(ts_error)?;
    }
    Ok(())
}
