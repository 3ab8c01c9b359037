//! RTP and RTCP over UDP: the server's two sockets ([`RtspConfig::rtp_port`]
//! and [`RtspConfig::rtcp_port`](crate::RtspConfig::rtcp_port)), shared by
//! every session.
//!
//! A publisher's datagrams are routed to its connection by their source
//! address (the peer's IP and the `client_port` its `SETUP` named) through a
//! bounded channel: a connection that cannot keep up loses datagrams, as on
//! the network. Datagrams from unknown sources are dropped. Readers are
//! sent to from the RTP socket.
//!
//! [`RtspConfig::rtp_port`]: crate::RtspConfig::rtp_port
// Reads network input: no indexing, unwrap, expect or panic that a peer
// could reach (issue 18); where an invariant proves one safe, an allow says which.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::warn;

/// Datagrams queued per connection before more are dropped.
pub(crate) const QUEUE: usize = 1024;

/// A datagram for a connection.
#[derive(Debug)]
pub(crate) struct Datagram {
    /// The track index.
    pub track: usize,
    /// Whether it came to the RTCP port.
    pub rtcp: bool,
    /// The datagram.
    pub data: Bytes,
}

#[derive(Debug, Clone)]
struct Route {
    tx: mpsc::Sender<Datagram>,
    track: usize,
}

type Routes = Arc<Mutex<HashMap<(SocketAddr, bool), Route>>>;

/// The shared sockets and the routing table.
#[derive(Debug, Clone)]
pub(crate) struct UdpMedia {
    pub rtp: Arc<UdpSocket>,
    pub rtcp: Arc<UdpSocket>,
    /// Whether sends to readers use UDP GSO (see udp_send).
    pub gso: Arc<std::sync::atomic::AtomicBool>,
    routes: Routes,
}

/// Removes a connection's routes when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    routes: Routes,
    keys: Vec<(SocketAddr, bool)>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut routes) = self.routes.lock() {
            for key in &self.keys {
                routes.remove(key);
            }
        }
    }
}

impl UdpMedia {
    /// Binds both sockets; `gso`: whether readers are sent to with UDP GSO.
    pub async fn bind(rtp: SocketAddr, rtcp: SocketAddr, gso: bool) -> std::io::Result<UdpMedia> {
        Ok(UdpMedia {
            rtp: Arc::new(UdpSocket::bind(rtp).await?),
            rtcp: Arc::new(UdpSocket::bind(rtcp).await?),
            gso: Arc::new(gso.into()),
            routes: Arc::default(),
        })
    }

    /// The bound RTP and RTCP ports.
    pub fn ports(&self) -> (u16, u16) {
        let port = |s: &UdpSocket| s.local_addr().map_or(0, |a| a.port());
        (port(&self.rtp), port(&self.rtcp))
    }

    /// Routes datagrams from `sources` (address, is RTCP, track) to `tx`
    /// until the registration is dropped.
    pub fn register(
        &self,
        sources: &[(SocketAddr, bool, usize)],
        tx: &mpsc::Sender<Datagram>,
    ) -> Registration {
        let mut keys = Vec::new();
        if let Ok(mut routes) = self.routes.lock() {
            for (addr, rtcp, track) in sources {
                routes.insert(
                    (*addr, *rtcp),
                    Route {
                        tx: tx.clone(),
                        track: *track,
                    },
                );
                keys.push((*addr, *rtcp));
            }
        }
        Registration {
            routes: Arc::clone(&self.routes),
            keys,
        }
    }

    /// Receives on one socket until it fails, routing what it gets.
    async fn receive(socket: Arc<UdpSocket>, rtcp: bool, routes: Routes) {
        let mut buf = vec![0u8; 65_536];
        // Errors can repeat every 10 ms for as long as a peer sends ICMP.
        let log = tidewater_core::logs::LogLimiter::per_listener();
        loop {
            let (n, from) = match socket.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    // ICMP port unreachable from a reader that went away
                    // surfaces here on some systems: not fatal.
                    if let Some(note) = log.check_now() {
                        warn!("rtsp: udp receive: {e}{note}");
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let route = routes
                .lock()
                .ok()
                .and_then(|r| r.get(&(from, rtcp)).cloned());
            if let Some(route) = route {
                let data = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                let _ = route.tx.try_send(Datagram {
                    track: route.track,
                    rtcp,
                    data,
                });
            }
        }
    }

    /// The receive loops of both sockets.
    pub fn receivers(&self) -> [impl std::future::Future<Output = ()> + Send + 'static; 2] {
        [
            Self::receive(Arc::clone(&self.rtp), false, Arc::clone(&self.routes)),
            Self::receive(Arc::clone(&self.rtcp), true, Arc::clone(&self.routes)),
        ]
    }
}
