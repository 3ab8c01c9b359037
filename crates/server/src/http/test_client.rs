//! A router served on a loopback port, and a one-request-per-connection
//! HTTP/1.1 client, for the HTTP modules' tests.

use std::net::SocketAddr;

use axum::Router;
use tidewater::CancellationToken;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// A router serving on 127.0.0.1 until [`stop`](Self::stop).
pub(crate) struct Served {
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl Served {
    pub async fn stop(self) {
        self.stop.cancel();
        self.task.await.expect("server task").expect("serve");
    }
}

/// Serves `router` on a free loopback port.
pub(crate) async fn spawn(router: Router) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let task = tokio::spawn(
        axum::serve(listener, router)
            .with_graceful_shutdown(stop.clone().cancelled_owned())
            .into_future(),
    );
    Served { addr, stop, task }
}

/// Sends requests to one server.
#[derive(Clone, Copy)]
pub(crate) struct Client(pub SocketAddr);

/// A response: status, headers (lowercase names) and body.
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Client {
    /// One request without a body: (status, body).
    pub async fn request(&self, method: &str, path: &str) -> (u16, String) {
        let r = self.full(method, path).await;
        (r.status, r.body)
    }

    /// One request without a body.
    pub async fn full(&self, method: &str, path: &str) -> Response {
        let mut socket = tokio::net::TcpStream::connect(self.0)
            .await
            .expect("connect");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.0
        );
        socket.write_all(request.as_bytes()).await.expect("send");
        let mut raw = Vec::new();
        socket.read_to_end(&mut raw).await.expect("read");
        let text = String::from_utf8(raw).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head");
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        assert!(
            !headers
                .iter()
                .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked")),
            "this client reads plain bodies only"
        );
        Response {
            status,
            headers,
            body: body.to_string(),
        }
    }
}
