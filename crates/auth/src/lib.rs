//! Decides who may publish, read, play back, use the API and read the
//! metrics of a tidewater server: users with plain or argon2id passwords and
//! address restrictions, JSON Web Tokens (HS256, or RS256/ES256 keys from a
//! JWKS file or URL), an external HTTP hook, signed short-lived read tokens
//! for playlist URIs and RTSP Digest — behind
//! [`tidewater_core::Authorizer`], with secure defaults when nothing is
//! configured.
//!
//! [`Authorization`] is built from an [`AuthConfig`] (the server's `[auth]`
//! section) and handed to the engine; the server keeps a clone for its API
//! guard, playlist tokens and reloads.
//!
//! ```
//! use tidewater_auth::{AuthConfig, Authorization};
//! use tidewater_core::{Action, AuthRequest, Authorizer, Credentials, RefusalKind, StreamKey};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config: AuthConfig = toml::from_str(r#"
//!     [[users]]
//!     user = "obs"
//!     password = "s3cret"
//!     permissions = [{ action = "publish", path = "live/*" }]
//!
//!     [[users]]
//!     user = "any"
//!     permissions = [{ action = "read" }]
//! "#)?;
//! let auth = Authorization::new(config)?;
//!
//! let publish = AuthRequest::new(Action::Publish, "rtmp")
//!     .key(StreamKey::parse("live/cam1")?)
//!     .peer("192.0.2.7:50000".parse()?);
//! let refused = auth.authorize(&publish).await.unwrap_err();
//! assert_eq!(refused.kind(), RefusalKind::MissingCredentials);
//! assert_eq!(
//!     format!("{publish} refused: {refused}"),
//!     "publish live/cam1 from 192.0.2.7 refused: no credentials, and anonymous publish is \
//!      not permitted; send the credentials of a user with { action = \"publish\", path = \
//!      \"live/*\" }, or add { action = \"publish\", path = \"live/*\" } to the permissions \
//!      of [[auth.users]] user = \"any\""
//! );
//!
//! let obs = publish.credentials(Credentials::UserPass { user: "obs".into(), pass: "s3cret".into() });
//! assert_eq!(auth.authorize(&obs).await?.user.as_deref(), Some("obs"));
//!
//! // The engine asks it on every publish and read.
//! let engine = tidewater_core::Engine::builder()
//!     .app("live", tidewater_core::AppSpec::default())
//!     .authorizer(auth.clone())
//!     .build()?;
//! # let _ = engine;
//! # Ok(())
//! # }
//! ```
//!
//! # Defaults
//!
//! With nothing configured ([`AuthConfig::default()`], or
//! [`Authorization::defaults()`]): anonymous **publish** from loopback only,
//! **read** and **playback** from anywhere, the **api** and **metrics** from
//! loopback only; credentials are not looked at. Once `users`, `jwt` or
//! `http` is configured, only what they grant applies: the loopback
//! allowances are gone, and a user `any` grants anonymous rights.
//!
//! # How a request is decided
//!
//! 1. An address over the rate limit is refused without looking further.
//! 2. The credentials decide, when there are any:
//!    - user and password: a user of `users` (plain password compared in
//!      constant time, or argon2 hash); a user not in `users` goes to the
//!      hook if there is one;
//!    - Digest: a user of `users` with a plain `password` (nonces from
//!      [`Authorization::digest_nonce`]);
//!    - a token (`Credentials::Token`, else `?token=`): a signed read token
//!      (`tw1.…`) grants read and playback of its stream; a JWT is checked
//!      with `[auth.jwt]`; anything else goes to the hook if there is one.
//! 3. Without credentials: the anonymous user `any`, then the hook.
//!
//! A recognized user, token or hook answer is then checked for the
//! permission; the permissions of `any` apply to everyone. Wrong credentials
//! are refused even where anonymous access would have been allowed, so a
//! stale password is noticed.
//!
//! # Paths
//!
//! A permission's `path` is a glob over `app/stream`: `*` matches any run of
//! characters within one part (never the `/`), `?` exactly one character.
//! `live/*` is every stream of `live`; `live/cam?` is `live/cam1` but not
//! `live/cam10`; `*/backup` is `backup` of every application. No `path` (or
//! `*/*`, `*`, `**`) is every path. Paths apply to publish, read and playback
//! only.
//!
//! # Refusals
//!
//! Every refusal is a [`Refusal`](tidewater_core::Refusal) whose kind tells
//! the protocol what to answer (`401` + `WWW-Authenticate`, `403`, …; see
//! [`RefusalKind`](tidewater_core::RefusalKind)) and whose reason names what
//! was missing and the setting that would grant it. Logged after the request
//! (`AuthRequest`'s `Display`), it reads:
//!
//! ```text
//! publish live/cam1 from 192.0.2.7 refused: anonymous publish is allowed from loopback only (no [auth] is configured); add [[auth.users]] with user, password and permissions = [{ action = "publish", path = "live/*" }]
//! ```
//!
//! Reasons never contain a password, token or key. The authorizer itself logs
//! refusals at `debug` (the protocol logs the line above) and hook or key-set
//! failures at `warn`, and counts every decision by [`RefusalCause`]
//! ([`Authorization::stats`]).
//!
//! # JWT
//!
//! `secret` verifies HS256 (HS384, HS512) tokens; `jwks_file` and `jwks_url`
//! RSA (RS*, PS*), ECDSA (ES256, ES384) and EdDSA ones, picked by `kid`
//! when the token names one. Symmetric keys in a key set are ignored. A
//! JWKS file is looked at again at most once a second, on use, and reloaded
//! when its modification time or size changed; a JWKS URL is fetched on
//! first use, every `jwks_refresh_s`, and when a token names an unknown key
//! (at most every 10 s). `http://` URLs only: this crate has no TLS client.
//! `exp` is required; `exp` and `nbf` are checked on the authorizer's clock
//! with `leeway_s`. The user is `sub`; permissions come from the
//! `tidewater_permissions` claim, a list of `{"action": …, "path": …}`.
//!
//! # HTTP hook
//!
//! `POST url` with the JSON body described at [`HttpHookConfig`]; any `2xx`
//! allows. The answer is reused for `cache_ms` for the same request (user,
//! password, token, address, action, path, protocol and query; not the id).
//! No answer within `timeout_ms`, or no connection, refuses (kind
//! `Unavailable`) and logs a warning.
//!
//! # Signed read tokens
//!
//! An HLS or DASH player that authenticated once should not need credentials
//! on every segment: [`Authorization::sign_read_token`] gives a token for
//! `?token=` in the URIs of a playlist, bound to one stream, valid for a
//! given time, HMAC-SHA256 signed with `token_secret` (or a per-process
//! random key). A CDN in front should leave `token` out of its cache key.
//!
//! # Digest
//!
//! RTSP clients answer a `401` with Digest: [`verify_digest`] is the RFC 2617
//! arithmetic (MD5, without `qop` or with `qop=auth`). Digest needs the
//! password itself, so it works only for users with a plain `password`:
//! neither a `password_hash` user nor the hook can be verified this way.
//!
//! # Rate limit
//!
//! Failed attempts (wrong credentials, invalid tokens) are counted per
//! address (IPv6 per /64); over `max_failures` within `window_s`, the address
//! is refused for `ban_s` without checking. The table is bounded by
//! `max_tracked`.
//!
//! # Feature flags
//!
//! - `jwt` (default): `[auth.jwt]`, with jsonwebtoken on RustCrypto.
//! - `http` (default): the HTTP client of `[auth.http]` and `jwks_url`.
//!
//! Without a feature, the configuration still parses, and a section that
//! needs it is an [`Error::FeatureDisabled`].

#![deny(missing_docs)]
#![forbid(unsafe_code)]
// Modules here read network and file input (credentials, tokens, nonces,
// JWKS, hook answers, config files): no indexing, unwrap, expect or panic
// outside tests (RELIABILITY.md, "Lints").
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::expect_used,
        clippy::unwrap_used,
        clippy::panic
    )
)]

mod authorization;
mod clock;
mod config;
mod digest;
mod error;
mod glob;
#[cfg(feature = "http")]
mod hook;
#[cfg(feature = "http")]
mod http;
#[cfg(feature = "jwt")]
mod jwt;
mod keys;
mod rate;
mod stats;
mod users;

pub use authorization::{Authorization, READ_TOKEN_TTL};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    AuthConfig, HttpHookConfig, JwtConfig, Permission, RateLimitConfig, Secret, UserConfig,
};
pub use digest::verify_digest;
pub use error::{Error, Result};
pub use keys::ReadToken;
pub use stats::{AuthStats, RefusalCause};
pub use users::hash_password;

/// The name of the anonymous user.
pub const ANONYMOUS: &str = "any";
