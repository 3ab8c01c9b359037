//! The sans-IO RTMP server session: bytes, kernel events and time in;
//! events, bytes and deadlines out.
//!
//! [`Session`] owns no socket and no clock. The driver feeds it what the peer
//! sent ([`Session::handle_input`]), writes out what it produced
//! ([`Session::poll_transmit`], [`Session::io_slices`],
//! [`Session::transmitted`]), and reacts to its [`SessionEvent`]s: publish
//! and play requests (answered with [`Session::accept_publish`],
//! [`Session::accept_play`], or [`Session::refuse`] with the kernel's error,
//! which picks the RTMP status), metadata, and media.
//!
//! # A play
//!
//! Once a play is accepted the driver hands the subscription's events to
//! [`Session::handle_media`] while [`Session::wants_media`] says so; the
//! session's [`Egress`] queues each frame's shared chunks behind the
//! session's own control messages, re-sends metadata and sequence headers
//! after a catalog change, and at the end of the stream (or of the viewer,
//! [`Session::end_play`]) queues the closing statuses and reports
//! [`SessionEvent::PlayEnded`].
//!
//! # Time
//!
//! Every deadline is session state, driven by the caller's clock
//! (quinn-proto style): the driver sleeps until [`Session::poll_timeout`]
//! and calls [`Session::handle_timeout`]. The deadlines:
//!
//! - **handshake**: from [`Session::new`] to the publish or play request
//!   ([`SessionConfig::handshake_timeout`]); then the session fails with
//!   [`Error::NegotiationTimeout`];
//! - **write**: a write that makes no progress for
//!   [`SessionConfig::write_timeout`] fails the session with
//!   [`Error::WriteTimeout`];
//! - **read**: a publisher that sends nothing for
//!   [`SessionConfig::read_timeout`] (counted from when the driver goes back
//!   to reading) ends the publish with [`SessionEvent::PublishTimedOut`];
//! - **coalescing**: after the driver wrote out what a turn of input or
//!   media produced for a player, the session takes neither for
//!   [`SessionConfig::coalesce`] ([`Session::wants_input`],
//!   [`Session::wants_media`]), so a live viewer is woken a few times per
//!   window rather than once per message. A turn whose media filled the
//!   batch (a join's cached GOP, a viewer catching up) opens no window: the
//!   backlog goes out batch after batch.
//!
//! A turn ends when [`Session::poll_transmit`] finds nothing left to write:
//! the read deadline and the coalescing window start then.
//!
//! It is built on `rml_rtmp`: its handshake, its message types and its chunk
//! serializer (for commands and control, on chunk streams 2 to 6). The input
//! side uses this crate's bounded [`ChunkReader`]
//! and AMF0 decoder instead of `rml_rtmp`'s `ServerSession`, whose input path
//! panics on some malformed messages (a short `@setDataFrame`), recurses
//! without bound on nested AMF0, cannot hold two partial messages at once,
//! numbers streams per connection and refuses requests only with `_error`
//! results — a viewer sharing prebuilt chunks needs one stream id for every
//! player, and a refused publish or play needs an `onStatus` with the
//! standard code.
//!
//! # Stream ids
//!
//! `createStream` hands out ids from 1 on every connection ([`SHARED_STREAM_ID`]
//! for the first one, which is the one every common client plays on), so the
//! media chunks built once per frame carry that id for every player.

use std::collections::{HashMap, VecDeque};
use std::io::IoSlice;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::handshake::{Handshake, PeerType};
use rml_rtmp::messages::{PeerBandwidthLimitType, RtmpMessage, UserControlEventType};
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;
use tidewater_core::{Request, StreamKey};

use crate::amf;
use crate::chunk::{ChunkReader, Message};
use crate::control;
use crate::egress::{Egress, EgressInput, Ending, GenerationShift, Outcome, Transmit};
use crate::error::{Error, Result};
use crate::query;

/// The message stream id of the first stream a connection creates: the one
/// shared media chunks are built for.
pub const SHARED_STREAM_ID: u32 = 1;

/// Most streams one connection may create.
const MAX_STREAMS: usize = 8;

/// Session settings.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Outbound chunk size, announced with Set Chunk Size at `connect`.
    pub chunk_size: u32,
    /// The acknowledgement window announced to the peer.
    pub window_ack_size: u32,
    /// The peer bandwidth announced to the peer.
    pub peer_bandwidth: u32,
    /// Longest message accepted from the peer, in bytes.
    pub max_message_len: usize,
    /// Time from [`Session::new`] to the publish or play request.
    pub handshake_timeout: Duration,
    /// A publisher that sends nothing for this long is closed.
    pub read_timeout: Duration,
    /// A write that makes no progress for this long fails the session.
    pub write_timeout: Duration,
    /// How long a player takes no input or media after a write (zero: never).
    pub coalesce: Duration,
}

impl Default for SessionConfig {
    /// The listener's defaults ([`RtmpConfig::default`](crate::RtmpConfig::default)).
    fn default() -> Self {
        let listener = crate::config::RtmpConfig::default();
        SessionConfig {
            chunk_size: listener.chunk_size,
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
            max_message_len: listener.max_message_len,
            handshake_timeout: listener.handshake_timeout,
            read_timeout: listener.read_timeout,
            write_timeout: listener.write_timeout,
            coalesce: listener.coalesce,
        }
    }
}

/// A publish or play request: `rtmp://host/{app}/{stream}?{query}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRequest {
    /// The message stream the request came on.
    pub stream_id: u32,
    /// The application (from `connect`), without a query.
    pub app: String,
    /// The stream name, without a query.
    pub stream: String,
    /// The query that came with the stream name, without the `?`, followed
    /// by the parameters of the `connect`'s query (on the application name,
    /// else on `tcUrl`) that the stream name's does not set. It may hold a
    /// password: never log it.
    pub query: Option<String>,
}

impl StreamRequest {
    /// `app/stream`, for logs (not validated).
    pub fn name(&self) -> String {
        format!("{}/{}", self.app, self.stream)
    }

    /// The request to put to the kernel: the stream key (validated here,
    /// never with the query), protocol `rtmp`, the peer, and for its
    /// authorizer the credentials of the query (`user` and `pass`, else
    /// `token`, percent-decoded) and the query without `user` and `pass`.
    pub fn kernel_request(
        &self,
        peer: Option<SocketAddr>,
    ) -> std::result::Result<Request, tidewater_core::Error> {
        let key = StreamKey::new(&self.app, &self.stream)?;
        let (credentials, query) = query::credentials(self.query.as_deref());
        let mut req = Request::new(key, "rtmp").credentials(credentials);
        if let Some(peer) = peer {
            req = req.peer(peer);
        }
        if let Some(q) = query {
            req = req.query(q);
        }
        Ok(req)
    }
}

/// The `onStatus` code that refuses a publish (`publish`) or a play because
/// of `error`: `NetStream.Publish.Denied` when the kernel's authorizer or
/// publisher limit said no, else `NetStream.Publish.BadName` (a bad name, a
/// stream taken, an unknown application); `NetStream.Play.Failed` when the
/// authorizer or the reader limit said no, else `NetStream.Play.StreamNotFound`.
pub fn refusal_code(publish: bool, error: &Error) -> &'static str {
    use tidewater_core::Error as Kernel;
    let kernel = match error {
        Error::Kernel { source, .. } => Some(&**source),
        _ => None,
    };
    match (publish, kernel) {
        (true, Some(Kernel::Unauthorized { .. } | Kernel::PublisherLimit { .. })) => {
            "NetStream.Publish.Denied"
        }
        (true, _) => "NetStream.Publish.BadName",
        (false, Some(Kernel::Unauthorized { .. } | Kernel::ReaderLimit { .. })) => {
            "NetStream.Play.Failed"
        }
        (false, _) => "NetStream.Play.StreamNotFound",
    }
}

/// What happened on the session.
#[derive(Clone, Debug, PartialEq)]
pub enum SessionEvent {
    /// The peer connected to an application (answered already).
    Connected {
        /// The application.
        app: String,
    },
    /// The peer asks to publish: answer with [`Session::accept_publish`] or [`Session::reject`].
    PublishRequested(StreamRequest),
    /// The peer asks to play: answer with [`Session::accept_play`] or [`Session::reject`].
    PlayRequested(StreamRequest),
    /// `onMetaData` of the publish (via `@setDataFrame` or directly).
    Metadata(HashMap<String, Amf0Value>),
    /// An audio message of the publish (an FLV audio tag body).
    Audio {
        /// RTMP timestamp, milliseconds.
        timestamp: u32,
        /// The tag body.
        data: Bytes,
    },
    /// A video message of the publish (an FLV video tag body).
    Video {
        /// RTMP timestamp, milliseconds.
        timestamp: u32,
        /// The tag body.
        data: Bytes,
    },
    /// The publisher stopped (`FCUnpublish`, `deleteStream`, `closeStream`).
    PublishFinished,
    /// The player stopped (`deleteStream`, `closeStream`).
    PlayFinished,
    /// The publisher sent nothing for the read timeout: the publish is over.
    PublishTimedOut {
        /// The read timeout.
        after: Duration,
    },
    /// The player fell behind and skipped this many frames to the next keyframe.
    Skipped {
        /// How many.
        frames: u64,
    },
    /// The play ended (its closing statuses are queued): write them out and close.
    PlayEnded(Ending),
    /// A command this server does not implement (answered with `_error`
    /// when it expected an answer); the session goes on.
    UnknownCommand {
        /// The command name (truncated).
        name: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Idle,
    PublishPending(u32),
    Publishing(u32),
    PlayPending(u32),
    Playing(u32),
    Refused,
}

enum Phase {
    Handshake(Box<Handshake>),
    Messages,
    Failed,
}

/// The session's deadlines (see the [module docs](self)).
#[derive(Debug, Default)]
struct Timers {
    /// Until the publish or play request.
    handshake: Option<Instant>,
    /// While publishing: the publisher must have sent something by then.
    read: Option<Instant>,
    /// While playing: the coalescing window ends then.
    coalesce: Option<Instant>,
    /// Input or media was handled since the last window (or the play began).
    turn: bool,
    /// The batch filled up with media: more is likely ready (a replayed GOP,
    /// a viewer catching up), so the next turn opens no window.
    backlog: bool,
}

/// The server side of one RTMP connection.
pub struct Session {
    config: SessionConfig,
    phase: Phase,
    reader: ChunkReader,
    writer: ChunkSerializer,
    out: Transmit,
    events: VecDeque<SessionEvent>,
    app: Option<String>,
    app_query: Option<String>,
    streams: Vec<u32>,
    next_stream_id: u32,
    role: Role,
    acks: control::Acknowledger,
    /// The media side, while playing.
    egress: Option<Egress>,
    timers: Timers,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("app", &self.app)
            .field("role", &self.role)
            .field("streams", &self.streams)
            .finish_non_exhaustive()
    }
}

/// Most events queued before the driver takes them; a peer that makes more
/// per read is sending garbage.
const MAX_EVENTS: usize = 4096;

impl Session {
    /// A session for a connection accepted at `now` (handshake first).
    pub fn new(config: SessionConfig, now: Instant) -> Self {
        Session {
            reader: ChunkReader::new(config.max_message_len),
            phase: Phase::Handshake(Box::new(Handshake::new(PeerType::Server))),
            writer: ChunkSerializer::new(),
            out: Transmit::new(config.write_timeout),
            events: VecDeque::new(),
            app: None,
            app_query: None,
            streams: Vec::new(),
            next_stream_id: SHARED_STREAM_ID,
            role: Role::Idle,
            acks: control::Acknowledger::default(),
            egress: None,
            timers: Timers {
                handshake: Some(now + config.handshake_timeout),
                ..Timers::default()
            },
            config,
        }
    }

    /// The outbound chunk size every message to this peer uses.
    pub fn chunk_size(&self) -> u32 {
        self.config.chunk_size
    }

    /// Whether the handshake completed.
    pub fn handshake_done(&self) -> bool {
        matches!(self.phase, Phase::Messages)
    }

    /// The application the peer connected to.
    pub fn app(&self) -> Option<&str> {
        self.app.as_deref()
    }

    /// The message stream id of the accepted play, if playing.
    pub fn play_stream_id(&self) -> Option<u32> {
        match self.role {
            Role::Playing(id) => Some(id),
            _ => None,
        }
    }

    /// Whether a publish was accepted and is going on.
    pub fn is_publishing(&self) -> bool {
        matches!(self.role, Role::Publishing(_))
    }

    /// Bytes received but not yet returned as whole messages.
    pub fn buffered(&self) -> usize {
        self.reader.buffered()
    }

    /// Feeds bytes received from the peer. On an error the session is
    /// unusable: close the connection.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<()> {
        self.timers.turn = true;
        let result = self.input(data);
        if result.is_err() {
            self.phase = Phase::Failed;
        }
        result
    }

    /// Whether the driver should read from the peer now (not during a
    /// player's coalescing window: what the peer sends waits in the socket).
    pub fn wants_input(&self) -> bool {
        self.timers.coalesce.is_none()
    }

    /// Whether the driver should hand over the next event of the played
    /// stream: playing, outside a coalescing window, and room left in the
    /// batch being gathered.
    #[inline]
    pub fn wants_media(&self) -> bool {
        self.egress.is_some() && self.timers.coalesce.is_none() && self.out.has_room()
    }

    /// One event of the played stream (a subscription's
    /// [`recv_ref`](tidewater_core::Subscription::recv_ref) result, or
    /// [`EgressInput::End`]): queues what it sends; at the end of the stream
    /// queues the closing statuses (see [`end_play`](Self::end_play)).
    /// Nothing happens when no play is going on.
    #[inline]
    pub fn handle_media<'a>(&mut self, input: impl Into<EgressInput<'a>>) -> Result<()> {
        let Some(egress) = &mut self.egress else {
            return Ok(());
        };
        self.timers.turn = true;
        let outcome = egress.handle(input.into(), &mut self.out);
        if !self.out.has_room() {
            self.timers.backlog = true;
        }
        match outcome {
            Outcome::Continue | Outcome::Republished { .. } => Ok(()),
            Outcome::Skipped { frames } => {
                self.events.push_back(SessionEvent::Skipped { frames });
                Ok(())
            }
            Outcome::Ended(ending) => self.end_play(ending),
        }
    }

    /// The played stream's generation read next (at the start of the play
    /// and after each republish): the timestamp shift its players share
    /// (see [`GenerationShift`]). Nothing happens when no play is going on.
    pub fn set_generation(&mut self, shift: std::sync::Arc<GenerationShift>) {
        if let Some(egress) = &mut self.egress {
            egress.set_generation(shift);
        }
    }

    /// The played stream's conversions of the generation read next (at the
    /// start of the play and after each republish): an Opus stream's audio
    /// goes out as AAC through them (see [`AacFromOpus`](crate::egress::AacFromOpus)).
    pub fn set_conversions(
        &mut self,
        running: std::sync::Arc<crate::egress::Conversions>,
        stream: &str,
    ) {
        if let Some(egress) = &mut self.egress {
            egress.set_conversions(running, stream);
        }
    }

    /// Whether anything is to be written; if so the write deadline runs from
    /// `now` (unless it runs already) and [`io_slices`](Self::io_slices)
    /// gives the bytes. When nothing is left the turn ends at `now`: a
    /// publisher's read deadline and a player's coalescing window start.
    pub fn poll_transmit(&mut self, now: Instant) -> bool {
        if self.out.ready(now) {
            return true;
        }
        match self.role {
            Role::Publishing(_) => self.timers.read = Some(now + self.config.read_timeout),
            Role::Playing(_) => {
                let turn = std::mem::take(&mut self.timers.turn);
                // A backlog is written batch after batch: coalescing paces
                // live media, it must not meter out a join's cached GOP
                // (ffmpeg waits for 40 video frames of it before showing one).
                let backlog = std::mem::take(&mut self.timers.backlog);
                if turn
                    && !backlog
                    && !self.config.coalesce.is_zero()
                    && self.timers.coalesce.is_none()
                {
                    self.timers.coalesce = Some(now + self.config.coalesce);
                }
            }
            _ => {}
        }
        false
    }

    /// What waits to be written, oldest first, as up to `out.len()` slices
    /// (after [`poll_transmit`](Self::poll_transmit) said there is some).
    pub fn io_slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        self.out.io_slices(out)
    }

    /// The socket took `n` bytes at `now`.
    pub fn transmitted(&mut self, n: usize, now: Instant) {
        self.out.advance(n, now);
    }

    /// The next deadline, if any: call [`handle_timeout`](Self::handle_timeout) then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.out.deadline(),
            self.timers.handshake,
            self.timers.read,
            self.timers.coalesce,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Applies the deadlines that passed by `now`. A write that made no
    /// progress fails the session ([`Error::WriteTimeout`]), as does a
    /// handshake not done in time ([`Error::NegotiationTimeout`]); a silent
    /// publisher ends its publish ([`SessionEvent::PublishTimedOut`]); a
    /// coalescing window closes.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<()> {
        if self.out.expired(now) {
            self.phase = Phase::Failed;
            return Err(Error::WriteTimeout {
                ctx: Default::default(),
                after: self.out.write_timeout(),
            });
        }
        if self.timers.handshake.is_some_and(|d| now >= d) {
            self.timers.handshake = None;
            self.phase = Phase::Failed;
            return Err(Error::NegotiationTimeout {
                ctx: Default::default(),
                after: self.config.handshake_timeout,
            });
        }
        if self.timers.read.is_some_and(|d| now >= d) {
            self.timers.read = None;
            if let Role::Publishing(_) = self.role {
                self.role = Role::Idle;
                self.events.push_back(SessionEvent::PublishTimedOut {
                    after: self.config.read_timeout,
                });
            }
        }
        if self.timers.coalesce.is_some_and(|d| now >= d) {
            self.timers.coalesce = None;
        }
        Ok(())
    }

    fn input(&mut self, data: &[u8]) -> Result<()> {
        match &mut self.phase {
            Phase::Failed => return Err(Error::protocol("input after a failure")),
            Phase::Messages => {
                self.acks.received(data.len());
                self.reader.push(data);
            }
            Phase::Handshake(hs) => {
                let Some(rest) = control::handshake_input(hs, data, self.out.control())? else {
                    return Ok(());
                };
                self.phase = Phase::Messages;
                self.acks.received(rest.len());
                self.reader.push(&rest);
            }
        }
        self.process()
    }

    /// Whether a publish or play request awaits its answer: input is held
    /// (not parsed) until then, so that what the peer sent after the request
    /// is handled in the state the answer creates.
    fn request_pending(&self) -> bool {
        matches!(self.role, Role::PublishPending(_) | Role::PlayPending(_))
    }

    fn process(&mut self) -> Result<()> {
        while !self.request_pending() {
            let Some(message) = self.reader.next_message()? else {
                break;
            };
            self.handle_message(message)?;
            if self.events.len() > MAX_EVENTS {
                return Err(Error::protocol("too many events in one read"));
            }
        }
        if self.request_pending()
            && self.reader.buffered() > self.config.max_message_len.saturating_mul(3)
        {
            return Err(Error::protocol(
                "too much input while a request awaits its answer",
            ));
        }
        if let Some(ack) = self.acks.due() {
            self.send(ack, 0)?;
        }
        Ok(())
    }

    /// Goes on with held input after a request was answered.
    fn resume(&mut self) -> Result<()> {
        let result = self.process();
        if result.is_err() {
            self.phase = Phase::Failed;
        }
        result
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// Everything to send to the peer so far, in order, as one buffer: for
    /// callers that write it themselves (the driver writes
    /// [`io_slices`](Self::io_slices) instead).
    pub fn take_output(&mut self) -> Option<Bytes> {
        self.out.take_all()
    }

    fn send(&mut self, message: RtmpMessage, stream_id: u32) -> Result<()> {
        control::send(&mut self.writer, self.out.control(), message, stream_id)
    }

    fn command(
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

    fn status(&mut self, stream_id: u32, level: &str, code: &str, description: &str) -> Result<()> {
        self.command(
            "onStatus",
            0.0,
            Amf0Value::Null,
            vec![status_object(level, code, description)],
            stream_id,
        )
    }

    fn user_control(&mut self, event_type: UserControlEventType, stream_id: u32) -> Result<()> {
        self.send(
            RtmpMessage::UserControl {
                event_type,
                stream_id: Some(stream_id),
                buffer_length: None,
                timestamp: None,
            },
            0,
        )
    }

    /// Accepts the pending publish request.
    pub fn accept_publish(&mut self) -> Result<()> {
        let Role::PublishPending(id) = self.role else {
            return Err(Error::protocol("no publish request to accept"));
        };
        self.role = Role::Publishing(id);
        self.user_control(UserControlEventType::StreamBegin, id)?;
        self.status(id, "status", "NetStream.Publish.Start", "publishing")?;
        self.resume()
    }

    /// Accepts the pending play request: the status messages that open a
    /// play. Media follows through [`handle_media`](Self::handle_media), as
    /// chunks for [`play_stream_id`](Self::play_stream_id).
    ///
    /// No `onStatus` *data* message (`NetStream.Data.Start`, which some
    /// servers send) goes out: ffmpeg's FLV demuxer turns any script data
    /// other than `onMetaData`, `onCuePoint` and `|RtmpSampleAccess` into a
    /// data stream of unknown codec, which players list as a third stream.
    pub fn accept_play(&mut self) -> Result<()> {
        let Role::PlayPending(id) = self.role else {
            return Err(Error::protocol("no play request to accept"));
        };
        self.role = Role::Playing(id);
        self.egress = Some(Egress::play(self.config.chunk_size, id));
        // Writing the play's opening opens no coalescing window: the cached
        // GOP goes out at once.
        self.timers.turn = false;
        self.user_control(UserControlEventType::StreamIsRecorded, id)?;
        self.user_control(UserControlEventType::StreamBegin, id)?;
        self.status(id, "status", "NetStream.Play.Reset", "reset")?;
        self.status(id, "status", "NetStream.Play.Start", "playing")?;
        self.send(
            RtmpMessage::Amf0Data {
                values: vec![
                    Amf0Value::Utf8String("|RtmpSampleAccess".into()),
                    Amf0Value::Boolean(true),
                    Amf0Value::Boolean(true),
                ],
            },
            id,
        )?;
        self.resume()
    }

    /// Refuses the pending publish or play because of `error` (the kernel
    /// refused it, or its stream name is bad): an `onStatus` error with the
    /// code [`refusal_code`] picks and the error as the description. The
    /// peer should be disconnected after the output is written.
    pub fn refuse(&mut self, error: &Error) -> Result<()> {
        let publish = matches!(self.role, Role::PublishPending(_));
        self.reject(refusal_code(publish, error), &error.to_string())
    }

    /// Refuses the pending publish or play with an `onStatus` error
    /// (`NetStream.Publish.BadName`, `NetStream.Play.StreamNotFound`, …).
    /// The peer should be disconnected after the output is written.
    pub fn reject(&mut self, code: &str, description: &str) -> Result<()> {
        let id = match self.role {
            Role::PublishPending(id) | Role::PlayPending(id) => id,
            _ => return Err(Error::protocol("no request to refuse")),
        };
        self.role = Role::Refused;
        self.status(id, "error", code, description)?;
        self.resume()
    }

    /// Ends an accepted play (the stream ended, the viewer was evicted or
    /// kicked, the server is stopping): `onStatus`
    /// `NetStream.Play.UnpublishNotify` (not for a kicked viewer: the stream
    /// goes on) and `NetStream.Play.Stop` with the ending's description,
    /// then Stream EOF, queued after the media; then
    /// [`SessionEvent::PlayEnded`].
    pub fn end_play(&mut self, ending: Ending) -> Result<()> {
        let Role::Playing(id) = self.role else {
            return Ok(());
        };
        self.stop_playing();
        let description = ending.description();
        if ending != Ending::Kicked {
            self.status(id, "status", "NetStream.Play.UnpublishNotify", description)?;
        }
        self.status(id, "status", "NetStream.Play.Stop", description)?;
        self.user_control(UserControlEventType::StreamEof, id)?;
        self.events.push_back(SessionEvent::PlayEnded(ending));
        Ok(())
    }

    fn stop_playing(&mut self) {
        self.role = Role::Idle;
        self.egress = None;
        self.timers.coalesce = None;
    }

    fn handle_message(&mut self, m: Message) -> Result<()> {
        match m.type_id {
            1..=6 => {
                if let Some(reply) = control::apply(&m, &mut self.reader, &mut self.acks)? {
                    self.send(reply, 0)?;
                }
            }
            8 | 9 if self.role == Role::Publishing(m.stream_id) => {
                let (timestamp, data) = (m.timestamp, m.payload);
                self.events.push_back(if m.type_id == 8 {
                    SessionEvent::Audio { timestamp, data }
                } else {
                    SessionEvent::Video { timestamp, data }
                });
            }
            15 | 18 => {
                let body = if m.type_id == 15 {
                    strip_amf3_marker(&m.payload)
                } else {
                    &m.payload[..]
                };
                let values = amf::decode_all(body).map_err(Error::message)?;
                self.handle_data(m.stream_id, values);
            }
            17 | 20 => {
                let body = if m.type_id == 17 {
                    strip_amf3_marker(&m.payload)
                } else {
                    &m.payload[..]
                };
                let values = amf::decode_all(body).map_err(Error::message)?;
                self.handle_command(m.stream_id, values)?;
            }
            22 => self.handle_aggregate(&m)?,
            // Shared objects, AMF3 shared objects, unknown types: ignored.
            _ => {}
        }
        Ok(())
    }

    fn handle_data(&mut self, stream_id: u32, values: Vec<Amf0Value>) {
        if self.role != Role::Publishing(stream_id) {
            return;
        }
        let mut it = values.into_iter();
        let mut first = it.next();
        if matches!(&first, Some(Amf0Value::Utf8String(s)) if s == "@setDataFrame") {
            first = it.next();
        }
        if !matches!(&first, Some(Amf0Value::Utf8String(s)) if s == "onMetaData") {
            return;
        }
        if let Some(Amf0Value::Object(props)) = it.next() {
            self.events.push_back(SessionEvent::Metadata(props));
        }
    }

    /// An aggregate message: FLV tags (header, body, back pointer) back to back,
    /// their timestamps relative to the first tag's and offset to the message's.
    fn handle_aggregate(&mut self, m: &Message) -> Result<()> {
        if self.role != Role::Publishing(m.stream_id) {
            return Ok(());
        }
        let p = &m.payload;
        let mut pos = 0;
        let mut base = None;
        while let Some(&h) = p.get(pos..).and_then(|r| r.first_chunk::<11>()) {
            let len = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
            let ts = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
            let start = pos + 11;
            let end = start
                .checked_add(len)
                .filter(|&e| e <= p.len())
                .ok_or_else(|| Error::message("truncated tag in an aggregate message"))?;
            let base = *base.get_or_insert(ts);
            let timestamp = m.timestamp.wrapping_add(ts.wrapping_sub(base));
            let data = p.slice(start..end);
            match h[0] {
                8 => self
                    .events
                    .push_back(SessionEvent::Audio { timestamp, data }),
                9 => self
                    .events
                    .push_back(SessionEvent::Video { timestamp, data }),
                _ => {}
            }
            pos = end + 4;
        }
        Ok(())
    }

    fn handle_command(&mut self, stream_id: u32, values: Vec<Amf0Value>) -> Result<()> {
        let mut it = values.into_iter();
        let name = match it.next() {
            Some(Amf0Value::Utf8String(s)) => s,
            _ => return Err(Error::message("command without a name")),
        };
        let transaction = match it.next() {
            Some(Amf0Value::Number(n)) if n.is_finite() => n,
            _ => 0.0,
        };
        let object = it.next().unwrap_or(Amf0Value::Null);
        let args: Vec<Amf0Value> = it.collect();
        match name.as_str() {
            "connect" => self.on_connect(transaction, object),
            "createStream" => self.on_create_stream(transaction),
            "publish" => self.on_publish(stream_id, transaction, args),
            "play" => self.on_play(stream_id, transaction, args),
            "deleteStream" => {
                let id = match args.first() {
                    Some(Amf0Value::Number(n)) if *n >= 0.0 && *n <= f64::from(u32::MAX) => {
                        *n as u32
                    }
                    _ => stream_id,
                };
                self.streams.retain(|s| *s != id);
                self.close_stream(id);
                Ok(())
            }
            "closeStream" => {
                self.close_stream(stream_id);
                Ok(())
            }
            "FCUnpublish" => {
                if let Role::Publishing(id) = self.role {
                    self.close_stream(id);
                }
                self.result_if_asked(transaction)
            }
            "releaseStream" | "FCPublish" | "FCSubscribe" | "getStreamLength" | "_checkbw" => {
                self.result_if_asked(transaction)
            }
            // Flow control of a play that this server does not pause: ignored.
            "receiveAudio" | "receiveVideo" | "pause" | "pauseRaw" | "seek" | "_result"
            | "_error" | "onBWDone" => Ok(()),
            _ => {
                let name: String = name.chars().take(64).collect();
                if transaction != 0.0 {
                    self.command(
                        "_error",
                        transaction,
                        Amf0Value::Null,
                        vec![status_object(
                            "error",
                            "NetConnection.Call.Failed",
                            "unknown command",
                        )],
                        0,
                    )?;
                }
                self.events.push_back(SessionEvent::UnknownCommand { name });
                Ok(())
            }
        }
    }

    fn result_if_asked(&mut self, transaction: f64) -> Result<()> {
        if transaction == 0.0 {
            return Ok(());
        }
        self.command(
            "_result",
            transaction,
            Amf0Value::Null,
            vec![Amf0Value::Undefined],
            0,
        )
    }

    fn close_stream(&mut self, id: u32) {
        match self.role {
            Role::Publishing(s) | Role::PublishPending(s) if s == id => {
                self.role = Role::Idle;
                self.events.push_back(SessionEvent::PublishFinished);
            }
            Role::Playing(s) | Role::PlayPending(s) if s == id => {
                self.stop_playing();
                self.events.push_back(SessionEvent::PlayFinished);
            }
            _ => {}
        }
    }

    fn on_connect(&mut self, transaction: f64, object: Amf0Value) -> Result<()> {
        if self.app.is_some() {
            return Err(Error::protocol("second connect on one connection"));
        }
        let Amf0Value::Object(props) = object else {
            return Err(Error::protocol("connect without a command object"));
        };
        let raw = amf::string(&props, "app")
            .ok_or_else(|| Error::protocol("connect without an app name"))?;
        let (app, query) = split_query(raw);
        let app = app.trim_end_matches('/');
        self.app = Some(app.to_string());
        self.app_query = query
            .filter(|q| !q.is_empty())
            .or_else(|| amf::string(&props, "tcUrl").and_then(query::of_url))
            .map(str::to_string);
        let object_encoding = amf::number(&props, "objectEncoding").unwrap_or(0.0);

        self.send(
            RtmpMessage::WindowAcknowledgement {
                size: self.config.window_ack_size,
            },
            0,
        )?;
        self.send(
            RtmpMessage::SetPeerBandwidth {
                size: self.config.peer_bandwidth,
                limit_type: PeerBandwidthLimitType::Dynamic,
            },
            0,
        )?;
        let packet = self
            .writer
            .set_max_chunk_size(self.config.chunk_size, RtmpTimestamp::new(0))
            .map_err(|e| Error::protocol(format!("chunk size: {e:?}")))?;
        self.out.control().extend_from_slice(&packet.bytes);
        self.user_control(UserControlEventType::StreamBegin, 0)?;
        let mut server = HashMap::new();
        server.insert(
            "fmsVer".to_string(),
            Amf0Value::Utf8String("FMS/3,0,1,123".into()),
        );
        server.insert("capabilities".to_string(), Amf0Value::Number(31.0));
        let Amf0Value::Object(mut info) =
            status_object("status", "NetConnection.Connect.Success", "connected")
        else {
            return Ok(());
        };
        info.insert(
            "objectEncoding".to_string(),
            Amf0Value::Number(object_encoding),
        );
        self.command(
            "_result",
            transaction,
            Amf0Value::Object(server),
            vec![Amf0Value::Object(info)],
            0,
        )?;
        self.events.push_back(SessionEvent::Connected {
            app: app.to_string(),
        });
        Ok(())
    }

    fn on_create_stream(&mut self, transaction: f64) -> Result<()> {
        if self.app.is_none() {
            return Err(Error::protocol("createStream before connect"));
        }
        if self.streams.len() >= MAX_STREAMS {
            return self.command(
                "_error",
                transaction,
                Amf0Value::Null,
                vec![status_object(
                    "error",
                    "NetConnection.Call.Failed",
                    "too many streams",
                )],
                0,
            );
        }
        let id = self.next_stream_id;
        self.next_stream_id = self.next_stream_id.wrapping_add(1).max(1);
        self.streams.push(id);
        self.command(
            "_result",
            transaction,
            Amf0Value::Null,
            vec![Amf0Value::Number(f64::from(id))],
            0,
        )
    }

    fn stream_request(
        &self,
        stream_id: u32,
        args: &[Amf0Value],
        what: &str,
    ) -> Result<StreamRequest> {
        let Some(app) = self.app.clone() else {
            return Err(Error::protocol(format!("{what} before connect")));
        };
        if !self.streams.contains(&stream_id) {
            return Err(Error::protocol(format!(
                "{what} on stream {stream_id}, which was not created"
            )));
        }
        if self.role != Role::Idle {
            return Err(Error::protocol(format!(
                "{what} while already publishing or playing"
            )));
        }
        let Some(Amf0Value::Utf8String(raw)) = args.first() else {
            return Err(Error::protocol(format!("{what} without a stream name")));
        };
        let (stream, query) = split_query(raw);
        Ok(StreamRequest {
            stream_id,
            app,
            stream: stream.to_string(),
            query: query::merge(query, self.app_query.as_deref()),
        })
    }

    fn on_publish(
        &mut self,
        stream_id: u32,
        _transaction: f64,
        args: Vec<Amf0Value>,
    ) -> Result<()> {
        let request = self.stream_request(stream_id, &args, "publish")?;
        self.role = Role::PublishPending(stream_id);
        self.timers.handshake = None;
        self.events
            .push_back(SessionEvent::PublishRequested(request));
        Ok(())
    }

    fn on_play(&mut self, stream_id: u32, _transaction: f64, args: Vec<Amf0Value>) -> Result<()> {
        let request = self.stream_request(stream_id, &args, "play")?;
        self.role = Role::PlayPending(stream_id);
        self.timers.handshake = None;
        self.events.push_back(SessionEvent::PlayRequested(request));
        Ok(())
    }
}

/// AMF3-typed commands and data from Flash-era clients carry AMF0 after a zero byte.
fn strip_amf3_marker(payload: &[u8]) -> &[u8] {
    match payload.first() {
        Some(0) => payload.get(1..).unwrap_or_default(),
        _ => payload,
    }
}

fn split_query(s: &str) -> (&str, Option<&str>) {
    match s.split_once('?') {
        Some((name, query)) => (name, Some(query)),
        None => (s, None),
    }
}

fn status_object(level: &str, code: &str, description: &str) -> Amf0Value {
    let mut m = HashMap::new();
    m.insert("level".to_string(), Amf0Value::Utf8String(level.into()));
    m.insert("code".to_string(), Amf0Value::Utf8String(code.into()));
    m.insert(
        "description".to_string(),
        Amf0Value::Utf8String(description.into()),
    );
    Amf0Value::Object(m)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rml_rtmp::chunk_io::ChunkDeserializer;
    use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
    use rml_rtmp::messages::MessagePayload;
    use tidewater_core::EndReason;

    /// A scripted client: handshake, then messages serialized by rml_rtmp.
    pub(crate) struct Client {
        pub hs: Handshake,
        pub ser: ChunkSerializer,
        pub de: ChunkDeserializer,
    }

    impl Client {
        pub fn new() -> Self {
            Client {
                hs: Handshake::new(PeerType::Client),
                ser: ChunkSerializer::new(),
                de: ChunkDeserializer::new(),
            }
        }

        /// Runs the handshake against the session.
        pub fn handshake(&mut self, s: &mut Session) {
            let c0c1 = self.hs.generate_outbound_p0_and_p1().expect("c0c1");
            s.handle_input(&c0c1).expect("c0c1 in");
            let s012 = s.take_output().expect("s0s1s2");
            let c2 = match self.hs.process_bytes(&s012).expect("s012") {
                HandshakeProcessResult::Completed { response_bytes, .. } => response_bytes,
                other => panic!("{other:?}"),
            };
            s.handle_input(&c2).expect("c2 in");
            assert!(s.handshake_done());
        }

        pub fn bytes(&mut self, stream_id: u32, ts: u32, msg: RtmpMessage) -> Vec<u8> {
            let p = MessagePayload::from_rtmp_message(msg, RtmpTimestamp::new(ts), stream_id)
                .expect("payload");
            self.ser.serialize(&p, false, false).expect("ser").bytes
        }

        pub fn command(
            &mut self,
            stream_id: u32,
            name: &str,
            txn: f64,
            obj: Amf0Value,
            args: Vec<Amf0Value>,
        ) -> Vec<u8> {
            self.bytes(
                stream_id,
                0,
                RtmpMessage::Amf0Command {
                    command_name: name.into(),
                    transaction_id: txn,
                    command_object: obj,
                    additional_arguments: args,
                },
            )
        }

        pub fn connect(&mut self, app: &str) -> Vec<u8> {
            let mut o = HashMap::new();
            o.insert("app".to_string(), Amf0Value::Utf8String(app.into()));
            o.insert(
                "tcUrl".to_string(),
                Amf0Value::Utf8String(format!("rtmp://127.0.0.1/{app}")),
            );
            self.command(0, "connect", 1.0, Amf0Value::Object(o), vec![])
        }

        /// Every message the session sent, decoded.
        pub fn read(&mut self, s: &mut Session) -> Vec<RtmpMessage> {
            let mut msgs = Vec::new();
            let Some(bytes) = s.take_output() else {
                return msgs;
            };
            let mut input = &bytes[..];
            while let Some(p) = self.de.get_next_message(input).expect("deserialize") {
                input = &[];
                let m = p.to_rtmp_message().expect("message");
                if let RtmpMessage::SetChunkSize { size } = m {
                    self.de.set_max_chunk_size(size as usize).expect("size");
                }
                msgs.push(m);
            }
            msgs
        }
    }

    pub(crate) fn status_codes(msgs: &[RtmpMessage]) -> Vec<String> {
        msgs.iter()
            .filter_map(|m| match m {
                RtmpMessage::Amf0Command {
                    command_name,
                    additional_arguments,
                    ..
                } if command_name == "onStatus" || command_name == "_error" => {
                    match additional_arguments.first() {
                        Some(Amf0Value::Object(o)) => match o.get("code") {
                            Some(Amf0Value::Utf8String(c)) => Some(c.clone()),
                            _ => None,
                        },
                        _ => None,
                    }
                }
                _ => None,
            })
            .collect()
    }

    fn events(s: &mut Session) -> Vec<SessionEvent> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    fn connected(app: &str) -> (Session, Client) {
        connected_with(app, SessionConfig::default(), Instant::now())
    }

    /// A session created at `now`, handshaken, connected to `app`, with stream 1 created.
    fn connected_with(app: &str, config: SessionConfig, now: Instant) -> (Session, Client) {
        let mut s = Session::new(config, now);
        let mut c = Client::new();
        c.handshake(&mut s);
        let b = c.connect(app);
        s.handle_input(&b).expect("connect");
        let msgs = c.read(&mut s);
        assert!(
            msgs.contains(&RtmpMessage::SetChunkSize { size: 4096 }),
            "{msgs:?}"
        );
        assert!(msgs.iter().any(|m| matches!(m, RtmpMessage::Amf0Command { command_name, .. } if command_name == "_result")));
        assert_eq!(
            events(&mut s),
            vec![SessionEvent::Connected {
                app: app.split('?').next().unwrap_or_default().into()
            }]
        );
        let b = c.command(0, "createStream", 2.0, Amf0Value::Null, vec![]);
        s.handle_input(&b).expect("createStream");
        let msgs = c.read(&mut s);
        assert!(
            msgs.iter().any(|m| matches!(m, RtmpMessage::Amf0Command { command_name, additional_arguments, .. }
                if command_name == "_result" && additional_arguments == &vec![Amf0Value::Number(1.0)])),
            "{msgs:?}"
        );
        (s, c)
    }

    #[test]
    fn publish_flow_with_query_metadata_and_media() {
        let (mut s, mut c) = connected("live");
        let b = c.command(
            1,
            "publish",
            3.0,
            Amf0Value::Null,
            vec![
                Amf0Value::Utf8String("cam?token=s3cret".into()),
                Amf0Value::Utf8String("live".into()),
            ],
        );
        s.handle_input(&b).expect("publish");
        assert_eq!(
            events(&mut s),
            vec![SessionEvent::PublishRequested(StreamRequest {
                stream_id: 1,
                app: "live".into(),
                stream: "cam".into(),
                query: Some("token=s3cret".into())
            })]
        );
        // Media sent before the answer is held, then delivered once publishing.
        let b = c.bytes(
            1,
            0,
            RtmpMessage::VideoData {
                data: Bytes::from_static(&[0x17, 0]),
            },
        );
        s.handle_input(&b).expect("early video");
        assert!(s.poll_event().is_none());
        s.accept_publish().expect("accept");
        assert_eq!(
            status_codes(&c.read(&mut s)),
            vec!["NetStream.Publish.Start"]
        );
        assert_eq!(
            events(&mut s),
            vec![SessionEvent::Video {
                timestamp: 0,
                data: Bytes::from_static(&[0x17, 0])
            }]
        );

        let mut meta = HashMap::new();
        meta.insert("width".to_string(), Amf0Value::Number(320.0));
        let b = c.bytes(
            1,
            0,
            RtmpMessage::Amf0Data {
                values: vec![
                    Amf0Value::Utf8String("@setDataFrame".into()),
                    Amf0Value::Utf8String("onMetaData".into()),
                    Amf0Value::Object(meta.clone()),
                ],
            },
        );
        s.handle_input(&b).expect("metadata");
        let mut wire = c.bytes(
            1,
            40,
            RtmpMessage::VideoData {
                data: Bytes::from(vec![0x27; 9000]),
            },
        );
        wire.extend(c.bytes(
            1,
            46,
            RtmpMessage::AudioData {
                data: Bytes::from_static(&[0xaf, 1, 5]),
            },
        ));
        // Split at an awkward place.
        s.handle_input(&wire[..100]).expect("part 1");
        s.handle_input(&wire[100..]).expect("part 2");
        let ev = events(&mut s);
        assert_eq!(ev[0], SessionEvent::Metadata(meta));
        assert!(
            matches!(&ev[1], SessionEvent::Video { timestamp: 40, data } if data.len() == 9000)
        );
        assert_eq!(
            ev[2],
            SessionEvent::Audio {
                timestamp: 46,
                data: Bytes::from_static(&[0xaf, 1, 5])
            }
        );

        let b = c.command(
            0,
            "FCUnpublish",
            5.0,
            Amf0Value::Null,
            vec![Amf0Value::Utf8String("cam".into())],
        );
        s.handle_input(&b).expect("unpublish");
        assert_eq!(events(&mut s), vec![SessionEvent::PublishFinished]);
    }

    #[test]
    fn refused_requests_get_an_error_status() {
        let (mut s, mut c) = connected("live");
        let b = c.command(
            1,
            "play",
            4.0,
            Amf0Value::Null,
            vec![Amf0Value::Utf8String("nope".into())],
        );
        s.handle_input(&b).expect("play");
        assert!(matches!(
            events(&mut s)[..],
            [SessionEvent::PlayRequested(_)]
        ));
        s.reject("NetStream.Play.StreamNotFound", "live/nope is not live")
            .expect("reject");
        let msgs = c.read(&mut s);
        assert_eq!(status_codes(&msgs), vec!["NetStream.Play.StreamNotFound"]);
        let RtmpMessage::Amf0Command {
            additional_arguments,
            ..
        } = &msgs[0]
        else {
            panic!()
        };
        let Some(Amf0Value::Object(o)) = additional_arguments.first() else {
            panic!()
        };
        assert_eq!(o.get("level"), Some(&Amf0Value::Utf8String("error".into())));
    }

    #[test]
    fn play_flow_and_end() {
        let (mut s, mut c) = connected("live?key=1");
        let b = c.command(
            1,
            "play",
            4.0,
            Amf0Value::Null,
            vec![Amf0Value::Utf8String("cam".into()), Amf0Value::Number(-2.0)],
        );
        s.handle_input(&b).expect("play");
        let ev = events(&mut s);
        assert!(
            matches!(&ev[..], [SessionEvent::PlayRequested(r)] if r.query.as_deref() == Some("key=1")),
            "{ev:?}"
        );
        s.accept_play().expect("accept");
        assert_eq!(s.play_stream_id(), Some(SHARED_STREAM_ID));
        assert_eq!(
            status_codes(&c.read(&mut s)),
            vec!["NetStream.Play.Reset", "NetStream.Play.Start"]
        );
        s.end_play(Ending::Unpublished(EndReason::Finished))
            .expect("end");
        assert_eq!(
            events(&mut s),
            vec![SessionEvent::PlayEnded(Ending::Unpublished(
                EndReason::Finished
            ))]
        );
        let msgs = c.read(&mut s);
        assert_eq!(
            status_codes(&msgs),
            vec!["NetStream.Play.UnpublishNotify", "NetStream.Play.Stop"]
        );
        assert!(msgs.iter().any(|m| matches!(
            m,
            RtmpMessage::UserControl {
                event_type: UserControlEventType::StreamEof,
                stream_id: Some(1),
                ..
            }
        )));
    }

    #[test]
    fn pings_acks_and_unknown_commands() {
        let (mut s, mut c) = connected("live");
        let b = c.bytes(
            0,
            0,
            RtmpMessage::UserControl {
                event_type: UserControlEventType::PingRequest,
                stream_id: None,
                buffer_length: None,
                timestamp: Some(RtmpTimestamp::new(77)),
            },
        );
        s.handle_input(&b).expect("ping");
        assert!(c.read(&mut s).iter().any(|m| matches!(m, RtmpMessage::UserControl { event_type: UserControlEventType::PingResponse, timestamp: Some(t), .. } if t.value == 77)));

        let b = c.command(0, "frobnicate", 9.0, Amf0Value::Null, vec![]);
        s.handle_input(&b)
            .expect("unknown command keeps the session");
        assert_eq!(
            events(&mut s),
            vec![SessionEvent::UnknownCommand {
                name: "frobnicate".into()
            }]
        );
        assert_eq!(
            status_codes(&c.read(&mut s)),
            vec!["NetConnection.Call.Failed"]
        );

        let b = c.bytes(0, 0, RtmpMessage::WindowAcknowledgement { size: 1000 });
        s.handle_input(&b).expect("window");
        let b = c.command(
            0,
            "releaseStream",
            3.0,
            Amf0Value::Null,
            vec![Amf0Value::Utf8String("x".repeat(1000))],
        );
        s.handle_input(&b).expect("release");
        assert!(
            c.read(&mut s)
                .iter()
                .any(|m| matches!(m, RtmpMessage::Acknowledgement { .. }))
        );
    }

    #[test]
    fn protocol_violations_are_errors() {
        let (mut s, mut c) = connected("live");
        // Publish on a stream that was never created.
        let b = c.command(
            5,
            "publish",
            3.0,
            Amf0Value::Null,
            vec![Amf0Value::Utf8String("x".into())],
        );
        assert!(matches!(s.handle_input(&b), Err(Error::Protocol { .. })));
        assert!(
            s.handle_input(&[]).is_err(),
            "a failed session stays failed"
        );

        let mut s = Session::new(SessionConfig::default(), Instant::now());
        assert!(matches!(
            s.handle_input(&[6; 1537]),
            Err(Error::Handshake { .. })
        ));

        // A short @setDataFrame (which makes rml_rtmp's ServerSession panic) is harmless.
        let (mut s, mut c) = connected("live");
        let b = c.command(
            1,
            "publish",
            3.0,
            Amf0Value::Null,
            vec![Amf0Value::Utf8String("x".into())],
        );
        s.handle_input(&b).expect("publish");
        s.accept_publish().expect("accept");
        for values in [
            vec![],
            vec![Amf0Value::Utf8String("@setDataFrame".into())],
            vec![
                Amf0Value::Utf8String("@setDataFrame".into()),
                Amf0Value::Utf8String("onMetaData".into()),
            ],
        ] {
            let b = c.bytes(1, 0, RtmpMessage::Amf0Data { values });
            s.handle_input(&b).expect("short data");
        }
    }

    const MS: Duration = Duration::from_millis(1);
    const SEC: Duration = Duration::from_secs(1);

    /// Writes out everything at `now`, as a driver whose socket takes it all
    /// does; the turn ends at `now`. Returns the bytes written.
    fn write_all(s: &mut Session, now: Instant) -> usize {
        let mut total = 0;
        while s.poll_transmit(now) {
            let mut slices = [IoSlice::new(&[]); 64];
            let n = s.io_slices(&mut slices);
            let len: usize = slices[..n].iter().map(|b| b.len()).sum();
            s.transmitted(len, now);
            total += len;
        }
        total
    }

    fn request(c: &mut Client, s: &mut Session, command: &str, name: &str) {
        let b = c.command(
            1,
            command,
            4.0,
            Amf0Value::Null,
            vec![Amf0Value::Utf8String(name.into())],
        );
        s.handle_input(&b).expect("request");
    }

    #[test]
    fn a_peer_that_neither_publishes_nor_plays_in_time_is_timed_out() {
        let t0 = Instant::now();
        let config = SessionConfig {
            handshake_timeout: 10 * SEC,
            ..SessionConfig::default()
        };
        let mut s = Session::new(config.clone(), t0);
        assert_eq!(s.poll_timeout(), Some(t0 + 10 * SEC));
        s.handle_timeout(t0 + 10 * SEC - MS).expect("not yet");
        // Handshake and connect do not stop the clock.
        let (mut s2, _c) = connected_with("live", config.clone(), t0);
        assert!(
            write_all(&mut s2, t0 + SEC) == 0,
            "read by the client already"
        );
        assert_eq!(s2.poll_timeout(), Some(t0 + 10 * SEC));
        for s in [&mut s, &mut s2] {
            match s.handle_timeout(t0 + 10 * SEC) {
                Err(Error::NegotiationTimeout { after, .. }) => assert_eq!(after, 10 * SEC),
                other => panic!("{other:?}"),
            }
            assert!(
                s.handle_input(&[]).is_err(),
                "a timed-out session is failed"
            );
        }
        // A request stops it: the kernel's answer takes what it takes.
        let (mut s, mut c) = connected_with("live", config, t0);
        request(&mut c, &mut s, "play", "cam");
        assert!(matches!(
            events(&mut s)[..],
            [SessionEvent::PlayRequested(_)]
        ));
        assert_eq!(s.poll_timeout(), None);
        s.handle_timeout(t0 + 3600 * SEC).expect("no deadline");
    }

    #[test]
    fn a_silent_publisher_is_closed_a_read_timeout_after_its_last_turn() {
        let t0 = Instant::now();
        let config = SessionConfig {
            read_timeout: 30 * SEC,
            ..SessionConfig::default()
        };
        let (mut s, mut c) = connected_with("live", config, t0);
        request(&mut c, &mut s, "publish", "cam");
        s.accept_publish().expect("accept");
        assert!(write_all(&mut s, t0 + SEC) > 0, "Publish.Start");
        assert_eq!(s.poll_timeout(), Some(t0 + 31 * SEC));
        // Media at 20 s: the clock starts over once the turn is written.
        let b = c.bytes(
            1,
            0,
            RtmpMessage::VideoData {
                data: Bytes::from_static(&[0x17, 0]),
            },
        );
        s.handle_input(&b).expect("video");
        assert_eq!(events(&mut s).len(), 2, "PublishRequested, Video");
        write_all(&mut s, t0 + 20 * SEC);
        assert_eq!(s.poll_timeout(), Some(t0 + 50 * SEC));
        s.handle_timeout(t0 + 50 * SEC - MS).expect("not yet");
        assert!(events(&mut s).is_empty());
        s.handle_timeout(t0 + 50 * SEC).expect("timed out");
        assert_eq!(
            events(&mut s),
            vec![SessionEvent::PublishTimedOut { after: 30 * SEC }]
        );
        assert!(!s.is_publishing());
        assert_eq!(s.poll_timeout(), None);
    }

    #[tokio::test]
    async fn a_player_coalesces_its_writes_and_ends_with_the_stream() {
        let (_engine, _publisher, mut sub) = crate::egress::tests::live_stream("coalesce").await;
        let t0 = Instant::now();
        let config = SessionConfig {
            coalesce: 200 * MS,
            ..SessionConfig::default()
        };
        let (mut s, mut c) = connected_with("live", config, t0);
        assert!(!s.wants_media(), "not playing");
        request(&mut c, &mut s, "play", "cam");
        s.accept_play().expect("accept");
        assert!(write_all(&mut s, t0) > 0, "the play's statuses");
        assert!(s.wants_media(), "no window before the cached GOP");
        assert_eq!(s.poll_timeout(), None);
        let mut handed = 0;
        while s.wants_media() {
            let Some(ev) = sub.try_recv_ref() else { break };
            s.handle_media(ev).expect("media");
            handed += 1;
        }
        assert_eq!(handed, 3, "catalog and two frames");
        assert!(write_all(&mut s, t0 + 100 * MS) > 0);
        // The window: neither input nor media until it closes.
        assert!(!s.wants_media() && !s.wants_input());
        assert_eq!(s.poll_timeout(), Some(t0 + 300 * MS));
        s.handle_timeout(t0 + 300 * MS - MS).expect("not yet");
        assert!(!s.wants_media());
        s.handle_timeout(t0 + 300 * MS).expect("window over");
        assert!(s.wants_media() && s.wants_input());
        // A turn with nothing handled opens no new window.
        assert_eq!(write_all(&mut s, t0 + 300 * MS), 0);
        assert_eq!(s.poll_timeout(), None);
        // The stream ends: the closing statuses follow the media.
        s.handle_media(EgressInput::End(Ending::Unpublished(EndReason::Finished)))
            .expect("end");
        assert!(!s.wants_media());
        assert_eq!(
            events(&mut s),
            vec![
                SessionEvent::PlayRequested(StreamRequest {
                    stream_id: 1,
                    app: "live".into(),
                    stream: "cam".into(),
                    query: None
                }),
                SessionEvent::PlayEnded(Ending::Unpublished(EndReason::Finished))
            ]
        );
        let msgs = c.read(&mut s);
        assert_eq!(
            status_codes(&msgs),
            vec!["NetStream.Play.UnpublishNotify", "NetStream.Play.Stop"]
        );
        let RtmpMessage::Amf0Command {
            additional_arguments,
            ..
        } = &msgs[0]
        else {
            panic!("{msgs:?}")
        };
        let Some(Amf0Value::Object(o)) = additional_arguments.first() else {
            panic!()
        };
        assert_eq!(
            o.get("description"),
            Some(&Amf0Value::Utf8String("publisher ended the stream".into()))
        );
    }

    #[tokio::test]
    async fn a_backlog_goes_out_batch_after_batch_without_a_window() {
        use tidewater_core::{AppSpec, Codec, Engine, Frame, Request, StreamKey, TrackId};
        let engine = Engine::builder()
            .app("live", AppSpec::default())
            .build()
            .expect("engine");
        let key = StreamKey::parse("live/backlog").expect("key");
        let mut publisher = engine
            .open_publish(Request::new(key.clone(), "test"))
            .await
            .expect("publish");
        publisher
            .set_catalog(vec![
                tidewater_core::TrackInfo::video(TrackId(1), Codec::H264, 320, 240)
                    .with_timescale(1000)
                    .with_config(Bytes::from_static(&[1, 0x64, 0, 0x0d, 0xff, 0xe0, 0])),
            ])
            .expect("catalog");
        // A cached GOP of 150 frames: more than two batches of messages.
        for i in 0..150i64 {
            let nal = if i == 0 { 0x65 } else { 0x41 };
            publisher
                .publish(Frame::video(
                    TrackId(1),
                    Codec::H264,
                    i * 40,
                    i * 40,
                    i == 0,
                    Bytes::copy_from_slice(&[0, 0, 0, 1, nal]),
                ))
                .expect("frame");
        }
        let mut sub = engine
            .subscribe(Request::new(key, "test"))
            .await
            .expect("subscribe");
        let t0 = Instant::now();
        let config = SessionConfig {
            coalesce: 200 * MS,
            ..SessionConfig::default()
        };
        let (mut s, mut c) = connected_with("live", config, t0);
        request(&mut c, &mut s, "play", "cam");
        s.accept_play().expect("accept");
        write_all(&mut s, t0);
        let mut turns = 0;
        let mut handed = 0;
        loop {
            assert!(
                s.wants_media(),
                "turn {turns}: no window during the backlog"
            );
            while s.wants_media() {
                let Some(ev) = sub.try_recv_ref() else { break };
                s.handle_media(ev).expect("media");
                handed += 1;
            }
            assert!(write_all(&mut s, t0) > 0);
            turns += 1;
            if s.poll_timeout().is_some() {
                break;
            }
        }
        assert_eq!(handed, 151, "the catalog and every frame");
        assert_eq!(turns, 3, "two full batches, then the rest");
        assert_eq!(s.poll_timeout(), Some(t0 + 200 * MS), "live: windows again");
    }

    #[tokio::test]
    async fn a_viewer_whose_socket_takes_nothing_is_timed_out() {
        let (_engine, _publisher, mut sub) = crate::egress::tests::live_stream("blocked").await;
        let t0 = Instant::now();
        let config = SessionConfig {
            write_timeout: 5 * SEC,
            ..SessionConfig::default()
        };
        let (mut s, mut c) = connected_with("live", config, t0);
        request(&mut c, &mut s, "play", "cam");
        s.accept_play().expect("accept");
        while let Some(ev) = sub.try_recv_ref() {
            s.handle_media(ev).expect("media");
        }
        assert!(s.poll_transmit(t0));
        assert_eq!(s.poll_timeout(), Some(t0 + 5 * SEC));
        // Ten bytes go at 1 s, then nothing: 5 s after that progress it is over.
        s.transmitted(10, t0 + SEC);
        assert!(s.poll_transmit(t0 + 2 * SEC));
        assert_eq!(s.poll_timeout(), Some(t0 + 6 * SEC));
        s.handle_timeout(t0 + 6 * SEC - MS).expect("not yet");
        match s.handle_timeout(t0 + 6 * SEC) {
            Err(Error::WriteTimeout { after, .. }) => assert_eq!(after, 5 * SEC),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn kernel_refusals_map_to_rtmp_statuses() {
        use tidewater_core::{Action, Refusal};
        let kernel = |source: tidewater_core::Error| Error::Kernel {
            ctx: Default::default(),
            source: Box::new(source),
        };
        let key = StreamKey::parse("live/cam").expect("key");
        let denied = kernel(tidewater_core::Error::Unauthorized {
            action: Action::Publish,
            key: key.clone(),
            peer: None,
            refusal: Refusal::forbidden("no"),
        });
        let limit = kernel(tidewater_core::Error::PublisherLimit {
            app: "live".into(),
            limit: 1,
            key: key.clone(),
        });
        let taken = kernel(tidewater_core::Error::AlreadyPublishing {
            key: key.clone(),
            peer: None,
        });
        let not_found = kernel(tidewater_core::Error::NotFound { key });
        let bad_name = kernel(StreamKey::new("live", "..").expect_err("bad"));
        let code = |publish, e: &Error| refusal_code(publish, e);
        assert_eq!(code(true, &denied), "NetStream.Publish.Denied");
        assert_eq!(code(true, &limit), "NetStream.Publish.Denied");
        assert_eq!(code(true, &taken), "NetStream.Publish.BadName");
        assert_eq!(code(true, &bad_name), "NetStream.Publish.BadName");
        assert_eq!(code(false, &denied), "NetStream.Play.Failed");
        assert_eq!(code(false, &not_found), "NetStream.Play.StreamNotFound");
        assert_eq!(code(false, &bad_name), "NetStream.Play.StreamNotFound");

        // `refuse` answers the pending request with that code.
        let (mut s, mut c) = connected("live");
        request(&mut c, &mut s, "publish", "cam");
        s.refuse(&denied).expect("refuse");
        assert_eq!(
            status_codes(&c.read(&mut s)),
            vec!["NetStream.Publish.Denied"]
        );
    }

    #[test]
    fn credentials_come_from_the_stream_name_or_the_connect_and_never_reach_the_key() {
        use tidewater_core::Credentials;
        // OBS: the query in the server field, which lands in `app` and `tcUrl`.
        let (mut s, mut c) = connected("live?user=a&pass=b%21");
        request(&mut c, &mut s, "publish", "cam");
        let [SessionEvent::PublishRequested(r)] = &events(&mut s)[..] else {
            panic!("no publish request")
        };
        let req = r.kernel_request(None).expect("request");
        assert_eq!(req.key.as_str(), "live/cam");
        assert_eq!(
            req.credentials,
            Credentials::UserPass {
                user: "a".into(),
                pass: "b!".into()
            }
        );
        assert_eq!(req.query, None, "the password is not handed on as a query");

        // Only in `tcUrl`; the stream name's own query wins where both say.
        let mut s = Session::new(SessionConfig::default(), Instant::now());
        let mut c = Client::new();
        c.handshake(&mut s);
        let mut o = HashMap::new();
        o.insert("app".to_string(), Amf0Value::Utf8String("live".into()));
        o.insert(
            "tcUrl".to_string(),
            Amf0Value::Utf8String("rtmp://127.0.0.1/live?user=x&pass=y&z=1".into()),
        );
        let b = c.command(0, "connect", 1.0, Amf0Value::Object(o), vec![]);
        s.handle_input(&b).expect("connect");
        let b = c.command(0, "createStream", 2.0, Amf0Value::Null, vec![]);
        s.handle_input(&b).expect("createStream");
        request(&mut c, &mut s, "play", "cam?user=v%20w&pass=p");
        let ev = events(&mut s);
        let Some(SessionEvent::PlayRequested(r)) = ev.last() else {
            panic!("{ev:?}")
        };
        assert_eq!((r.app.as_str(), r.stream.as_str()), ("live", "cam"));
        let req = r.kernel_request(None).expect("request");
        assert_eq!(req.key.as_str(), "live/cam");
        assert_eq!(
            req.credentials,
            Credentials::UserPass {
                user: "v w".into(),
                pass: "p".into()
            }
        );
        assert_eq!(req.query.as_deref(), Some("z=1"));

        // A token stays in the query (the authorizer reads it there) and is
        // handed decoded as credentials too.
        let (mut s, mut c) = connected("live");
        request(&mut c, &mut s, "publish", "cam?token=a%2Fb");
        let [SessionEvent::PublishRequested(r)] = &events(&mut s)[..] else {
            panic!("no publish request")
        };
        let req = r.kernel_request(None).expect("request");
        assert_eq!(req.credentials, Credentials::Token("a/b".into()));
        assert_eq!(req.query.as_deref(), Some("token=a%2Fb"));
    }

    #[test]
    fn a_kicked_viewer_gets_play_stop_and_stream_eof() {
        let (mut s, mut c) = connected("live");
        request(&mut c, &mut s, "play", "cam");
        s.accept_play().expect("accept");
        c.read(&mut s);
        s.handle_media(EgressInput::End(Ending::Kicked))
            .expect("kicked");
        assert!(!s.wants_media());
        assert_eq!(
            events(&mut s).last(),
            Some(&SessionEvent::PlayEnded(Ending::Kicked))
        );
        let msgs = c.read(&mut s);
        assert_eq!(status_codes(&msgs), vec!["NetStream.Play.Stop"]);
        assert!(msgs.iter().any(|m| matches!(
            m,
            RtmpMessage::UserControl {
                event_type: UserControlEventType::StreamEof,
                ..
            }
        )));
    }

    #[test]
    fn the_kernel_request_carries_the_peer_and_query() {
        let r = StreamRequest {
            stream_id: 1,
            app: "live".into(),
            stream: "cam".into(),
            query: Some("token=t".into()),
        };
        let peer: SocketAddr = "192.0.2.7:4000".parse().expect("addr");
        let req = r.kernel_request(Some(peer)).expect("request");
        assert_eq!(req.key.to_string(), "live/cam");
        assert_eq!(req.peer, Some(peer));
        assert_eq!(req.query.as_deref(), Some("token=t"));
        let bad = StreamRequest {
            stream: "../x".into(),
            ..r
        };
        assert!(bad.kernel_request(None).is_err());
    }
}
