//! What an HLS client controls: the file name and query of a request
//! (segment, part and init names with their numbers, `_HLS_msn` /
//! `_HLS_part`), parsed and looked up in a live playlist, and the playlist
//! checker on arbitrary text. It must never panic. Its stable twin is
//! `crates/pkg-hls/tests/request_props.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tidewater_pkg_hls::fuzzing::request(data);
});
