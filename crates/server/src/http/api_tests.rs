//! The API over HTTP: sessions, kicks, codec strings, error shapes, and the
//! answers held against the OpenAPI document's schemas.

use std::time::Duration;

use serde_json::Value;
use tidewater::bytes::Bytes;
use tidewater::{
    AppSpec, Codec, EndReason, Engine, Frame, PublishSession, RecvError, Request, StreamKey,
    TrackId, TrackInfo,
};

use super::openapi::tests::{check_shape, document};
use super::test_client::{Client, spawn};

fn key(text: &str) -> StreamKey {
    StreamKey::parse(text).expect("key")
}

fn engine() -> Engine {
    Engine::builder()
        .app("live", AppSpec::default())
        .build()
        .expect("engine")
}

async fn publish(engine: &Engine, path: &str) -> PublishSession {
    let mut p = engine
        .open_publish(Request::new(key(path), "test-in").user("alice"))
        .await
        .expect("publish");
    p.set_catalog(vec![
        // avcC: version 1, High profile (0x64), constraints 0, level 3.0 (0x1e).
        TrackInfo::video(TrackId(1), Codec::H264, 640, 360)
            .with_config(Bytes::from_static(&[1, 0x64, 0, 0x1e, 0xff, 0xe1, 0, 0])),
        // AudioSpecificConfig: AAC LC, 48 kHz, stereo.
        TrackInfo::audio(TrackId(2), Codec::Aac, 48_000, 2)
            .with_config(Bytes::from_static(&[0x11, 0x90])),
        TrackInfo::audio(TrackId(3), Codec::Opus, 48_000, 2),
    ])
    .expect("catalog");
    p.publish(Frame::video(
        TrackId(1),
        Codec::H264,
        0,
        0,
        true,
        Bytes::from_static(b"idr"),
    ))
    .expect("frame");
    p
}

async fn json(client: Client, method: &str, path: &str, status: u16) -> Value {
    let response = client.full(method, path).await;
    assert_eq!(
        response.status, status,
        "{method} {path}: {}",
        response.body
    );
    assert_eq!(response.header("content-type"), Some("application/json"));
    serde_json::from_str(&response.body).expect("JSON")
}

/// The schema of the `status` answer of `method path` in the document.
fn response_schema(doc: &Value, path: &str, method: &str, status: &str) -> Value {
    let response = &doc["paths"][path][method]["responses"][status];
    let response = super::openapi::tests::resolve(doc, response);
    response["content"]["application/json"]["schema"].clone()
}

#[tokio::test]
async fn answers_match_the_documented_schemas_and_name_their_codecs() {
    let engine = engine();
    let _p = publish(&engine, "live/cam1").await;
    let _reader = engine
        .subscribe(
            Request::new(key("live/cam1"), "test-out")
                .peer("127.0.0.1:4000".parse().expect("addr")),
        )
        .await
        .expect("subscribe");
    let served = spawn(super::router(engine)).await;
    let client = Client(served.addr);
    let doc = document();

    let list = json(client, "GET", "/api/v1/streams", 200).await;
    check_shape(
        &doc,
        &response_schema(&doc, "/streams", "get", "200"),
        &list,
        "streams",
    );
    let one = json(client, "GET", "/api/v1/streams/live/cam1", 200).await;
    check_shape(
        &doc,
        &response_schema(&doc, "/streams/{app}/{stream}", "get", "200"),
        &one,
        "stream",
    );
    let codecs: Vec<_> = one["catalog"]["tracks"]
        .as_array()
        .expect("tracks")
        .iter()
        .map(|t| (t["codec"].clone(), t["codec_string"].clone()))
        .collect();
    assert_eq!(
        codecs,
        [
            (Value::from("H264"), Value::from("avc1.64001e")),
            (Value::from("Aac"), Value::from("mp4a.40.2")),
            (Value::from("Opus"), Value::from("opus")),
        ]
    );
    let pushes = json(client, "GET", "/api/v1/streams/live/cam1/pushes", 200).await;
    check_shape(
        &doc,
        &response_schema(&doc, "/streams/{app}/{stream}/pushes", "get", "200"),
        &pushes,
        "pushes",
    );
    let sessions = json(client, "GET", "/api/v1/sessions", 200).await;
    check_shape(
        &doc,
        &response_schema(&doc, "/sessions", "get", "200"),
        &sessions,
        "sessions",
    );

    let errors = [
        (
            "GET",
            "/api/v1/streams/live/nobody",
            404,
            "/streams/{app}/{stream}",
            "404",
        ),
        (
            "GET",
            "/api/v1/streams/live/a%20b",
            400,
            "/streams/{app}/{stream}",
            "400",
        ),
        (
            "DELETE",
            "/api/v1/sessions/77777",
            404,
            "/sessions/{id}",
            "404",
        ),
        (
            "DELETE",
            "/api/v1/sessions/abc",
            400,
            "/sessions/{id}",
            "400",
        ),
    ];
    for (method, url, status, path, documented) in errors {
        let body = json(client, method, url, status).await;
        let schema = response_schema(&doc, path, &method.to_ascii_lowercase(), documented);
        check_shape(&doc, &schema, &body, url);
    }
    let wrong = json(client, "POST", "/api/v1/sessions", 405).await;
    assert_eq!(wrong["error"]["code"], "method_not_allowed");

    let openapi = json(client, "GET", "/api/v1/openapi.json", 200).await;
    assert_eq!(openapi, doc);
    served.stop().await;
}

#[tokio::test]
async fn sessions_are_listed_by_id_and_a_kicked_reader_ends_within_a_second() {
    let engine = engine();
    let mut p = publish(&engine, "live/cam1").await;
    let _other = publish(&engine, "live/other").await;
    let mut reader = engine
        .subscribe(Request::new(key("live/cam1"), "test-out").user("bob"))
        .await
        .expect("subscribe");
    while let Some(Ok(_)) = reader.try_recv() {}
    reader.record_sent(4096);
    let reader_id = reader.id();
    let served = spawn(super::router(engine.clone())).await;
    let client = Client(served.addr);

    let list = json(client, "GET", "/api/v1/sessions", 200).await;
    let sessions = list["sessions"].as_array().expect("sessions");
    let ids: Vec<u64> = sessions
        .iter()
        .map(|s| s["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "sorted: {ids:?}");
    let publisher = &sessions[0];
    assert_eq!(publisher["kind"], "publisher");
    assert_eq!(publisher["protocol"], "test-in");
    assert_eq!(publisher["path"], "live/cam1");
    assert_eq!(publisher["user"], "alice");
    assert_eq!(publisher["bytes_in"], 3);
    let listed = sessions
        .iter()
        .find(|s| s["id"] == reader_id)
        .expect("the reader is listed");
    assert_eq!(listed["kind"], "reader");
    assert_eq!(listed["user"], "bob");
    assert_eq!(listed["bytes_out"], 4096);
    assert_eq!(listed["peer"], Value::Null);

    // Parked, waiting for a frame: the kick wakes it.
    let waiting = tokio::spawn(async move {
        let end = reader.recv().await.map(|_| ());
        (end, reader.is_kicked())
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let response = client
        .full("DELETE", &format!("/api/v1/sessions/{reader_id}"))
        .await;
    assert_eq!((response.status, response.body.as_str()), (204, ""));
    let (end, kicked) = tokio::time::timeout(Duration::from_secs(1), waiting)
        .await
        .expect("the kicked reader ends within 1 s")
        .expect("task");
    assert_eq!(end, Err(RecvError::Ended(EndReason::Kicked)));
    assert!(kicked);
    let again = json(
        client,
        "DELETE",
        &format!("/api/v1/sessions/{reader_id}"),
        404,
    )
    .await;
    assert_eq!(again["error"]["code"], "not_found");

    // Kicking the publisher ends its stream; the other stream goes on.
    let publisher_id = publisher["id"].as_u64().expect("id");
    let closed = tokio::spawn(p.closed());
    let response = client
        .full("DELETE", &format!("/api/v1/sessions/{publisher_id}"))
        .await;
    assert_eq!(response.status, 204);
    let reason = tokio::time::timeout(Duration::from_secs(1), closed)
        .await
        .expect("the publisher's driver hears at once")
        .expect("task");
    assert_eq!(reason, EndReason::Kicked);
    assert!(
        p.publish(Frame::video(
            TrackId(1),
            Codec::H264,
            3000,
            3000,
            false,
            Bytes::from_static(b"p")
        ))
        .is_err()
    );
    json(client, "GET", "/api/v1/streams/live/cam1", 404).await;
    let left = json(client, "GET", "/api/v1/sessions", 200).await;
    let paths: Vec<_> = left["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|s| s["path"].as_str().expect("path").to_string())
        .collect();
    assert_eq!(paths, ["live/other"]);
    served.stop().await;
}
