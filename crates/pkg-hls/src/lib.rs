//! HLS (MPEG-TS) and LL-HLS (fMP4 parts) packaging of tidewater live streams.

#![deny(missing_docs)]

mod config;
mod error;
mod http;
pub mod ll;
pub mod master;
pub mod normalize;
pub mod playlist;
pub mod segmenter;
mod service;
pub mod ts;
pub mod validate;

#[cfg(test)]
mod sim_tests;

pub use config::HlsConfig;
pub use error::Error;
pub use http::router;
pub use service::Hls;
