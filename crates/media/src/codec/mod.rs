//! Codec parameter parsing: H.264/H.265 parameter sets, decoder configuration
//! records (`avcC`, `hvcC`, `vpcC` from VP8/VP9 keyframes, `av1C` from AV1
//! sequence headers), AAC AudioSpecificConfig and ADTS, Annex-B and
//! length-prefixed NAL units.
//!
//! Everything here reads network input: every function returns `None` on
//! malformed data and never panics.

mod aac;
pub mod av1;
mod bits;
mod carriage;
mod h264;
mod h265;
mod nal;
pub mod vpx;

pub use aac::{AdtsHeader, AudioSpecificConfig, aac_rate_index, make_asc, parse_asc, write_adts};
pub use carriage::ts_uncarried_video;
pub use h264::{AvcConfig, build_avcc, h264_nal_type, h264_sps_size, parse_avcc};
pub use h265::{
    HVCC_LENGTH_SIZE_INDEX, HevcConfig, HevcSps, build_hvcc, h265_nal_type, h265_sps_size,
    hvcc_length_size, parse_h265_sps, parse_hvcc,
};
pub use nal::{
    annexb_nals, length_prefixed_nals, to_four_byte_lengths, to_length_prefixed,
    with_four_byte_lengths, write_annexb,
};

/// H.264 NAL unit types.
pub mod h264_nal {
    pub use super::h264::nal_type::*;
}

/// H.265 NAL unit types.
pub mod h265_nal {
    pub use super::h265::nal_type::*;
}
