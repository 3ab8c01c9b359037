//! The crate's one error type: what can go wrong building an
//! [`Authorization`](crate::Authorization) or hashing a password. Refusals of
//! requests are not errors: they are [`Refusal`](tidewater_core::Refusal)s.

use std::path::PathBuf;

/// Why a configuration could not be used, or a password not hashed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is invalid; `key` names it as in the config file
    /// (`auth.users[2].permissions[0].path`).
    #[error("{key}: {message}")]
    Config {
        /// The setting.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A setting needs a cargo feature this build does not have.
    #[error("{key} needs tidewater-auth's `{feature}` feature, which this build does not have")]
    FeatureDisabled {
        /// The setting.
        key: &'static str,
        /// The feature.
        feature: &'static str,
    },
    /// A file could not be read.
    #[error("{key}: reading {}: {source}", path.display())]
    Io {
        /// The setting that names the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The operating system's random source failed.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    /// A password could not be hashed.
    #[error("hashing the password: {0}")]
    Hash(String),
}

impl Error {
    pub(crate) fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
