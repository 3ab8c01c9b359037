//! HLS (MPEG-TS) and LL-HLS (fMP4 parts) packaging of tidewater live streams.

#![deny(missing_docs)]
