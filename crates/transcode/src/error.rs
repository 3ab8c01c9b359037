//! The crate's one error type.

/// What can go wrong converting a stream's audio.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The source or target is not one this crate converts.
    #[error("cannot transcode {what}")]
    Unsupported {
        /// What was asked.
        what: String,
    },
    /// libavcodec lacks a decoder or encoder (a build without libopus, say).
    #[error("libavcodec has no {what} {name}")]
    Missing {
        /// `decoder` or `encoder`.
        what: &'static str,
        /// The codec's libavcodec name.
        name: &'static str,
    },
    /// One input packet could not be used; the stream goes on with the next.
    #[error("input packet skipped: {why}")]
    BadInput {
        /// Why.
        why: String,
    },
    /// libavcodec or libswresample failed.
    #[error("{step}: {source}")]
    Codec {
        /// What was being done.
        step: &'static str,
        /// The library's error.
        source: ffmpeg_next::Error,
    },
}
