//! WHEP figures on `/metrics`, through the `tidewater` binary: ffmpeg
//! publishes over RTMP and a str0m viewer plays over WHEP on its own
//! loopback socket, losing some of the video datagrams on purpose for a
//! while. While it plays, `tidewater_stream_bytes_out_total{protocol="whep"}`
//! rises and agrees with the bytes the viewer received, the stream's
//! `tidewater_webrtc_*` families show its one session, its NACKs and the
//! RTX packets that answered them (as many as the viewer got on its RTX
//! SSRC), and the viewer ends with every packet (repairs included).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use str0m::media::Direction;
use tidewater_tests::metrics::Scrape;
use tidewater_tests::str0m_peer::Str0mPeer;
use tidewater_tests::{
    CLIP_VIDEO, ChildGuard, ServerCommand, X264_LIVE, ffmpeg_realtime, fixed_gop, wait_live,
};

/// `POST`s `body` as `application/sdp` to `path`: the status and body.
fn post_sdp(http: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(http).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {http}\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("HTTP answer");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_bytes_nacks_and_rtx_show_on_metrics_while_a_viewer_plays() {
    let mut server = ServerCommand::with_config("[http]\nlisten = \"127.0.0.1:0\"\n").spawn();
    let (http, rtmp) = (server.http_addr(), server.rtmp_addr());
    // 320x240 at 25 fps, a keyframe a second, no B-frames, video only.
    let _publisher = ChildGuard(
        ffmpeg_realtime()
            .args(CLIP_VIDEO)
            .args(X264_LIVE)
            .args(fixed_gop(25))
            .args(["-bf", "0", "-b:v", "1M", "-an"])
            .args(["-t", "60", "-f", "flv", &format!("rtmp://{rtmp}/live/m")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffmpeg"),
    );
    tokio::task::spawn_blocking(move || wait_live(http, "live/m", Duration::from_secs(30)))
        .await
        .expect("wait");

    let (pending, offer) = Str0mPeer::offer(Direction::RecvOnly).await;
    let (status, answer) =
        tokio::task::spawn_blocking(move || post_sdp(http, "/whep/live/m", &offer))
            .await
            .expect("post");
    assert_eq!(status, 201, "{answer}");
    let mut viewer = pending.accept(&answer);
    let scrape = |http| async move {
        tokio::task::spawn_blocking(move || Scrape::get(http))
            .await
            .expect("scrape")
    };
    let path = [("path", "live/m")];
    let whep = [("path", "live/m"), ("protocol", "whep")];

    // Playing: bytes out rise with what the viewer receives.
    viewer.pump(Instant::now() + Duration::from_secs(3)).await;
    assert!(viewer.connected, "ICE and DTLS with the server");
    let before = viewer.bytes;
    let first = scrape(http).await;
    let after = viewer.bytes;
    let out1 = first.sum("tidewater_stream_bytes_out_total", &whep);
    eprintln!("viewer {before}..{after} bytes; bytes_out {out1}");
    assert!(before > 100_000, "the viewer received {before} bytes");
    // The feeder reports after each frame: at most a frame behind.
    assert!(
        out1 >= before as f64 * 0.8 && out1 <= after as f64 * 1.1 + 100_000.0,
        "bytes_out {out1} against the viewer's {before}..{after}"
    );
    assert_eq!(
        first.sum(
            "tidewater_webrtc_sessions",
            &[("path", "live/m"), ("role", "whep")]
        ),
        1.0
    );

    // Losing every 7th video datagram for 3 s, then 3 s for the repairs
    // and for the next statistics report (every second).
    viewer.drop_every = Some(7);
    viewer.pump(Instant::now() + Duration::from_secs(3)).await;
    viewer.drop_every = None;
    viewer.pump(Instant::now() + Duration::from_secs(3)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let second = loop {
        let s = scrape(http).await;
        if s.sum("tidewater_webrtc_rtx_packets_total", &path) > 0.0
            && s.sum("tidewater_webrtc_nacks_total", &path) > 0.0
        {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no NACKs or RTX on /metrics after {} losses",
            viewer.dropped.len()
        );
        viewer
            .pump(Instant::now() + Duration::from_millis(500))
            .await;
    };
    let out2 = second.sum("tidewater_stream_bytes_out_total", &whep);
    let nacks = second.sum("tidewater_webrtc_nacks_total", &path);
    let rtx = second.sum("tidewater_webrtc_rtx_packets_total", &path);
    let summary = format!(
        "dropped {}; viewer got {} RTX datagrams on {:?}; /metrics: nacks {nacks}, rtx {rtx}, \
         bytes_out {out1} -> {out2}; viewer bytes {}",
        viewer.dropped.len(),
        viewer.rtx_datagrams,
        viewer.rtx_ssrcs,
        viewer.bytes
    );
    eprintln!("{summary}");
    assert!(out2 > out1 + 100_000.0, "{summary}");
    assert!(viewer.dropped.len() >= 10, "{summary}");
    // A NACK may ask for several packets; each loss was asked for.
    assert!(
        nacks >= 1.0 && nacks <= viewer.dropped.len() as f64 * 3.0,
        "{summary}"
    );
    // The server counts RTX as it sends them, the viewer as they arrive
    // (loopback loses nothing): the figure published before the scrape
    // cannot exceed what arrived since, and covers at least the losses.
    assert_eq!(viewer.rtx_ssrcs.len(), 1, "{summary}");
    assert!(
        rtx >= viewer.dropped.len() as f64 * 0.9 && rtx <= viewer.rtx_datagrams as f64,
        "{summary}"
    );
    // What the viewer got: it started on a keyframe and every lost packet
    // came back.
    assert_eq!(viewer.keyframe_first, Some(true), "{summary}");
    let missing: Vec<&u16> = viewer
        .dropped
        .iter()
        .filter(|s| !viewer.received.contains(s))
        .collect();
    assert!(missing.is_empty(), "still missing {missing:?}; {summary}");
    drop(server);
}
