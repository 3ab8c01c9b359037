//! What to pull: the configured sources and the schedule shared by all.

use std::fmt;
use std::time::Duration;

use tidewater_core::StreamKey;
use url::Url;

use crate::ConfigError;

/// How RTP travels from the source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PullTransport {
    /// Interleaved on the RTSP TCP connection.
    Tcp,
    /// RTP/RTCP over UDP (retina drops reordered packets: a LAN transport).
    Udp,
    /// TCP first (works through NAT and firewalls, never reorders); UDP
    /// when the source refuses TCP interleaving.
    #[default]
    Auto,
}

impl PullTransport {
    /// Parses `tcp`, `udp` or `auto`.
    pub fn parse(text: &str) -> Option<PullTransport> {
        match text {
            "tcp" => Some(PullTransport::Tcp),
            "udp" => Some(PullTransport::Udp),
            "auto" => Some(PullTransport::Auto),
            _ => None,
        }
    }
}

impl fmt::Display for PullTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PullTransport::Tcp => "tcp",
            PullTransport::Udp => "udp",
            PullTransport::Auto => "auto",
        })
    }
}

/// One source: an `rtsp://` URL published into the engine as `key`.
#[derive(Clone, PartialEq, Eq)]
pub struct PullSpec {
    /// The stream the source is published as.
    pub key: StreamKey,
    /// The source, without credentials (see [`user`](Self::user)).
    pub url: Url,
    /// The user name from the URL, if any.
    pub user: Option<String>,
    /// The password from the URL, if any (never shown).
    pub password: Option<String>,
    /// How RTP travels.
    pub transport: PullTransport,
    /// Connect only while someone reads the stream (see the module docs).
    pub on_demand: bool,
}

impl fmt::Debug for PullSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullSpec")
            .field("key", &self.key)
            .field("url", &self.shown_url())
            .field("transport", &self.transport)
            .field("on_demand", &self.on_demand)
            .finish_non_exhaustive()
    }
}

impl PullSpec {
    /// A source from its URL (`rtsp://user:pass@host:554/path`; user and
    /// password percent-decoded), refused unless it is `rtsp://` with a host.
    pub fn new(
        key: StreamKey,
        url: &str,
        transport: PullTransport,
        on_demand: bool,
    ) -> Result<PullSpec, ConfigError> {
        let refused = |rule: &str| ConfigError {
            field: "url".into(),
            rule: rule.into(),
        };
        let mut url = Url::parse(url).map_err(|e| refused(&format!("is not a URL ({e})")))?;
        if url.scheme() == "rtsps" {
            // The RTSP client (retina) has no TLS, and a wrapper would have
            // to take over its connection handling; cameras that offer
            // RTSPS offer plain RTSP too. Refused here, at config load,
            // rather than failing on every connection attempt.
            return Err(refused(
                "must be rtsp:// (rtsps:// sources are not pulled: the RTSP client has no TLS; \
                 pull the camera's rtsp:// URL, through a TLS tunnel such as stunnel if it \
                 must cross an untrusted network)",
            ));
        }
        if url.scheme() != "rtsp" {
            return Err(refused(&format!(
                "must be rtsp:// (not {}://: other sources are not pulled yet)",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(refused("must name a host"));
        }
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let user = Some(url.username())
            .filter(|u| !u.is_empty())
            .map(|u| decode(&u.replace('+', "%2B")));
        let password = url.password().map(|p| decode(&p.replace('+', "%2B")));
        // Retina takes credentials apart from the URL, and the URL is shown.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Ok(PullSpec {
            key,
            url,
            user,
            password,
            transport,
            on_demand,
        })
    }

    /// The URL as shown in logs and the API: with the user, never the password.
    pub fn shown_url(&self) -> String {
        let mut shown = self.url.clone();
        if let Some(user) = &self.user {
            let _ = shown.set_username(user);
        }
        shown.to_string()
    }
}

/// The schedule every pull follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullOptions {
    /// The wait after the first failure; it doubles after each failure in a row.
    pub retry_initial: Duration,
    /// The longest wait between attempts.
    pub retry_max: Duration,
    /// The longest a connection may take from TCP connect to `PLAY` answered.
    pub connect_timeout: Duration,
    /// A source that sends no media for this long is dropped and retried.
    pub stall_timeout: Duration,
    /// An on-demand pull stops once its stream has had no reader for this long.
    pub idle_grace: Duration,
    /// How long an on-demand pull that started for a reader waits for it to
    /// subscribe before counting it as gone (the same as the grace by default).
    pub demand_poll: Duration,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(5),
            idle_grace: Duration::from_secs(10),
            demand_poll: Duration::from_millis(250),
        }
    }
}

impl PullOptions {
    /// Checks the rules: every duration positive, `retry_initial ≤ retry_max`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let rule = |field: &str, rule: &str| ConfigError {
            field: field.into(),
            rule: rule.into(),
        };
        for (field, value) in [
            ("retry_initial", self.retry_initial),
            ("retry_max", self.retry_max),
            ("connect_timeout", self.connect_timeout),
            ("stall_timeout", self.stall_timeout),
            ("idle_grace", self.idle_grace),
            ("demand_poll", self.demand_poll),
        ] {
            if value.is_zero() {
                return Err(rule(field, "must be positive"));
            }
        }
        if self.retry_initial > self.retry_max {
            return Err(rule("retry_initial", "must not exceed retry_max"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> StreamKey {
        StreamKey::parse("cams/door").expect("key")
    }

    #[test]
    fn credentials_leave_the_url_and_the_password_is_never_shown() {
        let spec = PullSpec::new(
            key(),
            "rtsp://admin:s%40cret@10.0.0.7:554/stream1",
            PullTransport::Tcp,
            false,
        )
        .expect("spec");
        assert_eq!(spec.url.as_str(), "rtsp://10.0.0.7:554/stream1");
        assert_eq!(spec.user.as_deref(), Some("admin"));
        assert_eq!(spec.password.as_deref(), Some("s@cret"));
        assert_eq!(spec.shown_url(), "rtsp://admin@10.0.0.7:554/stream1");
        assert!(!format!("{spec:?}").contains("cret"));
    }

    #[test]
    fn other_schemes_and_hostless_urls_are_refused() {
        for url in [
            "rtsps://cam/x",
            "rtmp://cam/live/x",
            "rtsp:///x",
            "not a url",
        ] {
            let e = PullSpec::new(key(), url, PullTransport::Auto, false).expect_err(url);
            assert_eq!(e.field, "url", "{url}");
        }
        let e = PullSpec::new(key(), "rtsps://cam/x", PullTransport::Auto, false).expect_err("tls");
        assert!(e.rule.contains("no TLS"), "{}", e.rule);
    }

    #[test]
    fn transports_parse_and_the_schedule_is_checked() {
        assert_eq!(PullTransport::parse("udp"), Some(PullTransport::Udp));
        assert_eq!(PullTransport::parse("UDP"), None);
        assert!(PullOptions::default().validate().is_ok());
        let bad = PullOptions {
            retry_initial: Duration::from_secs(60),
            ..PullOptions::default()
        };
        assert_eq!(bad.validate().expect_err("refused").field, "retry_initial");
    }
}
