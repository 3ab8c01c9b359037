//! A minimal RTSP **play** client, sans-IO, for the `rtsp-load` load tool.
//!
//! Two halves:
//!
//! - **Set-up** (`DESCRIBE`, one `SETUP` per track, `PLAY`): requests are
//!   written by [`request`], responses read with `rtsp-types`
//!   ([`parse_response`]) and the SDP with `sdp-types` ([`tracks`]). This
//!   runs once per reader, so a general parser costs nothing that matters.
//! - **Media** ([`Interleave`]): the RTSP connection after `PLAY` carries
//!   `$`-framed RTP and RTCP and, now and then, a response to a keep-alive.
//!   Of each packet it keeps only the first [`HEAD`] bytes (RTP header and
//!   the start of the payload: enough to tell a keyframe and to read an RTCP
//!   sender report) and skips the rest without copying. `rtsp-types` would
//!   copy every packet into a `Vec` of its own (the cost profile of a player,
//!   not of a load generator that must stay far below the server it loads).
//!
//! Over UDP each datagram is one packet and goes straight to [`rtp_header`]
//! or [`sender_report`].

use rtsp_types::{Message, ParseError};

/// Bytes of each packet kept for inspection: the RTP header with a few
/// CSRCs and the start of the payload (a STAP-A's first NAL units).
pub const HEAD: usize = 64;
/// The longest text message (a response head) accepted between packets.
pub const MAX_TEXT: usize = 16 * 1024;
/// Seconds between 1900 (NTP) and 1970 (Unix).
pub const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// What went wrong; the reader that hit it is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// One RTSP request: `METHOD url RTSP/1.0`, `CSeq`, then `headers`.
pub fn request(method: &str, url: &str, cseq: u32, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut text = format!("{method} {url} RTSP/1.0\r\nCSeq: {cseq}\r\nUser-Agent: rtsp-load\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text.into_bytes()
}

/// A response: status, headers and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body (an SDP for `DESCRIBE`).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The session id of a `Session` header, without `;timeout=`.
    pub fn session(&self) -> Option<&str> {
        self.header("session")
            .map(|s| s.split(';').next().unwrap_or(s).trim())
    }
}

/// Parses one response at the start of `buf`: `Ok(None)` while incomplete,
/// else the response and the bytes it took.
pub fn parse_response(buf: &[u8]) -> Result<Option<(Response, usize)>, Error> {
    let parsed: Result<(Message<Vec<u8>>, usize), ParseError> = Message::parse(buf);
    match parsed {
        Ok((Message::Response(r), used)) => {
            let headers = r
                .headers()
                .map(|(n, v)| (n.as_str().to_ascii_lowercase(), v.as_str().to_string()))
                .collect();
            Ok(Some((
                Response {
                    status: u16::from(r.status()),
                    headers,
                    body: r.body().clone(),
                },
                used,
            )))
        }
        Ok((_, _)) => Err(Error("expected a response, got a request or data".into())),
        Err(ParseError::Incomplete(_)) if buf.len() > MAX_TEXT => {
            Err(Error(format!("response longer than {MAX_TEXT} bytes")))
        }
        Err(ParseError::Incomplete(_)) => Ok(None),
        Err(ParseError::Error) => Err(Error("malformed response".into())),
    }
}

/// One media of the described session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// `video`, `audio`, …
    pub media: String,
    /// The URL to `SETUP`, resolved against the base.
    pub url: String,
    /// The RTP clock rate.
    pub clock_rate: u32,
    /// Upper-case encoding name (`H264`, `MPEG4-GENERIC`, …).
    pub encoding: String,
}

/// The tracks of a `DESCRIBE` answer's SDP, their control URLs resolved
/// against `base` (`Content-Base`, or the request URL).
pub fn tracks(sdp: &[u8], base: &str) -> Result<Vec<Track>, Error> {
    let session = sdp_types::Session::parse(sdp).map_err(|e| Error(format!("SDP: {e}")))?;
    let mut out = Vec::new();
    for media in &session.medias {
        let pt = media.fmt.split_whitespace().next().unwrap_or("");
        let mut track = Track {
            media: media.media.clone(),
            url: base.trim_end_matches('/').to_string(),
            clock_rate: 90_000,
            encoding: String::new(),
        };
        for attr in &media.attributes {
            let value = attr.value.as_deref().unwrap_or("");
            match attr.attribute.as_str() {
                "control" => track.url = resolve(base, value),
                "rtpmap" => {
                    let Some((p, map)) = value.split_once(' ') else {
                        continue;
                    };
                    if p.trim() != pt {
                        continue;
                    }
                    let mut parts = map.trim().split('/');
                    track.encoding = parts.next().unwrap_or("").to_ascii_uppercase();
                    if let Some(rate) = parts.next().and_then(|r| r.parse().ok()) {
                        track.clock_rate = rate;
                    }
                }
                _ => {}
            }
        }
        out.push(track);
    }
    if out.is_empty() {
        return Err(Error("SDP without media".into()));
    }
    Ok(out)
}

/// A control attribute against a base URL: absolute as is, `*` the base,
/// relative appended after one `/`.
pub fn resolve(base: &str, control: &str) -> String {
    if control.starts_with("rtsp://") || control.starts_with("rtsps://") {
        return control.to_string();
    }
    let base = base.trim_end_matches('/');
    if control.is_empty() || control == "*" {
        return base.to_string();
    }
    format!("{base}/{}", control.trim_start_matches('/'))
}

/// The fields of an RTP header the load tool uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHead {
    /// The marker bit (the last packet of a video frame).
    pub marker: bool,
    /// Sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Offset of the payload in the packet.
    pub payload_at: usize,
}

/// Reads an RTP header (version 2, CSRCs and an extension skipped) from the
/// start of a packet; `None` when it is not one or is cut before the payload.
pub fn rtp_header(p: &[u8]) -> Option<RtpHead> {
    if p.len() < 12 || p[0] >> 6 != 2 {
        return None;
    }
    let mut at = 12 + 4 * usize::from(p[0] & 0x0f);
    if p[0] & 0x10 != 0 {
        let ext = p.get(at + 2..at + 4)?;
        at += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    Some(RtpHead {
        marker: p[1] & 0x80 != 0,
        seq: u16::from_be_bytes([p[2], p[3]]),
        timestamp: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        payload_at: at,
    })
}

/// Whether an H.264 RTP payload (RFC 6184) starts or is an IDR picture:
/// a single IDR NAL unit, an FU-A's first fragment of one, or a STAP-A
/// holding one (within the bytes given).
pub fn h264_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    match first & 0x1f {
        5 => true,
        28 => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && fu & 0x1f == 5),
        24 => {
            let mut rest = &payload[1..];
            while rest.len() >= 3 {
                let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                if rest[2] & 0x1f == 5 {
                    return true;
                }
                rest = rest.get(2 + len..).unwrap_or(&[]);
            }
            false
        }
        _ => false,
    }
}

/// An RTCP sender report's clock pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport {
    /// 64-bit NTP time.
    pub ntp: u64,
    /// The RTP time that corresponds to it.
    pub rtp: u32,
}

impl SenderReport {
    /// The NTP time as seconds since the Unix epoch.
    pub fn unix_secs(&self) -> f64 {
        let secs = (self.ntp >> 32) as f64 - NTP_UNIX_OFFSET as f64;
        secs + (self.ntp & 0xffff_ffff) as f64 / 4_294_967_296.0
    }
}

/// The sender report at the start of an RTCP compound packet, if that is one.
pub fn sender_report(p: &[u8]) -> Option<SenderReport> {
    if p.len() < 20 || p[0] >> 6 != 2 || p[1] != 200 {
        return None;
    }
    Some(SenderReport {
        ntp: u64::from_be_bytes(p[8..16].try_into().ok()?),
        rtp: u32::from_be_bytes(p[16..20].try_into().ok()?),
    })
}

/// What [`Interleave::feed`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// A packet on `channel` of `len` bytes, of which `head` are the first.
    Packet {
        /// Interleave channel.
        channel: u8,
        /// The packet's full length.
        len: usize,
        /// Its first `min(len, HEAD)` bytes.
        head: &'a [u8],
    },
    /// A text message (a response to a keep-alive) with this status (0 for
    /// a request from the server).
    Text(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between messages.
    Boundary,
    /// Inside a `$` header: bytes of it seen so far.
    Header(usize),
    /// Inside a packet: its channel, length and bytes seen.
    Packet {
        channel: u8,
        len: usize,
        seen: usize,
    },
    /// Inside a text message's head.
    Text,
    /// Skipping a text message's body: bytes left.
    Body(usize),
}

/// The media half of an RTSP connection: `$`-framed packets and the odd
/// text message between them, read without copying payloads.
#[derive(Debug)]
pub struct Interleave {
    state: State,
    header: [u8; 4],
    head: [u8; HEAD],
    text: Vec<u8>,
}

impl Default for Interleave {
    fn default() -> Self {
        Self::new()
    }
}

impl Interleave {
    /// A parser at a message boundary.
    pub fn new() -> Self {
        Self {
            state: State::Boundary,
            header: [0; 4],
            head: [0; HEAD],
            text: Vec::new(),
        }
    }

    /// Reads `data`, calling `on` for each packet (as soon as its head is
    /// in) and each text message.
    pub fn feed(&mut self, mut data: &[u8], on: &mut dyn FnMut(Item<'_>)) -> Result<(), Error> {
        while !data.is_empty() {
            match self.state {
                State::Boundary => {
                    if data[0] == b'$' {
                        self.state = State::Header(0);
                    } else if data[0].is_ascii_alphabetic() {
                        self.text.clear();
                        self.state = State::Text;
                    } else {
                        return Err(Error(format!(
                            "byte {:#04x} where a message should start",
                            data[0]
                        )));
                    }
                }
                State::Header(seen) => {
                    let take = (4 - seen).min(data.len());
                    self.header[seen..seen + take].copy_from_slice(&data[..take]);
                    data = &data[take..];
                    if seen + take < 4 {
                        self.state = State::Header(seen + take);
                        continue;
                    }
                    let len = usize::from(u16::from_be_bytes([self.header[2], self.header[3]]));
                    let channel = self.header[1];
                    if len == 0 {
                        on(Item::Packet {
                            channel,
                            len,
                            head: &[],
                        });
                        self.state = State::Boundary;
                    } else {
                        self.state = State::Packet {
                            channel,
                            len,
                            seen: 0,
                        };
                    }
                }
                State::Packet { channel, len, seen } => {
                    let take = (len - seen).min(data.len());
                    let want = len.min(HEAD);
                    if seen < want {
                        let copy = (want - seen).min(take);
                        self.head[seen..seen + copy].copy_from_slice(&data[..copy]);
                        if seen + copy == want {
                            on(Item::Packet {
                                channel,
                                len,
                                head: &self.head[..want],
                            });
                        }
                    }
                    data = &data[take..];
                    self.state = if seen + take == len {
                        State::Boundary
                    } else {
                        State::Packet {
                            channel,
                            len,
                            seen: seen + take,
                        }
                    };
                }
                State::Text => {
                    // Byte by byte up to the blank line: these are rare and short.
                    let end = data.iter().position(|&b| b == b'\n');
                    let take = end.map_or(data.len(), |i| i + 1);
                    self.text.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.text.len() > MAX_TEXT {
                        return Err(Error(format!("text message over {MAX_TEXT} bytes")));
                    }
                    if self.text.ends_with(b"\r\n\r\n") || self.text.ends_with(b"\n\n") {
                        let (status, body) = text_head(&self.text);
                        on(Item::Text(status));
                        self.state = if body > 0 {
                            State::Body(body)
                        } else {
                            State::Boundary
                        };
                    }
                }
                State::Body(left) => {
                    let take = left.min(data.len());
                    data = &data[take..];
                    self.state = if take == left {
                        State::Boundary
                    } else {
                        State::Body(left - take)
                    };
                }
            }
        }
        Ok(())
    }
}

/// The status (0 for a request) and `Content-Length` of a message head.
fn text_head(head: &[u8]) -> (u16, usize) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("");
    let status = first
        .strip_prefix("RTSP/1.0 ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    (status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(marker: bool, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, if marker { 0xe0 } else { 0x60 }];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 1]);
        p.extend_from_slice(payload);
        p
    }

    fn framed(channel: u8, packet: &[u8]) -> Vec<u8> {
        let mut out = vec![b'$', channel];
        out.extend_from_slice(&(packet.len() as u16).to_be_bytes());
        out.extend_from_slice(packet);
        out
    }

    #[test]
    fn packets_and_responses_in_any_split() {
        let idr = rtp(false, 7, 9000, &[0x7c, 0x85, 1, 2, 3]);
        let mut big = rtp(true, 8, 9000, &[0x7c, 0x45]);
        big.resize(3000, 0xaa);
        let mut stream = framed(0, &idr);
        stream.extend_from_slice(b"RTSP/1.0 200 OK\r\nCSeq: 9\r\nContent-Length: 3\r\n\r\nabc");
        stream.extend(framed(0, &big));
        stream.extend(framed(1, &[0x80, 200, 0, 6]));
        for chunk in [1, 2, 5, 64, 4096] {
            let mut parser = Interleave::new();
            let mut seen = Vec::new();
            for part in stream.chunks(chunk) {
                parser
                    .feed(part, &mut |item| {
                        seen.push(match item {
                            Item::Packet { channel, len, head } => {
                                let h = rtp_header(head);
                                let key = h.is_some_and(|h| h264_keyframe(&head[h.payload_at..]));
                                format!("{channel}:{len}:{}:{key}", h.map_or(0, |h| h.seq))
                            }
                            Item::Text(status) => format!("text {status}"),
                        })
                    })
                    .expect("well formed");
            }
            assert_eq!(
                seen,
                ["0:17:7:true", "text 200", "0:3000:8:false", "1:4:0:false"],
                "chunks of {chunk}"
            );
        }
        assert!(Interleave::new().feed(&[0xff], &mut |_| {}).is_err());
    }

    #[test]
    fn keyframes_of_each_packetization() {
        assert!(h264_keyframe(&[0x65, 0x88]));
        assert!(!h264_keyframe(&[0x41, 0x9a]));
        assert!(h264_keyframe(&[0x7c, 0x85]));
        assert!(!h264_keyframe(&[0x7c, 0x05]), "not the first fragment");
        // STAP-A: SPS (2 bytes), then an IDR.
        assert!(h264_keyframe(&[0x78, 0, 2, 0x67, 0, 0, 1, 0x65]));
        assert!(!h264_keyframe(&[0x78, 0, 2, 0x67, 0, 0, 1, 0x68]));
        assert!(!h264_keyframe(&[]));
    }

    #[test]
    fn describe_answers_resolve_their_tracks() {
        let sdp = b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n\
                    m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:stream=0\r\n\
                    m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\n\
                    a=control:rtsp://h/x/trackID=1\r\n";
        let t = tracks(sdp, "rtsp://127.0.0.1:1/live/bench/").expect("valid");
        assert_eq!(t[0].url, "rtsp://127.0.0.1:1/live/bench/stream=0");
        assert_eq!((t[0].clock_rate, t[0].encoding.as_str()), (90_000, "H264"));
        assert_eq!(t[1].url, "rtsp://h/x/trackID=1");
        assert_eq!(t[1].clock_rate, 48_000);
        let r = b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nSession: abc;timeout=60\r\n\r\nrest";
        let (resp, used) = parse_response(r).expect("valid").expect("complete");
        assert_eq!(
            (resp.status, resp.session(), used),
            (200, Some("abc"), r.len() - 4)
        );
        assert!(
            parse_response(b"RTSP/1.0 200 OK\r\nCSe")
                .expect("ok")
                .is_none()
        );
    }

    #[test]
    fn sender_reports_in_unix_time() {
        let mut p = vec![0x80, 200, 0, 6, 0, 0, 0, 1];
        p.extend_from_slice(&(((NTP_UNIX_OFFSET + 10) << 32) | 0x8000_0000).to_be_bytes());
        p.extend_from_slice(&90_000u32.to_be_bytes());
        let sr = sender_report(&p).expect("an SR");
        assert_eq!(sr.rtp, 90_000);
        assert!((sr.unix_secs() - 10.5).abs() < 1e-9);
        assert!(sender_report(&p[..12]).is_none());
    }
}
