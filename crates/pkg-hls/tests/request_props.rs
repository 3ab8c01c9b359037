//! The stable twin of the `hls_request` fuzz target: request names and
//! queries, random and near-valid, never panic the parsers and lookups.

use proptest::prelude::*;
use tidewater_pkg_hls::fuzzing::request;

fn near_valid() -> impl Strategy<Value = Vec<u8>> {
    let names = prop::sample::select(vec![
        "index.m3u8",
        "master.m3u8",
        "seg-e-3.m4s",
        "seg-e-18446744073709551615.ts",
        "part-e-4.0.m4s",
        "part-e-4.99999999999999999999.m4s",
        "init-e-0.mp4",
        "init-e-4294967296.mp4",
        "part-e-.m4s",
        "seg--1.ts",
    ]);
    let queries = prop::sample::select(vec![
        "_HLS_msn=4&_HLS_part=1",
        "_HLS_msn=18446744073709551615&_HLS_part=18446744073709551615",
        "_HLS_part=1",
        "_HLS_msn=&_HLS_skip=YES",
        "&&=&_HLS_msn=1=2",
    ]);
    (names, queries, any::<u8>()).prop_map(|(n, q, cut)| {
        let mut v = vec![n.len() as u8];
        v.extend_from_slice(n.as_bytes());
        v.extend_from_slice(q.as_bytes());
        if cut % 3 == 0 {
            v.truncate(usize::from(cut) % v.len().max(1));
        }
        v
    })
}

proptest! {
    #[test]
    fn random_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        request(&data);
    }

    #[test]
    fn near_valid_requests(data in near_valid()) {
        request(&data);
    }
}

#[test]
fn playlists_as_input() {
    let text = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-PART-INF:PART-TARGET=x\n#EXT-X-PART:DURATION=\"\n#EXTINF:\nx\n";
    let mut data = vec![0u8];
    data.extend_from_slice(text.as_bytes());
    request(&data);
}
