//! Reloading the configuration while the server runs: `SIGHUP`, or
//! `POST /api/v1/config/reload`.
//!
//! A reload reads the configuration again from the sources the server
//! started with ([`ConfigSource`]: the same file, the same `TIDEWATER_…`
//! variables) and checks all of it, exactly as at start. Then:
//!
//! - `[auth]` is applied at once ([`Authorization::reload`]): requests from
//!   then on (publishes, reads, API calls, playlist requests) are decided by
//!   the new rules; sessions already running are not dropped;
//! - every other section that differs from what is running (listeners,
//!   protocols, policies, logging) is reported as needing a restart and
//!   stays as it is: the answer lists it under `restart_required`, and so
//!   does a `warn` log line, until the server is restarted.
//!
//! A configuration that does not load or check changes nothing: the error
//! (naming the key and where its value came from, as at start) is logged
//! and, over the API, answered with `400`.
//!
//! ```json
//! {"applied": ["auth"], "restart_required": ["http", "rtmp"]}
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tidewater_auth::Authorization;

use crate::config::{Config, ENV_PREFIX};
use crate::error::{Error, Result};

/// Where the configuration is read from: the file (if any) and the
/// `TIDEWATER_…` environment variables, kept so that a reload reads the
/// same sources.
#[derive(Clone)]
pub struct ConfigSource {
    file: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
}

impl std::fmt::Debug for ConfigSource {
    // Variables may hold secrets (`TIDEWATER_AUTH__JWT__SECRET`): names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigSource")
            .field("file", &self.file)
            .field(
                "env",
                &self.env.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ConfigSource {
    /// `file` and the `TIDEWATER_…` variables of `env` (other variables are
    /// not kept).
    pub fn new(file: Option<PathBuf>, env: impl IntoIterator<Item = (OsString, OsString)>) -> Self {
        let env = env
            .into_iter()
            .filter(|(name, _)| name.as_encoded_bytes().starts_with(ENV_PREFIX.as_bytes()))
            .collect();
        ConfigSource { file, env }
    }

    /// The file, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Reads and checks the configuration ([`Config::load`]).
    pub fn load(&self) -> Result<Config> {
        Config::load(self.file.as_deref(), self.env.iter().cloned())
    }
}

/// What a reload did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    /// Sections applied at once because they changed (`auth`).
    pub applied: Vec<&'static str>,
    /// Sections that differ from what runs and take effect at the next
    /// restart (`http`, `rtmp`, …), in the order of [`Config`]'s fields.
    pub restart_required: Vec<&'static str>,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The server was started from a [`Config`] alone, with no
    /// [`ConfigSource`] to read again.
    #[error(
        "this server was started without a configuration source to read again \
         (Server::reloads_from was not called)"
    )]
    NoSource,
    /// The configuration does not load or check.
    #[error(transparent)]
    Config(#[from] Error),
}

/// Reloads a running server's configuration; clones share the server.
#[derive(Clone, Debug)]
pub struct Reloader {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    source: Option<ConfigSource>,
    auth: Authorization,
    /// What runs: the configuration the server started with, with each
    /// section applied since.
    running: Mutex<Config>,
    /// One reload at a time.
    busy: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub(crate) fn new(source: Option<ConfigSource>, config: Config, auth: Authorization) -> Self {
        Reloader {
            inner: Arc::new(Inner {
                source,
                auth,
                running: Mutex::new(config),
                busy: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The same server and configuration, read again from `source`.
    pub(crate) fn with_source(&self, source: ConfigSource) -> Self {
        Reloader::new(Some(source), self.running(), self.inner.auth.clone())
    }

    /// The authorizer it reloads `[auth]` into (the server's, shared).
    pub fn authorization(&self) -> &Authorization {
        &self.inner.auth
    }

    /// The configuration that runs now.
    pub fn running(&self) -> Config {
        self.inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads the configuration again and applies what can be applied (see
    /// the [module docs](self)); logs the outcome either way.
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let _one_at_a_time = self.inner.busy.lock().await;
        let outcome = self.reload_now().await;
        let from = self
            .inner
            .source
            .as_ref()
            .and_then(|s| s.file())
            .map_or_else(
                || "the environment".to_string(),
                |f| format!("{} and the environment", f.display()),
            );
        match &outcome {
            Ok(report) => {
                let applied = match report.applied.is_empty() {
                    true => "no change to apply".to_string(),
                    false => format!("applied [{}]", report.applied.join("], [")),
                };
                tracing::info!("configuration reloaded from {from}: {applied}");
                if !report.restart_required.is_empty() {
                    tracing::warn!(
                        "configuration reload: restart tidewater to apply the changes to [{}]",
                        report.restart_required.join("], [")
                    );
                }
            }
            Err(e) => tracing::warn!("configuration reload failed, nothing changed: {e}"),
        }
        outcome
    }

    async fn reload_now(&self) -> Result<ReloadReport, ReloadError> {
        let source = self.inner.source.clone().ok_or(ReloadError::NoSource)?;
        // Reading files (and compiling the checks) is blocking work.
        let config = tokio::task::spawn_blocking(move || source.load())
            .await
            .map_err(|e| Error::Http(std::io::Error::other(e)))??;
        Ok(self.apply(config)?)
    }

    /// Applies `new` over what runs.
    pub(crate) fn apply(&self, new: Config) -> Result<ReloadReport> {
        let mut running = self.inner.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut applied = Vec::new();
        if new.auth != running.auth {
            new.auth.apply_to(&self.inner.auth)?;
            running.auth = new.auth.clone();
            applied.push("auth");
        }
        let restart_required = running.changed_sections(&new);
        Ok(ReloadReport {
            applied,
            restart_required,
        })
    }
}
