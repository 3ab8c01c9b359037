//! The stable twin of the `dash_request` fuzz target: request hosts, paths
//! and file names, random and near-valid, never panic the parsers and
//! lookups.

use proptest::prelude::*;
use tidewater_pkg_dash::fuzzing::request;

fn near_valid() -> impl Strategy<Value = Vec<u8>> {
    let files = prop::sample::select(vec![
        "manifest.mpd",
        "p1-v1-init.mp4",
        "p1-a2-init.mp4",
        "p1-v1-t0.m4s",
        "p1-v1-t180000.m4s",
        "p1-a2-1.m4s",
        "p1-v1-18446744073709551615.m4s",
        "p1-v1-t18446744073709551616.m4s",
        "p4294967296-v1-1.m4s",
        "p1--init.mp4",
        "p1-v1-t-1.m4s",
        "p-v1-1.m4s",
    ]);
    let hosts = prop::sample::select(vec![
        "127.0.0.1:8888",
        "",
        "[::1]:80",
        "evil\"host<>",
        "h\u{7f}",
    ]);
    (files, hosts, "[a-z./%]{0,12}", any::<u8>()).prop_map(|(f, h, app, cut)| {
        let mut v = vec![h.len() as u8];
        v.extend_from_slice(h.as_bytes());
        v.extend_from_slice(format!("/dash/{app}/s/{f}").as_bytes());
        if cut > 200 {
            v.truncate(usize::from(cut) % (v.len() + 1));
        }
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn near_valid_requests_never_panic(data in near_valid()) {
        request(&data);
    }

    #[test]
    fn random_requests_never_panic(data in prop::collection::vec(any::<u8>(), 0..96)) {
        request(&data);
    }
}
