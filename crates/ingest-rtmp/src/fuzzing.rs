//! Entry points shared by the fuzz targets (`fuzz/`) and their stable
//! property-test twins. Not a stable API.

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
