//! The state of every pull, shared with whoever shows it (the server's API).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tidewater_core::StreamKey;

/// Where a pull is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullState {
    /// An on-demand pull waiting for its first reader.
    Idle,
    /// Connecting: `DESCRIBE`, `SETUP`, `PLAY`.
    Connecting,
    /// Media flows into the stream.
    Live,
    /// The last attempt failed; waiting before the next one.
    Retrying,
}

impl PullState {
    /// `idle`, `connecting`, `live` or `retrying`.
    pub fn as_str(self) -> &'static str {
        match self {
            PullState::Idle => "idle",
            PullState::Connecting => "connecting",
            PullState::Live => "live",
            PullState::Retrying => "retrying",
        }
    }
}

/// One pull as seen from outside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullSnapshot {
    /// The stream it publishes.
    pub key: StreamKey,
    /// The source, with the user and without the password.
    pub url: String,
    /// The configured transport (`tcp`, `udp`, `auto`).
    pub transport: String,
    /// The transport of the current or last connection, once one was made.
    pub connected_transport: Option<String>,
    /// Whether it connects only while read.
    pub on_demand: bool,
    /// Where it is.
    pub state: PullState,
    /// Since when (milliseconds since the Unix epoch).
    pub since_unix_ms: u64,
    /// Failed attempts in a row (0 once live).
    pub attempts: u32,
    /// Connections made since the server started (1 for a source that never went away).
    pub connections: u64,
    /// The last failure, if any, and when it happened.
    pub last_error: Option<String>,
    /// When the last failure happened (milliseconds since the Unix epoch).
    pub last_error_unix_ms: Option<u64>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Every pull's state, in configuration order. Cheap to clone.
#[derive(Clone, Default)]
pub struct PullStatuses {
    inner: Arc<Mutex<Vec<PullSnapshot>>>,
}

impl std::fmt::Debug for PullStatuses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullStatuses").finish_non_exhaustive()
    }
}

impl PullStatuses {
    fn lock(&self) -> MutexGuard<'_, Vec<PullSnapshot>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every pull, in configuration order.
    pub fn all(&self) -> Vec<PullSnapshot> {
        self.lock().clone()
    }

    /// The pull of a stream, if one publishes it.
    pub fn of(&self, key: &StreamKey) -> Option<PullSnapshot> {
        self.lock().iter().find(|p| &p.key == key).cloned()
    }

    /// Adds a pull; returns its index for [`update`](Self::update).
    pub(crate) fn add(&self, snapshot: PullSnapshot) -> usize {
        let mut all = self.lock();
        all.push(snapshot);
        all.len() - 1
    }

    pub(crate) fn update(&self, index: usize, change: impl FnOnce(&mut PullSnapshot)) {
        if let Some(entry) = self.lock().get_mut(index) {
            change(entry);
        }
    }

    /// Moves pull `index` to `state` (its `since` changes only with the state).
    pub(crate) fn set_state(&self, index: usize, state: PullState) {
        self.update(index, |p| {
            if p.state != state {
                p.state = state;
                p.since_unix_ms = unix_ms(SystemTime::now());
            }
        });
    }

    /// Records a failure of pull `index`.
    pub(crate) fn failed(&self, index: usize, attempts: u32, error: &str) {
        self.update(index, |p| {
            p.attempts = attempts;
            p.last_error = Some(error.to_string());
            p.last_error_unix_ms = Some(unix_ms(SystemTime::now()));
        });
        self.set_state(index, PullState::Retrying);
    }

    pub(crate) fn now_ms() -> u64 {
        unix_ms(SystemTime::now())
    }
}
