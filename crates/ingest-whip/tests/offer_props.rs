//! Property test of the offer handling (the stable twin of a fuzz target):
//! whatever body a POST carries — bytes, or a real offer with lines dropped,
//! repeated or cut — the answer is a `201` with an SDP answer or a `4xx`,
//! never a panic, and a refused offer leaves no session and nothing
//! published.

mod support;

use axum::body::Body;
use axum::http::{Method, Request as HttpRequest};
use proptest::prelude::*;
use str0m::media::Direction;
use tidewater_core::{Request, StreamKey};
use tidewater_whip::WhipConfig;
use tower::ServiceExt;

use support::sdp_edits::{apply_edits, edit, offer};
use support::{WhipUnderTest, engine, loopback, start_whip};

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..600),
        proptest::collection::vec(edit(), 1..6)
            .prop_map(|edits| { apply_edits(&offer(Direction::SendOnly), edits).into_bytes() }),
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
            let engine = engine();
            let WhipUnderTest { whip, router, shutdown, worker, .. } =
                start_whip(&engine, loopback(WhipConfig::default())).await;
            let response = router
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
