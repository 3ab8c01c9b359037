//! `[webrtc]`: WHIP ingest and WHEP playback, signalled on the HTTP port
//! (`/whip/{app}/{stream}`, `/whep/{app}/{stream}`), media on one UDP port
//! shared by every peer.
//!
//! The rules of the values are `tidewater::whip`'s
//! ([`WhipConfig::validate`](tidewater::whip::WhipConfig::validate)).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

use super::setting_error;
use crate::error::Result;

/// `[webrtc]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebrtcSection {
    /// Whether to serve WHIP and WHEP (default true).
    pub enabled: bool,
    /// The UDP socket of every peer's media (default `0.0.0.0:8189`); ICE-TCP
    /// listens on the TCP port of the same number.
    pub udp_listen: SocketAddr,
    /// The transports offered as host candidates (default `["udp", "tcp"]`:
    /// ICE-TCP for networks that block UDP; clients prefer UDP by priority).
    pub transports: Vec<WebrtcTransport>,
    /// Addresses announced as host candidates besides the listen address
    /// (default none: with `0.0.0.0`, 127.0.0.1 and the default route's).
    pub additional_hosts: Vec<IpAddr>,
    /// Most WebRTC sessions at once (default 256).
    pub max_sessions: usize,
    /// A peer that does not connect this long after its offer is dropped (default 15000).
    pub connect_timeout_ms: u64,
    /// A peer silent this long is ended (default 10000).
    pub idle_timeout_ms: u64,
    /// The largest SDP offer accepted (default 65536).
    pub max_offer_bytes: usize,
    /// Least time between two keyframe requests to a publisher (default 500).
    pub pli_interval_ms: u64,
    /// A WHIP publish is asked for a keyframe this long after its last one
    /// (default 2000, the HLS segment target; 0: never on a timer; else at
    /// least `pli_interval_ms`, whose limit it shares).
    pub keyframe_interval_ms: u64,
    /// STUN/TURN servers announced to clients in `Link: rel="ice-server"`
    /// headers (`[[webrtc.ice_servers]] url = "stun:…"`, with `username`
    /// and `credential` for TURN); default none.
    pub ice_servers: Vec<IceServerEntry>,
}

/// A transport `[webrtc] transports` can offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebrtcTransport {
    /// Datagrams on `udp_listen`.
    Udp,
    /// ICE-TCP (RFC 6544) on the TCP port of `udp_listen`'s number.
    Tcp,
}

impl From<WebrtcTransport> for tidewater::whip::Transport {
    fn from(t: WebrtcTransport) -> Self {
        match t {
            WebrtcTransport::Udp => tidewater::whip::Transport::Udp,
            WebrtcTransport::Tcp => tidewater::whip::Transport::Tcp,
        }
    }
}

/// One `[[webrtc.ice_servers]]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceServerEntry {
    /// `stun:`, `stuns:`, `turn:` or `turns:` URL.
    pub url: String,
    /// TURN username.
    #[serde(default)]
    pub username: Option<String>,
    /// TURN password.
    #[serde(default)]
    pub credential: Option<String>,
}

impl Default for WebrtcSection {
    fn default() -> Self {
        let d = tidewater::whip::WhipConfig::default();
        WebrtcSection {
            enabled: true,
            udp_listen: d.udp_listen,
            transports: d
                .transports
                .iter()
                .map(|t| match t {
                    tidewater::whip::Transport::Udp => WebrtcTransport::Udp,
                    tidewater::whip::Transport::Tcp => WebrtcTransport::Tcp,
                })
                .collect(),
            additional_hosts: d.additional_hosts,
            max_sessions: d.max_sessions,
            connect_timeout_ms: d.connect_timeout.as_millis() as u64,
            idle_timeout_ms: d.idle_timeout.as_millis() as u64,
            max_offer_bytes: d.max_offer_bytes,
            pli_interval_ms: d.pli_interval.as_millis() as u64,
            keyframe_interval_ms: d.keyframe_interval.as_millis() as u64,
            ice_servers: Vec::new(),
        }
    }
}

impl WebrtcSection {
    /// The WHIP/WHEP service's configuration (`None` when disabled), checked
    /// by [`WhipConfig::validate`](tidewater::whip::WhipConfig::validate).
    pub fn worker_config(&self) -> Result<Option<tidewater::whip::WhipConfig>> {
        if !self.enabled {
            return Ok(None);
        }
        let config = tidewater::whip::WhipConfig {
            udp_listen: self.udp_listen,
            transports: self.transports.iter().copied().map(Into::into).collect(),
            additional_hosts: self.additional_hosts.clone(),
            max_sessions: self.max_sessions,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            max_offer_bytes: self.max_offer_bytes,
            pli_interval: Duration::from_millis(self.pli_interval_ms),
            keyframe_interval: Duration::from_millis(self.keyframe_interval_ms),
            ice_servers: self
                .ice_servers
                .iter()
                .map(|e| tidewater::whip::IceServer {
                    url: e.url.clone(),
                    username: e.username.clone(),
                    credential: e.credential.clone(),
                })
                .collect(),
        };
        config
            .validate()
            .map_err(|message| setting_error("webrtc".into(), message))?;
        Ok(Some(config))
    }

    /// Checks the section (nothing when disabled).
    pub(super) fn check(&self) -> Result<()> {
        self.worker_config().map(drop)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;

    fn parse(file: &str) -> crate::error::Result<Config> {
        Config::layered(Some((file, Path::new("test.toml"))), Vec::new())
    }

    #[test]
    fn ice_servers_are_read_and_checked() {
        let config = parse(
            "[[webrtc.ice_servers]]\nurl = \"stun:stun.example.net:3478\"\n\
             [[webrtc.ice_servers]]\nurl = \"turn:turn.example.net\"\nusername = \"u\"\ncredential = \"p\"\n",
        )
        .expect("accepted");
        let whip = config
            .webrtc
            .worker_config()
            .expect("valid")
            .expect("enabled");
        assert_eq!(whip.ice_servers.len(), 2);
        assert_eq!(whip.ice_servers[1].username.as_deref(), Some("u"));
        let e = parse("[[webrtc.ice_servers]]\nurl = \"turn:turn.example.net\"\n")
            .expect_err("TURN without credentials")
            .to_string();
        assert!(e.contains("ice_servers"), "{e}");
    }

    #[test]
    fn transports_are_read_and_checked() {
        let whip = |file: &str| parse(file).expect("accepted").webrtc.worker_config();
        let d = whip("").expect("valid").expect("enabled");
        assert_eq!(d.transports, tidewater::whip::DEFAULT_TRANSPORTS.to_vec());
        let tcp = whip("[webrtc]\ntransports = [\"tcp\"]\n")
            .expect("valid")
            .expect("enabled");
        assert_eq!(tcp.transports, vec![tidewater::whip::Transport::Tcp]);
        let e = parse("[webrtc]\ntransports = []\n")
            .expect_err("none")
            .to_string();
        assert!(e.contains("transports"), "{e}");
        assert!(parse("[webrtc]\ntransports = [\"sctp\"]\n").is_err());
    }

    #[test]
    fn keyframe_interval_is_read_and_checked() {
        let whip = |file: &str| parse(file).expect("accepted").webrtc.worker_config();
        let d = whip("").expect("valid").expect("enabled");
        assert_eq!(d.keyframe_interval, std::time::Duration::from_millis(2000));
        let off = whip("[webrtc]\nkeyframe_interval_ms = 0\n")
            .expect("valid")
            .expect("enabled");
        assert!(off.keyframe_interval.is_zero());
        let e = parse("[webrtc]\nkeyframe_interval_ms = 100\n")
            .expect_err("under pli_interval_ms")
            .to_string();
        assert!(e.contains("keyframe_interval_ms"), "{e}");
    }
}
