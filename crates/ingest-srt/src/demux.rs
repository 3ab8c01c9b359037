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

use std::collections::HashMap;
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
    ControlPacket, ControlTypes, HandshakeVsInfo, Packet, RejectReason, ShakeType, SrtControlPacket,
};
use srt_protocol::settings::{ConnInitSettings, KeySettings};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::connection::{Routed, SrtConnection};
use crate::screen::{self, Verdict};
use crate::streamid;

/// Conclusions waiting for the accept loop.
const REQUEST_QUEUE: usize = 100;
/// The largest datagram read (SRT packets are at most 1500 bytes).
const DATAGRAM: usize = 65_536;
/// A handshake left unfinished this long is forgotten.
const HANDSHAKE_IDLE: Duration = Duration::from_secs(30);
/// How often closed connections and unfinished handshakes are swept.
const SWEEP: Duration = Duration::from_secs(1);
/// Most steps of srt-protocol's listener taken for one input.
const STEPS: usize = 64;

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

type Opened = oneshot::Sender<io::Result<SrtConnection>>;

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
    pub(crate) async fn accept(mut self, keys: Option<KeySettings>) -> io::Result<SrtConnection> {
        let (tx, rx) = oneshot::channel();
        if !self.respond(AccessControlResponse::Accepted(keys), Some(tx)) {
            return Err(io::ErrorKind::NotConnected.into());
        }
        rx.await
            .unwrap_or_else(|_| Err(io::ErrorKind::NotConnected.into()))
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

/// Starts the listener on `socket` with these connection settings.
pub(crate) fn spawn(socket: UdpSocket, settings: ConnInitSettings) -> io::Result<Listener> {
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
        handshakes: HashMap::new(),
        open: HashMap::new(),
        dropped: 0,
        asks: 0,
    };
    Ok(Listener {
        requests,
        task: tokio::spawn(demux.run(responses)),
    })
}

/// A handshake srt-protocol's listener holds, not yet an open connection.
#[derive(Debug)]
struct Handshaking {
    last: Instant,
    /// Accepted, waiting for srt-protocol to open the connection.
    opened: Option<Opened>,
    /// The request the accept loop has not answered yet.
    asked: Option<u64>,
}

struct Demux {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    local_socket_id: u32,
    listener: MultiplexListener,
    requests: mpsc::Sender<ConnectionRequest>,
    responses_tx: mpsc::UnboundedSender<Response>,
    handshakes: HashMap<SessionId, Handshaking>,
    open: HashMap<SocketAddr, Routed>,
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

fn rejection_reason(packet: &Option<(Packet, SocketAddr)>) -> String {
    match packet {
        Some((
            Packet::Control(ControlPacket {
                control_type: ControlTypes::Handshake(hs),
                ..
            }),
            _,
        )) => match hs.shake_type {
            ShakeType::Rejection(r) => format!("rejected in the handshake: {r}"),
            other => format!("rejected in the handshake ({other:?})"),
        },
        _ => "rejected in the handshake".into(),
    }
}

impl Demux {
    async fn run(mut self, mut responses: mpsc::UnboundedReceiver<Response>) {
        let ipv6 = self.local.is_ipv6();
        let mut buf = vec![0u8; DATAGRAM];
        let mut sweep = tokio::time::interval(SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => self.datagram(&buf[..len], from, ipv6).await,
                    // Errors of a UDP socket concern one datagram (ICMP reports among them).
                    Err(e) => debug!("srt: receiving on {}: {e}", self.local),
                },
                Some(response) = responses.recv() => self.respond(response).await,
                _ = sweep.tick() => self.sweep(),
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
            Ok(Err(e)) => {
                debug!(peer = %from, "srt: a packet that does not parse: {e}");
                return;
            }
            Err(_) => {
                error!(peer = %from, "srt: srt-protocol panicked parsing a packet; dropped it");
                return;
            }
        };
        let packet = match self.open.get(&from) {
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
        if !packet.is_handshake() {
            return;
        }
        let session = SessionId(from);
        let offer = Offer::of(&packet);
        let now = Instant::now();
        self.handshakes
            .entry(session)
            .or_insert(Handshaking {
                last: now,
                opened: None,
                asked: None,
            })
            .last = now;
        self.drive(session, Input::Packet(Ok((packet, from))), offer)
            .await;
    }

    /// Answers a handshake the screen refused; srt-protocol forgets it.
    async fn refuse(&mut self, from: SocketAddr, refusal: screen::Refusal) {
        let what = match streamid::parse(refusal.handshake.stream_id.as_deref()) {
            Ok(r) => format!("{} {}", r.mode, r.key),
            Err(_) => format!(
                "stream id {:?}",
                refusal.handshake.stream_id.as_deref().unwrap_or("")
            ),
        };
        if !refusal.handshake.is_conclusion() {
            debug!(peer = %from, "srt: dropped a handshake: {what}: {}", refusal.why);
            return;
        }
        info!(peer = %from, code = refusal.code, "srt connection refused: {what}: {}", refusal.why);
        let answer = screen::rejection(&refusal.handshake, refusal.code, self.local_socket_id);
        if let Err(e) = self.socket.send_to(&answer, from).await {
            warn!(peer = %from, "srt: could not send the rejection: {e}");
        }
        if !self.open.contains_key(&from) {
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
        match self.handshakes.get_mut(&session) {
            Some(h) if h.asked == Some(ask) => {
                h.asked = None;
                h.opened = opened;
            }
            _ => {
                // Forgotten meanwhile (it went quiet, or the peer started over).
                if let Some(opened) = opened {
                    let _ = opened.send(Err(io::ErrorKind::TimedOut.into()));
                }
                return;
            }
        }
        let input = Input::AccessResponse(Some((session, answer)));
        self.drive(session, input, Offer::default()).await;
        // Accepted but not opened: srt-protocol could not use the handshake.
        if let Some(opened) = self
            .handshakes
            .get_mut(&session)
            .and_then(|h| h.opened.take())
        {
            let _ = opened.send(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "srt-protocol did not open the connection",
            )));
            self.forget(session);
        }
    }

    /// Feeds srt-protocol's listener one input and carries out its steps.
    async fn drive(&mut self, session: SessionId, mut input: Input, offer: Offer) {
        for _ in 0..STEPS {
            let now = Instant::now();
            let listener = &mut self.listener;
            let step = match catch_unwind(AssertUnwindSafe(|| step(listener, now, input))) {
                Ok(step) => step,
                Err(_) => {
                    error!(peer = %session.0, "srt: srt-protocol's listener panicked on this peer's handshake; forgetting it");
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
                            if let Some(h) = self.handshakes.get_mut(&id) {
                                h.asked = Some(self.asks);
                            }
                            Input::Success(ResultOf::RequestAccess(id))
                        }
                        Err(e) => {
                            let mut request = e.into_inner();
                            request.responses = None;
                            warn!(peer = %id.0, "srt: {REQUEST_QUEUE} handshakes wait for an answer; refusing another");
                            let busy = RejectReason::Server(
                                srt_protocol::packet::ServerRejectReason::Overload,
                            );
                            Input::AccessResponse(Some((id, AccessControlResponse::Rejected(busy))))
                        }
                    }
                }
                Step::Reject(id, packet) => {
                    if let Some(opened) = self.handshakes.remove(&id).and_then(|h| h.opened) {
                        let reason = rejection_reason(&packet);
                        let _ = opened
                            .send(Err(io::Error::new(io::ErrorKind::PermissionDenied, reason)));
                    }
                    if let Some((p, to)) = &packet {
                        self.send(p, *to).await;
                    }
                    Input::Success(ResultOf::RejectConnection(id))
                }
                Step::Open(id, opened) => {
                    let (packet, connection) = *opened;
                    let (conn, routed) = SrtConnection::spawn(Arc::clone(&self.socket), connection);
                    self.open.insert(id.0, routed);
                    if let Some((p, to)) = &packet {
                        self.send(p, *to).await;
                    }
                    match self.handshakes.remove(&id).and_then(|h| h.opened) {
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
                        .open
                        .get(&id.0)
                        .is_some_and(|r| r.try_send(packet).is_ok())
                    {
                        Input::Success(of)
                    } else {
                        Input::Failure(of)
                    }
                }
                Step::Drop(id) => {
                    self.open.remove(&id.0);
                    self.handshakes.remove(&id);
                    Input::Success(ResultOf::DropConnection(id))
                }
            };
        }
        warn!(peer = %session.0, "srt: srt-protocol's listener did not settle; forgetting the peer");
        self.forget(session);
    }

    /// Removes a peer's session from srt-protocol's listener and from here.
    fn forget(&mut self, session: SessionId) {
        self.open.remove(&session.0);
        if let Some(opened) = self.handshakes.remove(&session).and_then(|h| h.opened) {
            let _ = opened.send(Err(io::ErrorKind::ConnectionAborted.into()));
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

    /// Forgets ended connections and handshakes gone quiet.
    fn sweep(&mut self) {
        let now = Instant::now();
        let mut gone: Vec<SessionId> = self
            .open
            .iter()
            .filter(|(_, routed)| routed.is_closed())
            .map(|(addr, _)| SessionId(*addr))
            .collect();
        gone.extend(
            self.handshakes
                .iter()
                .filter(|(_, h)| h.asked.is_none() && h.opened.is_none())
                .filter(|(_, h)| now.duration_since(h.last) > HANDSHAKE_IDLE)
                .map(|(id, _)| *id),
        );
        for session in gone {
            self.forget(session);
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
