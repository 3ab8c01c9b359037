//! Settings of the WHIP service.
// Reads the operator's `[whip]` settings: no indexing, unwrap, expect or
// panic outside tests (RELIABILITY.md, "Lints").
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::expect_used,
        clippy::unwrap_used,
        clippy::panic
    )
)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The UDP address every WebRTC peer's media arrives on (port 8189, as
/// MediaMTX uses, on every interface).
pub const DEFAULT_UDP_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8189);
/// At most this many WHIP sessions at once; a POST over it is answered `503`.
pub const DEFAULT_MAX_SESSIONS: usize = 256;
/// A session whose peer has not completed ICE and DTLS this long after the
/// answer is ended.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// A connected session from which nothing (media, RTCP, STUN) arrived this
/// long is ended (the publisher vanished without a `DELETE`).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest SDP offer read (bytes); a larger one is answered `413`.
pub const DEFAULT_MAX_OFFER_BYTES: usize = 64 * 1024;
/// At most one keyframe request (PLI) to a publisher this often.
pub const DEFAULT_PLI_INTERVAL: Duration = Duration::from_millis(500);
/// A publish is asked for a keyframe this long after its last keyframe
/// (zero: never on a timer). Browsers send one only when asked; 2 s is
/// the HLS packager's segment target (LL-HLS and classic HLS cut segments
/// on keyframes near it and fix the playlist's target duration from the
/// first segment), so segments stay at their target and a late reader of
/// any protocol waits at most about that long for its first picture. Each
/// keyframe costs a few times a delta frame's bits; a shorter interval
/// spends more of the publisher's bitrate on them.
pub const DEFAULT_KEYFRAME_INTERVAL: Duration = Duration::from_millis(2000);

/// A way the media port carries WebRTC (`[webrtc] transports`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Datagrams on the UDP port (the usual way; preferred by priority).
    Udp,
    /// ICE-TCP (RFC 6544): passive host candidates on the TCP port of the
    /// same number, RFC 4571 framing, for networks that block UDP.
    Tcp,
}

impl Transport {
    /// The name as the configuration writes it.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// Both: a client whose network blocks UDP still connects, and ICE prefers
/// UDP wherever it works (a UDP host candidate's priority is above a TCP
/// one's: type preference 126 against 90), so offering TCP costs the others
/// nothing but a listening TCP port.
pub const DEFAULT_TRANSPORTS: [Transport; 2] = [Transport::Udp, Transport::Tcp];

/// A STUN or TURN server a client may use, announced in the answer's
/// `Link: <url>; rel="ice-server"` headers (RFC 9725 §4.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IceServer {
    /// `stun:`, `stuns:`, `turn:` or `turns:` URL.
    pub url: String,
    /// TURN username.
    pub username: Option<String>,
    /// TURN password (`credential-type="password"`).
    pub credential: Option<String>,
}

impl IceServer {
    /// The `Link` header value.
    pub fn link(&self) -> String {
        let mut link = format!("<{}>; rel=\"ice-server\"", self.url);
        if let (Some(user), Some(pass)) = (&self.username, &self.credential) {
            link.push_str(&format!(
                "; username=\"{user}\"; credential=\"{pass}\"; credential-type=\"password\""
            ));
        }
        link
    }

    fn validate(&self) -> Result<(), String> {
        let scheme = self.url.split(':').next().unwrap_or_default();
        if !matches!(scheme, "stun" | "stuns" | "turn" | "turns")
            || self.url.len() <= scheme.len() + 1
        {
            return Err(format!(
                "webrtc ice_servers: {:?} is not a stun:, stuns:, turn: or turns: URL",
                self.url
            ));
        }
        // Values go into a header between quotes or angle brackets.
        let unsafe_char = |s: &str| {
            s.chars()
                .any(|c| c.is_control() || matches!(c, '"' | '<' | '>' | '\\'))
        };
        let fields = [
            Some(&self.url),
            self.username.as_ref(),
            self.credential.as_ref(),
        ];
        if fields.into_iter().flatten().any(|s| unsafe_char(s)) || self.url.contains(' ') {
            return Err(format!(
                "webrtc ice_servers: {:?}: quotes, angle brackets, spaces in the URL and control characters are not allowed",
                self.url
            ));
        }
        if scheme.starts_with("turn") && (self.username.is_none() || self.credential.is_none()) {
            return Err(format!(
                "webrtc ice_servers: {} needs a username and a credential",
                self.url
            ));
        }
        Ok(())
    }
}

/// Settings of the WHIP service (`[webrtc]` in the server's configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WhipConfig {
    /// The one UDP socket every peer's media uses; ICE-TCP listens on the
    /// TCP port of the same number.
    pub udp_listen: SocketAddr,
    /// The transports offered (see [`DEFAULT_TRANSPORTS`]): each one's host
    /// candidates are in every answer.
    pub transports: Vec<Transport>,
    /// Addresses announced as host candidates besides the listen address
    /// (the public address behind a NAT's port forward, say). When the
    /// listen address is unspecified (`0.0.0.0`) and this is empty, the
    /// candidates are 127.0.0.1 and the address of the default route.
    pub additional_hosts: Vec<IpAddr>,
    /// See [`DEFAULT_MAX_SESSIONS`].
    pub max_sessions: usize,
    /// See [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// See [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// See [`DEFAULT_MAX_OFFER_BYTES`].
    pub max_offer_bytes: usize,
    /// See [`DEFAULT_PLI_INTERVAL`].
    pub pli_interval: Duration,
    /// See [`DEFAULT_KEYFRAME_INTERVAL`]; requests on this timer share the
    /// `pli_interval` limit with the others.
    pub keyframe_interval: Duration,
    /// STUN/TURN servers announced to clients (none by default: the
    /// server's host candidates suffice on one network).
    pub ice_servers: Vec<IceServer>,
}

impl Default for WhipConfig {
    fn default() -> Self {
        WhipConfig {
            udp_listen: DEFAULT_UDP_LISTEN,
            transports: DEFAULT_TRANSPORTS.to_vec(),
            additional_hosts: Vec::new(),
            max_sessions: DEFAULT_MAX_SESSIONS,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_offer_bytes: DEFAULT_MAX_OFFER_BYTES,
            pli_interval: DEFAULT_PLI_INTERVAL,
            keyframe_interval: DEFAULT_KEYFRAME_INTERVAL,
            ice_servers: Vec::new(),
        }
    }
}

impl WhipConfig {
    /// Checks the settings: a message naming the field otherwise.
    pub fn validate(&self) -> Result<(), String> {
        if self.transports.is_empty() {
            return Err("webrtc transports must name \"udp\", \"tcp\" or both".into());
        }
        if self.max_sessions == 0 {
            return Err("webrtc max_sessions must be at least 1".into());
        }
        if self.connect_timeout.is_zero() {
            return Err("webrtc connect_timeout must be positive".into());
        }
        if self.idle_timeout.is_zero() {
            return Err("webrtc idle_timeout must be positive".into());
        }
        if self.max_offer_bytes < 256 {
            return Err("webrtc max_offer_bytes must be at least 256".into());
        }
        if !self.keyframe_interval.is_zero() && self.keyframe_interval < self.pli_interval {
            return Err(format!(
                "webrtc keyframe_interval_ms must be 0 (off) or at least pli_interval_ms ({} ms)",
                self.pli_interval.as_millis()
            ));
        }
        for server in &self.ice_servers {
            server.validate()?;
        }
        for host in &self.additional_hosts {
            if host.is_unspecified() || host.is_multicast() {
                return Err(format!(
                    "webrtc additional_hosts: {host} cannot be a host candidate"
                ));
            }
        }
        Ok(())
    }

    /// Whether `transport` is offered.
    pub fn offers(&self, transport: Transport) -> bool {
        self.transports.contains(&transport)
    }

    /// The host candidates announced for a socket bound at `bound`.
    pub fn candidates(&self, bound: SocketAddr) -> Vec<SocketAddr> {
        let mut ips: Vec<IpAddr> = Vec::new();
        if !bound.ip().is_unspecified() {
            ips.push(bound.ip());
        } else if self.additional_hosts.is_empty() {
            ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
            if let Some(ip) = default_route_ip() {
                ips.push(ip);
            }
        }
        for host in &self.additional_hosts {
            if !ips.contains(host) {
                ips.push(*host);
            }
        }
        ips.into_iter()
            .map(|ip| SocketAddr::new(ip, bound.port()))
            .collect()
    }
}

/// The source address of the default IPv4 route: connecting a UDP socket
/// picks it and sends nothing.
fn default_route_ip() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_are_named() {
        assert_eq!(WhipConfig::default().validate(), Ok(()));
        let bad = WhipConfig {
            max_sessions: 0,
            ..WhipConfig::default()
        };
        assert!(bad.validate().is_err_and(|e| e.contains("max_sessions")));
        let bad = WhipConfig {
            transports: Vec::new(),
            ..WhipConfig::default()
        };
        assert!(bad.validate().is_err_and(|e| e.contains("transports")));
        let bad = WhipConfig {
            keyframe_interval: Duration::from_millis(100),
            ..WhipConfig::default()
        };
        assert!(
            bad.validate()
                .is_err_and(|e| e.contains("keyframe_interval_ms"))
        );
        let off = WhipConfig {
            keyframe_interval: Duration::ZERO,
            ..WhipConfig::default()
        };
        assert_eq!(off.validate(), Ok(()));
        let bad = WhipConfig {
            additional_hosts: vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
            ..WhipConfig::default()
        };
        assert!(
            bad.validate()
                .is_err_and(|e| e.contains("additional_hosts"))
        );
    }

    #[test]
    fn ice_servers_become_link_headers_and_bad_ones_are_named() {
        let turn = IceServer {
            url: "turn:turn.example.net:3478?transport=udp".into(),
            username: Some("user".into()),
            credential: Some("pass".into()),
        };
        assert_eq!(
            turn.link(),
            "<turn:turn.example.net:3478?transport=udp>; rel=\"ice-server\"; username=\"user\"; credential=\"pass\"; credential-type=\"password\""
        );
        let stun = IceServer {
            url: "stun:stun.example.net".into(),
            username: None,
            credential: None,
        };
        assert_eq!(stun.link(), "<stun:stun.example.net>; rel=\"ice-server\"");
        let ok = WhipConfig {
            ice_servers: vec![turn.clone(), stun.clone()],
            ..WhipConfig::default()
        };
        assert_eq!(ok.validate(), Ok(()));
        for bad in [
            IceServer {
                url: "http://x".into(),
                ..stun.clone()
            },
            IceServer {
                url: "stun:".into(),
                ..stun.clone()
            },
            IceServer {
                username: None,
                ..turn.clone()
            },
            IceServer {
                credential: Some("a\"b".into()),
                ..turn.clone()
            },
            IceServer {
                url: "stun:a\r\nX: y".into(),
                ..stun.clone()
            },
        ] {
            let config = WhipConfig {
                ice_servers: vec![bad],
                ..WhipConfig::default()
            };
            assert!(config.validate().is_err_and(|e| e.contains("ice_servers")));
        }
    }

    #[test]
    fn candidates_follow_the_bound_port() {
        let config = WhipConfig {
            additional_hosts: vec!["192.0.2.7".parse().expect("ip")],
            ..WhipConfig::default()
        };
        let bound: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        assert_eq!(
            config.candidates(bound),
            vec![bound, "192.0.2.7:40000".parse().expect("addr")]
        );
        let any: SocketAddr = "0.0.0.0:8189".parse().expect("addr");
        let c = WhipConfig::default().candidates(any);
        assert_eq!(c[0], "127.0.0.1:8189".parse().expect("addr"));
    }
}
