//! Entry points shared by the fuzz target (`fuzz/fuzz_targets/hls_request.rs`)
//! and its stable property-test twin (`tests/request_props.rs`). Not a
//! stable API.

use bytes::Bytes;

use crate::http::parse_query;
use crate::playlist::{FileName, Flavour, Lookup, Part, PlaylistState};

/// Treats `data` as what a client controls in a request: the first byte
/// splits the rest into a file name and a query. Both are parsed as the
/// routes parse them, and what they name is looked up in a small live
/// playlist (as a request would, without waiting). Also runs the playlist
/// checker on the raw bytes as text. Never panics.
pub fn request(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let at = usize::from(first).min(rest.len());
    let (name, query) = rest.split_at(at);
    let name = String::from_utf8_lossy(name);
    let query = String::from_utf8_lossy(query);
    let _ = parse_query(Some(&query));
    let pl = playlist();
    for flavour in [Flavour::Ts, Flavour::Fmp4] {
        match FileName::parse(flavour, &name) {
            Some(FileName::Segment { msn, .. }) => check(pl.segment(msn)),
            Some(FileName::Part { msn, index, .. }) => check(pl.part(msn, index)),
            Some(FileName::Init { id, .. }) => {
                let _ = pl.init(id);
            }
            Some(FileName::Media | FileName::Master) | None => {}
        }
    }
    if let Ok(b) = parse_query(Some(&query))
        && let Some(msn) = b.msn
    {
        let _ = pl.satisfies(msn, b.part);
    }
    let _ = crate::validate::check(&String::from_utf8_lossy(data));
}

fn check(l: Lookup) {
    if let Lookup::Ready(b) = l {
        assert!(!b.is_empty());
    }
}

fn playlist() -> PlaylistState {
    let mut pl = PlaylistState::new(Flavour::Fmp4, 3, 0.21, "e");
    pl.set_init(Bytes::from_static(b"init"));
    for _ in 0..5 {
        pl.begin_segment();
        for _ in 0..3 {
            pl.add_part(Part {
                duration: 0.2,
                independent: false,
                data: Bytes::from_static(b"part"),
            });
        }
        pl.set_target_duration(1);
        pl.end_segment(0.6);
    }
    pl.begin_segment();
    pl
}
