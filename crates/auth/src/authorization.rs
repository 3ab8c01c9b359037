//! [`Authorization`]: the configured [`Authorizer`].

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use tidewater_core::{
    Action, AuthRequest, Authorizer, Credentials, DigestCredentials, Identity, Refusal,
    RefusalKind, StreamKey,
};
use tracing::{debug, trace, warn};

use crate::ANONYMOUS;
use crate::clock::{Clock, SystemClock};
use crate::config::{AuthConfig, RateLimitConfig};
use crate::digest::verify_digest;
use crate::error::{Error, Result};
use crate::keys::{Keys, NonceCheck, READ_TOKEN_PREFIX, ReadToken, random_32};
use crate::rate::RateLimiter;
use crate::stats::{AuthStats, Counters, RefusalCause, Refused};
use crate::users::{Password, PasswordChecker, User, Users};

/// Decides who may publish, read, play back, use the API and read metrics.
///
/// Cheap to clone: clones share the configuration, counters and rate limit,
/// so the server hands one clone to the engine
/// ([`EngineBuilder::authorizer`](tidewater_core::EngineBuilder::authorizer))
/// and keeps another for its API guard, playlist tokens and
/// [`reload`](Self::reload).
#[derive(Clone)]
pub struct Authorization {
    inner: Arc<Inner>,
}

struct Inner {
    policy: ArcSwap<Policy>,
    clock: Arc<dyn Clock>,
    /// The key of signed tokens and nonces when no `token_secret` is set:
    /// kept across reloads, so tokens in players' hands stay valid.
    process_secret: [u8; 32],
    rate: RateLimiter,
    counters: Counters,
    passwords: PasswordChecker,
    #[cfg(feature = "http")]
    client: crate::http::HttpClient,
}

/// One configuration, compiled.
struct Policy {
    configured: bool,
    users: Users,
    #[cfg(feature = "jwt")]
    jwt: Option<crate::jwt::Jwt>,
    #[cfg(feature = "http")]
    hook: Option<crate::hook::Hook>,
    rate: RateLimitConfig,
    keys: Keys,
    realm: String,
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.inner.policy.load();
        f.debug_struct("Authorization")
            .field("configured", &p.configured)
            .field("realm", &p.realm)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// `{ action = "publish", path = "live/*" }` for a request: the permission
/// that would grant it (the whole application of the stream).
fn permission_hint(action: Action, key: Option<&StreamKey>) -> String {
    match key {
        Some(k) if action.has_stream() => {
            format!("{{ action = \"{action}\", path = \"{}/*\" }}", k.app())
        }
        _ => format!("{{ action = \"{action}\" }}"),
    }
}

/// The same as JSON, for a JWT's `tidewater_permissions` claim.
#[cfg(feature = "jwt")]
fn claim_hint(action: Action, key: Option<&StreamKey>) -> String {
    match key {
        Some(k) if action.has_stream() => {
            format!("{{\"action\": \"{action}\", \"path\": \"{}/*\"}}", k.app())
        }
        _ => format!("{{\"action\": \"{action}\"}}"),
    }
}

/// `publish live/cam1` or `api`.
fn what(action: Action, key: Option<&StreamKey>) -> String {
    match key {
        Some(k) => format!("{action} {k}"),
        None => action.to_string(),
    }
}

fn from(ip: Option<IpAddr>) -> String {
    ip.map_or_else(|| "an unknown address".into(), |ip| ip.to_string())
}

/// The same answer for an unknown user and a wrong password.
fn wrong_password(user: &str, digest: bool) -> Refused {
    let user: String = user.chars().take(64).collect();
    Refused::new(
        RefusalCause::InvalidCredentials,
        RefusalKind::InvalidCredentials,
        if digest {
            format!(
                "wrong user name or password for user {user:?} (Digest verifies only \
                 [[auth.users]] with a plain password)"
            )
        } else {
            format!("wrong user name or password for user {user:?}")
        },
    )
}

impl Authorization {
    /// Compiles a configuration, reading the time from the system clock.
    pub fn new(config: AuthConfig) -> Result<Self> {
        Authorization::with_clock(config, Arc::new(SystemClock))
    }

    /// Compiles a configuration, reading the time from `clock` (tests pass a
    /// [`ManualClock`](crate::ManualClock)).
    pub fn with_clock(config: AuthConfig, clock: Arc<dyn Clock>) -> Result<Self> {
        let mut inner = Inner {
            policy: ArcSwap::from_pointee(Policy {
                configured: false,
                users: Users::default(),
                #[cfg(feature = "jwt")]
                jwt: None,
                #[cfg(feature = "http")]
                hook: None,
                rate: RateLimitConfig::default(),
                keys: Keys::new(&[]),
                realm: String::new(),
            }),
            clock,
            process_secret: random_32()?,
            rate: RateLimiter::new(),
            counters: Counters::default(),
            passwords: PasswordChecker::new(),
            #[cfg(feature = "http")]
            client: crate::http::HttpClient::new(),
        };
        let policy = inner.compile(&config)?;
        inner.policy = ArcSwap::from_pointee(policy);
        Ok(Authorization {
            inner: Arc::new(inner),
        })
    }

    /// The secure defaults of having no `[auth]` section: anonymous publish,
    /// API and metrics from loopback only; read and playback from anywhere.
    ///
    /// # Panics
    ///
    /// When the operating system gives no randomness for the per-process
    /// token key.
    #[allow(
        clippy::panic,
        reason = "documented above: a process without randomness cannot make its token key; no input reaches it"
    )]
    pub fn defaults() -> Self {
        match Authorization::new(AuthConfig::default()) {
            Ok(a) => a,
            Err(e) => panic!("tidewater-auth defaults: {e}"),
        }
    }

    /// Applies a new configuration to every request from now on. On error the
    /// previous one stays. Counters and the rate limit carry over; so do
    /// signed tokens, unless `token_secret` changed.
    pub fn reload(&self, config: AuthConfig) -> Result<()> {
        let policy = self.inner.compile(&config)?;
        self.inner.policy.store(Arc::new(policy));
        self.inner.passwords.forget();
        Ok(())
    }

    /// Whether a configuration grants anything (`users`, `jwt` or `http`);
    /// `false` means the defaults apply.
    pub fn is_configured(&self) -> bool {
        self.inner.policy.load().configured
    }

    /// Whether a peer at `ip` may do `action` on `key` without any
    /// credentials (by the defaults, or by the anonymous user `any`). The
    /// HTTP hook is not asked. The server uses it to decide whether playlists
    /// need signed read tokens in their URIs.
    pub fn allows_anonymous(
        &self,
        action: Action,
        key: Option<&StreamKey>,
        ip: Option<IpAddr>,
    ) -> bool {
        let p = self.inner.policy.load();
        let ip = ip.map(|ip| ip.to_canonical());
        if !p.configured {
            return defaults(action, key, ip).is_ok();
        }
        p.users
            .anonymous
            .as_ref()
            .is_some_and(|a| a.ip_allowed(ip) && a.grants(action, key))
    }

    /// A signed, short-lived read token for `key`, for `?token=` in playlist
    /// and segment URIs: it grants read and playback of that stream only,
    /// until `ttl` has passed. Each call gives a different token (its
    /// [`ReadToken::id`] tells players apart).
    ///
    /// Tokens are HMAC-SHA256 with `auth.token_secret`, or a random key of
    /// this process when unset (then they do not survive a restart).
    pub fn sign_read_token(&self, key: &StreamKey, ttl: Duration) -> String {
        self.sign_read_token_for(key, ttl, &Identity::anonymous())
    }

    /// [`sign_read_token`](Self::sign_read_token) for a recognized identity,
    /// whose user name the token carries (into [`ReadToken::user`]).
    pub fn sign_read_token_for(&self, key: &StreamKey, ttl: Duration, who: &Identity) -> String {
        let expires = self.inner.clock.now() + ttl;
        self.inner
            .policy
            .load()
            .keys
            .sign_read_token(key, expires, who.user.as_deref())
    }

    /// What a valid read token for `key` says; `None` if it is not one (of
    /// this server, for this stream) or has expired.
    pub fn verify_read_token(&self, key: &StreamKey, token: &str) -> Option<ReadToken> {
        self.inner
            .policy
            .load()
            .keys
            .verify_read_token(key, token, self.inner.clock.now())
            .ok()
    }

    /// A fresh Digest nonce for an RTSP (or HTTP) `401` challenge, valid for
    /// five minutes. Digest responses are only accepted with nonces from here.
    pub fn digest_nonce(&self) -> String {
        self.inner
            .policy
            .load()
            .keys
            .digest_nonce(self.inner.clock.now())
    }

    /// The realm of Basic and Digest challenges (`auth.realm`).
    pub fn realm(&self) -> String {
        self.inner.policy.load().realm.clone()
    }

    /// The counters so far.
    pub fn stats(&self) -> AuthStats {
        self.inner.counters.snapshot()
    }
}

impl Inner {
    fn compile(&self, config: &AuthConfig) -> Result<Policy> {
        let keys = match &config.token_secret {
            Some(s) if s.expose().len() < 16 => {
                return Err(Error::config(
                    "auth.token_secret",
                    "shorter than 16 characters",
                ));
            }
            Some(s) => Keys::new(s.expose().as_bytes()),
            None => Keys::new(&self.process_secret),
        };
        if config.realm.is_empty()
            || config.realm.contains(['"', '\\'])
            || config.realm.chars().any(char::is_control)
        {
            return Err(Error::config(
                "auth.realm",
                "empty, or contains a quote, a backslash or a control character",
            ));
        }
        #[cfg(feature = "jwt")]
        let jwt = config
            .jwt
            .as_ref()
            .map(|j| {
                crate::jwt::Jwt::new(
                    j,
                    self.clock.now(),
                    #[cfg(feature = "http")]
                    &self.client,
                )
            })
            .transpose()?;
        #[cfg(not(feature = "jwt"))]
        if config.jwt.is_some() {
            return Err(Error::FeatureDisabled {
                key: "auth.jwt",
                feature: "jwt",
            });
        }
        #[cfg(feature = "http")]
        let hook = config
            .http
            .as_ref()
            .map(|h| crate::hook::Hook::new(h, self.client.clone()))
            .transpose()?;
        #[cfg(not(feature = "http"))]
        if config.http.is_some() {
            return Err(Error::FeatureDisabled {
                key: "auth.http",
                feature: "http",
            });
        }
        Ok(Policy {
            configured: config.is_configured(),
            users: Users::compile(&config.users)?,
            #[cfg(feature = "jwt")]
            jwt,
            #[cfg(feature = "http")]
            hook,
            rate: config.rate_limit.clone(),
            keys,
            realm: config.realm.clone(),
        })
    }
}

/// The defaults of having no `[auth]` section.
fn defaults(
    action: Action,
    key: Option<&StreamKey>,
    ip: Option<IpAddr>,
) -> std::result::Result<Identity, Refused> {
    match action {
        Action::Read | Action::Playback => Ok(Identity::anonymous()),
        Action::Publish | Action::Api | Action::Metrics
            if ip.is_some_and(|ip| ip.is_loopback()) =>
        {
            Ok(Identity::anonymous())
        }
        _ => Err(Refused::new(
            RefusalCause::AnonymousNotAllowed,
            RefusalKind::Forbidden,
            format!(
                "anonymous {action} is allowed from loopback only (no [auth] is configured); \
                 add [[auth.users]] with user, password and permissions = [{}]",
                permission_hint(action, key)
            ),
        )),
    }
}

/// One request being decided.
struct Decision<'a> {
    p: &'a Policy,
    inner: &'a Inner,
    req: &'a AuthRequest,
    key: Option<&'a StreamKey>,
    ip: Option<IpAddr>,
    now: SystemTime,
}

impl Decision<'_> {
    /// Whether the anonymous user grants the request: its permissions apply
    /// to everyone.
    fn anonymous_grants(&self) -> bool {
        self.p
            .users
            .anonymous
            .as_ref()
            .is_some_and(|a| a.ip_allowed(self.ip) && a.grants(self.req.action, self.key))
    }

    async fn decide(&self) -> std::result::Result<Identity, Refused> {
        let action = self.req.action;
        if action.has_stream() && self.key.is_none() {
            return Err(Refused::new(
                RefusalCause::NotPermitted,
                RefusalKind::Forbidden,
                format!("{action} needs a stream"),
            ));
        }
        if !self.p.configured {
            return defaults(action, self.key, self.ip);
        }
        match &self.req.credentials {
            Credentials::UserPass { user, pass } if user != ANONYMOUS => {
                self.user_pass(user, pass).await
            }
            Credentials::Digest(d) => self.digest(d).await,
            _ => match self.req.token() {
                Some(t) if !t.is_empty() => self.token(t).await,
                _ => self.anonymous().await,
            },
        }
    }

    async fn anonymous(&self) -> std::result::Result<Identity, Refused> {
        if self.anonymous_grants() {
            return Ok(Identity::anonymous());
        }
        if self.has_hook() {
            return self.hook().await;
        }
        let action = self.req.action;
        let hint = permission_hint(action, self.key);
        let reason = match &self.p.users.anonymous {
            Some(a) if a.grants(action, self.key) => format!(
                "anonymous {} is not allowed from {} (ips of [[auth.users]] user = \"any\"); \
                 send credentials, or add the address to those ips",
                what(action, self.key),
                from(self.ip)
            ),
            _ => format!(
                "no credentials, and anonymous {action} is not permitted; send the credentials \
                 of a user with {hint}, or add {hint} to the permissions of [[auth.users]] \
                 user = \"any\""
            ),
        };
        Err(Refused::new(
            RefusalCause::AnonymousNotAllowed,
            RefusalKind::MissingCredentials,
            reason,
        ))
    }

    async fn user_pass(&self, name: &str, pass: &str) -> std::result::Result<Identity, Refused> {
        match self.p.users.get(name) {
            Some(u) => {
                if !self
                    .inner
                    .passwords
                    .check(u, pass, &self.p.keys, self.now)
                    .await
                {
                    return Err(wrong_password(name, false));
                }
                self.permitted(u)
            }
            None if self.has_hook() => self.hook().await,
            None => Err(wrong_password(name, false)),
        }
    }

    async fn digest(&self, d: &DigestCredentials) -> std::result::Result<Identity, Refused> {
        let invalid = |reason: &str| {
            Refused::new(
                RefusalCause::InvalidCredentials,
                RefusalKind::InvalidCredentials,
                reason,
            )
        };
        match self.p.keys.check_digest_nonce(&d.nonce, self.now) {
            NonceCheck::Fresh => {}
            NonceCheck::Stale => return Err(invalid("stale Digest nonce: ask again")),
            NonceCheck::Invalid => {
                return Err(invalid("Digest nonce not issued by this server"));
            }
        }
        if d.realm != self.p.realm {
            return Err(invalid("Digest realm is not this server's (auth.realm)"));
        }
        match self.p.users.get(&d.user) {
            Some(
                u @ User {
                    password: Some(Password::Plain(p)),
                    ..
                },
            ) if verify_digest(d, p.expose()) => self.permitted(u),
            _ => Err(wrong_password(&d.user, true)),
        }
    }

    /// A recognized user: where from, and what.
    fn permitted(&self, u: &User) -> std::result::Result<Identity, Refused> {
        let action = self.req.action;
        if !u.ip_allowed(self.ip) {
            return Err(Refused::new(
                RefusalCause::AddressNotAllowed,
                RefusalKind::Forbidden,
                format!(
                    "user {:?} may not connect from {}; add the address to ips of \
                     [[auth.users]] user = {:?}",
                    u.name,
                    from(self.ip),
                    u.name
                ),
            ));
        }
        if u.grants(action, self.key) || self.anonymous_grants() {
            return Ok(Identity::named(&u.name));
        }
        Err(Refused::new(
            RefusalCause::NotPermitted,
            RefusalKind::Forbidden,
            format!(
                "user {:?} has no permission to {}; add {} to the permissions of \
                 [[auth.users]] user = {:?}",
                u.name,
                what(action, self.key),
                permission_hint(action, self.key),
                u.name
            ),
        ))
    }

    async fn token(&self, token: &str) -> std::result::Result<Identity, Refused> {
        let action = self.req.action;
        if token.starts_with(READ_TOKEN_PREFIX) {
            let Some(key) = self
                .key
                .filter(|_| matches!(action, Action::Read | Action::Playback))
            else {
                return Err(Refused::new(
                    RefusalCause::NotPermitted,
                    RefusalKind::Forbidden,
                    format!("a signed read token grants read and playback only, not {action}"),
                ));
            };
            return match self.p.keys.verify_read_token(key, token, self.now) {
                Ok(t) => Ok(t.user.map_or_else(Identity::anonymous, Identity::named)),
                Err(e) => Err(Refused::new(
                    RefusalCause::InvalidToken,
                    RefusalKind::InvalidCredentials,
                    format!("invalid read token: {}", e.describe()),
                )),
            };
        }
        #[cfg(feature = "jwt")]
        if let Some(jwt) = &self.p.jwt
            && crate::jwt::looks_like_jwt(token)
        {
            let v = jwt.verify(token, self.now).await?;
            if crate::users::grants(&v.grants, action, self.key) || self.anonymous_grants() {
                return Ok(v.subject.map_or_else(Identity::anonymous, Identity::named));
            }
            return Err(Refused::new(
                RefusalCause::NotPermitted,
                RefusalKind::Forbidden,
                format!(
                    "the token{} has no permission to {}; its tidewater_permissions claim needs {}",
                    v.subject
                        .as_deref()
                        .map(|s| format!(" of {:?}", s.chars().take(64).collect::<String>()))
                        .unwrap_or_default(),
                    what(action, self.key),
                    claim_hint(action, self.key)
                ),
            ));
        }
        if self.has_hook() {
            return self.hook().await;
        }
        Err(Refused::new(
            RefusalCause::InvalidToken,
            RefusalKind::InvalidCredentials,
            if cfg!(feature = "jwt") && self.has_jwt() {
                "invalid token: neither a JWT nor a signed read token"
            } else {
                "invalid token: not a signed read token, and no [auth.jwt] is configured"
            },
        ))
    }

    fn has_jwt(&self) -> bool {
        #[cfg(feature = "jwt")]
        return self.p.jwt.is_some();
        #[cfg(not(feature = "jwt"))]
        false
    }

    fn has_hook(&self) -> bool {
        #[cfg(feature = "http")]
        return self.p.hook.is_some();
        #[cfg(not(feature = "http"))]
        false
    }

    #[cfg(not(feature = "http"))]
    async fn hook(&self) -> std::result::Result<Identity, Refused> {
        unreachable!("has_hook() is false without the http feature")
    }

    #[cfg(feature = "http")]
    async fn hook(&self) -> std::result::Result<Identity, Refused> {
        use crate::hook::HookAnswer;
        let Some(hook) = &self.p.hook else {
            unreachable!("asked only when configured")
        };
        match hook.ask(self.req, &self.p.keys, self.now).await {
            Ok(HookAnswer::Allowed) => Ok(self
                .req
                .credentials
                .user()
                .map_or_else(Identity::anonymous, Identity::named)),
            Ok(HookAnswer::Refused(status)) => {
                let offered = !matches!(self.req.credentials, Credentials::None)
                    || self.req.token().is_some();
                let kind = match (offered, status) {
                    (false, _) => RefusalKind::MissingCredentials,
                    (true, 401) => RefusalKind::InvalidCredentials,
                    (true, _) => RefusalKind::Forbidden,
                };
                Err(Refused::new(
                    RefusalCause::HookRefused,
                    kind,
                    format!(
                        "the auth hook (auth.http.url) answered {status} to {}",
                        what(self.req.action, self.key)
                    ),
                ))
            }
            Err(e) => {
                warn!(
                    hook = %hook.shown,
                    action = %self.req.action,
                    path = self.key.map(|k| k.as_str()),
                    "auth hook failed, refusing: {e}"
                );
                Err(Refused::new(
                    RefusalCause::Unavailable,
                    RefusalKind::Unavailable,
                    format!(
                        "the auth hook (auth.http.url) could not be asked ({}; timeout {} ms, \
                         auth.http.timeout_ms)",
                        e,
                        hook.timeout().as_millis()
                    ),
                ))
            }
        }
    }
}

/// How long a read token from [`Authorizer::read_token`] is valid for a
/// player's first use. HLS and DASH packagers then keep it valid for as long
/// as its player keeps fetching (their player idle timeout), so playback is
/// not cut when it expires.
pub const READ_TOKEN_TTL: Duration = Duration::from_secs(300);

#[async_trait]
impl Authorizer for Authorization {
    fn read_token(&self, key: &StreamKey, who: &Identity, ip: Option<IpAddr>) -> Option<String> {
        match self.allows_anonymous(Action::Read, Some(key), ip) {
            true => None,
            false => Some(self.sign_read_token_for(key, READ_TOKEN_TTL, who)),
        }
    }

    fn realm(&self) -> String {
        Authorization::realm(self)
    }

    fn digest_nonce(&self) -> Option<String> {
        Some(Authorization::digest_nonce(self))
    }

    async fn authorize(&self, req: &AuthRequest) -> std::result::Result<Identity, Refusal> {
        let inner = &*self.inner;
        let p = inner.policy.load_full();
        let now = inner.clock.now();
        let ip = req.peer.map(|p| p.ip().to_canonical());
        let key = req.key.as_ref().filter(|_| req.action.has_stream());
        let outcome = match ip.and_then(|ip| inner.rate.banned(&p.rate, ip, now)) {
            Some(left) => Err(Refused::new(
                RefusalCause::RateLimited,
                RefusalKind::RateLimited,
                format!(
                    "too many failed attempts from {}; refused for {} s more (auth.rate_limit)",
                    from(ip),
                    left.as_secs().max(1)
                ),
            )),
            None => {
                Decision {
                    p: &p,
                    inner,
                    req,
                    key,
                    ip,
                    now,
                }
                .decide()
                .await
            }
        };
        match outcome {
            Ok(identity) => {
                inner.counters.allowed();
                trace!(%req, protocol = req.protocol, %identity, "allowed");
                Ok(identity)
            }
            Err(refused) => {
                inner.counters.refused(refused.cause);
                if refused.kind == RefusalKind::InvalidCredentials
                    && let Some(ip) = ip
                    && inner.rate.failed(&p.rate, ip, now)
                {
                    warn!(
                        peer = %ip,
                        "{} failed attempts: refusing {ip} for {} s (auth.rate_limit)",
                        p.rate.max_failures,
                        p.rate.ban_s
                    );
                }
                debug!(
                    protocol = req.protocol,
                    cause = %refused.cause,
                    "{req} refused: {}",
                    refused.reason
                );
                Err(Refusal::new(refused.kind, refused.reason))
            }
        }
    }
}
