//! The server's configuration: an embedded default, a TOML file on top of it,
//! and `TIDEWATER_…` environment variables on top of both.
//!
//! # Layers
//!
//! 1. **Defaults**, built in: every key has one (the stream policy defaults
//!    are the kernel's, [`StreamPolicy::default`](tidewater::StreamPolicy::default)), so the server runs with no
//!    file at all.
//! 2. **The file** given with `--config FILE` (or `TIDEWATER_CONFIG=FILE`).
//!    Keys it leaves out keep their defaults.
//! 3. **Environment variables** named `TIDEWATER_` + the key's path in upper
//!    case, path segments separated by a **double** underscore:
//!
//!    | variable | sets |
//!    |---|---|
//!    | `TIDEWATER_HTTP__LISTEN=127.0.0.1:9000` | `[http] listen = "127.0.0.1:9000"` |
//!    | `TIDEWATER_LOG__LEVEL=debug` | `[log] level = "debug"` |
//!    | `TIDEWATER_DEFAULTS__DUPLICATE=take_over` | `[defaults] duplicate = "take_over"` |
//!    | `TIDEWATER_APPS__LIVE__MAX_PUBLISHERS=3` | `[apps.live] max_publishers = 3` |
//!    | `TIDEWATER_APPS__LIVE__STREAMS__CAM1__GOP_FRAMES=512` | `[apps.live.streams.cam1] gop_frames = 512` |
//!    | `TIDEWATER_APPS__LIVE__PUSH='["rtmp://backup/live"]'` | `[apps.live] push = ["rtmp://backup/live"]` |
//!    | `TIDEWATER_RTMPS__CERT=/etc/tls/cert.pem` | `[rtmps] cert = "/etc/tls/cert.pem"` |
//!    | `TIDEWATER_AUTH__JWT__SECRET=…` | `[auth.jwt] secret = "…"` |
//!    | `TIDEWATER_AUTH__USERS='[{ user = "obs", password_hash = "…", permissions = [{ action = "publish" }] }]'` | `[[auth.users]]` (the whole list) |
//!
//!    Path segments are lowercased, so application and stream names that have
//!    upper-case letters, dots or dashes can only be configured in the file.
//!    A value is read as a TOML value when it is one (`3`, `true`, `"text"`,
//!    `1.5`) and as a plain string otherwise (`127.0.0.1:9000`, `take_over`);
//!    quote it to force a string (`'"123"'`).
//!    Every other `TIDEWATER_` variable is an error (a single underscore where
//!    a double one was meant must not be silently ignored), except
//!    `TIDEWATER_CONFIG`, which names the file.
//!
//! `RUST_LOG`, when set, replaces `log.level` (it is the usual knob for a
//! one-off debugging run).
//!
//! # Errors
//!
//! An unknown key, a value of the wrong type or an invalid value stops the
//! server before it opens any port, with one line naming the key and where
//! its value came from:
//!
//! ```text
//! tidewater: invalid configuration: apps.live.max_publishers: invalid type: string "lots", expected usize (set by TIDEWATER_APPS__LIVE__MAX_PUBLISHERS)
//! tidewater: invalid configuration: http.listne: unknown key, expected `listen` (in /etc/tidewater.toml)
//! tidewater: invalid configuration: defaults.ring_frames: invalid value 10: ring_frames must be at least 64 (in /etc/tidewater.toml)
//! ```
//!
//! Policies are checked by the kernel ([`StreamPolicy::validate`](tidewater::StreamPolicy::validate),
//! [`EngineBuilder::build`]); the server maps each refusal back to the key
//! that caused it. Push URLs are parsed (`apps.live.push[1]: invalid push
//! url …`, never showing the URL's query), CA files and the RTMPS
//! certificate and key are read, all before any port is opened.
//!
//! A protocol section's values are checked by the protocol's crate, one
//! rule per setting in one place: `[rtmp]` by
//! [`RtmpConfig::validate`](tidewater::rtmp::RtmpConfig::validate) and
//! [`PushConfig::validate`](tidewater::rtmp::PushConfig::validate), `[srt]`
//! by [`SrtConfig::validate`](tidewater::srt::SrtConfig::validate), `[hls]`
//! by [`HlsConfig::validate`](tidewater::hls::HlsConfig::validate), `[dash]`
//! by [`DashConfig::validate`](tidewater::dash::DashConfig::validate). The
//! crate's refusal names its own field; the server reports it at the key
//! that sets the field, with the value as written (never a passphrase):
//!
//! ```text
//! tidewater: invalid configuration: rtmp.chunk_size: invalid value 100: chunk_size must be 128..=16777215 (in /etc/tidewater.toml)
//! ```
//!
//! # Push and RTMPS
//!
//! `push` (a list of `rtmp://` / `rtmps://` URLs) and `push_ca_file` can be
//! set in `[defaults]`, `[apps.NAME]` and `[apps.NAME.streams.STREAM]`; the
//! most specific level that sets a key wins, so a stream's `push = []` turns
//! its application's pushes off. An `rtmps://` push verifies the destination
//! against the platform's roots, or against only the certificates of
//! `push_ca_file` when one applies. The reconnection schedule is global, in
//! `[rtmp]` (`push_retry_initial_ms`, `push_retry_max_ms`,
//! `push_max_attempts`, `push_connect_timeout_ms`). See
//! [`tidewater::rtmp::push`] for how a push behaves.
//!
//! `[rtmps]` runs a second listener with exactly the RTMP service inside TLS
//! once both `cert` and `key` are set; its chunk size and timeouts are
//! `[rtmp]`'s.
//!
//! # Auth, HTTPS, limits and reloads
//!
//! `[auth]` is [`tidewater_auth::AuthConfig`] (see the `tidewater_auth`
//! crate for users, JWT, the HTTP hook, read tokens and the defaults that
//! apply without it); its errors name the key like every other section's
//! (`auth.users[0].password_hash: …`). `[https]` serves the HTTP routes
//! inside TLS once `cert` and `key` are set, following changes of the files
//! (see [`HttpsSection`]). `[http]` limits both listeners:
//! `header_read_timeout_ms` and `max_connections` (see [`HttpConfig`]).
//!
//! A reload (`SIGHUP`, `POST /api/v1/config/reload`) reads the same file
//! and variables again: `[auth]` applies at once, every other changed
//! section is reported as needing a restart (see [`crate::reload`]).
//!
//! # Schema
//!
//! The file below lists every key with its default (it is
//! `crates/server/tidewater.toml` in the repository, and a test checks that
//! it matches the built-in defaults):
//!
#![doc = concat!("```toml\n", include_str!("../tidewater.toml"), "```")]
//!
//! Listeners still to come get their own sections (`[rtsp]` on 8554,
//! `[webrtc]`); until they exist those sections are rejected like any unknown
//! key.
//!
//! # Modules, and adding a section
//!
//! Each section has its module: `http`, `https`, `log`, `rtmp` (`[rtmp]`
//! and `[rtmps]`), `srt`, `hls`, `dash`, `auth`, `policy` (`[defaults]` and
//! `[apps.NAME]`, with pushes); `load` layers the file and the environment
//! and tracks where each value came from. This module holds [`Config`] and
//! the glue: [`Config::check`](Config) runs every section's check, and the
//! helpers every section reports through.
//!
//! A new section `[NAME]` for a protocol crate is one new file, one field
//! and one line of glue:
//!
//! 1. In the protocol crate, `XConfig::validate(&self) -> Result<(),
//!    ConfigError>` holds the rules, the crate's `ConfigError { field, rule }`
//!    naming the field as `XConfig` names it (`encryption[0].passphrase`),
//!    and the crate's error enum gets a `Config(#[from] ConfigError)` variant.
//! 2. `config/NAME.rs`: a `NameSection` (serde `default, deny_unknown_fields`,
//!    and `Default` built from `XConfig::default()`, so the defaults are the
//!    crate's), a method that builds the `XConfig` and calls `validate`,
//!    reporting a refusal with `field_error("NAME", key, &e)` where `key` is
//!    the section's key for `e.field` (`FieldKey::shown(key, value)`, or
//!    `FieldKey::secret(key)`), and `pub(super) fn check(&self) ->
//!    Result<()>`.
//! 3. Here: `mod NAME;` with its `pub use`, the field `pub NAME: NameSection`
//!    in [`Config`], and `self.NAME.check()?;` in `Config::check`.
//!
//! Then list the keys with their defaults in `crates/server/tidewater.toml`
//! (a test checks the file against the built-in defaults), name the section
//! in [`Config::changed_sections`] (the compiler insists) so that reloads
//! report it, and start the worker in [`Server::bind`](crate::Server::bind).

mod auth;
mod cluster;
mod dash;
mod hls;
mod http;
mod https;
mod load;
mod log;
mod policy;
mod pull;
mod record;
mod rtmp;
mod rtsp;
mod server;
mod srt;
mod web;
mod webrtc;

use std::collections::BTreeMap;
use std::fmt::Display;

use serde::Deserialize;
use tidewater::{Engine, EngineBuilder};
use tidewater_auth::Authorization;

pub use auth::AuthSection;
pub use cluster::ClusterSection;
pub use dash::DashSection;
pub use hls::HlsSection;
pub use http::{DEFAULT_HTTP_PORT, HttpConfig};
pub use https::{DEFAULT_HTTPS_PORT, HttpsSection};
pub use load::{ENV_CONFIG_FILE, ENV_PREFIX, env_value};
pub use log::LogConfig;
pub use policy::{AppConfig, Defaults, Duplicate, PolicySettings};
pub use pull::{PullEntry, pull_specs};
pub use record::{RecordOverride, RecordSection};
pub use rtmp::{DEFAULT_RTMP_PORT, DEFAULT_RTMPS_PORT, RtmpSection, RtmpsSection};
pub use rtsp::{DEFAULT_RTSPS_PORT, RtspSection, RtspTransport, RtspsSection};
pub use server::{DEFAULT_DRAIN_MS, MAX_DRAIN_MS, ServerSection};
pub use srt::{SrtEncryption, SrtSection};
pub use web::WebSection;
pub use webrtc::{IceServerEntry, WebrtcSection, WebrtcTransport};

use crate::error::{Error, Result};

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[http]`: the HTTP listener (API, health, and later the HTTP outputs).
    pub http: HttpConfig,
    /// `[log]`: logging.
    pub log: LogConfig,
    /// `[server]`: the process itself (how a graceful stop drains).
    pub server: ServerSection,
    /// `[defaults]`: settings of every application not named under `[apps]`,
    /// and the base every named one inherits from.
    pub defaults: Defaults,
    /// `[apps.NAME]`: named applications.
    pub apps: BTreeMap<String, AppConfig>,
    /// `[rtmp]`: the RTMP listener (publish and play on one port), and pushes.
    pub rtmp: RtmpSection,
    /// `[rtmps]`: the RTMPS listener (RTMP inside TLS), when a certificate is configured.
    pub rtmps: RtmpsSection,
    /// `[dash]`: DASH and low-latency DASH under `/dash/` on the HTTP port.
    pub dash: DashSection,
    /// `[hls]`: HLS under `/hls/` and LL-HLS under `/llhls/` on the HTTP port.
    pub hls: HlsSection,
    /// `[srt]`: the SRT listener (publish and read by stream id), and HTTP-TS.
    pub srt: SrtSection,
    /// `[rtsp]`: the RTSP listener (publish and read, RTP over TCP or UDP).
    pub rtsp: RtspSection,
    /// `[rtsps]`: the RTSPS listener (RTSP inside TLS, RTP interleaved), when
    /// a certificate is configured.
    pub rtsps: RtspsSection,
    /// `[webrtc]`: WHIP ingest and WHEP playback, media on one UDP port.
    pub webrtc: WebrtcSection,
    /// `[auth]`: who may publish, read, use the API and read the metrics.
    pub auth: AuthSection,
    /// `[https]`: the HTTP service inside TLS, when a certificate is configured.
    pub https: HttpsSection,
    /// `[web]`: the web console and the player pages on the HTTP port.
    pub web: WebSection,
    /// `[record]`: recording to fMP4 files, played back under `/playback/`.
    pub record: RecordSection,
    /// `[[pull]]`: streams pulled from RTSP sources (cameras), see [`PullEntry`].
    pub pull: Vec<PullEntry>,
    /// `[cluster]`: this server as a node of a cluster (etcd directory,
    /// relay, edge pulls); absent, the server stands alone.
    pub cluster: Option<ClusterSection>,
}

impl Config {
    /// Checks every setting: each section's values (the log filter, the
    /// protocols' settings by their crates' rules, TLS files, push
    /// destinations), the policies and names key by key the way the kernel
    /// checks them, then the kernel itself ([`EngineBuilder::build`]). The
    /// error names the offending key.
    pub fn validate(&self) -> Result<()> {
        self.build_engine().map(drop)
    }

    /// The checks of [`validate`](Self::validate) that can name a key: one
    /// line per section.
    fn check(&self) -> Result<()> {
        self.http.check()?;
        self.https.check()?;
        self.log.check()?;
        self.server.check()?;
        self.rtmp.check()?;
        self.rtmps.check()?;
        self.check_policy()?;
        self.dash.check()?;
        self.hls.check()?;
        self.srt.check()?;
        self.rtsp.check()?;
        self.rtsps.check()?;
        self.webrtc.check()?;
        self.auth.check()?;
        self.web.check()?;
        self.record.check()?;
        pull_specs(&self.pull)?;
        if let Some(cluster) = &self.cluster {
            cluster.check()?;
        }
        Ok(())
    }

    /// The sections whose settings differ between `self` and `other`, by
    /// their names in the file, in the order of [`Config`]'s fields.
    pub fn changed_sections(&self, other: &Config) -> Vec<&'static str> {
        // Destructured, so that a new section cannot be forgotten here.
        let Config {
            http,
            log,
            server,
            defaults,
            apps,
            rtmp,
            rtmps,
            dash,
            hls,
            srt,
            rtsp,
            rtsps,
            webrtc,
            auth,
            https,
            web,
            record,
            pull,
            cluster,
        } = self;
        [
            ("http", *http != other.http),
            ("log", *log != other.log),
            ("server", *server != other.server),
            ("defaults", *defaults != other.defaults),
            ("apps", *apps != other.apps),
            ("rtmp", *rtmp != other.rtmp),
            ("rtmps", *rtmps != other.rtmps),
            ("dash", *dash != other.dash),
            ("hls", *hls != other.hls),
            ("srt", *srt != other.srt),
            ("rtsp", *rtsp != other.rtsp),
            ("rtsps", *rtsps != other.rtsps),
            ("webrtc", *webrtc != other.webrtc),
            ("auth", *auth != other.auth),
            ("https", *https != other.https),
            ("web", *web != other.web),
            ("record", *record != other.record),
            ("pull", *pull != other.pull),
            ("cluster", *cluster != other.cluster),
        ]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect()
    }

    /// An [`EngineBuilder`] with every application configured and the
    /// authorizer of `[auth]`.
    pub fn engine_builder(&self) -> Result<EngineBuilder> {
        self.check()?;
        self.engine_builder_with(
            self.auth.authorization()?,
            &crate::shutdown::PublishGate::default(),
            None,
        )
    }

    /// The cluster's authorizer in front of `auth` (`None` without
    /// `[cluster]`): the cluster's nodes present its secret, everyone else
    /// is `[auth]`'s to answer, and once the node joined, a publish another
    /// node holds under `duplicate = "reject"` is refused. The engine and
    /// the cluster must share this one chain.
    pub fn cluster_authorizer(
        &self,
        auth: &Authorization,
    ) -> Option<std::sync::Arc<tidewater::cluster::ClusterSecret>> {
        self.cluster.as_ref().map(|c| {
            std::sync::Arc::new(tidewater::cluster::ClusterSecret::new(
                c.secret.clone(),
                std::sync::Arc::new(auth.clone()),
            ))
        })
    }

    /// An [`EngineBuilder`] with every application configured and `auth` as
    /// its authorizer (a clone of it: the caller keeps one for reloads and
    /// its HTTP guard), behind `cluster` (from
    /// [`cluster_authorizer`](Self::cluster_authorizer); made here when
    /// `None` and `[cluster]` is set). The configuration must have passed
    /// [`validate`](Self::validate).
    fn engine_builder_with(
        &self,
        auth: Authorization,
        gate: &crate::shutdown::PublishGate,
        cluster: Option<std::sync::Arc<tidewater::cluster::ClusterSecret>>,
    ) -> Result<EngineBuilder> {
        let auth: std::sync::Arc<dyn tidewater::Authorizer> =
            match cluster.or_else(|| self.cluster_authorizer(&auth)) {
                Some(c) => c,
                None => std::sync::Arc::new(auth),
            };
        // In front of everything: a graceful stop refuses every publish.
        let mut builder = Engine::builder().authorizer(gate.guard(auth));
        for (name, spec) in self.app_specs()? {
            builder = builder.app(name, spec);
        }
        if self.defaults.allows_unknown_apps() {
            builder = builder.default_app(self.default_spec()?);
        }
        Ok(builder)
    }

    /// Builds the engine this configuration describes.
    pub fn build_engine(&self) -> Result<Engine> {
        Self::build(self.engine_builder()?)
    }

    /// Builds the engine this configuration describes, with `auth` (built
    /// from `[auth]`) as its authorizer: the same `auth` the server keeps.
    pub fn build_engine_with(&self, auth: &Authorization) -> Result<Engine> {
        self.build_engine_gated(auth, &crate::shutdown::PublishGate::default(), None)
    }

    /// [`build_engine_with`](Self::build_engine_with), refusing every
    /// publish once `gate` closes (a graceful stop), with `cluster` (the
    /// chain the cluster is started with) in front of `auth`.
    pub fn build_engine_gated(
        &self,
        auth: &Authorization,
        gate: &crate::shutdown::PublishGate,
        cluster: Option<std::sync::Arc<tidewater::cluster::ClusterSecret>>,
    ) -> Result<Engine> {
        self.check()?;
        Self::build(self.engine_builder_with(auth.clone(), gate, cluster)?)
    }

    fn build(builder: EngineBuilder) -> Result<Engine> {
        builder.build().map_err(|e| match &e {
            // Everything the kernel checks was checked above with the key
            // known; should it ever refuse more, name the section it names.
            tidewater::Error::Config(reason) => {
                let key = reason
                    .strip_prefix("app ")
                    .and_then(|rest| rest.split(':').next())
                    .map_or_else(
                        || "apps".to_string(),
                        |app| format!("apps.{}", segment(app.trim_matches('"'))),
                    );
                setting_error(key, reason.clone())
            }
            _ => Error::Kernel(e),
        })
    }
}

fn setting_error(key: String, message: String) -> Error {
    Error::Setting {
        key,
        message,
        origin: None,
    }
}

/// Where a section sets a field of its protocol crate's settings: the key,
/// relative to the section, and its value as written (`None` when secret).
struct FieldKey {
    key: String,
    value: Option<String>,
}

impl FieldKey {
    /// The key of a field, whose value the error shows. (An `Option`, so a
    /// section's field-to-key `match` ends in `_ => None`.)
    fn shown(key: impl Into<String>, value: impl Display) -> Option<FieldKey> {
        Some(FieldKey {
            key: key.into(),
            value: Some(value.to_string()),
        })
    }

    /// The key of a field whose value is secret (a passphrase).
    fn secret(key: impl Into<String>) -> Option<FieldKey> {
        Some(FieldKey {
            key: key.into(),
            value: None,
        })
    }
}

/// A protocol crate's refusal of one of its settings (its message names
/// the crate's field), reported at the key of `section` that sets that
/// field: `section.key: invalid value V: message`; at the section itself
/// when no key sets the field.
fn field_error(section: &str, key: Option<FieldKey>, message: impl Display) -> Error {
    match key {
        Some(FieldKey {
            key,
            value: Some(value),
        }) => setting_error(
            format!("{section}.{key}"),
            format!("invalid value {value}: {message}"),
        ),
        Some(FieldKey { key, value: None }) => {
            setting_error(format!("{section}.{key}"), message.to_string())
        }
        None => setting_error(section.to_string(), message.to_string()),
    }
}

/// A key path segment as TOML would write it: bare when it can be, quoted otherwise.
fn segment(name: &str) -> String {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        name.to_string()
    } else {
        format!(
            "\"{}\"",
            name.chars()
                .take(64)
                .flat_map(char::escape_debug)
                .collect::<String>()
        )
    }
}

#[cfg(test)]
mod tests;
