//! The wire-level steps the server session and the push client share: the
//! handshake, and protocol control messages (types 1 to 6).

use bytes::BytesMut;
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult};
use rml_rtmp::messages::{MessagePayload, RtmpMessage, UserControlEventType};
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;

use crate::chunk::{ChunkReader, Message};
use crate::error::{Error, Result};

/// Feeds bytes to the handshake and queues its response in `out`. Returns
/// the bytes that followed a completed handshake, or `None` while it is
/// still in progress.
pub(crate) fn handshake_input(
    hs: &mut Handshake,
    data: &[u8],
    out: &mut BytesMut,
) -> Result<Option<Vec<u8>>> {
    match hs.process_bytes(data) {
        Err(e) => Err(Error::Handshake {
            ctx: Default::default(),
            reason: format!("{e:?}"),
        }),
        Ok(HandshakeProcessResult::InProgress { response_bytes }) => {
            out.extend_from_slice(&response_bytes);
            Ok(None)
        }
        Ok(HandshakeProcessResult::Completed {
            response_bytes,
            remaining_bytes,
        }) => {
            out.extend_from_slice(&response_bytes);
            Ok(Some(remaining_bytes))
        }
    }
}

/// Serializes a control or command message with `rml_rtmp`'s chunk
/// serializer (its own chunk streams and header compression) into `out`.
pub(crate) fn send(
    writer: &mut ChunkSerializer,
    out: &mut BytesMut,
    message: RtmpMessage,
    stream_id: u32,
) -> Result<()> {
    let payload = MessagePayload::from_rtmp_message(message, RtmpTimestamp::new(0), stream_id)
        .map_err(|e| Error::protocol(format!("cannot encode a message: {e:?}")))?;
    let packet = writer
        .serialize(&payload, false, false)
        .map_err(|e| Error::protocol(format!("cannot serialize a message: {e:?}")))?;
    out.extend_from_slice(&packet.bytes);
    Ok(())
}

/// An AMF0 command message (`connect`, `onStatus`, `_result`, …).
pub(crate) fn amf0_command(
    name: &str,
    transaction: f64,
    object: Amf0Value,
    args: Vec<Amf0Value>,
) -> RtmpMessage {
    RtmpMessage::Amf0Command {
        command_name: name.to_string(),
        transaction_id: transaction,
        command_object: object,
        additional_arguments: args,
    }
}

/// Decodes a control or command message with `rml_rtmp`'s message types.
pub(crate) fn decode(m: &Message) -> Result<RtmpMessage> {
    let payload = MessagePayload {
        timestamp: RtmpTimestamp::new(m.timestamp),
        message_stream_id: m.stream_id,
        type_id: m.type_id,
        data: m.payload.clone(),
    };
    payload
        .to_rtmp_message()
        .map_err(|e| Error::message(format!("control message type {}: {e:?}", m.type_id)))
}

/// Counts the bytes received and says when the peer's acknowledgement
/// window (its Window Acknowledgement Size) calls for an Acknowledgement.
#[derive(Debug, Default)]
pub(crate) struct Acknowledger {
    window: Option<u32>,
    received: u64,
    acked: u64,
}

impl Acknowledger {
    /// `n` more bytes arrived from the peer.
    pub(crate) fn received(&mut self, n: usize) {
        self.received += n as u64;
    }

    /// The Acknowledgement to send now, if a whole window went unacknowledged.
    pub(crate) fn due(&mut self) -> Option<RtmpMessage> {
        let window = self.window?;
        if self.received - self.acked < u64::from(window) {
            return None;
        }
        self.acked = self.received;
        Some(RtmpMessage::Acknowledgement {
            // The sequence number wraps at 32 bits, as the protocol's does.
            sequence_number: self.received as u32,
        })
    }
}

/// Applies a control message (type ids 1 to 6) to the chunk reader and the
/// peer's acknowledgement window; returns the reply to send, if any (a ping
/// response).
pub(crate) fn apply(
    m: &Message,
    reader: &mut ChunkReader,
    acks: &mut Acknowledger,
) -> Result<Option<RtmpMessage>> {
    match m.type_id {
        1 => match decode(m)? {
            RtmpMessage::SetChunkSize { size } => reader.set_chunk_size(size)?,
            _ => return Err(Error::message("bad Set Chunk Size")),
        },
        2 => {
            if let RtmpMessage::Abort { stream_id } = decode(m)? {
                reader.abort(stream_id);
            }
        }
        4 => {
            if let RtmpMessage::UserControl {
                event_type: UserControlEventType::PingRequest,
                timestamp,
                ..
            } = decode(m)?
            {
                return Ok(Some(RtmpMessage::UserControl {
                    event_type: UserControlEventType::PingResponse,
                    stream_id: None,
                    buffer_length: None,
                    timestamp,
                }));
            }
        }
        5 => {
            if let RtmpMessage::WindowAcknowledgement { size } = decode(m)? {
                acks.window = (size > 0).then_some(size);
            }
        }
        // Acknowledgement (3), Set Peer Bandwidth (6): checked, nothing to do.
        _ => {
            decode(m)?;
        }
    }
    Ok(None)
}

#[cfg(test)]
mod acknowledger_tests {
    use super::Acknowledger;
    use rml_rtmp::messages::RtmpMessage;

    #[test]
    fn acknowledges_once_per_window_and_not_without_one() {
        let mut acks = Acknowledger::default();
        acks.received(10_000);
        assert!(acks.due().is_none(), "no window announced");
        acks.window = Some(2_500);
        assert!(matches!(
            acks.due(),
            Some(RtmpMessage::Acknowledgement {
                sequence_number: 10_000
            })
        ));
        acks.received(2_499);
        assert!(acks.due().is_none(), "less than a window since");
        acks.received(1);
        assert!(matches!(
            acks.due(),
            Some(RtmpMessage::Acknowledgement {
                sequence_number: 12_500
            })
        ));
    }
}
