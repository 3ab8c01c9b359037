//! HTTP/RTSP Digest (RFC 2617, RFC 7616) with MD5 or SHA-256, without `qop`
//! or with `qop=auth`.

use md5::{Digest, Md5};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tidewater_core::DigestCredentials;

/// Appends `bytes` to `out` in lowercase hex.
pub(crate) fn hex_into<'a>(bytes: impl IntoIterator<Item = &'a u8>, out: &mut String) {
    for &b in bytes {
        for nibble in [b >> 4, b & 0xf] {
            // A nibble is below 16, so `from_digit` always has a digit.
            out.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
        }
    }
}

pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks_exact(2)
        .map(|p| match *p {
            [hi, lo] => Some(nibble(hi)? << 4 | nibble(lo)?),
            _ => None,
        })
        .collect()
}

/// The lowercase hex hash of `parts` joined by `:`, as RFC 7616 §3.4.1
/// builds `A1`, `A2` and the response.
fn hash_hex<H: Digest>(parts: &[&str]) -> String {
    let mut h = H::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    let mut out = String::with_capacity(digest.len() * 2);
    hex_into(&digest, &mut out);
    out
}

#[cfg(test)]
fn md5_hex(parts: &[&str]) -> String {
    hash_hex::<Md5>(parts)
}

/// Whether a Digest response was computed with `password`.
///
/// Pure RFC 2617 / RFC 7616 arithmetic: `algorithm` absent or `MD5`, or
/// `SHA-256`; `qop` absent or `auth` (`auth-int`, the `-sess` variants,
/// `SHA-512-256` and `userhash` are refused). It checks neither
/// the nonce nor the realm: [`Authorization`](crate::Authorization) does, for
/// nonces from [`Authorization::digest_nonce`](crate::Authorization::digest_nonce).
///
/// Only a plain password can be checked this way: a user configured with a
/// `password_hash`, or known only to the HTTP hook, cannot use Digest.
///
/// ```
/// use tidewater_auth::verify_digest;
/// use tidewater_core::DigestCredentials;
///
/// // RFC 2617 §3.5.
/// let d = DigestCredentials {
///     user: "Mufasa".into(),
///     realm: "testrealm@host.com".into(),
///     nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093".into(),
///     uri: "/dir/index.html".into(),
///     method: "GET".into(),
///     response: "6629fae49393a05397450978507c4ef1".into(),
///     qop: Some("auth".into()),
///     nc: Some("00000001".into()),
///     cnonce: Some("0a4f113b".into()),
///     ..DigestCredentials::default()
/// };
/// assert!(verify_digest(&d, "Circle Of Life"));
/// assert!(!verify_digest(&d, "circle of life"));
/// ```
pub fn verify_digest(d: &DigestCredentials, password: &str) -> bool {
    match d.algorithm.as_deref() {
        None => expected::<Md5>(d, password),
        Some(a) if a.eq_ignore_ascii_case("MD5") => expected::<Md5>(d, password),
        Some(a) if a.eq_ignore_ascii_case("SHA-256") => expected::<Sha256>(d, password),
        Some(_) => None,
    }
    .is_some_and(|expected| {
        let given = d.response.to_ascii_lowercase();
        expected.as_bytes().ct_eq(given.as_bytes()).into()
    })
}

/// The response a client knowing `password` sends, with hash `H`; `None`
/// for a `qop` this does not support or `qop=auth` without `nc`/`cnonce`.
fn expected<H: Digest>(d: &DigestCredentials, password: &str) -> Option<String> {
    let ha1 = hash_hex::<H>(&[&d.user, &d.realm, password]);
    let ha2 = hash_hex::<H>(&[&d.method, &d.uri]);
    match d.qop.as_deref() {
        None => Some(hash_hex::<H>(&[&ha1, &d.nonce, &ha2])),
        Some(q) if q.eq_ignore_ascii_case("auth") => {
            let (nc, cnonce) = (d.nc.as_deref()?, d.cnonce.as_deref()?);
            Some(hash_hex::<H>(&[&ha1, &d.nonce, nc, cnonce, q, &ha2]))
        }
        Some(_) => None,
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 §3.5's worked example.
    fn rfc2617() -> DigestCredentials {
        DigestCredentials {
            user: "Mufasa".into(),
            realm: "testrealm@host.com".into(),
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093".into(),
            uri: "/dir/index.html".into(),
            method: "GET".into(),
            response: "6629fae49393a05397450978507c4ef1".into(),
            algorithm: None,
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
            cnonce: Some("0a4f113b".into()),
        }
    }

    #[test]
    fn rfc2617_worked_example_with_qop_auth() {
        let d = rfc2617();
        assert!(verify_digest(&d, "Circle Of Life"));
        assert!(!verify_digest(&d, "Circle of Life"));
        let upper = DigestCredentials {
            response: d.response.to_uppercase(),
            ..d.clone()
        };
        assert!(verify_digest(&upper, "Circle Of Life"));
        let md5 = DigestCredentials {
            algorithm: Some("MD5".into()),
            ..d.clone()
        };
        assert!(verify_digest(&md5, "Circle Of Life"));
        for changed in [
            DigestCredentials {
                uri: "/dir/other.html".into(),
                ..d.clone()
            },
            DigestCredentials {
                nc: Some("00000002".into()),
                ..d.clone()
            },
            DigestCredentials {
                method: "POST".into(),
                ..d.clone()
            },
            DigestCredentials {
                algorithm: Some("SHA-256".into()),
                ..d.clone()
            },
            DigestCredentials {
                algorithm: Some("MD5-sess".into()),
                ..d.clone()
            },
            DigestCredentials {
                qop: Some("auth-int".into()),
                ..d.clone()
            },
            DigestCredentials { nc: None, ..d },
        ] {
            assert!(!verify_digest(&changed, "Circle Of Life"), "{changed:?}");
        }
    }

    #[test]
    fn without_qop_rfc2069_form() {
        // HA1 = MD5("Mufasa:testrealm@host.com:Circle Of Life")
        //     = 939e7578ed9e3c518a452acee763bce9
        // HA2 = MD5("GET:/dir/index.html") = 39aff3a2bab6126f332b942af96d3366
        // response = MD5(HA1:nonce:HA2)
        let d = DigestCredentials {
            qop: None,
            nc: None,
            cnonce: None,
            response: md5_hex(&[
                "939e7578ed9e3c518a452acee763bce9",
                "dcd98b7102dd2f0e8b11d0f600bfb0c093",
                "39aff3a2bab6126f332b942af96d3366",
            ]),
            ..rfc2617()
        };
        assert_eq!(
            md5_hex(&["Mufasa", "testrealm@host.com", "Circle Of Life"]),
            "939e7578ed9e3c518a452acee763bce9"
        );
        assert_eq!(
            md5_hex(&["GET", "/dir/index.html"]),
            "39aff3a2bab6126f332b942af96d3366"
        );
        assert!(verify_digest(&d, "Circle Of Life"));
        assert!(!verify_digest(&d, "wrong"));
    }

    /// RFC 7616 §3.9.1's example: the same request answered with SHA-256
    /// and with MD5.
    fn rfc7616(algorithm: &str, response: &str) -> DigestCredentials {
        DigestCredentials {
            user: "Mufasa".into(),
            realm: "http-auth@example.org".into(),
            nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v".into(),
            uri: "/dir/index.html".into(),
            method: "GET".into(),
            response: response.into(),
            algorithm: Some(algorithm.into()),
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
            cnonce: Some("f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ".into()),
        }
    }

    #[test]
    fn rfc7616_example_sha256_and_md5() {
        let sha = rfc7616(
            "SHA-256",
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        );
        assert!(verify_digest(&sha, "Circle of Life"));
        assert!(!verify_digest(&sha, "Circle Of Life"));
        let lower = DigestCredentials {
            algorithm: Some("sha-256".into()),
            ..sha.clone()
        };
        assert!(verify_digest(&lower, "Circle of Life"));
        let md5 = rfc7616("MD5", "8ca523f5e9506fed4657c9700eebdbec");
        assert!(verify_digest(&md5, "Circle of Life"));
        // A response is only good for the algorithm it names.
        for (swapped, algorithm) in [(&sha, "MD5"), (&md5, "SHA-256")] {
            let d = DigestCredentials {
                algorithm: Some(algorithm.into()),
                ..swapped.clone()
            };
            assert!(!verify_digest(&d, "Circle of Life"), "{d:?}");
        }
        for changed in [
            DigestCredentials {
                algorithm: Some("SHA-256-sess".into()),
                ..sha.clone()
            },
            DigestCredentials {
                algorithm: Some("SHA-512-256".into()),
                ..sha.clone()
            },
            DigestCredentials {
                cnonce: None,
                ..sha.clone()
            },
            DigestCredentials {
                uri: "/dir/other.html".into(),
                ..sha.clone()
            },
            DigestCredentials {
                response: sha.response[..32].into(),
                ..sha
            },
        ] {
            assert!(!verify_digest(&changed, "Circle of Life"), "{changed:?}");
        }
    }

    #[test]
    fn hex_round_trip() {
        let mut s = String::new();
        hex_into(&[0, 0x7f, 0xff], &mut s);
        assert_eq!(s, "007fff");
        assert_eq!(unhex("007FfF"), Some(vec![0, 0x7f, 0xff]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
    }
}
