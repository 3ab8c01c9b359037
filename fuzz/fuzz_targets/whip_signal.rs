//! What a WHIP/WHEP client's request bodies reach: the SDP offer of a
//! `POST` (answered as a publish or a play) and the trickle ICE fragment of
//! a `PATCH`. It must never panic, and an answer must parse back as SDP.
//! Its stable twin is `crates/ingest-whip/tests/signal_props.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tidewater_whip::fuzzing::signalling(data);
});
