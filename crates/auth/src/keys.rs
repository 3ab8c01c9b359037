//! The server's own keys and what it signs with them: short-lived read
//! tokens for playlist URIs, and Digest nonces.
//!
//! One secret (configured `token_secret`, else 32 random bytes per process)
//! is split into one HMAC-SHA256 key per use, so a value signed for one use is
//! never accepted for another.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tidewater_core::StreamKey;

use crate::clock::unix_s;
use crate::error::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

/// The prefix that tells a signed read token from a JWT or a hook's token.
pub(crate) const READ_TOKEN_PREFIX: &str = "tw1.";

/// How long a Digest nonce stays valid.
pub(crate) const NONCE_TTL: Duration = Duration::from_secs(300);

/// The per-use keys.
#[derive(Clone)]
pub(crate) struct Keys {
    read_token: [u8; 32],
    nonce: [u8; 32],
    cache: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(***)")
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length.
    match <HmacSha256 as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts every key length"),
    }
}

fn derive(master: &[u8], label: &str) -> [u8; 32] {
    let mut m = mac(master);
    m.update(label.as_bytes());
    m.finalize().into_bytes().into()
}

/// 32 random bytes from the operating system.
pub(crate) fn random_32() -> Result<[u8; 32]> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| Error::Random(e.to_string()))?;
    Ok(b)
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // A token id only needs to differ between players; the MAC protects it.
    if getrandom::fill(&mut b).is_err() {
        use std::sync::atomic::{AtomicU64, Ordering};
        static FALLBACK: AtomicU64 = AtomicU64::new(1);
        return FALLBACK.fetch_add(1, Ordering::Relaxed);
    }
    u64::from_be_bytes(b)
}

impl Keys {
    pub(crate) fn new(master: &[u8]) -> Self {
        Keys {
            read_token: derive(master, "tidewater read token v1"),
            nonce: derive(master, "tidewater digest nonce v1"),
            cache: derive(master, "tidewater cache key v1"),
        }
    }

    /// A keyed hash of cache-key material (which may hold a password): what a
    /// cache stores instead of the material.
    pub(crate) fn cache_key(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut m = mac(&self.cache);
        for p in parts {
            m.update(&(p.len() as u64).to_be_bytes());
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    fn read_token_mac(&self, key: &StreamKey, payload: &[u8]) -> HmacSha256 {
        let mut m = mac(&self.read_token);
        m.update(key.as_str().as_bytes());
        m.update(&[0]);
        m.update(payload);
        m
    }

    /// `tw1.<payload>.<mac>`: the payload is the expiry (Unix seconds), a
    /// random id and the user name; the MAC binds them to the stream key.
    pub(crate) fn sign_read_token(
        &self,
        key: &StreamKey,
        expires: SystemTime,
        user: Option<&str>,
    ) -> String {
        let mut payload = Vec::with_capacity(16 + user.map_or(0, str::len));
        payload.extend_from_slice(&unix_s(expires).to_be_bytes());
        payload.extend_from_slice(&random_u64().to_be_bytes());
        if let Some(u) = user {
            payload.extend_from_slice(u.as_bytes());
        }
        let tag = self.read_token_mac(key, &payload).finalize().into_bytes();
        format!(
            "{READ_TOKEN_PREFIX}{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// Checks a read token for `key` at `now`.
    pub(crate) fn verify_read_token(
        &self,
        key: &StreamKey,
        token: &str,
        now: SystemTime,
    ) -> Result<ReadToken, ReadTokenError> {
        let rest = token
            .strip_prefix(READ_TOKEN_PREFIX)
            .ok_or(ReadTokenError::Malformed)?;
        let (payload, tag) = rest.split_once('.').ok_or(ReadTokenError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| ReadTokenError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| ReadTokenError::Malformed)?;
        if payload.len() < 16 || payload.len() > 16 + 256 {
            return Err(ReadTokenError::Malformed);
        }
        self.read_token_mac(key, &payload)
            .verify_slice(&tag)
            .map_err(|_| ReadTokenError::BadSignature)?;
        let (exp, rest) = payload
            .split_first_chunk::<8>()
            .ok_or(ReadTokenError::Malformed)?;
        let (id, user) = rest
            .split_first_chunk::<8>()
            .ok_or(ReadTokenError::Malformed)?;
        let expires = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from_be_bytes(*exp));
        if now >= expires {
            return Err(ReadTokenError::Expired);
        }
        let user = match user {
            [] => None,
            u => Some(String::from_utf8(u.to_vec()).map_err(|_| ReadTokenError::Malformed)?),
        };
        Ok(ReadToken {
            id: u64::from_be_bytes(*id),
            user,
            expires,
        })
    }

    /// A Digest nonce: its issue time and a MAC over it, in hex.
    pub(crate) fn digest_nonce(&self, now: SystemTime) -> String {
        let ts = unix_s(now).to_be_bytes();
        let mut m = mac(&self.nonce);
        m.update(&ts);
        let tag = m.finalize().into_bytes();
        let mut out = String::with_capacity(48);
        crate::digest::hex_into(&ts, &mut out);
        crate::digest::hex_into(tag.iter().take(16), &mut out);
        out
    }

    /// Whether a nonce is one of ours and still fresh.
    pub(crate) fn check_digest_nonce(&self, nonce: &str, now: SystemTime) -> NonceCheck {
        let Some(bytes) = crate::digest::unhex(nonce).filter(|b| b.len() == 24) else {
            return NonceCheck::Invalid;
        };
        let Some((ts, tag)) = bytes.split_first_chunk::<8>() else {
            return NonceCheck::Invalid;
        };
        let mut m = mac(&self.nonce);
        m.update(ts);
        if m.verify_truncated_left(tag).is_err() {
            return NonceCheck::Invalid;
        }
        let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from_be_bytes(*ts));
        match now.duration_since(issued) {
            Ok(age) if age <= NONCE_TTL => NonceCheck::Fresh,
            // Issued "in the future": the clock went back; fine within the TTL.
            Err(e) if e.duration() <= NONCE_TTL => NonceCheck::Fresh,
            _ => NonceCheck::Stale,
        }
    }
}

/// What a valid signed read token says.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadToken {
    /// A random id, different for every token signed: tells players apart.
    pub id: u64,
    /// The user it was signed for, if any.
    pub user: Option<String>,
    /// When it stops being accepted.
    pub expires: SystemTime,
}

/// Why a signed read token was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadTokenError {
    Malformed,
    BadSignature,
    Expired,
}

impl ReadTokenError {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            ReadTokenError::Malformed => "malformed",
            ReadTokenError::BadSignature => {
                "signed for another stream or by another server (restarted, or a different auth.token_secret)"
            }
            ReadTokenError::Expired => "expired; reload the playlist for a fresh one",
        }
    }
}

/// The state of a Digest nonce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NonceCheck {
    Fresh,
    Stale,
    Invalid,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> StreamKey {
        StreamKey::parse(s).expect("key")
    }

    #[test]
    fn read_tokens_round_trip_and_expire() {
        let keys = Keys::new(b"master");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let t = keys.sign_read_token(&key("live/a"), now + Duration::from_secs(60), Some("bob"));
        assert!(t.starts_with(READ_TOKEN_PREFIX));
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        );
        let ok = keys
            .verify_read_token(&key("live/a"), &t, now)
            .expect("valid");
        assert_eq!(ok.user.as_deref(), Some("bob"));
        assert_eq!(ok.expires, now + Duration::from_secs(60));
        assert_eq!(
            keys.verify_read_token(&key("live/a"), &t, now + Duration::from_secs(60)),
            Err(ReadTokenError::Expired)
        );
        assert_eq!(
            keys.verify_read_token(&key("live/b"), &t, now),
            Err(ReadTokenError::BadSignature)
        );
        assert_eq!(
            Keys::new(b"other").verify_read_token(&key("live/a"), &t, now),
            Err(ReadTokenError::BadSignature)
        );
        let t2 = keys.sign_read_token(&key("live/a"), now + Duration::from_secs(60), None);
        let ok2 = keys
            .verify_read_token(&key("live/a"), &t2, now)
            .expect("valid");
        assert_ne!(ok.id, ok2.id, "each token has its own id");
        assert_eq!(ok2.user, None);
        for bad in ["tw1.", "tw1.x.y", "eyJ.a.b", "tw1.AAAA.AAAA"] {
            assert!(
                keys.verify_read_token(&key("live/a"), bad, now).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn nonces_are_ours_and_go_stale() {
        let keys = Keys::new(b"master");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let n = keys.digest_nonce(now);
        assert_eq!(n.len(), 48);
        assert_eq!(keys.check_digest_nonce(&n, now), NonceCheck::Fresh);
        assert_eq!(
            keys.check_digest_nonce(&n, now + NONCE_TTL),
            NonceCheck::Fresh
        );
        assert_eq!(
            keys.check_digest_nonce(&n, now + NONCE_TTL + Duration::from_secs(1)),
            NonceCheck::Stale
        );
        assert_eq!(
            Keys::new(b"other").check_digest_nonce(&n, now),
            NonceCheck::Invalid
        );
        assert_eq!(keys.check_digest_nonce("abc", now), NonceCheck::Invalid);
    }
}
