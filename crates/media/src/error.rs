//! The crate's one error type.

/// What went wrong while parsing or writing a container.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is not what the format requires; `what` says where.
    #[error("malformed {format}: {what}")]
    Malformed {
        /// The format being read (`mpeg-ts`, `avcC`, `ADTS`, …).
        format: &'static str,
        /// What was wrong, for the log.
        what: String,
    },
    /// A codec or feature this container path does not carry.
    #[error("unsupported in {format}: {what}")]
    Unsupported {
        /// The format being written or read.
        format: &'static str,
        /// What is not supported.
        what: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
