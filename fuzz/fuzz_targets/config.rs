//! The server's configuration loader: TOML file text, then `TIDEWATER_…`
//! variables, with every section's checks. Never panics; what loads
//! validates and errors are one line. Its stable twin is
//! `crates/server/tests/config_props.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tidewater_server::fuzzing::config(data);
});
