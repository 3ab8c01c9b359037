//! A page of the test's own in headless Chromium that reports back: the
//! WebRTC tests' browser (publish with the fake camera and microphone over
//! WHIP, play over WHEP, read `getStats`).
//!
//! The page is served from a loopback HTTP server of the test (its origin
//! differs from the tidewater server's, so every request the page makes to
//! the server goes through CORS, as a real site's would). Before the
//! test's markup the page gets two helpers: `log(text)` posts a line back
//! to the test (read with [`ChromiumPage::lines`]), and `gathered(pc)`
//! resolves once ICE gathering completes (or after 2 s).
//!
//! Chromium runs headless with the flags this machine needs (no sandbox as
//! root, no GPU, no background networking), the fake media devices and
//! permission prompt (`--use-fake-device-for-media-stream`,
//! `--use-fake-ui-for-media-stream`), autoplay allowed, and host candidates
//! with real addresses instead of mDNS names.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::browser::{read_request, respond};
use crate::{ChildGuard, TempDir};

const PRELUDE: &str = r#"<!doctype html><html><head><meta charset="utf-8"></head><body><script>
const log = (m) => fetch('/log', {method: 'POST', body: String(m)}).catch(() => {});
const gathered = (pc) => new Promise(done => {
  if (pc.iceGatheringState === 'complete') return done();
  pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && done());
  setTimeout(done, 2000);
});
window.addEventListener('error', e => log('error ' + e.message));
</script>
"#;

type Lines = Arc<Mutex<Vec<String>>>;

/// Headless Chromium showing a page of the test; closed when dropped.
#[derive(Debug)]
pub struct ChromiumPage {
    lines: Lines,
    stop: Arc<AtomicBool>,
    server: Option<std::thread::JoinHandle<()>>,
    browser: Option<ChildGuard>,
    profile: TempDir,
    origin: SocketAddr,
}

impl ChromiumPage {
    /// Serves `body` (markup and scripts for inside `<body>`, after the
    /// helpers) and opens it in Chromium. Panics when Chromium is not
    /// installed (`cargo xtask test` installs it).
    pub fn open(body: &str) -> ChromiumPage {
        let browser = crate::browser::chromium()
            .expect("chromium is not installed (cargo xtask test installs it)");
        let page = format!("{PRELUDE}{body}</body></html>");
        let lines: Lines = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the page server");
        let origin = listener.local_addr().expect("page server address");
        listener
            .set_nonblocking(true)
            .expect("non-blocking page server");
        let server = {
            let (lines, stop) = (Arc::clone(&lines), Arc::clone(&stop));
            std::thread::spawn(move || serve(listener, page, lines, stop))
        };
        let profile = TempDir::new("chromium-page");
        let log = std::fs::File::create(profile.file("chromium.log")).expect("chromium log");
        let child = Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--mute-audio",
                "--autoplay-policy=no-user-gesture-required",
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                "--disable-features=WebRtcHideLocalIpsWithMdns",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("http://{origin}/"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("chromium log"))
            .stderr(log)
            .spawn()
            .expect("start chromium");
        ChromiumPage {
            lines,
            stop,
            server: Some(server),
            browser: Some(ChildGuard(child)),
            profile,
            origin,
        }
    }

    /// The page's origin (`http://127.0.0.1:PORT`).
    pub fn origin(&self) -> String {
        format!("http://{}", self.origin)
    }

    /// Every line the page logged so far, in order.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The last line that starts with `prefix`, without the prefix.
    pub fn last(&self, prefix: &str) -> Option<String> {
        self.lines()
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix(prefix).map(str::to_owned))
    }

    /// Waits up to `timeout` for a line starting with `prefix`; returns it
    /// without the prefix.
    pub fn wait_for(&self, prefix: &str, timeout: Duration) -> Option<String> {
        let start = Instant::now();
        loop {
            let found = self
                .lines()
                .iter()
                .find_map(|l| l.strip_prefix(prefix).map(str::to_owned));
            if found.is_some() || start.elapsed() >= timeout {
                return found;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls the last line starting with `prefix` (without it) until
    /// `done` holds for it or `timeout` passes; returns the last one seen.
    pub fn wait_until(
        &self,
        prefix: &str,
        timeout: Duration,
        done: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let start = Instant::now();
        loop {
            let last = self.last(prefix);
            if last.as_deref().is_some_and(&done) || start.elapsed() >= timeout {
                return last;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What Chromium printed (for assertion messages).
    pub fn browser_log(&self) -> String {
        std::fs::read_to_string(self.profile.file("chromium.log")).unwrap_or_default()
    }

    /// Closes the browser now (the page's peer connections vanish without
    /// saying goodbye); lines logged so far stay readable.
    pub fn close_browser(&mut self) {
        self.browser.take();
    }
}

impl Drop for ChromiumPage {
    fn drop(&mut self) {
        self.browser.take();
        self.stop.store(true, Ordering::Relaxed);
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
    }
}

fn serve(listener: TcpListener, page: String, lines: Lines, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let (page, lines) = (page.clone(), Arc::clone(&lines));
                std::thread::spawn(move || handle(stream, &page, &lines));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => return,
        }
    }
}

fn handle(stream: TcpStream, page: &str, lines: &Mutex<Vec<String>>) {
    let Some((path, body)) = read_request(&stream) else {
        return;
    };
    let (status, content): (&str, &[u8]) = match path.as_str() {
        "/" => ("200 OK", page.as_bytes()),
        "/log" => {
            lines
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(String::from_utf8_lossy(&body).into_owned());
            ("204 No Content", b"")
        }
        _ => ("404 Not Found", b"not found"),
    };
    respond(stream, status, "text/html; charset=utf-8", content);
}
