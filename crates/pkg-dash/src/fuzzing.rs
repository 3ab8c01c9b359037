//! Entry points shared by the fuzz target (`fuzz/fuzz_targets/dash_request.rs`)
//! and its stable property-test twin (`tests/request_props.rs`). Not a
//! stable API.

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use tidewater_core::{Codec, Frame, StreamKey, TrackId, TrackInfo};

use crate::http::time_url_for;
use crate::names::{FileName, find, parse_file};
use crate::packager::{Packager, PackagerConfig};

/// Treats `data` as what a client controls in a request: the first byte
/// splits the rest into a `Host` header and a path, whose last three
/// segments are the app, stream and file names. Each is parsed as the
/// routes parse it and what a file name names is looked up in a small live
/// packager (as a request would, without waiting). Never panics.
pub fn request(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let at = usize::from(first).min(rest.len());
    let (host, path) = rest.split_at(at);
    let host = String::from_utf8_lossy(host);
    let path = String::from_utf8_lossy(path);
    let mut parts = path.rsplitn(3, '/');
    let file = parts.next().unwrap_or("");
    let stream = parts.next().unwrap_or("");
    let app = parts.next().unwrap_or("").rsplit('/').next().unwrap_or("");
    let _ = StreamKey::new(app, stream);
    let url = time_url_for(Some(&host), Some(&host), &path, app, stream);
    assert!(url.ends_with("/time"));
    let p = packager();
    match parse_file(file) {
        Some(FileName::Init { period, rep }) => {
            let _ = p.period(period).and_then(|x| x.track(rep));
        }
        Some(FileName::Media { period, rep, at }) => {
            if let Some(seg) = p
                .period(period)
                .and_then(|x| x.track(rep))
                .and_then(|t| find(t, at))
            {
                assert!(!seg.chunks.is_empty());
            }
        }
        None => {}
    }
}

/// Six seconds of a small H.264 + AAC stream, packaged once.
fn packager() -> &'static Packager {
    static P: OnceLock<Packager> = OnceLock::new();
    P.get_or_init(|| {
        let avcc = Bytes::from_static(&[
            0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x1f, 0x01, 0x00,
            0x02, 0x68, 0xee,
        ]);
        let tracks = [
            TrackInfo::video(TrackId(1), Codec::H264, 320, 240)
                .with_timescale(1_000)
                .with_config(avcc),
            TrackInfo::audio(TrackId(2), Codec::Aac, 48_000, 2)
                .with_timescale(1_000)
                .with_config(Bytes::from_static(&[0x11, 0x90])),
        ];
        let mut p = Packager::new(PackagerConfig::default());
        p.on_tracks(&tracks);
        let base = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for i in 0..150i64 {
            let t = i * 40;
            let v = Frame::video(
                TrackId(1),
                Codec::H264,
                t,
                t,
                i % 50 == 0,
                Bytes::from_static(&[0, 0, 0, 1, 0x65]),
            );
            let a = Frame::audio(TrackId(2), Codec::Aac, t, Bytes::from_static(&[0x21, 0x10]));
            for f in [v, a] {
                let _ = p.on_frame(&f, base + Duration::from_millis(t as u64));
            }
        }
        p
    })
}
