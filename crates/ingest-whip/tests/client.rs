//! A str0m client publishes synthetic H.264 over real UDP (loopback) and
//! loses a packet: the server must ask for a keyframe (PLI, seen by the
//! client), the kernel must get no frame between the loss and the next
//! keyframe, and garbage on the media port must disturb nothing.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use str0m::media::Direction;
use tidewater_core::{Codec, Event as KernelEvent, Request, StreamKey};
use tidewater_media::rtp::h264::packetize_h264;
use tidewater_tests::str0m_peer::Str0mPeer;
use tidewater_whip::WhipConfig;
use tokio::net::UdpSocket;

use support::{
    PPS, SPS, SyntheticH264, connected_client, engine, loopback, post_offer, start_whip,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_packet_gets_a_pli_and_the_kernel_resumes_at_a_keyframe() {
    let engine = engine();
    let server = start_whip(
        &engine,
        loopback(WhipConfig {
            pli_interval: Duration::from_millis(100),
            idle_timeout: Duration::from_secs(1),
            ..WhipConfig::default()
        }),
    )
    .await;
    let (whip, media, shutdown) = (&server.whip, &server.media, &server.shutdown);

    let (pending, offer) = Str0mPeer::offer(Direction::SendOnly).await;
    let answer = post_offer(&server.router, "/whip/live/client", offer).await;
    let mut client = pending.accept(&answer);
    let connected = client
        .pump_until_connected(Duration::from_secs(10), Duration::from_millis(50))
        .await;
    assert!(connected, "ICE and DTLS with the server");

    let key = StreamKey::parse("live/client").expect("key");
    let mut subscription = engine
        .subscribe(Request::new(key, "test"))
        .await
        .expect("live");
    // Garbage on the media port from a stranger: dropped, counted.
    let stranger = UdpSocket::bind("127.0.0.1:0").await.expect("stranger");
    for i in 0..50u8 {
        let junk: Vec<u8> = match i % 3 {
            0 => vec![i; 40],
            1 => [
                &[0x00, 0x01, 0x00, 0x08][..],
                &[0x21, 0x12, 0xa4, 0x42],
                &[i; 20],
            ]
            .concat(),
            _ => [&[0x16, 0xfe, 0xfd][..], &[i; 30]].concat(),
        };
        stranger.send_to(&junk, media[0]).await.expect("send junk");
    }

    let pt = client.remote_h264_pt();
    let (mut seq, mut sent_idr_at) = (1000u64, Vec::new());
    let mut keyframe_due = true;
    let mut pli_seen_before = 0;
    const LOST_FRAME: u32 = 10;
    const REORDERED_FRAME: u32 = 20;
    for frame in 0..60u32 {
        if client.keyframe_requests > pli_seen_before {
            pli_seen_before = client.keyframe_requests;
            keyframe_due = true;
        }
        let idr = vec![0x65; 2500];
        // Three packets for the frame sent in reverse order, one otherwise.
        let p_slice = vec![0x41; if frame == REORDERED_FRAME { 2500 } else { 600 }];
        let nals: Vec<&[u8]> = if keyframe_due {
            sent_idr_at.push(frame);
            vec![SPS, PPS, &idr]
        } else {
            vec![&p_slice]
        };
        keyframe_due = false;
        let mut payloads = Vec::new();
        packetize_h264(nals, 1000, &mut payloads);
        let time = 90_000 + frame * 3000;
        let mut numbered: Vec<(u64, usize, _)> = payloads
            .into_iter()
            .enumerate()
            .map(|(i, p)| (seq + i as u64, i, p))
            .collect();
        seq += numbered.len() as u64;
        if frame == REORDERED_FRAME {
            assert!(numbered.len() >= 3);
            numbered.reverse();
        }
        for (this, i, p) in numbered {
            if frame == LOST_FRAME && i == 0 {
                continue; // lost on the way
            }
            client.write_rtp(pt, this, time, &p.data, p.marker);
        }
        client
            .pump(Instant::now() + Duration::from_millis(33))
            .await;
    }
    client
        .pump(Instant::now() + Duration::from_millis(200))
        .await;
    let last_heard = Instant::now();

    let mut video: Vec<(i64, bool, Bytes)> = Vec::new();
    while let Some(Ok(event)) = subscription.try_recv() {
        if let KernelEvent::Frame(f) = event
            && f.codec == Codec::H264
        {
            video.push((f.pts, f.is_keyframe(), f.payload.clone()));
        }
    }
    let stats = whip.stats();
    let summary = format!(
        "IDRs sent at {sent_idr_at:?}, PLIs seen {}, kernel frames {:?}, unmatched {:?}",
        client.keyframe_requests,
        video.iter().map(|v| (v.0, v.1)).collect::<Vec<_>>(),
        stats.unmatched
    );
    assert!(client.keyframe_requests >= 1, "{summary}");
    assert!(
        sent_idr_at.len() >= 2 && sent_idr_at[1] > LOST_FRAME,
        "{summary}"
    );
    let resumed = sent_idr_at[1];
    let frame_of = |pts: i64| ((pts - video[0].0) / 3000) as u32;
    let frames: Vec<u32> = video.iter().map(|v| frame_of(v.0)).collect();
    // Every frame before the loss, none from the loss to the new IDR, every one after.
    let expected: Vec<u32> = (0..LOST_FRAME).chain(resumed..60).collect();
    assert_eq!(frames, expected, "{summary}");
    let first_after = video
        .iter()
        .find(|v| frame_of(v.0) == resumed)
        .expect("resumed");
    assert!(first_after.1, "resumes at a keyframe: {summary}");
    assert!(
        stats.unmatched.load(std::sync::atomic::Ordering::Relaxed) >= 50,
        "{summary}"
    );

    // The client vanishes without a DELETE: the session ends by itself.
    assert_eq!(whip.sessions(), 1);
    drop(client);
    let gone = Instant::now();
    while whip.sessions() != 0 && gone.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(whip.sessions(), 0, "ended without the client");
    // str0m's ICE agent notices the silence first (under a second here);
    // the idle timeout is the backstop.
    assert!(last_heard.elapsed() < Duration::from_secs(5));
    let key = StreamKey::parse("live/client").expect("key");
    assert!(engine.subscribe(Request::new(key, "test")).await.is_err());
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whep_viewer_gets_rtp_and_its_keyframe_request_reaches_the_whip_publisher() {
    let engine = engine();
    let server = start_whip(
        &engine,
        loopback(WhipConfig {
            pli_interval: Duration::from_millis(100),
            ..WhipConfig::default()
        }),
    )
    .await;
    let (router, shutdown) = (&server.router, &server.shutdown);
    let (mut publisher, _) =
        connected_client(router, "/whip/live/relay", Direction::SendOnly).await;
    let mut h264 = SyntheticH264 {
        pt: publisher.remote_h264_pt(),
        seq: 1,
        p_slice_len: 600,
    };
    // The stream is live (and has a keyframe) before the viewer comes.
    for frame in 0..5 {
        h264.send(&mut publisher, frame, frame == 0);
        publisher
            .pump(Instant::now() + Duration::from_millis(33))
            .await;
    }
    let (mut viewer, _) = connected_client(router, "/whep/live/relay", Direction::RecvOnly).await;
    let view_mid = viewer.mid;
    let requests_before = publisher.keyframe_requests;
    for frame in 5..60 {
        h264.send(&mut publisher, frame, false);
        publisher
            .pump(Instant::now() + Duration::from_millis(15))
            .await;
        viewer
            .pump(Instant::now() + Duration::from_millis(15))
            .await;
        if frame == 30 {
            let mut api = viewer.rtc.direct_api();
            let rx = api
                .stream_rx_by_mid(view_mid, None)
                .expect("the viewer's receive stream");
            rx.request_keyframe(str0m::media::KeyframeRequestKind::Pli);
            viewer.drain();
        }
    }
    let summary = format!(
        "viewer got {} RTP packets; publisher saw {} keyframe requests ({} before the viewer)",
        viewer.rtp_received, publisher.keyframe_requests, requests_before
    );
    // The cached GOP (a 3-packet keyframe and 4 P frames) and 55 live P frames.
    assert!(viewer.rtp_received >= 50, "{summary}");
    assert!(publisher.keyframe_requests > requests_before, "{summary}");
    shutdown.cancel();
}
