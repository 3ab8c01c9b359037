//! Push destination URLs: `rtmp://host[:port]/app[/…]/stream[?query]` and
//! `rtmps://…`.

use tidewater_core::StreamKey;

use crate::error::{Error, Result};

/// The port of `rtmp://` URLs without one.
pub const RTMP_PORT: u16 = 1935;
/// The port of `rtmps://` URLs without one (as ffmpeg and hosted ingest
/// services use; tidewater's own RTMPS listener defaults to 1936).
pub const RTMPS_PORT: u16 = 443;

/// A parsed push destination.
///
/// The last path segment is the stream name and everything before it the
/// application (`rtmp://h/app/inst/name` publishes `name` to `app/inst`). A
/// URL with a single path segment names only the application: the stream is
/// published under its own name (`rtmp://backup/live` pushes `live/cam1` as
/// `cam1`). A query stays on the stream name (`…/name?key=…`), as encoders
/// send it; it is never logged or shown by the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushUrl {
    /// `rtmps://`.
    pub secure: bool,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Application.
    pub app: String,
    /// Stream name, when the URL names one.
    pub stream: Option<String>,
    /// The query, without `?`.
    pub query: Option<String>,
}

impl PushUrl {
    /// Parses a destination URL.
    pub fn parse(url: &str) -> Result<PushUrl> {
        let shown = url.split('?').next().unwrap_or_default().to_string();
        let bad = |reason: &str| Error::InvalidUrl {
            url: shown.clone(),
            reason: reason.to_string(),
        };
        if url.chars().any(|c| c.is_control() || c == ' ') {
            return Err(bad("spaces or control characters"));
        }
        let (secure, rest) = if let Some(rest) = url.strip_prefix("rtmp://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("rtmps://") {
            (true, rest)
        } else {
            return Err(bad("expected rtmp:// or rtmps://"));
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q.to_string())),
            None => (rest, None),
        };
        let (authority, path) = rest.split_once('/').ok_or_else(|| bad("no application"))?;
        if authority.contains('@') {
            return Err(bad(
                "credentials in the URL are not supported: use the query",
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("junk after the address")),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad("bad port"))?,
            None if secure => RTMPS_PORT,
            None => RTMP_PORT,
        };
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let (app, stream) = match segments.as_slice() {
            [] => return Err(bad("no application")),
            [app] => (app.to_string(), None),
            [app @ .., stream] => (app.join("/"), Some(stream.to_string())),
        };
        Ok(PushUrl {
            secure,
            host: host.to_string(),
            port,
            app,
            stream,
            query,
        })
    }

    /// The stream name to publish for `source`, with the query.
    pub fn stream_for(&self, source: &StreamKey) -> String {
        let name = self.stream.as_deref().unwrap_or(source.stream());
        match &self.query {
            Some(q) => format!("{name}?{q}"),
            None => name.to_string(),
        }
    }

    /// `connect`'s `tcUrl`.
    pub fn tc_url(&self) -> String {
        format!("{}/{}", self.origin(), self.app)
    }

    fn origin(&self) -> String {
        let scheme = if self.secure { "rtmps" } else { "rtmp" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }

    /// The URL without its query (for logs and the API), for `source`.
    pub fn display_for(&self, source: &StreamKey) -> String {
        format!(
            "{}/{}/{}",
            self.origin(),
            self.app,
            self.stream.as_deref().unwrap_or(source.stream())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_operators_write() {
        let key = StreamKey::parse("live/cam1").expect("key");
        let u = PushUrl::parse("rtmp://backup.example:1940/live/out?token=s3cret").expect("url");
        assert_eq!(
            (u.secure, u.host.as_str(), u.port, u.app.as_str()),
            (false, "backup.example", 1940, "live")
        );
        assert_eq!(u.stream_for(&key), "out?token=s3cret");
        assert_eq!(u.tc_url(), "rtmp://backup.example:1940/live");
        assert_eq!(u.display_for(&key), "rtmp://backup.example:1940/live/out");

        let u = PushUrl::parse("rtmps://ingest.example/app/inst/key").expect("url");
        assert_eq!((u.secure, u.port, u.app.as_str()), (true, 443, "app/inst"));
        assert_eq!(u.stream_for(&key), "key");

        // Only an application: the stream keeps its name.
        let u = PushUrl::parse("rtmp://[::1]/live").expect("url");
        assert_eq!((u.host.as_str(), u.port), ("::1", 1935));
        assert_eq!(u.stream_for(&key), "cam1");
        assert_eq!(u.display_for(&key), "rtmp://[::1]:1935/live/cam1");
    }

    #[test]
    fn refuses_what_cannot_work_without_showing_the_query() {
        for bad in [
            "http://h/live/x",
            "rtmp://h",
            "rtmp:///live/x",
            "rtmp://h:0/live/x",
            "rtmp://h:99999/live/x",
            "rtmp://user:pw@h/live/x",
            "rtmp://h/live/x y",
            "rtmp://[::1/live/x",
            "rtmp://h/",
        ] {
            assert!(PushUrl::parse(bad).is_err(), "{bad}");
        }
        let e = PushUrl::parse("ftp://h/live/x?token=s3cret").expect_err("scheme");
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }
}
