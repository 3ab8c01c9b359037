//! What a request URL names: the stream key from the path, an optional
//! track (`…/trackID=0`, `…/streamid=0`, `…/track0`), and the query that
//! goes to the authorizer (`?token=…`).
//!
//! `rtsp://host:8554/live/cam1/trackID=1?token=abc` is stream `live/cam1`,
//! track control `trackID=1`, query `token=abc`.
// Reads network input: no indexing, unwrap, expect or panic that a peer
// could reach (issue 18); where an invariant proves one safe, an allow says which.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use tidewater_core::StreamKey;

/// A request target, split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The stream (`app/stream`).
    pub key: StreamKey,
    /// The last path segment when it names a track (`trackID=1`), else `None`.
    pub control: Option<String>,
    /// The track index the control names by number, if it does.
    pub track_index: Option<usize>,
    /// The query, without `?`, if there is one.
    pub query: Option<String>,
}

/// Whether a path segment names a track, and its number.
fn track_segment(segment: &str) -> Option<usize> {
    let lower = segment.to_ascii_lowercase();
    for prefix in ["trackid=", "streamid=", "track=", "track", "stream="] {
        if let Some(n) = lower.strip_prefix(prefix)
            && !n.is_empty()
            && n.len() <= 3
            && n.bytes().all(|b| b.is_ascii_digit())
        {
            return n.parse().ok();
        }
    }
    None
}

impl Target {
    /// Splits a request URL (`rtsp://…` or an absolute path). `None` when it
    /// names no valid stream key.
    pub fn parse(url: &rtsp_types::Url) -> Option<Target> {
        Self::check(url).ok()
    }

    /// [`parse`](Self::parse), with why a URL names no valid stream key
    /// (the key and the rule it breaks, for the refusal's log line).
    pub fn check(url: &rtsp_types::Url) -> Result<Target, String> {
        let path = url.path().trim_matches('/');
        let mut segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let (control, track_index) = match segments.last().map(|s| (*s, track_segment(s))) {
            Some((seg, Some(n))) if segments.len() > 2 => {
                segments.pop();
                (Some(seg.to_string()), Some(n))
            }
            _ => (None, None),
        };
        // The path as sent: a `%` escape is refused by the key's rules,
        // never decoded into something else.
        let key = StreamKey::parse(&segments.join("/")).map_err(|e| e.to_string())?;
        Ok(Target {
            key,
            control,
            track_index,
            query: url.query().filter(|q| !q.is_empty()).map(str::to_string),
        })
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on what they did not expect"
)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Option<Target> {
        Target::parse(&rtsp_types::Url::parse(s).expect("url"))
    }

    #[test]
    fn a_percent_escape_is_refused_with_the_rule() {
        let check = |s: &str| Target::check(&rtsp_types::Url::parse(s).expect("url"));
        let why = check("rtsp://h/live/a%25b").expect_err("a '%' name");
        assert!(why.contains("live/a%25b") && why.contains("'%'"), "{why}");
        // URL parsing turns `%2e%2e` into `..` and drops it: no stream.
        assert!(check("rtsp://h/live/%2e%2e").is_err());
    }

    #[test]
    fn stream_track_and_query_are_split() {
        let t = parse("rtsp://127.0.0.1:8554/live/cam1/trackID=1?token=abc").expect("target");
        assert_eq!(t.key.as_str(), "live/cam1");
        assert_eq!(t.control.as_deref(), Some("trackID=1"));
        assert_eq!(t.track_index, Some(1));
        assert_eq!(t.query.as_deref(), Some("token=abc"));
        let t = parse("rtsp://h/live/cam1/streamid=0").expect("target");
        assert_eq!((t.key.as_str(), t.track_index), ("live/cam1", Some(0)));
        let t = parse("rtsp://h/live/cam1/").expect("target");
        assert_eq!(
            (t.key.as_str(), t.track_index, t.query),
            ("live/cam1", None, None)
        );
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(parse("rtsp://h/").is_none());
        assert!(parse("rtsp://h/live/../x").is_none());
    }
}
