//! Codec parameters and containers shared by the tidewater protocol crates: MPEG-TS mux and demux, fMP4/CMAF
//! segments, RFC 6381 codec strings.

#![deny(missing_docs)]
