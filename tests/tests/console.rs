//! The web console and the player pages in headless Chromium, driven over
//! the DevTools protocol (a minimal WebSocket client below): the streams
//! list shows an ffmpeg publish with its codecs, a kick from the page ends a
//! reader, a failing push shows its error, the player page plays LL-HLS,
//! WebRTC (WHEP), DASH and TS-HLS with a latency figure, the publish page
//! sends Chromium's fake camera over WHIP to an ffmpeg reader.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tidewater_tests::browser::chromium;
use tidewater_tests::{
    ChildGuard, ServerCommand, TempDir, ffmpeg_publish, http_get, loopback_config, wait_json,
    wait_live,
};

/// One browser test at a time: two cores run ffmpeg, the server and Chromium.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const LIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Headless Chromium with a DevTools WebSocket on its one page.
struct Browser {
    _child: ChildGuard,
    _profile: TempDir,
    socket: TcpStream,
    next_id: u64,
    /// How to answer an HTTP authentication challenge, once
    /// [`answer_challenges`](Self::answer_challenges) turned that on.
    challenge: Option<Value>,
    /// Errors the page logged or threw (console errors, failed loads,
    /// uncaught exceptions, policy violations).
    errors: Vec<String>,
}

impl Browser {
    fn start() -> Browser {
        let binary = chromium().expect("chromium is not installed (cargo xtask test installs it)");
        let profile = TempDir::new("console-chromium");
        let log = std::fs::File::create(profile.path().join("chromium.log")).expect("log file");
        let child = Command::new(binary)
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
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
                // The publish page's camera and microphone: generated,
                // granted without a prompt.
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                // ICE host candidates as addresses, not mDNS names the
                // server would have to resolve.
                "--disable-features=WebRtcHideLocalIpsWithMdns",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start chromium");
        let child = ChildGuard(child);
        // Chromium writes its DevTools port (and the browser's path) here.
        let active = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(20);
        let port: u16 = loop {
            if let Ok(text) = std::fs::read_to_string(&active)
                && let Some(port) = text.lines().next().and_then(|l| l.trim().parse().ok())
            {
                break port;
            }
            assert!(
                Instant::now() < deadline,
                "chromium did not open its DevTools port: {}",
                std::fs::read_to_string(profile.path().join("chromium.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let targets = wait_json(
            &format!("http://127.0.0.1:{port}/json/list"),
            Duration::from_secs(10),
            |v| {
                v.as_array()
                    .is_some_and(|a| a.iter().any(|t| t["type"] == "page"))
            },
        );
        let page = targets
            .as_array()
            .and_then(|a| a.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_string();
        let path = page
            .strip_prefix(&format!("ws://127.0.0.1:{port}"))
            .unwrap_or_else(|| panic!("unexpected DevTools URL {page}"))
            .to_string();
        let socket = ws_connect(SocketAddr::from(([127, 0, 0, 1], port)), &path);
        let mut browser = Browser {
            _child: child,
            _profile: profile,
            socket,
            next_id: 0,
            challenge: None,
            errors: Vec::new(),
        };
        browser.call("Runtime.enable", json!({}));
        browser.call("Log.enable", json!({}));
        browser
    }

    /// Sends a DevTools command; returns its `result`.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.try_call(method, params)
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// Sends a DevTools command; its `result`, or the error it answered
    /// (e.g. an evaluation cut short by a navigation).
    fn try_call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let message = json!({"id": id, "method": method, "params": params}).to_string();
        ws_send(&mut self.socket, message.as_bytes());
        loop {
            let text = ws_receive(&mut self.socket);
            let reply: Value = serde_json::from_str(&text).expect("DevTools sends JSON");
            self.on_event(&reply);
            if reply["id"] == id {
                return match reply["error"].is_null() {
                    true => Ok(reply["result"].clone()),
                    false => Err(reply),
                };
            }
        }
    }

    /// From now on, answers the server's `401` challenges as a user would
    /// answer the browser's prompt: with `user` and `password`, or by
    /// cancelling it (`None`).
    fn answer_challenges(&mut self, credentials: Option<(&str, &str)>) {
        self.challenge = Some(match credentials {
            Some((user, password)) => {
                json!({"response": "ProvideCredentials", "username": user, "password": password})
            }
            None => json!({"response": "CancelAuth"}),
        });
        self.call(
            "Fetch.enable",
            json!({"handleAuthRequests": true, "patterns": [{"urlPattern": "*"}]}),
        );
    }

    /// Paused requests go on; challenges get the chosen answer. (The
    /// replies to these commands are read and dropped by `call`.)
    fn on_event(&mut self, message: &Value) {
        let params = &message["params"];
        let request = &params["requestId"];
        match message["method"].as_str() {
            Some("Runtime.exceptionThrown") => self
                .errors
                .push(format!("exception: {}", params["exceptionDetails"])),
            Some("Runtime.consoleAPICalled") if params["type"] == "error" => self
                .errors
                .push(format!("console.error: {}", params["args"])),
            Some("Log.entryAdded") if params["entry"]["level"] == "error" => self.errors.push(
                format!("{}: {}", params["entry"]["url"], params["entry"]["text"]),
            ),
            _ => {}
        }
        let answer = match message["method"].as_str() {
            Some("Fetch.requestPaused") => json!({"method": "Fetch.continueRequest",
                "params": {"requestId": request}}),
            Some("Fetch.authRequired") => json!({"method": "Fetch.continueWithAuth",
                "params": {"requestId": request, "authChallengeResponse": self.challenge}}),
            _ => return,
        };
        self.next_id += 1;
        let mut answer = answer;
        answer["id"] = json!(self.next_id);
        ws_send(&mut self.socket, answer.to_string().as_bytes());
    }

    /// Saves a PNG of the page, `width` CSS pixels wide, under
    /// `target/console-screenshots/`, for a person to look at.
    fn screenshot(&mut self, name: &str, width: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600}),
        );
        std::thread::sleep(Duration::from_millis(1500));
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
        let dir = tidewater_tests::workspace_root().join("target/console-screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot directory");
        let path = dir.join(format!("{name}-{width}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        eprintln!("screenshot: {}", path.display());
        self.call("Emulation.clearDeviceMetricsOverride", json!({}));
    }

    /// Runs axe-core (the build `tests/web/package-lock.json` pins) on the
    /// page and fails with what it finds: WCAG 2.1 A and AA rules.
    fn check_accessibility(&mut self, page: &str) {
        let script =
            tidewater_tests::workspace_root().join("tests/web/node_modules/axe-core/axe.min.js");
        let source = std::fs::read_to_string(&script)
            .unwrap_or_else(|e| panic!("{}: {e} (run `npm ci` in tests/web)", script.display()));
        self.eval(&format!("{source};\ntrue"));
        let violations = self.eval(
            "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})\
               .then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, \
                 nodes: v.nodes.map(n => n.target.join(' ') + ': ' + n.failureSummary)})))",
        );
        assert_eq!(
            violations,
            json!([]),
            "axe-core finds accessibility violations on the {page} page"
        );
        eprintln!("axe-core: no violations on the {page} page");
    }

    fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
    }

    /// Evaluates `expression` in the page (awaiting a promise); its value.
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(
            result["exceptionDetails"].is_null(),
            "{expression}: {}",
            result["exceptionDetails"]
        );
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` until `check` accepts its value; returns it.
    /// An exception (the page still loading) counts as not yet.
    fn wait_for(
        &mut self,
        expression: &str,
        timeout: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let result = self.try_call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            );
            let value = match result {
                Ok(result) if result["exceptionDetails"].is_null() => {
                    result["result"]["value"].clone()
                }
                Ok(result) => {
                    json!({"exception": result["exceptionDetails"]["exception"]["description"]})
                }
                Err(navigating) => json!({"error": navigating["error"]}),
            };
            if check(&value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "not as expected within {timeout:?}: {expression}\nlast: {value}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &d)| n | (u32::from(d) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

fn ws_connect(addr: SocketAddr, path: &str) -> TcpStream {
    let mut socket = TcpStream::connect(addr).expect("connect to DevTools");
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).expect("handshake");
    let mut reader = BufReader::new(socket.try_clone().expect("clone"));
    let mut status = String::new();
    reader.read_line(&mut status).expect("handshake answer");
    assert!(status.contains(" 101 "), "DevTools answered {status:?}");
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("handshake headers");
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    assert!(
        reader.buffer().is_empty(),
        "no frame before the first command"
    );
    socket
}

fn ws_send(socket: &mut TcpStream, payload: &[u8]) {
    let mask = [0x5a, 0x17, 0xc3, 0x2e];
    let mut frame = vec![0x81];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    socket.write_all(&frame).expect("send to DevTools");
}

/// The next whole text message (continuation frames joined).
fn ws_receive(socket: &mut TcpStream) -> String {
    let mut message = Vec::new();
    loop {
        let mut head = [0u8; 2];
        socket.read_exact(&mut head).expect("a DevTools frame");
        let (fin, opcode) = (head[0] & 0x80 != 0, head[0] & 0x0f);
        let length = match head[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                socket.read_exact(&mut b).expect("length");
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                socket.read_exact(&mut b).expect("length");
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0; length];
        socket.read_exact(&mut payload).expect("payload");
        assert_ne!(opcode, 8, "DevTools closed the connection");
        if opcode <= 2 {
            message.extend_from_slice(&payload);
            if fin {
                return String::from_utf8(message).expect("UTF-8 from DevTools");
            }
        }
    }
}

fn sessions(http: SocketAddr) -> Vec<Value> {
    http_get(&format!("http://{http}/api/v1/sessions")).json()["sessions"]
        .as_array()
        .expect("sessions")
        .clone()
}

/// The text of each cell of the stream's row in the console (`null` while
/// the row is absent).
const STREAM_ROW: &str = r#"(() => {
  const row = document.querySelector('#streams tr[data-key="live/console"]');
  if (!row) return null;
  const out = {};
  for (const td of row.querySelectorAll('td')) out[td.className] = td.textContent;
  out.link = row.querySelector('a').getAttribute('href');
  out.points = row.querySelector('svg.chart polyline.rate').getAttribute('points');
  out.status = document.getElementById('status').textContent;
  return out;
})()"#;

#[test]
fn the_console_lists_a_publish_with_its_codecs_and_kicks_a_reader() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut server = ServerCommand::with_config(&loopback_config()).spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    // The console is open before the publish: the stream appears within 2 s
    // of being live, without a reload.
    let mut browser = Browser::start();
    browser.open(&format!("http://{http}/"));
    browser.wait_for(
        "document.getElementById('no-streams').hidden",
        Duration::from_secs(10),
        |v| v == &json!(false),
    );
    let mut publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/live/console"), 90, 25);
    wait_live(http, "live/console", LIVE_TIMEOUT);
    let live = Instant::now();
    browser.wait_for(STREAM_ROW, Duration::from_secs(2), |row| {
        row["tracks"].as_str().is_some_and(|t| t.contains("H.264"))
    });
    eprintln!("row shown {:?} after the stream was live", live.elapsed());

    // A reader to kick: ffmpeg reading HTTP-FLV (copying, not decoding).
    let reader = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(["-i", &format!("http://{http}/flv/live/console.flv")])
        .args(["-c", "copy", "-f", "null", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("ffmpeg (install the ffmpeg package)");
    let mut reader = ChildGuard(reader);
    wait_json(
        &format!("http://{http}/api/v1/sessions"),
        LIVE_TIMEOUT,
        |v| {
            v["sessions"]
                .as_array()
                .is_some_and(|a| a.iter().any(|s| s["protocol"] == "http-flv"))
        },
    );

    let shown = Instant::now();
    // The row shows the source, the codecs with their RFC 6381 strings, the
    // resolution and the reader (within a few polls of the page).
    let row = browser.wait_for(STREAM_ROW, Duration::from_secs(5), |row| {
        row["tracks"]
            .as_str()
            .is_some_and(|t| t.contains("H.264 avc1.") && t.contains("AAC mp4a.40.2"))
            && row["readers"]
                .as_str()
                .is_some_and(|r| r.contains("http-flv 1"))
    });
    eprintln!("console row after {:?}: {row:#}", shown.elapsed());
    let text = |k: &str| row[k].as_str().unwrap_or_default().to_string();
    assert!(text("tracks").contains("320×240"), "{row}");
    assert!(text("source").starts_with("rtmp from 127.0.0.1:"), "{row}");
    assert!(text("in").contains("b/s"), "{row}");
    assert_eq!(text("link"), "/watch/live/console");
    assert!(text("status").starts_with("live"), "{row}");
    // The chart and the figures that need a few samples fill in.
    let row = browser.wait_for(STREAM_ROW, Duration::from_secs(20), |row| {
        row["points"]
            .as_str()
            .is_some_and(|p| p.split(' ').count() >= 3)
            && row["gop"].as_str().is_some_and(|g| g.starts_with('~'))
            && row["out"].as_str().is_some_and(|o| o.contains("b/s"))
    });
    // A keyframe every 25 frames at 25 fps: a one-second GOP.
    let gop = text_of(&row, "gop");
    let seconds: f64 = gop
        .trim_start_matches('~')
        .split(' ')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("gop {gop:?}"));
    assert!((0.7..=1.4).contains(&seconds), "gop {gop:?}");

    // The sessions table lists the publisher and the reader; kick the reader
    // with its button.
    let id = browser.wait_for(
        "(() => { const r = [...document.querySelectorAll('#sessions tr[data-id]')]\
           .find(r => r.querySelector('td.protocol').textContent === 'http-flv'); \
           return r ? Number(r.dataset.id) : null; })()",
        Duration::from_secs(5),
        |v| v.is_u64(),
    );
    let id = id.as_u64().expect("an id");
    assert!(sessions(http).iter().any(|s| s["id"] == id));
    browser.eval(&format!(
        "document.querySelector('#sessions tr[data-id=\"{id}\"] button.kick').click()"
    ));
    let deadline = Instant::now() + Duration::from_secs(5);
    while sessions(http).iter().any(|s| s["id"] == id) {
        assert!(
            Instant::now() < deadline,
            "session {id} still listed after the kick"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        reader.wait_for(Duration::from_secs(5)).is_some(),
        "the kicked reader's connection did not end"
    );
    browser.wait_for(
        &format!("document.querySelector('#sessions tr[data-id=\"{id}\"]') === null"),
        Duration::from_secs(5),
        |v| v == &json!(true),
    );
    assert!(
        sessions(http).iter().any(|s| s["kind"] == "publisher"),
        "the publisher goes on"
    );

    // A second application: the filter shows one at a time.
    let mic =
        tidewater_tests::ffmpeg_publish_one_track(&format!("rtmp://{rtmp}/studio/mic"), false, 60);
    wait_live(http, "studio/mic", LIVE_TIMEOUT);
    const SHOWN: &str = "[[...document.querySelectorAll('#streams tbody tr')].map(r => r.dataset.key), \
         [...document.querySelectorAll('#sessions tbody td.path')].map(c => c.textContent)]";
    browser.wait_for(SHOWN, Duration::from_secs(3), |v| {
        v[0] == json!(["live/console", "studio/mic"])
    });
    let audio = browser.wait_for(
        "document.querySelector('#streams tr[data-key=\"studio/mic\"] td.tracks').textContent",
        Duration::from_secs(3),
        |v| {
            v.as_str()
                .is_some_and(|t| t.starts_with("AAC mp4a.40.2 44.1 kHz"))
        },
    );
    eprintln!("studio/mic: {audio}");
    let pick = |app: &str| {
        format!(
            "(() => {{ const f = document.getElementById('app-filter'); f.value = '{app}'; \
             f.dispatchEvent(new Event('change')); return f.value; }})()"
        )
    };
    assert_eq!(browser.eval(&pick("studio")), json!("studio"));
    browser.wait_for(SHOWN, Duration::from_secs(3), |v| {
        v == &json!([["studio/mic"], ["studio/mic"]])
    });
    assert_eq!(browser.eval(&pick("")), json!(""));
    browser.wait_for(SHOWN, Duration::from_secs(3), |v| {
        v[0] == json!(["live/console", "studio/mic"])
    });

    browser.check_accessibility("console");
    browser.screenshot("console", 1280);
    browser.screenshot("console", 375);

    // The publish ends: its row goes within 2 s of the stream's end.
    let _ = publisher.0.kill();
    let _ = publisher.0.wait();
    let killed = Instant::now();
    wait_json(
        &format!("http://{http}/api/v1/streams"),
        LIVE_TIMEOUT,
        |v| {
            v["streams"]
                .as_array()
                .is_some_and(|a| !a.iter().any(|s| s["key"] == "live/console"))
        },
    );
    let ended = Instant::now();
    browser.wait_for(STREAM_ROW, Duration::from_secs(2), Value::is_null);
    eprintln!(
        "row removed {:?} after the stream ended ({:?} after ffmpeg was killed)",
        ended.elapsed(),
        killed.elapsed()
    );
    // With no stream left the page says so.
    drop(mic);
    browser.wait_for(
        "document.getElementById('no-streams').hidden",
        Duration::from_secs(5),
        |v| v == &json!(false),
    );
    assert!(
        browser.errors.is_empty(),
        "page errors: {:#?}",
        browser.errors
    );
    server.signal("TERM");
}

fn text_of(row: &Value, key: &str) -> String {
    row[key].as_str().unwrap_or_default().to_string()
}

/// The player page's figures.
const STATS: &str = r#"(() => ({
  state: document.getElementById('state').dataset.state || null,
  latency: document.getElementById('latency').dataset.seconds || null,
  latencyText: document.getElementById('latency').textContent,
  resolution: document.getElementById('resolution').textContent,
  dropped: document.getElementById('dropped').textContent,
  library: document.getElementById('library').textContent,
  error: document.getElementById('error').hidden ? null : document.getElementById('error').textContent,
  player: window.tidewaterPlayer.current(),
}))()"#;

fn latency(stats: &Value) -> Option<f64> {
    stats["latency"].as_str().and_then(|l| l.parse().ok())
}

/// Waits (20 s at most) until `player` shows a latency of at most `bound`
/// seconds, then checks that it still does 3 s later.
fn settles_under(browser: &mut Browser, player: &str, bound: f64) {
    let ok = |s: &Value| s["player"] == player && latency(s).is_some_and(|l| l <= bound);
    let first = browser.wait_for(STATS, Duration::from_secs(20), ok);
    std::thread::sleep(Duration::from_secs(3));
    let later = browser.eval(STATS);
    eprintln!(
        "{player}: latency {:?} s, 3 s later {:?} s",
        latency(&first),
        latency(&later)
    );
    assert!(
        ok(&later),
        "{player} latency left the bound {bound} s: {later}"
    );
    assert_eq!(later["state"], "playing", "{later}");
}

fn playing_with_latency(stats: &Value) -> bool {
    stats["state"] == "playing"
        && stats["latency"]
            .as_str()
            .and_then(|l| l.parse::<f64>().ok())
            .is_some_and(|l| l > 0.0)
        && stats["resolution"] == "320×240"
}

#[test]
fn the_watch_page_plays_ll_hls_and_dash_with_their_latency() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut server = ServerCommand::with_config(&loopback_config()).spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    let rtsp = server.rtsp_addr();
    let _publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/live/console"), 120, 50);
    wait_live(http, "live/console", LIVE_TIMEOUT);

    let mut browser = Browser::start();
    browser.open(&format!("http://{http}/watch/live/console"));
    // LL-HLS is the default player.
    let stats = browser.wait_for(STATS, Duration::from_secs(30), playing_with_latency);
    eprintln!("LL-HLS: {stats:#}");
    assert_eq!(stats["player"], "llhls");
    assert!(
        stats["library"]
            .as_str()
            .is_some_and(|l| l.starts_with("hls.js 1.")),
        "{stats}"
    );
    // The latency the page shows settles within the bound of the hls.js
    // tests (tests/hls.rs).
    settles_under(&mut browser, "llhls", 1.5);
    assert!(
        stats["dropped"]
            .as_str()
            .is_some_and(|d| d.contains(" of ")),
        "{stats}"
    );

    // The URLs come from the request's host and the running listeners.
    let urls = browser.eval(
        "[...document.querySelectorAll('#urls tbody tr')].map(r => \
           [...r.children].slice(0, 3).map(c => c.textContent).join(' | '))",
    );
    let urls: Vec<&str> = urls
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for expected in [
        format!(
            "RTMP | publish and play | rtmp://127.0.0.1:{}/live/console",
            rtmp.port()
        ),
        format!("LL-HLS | play | http://{http}/llhls/live/console/index.m3u8"),
        format!("DASH | play | http://{http}/dash/live/console/manifest.mpd"),
        format!("HTTP-FLV | play | http://{http}/flv/live/console.flv"),
        format!("WHEP | play (WebRTC) | http://{http}/whep/live/console"),
        format!(
            "RTSP | publish and play | rtsp://127.0.0.1:{}/live/console",
            rtsp.port()
        ),
    ] {
        assert!(
            urls.contains(&expected.as_str()),
            "{expected:?} not in {urls:#?}"
        );
    }
    assert!(
        urls.iter()
            .any(|u| u.starts_with("SRT | read | srt://127.0.0.1:")
                && u.ends_with("?streamid=read:live/console")),
        "{urls:#?}"
    );
    // A URL's Copy button copies (the clipboard, or the selection fallback).
    browser.eval(
        "[...document.querySelectorAll('#urls tbody tr')].find(r => r.cells[0].textContent === 'LL-HLS') \
           .querySelector('button').click()",
    );
    browser.wait_for(
        "document.getElementById('announce').textContent",
        Duration::from_secs(3),
        |v| v == "Copied to the clipboard",
    );
    let embed = browser.eval("document.getElementById('embed').value");
    assert!(
        embed.as_str().is_some_and(|e| e.contains(&format!("src=\"http://{http}/watch/live/console?embed\""))),
        "{embed}"
    );

    browser.check_accessibility("player");
    browser.screenshot("watch", 1280);
    browser.screenshot("watch", 375);

    // The player choice lists every player the server offers.
    let choice = browser.eval("[...document.querySelectorAll('#players input')].map(i => i.value)");
    assert_eq!(choice, json!(["llhls", "webrtc", "dash", "hls"]));

    // Switch to DASH.
    browser.eval("window.tidewaterPlayer.play('dash')");
    let stats = browser.wait_for(STATS, Duration::from_secs(40), |s| {
        s["player"] == "dash" && playing_with_latency(s)
    });
    eprintln!("DASH: {stats:#}");
    assert!(
        stats["library"]
            .as_str()
            .is_some_and(|l| l.starts_with("dash.js 5.")),
        "{stats}"
    );
    // Within the bound of the dash.js tests (tests/dash.rs: low-latency
    // DASH, the default, with live catch-up, which the page turns on).
    settles_under(&mut browser, "dash", 2.0);

    // And to TS-HLS.
    browser.eval("window.tidewaterPlayer.play('hls')");
    let stats = browser.wait_for(STATS, Duration::from_secs(40), |s| {
        s["player"] == "hls" && playing_with_latency(s)
    });
    eprintln!("TS-HLS: {stats:#}");
    assert!(
        browser.errors.is_empty(),
        "page errors: {:#?}",
        browser.errors
    );
    server.signal("TERM");
}

#[test]
fn the_pages_are_open_and_their_api_calls_guarded() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let config = format!(
        "{}[[auth.users]]\nuser = \"ops\"\npassword = \"s3cret-ops\"\npermissions = [{{ action = \"api\" }}]\n",
        loopback_config()
    );
    let mut server = ServerCommand::with_config(&config).spawn();
    let http = server.http_addr();
    let page = http_get(&format!("http://{http}/"));
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"));
    assert_eq!(http_get(&format!("http://{http}/watch/live/x")).status, 200);
    assert_eq!(
        http_get(&format!("http://{http}/api/v1/streams")).status,
        401
    );

    // The browser asks for credentials (the API's Basic challenge); a user
    // who cancels sees that the API refused.
    let mut browser = Browser::start();
    browser.answer_challenges(None);
    browser.open(&format!("http://{http}/"));
    let status = browser.wait_for(
        "document.getElementById('status').textContent",
        Duration::from_secs(10),
        |s| {
            s.as_str()
                .is_some_and(|s| s.starts_with("cannot read the API"))
        },
    );
    eprintln!("{status}");
    assert!(
        status
            .as_str()
            .is_some_and(|s| s.contains("401") || s.contains("credentials")),
        "{status}"
    );
    // One who gives the user's credentials sees the console.
    browser.answer_challenges(Some(("ops", "s3cret-ops")));
    browser.open(&format!("http://{http}/"));
    browser.wait_for(
        "document.getElementById('status').textContent",
        Duration::from_secs(10),
        |s| s.as_str().is_some_and(|s| s.starts_with("live")),
    );
    server.signal("TERM");
}

#[test]
fn web_enabled_false_turns_the_pages_off() {
    let mut server = ServerCommand::with_config(&loopback_config())
        .env("TIDEWATER_WEB__ENABLED", "false")
        .spawn();
    let http = server.http_addr();
    assert_eq!(http_get(&format!("http://{http}/")).status, 404);
    assert_eq!(http_get(&format!("http://{http}/watch/live/x")).status, 404);
    assert_eq!(http_get(&format!("http://{http}/healthz")).status, 200);
    server.signal("TERM");
}

#[test]
fn the_watch_page_lists_the_recordings_and_plays_a_range() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let config = format!(
        "{}[record]\npaths = [\"live/*\"]\nsegment_s = 4\npart_ms = 500\n",
        loopback_config()
    );
    let mut server = ServerCommand::with_config(&config).spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    let mut publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/live/rec"), 60, 25);
    wait_live(http, "live/rec", LIVE_TIMEOUT);
    let started = Instant::now();
    // The console says the stream is being recorded, and how much.
    let mut browser = Browser::start();
    browser.open(&format!("http://{http}/"));
    let shown = browser.wait_for(
        "document.querySelector('#streams tr[data-key=\"live/rec\"] td.recording')?.textContent",
        Duration::from_secs(10),
        |v| {
            v.as_str()
                .is_some_and(|t| t.starts_with("on, ") && !t.ends_with(" 0 B"))
        },
    );
    eprintln!("recording column: {shown}");
    // Some seconds on disk, then the publish ends.
    std::thread::sleep(Duration::from_secs(8).saturating_sub(started.elapsed()));
    let _ = publisher.0.kill();
    let _ = publisher.0.wait();
    let spans = wait_json(
        &format!("http://{http}/playback/live/rec/list"),
        LIVE_TIMEOUT,
        |v| v.as_array().is_some_and(|a| !a.is_empty()),
    );
    eprintln!("recorded: {spans}");

    browser.open(&format!("http://{http}/watch/live/rec"));
    // The stream is over: the live player has nothing; the recordings show.
    let items = browser.wait_for(
        "[...document.querySelectorAll('#spans li')].map(li => li.textContent)",
        Duration::from_secs(10),
        |v| v.as_array().is_some_and(|a| !a.is_empty()),
    );
    eprintln!("recordings listed: {items}");
    let rects = browser.eval("document.querySelectorAll('#timeline rect').length");
    assert_eq!(rects, json!(spans.as_array().map_or(0, Vec::len)));
    browser.eval("document.querySelector('#spans li button').click()");
    let stats = browser.wait_for(STATS, Duration::from_secs(20), |s| {
        s["player"] == "recording" && s["state"] == "playing" && s["resolution"] == "320×240"
    });
    eprintln!("recording: {stats:#}");
    assert_eq!(stats["latencyText"], "– (recording)");
    let start = browser.eval("document.getElementById('range-start').value");
    assert_eq!(start, spans[0]["start"], "the form holds the chosen span");
    let t0 = browser.eval("document.getElementById('video').currentTime");
    std::thread::sleep(Duration::from_secs(2));
    let t1 = browser.eval("document.getElementById('video').currentTime");
    assert!(
        t1.as_f64().unwrap_or(0.0) > t0.as_f64().unwrap_or(0.0) + 1.0,
        "the recording plays: {t0} → {t1}"
    );
    server.signal("TERM");
}

/// The WebRTC receiver's counters, as the player page reads them.
const WEBRTC: &str = "window.tidewaterPlayer.webrtc()";

fn decoded(stats: &Value) -> u64 {
    stats["framesDecoded"].as_u64().unwrap_or(0)
}

#[test]
fn the_watch_page_plays_webrtc_over_whep() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut server = ServerCommand::with_config(&loopback_config()).spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    // H.264 without B-frames (zerolatency), as WHEP requires.
    let _publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/live/console"), 90, 25);
    wait_live(http, "live/console", LIVE_TIMEOUT);

    let mut browser = Browser::start();
    // Linkable: the fragment chooses the player.
    browser.open(&format!("http://{http}/watch/live/console#webrtc"));
    let stats = browser.wait_for(STATS, Duration::from_secs(30), |s| {
        s["player"] == "webrtc" && playing_with_latency(s)
    });
    eprintln!("WebRTC: {stats:#}");
    assert!(
        stats["library"]
            .as_str()
            .is_some_and(|l| l.starts_with("WebRTC (WHEP)")),
        "{stats}"
    );
    // Frames decoded by the browser's receiver, read from the page, keep
    // coming at about the publish's 25 fps.
    let before = browser.eval(WEBRTC);
    std::thread::sleep(Duration::from_secs(2));
    let after = browser.eval(WEBRTC);
    eprintln!("receiver: {before} then {after}");
    assert!(
        decoded(&after) >= decoded(&before) + 30,
        "frames decoded: {before} → {after}"
    );
    assert!(
        after["framesReceived"].as_u64().unwrap_or(0) >= decoded(&after),
        "{after}"
    );
    // The latency shown (jitter buffer, decode, half the round trip) on
    // loopback stays well under the HTTP players'.
    settles_under(&mut browser, "webrtc", 1.0);
    assert_eq!(
        browser.eval("document.getElementById('dropped').textContent.includes(' of ')"),
        json!(true)
    );

    // The viewer is a WHEP reader of the server; leaving WebRTC ends it.
    let whep = |http| {
        sessions(http)
            .iter()
            .filter(|s| s["kind"] == "reader" && s["protocol"] == "whep")
            .count()
    };
    let listed = wait_json(
        &format!("http://{http}/api/v1/sessions"),
        Duration::from_secs(5),
        |v| {
            v["sessions"]
                .as_array()
                .is_some_and(|a| a.iter().any(|s| s["protocol"] == "whep"))
        },
    );
    eprintln!("sessions: {listed}");
    browser.eval("window.tidewaterPlayer.play('llhls')");
    browser.wait_for(STATS, Duration::from_secs(30), |s| {
        s["player"] == "llhls" && playing_with_latency(s)
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while whep(http) > 0 {
        assert!(
            Instant::now() < deadline,
            "the WHEP viewer outlived the switch"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        browser.errors.is_empty(),
        "page errors: {:#?}",
        browser.errors
    );
    server.signal("TERM");
}

#[test]
fn the_publish_page_sends_the_camera_over_whip_to_an_ffmpeg_reader() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut server = ServerCommand::with_config(&loopback_config()).spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    let mut browser = Browser::start();
    // From the console's form to the publish page.
    browser.open(&format!("http://{http}/"));
    browser.wait_for(
        // The page's script has run (it handles the form).
        "typeof window.tidewater === 'object'",
        Duration::from_secs(10),
        |v| v == &json!(true),
    );
    // The click navigates: made after the evaluation returns.
    browser.eval(
        "document.getElementById('publish-stream').value = 'browser'; \
         setTimeout(() => document.querySelector('#publish-start button').click(), 0)",
    );
    browser.wait_for("location.pathname", Duration::from_secs(10), |v| {
        v == "/publish/live/browser"
    });
    browser.wait_for(
        "typeof window.tidewaterPublish === 'object' && document.getElementById('title').textContent",
        Duration::from_secs(10),
        |v| v == "publish live/browser",
    );
    browser.eval("document.getElementById('start').click()");
    let state = browser.wait_for(
        "[document.getElementById('state').dataset.state, document.getElementById('error').textContent]",
        Duration::from_secs(30),
        |v| v[0] == "publishing" || v[0] == "error",
    );
    assert_eq!(state[0], "publishing", "{state}");
    let live = wait_live(http, "live/browser", LIVE_TIMEOUT);
    eprintln!("live: {live}");
    assert_eq!(live["protocol"], "whip", "{live}");

    // An ffmpeg RTMP reader decodes the camera: 640x480 pictures (the
    // page's default), increasing timestamps.
    let mut reader = tidewater_tests::ffmpeg_framecrc_command(
        // The FLV metadata announces the Opus track, which RTMP does not
        // carry: probe little, not until 5 MB of video.
        &[
            "-rw_timeout",
            "10000000",
            "-probesize",
            "200000",
            "-analyzeduration",
            "2000000",
        ],
        &format!("rtmp://{rtmp}/live/browser"),
        &["-map", "0:v", "-t", "3"],
    );
    let reading = Instant::now();
    let out = reader.output().expect("run ffmpeg");
    eprintln!("ffmpeg read for {:?}", reading.elapsed());
    let crc = tidewater_tests::FrameCrc::parse(&String::from_utf8_lossy(&out.stdout));
    let frames = crc.stream(0);
    eprintln!(
        "decoded {} frames ({:?}); ffmpeg said {:?}",
        frames.len(),
        crc.codecs,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(crc.codecs.first().map(String::as_str), Some("rawvideo"));
    assert!(frames.len() >= 20, "{} frames in 3 s", frames.len());
    assert!(
        frames.iter().all(|f| f.size == 640 * 480 * 3 / 2),
        "640x480 yuv420p: {:?}",
        frames.first()
    );
    assert!(crc.monotonic(), "increasing timestamps");
    // The catalog has the browser's H.264 and Opus.
    let codecs = tidewater_tests::catalog_codecs(&wait_json(
        &format!("http://{http}/api/v1/streams/live/browser"),
        LIVE_TIMEOUT,
        |v| {
            v["catalog"]["tracks"]
                .as_array()
                .is_some_and(|t| t.len() == 2)
        },
    ));
    eprintln!("tracks: {codecs:?}");
    assert!(
        codecs.contains(&json!("H264")) && codecs.contains(&json!("Opus")),
        "{codecs:?}"
    );
    // What the page says it sends.
    let shown = browser.wait_for(
        "[document.getElementById('resolution').textContent, Number(document.getElementById('frames').dataset.count || 0), document.getElementById('codecs').textContent]",
        Duration::from_secs(5),
        |v| v[1].as_u64().unwrap_or(0) > 30 && v[0] != "–",
    );
    eprintln!("the page shows {shown}");
    assert!(
        shown[2].as_str().is_some_and(|c| c.contains("video/H264")),
        "{shown}"
    );
    browser.check_accessibility("publish");
    browser.screenshot("publish", 1280);
    browser.screenshot("publish", 375);

    // Stop ends the publish at once (WHIP DELETE).
    browser.eval("document.getElementById('stop').click()");
    wait_json(
        &format!("http://{http}/api/v1/streams"),
        Duration::from_secs(5),
        |v| {
            v["streams"]
                .as_array()
                .is_some_and(|a| !a.iter().any(|s| s["key"] == "live/browser"))
        },
    );
    assert_eq!(
        browser.eval("document.getElementById('state').dataset.state"),
        json!("stopped")
    );
    assert!(
        browser.errors.is_empty(),
        "page errors: {:#?}",
        browser.errors
    );
    server.signal("TERM");
}

#[test]
fn the_console_shows_a_failing_push_and_pull_with_their_last_errors() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // A destination and a camera nobody listens on: every attempt is
    // refused.
    let refused = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = refused.local_addr().expect("addr").port();
    drop(refused);
    let config = format!(
        "{}[defaults]\npush = [\"rtmp://127.0.0.1:{port}/backup\"]\n\
         [[pull]]\npath = \"cams/door\"\nurl = \"rtsp://viewer:secret@127.0.0.1:{port}/stream1\"\ntransport = \"tcp\"\n",
        loopback_config()
    );
    let mut server = ServerCommand::with_config(&config).spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    let _publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/live/pushed"), 60, 25);
    wait_live(http, "live/pushed", LIVE_TIMEOUT);
    let mut browser = Browser::start();
    browser.open(&format!("http://{http}/"));
    let row = browser.wait_for(
        r#"(() => {
          const r = document.querySelector('#pushes tbody tr[data-key="live/pushed"]');
          if (!r) return null;
          return {url: r.dataset.url, state: r.querySelector('td.state').textContent,
                  errors: r.querySelector('td.errors').textContent,
                  hidden: document.getElementById('no-pushes').hidden};
        })()"#,
        Duration::from_secs(15),
        |v| v["errors"].as_str().is_some_and(|e| e.contains("refused")),
    );
    eprintln!("push row: {row:#}");
    assert!(
        row["url"]
            .as_str()
            .is_some_and(|u| u.starts_with(&format!("rtmp://127.0.0.1:{port}/backup"))),
        "{row}"
    );
    assert!(
        matches!(
            row["state"].as_str(),
            Some("reconnecting" | "starting" | "failed")
        ),
        "{row}"
    );
    assert_eq!(row["hidden"], json!(true));

    // The pull: its source without the password, its state and error.
    let pull = browser.wait_for(
        r#"(() => {
          const r = document.querySelector('#pulls tbody tr[data-key="cams/door"]');
          if (!r) return null;
          const cell = (c) => r.querySelector('td.' + c).textContent;
          return {url: cell('url'), state: cell('state'), transport: cell('transport'),
                  errors: cell('errors'), hidden: document.getElementById('no-pulls').hidden};
        })()"#,
        Duration::from_secs(15),
        |v| v["errors"].as_str().is_some_and(|e| e != "none"),
    );
    eprintln!("pull row: {pull:#}");
    assert_eq!(
        pull["url"],
        json!(format!("rtsp://viewer@127.0.0.1:{port}/stream1")),
        "{pull}"
    );
    assert!(
        matches!(pull["state"].as_str(), Some("retrying" | "connecting")),
        "{pull}"
    );
    assert_eq!(pull["transport"], "tcp");
    assert_eq!(pull["hidden"], json!(true));
    browser.check_accessibility("console (pushes and pulls)");
    assert!(
        browser.errors.is_empty(),
        "page errors: {:#?}",
        browser.errors
    );
    server.signal("TERM");
}

#[test]
fn with_auth_the_publish_page_publishes_as_the_user_the_browser_asks_for() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let config = format!(
        "{}[[auth.users]]\nuser = \"cam\"\npassword = \"s3cret-cam\"\n\
         permissions = [{{ action = \"publish\" }}, {{ action = \"api\" }}]\n",
        loopback_config()
    );
    let mut server = ServerCommand::with_config(&config).spawn();
    let http = server.http_addr();
    let mut browser = Browser::start();
    let publish = |browser: &mut Browser| {
        browser.open(&format!("http://{http}/publish/live/browser"));
        browser.wait_for(
            "typeof window.tidewaterPublish === 'object'",
            Duration::from_secs(10),
            |v| v == &json!(true),
        );
        browser.eval("document.getElementById('start').click()");
        browser.wait_for(
            "[document.getElementById('state').dataset.state, document.getElementById('error').textContent]",
            Duration::from_secs(30),
            |v| v[0] == "publishing" || v[0] == "error",
        )
    };
    // The WHIP request is refused without credentials: the page says so.
    browser.answer_challenges(None);
    let refused = publish(&mut browser);
    eprintln!("cancelled: {refused}");
    assert_eq!(refused[0], "error", "{refused}");
    assert!(
        refused[1]
            .as_str()
            .is_some_and(|e| e.starts_with("WHIP: 401")),
        "{refused}"
    );
    // With the user's credentials it publishes, as that user.
    browser.answer_challenges(Some(("cam", "s3cret-cam")));
    let state = publish(&mut browser);
    assert_eq!(state[0], "publishing", "{state}");
    // The server lists the publish as a WHIP session of that user (the
    // page stays open: leaving it ends the publish).
    let cred = tidewater_tests::auth::Cred::basic("cam", "s3cret-cam");
    let deadline = Instant::now() + Duration::from_secs(10);
    let session = loop {
        let found = tidewater_tests::auth::sessions_as(http, &cred)
            .into_iter()
            .find(|s| s["path"] == "live/browser");
        if let Some(s) = found {
            break s;
        }
        assert!(Instant::now() < deadline, "no session of live/browser");
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("session: {session}");
    assert_eq!(
        (&session["protocol"], &session["user"], &session["kind"]),
        (&json!("whip"), &json!("cam"), &json!("publisher"))
    );
    server.signal("TERM");
}
