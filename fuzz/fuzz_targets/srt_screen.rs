//! The screen in front of srt-protocol on the SRT listener's socket: never
//! panics, srt-protocol 0.4.4's packet parser does not panic on what it lets
//! through, and a refusal's answer parses. Its stable twin is
//! `crates/ingest-srt/tests/screen_props.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use srt_protocol::packet::Packet;
use tidewater_ingest_srt::screen::{self, Verdict};

fuzz_target!(|data: &[u8]| {
    match screen::screen(data) {
        Verdict::Pass => {
            let _ = Packet::parse(&mut &data[..], false);
            let _ = Packet::parse(&mut &data[..], true);
        }
        Verdict::Drop(_) => {}
        Verdict::Refuse(r) => {
            let answer = screen::rejection(&r.handshake, r.code, 1);
            assert!(Packet::parse(&mut &answer[..], false).is_ok());
        }
    }
});
