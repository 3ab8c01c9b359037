//! Property test of the offer handling (the stable twin of a fuzz target):
//! whatever body a POST carries — bytes, or a real offer with lines dropped,
//! repeated or cut — the answer is a `201` with an SDP answer or a `4xx`,
//! never a panic, and a refused offer leaves no session and nothing
//! published.

use std::time::Instant;

use axum::body::Body;
use axum::http::{Method, Request as HttpRequest};
use proptest::prelude::*;
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, Rtc};
use tidewater_core::{AppSpec, CancellationToken, Engine, InboundProtocol, Request, StreamKey};
use tidewater_whip::{Whip, WhipConfig};
use tower::ServiceExt;

fn offer() -> String {
    let mut rtc = Rtc::builder()
        .clear_codecs()
        .enable_h264(true)
        .enable_opus(true, false)
        .enable_vp8(true)
        .build(Instant::now());
    rtc.add_local_candidate(
        Candidate::host("127.0.0.1:9".parse().expect("addr"), "udp").expect("candidate"),
    );
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    api.apply().expect("offer").0.to_sdp_string()
}

#[derive(Debug, Clone)]
enum Edit {
    Drop(usize),
    Repeat(usize),
    Cut(usize),
    Replace(usize, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::Drop),
        any::<usize>().prop_map(Edit::Repeat),
        any::<usize>().prop_map(Edit::Cut),
        (any::<usize>(), "[ -~]{0,40}").prop_map(|(i, s)| Edit::Replace(i, s)),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..600),
        proptest::collection::vec(edit(), 1..6).prop_map(|edits| {
            let mut lines: Vec<String> = offer().split("\r\n").map(str::to_owned).collect();
            for e in edits {
                let n = lines.len().max(1);
                match e {
                    Edit::Drop(i) if !lines.is_empty() => {
                        lines.remove(i % n);
                    }
                    Edit::Repeat(i) if !lines.is_empty() => {
                        let l = lines[i % n].clone();
                        lines.insert(i % n, l);
                    }
                    Edit::Cut(i) if !lines.is_empty() => {
                        let l = &mut lines[i % n];
                        let cut = i % (l.len() + 1);
                        let mut at = cut;
                        while !l.is_char_boundary(at) {
                            at -= 1;
                        }
                        l.truncate(at);
                    }
                    Edit::Replace(i, s) if !lines.is_empty() => lines[i % n] = s,
                    _ => {}
                }
            }
            lines.join("\r\n").into_bytes()
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn any_offer_gets_an_answer_or_a_client_error(body in body()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let engine = Engine::builder().default_app(AppSpec::default()).build().expect("engine");
            let whip = Whip::new(WhipConfig {
                udp_listen: "127.0.0.1:0".parse().expect("addr"),
                ..WhipConfig::default()
            })
            .expect("config");
            let shutdown = CancellationToken::new();
            let worker = {
                let (whip, ctx, shutdown) = (whip.clone(), engine.context(), shutdown.clone());
                tokio::spawn(async move { whip.serve(ctx, shutdown).await })
            };
            whip.listening().await;
            let response = whip
                .router(engine.context())
                .oneshot(
                    HttpRequest::builder()
                        .method(Method::POST)
                        .uri("/whip/live/p")
                        .header("content-type", "application/sdp")
                        .body(Body::from(body))
                        .expect("request"),
                )
                .await
                .expect("infallible");
            let status = response.status().as_u16();
            assert!(status == 201 || (400..500).contains(&status), "status {status}");
            if status != 201 {
                assert_eq!(whip.sessions(), 0);
                let key = StreamKey::parse("live/p").expect("key");
                assert!(engine.subscribe(Request::new(key, "t")).await.is_err());
            }
            shutdown.cancel();
            worker.await.expect("join").expect("worker");
        });
    }
}
