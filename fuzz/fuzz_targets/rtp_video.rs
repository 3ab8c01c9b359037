//! The VP8, VP9 and AV1 RTP payload formats (descriptors, aggregation
//! headers, fragments) on arbitrary packet streams, and the `vpcC` / `av1C`
//! records read from the keyframes they give. It must never panic and must
//! keep frames within the limit. Its stable twin is
//! `crates/media/tests/video_rtp_props.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tidewater_media::fuzzing::rtp_video_frames(data);
});
