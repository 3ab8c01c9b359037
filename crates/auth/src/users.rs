//! `[[auth.users]]`, compiled: permissions as globs, passwords checked in
//! constant time (plain) or with argon2 off the async threads (hashes).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use ipnet::IpNet;
use subtle::ConstantTimeEq;
use tidewater_core::{Action, StreamKey};
use tokio::sync::Semaphore;

use crate::ANONYMOUS;
use crate::config::{Permission, Secret, UserConfig};
use crate::error::{Error, Result};
use crate::glob::PathGlob;
use crate::keys::Keys;

/// One permission, compiled.
#[derive(Clone, Debug)]
pub(crate) struct Grant {
    action: Action,
    path: Option<PathGlob>,
}

impl Grant {
    fn covers(&self, action: Action, key: Option<&StreamKey>) -> bool {
        self.action == action
            && match (&self.path, key) {
                (None, _) => true,
                (Some(g), Some(k)) => g.matches(k),
                (Some(_), None) => false,
            }
    }
}

/// Compiles permissions; `at` names them in errors (`auth.users[0].permissions`).
pub(crate) fn compile(perms: &[Permission], at: &str) -> std::result::Result<Vec<Grant>, Error> {
    perms
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let path = match &p.path {
                None => None,
                Some(_) if !p.action.has_stream() => {
                    return Err(Error::config(
                        format!("{at}[{i}].path"),
                        format!(
                            "{} is not about a stream: leave path out (paths apply to publish, read and playback)",
                            p.action
                        ),
                    ));
                }
                Some(text) => Some(
                    PathGlob::parse(text)
                        .map_err(|m| Error::config(format!("{at}[{i}].path"), m))?,
                ),
            };
            Ok(Grant {
                action: p.action,
                path,
            })
        })
        .collect()
}

/// Whether any grant covers the request.
pub(crate) fn grants(grants: &[Grant], action: Action, key: Option<&StreamKey>) -> bool {
    grants.iter().any(|g| g.covers(action, key))
}

/// How a user's password is checked.
#[derive(Clone, Debug)]
pub(crate) enum Password {
    Plain(Secret),
    Hash(String),
}

/// One user, compiled.
#[derive(Clone, Debug)]
pub(crate) struct User {
    pub(crate) name: String,
    pub(crate) password: Option<Password>,
    ips: Vec<IpNet>,
    grants: Vec<Grant>,
}

impl User {
    pub(crate) fn ip_allowed(&self, ip: Option<IpAddr>) -> bool {
        self.ips.is_empty() || ip.is_some_and(|ip| self.ips.iter().any(|n| n.contains(&ip)))
    }

    pub(crate) fn grants(&self, action: Action, key: Option<&StreamKey>) -> bool {
        grants(&self.grants, action, key)
    }
}

/// The user table.
#[derive(Clone, Debug, Default)]
pub(crate) struct Users {
    named: HashMap<String, User>,
    pub(crate) anonymous: Option<User>,
}

impl Users {
    pub(crate) fn compile(users: &[UserConfig]) -> Result<Self> {
        let mut out = Users::default();
        for (i, u) in users.iter().enumerate() {
            let at = format!("auth.users[{i}]");
            if u.user.is_empty() || u.user.chars().any(|c| c.is_control()) {
                return Err(Error::config(
                    format!("{at}.user"),
                    "empty, or contains control characters",
                ));
            }
            let password = match (&u.password, &u.password_hash) {
                (Some(_), Some(_)) => {
                    return Err(Error::config(
                        &at,
                        format!(
                            "user {:?} has both password and password_hash: keep one",
                            u.user
                        ),
                    ));
                }
                (Some(p), None) => Some(Password::Plain(p.clone())),
                (None, Some(h)) => {
                    check_phc(h).map_err(|m| Error::config(format!("{at}.password_hash"), m))?;
                    Some(Password::Hash(h.clone()))
                }
                (None, None) => None,
            };
            let anonymous = u.user == ANONYMOUS;
            match (&password, anonymous) {
                (Some(_), true) => {
                    return Err(Error::config(
                        &at,
                        "user \"any\" is the anonymous user and takes no password",
                    ));
                }
                (None, false) => {
                    return Err(Error::config(
                        &at,
                        format!(
                            "user {:?} has neither password nor password_hash \
                             (the anonymous user is named \"any\")",
                            u.user
                        ),
                    ));
                }
                _ => {}
            }
            let user = User {
                name: u.user.clone(),
                password,
                ips: u.ips.clone(),
                grants: compile(&u.permissions, &format!("{at}.permissions"))?,
            };
            if anonymous {
                if out.anonymous.replace(user).is_some() {
                    return Err(Error::config(&at, "user \"any\" is listed twice"));
                }
            } else if out.named.insert(u.user.clone(), user).is_some() {
                return Err(Error::config(
                    &at,
                    format!("user {:?} is listed twice", u.user),
                ));
            }
        }
        Ok(out)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&User> {
        self.named.get(name)
    }
}

/// Checks that a PHC string is an argon2 hash this crate can verify.
fn check_phc(phc: &str) -> std::result::Result<(), String> {
    let hash = PasswordHash::new(phc)
        .map_err(|e| format!("not a PHC string ({e}); make one with `tidewater hash-password`"))?;
    let alg = hash.algorithm.as_str();
    if !matches!(alg, "argon2id" | "argon2i" | "argon2d") {
        return Err(format!(
            "algorithm {alg:?} is not argon2; make one with `tidewater hash-password`"
        ));
    }
    Ok(())
}

/// Hashes a password with argon2id (RustCrypto's defaults: 19 MiB, 2
/// passes, 1 lane, a random 16-byte salt) into a PHC string for
/// `password_hash`.
///
/// ```
/// let phc = tidewater_auth::hash_password("s3cret")?;
/// assert!(phc.starts_with("$argon2id$v=19$"));
/// # Ok::<(), tidewater_auth::Error>(())
/// ```
pub fn hash_password(plain: &str) -> Result<String> {
    Argon2::default()
        .hash_password(plain.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Hash(e.to_string()))
}

fn verify_phc(phc: &str, plain: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(plain.as_bytes(), &h)
            .is_ok()
    })
}

/// How long a verified hash is remembered, and how many.
const VERIFIED_TTL: Duration = Duration::from_secs(60);
const VERIFIED_MAX: usize = 1024;

/// Checks passwords. Argon2 costs ~19 MiB and tens of milliseconds each: at
/// most `limit` run at once, on blocking threads, and a success is remembered
/// for a minute (as a keyed hash of user, hash and password) so a client that
/// sends Basic credentials on every request pays it once.
#[derive(Debug)]
pub(crate) struct PasswordChecker {
    limit: Arc<Semaphore>,
    verified: Mutex<HashMap<[u8; 32], SystemTime>>,
}

impl PasswordChecker {
    pub(crate) fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        PasswordChecker {
            limit: Arc::new(Semaphore::new(cores)),
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets every remembered success (on a configuration reload).
    pub(crate) fn forget(&self) {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    pub(crate) async fn check(
        &self,
        user: &User,
        plain: &str,
        keys: &Keys,
        now: SystemTime,
    ) -> bool {
        match &user.password {
            None => false,
            Some(Password::Plain(p)) => p.expose().as_bytes().ct_eq(plain.as_bytes()).into(),
            Some(Password::Hash(phc)) => {
                let id = keys.cache_key(&[user.name.as_bytes(), phc.as_bytes(), plain.as_bytes()]);
                {
                    let verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
                    if verified.get(&id).is_some_and(|&until| now < until) {
                        return true;
                    }
                }
                let ok = self.verify_hash(phc, plain).await;
                if ok {
                    let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
                    if verified.len() >= VERIFIED_MAX {
                        verified.retain(|_, until| now < *until);
                        if verified.len() >= VERIFIED_MAX {
                            verified.clear();
                        }
                    }
                    verified.insert(id, now + VERIFIED_TTL);
                }
                ok
            }
        }
    }

    async fn verify_hash(&self, phc: &str, plain: &str) -> bool {
        let Ok(_permit) = self.limit.acquire().await else {
            return false;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let (phc, plain) = (phc.to_string(), plain.to_string());
                rt.spawn_blocking(move || verify_phc(&phc, &plain))
                    .await
                    .unwrap_or(false)
            }
            Err(_) => verify_phc(phc, plain),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> StreamKey {
        StreamKey::parse(s).expect("key")
    }

    #[test]
    fn grants_cover_action_and_path() {
        let g = compile(
            &[
                Permission {
                    action: Action::Publish,
                    path: Some("live/*".into()),
                },
                Permission {
                    action: Action::Read,
                    path: None,
                },
                Permission {
                    action: Action::Api,
                    path: None,
                },
            ],
            "p",
        )
        .expect("compile");
        assert!(grants(&g, Action::Publish, Some(&key("live/a"))));
        assert!(!grants(&g, Action::Publish, Some(&key("other/a"))));
        assert!(grants(&g, Action::Read, Some(&key("other/a"))));
        assert!(!grants(&g, Action::Playback, Some(&key("live/a"))));
        assert!(grants(&g, Action::Api, None));
        assert!(!grants(&g, Action::Metrics, None));
    }

    #[test]
    fn config_mistakes_name_their_key() {
        let e = compile(
            &[Permission {
                action: Action::Api,
                path: Some("live/*".into()),
            }],
            "auth.users[0].permissions",
        )
        .expect_err("api with a path");
        assert!(
            e.to_string()
                .starts_with("auth.users[0].permissions[0].path:"),
            "{e}"
        );

        let both = UserConfig {
            password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".into()),
            ..UserConfig::new("a", "b")
        };
        let cases: Vec<(Vec<UserConfig>, &str)> = vec![
            (vec![both], "both password and password_hash"),
            (
                vec![UserConfig {
                    password: None,
                    ..UserConfig::new("a", "b")
                }],
                "neither password nor password_hash",
            ),
            (
                vec![UserConfig {
                    user: "any".into(),
                    ..UserConfig::new("a", "b")
                }],
                "takes no password",
            ),
            (
                vec![UserConfig::new("a", "b"), UserConfig::new("a", "c")],
                "listed twice",
            ),
            (
                vec![UserConfig {
                    password: None,
                    password_hash: Some("$pbkdf2$x".into()),
                    ..UserConfig::new("a", "b")
                }],
                "hash-password",
            ),
        ];
        for (users, expected) in cases {
            let e = Users::compile(&users).expect_err(expected);
            assert!(e.to_string().contains(expected), "{e}");
        }
    }

    #[test]
    fn ips_restrict_where_from() {
        let mut u = UserConfig::new("a", "b");
        u.ips = vec![
            crate::config::parse_ip_range("192.0.2.0/24").expect("net"),
            crate::config::parse_ip_range("2001:db8::1").expect("net"),
        ];
        let users = Users::compile(&[u]).expect("users");
        let a = users.get("a").expect("a");
        assert!(a.ip_allowed(Some("192.0.2.200".parse().expect("ip"))));
        assert!(!a.ip_allowed(Some("192.0.3.1".parse().expect("ip"))));
        assert!(a.ip_allowed(Some("2001:db8::1".parse().expect("ip"))));
        assert!(!a.ip_allowed(Some("2001:db8::2".parse().expect("ip"))));
        assert!(!a.ip_allowed(None));
    }

    #[tokio::test]
    async fn plain_and_hashed_passwords() {
        let phc = hash_password("hunter2").expect("hash");
        assert!(phc.starts_with("$argon2id$"));
        let users = Users::compile(&[
            UserConfig::new("plain", "hunter2"),
            UserConfig {
                password: None,
                password_hash: Some(phc),
                ..UserConfig::new("hashed", "x")
            },
        ])
        .expect("users");
        let checker = PasswordChecker::new();
        let keys = Keys::new(b"k");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for name in ["plain", "hashed"] {
            let u = users.get(name).expect("user");
            assert!(checker.check(u, "hunter2", &keys, now).await, "{name}");
            assert!(!checker.check(u, "hunter3", &keys, now).await, "{name}");
            assert!(!checker.check(u, "", &keys, now).await, "{name}");
        }
        // The success is remembered, keyed by the password too.
        assert_eq!(
            checker
                .verified
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len(),
            1
        );
        let hashed = users.get("hashed").expect("user");
        assert!(checker.check(hashed, "hunter2", &keys, now).await);
        assert!(!checker.check(hashed, "hunter", &keys, now).await);
    }
}
