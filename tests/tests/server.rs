//! The `tidewater` binary as an operator runs it: configuration, HTTP API
//! and health answered to curl, errors and signals.

use std::net::SocketAddr;
use std::time::Duration;

use tidewater_tests::{HTTP_LISTENING, ServerCommand, http_get, loopback_config, try_http_get};

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
