//! The crate's one error type.

/// What went wrong while packaging or serving a stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The stream's tracks cannot be packaged (a codec fMP4/TS does not
    /// carry, a missing decoder configuration).
    #[error("cannot package: {0}")]
    Package(String),
    /// The settings are invalid ([`HlsConfig::validate`](crate::HlsConfig::validate)).
    #[error("invalid HLS settings: {0}")]
    Config(#[from] crate::config::ConfigError),
}
