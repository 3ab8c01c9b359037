//! The query of an RTMP URL (`rtmp://host/app/stream?user=a&pass=b`):
//! credentials out of it, the connect's query merged under the stream
//! name's, percent-decoding.
//!
//! - `user` and `pass` become [`Credentials::UserPass`] (`pass` may be
//!   missing: an empty password), else `token` becomes
//!   [`Credentials::Token`]; values are percent-decoded (`%40` is `@`; a `+`
//!   stays a `+`, since encoders' users type passwords into URL fields as
//!   they are, and a space is `%20`). A malformed escape is kept as it is.
//! - The query handed on to the kernel keeps every parameter, in its
//!   original form, except `user` and `pass`: the password travels as
//!   credentials only, never in a query string a hook or a log might echo.
//! - A query on the `connect` (the application name or `tcUrl`: OBS users
//!   put `rtmp://host/live?user=a&pass=b` in the server field) applies to
//!   every publish and play of the connection; a parameter the stream name's
//!   own query sets takes precedence.

use tidewater_core::Credentials;

/// The `name=value` pairs of a query, raw (a bare `name` has an empty value).
fn pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
}

/// The raw value of parameter `name`, the first one if repeated.
fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    pairs(query).find(|(k, _)| *k == name).map(|(_, v)| v)
}

/// `%XX` escapes decoded (malformed ones kept as they are); the bytes read
/// as UTF-8, invalid sequences replaced.
pub(crate) fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match bytes.get(i..i + 3) {
            Some([b'%', h, l]) => hex(*h).zip(hex(*l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match decoded {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.extend(bytes.get(i));
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The stream name's query with the connect's parameters it does not set
/// appended; `None` when neither has any.
pub(crate) fn merge(stream: Option<&str>, connect: Option<&str>) -> Option<String> {
    let stream = stream.filter(|q| !q.is_empty());
    let connect = connect.filter(|q| !q.is_empty());
    match (stream, connect) {
        (None, None) => None,
        (Some(q), None) | (None, Some(q)) => Some(q.to_string()),
        (Some(s), Some(c)) => {
            let mut merged = s.to_string();
            for kv in c.split('&').filter(|kv| !kv.is_empty()) {
                let name = kv.split_once('=').map_or(kv, |(k, _)| k);
                if param(s, name).is_none() {
                    merged.push('&');
                    merged.push_str(kv);
                }
            }
            Some(merged)
        }
    }
}

/// The credentials a query carries, and the query to hand on (without
/// `user` and `pass`; `None` when nothing else is left).
pub(crate) fn credentials(query: Option<&str>) -> (Credentials, Option<String>) {
    let Some(query) = query else {
        return (Credentials::None, None);
    };
    let credentials = match (param(query, "user"), param(query, "pass")) {
        (Some(user), pass) => Credentials::UserPass {
            user: percent_decode(user),
            pass: pass.map(percent_decode).unwrap_or_default(),
        },
        (None, _) => match param(query, "token") {
            Some(token) => Credentials::Token(percent_decode(token)),
            None => Credentials::None,
        },
    };
    let rest: Vec<&str> = query
        .split('&')
        .filter(|kv| {
            let name = kv.split_once('=').map_or(*kv, |(k, _)| k);
            !kv.is_empty() && name != "user" && name != "pass"
        })
        .collect();
    let rest = (!rest.is_empty()).then(|| rest.join("&"));
    (credentials, rest)
}

/// The query of a `tcUrl` (`rtmp://host/live?user=a`), if it has one.
pub(crate) fn of_url(url: &str) -> Option<&str> {
    url.split_once('?')
        .map(|(_, q)| q)
        .filter(|q| !q.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_pass(user: &str, pass: &str) -> Credentials {
        Credentials::UserPass {
            user: user.into(),
            pass: pass.into(),
        }
    }

    #[test]
    fn user_and_pass_become_credentials_and_leave_the_query() {
        let (c, rest) = credentials(Some("user=a&pass=b"));
        assert_eq!(c, user_pass("a", "b"));
        assert_eq!(rest, None);
        let (c, rest) = credentials(Some("x=1&user=al%40ice&pass=p%26w%3D+%20&y"));
        assert_eq!(c, user_pass("al@ice", "p&w=+ "));
        assert_eq!(rest.as_deref(), Some("x=1&y"));
        let (c, rest) = credentials(Some("user=bob"));
        assert_eq!(c, user_pass("bob", ""));
        assert_eq!(rest, None);
        // A password alone names nobody; it is still kept out of the query.
        let (c, rest) = credentials(Some("pass=x&a=1"));
        assert_eq!(c, Credentials::None);
        assert_eq!(rest.as_deref(), Some("a=1"));
    }

    #[test]
    fn a_token_is_decoded_and_stays_in_the_query() {
        let (c, rest) = credentials(Some("token=a%2Bb"));
        assert_eq!(c, Credentials::Token("a+b".into()));
        assert_eq!(rest.as_deref(), Some("token=a%2Bb"));
        // User and password win over a token.
        let (c, rest) = credentials(Some("token=t&user=u&pass=p"));
        assert_eq!(c, user_pass("u", "p"));
        assert_eq!(rest.as_deref(), Some("token=t"));
        assert_eq!(credentials(None), (Credentials::None, None));
        assert_eq!(credentials(Some("")), (Credentials::None, None));
    }

    #[test]
    fn percent_decoding_keeps_what_it_cannot_decode() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "é");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
        assert_eq!(percent_decode("a+b"), "a+b");
    }

    #[test]
    fn the_stream_query_wins_over_the_connect_query() {
        assert_eq!(merge(None, None), None);
        assert_eq!(merge(Some(""), Some("")), None);
        assert_eq!(merge(Some("a=1"), None).as_deref(), Some("a=1"));
        assert_eq!(
            merge(None, Some("user=a&pass=b")).as_deref(),
            Some("user=a&pass=b")
        );
        assert_eq!(
            merge(Some("user=x&pass=y"), Some("user=a&pass=b&z=1")).as_deref(),
            Some("user=x&pass=y&z=1")
        );
        assert_eq!(of_url("rtmp://h/live?user=a"), Some("user=a"));
        assert_eq!(of_url("rtmp://h/live?"), None);
        assert_eq!(of_url("rtmp://h/live"), None);
    }
}
