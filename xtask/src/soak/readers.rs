//! The soak's churning readers: one thread per output, short ffmpeg
//! readers one after the other, each checked.

use std::collections::VecDeque;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::WHIP_KEY;
use super::server::Addrs;
use super::webrtc::read_whep;

/// Seconds of packets each reader copies.
const READ_SECONDS: u32 = 4;
/// Video frames a 4 s reader must hold at least (3 s at 25 fps).
const MIN_VIDEO_FRAMES: usize = 75;
/// The clip's frame duration in ms; a step between two video decode
/// timestamps of more than one and a half of it is a missing frame.
const FRAME_MS: f64 = 40.0;
/// How long one reader may take (joining, probing, 4 s of media).
const READER_TIMEOUT: Duration = Duration::from_secs(40);
/// Each output starts a reader at most this often (HLS, LL-HLS and DASH
/// readers take their 4 s from the window at once: unpaced, they would
/// start ffmpeg several times a second on a shared machine).
const READER_CYCLE: Duration = Duration::from_secs(2);

/// One churning reader thread per output.
pub(super) struct Readers {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    failures: Arc<Mutex<VecDeque<String>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Readers {
    /// Reader threads for every output (WHEP only with `webrtc`), each
    /// taking the `sources` in turn.
    pub(super) fn start(addrs: &Addrs, sources: &'static [&'static str], webrtc: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(VecDeque::new()));
        let mut threads = Vec::new();
        let outputs = Output::ALL
            .into_iter()
            .filter(|o| webrtc || !matches!(o, Output::Whep));
        for (i, output) in outputs.enumerate() {
            let addrs = addrs.clone();
            let (stop, ok, failed, failures) = (
                Arc::clone(&stop),
                Arc::clone(&ok),
                Arc::clone(&failed),
                Arc::clone(&failures),
            );
            // DASH readers start with the others: ffmpeg 5.1's DASH reader
            // re-read segments of a stream younger than the MPD's
            // timeShiftBufferDepth until the server announced a depth no
            // deeper than the stream's age (pkg-dash `mpd::time_shift_depth`).
            threads.push(thread::spawn(move || {
                // Each output starts on a different source, then takes the next.
                let mut turn = i;
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    // The sources in turn, round and round (none: nothing to read).
                    let next = |turn: usize| sources.get(turn.checked_rem(sources.len())?).copied();
                    let Some(mut key) = next(turn) else { break };
                    turn += 1;
                    if !output.reads(key) {
                        let Some(other) = next(turn) else { break };
                        key = other;
                        turn += 1;
                    }
                    let url = output.url(&addrs, key);
                    let result = match output {
                        Output::Whep => read_whep(addrs.http, key, READ_SECONDS, MIN_VIDEO_FRAMES),
                        _ => read_once(output, &url),
                    };
                    match result {
                        Ok(()) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        // Stopping kills a reader in flight: not its failure.
                        Err(_) if stop.load(Ordering::Relaxed) => {}
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            let line = format!("{} reading {key}: {e:#}", output.name());
                            eprintln!("soak: {line}");
                            if let Ok(mut f) = failures.lock() {
                                f.push_back(line);
                                // Bounded: the first ones tell, the count says the rest.
                                f.truncate(20);
                            }
                        }
                    }
                    thread::sleep(READER_CYCLE.saturating_sub(started.elapsed()));
                }
            }));
        }
        Self {
            stop,
            ok,
            failed,
            failures,
            threads,
        }
    }

    /// Readers that passed so far.
    pub(super) fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Readers that failed so far.
    pub(super) fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Stops the threads (each after its current reader); the readers that
    /// passed, and the failures.
    pub(super) fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let failed = self.failed.load(Ordering::Relaxed);
        let mut failures: Vec<String> = self
            .failures
            .lock()
            .map(|f| f.iter().cloned().collect())
            .unwrap_or_default();
        if failed as usize > failures.len() {
            failures.push(format!("… and {} more", failed as usize - failures.len()));
        }
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

/// The outputs readers churn on.
#[derive(Debug, Clone, Copy)]
enum Output {
    Rtmp,
    HttpFlv,
    Srt,
    HttpTs,
    Rtsp,
    Hls,
    LlHls,
    Dash,
    Whep,
}

impl Output {
    const ALL: [Output; 9] = [
        Output::Rtmp,
        Output::HttpFlv,
        Output::Srt,
        Output::HttpTs,
        Output::Rtsp,
        Output::Hls,
        Output::LlHls,
        Output::Dash,
        Output::Whep,
    ];

    fn name(self) -> &'static str {
        match self {
            Output::Rtmp => "rtmp",
            Output::HttpFlv => "http-flv",
            Output::Srt => "srt",
            Output::HttpTs => "http-ts",
            Output::Rtsp => "rtsp",
            Output::Hls => "hls",
            Output::LlHls => "ll-hls",
            Output::Dash => "dash",
            Output::Whep => "whep",
        }
    }

    /// Whether this output's readers are run on `key`. RTSP readers of the
    /// WHIP publish are left out: ffmpeg 5.1 reading it over RTSP gets its
    /// first two video packets both at decode time 0, every time (a known
    /// issue, RELIABILITY.md), while every other output of the same stream
    /// passes; left in, it would fail every run.
    fn reads(self, key: &str) -> bool {
        !(matches!(self, Output::Rtsp) && key == WHIP_KEY)
    }

    fn url(self, a: &Addrs, key: &str) -> String {
        match self {
            Output::Rtmp => format!("rtmp://{}/{key}", a.rtmp),
            Output::HttpFlv => format!("http://{}/flv/{key}.flv", a.http),
            Output::Srt => format!("srt://{}?streamid=read:{key}&latency=200000", a.srt),
            Output::HttpTs => format!("http://{}/ts/{key}.ts", a.http),
            Output::Rtsp => format!("rtsp://{}/{key}", a.rtsp),
            Output::Hls => format!("http://{}/hls/{key}/index.m3u8", a.http),
            Output::LlHls => format!("http://{}/llhls/{key}/index.m3u8", a.http),
            Output::Dash => format!("http://{}/dash/{key}/manifest.mpd", a.http),
            Output::Whep => format!("http://{}/whep/{key}", a.http),
        }
    }
}

/// One reader: 4 s of packets copied to framecrc, checked.
fn read_once(output: Output, url: &str) -> Result<()> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin"]);
    if matches!(output, Output::Rtsp) {
        cmd.args(["-rtsp_transport", "tcp"]);
    }
    cmd.args(["-i", url])
        .args(["-t", &READ_SECONDS.to_string()])
        .args(["-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("could not run ffmpeg")?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + READER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for ffmpeg")? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let (text, errors) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    let Some(status) = status else {
        bail!("still reading after {READER_TIMEOUT:?} (killed); stderr: {errors}");
    };
    if !status.success() || !errors.trim().is_empty() {
        bail!("ffmpeg ended {status}; stderr: {}", errors.trim());
    }
    check_video(&text)
}

/// The framecrc of one video stream: enough frames, none missing.
fn check_video(text: &str) -> Result<()> {
    let mut timebase: Option<f64> = None;
    let mut dts: Vec<i64> = Vec::new();
    for line in text.lines() {
        if let Some(tb) = line.strip_prefix("#tb 0: ") {
            let (num, den) = tb.split_once('/').context("a #tb line without `/`")?;
            let (num, den): (f64, f64) = (num.trim().parse()?, den.trim().parse()?);
            timebase = Some(num / den * 1000.0);
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = line.split(',').map(str::trim);
        let (Some(stream), Some(d)) = (fields.next(), fields.next()) else {
            bail!("not a framecrc packet line: {line:?}");
        };
        if stream != "0" {
            bail!("a packet of stream {stream} where only video was mapped: {line:?}");
        }
        dts.push(
            d.parse()
                .with_context(|| format!("framecrc line {line:?}"))?,
        );
    }
    let ms = timebase.context("no #tb line for the video stream")?;
    if dts.len() < MIN_VIDEO_FRAMES {
        bail!(
            "{} video frames in {READ_SECONDS} s (at least {MIN_VIDEO_FRAMES} expected)",
            dts.len()
        );
    }
    for (a, b) in dts.iter().zip(dts.iter().skip(1)) {
        let step = b.saturating_sub(*a) as f64 * ms;
        if step <= 0.0 {
            bail!("video decode time went back or stood still: {a} -> {b}");
        }
        if step > 1.5 * FRAME_MS {
            bail!("a gap of {step:.0} ms between two video frames ({a} -> {b}): frames lost");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_frame_fails_the_reader() {
        let head = "#tb 0: 1/1000\n#media_type 0: video\n";
        let whole: String = (0..100)
            .map(|i| format!("0, {}, {}, 40, 100, 0x0\n", i * 40, i * 40))
            .collect();
        assert!(check_video(&format!("{head}{whole}")).is_ok());
        let gap: String = (0..100)
            .filter(|i| *i != 50 && *i != 51)
            .map(|i| format!("0, {}, {}, 40, 100, 0x0\n", i * 40, i * 40))
            .collect();
        assert!(check_video(&format!("{head}{gap}")).is_err());
        assert!(check_video(&format!("{head}0, oops\n")).is_err());
        assert!(check_video(head).is_err());
    }
}
