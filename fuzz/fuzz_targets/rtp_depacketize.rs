//! The RTP payload formats of published media: RTP headers (CSRCs,
//! extensions, padding), H.264 single NAL units, STAP-A and FU-A (RFC 6184)
//! and AAC AU headers and fragments (RFC 3640), on arbitrary packet
//! streams. It must never panic and must keep access units within the
//! limit. Its stable twin is `crates/ingest-rtsp/tests/depacketize_props.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tidewater_rtsp::fuzzing::depacketize(data);
});
