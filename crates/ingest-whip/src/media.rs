//! The media worker: one task owns every peer's `str0m::Rtc` and the UDP
//! sockets of the one media port, demultiplexes datagrams to peers, and
//! turns received RTP into kernel frames.
//!
//! # Demultiplexing
//!
//! A datagram from a remote address already bound to a peer goes to that
//! peer. Any other one is offered to each peer's [`Rtc::accepts`], which
//! matches a STUN binding request by its ICE username (the answer's
//! `ice-ufrag` is unique per session) and other traffic by the peer's
//! validated candidate pairs; the first peer that accepts binds the
//! address. A datagram no peer accepts (garbage, a stale peer, a scan) is
//! counted and dropped: it never reaches a session.
//!
//! Socket readers hand datagrams to the worker through a bounded channel
//! ([`DATAGRAM_QUEUE`]); when the worker falls behind, datagrams are
//! dropped at the reader (as a full socket buffer would) and counted.
// Reads network input (every datagram of the media port): no indexing,
// unwrap, expect or panic a peer could reach (issue 18).
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use str0m::media::Pt;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};
use tidewater_core::{
    CancellationToken, Codec, EndReason, EventRef, PublishSession, RecvError, StreamKey,
    Subscription,
};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::config::WhipConfig;
use crate::ingest::{Ingest, IngestOutput, MediaCodec, packet};
use crate::junk::{Junk, Strangers};
use crate::keyframes::{KeyframeRequests, Reason};
use crate::qos::{LinkQos, QosBoard};
use crate::reorder::Reorder;
use crate::send::{Outbox, SendStats};
use crate::tcp::Conns;
use crate::whep::{Item, RTP_FORMAT, SharedPayloads, items, packetize};
use crate::whep_audio::{self, AacAudio};
use tidewater_media::rtp::RtpPacket;

/// Datagrams queued from the socket readers to the worker.
pub const DATAGRAM_QUEUE: usize = 4096;
/// The largest datagram read (bytes); WebRTC stays under 1500.
const MAX_DATAGRAM: usize = 2048;
/// The most viewer media commands handled in one wake-up of the worker
/// (a frame for this many viewers is sent in one batch).
const MEDIA_BATCH: usize = 1024;
/// The most datagrams handled in one wake-up of the worker.
const DATAGRAM_BATCH: usize = 256;
/// Without any timeout from the peers, the worker wakes this often.
const IDLE_TICK: Duration = Duration::from_millis(500);
/// A video track that has given no keyframe this long after its first
/// packet gets a keyframe request.
const FIRST_KEYFRAME_WAIT: Duration = Duration::from_millis(500);

/// Counters of the media port.
#[derive(Debug, Default)]
pub struct MediaStats {
    /// Datagrams received on the media port.
    pub datagrams: AtomicU64,
    /// Datagrams no session accepted (garbage, unknown peers).
    pub unmatched: AtomicU64,
    /// Datagrams dropped because the worker was behind.
    pub overflow: AtomicU64,
    /// Keyframe requests (PLI) sent to publishers.
    pub keyframe_requests: AtomicU64,
    /// Frames published into the kernel.
    pub frames: AtomicU64,
    /// RTP packets written to viewers.
    pub sent: AtomicU64,
    /// The send path's datagrams, system calls and drops.
    pub send: SendStats,
    /// Each session's link figures from its peer's feedback.
    pub links: QosBoard,
}

/// A session's slot in the session count, released when dropped.
#[derive(Debug)]
pub(crate) struct Slot(pub(crate) Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A session the HTTP side negotiated, handed to the worker.
pub(crate) struct NewPeer {
    pub id: String,
    pub rtc: Rtc,
    /// A WHIP publisher's session.
    pub session: Option<PublishSession>,
    /// A WHEP viewer's subscription (read once the peer is connected),
    /// with the events already taken from it (the cached GOP, looked at
    /// before answering).
    pub subscription: Option<(Subscription, Vec<tidewater_core::Event>)>,
    /// A WHEP viewer's way back to its stream after a republish.
    pub resume: Option<Resume>,
    pub key: StreamKey,
    pub http_peer: Option<SocketAddr>,
    pub slot: Slot,
}

/// What the HTTP side asks the worker.
pub(crate) enum Command {
    Add(Box<NewPeer>),
    /// RTP payloads for a viewer (from its feeder).
    Media {
        id: String,
        items: Vec<Item>,
    },
    /// A viewer's stream ended.
    End {
        id: String,
        why: String,
    },
    /// Candidates trickled by a client (`PATCH`); answers whether the
    /// session exists for this stream.
    Trickle {
        id: String,
        key: StreamKey,
        candidates: Vec<str0m::Candidate>,
        reply: oneshot::Sender<bool>,
    },
    /// Ends a session; answers whether it existed for this stream.
    Remove {
        id: String,
        key: StreamKey,
        reply: oneshot::Sender<bool>,
    },
}

/// A media line of a viewer.
struct Line {
    codec: MediaCodec,
    mid: Mid,
    pt: Pt,
    seq: u64,
}

/// What a WHEP viewer has besides the common state.
struct Viewer {
    subscription: Option<(Subscription, Vec<tidewater_core::Event>)>,
    resume: Option<Resume>,
    lines: Vec<Line>,
    feeder: Option<tokio::task::AbortHandle>,
    media_tx: mpsc::Sender<Command>,
    /// Bytes sent to the viewer, reported to its subscription by the feeder.
    sent: Arc<AtomicU64>,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        if let Some(f) = &self.feeder {
            f.abort();
        }
    }
}

struct Peer {
    id: String,
    rtc: Rtc,
    session: Option<PublishSession>,
    viewer: Option<Viewer>,
    key: StreamKey,
    http_peer: Option<SocketAddr>,
    _slot: Slot,
    /// Where this peer's ICE-TCP transmits go.
    tcp: Arc<Conns>,
    ingest: Ingest,
    /// Media line → (track index, codec).
    tracks: HashMap<Mid, (usize, Codec)>,
    /// Per track index: packets back in sequence order.
    reorder: Vec<Reorder<RtpPacket>>,
    in_order: Vec<RtpPacket>,
    deadline: Instant,
    created: Instant,
    /// When the last datagram of this peer arrived.
    last_received: Instant,
    connected: bool,
    /// When this publisher is asked for keyframes (timer, losses, viewers).
    keyframe_requests: KeyframeRequests,
    /// PLI, or FIR when the publisher's video negotiated only that.
    keyframe_kind: KeyframeRequestKind,
    /// A publisher's video SSRC (for keyframe requests).
    video_ssrc: Option<str0m::rtp::Ssrc>,
    /// A viewer asked for a keyframe since the worker last looked.
    viewer_wants_keyframe: bool,
    first_video: Option<Instant>,
    /// What the peer's feedback says of its link.
    link: LinkQos,
    out: Vec<IngestOutput>,
    /// Why the session ends (set once).
    ended: Option<String>,
}

impl Peer {
    fn who(&self) -> String {
        tidewater_http::who(self.http_peer)
    }

    /// Feeds one input and drains the output (the one-mutation-then-drain
    /// contract of str0m).
    fn input(&mut self, input: Input<'_>, sockets: &Outbox, stats: &MediaStats) {
        if let Err(e) = self.rtc.handle_input(input) {
            self.end(format!("input refused: {e}"));
            return;
        }
        self.drain(sockets, stats);
    }

    /// Asks this publisher for a keyframe for `reason`, within the one
    /// rate limit all requests share; whether it was sent.
    fn request_keyframe(&mut self, now: Instant, reason: Reason, stats: &MediaStats) -> bool {
        let Some(ssrc) = self.video_ssrc else {
            return false;
        };
        // The schedule moves on even when the request cannot go out, so
        // that a due timer never keeps the worker awake.
        let allowed = match reason {
            Reason::Timer => self.keyframe_requests.handle_timeout(now),
            _ => self.keyframe_requests.request(now, reason),
        };
        let kind = self.keyframe_kind;
        let mut api = self.rtc.direct_api();
        let Some(rx) = api.stream_rx(&ssrc).filter(|_| allowed) else {
            return false;
        };
        rx.request_keyframe(kind);
        stats.keyframe_requests.fetch_add(1, Ordering::Relaxed);
        debug!(peer = %self.who(), stream = %self.key, "whip: keyframe requested ({kind:?}, {reason:?})");
        true
    }

    /// When this peer's worker wants to run next: str0m's timeout, or a
    /// publisher's keyframe timer.
    fn wake_at(&self) -> Instant {
        match self.keyframe_requests.poll_timeout() {
            Some(t) if self.session.is_some() && self.video_ssrc.is_some() => t.min(self.deadline),
            _ => self.deadline,
        }
    }

    /// Writes a viewer's payloads (shared by every viewer) as its RTP.
    fn send_media(
        &mut self,
        items: Vec<Item>,
        shared: &mut SharedPayloads,
        sockets: &Outbox,
        stats: &MediaStats,
    ) {
        let now = Instant::now();
        for item in items {
            let Some(v) = self.viewer.as_mut() else {
                return;
            };
            let Some(line) = v.lines.iter_mut().find(|l| l.codec == item.codec) else {
                continue;
            };
            let (mid, pt, seq) = (line.mid, line.pt, line.seq);
            line.seq += 1;
            let write = RtpWrite::new(
                pt,
                SeqNo::from(seq),
                item.time,
                now,
                shared.get(&item.payload),
            )
            .marker(item.marker)
            .nackable(true);
            if let Some(tx) = self.rtc.direct_api().stream_tx_by_mid(mid, None) {
                if item.codec == MediaCodec::H264 && self.link.rtx_ssrc.is_none() {
                    self.link.rtx_ssrc = tx.rtx().map(|s| *s);
                }
                tx.write_rtp(write);
            }
            stats.sent.fetch_add(1, Ordering::Relaxed);
        }
        // One drain for the frame: `write_rtp` only queues the packet, and
        // each drain ends by asking every part of the state machine for its
        // next timeout, which per packet was a measurable share at 500
        // viewers.
        self.drain(sockets, stats);
    }

    fn end(&mut self, why: String) {
        if self.ended.is_none() {
            self.ended = Some(why);
        }
    }

    fn drain(&mut self, sockets: &Outbox, stats: &MediaStats) {
        // Bounded: a well-behaved Rtc always ends with a timeout.
        for _ in 0..100_000 {
            let output = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    self.end(format!("webrtc error: {e}"));
                    return;
                }
            };
            match output {
                Output::Timeout(t) => {
                    self.deadline = t;
                    return;
                }
                Output::Transmit(t) => {
                    if let Some(v) = &self.viewer {
                        v.sent.fetch_add(t.contents.len() as u64, Ordering::Relaxed);
                        self.link.sent(&t.contents);
                    }
                    if t.proto == Protocol::Tcp {
                        self.tcp.send(t.destination, t.contents.into(), &stats.send);
                    } else {
                        // Sent at the end of the worker's wake-up, batched.
                        sockets.push(t.source, t.destination, t.contents.into(), &stats.send);
                    }
                }
                Output::Event(event) => self.event(event, stats),
            }
        }
        self.end("the WebRTC state machine did not settle".into());
    }

    fn event(&mut self, event: Event, stats: &MediaStats) {
        if self.link.observe(&event) {
            stats.links.set(&self.link);
            return;
        }
        match event {
            Event::Connected => {
                self.connected = true;
                info!(peer = %self.who(), stream = %self.key, session = %self.id, "webrtc: connected");
                if let Some(v) = &mut self.viewer
                    && let Some((subscription, taken)) = v.subscription.take()
                {
                    let task = tokio::spawn(feed(
                        self.id.clone(),
                        self.key.to_string(),
                        subscription,
                        taken,
                        (v.media_tx.clone(), Arc::clone(&v.sent)),
                        v.resume.take(),
                    ));
                    v.feeder = Some(task.abort_handle());
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.end("ICE disconnected".into());
            }
            Event::MediaAdded(m) if self.viewer.is_some() => {
                // A video line may have several codecs answered: one line
                // per codec, the stream's frames pick theirs.
                let wanted: &[(str0m::format::Codec, MediaCodec)] = match m.kind {
                    MediaKind::Video => &[
                        (str0m::format::Codec::H264, MediaCodec::H264),
                        (str0m::format::Codec::Vp8, MediaCodec::Vp8),
                        (str0m::format::Codec::Vp9, MediaCodec::Vp9),
                        (str0m::format::Codec::Av1, MediaCodec::Av1),
                        (str0m::format::Codec::H265, MediaCodec::H265),
                    ],
                    MediaKind::Audio => &[(str0m::format::Codec::Opus, MediaCodec::Opus)],
                };
                for &(wanted, codec) in wanted {
                    let pt = self.rtc.media(m.mid).and_then(|media| {
                        let config = self.rtc.codec_config();
                        media.remote_pts().iter().copied().find(|pt| {
                            config
                                .find(|p| p.pt() == *pt)
                                .is_some_and(|p| crate::negotiate::sends(p.spec(), wanted))
                        })
                    });
                    if let (Some(pt), Some(v)) = (pt, self.viewer.as_mut()) {
                        debug!(session = %self.id, "whep: line {} sends {codec:?} as PT {pt}", m.mid);
                        v.lines.push(Line {
                            codec,
                            mid: m.mid,
                            pt,
                            seq: 1,
                        });
                    }
                }
            }
            Event::RtpPacket(_) if self.viewer.is_some() => {}
            Event::KeyframeRequest(_) if self.viewer.is_some() => {
                self.viewer_wants_keyframe = true;
            }
            Event::MediaAdded(m) => {
                // The line's codec: the answer has one video codec (see
                // `negotiate::answer`) and Opus.
                let codec = match m.kind {
                    MediaKind::Video => self.rtc.media(m.mid).and_then(|media| {
                        let config = self.rtc.codec_config();
                        media.remote_pts().iter().find_map(|pt| {
                            config
                                .find(|p| p.pt() == *pt)
                                .and_then(|p| crate::negotiate::kernel_codec(p.spec().codec))
                                .filter(|c| *c != Codec::Opus)
                        })
                    }),
                    MediaKind::Audio => Some(Codec::Opus),
                };
                let Some(codec) = codec else {
                    return;
                };
                if let Some(index) = self.ingest.add_track(codec) {
                    debug!(peer = %self.who(), stream = %self.key, "whip: {} track", codec.name());
                    self.tracks.insert(m.mid, (index, codec));
                    self.reorder.resize_with(index + 1, Reorder::default);
                }
            }
            Event::RtpPacket(p) => {
                let mid = self
                    .rtc
                    .direct_api()
                    .stream_rx(&p.header.ssrc)
                    .map(|s| s.mid())
                    .or(p.header.ext_vals.mid);
                let Some(&(index, codec)) = mid.and_then(|mid| self.tracks.get(&mid)) else {
                    return;
                };
                // Only the negotiated codec's payload type (not RTX, FEC, …).
                let wanted = self.rtc.codec_config().find(|params| {
                    params.pt() == p.header.payload_type
                        && crate::negotiate::kernel_codec(params.spec().codec) == Some(codec)
                });
                if wanted.is_none() {
                    return;
                }
                let ssrc = p.header.ssrc;
                let video = codec != Codec::Opus;
                if video && self.video_ssrc.is_none() {
                    // RFC 5104: FIR only when that is all the publisher takes.
                    if wanted.is_some_and(|params| !params.fb_pli() && params.fb_fir()) {
                        self.keyframe_kind = KeyframeRequestKind::Fir;
                    }
                    self.keyframe_requests.video_started(p.timestamp);
                }
                if video {
                    self.video_ssrc = Some(ssrc);
                }
                let rtp = packet(
                    p.header.marker,
                    *p.header.payload_type,
                    p.header.sequence_number,
                    p.header.timestamp,
                    *ssrc,
                    Bytes::from_owner(p.payload),
                );
                let now = p.timestamp;
                self.out.clear();
                let mut in_order = std::mem::take(&mut self.in_order);
                if let Some(r) = self.reorder.get_mut(index) {
                    r.push(*p.seq_no, rtp, &mut in_order);
                }
                let mut wants_keyframe = false;
                let keyframes_before = self.ingest.keyframes(index);
                for rtp in in_order.drain(..) {
                    match self.ingest.push(index, rtp, now, &mut self.out) {
                        Ok(pushed) => wants_keyframe |= pushed.wants_keyframe,
                        Err(e) => {
                            debug!(peer = %self.who(), stream = %self.key, "whip: RTP packet dropped: {e}");
                        }
                    }
                }
                self.in_order = in_order;
                if self.ingest.keyframes(index) > keyframes_before {
                    self.keyframe_requests.keyframe(now);
                }
                if video {
                    let first = *self.first_video.get_or_insert(now);
                    if self.ingest.keyframes(index) == 0
                        && now.saturating_duration_since(first) >= FIRST_KEYFRAME_WAIT
                    {
                        wants_keyframe = true;
                    }
                }
                let mut outputs = std::mem::take(&mut self.out);
                for output in outputs.drain(..) {
                    let Some(session) = self.session.as_mut() else {
                        break;
                    };
                    let result = match output {
                        IngestOutput::Catalog(tracks) => session.set_catalog(tracks).map(drop),
                        IngestOutput::Frame(frame) => {
                            stats.frames.fetch_add(1, Ordering::Relaxed);
                            session.publish(frame)
                        }
                    };
                    if let Err(e) = result {
                        self.end(format!("publish ended: {e}"));
                        break;
                    }
                }
                self.out = outputs;
                if wants_keyframe {
                    self.request_keyframe(now, Reason::Loss, stats);
                }
            }
            _ => {}
        }
    }
}

/// How a viewer's feeder picks the stream up again after its publish
/// ends: the kernel context and the viewer's read request (a follower
/// waits up to the stream's follow grace for the next publish).
pub(crate) type Resume = (tidewater_core::IngestContext, tidewater_core::Request);

/// Keeps a viewer's RTP timestamps going forward across a republish (the
/// new publish's clock starts anew): per media line, an offset added to
/// the stream's RTP time, set at the first frame after a discontinuity so
/// that it follows the last one sent by one frame.
#[derive(Debug, Default)]
struct Timeline {
    video: LineTime,
    audio: LineTime,
}

/// One media line's part of a [`Timeline`].
#[derive(Debug, Default)]
struct LineTime {
    offset: u32,
    last: Option<u32>,
    rebase: bool,
}

impl Timeline {
    fn discontinuity(&mut self) {
        self.video.rebase = true;
        self.audio.rebase = true;
    }

    fn apply(&mut self, batch: &mut [Item]) {
        let Some(first) = batch.first() else {
            return;
        };
        let (line, step) = match first.codec {
            MediaCodec::Opus => (&mut self.audio, 960u32),
            _ => (&mut self.video, 3000u32),
        };
        if std::mem::take(&mut line.rebase)
            && let Some(last) = line.last
        {
            line.offset = last.wrapping_add(step).wrapping_sub(first.time);
        }
        for item in batch.iter_mut() {
            item.time = item.time.wrapping_add(line.offset);
        }
        line.last = batch.last().map(|i| i.time);
    }
}

/// Reads a viewer's subscription (from the cached GOP) and hands the
/// stream's shared RTP payloads of each frame to the worker. A full queue
/// blocks here, so a slow viewer lags in the kernel and is skipped to a
/// keyframe there. When the publish ends the viewer follows the stream to
/// its next publish within the follow grace (`resume`), its timestamps
/// continued ([`Timeline`]).
async fn feed(
    id: String,
    stream: String,
    mut subscription: Subscription,
    taken: Vec<tidewater_core::Event>,
    (tx, sent): (mpsc::Sender<Command>, Arc<AtomicU64>),
    resume: Option<Resume>,
) {
    let mut viewer = FeedState {
        aac: AacAudio::new(stream),
        id,
        tx,
        timeline: Timeline::default(),
        warned: false,
        sent,
        reported: 0,
    };
    viewer
        .aac
        .generation(subscription.generation_state::<whep_audio::State>());
    for event in taken {
        if let tidewater_core::Event::Frame(f) = event
            && !viewer.frame(f.as_ref()).await
        {
            return;
        }
        subscription.record_sent(viewer.unreported());
    }
    let generation = subscription.generation();
    let ended = loop {
        let frame = match subscription.recv_ref().await {
            Ok(EventRef::Frame(f)) => f,
            Ok(_) => continue,
            Err(e) => break e,
        };
        if !viewer.frame(frame).await {
            return;
        }
        subscription.record_sent(viewer.unreported());
    };
    let resumable = matches!(ended, RecvError::Ended(reason)
        if !matches!(reason, EndReason::Shutdown | EndReason::Kicked) && !subscription.is_kicked());
    drop(subscription);
    let follower = match resume {
        Some((ctx, request)) if resumable => ctx.follow(request).await.ok(),
        _ => None,
    };
    let Some(mut follower) = follower else {
        viewer.end(ended.to_string()).await;
        return;
    };
    info!(session = %viewer.id, "whep: the publish ended ({ended}); waiting for the next one");
    viewer.timeline.discontinuity();
    loop {
        let event = match follower.recv().await {
            Ok(e) => e,
            Err(e) => {
                viewer.end(e.to_string()).await;
                return;
            }
        };
        // A follower made between publishes may first read what is left
        // of the one this viewer already played.
        if follower.generation() <= generation {
            continue;
        }
        follower.record_sent(viewer.unreported());
        match event {
            tidewater_core::Event::Frame(f) if !viewer.frame(f.as_ref()).await => return,
            tidewater_core::Event::Discontinuity { .. } => {
                viewer.timeline.discontinuity();
                if let Some(state) = follower.generation_state::<whep_audio::State>() {
                    viewer.aac.generation(state);
                }
            }
            _ => {}
        }
    }
}

/// A feeder's own state.
struct FeedState {
    id: String,
    tx: mpsc::Sender<Command>,
    timeline: Timeline,
    /// The AAC → Opus conversion this viewer holds (an AAC stream).
    aac: AacAudio,
    /// Whether the "not carried" line was logged.
    warned: bool,
    /// Bytes the worker sent the viewer, and how many of them the
    /// subscription was told of.
    sent: Arc<AtomicU64>,
    reported: u64,
}

impl FeedState {
    /// Bytes sent since the last call: what the subscription is told
    /// (`tidewater_stream_bytes_out_total`, the session's `bytes_sent`).
    fn unreported(&mut self) -> usize {
        let sent = self.sent.load(Ordering::Relaxed);
        let new = sent.saturating_sub(self.reported);
        self.reported = sent;
        usize::try_from(new).unwrap_or(usize::MAX)
    }

    /// Sends one frame's payloads; `false` once the viewer is gone or ended.
    async fn frame(&mut self, f: tidewater_core::FrameRef<'_>) -> bool {
        let mut batch = Vec::new();
        if let Err(why) = frame_items(f, &mut batch) {
            self.end(why).await;
            return false;
        }
        if batch.is_empty() && self.aac.items(f, &mut batch) && batch.is_empty() {
            // The conversion waits for more input.
            return true;
        }
        if batch.is_empty() {
            if !self.warned && crate::negotiate::whep_codec(f.codec).is_none() {
                self.warned = true;
                let what = if f.codec == Codec::Aac && whep_audio::CARRIES_AAC {
                    "AAC audio cannot be converted to Opus (see the transcode log line): video only"
                        .to_owned()
                } else if f.codec == Codec::Aac {
                    "AAC audio is not carried (WebRTC needs Opus and no AAC to Opus transcoder exists yet): video only".to_owned()
                } else {
                    format!("{:?} is not carried over WebRTC", f.codec)
                };
                info!(session = %self.id, "whep: {what}");
            }
            return true;
        }
        self.timeline.apply(&mut batch);
        self.tx
            .send(Command::Media {
                id: self.id.clone(),
                items: batch,
            })
            .await
            .is_ok()
    }

    async fn end(&self, why: String) {
        let _ = self
            .tx
            .send(Command::End {
                id: self.id.clone(),
                why,
            })
            .await;
    }
}

/// The shared RTP payloads of one frame; an error ends the viewer.
fn frame_items(f: tidewater_core::FrameRef<'_>, batch: &mut Vec<Item>) -> Result<(), String> {
    if matches!(f.codec, Codec::H264 | Codec::H265) && f.pts != f.dts {
        return Err(B_FRAMES.to_string());
    }
    let Some(codec) = crate::negotiate::whep_codec(f.codec) else {
        return Ok(());
    };
    let timescale = f.catalog().track(f.track).map_or(1000, |t| t.timescale);
    let buffer = f.derived(RTP_FORMAT, packetize);
    items(&buffer, codec, f.pts, timescale, batch);
    Ok(())
}

/// Why a stream with B-frames is not played over WebRTC.
pub const B_FRAMES: &str = "the stream's H.264 (or H.265) has B-frames (presentation order \
     differs from decode order), which WebRTC players do not handle; publish without them \
     (x264, x265: -bf 0)";

/// A media socket and its local address.
pub(crate) type Socket = (SocketAddr, Arc<UdpSocket>);

/// A datagram from a socket reader.
pub(crate) struct Datagram {
    pub(crate) received: Instant,
    pub(crate) source: SocketAddr,
    pub(crate) destination: SocketAddr,
    pub(crate) data: Bytes,
    /// UDP, or TCP for a frame of an ICE-TCP connection ([`crate::tcp`]).
    pub(crate) proto: Protocol,
}

/// Reads one socket into the worker's queue until `shutdown`.
pub(crate) async fn read_socket(
    socket: Arc<UdpSocket>,
    tx: mpsc::Sender<Datagram>,
    stats: Arc<MediaStats>,
    shutdown: CancellationToken,
) {
    let Ok(local) = socket.local_addr() else {
        return;
    };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = socket.recv_from(&mut buf) => r,
        };
        match received {
            Ok((n, source)) => {
                stats.datagrams.fetch_add(1, Ordering::Relaxed);
                let datagram = Datagram {
                    received: Instant::now(),
                    source,
                    destination: local,
                    data: Bytes::copy_from_slice(buf.get(..n).unwrap_or_default()),
                    proto: Protocol::Udp,
                };
                match tx.try_send(datagram) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        stats.overflow.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
            // ICMP errors of earlier sends surface here on some systems.
            Err(e) => debug!("whip: UDP {local}: {e}"),
        }
    }
}

/// The worker (see the module docs); returns when `shutdown` is cancelled
/// or every sender is gone, ending every session.
#[allow(
    clippy::too_many_arguments,
    reason = "the sockets, channels, configuration and counters the worker owns, each made by `serve`"
)]
pub(crate) async fn run(
    sockets: Vec<Socket>,
    mut datagrams: mpsc::Receiver<Datagram>,
    mut commands: mpsc::Receiver<Command>,
    media: (mpsc::Sender<Command>, mpsc::Receiver<Command>),
    strangers: Strangers,
    tcp: Arc<Conns>,
    config: Arc<WhipConfig>,
    stats: Arc<MediaStats>,
    shutdown: CancellationToken,
) {
    let sockets = Outbox::new(sockets);
    let mut shared = SharedPayloads::default();
    let mut peers: HashMap<String, Peer> = HashMap::new();
    // By transport too: a TCP peer's address may equal a UDP one's.
    let mut by_addr: HashMap<(Protocol, SocketAddr), String> = HashMap::new();
    let (media_tx, mut media_rx) = media;
    loop {
        let now = Instant::now();
        let deadline = peers
            .values()
            .map(Peer::wake_at)
            .min()
            .unwrap_or(now + IDLE_TICK)
            .min(now + IDLE_TICK);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            command = media_rx.recv() => {
                // A frame comes as one command per viewer, all queued at
                // once: take what is queued before the sweep over every
                // peer below, which would otherwise run once per viewer
                // per frame (quadratic in viewers).
                let (mut next, mut handled) = (command, 0);
                while let Some(command) = next.take() {
                    match command {
                        Command::Media { id, items } => {
                            if let Some(peer) = peers.get_mut(&id) {
                                peer.send_media(items, &mut shared, &sockets, &stats);
                            }
                        }
                        Command::End { id, why } => {
                            if let Some(peer) = peers.get_mut(&id) {
                                peer.end(why);
                            }
                        }
                        _ => {}
                    }
                    handled += 1;
                    if handled < MEDIA_BATCH {
                        next = media_rx.try_recv().ok();
                    }
                }
            }
            command = commands.recv() => match command {
                None => break,
                Some(Command::Media { .. } | Command::End { .. }) => {}
                Some(Command::Add(new)) => {
                    let NewPeer { id, rtc, session, subscription, resume, key, http_peer, slot } = *new;
                    let viewer = subscription.map(|s| Viewer {
                        subscription: Some(s),
                        resume,
                        lines: Vec::new(),
                        feeder: None,
                        media_tx: media_tx.clone(),
                        sent: Arc::new(AtomicU64::new(0)),
                    });
                    let role = if session.is_some() { "whip" } else { "whep" };
                    let mut link = LinkQos::new(&id, role, &key.to_string());
                    // The id the API's sessions list has for it (a
                    // viewer's first subscription; a republish makes another).
                    link.kernel_session = session.as_ref().map(PublishSession::id).or_else(|| {
                        viewer
                            .as_ref()
                            .and_then(|v| v.subscription.as_ref())
                            .map(|(s, _)| s.id())
                    });
                    let mut peer = Peer {
                        id: id.clone(),
                        rtc,
                        session,
                        viewer,
                        key,
                        http_peer,
                        _slot: slot,
                        tcp: Arc::clone(&tcp),
                        ingest: Ingest::new(),
                        tracks: HashMap::new(),
                        reorder: Vec::new(),
                        in_order: Vec::new(),
                        deadline: now,
                        created: now,
                        last_received: now,
                        connected: false,
                        keyframe_requests: KeyframeRequests::new(
                            config.keyframe_interval,
                            config.pli_interval,
                        ),
                        keyframe_kind: KeyframeRequestKind::Pli,
                        video_ssrc: None,
                        viewer_wants_keyframe: false,
                        first_video: None,
                        link,
                        out: Vec::new(),
                        ended: None,
                    };
                    peer.drain(&sockets, &stats);
                    peers.insert(id, peer);
                }
                Some(Command::Trickle { id, key, candidates, reply }) => {
                    let found = peers.get_mut(&id).filter(|p| p.key == key && p.ended.is_none());
                    let existed = found.is_some();
                    if let Some(peer) = found {
                        for c in candidates {
                            peer.rtc.add_remote_candidate(c);
                        }
                        peer.drain(&sockets, &stats);
                    }
                    let _ = reply.send(existed);
                }
                Some(Command::Remove { id, key, reply }) => {
                    let found = peers.get_mut(&id).filter(|p| p.key == key);
                    let existed = found.is_some();
                    if let Some(peer) = found {
                        peer.end("ended by DELETE".into());
                    }
                    let _ = reply.send(existed);
                }
            },
            datagram = datagrams.recv() => {
                let Some(first) = datagram else { break };
                // Queued datagrams are taken in one wake-up too, so that
                // joins (ICE, DTLS) and feedback are not starved by the
                // batches of media commands above.
                let (mut next, mut handled) = (Some(first), 0);
                while let Some(d) = next.take() {
                    handled += 1;
                    if handled < DATAGRAM_BATCH {
                        next = datagrams.try_recv().ok();
                    }
                    let Ok(receive) = Receive::new(d.proto, d.source, d.destination, &d.data) else {
                        stats.unmatched.fetch_add(1, Ordering::Relaxed);
                        if d.proto == Protocol::Tcp {
                            // A stream of garbage: nothing after it can be trusted.
                            tcp.close(d.source);
                            strangers.closed(d.source, Some(Junk::Malformed), "a frame that is neither STUN, DTLS, RTP nor RTCP");
                        } else {
                            strangers.dropped(d.source, Junk::Malformed, d.data.len());
                        }
                        continue;
                    };
                    let input = Input::Receive(d.received, receive);
                    let id = match by_addr.get(&(d.proto, d.source)) {
                        Some(id) if peers.contains_key(id) => Some(id.clone()),
                        _ => peers
                            .iter()
                            .find(|(_, p)| p.ended.is_none() && p.rtc.accepts(&input))
                            .map(|(id, _)| id.clone()),
                    };
                    match id.and_then(|id| peers.get_mut(&id)) {
                        Some(peer) => {
                            by_addr.insert((d.proto, d.source), peer.id.clone());
                            peer.last_received = d.received;
                            peer.input(input, &sockets, &stats);
                        }
                        None if d.proto == Protocol::Tcp => {
                            // RFC 6544: a connection starts with the ICE
                            // check that names its session.
                            stats.unmatched.fetch_add(1, Ordering::Relaxed);
                            tcp.close(d.source);
                            strangers.closed(d.source, Some(Junk::UnknownPeer), Junk::UnknownPeer.describe());
                        }
                        None => {
                            stats.unmatched.fetch_add(1, Ordering::Relaxed);
                            strangers.dropped(d.source, Junk::UnknownPeer, d.data.len());
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {}
        }
        // Viewers' keyframe requests go to the WHIP publisher of their
        // stream (other publishers send keyframes on their own schedule).
        let wanted: Vec<StreamKey> = peers
            .values_mut()
            .filter_map(|p| std::mem::take(&mut p.viewer_wants_keyframe).then(|| p.key.clone()))
            .collect();
        for key in wanted {
            if let Some(publisher) = peers
                .values_mut()
                .find(|p| p.session.is_some() && p.key == key)
                && publisher.request_keyframe(Instant::now(), Reason::Viewer, &stats)
            {
                publisher.drain(&sockets, &stats);
            }
        }
        let now = Instant::now();
        for peer in peers.values_mut() {
            if peer.deadline <= now {
                peer.input(Input::Timeout(now), &sockets, &stats);
            }
            if peer.session.is_some() && peer.request_keyframe(now, Reason::Timer, &stats) {
                peer.drain(&sockets, &stats);
            }
            if !peer.connected
                && now.saturating_duration_since(peer.created) > config.connect_timeout
            {
                peer.end("ICE and DTLS did not complete in time".into());
            }
            if peer.connected
                && now.saturating_duration_since(peer.last_received) > config.idle_timeout
            {
                peer.end(format!("nothing received for {:?}", config.idle_timeout));
            }
            if !peer.rtc.is_alive() {
                peer.end("closed".into());
            }
        }
        let ended: Vec<String> = peers
            .values()
            .filter(|p| p.ended.is_some())
            .map(|p| p.id.clone())
            .collect();
        for id in ended {
            if let Some(mut peer) = peers.remove(&id) {
                // Tell the client: RTCP BYE and DTLS close_notify, so a
                // player sees the end at once rather than when its ICE
                // checks go unanswered (5-25 s later, by its STUN timers).
                // Nothing is waited for; an Rtc already closed sends nothing.
                if peer.rtc.close().is_ok() {
                    peer.drain(&sockets, &stats);
                }
                stats.links.remove(&id, Some(&peer.link));
                by_addr.retain(|&(proto, addr), v| {
                    let keep = *v != id;
                    if !keep && proto == Protocol::Tcp {
                        tcp.close(addr);
                    }
                    keep
                });
                let why = peer.ended.clone().unwrap_or_default();
                info!(peer = %peer.who(), stream = %peer.key, session = %peer.id, "whip: session ended: {why}");
                drop(peer);
            }
        }
        sockets.flush(&stats.send);
    }
    sockets.flush(&stats.send);
    if !peers.is_empty() {
        warn!("whip: shutting down {} session(s)", peers.len());
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    reason = "tests: an item missing from a batch should fail the test"
)]
mod tests {
    use super::*;

    fn frame(codec: MediaCodec, time: u32, payloads: usize) -> Vec<Item> {
        (0..payloads)
            .map(|i| Item {
                codec,
                time,
                marker: i + 1 == payloads,
                payload: Bytes::new(),
            })
            .collect()
    }

    #[test]
    fn a_republish_continues_each_lines_timestamps() {
        let mut t = Timeline::default();
        // The first publish: times pass through unchanged.
        for (video, audio) in [(1_000u32, 500u32), (4_000, 1_460)] {
            let mut v = frame(MediaCodec::H264, video, 3);
            t.apply(&mut v);
            assert!(v.iter().all(|i| i.time == video));
            let mut a = frame(MediaCodec::Opus, audio, 1);
            t.apply(&mut a);
            assert_eq!(a[0].time, audio);
        }
        // The next publish restarts its clock (and near the wrap, too).
        t.discontinuity();
        let mut v = frame(MediaCodec::H264, u32::MAX - 10, 2);
        t.apply(&mut v);
        assert!(v.iter().all(|i| i.time == 4_000 + 3_000));
        let mut v = frame(MediaCodec::H264, (u32::MAX - 10).wrapping_add(3_000), 1);
        t.apply(&mut v);
        assert_eq!(v[0].time, 4_000 + 6_000);
        let mut a = frame(MediaCodec::Opus, 0, 1);
        t.apply(&mut a);
        assert_eq!(a[0].time, 1_460 + 960);
        // Before any frame was sent there is nothing to continue from.
        let mut fresh = Timeline::default();
        fresh.discontinuity();
        let mut v = frame(MediaCodec::H264, 77, 1);
        fresh.apply(&mut v);
        assert_eq!(v[0].time, 77);
    }
}
