//! What a push destination answers the RTMP push client: handshake, chunks,
//! control messages and the `connect` / `createStream` / `publish` replies.
//! Never panics. Its stable twin is `crates/ingest-rtmp/tests/input_props.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tidewater_ingest_rtmp::fuzzing::push_client(data);
});
