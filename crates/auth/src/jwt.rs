//! `[auth.jwt]`: JSON Web Tokens, verified with jsonwebtoken (RustCrypto
//! backend). `exp` (required) and `nbf` are checked against the
//! authorizer's clock, with `leeway_s` of tolerance.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::Deserialize;
use tidewater_core::RefusalKind;
use tracing::warn;

use crate::clock::unix_s;
use crate::config::{JwtConfig, Permission};
use crate::error::{Error, Result};
use crate::stats::{RefusalCause, Refused};
use crate::users::{Grant, compile};

/// How often a JWKS file's modification time is looked at, at most.
const FILE_CHECK: Duration = Duration::from_secs(1);
/// How often a JWKS URL is fetched at most, when a token names a key the set
/// does not have or a fetch failed.
#[cfg(feature = "http")]
const URL_RETRY: Duration = Duration::from_secs(10);
/// How long a JWKS URL may take to answer.
#[cfg(feature = "http")]
const URL_TIMEOUT: Duration = Duration::from_secs(5);

/// The claims read from a token.
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    nbf: Option<f64>,
    #[serde(default)]
    tidewater_permissions: Vec<Permission>,
}

/// A verified token.
#[derive(Debug)]
pub(crate) struct Verified {
    pub(crate) subject: Option<String>,
    pub(crate) grants: Vec<Grant>,
}

/// One usable key of a set.
#[derive(Clone)]
struct KeyEntry {
    kid: Option<String>,
    alg: Option<Algorithm>,
    key: DecodingKey,
    family: AlgorithmFamily,
}

fn family_of(jwk: &Jwk) -> Option<AlgorithmFamily> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(AlgorithmFamily::Rsa),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 | EllipticCurve::P384 => Some(AlgorithmFamily::Ec),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(_) => Some(AlgorithmFamily::Ed),
        // Symmetric keys in a public key set would let anyone who can read the
        // set sign tokens: never used.
        _ => None,
    }
}

/// Parses a JWKS, keeping the keys it can use.
fn parse_jwks(bytes: &[u8]) -> std::result::Result<Vec<KeyEntry>, String> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut out = Vec::new();
    for value in set.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        if jwk
            .common
            .public_key_use
            .as_ref()
            .is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
        {
            continue;
        }
        let Some(family) = family_of(&jwk) else {
            continue;
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|a| Algorithm::try_from(a).ok());
        out.push(KeyEntry {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
            family,
        });
    }
    if out.is_empty() {
        return Err("no usable signature key (RSA, EC P-256/P-384 or Ed25519)".into());
    }
    Ok(out)
}

fn elapsed(since: SystemTime, now: SystemTime) -> Duration {
    // A clock that went back counts as "long ago": look again.
    now.duration_since(since).unwrap_or(Duration::MAX)
}

/// A JWKS file, looked at again at most once a second.
struct FileKeys {
    path: PathBuf,
    state: Mutex<FileState>,
}

struct FileState {
    checked: SystemTime,
    stamp: Option<(Option<SystemTime>, u64)>,
    keys: Arc<Vec<KeyEntry>>,
}

fn stamp(path: &PathBuf) -> std::io::Result<(Option<SystemTime>, u64)> {
    let m = std::fs::metadata(path)?;
    Ok((m.modified().ok(), m.len()))
}

impl FileKeys {
    fn load(path: PathBuf, now: SystemTime) -> Result<Self> {
        let io = |source| Error::Io {
            key: "auth.jwt.jwks_file",
            path: path.clone(),
            source,
        };
        let st = stamp(&path).map_err(io)?;
        let bytes = std::fs::read(&path).map_err(io)?;
        let keys = parse_jwks(&bytes).map_err(|m| Error::config("auth.jwt.jwks_file", m))?;
        Ok(FileKeys {
            state: Mutex::new(FileState {
                checked: now,
                stamp: Some(st),
                keys: Arc::new(keys),
            }),
            path,
        })
    }

    fn keys(&self, now: SystemTime) -> Arc<Vec<KeyEntry>> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if elapsed(st.checked, now) >= FILE_CHECK {
            st.checked = now;
            match stamp(&self.path) {
                Ok(s) if Some(s) != st.stamp => {
                    // Remembered even when the content is bad, so a broken
                    // file is reported once per change, not once a second.
                    st.stamp = Some(s);
                    match std::fs::read(&self.path)
                        .map_err(|e| e.to_string())
                        .and_then(|b| parse_jwks(&b))
                    {
                        Ok(keys) => {
                            tracing::info!(
                                path = %self.path.display(),
                                keys = keys.len(),
                                "auth.jwt.jwks_file reloaded"
                            );
                            st.keys = Arc::new(keys);
                        }
                        Err(e) => warn!(
                            path = %self.path.display(),
                            "auth.jwt.jwks_file changed but cannot be used, keeping the previous keys: {e}"
                        ),
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if st.stamp.take().is_some() {
                        warn!(
                            path = %self.path.display(),
                            "auth.jwt.jwks_file cannot be read, keeping the previous keys: {e}"
                        );
                    }
                }
            }
        }
        Arc::clone(&st.keys)
    }
}

/// A JWKS URL, fetched on use when due.
#[cfg(feature = "http")]
struct UrlKeys {
    url: hyper::Uri,
    shown: String,
    refresh: Duration,
    client: crate::http::HttpClient,
    state: tokio::sync::Mutex<UrlState>,
}

#[cfg(feature = "http")]
#[derive(Default)]
struct UrlState {
    fetched: Option<SystemTime>,
    attempted: Option<SystemTime>,
    keys: Arc<Vec<KeyEntry>>,
}

#[cfg(feature = "http")]
impl UrlKeys {
    async fn fetch(&self) -> std::result::Result<Vec<KeyEntry>, String> {
        let req = hyper::Request::get(self.url.clone())
            .header(hyper::header::ACCEPT, "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .map_err(|e| e.to_string())?;
        let (status, body) = self
            .client
            .send(req, URL_TIMEOUT, crate::http::MAX_BODY)
            .await?;
        if !status.is_success() {
            return Err(format!("answered {status}"));
        }
        parse_jwks(&body)
    }

    async fn keys(
        &self,
        now: SystemTime,
        kid: Option<&str>,
    ) -> std::result::Result<Arc<Vec<KeyEntry>>, String> {
        let mut st = self.state.lock().await;
        let stale = st.fetched.is_none_or(|f| elapsed(f, now) >= self.refresh);
        let unknown = kid.is_some_and(|k| !st.keys.iter().any(|e| e.kid.as_deref() == Some(k)));
        let may_try = st.attempted.is_none_or(|a| elapsed(a, now) >= URL_RETRY);
        if (stale || unknown) && may_try {
            st.attempted = Some(now);
            match self.fetch().await {
                Ok(keys) => {
                    st.keys = Arc::new(keys);
                    st.fetched = Some(now);
                }
                Err(e) => warn!(
                    url = %self.shown,
                    "auth.jwt.jwks_url could not be fetched{}: {e}",
                    if st.fetched.is_some() { ", keeping the previous keys" } else { "" }
                ),
            }
        }
        if st.fetched.is_none() {
            return Err(format!(
                "the key set at auth.jwt.jwks_url ({}) could not be fetched yet",
                self.shown
            ));
        }
        Ok(Arc::clone(&st.keys))
    }
}

enum Source {
    Secret(DecodingKey),
    File(FileKeys),
    #[cfg(feature = "http")]
    Url(Box<UrlKeys>),
}

/// The configured verifier.
pub(crate) struct Jwt {
    source: Source,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// Whether a token has the shape of a JWS compact serialization.
pub(crate) fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn invalid(reason: impl Into<String>) -> Refused {
    Refused::new(
        RefusalCause::InvalidToken,
        RefusalKind::InvalidCredentials,
        reason,
    )
}

impl Jwt {
    pub(crate) fn new(
        cfg: &JwtConfig,
        now: SystemTime,
        #[cfg(feature = "http")] client: &crate::http::HttpClient,
    ) -> Result<Self> {
        if jsonwebtoken::crypto::CryptoProvider::try_get_default().is_none() {
            return Err(Error::config(
                "auth.jwt",
                "jsonwebtoken has no crypto backend in this build (exactly one of its rust_crypto and aws_lc_rs features must be on)",
            ));
        }
        let set = [
            cfg.secret.is_some(),
            cfg.jwks_file.is_some(),
            cfg.jwks_url.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if set != 1 {
            return Err(Error::config(
                "auth.jwt",
                "set exactly one of secret (HS256), jwks_file or jwks_url",
            ));
        }
        let source = if let Some(secret) = &cfg.secret {
            if secret.expose().is_empty() {
                return Err(Error::config("auth.jwt.secret", "empty"));
            }
            Source::Secret(
                DecodingKey::from_secret(secret.expose().as_bytes())
                    .map_err(|e| Error::config("auth.jwt.secret", e.to_string()))?,
            )
        } else if let Some(path) = &cfg.jwks_file {
            Source::File(FileKeys::load(path.clone(), now)?)
        } else {
            #[cfg(feature = "http")]
            {
                let text = cfg.jwks_url.as_deref().unwrap_or_default();
                let url = crate::http::parse_url("auth.jwt.jwks_url", text)?;
                if cfg.jwks_refresh_s == 0 {
                    return Err(Error::config(
                        "auth.jwt.jwks_refresh_s",
                        "must be more than 0",
                    ));
                }
                Source::Url(Box::new(UrlKeys {
                    shown: crate::http::shown(&url),
                    url,
                    refresh: Duration::from_secs(cfg.jwks_refresh_s),
                    client: client.clone(),
                    state: tokio::sync::Mutex::new(UrlState::default()),
                }))
            }
            #[cfg(not(feature = "http"))]
            return Err(Error::FeatureDisabled {
                key: "auth.jwt.jwks_url",
                feature: "http",
            });
        };
        Ok(Jwt {
            source,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            leeway: cfg.leeway_s,
        })
    }

    /// Verifies a token at `now`.
    pub(crate) async fn verify(
        &self,
        token: &str,
        now: SystemTime,
    ) -> std::result::Result<Verified, Refused> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| invalid("invalid token: not a JWT"))?;
        let alg = header.alg;
        let keys: Vec<(DecodingKey, &'static str)> = match &self.source {
            Source::Secret(key) => {
                if alg.family() != AlgorithmFamily::Hmac {
                    return Err(invalid(format!(
                        "invalid token: signed with {alg:?}, but auth.jwt has a secret (HS256)"
                    )));
                }
                vec![(key.clone(), "auth.jwt.secret")]
            }
            Source::File(f) => select(
                &f.keys(now),
                alg,
                header.kid.as_deref(),
                "auth.jwt.jwks_file",
            )?,
            #[cfg(feature = "http")]
            Source::Url(u) => {
                let keys = u.keys(now, header.kid.as_deref()).await.map_err(|e| {
                    Refused::new(RefusalCause::Unavailable, RefusalKind::Unavailable, e)
                })?;
                select(&keys, alg, header.kid.as_deref(), "auth.jwt.jwks_url")?
            }
        };
        let mut validation = Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims.clear();
        validation.leeway = self.leeway;
        // A configured audience or issuer must be present, not only right
        // when present.
        match &self.audience {
            Some(a) => {
                validation.set_audience(&[a]);
                validation.required_spec_claims.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        if let Some(i) = &self.issuer {
            validation.set_issuer(&[i]);
            validation.required_spec_claims.insert("iss".into());
        }
        let mut last = None;
        let mut claims = None;
        for (key, from) in &keys {
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => {
                    claims = Some(data.claims);
                    break;
                }
                Err(e) => last = Some((e, *from)),
            }
        }
        let claims = match (claims, last) {
            (Some(c), _) => c,
            (None, Some((e, from))) => return Err(self.explain(&e, from)),
            (None, None) => return Err(invalid("invalid token: no key to verify it")),
        };
        let now_s = unix_s(now) as f64;
        let leeway = self.leeway as f64;
        match claims.exp {
            None => return Err(invalid("invalid token: it has no exp claim (required)")),
            Some(exp) if now_s > exp + leeway => {
                return Err(invalid("invalid token: expired (exp)"));
            }
            Some(_) => {}
        }
        if claims.nbf.is_some_and(|nbf| now_s + leeway < nbf) {
            return Err(invalid("invalid token: not valid yet (nbf)"));
        }
        let grants = compile(&claims.tidewater_permissions, "tidewater_permissions")
            .map_err(|e| invalid(format!("invalid token: claim {e}")))?;
        Ok(Verified {
            subject: claims.sub,
            grants,
        })
    }

    fn explain(&self, e: &jsonwebtoken::errors::Error, from: &str) -> Refused {
        use jsonwebtoken::errors::ErrorKind as K;
        let why = match e.kind() {
            K::InvalidSignature => format!("signature does not match {from}"),
            K::InvalidAudience => match &self.audience {
                Some(a) => format!("aud is not {a:?} (auth.jwt.audience)"),
                None => "wrong audience".into(),
            },
            K::InvalidIssuer => match &self.issuer {
                Some(i) => format!("iss is not {i:?} (auth.jwt.issuer)"),
                None => "wrong issuer".into(),
            },
            K::MissingRequiredClaim(c) => format!("claim {c} is missing"),
            K::InvalidAlgorithm => format!("its algorithm does not fit the key from {from}"),
            K::Json(_) | K::InvalidClaimFormat(_) => {
                "malformed claims (tidewater_permissions is a list of { action, path })".into()
            }
            K::Base64(_) | K::Utf8(_) | K::InvalidToken => "malformed".into(),
            _ => "cannot be verified".into(),
        };
        invalid(format!("invalid token: {why}"))
    }
}

/// The keys of a set that may have signed a token of `alg` with `kid`.
fn select(
    keys: &[KeyEntry],
    alg: Algorithm,
    kid: Option<&str>,
    from: &'static str,
) -> std::result::Result<Vec<(DecodingKey, &'static str)>, Refused> {
    if alg.family() == AlgorithmFamily::Hmac {
        return Err(invalid(format!(
            "invalid token: signed with {alg:?}, but {from} holds public keys (RS256, ES256, …)"
        )));
    }
    let picked: Vec<_> = keys
        .iter()
        .filter(|k| kid.is_none_or(|kid| k.kid.as_deref() == Some(kid)))
        .filter(|k| k.family == alg.family() && k.alg.is_none_or(|a| a == alg))
        .map(|k| (k.key.clone(), from))
        .collect();
    if picked.is_empty() {
        return Err(invalid(match kid {
            Some(kid) => format!(
                "invalid token: no {alg:?} key with kid {:?} in {from}",
                kid.chars().take(64).collect::<String>()
            ),
            None => format!("invalid token: no {alg:?} key in {from}"),
        }));
    }
    Ok(picked)
}
