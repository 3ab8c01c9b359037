use tidewater::StreamKey;

use super::*;
use crate::http::test_client::{Client, spawn};

fn everything() -> Console {
    Console {
        rtmp: Some(Port::Fixed(1935)),
        rtmps: None,
        srt: Some(Port::Fixed(8890)),
        rtsp: Some(Port::Fixed(8554)),
        hls: true,
        dash: true,
        webrtc: true,
        record: false,
        player_scripts_url: None,
    }
}

fn url<'a>(rows: &'a [Endpoint], protocol: &str, what: &str) -> Option<&'a str> {
    rows.iter()
        .find(|r| r.protocol == protocol && r.what.starts_with(what))
        .unwrap_or_else(|| panic!("no {protocol} {what} row"))
        .url
        .as_deref()
}

#[tokio::test]
async fn urls_are_built_from_the_host_and_the_listeners() {
    let key = StreamKey::parse("live/cam1").expect("key");
    let rows = endpoints(
        &everything(),
        "media.example:8888",
        "http://media.example:8888",
        &key,
    )
    .await;
    assert_eq!(
        url(&rows, "RTMP", "publish"),
        Some("rtmp://media.example:1935/live/cam1")
    );
    assert_eq!(url(&rows, "RTMPS", "publish"), None);
    assert_eq!(
        url(&rows, "SRT", "publish"),
        Some("srt://media.example:8890?streamid=publish:live/cam1")
    );
    assert_eq!(
        url(&rows, "SRT", "read"),
        Some("srt://media.example:8890?streamid=read:live/cam1")
    );
    assert_eq!(
        url(&rows, "LL-HLS", "play"),
        Some("http://media.example:8888/llhls/live/cam1/index.m3u8")
    );
    assert_eq!(
        url(&rows, "HLS", "play"),
        Some("http://media.example:8888/hls/live/cam1/index.m3u8")
    );
    assert_eq!(
        url(&rows, "DASH", "play"),
        Some("http://media.example:8888/dash/live/cam1/manifest.mpd")
    );
    assert_eq!(
        url(&rows, "HTTP-FLV", "play"),
        Some("http://media.example:8888/flv/live/cam1.flv")
    );
    assert_eq!(
        url(&rows, "HTTP-TS", "play"),
        Some("http://media.example:8888/ts/live/cam1.ts")
    );
    assert_eq!(
        url(&rows, "RTSP", "publish"),
        Some("rtsp://media.example:8554/live/cam1")
    );
    assert_eq!(
        url(&rows, "WHEP", "play"),
        Some("http://media.example:8888/whep/live/cam1")
    );

    let rows = endpoints(&Console::default(), "[::1]:8888", "http://[::1]:8888", &key).await;
    assert_eq!(url(&rows, "RTMP", "publish"), None);
    assert_eq!(url(&rows, "HTTP-TS", "play"), None);
    assert_eq!(url(&rows, "LL-HLS", "play"), None);
    assert_eq!(host_name("[::1]:8888"), "[::1]");
    assert_eq!(host_name("[::1]"), "[::1]");
    assert_eq!(host_name("example.org"), "example.org");
}

#[tokio::test]
async fn pages_and_assets_are_served() {
    let served = spawn(router(everything())).await;
    let client = Client(served.addr);
    let index = client.full("GET", "/").await;
    assert_eq!(index.status, 200);
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        index
            .body
            .contains("<table class=\"cards\" id=\"streams\">"),
        "{}",
        index.body
    );
    assert!(index.header("content-security-policy").is_some());
    assert_eq!(index.header("x-frame-options"), Some("DENY"));

    let watch = client.full("GET", "/watch/live/cam1").await;
    assert_eq!(watch.status, 200);
    let start = watch
        .body
        .find("type=\"application/json\">")
        .expect("config")
        + 24;
    let end = start
        + watch.body[start..]
            .find("</script>")
            .expect("end of config");
    let config: serde_json::Value = serde_json::from_str(&watch.body[start..end]).expect("JSON");
    assert_eq!(config["app"], "live");
    assert_eq!(config["stream"], "cam1");
    assert_eq!(
        config["players"],
        serde_json::json!(["llhls", "webrtc", "dash", "hls"])
    );
    assert_eq!(config["publish"], "/publish/live/cam1");
    let host = served.addr.to_string();
    let rtmp = format!("rtmp://{}:1935/live/cam1", served.addr.ip());
    assert!(
        config["urls"]
            .as_array()
            .expect("urls")
            .iter()
            .any(|u| u["url"] == rtmp.as_str())
    );
    assert!(
        config["embed"]
            .as_str()
            .expect("embed")
            .contains(&format!("http://{host}/watch/live/cam1?embed"))
    );
    assert!(
        !watch.body[start..end].contains('<'),
        "no markup inside the script element"
    );
    assert_eq!(client.request("GET", "/watch/live/..").await.0, 400);

    for (file, kind) in [
        ("console.js", "text/javascript; charset=utf-8"),
        ("watch.js", "text/javascript; charset=utf-8"),
        ("publish.js", "text/javascript; charset=utf-8"),
        ("console.css", "text/css; charset=utf-8"),
    ] {
        let r = client.full("GET", &format!("/console/{file}")).await;
        assert_eq!(
            (r.status, r.header("content-type")),
            (200, Some(kind)),
            "{file}"
        );
    }
    assert_eq!(client.request("GET", "/console/nothing.js").await.0, 404);
    let hls = client.full("GET", "/console/vendor/hls.min.js").await;
    if players_embedded() {
        assert_eq!(hls.status, 200);
        assert!(!HLSJS_VERSION.is_empty() && !DASHJS_VERSION.is_empty());
        assert_eq!(config["hlsjs"], "/console/vendor/hls.min.js");
        assert_eq!(config["dashjs"], "/console/vendor/dash.all.min.js");
    } else {
        assert_eq!(hls.status, 404);
        assert!(config["hlsjs"].is_null());
    }
    served.stop().await;
}

#[tokio::test]
async fn a_configured_player_url_is_used_only_without_embedded_players() {
    let console = Console {
        player_scripts_url: Some("https://static.example/players/".into()),
        ..everything()
    };
    let served = spawn(router(console)).await;
    let watch = Client(served.addr).full("GET", "/watch/live/cam1").await;
    let expected = match players_embedded() {
        true => "\"hlsjs\":\"/console/vendor/hls.min.js\"",
        false => "\"hlsjs\":\"https://static.example/players/hls.min.js\"",
    };
    assert!(watch.body.contains(expected), "{}", watch.body);
    served.stop().await;
}

#[test]
fn the_player_url_is_checked() {
    let web = |url: &str| crate::config::WebSection {
        enabled: true,
        player_scripts_url: Some(url.into()),
    };
    let config = |w| crate::Config {
        web: w,
        ..crate::Config::default()
    };
    assert!(config(web("https://static.example/p/")).validate().is_ok());
    assert!(config(web("/players/")).validate().is_ok());
    for bad in [
        "https://static.example/p",
        "javascript:alert(1)/",
        "https://x/\"onload=/",
    ] {
        let e = config(web(bad)).validate().expect_err(bad).to_string();
        assert!(e.contains("web.player_scripts_url"), "{e}");
    }
}

#[tokio::test]
async fn the_player_page_offers_what_is_served() {
    for (hls, dash, webrtc, expected) in [
        (true, false, false, serde_json::json!(["llhls", "hls"])),
        (false, true, false, serde_json::json!(["dash"])),
        (false, false, true, serde_json::json!(["webrtc"])),
        (false, false, false, serde_json::json!([])),
    ] {
        let served = spawn(router(Console {
            hls,
            dash,
            webrtc,
            ..everything()
        }))
        .await;
        let watch = Client(served.addr).full("GET", "/watch/live/cam1").await;
        let start = watch
            .body
            .find("type=\"application/json\">")
            .expect("config")
            + 24;
        let end = start
            + watch.body[start..]
                .find("</script>")
                .expect("end of config");
        let config: serde_json::Value =
            serde_json::from_str(&watch.body[start..end]).expect("JSON");
        assert_eq!(
            config["players"], expected,
            "hls {hls}, dash {dash}, webrtc {webrtc}"
        );
        assert_eq!(config["publish"].is_string(), webrtc);
        served.stop().await;
    }
}

/// The JSON a page carries in its `<script type="application/json">`.
fn page_config(body: &str) -> serde_json::Value {
    let start = body.find("type=\"application/json\">").expect("config") + 24;
    let end = start + body[start..].find("</script>").expect("end of config");
    assert!(
        !body[start..end].contains('<'),
        "no markup inside the script"
    );
    serde_json::from_str(&body[start..end]).expect("JSON")
}

#[tokio::test]
async fn the_publish_page_sends_to_the_whip_route_when_webrtc_is_on() {
    for webrtc in [true, false] {
        let served = spawn(router(Console {
            webrtc,
            ..everything()
        }))
        .await;
        let client = Client(served.addr);
        let page = client.full("GET", "/publish/live/cam%3C1").await;
        assert_eq!(page.status, 200);
        assert_eq!(page.header("x-frame-options"), Some("DENY"));
        assert!(
            page.header("content-security-policy")
                .is_some_and(|c| c.contains("default-src 'self'")),
        );
        let config = page_config(&page.body);
        assert_eq!(config["stream"], "cam<1");
        assert_eq!(config["watch"], "/watch/live/cam<1");
        match webrtc {
            true => assert_eq!(config["whip"], "/whip/live/cam<1"),
            false => assert!(config["whip"].is_null(), "{config}"),
        }
        assert_eq!(client.request("GET", "/publish/live/..").await.0, 400);
        served.stop().await;
    }
}
