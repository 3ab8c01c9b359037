//! The first message on the origin's relay port: an edge's hello, read
//! within a deadline and told apart from whatever else reaches the port
//! (a browser, an RTMP client at the wrong port, a scan, garbage) as soon
//! as its first five bytes are in, and with words for the log line that
//! says why a connection was closed before any pull started.

use std::fmt;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

use super::VERSION;
use super::codec::{Message, RelayCodec};
use crate::error::Error;

/// The largest hello body accepted: magic, version and three short strings
/// (node id, cluster secret, `app/stream`) fit many times over. Checked
/// before the body is buffered, so that a peer announcing a big first
/// message cannot make the origin reserve the relay's 16 MiB frame limit on
/// each of its connections.
pub(crate) const HELLO_MAX: usize = 64 << 10;

/// The hello's type byte (the relay format's message type 1).
const HELLO_TYPE: u8 = 1;

/// What an edge's hello asks for.
#[derive(Debug)]
pub(crate) struct Hello {
    /// The asking node's id (its own word: shown, never trusted).
    pub(crate) node: String,
    /// The cluster secret it presents.
    pub(crate) token: String,
    /// The stream, `app/stream`.
    pub(crate) key: String,
}

/// Why a connection was closed before its hello was read.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The first byte is not the hello's type.
    NotRelay {
        /// That byte.
        first: u8,
    },
    /// The hello announces a body over [`HELLO_MAX`].
    TooLarge {
        /// The announced body length.
        len: usize,
    },
    /// No complete hello within the relay's hello timeout.
    Timeout {
        /// Bytes received by then.
        got: usize,
        /// That timeout (`[cluster] relay_hello_timeout_ms`).
        limit: Duration,
    },
    /// The peer closed the connection before its hello was complete.
    Closed {
        /// Bytes received.
        got: usize,
    },
    /// A relay node of another version of the format.
    Version(u8),
    /// The hello's body does not parse (not `TWRL`, a string cut short…).
    Malformed(Error),
    /// The socket failed.
    Io(std::io::Error),
}

impl Failure {
    /// The reason counted under the relay listener's refusals (a fixed
    /// word, never peer text).
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Failure::NotRelay { .. } => "not_relay",
            Failure::TooLarge { .. } => "too_large",
            Failure::Timeout { .. } => "hello_timeout",
            Failure::Closed { .. } => "closed_early",
            Failure::Version(_) => "version",
            Failure::Malformed(_) => "malformed",
            Failure::Io(_) => "io",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NotRelay { first } => write!(
                f,
                "its first byte is 0x{first:02x}, not a relay hello: not a tidewater node \
                 (a client at the wrong port, a scan, or garbage)"
            ),
            Failure::TooLarge { len } => write!(
                f,
                "its hello announces {len} bytes, over the {HELLO_MAX}-byte limit of a hello"
            ),
            Failure::Timeout { got, limit } => write!(
                f,
                "no complete hello within {} ms, the relay's hello timeout \
                 ([cluster] relay_hello_timeout_ms) ({got} bytes came)",
                limit.as_millis()
            ),
            Failure::Closed { got: 0 } => f.write_str("the peer closed it without sending a hello"),
            Failure::Closed { got } => write!(
                f,
                "the peer closed it after {got} bytes, before its hello was complete"
            ),
            Failure::Version(v) => write!(
                f,
                "the node speaks relay version {v}, this one version {VERSION}: \
                 run one tidewater version on every node"
            ),
            Failure::Malformed(e) => write!(f, "its hello does not parse ({e})"),
            Failure::Io(e) => write!(f, "reading its hello failed: {e}"),
        }
    }
}

/// Checks what has come so far of a first message: once its five header
/// bytes are in, it must be a hello within [`HELLO_MAX`].
pub(crate) fn screen(buf: &[u8]) -> Result<(), Failure> {
    let Some(&first) = buf.first() else {
        return Ok(());
    };
    if first != HELLO_TYPE {
        return Err(Failure::NotRelay { first });
    }
    if let Some(&[_, a, b, c, d]) = buf.first_chunk::<5>() {
        let len = u32::from_be_bytes([a, b, c, d]) as usize;
        if len > HELLO_MAX {
            return Err(Failure::TooLarge { len });
        }
    }
    Ok(())
}

/// Decodes a hello from `buf` when it is complete.
fn decode(buf: &mut BytesMut) -> Result<Option<Hello>, Failure> {
    screen(buf)?;
    match RelayCodec.decode(buf) {
        Ok(Some(Message::Hello {
            node, token, key, ..
        })) => Ok(Some(Hello { node, token, key })),
        // `screen` let only a hello's type through.
        Ok(Some(_)) => Err(Failure::NotRelay { first: HELLO_TYPE }),
        Ok(None) => Ok(None),
        Err(Error::Version(v)) => Err(Failure::Version(v)),
        Err(e) => Err(Failure::Malformed(e)),
    }
}

/// Reads the hello, within `limit` (the relay's hello timeout).
pub(crate) async fn read_hello(
    socket: &mut TcpStream,
    buf: &mut BytesMut,
    limit: Duration,
) -> Result<Hello, Failure> {
    let mut got = 0usize;
    let read = async {
        loop {
            if let Some(hello) = decode(buf)? {
                return Ok(hello);
            }
            match socket.read_buf(buf).await {
                Ok(0) => return Err(Failure::Closed { got }),
                Ok(n) => got = got.saturating_add(n),
                Err(e) => return Err(Failure::Io(e)),
            }
        }
    };
    let outcome = tokio::time::timeout(limit, read).await;
    outcome.unwrap_or(Err(Failure::Timeout { got, limit }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use tokio_util::codec::Encoder;

    fn hello_bytes() -> BytesMut {
        let mut out = BytesMut::new();
        RelayCodec
            .encode(
                &Message::Hello {
                    version: VERSION,
                    node: "b".into(),
                    token: "0123456789abcdef".into(),
                    key: "live/cam".into(),
                },
                &mut out,
            )
            .expect("encode");
        out
    }

    #[test]
    fn a_hello_fed_byte_by_byte_is_read_once_complete() {
        let whole = hello_bytes();
        let mut buf = BytesMut::new();
        for (i, b) in whole.iter().enumerate() {
            buf.put_u8(*b);
            let decoded = decode(&mut buf).expect("a hello in the making is fine");
            assert_eq!(decoded.is_some(), i + 1 == whole.len());
            if let Some(hello) = decoded {
                assert_eq!((hello.node.as_str(), hello.key.as_str()), ("b", "live/cam"));
            }
        }
    }

    #[test]
    fn anything_but_a_hello_is_told_apart_by_its_first_byte() {
        for first in [0u8, 2, 5, 0x16, b'G', 0xFF] {
            let failure = screen(&[first]).expect_err("not a hello");
            assert!(matches!(failure, Failure::NotRelay { first: f } if f == first));
            assert_eq!(failure.reason(), "not_relay");
            assert!(failure.to_string().contains(&format!("0x{first:02x}")));
        }
    }

    #[test]
    fn a_big_hello_is_refused_from_its_header_alone() {
        assert!(screen(&[1, 0, 1, 0, 0]).is_ok(), "64 KiB is allowed");
        let failure = screen(&[1, 0, 1, 0, 1]).expect_err("one byte over");
        assert!(matches!(failure, Failure::TooLarge { len: 65537 }));
        let failure = screen(&[1, 0xFF, 0xFF, 0xFF, 0xFF]).expect_err("4 GiB");
        assert!(
            failure.to_string().contains("4294967295 bytes"),
            "{failure}"
        );
    }

    #[test]
    fn another_version_and_a_bad_body_say_so() {
        let mut other = hello_bytes();
        // Type, length, magic, then the version byte.
        if let Some(v) = other.get_mut(9) {
            *v = 9;
        }
        let failure = decode(&mut other).expect_err("version 9");
        assert!(matches!(failure, Failure::Version(9)));
        assert!(failure.to_string().contains("version 9"), "{failure}");

        let mut junk = BytesMut::from(&[1u8, 0, 0, 0, 4, b'H', b'T', b'T', b'P'][..]);
        let failure = decode(&mut junk).expect_err("not TWRL");
        assert_eq!(failure.reason(), "malformed");
    }

    #[test]
    fn the_timeout_line_names_the_timeout_and_what_came() {
        let line = Failure::Timeout {
            got: 29,
            limit: Duration::from_millis(2500),
        }
        .to_string();
        assert!(
            line.contains("2500 ms")
                && line.contains("[cluster] relay_hello_timeout_ms")
                && line.contains("29 bytes"),
            "{line}"
        );
        assert_eq!(
            Failure::Closed { got: 0 }.to_string(),
            "the peer closed it without sending a hello"
        );
    }
}
