//! Codec parameters and containers shared by the tidewater protocol crates:
//! MPEG-TS mux and demux, fMP4/CMAF segments, RFC 6381 codec strings, and an
//! audio timeline rebuilt from sample counts.

#![deny(missing_docs)]

pub mod audio_clock;
pub mod codec;
mod error;
pub mod fmp4;
#[doc(hidden)]
pub mod fuzzing;
pub mod rfc6381;
pub mod rtp;
pub mod ts;

pub use error::{Error, Result};
