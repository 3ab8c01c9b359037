//! The web console: the streams list (`GET /`) and a player page per stream
//! (`GET /watch/{app}/{stream}`), served from assets embedded in the binary
//! (`[web]`, on by default).
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the console: every live stream with its numbers (and recording state), a chart per stream, the pushes and pulls with their state and last errors, the sessions with a kick button, a form opening the publish page; polls `/api/v1/streams`, `/api/v1/sessions` and `/api/v1/pulls` every second |
//! | `GET /watch/{app}/{stream}` | the player page: LL-HLS (hls.js), WebRTC (WHEP, the browser's own `RTCPeerConnection`), DASH (dash.js) and TS-HLS (hls.js), switchable, with the measured latency, dropped frames and resolution; the URLs of every protocol, built from the request's `Host`; an embed snippet (`?embed` shows the video alone); with `[record]`, the stream's recordings on a timeline, any range of them played from `/playback/…/index.m3u8` (which needs `playback`) |
//! | `GET /publish/{app}/{stream}` | with `[webrtc]`: publishes this browser's camera and microphone to the stream over WHIP (H.264 and Opus), showing what is sent |
//! | `GET /console/{file}` | the pages' script and style sheet |
//! | `GET /console/vendor/hls.min.js`, `/console/vendor/dash.all.min.js` | the player libraries, when the build embedded them (see below); else `404` |
//!
//! The pages themselves are static and open to anyone; what they show comes
//! from requests the browser makes with the user's credentials: the
//! console's API calls need the `api` permission (on a `401` the browser
//! asks for a user and password, since the API answers with a `Basic`
//! challenge), the player page's playlists need `read` of the stream, as for
//! any player.
//!
//! The player libraries are the pinned builds of `tests/web` (hls.js and
//! dash.js, as `tests/web/package-lock.json` pins them), copied in by the
//! build script when `npm ci` has run there. A build without them serves
//! player pages that load the libraries from `[web] player_scripts_url`,
//! or say which library is missing.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tidewater::StreamKey;
use tidewater::rtmp::Rtmp;
use tidewater::srt::Srt;

use super::serve::Listener;

mod publish;

const INDEX_HTML: &str = include_str!("../../../assets/console/index.html");
const WATCH_HTML: &str = include_str!("../../../assets/console/watch.html");
const CONSOLE_JS: &str = include_str!("../../../assets/console/console.js");
const WATCH_JS: &str = include_str!("../../../assets/console/watch.js");
const PUBLISH_JS: &str = include_str!("../../../assets/console/publish.js");
const CONSOLE_CSS: &str = include_str!("../../../assets/console/console.css");

const HLS_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hls.min.js"));
const DASH_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/dash.all.min.js"));

// HLSJS_VERSION and DASHJS_VERSION, written by the build script.
include!(concat!(env!("OUT_DIR"), "/players.rs"));

/// Whether this build embeds both player libraries.
pub fn players_embedded() -> bool {
    !HLS_JS.is_empty() && !DASH_JS.is_empty()
}

/// Where a listener's port comes from: a running worker (asked when a page
/// is served: it binds when the server starts), or a number.
#[derive(Clone, Debug)]
pub enum Port {
    /// A fixed port.
    Fixed(u16),
    /// The RTMP or RTMPS listener.
    Rtmp(Arc<Rtmp>),
    /// The SRT listener.
    Srt(Arc<Srt>),
    /// The RTSP listener.
    Rtsp(Arc<tidewater::rtsp::Rtsp>),
}

impl Port {
    async fn get(&self) -> u16 {
        match self {
            Port::Fixed(port) => *port,
            Port::Rtmp(rtmp) => rtmp.listening().await.port(),
            Port::Srt(srt) => srt.listening().await.port(),
            Port::Rtsp(rtsp) => rtsp.listening().await.port(),
        }
    }
}

/// What the console knows of the server: which listeners and outputs run,
/// to build the player page's URLs.
#[derive(Clone, Debug, Default)]
pub struct Console {
    /// The RTMP listener, when enabled.
    pub rtmp: Option<Port>,
    /// The RTMPS listener, when configured.
    pub rtmps: Option<Port>,
    /// The SRT listener, when enabled (also means `/ts/` is served).
    pub srt: Option<Port>,
    /// The RTSP listener, when enabled.
    pub rtsp: Option<Port>,
    /// Whether `/hls/` and `/llhls/` are served.
    pub hls: bool,
    /// Whether `/dash/` is served.
    pub dash: bool,
    /// Whether `/whip/` and `/whep/` are served.
    pub webrtc: bool,
    /// Whether `[record]` records streams (played back under `/playback/`).
    pub record: bool,
    /// `[web] player_scripts_url`: where player pages load the libraries
    /// from when this build has none embedded.
    pub player_scripts_url: Option<String>,
}

/// The console's routes over what `console` says of the server.
pub fn router(console: Console) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/watch/{app}/{stream}", get(watch))
        .route("/publish/{app}/{stream}", get(publish::page))
        .route("/console/{file}", get(asset))
        .route("/console/vendor/{file}", get(vendor))
        .with_state(Arc::new(console))
}

fn page(body: impl Into<axum::body::Body>, kind: &'static str, framable: bool) -> Response {
    let mut response = Response::new(body.into());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !framable {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}

/// `GET /`.
async fn index() -> Response {
    let mut response = page(INDEX_HTML, "text/html; charset=utf-8", false);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    response
}

/// `GET /console/{file}`.
async fn asset(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "console.js" => page(CONSOLE_JS, "text/javascript; charset=utf-8", true),
        "watch.js" => page(WATCH_JS, "text/javascript; charset=utf-8", true),
        "publish.js" => page(PUBLISH_JS, "text/javascript; charset=utf-8", true),
        "console.css" => page(CONSOLE_CSS, "text/css; charset=utf-8", true),
        _ => not_found(),
    }
}

/// `GET /console/vendor/{file}`.
async fn vendor(Path(file): Path<String>) -> Response {
    let body = match file.as_str() {
        "hls.min.js" => HLS_JS,
        "dash.all.min.js" => DASH_JS,
        _ => &[][..],
    };
    if body.is_empty() {
        return not_found();
    }
    let mut response = page(body, "text/javascript; charset=utf-8", true);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// What the player page is told (as JSON inside the page).
#[derive(Debug, Serialize)]
struct WatchConfig {
    app: String,
    stream: String,
    /// Where to load each player library from; `null` when it is missing.
    hlsjs: Option<String>,
    dashjs: Option<String>,
    hlsjs_version: &'static str,
    dashjs_version: &'static str,
    /// What the page can play: `llhls`, `webrtc`, `dash`, `hls`.
    players: Vec<&'static str>,
    /// The page publishing this browser's camera to the stream, with WHIP.
    publish: Option<String>,
    /// Whether to show the stream's recordings (`/playback/…`).
    record: bool,
    urls: Vec<Endpoint>,
    embed: String,
}

/// One row of the URLs table.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub protocol: &'static str,
    pub what: &'static str,
    /// `None`: not served by this server (the listener is not configured).
    pub url: Option<String>,
    pub note: &'static str,
}

/// `GET /watch/{app}/{stream}`.
async fn watch(
    State(console): State<Arc<Console>>,
    Path((app, stream)): Path<(String, String)>,
    request: Request,
) -> Response {
    let Ok(key) = StreamKey::new(&app, &stream) else {
        return (StatusCode::BAD_REQUEST, "invalid stream name\n").into_response();
    };
    let https = request
        .extensions()
        .get::<Listener>()
        .is_some_and(|l| l.0 == "https");
    let host = request_host(request.headers());
    let base = format!("{}://{host}", if https { "https" } else { "http" });
    let urls = endpoints(&console, &host, &base, &key).await;
    let library = |file: &str, embedded: &[u8]| match (&console.player_scripts_url, embedded) {
        (_, body) if !body.is_empty() => Some(format!("/console/vendor/{file}")),
        (Some(url), _) => Some(format!("{url}{file}")),
        (None, _) => None,
    };
    // In the order of the page's choice: LL-HLS first (it plays every
    // stream; WHEP refuses H.264 with B-frames and sends no AAC), then
    // WebRTC (the lowest latency).
    let players: Vec<&'static str> = [
        ("llhls", console.hls),
        ("webrtc", console.webrtc),
        ("dash", console.dash),
        ("hls", console.hls),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    let config = WatchConfig {
        app: key.app().to_string(),
        stream: key.stream().to_string(),
        hlsjs: library("hls.min.js", HLS_JS),
        dashjs: library("dash.all.min.js", DASH_JS),
        hlsjs_version: HLSJS_VERSION,
        dashjs_version: DASHJS_VERSION,
        players,
        publish: console.webrtc.then(|| format!("/publish/{key}")),
        record: console.record,
        embed: format!(
            "<iframe src=\"{base}/watch/{key}?embed\" width=\"640\" height=\"360\" allow=\"autoplay; fullscreen\" allowfullscreen title=\"{key}\"></iframe>"
        ),
        urls,
    };
    let html = WATCH_HTML.replace("__WATCH_CONFIG__", &script_json(&config));
    let mut response = page(html, "text/html; charset=utf-8", true);
    let scripts = match &console.player_scripts_url {
        Some(url) if !players_embedded() => format!("'self' {url}"),
        _ => "'self'".to_string(),
    };
    if let Ok(csp) = HeaderValue::from_str(&format!(
        "default-src 'self'; script-src {scripts}; media-src 'self' blob:; worker-src 'self' blob:; img-src 'self' data:; base-uri 'none'; form-action 'none'"
    )) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

/// `value` as JSON that is safe inside a `<script>` element (no `<`, `>`
/// or `&` that could end it).
fn script_json(value: &impl Serialize) -> String {
    serde_json::to_string(value)
        .unwrap_or_else(|_| "{}".into())
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// The request's `Host` (as the client wrote it, port included), or
/// `localhost` when it has none or an odd one.
fn request_host(headers: &HeaderMap) -> String {
    let plain = |h: &str| {
        !h.is_empty()
            && h.len() <= 255
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
    };
    match headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        Some(host) if plain(host) => host.to_string(),
        _ => "localhost".to_string(),
    }
}

/// `Host` without its port (`[::1]:8888` → `[::1]`).
fn host_name(host: &str) -> &str {
    match host.strip_prefix('[') {
        Some(rest) => rest.find(']').map_or(host, |end| &host[..end + 2]),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    }
}

/// The URLs of `key` for every protocol, built from `host`.
pub(crate) async fn endpoints(
    console: &Console,
    host: &str,
    base: &str,
    key: &StreamKey,
) -> Vec<Endpoint> {
    let name = host_name(host);
    let mut rows = Vec::new();
    let row = |protocol, what, url: Option<String>, note| Endpoint {
        protocol,
        what,
        url,
        note,
    };
    let rtmp = match &console.rtmp {
        Some(p) => Some(format!("rtmp://{name}:{}/{key}", p.get().await)),
        None => None,
    };
    rows.push(row(
        "RTMP",
        "publish and play",
        rtmp,
        "[rtmp] enabled = false",
    ));
    let rtmps = match &console.rtmps {
        Some(p) => Some(format!("rtmps://{name}:{}/{key}", p.get().await)),
        None => None,
    };
    rows.push(row(
        "RTMPS",
        "publish and play",
        rtmps,
        "needs [rtmps] cert and key",
    ));
    let srt_port = match &console.srt {
        Some(p) => Some(p.get().await),
        None => None,
    };
    let srt =
        |mode: &str| srt_port.map(|port| format!("srt://{name}:{port}?streamid={mode}:{key}"));
    rows.push(row(
        "SRT",
        "publish",
        srt("publish"),
        "[srt] enabled = false",
    ));
    rows.push(row("SRT", "read", srt("read"), "[srt] enabled = false"));
    let rtsp = match &console.rtsp {
        Some(p) => Some(format!("rtsp://{name}:{}/{key}", p.get().await)),
        None => None,
    };
    rows.push(row(
        "RTSP",
        "publish and play",
        rtsp,
        "[rtsp] enabled = false",
    ));
    let hls = |prefix: &str| {
        console
            .hls
            .then(|| format!("{base}/{prefix}/{key}/index.m3u8"))
    };
    rows.push(row("LL-HLS", "play", hls("llhls"), "[hls] enabled = false"));
    rows.push(row(
        "HLS",
        "play (MPEG-TS)",
        hls("hls"),
        "[hls] enabled = false",
    ));
    rows.push(row(
        "DASH",
        "play",
        console
            .dash
            .then(|| format!("{base}/dash/{key}/manifest.mpd")),
        "[dash] enabled = false",
    ));
    rows.push(row(
        "HTTP-FLV",
        "play",
        Some(format!("{base}/flv/{key}.flv")),
        "",
    ));
    rows.push(row(
        "HTTP-TS",
        "play",
        srt_port.map(|_| format!("{base}/ts/{key}.ts")),
        "[srt] enabled = false",
    ));
    let webrtc = |route: &str| console.webrtc.then(|| format!("{base}/{route}/{key}"));
    rows.push(row(
        "WHIP",
        "publish (WebRTC)",
        webrtc("whip"),
        "[webrtc] enabled = false",
    ));
    rows.push(row(
        "WHEP",
        "play (WebRTC)",
        webrtc("whep"),
        "[webrtc] enabled = false",
    ));
    rows
}

#[cfg(test)]
mod tests;
