//! The SDP of an RTSP `ANNOUNCE`: line check, sdp-types, `rtpmap` / `fmtp`,
//! parameter sets and configurations in `fmtp`, and the ingest made from the
//! tracks. Never panics. Its stable twin is
//! `crates/ingest-rtsp/tests/sdp_props.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tidewater_rtsp::fuzzing::sdp(data);
});
