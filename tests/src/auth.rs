//! Helpers for the `[auth]` end-to-end tests: HTTP requests that carry
//! credentials (Basic, `Authorization: Bearer`, `?token=`) from a chosen
//! loopback source address, with every response header kept; RTMP URLs with
//! `?user=…&pass=…`; readers whose exit status and decoded frames are both
//! reported; and the API's streams and sessions read with credentials.
//!
//! Everything goes through real clients (curl, ffmpeg), as the other
//! end-to-end tests do; nothing here knows the server's internals.

use std::io::{BufReader, Read};
use std::net::SocketAddr;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::{ChildGuard, FrameCrc, TempDir, curl_command, ffmpeg_framecrc_command};

/// What a request offers the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cred {
    /// Nothing.
    None,
    /// `Authorization: Basic` with this user and password.
    Basic(String, String),
    /// `Authorization: Bearer` with this token.
    Bearer(String),
    /// `?token=` (or `&token=`) appended to the URL.
    Query(String),
}

impl Cred {
    /// Basic credentials.
    pub fn basic(user: &str, pass: &str) -> Cred {
        Cred::Basic(user.to_string(), pass.to_string())
    }

    /// A bearer token.
    pub fn bearer(token: &str) -> Cred {
        Cred::Bearer(token.to_string())
    }

    /// A `?token=` query parameter.
    pub fn query(token: &str) -> Cred {
        Cred::Query(token.to_string())
    }

    /// A short name for assertion messages (never the secret itself).
    pub fn describe(&self) -> String {
        match self {
            Cred::None => "no credentials".into(),
            Cred::Basic(u, _) => format!("Basic {u}:***"),
            Cred::Bearer(t) => format!("Bearer {}…", t.chars().take(8).collect::<String>()),
            Cred::Query(t) => format!("?token={}…", t.chars().take(8).collect::<String>()),
        }
    }
}

/// `url` with `name=value` added to its query.
pub fn with_query(url: &str, name: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{name}={value}")
}

/// One HTTP request, sent with curl.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    method: String,
    url: String,
    cred: Cred,
    interface: Option<String>,
    max_time: Duration,
}

/// The answer curl got: status, every header (lower-cased names, in order),
/// the body (what arrived before `max_time` for endless responses), and
/// whether curl itself succeeded.
#[derive(Clone, Debug)]
pub struct HttpReply {
    /// The status code; 0 when no response head arrived.
    pub status: u16,
    /// Every response header, names lower-cased, in order (repeated ones repeated).
    pub headers: Vec<(String, String)>,
    /// The body received.
    pub body: Vec<u8>,
    /// curl's exit code (28: `max_time` passed, normal for live streams).
    pub curl_exit: Option<i32>,
    /// What curl printed on its standard error.
    pub curl_error: String,
}

impl HttpReply {
    /// The first value of header `name` (lower-case), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (lower-case).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics naming the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }

    /// A readable summary for assertion messages: status, headers and the
    /// start of the body.
    pub fn summary(&self) -> String {
        let body = self.text();
        let shown: String = body.chars().take(400).collect();
        format!(
            "status {} headers {:?} body {:?}{} (curl exit {:?} {})",
            self.status,
            self.headers,
            shown,
            if body.len() > shown.len() { "…" } else { "" },
            self.curl_exit,
            self.curl_error.trim()
        )
    }
}

impl HttpRequest {
    /// A GET of `url` (sent as is: `..` and `%2e%2e` are not normalized).
    pub fn get(url: impl Into<String>) -> HttpRequest {
        HttpRequest::new("GET", url)
    }

    /// A request with `method`.
    pub fn new(method: &str, url: impl Into<String>) -> HttpRequest {
        HttpRequest {
            method: method.to_string(),
            url: url.into(),
            cred: Cred::None,
            interface: None,
            max_time: Duration::from_secs(15),
        }
    }

    /// With these credentials.
    pub fn cred(mut self, cred: &Cred) -> HttpRequest {
        self.cred = cred.clone();
        self
    }

    /// From this source address (`curl --interface`), e.g. `127.0.0.2`.
    pub fn from_ip(mut self, ip: &str) -> HttpRequest {
        self.interface = Some(ip.to_string());
        self
    }

    /// Gives up (keeping what arrived) after `max_time`: for live streams
    /// that never end.
    pub fn max_time(mut self, max_time: Duration) -> HttpRequest {
        self.max_time = max_time;
        self
    }

    /// The URL the request goes to (with a `Cred::Query` token added).
    pub fn url(&self) -> String {
        match &self.cred {
            Cred::Query(t) => with_query(&self.url, "token", t),
            _ => self.url.clone(),
        }
    }

    /// The curl command, not started; it writes the response head to
    /// `head` and the body to `body`.
    pub fn command(&self, head: &std::path::Path, body: &std::path::Path) -> Command {
        let mut cmd = self.base_command();
        cmd.arg("--dump-header")
            .arg(head)
            .arg("--output")
            .arg(body)
            .arg(self.url());
        cmd
    }

    /// The curl command streaming the body to its standard output (for
    /// readers a test watches), not started.
    pub fn streaming_command(&self) -> Command {
        let mut cmd = self.base_command();
        cmd.args(["--no-buffer", "--output", "-"]).arg(self.url());
        cmd
    }

    fn base_command(&self) -> Command {
        let mut cmd = curl_command();
        // The harness's 10 s default first; ours last wins.
        cmd.args(["--path-as-is", "-X", &self.method])
            .arg("--max-time")
            .arg(format!("{:.3}", self.max_time.as_secs_f64()));
        if let Some(ip) = &self.interface {
            cmd.args(["--interface", ip]);
        }
        match &self.cred {
            Cred::Basic(u, p) => {
                cmd.args(["--user", &format!("{u}:{p}")]);
            }
            Cred::Bearer(t) => {
                cmd.args(["--header", &format!("Authorization: Bearer {t}")]);
            }
            Cred::None | Cred::Query(_) => {}
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Sends it; the answer, whatever curl's exit status (a live stream
    /// ends with a timeout by design).
    pub fn send(&self) -> HttpReply {
        let dir = TempDir::new("auth-curl");
        let (head_path, body_path) = (dir.file("head"), dir.file("body"));
        let out = self
            .command(&head_path, &body_path)
            .output()
            .unwrap_or_else(|e| panic!("cannot run curl: {e}"));
        let head = std::fs::read_to_string(&head_path).unwrap_or_default();
        let body = std::fs::read(&body_path).unwrap_or_default();
        let (status, headers) = parse_head(&head);
        HttpReply {
            status,
            headers,
            body,
            curl_exit: out.status.code(),
            curl_error: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// The status and headers of the last response head in curl's header dump.
pub fn parse_head(head: &str) -> (u16, Vec<(String, String)>) {
    let mut status = 0;
    let mut headers = Vec::new();
    for line in head.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with("HTTP/") {
            status = line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            headers.clear();
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    (status, headers)
}

/// A GET of `url` with `cred`.
pub fn get_as(url: &str, cred: &Cred) -> HttpReply {
    HttpRequest::get(url).cred(cred).send()
}

/// `DELETE url` with `cred`: the answer.
pub fn delete_as(url: &str, cred: &Cred) -> HttpReply {
    HttpRequest::new("DELETE", url).cred(cred).send()
}

/// `rtmp://addr/{key}`, with `?user=…&pass=…` when `user` is given.
pub fn rtmp_url(addr: SocketAddr, key: &str, user: Option<(&str, &str)>) -> String {
    match user {
        Some((u, p)) => format!("rtmp://{addr}/{key}?user={u}&pass={p}"),
        None => format!("rtmp://{addr}/{key}"),
    }
}

/// Polls `GET /api/v1/streams/{key}` with `cred` until the stream is live
/// with a catalog; panics with the last answer after `timeout`.
pub fn wait_live_as(
    http: SocketAddr,
    key: &str,
    cred: &Cred,
    timeout: Duration,
) -> serde_json::Value {
    let url = format!("http://{http}/api/v1/streams/{key}");
    let deadline = Instant::now() + timeout;
    loop {
        let r = get_as(&url, cred);
        if r.status == 200
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&r.body)
            && !v["catalog"].is_null()
        {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{key} not live within {timeout:?}; last answer: {}",
            r.summary()
        );
        std::thread::sleep(Duration::from_millis(150));
    }
}

/// Whether `key` is live, asked with `cred` (which must grant `api`): panics
/// unless the API answers 200 or 404.
pub fn is_live_as(http: SocketAddr, key: &str, cred: &Cred) -> bool {
    let r = get_as(&format!("http://{http}/api/v1/streams/{key}"), cred);
    match r.status {
        200 => true,
        404 => false,
        _ => panic!("GET /api/v1/streams/{key}: {}", r.summary()),
    }
}

/// The sessions `GET /api/v1/sessions` lists, asked with `cred`; panics
/// unless it answers 200 with a list.
pub fn sessions_as(http: SocketAddr, cred: &Cred) -> Vec<serde_json::Value> {
    let r = get_as(&format!("http://{http}/api/v1/sessions"), cred);
    assert_eq!(r.status, 200, "GET /api/v1/sessions: {}", r.summary());
    r.json()["sessions"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no sessions list: {}", r.summary()))
}

/// Polls the sessions until one satisfies `pick`; panics with the last list
/// after `timeout`.
pub fn wait_session(
    http: SocketAddr,
    cred: &Cred,
    timeout: Duration,
    mut pick: impl FnMut(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let list = sessions_as(http, cred);
        if let Some(s) = list.iter().find(|s| pick(s)) {
            return s.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no such session within {timeout:?}; sessions: {list:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How a reader ended: its exit status (`None`: killed at the timeout), what
/// it decoded and what it complained about.
#[derive(Debug)]
pub struct ReaderOutcome {
    /// The exit status, or `None` if it still ran at the timeout.
    pub status: Option<ExitStatus>,
    /// The framecrc it printed.
    pub crc: FrameCrc,
    /// Its standard error.
    pub stderr: String,
}

impl ReaderOutcome {
    /// Decoded video frames (the `rawvideo` stream), 0 when none.
    pub fn video_frames(&self) -> usize {
        self.crc
            .codecs
            .iter()
            .position(|c| c == "rawvideo")
            .map_or(0, |i| self.crc.stream(i as u32).len())
    }

    /// Decoded audio frames (the `pcm_*` stream), 0 when none.
    pub fn audio_frames(&self) -> usize {
        self.crc
            .codecs
            .iter()
            .position(|c| c.starts_with("pcm_"))
            .map_or(0, |i| self.crc.stream(i as u32).len())
    }

    /// Whether it exited by itself with a failure status.
    pub fn failed(&self) -> bool {
        self.status.is_some_and(|s| !s.success())
    }
}

/// ffmpeg decoding `url` into framecrc (with `output` options before the
/// output, e.g. `-t 4`), killed after `timeout`.
pub fn read_frames(url: &str, output: &[&str], timeout: Duration) -> ReaderOutcome {
    let mut child = ChildGuard(
        ffmpeg_framecrc_command(&["-rw_timeout", "10000000"], url, output)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run ffmpeg (install the ffmpeg package): {e}")),
    );
    let mut stdout = child.0.stdout.take().expect("piped stdout");
    let stderr = child.0.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut text);
        text
    });
    let status = child.wait_for(timeout);
    drop(child);
    ReaderOutcome {
        status,
        crc: FrameCrc::parse(&out.join().unwrap_or_default()),
        stderr: err.join().unwrap_or_default(),
    }
}

/// [`read_frames`] on a thread of its own.
pub fn spawn_read_frames(
    url: String,
    output: &'static [&'static str],
    timeout: Duration,
) -> std::thread::JoinHandle<ReaderOutcome> {
    std::thread::spawn(move || read_frames(&url, output, timeout))
}

/// Waits for a publisher (or any child) to exit by itself within `timeout`:
/// its status and standard error (when piped), or `None` if it still runs.
pub fn exit_of(child: &mut ChildGuard, timeout: Duration) -> Option<(ExitStatus, String)> {
    let status = child.wait_for(timeout)?;
    let mut err = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    Some((status, err))
}

/// A `[http]` section on a free loopback port and `[auth.rate_limit]` off,
/// so the many deliberate failures of a test never ban 127.0.0.1; append
/// `[[auth.users]]` and the rest.
pub fn auth_config_head() -> String {
    "[http]\nlisten = \"127.0.0.1:0\"\n\n[auth.rate_limit]\nmax_failures = 0\n\n".to_string()
}

/// A `[[auth.users]]` entry with a plain password and `permissions` (TOML
/// inline tables, e.g. `{ action = "read", path = "live/*" }`).
pub fn user_entry(user: &str, password: &str, permissions: &[&str]) -> String {
    format!(
        "[[auth.users]]\nuser = \"{user}\"\npassword = \"{password}\"\npermissions = [{}]\n\n",
        permissions.join(", ")
    )
}
