//! The server's configuration: an embedded default, a TOML file on top of it,
//! and `TIDEWATER_…` environment variables on top of both.
//!
//! # Layers
//!
//! 1. **Defaults**, built in: every key has one (the stream policy defaults
//!    are the kernel's, [`StreamPolicy::default`]), so the server runs with no
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
//! Policies are checked by the kernel ([`StreamPolicy::validate`],
//! [`EngineBuilder::build`]); the server maps each refusal back to the key
//! that caused it. Push URLs are parsed (`apps.live.push[1]: invalid push
//! url …`, never showing the URL's query), CA files and the RTMPS
//! certificate and key are read, all before any port is opened.
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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tidewater::{AppSpec, DuplicatePublish, Engine, EngineBuilder, StreamKey, StreamPolicy};

use crate::error::{Error, Result};

/// Prefix of the environment variables that override settings.
pub const ENV_PREFIX: &str = "TIDEWATER_";
/// The environment variable that names the configuration file (like `--config`).
pub const ENV_CONFIG_FILE: &str = "TIDEWATER_CONFIG";
/// The HTTP port when none is configured.
pub const DEFAULT_HTTP_PORT: u16 = 8888;

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[http]`: the HTTP listener (API, health, and later the HTTP outputs).
    pub http: HttpConfig,
    /// `[log]`: logging.
    pub log: LogConfig,
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
}

/// `[rtmps]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtmpsSection {
    /// Address and port (default `0.0.0.0:1936`).
    pub listen: SocketAddr,
    /// The certificate chain, PEM, leaf first. Without `cert` and `key` there
    /// is no RTMPS listener.
    pub cert: Option<PathBuf>,
    /// The private key of `cert`, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
}

/// The RTMPS port when none is configured.
pub const DEFAULT_RTMPS_PORT: u16 = 1936;

impl Default for RtmpsSection {
    fn default() -> Self {
        RtmpsSection {
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_RTMPS_PORT)),
            cert: None,
            key: None,
        }
    }
}

impl RtmpsSection {
    /// The listener's certificate and key, when both are configured; an
    /// error names the key whose file is wrong.
    pub fn server_tls(&self) -> Result<Option<tidewater::rtmp::ServerTls>> {
        match (&self.cert, &self.key) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(setting_error(
                "rtmps.key".into(),
                "missing: rtmps.cert is set, the listener needs its key too".into(),
            )),
            (None, Some(_)) => Err(setting_error(
                "rtmps.cert".into(),
                "missing: rtmps.key is set, the listener needs its certificate too".into(),
            )),
            (Some(cert), Some(key)) => tidewater::rtmp::ServerTls::from_pem_files(cert, key)
                .map(Some)
                .map_err(|e| {
                    let which = if e.to_string().contains("private key") {
                        "rtmps.key"
                    } else {
                        "rtmps.cert"
                    };
                    setting_error(which.into(), tls_reason(&e))
                }),
        }
    }
}

/// The reason of a TLS setup error, without its empty context.
fn tls_reason(e: &tidewater::rtmp::Error) -> String {
    match e {
        tidewater::rtmp::Error::Tls { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// `[rtmp]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtmpSection {
    /// Whether to listen for RTMP at all (default true).
    pub enabled: bool,
    /// Address and port (default `0.0.0.0:1935`; port 0 picks a free one).
    pub listen: SocketAddr,
    /// The chunk size announced to every player (bytes, 128 to 65536; default 4096).
    pub chunk_size: u32,
    /// A viewer whose socket accepts nothing for this long is disconnected (default 5000).
    pub write_timeout_ms: u64,
    /// How long a viewer gathers messages between writes (default 100; 0 writes each at once).
    pub coalesce_ms: u64,
    /// The wait before a push's first reconnection (default 500); it doubles
    /// with each failure in a row, up to `push_retry_max_ms`.
    pub push_retry_initial_ms: u64,
    /// The longest wait between a push's reconnections (default 30000).
    pub push_retry_max_ms: u64,
    /// Failures in a row after which a push gives up until the stream is
    /// published again (default 0: never).
    pub push_max_attempts: u32,
    /// Time for a push to connect and get its publish accepted (default 10000).
    pub push_connect_timeout_ms: u64,
}

/// The RTMP port when none is configured.
pub const DEFAULT_RTMP_PORT: u16 = 1935;

impl Default for RtmpSection {
    fn default() -> Self {
        RtmpSection {
            enabled: true,
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_RTMP_PORT)),
            chunk_size: tidewater::rtmp::DEFAULT_CHUNK_SIZE,
            write_timeout_ms: tidewater::rtmp::DEFAULT_WRITE_TIMEOUT.as_millis() as u64,
            coalesce_ms: tidewater::rtmp::DEFAULT_COALESCE.as_millis() as u64,
            push_retry_initial_ms: 500,
            push_retry_max_ms: 30_000,
            push_max_attempts: 0,
            push_connect_timeout_ms: 10_000,
        }
    }
}

impl RtmpSection {
    /// The RTMP worker's configuration, or a message naming the bad key.
    pub fn worker_config(&self) -> Result<tidewater::rtmp::RtmpConfig> {
        if !(128..=65_536).contains(&self.chunk_size) {
            return Err(setting_error(
                "rtmp.chunk_size".into(),
                format!("invalid value {}: must be 128 to 65536", self.chunk_size),
            ));
        }
        if self.write_timeout_ms == 0 {
            return Err(setting_error(
                "rtmp.write_timeout_ms".into(),
                "invalid value 0: must be positive".into(),
            ));
        }
        if self.coalesce_ms > 1_000 {
            return Err(setting_error(
                "rtmp.coalesce_ms".into(),
                format!(
                    "invalid value {}: at most 1000 (it adds that much latency)",
                    self.coalesce_ms
                ),
            ));
        }
        Ok(tidewater::rtmp::RtmpConfig {
            listen: self.listen,
            chunk_size: self.chunk_size,
            write_timeout: Duration::from_millis(self.write_timeout_ms),
            coalesce: Duration::from_millis(self.coalesce_ms),
            ..tidewater::rtmp::RtmpConfig::default()
        })
    }

    /// The settings every push shares, or a message naming the bad key.
    pub fn push_config(&self) -> Result<tidewater::rtmp::PushConfig> {
        let worker = self.worker_config()?;
        for (key, value) in [
            ("push_retry_initial_ms", self.push_retry_initial_ms),
            ("push_retry_max_ms", self.push_retry_max_ms),
            ("push_connect_timeout_ms", self.push_connect_timeout_ms),
        ] {
            if value == 0 {
                return Err(setting_error(
                    format!("rtmp.{key}"),
                    "invalid value 0: must be positive".into(),
                ));
            }
        }
        if self.push_retry_max_ms < self.push_retry_initial_ms {
            return Err(setting_error(
                "rtmp.push_retry_max_ms".into(),
                format!(
                    "invalid value {}: less than push_retry_initial_ms ({})",
                    self.push_retry_max_ms, self.push_retry_initial_ms
                ),
            ));
        }
        Ok(tidewater::rtmp::PushConfig {
            chunk_size: worker.chunk_size,
            backoff: tidewater::rtmp::Backoff {
                initial: Duration::from_millis(self.push_retry_initial_ms),
                max: Duration::from_millis(self.push_retry_max_ms),
                max_attempts: self.push_max_attempts,
            },
            connect_timeout: Duration::from_millis(self.push_connect_timeout_ms),
            write_timeout: worker.write_timeout,
            ..tidewater::rtmp::PushConfig::default()
        })
    }
}

/// `[dash]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashSection {
    /// Whether to serve `/dash/` at all (default true).
    pub enabled: bool,
    /// Target segment duration (default 2000; segments start at keyframes).
    pub segment_ms: u64,
    /// Complete segments kept per track (default 6).
    pub window: usize,
    /// Low-latency mode: chunked CMAF and a latency target (default false).
    pub low_latency: bool,
    /// The latency target announced in low-latency mode (default 1500).
    pub latency_target_ms: u64,
    /// A stream's packager stops after this long without a request (default 30000).
    pub idle_timeout_ms: u64,
}

impl Default for DashSection {
    fn default() -> Self {
        let d = tidewater::dash::DashConfig::default();
        DashSection {
            enabled: true,
            segment_ms: d.segment_target.as_millis() as u64,
            window: d.window,
            low_latency: d.low_latency,
            latency_target_ms: d.latency_target.as_millis() as u64,
            idle_timeout_ms: d.idle_timeout.as_millis() as u64,
        }
    }
}

impl DashSection {
    /// The DASH routes' configuration (`None` when disabled), or a message
    /// naming the bad key.
    pub fn dash_config(&self) -> Result<Option<tidewater::dash::DashConfig>> {
        if !self.enabled {
            return Ok(None);
        }
        if !(200..=20_000).contains(&self.segment_ms) {
            return Err(setting_error(
                "dash.segment_ms".into(),
                format!("invalid value {}: must be 200 to 20000", self.segment_ms),
            ));
        }
        if !(2..=1_000).contains(&self.window) {
            return Err(setting_error(
                "dash.window".into(),
                format!("invalid value {}: must be 2 to 1000", self.window),
            ));
        }
        for (key, value) in [
            ("latency_target_ms", self.latency_target_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
        ] {
            if value == 0 {
                return Err(setting_error(
                    format!("dash.{key}"),
                    "invalid value 0: must be positive".into(),
                ));
            }
        }
        Ok(Some(tidewater::dash::DashConfig {
            segment_target: Duration::from_millis(self.segment_ms),
            window: self.window,
            low_latency: self.low_latency,
            latency_target: Duration::from_millis(self.latency_target_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            ..tidewater::dash::DashConfig::default()
        }))
    }
}

/// `[hls]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HlsSection {
    /// Whether to serve `/hls/` and `/llhls/` at all (default true).
    pub enabled: bool,
    /// Segment target (default 2000): segments end on the first keyframe after it.
    pub segment_ms: u64,
    /// Complete segments listed in a playlist (default 6).
    pub window: usize,
    /// LL-HLS part target (default 200).
    pub part_ms: u64,
    /// Longest first segment without a keyframe (default 10000).
    pub max_segment_ms: u64,
    /// A stream's packager stops after this long without a request (default 30000).
    pub idle_timeout_ms: u64,
    /// Streams (`"app/stream"`) packaged from their publish on.
    pub always_on: Vec<String>,
    /// Package every stream from its publish on (default false).
    pub always_on_all: bool,
}

impl Default for HlsSection {
    fn default() -> Self {
        let d = tidewater::hls::HlsConfig::default();
        HlsSection {
            enabled: true,
            segment_ms: d.segment_target.as_millis() as u64,
            window: d.window,
            part_ms: d.part_target.as_millis() as u64,
            max_segment_ms: d.max_segment.as_millis() as u64,
            idle_timeout_ms: d.idle_timeout.as_millis() as u64,
            always_on: Vec::new(),
            always_on_all: d.always_on_all,
        }
    }
}

impl HlsSection {
    /// The HLS routes' configuration (`None` when disabled), or a message
    /// naming the bad key.
    pub fn hls_config(&self) -> Result<Option<tidewater::hls::HlsConfig>> {
        if !self.enabled {
            return Ok(None);
        }
        let mut always_on = Vec::with_capacity(self.always_on.len());
        for (i, key) in self.always_on.iter().enumerate() {
            let key = StreamKey::parse(key).map_err(|e| {
                setting_error(
                    format!("hls.always_on[{i}]"),
                    format!("invalid stream key: {e}"),
                )
            })?;
            always_on.push(key);
        }
        let config = tidewater::hls::HlsConfig {
            segment_target: Duration::from_millis(self.segment_ms),
            window: self.window,
            part_target: Duration::from_millis(self.part_ms),
            max_segment: Duration::from_millis(self.max_segment_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            always_on,
            always_on_all: self.always_on_all,
            ..tidewater::hls::HlsConfig::default()
        };
        config
            .validate()
            .map_err(|m| setting_error("hls".into(), format!("invalid settings: {m}")))?;
        Ok(Some(config))
    }
}

/// `[srt]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SrtSection {
    /// Whether to run the SRT listener and serve `/ts/` (default true).
    pub enabled: bool,
    /// UDP address and port (default `0.0.0.0:8890`).
    pub listen: SocketAddr,
    /// TSBPD latency of every connection (default 120).
    pub latency_ms: u64,
    /// A publisher that sends nothing for this long is closed (default 10000).
    pub read_timeout_ms: u64,
    /// A reader (SRT or HTTP-TS) that accepts nothing for this long is closed (default 5000).
    pub write_timeout_ms: u64,
    /// Encryption per application or stream (`[[srt.encryption]]`).
    pub encryption: Vec<SrtEncryption>,
}

/// `[[srt.encryption]]`: one application's or stream's passphrase.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SrtEncryption {
    /// `app` or `app/stream` (the most specific entry wins).
    pub path: String,
    /// 10 to 79 characters.
    pub passphrase: String,
    /// AES key length in bytes: 16 (default), 24 or 32.
    #[serde(default = "default_key_length")]
    pub key_length: u16,
}

fn default_key_length() -> u16 {
    16
}

impl std::fmt::Debug for SrtEncryption {
    // The passphrase never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtEncryption")
            .field("path", &self.path)
            .field("key_length", &self.key_length)
            .finish_non_exhaustive()
    }
}

impl Default for SrtSection {
    fn default() -> Self {
        let d = tidewater::srt::SrtConfig::default();
        SrtSection {
            enabled: true,
            listen: d.listen,
            latency_ms: d.latency.as_millis() as u64,
            read_timeout_ms: d.read_timeout.as_millis() as u64,
            write_timeout_ms: d.write_timeout.as_millis() as u64,
            encryption: Vec::new(),
        }
    }
}

impl SrtSection {
    /// The SRT worker's configuration (`None` when disabled), or a message
    /// naming the bad key.
    pub fn worker_config(&self) -> Result<Option<tidewater::srt::SrtConfig>> {
        if !self.enabled {
            return Ok(None);
        }
        for (key, v) in [
            ("srt.read_timeout_ms", self.read_timeout_ms),
            ("srt.write_timeout_ms", self.write_timeout_ms),
        ] {
            if v == 0 {
                return Err(setting_error(
                    key.into(),
                    "invalid value 0: must be positive".into(),
                ));
            }
        }
        if self.latency_ms > 60_000 {
            return Err(setting_error(
                "srt.latency_ms".into(),
                format!("invalid value {}: at most 60000", self.latency_ms),
            ));
        }
        let config = tidewater::srt::SrtConfig {
            listen: self.listen,
            latency: Duration::from_millis(self.latency_ms),
            read_timeout: Duration::from_millis(self.read_timeout_ms),
            write_timeout: Duration::from_millis(self.write_timeout_ms),
            encryption: self
                .encryption
                .iter()
                .map(|e| tidewater::srt::PathEncryption {
                    path: e.path.clone(),
                    passphrase: e.passphrase.clone(),
                    key_length: e.key_length,
                })
                .collect(),
            ..tidewater::srt::SrtConfig::default()
        };
        config
            .validate()
            .map_err(|e| setting_error("srt.encryption".into(), e.to_string()))?;
        Ok(Some(config))
    }
}

/// `[http]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address and port to listen on (default `0.0.0.0:8888`; port 0 picks a free one).
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_HTTP_PORT)),
        }
    }
}

/// `[log]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A level (`error`, `warn`, `info`, `debug`, `trace`, `off`) or a full
    /// filter in `RUST_LOG` syntax (`info,tidewater_core=debug`). Default `info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

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
        /// Most simultaneous publishers per application (0 = unlimited).
        pub max_publishers: Option<usize>,
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

fn setting_error(key: String, message: String) -> Error {
    Error::Setting {
        key,
        message,
        origin: None,
    }
}

/// The kernel's reason, without its "invalid configuration" prefix.
fn kernel_reason(err: &tidewater::Error) -> String {
    match err {
        tidewater::Error::Config(reason) => reason.clone(),
        other => other.to_string(),
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

/// Where the values of a loaded configuration came from, for error messages.
#[derive(Debug, Default)]
struct Origins {
    file: Option<String>,
    /// Dotted paths of every key and section the file has.
    file_keys: HashSet<String>,
    /// Dotted key path → the variable that set it.
    env: HashMap<String, String>,
}

impl Origins {
    fn of(&self, key: &str) -> Option<String> {
        // An element of a list (`apps.live.push[1]`) comes from where the list came from.
        if let Some((list, _)) = key.strip_suffix(']').and_then(|k| k.rsplit_once('[')) {
            return self.of(list);
        }
        let env = |var: &String| format!("set by {var}");
        let file = || self.file.as_ref().map(|f| format!("in {f}"));
        if let Some(var) = self.env.get(key) {
            return Some(env(var));
        }
        if self.file_keys.contains(key) {
            return file();
        }
        // A section the environment created by setting a key inside it.
        let inside = format!("{key}.");
        let mut vars: Vec<_> = self
            .env
            .iter()
            .filter(|(k, _)| k.starts_with(&inside))
            .map(|(_, v)| v)
            .collect();
        vars.sort();
        vars.first().map(|var| env(var))
    }

    fn annotate(&self, err: Error) -> Error {
        match err {
            Error::Setting {
                key,
                message,
                origin: None,
            } => {
                let origin = self.of(&key);
                Error::Setting {
                    key,
                    message,
                    origin,
                }
            }
            other => other,
        }
    }
}

impl Config {
    /// Loads the configuration: the defaults, then `file` (if any), then the
    /// `TIDEWATER_…` variables of `env` (pass [`std::env::vars_os`]), and
    /// validates the result.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Config> {
        let text = match file {
            Some(path) => {
                Some(
                    std::fs::read_to_string(path).map_err(|source| Error::ReadConfig {
                        path: path.to_path_buf(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        Self::layered(text.as_deref().zip(file), env)
    }

    /// Parses and validates a configuration from TOML text, without the environment.
    pub fn from_toml_str(text: &str) -> Result<Config> {
        Self::layered(Some((text, Path::new("<string>"))), std::iter::empty())
    }

    fn layered(
        file: Option<(&str, &Path)>,
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Config> {
        let mut origins = Origins::default();
        let mut table = match file {
            Some((text, path)) => {
                origins.file = Some(path.display().to_string());
                let table = parse_file(text, path)?;
                collect_keys(&table, "", &mut origins.file_keys);
                table
            }
            None => toml::Table::new(),
        };
        for (var, path, value) in env_overrides(env)? {
            let key = path
                .iter()
                .map(|s| segment(s))
                .collect::<Vec<_>>()
                .join(".");
            insert(&mut table, &path, value).map_err(|message| Error::Env {
                var: var.clone(),
                message,
            })?;
            origins.env.insert(key, var);
        }
        let config: Config = serde_path_to_error::deserialize(table)
            .map_err(|e| origins.annotate(deserialize_error(e)))?;
        config.validate().map_err(|e| origins.annotate(e))?;
        Ok(config)
    }

    /// Checks every setting: the log filter, then the policies and names
    /// key by key the way the kernel checks them, then the kernel itself
    /// ([`EngineBuilder::build`]). The error names the offending key.
    pub fn validate(&self) -> Result<()> {
        self.build_engine().map(drop)
    }

    /// The checks of [`validate`](Self::validate) that can name a key.
    fn check(&self) -> Result<()> {
        crate::logging::parse_filter(&self.log.level)
            .map_err(|m| setting_error("log.level".into(), m))?;
        self.rtmp.worker_config()?;
        self.rtmp.push_config()?;
        self.rtmps.server_tls()?;
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

    /// An [`EngineBuilder`] with every application configured.
    pub fn engine_builder(&self) -> Result<EngineBuilder> {
        self.check()?;
        let mut builder = Engine::builder();
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
        self.engine_builder()?.build().map_err(|e| match &e {
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

/// Records the dotted path of every key and section of `table`.
fn collect_keys(table: &toml::Table, prefix: &str, out: &mut HashSet<String>) {
    for (name, value) in table {
        let path = format!("{prefix}{}", segment(name));
        if let Some(inner) = value.as_table() {
            collect_keys(inner, &format!("{path}."), out);
        }
        out.insert(path);
    }
}

/// Parses the file into a table; a syntax error gives line and column.
fn parse_file(text: &str, path: &Path) -> Result<toml::Table> {
    text.parse::<toml::Table>().map_err(|e| {
        let at = e.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: ")
        });
        Error::ParseConfig {
            path: path.to_path_buf(),
            message: format!("{}{}", at.unwrap_or_default(), one_line(e.message())),
        }
    })
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Maps a deserialization error to the key it concerns.
fn deserialize_error(err: serde_path_to_error::Error<toml::de::Error>) -> Error {
    use serde_path_to_error::Segment;
    let mut key: Vec<String> = err
        .path()
        .iter()
        .filter_map(|s| match s {
            Segment::Map { key } => Some(segment(key)),
            Segment::Enum { variant } => Some(segment(variant)),
            Segment::Seq { index } => Some(format!("[{index}]")),
            Segment::Unknown => None,
        })
        .collect();
    let mut message = one_line(err.inner().message());
    // "unknown field `x`, expected …": the path stops at the section; name the key.
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((field, expected)) = rest.split_once('`') {
            if key.last().map(String::as_str) != Some(&segment(field)) {
                key.push(segment(field));
            }
            message = format!("unknown key{expected}");
        }
    }
    let key = if key.is_empty() {
        "(top level)".to_string()
    } else {
        key.join(".")
    };
    setting_error(key, message)
}

/// The `TIDEWATER_…` overrides of `env`, sorted by variable name: (variable,
/// key path, value).
fn env_overrides(
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Vec<(String, Vec<String>, toml::Value)>> {
    let mut out = Vec::new();
    for (name, value) in env {
        let Some(name) = name.to_str() else {
            if name.as_encoded_bytes().starts_with(ENV_PREFIX.as_bytes()) {
                return Err(Error::Env {
                    var: name.to_string_lossy().into_owned(),
                    message: "name is not valid UTF-8".into(),
                });
            }
            continue;
        };
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if name == ENV_CONFIG_FILE {
            continue;
        }
        let env_error = |message: String| Error::Env {
            var: name.to_string(),
            message,
        };
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if path.len() < 2 || path.iter().any(String::is_empty) {
            return Err(env_error(format!(
                "not a setting: expected {ENV_PREFIX}SECTION__KEY with a double underscore between \
                 path segments (for example {ENV_PREFIX}HTTP__LISTEN)"
            )));
        }
        let value = value
            .to_str()
            .ok_or_else(|| env_error("value is not valid UTF-8".into()))?;
        out.push((name.to_string(), path, env_value(value)));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// An environment variable's value: a TOML value when it parses as one (other
/// than a table), else the text itself.
pub fn env_value(text: &str) -> toml::Value {
    format!("value = {text}")
        .parse::<toml::Table>()
        .ok()
        .filter(|t| t.len() == 1)
        .and_then(|mut t| t.remove("value"))
        .filter(|v| !v.is_table())
        .unwrap_or_else(|| toml::Value::String(text.to_string()))
}

fn insert(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty key".into());
    };
    let mut current = table;
    for (depth, name) in parents.iter().enumerate() {
        let entry = current
            .entry(name.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry.as_table_mut().ok_or_else(|| {
            let key = path[..=depth]
                .iter()
                .map(|s| segment(s))
                .collect::<Vec<_>>()
                .join(".");
            format!("{key} is a value, not a section")
        })?;
    }
    current.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests;
