//! Who may fetch what: every request is admitted here before it is served,
//! and comes out as a player (see [`players`](crate::players)).
//!
//! - A **playlist** (master, media, blocking reload) is always put to the
//!   authorizer. When it carries the token of a live player, the
//!   authorizer is asked with a fresh token for that player's identity in
//!   its place: the token a player was given stays the one in its URIs for
//!   as long as its session lives, past the authorizer's own expiry, and an
//!   expired token is never shown to the authorizer (which would count it
//!   as a failed attempt against the player's address).
//! - A **segment, part or init segment** whose `?token=` is a live
//!   player's is served without asking (the token was issued here, for this
//!   stream and flavour); any other is put to the authorizer.
//! - A kicked player's next request is refused (`403`) and the player
//!   forgotten; its token is refused from then on.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tidewater_core::{
    Action, AuthRequest, Credentials, Identity, IngestContext, Refusal, Request, StreamKey,
};

use crate::players::{Found, Newcomer, Player, Players, Seat, UserSeat, Who};
use crate::playlist::{Flavour, encode_token};

/// A request to admit.
#[derive(Debug)]
pub(crate) struct Asked<'a> {
    pub(crate) key: &'a StreamKey,
    pub(crate) flavour: Flavour,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) query: Option<&'a str>,
    pub(crate) credentials: Credentials,
    /// A playlist (always asked about) rather than media.
    pub(crate) playlist: bool,
}

/// An admitted request: a known player, or one to seat once its stream is
/// found packaged.
#[derive(Debug)]
pub(crate) enum Ticket {
    /// A live player.
    Player(Arc<Player>),
    /// A new player, and the token its URIs will carry.
    New(Newcomer, Option<String>),
}

impl Ticket {
    /// The identity the request was admitted as.
    pub(crate) fn identity(&self) -> &Identity {
        match self {
            Ticket::Player(p) => &p.identity,
            Ticket::New(n, _) => &n.identity,
        }
    }
}

/// The refusal of a kicked player.
pub(crate) fn kicked() -> Refusal {
    Refusal::forbidden("this player's session was ended by the operator")
}

/// The non-empty `token` query parameter, as written.
pub(crate) fn token_param(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .filter(|t| !t.is_empty())
}

/// `query` without its `token` parameters, and with `token` (when given) at
/// the end.
pub(crate) fn with_query_token(query: Option<&str>, token: Option<&str>) -> Option<String> {
    let mut out: Vec<&str> = query
        .unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty() && *kv != "token" && !kv.starts_with("token="))
        .collect();
    let token = token.map(|t| format!("token={t}"));
    out.extend(token.as_deref());
    (!out.is_empty()).then(|| out.join("&"))
}

fn auth_request(asked: &Asked<'_>, query: Option<String>) -> AuthRequest {
    let mut req = AuthRequest::new(Action::Read, "hls")
        .key(asked.key.clone())
        .credentials(asked.credentials.clone());
    if let Some(p) = asked.peer {
        req = req.peer(p);
    }
    if let Some(q) = query {
        req = req.query(q);
    }
    req
}

fn ip(peer: Option<SocketAddr>) -> Option<IpAddr> {
    peer.map(|p| p.ip().to_canonical())
}

/// Admits a request (see the [module docs](self)); `now_ms` is the
/// service's clock.
pub(crate) async fn admit(
    ctx: &IngestContext,
    players: &Players,
    asked: Asked<'_>,
    now_ms: u64,
) -> Result<Ticket, Refusal> {
    let ip = ip(asked.peer);
    let presented = token_param(asked.query);
    if let Some(t) = presented {
        let seat = Seat {
            key: asked.key.clone(),
            flavour: asked.flavour,
            who: Who::Token(t.to_owned()),
        };
        match players.find(&seat, now_ms) {
            Found::Ended => return Err(kicked()),
            Found::Live(p) if !asked.playlist => return Ok(Ticket::Player(p)),
            Found::Live(p) => {
                let fresh = ctx
                    .read_token(asked.key, &p.identity, ip)
                    .map(|t| encode_token(&t));
                let query = with_query_token(asked.query, fresh.as_deref());
                ctx.authorize(&auth_request(&asked, query)).await?;
                return Ok(Ticket::Player(p));
            }
            Found::Nobody => {}
        }
    }
    let identity = ctx
        .authorize(&auth_request(&asked, asked.query.map(str::to_owned)))
        .await?;
    let Some(minted) = ctx.read_token(asked.key, &identity, ip) else {
        // Anonymous reads: one player per address, plain URIs.
        let seat = Seat {
            key: asked.key.clone(),
            flavour: asked.flavour,
            who: Who::Address(ip),
        };
        return match players.find(&seat, now_ms) {
            Found::Ended => Err(kicked()),
            Found::Live(p) => Ok(Ticket::Player(p)),
            Found::Nobody => Ok(Ticket::New(
                Newcomer {
                    seat,
                    user_seat: None,
                    identity,
                },
                None,
            )),
        };
    };
    let user_seat = UserSeat {
        key: asked.key.clone(),
        flavour: asked.flavour,
        user: identity.user.clone(),
        ip,
    };
    // A token the authorizer took on its own (no other credentials came)
    // names the player: its URIs keep it.
    let token = match presented {
        Some(t) if asked.credentials == Credentials::None => t.to_owned(),
        _ => match players.find_user(&user_seat, now_ms) {
            Found::Ended => return Err(kicked()),
            Found::Live(p) => return Ok(Ticket::Player(p)),
            Found::Nobody => encode_token(&minted),
        },
    };
    Ok(Ticket::New(
        Newcomer {
            seat: Seat {
                key: asked.key.clone(),
                flavour: asked.flavour,
                who: Who::Token(token.clone()),
            },
            user_seat: Some(user_seat),
            identity,
        },
        Some(token),
    ))
}

/// The kernel request a packager follows its stream with, on behalf of the
/// player that started it: its address, and a fresh read token for its
/// identity when reads need one (so the packager never depends on a token
/// that expires).
pub(crate) fn follow_request(
    ctx: &IngestContext,
    key: &StreamKey,
    flavour: Flavour,
    peer: Option<SocketAddr>,
    identity: &Identity,
) -> Request {
    let mut req = Request::new(key.clone(), crate::service::packager_protocol(flavour)).internal();
    if let Some(p) = peer {
        req = req.peer(p);
    }
    if let Some(t) = ctx.read_token(key, identity, ip(peer)) {
        req = req.query(format!("token={}", encode_token(&t)));
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_parameters() {
        assert_eq!(token_param(Some("a=1&token=xyz&b")), Some("xyz"));
        assert_eq!(token_param(Some("token=")), None);
        assert_eq!(token_param(Some("tokens=1")), None);
        assert_eq!(token_param(None), None);
        assert_eq!(
            with_query_token(Some("_HLS_msn=3&token=old&_HLS_part=1"), Some("new")).as_deref(),
            Some("_HLS_msn=3&_HLS_part=1&token=new")
        );
        assert_eq!(with_query_token(Some("token=old"), None), None);
        assert_eq!(
            with_query_token(None, Some("t")).as_deref(),
            Some("token=t")
        );
    }
}
