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

/// `[rtsp]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtspSection {
    /// Whether to run the RTSP listener (default true).
    pub enabled: bool,
    /// TCP address and port (default `0.0.0.0:8554`).
    pub listen: SocketAddr,
    /// Whether clients may use RTP over UDP (default true; when false they
    /// fall back to TCP interleaving).
    pub udp: bool,
    /// The server's RTP port for UDP (default 8000; even; 0 with
    /// `rtcp_port = 0` picks free ports).
    pub rtp_port: u16,
    /// The server's RTCP port for UDP (default 8001: `rtp_port + 1`).
    pub rtcp_port: u16,
    /// A session without requests or media for this long is closed (default 60000).
    pub session_timeout_ms: u64,
    /// The longest request, head and body, accepted (default 65536).
    pub max_request_len: usize,
    /// The largest RTP payload sent to readers (default 1400).
    pub max_payload: usize,
    /// A reader whose socket accepts nothing for this long is dropped (default 5000).
    pub write_timeout_ms: u64,
    /// Most connections at once on the listener (default 10000).
    pub max_connections: usize,
}

impl Default for RtspSection {
    fn default() -> Self {
        let d = tidewater::rtsp::RtspConfig::default();
        RtspSection {
            enabled: true,
            listen: d.listen,
            udp: d.udp,
            rtp_port: d.rtp_port,
            rtcp_port: d.rtcp_port,
            session_timeout_ms: d.session_timeout.as_millis() as u64,
            max_request_len: d.max_request_len,
            max_payload: d.max_payload,
            write_timeout_ms: d.write_timeout.as_millis() as u64,
            max_connections: d.max_connections,
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
            udp: self.udp,
            rtp_port: self.rtp_port,
            rtcp_port: self.rtcp_port,
            session_timeout: Duration::from_millis(self.session_timeout_ms),
            max_request_len: self.max_request_len,
            max_payload: self.max_payload,
            write_timeout: Duration::from_millis(self.write_timeout_ms),
            max_connections: self.max_connections,
        };
        config.validate().map_err(|e| self.refused(&e))?;
        Ok(Some(config))
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
            "max_connections" => FieldKey::shown("max_connections", self.max_connections),
            "max_request_len" => FieldKey::shown("max_request_len", self.max_request_len),
            "max_payload" => FieldKey::shown("max_payload", self.max_payload),
            "rtp_port" => FieldKey::shown("rtp_port", self.rtp_port),
            "rtcp_port" => FieldKey::shown("rtcp_port", self.rtcp_port),
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
