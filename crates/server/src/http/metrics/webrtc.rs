//! The WebRTC families (`[webrtc]`): per stream, what the feedback of its
//! WHIP and WHEP peers says (`tidewater_whip::qos`), the API's per-session
//! `webrtc` objects summed (counters) or at their worst (loss, round trip),
//! so the series count is per stream, not per session.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use tidewater::whip::Whip;
use tidewater::whip::qos::StreamLinks;

use super::{counter, family, gauge};

/// The `path` label, as the stream families carry it.
fn labels(s: &StreamLinks) -> [(&'static str, &str); 1] {
    [("path", s.stream.as_str())]
}

/// One counter of a stream's figures.
type Count = fn(&StreamLinks) -> u64;

/// The WebRTC service's sessions, by stream.
#[derive(Debug)]
pub(super) struct WebrtcCollector {
    pub(super) whip: Whip,
}

impl Collector for WebrtcCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        let streams = self.whip.qos_by_stream();
        let e = &mut e;
        family(
            e,
            "tidewater_webrtc_sessions",
            "Open WebRTC sessions of the stream, by role (whep: viewers, whip: publishers).",
            MetricType::Gauge,
            streams
                .iter()
                .flat_map(|s| [(s, "whep", s.viewers), (s, "whip", s.publishers)]),
            |m, (s, role, n)| gauge(m, &[("path", s.stream.as_str()), ("role", role)], n),
        )?;
        let counters: [(&str, &str, Count); 4] = [
            (
                "tidewater_webrtc_nacks",
                "NACKs the stream's WebRTC peers sent (viewers asking for lost packets).",
                |s| s.nacks,
            ),
            (
                "tidewater_webrtc_rtx_packets",
                "RTX packets (retransmissions answering NACKs) sent to the stream's WebRTC viewers.",
                |s| s.rtx_packets,
            ),
            (
                "tidewater_webrtc_plis",
                "PLIs (keyframe requests) the stream's WebRTC peers sent.",
                |s| s.plis,
            ),
            (
                "tidewater_webrtc_firs",
                "FIRs (full intra requests) the stream's WebRTC peers sent.",
                |s| s.firs,
            ),
        ];
        for (name, help, value) in counters {
            family(e, name, help, MetricType::Counter, &streams, |m, s| {
                counter(m, &labels(s), value(s))
            })?;
        }
        family(
            e,
            "tidewater_webrtc_loss_ratio_max",
            "The highest loss (0-1) the stream's open WebRTC sessions report (receiver reports, else TWCC feedback).",
            MetricType::Gauge,
            streams.iter().filter_map(|s| Some((s, s.max_loss?))),
            |m, (s, loss)| m.encode_family(&labels(s))?.encode_gauge(&f64::from(loss)),
        )?;
        family(
            e,
            "tidewater_webrtc_rtt_seconds_max",
            "The longest round trip among the stream's open WebRTC sessions (receiver reports, else TWCC feedback).",
            MetricType::Gauge,
            streams.iter().filter_map(|s| Some((s, s.max_rtt_ms?))),
            |m, (s, rtt)| m.encode_family(&labels(s))?.encode_gauge(&(rtt / 1000.0)),
        )
    }
}
