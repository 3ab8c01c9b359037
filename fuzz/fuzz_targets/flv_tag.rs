//! FLV tags (an `ffmpeg -f flv` file's layout) through the FLV mapping of
//! published media: video and audio tags, legacy and enhanced, sequence
//! headers and `onMetaData`. Never panics; catalogs are valid and frames
//! belong to them. Its stable twin is `crates/ingest-rtmp/tests/input_props.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tidewater_ingest_rtmp::fuzzing::flv_tags(data);
});
