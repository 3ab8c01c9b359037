//! A str0m peer as a WHIP publisher or WHEP viewer: one H.264 media line,
//! RTP mode, its own loopback UDP socket, the I/O pumped by the test. It
//! counts what it receives (RTP packets and their sequence numbers,
//! whether the first starts a keyframe, datagram bytes, keyframe requests)
//! and, as a viewer, can lose every `n`th video datagram on purpose while
//! counting what comes back on another SSRC (RTX).
//!
//! Signalling is the caller's: [`Str0mPeer::offer`] makes the SDP offer,
//! the test posts it however it reaches the server (to the router in
//! process, or over HTTP to the binary), and [`PendingPeer::accept`] takes
//! the answer.
//!
//! Why here: the WHIP crate's tests (`crates/ingest-whip/tests`, in
//! process) and the binary's (`tests/tests/whep_metrics.rs`) both drive
//! this client. The WHIP crate already dev-depends on this crate, and this
//! crate depends on no protocol crate of the workspace (str0m is the
//! client library itself), so both reach it without a new dependency and
//! without a cycle; a `tests/support` module of the WHIP crate could not
//! be reached from `tests/tests`.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;

/// The SSRC and sequence number of an RTP datagram (SRTP leaves the
/// header in the clear); `None` for STUN, DTLS and RTCP.
pub fn rtp_header(datagram: &[u8]) -> Option<(u32, u16)> {
    let first = *datagram.first()?;
    let second = *datagram.get(1)?;
    // RFC 7983: 128..=191 is RTP or RTCP; RTCP's packet types 200..=207
    // (RFC 5761) sit where RTP has the marker bit and payload type 72..=79.
    if !(128..=191).contains(&first) || (200..=207).contains(&second) {
        return None;
    }
    let seq = u16::from_be_bytes([*datagram.get(2)?, *datagram.get(3)?]);
    let ssrc = u32::from_be_bytes(datagram.get(8..12)?.try_into().ok()?);
    Some((ssrc, seq))
}

/// A peer whose offer is out, waiting for the server's answer.
pub struct PendingPeer {
    rtc: Rtc,
    socket: UdpSocket,
    mid: Mid,
    pending: SdpPendingOffer,
}

impl fmt::Debug for PendingPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingPeer")
            .field("socket", &self.socket)
            .field("mid", &self.mid)
            .finish_non_exhaustive()
    }
}

impl PendingPeer {
    /// Applies the server's SDP answer: the peer, not yet connected (pump
    /// it, e.g. with [`Str0mPeer::pump_until_connected`]). Panics on an
    /// answer str0m cannot read or accept.
    pub fn accept(mut self, answer: &str) -> Str0mPeer {
        let answer = SdpAnswer::from_sdp_string(answer).expect("sdp");
        self.rtc
            .sdp_api()
            .accept_answer(self.pending, answer)
            .expect("accept answer");
        Str0mPeer {
            rtc: self.rtc,
            socket: self.socket,
            mid: self.mid,
            connected: false,
            keyframe_requests: 0,
            rtp_received: 0,
            received: BTreeSet::new(),
            keyframe_first: None,
            bytes: 0,
            drop_every: None,
            main_ssrc: None,
            seen_main: 0,
            dropped: BTreeSet::new(),
            rtx_ssrcs: HashSet::new(),
            rtx_datagrams: 0,
            last_rtp_at: None,
            ice_disconnected_at: None,
            closed_at: None,
        }
    }
}

/// A str0m WHIP or WHEP client over its own loopback socket.
#[derive(Debug)]
pub struct Str0mPeer {
    /// The peer connection, for what a test does beyond these helpers
    /// (e.g. a keyframe request on its receive stream, then [`Self::drain`]).
    pub rtc: Rtc,
    socket: UdpSocket,
    /// The media line's id.
    pub mid: Mid,
    /// Whether ICE and DTLS completed.
    pub connected: bool,
    /// Keyframe requests (PLI, FIR) the server sent this peer.
    pub keyframe_requests: u32,
    /// RTP packets str0m handed over (repairs included).
    pub rtp_received: u32,
    /// Their sequence numbers.
    pub received: BTreeSet<u16>,
    /// Whether the first RTP packet starts an H.264 keyframe: SPS (7), IDR
    /// (5), or a STAP-A (24) / FU-A (28) of them.
    pub keyframe_first: Option<bool>,
    /// Bytes of every datagram received (lost ones excluded).
    pub bytes: u64,
    /// While set, every `n`th video datagram of the first SSRC seen is lost
    /// on purpose (its first arrival only).
    pub drop_every: Option<usize>,
    main_ssrc: Option<u32>,
    seen_main: usize,
    /// The sequence numbers lost on purpose.
    pub dropped: BTreeSet<u16>,
    /// SSRCs other than the first one that carried RTP (RTX).
    pub rtx_ssrcs: HashSet<u32>,
    /// Datagrams on those SSRCs.
    pub rtx_datagrams: usize,
    /// When str0m last handed over an RTP packet.
    pub last_rtp_at: Option<Instant>,
    /// When ICE last went disconnected (the server stopped answering this
    /// peer's connectivity checks), cleared if it reconnects.
    pub ice_disconnected_at: Option<Instant>,
    /// When the server closed the connection (a DTLS close_notify).
    pub closed_at: Option<Instant>,
}

impl Str0mPeer {
    /// A peer with one H.264 video line of `direction` (`SendOnly` to
    /// publish over WHIP, `RecvOnly` to play over WHEP) and a host
    /// candidate on a new socket bound to 127.0.0.1: the peer waiting for
    /// its answer, and the offer to post.
    pub async fn offer(direction: Direction) -> (PendingPeer, String) {
        Self::offer_with_stun_rto(direction, None).await
    }

    /// [`Self::offer`] with str0m's longest STUN retransmission interval
    /// set to `max_rto` (3 s by default): with 500 ms, a peer whose checks
    /// go unanswered sees ICE disconnected after about 5 s instead of
    /// about 23 s (both measured in `tests/tests/chaos.rs`).
    pub async fn offer_with_stun_rto(
        direction: Direction,
        max_rto: Option<Duration>,
    ) -> (PendingPeer, String) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("client socket");
        let mut config = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_h264(true);
        if let Some(rto) = max_rto {
            config.set_max_stun_rto(rto);
        }
        let mut rtc = config.build(Instant::now());
        rtc.add_local_candidate(
            Candidate::host(socket.local_addr().expect("addr"), "udp").expect("candidate"),
        );
        let mut api = rtc.sdp_api();
        let mid = api.add_media(MediaKind::Video, direction, None, None, None);
        let (offer, pending) = api.apply().expect("offer");
        let offer = offer.to_sdp_string();
        (
            PendingPeer {
                rtc,
                socket,
                mid,
                pending,
            },
            offer,
        )
    }

    /// Sends what str0m has to send and handles its events: when it next
    /// wants to be woken.
    pub fn drain(&mut self) -> Instant {
        loop {
            match self.rtc.poll_output().expect("client output") {
                Output::Timeout(t) => return t,
                Output::Transmit(t) => {
                    let _ = self.socket.try_send_to(&t.contents, t.destination);
                }
                Output::Event(Event::Connected) => self.connected = true,
                Output::Event(Event::IceConnectionStateChange(state)) => {
                    self.ice_disconnected_at =
                        (state == IceConnectionState::Disconnected).then(Instant::now);
                }
                Output::Event(Event::Closed) => {
                    self.closed_at.get_or_insert_with(Instant::now);
                }
                Output::Event(Event::KeyframeRequest(_)) => self.keyframe_requests += 1,
                Output::Event(Event::RtpPacket(p)) => {
                    self.rtp_received += 1;
                    self.last_rtp_at = Some(Instant::now());
                    self.keyframe_first.get_or_insert_with(|| {
                        let nal = p.payload.first().map_or(0, |b| b & 0x1f);
                        let fu = p.payload.get(1).map_or(0, |b| b & 0x1f);
                        matches!(nal, 5 | 7 | 24) || (nal == 28 && fu == 5)
                    });
                    self.received.insert(p.header.sequence_number);
                }
                Output::Event(_) => {}
            }
        }
    }

    /// Whether this datagram is lost on purpose (see [`Self::drop_every`]);
    /// counts datagrams on other SSRCs.
    fn lose(&mut self, datagram: &[u8]) -> bool {
        let Some((ssrc, seq)) = rtp_header(datagram) else {
            return false;
        };
        let main = *self.main_ssrc.get_or_insert(ssrc);
        if ssrc != main {
            self.rtx_ssrcs.insert(ssrc);
            self.rtx_datagrams += 1;
            return false;
        }
        let Some(n) = self.drop_every else {
            return false;
        };
        self.seen_main += 1;
        if self.seen_main.is_multiple_of(n)
            && !self.dropped.contains(&seq)
            && !self.received.contains(&seq)
        {
            self.dropped.insert(seq);
            return true;
        }
        false
    }

    /// Runs the peer's I/O until `until`.
    pub async fn pump(&mut self, until: Instant) {
        let local = self.socket.local_addr().expect("local");
        let mut buf = vec![0u8; 2048];
        loop {
            let timeout = self.drain().min(until);
            let now = Instant::now();
            if now >= until {
                return;
            }
            let wait = timeout
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            match tokio::time::timeout(wait, self.socket.recv_from(&mut buf)).await {
                Ok(Ok((n, source))) => {
                    let datagram = &buf[..n];
                    if self.lose(datagram) {
                        continue;
                    }
                    self.bytes += n as u64;
                    if let Ok(r) = Receive::new(Protocol::Udp, source, local, datagram) {
                        self.rtc
                            .handle_input(Input::Receive(Instant::now(), r))
                            .expect("client input");
                    }
                }
                _ => self
                    .rtc
                    .handle_input(Input::Timeout(Instant::now()))
                    .expect("client timeout"),
            }
        }
    }

    /// Pumps in `step`s until ICE and DTLS complete or `within` passes:
    /// whether they did (the caller asserts it, with its own words).
    pub async fn pump_until_connected(&mut self, within: Duration, step: Duration) -> bool {
        let start = Instant::now();
        while !self.connected && start.elapsed() < within {
            self.pump(Instant::now() + step).await;
        }
        self.connected
    }

    /// Pumps in `step`s until the server ends the connection as this peer
    /// sees it (a DTLS close_notify, or ICE disconnected: its checks go
    /// unanswered) or `within` passes: when it did, `None` if it did not.
    pub async fn pump_until_disconnected(
        &mut self,
        within: Duration,
        step: Duration,
    ) -> Option<Instant> {
        let start = Instant::now();
        loop {
            if let Some(at) = self.closed_at.or(self.ice_disconnected_at) {
                return Some(at);
            }
            if start.elapsed() >= within {
                return None;
            }
            self.pump(Instant::now() + step).await;
        }
    }

    /// The H.264 payload type the server's answer kept for the media line.
    pub fn remote_h264_pt(&self) -> Pt {
        let remote = self
            .rtc
            .media(self.mid)
            .expect("media")
            .remote_pts()
            .to_vec();
        let config = self.rtc.codec_config();
        *remote
            .iter()
            .find(|pt| {
                config
                    .find(|p| p.pt() == **pt)
                    .is_some_and(|p| p.spec().codec == Codec::H264)
            })
            .expect("an H.264 payload type in the answer")
    }

    /// Writes one RTP packet (payload type `pt`, sequence number `seq`,
    /// RTP time `time`) on the media line's send stream, then sends it.
    pub fn write_rtp(&mut self, pt: Pt, seq: u64, time: u32, payload: &[u8], marker: bool) {
        let write = RtpWrite::new(
            pt,
            SeqNo::from(seq),
            time,
            Instant::now(),
            Arc::<[u8]>::from(payload),
        )
        .marker(marker);
        self.rtc
            .direct_api()
            .stream_tx_by_mid(self.mid, None)
            .expect("a send stream")
            .write_rtp(write);
        self.drain();
    }
}
