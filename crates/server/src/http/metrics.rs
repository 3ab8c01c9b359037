//! Prometheus metrics at `GET /metrics` (text format 0.0.4), written by the
//! `prometheus-client` crate.
//!
//! Every family is built at scrape time from the kernel's snapshots (a
//! custom collector), not kept as registered metrics: a stream that ended is
//! simply not in the next scrape, so the number of series is bounded by what
//! is live. Counters of a stream count its live publish generation (a
//! republish starts them again, which Prometheus reads as a counter reset).
//!
//! | family | type | labels | what |
//! |---|---|---|---|
//! | `tidewater_streams` | gauge | | live streams |
//! | `tidewater_stream_publishers` | gauge | `path`, `protocol` | 1 per live stream, labelled with its ingest protocol |
//! | `tidewater_stream_readers` | gauge | `path`, `protocol` | readers now, per reader protocol |
//! | `tidewater_stream_bytes_in_total` | counter | `path`, `protocol` | payload bytes published |
//! | `tidewater_stream_frames_in_total` | counter | `path`, `protocol` | frames published |
//! | `tidewater_stream_bytes_out_total` | counter | `path`, `protocol` | bytes written to readers (as their protocols report them) |
//! | `tidewater_stream_frames_out_total` | counter | `path`, `protocol` | frames delivered to readers |
//! | `tidewater_stream_skips_total` | counter | `path`, `protocol` | times a reader fell behind and skipped to a keyframe |
//! | `tidewater_stream_skipped_frames_total` | counter | `path`, `protocol` | frames skipped that way |
//! | `tidewater_stream_evictions_total` | counter | `path`, `protocol` | readers evicted for staying behind |
//! | `tidewater_stream_kicks_total` | counter | `path`, `protocol` | readers an operator kicked |
//! | `tidewater_stream_reader_lag_seconds` | histogram | `path`, `protocol` | readers' lag behind live, sampled every 32 frames read |
//! | `tidewater_stream_join_seconds` | histogram | `path`, `protocol` | readers' join time: subscribe to first frame (from the cached keyframe on) |
//! | `tidewater_listener_connections_total` | counter | `listener` | connections accepted |
//! | `tidewater_listener_open_connections` | gauge | `listener` | connections open now |
//! | `tidewater_listener_refusals_total` | counter | `listener`, `reason` | connections or requests turned away, by reason |
//! | `tidewater_session_panics_total` | counter | `listener` | session tasks that panicked (each ended alone, logged with its peer and stream) |
//! | `tidewater_auth_allowed_total` | counter | | requests the authorizer allowed (publish, read, playback, API, metrics) |
//! | `tidewater_auth_refusals_total` | counter | `cause` | requests the authorizer refused, by cause (every cause, zeros included) |
//! | `tidewater_recording_active` | gauge | `path` | 1 while the stream is recorded, 0 before it starts or after a write error stopped it (`[record]`) |
//! | `tidewater_recording_bytes_total` | counter | `path` | bytes written by the stream's current (or last) recording run |
//! | `tidewater_recording_keyframe_drops_total` | counter | `path` | times the recording dropped to the next keyframe, since the server started |
//! | `tidewater_recording_disk_errors_total` | counter | `path` | times a write error stopped the recording, since the server started |
//! | `tidewater_webrtc_sessions` | gauge | `path`, `role` | open WebRTC sessions of the stream (`whep` viewers, `whip` publishers) |
//! | `tidewater_webrtc_nacks_total` | counter | `path` | NACKs the stream's WebRTC peers sent |
//! | `tidewater_webrtc_rtx_packets_total` | counter | `path` | RTX packets (NACK repairs) sent to its viewers |
//! | `tidewater_webrtc_plis_total` | counter | `path` | PLIs its WebRTC peers sent |
//! | `tidewater_webrtc_firs_total` | counter | `path` | FIRs its WebRTC peers sent |
//! | `tidewater_webrtc_loss_ratio_max` | gauge | `path` | the highest loss (0–1) its open sessions report (receiver reports, else TWCC) |
//! | `tidewater_webrtc_rtt_seconds_max` | gauge | `path` | the longest round trip among its open sessions |
//! | `tidewater_uptime_seconds` | gauge | | seconds since the server started serving |
//! | `tidewater_process_open_fds` | gauge | | open file descriptors (Linux) |
//! | `tidewater_process_open_sockets` | gauge | | open sockets (Linux) |
//! | `tidewater_runtime_alive_tasks` | gauge | | tokio tasks alive in the server's runtime (a leak of session tasks shows here; `cargo xtask soak` watches it) |
//!
//! Reader series (`readers`, `bytes_out`, …, the histograms) carry the
//! readers' protocol (`http-flv`, `rtmp`, `hls`, …); `publishers`, `bytes_in`
//! and `frames_in` the publisher's. Histogram buckets go from 5 ms to 10 s
//! ([`tidewater::LATENCY_BUCKETS_US`]).
//!
//! The `auth` families count the decisions of the server's
//! [`Authorization`] (the authorizer of `[auth]`, or its defaults) since the
//! process started; a reload of `[auth]` does not reset them. `cause` is one
//! of [`RefusalCause::ALL`] in snake case (`anonymous_not_allowed`,
//! `invalid_credentials`, `invalid_token`, `not_permitted`,
//! `address_not_allowed`, `rate_limited`, `hook_refused`, `unavailable`): a
//! fixed set, so the series count does not grow with traffic. They are
//! rendered when the metrics know the authorizer
//! ([`router_with_authorization`]; the server's routes always do).
//!
//! The `recording` families are those of the API's `recording` object
//! ([`api`](super::api)): one series per live stream a `[record]` path
//! matches, rendered when the server records anything (it layers its
//! recorder on the routes, as for the API). `bytes` counts the current run,
//! so a new run reads as a counter reset.
//!
//! The `webrtc` families (`[webrtc]` on) sum the API's per-session
//! `webrtc` objects per stream: a counter holds the open sessions' counts
//! plus those of the stream's sessions that ended while another stayed
//! open, and starts again from zero once the stream has no WebRTC session
//! (a reset, as for a republish). WHEP viewers' bytes are in
//! `tidewater_stream_bytes_out_total{protocol="whep"}` (every datagram sent
//! to the viewer: media, retransmissions, RTCP, DTLS).
//!
//! [`Metrics::render_with`] is what the route answers; `cargo xtask bench metrics`
//! measures it at 1 000 live streams.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tidewater::record::Recorder;
use tidewater::whip::Whip;
use tidewater::{Engine, HistogramSnapshot, ReaderMetrics, StreamMetrics};
use tidewater_auth::{Authorization, RefusalCause};

/// The `Content-Type` of the answer (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The metrics of one server: renders every family from the engine's state
/// when asked.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    engine: Engine,
}

impl Metrics {
    /// Metrics of `engine`; uptime counts from now.
    pub fn new(engine: Engine) -> Self {
        Self::with_authorization(engine, None)
    }

    /// Metrics of `engine` and, when given, of the authorizer's decisions
    /// (`tidewater_auth_*`); uptime counts from now.
    pub fn with_authorization(engine: Engine, auth: Option<Authorization>) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(EngineCollector {
            engine: engine.clone(),
            started: Instant::now(),
        }));
        if let Some(auth) = auth {
            registry.register_collector(Box::new(AuthCollector { auth }));
        }
        Metrics {
            registry: Arc::new(registry),
            engine,
        }
    }

    /// The text a scrape gets.
    pub fn render(&self) -> String {
        self.render_with(None, None)
    }

    /// The text a scrape gets, with the `recording` families of `recorder`
    /// when there is one and the `webrtc` families of `whip` when `[webrtc]`
    /// is on.
    pub fn render_with(&self, recorder: Option<&Recorder>, whip: Option<&Whip>) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry);
        if let Some(whip) = whip {
            let mut registry = Registry::default();
            registry.register_collector(Box::new(webrtc::WebrtcCollector { whip: whip.clone() }));
            encode(&mut out, &registry);
        }
        if let Some(recorder) = recorder {
            // The recorder reaches the route per request (a layer the server
            // adds after building the routes), so its families live in a
            // registry of this scrape; the text format simply concatenates.
            let mut registry = Registry::default();
            registry.register_collector(Box::new(recording::RecordingCollector {
                engine: self.engine.clone(),
                recorder: recorder.clone(),
            }));
            encode(&mut out, &registry);
        }
        out
    }
}

/// Appends `registry`'s families to `out`.
fn encode(out: &mut String, registry: &Registry) {
    // Writing into a String fails only if a collector fails, and ours
    // write into the same String.
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(out, registry) {
        tracing::warn!("metrics: encoding failed: {e}");
    }
}

/// `GET /metrics` over `engine`: a plain router the server may layer a guard on.
pub fn router(engine: Engine) -> Router {
    router_with_authorization(engine, None)
}

/// `GET /metrics` over `engine` and, when given, the authorizer's decisions.
pub fn router_with_authorization(engine: Engine, auth: Option<Authorization>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(Metrics::with_authorization(engine, auth))
}

async fn scrape(
    State(metrics): State<Metrics>,
    recorder: Option<Extension<Recorder>>,
    links: Option<Extension<super::sessions::WebrtcLinks>>,
) -> impl IntoResponse {
    let recorder = recorder.as_ref().map(|Extension(r)| r);
    let whip = links.as_ref().map(|Extension(l)| &l.0);
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        metrics.render_with(recorder, whip),
    )
}

#[derive(Debug)]
struct EngineCollector {
    engine: Engine,
    started: Instant,
}

/// Label values of a per-stream series.
type StreamLabels<'a> = [(&'static str, &'a str); 2];

fn stream_labels<'a>(s: &'a StreamMetrics, protocol: &'a str) -> StreamLabels<'a> {
    [("path", s.key.as_str()), ("protocol", protocol)]
}

/// A family's descriptor, then one sample per item through `each`.
fn family<T>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    items: impl IntoIterator<Item = T>,
    mut each: impl FnMut(&mut MetricEncoder<'_>, T) -> fmt::Result,
) -> fmt::Result {
    let mut metric = e.encode_descriptor(name, help, None, kind)?;
    for item in items {
        each(&mut metric, item)?;
    }
    Ok(())
}

fn counter(
    m: &mut MetricEncoder<'_>,
    labels: &impl prometheus_client::encoding::EncodeLabelSet,
    v: u64,
) -> fmt::Result {
    m.encode_family(labels)?
        .encode_counter::<NoLabelSet, _, u64>(&v, None)
}

fn gauge(
    m: &mut MetricEncoder<'_>,
    labels: &impl prometheus_client::encoding::EncodeLabelSet,
    v: u64,
) -> fmt::Result {
    m.encode_family(labels)?.encode_gauge(&v)
}

fn histogram(
    m: &mut MetricEncoder<'_>,
    labels: &StreamLabels<'_>,
    h: &HistogramSnapshot,
) -> fmt::Result {
    let buckets: Vec<(f64, u64)> = h
        .buckets()
        .map(|(bound, n)| (bound.map_or(f64::INFINITY, |us| us as f64 / 1e6), n))
        .collect();
    m.encode_family(labels)?.encode_histogram::<NoLabelSet>(
        h.sum_us as f64 / 1e6,
        h.count(),
        &buckets,
        None,
    )
}

/// Every (stream, reader protocol) pair.
fn readers(streams: &[StreamMetrics]) -> impl Iterator<Item = (&StreamMetrics, &ReaderMetrics)> {
    streams
        .iter()
        .flat_map(|s| s.readers.iter().map(move |r| (s, r)))
}

/// A per-reader-protocol counter family.
fn reader_counter(
    e: &mut DescriptorEncoder<'_>,
    streams: &[StreamMetrics],
    name: &str,
    help: &str,
    value: fn(&ReaderMetrics) -> u64,
) -> fmt::Result {
    family(
        e,
        name,
        help,
        MetricType::Counter,
        readers(streams),
        |m, (s, r)| counter(m, &stream_labels(s, r.protocol), value(r)),
    )
}

impl Collector for EngineCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        let streams = self.engine.stream_metrics();
        let e = &mut e;
        family(
            e,
            "tidewater_streams",
            "Live streams.",
            MetricType::Gauge,
            [streams.len() as u64],
            |m, n| m.encode_gauge(&n),
        )?;
        family(
            e,
            "tidewater_log_lines_dropped",
            "Log lines dropped because standard error did not keep up (closed, full or slow).",
            MetricType::Counter,
            [crate::logging::dropped_lines()],
            |m, n| m.encode_counter::<NoLabelSet, _, u64>(&n, None),
        )?;
        family(
            e,
            "tidewater_stream_publishers",
            "Publishers of the stream (1 while it is live), by ingest protocol.",
            MetricType::Gauge,
            &streams,
            |m, s| gauge(m, &stream_labels(s, s.protocol), 1),
        )?;
        family(
            e,
            "tidewater_stream_readers",
            "Readers of the stream now, by reader protocol.",
            MetricType::Gauge,
            readers(&streams),
            |m, (s, r)| gauge(m, &stream_labels(s, r.protocol), r.readers),
        )?;
        family(
            e,
            "tidewater_stream_bytes_in",
            "Payload bytes published into the stream's live publish.",
            MetricType::Counter,
            &streams,
            |m, s| counter(m, &stream_labels(s, s.protocol), s.bytes_in),
        )?;
        family(
            e,
            "tidewater_stream_frames_in",
            "Frames published into the stream's live publish.",
            MetricType::Counter,
            &streams,
            |m, s| counter(m, &stream_labels(s, s.protocol), s.frames_in),
        )?;
        reader_counter(
            e,
            &streams,
            "tidewater_stream_bytes_out",
            "Bytes written to the stream's readers, by reader protocol.",
            |r| r.bytes_out,
        )?;
        reader_counter(
            e,
            &streams,
            "tidewater_stream_frames_out",
            "Frames delivered to the stream's readers, by reader protocol.",
            |r| r.frames_out,
        )?;
        reader_counter(
            e,
            &streams,
            "tidewater_stream_skips",
            "Times a reader fell behind and skipped ahead to a keyframe.",
            |r| r.skips,
        )?;
        reader_counter(
            e,
            &streams,
            "tidewater_stream_skipped_frames",
            "Frames readers skipped after falling behind.",
            |r| r.skipped_frames,
        )?;
        reader_counter(
            e,
            &streams,
            "tidewater_stream_evictions",
            "Readers evicted for staying behind.",
            |r| r.evictions,
        )?;
        reader_counter(
            e,
            &streams,
            "tidewater_stream_kicks",
            "Readers an operator kicked.",
            |r| r.kicks,
        )?;
        family(
            e,
            "tidewater_stream_reader_lag_seconds",
            "Readers' lag behind live, sampled every 32 frames they read.",
            MetricType::Histogram,
            readers(&streams),
            |m, (s, r)| histogram(m, &stream_labels(s, r.protocol), &r.lag),
        )?;
        family(
            e,
            "tidewater_stream_join_seconds",
            "Readers' join time: from subscribing to the first frame (the cached keyframe).",
            MetricType::Histogram,
            readers(&streams),
            |m, (s, r)| histogram(m, &stream_labels(s, r.protocol), &r.join_time),
        )?;
        drop(streams);

        let listeners = self.engine.listeners();
        family(
            e,
            "tidewater_listener_connections",
            "Connections the listener accepted.",
            MetricType::Counter,
            &listeners,
            |m, l| counter(m, &[("listener", l.name)], l.connections),
        )?;
        family(
            e,
            "tidewater_listener_open_connections",
            "Connections of the listener open now.",
            MetricType::Gauge,
            &listeners,
            |m, l| gauge(m, &[("listener", l.name)], l.open),
        )?;
        family(
            e,
            "tidewater_listener_refusals",
            "Connections or requests the listener turned away, by reason.",
            MetricType::Counter,
            listeners.iter().flat_map(|l| {
                l.refusals
                    .iter()
                    .map(move |(reason, n)| (l.name, *reason, *n))
            }),
            |m, (listener, reason, n)| counter(m, &[("listener", listener), ("reason", reason)], n),
        )?;
        family(
            e,
            "tidewater_session_panics",
            "Session tasks that panicked; each ended alone, the listener went on.",
            MetricType::Counter,
            &listeners,
            |m, l| counter(m, &[("listener", l.name)], l.panics),
        )?;

        family(
            e,
            "tidewater_uptime_seconds",
            "Seconds since the server started serving.",
            MetricType::Gauge,
            [self.started.elapsed().as_secs_f64()],
            |m, secs| m.encode_gauge(&secs),
        )?;
        // Rendered inside the server's runtime (the route's handler), so
        // `try_current` is that runtime; a render elsewhere leaves it out.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            family(
                e,
                "tidewater_runtime_alive_tasks",
                "Tokio tasks alive in the server's runtime.",
                MetricType::Gauge,
                [runtime.metrics().num_alive_tasks() as u64],
                |m, n| m.encode_gauge(&n),
            )?;
        }
        if let Some((fds, sockets)) = open_fds() {
            family(
                e,
                "tidewater_process_open_fds",
                "Open file descriptors of the process.",
                MetricType::Gauge,
                [fds],
                |m, n| m.encode_gauge(&n),
            )?;
            family(
                e,
                "tidewater_process_open_sockets",
                "Open sockets of the process.",
                MetricType::Gauge,
                [sockets],
                |m, n| m.encode_gauge(&n),
            )?;
        }
        Ok(())
    }
}

/// The authorizer's decisions so far.
#[derive(Debug)]
struct AuthCollector {
    auth: Authorization,
}

impl Collector for AuthCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        let stats = self.auth.stats();
        let e = &mut e;
        family(
            e,
            "tidewater_auth_allowed",
            "Requests the authorizer allowed (publish, read, playback, API, metrics).",
            MetricType::Counter,
            [stats.allowed],
            |m, n| m.encode_counter::<NoLabelSet, _, u64>(&n, None),
        )?;
        family(
            e,
            "tidewater_auth_refusals",
            "Requests the authorizer refused, by cause.",
            MetricType::Counter,
            stats.refused,
            |m, (cause, n): (RefusalCause, u64)| counter(m, &[("cause", cause.as_str())], n),
        )
    }
}

/// Open file descriptors and, of those, sockets, from `/proc/self/fd`;
/// `None` where it does not exist.
fn open_fds() -> Option<(u64, u64)> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    let (mut fds, mut sockets) = (0u64, 0u64);
    for entry in dir.flatten() {
        fds += 1;
        if std::fs::read_link(entry.path()).is_ok_and(|target| {
            target
                .as_os_str()
                .as_encoded_bytes()
                .starts_with(b"socket:")
        }) {
            sockets += 1;
        }
    }
    // The directory being read is one of them.
    Some((fds.saturating_sub(1), sockets))
}

mod recording;
#[cfg(test)]
mod tests;
mod webrtc;
