//! The route table: which destinations a stream is pushed to.

use std::collections::HashMap;

use tidewater_core::StreamKey;

use super::target::PushUrl;
use crate::error::Result;
use crate::tls::ClientTls;

/// One destination: where, and (for `rtmps://`) whom to trust.
#[derive(Clone, Debug)]
pub struct PushTarget {
    /// The destination.
    pub url: PushUrl,
    /// The roots for an `rtmps://` destination; `None` uses the platform's.
    pub tls: Option<ClientTls>,
}

impl PushTarget {
    /// Parses `url`; `tls` is used for `rtmps://` (the platform roots when `None`).
    pub fn parse(url: &str, tls: Option<ClientTls>) -> Result<PushTarget> {
        Ok(PushTarget {
            url: PushUrl::parse(url)?,
            tls,
        })
    }
}

/// Which streams are pushed where: per stream, else per application, else
/// the default list. The most specific list that is set wins (an empty list
/// set for a stream turns its application's pushes off).
#[derive(Clone, Debug, Default)]
pub struct PushRoutes {
    default: Vec<PushTarget>,
    apps: HashMap<String, Vec<PushTarget>>,
    streams: HashMap<StreamKey, Vec<PushTarget>>,
}

impl PushRoutes {
    /// No pushes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Destinations of every stream whose application and stream set none.
    pub fn set_default(&mut self, targets: Vec<PushTarget>) {
        self.default = targets;
    }

    /// Destinations of every stream of `app` (unless the stream sets its own).
    pub fn set_app(&mut self, app: impl Into<String>, targets: Vec<PushTarget>) {
        self.apps.insert(app.into(), targets);
    }

    /// Destinations of one stream.
    pub fn set_stream(&mut self, key: StreamKey, targets: Vec<PushTarget>) {
        self.streams.insert(key, targets);
    }

    /// The destinations of a stream.
    pub fn targets(&self, key: &StreamKey) -> &[PushTarget] {
        self.streams
            .get(key)
            .or_else(|| self.apps.get(key.app()))
            .unwrap_or(&self.default)
    }

    /// Whether no stream is pushed anywhere.
    pub fn is_empty(&self) -> bool {
        self.default.is_empty()
            && self.apps.values().all(Vec::is_empty)
            && self.streams.values().all(Vec::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_route_wins() {
        let t = |u: &str| PushTarget::parse(u, None).expect("url");
        let mut r = PushRoutes::new();
        assert!(r.is_empty());
        r.set_default(vec![t("rtmp://d/all")]);
        r.set_app("live", vec![t("rtmp://a/live"), t("rtmp://b/live")]);
        r.set_stream(StreamKey::parse("live/quiet").expect("key"), vec![]);
        let n = |k: &str| r.targets(&StreamKey::parse(k).expect("key")).len();
        assert_eq!((n("other/x"), n("live/x"), n("live/quiet")), (1, 2, 0));
        assert!(!r.is_empty());
    }
}
