//! The `tidewater` binary as an operator runs it: configuration, HTTP API
//! and health answered to curl, errors and signals.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tidewater_tests::{
    ChildGuard, HTTP_LISTENING, ServerCommand, curl_command, ffmpeg_publish, http_get,
    loopback_config, try_http_get, wait_json, wait_live,
};

/// A graceful stop must be well within this.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

#[test]
fn healthz_answers_ok() {
    let (_server, addr) = ServerCommand::with_config(&loopback_config()).start();
    let response = http_get(&url(addr, "/healthz"));
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.body, "ok\n");
}

#[test]
fn stream_api_answers_json() {
    let (_server, addr) = ServerCommand::with_config(&loopback_config()).start();

    let list = http_get(&url(addr, "/api/v1/streams"));
    assert_eq!(list.status, 200, "{list:?}");
    assert_eq!(list.content_type, "application/json");
    assert_eq!(list.json(), serde_json::json!({ "streams": [] }));

    let missing = http_get(&url(addr, "/api/v1/streams/live/nobody"));
    assert_eq!(missing.status, 404, "{missing:?}");
    assert_eq!(missing.content_type, "application/json");
    let error = missing.json();
    assert_eq!(error["error"]["code"], "not_found", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("live/nobody")),
        "{error}"
    );

    let invalid = http_get(&url(addr, "/api/v1/streams/live/..")).status;
    assert!(
        invalid == 400 || invalid == 404,
        "a traversal is never a stream: {invalid}"
    );
}

#[test]
fn config_file_sets_the_listen_address() {
    let (_server, addr) =
        ServerCommand::with_config("[http]\nlisten = \"127.0.0.1:0\"\n[log]\nlevel = \"info\"\n")
            .start();
    // The built-in default is 0.0.0.0:8888: seeing a loopback address on an
    // ephemeral port proves the file was read.
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0);
    assert_ne!(addr.port(), 8888);
    assert_eq!(http_get(&url(addr, "/healthz")).status, 200);
}

#[test]
fn environment_overrides_the_file() {
    let (_server, addr) = ServerCommand::with_config("[http]\nlisten = \"127.0.0.2:0\"\n")
        .env("TIDEWATER_HTTP__LISTEN", "127.0.0.1:0")
        .start();
    assert_eq!(
        addr.ip().to_string(),
        "127.0.0.1",
        "the file said 127.0.0.2; the environment must win"
    );
    assert_eq!(http_get(&url(addr, "/healthz")).status, 200);
}

#[test]
fn environment_alone_configures_the_server() {
    let (mut server, addr) = ServerCommand::new()
        .env("TIDEWATER_HTTP__LISTEN", "127.0.0.1:0")
        .env("TIDEWATER_LOG__LEVEL", "debug")
        .env("TIDEWATER_APPS__LIVE__MAX_PUBLISHERS", "3")
        .start();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_eq!(http_get(&url(addr, "/api/v1/streams")).status, 200);
    let output = server.output();
    assert!(
        output.contains("effective configuration") && output.contains("max_publishers: Some(3)"),
        "log.level = debug and the app setting, both from the environment:\n{output}"
    );
}

#[test]
fn a_bad_config_exits_non_zero_naming_the_key() {
    let listen = loopback_config();
    let cases: Vec<(ServerCommand, &[&str])> = vec![
        (
            ServerCommand::with_config("[http]\nlistne = \"127.0.0.1:0\"\n"),
            &["http.listne", "unknown key"],
        ),
        (
            ServerCommand::with_config(&format!("{listen}[defaults]\nring_frames = 1\n")),
            &["defaults.ring_frames", "ring_frames must be at least"],
        ),
        (
            ServerCommand::with_config(&format!(
                "{listen}[apps.live.streams.cam]\ngop_frames = \"many\"\n"
            )),
            &["apps.live.streams.cam.gop_frames", "invalid type"],
        ),
        (
            ServerCommand::with_config(&format!("{listen}[apps.live]\nduplicate = \"maybe\"\n")),
            &["apps.live.duplicate", "take_over"],
        ),
        (
            ServerCommand::with_config(&listen).env("TIDEWATER_APPS__LIVE__MAX_PUBLISHERS", "lots"),
            &[
                "apps.live.max_publishers",
                "TIDEWATER_APPS__LIVE__MAX_PUBLISHERS",
            ],
        ),
        (
            ServerCommand::with_config(&listen).env("TIDEWATER_HTTP_LISTEN", "127.0.0.1:0"),
            &["TIDEWATER_HTTP_LISTEN", "double underscore"],
        ),
        (
            ServerCommand::with_config(&format!("{listen}[http\n")),
            &["tidewater.toml", "line 3"],
        ),
        (
            ServerCommand::new()
                .env("TIDEWATER_HTTP__LISTEN", "127.0.0.1:0")
                .arg("--config")
                .arg("does-not-exist.toml"),
            &["does-not-exist.toml", "cannot read"],
        ),
    ];
    for (command, expected) in cases {
        let described = format!("{command:?}");
        let mut server = command.spawn();
        let (status, output) = server.expect_exit(Duration::from_secs(10));
        assert!(!status.success(), "{described}: exited {status}\n{output}");
        assert_eq!(
            status.code(),
            Some(2),
            "{described}: a configuration error exits 2\n{output}"
        );
        assert!(
            !output.contains(HTTP_LISTENING),
            "{described}: it must not start listening\n{output}"
        );
        let lines: Vec<_> = output.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{described}: one line\n{output}");
        for part in expected {
            assert!(
                lines[0].contains(part),
                "{described}: {:?} does not mention {part:?}",
                lines[0]
            );
        }
    }
}

fn stops_gracefully_on(signal: &str, name: &str) {
    let (mut server, addr) = ServerCommand::with_config(&loopback_config()).start();
    assert_eq!(http_get(&url(addr, "/healthz")).status, 200);
    server.signal(signal);
    let (status, output) = server.expect_exit(STOP_TIMEOUT);
    assert!(
        status.success(),
        "{name} must exit 0, got {status}\n{output}"
    );
    assert!(output.contains(&format!("{name} received")), "{output}");
    assert!(
        try_http_get(&url(addr, "/healthz")).is_err(),
        "the port is closed after the stop"
    );
}

#[test]
fn sigterm_stops_it_with_status_zero() {
    stops_gracefully_on("TERM", "SIGTERM");
}

#[test]
fn sigint_stops_it_with_status_zero() {
    stops_gracefully_on("INT", "SIGINT");
}

/// How long a stream may take to go live after ffmpeg starts.
const LIVE_TIMEOUT: Duration = Duration::from_secs(15);

/// `DELETE url` with curl: the status code.
fn http_delete(url: &str) -> u16 {
    let out = curl_command()
        .args(["-X", "DELETE", "-o", "/dev/null", "-w", "%{http_code}", url])
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("DELETE {url}: {e}: {out:?}"))
}

/// A curl reading an HTTP-FLV stream into the void until it ends.
fn flv_reader(http: SocketAddr, key: &str) -> ChildGuard {
    let mut command: Command = curl_command();
    command
        .args(["--no-buffer", "-o", "/dev/null"])
        .arg(format!("http://{http}/flv/{key}.flv"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    ChildGuard(command.spawn().expect("curl runs"))
}

/// Waits for a child to exit; how long it took, or `None` after `timeout`.
fn exits_within(child: &mut ChildGuard, timeout: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if let Ok(Some(_)) = child.0.try_wait() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn sessions_of(list: &serde_json::Value) -> Vec<serde_json::Value> {
    list["sessions"].as_array().cloned().unwrap_or_default()
}

#[test]
fn sessions_are_listed_across_protocols_and_kicked_within_a_second() {
    let mut server = ServerCommand::with_config(&loopback_config()).spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    let mut publisher = ffmpeg_publish(&format!("rtmp://{rtmp}/live/cam1"), 60, 25);
    let live = wait_live(http, "live/cam1", LIVE_TIMEOUT);
    let tracks = live["catalog"]["tracks"].as_array().expect("tracks");
    let codecs: Vec<&str> = tracks
        .iter()
        .map(|t| t["codec_string"].as_str().expect("a codec string"))
        .collect();
    assert!(
        codecs[0].starts_with("avc1.") && codecs[0].len() == 11,
        "{codecs:?}"
    );
    assert_eq!(codecs[1], "mp4a.40.2");

    let mut readers = [flv_reader(http, "live/cam1"), flv_reader(http, "live/cam1")];
    let sessions_url = format!("http://{http}/api/v1/sessions");
    let list = wait_json(&sessions_url, Duration::from_secs(10), |v| {
        sessions_of(v)
            .iter()
            .filter(|s| s["protocol"] == "http-flv" && s["bytes_out"].as_u64() > Some(0))
            .count()
            == 2
    });
    let sessions = sessions_of(&list);
    let ids: Vec<u64> = sessions
        .iter()
        .map(|s| s["id"].as_u64().expect("id"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "sorted by id: {ids:?}");
    let publisher_session = sessions
        .iter()
        .find(|s| s["kind"] == "publisher")
        .expect("the publisher is a session");
    assert_eq!(publisher_session["protocol"], "rtmp");
    assert_eq!(publisher_session["path"], "live/cam1");
    assert!(publisher_session["bytes_in"].as_u64() > Some(0));
    assert!(
        publisher_session["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{publisher_session}"
    );
    let flv: Vec<_> = sessions
        .iter()
        .filter(|s| s["protocol"] == "http-flv")
        .collect();
    for reader in &flv {
        assert_eq!(reader["kind"], "reader");
        assert!(
            reader["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("127.0.0.1:")),
            "HTTP-FLV readers show their peer: {reader}"
        );
    }

    // The metrics show the stream with its publisher and its two readers.
    let metrics = http_get(&url(http, "/metrics"));
    assert_eq!(metrics.status, 200, "{metrics:?}");
    assert!(
        metrics
            .content_type
            .starts_with("text/plain; version=0.0.4"),
        "{}",
        metrics.content_type
    );
    for line in [
        "tidewater_streams 1",
        "tidewater_stream_publishers{path=\"live/cam1\",protocol=\"rtmp\"} 1",
        "tidewater_stream_readers{path=\"live/cam1\",protocol=\"http-flv\"} 2",
    ] {
        assert!(
            metrics.body.lines().any(|l| l == line),
            "{line} is missing:\n{}",
            metrics.body
        );
    }

    // Kick one reader: its response ends within a second, the other plays on.
    let kicked = flv[0]["id"].as_u64().expect("id");
    assert_eq!(http_delete(&format!("{sessions_url}/{kicked}")), 204);
    let (mut first, mut second) = {
        let [a, b] = &mut readers;
        (a, b)
    };
    // Which curl it was is not known: one of the two ends.
    let ended = {
        let started = Instant::now();
        loop {
            if let Ok(Some(_)) = first.0.try_wait() {
                break Some(started.elapsed());
            }
            if let Ok(Some(_)) = second.0.try_wait() {
                std::mem::swap(&mut first, &mut second);
                break Some(started.elapsed());
            }
            if started.elapsed() > Duration::from_secs(1) {
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    assert!(
        ended.is_some(),
        "the kicked reader's response did not end within 1 s"
    );
    assert!(
        matches!(second.0.try_wait(), Ok(None)),
        "the other reader plays on"
    );
    assert_eq!(http_delete(&format!("{sessions_url}/{kicked}")), 404);
    assert_eq!(http_delete(&format!("{sessions_url}/not-a-number")), 400);
    let after = sessions_of(&http_get(&sessions_url).json());
    assert!(after.iter().all(|s| s["id"] != kicked), "{after:?}");

    // Kick the publisher: the stream ends within a second, with its readers,
    // and its series leave the metrics.
    let publisher_id = publisher_session["id"].as_u64().expect("id");
    let started = Instant::now();
    assert_eq!(http_delete(&format!("{sessions_url}/{publisher_id}")), 204);
    let gone = http_get(&url(http, "/api/v1/streams/live/cam1"));
    assert_eq!(gone.status, 404, "{gone:?}");
    assert!(
        exits_within(second, Duration::from_secs(1)).is_some(),
        "the remaining reader's response ends with the stream"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        exits_within(&mut publisher, Duration::from_secs(10)).is_some(),
        "ffmpeg's RTMP connection is closed"
    );
    let metrics = http_get(&url(http, "/metrics")).body;
    assert!(!metrics.contains("live/cam1"), "{metrics}");
    let output = server.output();
    assert!(
        output.contains("publisher kicked by the operator"),
        "{output}"
    );
}

#[test]
fn the_openapi_document_is_served() {
    let (_server, addr) = ServerCommand::with_config(&loopback_config()).start();
    let response = http_get(&url(addr, "/api/v1/openapi.json"));
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.content_type, "application/json");
    let doc = response.json();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in ["/streams", "/sessions", "/sessions/{id}"] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
}
