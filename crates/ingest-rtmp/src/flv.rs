//! FLV tag bodies (the payload of RTMP audio and video messages and of FLV
//! file tags) to and from the kernel's canonical frames.
//!
//! | FLV / RTMP | kernel |
//! |---|---|
//! | video codec id 7 (AVC), `AVCPacketType` 0 | H.264 `avcC` → track config |
//! | AVC `AVCPacketType` 1, composition time | H.264 frame, AVCC payload, pts = dts + composition time |
//! | enhanced RTMP `hvc1` / `av01` / `vp09` / `avc1`, `SequenceStart` | config record (`hvcC`, `av1C`, `vpcC`, `avcC`) |
//! | enhanced `CodedFrames` / `CodedFramesX` | frame (`hvc1`/`avc1` `CodedFrames` carry a composition time) |
//! | sound format 10 (AAC), `AACPacketType` 0 / 1 | AudioSpecificConfig / raw AAC frame |
//! | enhanced audio (sound format 9) `mp4a` / `Opus` | AAC / Opus |
//!
//! Timestamps are RTMP milliseconds: tracks from RTMP have timescale 1000 and
//! wrap at 32 bits ([`TimestampWrap::RTMP`](tidewater_core::TimestampWrap::RTMP)).
//! AV1 temporal delimiters are removed (the canonical form has none); NAL
//! units with 1- or 2-byte length prefixes are re-prefixed with 4 bytes.

use bytes::{BufMut, Bytes, BytesMut};
use tidewater_core::time::{rescale, timescale};
use tidewater_core::{Catalog, Codec, Frame, MediaKind, TrackId, TrackInfo};

/// The track id of the video track of an RTMP publish.
pub const VIDEO_TRACK: TrackId = TrackId(1);
/// The track id of the audio track of an RTMP publish.
pub const AUDIO_TRACK: TrackId = TrackId(2);

/// RTMP / FLV message type of audio.
pub const TYPE_AUDIO: u8 = 8;
/// RTMP / FLV message type of video.
pub const TYPE_VIDEO: u8 = 9;
/// RTMP / FLV message type of AMF0 data (`onMetaData`).
pub const TYPE_DATA: u8 = 18;

/// The video frames an RTMP or HTTP-FLV viewer starts with when the stream
/// retains them (an earlier GOP when the newest holds fewer yet; see
/// [`Request::start_video_frames`](tidewater_core::Request::start_video_frames)):
/// ffmpeg's FLV demuxer shows nothing before it has analysed this many
/// (its frame-rate probe, 20 frames doubled for FLV's 1 ms time base), so
/// with fewer a join just after a keyframe waited up to 1.6 s at 25 fps.
pub const START_VIDEO_FRAMES: usize = 40;

const AVC_CODEC_ID: u8 = 7;
/// Codec id 12 is a widespread (non-Adobe) convention for HEVC in legacy FLV.
const HEVC_CODEC_ID: u8 = 12;
const AAC_SOUND_FORMAT: u8 = 10;
const EX_AUDIO_SOUND_FORMAT: u8 = 9;
/// AAC, 44 kHz flag, 16 bits, stereo: the flags every AAC tag carries.
const AAC_FLAGS: u8 = 0xaf;

const PKT_SEQUENCE_START: u8 = 0;
const PKT_CODED_FRAMES: u8 = 1;
const PKT_SEQUENCE_END: u8 = 2;
const PKT_CODED_FRAMES_X: u8 = 3;

/// What a video tag body holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VideoTag {
    /// A decoder configuration record (sequence header).
    Config {
        /// The codec.
        codec: Codec,
        /// `avcC`, `hvcC`, `av1C` or `vpcC`.
        record: Bytes,
    },
    /// A coded frame.
    Frame {
        /// The codec.
        codec: Codec,
        /// A random-access point.
        keyframe: bool,
        /// Composition time offset (pts − dts), milliseconds.
        cto: i32,
        /// The frame as the tag carries it (length-prefixed NAL units, OBUs, …).
        payload: Bytes,
    },
    /// Nothing for the kernel (end of sequence, command frames, unsupported codecs).
    Skip(&'static str),
}

/// What an audio tag body holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AudioTag {
    /// A decoder configuration (AudioSpecificConfig, OpusHead).
    Config {
        /// The codec.
        codec: Codec,
        /// The configuration bytes.
        record: Bytes,
    },
    /// A coded frame.
    Frame {
        /// The codec.
        codec: Codec,
        /// The raw frame.
        payload: Bytes,
    },
    /// Nothing for the kernel (unsupported codecs, end of sequence).
    Skip(&'static str),
}

/// A signed 24-bit big-endian integer (0 when fewer than 3 bytes).
fn si24(b: &[u8]) -> i32 {
    b.first_chunk::<3>()
        .map_or(0, |&[x, y, z]| i32::from_be_bytes([x, y, z, 0]) >> 8)
}

fn video_fourcc(fourcc: &[u8]) -> Option<Codec> {
    match fourcc {
        b"avc1" => Some(Codec::H264),
        b"hvc1" => Some(Codec::H265),
        b"av01" => Some(Codec::Av1),
        b"vp09" => Some(Codec::Vp9),
        _ => None,
    }
}

fn fourcc_of(codec: Codec) -> Option<&'static [u8; 4]> {
    match codec {
        Codec::H264 => Some(b"avc1"),
        Codec::H265 => Some(b"hvc1"),
        Codec::Av1 => Some(b"av01"),
        Codec::Vp9 => Some(b"vp09"),
        Codec::Aac => Some(b"mp4a"),
        Codec::Opus => Some(b"Opus"),
        _ => None,
    }
}

/// Parses a video tag body (the payload of an RTMP video message).
pub fn parse_video_tag(body: &Bytes) -> Result<VideoTag, String> {
    let Some(&b0) = body.first() else {
        return Ok(VideoTag::Skip("empty video message"));
    };
    if b0 & 0x80 != 0 {
        return parse_enhanced_video(body, b0);
    }
    let frame_type = b0 >> 4;
    let codec = match b0 & 0x0f {
        AVC_CODEC_ID => Codec::H264,
        HEVC_CODEC_ID => Codec::H265,
        _ => return Ok(VideoTag::Skip("unsupported video codec")),
    };
    if frame_type == 5 {
        return Ok(VideoTag::Skip("video command frame"));
    }
    if body.len() < 5 {
        return Err(format!(
            "{} video tag of {} bytes",
            codec.name(),
            body.len()
        ));
    }
    let cto = si24(body.get(2..5).unwrap_or_default());
    let Some(&packet_type) = body.get(1) else {
        return Err(format!(
            "{} video tag of {} bytes",
            codec.name(),
            body.len()
        ));
    };
    match packet_type {
        0 => Ok(VideoTag::Config {
            codec,
            record: body.slice(5..),
        }),
        1 => Ok(VideoTag::Frame {
            codec,
            keyframe: frame_type == 1,
            cto,
            payload: body.slice(5..),
        }),
        2 => Ok(VideoTag::Skip("end of sequence")),
        t => Err(format!("unknown AVC packet type {t}")),
    }
}

fn parse_enhanced_video(body: &Bytes, b0: u8) -> Result<VideoTag, String> {
    let frame_type = (b0 >> 4) & 0x07;
    let packet_type = b0 & 0x0f;
    if body.len() < 5 {
        return Err(format!("enhanced video tag of {} bytes", body.len()));
    }
    let Some(codec) = body.get(1..5).and_then(video_fourcc) else {
        return Ok(VideoTag::Skip("unsupported enhanced video codec"));
    };
    let keyframe = frame_type == 1;
    match packet_type {
        PKT_SEQUENCE_START => Ok(VideoTag::Config {
            codec,
            record: body.slice(5..),
        }),
        PKT_CODED_FRAMES | PKT_CODED_FRAMES_X if frame_type == 5 => {
            Ok(VideoTag::Skip("video command frame"))
        }
        PKT_CODED_FRAMES if matches!(codec, Codec::H264 | Codec::H265) => {
            if body.len() < 8 {
                return Err(format!("enhanced video frame of {} bytes", body.len()));
            }
            Ok(VideoTag::Frame {
                codec,
                keyframe,
                cto: si24(body.get(5..8).unwrap_or_default()),
                payload: body.slice(8..),
            })
        }
        PKT_CODED_FRAMES | PKT_CODED_FRAMES_X => {
            let payload = body.slice(5..);
            let payload = if codec == Codec::Av1 {
                strip_temporal_delimiters(payload)
            } else {
                payload
            };
            Ok(VideoTag::Frame {
                codec,
                keyframe,
                cto: 0,
                payload,
            })
        }
        PKT_SEQUENCE_END => Ok(VideoTag::Skip("end of sequence")),
        _ => Ok(VideoTag::Skip("unsupported enhanced video packet type")),
    }
}

/// Drops leading AV1 temporal delimiter OBUs (type 2).
fn strip_temporal_delimiters(mut payload: Bytes) -> Bytes {
    loop {
        let Some(&header) = payload.first() else {
            return payload;
        };
        let obu_type = (header >> 3) & 0x0f;
        let has_ext = header & 0x04 != 0;
        let has_size = header & 0x02 != 0;
        if obu_type != 2 || !has_size {
            return payload;
        }
        let mut pos = 1 + usize::from(has_ext);
        let mut size: u64 = 0;
        for i in 0..8 {
            let Some(&b) = payload.get(pos) else {
                return payload;
            };
            pos += 1;
            size |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                break;
            }
        }
        let Some(end) = usize::try_from(size).ok().and_then(|s| s.checked_add(pos)) else {
            return payload;
        };
        if end > payload.len() {
            return payload;
        }
        payload = payload.slice(end..);
    }
}

/// Parses an audio tag body (the payload of an RTMP audio message).
pub fn parse_audio_tag(body: &Bytes) -> Result<AudioTag, String> {
    let Some(&b0) = body.first() else {
        return Ok(AudioTag::Skip("empty audio message"));
    };
    match b0 >> 4 {
        AAC_SOUND_FORMAT => {
            if body.len() < 2 {
                return Err("AAC audio tag of 1 byte".into());
            }
            let Some(&packet_type) = body.get(1) else {
                return Err("AAC audio tag of 1 byte".into());
            };
            match packet_type {
                0 => Ok(AudioTag::Config {
                    codec: Codec::Aac,
                    record: body.slice(2..),
                }),
                1 => Ok(AudioTag::Frame {
                    codec: Codec::Aac,
                    payload: body.slice(2..),
                }),
                t => Err(format!("unknown AAC packet type {t}")),
            }
        }
        EX_AUDIO_SOUND_FORMAT => {
            if body.len() < 5 {
                return Err(format!("enhanced audio tag of {} bytes", body.len()));
            }
            let codec = match body.get(1..5).unwrap_or_default() {
                b"mp4a" => Codec::Aac,
                b"Opus" => Codec::Opus,
                _ => return Ok(AudioTag::Skip("unsupported enhanced audio codec")),
            };
            match b0 & 0x0f {
                PKT_SEQUENCE_START => Ok(AudioTag::Config {
                    codec,
                    record: body.slice(5..),
                }),
                PKT_CODED_FRAMES => Ok(AudioTag::Frame {
                    codec,
                    payload: body.slice(5..),
                }),
                PKT_SEQUENCE_END => Ok(AudioTag::Skip("end of sequence")),
                _ => Ok(AudioTag::Skip("unsupported enhanced audio packet type")),
            }
        }
        2 | 14 => Ok(AudioTag::Skip("MP3 audio is not supported")),
        _ => Ok(AudioTag::Skip("unsupported audio codec")),
    }
}

// ---------------------------------------------------------------------------
// Egress: frames and catalogs back to tag bodies.

/// The few bytes a tag body puts before the frame's payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TagPrefix {
    /// Tag / message type: [`TYPE_AUDIO`] or [`TYPE_VIDEO`].
    pub type_id: u8,
    bytes: [u8; 8],
    len: u8,
}

impl TagPrefix {
    fn new(type_id: u8, parts: &[&[u8]]) -> Self {
        let mut bytes = [0u8; 8];
        let mut len = 0;
        for p in parts {
            // Prefixes are at most 8 bytes (an enhanced tag's header and
            // composition time); a longer part is left out.
            if let Some(dst) = bytes.get_mut(len..len + p.len()) {
                dst.copy_from_slice(p);
                len += p.len();
            }
        }
        TagPrefix {
            type_id,
            bytes,
            len: len as u8,
        }
    }

    /// The prefix bytes.
    pub fn as_slice(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }
}

fn si24_bytes(v: i32) -> [u8; 3] {
    let v = v.clamp(-0x80_0000, 0x7f_ffff);
    let b = v.to_be_bytes();
    [b[1], b[2], b[3]]
}

/// RTMP timestamp (milliseconds, wrapped to 32 bits) and composition offset
/// (milliseconds) of a frame, whatever its track's timescale.
pub fn frame_time(frame: &Frame, catalog: &Catalog) -> (u32, i32) {
    let scale = catalog
        .track(frame.track)
        .map_or(timescale::MILLIS, |t| t.timescale);
    let dts = rescale(frame.dts, scale, timescale::MILLIS);
    let pts = rescale(frame.pts, scale, timescale::MILLIS);
    let cto = (pts - dts).clamp(-0x80_0000, 0x7f_ffff) as i32;
    (dts.rem_euclid(1 << 32) as u32, cto)
}

/// The tag prefix of a frame, or `None` if its codec cannot be carried in FLV.
pub fn frame_prefix(frame: &Frame, cto: i32) -> Option<TagPrefix> {
    let key = frame.is_keyframe();
    let ft: u8 = if key { 1 } else { 2 };
    Some(match frame.codec {
        Codec::H264 => TagPrefix::new(
            TYPE_VIDEO,
            &[&[(ft << 4) | AVC_CODEC_ID, 1], &si24_bytes(cto)],
        ),
        Codec::H265 if cto != 0 => TagPrefix::new(
            TYPE_VIDEO,
            &[
                &[0x80 | (ft << 4) | PKT_CODED_FRAMES],
                b"hvc1",
                &si24_bytes(cto),
            ],
        ),
        Codec::H265 | Codec::Av1 | Codec::Vp9 => TagPrefix::new(
            TYPE_VIDEO,
            &[
                &[0x80
                    | (ft << 4)
                    | if frame.codec == Codec::H265 {
                        PKT_CODED_FRAMES_X
                    } else {
                        PKT_CODED_FRAMES
                    }],
                fourcc_of(frame.codec)?,
            ],
        ),
        Codec::Aac => TagPrefix::new(TYPE_AUDIO, &[&[AAC_FLAGS, 1]]),
        Codec::Opus => TagPrefix::new(
            TYPE_AUDIO,
            &[&[(EX_AUDIO_SOUND_FORMAT << 4) | PKT_CODED_FRAMES], b"Opus"],
        ),
        _ => return None,
    })
}

/// The sequence header tag body of a track (type and body), if FLV can carry it.
pub fn config_body(track: &TrackInfo) -> Option<(u8, Bytes)> {
    let mut out = BytesMut::new();
    match track.codec {
        Codec::H264 => {
            out.put_slice(&[0x10 | AVC_CODEC_ID, 0, 0, 0, 0]);
            out.put_slice(track.config.as_deref()?);
        }
        Codec::H265 | Codec::Av1 | Codec::Vp9 => {
            out.put_u8(0x80 | 0x10 | PKT_SEQUENCE_START);
            out.put_slice(fourcc_of(track.codec)?);
            out.put_slice(track.config.as_deref()?);
        }
        Codec::Aac => {
            out.put_slice(&[AAC_FLAGS, 0]);
            match (&track.config, track.audio) {
                (Some(c), _) => out.put_slice(c),
                (None, Some(a)) => out.put_slice(&tidewater_media::codec::make_asc(
                    a.sample_rate,
                    a.channels,
                )?),
                (None, None) => return None,
            }
        }
        Codec::Opus => {
            out.put_slice(&[(EX_AUDIO_SOUND_FORMAT << 4) | PKT_SEQUENCE_START]);
            out.put_slice(b"Opus");
            out.put_slice(track.config.as_deref()?);
        }
        _ => return None,
    }
    let type_id = match track.kind() {
        MediaKind::Video => TYPE_VIDEO,
        MediaKind::Audio => TYPE_AUDIO,
    };
    Some((type_id, out.freeze()))
}

/// Tracks of a catalog FLV can carry: the first video and the first audio track.
pub fn carried_tracks(catalog: &Catalog) -> (Option<&TrackInfo>, Option<&TrackInfo>) {
    let video = catalog
        .video()
        .filter(|t| matches!(t.codec, Codec::H264 | Codec::H265 | Codec::Av1 | Codec::Vp9));
    let audio = catalog
        .audio()
        .filter(|t| matches!(t.codec, Codec::Aac | Codec::Opus));
    (video, audio)
}

/// Why a stream cannot be played over RTMP or HTTP-FLV: its video is in a
/// codec FLV does not carry (VP8; H.265, AV1 and VP9 go as enhanced RTMP
/// tags, which only clients that speak enhanced RTMP decode). A reader of
/// such a stream is refused rather than served sound without picture.
pub fn uncarried_video(tracks: &[TrackInfo]) -> Option<String> {
    let video = tracks.iter().find(|t| t.kind() == MediaKind::Video)?;
    (!matches!(
        video.codec,
        Codec::H264 | Codec::H265 | Codec::Av1 | Codec::Vp9
    ))
    .then(|| {
        format!(
            "the stream's video is {}, which RTMP and FLV cannot carry: \
             play it over LL-HLS or DASH",
            video.codec.name()
        )
    })
}

/// Whether this frame belongs to a track FLV carries for this catalog.
pub fn is_carried(frame: &Frame, catalog: &Catalog) -> bool {
    let (v, a) = carried_tracks(catalog);
    v.is_some_and(|t| t.id == frame.track) || a.is_some_and(|t| t.id == frame.track)
}

fn codec_id(codec: Codec) -> f64 {
    match codec {
        Codec::H264 => f64::from(AVC_CODEC_ID),
        Codec::Aac => f64::from(AAC_SOUND_FORMAT),
        other => fourcc_of(other).map_or(0.0, |f| f64::from(u32::from_be_bytes(*f))),
    }
}

/// An AMF0 `onMetaData` data message body describing a catalog.
pub fn metadata_body(catalog: &Catalog) -> Bytes {
    metadata_body_with(catalog, None)
}

/// [`metadata_body`] with the audio track announced as `audio` instead
/// (the AAC a transcoded Opus track goes out as).
pub fn metadata_body_with(catalog: &Catalog, audio: Option<&TrackInfo>) -> Bytes {
    let (video, carried) = carried_tracks(catalog);
    let audio = audio.or(carried);
    let mut props: Vec<(&str, Amf)> = vec![("duration", Amf::Num(0.0))];
    if let Some(v) = video {
        let p = v.video.unwrap_or_default();
        if p.width > 0 && p.height > 0 {
            props.push(("width", Amf::Num(f64::from(p.width))));
            props.push(("height", Amf::Num(f64::from(p.height))));
        }
        if let Some((n, d)) = p.frame_rate.filter(|(_, d)| *d > 0) {
            props.push(("framerate", Amf::Num(f64::from(n) / f64::from(d))));
        }
        if let Some(b) = v.bitrate {
            props.push(("videodatarate", Amf::Num(f64::from(b) / 1000.0)));
        }
        props.push(("videocodecid", Amf::Num(codec_id(v.codec))));
    }
    if let Some(a) = audio {
        let p = a.audio.unwrap_or_default();
        if p.sample_rate > 0 {
            props.push(("audiosamplerate", Amf::Num(f64::from(p.sample_rate))));
            props.push(("audiosamplesize", Amf::Num(16.0)));
        }
        if p.channels > 0 {
            props.push(("stereo", Amf::Bool(p.channels > 1)));
            props.push(("audiochannels", Amf::Num(f64::from(p.channels))));
        }
        if let Some(b) = a.bitrate {
            props.push(("audiodatarate", Amf::Num(f64::from(b) / 1000.0)));
        }
        props.push(("audiocodecid", Amf::Num(codec_id(a.codec))));
    }
    props.push(("encoder", Amf::Str("tidewater")));
    let mut out = BytesMut::with_capacity(256);
    put_amf_string(&mut out, "onMetaData");
    out.put_u8(0x08);
    out.put_u32(props.len() as u32);
    for (k, v) in props {
        out.put_u16(k.len() as u16);
        out.put_slice(k.as_bytes());
        match v {
            Amf::Num(n) => {
                out.put_u8(0x00);
                out.put_f64(n);
            }
            Amf::Bool(b) => {
                out.put_u8(0x01);
                out.put_u8(u8::from(b));
            }
            Amf::Str(s) => put_amf_string(&mut out, s),
        }
    }
    out.put_slice(&[0, 0, 0x09]);
    out.freeze()
}

enum Amf {
    Num(f64),
    Bool(bool),
    Str(&'static str),
}

fn put_amf_string(out: &mut BytesMut, s: &str) {
    out.put_u8(0x02);
    out.put_u16(s.len() as u16);
    out.put_slice(s.as_bytes());
}

/// The 13 bytes that open an FLV file: signature, version, flags, header
/// size and the first (zero) previous-tag-size.
pub fn file_header(has_audio: bool, has_video: bool) -> [u8; 13] {
    let flags = (u8::from(has_audio) << 2) | u8::from(has_video);
    [b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0]
}

/// Appends one FLV tag (header, body = `prefix` + `payload`, previous-tag-size).
/// Returns `false` if the body is longer than a tag can be.
pub fn write_tag(
    out: &mut BytesMut,
    type_id: u8,
    timestamp: u32,
    prefix: &[u8],
    payload: &[u8],
) -> bool {
    let len = prefix.len() + payload.len();
    if len > 0x00ff_ffff {
        return false;
    }
    out.reserve(11 + len + 4);
    out.put_u8(type_id);
    out.put_slice(&(len as u32).to_be_bytes()[1..]);
    out.put_slice(&timestamp.to_be_bytes()[1..]);
    out.put_u8((timestamp >> 24) as u8);
    out.put_slice(&[0, 0, 0]);
    out.put_slice(prefix);
    out.put_slice(payload);
    out.put_u32((11 + len) as u32);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avc_tags() {
        let cfg = Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f]);
        assert_eq!(
            parse_video_tag(&cfg),
            Ok(VideoTag::Config {
                codec: Codec::H264,
                record: Bytes::from_static(&[1, 0x64, 0, 0x1f])
            })
        );
        // Inter frame with a composition time of 80 ms, and a negative one.
        let f = Bytes::from_static(&[0x27, 1, 0, 0, 80, 0, 0, 0, 1, 0x41]);
        assert_eq!(
            parse_video_tag(&f),
            Ok(VideoTag::Frame {
                codec: Codec::H264,
                keyframe: false,
                cto: 80,
                payload: Bytes::from_static(&[0, 0, 0, 1, 0x41])
            })
        );
        let f = Bytes::from_static(&[0x17, 1, 0xff, 0xff, 0xd8, 9]);
        assert!(matches!(
            parse_video_tag(&f),
            Ok(VideoTag::Frame {
                keyframe: true,
                cto: -40,
                ..
            })
        ));
        assert!(parse_video_tag(&Bytes::from_static(&[0x17, 1])).is_err());
        assert_eq!(
            parse_video_tag(&Bytes::from_static(&[0x22, 0, 0])),
            Ok(VideoTag::Skip("unsupported video codec"))
        );
    }

    #[test]
    fn enhanced_hevc_and_av1_tags() {
        let mut seq = vec![0x90];
        seq.extend_from_slice(b"hvc1");
        seq.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            parse_video_tag(&Bytes::from(seq)),
            Ok(VideoTag::Config {
                codec: Codec::H265,
                record: Bytes::from_static(&[1, 2, 3])
            })
        );
        let mut coded = vec![0x91];
        coded.extend_from_slice(b"hvc1");
        coded.extend_from_slice(&[0, 0, 40, 0, 0, 0, 1, 0x26]);
        assert_eq!(
            parse_video_tag(&Bytes::from(coded)),
            Ok(VideoTag::Frame {
                codec: Codec::H265,
                keyframe: true,
                cto: 40,
                payload: Bytes::from_static(&[0, 0, 0, 1, 0x26])
            })
        );
        let mut x = vec![0xa3];
        x.extend_from_slice(b"hvc1");
        x.extend_from_slice(&[0, 0, 0, 1, 0x02]);
        assert!(matches!(
            parse_video_tag(&Bytes::from(x)),
            Ok(VideoTag::Frame {
                keyframe: false,
                cto: 0,
                codec: Codec::H265,
                ..
            })
        ));
        // AV1: temporal delimiter (0x12 0x00) stripped.
        let mut av1 = vec![0x91];
        av1.extend_from_slice(b"av01");
        av1.extend_from_slice(&[0x12, 0x00, 0x32, 0x01, 0xaa]);
        assert_eq!(
            parse_video_tag(&Bytes::from(av1)),
            Ok(VideoTag::Frame {
                codec: Codec::Av1,
                keyframe: true,
                cto: 0,
                payload: Bytes::from_static(&[0x32, 0x01, 0xaa])
            })
        );
        let mut unknown = vec![0x90];
        unknown.extend_from_slice(b"zzzz");
        assert!(matches!(
            parse_video_tag(&Bytes::from(unknown)),
            Ok(VideoTag::Skip(_))
        ));
    }

    #[test]
    fn aac_tags() {
        assert_eq!(
            parse_audio_tag(&Bytes::from_static(&[0xaf, 0, 0x12, 0x10])),
            Ok(AudioTag::Config {
                codec: Codec::Aac,
                record: Bytes::from_static(&[0x12, 0x10])
            })
        );
        assert_eq!(
            parse_audio_tag(&Bytes::from_static(&[0xaf, 1, 0x21, 0x1b])),
            Ok(AudioTag::Frame {
                codec: Codec::Aac,
                payload: Bytes::from_static(&[0x21, 0x1b])
            })
        );
        assert!(matches!(
            parse_audio_tag(&Bytes::from_static(&[0x2f, 0xff])),
            Ok(AudioTag::Skip(_))
        ));
        assert!(parse_audio_tag(&Bytes::from_static(&[0xaf])).is_err());
    }

    #[test]
    fn frame_prefixes_round_trip_through_the_parser() {
        let catalog_free = |codec, key, cto: i32| {
            let f = Frame::video(
                VIDEO_TRACK,
                codec,
                0,
                i64::from(cto),
                key,
                Bytes::from_static(&[0, 0, 0, 1, 9]),
            );
            let p = frame_prefix(&f, cto).expect("prefix");
            let mut body = p.as_slice().to_vec();
            body.extend_from_slice(&f.payload);
            (
                p.type_id,
                parse_video_tag(&Bytes::from(body)).expect("parse"),
            )
        };
        for codec in [Codec::H264, Codec::H265] {
            for (key, cto) in [(true, 0), (false, 80), (false, -40)] {
                let (t, tag) = catalog_free(codec, key, cto);
                assert_eq!(t, TYPE_VIDEO);
                assert_eq!(
                    tag,
                    VideoTag::Frame {
                        codec,
                        keyframe: key,
                        cto,
                        payload: Bytes::from_static(&[0, 0, 0, 1, 9])
                    }
                );
            }
        }
        let a = Frame::audio(AUDIO_TRACK, Codec::Aac, 0, Bytes::from_static(&[1, 2]));
        let p = frame_prefix(&a, 0).expect("aac");
        assert_eq!((p.type_id, p.as_slice()), (TYPE_AUDIO, &[0xaf, 1][..]));
    }

    #[test]
    fn flv_tag_layout() {
        let mut out = BytesMut::new();
        assert!(write_tag(
            &mut out,
            9,
            0x0102_0304,
            &[0x17, 1, 0, 0, 0],
            &[7, 7]
        ));
        assert_eq!(
            &out[..],
            &[
                9, 0, 0, 7, 2, 3, 4, 1, 0, 0, 0, 0x17, 1, 0, 0, 0, 7, 7, 0, 0, 0, 18
            ]
        );
        assert_eq!(&file_header(true, true)[..5], b"FLV\x01\x05");
    }
}
