//! `[defaults]` and `[apps.NAME]` (with `[apps.NAME.streams.STREAM]`): the
//! kernel's stream policies and application settings, and where streams
//! are pushed (`push`, `push_ca_file`).
//!
//! Policies are checked by the kernel ([`StreamPolicy::validate`]); a
//! refusal is mapped back to the key that caused it. Push URLs are parsed and
//! CA files read by `tidewater::rtmp`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tidewater::{AppSpec, DuplicatePublish, StreamKey, StreamPolicy};

use super::rtmp::tls_reason;
use super::{Config, segment, setting_error};
use crate::error::Result;

/// What a second publisher of a live stream gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Duplicate {
    /// `"reject"`: refuse the newcomer (the default).
    Reject,
    /// `"take_over"`: end the current publish and let the newcomer in.
    TakeOver,
}

impl From<Duplicate> for DuplicatePublish {
    fn from(d: Duplicate) -> Self {
        match d {
            Duplicate::Reject => DuplicatePublish::Reject,
            Duplicate::TakeOver => DuplicatePublish::TakeOver,
        }
    }
}

/// Declares a settings struct with the stream policy keys (all optional: an
/// unset key inherits) plus the given extra fields.
macro_rules! policy_settings {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            /// Most frames a stream's ring retains.
            pub ring_frames: Option<usize>,
            /// Most bytes a stream's ring retains (payloads and derived outputs).
            pub ring_bytes: Option<usize>,
            /// Longest GOP, in frames, cached for instant start.
            pub gop_frames: Option<usize>,
            /// Largest GOP, in bytes, cached for instant start.
            pub gop_bytes: Option<usize>,
            /// How far behind live (milliseconds) a viewer may fall before it skips to a keyframe.
            pub max_lag_ms: Option<u64>,
            /// Skips tolerated within `skip_window_ms` before a viewer is evicted.
            pub max_skips: Option<u32>,
            /// The window `max_skips` is counted over (milliseconds).
            pub skip_window_ms: Option<u64>,
            /// A publish with no frame for this long (milliseconds) is ended.
            pub idle_timeout_ms: Option<u64>,
            /// How long packagers, recorders and relays wait for a republish (milliseconds).
            pub follow_grace_ms: Option<u64>,
            /// Push destinations (`rtmp://` / `rtmps://` URLs). The most
            /// specific list set wins: stream, then application, then `[defaults]`.
            pub push: Option<Vec<String>>,
            /// A PEM file of the CA certificates `rtmps://` pushes trust,
            /// instead of the platform's roots; inherited like `push`.
            pub push_ca_file: Option<PathBuf>,
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $name {
            /// The stream policy keys of this section.
            pub fn policy(&self) -> PolicySettings {
                PolicySettings {
                    ring_frames: self.ring_frames,
                    ring_bytes: self.ring_bytes,
                    gop_frames: self.gop_frames,
                    gop_bytes: self.gop_bytes,
                    max_lag_ms: self.max_lag_ms,
                    max_skips: self.max_skips,
                    skip_window_ms: self.skip_window_ms,
                    idle_timeout_ms: self.idle_timeout_ms,
                    follow_grace_ms: self.follow_grace_ms,
                    push: None,
                    push_ca_file: None,
                }
            }
        }
    };
}

policy_settings! {
    /// The stream policy keys, as `[apps.NAME.streams.STREAM]` sets them.
    pub struct PolicySettings {}
}

policy_settings! {
    /// `[defaults]`: the policy and application settings of every application
    /// not named under `[apps]`, and the base the named ones inherit from.
    /// Unset keys take the kernel's defaults.
    pub struct Defaults {
        /// Most simultaneous publishers per application (0 = unlimited):
        /// the most live streams of each application.
        pub max_publishers: Option<usize>,
        /// Most simultaneous readers of one stream (0 = unlimited, the default).
        pub max_readers: Option<usize>,
        /// What a second publisher of a live stream gets.
        pub duplicate: Option<Duplicate>,
        /// Whether applications not named under `[apps]` accept streams
        /// (default true). With false, only named applications exist.
        pub allow_unknown_apps: Option<bool>,
    }
}

policy_settings! {
    /// `[apps.NAME]`: one application. Unset keys inherit `[defaults]`.
    pub struct AppConfig {
        /// Most simultaneous publishers (0 = unlimited).
        pub max_publishers: Option<usize>,
        /// Most simultaneous readers of one stream (0 = unlimited).
        pub max_readers: Option<usize>,
        /// What a second publisher of a live stream gets.
        pub duplicate: Option<Duplicate>,
        /// `[apps.NAME.streams.STREAM]`: per-stream policy overrides; unset
        /// keys inherit this application's policy.
        pub streams: BTreeMap<String, PolicySettings>,
    }
}

impl PolicySettings {
    /// The keys set here, with their values as text, in declaration order.
    pub fn set_keys(&self) -> Vec<(&'static str, String)> {
        fn entry<T: ToString>(key: &'static str, v: Option<T>) -> Option<(&'static str, String)> {
            v.map(|v| (key, v.to_string()))
        }
        [
            entry("ring_frames", self.ring_frames),
            entry("ring_bytes", self.ring_bytes),
            entry("gop_frames", self.gop_frames),
            entry("gop_bytes", self.gop_bytes),
            entry("max_lag_ms", self.max_lag_ms),
            entry("max_skips", self.max_skips),
            entry("skip_window_ms", self.skip_window_ms),
            entry("idle_timeout_ms", self.idle_timeout_ms),
            entry("follow_grace_ms", self.follow_grace_ms),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Unsets one key (by its name).
    fn unset(&mut self, key: &str) {
        match key {
            "ring_frames" => self.ring_frames = None,
            "ring_bytes" => self.ring_bytes = None,
            "gop_frames" => self.gop_frames = None,
            "gop_bytes" => self.gop_bytes = None,
            "max_lag_ms" => self.max_lag_ms = None,
            "max_skips" => self.max_skips = None,
            "skip_window_ms" => self.skip_window_ms = None,
            "idle_timeout_ms" => self.idle_timeout_ms = None,
            "follow_grace_ms" => self.follow_grace_ms = None,
            _ => {}
        }
    }

    /// `base` with the keys set here replaced.
    pub fn apply(&self, base: &StreamPolicy) -> StreamPolicy {
        let ms = Duration::from_millis;
        StreamPolicy {
            ring_frames: self.ring_frames.unwrap_or(base.ring_frames),
            ring_bytes: self.ring_bytes.unwrap_or(base.ring_bytes),
            gop_frames: self.gop_frames.unwrap_or(base.gop_frames),
            gop_bytes: self.gop_bytes.unwrap_or(base.gop_bytes),
            max_lag: self.max_lag_ms.map_or(base.max_lag, ms),
            max_skips: self.max_skips.unwrap_or(base.max_skips),
            skip_window: self.skip_window_ms.map_or(base.skip_window, ms),
            idle_timeout: self.idle_timeout_ms.map_or(base.idle_timeout, ms),
            follow_grace: self.follow_grace_ms.map_or(base.follow_grace, ms),
        }
    }

    /// [`apply`](Self::apply), then the kernel's validation; a refusal names
    /// the key of this section (`section.key`) that caused it.
    fn apply_checked(&self, base: &StreamPolicy, section: &str) -> Result<StreamPolicy> {
        let policy = self.apply(base);
        let Err(err) = policy.validate() else {
            return Ok(policy);
        };
        let reason = kernel_reason(&err);
        // The base is valid (it was checked first), so some key set here is
        // to blame: the first one whose removal makes the policy valid.
        let culprit = self.set_keys().into_iter().find(|(key, _)| {
            let mut without = self.clone();
            without.unset(key);
            without.apply(base).validate().is_ok()
        });
        Err(match culprit {
            Some((key, value)) => setting_error(
                format!("{section}.{key}"),
                format!("invalid value {value}: {reason}"),
            ),
            None => setting_error(section.to_string(), reason),
        })
    }
}

impl Defaults {
    /// Whether applications not named under `[apps]` accept streams.
    pub fn allows_unknown_apps(&self) -> bool {
        self.allow_unknown_apps.unwrap_or(true)
    }
}

/// The kernel's reason, without its "invalid configuration" prefix.
fn kernel_reason(err: &tidewater::Error) -> String {
    match err {
        tidewater::Error::Config(reason) => reason.clone(),
        other => other.to_string(),
    }
}

impl Config {
    /// Checks `[defaults]` and `[apps]`: push destinations, policies and
    /// names, and that some application can be published to.
    pub(super) fn check_policy(&self) -> Result<()> {
        self.push_routes()?;
        self.app_specs()?;
        if self.apps.is_empty() && !self.defaults.allows_unknown_apps() {
            return Err(setting_error(
                "defaults.allow_unknown_apps".into(),
                "is false and no [apps.NAME] section is configured: no stream could be published"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The spec of applications not named under `[apps]`.
    pub fn default_spec(&self) -> Result<AppSpec> {
        let d = &self.defaults;
        Ok(AppSpec {
            policy: d
                .policy()
                .apply_checked(&StreamPolicy::default(), "defaults")?,
            streams: HashMap::new(),
            max_publishers: d.max_publishers.unwrap_or(0),
            max_readers: d.max_readers.unwrap_or(0),
            duplicate: d
                .duplicate
                .map_or_else(DuplicatePublish::default, Into::into),
        })
    }

    /// The spec of every named application, with `[defaults]` and the
    /// per-stream overrides applied and validated.
    pub fn app_specs(&self) -> Result<BTreeMap<String, AppSpec>> {
        let base = self.default_spec()?;
        let mut specs = BTreeMap::new();
        for (name, app) in &self.apps {
            let section = format!("apps.{}", segment(name));
            StreamKey::new(name, "x").map_err(|e| {
                setting_error(section.clone(), format!("invalid application name: {e}"))
            })?;
            let policy = app.policy().apply_checked(&base.policy, &section)?;
            let mut streams = HashMap::new();
            for (stream, overrides) in &app.streams {
                let stream_section = format!("{section}.streams.{}", segment(stream));
                StreamKey::new(name, stream).map_err(|e| {
                    setting_error(stream_section.clone(), format!("invalid stream name: {e}"))
                })?;
                streams.insert(
                    stream.clone(),
                    overrides.apply_checked(&policy, &stream_section)?,
                );
            }
            let spec = AppSpec {
                policy,
                streams,
                max_publishers: app.max_publishers.unwrap_or(base.max_publishers),
                max_readers: app.max_readers.unwrap_or(base.max_readers),
                duplicate: app.duplicate.map_or(base.duplicate, Into::into),
            };
            specs.insert(name.clone(), spec);
        }
        Ok(specs)
    }

    /// Where streams are pushed: `push` and `push_ca_file` of `[defaults]`,
    /// `[apps.NAME]` and `[apps.NAME.streams.STREAM]`, each level inheriting
    /// what it does not set. Every URL is checked and every CA file read.
    pub fn push_routes(&self) -> Result<tidewater::rtmp::PushRoutes> {
        let mut cas: HashMap<PathBuf, tidewater::rtmp::ClientTls> = HashMap::new();
        let mut targets = |urls: &[String],
                           ca: Option<(&PathBuf, String)>,
                           section: &str|
         -> Result<Vec<tidewater::rtmp::PushTarget>> {
            let tls = match ca {
                None => None,
                Some((path, ca_section)) => Some(match cas.get(path) {
                    Some(tls) => tls.clone(),
                    None => {
                        let tls = tidewater::rtmp::ClientTls::with_ca_file(path).map_err(|e| {
                            setting_error(format!("{ca_section}.push_ca_file"), tls_reason(&e))
                        })?;
                        cas.insert(path.clone(), tls.clone());
                        tls
                    }
                }),
            };
            urls.iter()
                .enumerate()
                .map(|(i, url)| {
                    tidewater::rtmp::PushTarget::parse(url, tls.clone()).map_err(|e| {
                        let reason = match e {
                            tidewater::rtmp::Error::InvalidUrl { url, reason } => {
                                format!("invalid push url {url:?}: {reason}")
                            }
                            other => other.to_string(),
                        };
                        setting_error(format!("{section}.push[{i}]"), reason)
                    })
                })
                .collect()
        };
        let mut routes = tidewater::rtmp::PushRoutes::new();
        let d = &self.defaults;
        let default_ca = d.push_ca_file.as_ref().map(|p| (p, "defaults".to_string()));
        let default_push = d.push.as_ref().map(|p| (p, "defaults".to_string()));
        if let Some((urls, section)) = &default_push {
            routes.set_default(targets(urls, default_ca.clone(), section)?);
        }
        for (name, app) in &self.apps {
            let section = format!("apps.{}", segment(name));
            let app_ca = app
                .push_ca_file
                .as_ref()
                .map(|p| (p, section.clone()))
                .or_else(|| default_ca.clone());
            let app_push = app
                .push
                .as_ref()
                .map(|p| (p, section.clone()))
                .or_else(|| default_push.clone());
            if let Some((urls, from)) = &app_push {
                routes.set_app(name.clone(), targets(urls, app_ca.clone(), from)?);
            }
            for (stream, overrides) in &app.streams {
                if overrides.push.is_none() && overrides.push_ca_file.is_none() {
                    continue;
                }
                let stream_section = format!("{section}.streams.{}", segment(stream));
                let key = StreamKey::new(name, stream).map_err(|e| {
                    setting_error(stream_section.clone(), format!("invalid stream name: {e}"))
                })?;
                let ca = overrides
                    .push_ca_file
                    .as_ref()
                    .map(|p| (p, stream_section.clone()))
                    .or_else(|| app_ca.clone());
                let push = overrides
                    .push
                    .as_ref()
                    .map(|p| (p, stream_section.clone()))
                    .or_else(|| app_push.clone());
                if let Some((urls, from)) = &push {
                    routes.set_stream(key, targets(urls, ca, from)?);
                }
            }
        }
        Ok(routes)
    }
}
