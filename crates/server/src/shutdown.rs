//! Graceful stop: what SIGTERM and the first SIGINT do, phase by phase.
//!
//! 1. **Ingest stops**: the [`PublishGate`] closes (every new publish, on
//!    any protocol, is refused as `the server is shutting down`), the
//!    `[[pull]]` worker stops (its publishes are trusted, not asked of the
//!    gate: [`IngestWorker`]), and every live publish ends
//!    ([`Engine::shutdown`]). Each output then finalizes through its own end
//!    path: HLS and LL-HLS playlists get `EXT-X-ENDLIST`, DASH MPDs turn
//!    `type="static"` with their duration, recordings close their last part
//!    and update their index, pushes stop, RTMP/RTSP/SRT/WHEP readers and
//!    HTTP-FLV/TS responses reach the end of their stream. A stream whose
//!    publisher left shortly before (within its follow grace, waiting for a
//!    republish, so not live) is finalized too: the packagers and the
//!    recorder are told to end everything they still hold. The phase waits
//!    (up to [`FINALIZE_TIMEOUT`]) until no recording is open.
//! 2. **Drain**: HTTP keeps accepting and serving for `[server] drain_ms`,
//!    or until no reader session is left, so players fetch the final
//!    playlists, MPDs and segments.
//! 3. **Close**: the HTTP listeners stop accepting and close their
//!    connections once the response in flight is sent (closed after
//!    [`DRAIN_TIMEOUT`](crate::DRAIN_TIMEOUT) otherwise), the protocol
//!    listeners close with their sessions, and the process exits 0.
//!
//! Each phase logs one line (`shutdown: …`). A second signal exits at once
//! (the binary's signal task, see [`ShutdownSignals`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tidewater::{
    Action, AuthRequest, Authorizer, CancellationToken, Engine, Identity, InboundProtocol,
    IngestContext, Refusal, RefusalKind, SessionKind, StreamKey,
};

use crate::error::{Error, Result};

/// How long phase 1 waits for the recordings to close their files.
pub const FINALIZE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the phases look at what is left.
const POLL: Duration = Duration::from_millis(50);

/// Open until a graceful stop starts; then every publish is refused.
/// Clones share the state.
#[derive(Clone, Debug, Default)]
pub struct PublishGate(Arc<AtomicBool>);

impl PublishGate {
    /// Refuses every publish from now on.
    pub fn close(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether publishes are refused.
    pub fn is_closed(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// `inner` behind this gate: it answers every request, except a publish
    /// once the gate is closed.
    pub(crate) fn guard(&self, inner: Arc<dyn Authorizer>) -> Gated {
        Gated {
            gate: self.clone(),
            inner,
        }
    }
}

/// An authorizer behind a [`PublishGate`].
pub(crate) struct Gated {
    gate: PublishGate,
    inner: Arc<dyn Authorizer>,
}

#[async_trait]
impl Authorizer for Gated {
    async fn authorize(&self, request: &AuthRequest) -> std::result::Result<Identity, Refusal> {
        // The protocols tell a refused publisher why (RTMP onStatus, RTSP
        // and WHIP 503, SRT's rejection), and the kernel logs it.
        if request.action == Action::Publish && self.gate.is_closed() {
            return Err(Refusal::new(
                RefusalKind::Unavailable,
                "the server is shutting down",
            ));
        }
        self.inner.authorize(request).await
    }

    fn read_token(
        &self,
        key: &StreamKey,
        who: &Identity,
        ip: Option<std::net::IpAddr>,
    ) -> Option<String> {
        self.inner.read_token(key, who, ip)
    }

    fn realm(&self) -> String {
        self.inner.realm()
    }

    fn digest_nonce(&self) -> Option<String> {
        self.inner.digest_nonce()
    }
}

/// A protocol worker that only brings streams in (the camera pulls, whose
/// publishes are internal and never asked of the [`PublishGate`]): it
/// stops when ingest stops (`stop`), before the listeners do.
pub(crate) struct IngestWorker {
    pub(crate) inner: Arc<dyn InboundProtocol>,
    pub(crate) stop: CancellationToken,
}

#[async_trait]
impl InboundProtocol for IngestWorker {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn serve(
        &self,
        ctx: IngestContext,
        shutdown: CancellationToken,
    ) -> tidewater::Result<()> {
        let token = shutdown.child_token();
        let (stop, early) = (self.stop.clone(), token.clone());
        let watch = tokio::spawn(async move {
            stop.cancelled().await;
            early.cancel();
        });
        let result = self.inner.serve(ctx, token).await;
        watch.abort();
        result
    }
}

/// Phase 1: closes `gate`, stops the `ingest_workers` (pulls), ends every
/// live publish, then every packaging (`finish_packagers`: those of streams
/// in their follow grace, which the kernel's shutdown does not end), stops
/// the recorder (its token) and waits until its recordings are closed; logs
/// what was finalized.
pub(crate) async fn stop_ingest(
    engine: &Engine,
    gate: &PublishGate,
    ingest_workers: &CancellationToken,
    recorder: Option<(&tidewater::record::Recorder, &CancellationToken)>,
    finish_packagers: impl FnOnce(),
) {
    gate.close();
    let streams: Vec<String> = engine
        .streams()
        .into_iter()
        .map(|s| s.key.to_string())
        .collect();
    let recording = recorder.map_or(0, |(r, _)| r.library().status().len());
    ingest_workers.cancel();
    engine.shutdown();
    finish_packagers();
    // The recorder stops too: a stream whose publisher left shortly before
    // (within its follow grace, not live, so not ended above) has its
    // last part written now rather than when the grace ends.
    if let Some((_, stop)) = recorder {
        stop.cancel();
    }
    let deadline = Instant::now() + FINALIZE_TIMEOUT;
    let open = loop {
        let open = recorder.map_or(0, |(r, _)| r.library().status().len());
        if open == 0 || Instant::now() >= deadline {
            break open;
        }
        tokio::time::sleep(POLL).await;
    };
    let named = match streams.is_empty() {
        true => "none".to_string(),
        false => streams.join(", "),
    };
    tracing::info!(
        "shutdown: publishes refused; {} live stream(s) ended ({named}); every packaging \
         finalized; {} recording(s) closed",
        streams.len(),
        recording.saturating_sub(open),
    );
    if open > 0 {
        tracing::warn!(
            "shutdown: {open} recording(s) still writing after {FINALIZE_TIMEOUT:?}: \
             their last part may be repaired on the next start"
        );
    }
}

/// Phase 2: keeps serving for `drain`, or until no reader session is left.
pub(crate) async fn drain(engine: &Engine, drain: Duration) {
    let readers = reader_count(engine);
    tracing::info!(
        "shutdown: draining for up to {} ms ([server] drain_ms) for {readers} reader(s) to fetch the end",
        drain.as_millis()
    );
    let deadline = Instant::now() + drain;
    while Instant::now() < deadline && reader_count(engine) > 0 {
        tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// Phase 3's line: the sessions still open, by protocol, that closing ends.
pub(crate) fn log_closing(engine: &Engine) {
    let mut by_protocol: BTreeMap<&'static str, usize> = BTreeMap::new();
    for s in engine.sessions() {
        *by_protocol.entry(s.protocol).or_default() += 1;
    }
    let total: usize = by_protocol.values().sum();
    let detail = match by_protocol.is_empty() {
        true => String::new(),
        false => format!(
            " ({})",
            by_protocol
                .iter()
                .map(|(p, n)| format!("{p} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    tracing::info!("shutdown: drained; closing {total} session(s){detail} and every listener");
}

fn reader_count(engine: &Engine) -> usize {
    engine
        .sessions()
        .iter()
        .filter(|s| s.kind == SessionKind::Reader)
        .count()
}

/// SIGINT and SIGTERM (Ctrl-C only, off Unix), installed at once so that a
/// signal arriving before anyone waits is not lost.
#[derive(Debug)]
pub struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Installs the handlers; from then on these signals no longer kill the
    /// process. Must be called inside a Tokio runtime.
    pub fn install() -> Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(ShutdownSignals {
                interrupt: signal(SignalKind::interrupt()).map_err(Error::Signal)?,
                terminate: signal(SignalKind::terminate()).map_err(Error::Signal)?,
            })
        }
        #[cfg(not(unix))]
        Ok(ShutdownSignals {})
    }

    /// Waits for the next signal; returns its name.
    pub async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "SIGINT",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            match tokio::signal::ctrl_c().await {
                Ok(()) => "Ctrl-C",
                Err(_) => std::future::pending().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater::PermitAll;

    /// A worker that runs until its token is cancelled.
    struct UntilCancelled;

    #[async_trait]
    impl InboundProtocol for UntilCancelled {
        fn name(&self) -> &'static str {
            "until-cancelled"
        }

        async fn serve(
            &self,
            _ctx: IngestContext,
            shutdown: CancellationToken,
        ) -> tidewater::Result<()> {
            shutdown.cancelled().await;
            Ok(())
        }
    }

    #[tokio::test]
    async fn an_ingest_worker_stops_with_ingest_or_with_everything() {
        let engine = Engine::builder()
            .default_app(tidewater::AppSpec::default())
            .build()
            .expect("engine");
        for ingest_first in [true, false] {
            let (stop, all) = (CancellationToken::new(), CancellationToken::new());
            let worker = IngestWorker {
                inner: Arc::new(UntilCancelled),
                stop: stop.clone(),
            };
            assert_eq!(worker.name(), "until-cancelled");
            let (ctx, token) = (engine.context(), all.clone());
            let running = tokio::spawn(async move { worker.serve(ctx, token).await });
            tokio::task::yield_now().await;
            assert!(!running.is_finished());
            if ingest_first {
                stop.cancel();
            } else {
                all.cancel();
            }
            running.await.expect("joined").expect("a clean stop");
        }
    }

    #[tokio::test]
    async fn a_closed_gate_refuses_publishes_and_nothing_else() {
        let gate = PublishGate::default();
        let gated = gate.guard(Arc::new(PermitAll));
        let key = StreamKey::parse("live/cam").expect("key");
        let ask = |action| {
            let mut r = AuthRequest::new(action, "rtmp");
            r.key = Some(key.clone());
            r
        };
        assert!(gated.authorize(&ask(Action::Publish)).await.is_ok());
        gate.close();
        let refused = gated
            .authorize(&ask(Action::Publish))
            .await
            .expect_err("refused once closed");
        assert_eq!(refused.kind(), RefusalKind::Unavailable);
        assert!(refused.reason().contains("shutting down"));
        for action in [Action::Read, Action::Playback, Action::Api, Action::Metrics] {
            assert!(gated.authorize(&ask(action)).await.is_ok(), "{action:?}");
        }
    }
}
