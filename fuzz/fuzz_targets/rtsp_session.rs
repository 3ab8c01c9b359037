//! The RTSP input path: request parsing (rtsp-types), `$`-interleaved
//! frames, the session's method and transport handling, SDP of an
//! `ANNOUNCE` (sdp-types behind a line check), RTCP sender reports and the
//! H.264/AAC depacketizers behind a `RECORD`, all fed through the sans-IO
//! session at every read size. It must never panic and must keep what it
//! buffers bounded. Its stable twin is
//! `crates/ingest-rtsp/tests/session_props.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tidewater_rtsp::fuzzing::session(data);
});
