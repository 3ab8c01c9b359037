//! One pull's life: connect, publish, and after a failure wait (capped
//! exponential backoff) and connect again; on demand, only while read.

use std::sync::Arc;
use tidewater_core::{CancellationToken, IngestContext, StreamKey};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::attempt::{self, Stopped, Wire};
use super::backoff::Backoff;
use super::spec::{PullOptions, PullSpec, PullTransport};
use super::status::{PullState, PullStatuses};

/// Counts the readers of a stream that keep an on-demand pull going.
pub type ReaderCount = Arc<dyn Fn(&StreamKey) -> usize + Send + Sync>;

/// A wake-up for an on-demand pull: someone wants its stream.
#[derive(Debug, Default)]
pub(crate) struct Demand {
    wanted: Notify,
    /// When a reader last asked: a reader waiting for the stream to start
    /// counts as one.
    last: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Demand {
    pub(crate) fn want(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(tokio::time::Instant::now());
        self.wanted.notify_one();
    }

    fn last(&self) -> Option<tokio::time::Instant> {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) struct Worker {
    pub(crate) spec: PullSpec,
    pub(crate) options: PullOptions,
    pub(crate) ctx: IngestContext,
    pub(crate) statuses: PullStatuses,
    pub(crate) index: usize,
    pub(crate) demand: Arc<Demand>,
    pub(crate) readers: ReaderCount,
}

impl Worker {
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(self.options.retry_initial, self.options.retry_max);
        // `auto` starts over TCP and moves to UDP when TCP is refused.
        let mut wire = match self.spec.transport {
            PullTransport::Udp => Wire::Udp,
            PullTransport::Tcp | PullTransport::Auto => Wire::Tcp,
        };
        let mut idle = self.spec.on_demand;
        loop {
            if idle {
                self.statuses.set_state(self.index, PullState::Idle);
                let since = tokio::time::Instant::now();
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = self.demand.wanted.notified() => {}
                    }
                    // A wake-up left over from readers served before going
                    // idle is not a new reader.
                    if self.demand.last().is_some_and(|asked| asked >= since) {
                        break;
                    }
                }
                info!(stream = %self.spec.key, "pull: a reader asked for the stream: connecting");
                idle = false;
                backoff.reset();
            }
            self.statuses.set_state(self.index, PullState::Connecting);
            let statuses = self.statuses.clone();
            let index = self.index;
            let on_live = move || {
                statuses.update(index, |p| {
                    p.attempts = 0;
                    p.connections += 1;
                    p.connected_transport = Some(wire.as_str().into());
                });
                statuses.set_state(index, PullState::Live);
            };
            let stop = self.stop(&shutdown);
            let outcome =
                attempt::run(&self.spec, wire, &self.options, &self.ctx, stop, on_live).await;
            if shutdown.is_cancelled() {
                return;
            }
            let wait = match outcome {
                Ok(Stopped::Asked) => {
                    info!(stream = %self.spec.key, "pull: no reader for {:?}: disconnected", self.options.idle_grace);
                    idle = true;
                    continue;
                }
                Err(failure) => {
                    if failure.played {
                        backoff.reset();
                    } else if self.spec.transport == PullTransport::Auto {
                        wire = match wire {
                            Wire::Tcp => Wire::Udp,
                            Wire::Udp => Wire::Tcp,
                        };
                    }
                    let wait = backoff.failed();
                    warn!(stream = %self.spec.key, source = %self.spec.shown_url(), "pull failed: {}; retrying in {wait:?}", failure.reason);
                    self.statuses
                        .failed(self.index, backoff.failures(), &failure.reason);
                    wait
                }
            };
            // An on-demand pull whose readers left while it waits goes idle.
            let gone = self.readers_gone(&shutdown);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                () = gone => idle = true,
            }
        }
    }

    /// Resolves on shutdown, or, on demand, once the stream has had no
    /// reader for the idle grace.
    fn stop(&self, shutdown: &CancellationToken) -> impl Future<Output = ()> + use<> {
        let idle = self.readers_gone(shutdown);
        let shutdown = shutdown.clone();
        async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = idle => {}
            }
        }
    }

    /// On demand: resolves once no reader was seen (nor asked) for the
    /// idle grace; never otherwise.
    fn readers_gone(&self, shutdown: &CancellationToken) -> impl Future<Output = ()> + use<> {
        let on_demand = self.spec.on_demand;
        let (grace, poll) = (self.options.idle_grace, self.options.demand_poll);
        let readers = Arc::clone(&self.readers);
        let key = self.spec.key.clone();
        let demand = Arc::clone(&self.demand);
        let shutdown = shutdown.clone();
        async move {
            if !on_demand {
                return std::future::pending().await;
            }
            let mut last_seen = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return std::future::pending().await,
                    () = tokio::time::sleep(poll) => {}
                }
                let now = tokio::time::Instant::now();
                if readers(&key) > 0 {
                    last_seen = now;
                }
                if let Some(asked) = demand.last() {
                    last_seen = last_seen.max(asked);
                }
                if now.duration_since(last_seen) >= grace {
                    return;
                }
            }
        }
    }
}
