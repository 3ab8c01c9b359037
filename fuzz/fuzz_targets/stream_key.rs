//! Stream names arrive from the network (RTMP app/stream, SRT stream ids,
//! URL paths): parsing must never panic, and what it accepts must be safe.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        tidewater_core::fuzzing::stream_key(text);
    }
});
