//! The relay port's log lines under a flood of junk: one line per closed
//! connection naming its peer and cause, at most the listener budget per
//! interval, and the count of those left out said. A test binary of its
//! own: it installs the process's log subscriber.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidewater_cluster::ClusterSecret;
use tidewater_cluster::relay::RelayServer;
use tidewater_core::logs::LISTENER_BURST;
use tidewater_core::{AppSpec, CancellationToken, Engine, PermitAll};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Log output collected in memory.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn relay_lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| l.contains("relay: closed the connection from"))
            .map(str::to_string)
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_junk_logs_the_listener_budget_then_counts_the_rest() {
    let lines = Lines::default();
    let sink = lines.clone();
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .init();

    let auth = Arc::new(ClusterSecret::new(
        "a-cluster-secret-of-some-length",
        Arc::new(PermitAll),
    ));
    let engine = Engine::builder()
        .app("live", AppSpec::default())
        .build()
        .expect("engine");
    let server = Arc::new(RelayServer::new(engine.clone(), auth));
    let bound = server.bound();
    let stop = CancellationToken::new();
    tokio::spawn({
        let (server, stop) = (Arc::clone(&server), stop.clone());
        async move {
            server
                .serve("127.0.0.1:0".parse().expect("addr"), stop)
                .await
        }
    });
    let relay = bound.wait().await;

    // Well within the limiter's 10 s interval on any machine: 50 peers
    // sending what is not a relay hello, one after another.
    let flood = 50;
    let mut peers = Vec::new();
    for _ in 0..flood {
        let mut s = tokio::net::TcpStream::connect(relay)
            .await
            .expect("connect");
        peers.push(s.local_addr().expect("local"));
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.expect("write");
        let mut answer = Vec::new();
        let _closed = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut answer))
            .await
            .expect("closed");
        assert!(answer.is_empty(), "answered {answer:?}");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while lines.relay_lines().len() < LISTENER_BURST as usize
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let logged = lines.relay_lines();
    assert_eq!(logged.len(), LISTENER_BURST as usize, "{logged:#?}");
    for (line, peer) in logged.iter().zip(&peers) {
        assert!(line.contains(" WARN "), "{line}");
        assert!(line.contains(&format!("peer={peer}")), "{line}");
        assert!(
            line.contains("its first byte is 0x47, not a relay hello"),
            "{line}"
        );
    }
    let last = logged.last().expect("a last line");
    assert!(
        last.contains("more lines like this are suppressed for up to 10s"),
        "{last}"
    );
    // Every connection is counted, logged or not.
    let counted = engine
        .listeners()
        .into_iter()
        .find(|l| l.name == tidewater_cluster::relay::LISTENER)
        .map(|l| l.refusals)
        .unwrap_or_default();
    assert_eq!(counted, [("not_relay", flood)]);
    stop.cancel();
}
