//! Codec records a publisher controls (`avcC`, `hvcC`, AudioSpecificConfig,
//! ADTS headers, `OpusHead`, bare SPSs), parsed, rebuilt and used by the fMP4,
//! TS and codec-string consumers. Never panics; rebuilt records parse the
//! same. Its stable twin is `crates/media/tests/codec_props.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tidewater_media::fuzzing::codec_record(data);
});
