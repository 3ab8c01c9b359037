//! The SDP offer/answer of a WHIP publish or a WHEP play, sans-IO: the
//! offer's bytes in, a configured `str0m::Rtc` and the answer out, or why
//! not (the HTTP side maps each refusal to its status).

use std::time::Instant;

use str0m::change::SdpOffer;
use str0m::{Candidate, Rtc};

use crate::error::Error;

/// Which side of the media the server is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// WHIP: the client sends, the server receives.
    Publish,
    /// WHEP: the server sends, the client receives.
    Play,
}

/// A negotiated session: its state machine (ICE-lite, RTP mode, host
/// candidates added) and the SDP answer.
#[derive(Debug)]
pub struct Negotiated {
    /// The session's WebRTC state machine.
    pub rtc: Rtc,
    /// The SDP answer to send back.
    pub answer: String,
}

/// A parsed offer and the video codecs it names.
#[derive(Debug)]
pub struct Offer {
    sdp: SdpOffer,
    /// The `a=rtpmap` encoding names of its `m=video` sections (upper case,
    /// in order, without repeats; retransmission and FEC formats left out).
    pub video_codecs: Vec<String>,
}

/// Reads an offer: UTF-8 SDP that str0m parses, or
/// [`Error::Signalling`].
pub fn parse_offer(body: &[u8]) -> Result<Offer, Error> {
    let text = std::str::from_utf8(body)
        .map_err(|_| Error::Signalling("the offer is not valid SDP".into()))?;
    let sdp = SdpOffer::from_sdp_string(text)
        .map_err(|_| Error::Signalling("the offer is not valid SDP".into()))?;
    let mut video_codecs: Vec<String> = Vec::new();
    let mut in_video = false;
    for line in text.lines() {
        if let Some(media) = line.strip_prefix("m=") {
            in_video = media.starts_with("video");
        } else if in_video && let Some(map) = line.strip_prefix("a=rtpmap:") {
            let name = map
                .split_whitespace()
                .nth(1)
                .and_then(|e| e.split('/').next())
                .unwrap_or_default()
                .to_ascii_uppercase();
            let auxiliary = matches!(name.as_str(), "RTX" | "RED" | "ULPFEC" | "FLEXFEC-03");
            if !name.is_empty() && !auxiliary && !video_codecs.contains(&name) {
                video_codecs.push(name);
            }
        }
    }
    Ok(Offer { sdp, video_codecs })
}

/// The video codecs WHEP sends, as the offer's encoding names: every one
/// a WHIP publish may use (the stream's own codec is sent, never
/// transcoded).
pub const PLAY_VIDEO: [&str; 5] = ["H264", "VP8", "VP9", "AV1", "H265"];

/// The SDP encoding name of a kernel video codec WHEP sends.
fn sdp_name(codec: tidewater_core::Codec) -> Option<&'static str> {
    use tidewater_core::Codec;
    Some(match codec {
        Codec::H264 => "H264",
        Codec::Vp8 => "VP8",
        Codec::Vp9 => "VP9",
        Codec::Av1 => "AV1",
        Codec::H265 => "H265",
        _ => return None,
    })
}

/// The viewer's media line a kernel codec is sent on, `None` for a codec
/// WHEP does not carry (AAC goes through the Opus conversion).
pub fn whep_codec(codec: tidewater_core::Codec) -> Option<crate::ingest::MediaCodec> {
    use crate::ingest::MediaCodec as M;
    use tidewater_core::Codec;
    Some(match codec {
        Codec::H264 => M::H264,
        Codec::Vp8 => M::Vp8,
        Codec::Vp9 => M::Vp9,
        Codec::Av1 => M::Av1,
        Codec::H265 => M::H265,
        Codec::Opus => M::Opus,
        _ => return None,
    })
}

/// Whether a viewer's payload type of `spec` may carry `codec`'s frames:
/// the codec, and for VP9 profile 0 (what browsers and the kernel's VP9
/// publishers send; the answer also lists profile 2, which 8-bit frames
/// must not be labelled as).
pub fn sends(spec: str0m::format::CodecSpec, codec: str0m::format::Codec) -> bool {
    spec.codec == codec
        && (codec != str0m::format::Codec::Vp9 || spec.format.profile_id.unwrap_or(0) == 0)
}

/// Why a stream's video cannot be played to the viewer that sent `offer`:
/// the viewer offers video but none of the stream's video codecs (WHEP
/// sends the stream's own codec; it does not transcode), or the stream's
/// video is one WHEP does not carry. A viewer offering no video plays the
/// audio.
pub fn uncarried_video(tracks: &[tidewater_core::TrackInfo], offer: &Offer) -> Option<String> {
    use tidewater_core::MediaKind;
    let video: Vec<tidewater_core::Codec> = tracks
        .iter()
        .filter(|t| t.codec.kind() == MediaKind::Video)
        .map(|t| t.codec)
        .collect();
    let first = video.first()?;
    if offer.video_codecs.is_empty() {
        return None;
    }
    let played = video
        .iter()
        .filter_map(|c| sdp_name(*c))
        .any(|name| offer.video_codecs.iter().any(|o| o == name));
    if played {
        return None;
    }
    let Some(name) = sdp_name(*first) else {
        return Some(format!(
            "the stream's video is {}, which WHEP does not carry (it sends H.264, VP8, VP9, \
             AV1 or H.265)",
            first.name()
        ));
    };
    let hint = if name == "H265" {
        " (browsers offer H.265 only where a hardware decoder is present; \
         play it with HLS, DASH or SRT instead)"
    } else {
        " (in a browser: a page that keeps it in setCodecPreferences)"
    };
    Some(format!(
        "the stream's video is {}, which the offer does not accept (it offers {}): \
         WHEP sends the stream's own codec{hint}",
        first.name(),
        offer.video_codecs.join(", ")
    ))
}

/// The video codecs a WHIP publish may use, in the order the answer
/// prefers them (the first one the offer names is the only video codec
/// answered; see the crate docs for why this order).
pub const PUBLISH_VIDEO: [&str; 5] = ["H264", "VP8", "VP9", "AV1", "H265"];

/// Answers `offer` for `role`, announcing `candidates` as host candidates.
///
/// A publish is answered with Opus and one video codec: H.264
/// (packetization-mode 1) whenever the offer has it, else the first of
/// VP8, VP9, AV1 and H.265 it names ([`PUBLISH_VIDEO`]); answering one
/// codec only means the publisher cannot switch codecs mid-stream. A play
/// is answered with every one of H.264, VP8, VP9, AV1 and H.265 the offer
/// has ([`PLAY_VIDEO`]), and Opus: the viewer's line sends whichever the
/// stream has (the HTTP side refuses first a viewer that offers none of
/// the stream's, [`uncarried_video`]).
/// [`Error::Unanswerable`] when str0m cannot answer it,
/// [`Error::NoCommonCodec`] when it offers video in none of those codecs
/// or neither video nor audio is in the answer.
pub fn answer(
    offer: Offer,
    role: Role,
    candidates: &[Candidate],
    now: Instant,
) -> Result<Negotiated, Error> {
    let offered = |c: &str| offer.video_codecs.iter().any(|o| o == c);
    // Which codecs the answer enables: one for a publish, all offered for
    // a play.
    let enabled: Vec<&str> = match role {
        Role::Publish => PUBLISH_VIDEO
            .into_iter()
            .find(|c| offered(c))
            .into_iter()
            .collect(),
        Role::Play => PLAY_VIDEO.into_iter().filter(|c| offered(c)).collect(),
    };
    let enable = |c: &str| enabled.contains(&c);
    // Video offered in codecs the server does not take: refused with their
    // names rather than answered without the picture.
    if !offer.video_codecs.is_empty() && enabled.is_empty() {
        let takes = "H.264 (packetization-mode 1), VP8, VP9, AV1 or H.265";
        return Err(Error::NoCommonCodec(format!(
            "the offer's video is {}; this server takes {takes}: \
             offer one of them (in a browser: setCodecPreferences)",
            offer.video_codecs.join(", ")
        )));
    }
    let mut rtc = Rtc::builder()
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_h264(enable("H264"))
        .enable_vp8(enable("VP8"))
        .enable_vp9(enable("VP9"))
        .enable_av1(enable("AV1"))
        .enable_h265(enable("H265"))
        .enable_opus(true, false)
        // Statistics events carry what TWCC feedback and receiver reports
        // say of the link (see `qos`).
        .set_stats_interval(Some(crate::qos::STATS_INTERVAL))
        .build(now);
    for c in candidates {
        rtc.add_local_candidate(c.clone());
    }
    let answer = rtc
        .sdp_api()
        .accept_offer(offer.sdp)
        .map_err(|e| Error::Unanswerable(e.to_string()))?
        .to_sdp_string();
    let has_video = [
        "H264/90000",
        "VP8/90000",
        "VP9/90000",
        "AV1/90000",
        "H265/90000",
    ]
    .iter()
    .any(|c| answer.contains(c));
    if !has_video && !answer.contains("opus/48000") {
        let what = match role {
            Role::Publish => "the offer carries neither a video codec the server takes nor Opus",
            Role::Play => "the offer accepts neither a video codec the server sends nor Opus",
        };
        return Err(Error::NoCommonCodec(what.into()));
    }
    Ok(Negotiated { rtc, answer })
}

/// The kernel codec of a str0m video or audio codec a publish may carry.
pub fn kernel_codec(codec: str0m::format::Codec) -> Option<tidewater_core::Codec> {
    use str0m::format::Codec as C;
    use tidewater_core::Codec as K;
    Some(match codec {
        C::H264 => K::H264,
        C::Vp8 => K::Vp8,
        C::Vp9 => K::Vp9,
        C::Av1 => K::Av1,
        C::H265 => K::H265,
        C::Opus => K::Opus,
        _ => return None,
    })
}
