//! `rtsp-load`: N RTSP readers of one live stream, from one thread.
//!
//! Opens N play sessions (`DESCRIBE`, `SETUP` per track, `PLAY`) to
//! `rtsp://127.0.0.1:PORT/PATH` on a current-thread tokio runtime, RTP
//! interleaved on the connection (`--transport tcp`) or over UDP to two
//! local ports per track (`--transport udp`), ramped at a fixed rate; lets
//! them settle, measures a window and prints one `RESULT key=value …` line
//! on stdout (progress to stderr). It is the load generator of `cargo xtask
//! bench rtsp` (`benches/rtsp.rs`), usable on its own against any RTSP
//! server on loopback or across the bench's veth pair (`--topology veth`).
//!
//! Per packet it reads the RTP header and the first bytes of the payload
//! ([`tidewater_bench::rtsp`]) and skips the rest without copying. As in
//! `rtmp-load`, reading is **eager until a reader's first keyframe, then
//! paced**: the socket leaves the event loop and is read on a tick shared by
//! every reader (`--read-interval-ms`, 100 ms), as a player's render loop
//! would, so that this tool's wake-ups and acknowledgements cost little and
//! the server's CPU is the server's (see `rtmp-load` for the measurements
//! behind this). UDP readers are read on a 5 ms tick until their first
//! keyframe, then on the shared tick. The first `--eager` readers (4) read
//! as data arrives throughout: the latency figure comes from them.
//!
//! Figures:
//!
//! - **first keyframe**: from the start of the TCP connect to the read that
//!   delivered the head of the first RTP packet of an H.264 IDR picture.
//! - **lag to live** (every reader): a video packet's `arrival − RTP time`
//!   is its offset against the sender's clock; a reader's lag is that offset
//!   (or, when nothing arrives, the age of the newest RTP time it has) minus
//!   the smallest offset it saw. **Within 1 s of live**: media arrived in the
//!   window and the lag stayed ≤ `--max-lag` throughout, its end included.
//! - **latency** (eager readers): for each video packet that ends a frame
//!   (marker bit), its arrival (wall clock) minus the wall-clock time the
//!   server's last RTCP sender report maps its RTP time to. tidewater maps
//!   RTP time to the wall clock at which the publish's first frame arrived
//!   plus media time, so for a publisher that sends in real time (`ffmpeg
//!   -re`, no B-frames) this is the time from the frame's arrival at the
//!   server to its last packet's arrival at the reader: the added latency.
//! - **server CPU**, **load tool CPU**, per-CPU busy, softirq and kernel
//!   thread time over the window: as `rtmp-load` (`/proc`).
//!
//! ```text
//! rtsp-load --url rtsp://127.0.0.1:8554/live/bench --readers 500
//!   [--transport tcp|udp] [--ramp-rate 400] [--settle 6] [--window 15]
//!   [--max-lag 1.0] [--server-pid PID[,PID…]] [--wait-live 20]
//!   [--connect-timeout 10] [--read-interval-ms 100] [--eager 4]
//!   [--rcvbuf 1048576]
//! ```

// It reads what the server sends: a malformed or short answer is an error
// of that viewer, never a panic of the load tool.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, UdpSocket};
use std::pin::Pin;
use std::process::ExitCode;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tidewater_bench::procstat::{
    CpuSample, CpuWindow, clock_ticks_per_second, percentile, tree_cpu_ticks,
};
use tidewater_bench::rtsp::{
    self as client, Interleave, Item, SenderReport, h264_keyframe, rtp_header, sender_report,
};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{sleep_until, timeout};

/// Bytes read per `recv` (one buffer shared by all readers).
const READ_BUF: usize = 256 * 1024;
/// How long one probe attempt waits for a keyframe before reconnecting.
const PROBE_ATTEMPT: Duration = Duration::from_secs(6);
/// Different errors listed in the summary.
const ERROR_SAMPLES: usize = 4;
/// A keep-alive (`GET_PARAMETER`) this often, well inside the 60 s session
/// timeout both servers announce.
const KEEP_ALIVE: Duration = Duration::from_secs(20);
/// The UDP readers' tick until their first keyframe.
const UDP_JOIN_TICK: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp,
    Udp,
}

#[derive(Debug, Clone)]
struct Options {
    url: String,
    addr: SocketAddr,
    readers: usize,
    transport: Transport,
    ramp_rate: f64,
    settle: f64,
    window: f64,
    max_lag: f64,
    server_pids: Vec<u32>,
    wait_live: f64,
    connect_timeout: f64,
    read_interval_ms: u64,
    eager: usize,
    rcvbuf: u32,
}

fn usage() -> &'static str {
    "usage: rtsp-load --url rtsp://127.0.0.1:PORT/PATH --readers N [--transport tcp|udp] \
     [--ramp-rate 400] [--settle 6] [--window 15] [--max-lag 1.0] [--server-pid PID[,PID…]] \
     [--wait-live 20] [--connect-timeout 10] [--read-interval-ms 100] [--eager 4] \
     [--rcvbuf 1048576]"
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut o = Options {
            url: String::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], 8554)),
            readers: 0,
            transport: Transport::Tcp,
            ramp_rate: 400.0,
            settle: 6.0,
            window: 15.0,
            max_lag: 1.0,
            server_pids: Vec::new(),
            wait_live: 20.0,
            connect_timeout: 10.0,
            read_interval_ms: 100,
            eager: 4,
            rcvbuf: 1 << 20,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{arg} needs a value"))
            };
            let num = |s: String| -> Result<f64, String> {
                s.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| format!("{arg}: not a number ≥ 0: {s}"))
            };
            match arg.as_str() {
                "--url" => o.url = value()?,
                "--readers" => o.readers = num(value()?)? as usize,
                "--transport" => {
                    o.transport = match value()?.as_str() {
                        "tcp" => Transport::Tcp,
                        "udp" => Transport::Udp,
                        other => return Err(format!("--transport {other:?}: tcp or udp")),
                    }
                }
                "--ramp-rate" => o.ramp_rate = num(value()?)?,
                "--settle" => o.settle = num(value()?)?,
                "--window" => o.window = num(value()?)?,
                "--max-lag" => o.max_lag = num(value()?)?,
                "--wait-live" => o.wait_live = num(value()?)?,
                "--connect-timeout" => o.connect_timeout = num(value()?)?,
                "--read-interval-ms" => o.read_interval_ms = num(value()?)? as u64,
                "--eager" => o.eager = num(value()?)? as usize,
                "--rcvbuf" => o.rcvbuf = num(value()?)? as u32,
                "--server-pid" => {
                    for pid in value()?.split(',').filter(|s| !s.is_empty()) {
                        o.server_pids.push(
                            pid.trim()
                                .parse()
                                .map_err(|_| format!("--server-pid: not a pid: {pid}"))?,
                        );
                    }
                }
                "-h" | "--help" => return Err(usage().to_string()),
                other => return Err(format!("unknown argument {other:?}\n{}", usage())),
            }
        }
        if o.url.is_empty() {
            return Err(format!("--url is required\n{}", usage()));
        }
        let rest = o
            .url
            .strip_prefix("rtsp://")
            .ok_or_else(|| format!("--url must start with rtsp://: {}", o.url))?;
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if path.is_empty() {
            return Err(format!("--url needs a path: {}", o.url));
        }
        o.addr = host
            .parse()
            .map_err(|_| format!("--url needs a numeric IP:PORT host: {host}"))?;
        tidewater_bench::topology::allowed_target(o.addr.ip())?;
        if o.readers == 0 || o.ramp_rate <= 0.0 || o.window <= 0.0 {
            return Err("--readers, --ramp-rate and --window must be positive".into());
        }
        Ok(o)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Playing,
    Ended,
    Failed,
}

/// One reader's record.
#[derive(Debug, Clone)]
struct Reader {
    phase: Phase,
    connect_at: Option<Instant>,
    first_keyframe: Option<Duration>,
    /// The video track's RTP clock rate.
    clock: f64,
    /// Smallest `arrival − RTP time` seen, seconds since `base`.
    anchor: f64,
    /// Newest RTP time received, unwrapped, in clock units.
    newest_ts: Option<i64>,
    last_raw: u32,
    last_ts: i64,
    /// Largest lag seen while the window was open, seconds.
    max_lag: f64,
    media_in_window: u64,
    /// The video track's last sender report.
    report: Option<SenderReport>,
    error: Option<String>,
}

impl Reader {
    fn new() -> Self {
        Self {
            phase: Phase::Connecting,
            connect_at: None,
            first_keyframe: None,
            clock: 90_000.0,
            anchor: f64::INFINITY,
            newest_ts: None,
            last_raw: 0,
            last_ts: 0,
            max_lag: 0.0,
            media_in_window: 0,
            report: None,
            error: None,
        }
    }

    /// A video RTP packet's head arrived at `now`; returns its latency in
    /// seconds when it ends a frame and a sender report maps its time.
    fn on_video(&mut self, head: &[u8], now: Instant, shared: &Shared) -> Option<f64> {
        let h = rtp_header(head)?;
        let ts = match self.newest_ts {
            None => i64::from(h.timestamp),
            Some(_) => self.last_ts + i64::from(h.timestamp.wrapping_sub(self.last_raw) as i32),
        };
        self.last_raw = h.timestamp;
        self.last_ts = ts;
        self.newest_ts = Some(self.newest_ts.map_or(ts, |n| n.max(ts)));
        let arrival = now.duration_since(shared.base).as_secs_f64();
        let offset = arrival - ts as f64 / self.clock;
        if offset < self.anchor {
            self.anchor = offset;
        }
        if shared.window_open.get() {
            self.media_in_window += 1;
            self.max_lag = self.max_lag.max(offset - self.anchor);
        }
        if self.first_keyframe.is_none()
            && head.get(h.payload_at..).is_some_and(h264_keyframe)
            && let Some(at) = self.connect_at
        {
            self.first_keyframe = Some(now.duration_since(at));
        }
        let report = self.report?;
        if !h.marker {
            return None;
        }
        let since = f64::from(h.timestamp.wrapping_sub(report.rtp) as i32) / self.clock;
        Some(shared.unix_of(now) - (report.unix_secs() + since))
    }

    /// Lag of the newest data at `now` (stalls count), seconds.
    fn lag_at(&self, now: Instant, base: Instant) -> f64 {
        match self.newest_ts {
            Some(ts) if self.anchor.is_finite() => {
                now.duration_since(base).as_secs_f64() - ts as f64 / self.clock - self.anchor
            }
            _ => f64::INFINITY,
        }
    }
}

struct Shared {
    base: Instant,
    /// `base` on the wall clock, seconds since the Unix epoch.
    base_unix: f64,
    readers: RefCell<Vec<Reader>>,
    window_open: Cell<bool>,
    buf: RefCell<Box<[u8]>>,
    bytes: Cell<u64>,
    /// Latency samples (seconds) of the eager readers in the window.
    latency: RefCell<Vec<f64>>,
}

impl Shared {
    /// Runs `f` on reader `idx`; every index comes from the table made at
    /// the start (the readers and the probe), so `None` is never expected.
    fn with_reader<R>(&self, idx: usize, f: impl FnOnce(&mut Reader) -> R) -> Option<R> {
        self.readers.borrow_mut().get_mut(idx).map(f)
    }

    fn unix_of(&self, t: Instant) -> f64 {
        self.base_unix + t.duration_since(self.base).as_secs_f64()
    }

    /// Records what one packet carried for reader `idx`: `track` is the
    /// SDP index, `video` the video track's index.
    fn packet(
        &self,
        idx: usize,
        track: usize,
        rtcp: bool,
        video: usize,
        head: &[u8],
        now: Instant,
    ) {
        if track != video {
            return;
        }
        let mut readers = self.readers.borrow_mut();
        let Some(r) = readers.get_mut(idx) else {
            return;
        };
        if rtcp {
            if let Some(sr) = sender_report(head) {
                r.report = Some(sr);
            }
            return;
        }
        if let Some(latency) = r.on_video(head, now, self)
            && self.window_open.get()
        {
            self.latency.borrow_mut().push(latency);
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("rtsp-load: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rtsp-load: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rtsp-load: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(opts: Options) -> Result<(), String> {
    let clk_tck = clock_ticks_per_second();
    let base = Instant::now();
    let base_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let shared = Rc::new(Shared {
        base,
        base_unix,
        readers: RefCell::new(vec![Reader::new(); opts.readers + 1]),
        window_open: Cell::new(false),
        buf: RefCell::new(vec![0u8; READ_BUF].into_boxed_slice()),
        bytes: Cell::new(0),
        latency: RefCell::new(Vec::new()),
    });
    let opts = Rc::new(opts);

    // Wait until the stream is live: a probe reader (slot `readers`) that
    // reconnects until it has seen a keyframe.
    if opts.wait_live > 0.0 {
        let deadline = Instant::now() + Duration::from_secs_f64(opts.wait_live);
        let probe = opts.readers;
        loop {
            shared.with_reader(probe, |r| *r = Reader::new());
            let attempt = timeout(
                PROBE_ATTEMPT,
                reader(probe, Rc::clone(&shared), Rc::clone(&opts), true),
            )
            .await;
            let last_error = match attempt {
                Ok(Ok(()))
                    if shared
                        .with_reader(probe, |r| r.first_keyframe.is_some())
                        .unwrap_or(false) =>
                {
                    break;
                }
                Ok(Ok(())) => "ended before a keyframe".to_string(),
                Ok(Err(e)) => e,
                Err(_) => "no keyframe within the attempt".to_string(),
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "stream not live after {:.0} s: {last_error}",
                    opts.wait_live
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let kf = shared.with_reader(probe, |r| r.first_keyframe).flatten();
        eprintln!(
            "rtsp-load: stream is live (probe reader's first keyframe after {:.0} ms)",
            kf.map_or(0.0, |d| d.as_secs_f64() * 1e3)
        );
    }

    let ramp_start = Instant::now();
    let server_ramp_start = tree_cpu_ticks(&opts.server_pids);
    let mut tasks = Vec::with_capacity(opts.readers);
    for i in 0..opts.readers {
        tasks.push(tokio::task::spawn_local({
            let shared = Rc::clone(&shared);
            let opts = Rc::clone(&opts);
            async move {
                if let Err(e) = reader(i, Rc::clone(&shared), opts, false).await {
                    shared.with_reader(i, |r| {
                        r.phase = Phase::Failed;
                        r.error = Some(e);
                    });
                }
            }
        }));
        let due = ramp_start + Duration::from_secs_f64((i + 1) as f64 / opts.ramp_rate);
        sleep_until(due.into()).await;
    }
    let ramp = ramp_start.elapsed().as_secs_f64();
    eprintln!(
        "rtsp-load: {} readers started in {ramp:.1} s; settling {:.0} s",
        opts.readers, opts.settle
    );
    tokio::time::sleep(Duration::from_secs_f64(opts.settle)).await;

    let start = Instant::now();
    let cpu_start = CpuSample::take(&opts.server_pids);
    let bytes_start = shared.bytes.get();
    shared.window_open.set(true);
    tokio::time::sleep(Duration::from_secs_f64(opts.window)).await;
    shared.window_open.set(false);
    let end = Instant::now();
    let bytes = shared.bytes.get() - bytes_start;
    let cpu_end = CpuSample::take(&opts.server_pids);
    let secs = end.duration_since(start).as_secs_f64();
    for task in &tasks {
        task.abort();
    }

    let window = CpuWindow::between(&cpu_start, &cpu_end, clk_tck, secs);
    let (server_cpu, load_cpu) = (window.server, window.own);
    let ramp_server_cpu = match (server_ramp_start, cpu_start.server_ticks()) {
        (Some(a), Some(b)) if !opts.server_pids.is_empty() => {
            Some(b.saturating_sub(a) as f64 / clk_tck)
        }
        _ => None,
    };
    let CpuWindow {
        busy: cpu_busy,
        softirq: cpu_softirq,
        kthreads: cpu_kthreads,
        ..
    } = window;

    let readers = shared.readers.borrow();
    // The probe's slot, after the readers, is not counted.
    let readers = readers.get(..opts.readers).unwrap_or(readers.as_slice());
    let count = |p: Phase| readers.iter().filter(|r| r.phase == p).count();
    let mut keyframe_ms: Vec<f64> = readers
        .iter()
        .filter_map(|r| r.first_keyframe)
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    keyframe_ms.sort_by(f64::total_cmp);
    let mut lags: Vec<f64> = readers
        .iter()
        .map(|r| {
            if r.first_keyframe.is_none() || r.media_in_window == 0 {
                f64::INFINITY
            } else {
                r.max_lag.max(r.lag_at(end, shared.base))
            }
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    let within = lags.iter().filter(|&&l| l <= opts.max_lag).count();
    let mut latency: Vec<f64> = shared.latency.borrow().iter().map(|s| s * 1e3).collect();
    latency.sort_by(f64::total_cmp);
    let mut errors: Vec<String> = Vec::new();
    for e in readers.iter().filter_map(|r| r.error.as_ref()) {
        if errors.len() < ERROR_SAMPLES && !errors.contains(e) {
            errors.push(e.clone());
        }
    }
    let mbps = bytes as f64 * 8.0 / secs / 1e6;
    let fmt_opt = |v: Option<f64>| v.map_or("na".to_string(), |v| format!("{v:.3}"));
    let ms = |v: f64| {
        if v.is_finite() {
            format!("{v:.1}")
        } else {
            "na".into()
        }
    };
    let result = format!(
        "RESULT readers={} transport={} connected={} playing={} failed={} ended={} keyframe={} \
         within={} mbps={mbps:.1} server_cpu={} load_cpu={} kf_p50_ms={} kf_p99_ms={} \
         kf_max_ms={} lag_p50_ms={} lag_p99_ms={} lat_p50_ms={} lat_p99_ms={} lat_samples={} \
         window_s={secs:.2} ramp_s={ramp:.2} ramp_server_cpu_s={} cpu_busy={cpu_busy} \
         cpu_softirq={cpu_softirq} cpu_kthreads={cpu_kthreads}",
        opts.readers,
        match opts.transport {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        },
        opts.readers - count(Phase::Connecting) - count(Phase::Failed),
        count(Phase::Playing),
        count(Phase::Failed),
        count(Phase::Ended),
        keyframe_ms.len(),
        within,
        fmt_opt(server_cpu),
        fmt_opt(load_cpu),
        ms(percentile(&keyframe_ms, 0.5)),
        ms(percentile(&keyframe_ms, 0.99)),
        ms(keyframe_ms.last().copied().unwrap_or(f64::NAN)),
        ms(percentile(&lags, 0.5) * 1e3),
        ms(percentile(&lags, 0.99) * 1e3),
        ms(percentile(&latency, 0.5)),
        ms(percentile(&latency, 0.99)),
        latency.len(),
        fmt_opt(ramp_server_cpu),
    );
    eprintln!(
        "rtsp-load: {} readers ({}), {} playing, {} failed, {} within {:.1} s of live; \
         {mbps:.0} Mbit/s; server {} cores, load tool {} cores; latency p50/p99 {}/{} ms \
         ({} samples)",
        opts.readers,
        match opts.transport {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        },
        count(Phase::Playing),
        count(Phase::Failed),
        within,
        opts.max_lag,
        fmt_opt(server_cpu),
        fmt_opt(load_cpu),
        ms(percentile(&latency, 0.5)),
        ms(percentile(&latency, 0.99)),
        latency.len(),
    );
    for e in &errors {
        eprintln!("rtsp-load: error: {e}");
    }
    println!("{result}");
    Ok(())
}

/// The RTSP connection during set-up: requests out, responses in.
struct Control {
    stream: TcpStream,
    buf: Vec<u8>,
    cseq: u32,
    session: Option<String>,
}

impl Control {
    async fn call(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<client::Response, String> {
        self.cseq += 1;
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(s) = &self.session {
            all.push(("Session", s));
        }
        let req = client::request(method, url, self.cseq, &all);
        self.stream
            .write_all(&req)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut chunk = [0u8; 8192];
        loop {
            // Media that comes before the answer (a server that starts
            // sending before it writes the `PLAY` response) is skipped.
            if self.buf.first() == Some(&b'$') {
                if self.buf.len() < 4 {
                    // Fall through to read the rest of the header.
                } else {
                    let len = match self.buf.get(2..4) {
                        Some(&[a, b]) => 4 + usize::from(u16::from_be_bytes([a, b])),
                        _ => usize::MAX,
                    };
                    if self.buf.len() >= len {
                        self.buf.drain(..len);
                        continue;
                    }
                }
            } else if let Some((resp, used)) =
                client::parse_response(&self.buf).map_err(|e| e.to_string())?
            {
                self.buf.drain(..used);
                if resp.status != 200 {
                    return Err(format!("{method}: status {}", resp.status));
                }
                if let Some(s) = resp.session() {
                    self.session = Some(s.to_string());
                }
                return Ok(resp);
            }
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err(format!("server closed the connection during {method}"));
            }
            self.buf
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
    }
}

/// A pair of UDP sockets on consecutive ports of `ip` (the RTSP
/// connection's local address: 127.0.0.1 on loopback, the client side's
/// address across a veth pair), RTP on the even one.
fn udp_pair(ip: std::net::IpAddr) -> Result<(UdpSocket, UdpSocket), String> {
    for _ in 0..64 {
        let rtp = UdpSocket::bind((ip, 0)).map_err(|e| format!("udp bind: {e}"))?;
        let port = rtp.local_addr().map_err(|e| e.to_string())?.port();
        if port % 2 == 1 {
            continue;
        }
        let Ok(rtcp) = UdpSocket::bind((ip, port + 1)) else {
            continue;
        };
        for s in [&rtp, &rtcp] {
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
        }
        return Ok((rtp, rtcp));
    }
    Err("no pair of consecutive UDP ports".into())
}

/// One reader: set-up, then media until the server ends it (or the task is
/// aborted). A probe returns once it has a keyframe.
async fn reader(
    idx: usize,
    shared: Rc<Shared>,
    opts: Rc<Options>,
    probe: bool,
) -> Result<(), String> {
    let socket = if opts.addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| format!("socket: {e}"))?;
    let _ = socket.set_recv_buffer_size(opts.rcvbuf);
    shared.with_reader(idx, |r| r.connect_at = Some(Instant::now()));
    let stream = timeout(
        Duration::from_secs_f64(opts.connect_timeout),
        socket.connect(opts.addr),
    )
    .await
    .map_err(|_| "connect timed out".to_string())?
    .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut ctl = Control {
        stream,
        buf: Vec::new(),
        cseq: 0,
        session: None,
    };
    let described = ctl
        .call("DESCRIBE", &opts.url, &[("Accept", "application/sdp")])
        .await?;
    let base = described
        .header("content-base")
        .unwrap_or(&opts.url)
        .to_string();
    let tracks = client::tracks(&described.body, &base).map_err(|e| e.to_string())?;
    let video = tracks
        .iter()
        .position(|t| t.media == "video")
        .ok_or("no video track in the SDP")?;
    let clock = tracks.get(video).map_or(1, |t| t.clock_rate.max(1));
    shared.with_reader(idx, |r| r.clock = f64::from(clock));
    let mut sockets: Vec<(usize, bool, UdpSocket)> = Vec::new();
    for (i, track) in tracks.iter().enumerate() {
        let transport = match opts.transport {
            Transport::Tcp => format!("RTP/AVP/TCP;unicast;interleaved={}-{}", 2 * i, 2 * i + 1),
            Transport::Udp => {
                let local = ctl
                    .stream
                    .local_addr()
                    .map_err(|e| format!("local_addr: {e}"))?;
                let (rtp, rtcp) = udp_pair(local.ip())?;
                let port = rtp.local_addr().map_err(|e| e.to_string())?.port();
                sockets.push((i, false, rtp));
                sockets.push((i, true, rtcp));
                format!("RTP/AVP;unicast;client_port={port}-{}", port + 1)
            }
        };
        ctl.call("SETUP", &track.url, &[("Transport", &transport)])
            .await?;
    }
    ctl.call("PLAY", &base, &[("Range", "npt=0.000-")]).await?;
    shared.with_reader(idx, |r| r.phase = Phase::Playing);
    let mut parser = Interleave::new();
    let leftover = std::mem::take(&mut ctl.buf);
    consume(&shared, idx, video, &mut parser, &leftover)?;
    let eager = idx < opts.eager && !probe;
    let interval = Duration::from_millis(opts.read_interval_ms);
    let mut last_request = Instant::now();
    let session = ctl.session.clone().unwrap_or_default();
    let keep_alive = |cseq: u32| {
        client::request(
            "GET_PARAMETER",
            &base,
            cseq,
            &[("Session", session.as_str())],
        )
    };
    let has_keyframe = |shared: &Shared| {
        shared
            .with_reader(idx, |r| r.first_keyframe.is_some())
            .unwrap_or(false)
    };

    if opts.transport == Transport::Udp {
        let mut tcp = ctl
            .stream
            .into_std()
            .map_err(|e| format!("leaving the event loop: {e}"))?;
        let mut out = Vec::new();
        loop {
            let tick = if has_keyframe(&shared) && !eager {
                interval
            } else {
                UDP_JOIN_TICK
            };
            if probe && has_keyframe(&shared) {
                return Ok(());
            }
            let since = shared.base.elapsed().as_nanos() / tick.as_nanos().max(1) + 1;
            sleep_until((shared.base + tick * u32::try_from(since).unwrap_or(u32::MAX)).into())
                .await;
            for (track, rtcp, socket) in &sockets {
                loop {
                    let mut buf = shared.buf.borrow_mut();
                    match socket.recv(&mut buf[..]) {
                        Ok(n) => {
                            shared.bytes.set(shared.bytes.get() + n as u64);
                            let head = buf.get(..n).unwrap_or_default();
                            shared.packet(idx, *track, *rtcp, video, head, Instant::now());
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return Err(format!("udp recv: {e}")),
                    }
                }
            }
            read_control(&shared, idx, video, &mut tcp, &mut parser)?;
            if last_request.elapsed() >= KEEP_ALIVE {
                last_request = Instant::now();
                ctl.cseq += 1;
                out.extend(keep_alive(ctl.cseq));
            }
            flush(&mut tcp, &mut out)?;
        }
    }

    // TCP: eager until the first keyframe (throughout for the eager readers).
    let mut stream = ctl.stream;
    loop {
        if probe && has_keyframe(&shared) {
            return Ok(());
        }
        if !eager && !interval.is_zero() && has_keyframe(&shared) {
            break;
        }
        let closed = poll_fn(|cx| {
            let mut buf = shared.buf.borrow_mut();
            let mut rb = ReadBuf::new(&mut buf[..]);
            match Pin::new(&mut stream).poll_read(cx, &mut rb) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(e)) => Poll::Ready(Err(format!("read: {e}"))),
                Poll::Ready(Ok(())) if rb.filled().is_empty() => Poll::Ready(Ok(true)),
                Poll::Ready(Ok(())) => {
                    let data = rb.filled();
                    Poll::Ready(consume(&shared, idx, video, &mut parser, data).map(|()| false))
                }
            }
        })
        .await?;
        if closed {
            return Err("server closed the connection".into());
        }
        if last_request.elapsed() >= KEEP_ALIVE {
            last_request = Instant::now();
            ctl.cseq += 1;
            stream
                .write_all(&keep_alive(ctl.cseq))
                .await
                .map_err(|e| format!("write: {e}"))?;
        }
    }

    // Paced: the socket leaves the event loop and is read on the shared tick.
    let mut stream = stream
        .into_std()
        .map_err(|e| format!("leaving the event loop: {e}"))?;
    let mut out = Vec::new();
    loop {
        let since = shared.base.elapsed().as_nanos() / interval.as_nanos() + 1;
        let tick = shared.base + interval * u32::try_from(since).unwrap_or(u32::MAX);
        sleep_until(tick.into()).await;
        read_control(&shared, idx, video, &mut stream, &mut parser)?;
        if last_request.elapsed() >= KEEP_ALIVE {
            last_request = Instant::now();
            ctl.cseq += 1;
            out.extend(keep_alive(ctl.cseq));
        }
        flush(&mut stream, &mut out)?;
    }
}

/// Reads a non-blocking RTSP connection dry; an error when it closed.
fn read_control(
    shared: &Shared,
    idx: usize,
    video: usize,
    stream: &mut std::net::TcpStream,
    parser: &mut Interleave,
) -> Result<(), String> {
    loop {
        let mut buf = shared.buf.borrow_mut();
        match stream.read(&mut buf[..]) {
            Ok(0) => {
                shared.with_reader(idx, |r| r.phase = Phase::Ended);
                return Err("server closed the connection".into());
            }
            Ok(n) => {
                consume(shared, idx, video, parser, buf.get(..n).unwrap_or_default())?;
                if n < buf.len() {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// Writes what the socket takes now; the rest waits for the next tick.
fn flush(stream: &mut std::net::TcpStream, out: &mut Vec<u8>) -> Result<(), String> {
    while !out.is_empty() {
        match stream.write(out) {
            Ok(n) => {
                out.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("write: {e}")),
        }
    }
    Ok(())
}

/// Feeds bytes of the RTSP connection to a reader's parser.
fn consume(
    shared: &Shared,
    idx: usize,
    video: usize,
    parser: &mut Interleave,
    data: &[u8],
) -> Result<(), String> {
    let now = Instant::now();
    shared.bytes.set(shared.bytes.get() + data.len() as u64);
    parser
        .feed(data, &mut |item| {
            if let Item::Packet { channel, head, .. } = item {
                let track = usize::from(channel / 2);
                shared.packet(idx, track, channel % 2 == 1, video, head, now);
            }
        })
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn options_from_a_url() {
        let o = Options::parse(&args(
            "--url rtsp://127.0.0.1:8554/live/cam1 --readers 10 --transport udp --server-pid 5",
        ))
        .expect("valid");
        assert_eq!(o.addr, SocketAddr::from(([127, 0, 0, 1], 8554)));
        assert_eq!((o.readers, o.transport), (10, Transport::Udp));
        assert_eq!(o.server_pids, vec![5]);
        for bad in [
            "--url rtsp://192.0.2.1:8554/live/x --readers 1",
            "--url rtsp://127.0.0.1:8554 --readers 1",
            "--url rtmp://127.0.0.1:8554/live/x --readers 1",
            "--url rtsp://127.0.0.1:8554/live/x",
            "--url rtsp://127.0.0.1:8554/live/x --readers 1 --transport sctp",
        ] {
            assert!(Options::parse(&args(bad)).is_err(), "{bad}");
        }
    }

    fn video_packet(marker: bool, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, if marker { 0xe0 } else { 0x60 }, 0, 1];
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 1]);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn lag_latency_and_first_keyframe() {
        let base = Instant::now();
        let shared = Shared {
            base,
            base_unix: 1_000.0,
            readers: RefCell::new(vec![Reader::new()]),
            window_open: Cell::new(true),
            buf: RefCell::new(Box::new([])),
            bytes: Cell::new(0),
            latency: RefCell::new(Vec::new()),
        };
        shared.readers.borrow_mut()[0].connect_at = Some(base);
        // A sender report: RTP time 90 000 is wall-clock second 1 000.
        let mut sr = vec![0x80, 200, 0, 6, 0, 0, 0, 1];
        sr.extend_from_slice(&((client::NTP_UNIX_OFFSET + 1_000) << 32).to_be_bytes());
        sr.extend_from_slice(&90_000u32.to_be_bytes());
        shared.packet(0, 0, true, 0, &sr, base);
        // A frame at RTP time 180 000 (1 s later) arrives 1.05 s after base.
        let at = base + Duration::from_millis(1_050);
        shared.packet(
            0,
            0,
            false,
            0,
            &video_packet(false, 180_000, &[0x7c, 0x85]),
            at,
        );
        shared.packet(
            0,
            0,
            false,
            0,
            &video_packet(true, 180_000, &[0x7c, 0x45]),
            at,
        );
        // Another track's packets are not the video's.
        shared.packet(0, 1, false, 0, &video_packet(true, 1, &[0x65]), at);
        let r = shared.readers.borrow()[0].clone();
        assert_eq!(r.first_keyframe, Some(Duration::from_millis(1_050)));
        let latency = shared.latency.borrow().clone();
        assert_eq!(latency.len(), 1);
        assert!((latency[0] - 0.05).abs() < 1e-6, "{latency:?}");
        // 0.5 s later with nothing new, the newest data is 0.5 s behind.
        let lag = r.lag_at(at + Duration::from_millis(500), base);
        assert!((lag - 0.5).abs() < 1e-6, "{lag}");
    }
}
