//! Before anything listens: every configured socket is bound once and
//! released, so that a port in use fails the start with one line naming its
//! setting, and no listener has served a single connection by then.
//!
//! The protocol workers bind their own sockets when [`Server::serve`]
//! starts them (each crate owns its listener, per the kernel's protocol
//! seam); without this check the HTTP and RTMP listeners would already be
//! accepting when, say, the SRT port turns out to be taken. What remains is
//! a narrow race: a port taken between this check and the worker's bind
//! still stops the server, with the worker's own error.
//!
//! [`Server::serve`]: crate::Server::serve

use std::net::{SocketAddr, TcpListener, UdpSocket};

use crate::config::Config;
use crate::error::{Error, Result};

/// Which kind of socket a setting opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tcp,
    Udp,
}

/// One socket a configuration opens.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wanted {
    /// The listener, as its log lines name it (`rtmp`, `srt`, …).
    what: &'static str,
    /// The setting, dotted (`rtmp.listen`).
    key: &'static str,
    addr: SocketAddr,
    kind: Kind,
}

/// Every socket `config` opens, in start-up order (the HTTP listeners, then
/// the protocol workers). Port 0 is left out: it cannot be taken.
fn wanted(config: &Config) -> Vec<Wanted> {
    let mut out = Vec::new();
    let mut add = |what, key, addr: SocketAddr, kind| {
        if addr.port() != 0 {
            out.push(Wanted {
                what,
                key,
                addr,
                kind,
            });
        }
    };
    add("http", "http.listen", config.http.listen, Kind::Tcp);
    if config.https.cert.is_some() && config.https.key.is_some() {
        add("https", "https.listen", config.https.listen, Kind::Tcp);
    }
    if config.rtmp.enabled {
        add("rtmp", "rtmp.listen", config.rtmp.listen, Kind::Tcp);
    }
    if config.rtmps.cert.is_some() && config.rtmps.key.is_some() {
        add("rtmps", "rtmps.listen", config.rtmps.listen, Kind::Tcp);
    }
    if config.srt.enabled {
        add("srt", "srt.listen", config.srt.listen, Kind::Udp);
    }
    if config.rtsp.enabled {
        add("rtsp", "rtsp.listen", config.rtsp.listen, Kind::Tcp);
        let udp = config
            .rtsp
            .transports()
            .is_ok_and(|t| t.contains(&crate::config::RtspTransport::Udp));
        if udp {
            let ip = config.rtsp.listen.ip();
            let rtp = SocketAddr::new(ip, config.rtsp.udp_rtp_port);
            let rtcp = SocketAddr::new(ip, config.rtsp.udp_rtcp_port);
            add("rtsp RTP", "rtsp.udp_rtp_port", rtp, Kind::Udp);
            add("rtsp RTCP", "rtsp.udp_rtcp_port", rtcp, Kind::Udp);
        }
    }
    if config.rtsps.cert.is_some() && config.rtsps.key.is_some() {
        add("rtsps", "rtsps.listen", config.rtsps.listen, Kind::Tcp);
    }
    if config.webrtc.enabled {
        use crate::config::WebrtcTransport;
        let offers = |t| config.webrtc.transports.contains(&t);
        if offers(WebrtcTransport::Udp) {
            add(
                "webrtc",
                "webrtc.udp_listen",
                config.webrtc.udp_listen,
                Kind::Udp,
            );
        }
        // ICE-TCP: the TCP port of udp_listen's number.
        if offers(WebrtcTransport::Tcp) {
            add(
                "webrtc ICE-TCP (the TCP port of udp_listen's number)",
                "webrtc.transports",
                config.webrtc.udp_listen,
                Kind::Tcp,
            );
        }
    }
    if let Some(cluster) = &config.cluster {
        add(
            "cluster relay",
            "cluster.relay_listen",
            cluster.relay_listen,
            Kind::Tcp,
        );
    }
    out
}

/// Binds every configured socket once, all held together (two settings on
/// one port are caught too), then releases them; the first that fails is
/// the error.
pub(crate) fn check(config: &Config) -> Result<()> {
    let mut held = Vec::new();
    for w in wanted(config) {
        let bound = match w.kind {
            Kind::Tcp => TcpListener::bind(w.addr).map(Held::Tcp),
            Kind::Udp => UdpSocket::bind(w.addr).map(Held::Udp),
        };
        match bound {
            Ok(socket) => held.push(socket),
            Err(source) => {
                return Err(Error::Bind {
                    what: w.what,
                    addr: w.addr,
                    key: w.key,
                    os_error: source,
                });
            }
        }
    }
    drop(held);
    Ok(())
}

/// A probe socket, closed when dropped.
#[derive(Debug)]
enum Held {
    Tcp(#[allow(dead_code)] TcpListener),
    Udp(#[allow(dead_code)] UdpSocket),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_udp_port_names_its_key_and_the_os_error() {
        let taken = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        let config = Config::from_toml_str(&format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[rtmp]\nlisten = \"127.0.0.1:0\"\n\
             [srt]\nlisten = \"{addr}\"\n[rtsp]\nenabled = false\n[webrtc]\nenabled = false"
        ))
        .expect("config");
        let text = check(&config).expect_err("taken").to_string();
        assert!(text.contains(&addr.to_string()), "{text}");
        assert!(text.contains("[srt] listen"), "{text}");
        assert!(text.contains("os error"), "{text}");
    }

    #[test]
    fn two_settings_on_one_port_are_caught() {
        // A port free a moment ago (nothing else in this test binds it).
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let config = Config::from_toml_str(&format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n[rtmp]\nlisten = \"127.0.0.1:{port}\"\n\
             [srt]\nenabled = false\n[rtsp]\nenabled = false\n[webrtc]\nenabled = false"
        ))
        .expect("config");
        let text = check(&config).expect_err("same port twice").to_string();
        assert!(text.contains("[rtmp] listen"), "{text}");
    }

    #[test]
    fn port_zero_and_disabled_listeners_are_not_probed() {
        let config = Config::from_toml_str(
            "[http]\nlisten = \"127.0.0.1:0\"\n[rtmp]\nenabled = false\n[srt]\nenabled = false\n\
             [rtsp]\nenabled = false\n[webrtc]\nenabled = false",
        )
        .expect("config");
        assert_eq!(wanted(&config), []);
    }
}
