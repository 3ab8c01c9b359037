//! The SDP offer/answer of a WHIP publish or a WHEP play, sans-IO: the
//! offer's bytes in, a configured `str0m::Rtc` and the answer out, or why
//! not (the HTTP side maps each refusal to its status).

use std::net::SocketAddr;
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

/// Reads an offer: UTF-8 SDP that str0m parses, or
/// [`Error::Signalling`].
pub fn parse_offer(body: &[u8]) -> Result<SdpOffer, Error> {
    std::str::from_utf8(body)
        .ok()
        .and_then(|t| SdpOffer::from_sdp_string(t).ok())
        .ok_or_else(|| Error::Signalling("the offer is not valid SDP".into()))
}

/// Answers `offer` for `role` with H.264 (packetization-mode 1) and Opus,
/// announcing `candidates` as host candidates. [`Error::Unanswerable`]
/// when str0m cannot answer it, [`Error::NoCommonCodec`] when neither
/// codec is in the answer.
pub fn answer(
    offer: SdpOffer,
    role: Role,
    candidates: &[SocketAddr],
    now: Instant,
) -> Result<Negotiated, Error> {
    let mut rtc = Rtc::builder()
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_h264(true)
        .enable_opus(true, false)
        .build(now);
    for addr in candidates {
        if let Ok(c) = Candidate::host(*addr, "udp") {
            rtc.add_local_candidate(c);
        }
    }
    let answer = rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(|e| Error::Unanswerable(e.to_string()))?
        .to_sdp_string();
    if !answer.contains("H264/90000") && !answer.contains("opus/48000") {
        let what = match role {
            Role::Publish => "the offer carries neither H.264 (packetization-mode 1) nor Opus",
            Role::Play => "the offer accepts neither H.264 (packetization-mode 1) nor Opus",
        };
        return Err(Error::NoCommonCodec(what.into()));
    }
    Ok(Negotiated { rtc, answer })
}
