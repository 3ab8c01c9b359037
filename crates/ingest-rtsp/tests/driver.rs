//! The connection driver with a raw TCP client: answers, the session
//! timeout closing a silent client, the listener's counters, and the limit
//! on connections.

use std::sync::Arc;
use std::time::Duration;

use tidewater_core::{AppSpec, CancellationToken, Engine, InboundProtocol};
use tidewater_rtsp::{Rtsp, RtspConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

async fn start(config: RtspConfig) -> (Engine, std::net::SocketAddr, CancellationToken) {
    let engine = Engine::builder()
        .app("live", AppSpec::default())
        .build()
        .expect("engine");
    let rtsp = Arc::new(Rtsp::new(config).expect("config"));
    let shutdown = CancellationToken::new();
    let workers: Vec<Arc<dyn InboundProtocol>> = vec![rtsp.clone()];
    tokio::spawn({
        let (engine, shutdown) = (engine.clone(), shutdown.clone());
        async move { engine.serve(workers, shutdown).await }
    });
    let addr = timeout(Duration::from_secs(5), rtsp.listening())
        .await
        .expect("bound");
    (engine, addr, shutdown)
}

fn config() -> RtspConfig {
    RtspConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        udp: false,
        ..RtspConfig::default()
    }
}

/// Reads until the peer closes (or `limit`), returning what came.
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut all = Vec::new();
    let result = timeout(limit, stream.read_to_end(&mut all)).await;
    result
        .ok()
        .map(|_| String::from_utf8_lossy(&all).to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_closed_after_the_session_timeout() {
    let (engine, addr, _shutdown) = start(RtspConfig {
        session_timeout: Duration::from_secs(1),
        ..config()
    })
    .await;
    let mut client = TcpStream::connect(addr).await.expect("connect");
    client
        .write_all(b"OPTIONS rtsp://127.0.0.1/live/x RTSP/1.0\r\nCSeq: 1\r\n\r\n")
        .await
        .expect("write");
    // Nothing more is sent: the server answers, then closes.
    let text = read_to_close(&mut client, Duration::from_secs(20))
        .await
        .expect("closed by the server");
    assert!(text.starts_with("RTSP/1.0 200 "), "{text}");
    assert!(text.contains("CSeq: 1\r\n"));
    assert!(
        text.contains("Public: OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, PAUSE, RECORD, TEARDOWN")
    );
    let stats = engine.context().listener_stats("rtsp").snapshot();
    assert_eq!(stats.connections, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_400_and_a_close_and_limits_refuse_connections() {
    let (engine, addr, _shutdown) = start(RtspConfig {
        max_connections: 1,
        ..config()
    })
    .await;
    let mut first = TcpStream::connect(addr).await.expect("connect");
    first
        .write_all(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 512];
    let n = timeout(Duration::from_secs(5), first.read(&mut buf))
        .await
        .expect("answer")
        .expect("read");
    assert!(buf[..n].starts_with(b"RTSP/1.0 200 "));
    // The second connection is over the limit: closed at once.
    let mut second = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(
        read_to_close(&mut second, Duration::from_secs(5))
            .await
            .as_deref(),
        Some("")
    );
    let stats = engine.context().listener_stats("rtsp").snapshot();
    assert_eq!(stats.refusals, vec![("too_many_connections", 1)]);
    // Garbage on the first: 400, then closed.
    first
        .write_all(b"\x16\x03\x01 not rtsp\r\n\r\n")
        .await
        .expect("write");
    let text = read_to_close(&mut first, Duration::from_secs(5))
        .await
        .expect("closed");
    assert!(text.starts_with("RTSP/1.0 400"), "{text}");
}
