//! `[rtsp]`: the RTSP listener (publish with ANNOUNCE/RECORD, read with
//! DESCRIBE/SETUP/PLAY, over TCP interleaving and RTP/RTCP over UDP).
//!
//! The rules of the values are `tidewater::rtsp`'s
//! ([`RtspConfig::validate`](tidewater::rtsp::RtspConfig::validate)); this
//! module maps each key to its field and each refusal back to its key.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{FieldKey, field_error, setting_error};
use crate::error::Result;

/// A way of carrying RTP that `[rtsp] transports` can offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    /// Interleaved on the RTSP connection (`RTP/AVP/TCP`).
    Tcp,
    /// RTP/RTCP over UDP on `udp_rtp_port` / `udp_rtcp_port` (`RTP/AVP`).
    Udp,
}

impl RtspTransport {
    /// The name as the configuration writes it.
    pub fn name(self) -> &'static str {
        match self {
            RtspTransport::Tcp => "tcp",
            RtspTransport::Udp => "udp",
        }
    }
}

/// `[rtsp]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtspSection {
    /// Whether to run the RTSP listener (default true).
    pub enabled: bool,
    /// TCP address and port (default `0.0.0.0:8554`).
    pub listen: SocketAddr,
    /// The transports offered to clients (default `["tcp", "udp"]`; `tcp`
    /// must be there: RTSPS and every client's fallback need it). `None`
    /// when the file does not set the key; read it with
    /// [`transports`](Self::transports).
    pub transports: Option<Vec<RtspTransport>>,
    /// The earlier form of `transports` (`udp = false` is `["tcp"]`,
    /// `udp = true` is `["tcp", "udp"]`), still read so existing files keep
    /// working; setting both keys is refused.
    pub udp: Option<bool>,
    /// The server's RTP port for UDP (default 8000, MediaMTX's; even; 0 with
    /// `udp_rtcp_port = 0` picks free ports). Formerly `rtp_port`.
    #[serde(alias = "rtp_port")]
    pub udp_rtp_port: u16,
    /// The server's RTCP port for UDP (default 8001: `udp_rtp_port + 1`).
    /// Formerly `rtcp_port`.
    #[serde(alias = "rtcp_port")]
    pub udp_rtcp_port: u16,
    /// A session without requests or media for this long is closed (default 60000).
    pub session_timeout_ms: u64,
    /// A request begun must be complete, head and body, this long after its
    /// first byte, or the connection is closed (default 10000).
    pub head_timeout_ms: u64,
    /// The longest request, head and body, accepted (default 65536).
    pub max_request_len: usize,
    /// The largest RTP payload sent to readers (default 1400).
    pub max_payload: usize,
    /// A reader whose socket accepts nothing for this long is dropped (default 5000).
    pub write_timeout_ms: u64,
    /// Most connections at once on the listener (default 10000).
    pub max_connections: usize,
    /// Whether UDP readers are sent a frame's fragments as one message with
    /// UDP GSO (default true; turned off by itself when the kernel refuses).
    pub udp_gso: bool,
    /// A TCP reader gathers the stream's frames this long before writing
    /// them (default 40, at most 500; 0 writes each frame as it comes).
    pub coalesce_ms: u64,
}

impl Default for RtspSection {
    fn default() -> Self {
        let d = tidewater::rtsp::RtspConfig::default();
        RtspSection {
            enabled: true,
            listen: d.listen,
            transports: None,
            udp: None,
            udp_rtp_port: d.rtp_port,
            udp_rtcp_port: d.rtcp_port,
            session_timeout_ms: d.session_timeout.as_millis() as u64,
            head_timeout_ms: d.head_timeout.as_millis() as u64,
            max_request_len: d.max_request_len,
            max_payload: d.max_payload,
            write_timeout_ms: d.write_timeout.as_millis() as u64,
            max_connections: d.max_connections,
            udp_gso: d.udp_gso,
            coalesce_ms: d.coalesce.as_millis() as u64,
        }
    }
}

impl RtspSection {
    /// The RTSP worker's configuration (`None` when disabled), checked by
    /// [`RtspConfig::validate`](tidewater::rtsp::RtspConfig::validate); an
    /// error names the key at fault.
    pub fn worker_config(&self) -> Result<Option<tidewater::rtsp::RtspConfig>> {
        if !self.enabled {
            return Ok(None);
        }
        let config = tidewater::rtsp::RtspConfig {
            listen: self.listen,
            udp: self.transports()?.contains(&RtspTransport::Udp),
            rtp_port: self.udp_rtp_port,
            rtcp_port: self.udp_rtcp_port,
            session_timeout: Duration::from_millis(self.session_timeout_ms),
            head_timeout: Duration::from_millis(self.head_timeout_ms),
            max_request_len: self.max_request_len,
            max_payload: self.max_payload,
            write_timeout: Duration::from_millis(self.write_timeout_ms),
            max_connections: self.max_connections,
            udp_gso: self.udp_gso,
            coalesce: Duration::from_millis(self.coalesce_ms),
        };
        config.validate().map_err(|e| self.refused(&e))?;
        Ok(Some(config))
    }

    /// The transports offered: `transports`, or what the older `udp` key
    /// means, or both by default. An error names the key at fault.
    pub fn transports(&self) -> Result<Vec<RtspTransport>> {
        let list = match (&self.transports, self.udp) {
            (Some(_), Some(_)) => {
                return Err(setting_error(
                    "rtsp.udp".into(),
                    "set together with rtsp.transports: `udp` is the older form of \
                     `transports` (udp = false is [\"tcp\"]), keep only `transports`"
                        .into(),
                ));
            }
            (Some(list), None) => list.clone(),
            (None, Some(false)) => vec![RtspTransport::Tcp],
            (None, Some(true) | None) => vec![RtspTransport::Tcp, RtspTransport::Udp],
        };
        // The listener cannot refuse interleaving: RTSPS runs on it, and
        // clients fall back to it when UDP is refused or blocked.
        if !list.contains(&RtspTransport::Tcp) {
            return Err(setting_error(
                "rtsp.transports".into(),
                format!(
                    "invalid value [{}]: must include \"tcp\" (interleaved RTP is always \
                     offered; list [\"tcp\"] or [\"tcp\", \"udp\"])",
                    list.iter()
                        .map(|t| format!("{:?}", t.name()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        Ok(list)
    }

    /// Checks the section (nothing when disabled).
    pub(super) fn check(&self) -> Result<()> {
        self.worker_config().map(drop)
    }

    /// The crate's refusal, at the key of this section that sets the field.
    fn refused(&self, e: &tidewater::rtsp::ConfigError) -> crate::error::Error {
        let key = match e.field.as_str() {
            "session_timeout" => FieldKey::shown("session_timeout_ms", self.session_timeout_ms),
            "write_timeout" => FieldKey::shown("write_timeout_ms", self.write_timeout_ms),
            "head_timeout" => FieldKey::shown("head_timeout_ms", self.head_timeout_ms),
            "coalesce" => FieldKey::shown("coalesce_ms", self.coalesce_ms),
            "max_connections" => FieldKey::shown("max_connections", self.max_connections),
            "max_request_len" => FieldKey::shown("max_request_len", self.max_request_len),
            "max_payload" => FieldKey::shown("max_payload", self.max_payload),
            "rtp_port" => FieldKey::shown("udp_rtp_port", self.udp_rtp_port),
            "rtcp_port" => FieldKey::shown("udp_rtcp_port", self.udp_rtcp_port),
            _ => None,
        };
        field_error("rtsp", key, e)
    }
}

/// `[rtsps]`: RTSP inside TLS on its own port, RTP interleaved on the
/// connection (no UDP); the other settings are `[rtsp]`'s. The certificate
/// and key are handled as `[rtmps]` handles them: both or neither, PEM,
/// read again when the files change.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtspsSection {
    /// Address and port (default `0.0.0.0:8322`).
    pub listen: SocketAddr,
    /// The certificate chain, PEM, leaf first. Without `cert` and `key`
    /// there is no RTSPS listener.
    pub cert: Option<PathBuf>,
    /// The private key of `cert`, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
}

/// The RTSPS port when none is configured.
pub const DEFAULT_RTSPS_PORT: u16 = 8322;

impl Default for RtspsSection {
    fn default() -> Self {
        RtspsSection {
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_RTSPS_PORT)),
            cert: None,
            key: None,
        }
    }
}

impl RtspsSection {
    pub(super) fn check(&self) -> Result<()> {
        self.server_tls().map(drop)
    }

    /// The listener's certificate and key, when both are configured; an
    /// error names the key whose file is wrong.
    pub fn server_tls(&self) -> Result<Option<tidewater::rtsp::ServerTls>> {
        match (&self.cert, &self.key) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(setting_error(
                "rtsps.key".into(),
                "missing: rtsps.cert is set, the listener needs its key too".into(),
            )),
            (None, Some(_)) => Err(setting_error(
                "rtsps.cert".into(),
                "missing: rtsps.key is set, the listener needs its certificate too".into(),
            )),
            (Some(cert), Some(key)) => tidewater::rtsp::ServerTls::from_pem_files(cert, key)
                .map(Some)
                .map_err(|e| {
                    let reason = match &e {
                        tidewater::rtsp::Error::Tls { reason, .. } => reason.clone(),
                        other => other.to_string(),
                    };
                    let which = if reason.starts_with("cannot read a private key") {
                        "rtsps.key"
                    } else {
                        "rtsps.cert"
                    };
                    setting_error(which.into(), reason)
                }),
        }
    }

    /// The RTSPS worker's settings: `[rtsp]`'s, on this address, without UDP.
    pub fn worker_config(
        &self,
        rtsp: &RtspSection,
    ) -> Result<Option<(tidewater::rtsp::RtspConfig, tidewater::rtsp::ServerTls)>> {
        let Some(tls) = self.server_tls()? else {
            return Ok(None);
        };
        let base = RtspSection {
            enabled: true,
            ..rtsp.clone()
        };
        let Some(config) = base.worker_config()? else {
            return Ok(None);
        };
        Ok(Some((
            tidewater::rtsp::RtspConfig {
                listen: self.listen,
                udp: false,
                ..config
            },
            tls,
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::path::Path;

    use super::super::Config;
    use super::RtspTransport::{Tcp, Udp};

    fn parse(file: &str, vars: &[(&str, &str)]) -> crate::error::Result<Config> {
        let env = vars
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        Config::layered(Some((file, Path::new("test.toml"))), env)
    }

    fn worker(file: &str) -> tidewater::rtsp::RtspConfig {
        let config = parse(file, &[]).unwrap_or_else(|e| panic!("refused: {e}"));
        config
            .rtsp
            .worker_config()
            .expect("valid")
            .expect("enabled")
    }

    fn refused(file: &str, vars: &[(&str, &str)]) -> String {
        match parse(file, vars) {
            Ok(config) => panic!("accepted: {:?}", config.rtsp),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_offer_tcp_and_udp_on_8000_and_8001() {
        let section = super::RtspSection::default();
        assert_eq!(section.transports().expect("valid"), vec![Tcp, Udp]);
        let config = worker("");
        assert!(config.udp);
        assert_eq!((config.rtp_port, config.rtcp_port), (8000, 8001));
        assert_eq!(config.listen, "0.0.0.0:8554".parse().expect("addr"));
    }

    #[test]
    fn the_example_file_spells_out_the_defaults_with_the_documented_keys() {
        let example = include_str!("../../tidewater.toml");
        let config = Config::from_toml_str(example).expect("the example parses");
        assert_eq!(config.rtsp.transports, Some(vec![Tcp, Udp]));
        assert_eq!(config.rtsp.udp, None, "the example uses `transports`");
        assert_eq!(
            config.rtsp.worker_config().expect("valid"),
            super::RtspSection::default()
                .worker_config()
                .expect("valid")
        );
    }

    #[test]
    fn the_documented_keys_reach_the_worker() {
        let config =
            worker("[rtsp]\nudp_rtp_port = 9000\nudp_rtcp_port = 9001\ntransports = [\"tcp\"]\n");
        assert_eq!((config.rtp_port, config.rtcp_port), (9000, 9001));
        assert!(!config.udp, "udp not offered");
        let config = worker("[rtsp]\ntransports = [\"udp\", \"tcp\"]\n");
        assert!(config.udp);
    }

    #[test]
    fn the_older_keys_still_work() {
        let config = worker("[rtsp]\nrtp_port = 9002\nrtcp_port = 9003\nudp = false\n");
        assert_eq!((config.rtp_port, config.rtcp_port), (9002, 9003));
        assert!(!config.udp);
        assert!(worker("[rtsp]\nudp = true\n").udp);
        // Environment overrides under either name.
        let config = parse(
            "",
            &[
                ("TIDEWATER_RTSP__RTP_PORT", "0"),
                ("TIDEWATER_RTSP__UDP_RTCP_PORT", "0"),
                ("TIDEWATER_RTSP__TRANSPORTS", "[\"tcp\"]"),
            ],
        )
        .expect("valid");
        assert_eq!(
            (config.rtsp.udp_rtp_port, config.rtsp.udp_rtcp_port),
            (0, 0)
        );
        assert_eq!(config.rtsp.transports().expect("valid"), vec![Tcp]);
    }

    #[test]
    fn contradictory_or_impossible_transports_are_refused_at_the_key() {
        let both = refused(
            "[rtsp]\nudp = false\ntransports = [\"tcp\", \"udp\"]\n",
            &[],
        );
        assert!(both.contains("rtsp.udp"), "{both}");
        assert!(both.contains("keep only `transports`"), "{both}");
        assert!(both.contains("in test.toml"), "{both}");
        let no_tcp = refused("[rtsp]\ntransports = [\"udp\"]\n", &[]);
        assert!(no_tcp.contains("rtsp.transports"), "{no_tcp}");
        assert!(no_tcp.contains("invalid value [\"udp\"]"), "{no_tcp}");
        assert!(no_tcp.contains("must include \"tcp\""), "{no_tcp}");
        let empty = refused("[rtsp]\ntransports = []\n", &[]);
        assert!(empty.contains("invalid value []"), "{empty}");
        let unknown = refused("[rtsp]\ntransports = [\"tcp\", \"sctp\"]\n", &[]);
        assert!(unknown.contains("rtsp.transports"), "{unknown}");
        assert!(unknown.contains("sctp"), "{unknown}");
        // One setting under its two names is a mistake, not a merge.
        let twice = refused("[rtsp]\nrtp_port = 9000\nudp_rtp_port = 9000\n", &[]);
        assert!(twice.contains("duplicate field `udp_rtp_port`"), "{twice}");
    }

    #[test]
    fn a_bad_udp_port_is_reported_at_the_new_key() {
        let odd = refused("[rtsp]\nudp_rtp_port = 9001\nudp_rtcp_port = 9002\n", &[]);
        assert!(odd.contains("rtsp.udp_rtp_port"), "{odd}");
        assert!(odd.contains("invalid value 9001"), "{odd}");
    }
}
