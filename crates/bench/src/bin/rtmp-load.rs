//! `rtmp-load`: N RTMP viewers of one live stream, from one thread.
//!
//! Opens N play sessions to `rtmp://127.0.0.1:PORT/APP/STREAM` on a
//! current-thread tokio runtime, ramped at a fixed rate, lets them settle,
//! then measures a window and prints one `RESULT key=value …` line on stdout
//! (progress and a readable summary go to stderr). It is the load generator
//! of `cargo xtask bench rtmp` (`benches/rtmp.rs`), usable on its own.
//!
//! Per viewer it parses only chunk headers, message timestamps and the first
//! bytes of each audio/video message ([`tidewater_bench::rtmp`]); all viewers
//! read into one shared buffer (they run on one thread and never hold it
//! across an await).
//!
//! **Reading is eager until a viewer's first keyframe, then paced**: from then
//! on each viewer's socket leaves the event loop and is read, whatever has
//! arrived, on a tick shared by all viewers (`--read-interval-ms`, 100 ms by
//! default; 0 reads eagerly throughout), as a player's render loop would. Why:
//!
//! - On loopback the sender's `send` does the receiving half of TCP for the
//!   reader (queueing the segment, waking whoever waits on the socket), so how
//!   the reader waits shows up in the *server's* CPU. With every socket in the
//!   reader's epoll set, each segment a server sends wakes this tool's thread on
//!   the other CPU (an inter-processor wake-up, costly in a virtual machine):
//!   measured with `perf`, ≈ 19 % of a NODELAY server's samples were that
//!   wake-up when it wrote once per message. At 1 000 viewers tidewater
//!   measured 0.73 cores (write coalescing off) and 0.36 (on) with every
//!   socket in this tool's epoll set, 0.61 and 0.32 with the paced sockets
//!   outside it; nginx-rtmp 0.31 either way. A remote viewer's wake-up costs
//!   the server nothing, so the paced sockets wait on nothing.
//! - Each `recv` makes the reader send a TCP acknowledgement whose processing
//!   it pays (≈ 65 % of this tool's time when it read every message as it came,
//!   against ≈ 3 % parsing). One read per tick keeps the tool at ≈ 0.15 core
//!   for 1 000 viewers.
//!
//! The price is resolution: lag is measured at read time, so up to one tick
//! late; the first-keyframe figure is exact because it is taken in the eager
//! phase.
//!
//! Servers also differ in where the rest of the delivery cost lands: a server
//! that sets TCP_NODELAY (tidewater) transmits each write at once, in its own
//! context; one that leaves Nagle on (nginx-rtmp) holds small writes back while
//! earlier data is unacknowledged and transmits them when the reader's
//! acknowledgement (or its delayed-acknowledgement timer) comes, in the reader's
//! context or a timer's on the reader's CPU. So the server's own CPU is not the
//! whole story: every CPU's busy time is reported too (`cpu_busy`), and the
//! harness compares the whole machine's.
//!
//! Figures:
//!
//! - **first keyframe**: time from the start of the TCP connect to the read
//!   that delivered the first byte of the first video message that is a
//!   keyframe with picture data (FLV frame type 1 and not a sequence header).
//! - **lag to live**: each media message's `arrival - timestamp` is its
//!   offset against the publisher's clock (`ffmpeg -re` sends timestamp t at
//!   publish start + t). A viewer's smallest offset is where it was closest to
//!   live; its lag at any moment is the offset of what it receives (or, when
//!   nothing arrives, the age of the newest timestamp it has) minus that
//!   minimum. Anchoring per viewer makes the figure independent of whether the
//!   server rewrites timestamps per viewer or passes the publisher's through. A viewer is **within 1 s of live**
//!   when it received media in the window and its lag stayed ≤ `--max-lag`
//!   throughout the window, including at its end.
//! - **delivered Mbit/s**: bytes read from all viewer sockets during the window.
//! - **server CPU**: utime + stime (`/proc/PID/stat`, all threads, living or
//!   exited) of the `--server-pid` processes and all their descendants over
//!   the window, in cores; the tool's own CPU the same way, so a saturated
//!   load tool shows. (utime + stime add up to the scheduler's run time,
//!   which includes the softirq work done in the process's context; on
//!   loopback that is the receiving half of every segment it sends.) Also
//!   every CPU's busy time (user, nice, system, irq, softirq) and softirq time
//!   over the window, from `/proc/stat`: busy time on the server's CPU beyond
//!   the server's own shows whether anything else ran there.
//!
//! - **server CPU over the joins**: the server's CPU time (CPU-seconds, not
//!   cores) from the start of the ramp to the start of the window, when
//!   every viewer connects, is authorized and gets its cached GOP
//!   (`ramp_server_cpu_s`); it includes delivery to the viewers already
//!   playing, so compare it between servers or configurations at the same N.
//!
//! Credentials go in the stream name's query, as a player puts them:
//! `--url 'rtmp://127.0.0.1:1935/live/bench?user=viewer&pass=secret'`. A
//! `{i}` in the stream name is replaced by the viewer's index (0 to N − 1,
//! N for the probe viewer), e.g. `?user=viewer{i}&pass=…` for one user per
//! viewer.
//!
//! ```text
//! rtmp-load --url rtmp://127.0.0.1:1935/live/bench --viewers 1000
//!   [--ramp-rate 400] [--settle 6] [--window 15] [--max-lag 1.0]
//!   [--server-pid PID[,PID…]] [--wait-live 20] [--connect-timeout 10]
//!   [--read-interval-ms 100] [--rcvbuf 1048576]
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
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tidewater_bench::procstat::{
    CpuSample, CpuWindow, clock_ticks_per_second, percentile, tree_cpu_ticks,
};
use tidewater_bench::rtmp::{Error as RtmpError, Media, Notice, PlaySession};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpSocket;
use tokio::time::{sleep_until, timeout};

/// Bytes read per `recv` (one buffer shared by all viewers).
const READ_BUF: usize = 256 * 1024;
/// How long one probe attempt waits for a keyframe before reconnecting.
const PROBE_ATTEMPT: Duration = Duration::from_secs(6);
/// Different errors listed in the summary.
const ERROR_SAMPLES: usize = 4;

#[derive(Debug, Clone)]
struct Options {
    addr: SocketAddr,
    app: String,
    stream: String,
    viewers: usize,
    ramp_rate: f64,
    settle: f64,
    window: f64,
    max_lag: f64,
    server_pids: Vec<u32>,
    wait_live: f64,
    connect_timeout: f64,
    read_interval_ms: u64,
    rcvbuf: u32,
}

fn usage() -> &'static str {
    "usage: rtmp-load --url rtmp://127.0.0.1:PORT/APP/STREAM --viewers N [--ramp-rate 400] \
     [--settle 6] [--window 15] [--max-lag 1.0] [--server-pid PID[,PID…]] [--wait-live 20] \
     [--connect-timeout 10] [--read-interval-ms 100] [--rcvbuf 1048576]"
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut url = None;
        let mut o = Options {
            addr: SocketAddr::from(([127, 0, 0, 1], 1935)),
            app: String::new(),
            stream: String::new(),
            viewers: 0,
            ramp_rate: 400.0,
            settle: 6.0,
            window: 15.0,
            max_lag: 1.0,
            server_pids: Vec::new(),
            wait_live: 20.0,
            connect_timeout: 10.0,
            read_interval_ms: 100,
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
                "--url" => url = Some(value()?),
                "--viewers" => o.viewers = num(value()?)? as usize,
                "--ramp-rate" => o.ramp_rate = num(value()?)?,
                "--settle" => o.settle = num(value()?)?,
                "--window" => o.window = num(value()?)?,
                "--max-lag" => o.max_lag = num(value()?)?,
                "--wait-live" => o.wait_live = num(value()?)?,
                "--connect-timeout" => o.connect_timeout = num(value()?)?,
                "--read-interval-ms" => o.read_interval_ms = num(value()?)? as u64,
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
        let url = url.ok_or_else(|| format!("--url is required\n{}", usage()))?;
        let rest = url
            .strip_prefix("rtmp://")
            .ok_or_else(|| format!("--url must start with rtmp://: {url}"))?;
        let mut parts = rest.splitn(3, '/');
        let host = parts.next().unwrap_or_default();
        o.app = parts.next().unwrap_or_default().to_string();
        o.stream = parts.next().unwrap_or_default().to_string();
        if o.app.is_empty() || o.stream.is_empty() {
            return Err(format!("--url needs an application and a stream: {url}"));
        }
        o.addr = host
            .parse()
            .map_err(|_| format!("--url needs a numeric IP:PORT host: {host}"))?;
        tidewater_bench::topology::allowed_target(o.addr.ip())?;
        if o.viewers == 0 || o.ramp_rate <= 0.0 || o.window <= 0.0 {
            return Err("--viewers, --ramp-rate and --window must be positive".into());
        }
        Ok(o)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Handshaking,
    Playing,
    Ended,
    Failed,
}

#[derive(Debug, Clone)]
struct Viewer {
    phase: Phase,
    connect_at: Option<Instant>,
    first_keyframe: Option<Duration>,
    /// Smallest `arrival - timestamp` seen, seconds since `base`.
    anchor: f64,
    /// Newest timestamp received, unwrapped, in ms.
    newest_ts: Option<i64>,
    /// The previous message's raw and unwrapped timestamps, for unwrapping.
    last_raw: u32,
    last_ts: i64,
    /// Largest lag seen while the window was open, seconds.
    max_lag: f64,
    media_in_window: u64,
    error: Option<String>,
}

impl Viewer {
    fn new() -> Self {
        Self {
            phase: Phase::Connecting,
            connect_at: None,
            first_keyframe: None,
            anchor: f64::INFINITY,
            newest_ts: None,
            last_raw: 0,
            last_ts: 0,
            max_lag: 0.0,
            media_in_window: 0,
            error: None,
        }
    }

    fn on_media(&mut self, m: Media, now: Instant, base: Instant, window_open: bool) {
        // Unwrap around the previous message's timestamp: messages may step
        // back a little between audio and video, and 2³² ms wraps.
        let ts = match self.newest_ts {
            None => i64::from(m.timestamp),
            Some(_) => self.last_ts + i64::from(m.timestamp.wrapping_sub(self.last_raw) as i32),
        };
        self.last_raw = m.timestamp;
        self.last_ts = ts;
        self.newest_ts = Some(self.newest_ts.map_or(ts, |n| n.max(ts)));
        let arrival = now.duration_since(base).as_secs_f64();
        let offset = arrival - ts as f64 / 1000.0;
        if offset < self.anchor {
            self.anchor = offset;
        }
        if window_open {
            self.media_in_window += 1;
            let lag = offset - self.anchor;
            if lag > self.max_lag {
                self.max_lag = lag;
            }
        }
        if m.keyframe
            && self.first_keyframe.is_none()
            && let Some(at) = self.connect_at
        {
            self.first_keyframe = Some(now.duration_since(at));
        }
    }

    /// Lag of the newest data at `now` (stalls count), seconds.
    fn lag_at(&self, now: Instant, base: Instant) -> f64 {
        match self.newest_ts {
            Some(ts) if self.anchor.is_finite() => {
                now.duration_since(base).as_secs_f64() - ts as f64 / 1000.0 - self.anchor
            }
            _ => f64::INFINITY,
        }
    }
}

struct Shared {
    base: Instant,
    viewers: RefCell<Vec<Viewer>>,
    window_open: Cell<bool>,
    buf: RefCell<Box<[u8]>>,
    bytes: Cell<u64>,
}

impl Shared {
    /// Runs `f` on viewer `idx`; every index comes from the table made at
    /// the start (the viewers and the probe), so `None` is never expected.
    fn with_viewer<R>(&self, idx: usize, f: impl FnOnce(&mut Viewer) -> R) -> Option<R> {
        self.viewers.borrow_mut().get_mut(idx).map(f)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("rtmp-load: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rtmp-load: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rtmp-load: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(opts: Options) -> Result<(), String> {
    let clk_tck = clock_ticks_per_second();
    let shared = Rc::new(Shared {
        base: Instant::now(),
        viewers: RefCell::new(vec![Viewer::new(); opts.viewers + 1]),
        window_open: Cell::new(false),
        buf: RefCell::new(vec![0u8; READ_BUF].into_boxed_slice()),
        bytes: Cell::new(0),
    });
    let opts = Rc::new(opts);

    // Wait until the stream is live: one probe viewer (slot `viewers`) that
    // reconnects until it has seen a keyframe.
    if opts.wait_live > 0.0 {
        let deadline = Instant::now() + Duration::from_secs_f64(opts.wait_live);
        let probe = opts.viewers;
        loop {
            shared.with_viewer(probe, |v| *v = Viewer::new());
            let attempt = timeout(
                PROBE_ATTEMPT,
                viewer(probe, Rc::clone(&shared), Rc::clone(&opts), true),
            )
            .await;
            let last_error = match attempt {
                Ok(Ok(()))
                    if shared
                        .with_viewer(probe, |v| v.first_keyframe.is_some())
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
        let kf = shared.with_viewer(probe, |v| v.first_keyframe).flatten();
        eprintln!(
            "rtmp-load: stream is live (probe viewer's first keyframe after {:.0} ms)",
            kf.map_or(0.0, |d| d.as_secs_f64() * 1e3)
        );
    }

    // Ramp up.
    let ramp_start = Instant::now();
    let server_ramp_start = tree_cpu_ticks(&opts.server_pids);
    let mut tasks = Vec::with_capacity(opts.viewers);
    for i in 0..opts.viewers {
        tasks.push(tokio::task::spawn_local({
            let shared = Rc::clone(&shared);
            let opts = Rc::clone(&opts);
            async move {
                if let Err(e) = viewer(i, Rc::clone(&shared), opts, false).await {
                    shared.with_viewer(i, |v| {
                        v.phase = Phase::Failed;
                        v.error = Some(e);
                    });
                }
            }
        }));
        let due = ramp_start + Duration::from_secs_f64((i + 1) as f64 / opts.ramp_rate);
        sleep_until(due.into()).await;
    }
    let ramp = ramp_start.elapsed().as_secs_f64();
    eprintln!(
        "rtmp-load: {} viewers started in {ramp:.1} s; settling {:.0} s",
        opts.viewers, opts.settle
    );
    tokio::time::sleep(Duration::from_secs_f64(opts.settle)).await;

    // The window.
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
    // CPU-seconds of the server while the viewers joined (ramp and settling).
    let ramp_server_cpu = match (server_ramp_start, cpu_start.server_ticks()) {
        (Some(a), Some(b)) if !opts.server_pids.is_empty() => {
            Some(b.saturating_sub(a) as f64 / clk_tck)
        }
        _ => None,
    };
    let ramp_settle = start.duration_since(ramp_start).as_secs_f64();
    let CpuWindow {
        busy: cpu_busy,
        softirq: cpu_softirq,
        kthreads: cpu_kthreads,
        ..
    } = window;

    let viewers = shared.viewers.borrow();
    // The probe's slot, after the viewers, is not counted.
    let viewers = viewers.get(..opts.viewers).unwrap_or(viewers.as_slice());
    let count = |p: Phase| viewers.iter().filter(|v| v.phase == p).count();
    let mut keyframe_ms: Vec<f64> = viewers
        .iter()
        .filter_map(|v| v.first_keyframe)
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    keyframe_ms.sort_by(f64::total_cmp);
    let mut lags: Vec<f64> = viewers
        .iter()
        .map(|v| {
            if v.first_keyframe.is_none() || v.media_in_window == 0 {
                f64::INFINITY
            } else {
                v.max_lag.max(v.lag_at(end, shared.base))
            }
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    let within = lags.iter().filter(|&&l| l <= opts.max_lag).count();
    let mut errors: Vec<String> = Vec::new();
    for e in viewers.iter().filter_map(|v| v.error.as_ref()) {
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
        "RESULT viewers={} connected={} playing={} failed={} ended={} keyframe={} within={} \
         mbps={mbps:.1} server_cpu={} load_cpu={} kf_p50_ms={} kf_p99_ms={} kf_max_ms={} \
         lag_p50_ms={} lag_p99_ms={} window_s={secs:.2} ramp_s={ramp:.2} \
         ramp_settle_s={ramp_settle:.2} ramp_server_cpu_s={} \
         cpu_busy={cpu_busy} cpu_softirq={cpu_softirq} cpu_kthreads={cpu_kthreads}",
        opts.viewers,
        opts.viewers - count(Phase::Connecting) - count(Phase::Failed),
        count(Phase::Playing),
        count(Phase::Failed),
        count(Phase::Ended),
        keyframe_ms.len(),
        within,
        fmt_opt(server_cpu),
        fmt_opt(load_cpu),
        ms(percentile(&keyframe_ms, 0.50)),
        ms(percentile(&keyframe_ms, 0.99)),
        ms(keyframe_ms.last().copied().unwrap_or(f64::NAN)),
        ms(percentile(&lags, 0.50) * 1e3),
        ms(percentile(&lags, 0.99) * 1e3),
        fmt_opt(ramp_server_cpu),
    );
    eprintln!(
        "rtmp-load: {} viewers: {} got a keyframe, {within} within {:.1} s of live, \
         {mbps:.1} Mbit/s delivered, server CPU {} cores, load tool CPU {} cores",
        opts.viewers,
        keyframe_ms.len(),
        opts.max_lag,
        fmt_opt(server_cpu),
        fmt_opt(load_cpu)
    );
    for e in &errors {
        eprintln!("rtmp-load: viewer error: {e}");
    }
    println!("{result}");
    Ok(())
}

/// The stream name viewer `idx` plays: `{i}` replaced by its index.
fn stream_name(stream: &str, idx: usize) -> String {
    if stream.contains("{i}") {
        stream.replace("{i}", &idx.to_string())
    } else {
        stream.to_string()
    }
}

/// One viewer: connect, handshake, play, then read until the task is
/// aborted, the server ends the stream or (`probe`) the first keyframe.
async fn viewer(
    idx: usize,
    shared: Rc<Shared>,
    opts: Rc<Options>,
    probe: bool,
) -> Result<(), String> {
    let connect_at = Instant::now();
    shared.with_viewer(idx, |v| v.connect_at = Some(connect_at));
    let socket = if opts.addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| format!("socket: {e}"))?;
    if opts.rcvbuf > 0 {
        socket
            .set_recv_buffer_size(opts.rcvbuf)
            .map_err(|e| format!("SO_RCVBUF: {e}"))?;
    }
    let mut stream = timeout(
        Duration::from_secs_f64(opts.connect_timeout),
        socket.connect(opts.addr),
    )
    .await
    .map_err(|_| "connect timed out".to_string())?
    .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    shared.with_viewer(idx, |v| v.phase = Phase::Handshaking);

    let host_port = opts.addr.to_string();
    let stream_name = stream_name(&opts.stream, idx);
    let mut session = PlaySession::new(&host_port, &opts.app, &stream_name);
    let mut out = Vec::with_capacity(4096);
    session.start(&mut out);
    stream
        .write_all(&out)
        .await
        .map_err(|e| format!("write: {e}"))?;
    out.clear();

    let interval = Duration::from_millis(opts.read_interval_ms);
    // Eager: read as soon as anything arrives, until the first keyframe (so
    // that its arrival time is exact), or throughout with no read interval.
    loop {
        if !interval.is_zero()
            && shared
                .with_viewer(idx, |v| v.first_keyframe.is_some())
                .unwrap_or(false)
        {
            break;
        }
        let news = poll_fn(|cx| {
            let mut buf = shared.buf.borrow_mut();
            let mut rb = ReadBuf::new(&mut buf[..]);
            match Pin::new(&mut stream).poll_read(cx, &mut rb) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(e)) => Poll::Ready(Err(format!("read: {e}"))),
                Poll::Ready(Ok(())) if rb.filled().is_empty() => Poll::Ready(Ok(News {
                    closed: true,
                    ..News::default()
                })),
                Poll::Ready(Ok(())) => {
                    Poll::Ready(consume(&shared, idx, &mut session, &mut out, rb.filled()))
                }
            }
        })
        .await?;
        if apply(&shared, idx, news, probe)? {
            return Ok(());
        }
        if !out.is_empty() {
            stream
                .write_all(&out)
                .await
                .map_err(|e| format!("write: {e}"))?;
            out.clear();
        }
    }

    // Paced: the socket leaves the event loop (a plain non-blocking socket
    // that nothing waits on, so arriving segments wake no one), and is read on
    // a tick shared by all viewers.
    let mut stream = stream
        .into_std()
        .map_err(|e| format!("leaving the event loop: {e}"))?;
    loop {
        let since = shared.base.elapsed().as_nanos() / interval.as_nanos() + 1;
        let tick = shared.base + interval * u32::try_from(since).unwrap_or(u32::MAX);
        sleep_until(tick.into()).await;
        let mut news = News::default();
        loop {
            let mut buf = shared.buf.borrow_mut();
            match stream.read(&mut buf[..]) {
                Ok(0) => {
                    news.closed = true;
                    break;
                }
                Ok(n) => {
                    let data = buf.get(..n).unwrap_or_default();
                    news.merge(consume(&shared, idx, &mut session, &mut out, data)?);
                    // A short read emptied the socket; the next tick reads again.
                    if n < buf.len() || news.ended {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        apply(&shared, idx, news, false)?;
        // Acknowledgements and pongs are a few bytes; whatever the socket does
        // not take now goes on the next tick.
        while !out.is_empty() {
            match stream.write(&out) {
                Ok(n) => {
                    out.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write: {e}")),
            }
        }
    }
}

/// Records what a read told; `Ok(true)` when a probe viewer is done, an
/// error when the server ended the stream or closed the connection.
fn apply(shared: &Shared, idx: usize, news: News, probe: bool) -> Result<bool, String> {
    let mut viewers = shared.viewers.borrow_mut();
    let v = viewers
        .get_mut(idx)
        .ok_or_else(|| format!("no viewer {idx}"))?;
    if news.playing {
        v.phase = Phase::Playing;
    }
    if news.ended || news.closed {
        v.phase = Phase::Ended;
    }
    if probe && v.first_keyframe.is_some() {
        return Ok(true);
    }
    if news.ended {
        return Err("server ended the stream".into());
    }
    if news.closed {
        return Err("server closed the connection".into());
    }
    Ok(false)
}

/// What one read told a viewer's loop.
#[derive(Debug, Default, Clone, Copy)]
struct News {
    playing: bool,
    ended: bool,
    closed: bool,
}

impl News {
    fn merge(&mut self, other: News) {
        self.playing |= other.playing;
        self.ended |= other.ended;
        self.closed |= other.closed;
    }
}

/// Feeds received bytes to a viewer's session and records what they carried.
fn consume(
    shared: &Shared,
    idx: usize,
    session: &mut PlaySession,
    out: &mut Vec<u8>,
    data: &[u8],
) -> Result<News, String> {
    let now = Instant::now();
    shared.bytes.set(shared.bytes.get() + data.len() as u64);
    let window_open = shared.window_open.get();
    let mut viewers = shared.viewers.borrow_mut();
    let v = viewers
        .get_mut(idx)
        .ok_or_else(|| format!("no viewer {idx}"))?;
    let mut news = News::default();
    session
        .feed(
            data,
            out,
            &mut |m| v.on_media(m, now, shared.base, window_open),
            &mut |notice| match notice {
                Notice::Playing { .. } => news.playing = true,
                Notice::StreamEnd => news.ended = true,
                Notice::Status(_) => {}
            },
        )
        .map_err(|e: RtmpError| e.to_string())?;
    Ok(news)
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
            "--url rtmp://127.0.0.1:19350/live/cam1 --viewers 10 --server-pid 5,6",
        ))
        .expect("valid");
        assert_eq!(o.addr, SocketAddr::from(([127, 0, 0, 1], 19350)));
        assert_eq!((o.app.as_str(), o.stream.as_str()), ("live", "cam1"));
        assert_eq!(o.viewers, 10);
        assert_eq!(o.server_pids, vec![5, 6]);
        for bad in [
            "--url rtmp://192.0.2.1:1935/live/x --viewers 1",
            "--url rtmp://127.0.0.1:1935/live --viewers 1",
            "--url http://127.0.0.1:1935/live/x --viewers 1",
            "--url rtmp://127.0.0.1:1935/live/x",
            "--url rtmp://127.0.0.1:1935/live/x --viewers 1 --bogus",
        ] {
            assert!(Options::parse(&args(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_ride_in_the_stream_name() {
        let o = Options::parse(&args(
            "--url rtmp://127.0.0.1:19350/live/cam1?user=v{i}&pass=p --viewers 3",
        ))
        .expect("valid");
        assert_eq!(o.stream, "cam1?user=v{i}&pass=p");
        assert_eq!(stream_name(&o.stream, 7), "cam1?user=v7&pass=p");
        assert_eq!(stream_name("cam1?user=v&pass=p", 7), "cam1?user=v&pass=p");
    }

    #[test]
    fn lag_is_anchored_per_viewer_and_unwraps() {
        let base = Instant::now();
        let mut v = Viewer::new();
        v.connect_at = Some(base);
        let media = |timestamp: u32, keyframe: bool| Media {
            video: true,
            timestamp,
            length: 100,
            keyframe,
            config: false,
        };
        // Timestamps near the 2³² ms wrap, arriving in real time 1 s apart.
        v.on_media(
            media(u32::MAX - 499, true),
            base + Duration::from_secs(1),
            base,
            true,
        );
        v.on_media(media(500, false), base + Duration::from_secs(2), base, true);
        assert_eq!(v.first_keyframe, Some(Duration::from_secs(1)));
        assert!(v.max_lag.abs() < 1e-9, "{}", v.max_lag);
        // A message that arrives 1.5 s late against the same timeline.
        v.on_media(
            media(1_500, false),
            base + Duration::from_millis(4_500),
            base,
            true,
        );
        assert!((v.max_lag - 1.5).abs() < 1e-9, "{}", v.max_lag);
        // With nothing more arriving, the newest data keeps ageing.
        let lag = v.lag_at(base + Duration::from_secs(6), base);
        assert!((lag - 3.0).abs() < 1e-9, "{lag}");
        assert_eq!(Viewer::new().lag_at(base, base), f64::INFINITY);
    }
}
