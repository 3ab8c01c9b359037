//! Relay messages arrive from other nodes (or anyone who reaches the relay
//! port): decoding must never panic, stay bounded, and what it accepts must
//! encode back to itself. The first byte picks how the rest is split into
//! reads.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tidewater_cluster::fuzzing::cluster_relay(data);
});
