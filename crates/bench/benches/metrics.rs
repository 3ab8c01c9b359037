//! `/metrics` render time at many live streams: what one Prometheus scrape
//! costs the server.
//!
//! A kernel with `--streams` live streams (H.264 + AAC catalog, one cached
//! GOP of 60 frames), each read by two subscribers of different protocols
//! (`http-flv`, `rtmp`) that have read the GOP and reported bytes sent (so
//! every per-stream family, histograms included, has its series). Measured,
//! each as the median of `--reps` runs of `--renders` renders:
//!
//! - **render**: [`Metrics::render`], what `GET /metrics` answers: the
//!   kernel's per-stream snapshot ([`Engine::stream_metrics`]) and the
//!   families written by prometheus-client's text encoder from it;
//! - **snapshot**: [`Engine::stream_metrics`] alone, the kernel's share;
//! - **anchor**: the same series (same names, labels, values, buckets) held
//!   as metrics registered in a prometheus-client `Registry` (`Family` of
//!   counters, gauges and histograms) and encoded by the same encoder: what
//!   the render would cost if the server kept registered per-stream metrics
//!   instead of building them at scrape time.
//!
//! ```text
//! cargo xtask bench metrics [OPTIONS]
//! cargo bench -p tidewater-bench --bench metrics -- [OPTIONS]
//!
//!   --quick           smoke run: 100 streams, 20 renders, 1 rep
//!   --streams 1000    live streams
//!   --renders 100     renders per run
//!   --reps 5          runs of each measurement; the median is reported
//! ```

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tidewater_bench::{machine, median, today_utc};
use tidewater_core::{
    AppSpec, Codec, Engine, Frame, LATENCY_BUCKETS_US, PublishSession, Request, StreamKey,
    StreamMetrics, Subscription, TrackId, TrackInfo,
};
use tidewater_server::http::metrics::Metrics;

#[derive(Debug)]
struct Options {
    streams: usize,
    renders: usize,
    reps: usize,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            streams: 1000,
            renders: 100,
            reps: 5,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| -> Result<usize, String> {
                it.next()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| format!("{name} needs a number"))
            };
            match a.as_str() {
                "--quick" => {
                    o.streams = 100;
                    o.renders = 20;
                    o.reps = 1;
                }
                "--streams" => o.streams = value("--streams")?.clamp(1, 100_000),
                "--renders" => o.renders = value("--renders")?.clamp(1, 100_000),
                "--reps" => o.reps = value("--reps")?.clamp(1, 50),
                // cargo bench passes --bench to harness-less benches.
                "--bench" => {}
                other => return Err(format!("unknown option {other}")),
            }
        }
        Ok(o)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("metrics bench: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("metrics bench: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("metrics bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What keeps the streams live while measuring.
struct Live {
    _publishers: Vec<PublishSession>,
    _readers: Vec<Subscription>,
}

async fn populate(engine: &Engine, streams: usize) -> Result<Live, tidewater_core::Error> {
    let mut publishers = Vec::with_capacity(streams);
    let mut readers = Vec::with_capacity(2 * streams);
    let payload = Bytes::from(vec![0u8; 1_000]);
    for i in 0..streams {
        let key = StreamKey::new("live", &format!("cam{i:05}"))?;
        let mut p = engine
            .open_publish(Request::new(key.clone(), "rtmp"))
            .await?;
        p.set_catalog(vec![
            TrackInfo::video(TrackId(1), Codec::H264, 1280, 720)
                .with_config(Bytes::from_static(&[1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 0])),
            TrackInfo::audio(TrackId(2), Codec::Aac, 48_000, 2)
                .with_config(Bytes::from_static(&[0x11, 0x90])),
        ])?;
        for f in 0..60i64 {
            p.publish(Frame::video(
                TrackId(1),
                Codec::H264,
                f * 3000,
                f * 3000,
                f == 0,
                payload.clone(),
            ))?;
        }
        for protocol in ["http-flv", "rtmp"] {
            let mut sub = engine
                .subscribe(Request::new(key.clone(), protocol))
                .await?;
            while let Some(Ok(_)) = sub.try_recv() {}
            sub.record_sent(60 * 1_013);
            readers.push(sub);
        }
        publishers.push(p);
    }
    Ok(Live {
        _publishers: publishers,
        _readers: readers,
    })
}

/// Milliseconds per call of `f`: the median over `reps` runs of `n` calls.
fn per_call_ms<T>(reps: usize, n: usize, mut f: impl FnMut() -> T) -> f64 {
    // One call to warm caches and allocator.
    black_box(f());
    let runs: Vec<f64> = (0..reps)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..n {
                black_box(f());
            }
            started.elapsed().as_secs_f64() * 1e3 / n as f64
        })
        .collect();
    median(&runs)
}

type Labels = [(String, String); 2];

/// The same per-stream series as registered prometheus-client metrics.
fn registered(streams: &[StreamMetrics]) -> Registry {
    let mut registry = Registry::default();
    let gauge = |registry: &mut Registry, name: &str| {
        let family = Family::<Labels, Gauge>::default();
        registry.register(name, name, family.clone());
        family
    };
    let counter = |registry: &mut Registry, name: &str| {
        let family = Family::<Labels, Counter>::default();
        registry.register(name, name, family.clone());
        family
    };
    let buckets: Vec<f64> = LATENCY_BUCKETS_US
        .iter()
        .map(|us| *us as f64 / 1e6)
        .collect();
    let histogram = |registry: &mut Registry, name: &str| {
        let buckets = buckets.clone();
        let family = Family::<Labels, Histogram, _>::new_with_constructor(move || {
            Histogram::new(buckets.iter().copied())
        });
        registry.register(name, name, family.clone());
        family
    };
    let publishers = gauge(&mut registry, "tidewater_stream_publishers");
    let readers = gauge(&mut registry, "tidewater_stream_readers");
    let bytes_in = counter(&mut registry, "tidewater_stream_bytes_in");
    let frames_in = counter(&mut registry, "tidewater_stream_frames_in");
    let reader_counters: Vec<_> = [
        "tidewater_stream_bytes_out",
        "tidewater_stream_frames_out",
        "tidewater_stream_skips",
        "tidewater_stream_skipped_frames",
        "tidewater_stream_evictions",
        "tidewater_stream_kicks",
    ]
    .iter()
    .map(|n| counter(&mut registry, n))
    .collect();
    let lag = histogram(&mut registry, "tidewater_stream_reader_lag_seconds");
    let join = histogram(&mut registry, "tidewater_stream_join_seconds");
    let labels = |s: &StreamMetrics, protocol: &str| -> Labels {
        [
            ("path".to_string(), s.key.to_string()),
            ("protocol".to_string(), protocol.to_string()),
        ]
    };
    for s in streams {
        let l = labels(s, s.protocol);
        publishers.get_or_create(&l).set(1);
        bytes_in.get_or_create(&l).inc_by(s.bytes_in);
        frames_in.get_or_create(&l).inc_by(s.frames_in);
        for r in &s.readers {
            let l = labels(s, r.protocol);
            readers.get_or_create(&l).set(r.readers as i64);
            let values = [
                r.bytes_out,
                r.frames_out,
                r.skips,
                r.skipped_frames,
                r.evictions,
                r.kicks,
            ];
            for (family, v) in reader_counters.iter().zip(values) {
                family.get_or_create(&l).inc_by(v);
            }
            for (family, h) in [(&lag, &r.lag), (&join, &r.join_time)] {
                let metric = family.get_or_create(&l);
                for (bound, n) in h.buckets() {
                    let at = bound.map_or(f64::MAX, |us| us as f64 / 1e6);
                    for _ in 0..n {
                        metric.observe(at);
                    }
                }
            }
        }
    }
    registry
}

async fn run(o: &Options) -> Result<(), String> {
    let engine = Engine::builder()
        .app("live", AppSpec::default())
        .build()
        .map_err(|e| e.to_string())?;
    let setup = Instant::now();
    let _live = populate(&engine, o.streams)
        .await
        .map_err(|e| e.to_string())?;
    let setup = setup.elapsed();
    let metrics = Metrics::new(engine.clone());
    let text = metrics.render();
    let series = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    let snapshot = engine.stream_metrics();
    let anchor = registered(&snapshot);
    let mut anchor_text = String::new();
    prometheus_text::encode(&mut anchor_text, &anchor).map_err(|e| e.to_string())?;

    let render_ms = per_call_ms(o.reps, o.renders, || metrics.render());
    let snapshot_ms = per_call_ms(o.reps, o.renders, || engine.stream_metrics());
    let anchor_ms = per_call_ms(o.reps, o.renders, || {
        let mut out = String::new();
        let _ = prometheus_text::encode(&mut out, &anchor);
        out
    });

    println!("# /metrics render bench, {} ({})", today_utc(), machine());
    println!(
        "{} live streams × 2 reader protocols (set up in {:.1} s); {} renders per run, median of {} runs\n",
        o.streams,
        setup.as_secs_f64(),
        o.renders,
        o.reps
    );
    println!("| what | ms per render | output |");
    println!("|---|---|---|");
    println!(
        "| render (`Metrics::render`, what GET /metrics answers) | {render_ms:.2} | {series} series, {} KiB |",
        text.len() / 1024
    );
    println!("| of which the kernel's snapshot (`Engine::stream_metrics`) | {snapshot_ms:.2} | |");
    println!(
        "| anchor: the same per-stream series as registered prometheus-client metrics | {anchor_ms:.2} | {} KiB |",
        anchor_text.len() / 1024
    );
    println!(
        "\nrender / anchor: {:.2}× (per stream: {:.1} µs)",
        render_ms / anchor_ms,
        render_ms * 1e3 / o.streams as f64
    );
    if render_ms > Duration::from_secs(1).as_secs_f64() * 1e3 {
        return Err(format!("a render took {render_ms:.0} ms"));
    }
    Ok(())
}
