//! HTTP/RTSP Digest (RFC 2617, RFC 7616) with MD5, without `qop` or with
//! `qop=auth`.

use md5::{Digest as _, Md5};
use subtle::ConstantTimeEq;
use tidewater_core::DigestCredentials;

const HEX: &[u8; 16] = b"0123456789abcdef";

pub(crate) fn hex_into(bytes: &[u8], out: &mut String) {
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xf)] as char);
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
        .chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

fn md5_hex(parts: &[&str]) -> String {
    let mut h = Md5::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p.as_bytes());
    }
    let mut out = String::with_capacity(32);
    hex_into(&h.finalize(), &mut out);
    out
}

/// Whether a Digest response was computed with `password`.
///
/// Pure RFC 2617 arithmetic: `algorithm` absent or `MD5`, `qop` absent or
/// `auth` (`auth-int`, `MD5-sess` and SHA-256 are refused). It checks neither
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
    if let Some(alg) = &d.algorithm
        && !alg.eq_ignore_ascii_case("MD5")
    {
        return false;
    }
    let ha1 = md5_hex(&[&d.user, &d.realm, password]);
    let ha2 = md5_hex(&[&d.method, &d.uri]);
    let expected = match d.qop.as_deref() {
        None => md5_hex(&[&ha1, &d.nonce, &ha2]),
        Some(q) if q.eq_ignore_ascii_case("auth") => {
            let (Some(nc), Some(cnonce)) = (&d.nc, &d.cnonce) else {
                return false;
            };
            md5_hex(&[&ha1, &d.nonce, nc, cnonce, q, &ha2])
        }
        Some(_) => return false,
    };
    let given = d.response.to_ascii_lowercase();
    expected.as_bytes().ct_eq(given.as_bytes()).into()
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
