//! The recorder's families (`[record]`): one series per live stream a
//! `[record]` path matches, read from the recorder at scrape time like the
//! API's `recording` object.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use tidewater::Engine;
use tidewater::record::{Recorder, StreamStatus};

use super::{counter, family, gauge};

/// The `path` label, as the stream families carry it.
fn labels(s: &StreamStatus) -> [(&'static str, &str); 1] {
    [("path", s.key.as_str())]
}

/// The recording state of the engine's live streams.
#[derive(Debug)]
pub(super) struct RecordingCollector {
    pub(super) engine: Engine,
    pub(super) recorder: Recorder,
}

impl Collector for RecordingCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        // Live streams only, as the other per-stream families: the series
        // count stays bounded by what is live, not by what was ever recorded.
        let states: Vec<StreamStatus> = self
            .engine
            .stream_metrics()
            .into_iter()
            .filter_map(|s| self.recorder.status_of(&s.key))
            .collect();
        let e = &mut e;
        family(
            e,
            "tidewater_recording_active",
            "1 while the stream is being recorded, 0 before it starts or after a write error stopped it.",
            MetricType::Gauge,
            &states,
            |m, s| gauge(m, &labels(s), u64::from(s.recording)),
        )?;
        family(
            e,
            "tidewater_recording_bytes",
            "Bytes written by the stream's current (or last) recording run.",
            MetricType::Counter,
            &states,
            |m, s| counter(m, &labels(s), s.bytes),
        )?;
        family(
            e,
            "tidewater_recording_keyframe_drops",
            "Times the stream's recording dropped to the next keyframe, since the server started.",
            MetricType::Counter,
            &states,
            |m, s| counter(m, &labels(s), s.keyframe_drops),
        )?;
        family(
            e,
            "tidewater_recording_disk_errors",
            "Times a write error stopped the stream's recording, since the server started.",
            MetricType::Counter,
            &states,
            |m, s| counter(m, &labels(s), s.disk_errors),
        )
    }
}
