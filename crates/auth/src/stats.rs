//! Counters of decisions, by cause: plain atomics, read as a snapshot.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use tidewater_core::RefusalKind;

/// Why a request was refused, for counters and metrics labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RefusalCause {
    /// No credentials, and anonymous access does not cover the request
    /// (this includes the loopback-only defaults).
    AnonymousNotAllowed,
    /// Unknown user or wrong password (plain, hash or Digest).
    InvalidCredentials,
    /// A JWT or signed read token that is malformed, expired, badly signed, or
    /// for another audience, issuer or stream.
    InvalidToken,
    /// Recognized, but without the permission.
    NotPermitted,
    /// Recognized, but not from this address (`ips`).
    AddressNotAllowed,
    /// Too many failed attempts from the address.
    RateLimited,
    /// The HTTP hook answered no.
    HookRefused,
    /// The HTTP hook or the JWKS URL could not be asked.
    Unavailable,
}

impl RefusalCause {
    /// Every cause, in a stable order.
    pub const ALL: [RefusalCause; 8] = [
        RefusalCause::AnonymousNotAllowed,
        RefusalCause::InvalidCredentials,
        RefusalCause::InvalidToken,
        RefusalCause::NotPermitted,
        RefusalCause::AddressNotAllowed,
        RefusalCause::RateLimited,
        RefusalCause::HookRefused,
        RefusalCause::Unavailable,
    ];

    /// A `snake_case` name, fit for a metrics label.
    pub const fn as_str(self) -> &'static str {
        match self {
            RefusalCause::AnonymousNotAllowed => "anonymous_not_allowed",
            RefusalCause::InvalidCredentials => "invalid_credentials",
            RefusalCause::InvalidToken => "invalid_token",
            RefusalCause::NotPermitted => "not_permitted",
            RefusalCause::AddressNotAllowed => "address_not_allowed",
            RefusalCause::RateLimited => "rate_limited",
            RefusalCause::HookRefused => "hook_refused",
            RefusalCause::Unavailable => "unavailable",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RefusalCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal, with its cause for the counters.
#[derive(Clone, Debug)]
pub(crate) struct Refused {
    pub(crate) cause: RefusalCause,
    pub(crate) kind: RefusalKind,
    pub(crate) reason: String,
}

impl Refused {
    pub(crate) fn new(cause: RefusalCause, kind: RefusalKind, reason: impl Into<String>) -> Self {
        Refused {
            cause,
            kind,
            reason: reason.into(),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    allowed: AtomicU64,
    refused: [AtomicU64; RefusalCause::ALL.len()],
}

impl Counters {
    pub(crate) fn allowed(&self) {
        self.allowed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refused(&self, cause: RefusalCause) {
        // One counter per cause: `index` is below `ALL.len()`, the array's.
        if let Some(n) = self.refused.get(cause.index()) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> AuthStats {
        AuthStats {
            allowed: self.allowed.load(Ordering::Relaxed),
            refused: RefusalCause::ALL.map(|c| {
                let n = self.refused.get(c.index());
                (c, n.map_or(0, |n| n.load(Ordering::Relaxed)))
            }),
        }
    }
}

/// What the authorizer decided so far.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthStats {
    /// Requests allowed.
    pub allowed: u64,
    /// Requests refused, per cause: every cause, in [`RefusalCause::ALL`]
    /// order, zeros included (a stable set of metrics series).
    pub refused: [(RefusalCause, u64); RefusalCause::ALL.len()],
}

impl AuthStats {
    /// Refusals of one cause.
    pub fn refused(&self, cause: RefusalCause) -> u64 {
        self.refused.get(cause.index()).map_or(0, |(_, n)| *n)
    }

    /// All refusals.
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().map(|(_, n)| n).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_cause() {
        let c = Counters::default();
        c.allowed();
        c.refused(RefusalCause::RateLimited);
        c.refused(RefusalCause::RateLimited);
        c.refused(RefusalCause::NotPermitted);
        let s = c.snapshot();
        assert_eq!(s.allowed, 1);
        assert_eq!(s.refused(RefusalCause::RateLimited), 2);
        assert_eq!(s.refused(RefusalCause::NotPermitted), 1);
        assert_eq!(s.refused(RefusalCause::Unavailable), 0);
        assert_eq!(s.refused_total(), 3);
        for (i, c) in RefusalCause::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
            assert_eq!(s.refused[i].0, *c);
        }
    }
}
