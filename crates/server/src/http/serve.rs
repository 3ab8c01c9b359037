//! The HTTP and HTTPS listeners: an accept loop over hyper's HTTP/1.1
//! connections (axum's own `serve` has no header read timeout).
//!
//! Each connection:
//!
//! - is counted in the engine's listener counters (`http` or `https`):
//!   accepted and open while it lasts, or refused;
//! - is closed at once, counted as refused (`too_many_connections`), when
//!   `http.max_connections` connections of both listeners are open already;
//! - must send each request head (and, over HTTPS, finish its TLS handshake)
//!   within `http.header_read_timeout_ms`, also after a response while kept
//!   alive; one that does not is closed and counted (`header_timeout`, or
//!   `handshake_timeout` for TLS; a failed handshake is `tls_handshake`);
//! - reaches the router with the peer's address
//!   ([`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo)) and the
//!   [`Listener`] it came in on, as request extensions.
//!
//! On shutdown the loop stops accepting, asks every connection to finish
//! its response in flight and close, and returns when all are closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tidewater::{CancellationToken, ListenerStats};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::tls::LiveTls;

/// The listener a request came in on (`http` or `https`), as a request
/// extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listener(pub &'static str);

/// The limits of every HTTP connection; clones share the connection count.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    pub(crate) header_read_timeout: Duration,
    pub(crate) open: Arc<Semaphore>,
}

impl Limits {
    pub(crate) fn new(header_read_timeout: Duration, max_connections: usize) -> Self {
        Limits {
            header_read_timeout,
            open: Arc::new(Semaphore::new(max_connections.min(Semaphore::MAX_PERMITS))),
        }
    }
}

/// How long to wait after an accept error that is not about one connection
/// (out of file descriptors): retrying at once would spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// At most one warning about refused connections per this long.
const REFUSAL_WARNING_EVERY: Duration = Duration::from_secs(10);

/// Lines about connections closed by the server (a header or handshake
/// timeout, a failed TLS handshake, a malformed request head): the first of
/// each cause names its peer, then at most one per cause per
/// [`REFUSAL_WARNING_EVERY`], with how many were closed since, so a
/// slowloris or a scanner cannot flood the log.
#[derive(Default)]
struct ClosedLog {
    /// Per cause: when its last line was written and how many closes it left out since.
    causes: std::sync::Mutex<Vec<(&'static str, Instant, u64)>>,
}

impl ClosedLog {
    /// Logs (at info) that `peer`'s connection on `name` was closed because
    /// of `cause` (`why` says it for a reader), or counts it for the next line.
    fn closed(&self, name: &str, peer: SocketAddr, cause: &'static str, why: &str) {
        let now = Instant::now();
        let mut causes = self
            .causes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let more = match causes.iter_mut().find(|(c, _, _)| *c == cause) {
            Some(entry) if now.duration_since(entry.1) < REFUSAL_WARNING_EVERY => {
                entry.2 += 1;
                return;
            }
            Some(entry) => {
                let more = entry.2;
                *entry = (cause, now, 0);
                more
            }
            None => {
                causes.push((cause, now, 0));
                0
            }
        };
        drop(causes);
        if more == 0 {
            tracing::info!("{name}: closed the connection of {peer}: {why}");
        } else {
            tracing::info!(
                "{name}: closed the connection of {peer}: {why} (and {more} more for this \
                 cause since the last such line)"
            );
        }
    }
}

/// One listener being served.
pub(crate) struct HttpListener {
    pub(crate) listener: TcpListener,
    pub(crate) name: &'static str,
    pub(crate) tls: Option<LiveTls>,
    pub(crate) limits: Limits,
    pub(crate) stats: Arc<ListenerStats>,
}

impl HttpListener {
    /// Serves `router` until `shutdown`, then lets open connections finish
    /// their response in flight and returns once all are closed.
    pub(crate) async fn serve(self, router: Router, shutdown: CancellationToken) {
        let HttpListener {
            listener,
            name,
            tls,
            limits,
            stats,
        } = self;
        let mut connections = JoinSet::new();
        let closed_log = Arc::new(ClosedLog::default());
        let mut refused_since_warning = 0u64;
        let mut last_warning: Option<Instant> = None;
        loop {
            let (stream, peer) = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) if is_per_connection(&e) => continue,
                    Err(e) => {
                        tracing::warn!("{name}: accepting connections failed: {e}");
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                        }
                    }
                },
            };
            let Ok(permit) = limits.open.clone().try_acquire_owned() else {
                drop(stream);
                stats.refused("too_many_connections");
                refused_since_warning += 1;
                if last_warning.is_none_or(|at| at.elapsed() >= REFUSAL_WARNING_EVERY) {
                    tracing::warn!(
                        "{name}: closed {refused_since_warning} connection(s) (the last from \
                         {peer}): http.max_connections are open"
                    );
                    last_warning = Some(Instant::now());
                    refused_since_warning = 0;
                }
                continue;
            };
            let open = stats.accepted();
            let (stats, router, tls, shutdown, closed_log) = (
                stats.clone(),
                router.clone(),
                tls.clone(),
                shutdown.clone(),
                closed_log.clone(),
            );
            let timeout = limits.header_read_timeout;
            // A panic in a connection's task (a handler's) ends that connection alone.
            let contain = Arc::clone(&stats);
            connections.spawn(tidewater::contained(&contain, peer, async move {
                let _counted = (permit, open);
                let _ = stream.set_nodelay(true);
                let result = match tls {
                    None => connection(stream, peer, name, router, timeout, shutdown).await,
                    Some(tls) => {
                        match tokio::time::timeout(timeout, tls.acceptor().accept(stream)).await {
                            Ok(Ok(stream)) => {
                                connection(stream, peer, name, router, timeout, shutdown).await
                            }
                            Ok(Err(e)) => {
                                closed_log.closed(
                                    name,
                                    peer,
                                    "tls_handshake",
                                    &format!("TLS handshake failed: {e}"),
                                );
                                stats.refused("tls_handshake");
                                return;
                            }
                            Err(_) => {
                                closed_log.closed(
                                    name,
                                    peer,
                                    "handshake_timeout",
                                    &format!(
                                        "no TLS handshake within {timeout:?} \
                                         (http.header_read_timeout_ms)"
                                    ),
                                );
                                stats.refused("handshake_timeout");
                                return;
                            }
                        }
                    }
                };
                match result {
                    Ok(()) => {}
                    Err(Closed::Timeout) => {
                        closed_log.closed(
                            name,
                            peer,
                            "header_timeout",
                            &format!(
                                "no complete request head within {timeout:?} \
                                 (http.header_read_timeout_ms)"
                            ),
                        );
                        stats.refused("header_timeout");
                    }
                    // A request head that does not parse (answered 400 or
                    // 431 by hyper): the peer is worth naming.
                    Err(Closed::Error(e)) if e.is_parse() || e.is_parse_too_large() => {
                        closed_log.closed(name, peer, "bad_request", &format!("{e}"));
                    }
                    Err(Closed::Error(e)) => {
                        tracing::debug!("{name}: connection of {peer} ended: {e}");
                    }
                }
            }));
        }
        drop(listener);
        while connections.join_next().await.is_some() {}
    }
}

/// Why a connection ended other than cleanly.
enum Closed {
    Timeout,
    Error(hyper::Error),
}

/// Serves one connection's requests until it closes, or until `shutdown`
/// and the end of the response in flight.
async fn connection<I>(
    io: I,
    peer: SocketAddr,
    name: &'static str,
    router: Router,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) -> Result<(), Closed>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(Listener(name));
        let router = router.clone();
        async move { router.oneshot(request).await }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    result.map_err(|e| match e.is_timeout() {
        true => Closed::Timeout,
        false => Closed::Error(e),
    })
}

/// Errors of `accept` that concern one connection only (it was reset
/// before being accepted): the listener is fine.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}
