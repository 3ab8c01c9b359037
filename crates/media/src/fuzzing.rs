//! Entry points shared by the fuzz targets (`fuzz/`) and their stable
//! property-test twins. Not a stable API.

use tidewater_core::{Codec, TrackInfo};

use crate::codec;
use crate::ts::{DemuxEvent, TsDemuxer};

/// Feeds `data` to a fresh [`TsDemuxer`] as SRT datagrams would arrive: the
/// first byte picks the read size (so every split point gets exercised), the
/// rest is the byte stream. Never panics; returns the demuxer's error for
/// bad input. Asserts what it holds stays bounded and every frame it emits
/// is well formed: of an announced track, video in 4-byte length-prefixed
/// NAL units that fill the payload exactly.
pub fn ts_demux(data: &[u8]) -> crate::Result<()> {
    let Some((&first, stream)) = data.split_first() else {
        return Ok(());
    };
    let step = usize::from(first) * 7 + 1;
    let mut d = TsDemuxer::new();
    let mut tracks: Vec<TrackInfo> = Vec::new();
    for piece in stream.chunks(step) {
        d.push(piece)?;
        drain(&mut d, &mut tracks);
        assert!(d.buffered() <= 64 << 20, "unbounded buffering");
    }
    d.flush();
    drain(&mut d, &mut tracks);
    Ok(())
}

fn drain(d: &mut TsDemuxer, tracks: &mut Vec<TrackInfo>) {
    while let Some(ev) = d.poll() {
        match ev {
            DemuxEvent::Tracks(t) => {
                assert!(
                    tidewater_core::Catalog::validate(&t).is_ok(),
                    "invalid track set"
                );
                *tracks = t;
            }
            DemuxEvent::Frame(f) => {
                assert!(
                    tracks.iter().any(|t| t.id == f.track),
                    "frame before its track"
                );
                assert!((0..1 << 33).contains(&f.pts) && (0..1 << 33).contains(&f.dts));
                if matches!(f.codec, Codec::H264 | Codec::H265) {
                    let nals = codec::length_prefixed_nals(&f.payload, 4);
                    assert!(
                        nals.is_some_and(|n| !n.is_empty()),
                        "malformed video payload"
                    );
                }
            }
        }
    }
}
