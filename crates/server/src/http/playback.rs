//! Playback of recordings (`[record]`): every route asks the authorizer for
//! the `playback` action on the stream.
//!
//! | route | answer |
//! |---|---|
//! | `GET /playback/{app}/{stream}/list` | JSON `[{"start": RFC 3339, "duration": seconds}]`: the continuous spans recorded |
//! | `GET /playback/{app}/{stream}/index.m3u8?start=…&duration=…` | an HLS VOD playlist (fMP4, byte ranges into the recorded files, an `EXT-X-MAP` per file, `EXT-X-DISCONTINUITY` at each republish, segments starting on keyframes, `EXT-X-ENDLIST`) |
//! | `GET /playback/{app}/{stream}.mp4?start=…&duration=…` | one fragmented MP4 of the range, streamed from the files (never built in memory): from the keyframe at or before `start`; it ends early at a republish or a change of decoder configuration, and then says so in `X-Tidewater-Range-End` (`discontinuity`, `config-change`); `X-Tidewater-Range-Start` is the wall-clock time of its first frame |
//! | `GET /playback/{app}/{stream}/get?start=…&duration=…` | the same (an alias) |
//! | `GET /playback/{app}/{stream}/files/{file}` | a recorded file, with `Range` requests (what the playlist's byte ranges ask for) |
//!
//! `start` is RFC 3339 (URL-encoded: `%2B` for a `+` offset), `duration`
//! seconds (decimal); without `start` the range begins at the first
//! recording, without `duration` it runs to the last. A range inside a
//! running recording includes it up to its last complete fragment. The
//! playlist's URIs carry the request's query, so a token in it reaches the
//! segment requests.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tidewater::bytes::Bytes;
use tidewater::record::{Library, Piece, time};
use tidewater::{Action, AuthRequest, Engine, StreamKey};

/// Bytes read from disk per chunk of a response body.
const CHUNK: u64 = 64 * 1024;

#[derive(Clone)]
struct Playback {
    engine: Engine,
    library: Library,
}

/// The playback routes over the recordings of `library`.
pub fn router(engine: Engine, library: Library) -> Router {
    Router::new()
        .route("/playback/{app}/{stream}/list", get(list))
        .route("/playback/{app}/{stream}/index.m3u8", get(playlist))
        .route("/playback/{app}/{stream}/get", get(download))
        // `{stream}.mp4`: the router has no suffix patterns, so the whole
        // segment is the parameter and the handler wants the `.mp4`.
        .route("/playback/{app}/{stream}", get(download_mp4))
        .route("/playback/{app}/{stream}/files/{file}", get(file))
        .layer(axum::middleware::map_response(any_origin))
        .with_state(Playback { engine, library })
}

/// Like the other outputs, readable from a player page of any origin (the
/// server's CORS layer narrows this to `[http] cors_origins`); the range
/// headers are readable by its scripts.
async fn any_origin(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(
            "content-range, content-length, x-tidewater-range-start, x-tidewater-range-end",
        ),
    );
    r
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

/// Who asks: peer, query, credentials.
type Asker = (
    Option<std::net::SocketAddr>,
    Option<String>,
    tidewater::Credentials,
);

/// The stream, after the authorizer said yes to `playback` on it.
async fn admit(
    st: &Playback,
    app: &str,
    stream: &str,
    asker: Asker,
) -> Result<StreamKey, Response> {
    let key = StreamKey::new(app, stream)
        .map_err(|e| text(StatusCode::BAD_REQUEST, format!("invalid stream: {e}\n")))?;
    let (peer, query, credentials) = asker;
    let mut asked = AuthRequest::new(Action::Playback, "playback")
        .key(key.clone())
        .credentials(credentials);
    if let Some(p) = peer {
        asked = asked.peer(p);
    }
    if let Some(q) = query {
        asked = asked.query(q);
    }
    match st.engine.authorize_request(&asked).await {
        Ok(_) => Ok(key),
        Err(refusal) => {
            tracing::info!(
                peer = %tidewater_http::who(peer),
                stream = %key,
                reason = %refusal,
                "playback request refused"
            );
            Err(tidewater_http::refusal_response(
                &refusal,
                &st.engine.realm(),
            ))
        }
    }
}

/// Percent-decoding of a query value (`+` stays `+`: RFC 3339 offsets).
fn decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `(start_ms, duration_ms)` of the query; `Err` names what is wrong.
fn range(query: Option<&str>) -> Result<(i64, i64), &'static str> {
    let bad = |m: &'static str| m;
    let (mut start, mut duration) = (0, i64::MAX / 4);
    for pair in query.unwrap_or_default().split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "start" => {
                start = decode(v)
                    .and_then(|v| time::parse_rfc3339(&v))
                    .ok_or_else(|| {
                        bad("start: an RFC 3339 date-time, like 2026-12-07T06:00:00Z")
                    })?;
            }
            "duration" => {
                let secs: f64 = decode(v)
                    .and_then(|v| v.parse().ok())
                    .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s < 1e9)
                    .ok_or_else(|| bad("duration: seconds, a positive number"))?;
                duration = (secs * 1000.0).round() as i64;
            }
            _ => {}
        }
    }
    Ok((start, duration))
}

/// Runs a file-reading closure on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")))
}

async fn list(
    State(st): State<Playback>,
    Path((app, stream)): Path<(String, String)>,
    req: Request,
) -> Response {
    let key = match admit(&st, &app, &stream, tidewater_http::asker(&req)).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let lib = st.library.clone();
    let spans = match blocking(move || lib.spans(&key)).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let json: Vec<serde_json::Value> = spans
        .iter()
        .map(|s| {
            serde_json::json!({
                "start": time::rfc3339(s.start_ms),
                "duration": s.duration_ms as f64 / 1000.0,
            })
        })
        .collect();
    axum::Json(json).into_response()
}

async fn playlist(
    State(st): State<Playback>,
    Path((app, stream)): Path<(String, String)>,
    req: Request,
) -> Response {
    let key = match admit(&st, &app, &stream, tidewater_http::asker(&req)).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let query = req.uri().query().map(str::to_owned);
    let (start, duration) = match range(query.as_deref()) {
        Ok(r) => r,
        Err(m) => return text(StatusCode::BAD_REQUEST, format!("{m}\n")),
    };
    let lib = st.library.clone();
    let suffix = query.map(|q| format!("?{q}")).unwrap_or_default();
    let text_pl =
        blocking(move || lib.playlist(&key, start, duration, |f| format!("files/{f}{suffix}")))
            .await;
    match text_pl {
        Ok(Some(pl)) => {
            let mut r = pl.into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/vnd.apple.mpegurl"),
            );
            r
        }
        Ok(None) => text(StatusCode::NOT_FOUND, "nothing recorded in that range\n"),
        Err(r) => r,
    }
}

/// A body of `pieces` read from disk in chunks on the blocking pool, handed
/// over through a small bounded channel (a slow client holds one chunk).
fn pieces_body(pieces: Vec<Piece>) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::task::spawn_blocking(move || {
        for p in pieces {
            let Ok(mut f) = std::fs::File::open(&p.path) else {
                tracing::warn!("playback: {} vanished while read", p.path.display());
                return;
            };
            if f.seek(SeekFrom::Start(p.offset)).is_err() {
                return;
            }
            let mut left = p.len;
            while left > 0 {
                let n = left.min(CHUNK) as usize;
                let mut buf = vec![0u8; n];
                if f.read_exact(&mut buf).is_err() {
                    tracing::warn!("playback: {} shorter than indexed", p.path.display());
                    return;
                }
                left -= n as u64;
                if tx.blocking_send(Bytes::from(buf)).is_err() {
                    return;
                }
            }
        }
    });
    tidewater_http::channel_body(rx)
}

/// `GET /playback/{app}/{stream}.mp4`.
async fn download_mp4(
    st: State<Playback>,
    Path((app, file)): Path<(String, String)>,
    req: Request,
) -> Response {
    match file.strip_suffix(".mp4") {
        Some(stream) if !stream.is_empty() => {
            download(st, Path((app, stream.to_string())), req).await
        }
        _ => text(StatusCode::NOT_FOUND, "no such playback route\n"),
    }
}

async fn download(
    State(st): State<Playback>,
    Path((app, stream)): Path<(String, String)>,
    req: Request,
) -> Response {
    let key = match admit(&st, &app, &stream, tidewater_http::asker(&req)).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let (start, duration) = match range(req.uri().query()) {
        Ok(r) => r,
        Err(m) => return text(StatusCode::BAD_REQUEST, format!("{m}\n")),
    };
    let lib = st.library.clone();
    let plan = match blocking(move || lib.range(&key, start, duration)).await {
        Ok(Some(p)) => p,
        Ok(None) => return text(StatusCode::NOT_FOUND, "nothing recorded in that range\n"),
        Err(r) => return r,
    };
    let len = plan.len();
    let mut r = Response::new(pieces_body(plan.pieces.clone()));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&time::rfc3339(plan.start_ms)) {
        h.insert("x-tidewater-range-start", v);
    }
    if let Some(cut) = plan.cut {
        h.insert(
            "x-tidewater-range-end",
            HeaderValue::from_static(cut.as_str()),
        );
    }
    r
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` of a file of `size` bytes.
fn byte_range(value: &str, size: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (first, last) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (size.checked_sub(n.min(size))?, size.checked_sub(1)?)
        }
        (a, "") => (a.parse().ok()?, size.checked_sub(1)?),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.min(size.checked_sub(1)?),
        ),
    };
    (first <= last && last < size).then_some((first, last))
}

async fn file(
    State(st): State<Playback>,
    Path((app, stream, name)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let key = match admit(&st, &app, &stream, tidewater_http::asker(&req)).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    // Only names the recorder writes: no path can leave the stream's directory.
    if time::parse_file_name(&name).is_none() {
        return text(StatusCode::NOT_FOUND, "no such recording\n");
    }
    let path: PathBuf = st.library.dir(&key).join(&name);
    let size = {
        let path = path.clone();
        match blocking(move || std::fs::metadata(path).map(|m| m.len())).await {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => return text(StatusCode::NOT_FOUND, "no such recording\n"),
            Err(r) => return r,
        }
    };
    let asked = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (status, first, last) = match asked {
        Some(v) => match byte_range(&v, size) {
            Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b),
            None => {
                let mut r = text(StatusCode::RANGE_NOT_SATISFIABLE, "bad range\n");
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return r;
            }
        },
        None if size == 0 => return text(StatusCode::NOT_FOUND, "empty recording\n"),
        None => (StatusCode::OK, 0, size - 1),
    };
    let len = last - first + 1;
    let mut r = Response::new(pieces_body(vec![Piece {
        path,
        offset: first,
        len,
    }]));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {first}-{last}/{size}"))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_queries() {
        assert_eq!(byte_range("bytes=0-99", 1000), Some((0, 99)));
        assert_eq!(byte_range("bytes=900-", 1000), Some((900, 999)));
        assert_eq!(byte_range("bytes=-100", 1000), Some((900, 999)));
        assert_eq!(byte_range("bytes=990-2000", 1000), Some((990, 999)));
        assert_eq!(byte_range("bytes=1000-", 1000), None);
        assert_eq!(byte_range("bytes=0-1,5-6", 1000), None);
        assert_eq!(
            decode("2026-12-07T06%3A00%3A00%2B01%3A00").as_deref(),
            Some("2026-12-07T06:00:00+01:00")
        );
        let (s, d) = range(Some("start=1970-01-01T00%3A00%3A01Z&duration=2.5")).expect("ok");
        assert_eq!((s, d), (1000, 2500));
        assert!(range(Some("duration=-1")).is_err());
        assert!(range(Some("start=yesterday")).is_err());
    }
}

/// ffmpeg publishes over RTMP into an in-process server that records; the
/// list, the playlist (played by ffmpeg), the MP4 download (ffprobe) and
/// the segment files with ranges are checked as a client gets them.
#[cfg(test)]
mod end_to_end {
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::{Config, Server};
    use tidewater::CancellationToken;

    fn temp_dir() -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("tidewater-playback-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    /// One GET: (status, head, body).
    async fn get(addr: SocketAddr, path: &str, extra: &str) -> (u16, String, Vec<u8>) {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("send");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.expect("read");
        let at = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a head");
        let head = String::from_utf8_lossy(&buf[..at]).to_string();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let mut body = buf[at + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = dechunk(&body);
        }
        (status, head, body)
    }

    fn dechunk(mut data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
                return out;
            };
            let size = std::str::from_utf8(&data[..eol])
                .ok()
                .and_then(|s| {
                    usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok()
                })
                .unwrap_or(0);
            if size == 0 {
                return out;
            }
            out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
            data = &data[eol + 2 + size + 2..];
        }
    }

    fn tool(name: &str, args: &[&str]) -> std::process::Output {
        Command::new(name)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {name} (install ffmpeg): {e}"))
    }

    fn probe_json(target: &str) -> serde_json::Value {
        let out = tool(
            "ffprobe",
            &[
                "-v",
                "error",
                "-count_frames",
                "-show_entries",
                "stream=codec_name,nb_read_frames:format=duration:packet=stream_index,dts_time",
                "-of",
                "json",
                target,
            ],
        );
        assert!(
            out.status.success(),
            "ffprobe {target}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json")
    }

    fn frames(v: &serde_json::Value, codec: &str) -> u64 {
        v["streams"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["codec_name"] == codec)
            .and_then(|s| s["nb_read_frames"].as_str())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    fn dts_increase(v: &serde_json::Value) {
        for stream in [0, 1] {
            let dts: Vec<f64> = v["packets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["stream_index"] == stream)
                .filter_map(|p| p["dts_time"].as_str().and_then(|d| d.parse().ok()))
                .collect();
            assert!(!dts.is_empty(), "stream {stream} has packets");
            assert!(
                dts.windows(2).all(|w| w[1] > w[0]),
                "stream {stream}: {dts:?}"
            );
        }
    }

    /// Playback asks the authorizer for `playback` of the stream: no
    /// credentials get a challenge, a user without the permission a 403,
    /// one with it the answer.
    #[tokio::test]
    async fn playback_is_guarded_by_the_playback_action() {
        use base64::Engine as _;
        let dir = temp_dir();
        let config = Config::from_toml_str(&format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[srt]\nlisten = \"127.0.0.1:0\"\n[rtsp]\nlisten = \"127.0.0.1:0\"\nudp_rtp_port = 0\nudp_rtcp_port = 0\n[webrtc]\nudp_listen = \"127.0.0.1:0\"\n\
             [rtmp]\nlisten = \"127.0.0.1:0\"\n\
             [record]\npaths = [\"live/*\"]\ndir = {:?}\n\
             [[auth.users]]\nuser = \"viewer\"\npassword = \"viewer-pw\"\n\
             permissions = [{{ action = \"playback\", path = \"live/*\" }}]\n\
             [[auth.users]]\nuser = \"cam\"\npassword = \"cam-pw\"\n\
             permissions = [{{ action = \"publish\", path = \"live/*\" }}, {{ action = \"read\" }}]\n",
            dir.display().to_string()
        ))
        .expect("config");
        let server = Server::bind(&config).await.expect("bind");
        let http = server.local_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.serve(shutdown.clone()));
        let basic = |user: &str, pw: &str| {
            format!(
                "Authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
            )
        };
        for path in [
            "/playback/live/a/list",
            "/playback/live/a/index.m3u8",
            "/playback/live/a/get",
            "/playback/live/a.mp4",
        ] {
            let (status, head, _) = get(http, path, "").await;
            assert_eq!(status, 401, "{path}: {head}");
            assert!(
                head.to_ascii_lowercase()
                    .contains("www-authenticate: basic"),
                "{head}"
            );
            let (status, _, _) = get(http, path, &basic("cam", "cam-pw")).await;
            assert_eq!(status, 403, "{path}: read is not playback");
        }
        let (status, _, body) =
            get(http, "/playback/live/a/list", &basic("viewer", "viewer-pw")).await;
        assert_eq!((status, body.as_slice()), (200, &b"[]"[..]));
        let (status, _, _) = get(
            http,
            "/playback/other/a/list",
            &basic("viewer", "viewer-pw"),
        )
        .await;
        assert_eq!(status, 403, "outside the permission's path");
        shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A loopback port free a moment ago.
    fn free_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_rtmp_publish_is_recorded_and_played_back() {
        let dir = temp_dir();
        let rec = dir.join("rec");
        let rtmp_port = free_port();
        let config = Config::from_toml_str(&format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[srt]\nlisten = \"127.0.0.1:0\"\n[rtsp]\nlisten = \"127.0.0.1:0\"\nudp_rtp_port = 0\nudp_rtcp_port = 0\n[webrtc]\nudp_listen = \"127.0.0.1:0\"\n\
             [rtmp]\nlisten = \"127.0.0.1:{rtmp_port}\"\n[defaults]\nfollow_grace_ms = 500\n\
             [hls]\nalways_on_all = false\n[dash]\nalways_on_all = false\n\
             [record]\npaths = [\"live/*\"]\ndir = {:?}\nsegment_s = 2\n",
            rec.display().to_string()
        ))
        .expect("config");
        let server = Server::bind(&config).await.expect("bind");
        let http = server.local_addr();
        let recorder = server.recorder().cloned().expect("recording on");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.serve(shutdown.clone()));
        let rtmp = SocketAddr::from(([127, 0, 0, 1], rtmp_port));
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(rtmp).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }

        // 4 s at 25 fps (GOP 1 s, B-frames) and AAC, in real time.
        let url = format!("rtmp://{rtmp}/live/rec");
        let published = tokio::task::spawn_blocking(move || {
            tool(
                "ffmpeg",
                &[
                    "-hide_banner",
                    "-loglevel",
                    "error",
                    "-re",
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc=size=320x240:rate=25",
                    "-f",
                    "lavfi",
                    "-i",
                    "sine=frequency=440:sample_rate=48000",
                    "-t",
                    "4",
                    "-c:v",
                    "libx264",
                    "-preset",
                    "veryfast",
                    "-g",
                    "25",
                    "-bf",
                    "2",
                    "-pix_fmt",
                    "yuv420p",
                    "-c:a",
                    "aac",
                    "-b:a",
                    "64k",
                    "-f",
                    "flv",
                    &url,
                ],
            )
        });
        // While it publishes, the API shows the recording: on, a file, bytes.
        let mut recording = serde_json::Value::Null;
        for _ in 0..200 {
            let (status, _, body) = get(http, "/api/v1/streams/live/rec", "").await;
            if status == 200 {
                let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
                if v["recording"]["bytes"].as_u64().unwrap_or(0) > 0 {
                    let doc = crate::http::openapi::tests::document();
                    crate::http::openapi::tests::check_shape(
                        &doc,
                        &doc["components"]["schemas"]["Stream"],
                        &v,
                        "stream",
                    );
                    recording = v["recording"].clone();
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(recording["on"], true, "{recording}");
        assert!(
            recording["current_segment"]
                .as_str()
                .is_some_and(|f| f.ends_with(".mp4")),
            "{recording}"
        );
        assert_eq!(recording["last_error"], serde_json::Value::Null);
        let published = published.await.expect("ffmpeg ran");
        assert!(
            published.status.success(),
            "{}",
            String::from_utf8_lossy(&published.stderr)
        );
        let key = tidewater::StreamKey::parse("live/rec").expect("key");
        let lib = recorder.library().clone();
        for _ in 0..200 {
            let (l, k) = (lib.clone(), key.clone());
            let done = tokio::task::spawn_blocking(move || {
                l.status().is_empty() && !l.segments(&k).is_empty()
            })
            .await
            .expect("ran");
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            lib.status().is_empty(),
            "recording stopped: {:?}",
            lib.status()
        );

        // The list: one span of about 4 s.
        let (status, head, body) = get(http, "/playback/live/rec/list", "").await;
        assert_eq!(status, 200, "{head}");
        let list: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let spans = list.as_array().expect("a list");
        assert_eq!(spans.len(), 1, "{list}");
        let duration = spans[0]["duration"].as_f64().expect("seconds");
        assert!((duration - 4.0).abs() < 0.2, "{list}");
        let start = spans[0]["start"].as_str().expect("start").to_string();
        assert!(
            tidewater::record::time::parse_rfc3339(&start).is_some(),
            "{start}"
        );
        let start_q = start.replace(':', "%3A");

        // The playlist: ffmpeg plays it through the byte ranges, every frame.
        let pl_path = format!("/playback/live/rec/index.m3u8?start={start_q}&duration=10");
        let (status, head, body) = get(http, &pl_path, "").await;
        assert_eq!(status, 200, "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("application/vnd.apple.mpegurl"),
            "{head}"
        );
        let text = String::from_utf8(body).expect("utf-8");
        assert!(
            text.contains("#EXT-X-ENDLIST") && text.contains("#EXT-X-MAP:URI="),
            "{text}"
        );
        assert!(text.matches("#EXT-X-BYTERANGE").count() >= 4, "{text}");
        assert!(
            !text.contains("#EXT-X-DISCONTINUITY"),
            "one publish: {text}"
        );
        let pl_url = format!("http://{http}{pl_path}");
        let played = tokio::task::spawn_blocking(move || probe_json(&pl_url))
            .await
            .expect("ran");
        assert_eq!(frames(&played, "h264"), 100, "{played}");
        assert!(frames(&played, "aac") > 150, "{played}");
        dts_increase(&played);
        let decoded = {
            let pl_url = format!("http://{http}{pl_path}");
            tokio::task::spawn_blocking(move || {
                tool(
                    "ffmpeg",
                    &[
                        "-hide_banner",
                        "-v",
                        "error",
                        "-i",
                        &pl_url,
                        "-f",
                        "null",
                        "-",
                    ],
                )
            })
            .await
            .expect("ran")
        };
        assert!(
            decoded.status.success() && decoded.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&decoded.stderr)
        );

        // The middle second as one MP4: starts on a keyframe at or before.
        let mid = tidewater::record::time::parse_rfc3339(&start).expect("start") + 1500;
        let mid_q = tidewater::record::time::rfc3339(mid).replace(':', "%3A");
        let (status, head, body) = get(
            http,
            &format!("/playback/live/rec.mp4?start={mid_q}&duration=1"),
            "",
        )
        .await;
        assert_eq!(status, 200, "{head}");
        assert!(
            !head
                .to_ascii_lowercase()
                .lines()
                .any(|l| l.starts_with("x-tidewater-range-end:")),
            "{head}"
        );
        let mp4 = dir.join("range.mp4");
        std::fs::write(&mp4, &body).expect("write");
        let got = probe_json(mp4.to_str().expect("utf-8"));
        // GOP 1 s: from the keyframe at 1 s to the end of the GOP holding 2.5 s.
        assert_eq!(frames(&got, "h264"), 50, "{got}");
        dts_increase(&got);
        // Times stay on the publish's timeline: 50 frames, 1.96 s apart.
        let dts: Vec<f64> = got["packets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["stream_index"] == 0)
            .filter_map(|p| p["dts_time"].as_str().and_then(|d| d.parse().ok()))
            .collect();
        let span = dts.last().copied().unwrap_or(0.0) - dts.first().copied().unwrap_or(0.0);
        assert!((span - 1.96).abs() < 0.01, "{dts:?}");
        // The whole recording as one MP4.
        let (status, _, body) = get(http, "/playback/live/rec/get", "").await;
        assert_eq!(status, 200, "the /get alias");
        std::fs::write(&mp4, &body).expect("write");
        assert_eq!(
            frames(&probe_json(mp4.to_str().expect("utf-8")), "h264"),
            100
        );

        // Ranges of a segment file, and no way out of the stream's directory.
        let file = text
            .lines()
            .find(|l| l.starts_with("files/"))
            .and_then(|l| l.split('?').next())
            .expect("a segment uri")
            .to_string();
        let (status, head, body) = get(
            http,
            &format!("/playback/live/rec/{file}"),
            "Range: bytes=0-7\r\n",
        )
        .await;
        assert_eq!(status, 206, "{head}");
        assert_eq!(&body[4..8], b"ftyp");
        assert!(head.contains("bytes 0-7/"), "{head}");
        let (status, _, _) = get(http, "/playback/live/rec/files/..%2F..%2Fetc%2Fpasswd", "").await;
        assert_eq!(status, 404);
        let (status, _, _) = get(http, "/playback/live/none/list", "").await;
        assert_eq!(status, 200, "an empty list");
        let (status, _, _) = get(http, "/playback/live/none/index.m3u8", "").await;
        assert_eq!(status, 404);
        let (status, _, _) = get(http, "/playback/live/rec.mp4?start=yesterday", "").await;
        assert_eq!(status, 400);
        let (status, _, _) = get(http, "/playback/live/rec.mkv", "").await;
        assert_eq!(status, 404);

        shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        let _ = std::fs::remove_dir_all(&dir);
        let _ = Path::new("");
    }
}
