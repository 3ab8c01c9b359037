//! The players of the packaged streams, as sessions of the engine.
//!
//! The kernel sees one subscription per packaged stream (the packager's);
//! the players are registered here, one [`PlayerSession`] each, so the
//! engine lists them and can kick them. A player is known by its **seat**:
//! the stream, the flavour and either the read token its URIs carry (when
//! the authorizer hands out tokens) or its address (when reads are
//! anonymous, and URIs stay plain). A token seat is also found by the
//! stream, flavour, user and address of a request that brings no token (a
//! player that reloads its playlist with its credentials rather than with
//! the URI it was given), so such a player stays one session.
//!
//! Time is passed in as milliseconds on the service's clock, so the rules
//! are tested without one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tidewater_core::{Identity, PlayerSession, StreamKey};

use crate::playlist::Flavour;

/// How long the token of a kicked player stays refused (an hour: read
/// tokens live minutes; a longer-lived token presented as `?token=` is
/// refused at least that long).
const REVOKED_MS: u64 = 3_600_000;

/// At most this many revoked tokens are remembered (the oldest go first).
const MAX_REVOKED: usize = 65_536;

/// Who a player is within its stream and flavour.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Who {
    /// The read token in its URIs (as written in them).
    Token(String),
    /// Its address, when reads are anonymous (`None`: unknown).
    Address(Option<IpAddr>),
}

/// Where a player sits: its stream, flavour and who it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Seat {
    pub(crate) key: StreamKey,
    pub(crate) flavour: Flavour,
    pub(crate) who: Who,
}

/// The user and address a token seat is also found by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct UserSeat {
    pub(crate) key: StreamKey,
    pub(crate) flavour: Flavour,
    pub(crate) user: Option<String>,
    pub(crate) ip: Option<IpAddr>,
}

/// One player.
#[derive(Debug)]
pub(crate) struct Player {
    /// Its session in the engine (dropped with the last clone of the player).
    pub(crate) session: PlayerSession,
    /// Who the authorizer recognized when it started.
    pub(crate) identity: Identity,
    /// The token its URIs carry, if reads need one.
    pub(crate) token: Option<String>,
    seat: Seat,
    user_seat: Option<UserSeat>,
    last_ms: AtomicU64,
}

impl Player {
    fn touch(&self, now_ms: u64) {
        self.last_ms.fetch_max(now_ms, Ordering::Relaxed);
    }
}

/// What a lookup found.
#[derive(Debug)]
pub(crate) enum Found {
    /// A live player.
    Live(Arc<Player>),
    /// A player the operator kicked (now forgotten), or its revoked token:
    /// refuse.
    Ended,
    /// Nobody.
    Nobody,
}

/// A player to seat.
#[derive(Debug)]
pub(crate) struct Newcomer {
    pub(crate) seat: Seat,
    pub(crate) user_seat: Option<UserSeat>,
    pub(crate) identity: Identity,
}

/// Every player of one service.
#[derive(Debug, Default)]
pub(crate) struct Players {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    players: HashMap<Seat, Arc<Player>>,
    by_user: HashMap<UserSeat, Seat>,
    /// Tokens of kicked players, with when they were kicked.
    revoked: HashMap<String, u64>,
    /// Whether a sweeper task runs.
    sweeping: bool,
}

impl State {
    /// Forgets a player; a kicked one's token is revoked.
    fn remove(&mut self, seat: &Seat, now_ms: u64) -> Option<Arc<Player>> {
        let player = self.players.remove(seat)?;
        if let Some(us) = &player.user_seat
            && self.by_user.get(us) == Some(seat)
        {
            self.by_user.remove(us);
        }
        if player.session.is_kicked()
            && let Who::Token(t) = &seat.who
        {
            self.revoked.insert(t.clone(), now_ms);
            if self.revoked.len() > MAX_REVOKED
                && let Some(oldest) = self
                    .revoked
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(t, _)| t.clone())
            {
                self.revoked.remove(&oldest);
            }
        }
        Some(player)
    }

    fn find(&mut self, seat: &Seat, now_ms: u64) -> Found {
        if let Who::Token(t) = &seat.who
            && self.revoked.contains_key(t)
        {
            return Found::Ended;
        }
        match self.players.get(seat) {
            None => Found::Nobody,
            Some(p) if p.session.is_kicked() => {
                self.remove(seat, now_ms);
                Found::Ended
            }
            Some(p) => {
                p.touch(now_ms);
                Found::Live(p.clone())
            }
        }
    }
}

impl Players {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The player in `seat`. A kicked one is forgotten (its token revoked)
    /// and reported [`Found::Ended`] once; a revoked token is `Ended` too.
    pub(crate) fn find(&self, seat: &Seat, now_ms: u64) -> Found {
        self.lock().find(seat, now_ms)
    }

    /// The token player last seated for this user and address.
    pub(crate) fn find_user(&self, user_seat: &UserSeat, now_ms: u64) -> Found {
        let mut state = self.lock();
        match state.by_user.get(user_seat).cloned() {
            Some(seat) => state.find(&seat, now_ms),
            None => Found::Nobody,
        }
    }

    /// Seats a newcomer, or returns who got there first (`Err(())` when
    /// that one was kicked). `register` makes its engine session. The
    /// `bool` is whether the caller must start the sweeper.
    pub(crate) fn join(
        &self,
        newcomer: Newcomer,
        token: Option<String>,
        now_ms: u64,
        register: impl FnOnce() -> PlayerSession,
    ) -> Result<(Arc<Player>, bool), ()> {
        let mut state = self.lock();
        if let Some(us) = &newcomer.user_seat
            && let Some(seat) = state.by_user.get(us).cloned()
            && let Found::Live(p) = state.find(&seat, now_ms)
        {
            return Ok((p, false));
        }
        match state.find(&newcomer.seat, now_ms) {
            Found::Live(p) => return Ok((p, false)),
            Found::Ended => return Err(()),
            Found::Nobody => {}
        }
        let player = Arc::new(Player {
            session: register(),
            identity: newcomer.identity,
            token,
            seat: newcomer.seat.clone(),
            user_seat: newcomer.user_seat.clone(),
            last_ms: AtomicU64::new(now_ms),
        });
        if let Some(us) = newcomer.user_seat {
            state.by_user.insert(us, newcomer.seat.clone());
        }
        state.players.insert(newcomer.seat, player.clone());
        let start_sweeper = !std::mem::replace(&mut state.sweeping, true);
        Ok((player, start_sweeper))
    }

    /// Drops players idle for more than `idle_ms` and kicked ones (their
    /// tokens revoked), and revocations older than an hour. Returns whether
    /// anything is left to sweep later; when not, the sweeper must stop (a
    /// later [`join`](Self::join) asks for a new one).
    pub(crate) fn sweep(&self, now_ms: u64, idle_ms: u64) -> bool {
        let mut state = self.lock();
        let gone: Vec<Seat> = state
            .players
            .values()
            .filter(|p| {
                p.session.is_kicked()
                    || now_ms.saturating_sub(p.last_ms.load(Ordering::Relaxed)) > idle_ms
            })
            .map(|p| p.seat.clone())
            .collect();
        let mut dropped = Vec::with_capacity(gone.len());
        for seat in &gone {
            dropped.extend(state.remove(seat, now_ms));
        }
        state
            .revoked
            .retain(|_, at| now_ms.saturating_sub(*at) <= REVOKED_MS);
        let more = !(state.players.is_empty() && state.revoked.is_empty());
        state.sweeping = more;
        drop(state);
        for p in &dropped {
            tracing::debug!(stream = %p.seat.key, session = p.session.id(), "{} player left", p.seat.flavour.prefix());
        }
        more
    }

    /// How many players are seated (kicked ones included until found).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().players.len()
    }
}

/// The sweeper: drops idle players every quarter of `idle` (at most every
/// 5 s) until none is left, or the service is gone.
pub(crate) async fn sweeper(
    players: std::sync::Weak<Players>,
    clock: tokio::time::Instant,
    idle: std::time::Duration,
) {
    let period = (idle / 4).clamp(
        std::time::Duration::from_millis(50),
        std::time::Duration::from_secs(5),
    );
    let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
    loop {
        tokio::time::sleep(period).await;
        let Some(players) = players.upgrade() else {
            return;
        };
        let now = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
        if !players.sweep(now, idle_ms) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater_core::{AppSpec, Engine, PlayerInfo};

    fn engine() -> Engine {
        Engine::builder()
            .app("live", AppSpec::default())
            .build()
            .expect("engine")
    }

    fn key() -> StreamKey {
        StreamKey::parse("live/a").expect("key")
    }

    fn token_seat(t: &str) -> Seat {
        Seat {
            key: key(),
            flavour: Flavour::Fmp4,
            who: Who::Token(t.into()),
        }
    }

    fn user_seat(user: &str) -> UserSeat {
        UserSeat {
            key: key(),
            flavour: Flavour::Fmp4,
            user: Some(user.into()),
            ip: None,
        }
    }

    fn seat(players: &Players, engine: &Engine, t: &str, user: &str, now: u64) -> Arc<Player> {
        let newcomer = Newcomer {
            seat: token_seat(t),
            user_seat: Some(user_seat(user)),
            identity: Identity::named(user),
        };
        players
            .join(newcomer, Some(t.into()), now, || {
                engine.register_player(PlayerInfo {
                    key: key(),
                    protocol: "llhls",
                    peer: None,
                    user: Some(user.into()),
                })
            })
            .expect("seated")
            .0
    }

    #[tokio::test]
    async fn one_session_per_token_found_by_user_too_and_dropped_when_idle() {
        let engine = engine();
        let players = Players::default();
        let a = seat(&players, &engine, "ta", "alice", 0);
        let again = seat(&players, &engine, "other", "alice", 10);
        assert!(Arc::ptr_eq(&a, &again), "the same user and address");
        let b = seat(&players, &engine, "tb", "bob", 10);
        assert_eq!(players.len(), 2);
        assert_eq!(engine.sessions().len(), 2);
        assert!(matches!(
            players.find(&token_seat("ta"), 20),
            Found::Live(_)
        ));
        assert!(matches!(
            players.find_user(&user_seat("bob"), 20),
            Found::Live(p) if Arc::ptr_eq(&p, &b)
        ));
        drop((a, again, b));
        // Alice was seen at 20, bob at 20 too; at 1000 with 500 ms idle both go.
        assert!(players.sweep(400, 500));
        assert_eq!(players.len(), 2);
        assert!(!players.sweep(1000, 500), "nothing left to sweep");
        assert_eq!(players.len(), 0);
        assert!(
            engine.sessions().is_empty(),
            "sessions end with the players"
        );
    }

    #[tokio::test]
    async fn a_kicked_token_is_refused_from_then_on() {
        let engine = engine();
        let players = Players::default();
        let a = seat(&players, &engine, "ta", "alice", 0);
        let b = seat(&players, &engine, "tb", "bob", 0);
        assert!(engine.kick(a.session.id()));
        drop(a);
        assert!(matches!(players.find(&token_seat("ta"), 5), Found::Ended));
        assert_eq!(players.len(), 1, "forgotten");
        assert!(matches!(players.find(&token_seat("ta"), 6), Found::Ended));
        assert!(matches!(
            players.find_user(&user_seat("alice"), 6),
            Found::Nobody
        ));
        assert!(matches!(players.find(&token_seat("tb"), 6), Found::Live(_)));
        // The same token cannot be seated again.
        let newcomer = Newcomer {
            seat: token_seat("ta"),
            user_seat: None,
            identity: Identity::named("alice"),
        };
        let rejoined = players.join(newcomer, Some("ta".into()), 7, || b.session.clone());
        assert!(rejoined.is_err());
        // Revocations are kept while there is anything to sweep.
        drop(b);
        assert!(players.sweep(10_000, 500));
        assert!(matches!(
            players.find(&token_seat("ta"), 10_001),
            Found::Ended
        ));
        assert!(!players.sweep(REVOKED_MS + 20_000, 500));
    }

    #[tokio::test]
    async fn a_kicked_anonymous_player_is_refused_once() {
        let engine = engine();
        let players = Players::default();
        let anon = Seat {
            key: key(),
            flavour: Flavour::Ts,
            who: Who::Address(Some([127, 0, 0, 1].into())),
        };
        let newcomer = || Newcomer {
            seat: anon.clone(),
            user_seat: None,
            identity: Identity::anonymous(),
        };
        let register = || {
            engine.register_player(PlayerInfo {
                key: key(),
                protocol: "hls",
                peer: None,
                user: None,
            })
        };
        let (p, sweep) = players.join(newcomer(), None, 0, register).expect("seated");
        assert!(sweep, "the first player starts the sweeper");
        assert!(engine.kick(p.session.id()));
        drop(p);
        assert!(players.join(newcomer(), None, 1, register).is_err());
        let (again, sweep) = players.join(newcomer(), None, 2, register).expect("seated");
        assert!(!sweep, "the sweeper still runs");
        assert!(!again.session.is_kicked());
    }
}
