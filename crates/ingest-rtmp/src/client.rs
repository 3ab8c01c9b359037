//! The sans-IO RTMP publishing client (what a push runs): bytes, kernel
//! events and time in; events, bytes and deadlines out.
//!
//! [`PublishClient`] owns no socket and no clock, like the server
//! [`Session`](crate::session::Session). The driver writes what
//! [`poll_transmit`](PublishClient::poll_transmit) and
//! [`io_slices`](PublishClient::io_slices) give, feeds what the destination
//! sends to [`handle_input`](PublishClient::handle_input), and once
//! [`ClientEvent::Publishing`] came, hands the followed stream's events to
//! [`handle_media`](PublishClient::handle_media): the client's
//! [`Egress`] queues the media chunks (from the stream's derived-output
//! cache when the stream id and chunk size are the shared ones and no
//! republish shifted the timestamps), `@setDataFrame` and the sequence
//! headers after each catalog, rebases a republish's timestamps, and at the
//! end of the stream queues `FCUnpublish` / `deleteStream`
//! ([`ClientEvent::Ended`]).
//!
//! Its deadlines, driven like the session's ([`poll_timeout`](PublishClient::poll_timeout),
//! [`handle_timeout`](PublishClient::handle_timeout)): connecting (from
//! [`PublishClient::new`] to the accepted publish, within
//! [`ClientConfig::connect_timeout`]; the driver's TCP and TLS connection
//! count against it) and each write ([`ClientConfig::write_timeout`]).
//!
//! The exchange is the one encoders (ffmpeg, OBS) use: handshake, Set Chunk
//! Size, `connect`, `releaseStream` + `FCPublish` + `createStream`, then
//! `publish` on the new stream until `onStatus NetStream.Publish.Start`.
//! Any `_error` to `connect` or `createStream`, and any `onStatus` of level
//! `error`, is [`Error::Refused`].
//!
//! **Why not `rml_rtmp`'s `ClientSession`.** The destination is a remote
//! peer like any other: its input goes through this crate's bounded
//! [`ChunkReader`] and depth-limited AMF0
//! decoder, not `rml_rtmp`'s deserializer (see the crate docs). And media is
//! written as prebuilt chunks (shared with the stream's RTMP viewers when the
//! destination hands out stream id 1), which `ClientSession`'s
//! `publish_video_data` would serialize into a fresh buffer per frame. The
//! handshake and the command serializer are `rml_rtmp`'s.

use std::collections::{HashMap, VecDeque};
use std::io::IoSlice;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::handshake::{Handshake, PeerType};
use rml_rtmp::messages::RtmpMessage;
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;

use crate::amf;
use crate::chunk::{ChunkReader, Message};
use crate::control;
use crate::egress::{Egress, EgressInput, Ending, Outcome, Transmit};
use crate::error::{Context, Error, Result};

pub use crate::egress::set_data_frame;

/// What the client announces itself as (`flashVer` of `connect`).
pub const FLASH_VER: &str = "FMLE/3.0 (compatible; tidewater)";

const TXN_CONNECT: f64 = 1.0;
const TXN_RELEASE: f64 = 2.0;
const TXN_FCPUBLISH: f64 = 3.0;
const TXN_CREATE: f64 = 4.0;
const TXN_PUBLISH: f64 = 5.0;

/// Most events queued before the driver takes them.
const MAX_EVENTS: usize = 1024;

/// What to publish where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// The application (`connect`'s `app`), e.g. `live`.
    pub app: String,
    /// `connect`'s `tcUrl`, e.g. `rtmp://host:1935/live`.
    pub tc_url: String,
    /// The stream name to publish, with its query if any (`cam1?token=…`).
    pub stream: String,
    /// The outbound chunk size, announced right after the handshake.
    pub chunk_size: u32,
    /// Longest message accepted from the destination, in bytes.
    pub max_message_len: usize,
    /// Time from [`PublishClient::new`] to the accepted publish.
    pub connect_timeout: Duration,
    /// A write that makes no progress for this long fails the client.
    pub write_timeout: Duration,
}

/// What happened on the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// `connect` succeeded.
    Connected,
    /// The destination accepted the publish: media may be sent on `stream_id`.
    Publishing {
        /// The message stream id to send media on.
        stream_id: u32,
    },
    /// An `onStatus` after the publish started (`level`, `code`); one of
    /// level `error` is [`Error::Refused`] instead while publishing.
    Status {
        /// `status` or `warning` (or `error`, after the end).
        level: String,
        /// The code.
        code: String,
    },
    /// The push fell behind and skipped this many frames to the next keyframe.
    Skipped {
        /// How many.
        frames: u64,
    },
    /// The stream was published anew; its timestamps go on from the last sent.
    Republished {
        /// The new publish's generation.
        generation: u64,
    },
    /// The stream ended (or the server is stopping): the publish's end is
    /// queued; write it out and close.
    Ended(Ending),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Handshake,
    Connecting,
    CreatingStream,
    PublishPending(u32),
    Publishing(u32),
    Closed,
}

/// The client side of one publishing RTMP connection.
pub struct PublishClient {
    config: ClientConfig,
    handshake: Option<Box<Handshake>>,
    state: State,
    failed: bool,
    reader: ChunkReader,
    writer: ChunkSerializer,
    out: Transmit,
    events: VecDeque<ClientEvent>,
    acks: control::Acknowledger,
    /// The media side, while publishing.
    egress: Option<Egress>,
    /// Until the publish is accepted.
    connect_deadline: Option<Instant>,
}

impl std::fmt::Debug for PublishClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishClient")
            .field("app", &self.config.app)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl PublishClient {
    /// A client for a connection attempt begun at `now`; its first output
    /// is the handshake's C0 and C1.
    pub fn new(config: ClientConfig, now: Instant) -> Result<Self> {
        let mut handshake = Box::new(Handshake::new(PeerType::Client));
        let c0c1 = handshake
            .generate_outbound_p0_and_p1()
            .map_err(|e| Error::Handshake {
                ctx: Context::default(),
                reason: format!("{e:?}"),
            })?;
        let mut out = Transmit::new(config.write_timeout);
        out.control().extend_from_slice(&c0c1);
        Ok(PublishClient {
            connect_deadline: Some(now + config.connect_timeout),
            egress: None,
            reader: ChunkReader::new(config.max_message_len),
            config: ClientConfig {
                chunk_size: crate::config::clamp_chunk_size(config.chunk_size),
                ..config
            },
            handshake: Some(handshake),
            state: State::Handshake,
            failed: false,
            writer: ChunkSerializer::new(),
            out,
            events: VecDeque::new(),
            acks: control::Acknowledger::default(),
        })
    }

    /// The outbound chunk size (every message this client sends uses it).
    pub fn chunk_size(&self) -> u32 {
        self.config.chunk_size
    }

    /// The stream to send media on, once publishing.
    pub fn stream_id(&self) -> Option<u32> {
        match self.state {
            State::Publishing(id) => Some(id),
            _ => None,
        }
    }

    /// Whether the destination accepted the publish.
    pub fn is_publishing(&self) -> bool {
        self.stream_id().is_some()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Everything to send so far, in order, as one buffer: for callers that
    /// write it themselves (the driver writes [`io_slices`](Self::io_slices)).
    pub fn take_output(&mut self) -> Option<Bytes> {
        self.out.take_all()
    }

    /// Whether the driver should hand over the followed stream's next
    /// event: publishing, and room left in the batch being gathered.
    pub fn wants_media(&self) -> bool {
        self.egress.is_some() && self.out.has_room()
    }

    /// The conversions of the generation the push reads next (after the
    /// publish started, and after each republish): an Opus stream's audio
    /// is pushed as AAC through them. Nothing happens when not publishing.
    pub fn set_conversions(
        &mut self,
        running: std::sync::Arc<crate::egress::Conversions>,
        stream: &str,
    ) {
        if let Some(egress) = &mut self.egress {
            egress.set_conversions(running, stream);
        }
    }

    /// One event of the followed stream: queues what it sends. At the end of
    /// the stream (or [`EgressInput::End`] for a stopping server) the
    /// publish's end is queued and [`ClientEvent::Ended`] follows; a push
    /// the kernel evicted for falling behind is an error (the connection is
    /// dropped and made anew). Nothing happens when not publishing.
    pub fn handle_media<'a>(&mut self, input: impl Into<EgressInput<'a>>) -> Result<()> {
        let Some(egress) = &mut self.egress else {
            return Ok(());
        };
        match egress.handle(input.into(), &mut self.out) {
            Outcome::Continue => {}
            Outcome::Skipped { frames } => self.events.push_back(ClientEvent::Skipped { frames }),
            Outcome::Republished { generation } => self
                .events
                .push_back(ClientEvent::Republished { generation }),
            Outcome::Ended(Ending::Evicted) => {
                self.egress = None;
                self.failed = true;
                return Err(Error::protocol(
                    "the push fell behind the stream repeatedly (evicted)",
                ));
            }
            Outcome::Ended(ending) => {
                self.unpublish()?;
                self.events.push_back(ClientEvent::Ended(ending));
            }
        }
        Ok(())
    }

    /// Whether anything is to be written; if so the write deadline runs from
    /// `now` (unless it runs already) and [`io_slices`](Self::io_slices)
    /// gives the bytes.
    pub fn poll_transmit(&mut self, now: Instant) -> bool {
        self.out.ready(now)
    }

    /// What waits to be written, oldest first, as up to `out.len()` slices.
    pub fn io_slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        self.out.io_slices(out)
    }

    /// The socket took `n` bytes at `now`.
    pub fn transmitted(&mut self, n: usize, now: Instant) {
        self.out.advance(n, now);
    }

    /// The next deadline, if any: call [`handle_timeout`](Self::handle_timeout) then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.out.deadline(), self.connect_deadline]
            .into_iter()
            .flatten()
            .min()
    }

    /// Applies the deadlines that passed by `now`: a write that made no
    /// progress ([`Error::WriteTimeout`]) or a publish not accepted in time
    /// ([`Error::Timeout`]) fails the client.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<()> {
        if self.out.expired(now) {
            self.failed = true;
            return Err(Error::WriteTimeout {
                ctx: Context::default(),
                after: self.out.write_timeout(),
            });
        }
        if self.connect_deadline.is_some_and(|d| now >= d) {
            self.connect_deadline = None;
            self.failed = true;
            return Err(Error::Timeout {
                ctx: Context::default(),
                what: "connecting and publishing",
                after: self.config.connect_timeout,
            });
        }
        Ok(())
    }

    /// Feeds bytes received from the destination. On an error the client is
    /// unusable: close the connection.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<()> {
        let result = self.input(data);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// Ends the publish politely (`FCUnpublish`, `deleteStream`); the
    /// connection may be closed once the output is written.
    pub fn unpublish(&mut self) -> Result<()> {
        self.egress = None;
        let State::Publishing(id) = self.state else {
            self.state = State::Closed;
            return Ok(());
        };
        self.state = State::Closed;
        self.command(
            "FCUnpublish",
            0.0,
            vec![Amf0Value::Utf8String(self.config.stream.clone())],
            0,
        )?;
        self.command(
            "deleteStream",
            0.0,
            vec![Amf0Value::Number(f64::from(id))],
            0,
        )
    }

    fn input(&mut self, data: &[u8]) -> Result<()> {
        if self.failed {
            return Err(Error::protocol("input after a failure"));
        }
        if let Some(hs) = &mut self.handshake {
            let Some(rest) = control::handshake_input(hs, data, self.out.control())? else {
                return Ok(());
            };
            self.handshake = None;
            self.start_connect()?;
            self.acks.received(rest.len());
            self.reader.push(&rest);
        } else {
            self.acks.received(data.len());
            self.reader.push(data);
        }
        while let Some(message) = self.reader.next_message()? {
            self.handle_message(message)?;
            if self.events.len() > MAX_EVENTS {
                return Err(Error::protocol("too many events in one read"));
            }
        }
        if let Some(ack) = self.acks.due() {
            self.send(ack, 0)?;
        }
        Ok(())
    }

    fn send(&mut self, message: RtmpMessage, stream_id: u32) -> Result<()> {
        control::send(&mut self.writer, self.out.control(), message, stream_id)
    }

    fn command(
        &mut self,
        name: &str,
        transaction: f64,
        args: Vec<Amf0Value>,
        stream_id: u32,
    ) -> Result<()> {
        self.command_with(name, transaction, Amf0Value::Null, args, stream_id)
    }

    fn command_with(
        &mut self,
        name: &str,
        transaction: f64,
        object: Amf0Value,
        args: Vec<Amf0Value>,
        stream_id: u32,
    ) -> Result<()> {
        self.send(
            control::amf0_command(name, transaction, object, args),
            stream_id,
        )
    }

    fn start_connect(&mut self) -> Result<()> {
        let packet = self
            .writer
            .set_max_chunk_size(self.config.chunk_size, RtmpTimestamp::new(0))
            .map_err(|e| Error::protocol(format!("chunk size: {e:?}")))?;
        self.out.control().extend_from_slice(&packet.bytes);
        let mut object = HashMap::new();
        let s = |v: &str| Amf0Value::Utf8String(v.to_string());
        object.insert("app".to_string(), s(&self.config.app));
        object.insert("type".to_string(), s("nonprivate"));
        object.insert("flashVer".to_string(), s(FLASH_VER));
        object.insert("tcUrl".to_string(), s(&self.config.tc_url));
        self.command_with("connect", TXN_CONNECT, Amf0Value::Object(object), vec![], 0)?;
        self.state = State::Connecting;
        Ok(())
    }

    fn handle_message(&mut self, m: Message) -> Result<()> {
        match m.type_id {
            1..=6 => {
                if let Some(reply) = control::apply(&m, &mut self.reader, &mut self.acks)? {
                    self.send(reply, 0)?;
                }
            }
            17 | 20 => {
                let body = match (m.type_id, m.payload.first()) {
                    (17, Some(0)) => m.payload.get(1..).unwrap_or_default(),
                    _ => &m.payload[..],
                };
                let values = amf::decode_all(body).map_err(Error::message)?;
                self.handle_command(values)?;
            }
            // Media, data and anything else a destination might send: ignored.
            _ => {}
        }
        Ok(())
    }

    fn handle_command(&mut self, values: Vec<Amf0Value>) -> Result<()> {
        let mut it = values.into_iter();
        let name = match it.next() {
            Some(Amf0Value::Utf8String(s)) => s,
            _ => return Err(Error::message("command without a name")),
        };
        let transaction = match it.next() {
            Some(Amf0Value::Number(n)) if n.is_finite() => n,
            _ => 0.0,
        };
        let _object = it.next();
        let args: Vec<Amf0Value> = it.collect();
        let info = args.iter().find_map(|a| match a {
            Amf0Value::Object(o) => Some(o),
            _ => None,
        });
        let field = |key: &str| {
            info.and_then(|o| amf::string(o, key))
                .unwrap_or_default()
                .chars()
                .take(256)
                .collect::<String>()
        };
        match name.as_str() {
            "_result" if transaction == TXN_CONNECT && self.state == State::Connecting => {
                self.events.push_back(ClientEvent::Connected);
                let name = Amf0Value::Utf8String(self.config.stream.clone());
                self.command("releaseStream", TXN_RELEASE, vec![name.clone()], 0)?;
                self.command("FCPublish", TXN_FCPUBLISH, vec![name], 0)?;
                self.command("createStream", TXN_CREATE, vec![], 0)?;
                self.state = State::CreatingStream;
            }
            "_result" if transaction == TXN_CREATE && self.state == State::CreatingStream => {
                let id = args.iter().find_map(|a| match a {
                    Amf0Value::Number(n) if *n >= 0.0 && *n <= f64::from(u32::MAX) => {
                        Some(*n as u32)
                    }
                    _ => None,
                });
                let Some(id) = id else {
                    return Err(Error::protocol("createStream result without a stream id"));
                };
                self.command(
                    "publish",
                    TXN_PUBLISH,
                    vec![
                        Amf0Value::Utf8String(self.config.stream.clone()),
                        Amf0Value::Utf8String("live".into()),
                    ],
                    id,
                )?;
                self.state = State::PublishPending(id);
            }
            "_error"
                if (transaction == TXN_CONNECT && self.state == State::Connecting)
                    || (transaction == TXN_CREATE && self.state == State::CreatingStream)
                    || matches!(self.state, State::PublishPending(_))
                        && transaction == TXN_PUBLISH =>
            {
                return Err(refused(field("code"), field("description")));
            }
            "onStatus" => {
                let (level, code) = (field("level"), field("code"));
                match self.state {
                    State::PublishPending(id) if code == "NetStream.Publish.Start" => {
                        self.state = State::Publishing(id);
                        self.connect_deadline = None;
                        self.egress = Some(Egress::publish(self.config.chunk_size, id));
                        self.events
                            .push_back(ClientEvent::Publishing { stream_id: id });
                    }
                    State::Publishing(_) if level == "error" => {
                        return Err(refused(code, "after the publish started".into()));
                    }
                    State::Publishing(_) | State::Closed => {
                        self.events.push_back(ClientEvent::Status { level, code });
                    }
                    _ if level == "error" => {
                        return Err(refused(code, field("description")));
                    }
                    _ => {}
                }
            }
            // Answers to releaseStream / FCPublish, bandwidth checks,
            // onFCPublish and vendor calls: nothing to do.
            _ => {}
        }
        Ok(())
    }
}

fn refused(code: String, description: String) -> Error {
    Error::Refused {
        ctx: Context::default(),
        code: if code.is_empty() {
            "(no code)".into()
        } else {
            code
        },
        description,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk;
    use crate::session::{Session, SessionConfig, SessionEvent};
    use bytes::BytesMut;
    use tidewater_core::{EndReason, RecvError};

    fn config() -> ClientConfig {
        ClientConfig {
            app: "live".into(),
            tc_url: "rtmp://127.0.0.1/live".into(),
            stream: "cam?token=t".into(),
            chunk_size: 4096,
            max_message_len: 1 << 20,
            connect_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(5),
        }
    }

    /// Moves bytes both ways until neither side has anything to say.
    fn pump(c: &mut PublishClient, s: &mut Session) -> Vec<SessionEvent> {
        let mut server_events = Vec::new();
        for _ in 0..32 {
            let mut moved = false;
            if let Some(b) = c.take_output() {
                s.handle_input(&b).expect("server input");
                moved = true;
            }
            while let Some(e) = s.poll_event() {
                server_events.push(e);
            }
            if let Some(b) = s.take_output() {
                c.handle_input(&b).expect("client input");
                moved = true;
            }
            if !moved {
                break;
            }
        }
        server_events
    }

    #[test]
    fn publishes_to_this_crates_server_session_and_media_arrives() {
        let mut c = PublishClient::new(config(), Instant::now()).expect("client");
        let mut s = Session::new(SessionConfig::default(), Instant::now());
        let events = pump(&mut c, &mut s);
        let Some(SessionEvent::PublishRequested(r)) = events.last() else {
            panic!("{events:?}")
        };
        assert_eq!(
            (r.app.as_str(), r.stream.as_str(), r.query.as_deref()),
            ("live", "cam", Some("token=t"))
        );
        assert!(!c.is_publishing());
        s.accept_publish().expect("accept");
        pump(&mut c, &mut s);
        assert_eq!(c.poll_event(), Some(ClientEvent::Connected));
        assert_eq!(
            c.poll_event(),
            Some(ClientEvent::Publishing { stream_id: 1 })
        );
        assert_eq!(c.stream_id(), Some(1));

        // Media chunks built by the crate's chunk builder reach the server.
        let mut media = BytesMut::new();
        chunk::write_message(
            &mut media,
            chunk::MessageHeader {
                csid: chunk::CSID_VIDEO,
                type_id: 9,
                stream_id: 1,
                timestamp: 40,
            },
            &[0x17, 1, 0, 0, 0],
            &[9; 9000],
            c.chunk_size() as usize,
        );
        s.handle_input(&media).expect("media");
        let ev = s.poll_event();
        assert!(
            matches!(&ev, Some(SessionEvent::Video { timestamp: 40, data }) if data.len() == 9005),
            "{ev:?}"
        );
        c.unpublish().expect("unpublish");
        pump(&mut c, &mut s);
        assert_eq!(s.poll_event(), None);
        assert!(!s.is_publishing(), "the server saw the publish end");
    }

    #[test]
    fn a_refused_publish_is_an_error_with_the_code() {
        let mut c = PublishClient::new(config(), Instant::now()).expect("client");
        let mut s = Session::new(SessionConfig::default(), Instant::now());
        pump(&mut c, &mut s);
        s.reject("NetStream.Publish.BadName", "taken")
            .expect("reject");
        let out = s.take_output().expect("status");
        match c.handle_input(&out) {
            Err(Error::Refused {
                code, description, ..
            }) => {
                assert_eq!(
                    (code.as_str(), description.as_str()),
                    ("NetStream.Publish.BadName", "taken")
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(c.handle_input(&[]).is_err(), "a failed client stays failed");
    }

    #[test]
    fn garbage_from_the_destination_is_an_error_not_a_panic() {
        let mut c = PublishClient::new(config(), Instant::now()).expect("client");
        let _ = c.take_output();
        // Not a handshake.
        assert!(c.handle_input(&[9; 3073]).is_err());
        // After a good handshake, an absurd message length.
        let mut c = PublishClient::new(config(), Instant::now()).expect("client");
        let mut s = Session::new(SessionConfig::default(), Instant::now());
        pump(&mut c, &mut s);
        let mut bad = vec![0x03, 0, 0, 0, 0xff, 0xff, 0xff, 20, 0, 0, 0, 0];
        bad.extend_from_slice(&[0; 64]);
        assert!(matches!(
            c.handle_input(&bad),
            Err(Error::MessageTooLong { .. })
        ));
    }

    /// A client publishing to a session.
    fn publishing() -> (PublishClient, Session) {
        let mut c = PublishClient::new(config(), Instant::now()).expect("client");
        let mut s = Session::new(SessionConfig::default(), Instant::now());
        pump(&mut c, &mut s);
        s.accept_publish().expect("accept");
        pump(&mut c, &mut s);
        assert!(c.is_publishing());
        while c.poll_event().is_some() {}
        (c, s)
    }

    #[test]
    fn a_publish_not_accepted_in_time_is_timed_out() {
        let t0 = Instant::now();
        let mut c = PublishClient::new(config(), t0).expect("client");
        let mut s = Session::new(SessionConfig::default(), t0);
        pump(&mut c, &mut s);
        assert!(!c.is_publishing(), "the request waits for its answer");
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        c.handle_timeout(t0 + Duration::from_millis(9_999))
            .expect("not yet");
        match c.handle_timeout(t0 + Duration::from_secs(10)) {
            Err(Error::Timeout { what, after, .. }) => {
                assert_eq!(
                    (what, after),
                    ("connecting and publishing", Duration::from_secs(10))
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(c.handle_input(&[]).is_err(), "a timed-out client is failed");
        // Once publishing there is no deadline but a write's.
        let (mut c, _s) = publishing();
        assert_eq!(c.poll_timeout(), None);
        c.handle_media(EgressInput::End(Ending::Shutdown))
            .expect("end");
        assert!(c.poll_transmit(t0));
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(5)));
    }

    #[tokio::test]
    async fn the_followed_stream_goes_out_and_its_end_unpublishes() {
        let (_engine, _publisher, mut sub) = crate::egress::tests::live_stream("push").await;
        let (mut c, mut s) = publishing();
        let events: Vec<_> = std::iter::from_fn(|| sub.try_recv()).collect();
        assert!(c.wants_media());
        for ev in &events {
            c.handle_media(ev).expect("media");
        }
        let out = c.take_output().expect("media");
        s.handle_input(&out).expect("server input");
        let got: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
        let kinds: Vec<&str> = got
            .iter()
            .map(|e| match e {
                SessionEvent::Metadata(_) => "meta",
                SessionEvent::Video { .. } => "video",
                SessionEvent::Audio { .. } => "audio",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["meta", "video", "audio", "video", "video"]);
        assert!(matches!(
            got[4],
            SessionEvent::Video {
                timestamp: 2_000,
                ..
            }
        ));

        c.handle_media(&Err(RecvError::Ended(EndReason::Finished)))
            .expect("end");
        assert_eq!(
            c.poll_event(),
            Some(ClientEvent::Ended(Ending::Unpublished(EndReason::Finished)))
        );
        assert!(!c.wants_media());
        let out = c.take_output().expect("unpublish");
        s.handle_input(&out).expect("server input");
        assert_eq!(s.poll_event(), Some(SessionEvent::PublishFinished));

        // A push the kernel evicted is dropped, not ended politely.
        let (mut c, _s) = publishing();
        assert!(matches!(
            c.handle_media(&Err(RecvError::Evicted)),
            Err(Error::Protocol { .. })
        ));
        assert!(c.take_output().is_none());
    }

    #[test]
    fn an_error_status_while_publishing_is_a_refusal() {
        let (mut c, _s) = publishing();
        let mut peer = crate::session::tests::Client::new();
        let mut info = HashMap::new();
        for (k, v) in [("level", "error"), ("code", "NetStream.Publish.BadName")] {
            info.insert(k.to_string(), Amf0Value::Utf8String(v.into()));
        }
        let b = peer.command(
            1,
            "onStatus",
            0.0,
            Amf0Value::Null,
            vec![Amf0Value::Object(info)],
        );
        match c.handle_input(&b) {
            Err(Error::Refused {
                code, description, ..
            }) => assert_eq!(
                (code.as_str(), description.as_str()),
                ("NetStream.Publish.BadName", "after the publish started")
            ),
            other => panic!("{other:?}"),
        }
    }
}
