//! SDP (RFC 8866) in both directions, over `sdp-types`: the media an
//! `ANNOUNCE` describes, and the description a `DESCRIBE` answers with,
//! made from the stream's catalog.
// Reads network input: no indexing, unwrap, expect or panic that a peer
// could reach (issue 18); where an invariant proves one safe, an allow says which.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::BTreeMap;

use base64::Engine as _;
use tidewater_core::{Catalog, Codec, TrackInfo};
use tidewater_media::codec::{parse_avcc, parse_hvcc};

/// The payload type of video tracks in descriptions we write.
pub const VIDEO_PAYLOAD_TYPE: u8 = 96;
/// The payload type of audio tracks in descriptions we write.
pub const AUDIO_PAYLOAD_TYPE: u8 = 97;

/// One `m=` section of an announced description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdpTrack {
    /// `video` or `audio` (or another media type, which is ignored).
    pub media: String,
    /// `a=control`, if present.
    pub control: Option<String>,
    /// The (first) payload type.
    pub payload_type: u8,
    /// The encoding name from `a=rtpmap`, upper case (`H264`, `MPEG4-GENERIC`).
    pub encoding: String,
    /// The clock rate from `a=rtpmap` (90000 for video when absent).
    pub clock_rate: u32,
    /// The channel count from `a=rtpmap`, if given.
    pub channels: Option<u8>,
    /// The `a=fmtp` parameters, names lower case.
    pub fmtp: BTreeMap<String, String>,
}

impl SdpTrack {
    /// The kernel codec, when this crate depacketizes it.
    pub fn codec(&self) -> Option<Codec> {
        match (self.media.as_str(), self.encoding.as_str()) {
            ("video", "H264") => Some(Codec::H264),
            ("video", "H265") => Some(Codec::H265),
            ("audio", "OPUS") => Some(Codec::Opus),
            ("audio", "MPEG4-GENERIC") => {
                let mode = self.fmtp.get("mode").map(|m| m.to_ascii_lowercase());
                matches!(mode.as_deref(), Some("aac-hbr") | Some("aac-lbr")).then_some(Codec::Aac)
            }
            // In-band configuration (cpresent=1) is not read.
            ("audio", "MP4A-LATM") => {
                (self.fmtp.get("cpresent").map(String::as_str) == Some("0")).then_some(Codec::Aac)
            }
            _ => None,
        }
    }

    /// The base64-decoded `sprop-parameter-sets` (H.264).
    pub fn sprop_parameter_sets(&self) -> Vec<Vec<u8>> {
        self.fmtp
            .get("sprop-parameter-sets")
            .map(|v| {
                v.split(',')
                    .filter_map(|s| {
                        base64::engine::general_purpose::STANDARD
                            .decode(s.trim())
                            .ok()
                    })
                    .filter(|n| !n.is_empty())
                    .take(32)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A base64-decoded H.265 parameter set list (`sprop-vps`, `sprop-sps`,
    /// `sprop-pps`).
    pub fn sprop(&self, name: &str) -> Vec<Vec<u8>> {
        self.fmtp
            .get(name)
            .map(|v| {
                v.split(',')
                    .filter_map(|s| {
                        base64::engine::general_purpose::STANDARD
                            .decode(s.trim())
                            .ok()
                    })
                    .filter(|n| n.len() >= 2)
                    .take(16)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The hex-decoded `config` (an AAC AudioSpecificConfig).
    pub fn config(&self) -> Option<Vec<u8>> {
        let hex = self.fmtp.get("config")?;
        if hex.len() % 2 != 0 || hex.len() > 512 {
            return None;
        }
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect()
    }

    /// An `fmtp` parameter as a number.
    pub fn fmtp_number(&self, name: &str) -> Option<u32> {
        self.fmtp.get(name)?.trim().parse().ok()
    }
}

/// Parses an announced description; `Err` names what is wrong.
pub fn parse(body: &[u8]) -> Result<Vec<SdpTrack>, String> {
    // sdp-types 0.1.8 panics (an assertion in its media parser) when a
    // malformed line precedes another line, so every line is checked to
    // have the `x=` form first, split as its parser splits them.
    for line in body.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.is_empty() && line.iter().position(|b| *b == b'=') != Some(1) {
            return Err("SDP: a line is not in the x=value form".into());
        }
    }
    let session = sdp_types::Session::parse(body).map_err(|e| format!("SDP: {e}"))?;
    let mut tracks = Vec::new();
    for media in session.medias.iter().take(16) {
        let payload_type: u8 = media
            .fmt
            .split_whitespace()
            .next()
            .and_then(|f| f.parse().ok())
            .ok_or("m= line without a numeric payload type")?;
        let mut track = SdpTrack {
            media: media.media.clone(),
            control: None,
            payload_type,
            encoding: String::new(),
            clock_rate: 90_000,
            channels: None,
            fmtp: BTreeMap::new(),
        };
        for attr in &media.attributes {
            let value = attr.value.as_deref().unwrap_or("");
            match attr.attribute.as_str() {
                "control" => track.control = Some(value.to_string()),
                "rtpmap" => {
                    let Some((pt, map)) = value.split_once(' ') else {
                        continue;
                    };
                    if pt.trim().parse::<u8>().ok() != Some(payload_type) {
                        continue;
                    }
                    let mut parts = map.trim().split('/');
                    track.encoding = parts.next().unwrap_or("").to_ascii_uppercase();
                    if let Some(rate) = parts.next().and_then(|r| r.parse().ok()) {
                        track.clock_rate = rate;
                    }
                    track.channels = parts.next().and_then(|c| c.parse().ok());
                }
                "fmtp" => {
                    let Some((pt, params)) = value.split_once(' ') else {
                        continue;
                    };
                    if pt.trim().parse::<u8>().ok() != Some(payload_type) {
                        continue;
                    }
                    for param in params.split(';').take(64) {
                        if let Some((k, v)) = param.split_once('=') {
                            track
                                .fmtp
                                .insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        if track.encoding.is_empty() {
            // Static payload types are not used by the codecs handled here.
            track.encoding = format!("PT{payload_type}");
        }
        if track.clock_rate == 0 {
            return Err("clock rate 0".into());
        }
        tracks.push(track);
    }
    Ok(tracks)
}

/// The control of the `index`-th track in descriptions we write.
pub fn control(index: usize) -> String {
    format!("trackID={index}")
}

/// The catalog tracks a description can carry, in order: what `DESCRIBE`
/// lists and `SETUP`'s `trackID=N` indexes.
pub fn playable_tracks(catalog: &Catalog) -> Vec<TrackInfo> {
    catalog
        .tracks()
        .iter()
        .filter(|t| match t.codec {
            Codec::H264 => t.config.as_ref().and_then(|c| parse_avcc(c)).is_some(),
            Codec::H265 => t.config.as_ref().and_then(|c| parse_hvcc(c)).is_some(),
            Codec::Opus => true,
            Codec::Aac => t.config.is_some(),
            _ => false,
        })
        .cloned()
        .collect()
}

/// The description of a stream, for `DESCRIBE`: one `m=` section per
/// [`playable_tracks`] entry, controls `trackID=N`.
pub fn describe(tracks: &[TrackInfo], session_id: u64, address: &str) -> String {
    let mut medias = Vec::new();
    for (index, track) in tracks.iter().enumerate() {
        let attr = |attribute: &str, value: String| sdp_types::Attribute {
            attribute: attribute.to_string(),
            value: Some(value),
        };
        let (media, pt, attributes) = match track.codec {
            Codec::H264 => {
                let Some(avcc) = track.config.as_ref().and_then(|c| parse_avcc(c)) else {
                    continue;
                };
                let b64 = |n: &[u8]| base64::engine::general_purpose::STANDARD.encode(n);
                let sprop: Vec<String> = avcc.sps.iter().chain(&avcc.pps).map(|n| b64(n)).collect();
                let fmtp = format!(
                    "{VIDEO_PAYLOAD_TYPE} packetization-mode=1;profile-level-id={:02X}{:02X}{:02X};sprop-parameter-sets={}",
                    avcc.profile,
                    avcc.compatibility,
                    avcc.level,
                    sprop.join(",")
                );
                (
                    "video",
                    VIDEO_PAYLOAD_TYPE,
                    vec![
                        attr("rtpmap", format!("{VIDEO_PAYLOAD_TYPE} H264/90000")),
                        attr("fmtp", fmtp),
                    ],
                )
            }
            Codec::H265 => {
                let Some(hvcc) = track.config.as_ref().and_then(|c| parse_hvcc(c)) else {
                    continue;
                };
                let b64 = |sets: &[bytes::Bytes]| {
                    sets.iter()
                        .map(|n| base64::engine::general_purpose::STANDARD.encode(n))
                        .collect::<Vec<_>>()
                        .join(",")
                };
                let fmtp = format!(
                    "{VIDEO_PAYLOAD_TYPE} sprop-vps={};sprop-sps={};sprop-pps={}",
                    b64(&hvcc.vps),
                    b64(&hvcc.sps),
                    b64(&hvcc.pps)
                );
                (
                    "video",
                    VIDEO_PAYLOAD_TYPE,
                    vec![
                        attr("rtpmap", format!("{VIDEO_PAYLOAD_TYPE} H265/90000")),
                        attr("fmtp", fmtp),
                    ],
                )
            }
            Codec::Opus => {
                // RFC 7587: always 48000/2 in the rtpmap; stereo said in the fmtp.
                let stereo = track.audio.is_none_or(|a| a.channels > 1);
                let fmtp = format!("{AUDIO_PAYLOAD_TYPE} sprop-stereo={}", u8::from(stereo));
                (
                    "audio",
                    AUDIO_PAYLOAD_TYPE,
                    vec![
                        attr("rtpmap", format!("{AUDIO_PAYLOAD_TYPE} opus/48000/2")),
                        attr("fmtp", fmtp),
                    ],
                )
            }
            Codec::Aac => {
                let Some(config) = track.config.as_ref() else {
                    continue;
                };
                let (rate, channels) = track
                    .audio
                    .map(|a| (a.sample_rate, a.channels))
                    .unwrap_or((track.timescale, 2));
                let hex: String = config.iter().map(|b| format!("{b:02X}")).collect();
                let fmtp = format!(
                    "{AUDIO_PAYLOAD_TYPE} profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config={hex}"
                );
                (
                    "audio",
                    AUDIO_PAYLOAD_TYPE,
                    vec![
                        attr(
                            "rtpmap",
                            format!("{AUDIO_PAYLOAD_TYPE} MPEG4-GENERIC/{rate}/{channels}"),
                        ),
                        attr("fmtp", fmtp),
                    ],
                )
            }
            _ => continue,
        };
        let mut attributes = attributes;
        attributes.push(attr("control", control(index)));
        medias.push(sdp_types::Media {
            media: media.to_string(),
            port: 0,
            num_ports: None,
            proto: "RTP/AVP".to_string(),
            fmt: pt.to_string(),
            media_title: None,
            connections: Vec::new(),
            bandwidths: Vec::new(),
            key: None,
            attributes,
        });
    }
    let session = sdp_types::Session {
        origin: sdp_types::Origin {
            username: Some("-".to_string()),
            sess_id: session_id.to_string(),
            sess_version: 1,
            nettype: "IN".to_string(),
            addrtype: if address.contains(':') { "IP6" } else { "IP4" }.to_string(),
            unicast_address: address.to_string(),
        },
        session_name: "tidewater".to_string(),
        session_description: None,
        uri: None,
        emails: Vec::new(),
        phones: Vec::new(),
        connection: Some(sdp_types::Connection {
            nettype: "IN".to_string(),
            addrtype: if address.contains(':') { "IP6" } else { "IP4" }.to_string(),
            connection_address: address.to_string(),
        }),
        bandwidths: Vec::new(),
        times: vec![sdp_types::Time {
            start_time: 0,
            stop_time: 0,
            repeats: Vec::new(),
        }],
        time_zones: Vec::new(),
        key: None,
        attributes: vec![
            sdp_types::Attribute {
                attribute: "tool".to_string(),
                value: Some("tidewater".to_string()),
            },
            sdp_types::Attribute {
                attribute: "control".to_string(),
                value: Some("*".to_string()),
            },
        ],
        medias,
    };
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = session.write(&mut out);
    String::from_utf8(out).unwrap_or_default()
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
    use bytes::Bytes;
    use tidewater_core::TrackId;
    use tidewater_media::codec::build_avcc;

    const FFMPEG_ANNOUNCE: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=tool:libavformat 59.27.100\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QAFqzZQUH7ARAAAAMAEAAAAwPA8WLZYA==,aOvjyyLA; profile-level-id=640016\r\na=control:streamid=0\r\n\
m=audio 0 RTP/AVP 97\r\nb=AS:128\r\na=rtpmap:97 MPEG4-GENERIC/44100/2\r\na=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=121056E500\r\na=control:streamid=1\r\n";

    #[test]
    fn an_ffmpeg_announce_is_understood() {
        let tracks = parse(FFMPEG_ANNOUNCE.as_bytes()).expect("parses");
        assert_eq!(tracks.len(), 2);
        assert_eq!(tracks[0].codec(), Some(Codec::H264));
        assert_eq!(tracks[0].control.as_deref(), Some("streamid=0"));
        let sets = tracks[0].sprop_parameter_sets();
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[0][0] & 0x1f, 7);
        assert_eq!(sets[1][0] & 0x1f, 8);
        assert_eq!(tracks[1].codec(), Some(Codec::Aac));
        assert_eq!(
            (tracks[1].clock_rate, tracks[1].channels),
            (44_100, Some(2))
        );
        assert_eq!(tracks[1].config(), Some(vec![0x12, 0x10, 0x56, 0xe5, 0x00]));
        assert_eq!(tracks[1].fmtp_number("sizelength"), Some(13));
    }

    #[test]
    fn a_description_we_write_parses_back() {
        let sps = [0x67, 0x64, 0, 0x16, 0xac];
        let pps = [0x68, 0xeb];
        let video = TrackInfo::video(TrackId(1), Codec::H264, 320, 240)
            .with_config(build_avcc(&[&sps], &[&pps]).expect("avcc"));
        let audio = TrackInfo::audio(TrackId(2), Codec::Aac, 48_000, 2)
            .with_config(Bytes::from_static(&[0x11, 0x90]));
        let text = describe(&[video, audio], 7, "127.0.0.1");
        let tracks = parse(text.as_bytes()).expect("parses back");
        assert_eq!(tracks.len(), 2);
        assert_eq!(tracks[0].codec(), Some(Codec::H264));
        assert_eq!(
            tracks[0].sprop_parameter_sets(),
            vec![sps.to_vec(), pps.to_vec()]
        );
        assert_eq!(
            tracks[0].fmtp.get("profile-level-id").map(String::as_str),
            Some("640016")
        );
        assert_eq!(tracks[1].codec(), Some(Codec::Aac));
        assert_eq!(tracks[1].config(), Some(vec![0x11, 0x90]));
        assert_eq!(tracks[1].control.as_deref(), Some("trackID=1"));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse(b"not sdp").is_err());
        assert!(parse(b"v=0\r\nm=video 0 RTP/AVP x\r\n").is_err());
        // What made sdp-types panic: a malformed line before a c= line.
        assert!(parse(b"v=0\r\nm=video 0 RTP/AVP 96\r\nbad\r\nc=IN IP4 0.0.0.0\r\n").is_err());
        assert!(parse(b"v=0\r\nxx=1\r\nc=IN IP4 0.0.0.0\r\n").is_err());
    }
}
