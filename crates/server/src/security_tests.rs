//! The server's guard, reloads, HTTPS and HTTP limits, over real sockets.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use tidewater::{CancellationToken, Credentials, Request, StreamKey};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::*;
use crate::http::openapi::tests::{check_shape, document};

/// Listeners on free loopback ports, with more `[http]` keys.
fn ports(http: &str) -> String {
    format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n{http}[rtmp]\nlisten = \"127.0.0.1:0\"\n\
         [srt]\nlisten = \"127.0.0.1:0\"\n[rtsp]\nlisten = \"127.0.0.1:0\"\nudp_rtp_port = 0\nudp_rtcp_port = 0\n[webrtc]\nudp_listen = \"127.0.0.1:0\"\n"
    )
}

/// Generous bounds for things that happen at once or after a short
/// configured time; never what a test asserts about.
const PATIENCE: Duration = Duration::from_secs(10);

struct Running {
    addr: SocketAddr,
    https: Option<SocketAddr>,
    engine: Engine,
    shutdown: CancellationToken,
    task: JoinHandle<Result<()>>,
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(DRAIN_TIMEOUT * 2, self.task)
            .await
            .expect("stops in time");
        result.expect("server task").expect("clean stop");
    }

    fn refusals(&self, listener: &'static str, reason: &str) -> u64 {
        self.engine
            .listener_stats(listener)
            .snapshot()
            .refusals
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }
}

fn run(server: Server) -> Running {
    let (addr, https, engine) = (
        server.local_addr(),
        server.https_addr(),
        server.engine().clone(),
    );
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.serve(shutdown.clone()));
    Running {
        addr,
        https,
        engine,
        shutdown,
        task,
    }
}

async fn start(extra: &str) -> Running {
    start_with("", extra).await
}

async fn start_with(http: &str, extra: &str) -> Running {
    let config = Config::from_toml_str(&format!("{}{extra}", ports(http))).expect("config");
    run(Server::bind(&config).await.expect("bind"))
}

/// A response: status, headers (lowercase names) and body.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn json(&self) -> Value {
        assert_eq!(
            self.all("content-type"),
            ["application/json"],
            "{}",
            self.body
        );
        serde_json::from_str(&self.body).expect("JSON")
    }
}

/// One request over `stream` (`Connection: close`), the whole answer read.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: tidewater\r\nContent-Length: 0\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
        .await
        .expect("an answer")
        .expect("read");
    let text = String::from_utf8(raw).expect("utf-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let stream = TcpStream::connect(addr).await.expect("connect");
    exchange(stream, method, path, headers).await
}

fn basic(user: &str, password: &str) -> String {
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {pair}")
}

fn key(text: &str) -> StreamKey {
    StreamKey::parse(text).expect("valid key")
}

/// A directory of its own under the system's temporary directory.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "tidewater-server-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------- guard

#[tokio::test]
async fn without_auth_loopback_reaches_the_api_and_metrics_without_credentials() {
    let server = start("").await;
    for path in ["/api/v1/streams", "/metrics", "/healthz"] {
        let reply = request(server.addr, "GET", path, &[]).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    }
    assert_eq!(server.refusals("http", "unauthorized"), 0);
    server.stop().await;
}

const USERS: &str = r#"
[[auth.users]]
user = "ops"
password = "ops-pw"
permissions = [{ action = "api" }, { action = "metrics" }]

[[auth.users]]
user = "cam"
password = "cam-pw"
permissions = [{ action = "publish", path = "live/*" }]

[auth.jwt]
secret = "a-jwt-secret-for-tests"
"#;

fn jwt(secret: &str, permissions: Value) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        + 600;
    let claims = serde_json::json!({
        "sub": "dashboard",
        "exp": exp,
        "tidewater_permissions": permissions,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).expect("a key"),
    )
    .expect("a token")
}

#[tokio::test]
async fn with_users_the_api_and_metrics_need_a_permitted_user_or_token() {
    let server = start(USERS).await;
    let doc = document();
    let error_schema = serde_json::json!({ "$ref": "#/components/schemas/Error" });

    // No credentials: 401 with both challenges; a JSON error on the API.
    let none = request(server.addr, "GET", "/api/v1/streams", &[]).await;
    assert_eq!(none.status, 401, "{}", none.body);
    assert_eq!(
        none.all("www-authenticate"),
        ["Basic realm=\"tidewater\"", "Bearer realm=\"tidewater\""]
    );
    let body = none.json();
    check_shape(&doc, &error_schema, &body, "401");
    assert_eq!(body["error"]["code"], "unauthorized");
    let message = body["error"]["message"].as_str().expect("a message");
    assert!(message.contains("{ action = \"api\" }"), "{message}");
    let metrics = request(server.addr, "GET", "/metrics", &[]).await;
    assert_eq!(metrics.status, 401, "{}", metrics.body);
    assert_eq!(metrics.all("www-authenticate").len(), 2);
    // Unknown API routes are guarded too (no route list for strangers).
    let unknown = request(server.addr, "GET", "/api/v1/nothing", &[]).await;
    assert_eq!(unknown.status, 401);
    // Health stays open.
    let health = request(server.addr, "GET", "/healthz", &[]).await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));

    // A user with the permission.
    let ops = basic("ops", "ops-pw");
    for path in ["/api/v1/streams", "/metrics"] {
        let reply = request(server.addr, "GET", path, &[("Authorization", &ops)]).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    }
    // A user without it: 403, no challenge.
    let cam = basic("cam", "cam-pw");
    let forbidden = request(
        server.addr,
        "GET",
        "/api/v1/streams",
        &[("Authorization", &cam)],
    )
    .await;
    assert_eq!(forbidden.status, 403, "{}", forbidden.body);
    assert!(forbidden.all("www-authenticate").is_empty());
    let body = forbidden.json();
    check_shape(&doc, &error_schema, &body, "403");
    assert_eq!(body["error"]["code"], "forbidden");
    // A wrong password: 401.
    let wrong = basic("ops", "nope");
    let reply = request(server.addr, "GET", "/metrics", &[("Authorization", &wrong)]).await;
    assert_eq!(reply.status, 401);

    // A JWT granting the API, as Bearer and as ?token=; not the metrics.
    let token = jwt(
        "a-jwt-secret-for-tests",
        serde_json::json!([{ "action": "api" }]),
    );
    let bearer = format!("Bearer {token}");
    let reply = request(
        server.addr,
        "GET",
        "/api/v1/streams",
        &[("Authorization", &bearer)],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = request(
        server.addr,
        "GET",
        &format!("/api/v1/sessions?token={token}"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = request(
        server.addr,
        "GET",
        "/metrics",
        &[("Authorization", &bearer)],
    )
    .await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    // Signed with another secret: 401.
    let forged = jwt("another-secret", serde_json::json!([{ "action": "api" }]));
    let reply = request(
        server.addr,
        "GET",
        "/api/v1/streams",
        &[("Authorization", &format!("Bearer {forged}"))],
    )
    .await;
    assert_eq!(reply.status, 401, "{}", reply.body);

    assert!(server.refusals("http", "unauthorized") >= 6);
    server.stop().await;
}

/// Request headers: (name, value).
type Headers<'a> = &'a [(&'a str, &'a str)];

#[tokio::test]
async fn every_refused_http_request_is_counted_once() {
    let server = start(USERS).await;
    let cam = basic("cam", "cam-pw");
    let cases: [(&str, Headers<'_>, u16); 5] = [
        ("/api/v1/streams", &[], 401),
        ("/api/v1/streams", &[("Authorization", &cam)], 403),
        ("/metrics", &[], 401),
        // Output routes ask the authorizer themselves.
        ("/flv/live/cam1.flv", &[], 401),
        ("/hls/live/cam1/index.m3u8", &[], 401),
    ];
    for (path, headers, status) in cases {
        let before = server.refusals("http", "unauthorized");
        let reply = request(server.addr, "GET", path, headers).await;
        assert_eq!(reply.status, status, "{path}: {}", reply.body);
        assert_eq!(
            server.refusals("http", "unauthorized"),
            before + 1,
            "{path} {headers:?}"
        );
    }
    // Answers that are no refusal are not counted.
    let before = server.refusals("http", "unauthorized");
    let ops = basic("ops", "ops-pw");
    let reply = request(
        server.addr,
        "GET",
        "/api/v1/streams/live/nobody",
        &[("Authorization", &ops)],
    )
    .await;
    assert_eq!(reply.status, 404);
    assert_eq!(
        request(server.addr, "GET", "/healthz", &[]).await.status,
        200
    );
    assert_eq!(server.refusals("http", "unauthorized"), before);
    server.stop().await;
}

// ---------------------------------------------------------------- reload

const RELOAD_BASE: &str = r#"
[[auth.users]]
user = "ops"
password = "ops-pw"
permissions = [{ action = "api" }]
"#;

#[tokio::test]
async fn a_reload_changes_who_is_allowed_at_once_and_a_bad_file_changes_nothing() {
    let dir = TempDir::new("reload");
    let file = dir.join("tidewater.toml");
    let write = |text: &str| std::fs::write(&file, format!("{}{text}", ports(""))).expect("write");
    let anyone_publishes =
        "[[auth.users]]\nuser = \"any\"\npermissions = [{ action = \"publish\" }]\n";
    write(&format!(
        "{RELOAD_BASE}[[auth.users]]\nuser = \"cam\"\npassword = \"cam-pw\"\n{anyone_publishes}"
    ));
    let source = ConfigSource::new(Some(file.clone()), std::iter::empty());
    let config = source.load().expect("config");
    let server = run(Server::bind(&config)
        .await
        .expect("bind")
        .reloads_from(source));
    let (ops, cam) = (basic("ops", "ops-pw"), basic("cam", "cam-pw"));
    let addr = server.addr;
    assert_eq!(streams_status(addr, &ops).await, 200);
    assert_eq!(streams_status(addr, &cam).await, 403);
    // An anonymous publisher, allowed now.
    let from: SocketAddr = ([192, 0, 2, 7], 50_000).into();
    let _live = server
        .engine
        .open_publish(Request::new(key("live/before"), "test").peer(from))
        .await
        .expect("an anonymous publish");

    // cam gets the API; anonymous publish goes.
    write(&format!(
        "{RELOAD_BASE}[[auth.users]]\nuser = \"cam\"\npassword = \"cam-pw\"\n\
         permissions = [{{ action = \"api\" }}]\n"
    ));
    let reply = request(
        server.addr,
        "POST",
        "/api/v1/config/reload",
        &[("Authorization", &ops)],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let report = reply.json();
    check_shape(
        &document(),
        &serde_json::json!({ "$ref": "#/components/schemas/ReloadReport" }),
        &report,
        "reload",
    );
    assert_eq!(
        report,
        serde_json::json!({ "applied": ["auth"], "restart_required": [] })
    );
    assert_eq!(streams_status(addr, &cam).await, 200);
    // The running publish stays; a new anonymous one is refused.
    assert!(server.engine.stream(&key("live/before")).is_some());
    let refused = server
        .engine
        .open_publish(Request::new(key("live/after"), "test").peer(from))
        .await;
    assert!(
        matches!(refused, Err(tidewater::Error::Unauthorized { .. })),
        "{refused:?}"
    );

    // A listener change is reported, not applied.
    let reloaded = format!(
        "{RELOAD_BASE}[[auth.users]]\nuser = \"cam\"\npassword = \"cam-pw\"\n\
         permissions = [{{ action = \"api\" }}]\n[dash]\nwindow = 8\n"
    );
    write(&reloaded);
    let reply = request(
        server.addr,
        "POST",
        "/api/v1/config/reload",
        &[("Authorization", &cam)],
    )
    .await;
    assert_eq!(
        reply.json(),
        serde_json::json!({ "applied": [], "restart_required": ["dash"] })
    );

    // A bad file: 400 naming the key, and nothing changes.
    write(&format!(
        "{RELOAD_BASE}[[auth.users]]\nuser = \"cam\"\npasword = \"x\"\n"
    ));
    let reply = request(
        server.addr,
        "POST",
        "/api/v1/config/reload",
        &[("Authorization", &cam)],
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["error"]["code"], "invalid_config");
    let message = body["error"]["message"].as_str().expect("a message");
    assert!(
        message.contains("auth.users[1].pasword") && message.contains(&file.display().to_string()),
        "{message}"
    );
    assert_eq!(streams_status(addr, &cam).await, 200);
    assert_eq!(streams_status(addr, &ops).await, 200);
    server.stop().await;
}

/// The status of `GET /api/v1/streams` with this `Authorization`.
async fn streams_status(addr: SocketAddr, authorization: &str) -> u16 {
    request(
        addr,
        "GET",
        "/api/v1/streams",
        &[("Authorization", authorization)],
    )
    .await
    .status
}

#[tokio::test]
async fn a_server_without_a_source_answers_a_reload_with_409() {
    let server = start("").await;
    let reply = request(server.addr, "POST", "/api/v1/config/reload", &[]).await;
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert_eq!(reply.json()["error"]["code"], "not_reloadable");
    server.stop().await;
}

// ---------------------------------------------------------------- https

/// A CA, and PEM files of a certificate for 127.0.0.1 it signed, with its key.
struct TestCa {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn test_ca(name: &str) -> TestCa {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("tidewater test CA {name}"),
    );
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("leaf params")
        .signed_by(&key, &ca_cert, &ca_key)
        .expect("leaf");
    TestCa {
        ca_pem: ca_cert.pem(),
        cert_pem: leaf.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn write_pair(ca: &TestCa, cert: &Path, key: &Path) {
    std::fs::write(cert, &ca.cert_pem).expect("cert");
    std::fs::write(key, &ca.key_pem).expect("key");
}

/// A TLS client trusting only `ca_pem`.
fn connector(ca_pem: &str) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("a PEM certificate")).expect("a root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn https_get(addr: SocketAddr, ca_pem: &str, path: &str) -> std::io::Result<Reply> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::from(addr.ip());
    let tls = connector(ca_pem).connect(name, tcp).await?;
    Ok(exchange(tls, "GET", path, &[]).await)
}

#[tokio::test]
async fn https_serves_the_routes_with_the_certificate_and_follows_its_files() {
    let dir = TempDir::new("https");
    let (cert, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    let first = test_ca("one");
    write_pair(&first, &cert, &key_file);
    let config = Config::from_toml_str(&format!(
        "{}[https]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\n",
        ports(""),
        cert.display(),
        key_file.display()
    ))
    .expect("config");
    let server = run(Server::bind(&config)
        .await
        .expect("bind")
        .cert_poll_interval(Duration::from_millis(50)));
    let https = server.https.expect("an HTTPS listener");
    assert_ne!(https, server.addr);

    let health = https_get(https, &first.ca_pem, "/healthz")
        .await
        .expect("https with the test CA");
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let streams = https_get(https, &first.ca_pem, "/api/v1/streams")
        .await
        .expect("https");
    assert_eq!(streams.status, 200, "{}", streams.body);
    // A client that trusts another CA does not get in.
    let other = test_ca("other");
    assert!(https_get(https, &other.ca_pem, "/healthz").await.is_err());
    let counted = server.engine.listener_stats("https").snapshot();
    assert!(counted.connections >= 3, "{counted:?}");

    // A broken file is not taken: the first certificate stays.
    std::fs::write(&cert, "not a certificate").expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still = https_get(https, &first.ca_pem, "/healthz")
        .await
        .expect("the previous certificate");
    assert_eq!(still.status, 200);

    // A new pair is.
    let second = test_ca("two");
    write_pair(&second, &cert, &key_file);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match https_get(https, &second.ca_pem, "/healthz").await {
            Ok(reply) => {
                assert_eq!(reply.status, 200);
                break;
            }
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "the new certificate was never served: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(https_get(https, &first.ca_pem, "/healthz").await.is_err());
    server.stop().await;
}

// ---------------------------------------------------------------- limits

#[tokio::test]
async fn a_client_that_sends_its_headers_slowly_is_closed_after_the_timeout() {
    let server = start_with("header_read_timeout_ms = 300\n", "").await;
    let mut slow = TcpStream::connect(server.addr).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: tidewater\r\n")
        .await
        .expect("send");
    let (mut reader, mut writer) = slow.into_split();
    // One more header line every 100 ms, never the blank line.
    let trickle = tokio::spawn(async move {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if writer
                .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut got = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, reader.read_to_end(&mut got)).await;
    trickle.abort();
    assert!(closed.is_ok(), "the slow client was never closed");
    let got = String::from_utf8_lossy(&got);
    assert!(!got.contains("200 OK"), "{got}");
    assert_eq!(server.refusals("http", "header_timeout"), 1);
    // A client that sends its request at once is served.
    let reply = request(server.addr, "GET", "/healthz", &[]).await;
    assert_eq!(reply.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_at_once_and_counted() {
    let server = start_with("max_connections = 2\n", "").await;
    let stats = server.engine.listener_stats("http");
    let first = TcpStream::connect(server.addr).await.expect("connect");
    let _second = TcpStream::connect(server.addr).await.expect("connect");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while stats.snapshot().open < 2 {
        assert!(tokio::time::Instant::now() < deadline, "never accepted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut third = TcpStream::connect(server.addr).await.expect("connect");
    let mut got = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, third.read_to_end(&mut got)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the third connection was not closed: {closed:?}"
    );
    assert_eq!(server.refusals("http", "too_many_connections"), 1);
    // Once one closes, the next is served.
    drop(first);
    while stats.snapshot().open > 1 {
        assert!(tokio::time::Instant::now() < deadline, "never closed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reply = request(server.addr, "GET", "/healthz", &[]).await;
    assert_eq!(reply.status, 200);
    let snapshot = stats.snapshot();
    assert_eq!(snapshot.connections, 3, "{snapshot:?}");
    server.stop().await;
}

#[tokio::test]
async fn credentials_reach_the_authorizer_for_in_process_requests_too() {
    // The engine's authorizer is the server's: a user configured in [auth]
    // may publish with its password.
    let server = start(USERS).await;
    let from: SocketAddr = ([192, 0, 2, 7], 50_000).into();
    let publish = server
        .engine
        .open_publish(
            Request::new(key("live/cam"), "test")
                .peer(from)
                .credentials(Credentials::UserPass {
                    user: "cam".into(),
                    pass: "cam-pw".into(),
                }),
        )
        .await;
    assert!(publish.is_ok(), "{publish:?}");
    server.stop().await;
}
