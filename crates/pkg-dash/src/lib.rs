//! DASH and low-latency DASH packaging of tidewater live streams.

#![deny(missing_docs)]
