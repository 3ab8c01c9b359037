//! MPEG-TS: a muxer from frames and a sans-IO demuxer to frames.
