//! What a DASH client controls: the `Host` header and the request path (app,
//! stream, and init or segment names with their period, representation and
//! `$Number$` / `$Time$`), parsed and looked up in a live packager. It must
//! never panic. Its stable twin is `crates/pkg-dash/tests/request_props.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tidewater_pkg_dash::fuzzing::request(data);
});
