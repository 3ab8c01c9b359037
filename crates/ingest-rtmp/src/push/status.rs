//! The status of pushes: [`PushMachine`], one push's state and reconnection
//! schedule (a sans-IO machine driven by the push's worker with the times it
//! observes, tested on virtual time), and [`PushStatuses`], the table of
//! every running push that an API reads.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tidewater_core::StreamKey;
use tokio::time::Instant;

/// How many of the last errors a push keeps.
pub const KEPT_ERRORS: usize = 5;

/// A connection that stayed up at least this long starts the backoff over.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);

/// The state of a push, as the API shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushState {
    /// Connecting for the first time.
    Starting,
    /// Publishing to the destination.
    Active,
    /// The connection failed or was lost; waiting to try again, or trying.
    Reconnecting,
    /// Gave up (after `max_attempts` failures in a row); the next publish of
    /// the stream tries again.
    Failed,
}

impl PushState {
    /// `starting`, `active`, `reconnecting` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            PushState::Starting => "starting",
            PushState::Active => "active",
            PushState::Reconnecting => "reconnecting",
            PushState::Failed => "failed",
        }
    }
}

/// Capped exponential backoff between connection attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure; it doubles with each failure in a row.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
    /// Failures in a row before the push gives up (0: never).
    pub max_attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            max_attempts: 0,
        }
    }
}

impl Backoff {
    /// The wait after `failures` failures in a row (1 or more).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(32);
        self.initial
            .saturating_mul(1u32.checked_shl(doublings).unwrap_or(u32::MAX))
            .min(self.max.max(self.initial))
    }
}

/// One recorded error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushError {
    /// When it happened, Unix milliseconds.
    pub at_unix_ms: u64,
    /// What happened.
    pub message: String,
}

/// What the push task does after a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Try again after this long.
    RetryAfter(Duration),
    /// Stop trying (the state is [`PushState::Failed`]).
    GiveUp,
}

/// The status of one push: state, counters and the reconnection schedule.
///
/// Times come in as arguments: `now` is a monotonic reading (the driver
/// passes `tokio::time::Instant`, whose clock tests can pause and advance)
/// and `unix_ms` the wall clock, only for display.
#[derive(Clone, Debug)]
pub struct PushMachine<I> {
    backoff: Backoff,
    state: PushState,
    attempts: u64,
    failures_in_row: u32,
    connected_at: Option<I>,
    connected_since_unix_ms: Option<u64>,
    retry_at_unix_ms: Option<u64>,
    errors: VecDeque<PushError>,
}

impl<I> PushMachine<I>
where
    I: Copy + std::ops::Sub<I, Output = Duration>,
{
    /// A push about to connect for the first time.
    pub fn new(backoff: Backoff) -> Self {
        PushMachine {
            backoff,
            state: PushState::Starting,
            attempts: 0,
            failures_in_row: 0,
            connected_at: None,
            connected_since_unix_ms: None,
            retry_at_unix_ms: None,
            errors: VecDeque::new(),
        }
    }

    /// The state.
    pub fn state(&self) -> PushState {
        self.state
    }

    /// A connection attempt begins.
    pub fn on_attempt(&mut self) {
        self.attempts += 1;
        self.retry_at_unix_ms = None;
    }

    /// The destination accepted the publish.
    pub fn on_connected(&mut self, now: I, unix_ms: u64) {
        self.state = PushState::Active;
        self.connected_at = Some(now);
        self.connected_since_unix_ms = Some(unix_ms);
        self.retry_at_unix_ms = None;
    }

    /// An attempt failed or an active connection was lost: records the
    /// error and says when to try again.
    pub fn on_failure(&mut self, now: I, unix_ms: u64, message: String) -> Next {
        if let Some(at) = self.connected_at.take()
            && now - at >= STABLE_AFTER
        {
            self.failures_in_row = 0;
        }
        self.connected_since_unix_ms = None;
        self.failures_in_row = self.failures_in_row.saturating_add(1);
        if self.errors.len() == KEPT_ERRORS {
            self.errors.pop_front();
        }
        self.errors.push_back(PushError {
            at_unix_ms: unix_ms,
            message,
        });
        if self.backoff.max_attempts > 0 && self.failures_in_row >= self.backoff.max_attempts {
            self.state = PushState::Failed;
            return Next::GiveUp;
        }
        self.state = PushState::Reconnecting;
        let delay = self.backoff.delay(self.failures_in_row);
        self.retry_at_unix_ms = Some(unix_ms.saturating_add(delay.as_millis() as u64));
        Next::RetryAfter(delay)
    }

    /// A failed push starts over (the stream was published anew).
    pub fn restart(&mut self) {
        self.state = PushState::Starting;
        self.failures_in_row = 0;
        self.retry_at_unix_ms = None;
    }

    /// A copy for display.
    pub fn snapshot(&self) -> PushSnapshotStatus {
        PushSnapshotStatus {
            state: self.state,
            attempts: self.attempts,
            failures_in_row: self.failures_in_row,
            connected_since_unix_ms: self.connected_since_unix_ms,
            next_attempt_unix_ms: self.retry_at_unix_ms,
            last_errors: self.errors.iter().cloned().collect(),
        }
    }
}

/// The status part of a push snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushSnapshotStatus {
    /// The state.
    pub state: PushState,
    /// Connection attempts so far.
    pub attempts: u64,
    /// Failures since the last stable connection.
    pub failures_in_row: u32,
    /// Since when the current connection is publishing (Unix ms), when active.
    pub connected_since_unix_ms: Option<u64>,
    /// When the next attempt is due (Unix ms), while waiting to reconnect.
    pub next_attempt_unix_ms: Option<u64>,
    /// The last few errors, oldest first.
    pub last_errors: Vec<PushError>,
}

/// One push as an API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushSnapshot {
    /// The destination, without its query.
    pub url: String,
    /// State and counters.
    pub status: PushSnapshotStatus,
}

/// One running push's entry in the table: its destination as shown, and its
/// machine, updated by the push's worker and read by the API.
pub(crate) struct PushEntry {
    url: String,
    machine: Mutex<PushMachine<Instant>>,
}

impl PushEntry {
    /// The destination, without its query.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Runs `f` on the machine.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut PushMachine<Instant>) -> T) -> T {
        f(&mut self.machine.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn snapshot(&self) -> PushSnapshot {
        PushSnapshot {
            url: self.url.clone(),
            status: self.with(|m| m.snapshot()),
        }
    }
}

type Table = BTreeMap<StreamKey, Vec<Arc<PushEntry>>>;

/// The pushes of every stream, for an API. Cheap to clone.
#[derive(Clone, Default)]
pub struct PushStatuses {
    inner: Arc<Mutex<Table>>,
}

impl std::fmt::Debug for PushStatuses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushStatuses").finish_non_exhaustive()
    }
}

impl PushStatuses {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pushes of a stream, in configuration order; `None` when it has none running.
    pub fn of(&self, key: &StreamKey) -> Option<Vec<PushSnapshot>> {
        self.lock()
            .get(key)
            .filter(|l| !l.is_empty())
            .map(|l| l.iter().map(|e| e.snapshot()).collect())
    }

    /// Every stream's pushes.
    pub fn all(&self) -> BTreeMap<StreamKey, Vec<PushSnapshot>> {
        self.lock()
            .iter()
            .filter(|(_, l)| !l.is_empty())
            .map(|(k, l)| (k.clone(), l.iter().map(|e| e.snapshot()).collect()))
            .collect()
    }

    /// Lists a new push of `key` to `url` (shown without its query); `None`
    /// when a push of the stream to that destination is running already.
    pub(crate) fn add(
        &self,
        key: &StreamKey,
        url: String,
        backoff: Backoff,
    ) -> Option<Arc<PushEntry>> {
        let mut table = self.lock();
        let list = table.entry(key.clone()).or_default();
        if list.iter().any(|e| e.url == url) {
            return None;
        }
        let entry = Arc::new(PushEntry {
            url,
            machine: Mutex::new(PushMachine::new(backoff)),
        });
        list.push(Arc::clone(&entry));
        Some(entry)
    }

    /// Unlists a push.
    pub(crate) fn remove(&self, key: &StreamKey, entry: &Arc<PushEntry>) {
        remove_entry(&mut self.lock(), key, entry);
    }

    /// Unlists a push unless `live()` says its stream is live again; both
    /// under the table's lock, so that a publish that starts meanwhile either
    /// finds the push listed (and leaves it to go on) or starts a new one.
    pub(crate) fn remove_unless(
        &self,
        key: &StreamKey,
        entry: &Arc<PushEntry>,
        live: impl FnOnce() -> bool,
    ) -> bool {
        let mut table = self.lock();
        if live() {
            return false;
        }
        remove_entry(&mut table, key, entry);
        true
    }
}

fn remove_entry(table: &mut Table, key: &StreamKey, entry: &Arc<PushEntry>) {
    if let Some(list) = table.get_mut(key) {
        list.retain(|e| !Arc::ptr_eq(e, entry));
        if list.is_empty() {
            table.remove(key);
        }
    }
}

/// The wall clock, Unix milliseconds (for display only).
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(max_attempts: u32) -> Backoff {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(8),
            max_attempts,
        }
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let b = backoff(0);
        let delays: Vec<u64> = (1..=8).map(|n| b.delay(n).as_millis() as u64).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 8000, 8000, 8000]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(8));
    }

    #[tokio::test(start_paused = true)]
    async fn states_attempts_errors_and_the_schedule_on_virtual_time() {
        let mut m = PushMachine::new(backoff(0));
        assert_eq!(m.state(), PushState::Starting);
        // Three failed attempts: waits of 0.5, 1 and 2 s, taken on the paused clock.
        let start = Instant::now();
        for (i, want) in [500u64, 1000, 2000].into_iter().enumerate() {
            m.on_attempt();
            let next = m.on_failure(Instant::now(), 1_000, format!("refused {i}"));
            assert_eq!(next, Next::RetryAfter(Duration::from_millis(want)));
            assert_eq!(m.state(), PushState::Reconnecting);
            tokio::time::sleep(Duration::from_millis(want)).await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(3500));
        m.on_attempt();
        m.on_connected(Instant::now(), 5_000);
        let s = m.snapshot();
        assert_eq!(
            (s.state, s.attempts, s.connected_since_unix_ms),
            (PushState::Active, 4, Some(5_000))
        );
        assert_eq!(s.last_errors.len(), 3);

        // Lost after 2 s: not stable, the backoff goes on (4 s).
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            m.on_failure(Instant::now(), 7_000, "reset".into()),
            Next::RetryAfter(Duration::from_secs(4))
        );
        assert_eq!(m.snapshot().next_attempt_unix_ms, Some(11_000));
        assert_eq!(m.snapshot().connected_since_unix_ms, None);

        // Up for a minute, then lost: the backoff starts over.
        m.on_attempt();
        m.on_connected(Instant::now(), 8_000);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            m.on_failure(Instant::now(), 68_000, "reset".into()),
            Next::RetryAfter(Duration::from_millis(500))
        );
        // Only the last few errors are kept.
        for i in 0..10 {
            m.on_failure(Instant::now(), 70_000, format!("e{i}"));
        }
        let errors = m.snapshot().last_errors;
        assert_eq!(errors.len(), KEPT_ERRORS);
        assert_eq!(errors.last().map(|e| e.message.as_str()), Some("e9"));
        assert_eq!(errors[0].message, "e5");
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_attempts_and_restarts_on_request() {
        let mut m = PushMachine::new(backoff(3));
        for _ in 0..2 {
            m.on_attempt();
            assert!(matches!(
                m.on_failure(Instant::now(), 0, "down".into()),
                Next::RetryAfter(_)
            ));
        }
        m.on_attempt();
        assert_eq!(m.on_failure(Instant::now(), 0, "down".into()), Next::GiveUp);
        assert_eq!(m.state(), PushState::Failed);
        m.restart();
        assert_eq!(m.state(), PushState::Starting);
        m.on_attempt();
        assert_eq!(
            m.on_failure(Instant::now(), 0, "down".into()),
            Next::RetryAfter(Duration::from_millis(500))
        );
        assert_eq!(m.snapshot().attempts, 4);
    }
}
