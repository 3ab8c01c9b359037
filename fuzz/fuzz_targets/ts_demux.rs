//! The MPEG-TS input path of SRT publishing: sync, packet headers, PAT/PMT
//! sections, PES headers, continuity counters, and the H.264/H.265/AAC/Opus
//! framing, all fed through the sans-IO demuxer at every read size. It must
//! never panic, must keep what it buffers bounded, and must emit only well
//! formed frames. Its stable twin is `crates/media/tests/ts_props.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tidewater_media::fuzzing::ts_demux(data);
});
