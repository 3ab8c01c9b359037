//! The SRT stream id of a caller's handshake (both the `publish:`/`read:`
//! forms and libsrt's `#!::` access-control form): never panics, and what it
//! accepts is a valid stream key. Its stable twin is
//! `crates/ingest-srt/tests/streamid_props.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(req) = tidewater_ingest_srt::streamid::parse(Some(text)) {
            assert!(tidewater_core::StreamKey::parse(&req.key.to_string()).is_ok());
        }
    }
});
