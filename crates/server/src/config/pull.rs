//! `[[pull]]`: streams pulled from RTSP sources (IP cameras, other RTSP
//! servers) and published into the engine under `path`.
//!
//! ```toml
//! [[pull]]
//! path = "cams/door"                                  # the stream key, app/stream
//! url = "rtsp://viewer:secret@192.168.1.20:554/stream1"
//! transport = "auto"                                  # tcp | udp | auto (TCP, then UDP)
//! on_demand = false                                   # true: only while someone reads it
//! retry_initial_ms = 1000                             # first wait after a failure, doubling…
//! retry_max_ms = 30000                                # …up to this
//! connect_timeout_ms = 10000                          # DESCRIBE to PLAY answered
//! stall_timeout_ms = 5000                             # no media this long: reconnect
//! idle_grace_ms = 10000                               # on demand: stop after this long unread
//! ```
//!
//! The rules are `tidewater::rtsp::pull`'s ([`PullSpec::new`],
//! [`PullOptions::validate`]); this module maps each refusal back to its
//! key (`pull[1].url: …`), never showing the URL's password.

use std::time::Duration;

use serde::Deserialize;
use tidewater::StreamKey;
use tidewater_rtsp::pull::{PullOptions, PullSpec, PullTransport};

use crate::error::{Error, Result};

/// One `[[pull]]` entry.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PullEntry {
    /// The stream key it is published as (`app/stream`).
    pub path: String,
    /// The source: `rtsp://[user:password@]host[:port]/path`.
    pub url: String,
    /// `tcp`, `udp` or `auto` (default: TCP, UDP when TCP is refused).
    pub transport: String,
    /// Connect only while the stream is read (default false: always on).
    pub on_demand: bool,
    /// The wait after a first failure, doubling after each one in a row (default 1000).
    pub retry_initial_ms: u64,
    /// The longest wait between attempts (default 30000).
    pub retry_max_ms: u64,
    /// The longest from connecting to `PLAY` answered (default 10000).
    pub connect_timeout_ms: u64,
    /// A source sending no media this long is reconnected (default 5000).
    pub stall_timeout_ms: u64,
    /// On demand: disconnect after the stream had no reader this long (default 10000).
    pub idle_grace_ms: u64,
}

impl std::fmt::Debug for PullEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("PullEntry")
            .field("path", &self.path)
            .field("transport", &self.transport)
            .field("on_demand", &self.on_demand)
            .finish_non_exhaustive()
    }
}

impl Default for PullEntry {
    fn default() -> Self {
        let d = PullOptions::default();
        let ms = |d: Duration| d.as_millis() as u64;
        PullEntry {
            path: String::new(),
            url: String::new(),
            transport: "auto".into(),
            on_demand: false,
            retry_initial_ms: ms(d.retry_initial),
            retry_max_ms: ms(d.retry_max),
            connect_timeout_ms: ms(d.connect_timeout),
            stall_timeout_ms: ms(d.stall_timeout),
            idle_grace_ms: ms(d.idle_grace),
        }
    }
}

fn refused(key: String, message: impl std::fmt::Display) -> Error {
    Error::Setting {
        key,
        message: message.to_string(),
        origin: None,
    }
}

impl PullEntry {
    /// The source and its schedule, checked; an error names `pull[i].key`.
    pub fn worker_spec(&self, i: usize) -> Result<(PullSpec, PullOptions)> {
        let at = |key: &str| format!("pull[{i}].{key}");
        let key = StreamKey::parse(&self.path)
            .map_err(|e| refused(at("path"), format!("invalid value {:?}: {e}", self.path)))?;
        let transport = PullTransport::parse(&self.transport).ok_or_else(|| {
            refused(
                at("transport"),
                format!(
                    "invalid value {:?}: must be tcp, udp or auto",
                    self.transport
                ),
            )
        })?;
        let spec = PullSpec::new(key, &self.url, transport, self.on_demand)
            .map_err(|e| refused(at("url"), e))?;
        let options = PullOptions {
            retry_initial: Duration::from_millis(self.retry_initial_ms),
            retry_max: Duration::from_millis(self.retry_max_ms),
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            stall_timeout: Duration::from_millis(self.stall_timeout_ms),
            idle_grace: Duration::from_millis(self.idle_grace_ms),
            ..PullOptions::default()
        };
        options.validate().map_err(|e| {
            let (key, value) = match e.field.as_str() {
                "retry_initial" => ("retry_initial_ms", self.retry_initial_ms),
                "retry_max" => ("retry_max_ms", self.retry_max_ms),
                "connect_timeout" => ("connect_timeout_ms", self.connect_timeout_ms),
                "stall_timeout" => ("stall_timeout_ms", self.stall_timeout_ms),
                _ => ("idle_grace_ms", self.idle_grace_ms),
            };
            refused(at(key), format!("invalid value {value}: {e}"))
        })?;
        Ok((spec, options))
    }
}

/// Every entry checked, in order; a stream pulled twice is refused.
pub fn pull_specs(entries: &[PullEntry]) -> Result<Vec<(PullSpec, PullOptions)>> {
    let mut out: Vec<(PullSpec, PullOptions)> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let (spec, options) = entry.worker_spec(i)?;
        if out.iter().any(|(o, _)| o.key == spec.key) {
            return Err(refused(
                format!("pull[{i}].path"),
                format!("{} is pulled by an earlier entry", spec.key),
            ));
        }
        out.push((spec, options));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(toml_text: &str) -> Vec<PullEntry> {
        #[derive(Deserialize)]
        struct File {
            pull: Vec<PullEntry>,
        }
        toml::from_str::<File>(toml_text).expect("toml").pull
    }

    #[test]
    fn an_entry_becomes_a_source_with_its_schedule() {
        let e = entries(
            "[[pull]]\npath = \"cams/door\"\nurl = \"rtsp://u:p@10.0.0.2/s1\"\ntransport = \"udp\"\non_demand = true\nidle_grace_ms = 2000\n",
        );
        let specs = pull_specs(&e).expect("valid");
        let (spec, options) = &specs[0];
        assert_eq!(spec.key.to_string(), "cams/door");
        assert_eq!(spec.transport, PullTransport::Udp);
        assert!(spec.on_demand);
        assert_eq!(spec.user.as_deref(), Some("u"));
        assert_eq!(options.idle_grace, Duration::from_millis(2000));
        assert_eq!(options.retry_max, PullOptions::default().retry_max);
    }

    #[test]
    fn refusals_name_the_key_and_never_the_password() {
        let cases = [
            ("path = \"nokey\"\nurl = \"rtsp://h/s\"", "pull[0].path"),
            (
                "path = \"a/b\"\nurl = \"rtsps://u:hunter2@h/s\"",
                "pull[0].url",
            ),
            (
                "path = \"a/b\"\nurl = \"rtsp://h/s\"\ntransport = \"quic\"",
                "pull[0].transport",
            ),
            (
                "path = \"a/b\"\nurl = \"rtsp://h/s\"\nretry_max_ms = 0",
                "pull[0].retry_max_ms",
            ),
        ];
        for (body, key) in cases {
            let e = pull_specs(&entries(&format!("[[pull]]\n{body}\n"))).expect_err(body);
            let text = e.to_string();
            assert!(text.contains(key), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
        let twice = entries(
            "[[pull]]\npath = \"a/b\"\nurl = \"rtsp://h/1\"\n[[pull]]\npath = \"a/b\"\nurl = \"rtsp://h/2\"\n",
        );
        assert!(
            pull_specs(&twice)
                .expect_err("twice")
                .to_string()
                .contains("pull[1].path")
        );
    }
}
