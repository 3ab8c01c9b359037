//! Headless Chromium playing a live stream with hls.js or dash.js.
//!
//! The test serves a one-page player from its own loopback HTTP server (so the
//! page's origin differs from the tidewater server's and CORS is exercised),
//! starts Debian's Chromium headless on it, and collects what the page posts
//! back every 500 ms: the video element's `currentTime`, `readyState`, the
//! buffered end, and the player's own live-latency estimate (`hls.latency`,
//! `player.getCurrentLiveLatency()`), plus every player error.
//!
//! The players come from `tests/web` (`npm ci` there; `cargo xtask test`
//! does it). Chromium runs with the flags this machine needs: no sandbox (CI
//! runs as root), no GPU, no background networking (its connections would
//! be refused), a throwaway profile, autoplay allowed for the muted video.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{ChildGuard, TempDir, workspace_root};

/// Which JavaScript player the page loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Player {
    /// hls.js (`tests/web/node_modules/hls.js`).
    HlsJs,
    /// dash.js (`tests/web/node_modules/dashjs`).
    DashJs,
}

impl Player {
    fn script(self) -> PathBuf {
        let web = workspace_root().join("tests/web/node_modules");
        match self {
            Player::HlsJs => web.join("hls.js/dist/hls.min.js"),
            Player::DashJs => web.join("dashjs/dist/modern/umd/dash.all.min.js"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Player::HlsJs => "hlsjs",
            Player::DashJs => "dashjs",
        }
    }
}

/// What to play and for how long.
#[derive(Clone, Debug)]
pub struct PlayerRun {
    /// The player.
    pub player: Player,
    /// The playlist or manifest URL (on the tidewater server).
    pub url: String,
    /// hls.js `lowLatencyMode`; for dash.js, live catch-up on.
    pub low_latency: bool,
    /// Extra player settings: merged into the `Hls` config object for
    /// hls.js, passed to `updateSettings` for dash.js.
    pub settings: serde_json::Value,
    /// How long to watch after the page loads.
    pub watch: Duration,
    /// Once playback passed one second, set `currentTime` to this (a seek,
    /// as a user dragging the bar; reported as the events `seek to T` and
    /// `seeked T`).
    pub seek_to: Option<f64>,
}

impl PlayerRun {
    /// Plays `url` with `player` for `watch`, default settings.
    pub fn new(player: Player, url: impl Into<String>, watch: Duration) -> PlayerRun {
        PlayerRun {
            player,
            url: url.into(),
            low_latency: false,
            settings: serde_json::json!({}),
            watch,
            seek_to: None,
        }
    }

    /// The same with a seek to `seconds` once playback passed one second.
    pub fn seek_to(mut self, seconds: f64) -> PlayerRun {
        self.seek_to = Some(seconds);
        self
    }

    /// The same with low-latency mode on.
    pub fn low_latency(mut self) -> PlayerRun {
        self.low_latency = true;
        self
    }

    /// The same with extra player settings.
    pub fn settings(mut self, settings: serde_json::Value) -> PlayerRun {
        self.settings = settings;
        self
    }
}

/// One report of the page.
#[derive(Clone, Debug, PartialEq)]
pub struct PlayerSample {
    /// Milliseconds since the page loaded.
    pub at_ms: f64,
    /// The video element's `currentTime`, seconds.
    pub current_time: f64,
    /// The player's live-latency estimate, seconds, once it has one.
    pub latency: Option<f64>,
    /// The video element's `readyState` (4: enough data).
    pub ready_state: u64,
    /// The end of the last buffered range, seconds.
    pub buffered_end: Option<f64>,
}

/// What the page reported.
#[derive(Clone, Debug, Default)]
pub struct PlayerReport {
    /// Periodic samples, in order.
    pub samples: Vec<PlayerSample>,
    /// Player and page errors, in order.
    pub errors: Vec<String>,
    /// Other page events (load, codec support, play() outcome).
    pub events: Vec<String>,
}

impl PlayerReport {
    /// How far `currentTime` advanced between the first sample that had
    /// started playing and the last one, seconds.
    pub fn progressed(&self) -> f64 {
        let playing: Vec<f64> = self
            .samples
            .iter()
            .map(|s| s.current_time)
            .filter(|t| *t > 0.0)
            .collect();
        match (playing.first(), playing.last()) {
            (Some(first), Some(last)) => last - first,
            _ => 0.0,
        }
    }

    /// Whether `currentTime` never went backwards.
    pub fn monotonic(&self) -> bool {
        self.samples
            .windows(2)
            .all(|w| w[1].current_time >= w[0].current_time)
    }

    /// Every latency the player reported, in order.
    pub fn latencies(&self) -> Vec<f64> {
        self.samples.iter().filter_map(|s| s.latency).collect()
    }

    /// The median of the latencies reported in the last half of the run
    /// (after the player settled), seconds.
    pub fn settled_latency(&self) -> Option<f64> {
        let all = self.latencies();
        let mut tail = all[all.len() / 2..].to_vec();
        tail.sort_by(f64::total_cmp);
        tail.get(tail.len() / 2).copied()
    }

    /// A readable dump for assertion messages.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "progressed {:.2}s, latencies {:?}\nevents: {:?}\nerrors: {:?}\nsamples:\n",
            self.progressed(),
            self.latencies(),
            self.events,
            self.errors
        );
        for s in &self.samples {
            out.push_str(&format!(
                "  {:>7.0} ms t={:.3} latency={:?} ready={} buffered_end={:?}\n",
                s.at_ms, s.current_time, s.latency, s.ready_state, s.buffered_end
            ));
        }
        out
    }
}

/// The Chromium binary, if installed.
pub fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Plays `run` in headless Chromium and returns what the page reported.
///
/// Panics (failing the test) when Chromium or the player scripts are
/// missing: `cargo xtask test` installs both.
pub fn play_in_chromium(run: &PlayerRun) -> PlayerReport {
    let browser = chromium().expect("chromium is not installed (cargo xtask test installs it)");
    let script = run.player.script();
    let script_body = std::fs::read(&script).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `npm ci` in tests/web (cargo xtask test does)",
            script.display()
        )
    });
    let page = page_html(run);
    let report = Arc::new(Mutex::new(PlayerReport::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the page server");
    let page_addr = listener.local_addr().expect("page server address");
    listener
        .set_nonblocking(true)
        .expect("non-blocking page server");
    let server = {
        let (report, stop) = (Arc::clone(&report), Arc::clone(&stop));
        std::thread::spawn(move || serve_page(listener, page, script_body, report, stop))
    };

    let profile = TempDir::new("chromium-profile");
    let log = std::fs::File::create(profile.path().join("chromium.log")).expect("chromium log");
    let child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--mute-audio",
            "--autoplay-policy=no-user-gesture-required",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://{page_addr}/"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("chromium log"))
        .stderr(log)
        .spawn()
        .expect("start chromium");
    let guard = ChildGuard(child);

    let start = Instant::now();
    // The page has to load first: the watch starts with its first report.
    while report_is_empty(&report) && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(run.watch);
    drop(guard);
    stop.store(true, Ordering::Relaxed);
    let _ = server.join();
    let mut out = report.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if out.samples.is_empty() && out.events.is_empty() {
        let log = std::fs::read_to_string(profile.path().join("chromium.log")).unwrap_or_default();
        out.errors
            .push(format!("the page never reported; chromium said:\n{log}"));
    }
    out
}

fn report_is_empty(report: &Mutex<PlayerReport>) -> bool {
    let r = report.lock().unwrap_or_else(|p| p.into_inner());
    r.samples.is_empty() && r.events.is_empty() && r.errors.is_empty()
}

fn page_html(run: &PlayerRun) -> String {
    let config = serde_json::json!({
        "player": run.player.name(),
        "url": run.url,
        "lowLatency": run.low_latency,
        "settings": run.settings,
        "seekTo": run.seek_to,
    });
    PAGE.replace("__CONFIG__", &config.to_string())
}

const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>tidewater player test</title></head>
<body>
<video id="v" muted autoplay playsinline></video>
<script src="/player.js"></script>
<script>
const CONFIG = __CONFIG__;
function post(o) { fetch('/report', {method: 'POST', body: JSON.stringify(o)}).catch(() => {}); }
window.addEventListener('error', e => post({error: 'page: ' + e.message}));
const v = document.getElementById('v');
let latency = () => null;
try {
  post({event: 'loaded; avc1+mp4a in MSE: ' +
    MediaSource.isTypeSupported('video/mp4; codecs="avc1.64001f,mp4a.40.2"')});
  if (CONFIG.player === 'hlsjs') {
    const config = Object.assign({lowLatencyMode: CONFIG.lowLatency}, CONFIG.settings);
    const hls = new Hls(config);
    hls.on(Hls.Events.ERROR, (_, d) =>
      post({error: 'hls.js ' + d.type + ' ' + d.details + (d.fatal ? ' (fatal)' : '')}));
    hls.on(Hls.Events.MANIFEST_PARSED, () => post({event: 'manifest parsed'}));
    hls.loadSource(CONFIG.url);
    hls.attachMedia(v);
    latency = () => (Number.isFinite(hls.latency) && hls.latency > 0) ? hls.latency : null;
  } else {
    const player = dashjs.MediaPlayer().create();
    const settings = {streaming: {liveCatchup: {enabled: CONFIG.lowLatency}}};
    player.updateSettings(settings);
    player.updateSettings(CONFIG.settings);
    player.on(dashjs.MediaPlayer.events.ERROR, e =>
      post({error: 'dash.js ' + JSON.stringify(e.error || e)}));
    player.on(dashjs.MediaPlayer.events.STREAM_INITIALIZED, () => post({event: 'stream initialized'}));
    player.initialize(v, CONFIG.url, true);
    latency = () => {
      const l = player.getCurrentLiveLatency();
      return (Number.isFinite(l) && l > 0) ? l : null;
    };
  }
  // dash.js starts playback itself (autoplay) and starts its manifest
  // reload timer only on a `play` event that follows its own attach: an
  // early play() here would leave a dynamic MPD never reloaded.
  if (CONFIG.player === 'hlsjs') {
    v.play().then(() => post({event: 'play() resolved'}), e => post({event: 'play() rejected: ' + e}));
  }
  v.addEventListener('playing', () => post({event: 'playing'}), {once: true});
  v.addEventListener('seeked', () => post({event: 'seeked ' + v.currentTime}));
} catch (e) {
  post({error: 'page: ' + e});
}
let seeking = CONFIG.seekTo;
setInterval(() => {
  if (seeking !== null && v.currentTime > 1) {
    post({event: 'seek to ' + seeking});
    v.currentTime = seeking;
    seeking = null;
  }
  const b = v.buffered;
  post({sample: {
    at: performance.now(),
    currentTime: v.currentTime,
    latency: latency(),
    readyState: v.readyState,
    bufferedEnd: b.length ? b.end(b.length - 1) : null,
  }});
}, 500);
</script>
</body></html>
"#;

fn serve_page(
    listener: TcpListener,
    page: String,
    script: Vec<u8>,
    report: Arc<Mutex<PlayerReport>>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let (page, script, report) = (page.clone(), script.clone(), Arc::clone(&report));
                std::thread::spawn(move || handle(stream, &page, &script, &report));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => return,
        }
    }
}

fn handle(stream: TcpStream, page: &str, script: &[u8], report: &Mutex<PlayerReport>) {
    let Some((path, body)) = read_request(&stream) else {
        return;
    };
    let (status, kind, content): (&str, &str, &[u8]) = match path.as_str() {
        "/" => ("200 OK", "text/html; charset=utf-8", page.as_bytes()),
        "/player.js" => ("200 OK", "text/javascript", script),
        "/report" => {
            record(report, &body);
            ("204 No Content", "text/plain", b"")
        }
        _ => ("404 Not Found", "text/plain", b"not found"),
    };
    respond(stream, status, kind, content);
}

/// One request of a test page's loopback server: its path and body (at most
/// 1 MiB), or `None` when the browser went away mid-request.
pub(crate) fn read_request(stream: &TcpStream) -> Option<(String, Vec<u8>)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length.min(1 << 20)];
    reader.read_exact(&mut body).ok()?;
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    Some((path.to_owned(), body))
}

/// Answers a test page's request and closes the connection.
pub(crate) fn respond(mut stream: TcpStream, status: &str, kind: &str, content: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        content.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(content);
}

fn record(report: &Mutex<PlayerReport>, body: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    let mut report = report.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = value.get("sample") {
        let num = |k: &str| s.get(k).and_then(serde_json::Value::as_f64);
        report.samples.push(PlayerSample {
            at_ms: num("at").unwrap_or(0.0),
            current_time: num("currentTime").unwrap_or(0.0),
            latency: num("latency"),
            ready_state: s
                .get("readyState")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0),
            buffered_end: num("bufferedEnd"),
        });
    } else if let Some(e) = value.get("error").and_then(serde_json::Value::as_str) {
        report.errors.push(e.to_owned());
    } else if let Some(e) = value.get("event").and_then(serde_json::Value::as_str) {
        report.events.push(e.to_owned());
    }
}

/// The address a [`PlayerRun`] page would be served from is ephemeral; this
/// is only for logging which page a failing run used.
pub fn describe(run: &PlayerRun) -> String {
    format!(
        "{} playing {} (low latency: {}) for {:?}",
        run.player.name(),
        run.url,
        run.low_latency,
        run.watch
    )
}
