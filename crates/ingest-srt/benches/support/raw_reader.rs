//! A light SRT reader for the readers-per-core bench: the handshake is
//! srt-protocol's own caller state machine (`Connect`), so the server sees
//! an ordinary HSv5 caller with its stream id; after it, the reader only
//! counts what arrives and acknowledges it as a libsrt receiver does, a
//! full ACK every 10 ms, when there is something new, of the next sequence
//! number expected, with the round trip measured from the ACK2s (the
//! server's retransmission timeout follows it: a fixed 10 ms made it fire
//! under load). It does not reassemble messages, keep a TSBPD buffer or
//! send NAKs: a gap is counted as lost (and acknowledged past, so the
//! server does not retransmit it). About 1.3 ms of CPU per reader-second,
//! against ~1.8 for srt-tokio callers (`--load srt-tokio`); most of it is
//! the kernel's receive of each datagram.

// It reads what the server sends: a short or odd datagram is skipped, never a
// panic of the load tool.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use srt_protocol::packet::{
    AckStatistics, Acknowledgement, ControlPacket, ControlTypes, FullAckSeqNumber, Packet,
    SeqNumber, SocketId, TimeSpan, TimeStamp,
};
use srt_protocol::protocol::pending_connection::ConnectionResult;
use srt_protocol::protocol::pending_connection::connect::Connect;
use srt_protocol::protocol::time::Rtt;
use srt_protocol::settings::ConnInitSettings;
use tokio::net::UdpSocket;

/// How often a libsrt receiver sends a full ACK.
const ACK_PERIOD: Duration = Duration::from_millis(10);
/// SRT's shutdown control type.
const SHUTDOWN: u32 = 5;
/// SRT's ACKACK (ACK2) control type.
const ACK2: u32 = 6;

/// What one reader counted.
#[derive(Debug, Default)]
pub struct Counts {
    /// Payload bytes received (new packets only).
    pub bytes: AtomicU64,
    /// Packets that never arrived (gaps in the sequence numbers).
    pub lost: AtomicU64,
}

/// Connects to `server` asking for `stream_id` with `latency`, then counts
/// and acknowledges until the server shuts the connection down or the task
/// is aborted.
pub async fn run(
    server: SocketAddr,
    stream_id: String,
    latency: Duration,
    counts: Arc<Counts>,
) -> Result<(), String> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(|e| e.to_string())?;
    // Room for a cached-GOP burst: what does not fit would count as lost.
    let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(1 << 20);
    // A libsrt listener with a short accept backlog (GStreamer's srtsink)
    // refuses callers that arrive together with REJ_BACKLOG: try again, as
    // a caller started a moment later would.
    let mut tries = 0;
    let (remote_sockid, started) = loop {
        match handshake(&socket, server, stream_id.clone(), latency).await {
            Err(e) if e.contains("Backlog") && tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50 + u64::from(rand_u32() % 200))).await;
            }
            other => break other?,
        }
    };
    let mut buf = vec![0u8; 2048];
    let mut next: Option<SeqNumber> = None;
    let mut acks = 0u32;
    let mut acked: Option<SeqNumber> = None;
    let mut ack = tokio::time::interval(ACK_PERIOD);
    ack.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut out = bytes::BytesMut::with_capacity(64);
    // The last ACKs sent (number, when), for the ACK2s that answer them.
    let mut sent: std::collections::VecDeque<(u32, Instant)> =
        std::collections::VecDeque::with_capacity(16);
    let mut rtt = Smoothed::default();
    loop {
        tokio::select! {
            ready = socket.readable() => {
                ready.map_err(|e| e.to_string())?;
                // Everything waiting, in one wake-up.
                loop {
                    let n = match socket.try_recv(&mut buf) {
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e.to_string()),
                    };
                    // The first two 32-bit words: the sequence number or control
                    // type, then (ACK2) the ACK number it answers.
                    // An SRT header is 16 bytes; shorter is not a packet.
                    let Some(&[a0, a1, a2, a3, b0, b1, b2, b3]) = buf
                        .get(..n)
                        .filter(|d| d.len() >= 16)
                        .and_then(|d| d.first_chunk::<8>())
                    else {
                        continue;
                    };
                    let (w0, w1) = ([a0, a1, a2, a3], [b0, b1, b2, b3]);
                    let word = u32::from_be_bytes(w0);
                    if word & 0x8000_0000 != 0 {
                        match (word >> 16) & 0x7FFF {
                            SHUTDOWN => return Ok(()),
                            // The round trip of the ACK it answers, as libsrt
                            // measures it: the server's retransmission timeout
                            // follows what it is told.
                            ACK2 => {
                                let n = u32::from_be_bytes(w1);
                                if let Some((_, at)) = sent.iter().find(|(a, _)| *a == n) {
                                    rtt.sample(at.elapsed());
                                }
                            }
                            _ => {} // keep-alive: nothing to do
                        }
                        continue;
                    }
                    let seq = SeqNumber::new_truncate(word & 0x7FFF_FFFF);
                    match next {
                        // A retransmitted copy of what was counted, or counted lost.
                        Some(expected) if seq < expected => continue,
                        Some(expected) if seq > expected => {
                            counts.lost.fetch_add(u64::from(seq - expected), Ordering::Relaxed);
                        }
                        _ => {}
                    }
                    next = Some(seq + 1);
                    counts.bytes.fetch_add((n - 16) as u64, Ordering::Relaxed);
                }
            }
            _ = ack.tick() => {
                // As libsrt: a full ACK only when there is something new to acknowledge.
                let Some(next) = next.filter(|n| Some(*n) != acked) else { continue };
                acked = Some(next);
                acks += 1;
                let packet = Packet::Control(ControlPacket {
                    timestamp: TimeStamp::from_micros(started.elapsed().as_micros() as u32),
                    dest_sockid: remote_sockid,
                    control_type: ControlTypes::Ack(Acknowledgement::Full(
                        next,
                        AckStatistics {
                            rtt: rtt.rtt(),
                            buffer_available: 8192,
                            packet_receive_rate: None,
                            estimated_link_capacity: None,
                            data_receive_rate: None,
                        },
                        FullAckSeqNumber::new(acks).unwrap_or(FullAckSeqNumber::INITIAL),
                    )),
                });
                out.clear();
                packet.serialize(&mut out);
                let _ = socket.send_to(&out, server).await;
                if sent.len() == 16 {
                    sent.pop_front();
                }
                sent.push_back((acks, Instant::now()));
            }
        }
    }
}

/// The round-trip time and its variation, smoothed as libsrt does
/// (starting at its 100 ms and 50 ms).
struct Smoothed {
    mean_us: f64,
    var_us: f64,
}

impl Default for Smoothed {
    fn default() -> Self {
        Smoothed {
            mean_us: 100_000.0,
            var_us: 50_000.0,
        }
    }
}

impl Smoothed {
    fn sample(&mut self, rtt: Duration) {
        let us = rtt.as_micros() as f64;
        self.var_us = 0.75 * self.var_us + 0.25 * (self.mean_us - us).abs();
        self.mean_us = 0.875 * self.mean_us + 0.125 * us;
    }

    fn rtt(&self) -> Rtt {
        Rtt::new(
            TimeSpan::from_micros(self.mean_us as i32),
            TimeSpan::from_micros(self.var_us as i32),
        )
    }
}

/// srt-protocol's caller handshake over `socket`: the server's socket id
/// and when the connection started.
async fn handshake(
    socket: &UdpSocket,
    server: SocketAddr,
    stream_id: String,
    latency: Duration,
) -> Result<(SocketId, Instant), String> {
    let settings = ConnInitSettings {
        send_latency: latency,
        recv_latency: latency,
        ..ConnInitSettings::default()
    };
    let seq = SeqNumber::new_truncate(rand_u32() & 0x3FFF_FFFF);
    let mut connect = Connect::new(
        server,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        settings,
        Some(stream_id),
        seq,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 2048];
    let mut out = bytes::BytesMut::with_capacity(256);
    let mut result = connect.handle_tick(Instant::now());
    loop {
        match result {
            ConnectionResult::SendPacket((packet, to)) => {
                out.clear();
                packet.serialize(&mut out);
                socket.send_to(&out, to).await.map_err(|e| e.to_string())?;
            }
            ConnectionResult::Connected(packet, connection) => {
                if let Some((packet, to)) = packet {
                    out.clear();
                    packet.serialize(&mut out);
                    socket.send_to(&out, to).await.map_err(|e| e.to_string())?;
                }
                return Ok((
                    connection.settings.remote_sockid,
                    connection.settings.socket_start_time,
                ));
            }
            ConnectionResult::Reject(_, why) => return Err(format!("rejected: {why:?}")),
            ConnectionResult::Failure(e) => return Err(e.to_string()),
            _ => {}
        }
        if Instant::now() > deadline {
            return Err("no handshake within 10 s".into());
        }
        result = match tokio::time::timeout(Duration::from_millis(250), socket.recv_from(&mut buf))
            .await
        {
            Ok(Ok((n, from))) => match buf.get(..n).map(|mut d| Packet::parse(&mut d, false)) {
                Some(Ok(packet)) => connect.handle_packet(Ok((packet, from)), Instant::now()),
                _ => ConnectionResult::NoAction,
            },
            Ok(Err(e)) => return Err(e.to_string()),
            // Nothing back: the tick sends the last handshake again.
            Err(_) => connect.handle_tick(Instant::now()),
        };
    }
}

/// A random-enough initial sequence number (the time's low bits mixed).
fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    t.wrapping_mul(2_654_435_761) ^ std::process::id()
}
