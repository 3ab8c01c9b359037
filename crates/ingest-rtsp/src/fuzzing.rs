//! Entry points shared by the fuzz targets (`fuzz/`) and their stable
//! property-test twins. Not a stable API.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::ingest::Ingest;
use crate::session::{Session, SessionConfig, SessionEvent};

/// A publish up to `RECORD` (H.264 with parameter sets and AAC on
/// interleaved channels 0 and 2), so that the rest of a fuzz input is
/// media straight away.
pub fn publish_prefix() -> Vec<u8> {
    let sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
a=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z0LADdoFB+wEQAAAAwBAAAAMg8UKqA==,aM4PyA==\r\na=control:streamid=0\r\n\
m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/1\r\n\
a=fmtp:97 mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1188\r\na=control:streamid=1\r\n";
    let base = "rtsp://h/live/fuzz";
    let mut v = format!(
        "ANNOUNCE {base} RTSP/1.0\r\nCSeq: 1\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    for i in 0..2 {
        v.push_str(&format!(
            "SETUP {base}/streamid={i} RTSP/1.0\r\nCSeq: {}\r\nTransport: RTP/AVP/TCP;unicast;interleaved={}-{}\r\n\r\n",
            i + 2,
            2 * i,
            2 * i + 1
        ));
    }
    v.push_str(&format!(
        "RECORD {base} RTSP/1.0\r\nCSeq: 5\r\nSession: fuzz\r\n\r\n"
    ));
    v.into_bytes()
}

/// Feeds `data` to a fresh server session as a client would: the first byte
/// picks the read size from its low 6 bits (so every split point gets
/// exercised) and, with its high bit set, has [`publish_prefix`] sent first
/// (so that the rest reaches the depacketizers directly); the rest is the
/// byte stream. Announces are accepted when the stream name's length is
/// odd, describes when it is even (refused otherwise); RTP and RTCP of a
/// record go through the ingest (reordering, depacketizers, timeline).
///
/// Never panics; returns the number of frames the ingest made, or the
/// session's error if the input was bad. Asserts that what the session
/// buffers stays bounded and that frames follow a catalog.
pub fn session(data: &[u8]) -> crate::Result<usize> {
    let Some((&first, stream)) = data.split_first() else {
        return Ok(0);
    };
    let step = usize::from(first & 0x3f) * 13 + 1;
    let mut frames = 0;
    let mut catalog = false;
    let now = Instant::now();
    let config = SessionConfig {
        max_request_len: 4096,
        udp: first & 1 == 1,
        ..SessionConfig::default()
    };
    let mut s = Session::new(config, "fuzz".into(), now);
    let mut ingest: Option<Ingest> = None;
    let mut out = Vec::new();
    let mut input = Vec::new();
    if first & 0x80 != 0 {
        input = publish_prefix();
    }
    input.extend_from_slice(stream);
    for (i, piece) in input.chunks(step).enumerate() {
        s.handle_input(piece, now + Duration::from_millis(i as u64))?;
        while let Some(event) = s.poll_event() {
            match event {
                SessionEvent::Announce { request, tracks } => {
                    if request.target.key.as_str().len() % 2 == 1 {
                        ingest = Some(Ingest::new(&tracks));
                        s.accept_announce()?;
                    } else {
                        s.refuse(401, "fuzz", Some("n0nce"))?;
                    }
                }
                SessionEvent::Describe(request) => {
                    if request.target.key.as_str().len() % 2 == 0 {
                        s.accept_describe("v=0\r\n", 2)?;
                    } else {
                        s.refuse(404, "fuzz", None)?;
                    }
                }
                SessionEvent::Rtp { track, packet } => {
                    if let Some(ingest) = ingest.as_mut() {
                        out.clear();
                        let _ = ingest.push(track, &packet, &mut out);
                        for o in &out {
                            match o {
                                crate::ingest::IngestOutput::Catalog(_) => catalog = true,
                                crate::ingest::IngestOutput::Frame(_) => {
                                    assert!(catalog, "a frame before the catalog");
                                    frames += 1;
                                }
                            }
                        }
                    }
                }
                SessionEvent::Rtcp { track, packet } => {
                    if let Some(ingest) = ingest.as_mut() {
                        ingest.push_rtcp(track, &packet);
                    }
                }
                _ => {}
            }
        }
        let _ = s.take_output();
        assert!(s.setups().len() <= crate::session::MAX_TRACKS);
    }
    Ok(frames)
}

/// The H.264, H.265 and AAC depacketizers on a packet stream: the first
/// byte picks the codec (its low two bits: H.264, AAC, H.265), then each packet is `[u8 length][packet]`. Never
/// panics; asserts that access units stay within the limit.
pub fn depacketize(data: &[u8]) {
    use tidewater_media::rtp::aac::{AacDepacketizer, AuHeaderLayout};
    use tidewater_media::rtp::h264::H264Depacketizer;
    use tidewater_media::rtp::h265::H265Depacketizer;
    use tidewater_media::rtp::{MAX_ACCESS_UNIT, RtpPacket};

    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let mut h264 = H264Depacketizer::new();
    let mut h265 = H265Depacketizer::new();
    let mut hevc_units = Vec::new();
    let mut aac = AacDepacketizer::new(AuHeaderLayout {
        size_length: 13 + (first >> 6),
        index_length: 3,
        index_delta_length: 3,
    });
    let (mut units, mut audio) = (Vec::new(), Vec::new());
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (packet, next) = tail.split_at(len);
        rest = next;
        let Ok(packet) = RtpPacket::parse(&Bytes::copy_from_slice(packet)) else {
            continue;
        };
        match first & 3 {
            0 => drop(h264.push(&packet, &mut units)),
            1 | 3 => drop(aac.push(&packet, &mut audio)),
            _ => drop(h265.push(&packet, &mut hevc_units)),
        }
        for u in hevc_units.drain(..) {
            assert!(u.nals.iter().map(|n| n.len() + 4).sum::<usize>() <= MAX_ACCESS_UNIT);
            assert!(!u.nals.is_empty());
        }
        for u in units.drain(..) {
            assert!(u.nals.iter().map(|n| n.len() + 4).sum::<usize>() <= MAX_ACCESS_UNIT);
            assert!(!u.nals.is_empty());
        }
        for (_, au) in audio.drain(..) {
            assert!(au.len() <= MAX_ACCESS_UNIT);
        }
    }
}

/// An `ANNOUNCE` body as the publisher sends it: the line check, SDP parsing
/// (sdp-types), `a=rtpmap` / `a=fmtp` reading, the parameter sets and
/// decoder configurations carried in `fmtp`, and the ingest built from the
/// tracks. Never panics; what parses has at most 16 tracks, none with a
/// clock rate of 0.
pub fn sdp(data: &[u8]) {
    let Ok(tracks) = crate::sdp::parse(data) else {
        return;
    };
    assert!(tracks.len() <= 16, "more tracks than the limit");
    for t in &tracks {
        assert_ne!(t.clock_rate, 0);
        let _ = t.codec();
        let _ = t.sprop_parameter_sets();
        for name in ["sprop-vps", "sprop-sps", "sprop-pps"] {
            let _ = t.sprop(name);
        }
        let _ = t.config();
        let _ = t.fmtp_number("sizelength");
    }
    let ingest = Ingest::new(&tracks);
    assert_eq!(
        ingest.has_tracks(),
        ingest.ignored().count() < tracks.len(),
        "tracks ignored and kept disagree"
    );
}
