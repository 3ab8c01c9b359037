//! A minimal RTMP **play** client, sans-IO, for the `rtmp-load` load tool.
//!
//! It does just what a viewer must: the simple (version 3, no digest)
//! handshake, `connect`, `createStream`, `play`, acknowledgements for the
//! server's window and answers to pings. Of the media it reads only chunk
//! headers, message timestamps and the first bytes of each audio/video message
//! (enough to tell a keyframe from a sequence header); payloads are skipped,
//! never copied or reassembled. That keeps one viewer at a few hundred bytes
//! of state and the parse cost at a few nanoseconds per chunk, so one thread
//! can drive thousands of viewers.
//!
//! Why not `rml_rtmp`'s `ClientSession`: it copies all input into its chunk
//! deserializer's buffer, reassembles every media message into its own
//! `Bytes` and raises an event per message (the cost profile of a player, not
//! of a load generator). Measured on 15 s of one viewer's recorded traffic
//! (4.2 MB, fed in 4–64 KiB reads, 2026-11-21): `rml_rtmp` 0.8's
//! `ChunkDeserializer` plus message decoding alone, a lower bound of
//! `ClientSession`, took 120–190 ns per KB; this reader 13–22 ns per KB. At
//! 2 000 viewers of a 2 Mbit/s stream (500 MB/s) that is 0.06–0.1 core
//! against 0.01 core, on the core that also runs the publisher.
//!
//! Use: [`PlaySession::new`], send [`PlaySession::start`]'s bytes (C0 + C1),
//! then hand every received byte range to [`PlaySession::feed`] and send what
//! it appended to `out`.

use std::fmt;

/// Size of C1/C2/S1/S2.
pub const HANDSHAKE_SIZE: usize = 1536;
/// The chunk size every RTMP peer starts with.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Largest message body accepted for control and command messages; media
/// messages are never buffered, whatever their length.
const MAX_BUFFERED_BODY: usize = 256 * 1024;
/// Most distinct chunk stream ids one connection may use.
const MAX_CHUNK_STREAMS: usize = 64;
/// Bytes of each audio/video message kept (FLV tag header: frame type,
/// codec / packet type, and room for an Enhanced RTMP FourCC).
pub const MEDIA_HEAD: usize = 5;
/// Chunk stream id of our commands (what ffmpeg and Flash use).
const CSID_COMMAND: u8 = 3;
/// Chunk stream id of our `play` (ffmpeg uses 8 for stream-scoped commands).
const CSID_STREAM_COMMAND: u8 = 8;
/// Chunk stream id of protocol control messages.
const CSID_CONTROL: u8 = 2;
/// Transaction id of `connect`.
const TXN_CONNECT: f64 = 1.0;
/// Transaction id of `createStream`.
const TXN_CREATE_STREAM: f64 = 2.0;

/// A protocol failure: the connection cannot go on.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// S0 announced another RTMP version.
    Version(u8),
    /// A chunk or message header that no conforming peer sends.
    Malformed(&'static str),
    /// The server answered a command with `_error` or an error status.
    Refused(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Version(v) => write!(f, "server speaks RTMP version {v}"),
            Error::Malformed(what) => write!(f, "malformed input: {what}"),
            Error::Refused(why) => write!(f, "refused: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// The start of one audio or video message, reported once per message as soon
/// as its first [`MEDIA_HEAD`] bytes (or all of it, if shorter) have arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Media {
    /// Video (message type 9) rather than audio (type 8).
    pub video: bool,
    /// The message timestamp in milliseconds, as the server sent it (wraps at 2³²).
    pub timestamp: u32,
    /// The message length in bytes.
    pub length: u32,
    /// A video keyframe carrying coded picture data (not a sequence header).
    pub keyframe: bool,
    /// A sequence header (decoder configuration), audio or video.
    pub config: bool,
}

/// What [`PlaySession::feed`] reports besides media.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// `createStream` answered; `play` was sent on this message stream.
    Playing { stream_id: u32 },
    /// An `onStatus` with this code (e.g. `NetStream.Play.Start`).
    Status(String),
    /// The server ended the stream (user control Stream EOF, or an
    /// `onStatus` unpublish / stop notification).
    StreamEnd,
}

/// Classifies the first bytes of an FLV video tag body (legacy and Enhanced RTMP).
///
/// Returns `(keyframe, config)`: a keyframe with picture data, or a sequence
/// header. A one-byte body can only be classified for codecs without a packet
/// type (everything but AVC/HEVC/AV1 legacy ids).
pub fn classify_video(head: &[u8]) -> (bool, bool) {
    let Some(&b0) = head.first() else {
        return (false, false);
    };
    if b0 & 0x80 != 0 {
        // Enhanced RTMP: IsExHeader, 3-bit frame type, 4-bit packet type.
        let frame_type = (b0 >> 4) & 0x07;
        let packet_type = b0 & 0x0F;
        let config = packet_type == 0 || packet_type == 5;
        let coded = packet_type == 1 || packet_type == 3;
        return (frame_type == 1 && coded, config);
    }
    let frame_type = b0 >> 4;
    let codec = b0 & 0x0F;
    match codec {
        // AVC, and the legacy HEVC (12) / AV1 (13) ids some servers use: a
        // packet type byte follows (0 = sequence header, 1 = NAL units).
        7 | 12 | 13 => match head.get(1) {
            Some(0) => (false, true),
            Some(1) => (frame_type == 1, false),
            _ => (false, false),
        },
        _ => (frame_type == 1, false),
    }
}

/// Whether the first bytes of an FLV audio tag body are an AAC sequence header.
pub fn is_audio_config(head: &[u8]) -> bool {
    head.first().is_some_and(|b| b >> 4 == 10) && head.get(1) == Some(&0)
}

// ---------------------------------------------------------------------------
// AMF0, just enough for commands

/// An AMF0 value (the subset RTMP commands use).
#[derive(Debug, Clone, PartialEq)]
pub enum Amf {
    Number(f64),
    Bool(bool),
    Str(String),
    Null,
    Undefined,
    /// Object or ECMA array: properties in order.
    Object(Vec<(String, Amf)>),
    Array(Vec<Amf>),
}

impl Amf {
    /// A property of an object value.
    pub fn get(&self, key: &str) -> Option<&Amf> {
        match self {
            Amf::Object(props) => props.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf::Number(n) => Some(*n),
            _ => None,
        }
    }
}

/// Appends one AMF0 value.
pub fn amf_write(out: &mut Vec<u8>, value: &Amf) {
    match value {
        Amf::Number(n) => {
            out.push(0x00);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Amf::Bool(b) => out.extend_from_slice(&[0x01, u8::from(*b)]),
        Amf::Str(s) => {
            out.push(0x02);
            amf_write_key(out, s);
        }
        Amf::Null => out.push(0x05),
        Amf::Undefined => out.push(0x06),
        Amf::Object(props) => {
            out.push(0x03);
            for (k, v) in props {
                amf_write_key(out, k);
                amf_write(out, v);
            }
            out.extend_from_slice(&[0, 0, 0x09]);
        }
        Amf::Array(items) => {
            out.push(0x0A);
            out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for v in items {
                amf_write(out, v);
            }
        }
    }
}

fn amf_write_key(out: &mut Vec<u8>, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Reads every AMF0 value of a command body. Unsupported types end the list.
pub fn amf_read_all(mut input: &[u8]) -> Vec<Amf> {
    let mut values = Vec::new();
    while !input.is_empty() {
        match amf_read(&mut input, 0) {
            Some(v) => values.push(v),
            None => break,
        }
    }
    values
}

fn amf_read(input: &mut &[u8], depth: u32) -> Option<Amf> {
    if depth > 16 {
        return None;
    }
    let (&marker, rest) = input.split_first()?;
    *input = rest;
    Some(match marker {
        0x00 => Amf::Number(f64::from_be_bytes(take(input, 8)?.try_into().ok()?)),
        0x01 => Amf::Bool(take(input, 1)?[0] != 0),
        0x02 => Amf::Str(read_utf8(input)?),
        0x03 => Amf::Object(read_props(input, depth)?),
        0x05 => Amf::Null,
        0x06 => Amf::Undefined,
        0x08 => {
            take(input, 4)?; // ECMA array count: advisory, the end marker decides
            Amf::Object(read_props(input, depth)?)
        }
        0x0A => {
            let n = u32::from_be_bytes(take(input, 4)?.try_into().ok()?);
            let mut items = Vec::new();
            for _ in 0..n.min(4096) {
                items.push(amf_read(input, depth + 1)?);
            }
            Amf::Array(items)
        }
        0x0B => {
            take(input, 10)?; // date: f64 + time zone
            Amf::Undefined
        }
        0x0C => {
            let n = u32::from_be_bytes(take(input, 4)?.try_into().ok()?);
            let s = take(input, n as usize)?;
            Amf::Str(String::from_utf8_lossy(s).into_owned())
        }
        _ => return None,
    })
}

fn read_props(input: &mut &[u8], depth: u32) -> Option<Vec<(String, Amf)>> {
    let mut props = Vec::new();
    loop {
        let key = read_utf8(input)?;
        if key.is_empty() && input.first() == Some(&0x09) {
            *input = &input[1..];
            return Some(props);
        }
        let value = amf_read(input, depth + 1)?;
        props.push((key, value));
    }
}

fn read_utf8(input: &mut &[u8]) -> Option<String> {
    let n = u16::from_be_bytes(take(input, 2)?.try_into().ok()?);
    Some(String::from_utf8_lossy(take(input, n as usize)?).into_owned())
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if input.len() < n {
        return None;
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Some(head)
}

// ---------------------------------------------------------------------------
// chunk writing (our few outgoing messages)

/// Appends one message as chunks: a type-0 header, then type-3 continuation
/// chunks every `chunk_size` bytes. `csid` must be 2..=63.
pub fn write_message(
    out: &mut Vec<u8>,
    csid: u8,
    timestamp: u32,
    type_id: u8,
    stream_id: u32,
    body: &[u8],
    chunk_size: usize,
) {
    debug_assert!((2..64).contains(&csid));
    let extended = timestamp >= 0xFF_FFFF;
    out.push(csid);
    let ts_field = if extended { 0xFF_FFFF } else { timestamp };
    out.extend_from_slice(&ts_field.to_be_bytes()[1..]);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.push(type_id);
    out.extend_from_slice(&stream_id.to_le_bytes());
    if extended {
        out.extend_from_slice(&timestamp.to_be_bytes());
    }
    let mut chunks = body.chunks(chunk_size.max(1));
    if let Some(first) = chunks.next() {
        out.extend_from_slice(first);
    }
    for chunk in chunks {
        out.push(0xC0 | csid);
        if extended {
            out.extend_from_slice(&timestamp.to_be_bytes());
        }
        out.extend_from_slice(chunk);
    }
}

fn command(out: &mut Vec<u8>, csid: u8, stream_id: u32, values: &[Amf]) {
    let mut body = Vec::with_capacity(256);
    for v in values {
        amf_write(&mut body, v);
    }
    write_message(
        out,
        csid,
        0,
        20,
        stream_id,
        &body,
        DEFAULT_CHUNK_SIZE as usize,
    );
}

// ---------------------------------------------------------------------------
// chunk reading

#[derive(Debug, Clone, Copy, Default)]
struct ChunkStream {
    csid: u32,
    timestamp: u32,
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The last header of this chunk stream carried an extended timestamp, so
    /// its type-3 chunks do too.
    extended: bool,
    /// Bytes of the current message still to come (0: between messages).
    remaining: u32,
    /// Bytes of the current message received so far.
    received: u32,
    head: [u8; MEDIA_HEAD],
    /// The media start of the current message has been reported.
    reported: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    /// Expecting a chunk header.
    Header,
    /// Inside a chunk's payload: the chunk stream (index) and bytes left.
    Payload { index: usize, left: u32 },
}

/// A parsed chunk header.
#[derive(Debug, Clone, Copy)]
struct Header {
    fmt: u8,
    csid: u32,
    ts_field: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// An extended timestamp field followed the message header.
    extended: bool,
}

/// Largest chunk header: 3-byte basic header, 11-byte message header, 4-byte
/// extended timestamp.
const MAX_HEADER: usize = 18;

/// Things the chunk reader hands up, before the session acts on them.
enum Event<'a> {
    Media(Media),
    /// A complete message that is buffered (control or command): type and body.
    Message(u8, &'a [u8]),
}

/// Incremental chunk-stream reader: accepts any split of the input.
#[derive(Debug)]
struct ChunkReader {
    chunk_size: u32,
    streams: Vec<ChunkStream>,
    state: ReadState,
    carry: [u8; MAX_HEADER],
    carry_len: usize,
    /// Body of the buffered message in progress, per chunk stream index.
    bodies: Vec<Vec<u8>>,
}

/// Message types whose bodies are buffered and handed up whole.
fn buffered(type_id: u8) -> bool {
    matches!(type_id, 1..=6 | 17 | 20)
}

impl ChunkReader {
    fn new() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: Vec::new(),
            state: ReadState::Header,
            carry: [0; MAX_HEADER],
            carry_len: 0,
            bodies: Vec::new(),
        }
    }

    fn index_of(&self, csid: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.csid == csid)
    }

    /// Parses a chunk header at the start of `input`; `None` if more bytes
    /// are needed, else the header and its length.
    fn parse_header(&self, input: &[u8]) -> Result<Option<(Header, usize)>, Error> {
        let Some(&b0) = input.first() else {
            return Ok(None);
        };
        let fmt = b0 >> 6;
        let (csid, mut pos) = match b0 & 0x3F {
            0 => match input.get(1) {
                Some(&b) => (u32::from(b) + 64, 2),
                None => return Ok(None),
            },
            1 => match (input.get(1), input.get(2)) {
                (Some(&lo), Some(&hi)) => (u32::from(hi) * 256 + u32::from(lo) + 64, 3),
                _ => return Ok(None),
            },
            id => (u32::from(id), 1),
        };
        let header_len = [11, 7, 3, 0][fmt as usize];
        if input.len() < pos + header_len {
            return Ok(None);
        }
        let be24 = |b: &[u8]| u32::from_be_bytes([0, b[0], b[1], b[2]]);
        let h = &input[pos..pos + header_len];
        let prev = self.index_of(csid).map(|i| self.streams[i]);
        let mut header = Header {
            fmt,
            csid,
            ts_field: 0,
            length: 0,
            type_id: 0,
            stream_id: 0,
            extended: false,
        };
        if fmt < 3 {
            header.ts_field = be24(&h[0..3]);
        }
        if fmt < 2 {
            header.length = be24(&h[3..6]);
            header.type_id = h[6];
        }
        if fmt == 0 {
            header.stream_id = u32::from_le_bytes([h[7], h[8], h[9], h[10]]);
        }
        pos += header_len;
        let extended = if fmt < 3 {
            header.ts_field == 0xFF_FFFF
        } else {
            prev.is_some_and(|p| p.extended)
        };
        if extended {
            let Some(ext) = input.get(pos..pos + 4) else {
                return Ok(None);
            };
            header.ts_field = u32::from_be_bytes([ext[0], ext[1], ext[2], ext[3]]);
            header.extended = true;
            pos += 4;
        }
        if fmt > 0 && prev.is_none() {
            return Err(Error::Malformed("compressed header on a new chunk stream"));
        }
        Ok(Some((header, pos)))
    }

    /// Applies a header: updates the chunk stream, returns its index and the
    /// chunk's payload length.
    fn apply(&mut self, h: Header) -> Result<(usize, u32), Error> {
        let index = match self.index_of(h.csid) {
            Some(i) => i,
            None => {
                if self.streams.len() >= MAX_CHUNK_STREAMS {
                    return Err(Error::Malformed("too many chunk streams"));
                }
                self.streams.push(ChunkStream {
                    csid: h.csid,
                    ..ChunkStream::default()
                });
                self.bodies.push(Vec::new());
                self.streams.len() - 1
            }
        };
        let s = &mut self.streams[index];
        let continuing = s.remaining > 0;
        if continuing && h.fmt != 3 {
            return Err(Error::Malformed("new message header inside a message"));
        }
        if h.fmt < 3 {
            s.extended = h.extended;
        }
        if !continuing {
            match h.fmt {
                0 => {
                    s.timestamp = h.ts_field;
                    s.length = h.length;
                    s.type_id = h.type_id;
                    s.stream_id = h.stream_id;
                }
                1 => {
                    s.delta = h.ts_field;
                    s.timestamp = s.timestamp.wrapping_add(h.ts_field);
                    s.length = h.length;
                    s.type_id = h.type_id;
                }
                2 => {
                    s.delta = h.ts_field;
                    s.timestamp = s.timestamp.wrapping_add(h.ts_field);
                }
                _ => s.timestamp = s.timestamp.wrapping_add(s.delta),
            }
            s.remaining = s.length;
            s.received = 0;
            s.reported = false;
            if buffered(s.type_id) && s.length as usize > MAX_BUFFERED_BODY {
                return Err(Error::Malformed("control or command message too long"));
            }
            self.bodies[index].clear();
        }
        let left = self.streams[index].remaining.min(self.chunk_size);
        Ok((index, left))
    }

    /// Feeds received bytes; `on` sees media starts and whole buffered
    /// messages, in order.
    fn feed(
        &mut self,
        mut data: &[u8],
        on: &mut dyn FnMut(&mut Self, Event<'_>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        while !data.is_empty() {
            match self.state {
                ReadState::Header => {
                    let parsed = if self.carry_len > 0 {
                        let take = (MAX_HEADER - self.carry_len).min(data.len());
                        let mut buf = self.carry;
                        buf[self.carry_len..self.carry_len + take].copy_from_slice(&data[..take]);
                        match self.parse_header(&buf[..self.carry_len + take])? {
                            Some((h, n)) => {
                                data = &data[n - self.carry_len..];
                                self.carry_len = 0;
                                Some(h)
                            }
                            None => {
                                self.carry = buf;
                                self.carry_len += take;
                                data = &data[take..];
                                None
                            }
                        }
                    } else {
                        match self.parse_header(data)? {
                            Some((h, n)) => {
                                data = &data[n..];
                                Some(h)
                            }
                            None => {
                                self.carry[..data.len()].copy_from_slice(data);
                                self.carry_len = data.len();
                                data = &[];
                                None
                            }
                        }
                    };
                    if let Some(h) = parsed {
                        let (index, left) = self.apply(h)?;
                        self.state = ReadState::Payload { index, left };
                        if left == 0 {
                            // A zero-length message: nothing to read.
                            self.state = ReadState::Header;
                            self.finish_if_complete(index, on)?;
                        }
                    }
                }
                ReadState::Payload { index, left } => {
                    let n = (left as usize).min(data.len());
                    let (bytes, rest) = data.split_at(n);
                    data = rest;
                    self.payload(index, bytes, on)?;
                    let left = left - n as u32;
                    self.state = if left == 0 {
                        ReadState::Header
                    } else {
                        ReadState::Payload { index, left }
                    };
                    self.finish_if_complete(index, on)?;
                }
            }
        }
        Ok(())
    }

    fn payload(
        &mut self,
        index: usize,
        bytes: &[u8],
        on: &mut dyn FnMut(&mut Self, Event<'_>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let s = &mut self.streams[index];
        let at = s.received as usize;
        s.received += bytes.len() as u32;
        s.remaining -= bytes.len() as u32;
        match s.type_id {
            8 | 9 => {
                if at < MEDIA_HEAD {
                    let n = (MEDIA_HEAD - at).min(bytes.len());
                    s.head[at..at + n].copy_from_slice(&bytes[..n]);
                }
                let have = (s.received as usize).min(MEDIA_HEAD);
                if !s.reported && (have == MEDIA_HEAD || s.remaining == 0) {
                    s.reported = true;
                    let head = &s.head[..have];
                    let video = s.type_id == 9;
                    let (keyframe, config) = if video {
                        classify_video(head)
                    } else {
                        (false, is_audio_config(head))
                    };
                    let media = Media {
                        video,
                        timestamp: s.timestamp,
                        length: s.length,
                        keyframe,
                        config,
                    };
                    on(self, Event::Media(media))?;
                }
            }
            t if buffered(t) => self.bodies[index].extend_from_slice(bytes),
            _ => {}
        }
        Ok(())
    }

    fn finish_if_complete(
        &mut self,
        index: usize,
        on: &mut dyn FnMut(&mut Self, Event<'_>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let s = self.streams[index];
        if s.remaining != 0 || !buffered(s.type_id) {
            return Ok(());
        }
        let body = std::mem::take(&mut self.bodies[index]);
        let result = on(self, Event::Message(s.type_id, &body));
        self.bodies[index] = body;
        self.bodies[index].clear();
        result
    }
}

// ---------------------------------------------------------------------------
// the play session

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for S0 + S1 + S2.
    Handshake,
    /// Chunk stream running.
    Chunks,
}

/// One RTMP play connection's protocol state (no I/O inside).
#[derive(Debug)]
pub struct PlaySession {
    app: String,
    tc_url: String,
    stream: String,
    phase: Phase,
    /// Handshake bytes received so far (S0 S1 S2 = 1 + 2 × 1536).
    handshake_got: usize,
    /// S1, echoed as C2.
    s1: Vec<u8>,
    reader: ChunkReader,
    /// Bytes received after the handshake, for acknowledgements.
    received: u64,
    /// The server's acknowledgement window (0: none announced).
    ack_window: u32,
    last_ack: u64,
    stream_id: Option<u32>,
}

impl PlaySession {
    /// A session that will play `rtmp://{host}/{app}/{stream}`.
    pub fn new(host_port: &str, app: &str, stream: &str) -> Self {
        Self {
            app: app.to_string(),
            tc_url: format!("rtmp://{host_port}/{app}"),
            stream: stream.to_string(),
            phase: Phase::Handshake,
            handshake_got: 0,
            s1: Vec::with_capacity(HANDSHAKE_SIZE),
            reader: ChunkReader::new(),
            received: 0,
            ack_window: 0,
            last_ack: 0,
            stream_id: None,
        }
    }

    /// C0 + C1: version 3, time 0, zero, then filler. A zero version field
    /// selects the plain handshake (no digest) on every server.
    pub fn start(&self, out: &mut Vec<u8>) {
        out.push(3);
        let at = out.len();
        out.resize(at + HANDSHAKE_SIZE, 0);
        // Filler that is not all zeros; servers echo it back in S2.
        for (i, b) in out[at + 8..].iter_mut().enumerate() {
            *b = (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0];
        }
    }

    /// The message stream id `play` was sent on, once known.
    pub fn stream_id(&self) -> Option<u32> {
        self.stream_id
    }

    /// Consumes received bytes. Media starts go to `on_media`, other news to
    /// `on_notice`; bytes to send are appended to `out`.
    pub fn feed(
        &mut self,
        mut data: &[u8],
        out: &mut Vec<u8>,
        on_media: &mut dyn FnMut(Media),
        on_notice: &mut dyn FnMut(Notice),
    ) -> Result<(), Error> {
        if self.phase == Phase::Handshake {
            let total = 1 + 2 * HANDSHAKE_SIZE;
            let start = self.handshake_got;
            let n = (total - start).min(data.len());
            let bytes = &data[..n];
            data = &data[n..];
            if start == 0 && n > 0 && bytes[0] != 3 {
                return Err(Error::Version(bytes[0]));
            }
            // S1 is bytes 1..=1536 of the server's handshake.
            let s1_from = start.max(1);
            let s1_to = (1 + HANDSHAKE_SIZE).min(start + n);
            if s1_from < s1_to {
                self.s1
                    .extend_from_slice(&bytes[s1_from - start..s1_to - start]);
            }
            self.handshake_got += n;
            if self.handshake_got == 1 + 2 * HANDSHAKE_SIZE {
                self.phase = Phase::Chunks;
                out.extend_from_slice(&self.s1);
                self.s1 = Vec::new();
                self.send_connect(out);
            }
            if data.is_empty() {
                return Ok(());
            }
        }
        self.received += data.len() as u64;
        let mut reader = std::mem::replace(&mut self.reader, ChunkReader::new());
        let result = reader.feed(data, &mut |reader, event| match event {
            Event::Media(m) => {
                on_media(m);
                Ok(())
            }
            Event::Message(type_id, body) => self.on_message(reader, type_id, body, out, on_notice),
        });
        self.reader = reader;
        result?;
        if self.ack_window > 0 && self.received - self.last_ack >= u64::from(self.ack_window) {
            self.last_ack = self.received;
            let body = (self.received as u32).to_be_bytes();
            write_message(
                out,
                CSID_CONTROL,
                0,
                3,
                0,
                &body,
                DEFAULT_CHUNK_SIZE as usize,
            );
        }
        Ok(())
    }

    fn send_connect(&self, out: &mut Vec<u8>) {
        let s = |v: &str| Amf::Str(v.to_string());
        let props = vec![
            ("app".to_string(), s(&self.app)),
            ("flashVer".to_string(), s("LNX 9,0,124,2")),
            ("tcUrl".to_string(), s(&self.tc_url)),
            ("fpad".to_string(), Amf::Bool(false)),
            ("capabilities".to_string(), Amf::Number(15.0)),
            ("audioCodecs".to_string(), Amf::Number(4071.0)),
            ("videoCodecs".to_string(), Amf::Number(252.0)),
            ("videoFunction".to_string(), Amf::Number(1.0)),
        ];
        command(
            out,
            CSID_COMMAND,
            0,
            &[s("connect"), Amf::Number(TXN_CONNECT), Amf::Object(props)],
        );
        command(
            out,
            CSID_COMMAND,
            0,
            &[s("createStream"), Amf::Number(TXN_CREATE_STREAM), Amf::Null],
        );
    }

    fn send_play(&mut self, stream_id: u32, out: &mut Vec<u8>) {
        // Start -1000 (live, as ffmpeg sends it), then Set Buffer Length 3 s.
        command(
            out,
            CSID_STREAM_COMMAND,
            stream_id,
            &[
                Amf::Str("play".into()),
                Amf::Number(0.0),
                Amf::Null,
                Amf::Str(self.stream.clone()),
                Amf::Number(-1000.0),
            ],
        );
        let mut body = vec![0, 3];
        body.extend_from_slice(&stream_id.to_be_bytes());
        body.extend_from_slice(&3000u32.to_be_bytes());
        write_message(
            out,
            CSID_CONTROL,
            0,
            4,
            0,
            &body,
            DEFAULT_CHUNK_SIZE as usize,
        );
    }

    fn on_message(
        &mut self,
        reader: &mut ChunkReader,
        type_id: u8,
        body: &[u8],
        out: &mut Vec<u8>,
        on_notice: &mut dyn FnMut(Notice),
    ) -> Result<(), Error> {
        let be32 = |b: &[u8]| {
            b.get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        match type_id {
            1 => {
                let size =
                    be32(body).ok_or(Error::Malformed("short Set Chunk Size"))? & 0x7FFF_FFFF;
                if size == 0 {
                    return Err(Error::Malformed("chunk size 0"));
                }
                reader.chunk_size = size;
            }
            4 => {
                let event = body.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
                match event {
                    // Stream EOF
                    Some(1) => on_notice(Notice::StreamEnd),
                    // Ping request: answer with the same timestamp.
                    Some(6) => {
                        let mut resp = vec![0, 7];
                        resp.extend_from_slice(body.get(2..6).unwrap_or(&[0; 4]));
                        write_message(
                            out,
                            CSID_CONTROL,
                            0,
                            4,
                            0,
                            &resp,
                            DEFAULT_CHUNK_SIZE as usize,
                        );
                    }
                    _ => {}
                }
            }
            5 => self.ack_window = be32(body).unwrap_or(0),
            17 | 20 => {
                let body = if type_id == 17 {
                    body.get(1..).unwrap_or(&[])
                } else {
                    body
                };
                self.on_command(&amf_read_all(body), out, on_notice)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn on_command(
        &mut self,
        values: &[Amf],
        out: &mut Vec<u8>,
        on_notice: &mut dyn FnMut(Notice),
    ) -> Result<(), Error> {
        let name = values.first().and_then(Amf::as_str).unwrap_or("");
        let txn = values.get(1).and_then(Amf::as_f64).unwrap_or(0.0);
        match name {
            "_result" if txn == TXN_CREATE_STREAM && self.stream_id.is_none() => {
                let id = values
                    .get(3)
                    .and_then(Amf::as_f64)
                    .ok_or(Error::Malformed("createStream result without a stream id"))?;
                let id = id as u32;
                self.stream_id = Some(id);
                self.send_play(id, out);
                on_notice(Notice::Playing { stream_id: id });
            }
            "_error" => {
                let what = if txn == TXN_CONNECT {
                    "connect"
                } else if txn == TXN_CREATE_STREAM {
                    "createStream"
                } else {
                    "command"
                };
                let detail = values
                    .get(3)
                    .and_then(|info| info.get("code").or(info.get("description")))
                    .and_then(Amf::as_str)
                    .unwrap_or("");
                return Err(Error::Refused(format!("{what} failed {detail}")));
            }
            "onStatus" => {
                let info = values.get(3);
                let code = info
                    .and_then(|i| i.get("code"))
                    .and_then(Amf::as_str)
                    .unwrap_or("")
                    .to_string();
                let level = info.and_then(|i| i.get("level")).and_then(Amf::as_str);
                if level == Some("error") {
                    return Err(Error::Refused(code));
                }
                let end = matches!(
                    code.as_str(),
                    "NetStream.Play.Stop" | "NetStream.Play.UnpublishNotify"
                );
                on_notice(Notice::Status(code));
                if end {
                    on_notice(Notice::StreamEnd);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted server side: handshake, then control messages, command
    /// results and media, chunked at `chunk_size`.
    fn server_script(chunk_size: usize) -> (Vec<u8>, Vec<Media>) {
        let mut s = vec![3];
        s.extend((0..HANDSHAKE_SIZE).map(|i| (i * 7) as u8));
        s.extend((0..HANDSHAKE_SIZE).map(|i| (i * 3) as u8));
        let cs = DEFAULT_CHUNK_SIZE as usize;
        write_message(&mut s, 2, 0, 5, 0, &5_000_000u32.to_be_bytes(), cs);
        write_message(&mut s, 2, 0, 1, 0, &(chunk_size as u32).to_be_bytes(), cs);
        let mut body = Vec::new();
        for v in [
            Amf::Str("_result".into()),
            Amf::Number(1.0),
            Amf::Object(vec![("fmsVer".into(), Amf::Str("FMS/3,0,1,123".into()))]),
            Amf::Object(vec![
                ("level".into(), Amf::Str("status".into())),
                (
                    "code".into(),
                    Amf::Str("NetConnection.Connect.Success".into()),
                ),
            ]),
        ] {
            amf_write(&mut body, &v);
        }
        write_message(&mut s, 3, 0, 20, 0, &body, chunk_size);
        let mut body = Vec::new();
        for v in [
            Amf::Str("_result".into()),
            Amf::Number(2.0),
            Amf::Null,
            Amf::Number(1.0),
        ] {
            amf_write(&mut body, &v);
        }
        write_message(&mut s, 3, 0, 20, 0, &body, chunk_size);
        // Ping request.
        write_message(&mut s, 2, 0, 4, 0, &[0, 6, 0, 0, 1, 2], chunk_size);
        let mut body = Vec::new();
        for v in [
            Amf::Str("onStatus".into()),
            Amf::Number(0.0),
            Amf::Null,
            Amf::Object(vec![
                ("level".into(), Amf::Str("status".into())),
                ("code".into(), Amf::Str("NetStream.Play.Start".into())),
            ]),
        ] {
            amf_write(&mut body, &v);
        }
        write_message(&mut s, 5, 0, 20, 1, &body, chunk_size);
        let mut expected = Vec::new();
        let media = |expected: &mut Vec<Media>,
                     s: &mut Vec<u8>,
                     csid: u8,
                     ts: u32,
                     video: bool,
                     body: &[u8]| {
            write_message(s, csid, ts, if video { 9 } else { 8 }, 1, body, chunk_size);
            let (keyframe, config) = if video {
                classify_video(body)
            } else {
                (false, is_audio_config(body))
            };
            expected.push(Media {
                video,
                timestamp: ts,
                length: body.len() as u32,
                keyframe,
                config,
            });
        };
        media(
            &mut expected,
            &mut s,
            6,
            0,
            true,
            &[0x17, 0, 0, 0, 0, 1, 0x64],
        );
        media(&mut expected, &mut s, 4, 0, false, &[0xAF, 0, 0x11, 0x90]);
        let key: Vec<u8> = [0x17, 1, 0, 0, 0]
            .into_iter()
            .chain((0..10_000).map(|i| i as u8))
            .collect();
        media(&mut expected, &mut s, 6, 40, true, &key);
        media(
            &mut expected,
            &mut s,
            4,
            21,
            false,
            &[0xAF, 1, 9, 9, 9, 9, 9],
        );
        media(
            &mut expected,
            &mut s,
            6,
            73,
            true,
            &[0x27, 1, 0, 0, 0, 5, 5],
        );
        // A type-1 header (delta timestamp) on the audio chunk stream.
        let mut one = vec![0x40 | 4];
        one.extend_from_slice(&23u32.to_be_bytes()[1..]);
        one.extend_from_slice(&3u32.to_be_bytes()[1..]);
        one.push(8);
        one.extend_from_slice(&[0xAF, 1, 7]);
        s.extend_from_slice(&one);
        expected.push(Media {
            video: false,
            timestamp: 44,
            length: 3,
            keyframe: false,
            config: false,
        });
        // Extended timestamp, over several chunks.
        let big: Vec<u8> = [0x17, 1]
            .into_iter()
            .chain((0..600).map(|i| i as u8))
            .collect();
        media(&mut expected, &mut s, 6, 0x0100_0000, true, &big);
        // Enhanced RTMP: hvc1 sequence start, then coded frames keyframe.
        media(
            &mut expected,
            &mut s,
            6,
            0x0100_0010,
            true,
            &[0x90, b'h', b'v', b'c', b'1', 1],
        );
        media(
            &mut expected,
            &mut s,
            6,
            0x0100_0020,
            true,
            &[0x91, b'h', b'v', b'c', b'1', 1],
        );
        // Stream EOF.
        write_message(&mut s, 2, 0, 4, 0, &[0, 1, 0, 0, 0, 1], chunk_size);
        (s, expected)
    }

    fn run(
        script: &[u8],
        splits: &mut dyn Iterator<Item = usize>,
    ) -> (Vec<Media>, Vec<Notice>, Vec<u8>) {
        let mut session = PlaySession::new("127.0.0.1:1935", "live", "bench");
        let mut out = Vec::new();
        session.start(&mut out);
        assert_eq!(out.len(), 1 + HANDSHAKE_SIZE);
        out.clear();
        let mut media = Vec::new();
        let mut notices = Vec::new();
        let mut rest = script;
        while !rest.is_empty() {
            let n = splits.next().unwrap_or(rest.len()).clamp(1, rest.len());
            let (now, later) = rest.split_at(n);
            rest = later;
            session
                .feed(now, &mut out, &mut |m| media.push(m), &mut |n| {
                    notices.push(n)
                })
                .expect("valid script");
        }
        (media, notices, out)
    }

    #[test]
    fn whole_script_in_one_piece_and_byte_by_byte() {
        for chunk_size in [128, 4096, 60] {
            let (script, expected) = server_script(chunk_size);
            let (media, notices, out) = run(&script, &mut std::iter::empty());
            assert_eq!(media, expected, "chunk size {chunk_size}");
            assert_eq!(
                notices,
                vec![
                    Notice::Playing { stream_id: 1 },
                    Notice::Status("NetStream.Play.Start".into()),
                    Notice::StreamEnd
                ]
            );
            // C2 echoes S1, then connect, createStream, play, buffer length, pong.
            assert_eq!(out[..HANDSHAKE_SIZE], script[1..1 + HANDSHAKE_SIZE]);
            let (media1, notices1, out1) = run(&script, &mut std::iter::repeat(1));
            assert_eq!(media1, expected);
            assert_eq!(notices1, notices);
            assert_eq!(out1, out);
            // Irregular splits.
            let mut sizes = [7usize, 1, 300, 2, 13, 5000, 3, 17].into_iter().cycle();
            let (media2, _, out2) = run(&script, &mut sizes);
            assert_eq!(media2, expected);
            assert_eq!(out2, out);
        }
    }

    #[test]
    fn keyframes_and_configs_are_told_apart() {
        let (_, expected) = server_script(4096);
        let kinds: Vec<(bool, bool, bool)> = expected
            .iter()
            .map(|m| (m.video, m.keyframe, m.config))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (true, false, true),
                (false, false, true),
                (true, true, false),
                (false, false, false),
                (true, false, false),
                (false, false, false),
                (true, true, false),
                (true, false, true),
                (true, true, false),
            ]
        );
    }

    #[test]
    fn command_replies_follow_the_script() {
        let (script, _) = server_script(4096);
        let (_, _, out) = run(&script, &mut std::iter::empty());
        let mut reader = ChunkReader::new();
        let mut commands = Vec::new();
        let mut controls = Vec::new();
        reader
            .feed(&out[HANDSHAKE_SIZE..], &mut |_, e| {
                if let Event::Message(t, body) = e {
                    if t == 20 {
                        commands.push(amf_read_all(body));
                    } else {
                        controls.push((t, body.to_vec()));
                    }
                }
                Ok(())
            })
            .expect("our own output parses");
        let names: Vec<&str> = commands
            .iter()
            .filter_map(|c| c.first().and_then(Amf::as_str))
            .collect();
        assert_eq!(names, ["connect", "createStream", "play"]);
        assert_eq!(commands[0][2].get("app"), Some(&Amf::Str("live".into())));
        assert_eq!(
            commands[0][2].get("tcUrl"),
            Some(&Amf::Str("rtmp://127.0.0.1:1935/live".into()))
        );
        assert_eq!(commands[2][3], Amf::Str("bench".into()));
        assert_eq!(
            controls,
            vec![
                (4, vec![0, 3, 0, 0, 0, 1, 0, 0, 0x0B, 0xB8]),
                (4, vec![0, 7, 0, 0, 1, 2]),
            ]
        );
    }

    #[test]
    fn acknowledgements_follow_the_window() {
        let mut session = PlaySession::new("h:1", "live", "s");
        let mut out = Vec::new();
        let mut hs = vec![3];
        hs.resize(1 + 2 * HANDSHAKE_SIZE, 0);
        session
            .feed(&hs, &mut out, &mut |_| {}, &mut |_| {})
            .expect("handshake");
        out.clear();
        let mut s = Vec::new();
        write_message(&mut s, 2, 0, 5, 0, &1000u32.to_be_bytes(), 128);
        write_message(&mut s, 2, 0, 1, 0, &4096u32.to_be_bytes(), 128);
        write_message(&mut s, 6, 0, 9, 1, &[0x27, 1, 0, 0, 0].repeat(300), 4096);
        session
            .feed(&s, &mut out, &mut |_| {}, &mut |_| {})
            .expect("valid");
        // One acknowledgement: type 3 on chunk stream 2 with the byte count.
        assert_eq!(out[..8], [2, 0, 0, 0, 0, 0, 4, 3]);
        assert_eq!(out[12..16], (s.len() as u32).to_be_bytes());
        assert_eq!(out.len(), 16);
    }

    #[test]
    fn refusals_and_garbage_are_errors() {
        let mut session = PlaySession::new("h:1", "live", "s");
        let mut out = Vec::new();
        assert_eq!(
            session.feed(&[6], &mut out, &mut |_| {}, &mut |_| {}),
            Err(Error::Version(6))
        );
        let mut session = PlaySession::new("h:1", "live", "s");
        let mut hs = vec![3];
        hs.resize(1 + 2 * HANDSHAKE_SIZE, 0);
        let mut body = Vec::new();
        for v in [
            Amf::Str("onStatus".into()),
            Amf::Number(0.0),
            Amf::Null,
            Amf::Object(vec![
                ("level".into(), Amf::Str("error".into())),
                (
                    "code".into(),
                    Amf::Str("NetStream.Play.StreamNotFound".into()),
                ),
            ]),
        ] {
            amf_write(&mut body, &v);
        }
        write_message(&mut hs, 5, 0, 20, 1, &body, 128);
        assert_eq!(
            session.feed(&hs, &mut out, &mut |_| {}, &mut |_| {}),
            Err(Error::Refused("NetStream.Play.StreamNotFound".into()))
        );
        let mut session = PlaySession::new("h:1", "live", "s");
        let mut hs = vec![3];
        hs.resize(1 + 2 * HANDSHAKE_SIZE, 0);
        hs.push(0x45); // type-1 header on a chunk stream never seen
        hs.extend_from_slice(&[0; 7]);
        assert!(matches!(
            session.feed(&hs, &mut out, &mut |_| {}, &mut |_| {}),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn amf_round_trip() {
        let v = Amf::Object(vec![
            ("a".into(), Amf::Number(1.5)),
            ("b".into(), Amf::Array(vec![Amf::Bool(true), Amf::Null])),
            ("c".into(), Amf::Str("x".into())),
        ]);
        let mut buf = Vec::new();
        amf_write(&mut buf, &v);
        amf_write(&mut buf, &Amf::Undefined);
        assert_eq!(amf_read_all(&buf), vec![v, Amf::Undefined]);
    }
}
