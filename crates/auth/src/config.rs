//! The configuration: what the server reads from its `[auth]` section.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};
use tidewater_core::Action;

/// A secret (password, key): deserialized from a string, never shown by
/// `Debug`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Secret(secret.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret::new(s)
    }
}

/// The whole `[auth]` section.
///
/// [`AuthConfig::default()`] configures nothing, which means the secure
/// defaults (see the [crate docs](crate#defaults)). Once `users`, `jwt` or
/// `http` is set, only what they grant applies.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "snake_case")]
pub struct AuthConfig {
    /// `[[auth.users]]`: users and the anonymous user `any`.
    pub users: Vec<UserConfig>,
    /// `[auth.jwt]`: JSON Web Tokens.
    pub jwt: Option<JwtConfig>,
    /// `[auth.http]`: an external HTTP hook, asked about what neither the
    /// users nor JWT decide.
    pub http: Option<HttpHookConfig>,
    /// `[auth.rate_limit]`: failed attempts per address.
    pub rate_limit: RateLimitConfig,
    /// `auth.token_secret`: the key of signed read tokens (playlist URIs) and
    /// of Digest nonces. Unset: a random key per process, so tokens do not
    /// survive a restart and are not accepted by another server; set the same
    /// secret on every server behind one load balancer.
    pub token_secret: Option<Secret>,
    /// `auth.realm`: the realm of Basic and Digest challenges (default
    /// `tidewater`).
    pub realm: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            users: Vec::new(),
            jwt: None,
            http: None,
            rate_limit: RateLimitConfig::default(),
            token_secret: None,
            realm: "tidewater".into(),
        }
    }
}

impl AuthConfig {
    /// Whether anything that grants access is configured (`users`, `jwt` or
    /// `http`). When not, the secure defaults apply.
    pub fn is_configured(&self) -> bool {
        !self.users.is_empty() || self.jwt.is_some() || self.http.is_some()
    }
}

/// One `[[auth.users]]` entry.
///
/// A user named `any` with no password is the anonymous user: its
/// permissions apply to every request (with credentials or without), from the
/// addresses in its `ips`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct UserConfig {
    /// The user name (`any`: the anonymous user).
    pub user: String,
    /// A plain password (handy for tests; the only kind RTSP Digest can verify).
    #[serde(default)]
    pub password: Option<Secret>,
    /// An argon2id PHC string (`$argon2id$v=19$m=…`), as `tidewater
    /// hash-password` prints it.
    #[serde(default)]
    pub password_hash: Option<String>,
    /// Addresses the user may connect from: CIDRs (`192.0.2.0/24`,
    /// `2001:db8::/32`) or single addresses. Empty: anywhere.
    #[serde(default, deserialize_with = "ip_ranges")]
    pub ips: Vec<IpNet>,
    /// What the user may do.
    #[serde(default)]
    pub permissions: Vec<Permission>,
}

impl UserConfig {
    /// A user with a plain password and no permissions yet.
    pub fn new(user: impl Into<String>, password: impl Into<Secret>) -> Self {
        UserConfig {
            user: user.into(),
            password: Some(password.into()),
            password_hash: None,
            ips: Vec::new(),
            permissions: Vec::new(),
        }
    }

    /// The anonymous user `any`, with no permissions yet.
    pub fn anonymous() -> Self {
        UserConfig {
            user: crate::ANONYMOUS.into(),
            password: None,
            password_hash: None,
            ips: Vec::new(),
            permissions: Vec::new(),
        }
    }

    /// Adds a permission.
    pub fn permit(mut self, action: Action, path: Option<&str>) -> Self {
        self.permissions.push(Permission {
            action,
            path: path.map(str::to_string),
        });
        self
    }
}

/// `{ action = "publish", path = "live/*" }`: one permission, of a user or of
/// a JWT's `tidewater_permissions` claim.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Permission {
    /// `publish`, `read`, `playback`, `api` or `metrics`.
    pub action: Action,
    /// A path glob (see [the crate docs](crate#paths)); absent: every path.
    /// Only for publish, read and playback.
    #[serde(default)]
    pub path: Option<String>,
}

/// `[auth.jwt]`: tokens signed with an HS256 `secret`, or with RS256/ES256
/// (and the other RSA, ECDSA and EdDSA algorithms) keys of a JWKS.
///
/// Exactly one of `secret`, `jwks_file`, `jwks_url` is set.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct JwtConfig {
    /// The HMAC secret of HS256 (HS384, HS512) tokens.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// A JWKS file (`{"keys": [...]}`), read again when it changes (checked at
    /// most once a second, on use).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// A JWKS URL, fetched on first use and again every `jwks_refresh_s`, or
    /// when a token names a key the set does not have (at most every 10 s).
    /// `http://` only: put a TLS-terminating proxy or a file in between for
    /// anything else.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Seconds between fetches of `jwks_url` (default 300).
    #[serde(default = "default_jwks_refresh_s")]
    pub jwks_refresh_s: u64,
    /// The required `iss` claim, if any.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The required `aud` claim, if any.
    #[serde(default)]
    pub audience: Option<String>,
    /// Seconds of clock skew tolerated on `exp` and `nbf` (default 30).
    #[serde(default = "default_leeway_s")]
    pub leeway_s: u64,
}

impl JwtConfig {
    /// HS256 tokens signed with `secret`.
    pub fn secret(secret: impl Into<Secret>) -> Self {
        JwtConfig {
            secret: Some(secret.into()),
            jwks_file: None,
            jwks_url: None,
            jwks_refresh_s: default_jwks_refresh_s(),
            issuer: None,
            audience: None,
            leeway_s: default_leeway_s(),
        }
    }

    /// Tokens signed with the keys of a JWKS file.
    pub fn jwks_file(path: impl Into<PathBuf>) -> Self {
        JwtConfig {
            secret: None,
            jwks_file: Some(path.into()),
            ..JwtConfig::secret("")
        }
    }

    /// Tokens signed with the keys of a JWKS URL (`http://` only).
    pub fn jwks_url(url: impl Into<String>) -> Self {
        JwtConfig {
            secret: None,
            jwks_url: Some(url.into()),
            ..JwtConfig::secret("")
        }
    }
}

fn default_jwks_refresh_s() -> u64 {
    300
}

fn default_leeway_s() -> u64 {
    30
}

/// `[auth.http]`: an external service that decides.
///
/// It gets a `POST` of JSON
/// `{"user", "password", "token", "ip", "action", "path", "protocol", "id", "query"}`
/// (absent values are `null`) and allows with any `2xx` answer. Any other
/// answer refuses; so does no answer within `timeout_ms` (and is logged).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct HttpHookConfig {
    /// The hook's URL, `http://` only.
    pub url: String,
    /// How long to wait for an answer, in milliseconds (default 2000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// How long an answer is reused for the same request (everything but
    /// `id`), in milliseconds (default 1000; 0: never).
    #[serde(default = "default_cache_ms")]
    pub cache_ms: u64,
}

impl HttpHookConfig {
    /// A hook at `url` with the default timeout and cache time.
    pub fn new(url: impl Into<String>) -> Self {
        HttpHookConfig {
            url: url.into(),
            timeout_ms: default_timeout_ms(),
            cache_ms: default_cache_ms(),
        }
    }
}

fn default_timeout_ms() -> u64 {
    2000
}

fn default_cache_ms() -> u64 {
    1000
}

/// `[auth.rate_limit]`: after `max_failures` failed attempts (wrong password
/// or token) from one address within `window_s`, that address is refused
/// without checking for `ban_s`. IPv6 addresses count per /64.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "snake_case")]
pub struct RateLimitConfig {
    /// Failures allowed within the window (default 20; 0 disables the limit).
    pub max_failures: u32,
    /// The window, in seconds (default 60).
    pub window_s: u64,
    /// How long an address is refused once over the limit, in seconds (default 60).
    pub ban_s: u64,
    /// How many addresses are tracked at most (default 10 000): memory stays
    /// bounded under a spray of addresses.
    pub max_tracked: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            max_failures: 20,
            window_s: 60,
            ban_s: 60,
            max_tracked: 10_000,
        }
    }
}

/// CIDRs or single addresses.
fn ip_ranges<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .iter()
        .map(|t| parse_ip_range(t).map_err(serde::de::Error::custom))
        .collect()
}

/// `192.0.2.0/24`, `2001:db8::/32` or a single address.
pub(crate) fn parse_ip_range(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .map(|n| n.trunc())
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is neither an address nor a CIDR (like 192.0.2.0/24)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shape() {
        let c: AuthConfig = toml::from_str(
            r#"
            token_secret = "0123456789abcdef0123456789abcdef"
            [[users]]
            user = "obs"
            password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA"
            ips = ["192.0.2.0/24", "2001:db8::1"]
            permissions = [{ action = "publish", path = "live/*" }, { action = "api" }]
            [[users]]
            user = "any"
            permissions = [{ action = "read" }]
            [jwt]
            secret = "k"
            audience = "tidewater"
            [http]
            url = "http://127.0.0.1:9000/auth"
            [rate_limit]
            max_failures = 5
            "#,
        )
        .expect("config");
        assert!(c.is_configured());
        assert_eq!(c.users.len(), 2);
        assert_eq!(c.users[0].ips.len(), 2);
        assert_eq!(c.users[0].ips[1].to_string(), "2001:db8::1/128");
        assert_eq!(c.users[0].permissions[0].action, Action::Publish);
        assert_eq!(c.users[0].permissions[1].path, None);
        let jwt = c.jwt.expect("jwt");
        assert_eq!(jwt.leeway_s, 30);
        assert_eq!(jwt.audience.as_deref(), Some("tidewater"));
        let http = c.http.expect("http");
        assert_eq!((http.timeout_ms, http.cache_ms), (2000, 1000));
        assert_eq!(c.rate_limit.max_failures, 5);
        assert_eq!(c.rate_limit.window_s, 60);
        assert_eq!(c.realm, "tidewater");
        assert!(!AuthConfig::default().is_configured());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        for bad in [
            "[[users]]\nuser = \"a\"\npasword = \"x\"",
            "[[users]]\nuser = \"a\"\npermissions = [{ action = \"write\" }]",
            "[[users]]\nuser = \"a\"\nips = [\"300.0.0.1\"]",
            "[jwt]\nsecrets = \"x\"",
            "colour = 1",
        ] {
            assert!(toml::from_str::<AuthConfig>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let c: AuthConfig = toml::from_str(
            "token_secret = \"tok-secret\"\n[[users]]\nuser = \"u\"\npassword = \"pw-secret\"\n[jwt]\nsecret = \"jwt-secret\"",
        )
        .expect("config");
        let shown = format!("{c:?}");
        for s in ["tok-secret", "pw-secret", "jwt-secret"] {
            assert!(!shown.contains(s), "{shown}");
        }
    }
}
