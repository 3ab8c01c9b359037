//! The idle reaper: ends publishes that stopped sending frames without
//! disconnecting, and forgets stream names nobody uses any more.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Engine;
use crate::error::EndReason;

impl Engine {
    /// Ends every live publish whose newest frame (or, with none yet, whose
    /// start) is older than its policy's idle timeout, and forgets ended
    /// streams past their grace period that nobody follows. Returns how many
    /// publishes it ended.
    pub fn reap_idle(&self) -> usize {
        let now = tokio::time::Instant::now();
        let mut reaped = 0;
        let mut streams = self.inner.streams.lock().unwrap_or_else(|p| p.into_inner());
        for slot in streams.values() {
            let Some(bus) = slot.live() else { continue };
            let last_us = bus.head_time_us.load(std::sync::atomic::Ordering::Relaxed);
            let idle_since = bus.started + Duration::from_micros(last_us);
            if now.saturating_duration_since(idle_since) > bus.policy.idle_timeout {
                tracing::warn!(stream = %slot.key, generation = bus.generation, "no frame for {:?}: ending the publish", bus.policy.idle_timeout);
                if slot.end(&bus, EndReason::Idle, &self.inner.emitter) {
                    reaped += 1;
                }
            }
        }
        streams.retain(|key, slot| {
            if slot.live().is_some() || Arc::strong_count(slot) > 1 {
                return true;
            }
            let grace = self
                .app(key)
                .map_or(Duration::ZERO, |a| a.policy_for(key.stream()).follow_grace);
            slot.ended_at()
                .is_none_or(|t| now.saturating_duration_since(t) <= grace)
        });
        reaped
    }

    /// Runs [`reap_idle`](Self::reap_idle) every `every` until `shutdown`.
    pub fn spawn_reaper(
        &self,
        every: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let engine = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => { engine.reap_idle(); }
                }
            }
        })
    }
}
