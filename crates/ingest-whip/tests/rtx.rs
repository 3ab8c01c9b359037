//! Retransmission towards a WHEP viewer over real UDP (loopback): a str0m
//! client publishes synthetic H.264 over WHIP, a str0m viewer plays it
//! over WHEP and drops some of the video datagrams the server sends it;
//! its NACKs must bring each lost packet back, as RTX (RFC 4588: its own
//! SSRC and payload type, the original sequence number in the payload),
//! and the viewer must end up with every packet.
//!
//! The server answers NACKs with str0m's own machinery: each viewer's send
//! stream keeps the packets it wrote (`RtpWrite::nackable`) and resends
//! them on the RTX SSRC and payload type the answer negotiated.

mod support;

use std::time::{Duration, Instant};

use str0m::media::Direction;
use tidewater_whip::WhipConfig;

use support::{SyntheticH264, connected_client, engine, loopback, start_whip};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_a_viewer_loses_are_resent_as_rtx_after_its_nacks() {
    let engine = engine();
    let server = start_whip(&engine, loopback(WhipConfig::default())).await;
    let (whip, router, shutdown) = (&server.whip, &server.router, &server.shutdown);
    let (mut publisher, _) = connected_client(router, "/whip/live/rtx", Direction::SendOnly).await;
    let mut h264 = SyntheticH264 {
        pt: publisher.remote_h264_pt(),
        seq: 1,
        p_slice_len: 1500,
    };
    for frame in 0..3 {
        h264.send(&mut publisher, frame, frame == 0);
        publisher
            .pump(Instant::now() + Duration::from_millis(33))
            .await;
    }
    let (mut viewer, answer) =
        connected_client(router, "/whep/live/rtx", Direction::RecvOnly).await;
    // The answer names an RTX payload type for H.264 and an SSRC group
    // pairing the media SSRC with its RTX SSRC.
    assert!(answer.contains("rtx/90000"), "{answer}");
    assert!(answer.contains("a=ssrc-group:FID"), "{answer}");
    // Live frames, the viewer losing every 7th video datagram for a while,
    // then time for the repairs to arrive.
    for step in 0..90 {
        viewer.drop_every = (10..60).contains(&step).then_some(7);
        h264.send(&mut publisher, 3 + step, false);
        publisher
            .pump(Instant::now() + Duration::from_millis(10))
            .await;
        viewer
            .pump(Instant::now() + Duration::from_millis(10))
            .await;
    }
    let missing: Vec<u16> = viewer
        .dropped
        .iter()
        .filter(|s| !viewer.received.contains(s))
        .copied()
        .collect();
    let summary = format!(
        "dropped {:?}; still missing {missing:?}; {} datagrams on other SSRCs {:?}; {} packets received",
        viewer.dropped,
        viewer.rtx_datagrams,
        viewer.rtx_ssrcs,
        viewer.received.len()
    );
    eprintln!("{summary}");
    assert!(viewer.dropped.len() >= 10, "{summary}");
    assert!(missing.is_empty(), "{summary}");
    // The repairs came as RTX, on one SSRC of their own, one per loss at
    // least (a lost repair is asked for again).
    assert_eq!(viewer.rtx_ssrcs.len(), 1, "{summary}");
    assert!(viewer.rtx_datagrams >= viewer.dropped.len(), "{summary}");
    // And every packet between the first and the last arrived.
    let first = *viewer.received.first().expect("packets");
    let last = *viewer.received.last().expect("packets");
    assert_eq!(
        viewer.received.len(),
        usize::from(last - first) + 1,
        "{summary}"
    );
    // The viewer's feedback, as the server read it: its NACKs counted, and
    // TWCC feedback on what was sent (str0m's viewer sends it, as browsers
    // do) giving a round trip. The figures come every second.
    let deadline = Instant::now() + Duration::from_secs(10);
    let qos = loop {
        let qos = whip.qos();
        let viewer_qos = qos.iter().find(|q| q.role == "whep").cloned();
        if let Some(v) = viewer_qos.filter(|v| v.nacks > 0 && v.twcc_rtt_ms.is_some()) {
            break (v, qos);
        }
        assert!(Instant::now() < deadline, "no feedback figures: {qos:#?}");
        publisher
            .pump(Instant::now() + Duration::from_millis(50))
            .await;
        viewer
            .pump(Instant::now() + Duration::from_millis(50))
            .await;
    };
    eprintln!("{:#?}", qos.1);
    let (v, all) = qos;
    assert_eq!(v.stream, "live/rtx", "{v:?}");
    assert!(v.reports >= 1, "{v:?}");
    // Every lost packet was asked for (NACKs may carry several).
    assert!(
        v.nacks >= 1 && v.nacks <= viewer.dropped.len() as u64 * 3,
        "{v:?}"
    );
    assert!(v.twcc_loss.is_some(), "{v:?}");
    assert!(v.bytes_sent > 0, "{v:?}");
    // Joinable with the kernel's sessions (what /api/v1/sessions lists).
    let kernel: Vec<u64> = engine.sessions().iter().map(|s| s.id).collect();
    assert!(
        v.kernel_session.is_some_and(|id| kernel.contains(&id)),
        "{v:?} in {kernel:?}"
    );
    assert!(
        all.iter()
            .any(|q| q.role == "whip" && q.stream == "live/rtx"),
        "{all:#?}"
    );
    shutdown.cancel();
}
