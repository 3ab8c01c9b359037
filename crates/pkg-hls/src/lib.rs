//! HLS (MPEG-TS) and LL-HLS (fMP4 parts) packaging of tidewater live streams.

#![deny(missing_docs)]

mod config;
mod error;
pub mod ll;
pub mod normalize;
pub mod playlist;
pub mod segmenter;
pub mod validate;

#[cfg(test)]
mod sim_tests;

pub use config::HlsConfig;
pub use error::Error;
