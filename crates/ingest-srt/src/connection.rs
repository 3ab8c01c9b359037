//! One accepted SRT connection: srt-protocol's [`DuplexConnection`] driven
//! by a task of its own, fed the packets the listener routes to it, sending
//! on the listener's UDP socket.
//!
//! A panic in srt-protocol's connection code ends this task only: the
//! connection's data channels close and its publish or read ends; every
//! other connection and the listener go on.

// This module reads what the network sends: no panics on it.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::mpsc;
use futures::{SinkExt, Stream, StreamExt};
use srt_protocol::connection::{Connection, DuplexConnection};
use srt_protocol::packet::{ControlPacket, ControlTypes, Packet, ReceivePacketError, TimeStamp};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::outbox::Outbox;

/// Packets the listener routes to one connection, waiting for its task.
pub(crate) const ROUTED_PACKETS: usize = 1024;
/// Messages waiting between a connection's task and its user, each way.
const DATA_QUEUE: usize = 128;

/// A message: its bytes, and the time it was made (for TSBPD).
pub(crate) type Message = (Instant, Bytes);

/// A connection's packets, as the listener routes them.
pub(crate) type Routed = tokio::sync::mpsc::Sender<(Packet, SocketAddr)>;

/// An accepted connection: a stream of the messages received, and a sink
/// for the messages to send (each with its source time).
#[derive(Debug)]
pub(crate) struct SrtConnection {
    received: mpsc::Receiver<Message>,
    to_send: mpsc::Sender<Message>,
    /// Ends the connection at once (see [`SrtConnection::shut_down`]).
    shut: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<()>,
    latency: Duration,
}

impl SrtConnection {
    /// Starts the connection's task; returns it and the sender of its packets.
    pub(crate) fn spawn(socket: Arc<UdpSocket>, connection: Connection) -> (SrtConnection, Routed) {
        let (routed, packets) = tokio::sync::mpsc::channel(ROUTED_PACKETS);
        let (received_tx, received) = mpsc::channel(DATA_QUEUE);
        let (to_send, to_send_rx) = mpsc::channel(DATA_QUEUE);
        let (shut, shut_rx) = tokio::sync::oneshot::channel();
        let latency = connection.settings.send_tsbpd_latency;
        let task = tokio::spawn(run(
            DuplexConnection::new(connection),
            socket,
            packets,
            to_send_rx,
            received_tx,
            shut_rx,
        ));
        (
            SrtConnection {
                received,
                to_send,
                shut: Some(shut),
                task,
                latency,
            },
            routed,
        )
    }

    /// The messages received, and the sink of the messages to send.
    pub(crate) fn split_mut(
        &mut self,
    ) -> (&mut mpsc::Receiver<Message>, &mut mpsc::Sender<Message>) {
        (&mut self.received, &mut self.to_send)
    }

    /// How long the peer holds what it receives before playing it
    /// (the connection's TSBPD latency towards it).
    pub(crate) fn latency(&self) -> Duration {
        self.latency
    }

    /// Ends the connection: what was queued is sent, then srt-protocol
    /// closes it (a shutdown to the peer); waits for the task to end.
    pub(crate) async fn close(&mut self) {
        self.to_send.close_channel();
        let _ = (&mut self.task).await;
    }

    /// Ends the connection now: a shutdown goes to the peer at once, and
    /// nothing queued is sent any more (srt-protocol's own close first
    /// flushes what the peer has not acknowledged, for up to twice the
    /// latency). What a kick does. Waits for the task to end.
    pub(crate) async fn shut_down(&mut self) {
        self.to_send.close_channel();
        if let Some(shut) = self.shut.take() {
            let _ = shut.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Stream for SrtConnection {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.received.poll_next_unpin(cx)
    }
}

/// Most inputs of one kind (routed packets, messages to send) taken in one
/// wake-up before the connection's output goes out.
const INPUTS_PER_WAKE: usize = 64;

async fn run(
    mut connection: DuplexConnection,
    socket: Arc<UdpSocket>,
    mut packets: tokio::sync::mpsc::Receiver<(Packet, SocketAddr)>,
    mut to_send: mpsc::Receiver<Message>,
    mut received: mpsc::Sender<Message>,
    mut shut: tokio::sync::oneshot::Receiver<()>,
) {
    let mut outbox = Outbox::default();
    let (mut routed_open, mut sending_open, mut shut_open) = (true, true, true);
    while connection.is_open() {
        let now = Instant::now();
        // Statistics are not read; their timer is reset like the others.
        let _ = connection.should_update_statistics(now);
        // The timers first: the send timer releases what the inputs queued,
        // so it goes out in this wake-up's batch, not in one more wake-up.
        let wake = connection.check_timers(now);
        while let Some((packet, to)) = connection.next_packet(now) {
            outbox.push(&packet, to);
        }
        outbox.flush(&socket).await;
        while let Some(data) = connection.next_data(now) {
            if !received.is_closed() {
                let _ = received.send(data).await;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {}
            packet = packets.recv(), if routed_open => {
                let packet = packet.ok_or_else(|| {
                    routed_open = false;
                    ReceivePacketError::Io(std::io::ErrorKind::NotConnected.into())
                });
                let now = Instant::now();
                connection.handle_packet_input(now, packet);
                // What else arrived meanwhile (a reader's ACKs, a NAK) is
                // handled in the same wake-up.
                for _ in 1..INPUTS_PER_WAKE {
                    match packets.try_recv() {
                        Ok(packet) => connection.handle_packet_input(now, Ok(packet)),
                        Err(_) => break,
                    }
                }
            }
            data = to_send.next(), if sending_open => {
                sending_open = data.is_some();
                let now = Instant::now();
                connection.handle_data_input(now, data);
                // A frame is a dozen messages, queued together: taken together.
                for _ in 1..DATA_QUEUE {
                    if !sending_open {
                        break;
                    }
                    match to_send.try_recv() {
                        Ok(data) => connection.handle_data_input(now, Some(data)),
                        Err(mpsc::TryRecvError::Closed) => {
                            sending_open = false;
                            connection.handle_data_input(now, None);
                        }
                        Err(mpsc::TryRecvError::Empty) => break,
                    }
                }
            }
            now = &mut shut, if shut_open => {
                shut_open = false;
                // The sender dropped without asking: the ordinary close goes on.
                if now.is_ok() {
                    let settings = connection.settings();
                    let elapsed = Instant::now().saturating_duration_since(settings.socket_start_time);
                    let shutdown = Packet::Control(ControlPacket {
                        // SRT timestamps are microseconds since the connection began, wrapping.
                        timestamp: TimeStamp::from_micros(elapsed.as_micros() as u32),
                        dest_sockid: settings.remote_sockid,
                        control_type: ControlTypes::Shutdown,
                    });
                    outbox.push(&shutdown, settings.remote);
                    outbox.flush(&socket).await;
                    break;
                }
            }
        }
    }
    received.close_channel();
}
