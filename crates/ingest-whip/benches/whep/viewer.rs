//! One WHEP viewer of the load tool: a real WebRTC peer (str0m: ICE, DTLS,
//! SRTP) on its own loopback UDP socket.
//!
//! A *full* viewer hands every datagram to str0m, which decrypts and checks
//! each RTP packet; it also checks that the first packet starts a keyframe.
//! A *light* viewer hands str0m everything but RTP (STUN, DTLS, RTCP keep
//! the session alive) and reads the RTP header, which SRTP leaves in the
//! clear, itself: the timestamp and marker are all the latency and
//! keeping-up figures need, and skipping the decryption lets one core hold
//! hundreds of viewers. Every tenth viewer (by default) is a full one.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::publish::Stamps;

/// What a viewer measured, read by the bench.
#[derive(Debug, Default)]
pub struct ViewerStats {
    /// RTP payload bytes (full) or datagram bytes less the 12-byte header
    /// and the 10-byte SRTP tag (light).
    pub bytes: AtomicU64,
    pub packets: AtomicU64,
    /// POST → first RTP packet, microseconds (0 until then).
    pub join_us: AtomicU64,
    /// A full viewer: 1 when its first RTP packet started a keyframe, 2 when
    /// it did not (0: light, or nothing yet).
    pub first_keyframe: AtomicU64,
    /// Publish → arrival of a frame's last packet, microseconds, while the
    /// window is open.
    pub latencies: Mutex<Vec<u32>>,
    /// Frames whose publish instant was not found.
    pub unmatched: AtomicU64,
}

/// POSTs `offer` to the WHEP endpoint; the answer's SDP.
async fn post(http: SocketAddr, offer: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(http).await.map_err(|e| e.to_string())?;
    let request = format!(
        "POST /whep/live/bench HTTP/1.1\r\nHost: {http}\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{offer}",
        offer.len()
    );
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    s.read_to_end(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP answer")?;
    if !head.starts_with("HTTP/1.1 201") {
        return Err(format!(
            "{}: {body}",
            head.lines().next().unwrap_or_default()
        ));
    }
    Ok(body.to_owned())
}

/// Whether a datagram is RTP (not RTCP, STUN or DTLS): RFC 7983's first
/// byte range for RTP/RTCP, then RFC 5761's packet types 192–223 for RTCP.
fn is_rtp(d: &[u8]) -> bool {
    matches!(d, [128..=191, b1, ..] if !(192..=223).contains(b1)) && d.len() >= 12
}

/// Whether an H.264 RTP payload starts a keyframe: an SPS or IDR alone, in
/// a STAP-A, or the start of a fragmented IDR.
fn starts_keyframe(payload: &[u8]) -> bool {
    match payload {
        [n, ..] if matches!(n & 0x1f, 5 | 7) => true,
        [n, _, _, first, ..] if n & 0x1f == 24 => matches!(first & 0x1f, 5 | 7),
        [n, fu, ..] if n & 0x1f == 28 => fu & 0x80 != 0 && fu & 0x1f == 5,
        _ => false,
    }
}

/// The per-frame bookkeeping both kinds of viewer share.
struct Frames<'a> {
    stats: &'a ViewerStats,
    stamps: &'a Stamps,
    measuring: &'a AtomicBool,
    started: Instant,
}

impl Frames<'_> {
    fn packet(&self, time: u32, marker: bool, bytes: usize, now: Instant) -> bool {
        let first = self.stats.packets.fetch_add(1, Ordering::Relaxed) == 0;
        if first {
            let us = now.saturating_duration_since(self.started).as_micros() as u64;
            self.stats.join_us.store(us.max(1), Ordering::Relaxed);
        }
        self.stats.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        if marker && self.measuring.load(Ordering::Relaxed) {
            match self.stamps.sent(time) {
                Some(sent) => {
                    let us = now.saturating_duration_since(sent).as_micros();
                    if let Ok(mut l) = self.stats.latencies.lock() {
                        l.push(u32::try_from(us).unwrap_or(u32::MAX));
                    }
                }
                None => {
                    self.stats.unmatched.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        first
    }
}

/// One viewer: negotiates, then drives its `Rtc` until the process ends.
pub async fn run(
    http: SocketAddr,
    full: bool,
    stats: Arc<ViewerStats>,
    stamps: Arc<Stamps>,
    measuring: Arc<AtomicBool>,
) -> Result<(), String> {
    let socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_h264(true)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").map_err(|e| e.to_string())?);
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, pending): (_, SdpPendingOffer) = api.apply().ok_or("no offer")?;
    let started = Instant::now();
    let answer = post(http, &offer.to_sdp_string()).await?;
    let answer = SdpAnswer::from_sdp_string(&answer).map_err(|e| e.to_string())?;
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .map_err(|e| e.to_string())?;
    let frames = Frames {
        stats: &stats,
        stamps: &stamps,
        measuring: &measuring,
        started,
    };
    let mut buf = vec![0u8; 2048];
    loop {
        let deadline = loop {
            match rtc.poll_output().map_err(|e| e.to_string())? {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                }
                Output::Event(Event::RtpPacket(p)) => {
                    let first = frames.packet(
                        p.header.timestamp,
                        p.header.marker,
                        p.payload.len(),
                        Instant::now(),
                    );
                    if first {
                        let k = if starts_keyframe(&p.payload) { 1 } else { 2 };
                        stats.first_keyframe.store(k, Ordering::Relaxed);
                    }
                }
                Output::Event(_) => {}
            }
        };
        let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline));
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let (n, source) = r.map_err(|e| e.to_string())?;
                let data = buf.get(..n).unwrap_or_default();
                if !full && is_rtp(data) {
                    let time = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
                    frames.packet(time, data[1] & 0x80 != 0, n.saturating_sub(22), Instant::now());
                    continue;
                }
                if let Ok(receive) = Receive::new(Protocol::Udp, source, local, data) {
                    rtc.handle_input(Input::Receive(Instant::now(), receive))
                        .map_err(|e| e.to_string())?;
                }
            }
            _ = sleep => {
                rtc.handle_input(Input::Timeout(Instant::now())).map_err(|e| e.to_string())?;
            }
        }
    }
}
