//! Entry points shared by the fuzz targets (`fuzz/`) and their stable
//! property-test twins. Not a stable API.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::ingest::Ingest;
use crate::session::{Session, SessionConfig, SessionEvent};

/// Feeds `data` to a fresh server session as a client would: the first byte
/// picks the read size (so every split point gets exercised), the rest is
/// the byte stream. Announces and describes are accepted or refused by the
/// parity of the stream name's length; RTP of a record goes through the
/// ingest (depacketizers included).
///
/// Never panics; returns the number of frames the ingest made, or the
/// session's error if the input was bad. Asserts that what the session
/// buffers stays bounded and that frames follow a catalog.
pub fn session(data: &[u8]) -> crate::Result<usize> {
    let Some((&first, stream)) = data.split_first() else {
        return Ok(0);
    };
    let step = usize::from(first) * 7 + 1;
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
    for (i, piece) in stream.chunks(step).enumerate() {
        s.handle_input(piece, now + Duration::from_millis(i as u64))?;
        while let Some(event) = s.poll_event() {
            match event {
                SessionEvent::Announce { request, tracks } => {
                    if request.target.key.as_str().len() % 2 == 0 {
                        ingest = Some(Ingest::new(&tracks));
                        s.accept_announce()?;
                    } else {
                        s.refuse(401, "fuzz")?;
                    }
                }
                SessionEvent::Describe(request) => {
                    if request.target.key.as_str().len() % 2 == 0 {
                        s.accept_describe("v=0\r\n", 2)?;
                    } else {
                        s.refuse(404, "fuzz")?;
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
