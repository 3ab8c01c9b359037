//! RTMP push and RTMPS through the `tidewater` binary: one server pushes to
//! another (over RTMP and RTMPS), ffmpeg publishes over RTMPS, and ffprobe
//! reads what arrived; the API reports each push's status.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tidewater_tests::{
    ServerCommand, ServerProcess, TempDir, ffmpeg_publish, ffprobe_packets, http_get,
    loopback_config, wait_json, wait_live,
};

const LIVE_TIMEOUT: Duration = Duration::from_secs(20);
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// A push source: `push` under `[apps.live]`, fast retries.
fn source_config(push: &str, extra: &str) -> String {
    format!(
        "{}[rtmp]\nlisten = \"127.0.0.1:0\"\npush_retry_initial_ms = 200\npush_retry_max_ms = 1000\n\
         [apps.live]\npush = [\"{push}\"]\n{extra}",
        loopback_config()
    )
}

/// Reads `url` for 4 s with ffprobe and checks what a 25 fps H.264 + AAC
/// stream must show: exactly those two streams, about 25 video packets a
/// second, audio, and increasing timestamps.
fn check_readable(url: &str) {
    let p = ffprobe_packets(url, 4, PROBE_TIMEOUT);
    assert_eq!(p.streams, ["video:h264", "audio:aac"], "{url}");
    let video = p.packets("video").len();
    assert!(
        (80..=160).contains(&video),
        "{url}: {video} video packets in 4 s of a 25 fps stream"
    );
    assert!(p.packets("audio").len() > 100, "{url}: audio packets");
    assert!(p.monotonic(), "{url}: timestamps go backwards");
}

#[test]
fn a_push_is_readable_at_the_destination_and_survives_the_destination_restarting() {
    let mut dest = ServerCommand::with_config(&loopback_config()).spawn();
    let (dest_http, dest_rtmp) = (dest.http_addr(), dest.rtmp_addr());
    let mut src = ServerCommand::with_config(&source_config(
        &format!("rtmp://{dest_rtmp}/live/copy?token=s3cret"),
        "",
    ))
    .spawn();
    let (src_http, src_rtmp) = (src.http_addr(), src.rtmp_addr());
    let _publisher = ffmpeg_publish(&format!("rtmp://{src_rtmp}/live/cam"), 40, 25);
    wait_live(src_http, "live/cam", LIVE_TIMEOUT);
    wait_live(dest_http, "live/copy", LIVE_TIMEOUT);

    let status = wait_json(
        &format!("http://{src_http}/api/v1/streams/live/cam/pushes"),
        LIVE_TIMEOUT,
        |v| v["pushes"][0]["state"] == "active",
    );
    let push = &status["pushes"][0];
    assert_eq!(push["url"], format!("rtmp://{dest_rtmp}/live/copy"));
    assert_eq!(push["attempts"], 1, "{push}");
    assert!(push["connected_since_unix_ms"].as_u64().is_some(), "{push}");
    assert!(
        !status.to_string().contains("s3cret"),
        "the query is not shown"
    );
    // The stream list carries the same push; an unknown stream is a JSON 404.
    let list = http_get(&format!("http://{src_http}/api/v1/streams")).json();
    assert_eq!(list["streams"][0]["pushes"][0]["state"], "active", "{list}");
    let missing = http_get(&format!(
        "http://{src_http}/api/v1/streams/live/nope/pushes"
    ));
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["code"], "not_found");
    // The destination sees an RTMP publish (from the pushing server).
    let copy = http_get(&format!("http://{dest_http}/api/v1/streams/live/copy")).json();
    assert_eq!(copy["protocol"], "rtmp");
    check_readable(&format!("rtmp://{dest_rtmp}/live/copy"));

    // The destination stops: the push reconnects, with errors recorded ...
    dest.signal("TERM");
    dest.expect_exit(Duration::from_secs(15));
    let status = wait_json(
        &format!("http://{src_http}/api/v1/streams/live/cam/pushes"),
        Duration::from_secs(10),
        |v| {
            v["pushes"][0]["state"] == "reconnecting"
                && v["pushes"][0]["attempts"].as_u64().unwrap_or(0) >= 3
        },
    );
    let push = &status["pushes"][0];
    assert!(push["connected_since_unix_ms"].is_null(), "{push}");
    let errors = push["last_errors"].as_array().expect("errors");
    assert!(!errors.is_empty() && errors.len() <= 5, "{push}");

    // ... and gets through again once it is back on the same port.
    let mut dest = ServerCommand::with_config(&loopback_config())
        .env("TIDEWATER_RTMP__LISTEN", &dest_rtmp.to_string())
        .spawn();
    let (dest_http, again) = (dest.http_addr(), dest.rtmp_addr());
    assert_eq!(again, dest_rtmp);
    wait_live(dest_http, "live/copy", LIVE_TIMEOUT);
    let status = wait_json(
        &format!("http://{src_http}/api/v1/streams/live/cam/pushes"),
        LIVE_TIMEOUT,
        |v| v["pushes"][0]["state"] == "active",
    );
    assert!(
        status["pushes"][0]["attempts"].as_u64().unwrap_or(0) >= 4,
        "{status}"
    );
    check_readable(&format!("rtmp://{dest_rtmp}/live/copy"));
    assert!(
        src.output().contains("rtmp push to"),
        "the source logs its push"
    );
}

/// A CA and a certificate for 127.0.0.1 signed by it, as PEM files: (ca, cert, key).
#[test]
fn a_push_that_never_connects_fails_after_its_attempts_and_the_stream_plays_on() {
    // A loopback port with nothing listening: bound once for a free number, then closed.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let config = source_config(&format!("rtmp://{dead}/live/nowhere"), "")
        .replace("[rtmp]\n", "[rtmp]\npush_max_attempts = 3\n");
    let mut src = ServerCommand::with_config(&config).spawn();
    let (src_http, src_rtmp) = (src.http_addr(), src.rtmp_addr());
    let _publisher = ffmpeg_publish(&format!("rtmp://{src_rtmp}/live/cam"), 20, 25);
    wait_live(src_http, "live/cam", LIVE_TIMEOUT);
    let status = wait_json(
        &format!("http://{src_http}/api/v1/streams/live/cam/pushes"),
        LIVE_TIMEOUT,
        |v| v["pushes"][0]["state"] == "failed",
    );
    let push = &status["pushes"][0];
    assert_eq!(push["attempts"], 3, "{push}");
    assert!(push["connected_since_unix_ms"].is_null(), "{push}");
    let errors = push["last_errors"].as_array().expect("errors");
    assert!(!errors.is_empty(), "{push}");
    // A failed push stays failed (no fourth attempt) and the stream it
    // came from plays on.
    std::thread::sleep(Duration::from_secs(2));
    let again = http_get(&format!("http://{src_http}/api/v1/streams/live/cam/pushes")).json();
    assert_eq!(again["pushes"][0]["state"], "failed", "{again}");
    assert_eq!(again["pushes"][0]["attempts"], 3, "{again}");
    check_readable(&format!("rtmp://{src_rtmp}/live/cam"));
}

fn certificates(dir: &TempDir) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).expect("ca certificate");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .signed_by(&key, &ca, &ca_key)
        .expect("certificate");
    (
        dir.write("ca.pem", &ca.pem()),
        dir.write("cert.pem", &cert.pem()),
        dir.write("key.pem", &key.serialize_pem()),
    )
}

/// A server with an RTMPS listener on a free loopback port.
fn rtmps_server(cert: &Path, key: &Path) -> ServerProcess {
    ServerCommand::with_config(&format!(
        "{}[rtmps]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\n",
        loopback_config(),
        cert.display(),
        key.display()
    ))
    .spawn()
}

#[test]
fn an_rtmps_push_with_a_configured_ca_reaches_an_rtmps_listener() {
    let dir = TempDir::new("rtmps-push");
    let (ca, cert, key) = certificates(&dir);
    let mut dest = rtmps_server(&cert, &key);
    let (dest_http, dest_rtmp, dest_rtmps) =
        (dest.http_addr(), dest.rtmp_addr(), dest.rtmps_addr());
    let mut src = ServerCommand::with_config(&source_config(
        &format!("rtmps://{dest_rtmps}/live/secure"),
        &format!("push_ca_file = \"{}\"\n", ca.display()),
    ))
    .spawn();
    let (src_http, src_rtmp) = (src.http_addr(), src.rtmp_addr());
    let _publisher = ffmpeg_publish(&format!("rtmp://{src_rtmp}/live/cam"), 20, 25);
    wait_live(dest_http, "live/secure", LIVE_TIMEOUT);
    let status = wait_json(
        &format!("http://{src_http}/api/v1/streams/live/cam/pushes"),
        LIVE_TIMEOUT,
        |v| v["pushes"][0]["state"] == "active",
    );
    assert_eq!(
        status["pushes"][0]["url"],
        format!("rtmps://{dest_rtmps}/live/secure")
    );
    // What came in over RTMPS is served over plain RTMP too.
    check_readable(&format!("rtmp://{dest_rtmp}/live/secure"));
}

#[test]
fn an_rtmps_push_without_the_ca_is_refused_in_the_tls_handshake() {
    let dir = TempDir::new("rtmps-untrusted");
    let (_ca, cert, key) = certificates(&dir);
    let mut dest = rtmps_server(&cert, &key);
    let (dest_http, dest_rtmps) = (dest.http_addr(), dest.rtmps_addr());
    // No push_ca_file: the platform roots, which do not know the test CA.
    let mut src = ServerCommand::with_config(&source_config(
        &format!("rtmps://{dest_rtmps}/live/untrusted"),
        "",
    ))
    .spawn();
    let (src_http, src_rtmp) = (src.http_addr(), src.rtmp_addr());
    let _publisher = ffmpeg_publish(&format!("rtmp://{src_rtmp}/live/cam"), 15, 25);
    let status = wait_json(
        &format!("http://{src_http}/api/v1/streams/live/cam/pushes"),
        LIVE_TIMEOUT,
        |v| v["pushes"][0]["attempts"].as_u64().unwrap_or(0) >= 2,
    );
    let push = &status["pushes"][0];
    assert_eq!(push["state"], "reconnecting", "{push}");
    assert!(
        push["last_errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("tls")),
        "{push}"
    );
    let r = http_get(&format!("http://{dest_http}/api/v1/streams/live/untrusted"));
    assert_eq!(r.status, 404, "nothing arrived at the destination");
}

#[test]
fn ffmpeg_publishes_over_rtmps_and_is_read_over_rtmp() {
    let dir = TempDir::new("rtmps-ingest");
    let (_ca, cert, key) = certificates(&dir);
    let mut server = rtmps_server(&cert, &key);
    let (http, rtmp, rtmps) = (server.http_addr(), server.rtmp_addr(), server.rtmps_addr());
    assert_ne!(rtmp, rtmps);
    // ffmpeg does not verify the certificate by default.
    let _publisher = ffmpeg_publish(&format!("rtmps://{rtmps}/live/x"), 15, 25);
    let live = wait_live(http, "live/x", LIVE_TIMEOUT);
    assert_eq!(live["protocol"], "rtmp");
    check_readable(&format!("rtmp://{rtmp}/live/x"));
    // And played back over RTMPS as well.
    check_readable(&format!("rtmps://{rtmps}/live/x"));
}
