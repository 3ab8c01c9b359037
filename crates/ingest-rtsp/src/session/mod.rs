//! The sans-IO RTSP server session: bytes and time in; responses,
//! interleaved media, events and a deadline out. No socket, no clock.
//!
//! One [`Session`] is one RTSP connection (the RTSP session lives and dies
//! with it). It parses requests and `$`-interleaved frames with
//! `rtsp-types`, answers what it can answer alone (`OPTIONS`, `SETUP`,
//! `RECORD`, `PLAY`, `TEARDOWN`, `GET_PARAMETER` / `SET_PARAMETER`
//! keep-alives) and hands out what needs the kernel as [`SessionEvent`]s:
//! an `ANNOUNCE` or `DESCRIBE` is answered by [`Session::accept_announce`],
//! [`Session::accept_describe`] or [`Session::refuse`], and until then no
//! further input is parsed (a pipelined `SETUP` waits for its stream).
//!
//! Requests after `SETUP` must carry the session id it issued (`454 Session
//! Not Found` otherwise). The session expires when nothing arrives for the
//! configured timeout ([`Session::poll_timeout`] / [`Session::handle_timeout`]);
//! the driver calls [`Session::touch`] for media that arrives on UDP. A
//! request that has begun must be complete (head and body) within the
//! shorter head timeout, counted from its first byte: a peer that trickles
//! a byte now and then, which the session timeout alone would let hold the
//! connection for ever, is cut.
// Reads network input: no indexing, unwrap, expect or panic that a peer
// could reach (issue 18); where an invariant proves one safe, an allow says which.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use rtsp_types::headers::{self, HeaderName};
use rtsp_types::{Message, Method, ParseError, Request, Response, StatusCode, Version};
use tidewater_core::Credentials;

use crate::auth;
use crate::error::{Error, Result};
use crate::sdp::SdpTrack;
use crate::target::Target;

/// The largest interleaved frame (its length field is 16 bits).
const MAX_INTERLEAVED: usize = 4 + 65_535;
/// The most tracks a session sets up.
pub const MAX_TRACKS: usize = 16;

/// What the session needs to know from the listener's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Close after this long without input.
    pub timeout: Duration,
    /// The longest request accepted.
    pub max_request_len: usize,
    /// A request begun must be complete this long after its first byte.
    pub head_timeout: Duration,
    /// Whether RTP over UDP may be set up; otherwise `461 Unsupported Transport`.
    pub udp: bool,
    /// The server's RTP and RTCP ports, announced in UDP `SETUP` answers.
    pub server_ports: (u16, u16),
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            timeout: crate::config::DEFAULT_SESSION_TIMEOUT,
            max_request_len: crate::config::DEFAULT_MAX_REQUEST_LEN,
            head_timeout: crate::config::DEFAULT_HEAD_TIMEOUT,
            udp: false,
            server_ports: (
                crate::config::DEFAULT_RTP_PORT,
                crate::config::DEFAULT_RTCP_PORT,
            ),
        }
    }
}

/// How a track's RTP and RTCP travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `$`-interleaved on the RTSP connection, on these channels.
    Tcp {
        /// RTP channel.
        rtp: u8,
        /// RTCP channel.
        rtcp: u8,
    },
    /// UDP to and from these client ports (on the connection's peer address).
    Udp {
        /// The client's RTP port.
        rtp: u16,
        /// The client's RTCP port.
        rtcp: u16,
    },
}

/// A stream request that needs the kernel's answer.
#[derive(Clone, Debug)]
pub struct StreamRequest {
    /// The stream, track and query the URL names.
    pub target: Target,
    /// Credentials from the `Authorization` header.
    pub credentials: Credentials,
    /// The request URL as sent.
    pub url: String,
}

/// What happened on the session, for the driver.
#[derive(Debug)]
pub enum SessionEvent {
    /// `ANNOUNCE`: a client wants to publish these tracks. Answer with
    /// [`Session::accept_announce`] or [`Session::refuse`].
    Announce {
        /// The stream and credentials.
        request: StreamRequest,
        /// The announced media, in `m=` order.
        tracks: Vec<SdpTrack>,
    },
    /// `DESCRIBE`: a client wants to read a stream. Answer with
    /// [`Session::accept_describe`] or [`Session::refuse`].
    Describe(StreamRequest),
    /// `RECORD` was answered: media follows.
    Record,
    /// `PLAY`: send media. Answer with [`Session::accept_play`] (which
    /// writes `RTP-Info`) once the first frame to send is known.
    Play {
        /// Whether this resumes a paused session (`false`: the first `PLAY`).
        resume: bool,
    },
    /// `PAUSE` was answered: stop sending until the next `PLAY`.
    Pause,
    /// An RTP packet of announced track `track` (its `m=` index).
    Rtp {
        /// The track index.
        track: usize,
        /// The packet.
        packet: Bytes,
    },
    /// An RTCP packet about track `track`.
    Rtcp {
        /// The track index.
        track: usize,
        /// The packet.
        packet: Bytes,
    },
    /// `TEARDOWN` was answered: close once the output is written.
    Teardown,
    /// A request was answered 400 because its URL names no valid stream
    /// (the driver logs it).
    BadTarget {
        /// The method (`ANNOUNCE`, `DESCRIBE`, `SETUP`).
        method: String,
        /// Why: the name and the rule it breaks, or that there is no URL.
        why: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Idle,
    Announced,
    Recording,
    Described,
    Playing,
    Paused,
}

/// One set-up track's entry of an `RTP-Info` header: its `trackID`, the
/// sequence number and RTP timestamp of the first packet sent after `PLAY`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpInfo {
    /// The track (`trackID=N`).
    pub track: usize,
    /// The next sequence number.
    pub seq: u16,
    /// The RTP timestamp of the play position, when known.
    pub rtptime: Option<u32>,
}

#[derive(Debug)]
struct Pending {
    cseq: Option<String>,
    announce: Option<Vec<SdpTrack>>,
    key: String,
    url: String,
}

/// One RTSP connection's state machine (see the module docs).
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    id: String,
    input: BytesMut,
    output: BytesMut,
    events: VecDeque<SessionEvent>,
    pending: Option<Pending>,
    /// A `PLAY` waiting for [`Session::accept_play`]: its `CSeq`.
    pending_play: Option<Option<String>>,
    mode: Mode,
    /// The stream announced or described.
    key: Option<String>,
    /// The base URL of the announced or described stream.
    base: Option<String>,
    announced: Vec<SdpTrack>,
    described: usize,
    setups: Vec<Option<Transport>>,
    setup_done: bool,
    deadline: Instant,
    /// When the incomplete request at the head of the input began.
    head_started: Option<Instant>,
    /// When the latest input arrived.
    last_input: Instant,
    closed: bool,
}

impl Session {
    /// A session with the given id (the driver makes it unique), started at `now`.
    pub fn new(config: SessionConfig, id: String, now: Instant) -> Self {
        let deadline = now + config.timeout;
        Session {
            config,
            id,
            input: BytesMut::new(),
            output: BytesMut::new(),
            events: VecDeque::new(),
            pending: None,
            pending_play: None,
            mode: Mode::Idle,
            key: None,
            base: None,
            announced: Vec::new(),
            described: 0,
            setups: Vec::new(),
            setup_done: false,
            deadline,
            head_started: None,
            last_input: now,
            closed: false,
        }
    }

    /// The session id (`Session:` header).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The stream announced or described, once there is one.
    pub fn stream(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The transports set up, indexed by track (announced `m=` index for a
    /// publisher, `trackID` for a reader).
    pub fn setups(&self) -> &[Option<Transport>] {
        &self.setups
    }

    /// Whether the session ended (`TEARDOWN`, a fatal error).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Bytes received from the peer at `now`.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.touch(now);
        self.input.extend_from_slice(data);
        self.parse()
    }

    /// Whether the input begins with a request not yet complete that the
    /// session is waiting for (not one held while the kernel answers the
    /// previous one, nor an interleaved frame).
    fn partial_request(&self) -> bool {
        self.pending.is_none()
            && self.pending_play.is_none()
            && !self.closed
            && self.input.first().is_some_and(|b| *b != b'$')
    }

    /// Something arrived for this session outside the connection (UDP media).
    pub fn touch(&mut self, now: Instant) {
        self.deadline = now + self.config.timeout;
        self.last_input = now;
    }

    /// Reports a request refused for its URL ([`SessionEvent::BadTarget`]).
    fn bad_target(&mut self, method: &Method, why: Option<String>) {
        self.events.push_back(SessionEvent::BadTarget {
            method: <&str>::from(method).to_string(),
            why: why.unwrap_or_else(|| "no request URL".into()),
        });
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// What to write to the peer (responses), emptied.
    pub fn take_output(&mut self) -> Bytes {
        self.output.split().freeze()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called.
    pub fn poll_timeout(&self) -> Instant {
        match self.head_deadline() {
            Some(head) => head.min(self.deadline),
            None => self.deadline,
        }
    }

    /// When the incomplete request at the head of the input must be whole.
    fn head_deadline(&self) -> Option<Instant> {
        self.head_started.map(|t| t + self.config.head_timeout)
    }

    /// `Err(HeadTimeout)` once a request begun is not complete by its head
    /// timeout, `Err(Timeout)` once the session's deadline passed.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<()> {
        if self.head_deadline().is_some_and(|d| now >= d) {
            self.closed = true;
            return Err(Error::HeadTimeout {
                ctx: crate::error::Context {
                    peer: None,
                    stream: self.key.clone(),
                },
                after: self.config.head_timeout,
                received: self.input.len(),
            });
        }
        if now >= self.deadline {
            self.closed = true;
            return Err(Error::Timeout {
                ctx: crate::error::Context {
                    peer: None,
                    stream: self.key.clone(),
                },
            });
        }
        Ok(())
    }

    /// Answers the pending `ANNOUNCE` with 200: the stream is the client's.
    pub fn accept_announce(&mut self) -> Result<()> {
        let Some(p) = self.pending.take() else {
            return Ok(());
        };
        self.announced = p.announce.unwrap_or_default();
        self.setups = vec![None; self.announced.len()];
        self.mode = Mode::Announced;
        self.key = Some(p.key);
        self.base = Some(p.url);
        self.respond(200, p.cseq.as_deref(), &[], b"");
        self.parse()
    }

    /// Answers the pending `DESCRIBE` with this SDP describing `tracks` tracks.
    pub fn accept_describe(&mut self, sdp: &str, tracks: usize) -> Result<()> {
        let Some(p) = self.pending.take() else {
            return Ok(());
        };
        self.described = tracks.min(MAX_TRACKS);
        self.setups = vec![None; self.described];
        self.mode = Mode::Described;
        self.key = Some(p.key);
        let base = format!(
            "{}/",
            p.url.split('?').next().unwrap_or("").trim_end_matches('/')
        );
        self.base = Some(p.url);
        self.respond(
            200,
            p.cseq.as_deref(),
            &[
                (headers::CONTENT_BASE, base),
                (headers::CONTENT_TYPE, "application/sdp".to_string()),
            ],
            sdp.as_bytes(),
        );
        self.parse()
    }

    /// Answers the pending `PLAY` with 200, `Range` and an `RTP-Info` entry
    /// per track in `info` (URLs from the described stream's base URL).
    pub fn accept_play(&mut self, info: &[RtpInfo]) -> Result<()> {
        let Some(cseq) = self.pending_play.take() else {
            return Ok(());
        };
        let base = self
            .base
            .as_deref()
            .unwrap_or("")
            .split('?')
            .next()
            .unwrap_or("")
            .trim_end_matches('/')
            .to_string();
        let entries: Vec<String> = info
            .iter()
            .map(|i| {
                let mut e = format!("url={base}/{};seq={}", crate::sdp::control(i.track), i.seq);
                if let Some(t) = i.rtptime {
                    e.push_str(&format!(";rtptime={t}"));
                }
                e
            })
            .collect();
        let mut extra = vec![
            (headers::SESSION, self.session_header()),
            (headers::RANGE, "npt=0.000-".to_string()),
        ];
        if !entries.is_empty() {
            extra.push((headers::RTP_INFO, entries.join(",")));
        }
        self.respond(200, cseq.as_deref(), &extra, b"");
        self.parse()
    }

    /// Answers the pending `ANNOUNCE` or `DESCRIBE` with an error status; a
    /// 401 carries Digest challenges with `nonce` (when the authorizer
    /// checks Digest: SHA-256, then MD5) and a Basic one, for `realm`.
    pub fn refuse(&mut self, status: u16, realm: &str, nonce: Option<&str>) -> Result<()> {
        let Some(p) = self.pending.take() else {
            return Ok(());
        };
        // Two `WWW-Authenticate` headers: the header map of rtsp-types
        // keeps one value per name, so they are written as lines of their own.
        let mut challenges = Vec::new();
        if status == 401 {
            if let Some(nonce) = nonce {
                challenges.push(auth::digest_sha256_challenge(realm, nonce));
                challenges.push(auth::digest_challenge(realm, nonce));
            }
            challenges.push(auth::basic_challenge(realm));
        }
        self.respond_with(status, p.cseq.as_deref(), &[], &challenges, b"");
        self.parse()
    }

    /// Parses what the input holds, then notes whether a request was left
    /// incomplete (its head timeout runs from the input that began it).
    fn parse(&mut self) -> Result<()> {
        let parsed = self.parse_input();
        if self.partial_request() {
            self.head_started.get_or_insert(self.last_input);
        } else {
            self.head_started = None;
        }
        parsed
    }

    fn parse_input(&mut self) -> Result<()> {
        while self.pending.is_none()
            && self.pending_play.is_none()
            && !self.closed
            && !self.input.is_empty()
        {
            if self.input.first() == Some(&b'$') {
                let Some(&[_, channel, hi, lo]) = self.input.get(..4) else {
                    return Ok(());
                };
                let len = usize::from(u16::from_be_bytes([hi, lo]));
                if self.input.len() < 4 + len {
                    return Ok(());
                }
                self.input.advance(4);
                let packet = self.input.split_to(len).freeze();
                self.interleaved(channel, packet);
                continue;
            }
            let parsed: std::result::Result<(Message<Vec<u8>>, usize), ParseError> =
                Message::parse(&self.input[..]);
            match parsed {
                Ok((message, consumed)) => {
                    self.input.advance(consumed);
                    // What follows is a new message: its time starts now.
                    self.head_started = None;
                    match message {
                        Message::Request(request) => self.request(request)?,
                        Message::Response(_) => {} // answers to nothing we asked: ignored
                        Message::Data(data) => {
                            let channel = data.channel_id();
                            self.interleaved(channel, Bytes::from(data.into_body()));
                        }
                    }
                }
                Err(ParseError::Incomplete(_)) => {
                    if self.input.len() > self.config.max_request_len {
                        self.closed = true;
                        return Err(Error::malformed(format!(
                            "request longer than {} bytes",
                            self.config.max_request_len
                        )));
                    }
                    return Ok(());
                }
                Err(ParseError::Error) => {
                    self.respond(400, None, &[], b"");
                    self.closed = true;
                    return Err(Error::malformed("not an RTSP request"));
                }
            }
        }
        if self.input.len() > self.config.max_request_len.max(MAX_INTERLEAVED) {
            // Held while a request is pending: a peer that keeps sending is cut.
            self.closed = true;
            return Err(Error::malformed(
                "too much input while a request is answered",
            ));
        }
        Ok(())
    }

    fn interleaved(&mut self, channel: u8, packet: Bytes) {
        for (track, setup) in self.setups.iter().enumerate() {
            match setup {
                Some(Transport::Tcp { rtp, .. }) if *rtp == channel => {
                    if self.mode == Mode::Recording {
                        self.events.push_back(SessionEvent::Rtp { track, packet });
                    }
                    return;
                }
                Some(Transport::Tcp { rtcp, .. }) if *rtcp == channel => {
                    self.events.push_back(SessionEvent::Rtcp { track, packet });
                    return;
                }
                _ => {}
            }
        }
    }

    fn request(&mut self, request: Request<Vec<u8>>) -> Result<()> {
        let cseq = request
            .header(&headers::CSEQ)
            .map(|v| v.as_str().to_string());
        let cseq = cseq.as_deref();
        if request.version() != Version::V1_0 {
            self.respond(505, cseq, &[], b"");
            return Ok(());
        }
        if self.setup_done
            && let Some(session) = request.header(&headers::SESSION)
            && session.as_str().split(';').next().map(str::trim) != Some(self.id.as_str())
        {
            self.respond(454, cseq, &[], b"");
            return Ok(());
        }
        let url = request
            .request_uri()
            .map(|u| u.to_string())
            .unwrap_or_default();
        match request.method() {
            Method::Options => {
                let public = "OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, PAUSE, RECORD, TEARDOWN, GET_PARAMETER, SET_PARAMETER";
                self.respond(200, cseq, &[(headers::PUBLIC, public.to_string())], b"");
            }
            Method::GetParameter | Method::SetParameter => self.respond(200, cseq, &[], b""),
            Method::Announce | Method::Describe => {
                let announce = *request.method() == Method::Announce;
                if self.mode != Mode::Idle {
                    self.respond(455, cseq, &[], b"");
                    return Ok(());
                }
                let target = match request.request_uri().map(Target::check) {
                    Some(Ok(target)) => target,
                    refused => {
                        self.bad_target(request.method(), refused.and_then(Result::err));
                        self.respond(400, cseq, &[], b"");
                        return Ok(());
                    }
                };
                let method = if announce { "ANNOUNCE" } else { "DESCRIBE" };
                let credentials = request
                    .header(&headers::AUTHORIZATION)
                    .map_or(Credentials::None, |h| auth::credentials(h.as_str(), method));
                let mut tracks = None;
                if announce {
                    match crate::sdp::parse(request.body()) {
                        Ok(t) if !t.is_empty() && t.len() <= MAX_TRACKS => tracks = Some(t),
                        _ => {
                            self.respond(400, cseq, &[], b"");
                            return Ok(());
                        }
                    }
                }
                let key = target.key.as_str().to_string();
                let request = StreamRequest {
                    target,
                    credentials,
                    url: url.clone(),
                };
                self.events.push_back(match &tracks {
                    Some(t) => SessionEvent::Announce {
                        request,
                        tracks: t.clone(),
                    },
                    None => SessionEvent::Describe(request),
                });
                self.pending = Some(Pending {
                    cseq: cseq.map(str::to_string),
                    announce: tracks,
                    key,
                    url,
                });
            }
            Method::Setup => self.setup(&request, cseq),
            Method::Record => {
                if self.mode != Mode::Announced || !self.setups.iter().any(Option::is_some) {
                    self.respond(455, cseq, &[], b"");
                    return Ok(());
                }
                self.mode = Mode::Recording;
                self.respond(200, cseq, &[(headers::SESSION, self.session_header())], b"");
                self.events.push_back(SessionEvent::Record);
            }
            Method::Play => {
                let resume = match self.mode {
                    Mode::Playing => {
                        // Already playing: nothing changes.
                        self.respond(
                            200,
                            cseq,
                            &[
                                (headers::SESSION, self.session_header()),
                                (headers::RANGE, "npt=0.000-".to_string()),
                            ],
                            b"",
                        );
                        return Ok(());
                    }
                    Mode::Paused => true,
                    Mode::Described if self.setups.iter().any(Option::is_some) => false,
                    _ => {
                        self.respond(455, cseq, &[], b"");
                        return Ok(());
                    }
                };
                self.mode = Mode::Playing;
                self.pending_play = Some(cseq.map(str::to_string));
                self.events.push_back(SessionEvent::Play { resume });
            }
            Method::Pause => match self.mode {
                Mode::Playing | Mode::Paused => {
                    let paused = self.mode == Mode::Paused;
                    self.mode = Mode::Paused;
                    self.respond(200, cseq, &[(headers::SESSION, self.session_header())], b"");
                    if !paused {
                        self.events.push_back(SessionEvent::Pause);
                    }
                }
                _ => self.respond(455, cseq, &[], b""),
            },
            Method::Teardown => {
                self.respond(200, cseq, &[(headers::SESSION, self.session_header())], b"");
                self.events.push_back(SessionEvent::Teardown);
                self.closed = true;
            }
            _ => self.respond(501, cseq, &[], b""),
        }
        Ok(())
    }

    fn session_header(&self) -> String {
        format!(
            "{};timeout={}",
            self.id,
            self.config.timeout.as_secs().max(1)
        )
    }

    fn setup(&mut self, request: &Request<Vec<u8>>, cseq: Option<&str>) {
        let publishing = match self.mode {
            Mode::Announced => true,
            Mode::Described => false,
            _ => {
                self.respond(455, cseq, &[], b"");
                return;
            }
        };
        let target = match request.request_uri().map(Target::check) {
            Some(Ok(target)) => target,
            refused => {
                self.bad_target(request.method(), refused.and_then(Result::err));
                self.respond(400, cseq, &[], b"");
                return;
            }
        };
        if Some(target.key.as_str()) != self.key.as_deref() {
            self.respond(404, cseq, &[], b"");
            return;
        }
        let url = request
            .request_uri()
            .map(|u| u.to_string())
            .unwrap_or_default();
        let index = if publishing {
            self.announced_track(&url, &target)
        } else {
            target.track_index.filter(|i| *i < self.described)
        };
        let Some(index) = index else {
            self.respond(404, cseq, &[], b"");
            return;
        };
        let Ok(Some(transports)) = request.typed_header::<headers::Transports>() else {
            self.respond(461, cseq, &[], b"");
            return;
        };
        let mut chosen = None;
        for transport in transports.iter() {
            let headers::Transport::Rtp(rtp) = transport else {
                continue;
            };
            if rtp.params.multicast {
                continue;
            }
            let tcp = rtp.lower_transport == Some(headers::RtpLowerTransport::Tcp);
            if tcp {
                let (rtp_ch, rtcp_ch) = match rtp.params.interleaved {
                    Some((a, b)) => (a, b.unwrap_or(a.wrapping_add(1))),
                    None => {
                        let a = u8::try_from(index * 2).unwrap_or(0);
                        (a, a + 1)
                    }
                };
                let taken = self.setups.iter().enumerate().any(|(i, s)| {
                    i != index
                        && matches!(s, Some(Transport::Tcp { rtp, rtcp }) if [*rtp, *rtcp].iter().any(|c| *c == rtp_ch || *c == rtcp_ch))
                });
                if taken {
                    continue;
                }
                chosen = Some(Transport::Tcp {
                    rtp: rtp_ch,
                    rtcp: rtcp_ch,
                });
                break;
            } else if self.config.udp
                && let Some((a, b)) = rtp.params.client_port
            {
                chosen = Some(Transport::Udp {
                    rtp: a,
                    rtcp: b.unwrap_or(a.wrapping_add(1)),
                });
                break;
            }
        }
        let Some(transport) = chosen else {
            self.respond(461, cseq, &[], b"");
            return;
        };
        let mode = if publishing { ";mode=record" } else { "" };
        let answer = match transport {
            Transport::Tcp { rtp, rtcp } => {
                format!("RTP/AVP/TCP;unicast;interleaved={rtp}-{rtcp}{mode}")
            }
            Transport::Udp { rtp, rtcp } => format!(
                "RTP/AVP;unicast;client_port={rtp}-{rtcp};server_port={}-{}{mode}",
                self.config.server_ports.0, self.config.server_ports.1
            ),
        };
        if let Some(slot) = self.setups.get_mut(index) {
            *slot = Some(transport);
        }
        self.setup_done = true;
        self.respond(
            200,
            cseq,
            &[
                (headers::TRANSPORT, answer),
                (headers::SESSION, self.session_header()),
            ],
            b"",
        );
    }

    /// Which announced track a SETUP URL names: by its `a=control` (relative
    /// or absolute), else by the number in `trackID=N` / `streamid=N`.
    fn announced_track(&self, url: &str, target: &Target) -> Option<usize> {
        let path = url.split('?').next().unwrap_or(url).trim_end_matches('/');
        let by_control = self.announced.iter().position(|t| {
            t.control.as_deref().is_some_and(|c| {
                let c = c.trim_end_matches('/');
                !c.is_empty() && c != "*" && (path == c || path.ends_with(&format!("/{c}")))
            })
        });
        by_control.or(target.track_index.filter(|i| *i < self.announced.len()))
    }

    fn respond(
        &mut self,
        status: u16,
        cseq: Option<&str>,
        extra: &[(HeaderName, String)],
        body: &[u8],
    ) {
        self.respond_with(status, cseq, extra, &[], body);
    }

    /// [`respond`](Self::respond) with `WWW-Authenticate` lines, one per challenge.
    fn respond_with(
        &mut self,
        status: u16,
        cseq: Option<&str>,
        extra: &[(HeaderName, String)],
        challenges: &[String],
        body: &[u8],
    ) {
        let mut builder = Response::builder(Version::V1_0, StatusCode::from(status))
            .header(headers::SERVER, "tidewater".to_string());
        if let Some(cseq) = cseq {
            builder = builder.header(headers::CSEQ, cseq.to_string());
        }
        for (name, value) in extra {
            builder = builder.header(name.clone(), value.clone());
        }
        if !body.is_empty() {
            builder = builder.header(headers::CONTENT_LENGTH, body.len().to_string());
        }
        let response = builder.build(body.to_vec());
        let mut out = Vec::with_capacity(256 + body.len());
        // Writing into a Vec cannot fail.
        let _ = response.write(&mut out);
        if !challenges.is_empty()
            && let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n")
        {
            let lines: Vec<u8> = challenges
                .iter()
                .flat_map(|c| format!("\r\nWWW-Authenticate: {c}").into_bytes())
                .collect();
            out.splice(end..end, lines);
        }
        self.output.extend_from_slice(&out);
    }
}

/// The RTSP status for a kernel refusal: 401 for missing or wrong
/// credentials (with a challenge), 403 forbidden, 404 unknown stream or
/// application, 453 publisher limit or taken stream, 503 rate-limited or
/// unavailable.
pub fn status_for(error: &tidewater_core::Error) -> u16 {
    use tidewater_core::{Error as E, RefusalKind};
    match error {
        E::Unauthorized { refusal, .. } => match refusal.kind() {
            RefusalKind::MissingCredentials | RefusalKind::InvalidCredentials => 401,
            RefusalKind::Forbidden => 403,
            _ => 503,
        },
        E::InvalidKey { .. } => 400,
        E::UnknownApp { .. } | E::NotFound { .. } | E::NoCatalog { .. } => 404,
        E::AlreadyPublishing { .. } | E::PublisherLimit { .. } => 453,
        _ => 500,
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly on what they did not expect"
)]
mod tests;
