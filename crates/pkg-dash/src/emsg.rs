//! The in-band "MPD update" event (`emsg`, scheme `urn:mpeg:dash:event:2012`
//! value 1, ISO/IEC 23009-1 §5.10.4) put in front of the first
//! representation's segments.
//!
//! Why: a player that never started its own MPD reload timer still learns
//! of new segments. dash.js starts its reload timer on the video element's
//! first `play` event after it attached; a page that called `play()` before
//! (the element had no source yet) never gets one, and a SegmentTimeline
//! player that does not reload stops at the last segment it knew. The event
//! tells it to reload in the middle of every segment.

use bytes::{BufMut, Bytes, BytesMut};

/// The scheme of MPD validity events.
pub const SCHEME: &str = "urn:mpeg:dash:event:2012";
/// Its value for "the MPD changes: reload it".
pub const VALUE: &str = "1";

/// A version-0 `emsg`: the MPD expires `delta` ticks of `timescale` into
/// the segment, reload it. Its `event_duration`, for this scheme the
/// presentation's remaining duration, is unknown (all ones): a finite value
/// would tell a player the stream ends there.
///
/// Mid-segment rather than at its start: a player 2 segments behind live
/// (the suggested delay) reaching segment *k* is when segment *k+1* is
/// completed, so a reload right then races the cut; half a segment later
/// *k+1* is listed with half a segment to spare.
pub fn mpd_update(timescale: u32, delta: u32, id: u32) -> Bytes {
    let body_len = 4 + SCHEME.len() + 1 + VALUE.len() + 1 + 16;
    let mut b = BytesMut::with_capacity(8 + body_len);
    b.put_u32((8 + body_len) as u32);
    b.put_slice(b"emsg");
    b.put_u32(0); // version 0, flags 0
    b.put_slice(SCHEME.as_bytes());
    b.put_u8(0);
    b.put_slice(VALUE.as_bytes());
    b.put_u8(0);
    b.put_u32(timescale);
    b.put_u32(delta);
    b.put_u32(u32::MAX);
    b.put_u32(id);
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let e = mpd_update(90_000, 90_000, 7);
        assert_eq!(e.len(), 8 + 4 + 25 + 2 + 16);
        assert_eq!(&e[4..8], b"emsg");
        assert_eq!(
            u32::from_be_bytes([e[0], e[1], e[2], e[3]]) as usize,
            e.len()
        );
        assert_eq!(&e[12..36], SCHEME.as_bytes());
        assert_eq!(&e[e.len() - 4..], &7u32.to_be_bytes());
    }
}
