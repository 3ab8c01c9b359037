//! The edge side of the relay: connect to the origin, say hello, and
//! republish what comes into the local kernel.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use tidewater_core::time::TimestampWrap;
use tidewater_core::{Credentials, EndReason, Engine, PublishSession, Request, StreamKey};
use tokio::net::TcpStream;

use super::VERSION;
use super::codec::{Message, RefuseCode};
use super::server::{PING_EVERY, RELAY_PROTOCOL, read_message, write_message};
use crate::error::{Error, Result};

/// How long the origin may stay silent (it pings every second).
const SILENCE: Duration = Duration::from_secs(5);
/// How long a connection to an origin may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How a pull from one origin ended.
#[derive(Debug)]
pub enum PullOutcome {
    /// The origin's stream ended.
    Ended(EndReason),
    /// The origin does not have the stream (any more).
    NotFound,
}

/// Pulls `key` from the origin at `origin` and publishes it into `engine`
/// through `session` (opened on the first catalog when `None`, kept across
/// calls so readers here see one publish that goes on when the origin
/// changes). Runs until the origin's stream ends or the connection fails;
/// drop the future to stop it.
pub async fn pull(
    engine: &Engine,
    key: &StreamKey,
    origin: SocketAddr,
    node: &str,
    secret: &str,
    session: &mut Option<PublishSession>,
) -> Result<PullOutcome> {
    let mut socket = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(origin))
        .await
        .map_err(|_| {
            Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no connection to the origin's relay within {}s",
                    CONNECT_TIMEOUT.as_secs()
                ),
            ))
        })??;
    socket.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    write_message(
        &mut socket,
        &mut BytesMut::new(),
        &Message::Hello {
            version: VERSION,
            node: node.to_string(),
            token: secret.to_string(),
            key: key.to_string(),
        },
    )
    .await?;
    match read_message(&mut socket, &mut buf, SILENCE).await? {
        Some(Message::Accepted { generation }) => {
            tracing::info!(stream = %key, %origin, generation, "pulling from the origin");
        }
        Some(Message::Refused {
            code: RefuseCode::NotFound,
            ..
        }) => return Ok(PullOutcome::NotFound),
        Some(Message::Refused { reason, .. }) => return Err(Error::Refused { origin, reason }),
        _ => {
            return Err(Error::Malformed(
                "the origin answered the hello with something else",
            ));
        }
    }
    debug_assert!(PING_EVERY < SILENCE);
    loop {
        let Some(msg) = read_message(&mut socket, &mut buf, SILENCE).await? else {
            return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
        };
        match msg {
            Message::Catalog(mut tracks) => {
                // The origin's kernel already unwrapped the timestamps.
                for t in &mut tracks {
                    t.wrap = TimestampWrap::None;
                }
                let s = match session {
                    Some(s) => s,
                    None => {
                        let req = Request::new(key.clone(), RELAY_PROTOCOL)
                            .credentials(Credentials::Token(secret.to_string()))
                            .peer(origin)
                            .user(format!("origin:{origin}"));
                        session.insert(engine.open_publish(req).await?)
                    }
                };
                s.set_catalog(tracks)?;
            }
            Message::Frame(frame) => {
                if let Some(s) = session {
                    s.publish(frame)?;
                }
            }
            Message::End(reason) => return Ok(PullOutcome::Ended(reason)),
            // The timestamps jump; the kernel's clock rebases them.
            Message::Discontinuity { .. } | Message::Ping => {}
            Message::Hello { .. } | Message::Accepted { .. } | Message::Refused { .. } => {
                return Err(Error::Malformed("unexpected message from the origin"));
            }
        }
    }
}
