//! Pulling streams from RTSP sources (IP cameras, other RTSP servers) into
//! the engine, with the [`retina`] client (feature `pull`).
//!
//! Each [`PullSpec`] is a source URL and the stream key it is published
//! as. A pull is an ordinary publish (protocol `rtsp-pull`): every output,
//! the GOP cache and the API see it like any other; a reconnection is a
//! new publish generation, which readers and packagers follow as a
//! republish (a discontinuity).
//!
//! - **Tracks**: H.264 and H.265 (NAL units in 4-byte length form, access
//!   unit delimiters removed, `avcC` / `hvcC` from the SDP's parameter sets
//!   or the first in-band ones), AAC (`mpeg4-generic`, its
//!   AudioSpecificConfig) and Opus (RFC 7587; 48 kHz, channels from
//!   `sprop-stereo`, no OpusHead: as WHIP and the RTSP publish path). Other
//!   tracks (G.711, MJPEG, ONVIF metadata) are left out with a log line and
//!   the rest is pulled.
//! - **Depacketizers**: retina's, except for a source with an Opus track:
//!   retina has no Opus depacketizer and its demuxed stream refuses to
//!   start when a set-up track lacks one, so such a source's RTP packets,
//!   every track's, go through the server's own depacketizers (those of
//!   the RTSP publish path, [`crate::ingest`]; see `raw.rs`).
//! - **Timestamps**: each track's RTP time from the `PLAY` answer's
//!   `RTP-Info` (so tracks start together), in the track's clock rate,
//!   unwrapped by retina, plus 10 s. That is presentation time; video
//!   decode times are derived from it as the RTSP publish path derives
//!   them (`tidewater_media::rtp::dts`: the reorder depth from the H.264
//!   SPS, or learned), so cameras with B-frames keep rising decode times.
//! - **Reconnection**: a source that fails to connect, closes, or sends no
//!   media for [`PullOptions::stall_timeout`] is connected again after
//!   [`PullOptions::retry_initial`], doubling after each failure in a row up
//!   to [`PullOptions::retry_max`]; a connection that reached `PLAY`
//!   starts the schedule over. The state (`idle | connecting | live |
//!   retrying`), failures in a row, the last error and since when are in
//!   [`PullStatuses`].
//! - **Transport**: `tcp` (interleaved), `udp`, or `auto`: TCP, and UDP
//!   when a TCP attempt fails before `PLAY`, alternating until one works.
//! - **On demand** ([`PullSpec::on_demand`]): the worker is an
//!   [`OnDemandSource`] (register it with `Engine::add_on_demand`): the
//!   first reader of the stream, over any protocol, starts the pull and
//!   waits for its publish (up to [`PullOptions::connect_timeout`]); the
//!   pull disconnects once the stream has had no reader for
//!   [`PullOptions::idle_grace`] (readers are counted by the
//!   [`ReaderCount`] given with [`RtspPull::with_readers`]).
//! - **A pulled path is the pull's**: another publisher of it meets the
//!   application's duplicate-publish policy like any second publisher;
//!   with `take_over` the pull, taken over, takes the path back after its
//!   backoff, so give pulls paths of their own.
//! - **Authorization**: a configured pull is the operator's own source: it
//!   publishes as an internal request
//!   ([`Request::internal`](tidewater_core::Request::internal)) that the
//!   authorizer is not asked about, shown as user `rtsp-pull` from
//!   `127.0.0.1`. Readers of the pulled stream are authorized as usual.
//!
//! # Where retina falls short, and what that means here
//!
//! - **No RTSPS** (`rtsps://`): such URLs are refused by [`PullSpec::new`],
//!   so at config load, naming the `[[pull]] url` key. Retina has no TLS;
//!   wrapping it would mean taking over its connection handling (and
//!   Digest, keep-alives and UDP set-up with it) for a feature cameras
//!   rarely need: those that offer RTSPS offer plain RTSP too, and a TLS
//!   tunnel (stunnel) covers an untrusted network.
//! - **No Opus depacketizer**: a source with Opus is read as raw RTP from
//!   retina (`PacketItem::Rtp`) through our depacketizers, H.264 and H.265
//!   included (see above); those hold back the catalog while a video track
//!   has no parameter sets (retina's path publishes without it after 3 s).
//! - **UDP drops reordered packets** (no jitter buffer) and sends no
//!   receiver reports: fine on a LAN, lossy across routed networks; prefer
//!   `tcp` (the `auto` default starts with it). A dropped packet costs
//!   the access unit (retina reports the loss; decoders conceal it until
//!   the next keyframe).
//! - **Timestamps**: retina exposes no sender-report wall clock per frame,
//!   so tracks are aligned by `RTP-Info` only; a source without it starts
//!   each track at its first packet.

mod attempt;
mod backoff;
mod raw;
mod spec;
mod status;
mod tracks;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tidewater_core::{
    CancellationToken, InboundProtocol, IngestContext, OnDemandSource, StreamKey,
};
use tokio::task::JoinSet;

pub use attempt::PROTOCOL;
pub use backoff::Backoff;
pub use spec::{PullOptions, PullSpec, PullTransport};
pub use status::{PullSnapshot, PullState, PullStatuses};
pub use worker::ReaderCount;

use status::PullSnapshot as Snapshot;
use worker::{Demand, Worker};

/// The pull worker: one task per source, run by the engine like a listener.
pub struct RtspPull {
    pulls: Vec<(PullSpec, PullOptions, Arc<Demand>)>,
    statuses: PullStatuses,
    readers: Option<ReaderCount>,
}

impl std::fmt::Debug for RtspPull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtspPull")
            .field(
                "pulls",
                &self
                    .pulls
                    .iter()
                    .map(|(s, o, _)| (s, o))
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl RtspPull {
    /// A worker for these sources, each with its schedule, refused when a
    /// schedule breaks a rule ([`PullOptions::validate`]) or two sources
    /// publish the same stream.
    pub fn new(pulls: Vec<(PullSpec, PullOptions)>) -> Result<RtspPull, crate::ConfigError> {
        for (i, (p, options)) in pulls.iter().enumerate() {
            options.validate().map_err(|e| crate::ConfigError {
                field: format!("pull[{i}].{}", e.field),
                rule: e.rule,
            })?;
            if pulls[..i].iter().any(|(o, _)| o.key == p.key) {
                return Err(crate::ConfigError {
                    field: format!("pull[{i}].path"),
                    rule: format!("{} is pulled twice", p.key),
                });
            }
        }
        let statuses = PullStatuses::default();
        for (p, _) in &pulls {
            statuses.add(Snapshot {
                key: p.key.clone(),
                url: p.shown_url(),
                transport: p.transport.to_string(),
                connected_transport: None,
                on_demand: p.on_demand,
                state: if p.on_demand {
                    PullState::Idle
                } else {
                    PullState::Connecting
                },
                since_unix_ms: PullStatuses::now_ms(),
                attempts: 0,
                connections: 0,
                last_error: None,
                last_error_unix_ms: None,
            });
        }
        Ok(RtspPull {
            pulls: pulls
                .into_iter()
                .map(|(p, o)| (p, o, Arc::default()))
                .collect(),
            statuses,
            readers: None,
        })
    }

    /// Counts an on-demand stream's readers with `readers` (by default:
    /// the stream's subscribers, packagers' and recorders' included).
    pub fn with_readers(mut self, readers: ReaderCount) -> Self {
        self.readers = Some(readers);
        self
    }

    /// The state of every pull.
    pub fn statuses(&self) -> PullStatuses {
        self.statuses.clone()
    }

    /// Whether `key` is pulled on demand.
    pub fn is_on_demand(&self, key: &StreamKey) -> bool {
        self.pulls
            .iter()
            .any(|(p, _, _)| p.on_demand && &p.key == key)
    }
}

/// Registered with [`Engine::add_on_demand`](tidewater_core::Engine::add_on_demand):
/// a reader of a stream pulled on demand starts its pull and waits up to
/// its [`PullOptions::connect_timeout`] for the publish.
impl OnDemandSource for RtspPull {
    fn request(&self, key: &StreamKey) -> Option<Duration> {
        let (_, options, demand) = self
            .pulls
            .iter()
            .find(|(p, _, _)| p.on_demand && &p.key == key)?;
        demand.want();
        Some(options.connect_timeout)
    }
}

#[async_trait]
impl InboundProtocol for RtspPull {
    fn name(&self) -> &'static str {
        "rtsp-pull"
    }

    async fn serve(
        &self,
        ctx: IngestContext,
        shutdown: CancellationToken,
    ) -> tidewater_core::Result<()> {
        let readers: ReaderCount = match &self.readers {
            Some(r) => Arc::clone(r),
            None => {
                let ctx = ctx.clone();
                Arc::new(move |key: &StreamKey| ctx.stream(key).map_or(0, |s| s.subscribers.len()))
            }
        };
        let mut tasks = JoinSet::new();
        for (index, (spec, options, demand)) in self.pulls.iter().enumerate() {
            let worker = Worker {
                spec: spec.clone(),
                options: options.clone(),
                ctx: ctx.clone(),
                statuses: self.statuses.clone(),
                index,
                demand: Arc::clone(demand),
                readers: Arc::clone(&readers),
            };
            tasks.spawn(worker.run(shutdown.clone()));
        }
        shutdown.cancelled().await;
        tidewater_core::drain_connections(&mut tasks).await;
        Ok(())
    }
}
