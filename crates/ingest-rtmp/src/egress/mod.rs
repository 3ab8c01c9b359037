//! Egress: what a stream's frames become on one RTMP connection.
//!
//! [`Egress`] is the sans-IO media side of an RTMP connection that sends a
//! stream, the same for a player of the server ([`Session`](crate::session::Session)
//! runs one once a play is accepted) and for a push
//! ([`PublishClient`](crate::client::PublishClient) runs one once the
//! destination accepted the publish). It takes the kernel's events
//! ([`EgressInput`]: catalog, frame, skipped, republished, end) and queues
//! what goes out into the connection's [`Transmit`], next to that
//! connection's own control and status messages. It decides:
//!
//! - **what a frame costs**: the frame's chunks from the stream's
//!   derived-output cache ([`frame_chunks`], built once per frame per
//!   stream) when the connection uses
//!   [`SHARED_STREAM_ID`](crate::session::SHARED_STREAM_ID) and the
//!   timestamps are the stream's own; chunks built for the connection alone
//!   otherwise. Queueing shared chunks copies and allocates nothing;
//! - **when metadata and sequence headers are (re)sent**: before the first
//!   carried frame after each catalog (the first one, and every catalog
//!   change): `onMetaData` for a player, `@setDataFrame` for a push, then
//!   the sequence headers at that frame's time;
//! - **timestamp rebasing**: after a republish the new publish's timestamps
//!   are shifted to go on [`REBASE_GAP_MS`] after the last one sent, so the
//!   peer sees one stream with timestamps that keep rising. A push picks its
//!   own shift (its chunks are its own). Players of a generation share one
//!   shift ([`GenerationShift`], kept in the kernel's generation state): the
//!   first player that comes from the previous generation sets it, so the
//!   shifted chunks are still built once per frame for every player; a
//!   player for which the shared shift would step back (it read a different
//!   end of the previous generation) uses its own;
//! - **how it ends** ([`Ending`]): the owner turns it into the protocol's
//!   last words (a player's `NetStream.Play.UnpublishNotify`, a push's
//!   `FCUnpublish`).
//!
//! The chunk and tag builders ([`frame_chunks`], [`catalog_chunks`],
//! [`frame_tag`], …) are shared with HTTP-FLV.

mod audio;
mod chunks;
mod transmit;

use std::sync::{Arc, OnceLock};

use tidewater_core::{Catalog, EndReason, Event, EventRef, FrameRef, RecvError};

use crate::flv;

pub use audio::{AacFromOpus, Conversions};
pub use chunks::{
    catalog_chunks, catalog_chunks_with, catalog_tags, catalog_tags_with, file_header,
    frame_chunks, frame_chunks_shifted, frame_tag, frame_tag_shifted, sequence_header_chunks,
    set_data_frame, set_data_frame_with,
};
pub(crate) use chunks::{shared_aac_tags, shared_chunks, shared_tag};
pub use transmit::{BATCH_BYTES, BATCH_MESSAGES, Transmit};

/// The gap (milliseconds) a push leaves between the last timestamp sent and
/// the first one of a republish.
pub const REBASE_GAP_MS: u32 = 40;

/// One kernel event for an [`Egress`]: what a subscription
/// ([`EventRef`]) or a follower ([`Event`]) yields, or the end of the play.
#[derive(Debug)]
pub enum EgressInput<'a> {
    /// The catalog of the frames that follow.
    Catalog(Arc<Catalog>),
    /// A frame.
    Frame(FrameRef<'a>),
    /// Frames were skipped to the next keyframe (the reader fell behind).
    Skipped {
        /// How many.
        frames: u64,
    },
    /// The stream was published anew (followers only). A player is then
    /// handed the new generation's [`GenerationShift`]
    /// ([`Egress::set_generation`]) before its frames.
    Republished {
        /// The new publish's generation.
        generation: u64,
    },
    /// Nothing more will come.
    End(Ending),
}

impl<'a> From<Result<EventRef<'a>, RecvError>> for EgressInput<'a> {
    #[inline]
    fn from(ev: Result<EventRef<'a>, RecvError>) -> Self {
        match ev {
            Ok(EventRef::Frame(f)) => EgressInput::Frame(f),
            Ok(EventRef::Catalog(c)) => EgressInput::Catalog(c),
            Ok(EventRef::Skipped { frames }) => EgressInput::Skipped { frames },
            Ok(EventRef::Discontinuity { generation }) => EgressInput::Republished { generation },
            Err(e) => EgressInput::End(e.into()),
        }
    }
}

impl<'a> From<&'a Result<Event, RecvError>> for EgressInput<'a> {
    #[inline]
    fn from(ev: &'a Result<Event, RecvError>) -> Self {
        match ev {
            Ok(Event::Frame(f)) => EgressInput::Frame(f.as_ref()),
            Ok(Event::Catalog(c)) => EgressInput::Catalog(Arc::clone(c)),
            Ok(Event::Skipped { frames }) => EgressInput::Skipped { frames: *frames },
            Ok(Event::Discontinuity { generation }) => EgressInput::Republished {
                generation: *generation,
            },
            Err(e) => EgressInput::End((*e).into()),
        }
    }
}

/// Why an egress ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The publish ended (for a push: the stream ended for good).
    Unpublished(EndReason),
    /// The kernel evicted the reader for falling behind repeatedly.
    Evicted,
    /// The server is shutting down.
    Shutdown,
    /// An operator ended this reader ([`Engine::kick`](tidewater_core::Engine::kick));
    /// the stream goes on. The driver tells it apart from the end of a
    /// kicked publisher's stream with
    /// [`Subscription::is_kicked`](tidewater_core::Subscription::is_kicked).
    Kicked,
}

impl Ending {
    /// The description a player's closing statuses carry.
    pub fn description(self) -> &'static str {
        match self {
            Ending::Unpublished(_) => "publisher ended the stream",
            Ending::Evicted => "viewer too slow",
            Ending::Shutdown => "server shutting down",
            Ending::Kicked => "kicked by the operator",
        }
    }
}

impl From<RecvError> for Ending {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Ended(reason) => Ending::Unpublished(reason),
            RecvError::Evicted => Ending::Evicted,
        }
    }
}

/// What an input came to, besides the bytes it queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to report.
    Continue,
    /// The reader fell behind and skipped this many frames.
    Skipped {
        /// How many.
        frames: u64,
    },
    /// A republish: later timestamps are rebased (pushes).
    Republished {
        /// The new publish's generation.
        generation: u64,
    },
    /// The egress is over.
    Ended(Ending),
}

/// Which side of RTMP the egress speaks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    /// A server's player: `onMetaData`, the stream's own timestamps.
    Play,
    /// A publishing client (a push): `@setDataFrame`, rebased timestamps.
    Publish,
}

/// The media side of one connection sending a stream (see the [module docs](self)).
#[derive(Debug)]
pub struct Egress {
    side: Side,
    chunk_size: u32,
    stream_id: u32,
    /// A catalog announced but not yet sent (before the next carried frame).
    pending: Option<Arc<Catalog>>,
    /// The timestamps sent, for rebasing after a republish.
    timeline: Timeline,
    /// A player's or push's Opus → AAC conversion (an Opus stream,
    /// `transcode` feature).
    aac: AacFromOpus,
    /// Converted frames, reused.
    converted: Vec<tidewater_core::Frame>,
}

/// The timestamp shift (milliseconds, wrapping) the players of one publish
/// generation apply, shared through the kernel's generation state
/// ([`Follower::generation_state`](tidewater_core::Follower::generation_state)):
/// unset until a player that read the previous generation reaches this one's
/// first frame; 0 for a generation no such player reached.
#[derive(Debug, Default)]
pub struct GenerationShift(OnceLock<u32>);

impl Egress {
    /// The egress of a player on `stream_id`, with chunks of `chunk_size`.
    pub fn play(chunk_size: u32, stream_id: u32) -> Self {
        Egress {
            side: Side::Play,
            chunk_size,
            stream_id,
            pending: None,
            timeline: Timeline::default(),
            aac: AacFromOpus::default(),
            converted: Vec::new(),
        }
    }

    /// The egress of a push publishing on `stream_id`, with chunks of
    /// `chunk_size`; it follows the stream across republishes.
    pub fn publish(chunk_size: u32, stream_id: u32) -> Self {
        Egress {
            side: Side::Publish,
            chunk_size,
            stream_id,
            pending: None,
            timeline: Timeline::default(),
            aac: AacFromOpus::default(),
            converted: Vec::new(),
        }
    }

    /// A player's view of the generation it reads next (at the start of the
    /// play and after each republish): its shared timestamp shift.
    pub fn set_generation(&mut self, shift: Arc<GenerationShift>) {
        if self.side == Side::Play {
            self.timeline.next_generation(shift);
        }
    }

    /// A player's or push's view of the conversions of the generation it
    /// reads next (at the start and after each republish): an Opus
    /// stream's audio goes out as AAC through them (see [`AacFromOpus`]);
    /// a push's receiver most likely cannot take Opus in FLV either.
    pub fn set_conversions(&mut self, running: Arc<Conversions>, stream: &str) {
        self.aac.generation(running, stream);
    }

    /// Handles one input, queueing what it sends into `out`.
    #[inline]
    pub fn handle(&mut self, input: EgressInput<'_>, out: &mut Transmit) -> Outcome {
        match input {
            EgressInput::Frame(f) => {
                self.frame(f, out);
                Outcome::Continue
            }
            EgressInput::Catalog(c) => {
                self.pending = Some(c);
                Outcome::Continue
            }
            EgressInput::Skipped { frames } => Outcome::Skipped { frames },
            EgressInput::Republished { generation } => {
                self.timeline.rebase = true;
                Outcome::Republished { generation }
            }
            EgressInput::End(ending) => Outcome::Ended(ending),
        }
    }

    #[inline]
    fn frame(&mut self, f: FrameRef<'_>, out: &mut Transmit) {
        let catalog = f.catalog();
        if !flv::is_carried(&f, catalog) {
            return;
        }
        let converts = self.aac.converts(&f, catalog);
        if converts {
            self.converted.clear();
            self.aac.frames(f, &mut self.converted);
            if self.converted.is_empty() {
                return;
            }
        }
        let shift = self.timeline.shift_for(flv::frame_time(&f, catalog).0);
        if let Some(c) = self.pending.take() {
            let (ts, _) = flv::frame_time(&f, &c);
            let ts = ts.wrapping_add(shift);
            match self.side {
                Side::Play => out.push(catalog_chunks_with(
                    &c,
                    self.aac.replaced_audio(&c).as_ref(),
                    self.chunk_size,
                    self.stream_id,
                    ts,
                )),
                Side::Publish => {
                    let audio = self.aac.replaced_audio(&c);
                    out.push(set_data_frame_with(
                        &c,
                        audio.as_ref(),
                        self.chunk_size,
                        self.stream_id,
                    ));
                    out.push(chunks::sequence_headers(
                        &c,
                        audio.as_ref(),
                        self.chunk_size,
                        self.stream_id,
                        ts,
                    ));
                }
            }
        }
        if converts {
            // The chunks of the conversion's packets, shared as the
            // packets are (a push on its own stream id builds its own).
            out.push(chunks::shared_aac_chunks(
                &f,
                &self.converted,
                self.chunk_size,
                self.stream_id,
                shift,
            ));
            return;
        }
        out.push(match self.side {
            Side::Play => shared_chunks(&f, self.chunk_size, self.stream_id, shift),
            // A push's shift is its own: so are its chunks.
            Side::Publish if shift != 0 => {
                frame_chunks_shifted(&f, catalog, self.chunk_size, self.stream_id, shift)
            }
            Side::Publish => shared_chunks(&f, self.chunk_size, self.stream_id, 0),
        });
    }
}

/// The RTMP timestamps a connection sends: the stream's own, shifted after
/// a republish so that they go on from the last one sent.
#[derive(Debug, Default)]
pub(crate) struct Timeline {
    shift: u32,
    last: Option<u32>,
    /// The next frame is the first of a generation: its shift is decided then.
    rebase: bool,
    /// Players: the shift the players of the current generation share.
    shared: Option<Arc<GenerationShift>>,
}

impl Timeline {
    /// A new generation is read next, whose players share `shift`.
    pub(crate) fn next_generation(&mut self, shift: Arc<GenerationShift>) {
        self.shared = Some(shift);
        self.rebase = true;
    }

    /// The shift for a frame at RTMP time `ts`.
    pub(crate) fn shift_for(&mut self, ts: u32) -> u32 {
        if std::mem::take(&mut self.rebase) {
            self.shift = self.rebased(ts);
        }
        let out = ts.wrapping_add(self.shift);
        // Later in the 32-bit circle: the newest timestamp sent.
        if self.last.is_none_or(|l| later(out, l)) {
            self.last = Some(out);
        }
        self.shift
    }

    /// The shift of a generation whose first frame is at `ts`.
    fn rebased(&self, ts: u32) -> u32 {
        let own = self
            .last
            .map(|last| last.wrapping_add(REBASE_GAP_MS).wrapping_sub(ts));
        match (&self.shared, own) {
            (Some(shared), Some(own)) => {
                let shift = *shared.0.get_or_init(|| own);
                match self.last {
                    // The shared shift keeps this player's timestamps rising.
                    Some(last) if later(ts.wrapping_add(shift), last) => shift,
                    _ => own,
                }
            }
            (Some(shared), None) => shared.0.get().copied().unwrap_or(0),
            (None, Some(own)) => own,
            (None, None) => self.shift,
        }
    }
}

/// Whether RTMP time `a` is after `b` in the 32-bit circle.
fn later(a: u32, b: u32) -> bool {
    let d = a.wrapping_sub(b);
    d != 0 && d < 0x8000_0000
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::session::SHARED_STREAM_ID;
    use bytes::Bytes;
    use rml_rtmp::chunk_io::ChunkDeserializer;
    use std::time::Duration;
    use tidewater_core::{
        AppSpec, Codec, Engine, Frame, PublishSession, Request, StreamKey, Subscription,
        TimestampWrap, TrackId, TrackInfo,
    };

    #[test]
    fn a_republish_continues_after_the_last_timestamp_sent() {
        let mut t = Timeline::default();
        assert_eq!(t.shift_for(1_000), 0);
        assert_eq!(t.shift_for(5_000), 0);
        assert_eq!(t.shift_for(4_990), 0, "an earlier audio frame");
        t.rebase = true;
        // The new publish starts at 0: it goes on 40 ms after 5 000.
        assert_eq!(t.shift_for(0), 5_040);
        assert_eq!(t.shift_for(40), 5_040);
        // Across the 32-bit wrap.
        let mut t = Timeline::default();
        t.shift_for(u32::MAX - 10);
        t.rebase = true;
        let shift = t.shift_for(100);
        assert_eq!(100u32.wrapping_add(shift), (u32::MAX - 10).wrapping_add(40));
    }

    fn tracks() -> Vec<TrackInfo> {
        vec![
            TrackInfo::video(TrackId(1), Codec::H264, 320, 240)
                .with_timescale(1000)
                .with_wrap(TimestampWrap::RTMP)
                .with_config(Bytes::from_static(&[1, 0x64, 0, 0x0d, 0xff, 0xe0, 0])),
            TrackInfo::audio(TrackId(2), Codec::Aac, 44100, 2)
                .with_timescale(1000)
                .with_wrap(TimestampWrap::RTMP)
                .with_config(Bytes::from_static(&[0x12, 0x10])),
        ]
    }

    /// A live stream with a keyframe at 1 000 ms and a frame at 2 000 ms,
    /// and a subscriber on it.
    pub(crate) async fn live_stream(name: &str) -> (Engine, PublishSession, Subscription) {
        let engine = Engine::builder()
            .app("live", AppSpec::default())
            .build()
            .expect("engine");
        let key = StreamKey::parse(&format!("live/{name}")).expect("key");
        let mut publisher = engine
            .open_publish(Request::new(key.clone(), "test"))
            .await
            .expect("publish");
        publisher.set_catalog(tracks()).expect("catalog");
        for (ts, key, nal) in [(1_000, true, 0x65), (2_000, false, 0x41)] {
            publisher
                .publish(Frame::video(
                    TrackId(1),
                    Codec::H264,
                    ts,
                    ts,
                    key,
                    Bytes::copy_from_slice(&[0, 0, 0, 1, nal]),
                ))
                .expect("frame");
        }
        let sub = engine
            .subscribe(Request::new(key, "test"))
            .await
            .expect("subscribe");
        (engine, publisher, sub)
    }

    /// Every message queued, as (type id, timestamp, first body byte).
    fn messages(out: &mut Transmit) -> Vec<(u8, u32, u8)> {
        let mut de = ChunkDeserializer::new();
        de.set_max_chunk_size(4096).expect("size");
        let bytes = out.take_all().unwrap_or_default();
        let mut input = &bytes[..];
        let mut got = Vec::new();
        while let Some(m) = de.get_next_message(input).expect("chunks") {
            input = &[];
            got.push((
                m.type_id,
                m.timestamp.value,
                m.data.first().copied().unwrap_or(0),
            ));
        }
        got
    }

    #[tokio::test]
    async fn a_player_gets_metadata_and_headers_before_the_first_frame_only() {
        let (_engine, _publisher, mut sub) = live_stream("play").await;
        let mut egress = Egress::play(4096, SHARED_STREAM_ID);
        let mut out = Transmit::new(Duration::from_secs(5));
        for _ in 0..3 {
            let ev = sub.try_recv_ref().expect("ready");
            assert_eq!(egress.handle(ev.into(), &mut out), Outcome::Continue);
        }
        // onMetaData at 0 (a string marker first), both sequence headers at
        // the first frame's time, then the two frames.
        assert_eq!(
            messages(&mut out),
            [
                (18, 0, 2),
                (9, 1_000, 0x17),
                (8, 1_000, 0xaf),
                (9, 1_000, 0x17),
                (9, 2_000, 0x27)
            ]
        );
        assert_eq!(
            egress.handle(EgressInput::Skipped { frames: 3 }, &mut out),
            Outcome::Skipped { frames: 3 }
        );
        let end = egress.handle(
            Err::<EventRef<'_>, _>(RecvError::Ended(EndReason::Finished)).into(),
            &mut out,
        );
        assert_eq!(
            end,
            Outcome::Ended(Ending::Unpublished(EndReason::Finished))
        );
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn a_push_rebases_a_republish_and_resends_its_headers() {
        let (_engine, _publisher, mut sub) = live_stream("push").await;
        let mut events = Vec::new();
        while let Some(ev) = sub.try_recv() {
            events.push(ev);
        }
        let mut egress = Egress::publish(4096, SHARED_STREAM_ID);
        let mut out = Transmit::new(Duration::from_secs(5));
        for ev in &events {
            egress.handle(ev.into(), &mut out);
        }
        let first = messages(&mut out);
        // @setDataFrame, the headers, the frames: the stream's own times.
        assert_eq!(first[0], (18, 0, 2));
        assert_eq!(&first[3..], [(9, 1_000, 0x17), (9, 2_000, 0x27)]);
        // The same publish again: it goes on 40 ms after 2 000.
        let republished = Ok(Event::Discontinuity { generation: 2 });
        assert_eq!(
            egress.handle((&republished).into(), &mut out),
            Outcome::Republished { generation: 2 }
        );
        for ev in &events {
            egress.handle(ev.into(), &mut out);
        }
        let again = messages(&mut out);
        assert_eq!(
            &again[1..],
            [
                (9, 2_040, 0x17),
                (8, 2_040, 0xaf),
                (9, 2_040, 0x17),
                (9, 3_040, 0x27)
            ]
        );
    }
}
