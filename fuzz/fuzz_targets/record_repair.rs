//! The recordings' start-up repair: an index file and a segment file left
//! by a crash, rebuilt and cut back to the last complete fragment. Never
//! panics; a repaired file scans clean, a second rebuild changes nothing.
//! Its stable twin is `crates/record/tests/repair_props.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tidewater_record::fuzzing::repair(data);
});
