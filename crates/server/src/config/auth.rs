//! `[auth]`: who may publish, read, use the API and read the metrics.
//!
//! The section is [`tidewater_auth::AuthConfig`] as is (its serde types,
//! with unknown keys refused), so the keys and their rules are the auth
//! crate's: `[[auth.users]]` (`user`, `password` or `password_hash`, `ips`,
//! `permissions`), `[auth.jwt]`, `[auth.http]`, `[auth.rate_limit]`,
//! `token_secret` and `realm`. [`Authorization::new`] compiles it; its
//! refusal names the key (`auth.users[1].password_hash`), which the server
//! reports with where the value came from, like every other key.
//!
//! An absent section is [`AuthConfig::default()`]: the secure defaults
//! (anonymous publish, API and metrics from loopback only; read and
//! playback from anywhere).
//!
//! Every key can be set from the environment too, lists and tables as TOML
//! values: `TIDEWATER_AUTH__TOKEN_SECRET=…`, `TIDEWATER_AUTH__JWT__SECRET=…`,
//! `TIDEWATER_AUTH__USERS='[{ user = "obs", password_hash = "…",
//! permissions = [{ action = "publish" }] }]'`.
//!
//! The section is the one a reload applies at once
//! ([`Authorization::reload`]): new requests are decided by the new rules,
//! sessions already running are not dropped.

use serde::Deserialize;
use tidewater_auth::{AuthConfig, Authorization};

use super::setting_error;
use crate::error::{Error, Result};

/// `[auth]`: [`AuthConfig`], whose serde types it reuses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct AuthSection(pub AuthConfig);

impl AuthSection {
    /// The auth crate's configuration.
    pub fn config(&self) -> &AuthConfig {
        &self.0
    }

    /// The authorizer this section describes; an error names the key at
    /// fault.
    pub fn authorization(&self) -> Result<Authorization> {
        Authorization::new(self.0.clone()).map_err(auth_error)
    }

    /// Applies this section to a running authorizer (new requests only); on
    /// error the previous rules stay.
    pub fn apply_to(&self, auth: &Authorization) -> Result<()> {
        auth.reload(self.0.clone()).map_err(auth_error)
    }

    /// Checks the section by compiling it.
    pub(super) fn check(&self) -> Result<()> {
        self.authorization().map(drop)
    }
}

/// The auth crate's error, reported at the key it names.
fn auth_error(e: tidewater_auth::Error) -> Error {
    use tidewater_auth::Error as E;
    match e {
        E::Config { key, message } => setting_error(key, message),
        E::Io { key, path, source } => setting_error(
            key.into(),
            format!("cannot read {}: {source}", path.display()),
        ),
        E::FeatureDisabled { key, .. } => setting_error(key.into(), e.to_string()),
        other => setting_error("auth".into(), other.to_string()),
    }
}
