//! Trickle ICE in a `PATCH` (RFC 9725 §4.3.1): the SDP fragment of RFC
//! 8840 (`application/trickle-ice-sdpfrag`) read into candidates.
//!
//! The server is ICE-lite and learns a client's addresses from its
//! connectivity checks, so trickled candidates only add pairs str0m may
//! check earlier; they are accepted (`204`) so that clients that trickle
//! work as the RFC expects. An ICE restart (a `PATCH` with `If-Match: *`
//! and new credentials) is not supported (`422`, as RFC 9725 asks of a
//! session that trickles but does not restart).
// Reads a client's trickled SDP fragment: no indexing, unwrap, expect or
// panic outside tests (RELIABILITY.md, "Lints").
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::expect_used,
        clippy::unwrap_used,
        clippy::panic
    )
)]

use str0m::Candidate;

use crate::error::Error;

/// The most candidates one fragment may carry.
pub const MAX_CANDIDATES: usize = 64;
/// The content type of a trickle or restart `PATCH`.
pub const CONTENT_TYPE: &str = "application/trickle-ice-sdpfrag";

/// What a fragment carries.
#[derive(Debug, Default)]
pub struct Fragment {
    /// The candidates that name an IP address.
    pub candidates: Vec<Candidate>,
    /// Candidates left out: an mDNS name (`….local`) cannot be resolved here.
    pub unresolved: usize,
    /// The client's ICE username fragment, when given.
    pub ice_ufrag: Option<String>,
    /// Whether the client's ICE password was given.
    pub ice_pwd: bool,
    /// `a=end-of-candidates`.
    pub end_of_candidates: bool,
}

fn bad(message: impl Into<String>) -> Error {
    Error::Signalling(message.into())
}

/// Reads an SDP fragment: `a=` and `m=` lines (others refused), at most
/// [`MAX_CANDIDATES`] candidates, each of which must parse.
pub fn parse_fragment(body: &str) -> Result<Fragment, Error> {
    let mut fragment = Fragment::default();
    for line in body.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with("m=") {
            continue;
        }
        let Some(attribute) = line.strip_prefix("a=") else {
            return Err(bad(format!(
                "not an SDP fragment line: {:?}",
                line.chars().take(40).collect::<String>()
            )));
        };
        if let Some(ufrag) = attribute.strip_prefix("ice-ufrag:") {
            fragment.ice_ufrag = Some(ufrag.trim().to_owned());
        } else if attribute.starts_with("ice-pwd:") {
            fragment.ice_pwd = true;
        } else if attribute == "end-of-candidates" {
            fragment.end_of_candidates = true;
        } else if attribute.starts_with("candidate:") {
            if fragment.candidates.len() + fragment.unresolved >= MAX_CANDIDATES {
                return Err(bad(format!(
                    "more than {MAX_CANDIDATES} candidates in one fragment"
                )));
            }
            // The connection address is the fifth field.
            if attribute
                .split_whitespace()
                .nth(4)
                .is_some_and(|a| a.ends_with(".local"))
            {
                fragment.unresolved += 1;
                continue;
            }
            let candidate = Candidate::from_sdp_string(attribute)
                .map_err(|e| bad(format!("a candidate does not parse: {e}")))?;
            fragment.candidates.push(candidate);
        }
        // Other attributes (a=mid, a=group, a=ice-options) say nothing new.
    }
    Ok(fragment)
}

/// Whether an `If-Match` value asks for an ICE restart (`*`, RFC 9725
/// §4.4.1).
pub fn is_restart(if_match: &str) -> bool {
    if_match.trim() == "*"
}

/// Whether an `If-Match` value matches the session's ETag (`"{id}"`);
/// `*` matches any session (it marks an ICE restart).
pub fn if_match(value: &str, id: &str) -> bool {
    value.split(',').map(str::trim).any(|tag| {
        tag == "*"
            || tag
                .strip_prefix("W/")
                .unwrap_or(tag)
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                == Some(id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROMIUM: &str = "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
        a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw network-id 1\r\n\
        a=candidate:3471623853 1 udp 2122194687 4f0e6b5c-8f1e-4d8b-9d6a-2f1e8c3b7a11.local 61765 typ host\r\n\
        a=end-of-candidates\r\n";

    #[test]
    fn a_browsers_fragment_is_read() {
        let f = parse_fragment(CHROMIUM).expect("parses");
        assert_eq!(f.candidates.len(), 1);
        assert_eq!(
            f.candidates[0].addr(),
            "192.0.2.1:61764".parse().expect("addr")
        );
        assert_eq!(f.unresolved, 1);
        assert_eq!(f.ice_ufrag.as_deref(), Some("EsAw"));
        assert!(f.ice_pwd && f.end_of_candidates);
        let plain = parse_fragment("a=end-of-candidates\r\n").expect("parses");
        assert!(!plain.ice_pwd && plain.candidates.is_empty());
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        for body in [
            "hello",
            "a=candidate:1 1 udp nope 192.0.2.1 1 typ host",
            "a=candidate:",
        ] {
            let e = parse_fragment(body).expect_err(body);
            assert!(e.to_string().contains("fragment") || e.to_string().contains("candidate"));
        }
        let many: String = (0..=MAX_CANDIDATES)
            .map(|i| {
                format!(
                    "a=candidate:{i} 1 udp 1 192.0.2.1 {} typ host\r\n",
                    1000 + i
                )
            })
            .collect();
        assert!(parse_fragment(&many).is_err());
    }

    #[test]
    fn if_match_compares_the_etag() {
        assert!(if_match("\"abc\"", "abc"));
        assert!(if_match("W/\"abc\"", "abc"));
        assert!(if_match("*", "abc"));
        assert!(!if_match("\"abd\"", "abc"));
        assert!(!if_match("abc", "abc"));
    }
}
