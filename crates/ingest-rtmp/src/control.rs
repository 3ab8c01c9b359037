//! Protocol control messages (types 1 to 6): handled the same way by the
//! server session and the push client.

use rml_rtmp::messages::{MessagePayload, RtmpMessage, UserControlEventType};
use rml_rtmp::time::RtmpTimestamp;

use crate::chunk::{ChunkReader, Message};
use crate::error::{Error, Result};

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

/// Applies a control message (type ids 1 to 6) to the chunk reader and the
/// peer's acknowledgement window; returns the reply to send, if any (a ping
/// response).
pub(crate) fn apply(
    m: &Message,
    reader: &mut ChunkReader,
    peer_window: &mut Option<u32>,
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
                *peer_window = (size > 0).then_some(size);
            }
        }
        // Acknowledgement (3), Set Peer Bandwidth (6): checked, nothing to do.
        _ => {
            decode(m)?;
        }
    }
    Ok(None)
}
