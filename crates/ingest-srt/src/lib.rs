//! SRT publish and read by stream id for the tidewater kernel.

#![deny(missing_docs)]
