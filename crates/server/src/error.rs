//! The server library's one error type.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can stop the server from starting or running.
///
/// Every variant displays as one line that says what to fix (with the
/// underlying I/O error, if any, as its [`source`](std::error::Error::source)):
/// a configuration
/// error names the key (`apps.live.max_publishers`) and where its value came
/// from (the file or the environment variable).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file could not be read.
    #[error("cannot read config file {}", path.display())]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML.
    #[error("config file {}: {message}", path.display())]
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong and where (line and column).
        message: String,
    },
    /// An environment variable with the `TIDEWATER_` prefix is not a valid override.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable's name.
        var: String,
        /// What is wrong with it.
        message: String,
    },
    /// A setting is unknown, has the wrong type or an invalid value.
    #[error("invalid configuration: {key}: {message}{}", origin.as_ref().map(|o| format!(" ({o})")).unwrap_or_default())]
    Setting {
        /// The key, as a dotted path (`apps.live.streams.cam1.ring_frames`).
        key: String,
        /// What is wrong with it.
        message: String,
        /// Where its value came from (`in FILE`, `set by VAR`), when known.
        origin: Option<String>,
    },
    /// Logging could not be set up.
    #[error("logging: {0}")]
    Logging(String),
    /// A listener could not be bound: one line with what, where, the
    /// setting to change and the operating system's reason.
    #[error(
        "{what} cannot listen on {addr}: {os_error}; change {} or stop what uses the port",
        setting(key)
    )]
    Bind {
        /// The listener (`http`, `rtmp`, `srt`, `rtsp RTP`, …).
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The setting of the address, dotted (`http.listen`, `srt.listen`).
        key: &'static str,
        /// Why (shown in the message, not as a separate cause, so that it
        /// is printed once).
        os_error: std::io::Error,
    },
    /// The HTTP server failed while running.
    #[error("http server failed")]
    Http(#[source] std::io::Error),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers")]
    Signal(#[source] std::io::Error),
    /// The kernel refused something.
    #[error(transparent)]
    Kernel(#[from] tidewater::Error),
    /// Joining the cluster failed (etcd unreachable, the relay's port in use).
    #[error("cluster: {0}")]
    Cluster(#[source] tidewater::cluster::Error),
}

/// `rtmp.listen` as the file spells it: `[rtmp] listen`.
fn setting(key: &str) -> String {
    match key.split_once('.') {
        Some((section, name)) => format!("[{section}] {name}"),
        None => key.to_string(),
    }
}

/// The server library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
