//! `cargo xtask soak [--minutes N] [--sample-secs S] [--release]`: the
//! server under steady publishing and churning readers, its resources
//! sampled, the run failed on growth or on a reader that lost frames.
//!
//! One `tidewater` process (debug build, `--release` for long runs) on
//! loopback ports. A 10 s clip (H.264 320x240 at 25 fps, a keyframe a
//! second, AAC, in MP4 for its global headers) is encoded once into
//! `target/soak/`; ffmpeg publishes it in a loop, in real
//! time, over every ingest: RTMP (`live/rtmp`), SRT (`live/srt`) and RTSP
//! over TCP (`live/rtsp`); a str0m WHIP client publishes the same picture
//! (constrained baseline, no audio) at `live/whip`. One reader thread per
//! output (RTMP, HTTP-FLV, SRT, HTTP-TS, RTSP, HLS, LL-HLS, DASH) runs
//! short ffmpeg readers one after the other, each on the next published
//! stream in turn, copying 4 s of the video's packets to framecrc: each
//! must end by itself, exit 0 with nothing on its standard error, and hold
//! a whole run of video (at least 3 s of it, no decode-timestamp step back,
//! and no step longer than one and a half frames: a frame it should have
//! had is missing). The WHEP thread does the same with str0m readers that
//! receive 4 s of video RTP and then delete their session: no sequence
//! number missing, RTP time rising by at most one and a half frames.
//!
//! Every `--sample-secs` (60; 10 when the run is 5 minutes or shorter) the
//! server's RSS (`/proc/PID/status`), open file descriptors
//! (`/proc/PID/fd`) and tokio tasks (`tidewater_runtime_alive_tasks` on
//! `/metrics`) are written with the readers' counts to
//! `target/soak/soak-<unix time>.csv`. After the warm-up (`--warmup-secs`,
//! by default the first fifth of the run but at least a minute: packagers'
//! windows, caches and the allocator's arenas fill over the first minute of
//! churn), the floor of the last quarter of the
//! samples must stay within 5 % of the ceiling of the first quarter, for
//! each resource (ceiling against floor: readers come and go between
//! samples, so single samples swing; a leak raises the floor past the old
//! ceiling). The run also fails when the server, or a publisher, exits.
//!
//! The WHIP publisher and the WHEP readers run in runs of 15 minutes or
//! more (`--webrtc` / `--no-webrtc` to choose), whose warm-up is then at
//! least 6 minutes: with them the server's RSS ramps for that long.

// It reads what child processes print (ffmpeg's framecrc and logs, the
// server's metrics, cargo's output): an unexpected line is an error or is
// skipped, never a panic of the task.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

mod readers;
mod server;
mod webrtc;

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::cmd::{Workspace, exe};
use readers::Readers;
use server::{Publishers, Server, make_clip};
use webrtc::{WhipPublisher, make_whip_clip};

/// Allowed growth of each resource after the warm-up.
const MAX_GROWTH: f64 = 0.05;

/// The published streams, by ingest.
const SOURCES: [&str; 4] = ["live/rtmp", "live/srt", "live/rtsp", WHIP_KEY];

/// The stream the WHIP publisher publishes.
const WHIP_KEY: &str = "live/whip";

/// Runs this long or longer have the WHIP publisher and WHEP readers
/// unless `--no-webrtc` (shorter ones with `--webrtc`): with them the
/// server's RSS ramps for about six minutes (a 30-minute release run: 94
/// MiB after one, 120 after five, flat from six), longer than a short
/// run's warm-up, so a 2-minute run would judge the ramp as growth.
const WEBRTC_MIN_MINUTES: f64 = 15.0;
/// The least warm-up of a run with WebRTC peers (see above).
const WEBRTC_WARMUP: Duration = Duration::from_secs(6 * 60);

#[derive(Debug, Clone)]
struct Options {
    minutes: f64,
    sample: Duration,
    warmup: Duration,
    release: bool,
    /// WHIP publisher and WHEP readers.
    webrtc: bool,
}

impl Options {
    fn parse(args: &[OsString]) -> Result<Self> {
        let mut minutes: f64 = 2.0;
        let mut sample = None;
        let mut warmup = None;
        let mut release = false;
        let mut webrtc = None;
        let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
        while let Some(arg) = it.next() {
            let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
            match arg.as_str() {
                "--minutes" => {
                    minutes = value("--minutes")?.parse().context("--minutes: a number")?
                }
                "--sample-secs" => {
                    sample = Some(Duration::from_secs(
                        value("--sample-secs")?
                            .parse()
                            .context("--sample-secs: whole seconds")?,
                    ))
                }
                "--warmup-secs" => {
                    warmup = Some(Duration::from_secs(
                        value("--warmup-secs")?
                            .parse()
                            .context("--warmup-secs: whole seconds")?,
                    ))
                }
                "--release" => release = true,
                "--webrtc" => webrtc = Some(true),
                "--no-webrtc" => webrtc = Some(false),
                other => bail!(
                    "unknown argument `{other}`; usage: cargo xtask soak [--minutes N] \
                     [--sample-secs S] [--warmup-secs W] [--release] [--webrtc | --no-webrtc]"
                ),
            }
        }
        if minutes.is_nan() || minutes <= 0.0 {
            bail!("--minutes must be positive");
        }
        let sample = sample.unwrap_or(if minutes <= 5.0 {
            Duration::from_secs(10)
        } else {
            Duration::from_secs(60)
        });
        if sample.is_zero() {
            bail!("--sample-secs must be positive");
        }
        // The packagers' windows, the caches and the allocator's arenas
        // fill over the first minute of churn: growth before that is not a leak.
        let webrtc = webrtc.unwrap_or(minutes >= WEBRTC_MIN_MINUTES);
        let warmup = warmup.unwrap_or_else(|| {
            let base = Duration::from_secs_f64((minutes * 60.0 / 5.0).max(60.0));
            if webrtc {
                base.max(WEBRTC_WARMUP)
            } else {
                base
            }
        });
        Ok(Self {
            minutes,
            sample,
            warmup,
            release,
            webrtc,
        })
    }
}

pub(crate) fn soak(ws: &Workspace, args: &[OsString]) -> Result<()> {
    let opts = Options::parse(args)?;
    let target = ws.target_dir()?;
    let mut build = ws.cargo();
    build.args(["build", "-p", "tidewater-server"]);
    if opts.release {
        build.arg("--release");
    }
    ws.run(&mut build)?;
    let profile = if opts.release { "release" } else { "debug" };
    let bin = target.join(profile).join(exe("tidewater"));
    let dir = target.join("soak");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let clip = dir.join("clip.mp4");
    if !clip.is_file() {
        make_clip(&clip)?;
    }
    let whip_clip = dir.join("clip-baseline.h264");
    if !whip_clip.is_file() {
        make_whip_clip(&whip_clip)?;
    }
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let csv_path = dir.join(format!("soak-{stamp}.csv"));
    let log_path = dir.join(format!("soak-{stamp}.server.log"));
    eprintln!(
        "soak: {} min, a sample every {:?}, {} build; curve in {}",
        opts.minutes,
        opts.sample,
        profile,
        csv_path.display()
    );

    let mut server = Server::start(&bin, &log_path)?;
    let publishers = Publishers::start(&clip, &server.addrs, &log_path)?;
    let whip = if opts.webrtc {
        Some(WhipPublisher::start(
            server.addrs.http,
            WHIP_KEY,
            &whip_clip,
        )?)
    } else {
        eprintln!(
            "soak: no WHIP publisher nor WHEP readers (runs of {WEBRTC_MIN_MINUTES} min or more have \
             them; --webrtc to force)"
        );
        None
    };
    let sources = if opts.webrtc {
        &SOURCES[..]
    } else {
        // Every source but the last, WHIP's.
        SOURCES.split_last().map_or(&[][..], |(_, rest)| rest)
    };
    for &key in sources {
        server.wait_live(key)?;
    }
    let readers = Readers::start(&server.addrs, sources, opts.webrtc);
    let result = run(
        &opts,
        &mut server,
        &publishers,
        whip.as_ref(),
        &readers,
        &csv_path,
    );
    let (ok, failures) = readers.stop();
    drop(whip);
    drop(publishers);
    server.stop();
    let samples = result?;
    eprintln!("soak: {ok} readers checked");
    let verdict = judge(&samples, opts.warmup);
    print_summary(&samples, &verdict, ok, &csv_path);
    if !failures.is_empty() {
        bail!(
            "{} reader(s) failed (server log: {}):\n{}",
            failures.len(),
            log_path.display(),
            failures.join("\n")
        );
    }
    if let Some(why) = verdict.failure() {
        bail!("{why}");
    }
    if ok == 0 {
        bail!("no reader completed");
    }
    Ok(())
}

/// Samples until the end of the run; fails early if the server or a publisher exits.
fn run(
    opts: &Options,
    server: &mut Server,
    publishers: &Publishers,
    whip: Option<&WhipPublisher>,
    readers: &Readers,
    csv_path: &Path,
) -> Result<Vec<Sample>> {
    let mut csv =
        File::create(csv_path).with_context(|| format!("creating {}", csv_path.display()))?;
    writeln!(
        csv,
        "elapsed_s,rss_kib,open_fds,tokio_tasks,readers_ok,readers_failed"
    )?;
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(opts.minutes * 60.0);
    let mut samples = Vec::new();
    let mut next = start;
    loop {
        if let Some(status) = server.exited() {
            bail!("the server exited ({status}) during the soak");
        }
        publishers.check_alive()?;
        if let Some(why) = whip.and_then(WhipPublisher::ended) {
            bail!("the WHIP publisher ended during the soak: {why}");
        }
        let now = Instant::now();
        if now >= next {
            let s = server.sample(start.elapsed(), readers)?;
            writeln!(
                csv,
                "{:.0},{},{},{},{},{}",
                s.elapsed.as_secs_f64(),
                s.rss_kib,
                s.fds,
                s.tasks,
                s.readers_ok,
                s.readers_failed
            )?;
            csv.flush()?;
            eprintln!(
                "soak: {:>5.0} s  rss {} KiB  fds {}  tasks {}  readers ok {} failed {}",
                s.elapsed.as_secs_f64(),
                s.rss_kib,
                s.fds,
                s.tasks,
                s.readers_ok,
                s.readers_failed
            );
            samples.push(s);
            next += opts.sample;
            if now >= end {
                return Ok(samples);
            }
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// One sample of the server's resources.
#[derive(Debug, Clone)]
struct Sample {
    elapsed: Duration,
    rss_kib: u64,
    fds: u64,
    tasks: u64,
    readers_ok: u64,
    readers_failed: u64,
}

/// Growth of each resource after the warm-up.
#[derive(Debug)]
struct Verdict {
    /// `(name, ceiling of the first quarter, floor of the last quarter)`.
    growth: Vec<(&'static str, u64, u64)>,
    /// Why no verdict could be given.
    too_short: Option<String>,
}

impl Verdict {
    fn failure(&self) -> Option<String> {
        if let Some(why) = &self.too_short {
            return Some(why.clone());
        }
        let grown: Vec<String> = self
            .growth
            .iter()
            .filter(|(_, first, last)| growth(*first, *last) > MAX_GROWTH)
            .map(|(name, first, last)| {
                format!(
                    "{name} grew {:.1} % after the warm-up ({first} -> {last})",
                    growth(*first, *last) * 100.0
                )
            })
            .collect();
        (!grown.is_empty()).then(|| grown.join("; "))
    }
}

fn growth(first: u64, last: u64) -> f64 {
    (last as f64 - first as f64) / (first.max(1) as f64)
}

/// A resource's name and how to read it from a sample.
type Resource = (&'static str, fn(&Sample) -> u64);

/// The samples within `warmup` of the start are warm-up; of the rest, the
/// ceiling of the first quarter against the floor of the last quarter.
fn judge(samples: &[Sample], warmup: Duration) -> Verdict {
    let warm = samples
        .iter()
        .position(|s| s.elapsed >= warmup)
        .unwrap_or(samples.len());
    let rest = samples.get(warm..).unwrap_or_default();
    if rest.len() < 4 {
        return Verdict {
            growth: Vec::new(),
            too_short: Some(format!(
                "{} samples after the warm-up: at least 4 are needed (a longer run, a \
                 shorter --sample-secs or --warmup-secs)",
                rest.len()
            )),
        };
    }
    let quarter = rest.len().div_ceil(4);
    let head = rest.get(..quarter).unwrap_or_default();
    let tail = rest
        .get(rest.len().saturating_sub(quarter)..)
        .unwrap_or_default();
    let resources: [Resource; 3] = [
        ("RSS (KiB)", |s| s.rss_kib),
        ("open fds", |s| s.fds),
        ("tokio tasks", |s| s.tasks),
    ];
    Verdict {
        growth: resources
            .iter()
            .map(|(name, f)| {
                let ceiling = head.iter().map(f).max().unwrap_or(0);
                let floor = tail.iter().map(f).min().unwrap_or(0);
                (*name, ceiling, floor)
            })
            .collect(),
        too_short: None,
    }
}

fn print_summary(samples: &[Sample], verdict: &Verdict, ok: u64, csv: &Path) {
    let minutes = samples
        .last()
        .map_or(0.0, |s| s.elapsed.as_secs_f64() / 60.0);
    println!(
        "\nsoak summary: {minutes:.1} min, {} samples, {ok} readers checked, curve {}",
        samples.len(),
        csv.display()
    );
    let range = |f: fn(&Sample) -> u64| {
        let min = samples.iter().map(f).min().unwrap_or(0);
        let max = samples.iter().map(f).max().unwrap_or(0);
        (min, max)
    };
    println!(
        "| resource | min | max | first quarter after warm-up (ceiling) | last quarter (floor) | growth |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let ranges = [range(|s| s.rss_kib), range(|s| s.fds), range(|s| s.tasks)];
    for ((name, first, last), (min, max)) in verdict.growth.iter().zip(ranges) {
        println!(
            "| {name} | {min} | {max} | {first} | {last} | {:+.1} % |",
            growth(*first, *last) * 100.0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: u64, rss: u64) -> Sample {
        Sample {
            elapsed: Duration::from_secs(i * 10),
            rss_kib: rss,
            fds: 50,
            tasks: 30,
            readers_ok: i,
            readers_failed: 0,
        }
    }

    #[test]
    fn a_flat_curve_passes_and_a_leak_fails() {
        let flat: Vec<Sample> = (0..12)
            .map(|i| sample(i, 100_000 + i % 3 * 1_000))
            .collect();
        let warmup = Duration::from_secs(15);
        assert_eq!(judge(&flat, warmup).failure(), None);
        // The warm-up may grow as it likes.
        let mut warm = flat.clone();
        warm[0].rss_kib = 10_000;
        warm[1].rss_kib = 50_000;
        assert_eq!(judge(&warm, warmup).failure(), None);
        let leak: Vec<Sample> = (0..12).map(|i| sample(i, 100_000 + i * 2_000)).collect();
        let why = judge(&leak, warmup).failure().expect("a leak fails");
        assert!(why.contains("RSS"), "{why}");
    }

    #[test]
    fn too_few_samples_is_no_pass() {
        let few: Vec<Sample> = (0..3).map(|i| sample(i, 100_000)).collect();
        assert!(judge(&few, Duration::ZERO).failure().is_some());
    }
}
