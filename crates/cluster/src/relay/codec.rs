//! The relay's wire format, sans-IO: messages to and from bytes, with a
//! bounded body and no panic on any input.
//!
//! Every message is a 1-byte type, a 4-byte big-endian body length and the
//! body. Integers are big-endian; a string is a 2-byte length and UTF-8.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tidewater_core::time::TimestampWrap;
use tidewater_core::{
    AudioParams, Codec, EndReason, Frame, FrameFlags, TrackId, TrackInfo, VideoParams,
};
use tokio_util::codec::{Decoder, Encoder};

use super::{MAGIC, MAX_BODY, VERSION};
use crate::error::Error;

/// Type byte, body length.
const HEADER: usize = 5;

const T_HELLO: u8 = 1;
const T_ACCEPTED: u8 = 2;
const T_REFUSED: u8 = 3;
const T_CATALOG: u8 = 4;
const T_FRAME: u8 = 5;
const T_DISCONTINUITY: u8 = 6;
const T_END: u8 = 7;
const T_PING: u8 = 8;

/// Why an origin refused a pull.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefuseCode {
    /// The token is not the cluster's.
    Unauthorized,
    /// The stream is not live on this node.
    NotFound,
    /// Anything else (a malformed request, a limit).
    Other,
}

/// One relay message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Edge → origin, first: who asks for which stream, with the cluster token.
    Hello {
        /// The relay version the edge speaks.
        version: u8,
        /// The edge's node id (for the origin's logs and sessions).
        node: String,
        /// The shared cluster secret.
        token: String,
        /// `app/stream`.
        key: String,
    },
    /// Origin → edge: the pull is on; the publish generation read.
    Accepted {
        /// The origin's publish generation.
        generation: u64,
    },
    /// Origin → edge: the pull is refused; the connection closes.
    Refused {
        /// Why, for the edge's decision (retry or not).
        code: RefuseCode,
        /// Why, for people.
        reason: String,
    },
    /// The track set the following frames use (a new version when it changes).
    Catalog(Vec<TrackInfo>),
    /// One frame, timestamps as the origin's kernel made them.
    Frame(Frame),
    /// The origin's stream was published anew (its timestamps restart).
    Discontinuity {
        /// The new generation.
        generation: u64,
    },
    /// The origin's stream ended; the connection closes.
    End(EndReason),
    /// Keep-alive while the stream sends nothing.
    Ping,
}

/// [`Message`]s to and from bytes, for `tokio_util`'s `Framed` or by hand.
#[derive(Clone, Copy, Debug, Default)]
pub struct RelayCodec;

fn codec_code(c: Codec) -> Result<u8, Error> {
    Ok(match c {
        Codec::H264 => 1,
        Codec::H265 => 2,
        Codec::Av1 => 3,
        Codec::Vp8 => 4,
        Codec::Vp9 => 5,
        Codec::Aac => 6,
        Codec::Opus => 7,
        other => return Err(Error::Codec(other.name())),
    })
}

fn codec_of(b: u8) -> Result<Codec, Error> {
    Ok(match b {
        1 => Codec::H264,
        2 => Codec::H265,
        3 => Codec::Av1,
        4 => Codec::Vp8,
        5 => Codec::Vp9,
        6 => Codec::Aac,
        7 => Codec::Opus,
        _ => return Err(Error::Malformed("unknown codec")),
    })
}

fn end_code(r: EndReason) -> u8 {
    match r {
        EndReason::Finished => 0,
        EndReason::Superseded => 1,
        EndReason::Idle => 2,
        EndReason::Shutdown => 3,
        EndReason::Kicked => 4,
    }
}

fn end_of(b: u8) -> Result<EndReason, Error> {
    Ok(match b {
        0 => EndReason::Finished,
        1 => EndReason::Superseded,
        2 => EndReason::Idle,
        3 => EndReason::Shutdown,
        4 => EndReason::Kicked,
        _ => return Err(Error::Malformed("unknown end reason")),
    })
}

fn put_str(dst: &mut BytesMut, s: &str) -> Result<(), Error> {
    let len = u16::try_from(s.len()).map_err(|_| Error::Malformed("string over 65535 bytes"))?;
    dst.put_u16(len);
    dst.put_slice(s.as_bytes());
    Ok(())
}

const F_CONFIG: u8 = 1;
const F_VIDEO: u8 = 2;
const F_AUDIO: u8 = 4;
const F_BITRATE: u8 = 8;
const F_FRAME_RATE: u8 = 16;

fn put_track(dst: &mut BytesMut, t: &TrackInfo) -> Result<(), Error> {
    dst.put_u32(t.id.0);
    dst.put_u8(codec_code(t.codec)?);
    dst.put_u32(t.timescale);
    dst.put_u8(match t.wrap {
        TimestampWrap::None => 0,
        TimestampWrap::Bits(b) => b.max(1),
    });
    let frame_rate = t.video.and_then(|v| v.frame_rate);
    let flags = [
        (t.config.is_some(), F_CONFIG),
        (t.video.is_some(), F_VIDEO),
        (t.audio.is_some(), F_AUDIO),
        (t.bitrate.is_some(), F_BITRATE),
        (frame_rate.is_some(), F_FRAME_RATE),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .fold(0, |acc, (_, f)| acc | f);
    dst.put_u8(flags);
    if let Some(config) = &t.config {
        let len = u32::try_from(config.len()).map_err(|_| Error::TooLarge(config.len()))?;
        dst.put_u32(len);
        dst.put_slice(config);
    }
    if let Some(v) = t.video {
        dst.put_u32(v.width);
        dst.put_u32(v.height);
        if let Some((n, d)) = frame_rate {
            dst.put_u32(n);
            dst.put_u32(d);
        }
    }
    if let Some(a) = t.audio {
        dst.put_u32(a.sample_rate);
        dst.put_u8(a.channels);
    }
    if let Some(b) = t.bitrate {
        dst.put_u32(b);
    }
    Ok(())
}

/// Writes `msg`'s body (without the header) to `dst`; returns its type.
fn put_body(msg: &Message, dst: &mut BytesMut) -> Result<u8, Error> {
    Ok(match msg {
        Message::Hello {
            version,
            node,
            token,
            key,
        } => {
            dst.put_slice(&MAGIC);
            dst.put_u8(*version);
            put_str(dst, node)?;
            put_str(dst, token)?;
            put_str(dst, key)?;
            T_HELLO
        }
        Message::Accepted { generation } => {
            dst.put_u64(*generation);
            T_ACCEPTED
        }
        Message::Refused { code, reason } => {
            dst.put_u8(match code {
                RefuseCode::Unauthorized => 1,
                RefuseCode::NotFound => 2,
                RefuseCode::Other => 3,
            });
            put_str(dst, reason)?;
            T_REFUSED
        }
        Message::Catalog(tracks) => {
            let n = u8::try_from(tracks.len()).map_err(|_| Error::Malformed("too many tracks"))?;
            dst.put_u8(n);
            for t in tracks {
                put_track(dst, t)?;
            }
            T_CATALOG
        }
        Message::Frame(f) => {
            dst.put_u32(f.track.0);
            dst.put_u8(codec_code(f.codec)?);
            let mut flags = 0;
            if f.flags.contains(FrameFlags::KEYFRAME) {
                flags |= 1;
            }
            if f.flags.contains(FrameFlags::DISCONTINUITY) {
                flags |= 2;
            }
            dst.put_u8(flags);
            dst.put_i64(f.pts);
            dst.put_i64(f.dts);
            dst.put_slice(&f.payload);
            T_FRAME
        }
        Message::Discontinuity { generation } => {
            dst.put_u64(*generation);
            T_DISCONTINUITY
        }
        Message::End(reason) => {
            dst.put_u8(end_code(*reason));
            T_END
        }
        Message::Ping => T_PING,
    })
}

impl Encoder<Message> for RelayCodec {
    type Error = Error;

    fn encode(&mut self, msg: Message, dst: &mut BytesMut) -> Result<(), Error> {
        self.encode(&msg, dst)
    }
}

impl Encoder<&Message> for RelayCodec {
    type Error = Error;

    fn encode(&mut self, msg: &Message, dst: &mut BytesMut) -> Result<(), Error> {
        let start = dst.len();
        dst.put_u8(0);
        dst.put_u32(0);
        let kind = match put_body(msg, dst) {
            Ok(kind) => kind,
            Err(e) => {
                dst.truncate(start);
                return Err(e);
            }
        };
        let len = dst.len() - start - HEADER;
        if len > MAX_BODY {
            dst.truncate(start);
            return Err(Error::TooLarge(len));
        }
        // The header's room was put at `start` above; len <= MAX_BODY < u32::MAX.
        let Some(header) = dst.get_mut(start..start + HEADER) else {
            return Err(Error::Malformed("relay header room missing"));
        };
        let [a, b, c, d] = (len as u32).to_be_bytes();
        header.copy_from_slice(&[kind, a, b, c, d]);
        Ok(())
    }
}

/// A reader over one message body that fails instead of panicking.
struct Body(Bytes);

impl Body {
    fn need(&self, n: usize) -> Result<(), Error> {
        if self.0.remaining() < n {
            return Err(Error::Malformed("message body too short"));
        }
        Ok(())
    }
    fn u8(&mut self) -> Result<u8, Error> {
        self.need(1)?;
        Ok(self.0.get_u8())
    }
    fn u16(&mut self) -> Result<u16, Error> {
        self.need(2)?;
        Ok(self.0.get_u16())
    }
    fn u32(&mut self) -> Result<u32, Error> {
        self.need(4)?;
        Ok(self.0.get_u32())
    }
    fn u64(&mut self) -> Result<u64, Error> {
        self.need(8)?;
        Ok(self.0.get_u64())
    }
    fn i64(&mut self) -> Result<i64, Error> {
        self.need(8)?;
        Ok(self.0.get_i64())
    }
    fn bytes(&mut self, n: usize) -> Result<Bytes, Error> {
        self.need(n)?;
        Ok(self.0.split_to(n))
    }
    fn string(&mut self) -> Result<String, Error> {
        let n = usize::from(self.u16()?);
        let raw = self.bytes(n)?;
        String::from_utf8(raw.to_vec()).map_err(|_| Error::Malformed("string not UTF-8"))
    }
    fn done(self) -> Result<(), Error> {
        if self.0.has_remaining() {
            return Err(Error::Malformed("bytes after the message"));
        }
        Ok(())
    }
}

fn track(b: &mut Body) -> Result<TrackInfo, Error> {
    let id = TrackId(b.u32()?);
    let codec = codec_of(b.u8()?)?;
    let timescale = b.u32()?;
    let wrap = match b.u8()? {
        0 => TimestampWrap::None,
        bits @ 1..=64 => TimestampWrap::Bits(bits),
        _ => return Err(Error::Malformed("timestamp wrap over 64 bits")),
    };
    let flags = b.u8()?;
    let config = if flags & F_CONFIG != 0 {
        let n = b.u32()? as usize;
        Some(b.bytes(n)?)
    } else {
        None
    };
    let video = if flags & F_VIDEO != 0 {
        let (width, height) = (b.u32()?, b.u32()?);
        let frame_rate = if flags & F_FRAME_RATE != 0 {
            Some((b.u32()?, b.u32()?))
        } else {
            None
        };
        Some(VideoParams {
            width,
            height,
            frame_rate,
        })
    } else {
        None
    };
    let audio = if flags & F_AUDIO != 0 {
        Some(AudioParams {
            sample_rate: b.u32()?,
            channels: b.u8()?,
        })
    } else {
        None
    };
    let bitrate = if flags & F_BITRATE != 0 {
        Some(b.u32()?)
    } else {
        None
    };
    Ok(TrackInfo {
        id,
        codec,
        timescale,
        wrap,
        config,
        video,
        audio,
        bitrate,
    })
}

fn parse(kind: u8, body: Bytes) -> Result<Message, Error> {
    let mut b = Body(body);
    let msg = match kind {
        T_HELLO => {
            if b.bytes(MAGIC.len())? != MAGIC[..] {
                return Err(Error::Malformed("not a relay hello"));
            }
            let version = b.u8()?;
            if version != VERSION {
                return Err(Error::Version(version));
            }
            Message::Hello {
                version,
                node: b.string()?,
                token: b.string()?,
                key: b.string()?,
            }
        }
        T_ACCEPTED => Message::Accepted {
            generation: b.u64()?,
        },
        T_REFUSED => Message::Refused {
            code: match b.u8()? {
                1 => RefuseCode::Unauthorized,
                2 => RefuseCode::NotFound,
                _ => RefuseCode::Other,
            },
            reason: b.string()?,
        },
        T_CATALOG => {
            let n = b.u8()?;
            let tracks = (0..n).map(|_| track(&mut b)).collect::<Result<_, _>>()?;
            Message::Catalog(tracks)
        }
        T_FRAME => {
            let track = TrackId(b.u32()?);
            let codec = codec_of(b.u8()?)?;
            let bits = b.u8()?;
            let mut flags = FrameFlags::empty();
            if bits & 1 != 0 {
                flags = flags | FrameFlags::KEYFRAME;
            }
            if bits & 2 != 0 {
                flags = flags | FrameFlags::DISCONTINUITY;
            }
            let pts = b.i64()?;
            let dts = b.i64()?;
            let payload = std::mem::take(&mut b.0);
            Message::Frame(Frame {
                track,
                codec,
                flags,
                pts,
                dts,
                payload,
            })
        }
        T_DISCONTINUITY => Message::Discontinuity {
            generation: b.u64()?,
        },
        T_END => Message::End(end_of(b.u8()?)?),
        T_PING => Message::Ping,
        _ => return Err(Error::Malformed("unknown message type")),
    };
    b.done()?;
    Ok(msg)
}

impl Decoder for RelayCodec {
    type Item = Message;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, Error> {
        let Some(&[kind, a, b, c, d]) = src.first_chunk::<HEADER>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([a, b, c, d]) as usize;
        if len > MAX_BODY {
            return Err(Error::TooLarge(len));
        }
        if src.len() < HEADER + len {
            src.reserve(HEADER + len - src.len());
            return Ok(None);
        }
        src.advance(HEADER);
        let body = src.split_to(len).freeze();
        parse(kind, body).map(Some)
    }
}

/// Decodes untrusted bytes fed in pieces and checks what the decoder
/// promises: no panic, bounded messages, and each message it accepts
/// encodes back to bytes that decode to the same message. Shared by the
/// fuzz target `cluster_relay` and its property-test twin.
#[doc(hidden)]
pub fn fuzz_decode(data: &[u8]) {
    let mut codec = RelayCodec;
    let mut buf = BytesMut::new();
    // Fed in pieces whose size the data's first byte picks, so split
    // headers and bodies are exercised.
    let Some((step, data)) = data.split_first() else {
        return;
    };
    for chunk in data.chunks(usize::from(*step).max(1)) {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(msg)) => {
                    let mut again = BytesMut::new();
                    // A decoded message always encodes (its sizes came from the wire).
                    if codec.encode(&msg, &mut again).is_ok() {
                        let back = codec.decode(&mut again);
                        assert!(matches!(back, Ok(Some(ref m)) if *m == msg));
                        assert!(again.is_empty());
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn round_trip(msg: Message) {
        let mut buf = BytesMut::new();
        RelayCodec.encode(&msg, &mut buf).expect("encode");
        // Byte by byte: nothing comes out until the whole message is in.
        let mut fed = BytesMut::new();
        let mut out = None;
        for (i, b) in buf.iter().enumerate() {
            fed.extend_from_slice(&[*b]);
            let got = RelayCodec.decode(&mut fed).expect("decode");
            if i + 1 < buf.len() {
                assert!(got.is_none(), "a message out of a partial one");
            } else {
                out = got;
            }
        }
        assert_eq!(out, Some(msg));
        assert!(fed.is_empty());
    }

    fn full_track() -> TrackInfo {
        let mut t = TrackInfo::video(TrackId(1), Codec::H265, 1920, 1080)
            .with_config(Bytes::from_static(b"hvcC bytes"))
            .with_wrap(TimestampWrap::RTMP);
        t.bitrate = Some(4_000_000);
        if let Some(v) = &mut t.video {
            v.frame_rate = Some((30_000, 1001));
        }
        t
    }

    #[test]
    fn every_message_kind_round_trips() {
        round_trip(Message::Hello {
            version: VERSION,
            node: "edge-1".into(),
            token: "s3cret".into(),
            key: "live/cam".into(),
        });
        round_trip(Message::Accepted { generation: 7 });
        round_trip(Message::Refused {
            code: RefuseCode::NotFound,
            reason: "not live".into(),
        });
        round_trip(Message::Catalog(vec![
            full_track(),
            TrackInfo::audio(TrackId(2), Codec::Opus, 48_000, 2),
            TrackInfo::video(TrackId(3), Codec::Av1, 0, 0),
            TrackInfo::video(TrackId(4), Codec::Vp9, 640, 360),
            TrackInfo::video(TrackId(5), Codec::Vp8, 320, 240),
            TrackInfo::audio(TrackId(6), Codec::Aac, 44_100, 1)
                .with_config(Bytes::from_static(&[0x12, 0x10])),
            TrackInfo::video(TrackId(7), Codec::H264, 2, 2),
        ]));
        let mut f = Frame::video(
            TrackId(1),
            Codec::H264,
            -3,
            9,
            true,
            Bytes::from_static(b"\0\0\0\x01e"),
        );
        f.flags = f.flags | FrameFlags::DISCONTINUITY;
        round_trip(Message::Frame(f));
        round_trip(Message::Frame(Frame::audio(
            TrackId(2),
            Codec::Opus,
            i64::MAX,
            Bytes::new(),
        )));
        round_trip(Message::Discontinuity { generation: 2 });
        round_trip(Message::End(EndReason::Kicked));
        round_trip(Message::Ping);
    }

    #[test]
    fn another_version_or_protocol_is_refused_by_name() {
        let mut buf = BytesMut::new();
        RelayCodec
            .encode(
                &Message::Hello {
                    version: 9,
                    node: String::new(),
                    token: String::new(),
                    key: String::new(),
                },
                &mut buf,
            )
            .expect("encode");
        assert!(matches!(
            RelayCodec.decode(&mut buf),
            Err(Error::Version(9))
        ));
        let mut http = BytesMut::from(&b"GET / HTTP/1.1\r\n\r\n"[..]);
        assert!(RelayCodec.decode(&mut http).is_err());
    }

    #[test]
    fn a_length_over_the_limit_is_refused_before_it_is_read() {
        let mut buf = BytesMut::new();
        buf.put_u8(T_FRAME);
        buf.put_u32(u32::MAX);
        assert!(matches!(
            RelayCodec.decode(&mut buf),
            Err(Error::TooLarge(n)) if n == u32::MAX as usize
        ));
    }

    #[test]
    fn trailing_or_missing_body_bytes_are_malformed() {
        let mut buf = BytesMut::new();
        buf.put_u8(T_PING);
        buf.put_u32(1);
        buf.put_u8(0);
        assert!(RelayCodec.decode(&mut buf).is_err());
        let mut buf = BytesMut::new();
        buf.put_u8(T_ACCEPTED);
        buf.put_u32(3);
        buf.put_slice(&[0, 0, 0]);
        assert!(RelayCodec.decode(&mut buf).is_err());
    }

    fn any_codec() -> impl Strategy<Value = Codec> {
        prop_oneof![
            Just(Codec::H264),
            Just(Codec::H265),
            Just(Codec::Av1),
            Just(Codec::Vp8),
            Just(Codec::Vp9),
            Just(Codec::Aac),
            Just(Codec::Opus),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

        #[test]
        fn frames_round_trip(track in any::<u32>(), codec in any_codec(), key in any::<bool>(),
                             pts in any::<i64>(), dts in any::<i64>(),
                             payload in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut f = Frame::video(TrackId(track), codec, dts, pts, key, Bytes::from(payload));
            f.flags = if key { FrameFlags::KEYFRAME } else { FrameFlags::empty() };
            round_trip(Message::Frame(f));
        }

        #[test]
        fn catalogs_round_trip(codec in any_codec(), timescale in any::<u32>(),
                               config in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
                               width in any::<u32>(), rate in any::<u32>(), bitrate in proptest::option::of(any::<u32>())) {
            let mut t = TrackInfo::video(TrackId(1), codec, width, width / 2).with_timescale(timescale);
            t.config = config.map(Bytes::from);
            t.bitrate = bitrate;
            if let Some(v) = &mut t.video { v.frame_rate = Some((rate, 1)); }
            let a = TrackInfo::audio(TrackId(2), codec, rate, 2);
            round_trip(Message::Catalog(vec![t, a]));
        }

        /// The twin of the fuzz target: any bytes, any split.
        #[test]
        fn cluster_relay_twin(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            fuzz_decode(&data);
        }

        /// Valid messages with garbage after them, fed in pieces.
        #[test]
        fn cluster_relay_twin_after_a_valid_frame(tail in proptest::collection::vec(any::<u8>(), 0..256), step in 1u8..40) {
            let mut buf = BytesMut::new();
            RelayCodec.encode(&Message::Frame(Frame::audio(TrackId(2), Codec::Aac, 5, Bytes::from_static(b"au"))), &mut buf).expect("encode");
            let mut data = vec![step];
            data.extend_from_slice(&buf);
            data.extend_from_slice(&tail);
            fuzz_decode(&data);
        }
    }
}
