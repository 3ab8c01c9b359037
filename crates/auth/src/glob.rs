//! Path globs of permissions: `live/*`, `live/cam?`, `*/*`.
//!
//! A stream key is always `app/stream` (exactly one `/`), so a glob is two
//! segment patterns joined by `/`, each matched against its part of the key:
//!
//! - `*` matches any run of characters (also none) within the segment;
//! - `?` matches exactly one character;
//! - anything else matches itself (case-sensitive).
//!
//! `*` never crosses the `/`: `live/*` matches `live/cam1` but not
//! `other/live`. Every path: leave `path` out, or write `*/*`, `*` or `**`
//! (the last two are accepted as the same thing, since a key always has two
//! parts). Any other pattern without exactly one `/` is a configuration error.

use std::fmt;

use tidewater_core::StreamKey;

/// Longest accepted pattern, in bytes.
const MAX_LEN: usize = 300;

/// A compiled path glob.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PathGlob {
    text: String,
    kind: Kind,
}

#[derive(Clone, PartialEq, Eq)]
enum Kind {
    Every,
    Parts { app: Vec<char>, stream: Vec<char> },
}

impl fmt::Debug for PathGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl PathGlob {
    /// Compiles a pattern, or says why it can never be what was meant.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        if text.len() > MAX_LEN {
            return Err(format!("longer than {MAX_LEN} bytes"));
        }
        if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("contains whitespace or control characters".into());
        }
        let kind = match text {
            "*" | "**" | "*/*" => Kind::Every,
            _ => {
                let Some((app, stream)) = text.split_once('/') else {
                    return Err(format!(
                        "{text:?} has no '/': a path is app/stream (e.g. \"live/*\"); \
                         leave path out for every path"
                    ));
                };
                if stream.contains('/') {
                    return Err(format!(
                        "{text:?} has more than one '/': a path is app/stream"
                    ));
                }
                if app.is_empty() || stream.is_empty() {
                    return Err(format!("{text:?} has an empty part"));
                }
                if app.contains("**") || stream.contains("**") {
                    return Err(format!(
                        "{text:?}: '**' is only accepted alone; '*' already matches \
                         any run of characters within a part"
                    ));
                }
                Kind::Parts {
                    app: app.chars().collect(),
                    stream: stream.chars().collect(),
                }
            }
        };
        Ok(PathGlob {
            text: text.to_string(),
            kind,
        })
    }

    /// Whether the key matches.
    pub(crate) fn matches(&self, key: &StreamKey) -> bool {
        match &self.kind {
            Kind::Every => true,
            Kind::Parts { app, stream } => {
                segment_matches(app, key.app()) && segment_matches(stream, key.stream())
            }
        }
    }
}

/// Wildcard match of one segment: `*` any run, `?` one character. Greedy with
/// one backtrack point, O(pattern × text) at worst.
fn segment_matches(pattern: &[char], text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while let Some(&ch) = text.get(t) {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == ch => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    // `p` only moves past a character `get` found, so it is at most the
    // pattern's length and the rest is never `None`.
    pattern
        .get(p..)
        .is_none_or(|rest| rest.iter().all(|&c| c == '*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> StreamKey {
        StreamKey::parse(s).expect("key")
    }

    fn m(glob: &str, k: &str) -> bool {
        PathGlob::parse(glob).expect("glob").matches(&key(k))
    }

    #[test]
    fn star_matches_within_a_part() {
        assert!(m("live/*", "live/cam1"));
        assert!(m("live/*", "live/c"));
        assert!(!m("live/*", "other/cam1"));
        assert!(!m("live/*", "livex/cam1"));
        assert!(m("*/cam1", "live/cam1"));
        assert!(m("li*/*", "live/x"));
        assert!(m("live/cam*", "live/cam"));
        assert!(m("live/*cam*", "live/frontcam2"));
        assert!(!m("live/*cam*", "live/front"));
        assert!(m("live/a*b*c", "live/aXbYbZc"));
        assert!(!m("live/a*b*c", "live/aXbYbZ"));
    }

    #[test]
    fn question_mark_is_one_character() {
        assert!(m("live/cam?", "live/cam1"));
        assert!(!m("live/cam?", "live/cam"));
        assert!(!m("live/cam?", "live/cam12"));
        assert!(m("live/??", "live/ab"));
        assert!(m("live/é?", "live/éa"));
    }

    #[test]
    fn literal_parts_match_exactly() {
        assert!(m("live/cam1", "live/cam1"));
        assert!(!m("live/cam1", "live/cam10"));
        assert!(!m("live/cam1", "Live/cam1"));
    }

    #[test]
    fn every_path_forms() {
        for g in ["*", "**", "*/*"] {
            assert!(m(g, "live/cam1"), "{g}");
            assert!(m(g, "a/b"), "{g}");
        }
    }

    #[test]
    fn patterns_that_cannot_mean_a_key_are_refused() {
        for bad in ["live", "live/*/x", "/x", "live/", "live/**", "a b/c", ""] {
            assert!(PathGlob::parse(bad).is_err(), "{bad:?}");
        }
        let long = format!("live/{}", "a".repeat(400));
        assert!(PathGlob::parse(&long).is_err());
    }

    #[test]
    fn many_stars_stay_fast() {
        let g =
            PathGlob::parse(&format!("{}/{}b", "*a".repeat(40), "*a".repeat(40))).expect("glob");
        let k = key(&format!("{}/{}", "a".repeat(128), "a".repeat(128)));
        assert!(!g.matches(&k));
    }
}
