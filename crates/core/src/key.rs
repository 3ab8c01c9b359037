//! Stream names: `app/stream`, validated once at the edge so nothing downstream
//! (file paths of recorders, URLs of packagers, log lines) has to re-check them.

use std::fmt;

use crate::error::Error;

/// Longest accepted application or stream name, in bytes.
pub const MAX_PART_LEN: usize = 128;

/// A validated stream name, `app/stream`.
///
/// Both parts are non-empty, at most [`MAX_PART_LEN`] bytes, contain no `/`,
/// no `%`, no control characters and no whitespace, and are neither `.` nor
/// `..`: a key is safe to use as a path component and inside a URL path.
///
/// `%` is refused because every protocol would read it differently: RTMP and
/// SRT pass it through, while URLs (HTTP outputs, RTSP, WHIP) decode it, so
/// `live/%2e%2e` published over RTMP would only be reachable over HTTP as
/// `%252e%252e`, and `%2e%2e` decoded somewhere else means `..`. Names are
/// plain characters; nothing is percent-decoded after this check.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    full: Box<str>,
    split: usize,
}

impl StreamKey {
    /// Builds a key from its two parts.
    pub fn new(app: &str, stream: &str) -> Result<Self, Error> {
        // The refusal names the whole key, not only the part at fault: that
        // is what the publisher typed and what the operator looks for.
        let whole = |e| match e {
            Error::InvalidKey { reason, .. } => Error::InvalidKey {
                key: printable(&format!("{app}/{stream}")),
                reason,
            },
            other => other,
        };
        validate_part(app, "app").map_err(whole)?;
        validate_part(stream, "stream").map_err(whole)?;
        let mut full = String::with_capacity(app.len() + 1 + stream.len());
        full.push_str(app);
        full.push('/');
        full.push_str(stream);
        Ok(Self {
            full: full.into_boxed_str(),
            split: app.len(),
        })
    }

    /// Parses `app/stream` (exactly one `/`).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let (app, stream) = text.split_once('/').ok_or_else(|| Error::InvalidKey {
            key: printable(text),
            reason: "expected app/stream",
        })?;
        if stream.contains('/') {
            return Err(Error::InvalidKey {
                key: printable(text),
                reason: "more than one '/'",
            });
        }
        Self::new(app, stream)
    }

    /// The application part.
    pub fn app(&self) -> &str {
        &self.full[..self.split]
    }

    /// The stream part.
    pub fn stream(&self) -> &str {
        &self.full[self.split + 1..]
    }

    /// `app/stream`.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

fn validate_part(part: &str, which: &'static str) -> Result<(), Error> {
    let reason = if part.is_empty() {
        Some(if which == "app" {
            "empty app name"
        } else {
            "empty stream name"
        })
    } else if part.len() > MAX_PART_LEN {
        Some("name longer than 128 bytes")
    } else if part == "." || part == ".." {
        Some("'.' and '..' are not names")
    } else if part.contains('/') {
        Some("'/' inside a name")
    } else if part.contains('%') {
        Some("'%' in name (names are plain characters, never percent-encoded)")
    } else if part.chars().any(|c| c.is_control() || c.is_whitespace()) {
        Some("control character or whitespace in name")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidKey {
            key: printable(part),
            reason,
        }),
        None => Ok(()),
    }
}

/// Bytes of escaped text [`printable`] keeps.
const PRINTABLE_BYTES: usize = 128;

/// A log-safe rendering of untrusted text: escaped, and bounded in bytes
/// after escaping (a character may escape to ten: a count of characters
/// let 64 zero-width spaces grow to 512 bytes, found by fuzzing).
fn printable(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let escaped = c.escape_debug();
        if out.len() + escaped.len() > PRINTABLE_BYTES {
            out.push('…');
            break;
        }
        out.extend(escaped);
    }
    out
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamKey({})", self.full)
    }
}

impl std::str::FromStr for StreamKey {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for StreamKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        let key = StreamKey::parse("live/cam-1_main.hd").expect("valid");
        assert_eq!(key.app(), "live");
        assert_eq!(key.stream(), "cam-1_main.hd");
        assert_eq!(key.to_string(), "live/cam-1_main.hd");
    }

    #[test]
    fn rejects_traversal_separators_and_controls() {
        for bad in [
            "live/..",
            "../x",
            "live/a/b",
            "live/",
            "/x",
            "live/a\u{0}b",
            "live/a b",
            "nokey",
            "live/.",
            "live/%2e%2e",
            "%41pp/x",
            "live/100%",
        ] {
            assert!(StreamKey::parse(bad).is_err(), "{bad:?} must be rejected");
        }
        assert!(StreamKey::new("live", &"x".repeat(129)).is_err());
        assert!(StreamKey::new("live", &"x".repeat(128)).is_ok());
    }

    #[test]
    fn percent_refusal_names_the_whole_key_and_the_rule() {
        let text = StreamKey::parse("live/%2e%2e")
            .expect_err("a '%' name")
            .to_string();
        assert!(text.contains("\"live/%2e%2e\""), "{text}");
        assert!(text.contains("'%' in name"), "{text}");
        let text = StreamKey::new("live", "%2e%2e")
            .expect_err("a '%' name")
            .to_string();
        assert!(text.contains("\"live/%2e%2e\""), "{text}");
    }

    #[test]
    fn error_text_is_bounded_after_escaping() {
        // 3 bytes each, escaped to `\u{200b}`: 8.
        let zero_width = "\u{200b}".repeat(300);
        let err = StreamKey::parse(&format!("{zero_width}/x")).expect_err("app name too long");
        let text = err.to_string();
        assert!(text.len() < 300, "{} bytes: {text}", text.len());
        assert!(text.contains("\\u{200b}…"), "{text}");
    }

    #[test]
    fn error_text_is_bounded_and_escaped() {
        let err = StreamKey::parse(&format!("live/{}\n", "y".repeat(500))).expect_err("too long");
        let text = err.to_string();
        assert!(text.len() < 200, "{text}");
        assert!(!text.contains('\n'));
    }
}
