//! Codec parameters and containers shared by the tidewater protocol crates:
//! MPEG-TS mux and demux, fMP4/CMAF segments, RFC 6381 codec strings, and an
//! audio timeline rebuilt from sample counts.

#![deny(missing_docs)]
// Modules here read network or file input: no indexing, unwrap, expect or
// panic outside tests (RELIABILITY.md, "Lints"); the parsers' modules also
// say so themselves.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::expect_used,
        clippy::unwrap_used,
        clippy::panic
    )
)]

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
