//! AMF0 command and data bodies, as every RTMP message (server sessions and
//! the push client alike) is decoded: never panics, nesting is bounded, and
//! what decodes, encoded again, decodes the same. Its stable twin is
//! `crates/ingest-rtmp/tests/input_props.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tidewater_ingest_rtmp::fuzzing::amf0(data);
});
