//! The RTMP input path: handshake, chunk reassembly, control messages, AMF0
//! commands and data, and the FLV tag mapping of published media, all fed
//! through the sans-IO session at every read size. It must never panic and
//! must keep what it buffers bounded. Its stable twin is
//! `crates/ingest-rtmp/tests/session_props.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tidewater_ingest_rtmp::fuzzing::session(data);
});
