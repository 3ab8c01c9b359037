//! RTMP chunk streams: a bounded reader for what peers send, and the builder
//! of full-header (type 0) chunks for what is shared between viewers.
//!
//! The reader replaces `rml_rtmp`'s `ChunkDeserializer` on the input path:
//! that one keeps a single partial-message buffer for all chunk streams (so
//! chunks of two messages interleaved on two chunk streams corrupt each other
//! and can underflow its length arithmetic) and trusts announced lengths. This
//! one keeps a partial message per chunk stream, bounds the message length,
//! the number of chunk streams and the bytes held, and never panics on input.

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{Error, Result};

/// Chunk stream used for the video messages this crate builds itself.
///
/// `rml_rtmp`'s serializer (kept for commands and control) uses chunk
/// streams 2 to 6 and compresses headers on them; the chunks built here
/// use full headers on their own chunk streams, so neither disturbs the other.
pub const CSID_VIDEO: u32 = 7;
/// Chunk stream of the audio messages this crate builds.
pub const CSID_AUDIO: u32 = 8;
/// Chunk stream of the data messages (`onMetaData`) this crate builds.
pub const CSID_DATA: u32 = 9;

/// Largest message length a chunk header can carry (24 bits).
pub const MAX_RTMP_MESSAGE: usize = 0x00ff_ffff;

/// Most chunk streams a peer may use at once.
const MAX_CHUNK_STREAMS: usize = 64;

/// Largest chunk size a peer may announce (messages cannot be longer anyway).
const MAX_PEER_CHUNK_SIZE: u32 = 0x00ff_ffff;

const EXTENDED: u32 = 0x00ff_ffff;

/// One complete message as the peer sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The chunk stream it arrived on.
    pub csid: u32,
    /// Message timestamp, milliseconds (32 bits, wrapping).
    pub timestamp: u32,
    /// Message type id (8 audio, 9 video, 20 AMF0 command, …).
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
    /// The message body.
    pub payload: Bytes,
}

/// The header state of a chunk stream (what later headers may omit).
#[derive(Clone, Copy, Debug, Default)]
struct Header {
    timestamp: u32,
    /// The last timestamp field or delta, reused by type 3 headers.
    delta: u32,
    extended: bool,
    length: usize,
    type_id: u8,
    stream_id: u32,
}

#[derive(Debug, Default)]
struct ChunkStream {
    header: Header,
    /// The message being assembled on this chunk stream.
    partial: Option<BytesMut>,
}

/// Turns the bytes of an RTMP chunk stream into [`Message`]s.
///
/// Feed bytes with [`push`](Self::push), then call
/// [`next_message`](Self::next_message) until it returns `None`, applying a
/// Set Chunk Size message (with [`set_chunk_size`](Self::set_chunk_size))
/// before asking for the next one.
#[derive(Debug)]
pub struct ChunkReader {
    buf: BytesMut,
    chunk_size: usize,
    max_message: usize,
    streams: HashMap<u32, ChunkStream>,
    /// Bytes held in partial messages across all chunk streams.
    partial_bytes: usize,
}

impl ChunkReader {
    /// A reader for a fresh connection (chunk size 128), refusing messages
    /// longer than `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        ChunkReader {
            buf: BytesMut::new(),
            chunk_size: 128,
            max_message: max_message.clamp(1, MAX_RTMP_MESSAGE),
            streams: HashMap::new(),
            partial_bytes: 0,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not yet part of a returned message.
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.partial_bytes
    }

    /// Applies the peer's Set Chunk Size.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<()> {
        if size == 0 || size > 0x7fff_ffff {
            return Err(Error::chunk(format!("invalid chunk size {size}")));
        }
        self.chunk_size = size.min(MAX_PEER_CHUNK_SIZE) as usize;
        Ok(())
    }

    /// Drops the partial message of a chunk stream (an Abort message).
    pub fn abort(&mut self, csid: u32) {
        if let Some(cs) = self.streams.get_mut(&csid)
            && let Some(p) = cs.partial.take()
        {
            self.partial_bytes -= p.len();
        }
    }

    /// The next complete message, if the bytes pushed so far hold one.
    pub fn next_message(&mut self) -> Result<Option<Message>> {
        loop {
            match self.next_chunk()? {
                Step::NeedMore => return Ok(None),
                Step::Continue => {}
                Step::Message(m) => return Ok(Some(m)),
            }
        }
    }

    fn next_chunk(&mut self) -> Result<Step> {
        let b = &self.buf[..];
        let Some(&first) = b.first() else {
            return Ok(Step::NeedMore);
        };
        let fmt = first >> 6;
        let (csid, mut pos) = match first & 0x3f {
            0 => match b.get(1) {
                Some(&x) => (64 + u32::from(x), 2),
                None => return Ok(Step::NeedMore),
            },
            1 => match (b.get(1), b.get(2)) {
                (Some(&lo), Some(&hi)) => (64 + u32::from(lo) + 256 * u32::from(hi), 3),
                _ => return Ok(Step::NeedMore),
            },
            x => (u32::from(x), 1),
        };
        let known = self.streams.contains_key(&csid);
        if !known && self.streams.len() >= MAX_CHUNK_STREAMS {
            return Err(Error::chunk(format!(
                "more than {MAX_CHUNK_STREAMS} chunk streams"
            )));
        }
        let (mut cs, have) = match self.streams.get(&csid) {
            Some(s) => (s.header, s.partial.as_ref().map(BytesMut::len)),
            None => (Header::default(), None),
        };
        if fmt != 0 && !known {
            return Err(Error::chunk(format!(
                "type {fmt} chunk header on chunk stream {csid} with no previous header"
            )));
        }
        let header_len = match fmt {
            0 => 11,
            1 => 7,
            2 => 3,
            _ => 0,
        };
        let Some(header) = b.get(pos..pos + header_len) else {
            return Ok(Step::NeedMore);
        };
        let starts_message = have.is_none();
        if !starts_message && fmt != 3 {
            return Err(Error::chunk(format!(
                "new message header on chunk stream {csid} while a message is incomplete"
            )));
        }
        // The header in a fixed array: the fields below are read at
        // constant offsets, those past `header_len` as zeros.
        let mut h = [0u8; 11];
        for (d, s) in h.iter_mut().zip(header) {
            *d = *s;
        }
        let field = if fmt < 3 {
            u32::from_be_bytes([0, h[0], h[1], h[2]])
        } else {
            0
        };
        if fmt <= 1 {
            cs.length = u32::from_be_bytes([0, h[3], h[4], h[5]]) as usize;
            cs.type_id = h[6];
        }
        if fmt == 0 {
            cs.stream_id = u32::from_le_bytes([h[7], h[8], h[9], h[10]]);
        }
        pos += header_len;
        let extended = if fmt < 3 {
            field == EXTENDED
        } else {
            cs.extended
        };
        let mut ext_value = 0;
        if extended {
            let Some(&e) = b.get(pos..).and_then(|r| r.first_chunk::<4>()) else {
                return Ok(Step::NeedMore);
            };
            ext_value = u32::from_be_bytes(e);
            pos += 4;
        }
        if fmt < 3 {
            cs.extended = extended;
            let value = if extended { ext_value } else { field };
            if fmt == 0 {
                cs.timestamp = value;
            } else {
                cs.timestamp = cs.timestamp.wrapping_add(value);
            }
            cs.delta = value;
        } else if starts_message {
            // A type 3 header starting a new message repeats the last delta.
            let delta = if extended { ext_value } else { cs.delta };
            cs.timestamp = cs.timestamp.wrapping_add(delta);
        }
        if cs.length > self.max_message {
            return Err(Error::MessageTooLong {
                ctx: Default::default(),
                len: cs.length,
                max: self.max_message,
            });
        }
        let have = have.unwrap_or(0);
        let want = (cs.length - have).min(self.chunk_size);
        if b.len() < pos + want {
            return Ok(Step::NeedMore);
        }
        // The whole chunk is here: consume it.
        self.buf.advance(pos);
        let body = self.buf.split_to(want);
        let stream = self.streams.entry(csid).or_default();
        stream.header = cs;
        let payload = if starts_message && want == cs.length {
            // Fits in one chunk: no copy.
            Some(body.freeze())
        } else {
            let partial = stream.partial.get_or_insert_with(BytesMut::new);
            partial.extend_from_slice(&body);
            self.partial_bytes += body.len();
            if partial.len() == cs.length {
                let done = stream.partial.take().unwrap_or_default();
                self.partial_bytes -= done.len();
                Some(done.freeze())
            } else if self.partial_bytes > self.max_message.saturating_mul(2) {
                return Err(Error::chunk(format!(
                    "more than {} bytes held in incomplete messages",
                    self.max_message.saturating_mul(2)
                )));
            } else {
                None
            }
        };
        Ok(match payload {
            Some(payload) => Step::Message(Message {
                csid,
                timestamp: cs.timestamp,
                type_id: cs.type_id,
                stream_id: cs.stream_id,
                payload,
            }),
            None => Step::Continue,
        })
    }
}

enum Step {
    NeedMore,
    Continue,
    Message(Message),
}

/// Where and when a built message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageHeader {
    /// Chunk stream id, 2 to 63.
    pub csid: u32,
    /// Message type id.
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
    /// Timestamp, milliseconds.
    pub timestamp: u32,
}

/// Appends one message as RTMP chunks with a full (type 0) header and type 3
/// continuation headers, the body being `prefix` followed by `payload`.
///
/// Returns `false` (and appends nothing) if the body is longer than a message
/// can be or the chunk stream id is outside 2 to 63.
pub fn write_message(
    out: &mut BytesMut,
    header: MessageHeader,
    prefix: &[u8],
    payload: &[u8],
    chunk_size: usize,
) -> bool {
    let MessageHeader {
        csid,
        type_id,
        stream_id,
        timestamp,
    } = header;
    if !(2..64).contains(&csid) {
        return false;
    }
    let len = prefix.len() + payload.len();
    if len > MAX_RTMP_MESSAGE {
        return false;
    }
    let chunk_size = chunk_size.max(1);
    let extended = timestamp >= EXTENDED;
    let chunks = len.div_ceil(chunk_size).max(1);
    let ext_len = if extended { 4 } else { 0 };
    out.reserve(len + 12 + ext_len + (chunks - 1) * (1 + ext_len));
    out.put_u8(csid as u8);
    let field = if extended { EXTENDED } else { timestamp };
    out.put_slice(&field.to_be_bytes()[1..]);
    out.put_slice(&(len as u32).to_be_bytes()[1..]);
    out.put_u8(type_id);
    out.put_u32_le(stream_id);
    if extended {
        out.put_u32(timestamp);
    }
    let mut written = 0;
    let mut parts = [prefix, payload];
    while written < len {
        if written > 0 {
            out.put_u8(0xc0 | csid as u8);
            if extended {
                out.put_u32(timestamp);
            }
        }
        let mut room = chunk_size;
        for part in parts.iter_mut() {
            let n = part.len().min(room);
            if let Some((head, rest)) = part.split_at_checked(n) {
                out.put_slice(head);
                *part = rest;
                room -= n;
            }
        }
        written += chunk_size.min(len - written);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::chunk_io::{ChunkDeserializer, ChunkSerializer};
    use rml_rtmp::messages::MessagePayload;
    use rml_rtmp::time::RtmpTimestamp;

    fn build(ts: u32, body_len: usize, chunk_size: usize) -> (Vec<u8>, BytesMut) {
        let body: Vec<u8> = (0..body_len).map(|i| (i % 251) as u8).collect();
        let mut out = BytesMut::new();
        assert!(write_message(
            &mut out,
            MessageHeader {
                csid: CSID_VIDEO,
                type_id: 9,
                stream_id: 1,
                timestamp: ts
            },
            &body[..5.min(body_len)],
            &body[5.min(body_len)..],
            chunk_size
        ));
        (body, out)
    }

    #[test]
    fn built_chunks_parse_back_with_rml_rtmps_deserializer() {
        for (ts, len, cs) in [
            (0u32, 1usize, 128usize),
            (40, 128, 128),
            (40, 129, 128),
            (1_000, 10_000, 4096),
            (0x00ff_fffe, 300, 128),
            (0x00ff_ffff, 300, 128),
            (0xfff0_0000, 9_000, 4096),
        ] {
            let (body, bytes) = build(ts, len, cs);
            let mut de = ChunkDeserializer::new();
            de.set_max_chunk_size(cs).expect("chunk size");
            let msg = de
                .get_next_message(&bytes)
                .expect("deserialize")
                .expect("one message");
            assert_eq!(msg.timestamp.value, ts, "ts {ts} len {len}");
            assert_eq!(msg.type_id, 9);
            assert_eq!(msg.message_stream_id, 1);
            assert_eq!(&msg.data[..], &body[..]);
            assert_eq!(de.get_next_message(&[]).expect("more"), None);
            // And with our own reader.
            let mut r = ChunkReader::new(MAX_RTMP_MESSAGE);
            r.set_chunk_size(cs as u32).expect("size");
            r.push(&bytes);
            let m = r.next_message().expect("ok").expect("message");
            assert_eq!((m.timestamp, &m.payload[..]), (ts, &body[..]));
        }
    }

    #[test]
    fn reads_what_rml_rtmps_serializer_writes_including_compressed_headers() {
        let mut ser = ChunkSerializer::new();
        let mut bytes = Vec::new();
        let mut expected = Vec::new();
        for i in 0..20u32 {
            let len = 50 + (i as usize * 37) % 400;
            let payload = MessagePayload {
                timestamp: RtmpTimestamp::new(i * 33),
                message_stream_id: 1,
                type_id: if i % 3 == 0 { 8 } else { 9 },
                data: Bytes::from(vec![i as u8; len]),
            };
            bytes.extend(ser.serialize(&payload, false, false).expect("ser").bytes);
            expected.push(payload);
        }
        let mut r = ChunkReader::new(1 << 20);
        // Byte by byte: every split point must work.
        let mut got = Vec::new();
        for b in &bytes {
            r.push(std::slice::from_ref(b));
            while let Some(m) = r.next_message().expect("parse") {
                got.push(m);
            }
        }
        assert_eq!(got.len(), expected.len());
        for (m, e) in got.iter().zip(&expected) {
            assert_eq!(m.timestamp, e.timestamp.value);
            assert_eq!(m.type_id, e.type_id);
            assert_eq!(m.payload, e.data);
        }
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn extended_timestamps_from_rml_rtmps_serializer() {
        let mut ser = ChunkSerializer::new();
        let mut bytes = Vec::new();
        let stamps = [
            0x00ff_fff0u32,
            0x0100_0011,
            0x0100_0032,
            0xffff_fff0,
            0x0000_0010,
        ];
        for (i, ts) in stamps.iter().enumerate() {
            let payload = MessagePayload {
                timestamp: RtmpTimestamp::new(*ts),
                message_stream_id: 1,
                type_id: 9,
                data: Bytes::from(vec![i as u8; 300]),
            };
            bytes.extend(ser.serialize(&payload, false, false).expect("ser").bytes);
        }
        let mut r = ChunkReader::new(1 << 20);
        r.push(&bytes);
        let got: Vec<u32> = std::iter::from_fn(|| r.next_message().expect("parse"))
            .map(|m| m.timestamp)
            .collect();
        assert_eq!(got, stamps);
    }

    #[test]
    fn interleaved_chunk_streams_are_assembled_separately() {
        let mut a = BytesMut::new();
        let mut b = BytesMut::new();
        write_message(
            &mut a,
            MessageHeader {
                csid: 7,
                type_id: 9,
                stream_id: 1,
                timestamp: 10,
            },
            &[],
            &[1u8; 300],
            128,
        );
        write_message(
            &mut b,
            MessageHeader {
                csid: 8,
                type_id: 8,
                stream_id: 1,
                timestamp: 20,
            },
            &[],
            &[2u8; 200],
            128,
        );
        // a: 12+128, 1+128, 1+44 ; b: 12+128, 1+72
        let mut wire = Vec::new();
        wire.extend_from_slice(&a[..140]);
        wire.extend_from_slice(&b[..140]);
        wire.extend_from_slice(&a[140..269]);
        wire.extend_from_slice(&b[140..]);
        wire.extend_from_slice(&a[269..]);
        let mut r = ChunkReader::new(1 << 20);
        r.push(&wire);
        let m1 = r.next_message().expect("ok").expect("b");
        let m2 = r.next_message().expect("ok").expect("a");
        assert_eq!((m1.csid, m1.payload.len(), m1.timestamp), (8, 200, 20));
        assert_eq!((m2.csid, m2.payload.len(), m2.timestamp), (7, 300, 10));
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut r = ChunkReader::new(1000);
        r.push(&[0x43, 0, 0, 0]); // type 1 on an unseen chunk stream
        assert!(r.next_message().is_err());

        let mut r = ChunkReader::new(1000);
        let mut big = BytesMut::new();
        write_message(
            &mut big,
            MessageHeader {
                csid: 5,
                type_id: 9,
                stream_id: 1,
                timestamp: 0,
            },
            &[],
            &[0u8; 2000],
            4096,
        );
        r.push(&big[..12]);
        assert!(matches!(
            r.next_message(),
            Err(Error::MessageTooLong { len: 2000, .. })
        ));

        let mut r = ChunkReader::new(1000);
        assert!(r.set_chunk_size(0).is_err());
        assert!(r.set_chunk_size(0x8000_0000).is_err());
    }
}
