//! Entry points shared by the fuzz targets (`fuzz/`) and their stable
//! property-test twins. Not a stable API.
#![allow(
    clippy::indexing_slicing,
    clippy::expect_used,
    clippy::panic,
    reason = "the fuzz entry points' own harness: a broken property must stop the run"
)]

use crate::error::Result;
use crate::ingest::FlvIngest;
use crate::session::{Session, SessionConfig, SessionEvent};

/// The largest message the fuzzed session accepts (small, so that the
/// fuzzer reaches the limits).
pub const MAX_MESSAGE: usize = 1 << 16;

/// Feeds `data` to a fresh server session as a peer would: the first byte
/// picks the read size (its low 7 bits, so every split point gets exercised)
/// and, with its high bit set, has a plain handshake done first (so that the
/// rest reaches the chunk and AMF0 layers directly); the rest is the byte
/// stream. Publish requests are accepted, play requests accepted or refused,
/// media goes through the FLV mapping.
///
/// Never panics; returns the session's error if the input was bad. Asserts
/// that what the session holds stays bounded.
pub fn session(data: &[u8]) -> Result<()> {
    let Some((&first, stream)) = data.split_first() else {
        return Ok(());
    };
    let step = usize::from(first & 0x7f) * 13 + 1;
    let mut s = Session::new(
        SessionConfig {
            max_message_len: MAX_MESSAGE,
            ..SessionConfig::default()
        },
        std::time::Instant::now(),
    );
    if first & 0x80 != 0 {
        // C0, an all-zero C1 (no digest: the plain handshake) and a C2.
        let mut handshake = vec![3u8];
        handshake.resize(1 + 2 * 1536, 0);
        s.handle_input(&handshake)?;
        let _ = s.take_output();
    }
    let mut ingest = FlvIngest::new();
    let mut out = Vec::new();
    for piece in stream.chunks(step) {
        s.handle_input(piece)?;
        while let Some(event) = s.poll_event() {
            match event {
                SessionEvent::PublishRequested(_) => s.accept_publish()?,
                SessionEvent::PlayRequested(r) if r.stream.len() % 2 == 0 => s.accept_play()?,
                SessionEvent::PlayRequested(_) => {
                    s.reject("NetStream.Play.StreamNotFound", "not live")?
                }
                SessionEvent::Metadata(props) => ingest.push_metadata(&props, &mut out),
                SessionEvent::Video { timestamp, data } => {
                    ingest.push_video(timestamp, &data, &mut out)
                }
                SessionEvent::Audio { timestamp, data } => {
                    ingest.push_audio(timestamp, &data, &mut out)
                }
                SessionEvent::PublishFinished => ingest = FlvIngest::new(),
                _ => {}
            }
        }
        out.clear();
        let _ = s.take_output();
        // One partial chunk plus incomplete messages, never more.
        assert!(
            s.buffered() <= 3 * MAX_MESSAGE + piece.len() + 64,
            "unbounded buffering"
        );
    }
    if s.play_stream_id().is_some() {
        s.end_play(crate::egress::Ending::Shutdown)?;
    }
    Ok(())
}

/// Decodes `data` as the body of an AMF0 command or data message with the
/// bounded decoder every RTMP message goes through (server sessions and the
/// push client alike). Never panics; what it accepts, encoded again (by
/// `rml_amf0`, as replies are), decodes to the same values.
pub fn amf0(data: &[u8]) {
    let Ok(values) = crate::amf::decode_all(data) else {
        return;
    };
    // Strings over 64 KiB (long strings on the wire) have no short encoding.
    let Ok(encoded) = rml_rtmp::rml_amf0::serialize(&values) else {
        return;
    };
    let again = crate::amf::decode_all(&encoded);
    assert!(
        again.as_ref().is_ok_and(
            |a| a.len() == values.len() && a.iter().zip(&values).all(|(x, y)| same(x, y))
        ),
        "AMF0 round trip changed the values"
    );
}

/// Equality with NaN equal to itself (a NaN number is valid AMF0).
fn same(a: &rml_rtmp::rml_amf0::Amf0Value, b: &rml_rtmp::rml_amf0::Amf0Value) -> bool {
    use rml_rtmp::rml_amf0::Amf0Value as V;
    match (a, b) {
        (V::Number(x), V::Number(y)) => x == y || (x.is_nan() && y.is_nan()),
        (V::Object(x), V::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (V::StrictArray(x), V::StrictArray(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w))
        }
        _ => a == b,
    }
}

/// Feeds `data` as an FLV file's tags (an optional 13-byte `FLV` header,
/// then 11-byte tag headers, bodies and back pointers, as `ffmpeg -f flv`
/// writes them) to the FLV mapping of published media: video and audio tag
/// parsing (legacy and enhanced), the sequence headers (`avcC`, `hvcC`,
/// `AudioSpecificConfig`, `OpusHead`), NAL length rewriting and
/// `onMetaData`. Never panics; every catalog it announces is valid and every
/// frame is of an announced track and codec. (Payloads are passed on as the
/// publisher sent them: NAL lengths are the packagers' to check.)
pub fn flv_tags(data: &[u8]) {
    let mut rest = match data.strip_prefix(b"FLV") {
        Some(_) => data.get(13..).unwrap_or_default(),
        None => data,
    };
    let mut ingest = FlvIngest::new();
    let mut out = Vec::new();
    let mut tracks: Vec<tidewater_core::TrackInfo> = Vec::new();
    while rest.len() >= 11 {
        let kind = rest[0] & 0x1f;
        let len = usize::from(rest[1]) << 16 | usize::from(rest[2]) << 8 | usize::from(rest[3]);
        let ts = u32::from_be_bytes([rest[7], rest[4], rest[5], rest[6]]);
        let end = (11 + len).min(rest.len());
        let body = bytes::Bytes::copy_from_slice(&rest[11..end]);
        rest = rest.get(end + 4..).unwrap_or_default();
        match kind {
            crate::flv::TYPE_VIDEO => ingest.push_video(ts, &body, &mut out),
            crate::flv::TYPE_AUDIO => ingest.push_audio(ts, &body, &mut out),
            crate::flv::TYPE_DATA => {
                let values = crate::amf::decode_all(&body).unwrap_or_default();
                let props = values.into_iter().find_map(|v| match v {
                    rml_rtmp::rml_amf0::Amf0Value::Object(p) => Some(p),
                    _ => None,
                });
                if let Some(props) = props {
                    ingest.push_metadata(&props, &mut out);
                }
            }
            _ => {}
        }
        check_ingest_events(&mut out, &mut tracks);
    }
}

fn check_ingest_events(
    out: &mut Vec<crate::ingest::IngestEvent>,
    tracks: &mut Vec<tidewater_core::TrackInfo>,
) {
    use crate::ingest::IngestEvent;
    for event in out.drain(..) {
        match event {
            IngestEvent::Catalog(t) => {
                assert!(
                    tidewater_core::Catalog::validate(&t).is_ok(),
                    "invalid track set"
                );
                *tracks = t;
            }
            IngestEvent::Frame(f) => {
                assert!(
                    tracks.iter().any(|t| t.id == f.track && t.codec == f.codec),
                    "frame of a track not announced"
                );
            }
            IngestEvent::Metadata(_) | IngestEvent::Dropped(_) => {}
        }
    }
}

/// Feeds `data` to the push client as a destination server's replies would
/// arrive: the first byte picks the read size (its low 7 bits) and, with its
/// high bit set, has a plain S0/S1/S2 handshake answered first (so that the
/// rest reaches the chunk and AMF0 layers directly); the rest is the byte
/// stream. Never panics; returns the client's error for bad input, or
/// whether the destination accepted the publish.
pub fn push_client(data: &[u8]) -> Result<bool> {
    let Some((&first, stream)) = data.split_first() else {
        return Ok(false);
    };
    let step = usize::from(first & 0x7f) * 13 + 1;
    let now = std::time::Instant::now();
    let mut c = crate::client::PublishClient::new(
        crate::client::ClientConfig {
            app: "live".into(),
            tc_url: "rtmp://127.0.0.1/live".into(),
            stream: "cam".into(),
            chunk_size: 4096,
            max_message_len: MAX_MESSAGE,
            connect_timeout: std::time::Duration::from_secs(10),
            write_timeout: std::time::Duration::from_secs(10),
        },
        now,
    )?;
    if first & 0x80 != 0 {
        // S0, an all-zero S1 (no digest) and an S2.
        let mut handshake = vec![3u8];
        handshake.resize(1 + 2 * 1536, 0);
        c.handle_input(&handshake)?;
    }
    for piece in stream.chunks(step) {
        c.handle_input(piece)?;
        while c.poll_event().is_some() {}
        // What it answers is dropped, as a socket that never blocks would take it.
        let _ = c.take_output();
    }
    Ok(c.is_publishing())
}
