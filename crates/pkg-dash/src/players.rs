//! Players: who asks for a stream's MPD and segments, each one a kernel
//! [`PlayerSession`] (listed with the engine's sessions, kickable), and the
//! authorization of every request.
//!
//! A player is known by its read token when the authorizer issues tokens
//! (the token its MPD's URLs carry), else by its address: anonymous players
//! behind one address are one session. A request carrying the token of a
//! live player is that player's; every other request asks the authorizer
//! (see [`Shared::admit_player`] for the whole rule).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::response::Response;
use tidewater_core::{
    Action, AuthRequest, Credentials, Identity, PlayerInfo, PlayerSession, Refusal, RefusalKind,
    Request, StreamKey,
};
use tidewater_http::refuse;
use tokio::time::Instant;
use tracing::{debug, info};

use crate::service::{Shared, lock, not_live};

/// How long the token of a kicked player stays refused. The authorizer
/// would accept it until it expires (5 minutes for tidewater-auth's read
/// tokens), so it is remembered for longer than that.
pub(crate) const KICKED_TOKEN_MEMORY: Duration = Duration::from_secs(600);

/// How a player is known.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum PlayerId {
    /// By the read token its URLs carry, as it appears in them.
    Token(String),
    /// By its address (anonymous reads; `None` when the server does not
    /// know peers).
    Addr(Option<IpAddr>),
}

enum Slot {
    Live {
        session: PlayerSession,
        last_seen: Instant,
    },
    /// A kicked player's token, refused until `until`.
    Kicked { until: Instant },
}

#[derive(Default)]
struct Table {
    slots: HashMap<(StreamKey, PlayerId), Slot>,
    /// Whether a sweeper task is running.
    sweeping: bool,
}

/// Every player of every stream of one router.
pub(crate) struct Players {
    idle: Duration,
    table: Mutex<Table>,
}

/// What the table says about a player.
pub(crate) enum Known {
    /// A live player: its session.
    Live(PlayerSession),
    /// Kicked by the operator: refuse it.
    Kicked,
    /// Not known (never seen, idle for too long, or its kick was
    /// answered already).
    Unknown,
}

impl Players {
    pub(crate) fn new(idle: Duration) -> Arc<Self> {
        Arc::new(Players {
            idle,
            table: Mutex::new(Table::default()),
        })
    }

    /// Looks a player up at `now` for one of its requests (a live one
    /// counts as seen). A kicked live player becomes a refused token (or,
    /// known by address, is forgotten once this request is refused).
    pub(crate) fn known(&self, key: &StreamKey, id: &PlayerId, now: Instant) -> Known {
        let mut table = lock(&self.table);
        let k = (key.clone(), id.clone());
        let (known, forget) = match table.slots.get_mut(&k) {
            None => return Known::Unknown,
            Some(Slot::Kicked { until }) => {
                if now < *until {
                    return Known::Kicked;
                }
                (Known::Unknown, true)
            }
            Some(Slot::Live { session, last_seen }) => {
                if session.is_kicked() {
                    (Known::Kicked, true)
                } else if now.duration_since(*last_seen) >= self.idle {
                    (Known::Unknown, true)
                } else {
                    *last_seen = now;
                    (Known::Live(session.clone()), false)
                }
            }
        };
        if forget {
            table.slots.remove(&k);
            if matches!(known, Known::Kicked) && matches!(id, PlayerId::Token(_)) {
                table.slots.insert(
                    k,
                    Slot::Kicked {
                        until: now + KICKED_TOKEN_MEMORY,
                    },
                );
            }
        }
        known
    }

    /// The live player `id` of `key`, registered by `register` when not
    /// known yet (a new sweeper is then started if none runs); `None` when
    /// it was kicked.
    fn get_or_register(
        self: &Arc<Self>,
        key: &StreamKey,
        id: PlayerId,
        now: Instant,
        register: impl FnOnce() -> PlayerSession,
    ) -> Option<PlayerSession> {
        match self.known(key, &id, now) {
            Known::Live(s) => return Some(s),
            Known::Kicked => return None,
            Known::Unknown => {}
        }
        let session = register();
        let start = {
            let mut table = lock(&self.table);
            table.slots.insert(
                (key.clone(), id),
                Slot::Live {
                    session: session.clone(),
                    last_seen: now,
                },
            );
            !std::mem::replace(&mut table.sweeping, true)
        };
        if start {
            tokio::spawn(sweep(Arc::downgrade(self)));
        }
        Some(session)
    }

    /// Drops players idle at `now`, kicked ones and expired kick records;
    /// whether any player is left (else the sweeper stops).
    pub(crate) fn sweep_at(&self, now: Instant) -> bool {
        let mut table = lock(&self.table);
        table.slots.retain(|(key, id), slot| match slot {
            Slot::Kicked { until } => now < *until,
            Slot::Live { session, last_seen } => {
                let idle = now.duration_since(*last_seen);
                if session.is_kicked() {
                    // Its next request must still be refused.
                    if let PlayerId::Token(_) = id {
                        *slot = Slot::Kicked {
                            until: now + KICKED_TOKEN_MEMORY,
                        };
                        return true;
                    }
                    false
                } else if idle >= self.idle {
                    debug!(stream = %key, session = session.id(), "dash player left (idle {idle:?})");
                    false
                } else {
                    true
                }
            }
        });
        let left = !table.slots.is_empty();
        if !left {
            table.sweeping = false;
        }
        left
    }

    /// Forgets the live players of a stream that ended for good.
    pub(crate) fn end_stream(&self, key: &StreamKey) {
        lock(&self.table)
            .slots
            .retain(|(k, _), slot| k != key || matches!(slot, Slot::Kicked { .. }));
    }
}

/// Sweeps `players` every quarter of its idle timeout while any are left.
async fn sweep(players: Weak<Players>) {
    let Some(period) = players
        .upgrade()
        .map(|p| (p.idle / 4).max(Duration::from_millis(100)))
    else {
        return;
    };
    loop {
        tokio::time::sleep(period).await;
        let Some(p) = players.upgrade() else { return };
        if !p.sweep_at(Instant::now()) {
            return;
        }
    }
}

/// What is asked for: the MPD, or a file its URLs name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ask {
    /// The MPD.
    Manifest,
    /// An init segment, a media segment or its chunks.
    File,
}

/// Who asks: peer, raw query, credentials of the `Authorization` header.
pub(crate) type Asker = (Option<SocketAddr>, Option<String>, Credentials);

/// A request admitted for a player.
pub(crate) struct Admitted {
    /// The player's session (count what it is sent).
    pub(crate) session: PlayerSession,
    /// The token its MPD's URLs carry (manifests; `None` when reads are
    /// anonymous), URL-safe.
    pub(crate) token: Option<String>,
    /// Who it is.
    pub(crate) identity: Identity,
}

/// The raw (not percent-decoded) `token` query parameter.
pub(crate) fn query_token(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// A token as it goes in a query: every byte outside RFC 3986's unreserved
/// characters percent-encoded (a token from tidewater-auth has none; a
/// `$` would otherwise start a template identifier, a `&` end the
/// parameter).
pub(crate) fn url_token(token: &str) -> String {
    let mut out = String::with_capacity(token.len());
    for b in token.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn identity_of(session: &PlayerSession) -> Identity {
    session
        .info()
        .user
        .as_ref()
        .map_or_else(Identity::anonymous, Identity::named)
}

impl Shared {
    /// Decides a request of `key` and names its player:
    ///
    /// - a `?token=` of a kicked player: `403`;
    /// - a file request whose `?token=` is a live player's: that player's,
    ///   without asking the authorizer;
    /// - anything else asks the authorizer (`401`/`403`/`429`/`503` when
    ///   it refuses); a manifest whose `?token=` is a live player's is still
    ///   that player's when the authorizer finds the token no longer valid
    ///   (a token lives as long as its player);
    /// - an admitted manifest request of a new player gets a new read
    ///   token and session (by address when the authorizer issues no token:
    ///   anonymous reads); an admitted file request of an unknown player
    ///   becomes a session known by its `?token=`, else by its address.
    pub(crate) async fn admit_player(
        self: &Arc<Self>,
        key: &StreamKey,
        (peer, query, credentials): Asker,
        ask: Ask,
    ) -> Result<Admitted, Response> {
        let realm = || self.ctx.realm();
        let kicked = || {
            refuse(
                "dash",
                peer,
                key,
                &Refusal::forbidden("this player was kicked by the operator"),
                &realm(),
            )
        };
        let token = query_token(query.as_deref()).map(str::to_owned);
        let known = match &token {
            Some(t) => self
                .players
                .known(key, &PlayerId::Token(t.clone()), Instant::now()),
            None => Known::Unknown,
        };
        let live = match known {
            Known::Kicked => return Err(kicked()),
            Known::Live(session) => Some(session),
            Known::Unknown => None,
        };
        if let (Some(session), Ask::File) = (&live, ask) {
            return Ok(Admitted {
                identity: identity_of(session),
                session: session.clone(),
                token,
            });
        }

        let mut req = AuthRequest::new(Action::Read, "dash")
            .key(key.clone())
            .credentials(credentials);
        if let Some(p) = peer {
            req = req.peer(p);
        }
        if let Some(q) = &query {
            req = req.query(q.clone());
        }
        let identity = match self.ctx.authorize(&req).await {
            Ok(identity) => identity,
            Err(refusal) => {
                return match live {
                    Some(session) if refusal.kind() == RefusalKind::InvalidCredentials => {
                        debug!(stream = %key, session = session.id(), "dash player's token renewed by its session: {refusal}");
                        Ok(Admitted {
                            identity: identity_of(&session),
                            session,
                            token,
                        })
                    }
                    _ => Err(refuse("dash", peer, key, &refusal, &realm())),
                };
            }
        };
        if let Some(session) = live {
            return Ok(Admitted {
                session,
                token,
                identity,
            });
        }

        // A stream that is not live gets no player, only a 404.
        if !self.servable(key) {
            return Err(not_live(key));
        }
        let ip = peer.map(|p| p.ip());
        let (id, token) = match ask {
            Ask::Manifest => match self.ctx.read_token(key, &identity, ip) {
                Some(t) => {
                    let t = url_token(&t);
                    (PlayerId::Token(t.clone()), Some(t))
                }
                None => (PlayerId::Addr(ip), None),
            },
            Ask::File => match token {
                Some(t) => (PlayerId::Token(t.clone()), Some(t)),
                None => (PlayerId::Addr(ip), None),
            },
        };
        let register = || {
            let session = self.ctx.register_player(PlayerInfo {
                key: key.clone(),
                protocol: "dash",
                peer,
                user: identity.user.clone(),
            });
            info!(stream = %key, session = session.id(), peer = %tidewater_http::who(peer), "dash player started ({identity})");
            session
        };
        match self
            .players
            .get_or_register(key, id, Instant::now(), register)
        {
            Some(session) => Ok(Admitted {
                session,
                token,
                identity,
            }),
            None => Err(kicked()),
        }
    }

    /// The kernel request a packager started for an admitted player follows
    /// the stream with: the player's address, and a fresh read token when
    /// the authorizer issues them (the player's own credentials are never
    /// reused; a token it renewed through its session may have expired).
    pub(crate) fn follow_request(
        &self,
        key: &StreamKey,
        peer: Option<SocketAddr>,
        who: &Identity,
    ) -> Request {
        let mut req = Request::new(key.clone(), "dash").internal();
        if let Some(p) = peer {
            req = req.peer(p);
        }
        match self.ctx.read_token(key, who, peer.map(|p| p.ip())) {
            Some(t) => req.query(format!("token={}", url_token(&t))),
            None => req,
        }
    }
}

#[cfg(test)]
mod tests {
    use tidewater_core::{AppSpec, Engine};

    use super::*;

    fn player(engine: &Engine, key: &StreamKey) -> PlayerSession {
        engine.register_player(PlayerInfo {
            key: key.clone(),
            protocol: "dash",
            peer: None,
            user: None,
        })
    }

    fn listed(engine: &Engine) -> Vec<u64> {
        engine.sessions().iter().map(|s| s.id).collect()
    }

    /// On virtual time: a player is dropped (and leaves the engine's
    /// sessions) once idle for the timeout, not before; a request keeps it.
    #[tokio::test(start_paused = true)]
    async fn idle_players_are_dropped_by_the_sweeper() {
        let engine = Engine::builder()
            .default_app(AppSpec::default())
            .build()
            .expect("engine");
        let key = StreamKey::parse("live/a").expect("key");
        let players = Players::new(Duration::from_secs(30));
        let id = |t: &str| PlayerId::Token(t.into());
        let start = Instant::now();
        let one = players
            .get_or_register(&key, id("one"), start, || player(&engine, &key))
            .expect("registered")
            .id();
        let two = players
            .get_or_register(&key, id("two"), start, || player(&engine, &key))
            .expect("registered")
            .id();
        assert_eq!(listed(&engine), [one, two]);
        // The same token is the same player.
        let again = players.get_or_register(&key, id("one"), start, || unreachable!());
        assert_eq!(again.map(|s| s.id()), Some(one));

        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(matches!(
            players.known(&key, &id("two"), Instant::now()),
            Known::Live(_)
        ));
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(listed(&engine), [two], "one idle for 40 s, two for 20 s");
        assert!(matches!(
            players.known(&key, &id("one"), Instant::now()),
            Known::Unknown
        ));
        tokio::time::sleep(Duration::from_secs(40)).await;
        assert!(listed(&engine).is_empty());
        // Nothing left: the sweeper stopped, and a new player starts another.
        assert!(!lock(&players.table).sweeping);
        let three = players
            .get_or_register(&key, id("three"), Instant::now(), || player(&engine, &key))
            .expect("registered")
            .id();
        assert!(lock(&players.table).sweeping);
        tokio::time::sleep(Duration::from_secs(40)).await;
        assert!(!listed(&engine).contains(&three));
    }

    #[tokio::test(start_paused = true)]
    async fn kicked_tokens_stay_refused_kicked_addresses_once() {
        let engine = Engine::builder()
            .default_app(AppSpec::default())
            .build()
            .expect("engine");
        let key = StreamKey::parse("live/a").expect("key");
        let players = Players::new(Duration::from_secs(30));
        let token = PlayerId::Token("t".into());
        let addr = PlayerId::Addr(Some([192, 0, 2, 7].into()));
        let now = Instant::now();
        for id in [&token, &addr] {
            let s = players
                .get_or_register(&key, id.clone(), now, || player(&engine, &key))
                .expect("registered");
            assert!(engine.kick(s.id()));
        }
        for _ in 0..2 {
            assert!(matches!(players.known(&key, &token, now), Known::Kicked));
        }
        assert!(matches!(players.known(&key, &addr, now), Known::Kicked));
        assert!(matches!(players.known(&key, &addr, now), Known::Unknown));
        // The token's kick outlives the sweeps, and ends after its memory.
        tokio::time::sleep(KICKED_TOKEN_MEMORY - Duration::from_secs(1)).await;
        assert!(matches!(
            players.known(&key, &token, Instant::now()),
            Known::Kicked
        ));
        assert!(
            players
                .get_or_register(&key, token.clone(), Instant::now(), || unreachable!())
                .is_none()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(matches!(
            players.known(&key, &token, Instant::now()),
            Known::Unknown
        ));
        // A stream that ended forgets its players.
        let s = players.get_or_register(&key, token.clone(), Instant::now(), || {
            player(&engine, &key)
        });
        assert!(s.is_some());
        drop(s);
        players.end_stream(&key);
        assert!(listed(&engine).is_empty());
    }

    #[test]
    fn tokens_in_queries() {
        assert_eq!(query_token(Some("a=1&token=tw1.x_y-z")), Some("tw1.x_y-z"));
        assert_eq!(query_token(Some("token=")), None);
        assert_eq!(query_token(Some("tokens=1")), None);
        assert_eq!(query_token(None), None);
        assert_eq!(url_token("tw1.AZaz09-_~"), "tw1.AZaz09-_~");
        assert_eq!(url_token("a$b&c d/é"), "a%24b%26c%20d%2F%C3%A9");
    }
}
