//! The listener's UDP socket, owned here: every datagram is screened
//! ([`crate::screen`]), parsed by srt-protocol, and routed — to its open
//! connection's task, or to srt-protocol's sans-IO [`MultiplexListener`]
//! when it is a handshake. The listener's answers (induction responses,
//! rejections, accepted connections) are carried out here, and each
//! conclusion that asks for access becomes a [`ConnectionRequest`] for
//! the accept loop, with what the handshake offers (key material, the
//! handshake request) besides what srt-protocol's own request shows.
//!
//! One task does all of this; a connection's task is fed through a bounded
//! queue that never blocks it (a full queue drops the packet, which SRT
//! retransmits): a slow connection only hurts itself.
//!
//! The peers it knows ([`Peers`]) are held to the connection limits: a
//! caller over them is answered with `REJX_OVERLOAD` at its first handshake
//! packet (libsrt gives up at once) and nothing of it is kept; a handshake
//! that has not opened a connection within the handshake timeout is
//! forgotten. Every refusal made here is logged and counted in the
//! listener's [`ListenerStats`]; those of the accept loop are counted there.

// This module reads what the network sends: no panics on it.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::io;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use srt_protocol::connection::Connection;
use srt_protocol::listener::{
    AccessControlRequest, AccessControlResponse, Action, Input, MultiplexListener, ResultOf,
    SessionId,
};
use srt_protocol::options::{KeySize, StreamId};
use srt_protocol::packet::{
    ControlPacket, ControlTypes, CoreRejectReason, HandshakeControlInfo, HandshakeVsInfo, HsV5Info,
    Packet, RejectReason, ServerRejectReason, ShakeType, SrtControlPacket,
};
use srt_protocol::settings::{ConnInitSettings, KeySettings};
use tidewater_core::ListenerStats;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::connection::{Routed, SrtConnection};
use crate::peers::{Limits, Over, Peer, Peers};
use crate::screen::{self, Verdict};
use crate::streamid;

/// Conclusions waiting for the accept loop.
const REQUEST_QUEUE: usize = 100;
/// The largest datagram read (SRT packets are at most 1500 bytes).
const DATAGRAM: usize = 65_536;
/// How often closed connections and expired handshakes are swept.
const SWEEP: Duration = Duration::from_millis(500);
/// Most steps of srt-protocol's listener taken for one input.
const STEPS: usize = 64;
/// Most datagrams read before the task yields to the others (it also
/// yields whenever the socket is empty).
const DRAIN: usize = 2048;

/// What a caller's handshake offers, as srt-protocol parsed it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Offer {
    /// A key material request (the caller encrypts: it has a passphrase).
    pub(crate) key_material: bool,
    /// Key material of another kind (a response) where a request belongs.
    pub(crate) other_key_material: bool,
    /// The HSv5 handshake request extension.
    pub(crate) handshake_request: bool,
}

impl Offer {
    fn of(packet: &Packet) -> Offer {
        let Packet::Control(ControlPacket {
            control_type: ControlTypes::Handshake(hs),
            ..
        }) = packet
        else {
            return Offer::default();
        };
        let HandshakeVsInfo::V5(info) = &hs.info else {
            return Offer::default();
        };
        Offer {
            key_material: matches!(info.ext_km, Some(SrtControlPacket::KeyRefreshRequest(_))),
            other_key_material: matches!(
                info.ext_km,
                Some(ref km) if !matches!(km, SrtControlPacket::KeyRefreshRequest(_))
            ),
            handshake_request: matches!(info.ext_hs, Some(SrtControlPacket::HandshakeRequest(_))),
        }
    }
}

/// Why an accepted handshake did not open a connection.
#[derive(Debug)]
pub(crate) enum AcceptError {
    /// srt-protocol refused it with this reason (`REJ_BADSECRET`: the
    /// caller's passphrase is not the path's).
    Rejected(RejectReason),
    /// The handshake is gone (it timed out, srt-protocol could not go on
    /// with it, or the listener stops); the listener counted why.
    Gone(&'static str),
}

impl std::fmt::Display for AcceptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AcceptError::Rejected(r) => write!(f, "rejected in the handshake: {r}"),
            AcceptError::Gone(why) => f.write_str(why),
        }
    }
}

type Opened = oneshot::Sender<Result<SrtConnection, AcceptError>>;

/// An answer of the accept loop to the request numbered `ask`.
#[derive(Debug)]
struct Response {
    session: SessionId,
    ask: u64,
    answer: AccessControlResponse,
    opened: Option<Opened>,
}

/// A caller's conclusion, waiting for an answer: accept or reject.
#[derive(Debug)]
pub(crate) struct ConnectionRequest {
    request: AccessControlRequest,
    offer: Offer,
    ask: u64,
    responses: Option<mpsc::UnboundedSender<Response>>,
}

impl ConnectionRequest {
    /// The caller's address.
    pub(crate) fn remote(&self) -> SocketAddr {
        self.request.remote
    }

    /// The stream id, if it has one srt-protocol could read.
    pub(crate) fn stream_id(&self) -> Option<&StreamId> {
        self.request.stream_id.as_ref()
    }

    /// The key size the caller announced (`pbkeylen`), if any.
    pub(crate) fn key_size(&self) -> KeySize {
        self.request.key_size
    }

    /// What else the handshake offers.
    pub(crate) fn offer(&self) -> Offer {
        self.offer
    }

    fn respond(&mut self, answer: AccessControlResponse, opened: Option<Opened>) -> bool {
        let response = Response {
            session: SessionId(self.request.remote),
            ask: self.ask,
            answer,
            opened,
        };
        self.responses
            .take()
            .is_some_and(|r| r.send(response).is_ok())
    }

    /// Accepts with these keys (`None`: unencrypted); the connection once
    /// srt-protocol agrees (a wrong passphrase fails here).
    pub(crate) async fn accept(
        mut self,
        keys: Option<KeySettings>,
    ) -> Result<SrtConnection, AcceptError> {
        let stopped = AcceptError::Gone("the listener stopped");
        let (tx, rx) = oneshot::channel();
        if !self.respond(AccessControlResponse::Accepted(keys), Some(tx)) {
            return Err(stopped);
        }
        rx.await.unwrap_or(Err(stopped))
    }

    /// Rejects with this reason (sent in the handshake).
    pub(crate) fn reject(mut self, reason: RejectReason) {
        self.respond(AccessControlResponse::Rejected(reason), None);
    }
}

impl Drop for ConnectionRequest {
    fn drop(&mut self) {
        // Never left without an answer: srt-protocol would keep the session.
        self.respond(AccessControlResponse::Dropped, None);
    }
}

/// The running listener: its requests, and its task.
#[derive(Debug)]
pub(crate) struct Listener {
    /// Conclusions asking for access.
    pub(crate) requests: mpsc::Receiver<ConnectionRequest>,
    /// The task that owns the socket; it ends when [`Listener`] is dropped.
    pub(crate) task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the listener on `socket` with these connection settings, held to
/// `limits`, counting refusals in `stats`.
pub(crate) fn spawn(
    socket: UdpSocket,
    settings: ConnInitSettings,
    limits: Limits,
    stats: Arc<ListenerStats>,
) -> io::Result<Listener> {
    let local = socket.local_addr()?;
    let (requests_tx, requests) = mpsc::channel(REQUEST_QUEUE);
    let (responses_tx, responses) = mpsc::unbounded_channel();
    let demux = Demux {
        socket: Arc::new(socket),
        local,
        local_socket_id: settings.local_sockid.0,
        listener: MultiplexListener::new(Instant::now(), local, settings),
        requests: requests_tx,
        responses_tx,
        peers: Peers::new(limits),
        stats,
        dropped: 0,
        asks: 0,
    };
    Ok(Listener {
        requests,
        // Outside the runtime's cooperative budget: the budget (128 socket
        // reads per poll) made this task, which reads every reader's ACKs,
        // wait a whole round of the connections' tasks after each 128
        // datagrams, and the socket's queue then filled (BENCHMARKS.md, SRT).
        // It yields by itself instead, every [`DRAIN`] datagrams.
        task: tokio::spawn(tokio::task::coop::unconstrained(demux.run(responses))),
    })
}

/// A handshake srt-protocol's listener holds, not yet an open connection.
#[derive(Debug, Default)]
struct Handshaking {
    /// Accepted, waiting for srt-protocol to open the connection.
    opened: Option<Opened>,
    /// The request the accept loop has not answered yet.
    asked: Option<u64>,
}

/// Where the input srt-protocol's listener is driven with comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// A caller's packet: a rejection that follows is srt-protocol's own.
    Packet,
    /// The accept loop's answer: it counts its own rejections.
    Answer,
}

struct Demux {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    local_socket_id: u32,
    listener: MultiplexListener,
    requests: mpsc::Sender<ConnectionRequest>,
    responses_tx: mpsc::UnboundedSender<Response>,
    /// Handshakes in progress and open connections, by the caller's address.
    peers: Peers<Handshaking, Routed>,
    /// The listener's counters.
    stats: Arc<ListenerStats>,
    /// Packets dropped because their connection's queue was full.
    dropped: u64,
    /// Requests made so far (their numbers).
    asks: u64,
}

/// One step of srt-protocol's listener, owned (its `Action` borrows it).
enum Step {
    Send(Packet, SocketAddr),
    Ask(SessionId, AccessControlRequest),
    Reject(SessionId, Option<(Packet, SocketAddr)>),
    Open(SessionId, Box<(Option<(Packet, SocketAddr)>, Connection)>),
    Delegate(SessionId, (Packet, SocketAddr)),
    Drop(SessionId),
    Statistics,
    Wait,
}

fn step(listener: &mut MultiplexListener, now: Instant, input: Input) -> Step {
    match listener.handle_input(now, input) {
        Action::SendPacket((p, to)) => Step::Send(p, to),
        Action::RequestAccess(id, r) => Step::Ask(id, r),
        Action::RejectConnection(id, p) => Step::Reject(id, p),
        Action::OpenConnection(id, c) => Step::Open(id, c),
        Action::DelegatePacket(id, p) => Step::Delegate(id, p),
        Action::DropConnection(id) => Step::Drop(id),
        Action::UpdateStatistics(_) => Step::Statistics,
        Action::WaitForInput | Action::Close => Step::Wait,
    }
}

/// The reason a rejection srt-protocol made carries.
fn rejection_reason(packet: &Option<(Packet, SocketAddr)>) -> Option<RejectReason> {
    match packet {
        Some((
            Packet::Control(ControlPacket {
                control_type: ControlTypes::Handshake(hs),
                ..
            }),
            _,
        )) => match hs.shake_type {
            ShakeType::Rejection(r) => Some(r),
            _ => None,
        },
        _ => None,
    }
}

/// The counter name (a fixed word, see [`ListenerStats::refused`]) of a
/// rejection by its code.
pub(crate) fn refusal_name(reason: RejectReason) -> &'static str {
    use CoreRejectReason as C;
    use ServerRejectReason as S;
    match reason {
        RejectReason::Core(C::BadSecret) => "bad_passphrase",
        RejectReason::Core(C::Unsecure) => "unsecure",
        RejectReason::Core(C::Rogue) => "malformed",
        RejectReason::Core(C::Congestion | C::Filter | C::Group | C::MessageApi | C::Version)
        | RejectReason::Server(S::Version) => "unsupported",
        RejectReason::Core(C::Resource) | RejectReason::Server(S::Overload) => {
            "too_many_connections"
        }
        RejectReason::Server(S::Unauthorized | S::Forbidden) => "unauthorized",
        RejectReason::Server(S::Notfound) => "not_found",
        RejectReason::Server(S::BadRequest) => "bad_stream_id",
        _ => "refused",
    }
}

/// The counter name of a screen's refusal by libsrt's code.
fn screen_refusal_name(code: i32) -> &'static str {
    match code {
        screen::REJ_CONGESTION | screen::REJ_FILTER | screen::REJ_GROUP => "unsupported",
        _ => "malformed",
    }
}

/// What a log line names a caller's request by: `{mode} {path}`, or its
/// stream id as [`streamid::shown`] shows it.
fn requested(stream_id: Option<&str>) -> String {
    match streamid::parse(stream_id) {
        Ok(r) => format!("{} {}", r.mode, r.key),
        Err(_) => match stream_id {
            Some(id) => format!("stream id {:?}", streamid::shown(id)),
            None => "no stream id yet".into(),
        },
    }
}

/// A rejection of `hs` with `reason`, from the listener's socket `local`.
fn rejection_of(
    hs: &HandshakeControlInfo,
    timestamp: srt_protocol::packet::TimeStamp,
    reason: RejectReason,
    local: srt_protocol::packet::SocketId,
) -> Packet {
    Packet::Control(ControlPacket {
        timestamp,
        dest_sockid: hs.socket_id,
        control_type: ControlTypes::Handshake(HandshakeControlInfo {
            shake_type: ShakeType::Rejection(reason),
            socket_id: local,
            info: HandshakeVsInfo::V5(HsV5Info::default()),
            ..hs.clone()
        }),
    })
}

impl Demux {
    async fn run(mut self, mut responses: mpsc::UnboundedReceiver<Response>) {
        let ipv6 = self.local.is_ipv6();
        let mut buf = vec![0u8; DATAGRAM];
        let mut sweep = tokio::time::interval(SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut in_a_row = 0;
        loop {
            // A flood never keeps the worker from the connections' tasks
            // (counted since the last forced yield, not reset when the socket
            // runs empty: at worst an early yield).
            if in_a_row >= DRAIN {
                in_a_row = 0;
                tokio::task::yield_now().await;
            }
            tokio::select! {
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => {
                        in_a_row += 1;
                        // recv_from never reports more than the buffer holds.
                        let datagram = buf.get(..len).unwrap_or_default();
                        self.datagram(datagram, from, ipv6).await
                    }
                    // Errors of a UDP socket concern one datagram (ICMP reports among them).
                    Err(e) => debug!("srt: receiving on {}: {e}", self.local),
                },
                Some(response) = responses.recv() => self.respond(response).await,
                _ = sweep.tick() => self.sweep(Instant::now()),
            }
        }
    }

    async fn datagram(&mut self, datagram: &[u8], from: SocketAddr, ipv6: bool) {
        match screen::screen(datagram) {
            Verdict::Pass => {}
            Verdict::Drop(why) => {
                debug!(peer = %from, "srt: dropped {why} (srt-protocol 0.4.4 cannot parse it)");
                return;
            }
            Verdict::Refuse(refusal) => return self.refuse(from, refusal).await,
        }
        let parsed = catch_unwind(|| Packet::parse(&mut &datagram[..], ipv6));
        let packet = match parsed {
            Ok(Ok(packet)) => packet,
            Ok(Err(e)) => return self.junk(from, "not_srt", &format!("not an SRT packet ({e})")),
            Err(_) => {
                if let Some(note) = self.stats.log_limit().check_now() {
                    error!(peer = %from, "srt: srt-protocol panicked parsing a packet; dropped it{note}");
                }
                return;
            }
        };
        let packet = match self.peers.connection(from) {
            Some(routed) => match routed.try_send((packet, from)) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.dropped += 1;
                    if self.dropped.is_power_of_two() {
                        debug!(peer = %from, "srt: a connection's queue is full ({} packets dropped)", self.dropped);
                    }
                    return;
                }
                // The connection ended: what comes from there now is a new caller.
                Err(mpsc::error::TrySendError::Closed((packet, _))) => {
                    self.forget(SessionId(from));
                    packet
                }
            },
            None => packet,
        };
        // Only a handshake starts or continues one.
        let Packet::Control(ControlPacket {
            timestamp,
            control_type: ControlTypes::Handshake(hs),
            ..
        }) = &packet
        else {
            // Random bytes mostly parse as a data packet: they end here.
            if self.peers.handshake_mut(from).is_none() {
                self.junk(
                    from,
                    "no_session",
                    "an SRT packet of no connection or handshake (junk, or late after a close)",
                );
            }
            return;
        };
        if self.peers.handshake_mut(from).is_none() {
            // A new caller starts with an induction; anything else from an
            // unknown address (a conclusion that crossed our rejection, a
            // forgotten caller) would only leave state behind.
            if hs.shake_type != ShakeType::Induction {
                debug!(peer = %from, "srt: dropped a {:?} handshake from an unknown caller", hs.shake_type);
                return;
            }
            // Within the limits, or refused before anything of it is kept.
            if let Err(over) = self.admit(from) {
                let rejection = rejection_of(
                    hs,
                    *timestamp,
                    RejectReason::Server(ServerRejectReason::Overload),
                    srt_protocol::packet::SocketId(self.local_socket_id),
                );
                let sid = match &hs.info {
                    HandshakeVsInfo::V5(info) => info.sid.as_deref(),
                    HandshakeVsInfo::V4(_) => None,
                };
                if let Some(note) = self.stats.log_limit().check_now() {
                    info!(peer = %from, "srt connection refused: {}: {over}{note}", requested(sid));
                }
                self.stats.refused("too_many_connections");
                self.send(&rejection, from).await;
                return;
            }
            self.peers
                .start(from, Instant::now(), Handshaking::default());
        }
        let session = SessionId(from);
        let offer = Offer::of(&packet);
        self.drive(
            session,
            Input::Packet(Ok((packet, from))),
            offer,
            Origin::Packet,
        )
        .await;
    }

    /// A datagram dropped for what it is, not for who sent it: counted under
    /// `reason` and logged, rate-limited with the listener's refusals,
    /// naming the peer (a flood of junk costs a few lines, not one each).
    fn junk(&self, from: SocketAddr, reason: &'static str, what: &str) {
        self.stats.refused(reason);
        if let Some(note) = self.stats.log_limit().check_now() {
            info!(peer = %from, reason, "srt: dropped a datagram from {from}: {what}{note}");
        }
    }

    /// Whether a caller not known yet is within the limits; connections
    /// that closed since the last sweep are forgotten first if it is not.
    fn admit(&mut self, from: SocketAddr) -> Result<(), Over> {
        self.peers.admit(from).or_else(|_| {
            for addr in self.peers.closed(|routed| routed.is_closed()) {
                self.forget(SessionId(addr));
            }
            self.peers.admit(from)
        })
    }

    /// Answers a handshake the screen refused; srt-protocol forgets it.
    async fn refuse(&mut self, from: SocketAddr, refusal: screen::Refusal) {
        let what = requested(refusal.handshake.stream_id.as_deref());
        self.stats.refused(screen_refusal_name(refusal.code));
        if !refusal.handshake.is_conclusion() {
            if let Some(note) = self.stats.log_limit().check_now() {
                info!(peer = %from, kind = refusal.handshake.kind, "srt connection refused: a handshake dropped: {what}: {}{note}", refusal.why);
            }
            return;
        }
        if let Some(note) = self.stats.log_limit().check_now() {
            info!(peer = %from, code = refusal.code, "srt connection refused: {what}: {}{note}", refusal.why);
        }
        let answer = screen::rejection(&refusal.handshake, refusal.code, self.local_socket_id);
        if let Err(e) = self.socket.send_to(&answer, from).await
            && let Some(note) = self.stats.log_limit().check_now()
        {
            warn!(peer = %from, "srt: could not send the rejection: {e}{note}");
        }
        if self.peers.connection(from).is_none() {
            self.forget(SessionId(from));
        }
    }

    /// An answer of the accept loop: srt-protocol's listener gets it only
    /// if it is the answer to the request this handshake waits for.
    async fn respond(&mut self, response: Response) {
        let Response {
            session,
            ask,
            answer,
            opened,
        } = response;
        match self.peers.handshake_mut(session.0) {
            Some(h) if h.asked == Some(ask) => {
                h.asked = None;
                h.opened = opened;
            }
            _ => {
                // Forgotten meanwhile (it timed out, or the peer started over).
                if let Some(opened) = opened {
                    let _ = opened.send(Err(AcceptError::Gone(
                        "the handshake was forgotten meanwhile (it timed out)",
                    )));
                }
                return;
            }
        }
        let input = Input::AccessResponse(Some((session, answer)));
        self.drive(session, input, Offer::default(), Origin::Answer)
            .await;
        // Accepted but not opened: srt-protocol could not use the handshake.
        if let Some(opened) = self
            .peers
            .handshake_mut(session.0)
            .and_then(|h| h.opened.take())
        {
            if let Some(note) = self.stats.log_limit().check_now() {
                info!(peer = %session.0, "srt connection refused: srt-protocol did not open the accepted connection{note}");
            }
            self.stats.refused("malformed");
            let _ = opened.send(Err(AcceptError::Gone(
                "srt-protocol did not open the connection",
            )));
            self.forget(session);
        }
    }

    /// Feeds srt-protocol's listener one input and carries out its steps.
    async fn drive(&mut self, session: SessionId, mut input: Input, offer: Offer, origin: Origin) {
        // A rejection of this caller counted here already (the queue was full).
        let mut counted = false;
        for _ in 0..STEPS {
            let now = Instant::now();
            let listener = &mut self.listener;
            let step = match catch_unwind(AssertUnwindSafe(|| step(listener, now, input))) {
                Ok(step) => step,
                Err(_) => {
                    if let Some(note) = self.stats.log_limit().check_now() {
                        error!(peer = %session.0, "srt connection refused: srt-protocol's listener panicked on this peer's handshake; forgetting it{note}");
                    }
                    self.stats.refused("malformed");
                    self.forget(session);
                    return;
                }
            };
            input = match step {
                Step::Wait => return,
                Step::Statistics => Input::Success(ResultOf::UpdateStatistics),
                Step::Send(packet, to) => {
                    let sent = self.send(&packet, to).await;
                    let of = ResultOf::SendPacket(to);
                    if sent {
                        Input::Success(of)
                    } else {
                        Input::Failure(of)
                    }
                }
                Step::Ask(id, request) => {
                    self.asks += 1;
                    let request = ConnectionRequest {
                        request,
                        offer,
                        ask: self.asks,
                        responses: Some(self.responses_tx.clone()),
                    };
                    match self.requests.try_send(request) {
                        Ok(()) => {
                            if let Some(h) = self.peers.handshake_mut(id.0) {
                                h.asked = Some(self.asks);
                            }
                            Input::Success(ResultOf::RequestAccess(id))
                        }
                        Err(e) => {
                            let mut request = e.into_inner();
                            request.responses = None;
                            if let Some(note) = self.stats.log_limit().check_now() {
                                info!(peer = %id.0, "srt connection refused: {}: {REQUEST_QUEUE} handshakes wait for an answer already{note}", requested(request.stream_id().map(|s| s.as_str())));
                            }
                            self.stats.refused("too_many_connections");
                            counted = true;
                            let busy = RejectReason::Server(ServerRejectReason::Overload);
                            Input::AccessResponse(Some((id, AccessControlResponse::Rejected(busy))))
                        }
                    }
                }
                Step::Reject(id, packet) => {
                    let reason = rejection_reason(&packet);
                    match self.peers.remove_handshake(id.0).and_then(|h| h.opened) {
                        // Accepted, and srt-protocol refused it (a wrong passphrase):
                        // the accept loop logs and counts it.
                        Some(opened) => {
                            let reason =
                                reason.unwrap_or(RejectReason::Core(CoreRejectReason::Peer));
                            let _ = opened.send(Err(AcceptError::Rejected(reason)));
                        }
                        // srt-protocol's own refusal of a packet (an HSv4 caller).
                        None if origin == Origin::Packet && !counted => {
                            let why = reason.map_or("no reason given".into(), |r| r.to_string());
                            if let Some(note) = self.stats.log_limit().check_now() {
                                info!(peer = %id.0, "srt connection refused: srt-protocol rejected the handshake: {why}{note}");
                            }
                            self.stats.refused(reason.map_or("refused", refusal_name));
                        }
                        // The accept loop's rejection: counted there.
                        None => {}
                    }
                    if let Some((p, to)) = &packet {
                        self.send(p, *to).await;
                    }
                    Input::Success(ResultOf::RejectConnection(id))
                }
                Step::Open(id, opened) => {
                    let (packet, connection) = *opened;
                    let (conn, routed) = SrtConnection::spawn(Arc::clone(&self.socket), connection);
                    let waiting = self.peers.open(id.0, routed).and_then(|h| h.opened);
                    if let Some((p, to)) = &packet {
                        self.send(p, *to).await;
                    }
                    match waiting {
                        Some(opened) => {
                            let _ = opened.send(Ok(conn));
                        }
                        // Nobody waits for it (cannot happen: srt-protocol opens on an acceptance).
                        None => drop(conn),
                    }
                    Input::Success(ResultOf::OpenConnection(id))
                }
                Step::Delegate(id, packet) => {
                    let of = ResultOf::DelegatePacket(id);
                    if self
                        .peers
                        .connection(id.0)
                        .is_some_and(|r| r.try_send(packet).is_ok())
                    {
                        Input::Success(of)
                    } else {
                        Input::Failure(of)
                    }
                }
                Step::Drop(id) => {
                    self.peers.remove(id.0);
                    Input::Success(ResultOf::DropConnection(id))
                }
            };
        }
        if let Some(note) = self.stats.log_limit().check_now() {
            warn!(peer = %session.0, "srt connection refused: srt-protocol's listener did not settle on this peer's handshake; forgetting it{note}");
        }
        self.stats.refused("malformed");
        self.forget(session);
    }

    /// Removes a peer's session from srt-protocol's listener and from here.
    fn forget(&mut self, session: SessionId) {
        if let Some(Peer::Handshake { state, .. }) = self.peers.remove(session.0)
            && let Some(opened) = state.opened
        {
            let _ = opened.send(Err(AcceptError::Gone("the handshake was forgotten")));
        }
        let listener = &mut self.listener;
        let now = Instant::now();
        // srt-protocol removes a session when told its drop succeeded.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            step(
                listener,
                now,
                Input::Success(ResultOf::DropConnection(session)),
            )
        }));
    }

    /// Forgets ended connections, and handshakes older than the handshake
    /// timeout (a refusal: logged and counted).
    fn sweep(&mut self, now: Instant) {
        for addr in self.peers.closed(|routed| routed.is_closed()) {
            self.forget(SessionId(addr));
        }
        let timeout = self.peers.limits().handshake_timeout;
        for addr in self.peers.expired(now) {
            if let Some(note) = self.stats.log_limit().check_now() {
                info!(peer = %addr, "srt connection refused: the handshake did not complete within {timeout:?}; forgotten{note}");
            }
            self.stats.refused("handshake_timeout");
            self.forget(SessionId(addr));
        }
    }

    async fn send(&mut self, packet: &Packet, to: SocketAddr) -> bool {
        let mut buf = bytes::BytesMut::with_capacity(packet.wire_size());
        packet.serialize(&mut buf);
        match self.socket.send_to(&buf, to).await {
            Ok(_) => true,
            Err(e) => {
                debug!(peer = %to, "srt: sending a handshake failed: {e}");
                false
            }
        }
    }
}
