//! The HTTP routes.
//!
//! | route | what |
//! |---|---|
//! | `GET /hls/{app}/{stream}/index.m3u8` | classic HLS media playlist (MPEG-TS segments) |
//! | `GET /hls/{app}/{stream}/master.m3u8` | its multivariant playlist |
//! | `GET /hls/{app}/{stream}/seg-{epoch}-{msn}.ts` | a segment |
//! | `GET /llhls/{app}/{stream}/index.m3u8[?_HLS_msn=M[&_HLS_part=P]]` | LL-HLS media playlist, blocking reload |
//! | `GET /llhls/{app}/{stream}/master.m3u8` | its multivariant playlist |
//! | `GET /llhls/{app}/{stream}/init-{epoch}-{id}.mp4` | an init segment |
//! | `GET /llhls/{app}/{stream}/seg-{epoch}-{msn}.m4s` | a segment |
//! | `GET /llhls/{app}/{stream}/part-{epoch}-{msn}.{i}.m4s` | a part; the next one (the preload hint) waits until complete |
//!
//! Every answer carries `Access-Control-Allow-Origin: *` (players on other
//! origins), and `OPTIONS` answers preflights (the policy is
//! [`tidewater_http`]'s). `Cache-Control` lets a CDN (or any shared cache)
//! in front of the server absorb viewers:
//!
//! | answer | `Cache-Control` |
//! |---|---|
//! | HLS playlist | `public, max-age=0, s-maxage=` half the target duration (at least 1 s) |
//! | LL-HLS playlist without `_HLS_msn` | `public, max-age=0, s-maxage=1` |
//! | LL-HLS blocking reload (`_HLS_msn`, `_HLS_part`) | `public, max-age=0, s-maxage=` one target duration: the answer for that URL is a playlist at least that new, right for anyone asking the same |
//! | segment, part, init segment | `public, max-age=3600, immutable`: their URIs carry the packager's epoch, so a URI never names other bytes |
//! | any of them asked with credentials or a read token | the same with `private` for `public` (a playlist: `private, no-cache`, its URIs carry the player's own token) |
//! | errors | `no-cache` |
//!
//! Playlists carry `max-age=0` next to `s-maxage`: a CDN keeps them a
//! while, a player's own browser asks again every time (hls.js re-asks
//! after half a target duration when nothing changed, and must not get its
//! own stale copy back).
//!
//! A stream that is not
//! live is a `404` saying so; a malformed name or query a `400`; a blocking
//! request not satisfied within three target durations a `503`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::HttpBody as _;
use axum::extract::{Path, Request as HttpRequest, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use tidewater_core::{Credentials, StreamKey};
use tidewater_http::{asker, get_with_preflight, refuse, reply, text};

use crate::Hls;
use crate::access::{self, Asked};
use crate::playlist::{FileName, Flavour, Lookup, PlaylistState, with_token};
use crate::service::{Package, Refusal};

const PLAYLIST: &str = "application/vnd.apple.mpegurl";

/// The HLS and LL-HLS routes, to merge into the application's router.
pub fn router(hls: Hls) -> Router {
    Router::new()
        .route("/hls/{app}/{stream}/{file}", get_with_preflight(serve_ts))
        .route("/llhls/{app}/{stream}/{file}", get_with_preflight(serve_ll))
        .with_state(hls)
}

async fn serve_ts(
    State(hls): State<Hls>,
    Path((app, stream, file)): Path<(String, String, String)>,
    request: HttpRequest,
) -> Response {
    let (peer, query, credentials) = asker(&request);
    let asked = (peer, query, credentials);
    serve(hls, Flavour::Ts, &app, &stream, &file, asked).await
}

async fn serve_ll(
    State(hls): State<Hls>,
    Path((app, stream, file)): Path<(String, String, String)>,
    request: HttpRequest,
) -> Response {
    let (peer, query, credentials) = asker(&request);
    let asked = (peer, query, credentials);
    serve(hls, Flavour::Fmp4, &app, &stream, &file, asked).await
}

/// `_HLS_msn`, `_HLS_part` of a playlist request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Blocking {
    /// `_HLS_msn`.
    pub msn: Option<u64>,
    /// `_HLS_part`.
    pub part: Option<u64>,
}

/// Parses the query of a playlist request. Unknown parameters are ignored;
/// `_HLS_skip` is accepted and ignored (no `CAN-SKIP-UNTIL` is offered).
pub fn parse_query(query: Option<&str>) -> Result<Blocking, String> {
    let mut b = Blocking::default();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match k {
            "_HLS_msn" => &mut b.msn,
            "_HLS_part" => &mut b.part,
            _ => continue,
        };
        let n = (!v.is_empty() && v.len() <= 19 && v.bytes().all(|c| c.is_ascii_digit()))
            .then(|| v.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| format!("{k} must be a non-negative integer"))?;
        *slot = Some(n);
    }
    if b.part.is_some() && b.msn.is_none() {
        return Err("_HLS_part needs _HLS_msn".into());
    }
    Ok(b)
}

async fn serve(
    hls: Hls,
    flavour: Flavour,
    app: &str,
    stream: &str,
    file: &str,
    (peer, query, credentials): (Option<SocketAddr>, Option<String>, Credentials),
) -> Response {
    let key = match StreamKey::new(app, stream) {
        Ok(k) => k,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let Some(name) = FileName::parse(flavour, file) else {
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "no file {file:?} here: expected index.m3u8, master.m3u8 or a segment of the playlist"
            ),
        );
    };
    let blocking = match parse_query(query.as_deref()) {
        Ok(b) => b,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let what = format!("{key}/{file}");
    let refused = |refusal: &tidewater_core::Refusal| {
        refuse(flavour.prefix(), peer, &what, refusal, &hls.ctx().realm())
    };
    let with_credentials = !matches!(credentials, Credentials::None);
    let asked = Asked {
        key: &key,
        flavour,
        peer,
        query: query.as_deref(),
        credentials,
        playlist: matches!(name, FileName::Media | FileName::Master),
    };
    let ticket = match access::admit(hls.ctx(), hls.players(), asked, hls.now_ms()).await {
        Ok(t) => t,
        Err(refusal) => return refused(&refusal),
    };
    // Video MPEG-TS cannot carry (VP8, VP9, AV1 from WHIP): refused with
    // the reason rather than left waiting for a segment that never comes.
    if matches!(flavour, Flavour::Ts)
        && let Some(why) = hls
            .ctx()
            .stream(&key)
            .and_then(|s| s.catalog)
            .and_then(|c| tidewater_media::codec::ts_uncarried_video(c.catalog().tracks()))
    {
        tracing::warn!(peer = %tidewater_http::who(peer), stream = %key, "ts-hls play refused: {why}");
        return text(StatusCode::UNSUPPORTED_MEDIA_TYPE, why);
    }
    let follow = || access::follow_request(hls.ctx(), &key, flavour, peer, ticket.identity());
    let pkg = match hls.package(&key, flavour, follow).await {
        Ok(p) => p,
        Err(Refusal::NotLive(m)) => return text(StatusCode::NOT_FOUND, m),
        Err(Refusal::Auth(refusal)) => return refused(&refusal),
    };
    let Ok(player) = hls.seat(ticket, peer) else {
        return refused(&access::kicked());
    };
    // Asked with credentials (a read token included): no shared cache
    // may hand the answer to someone else.
    let private = player.token.is_some() || with_credentials;
    let response = answer(
        &hls,
        &key,
        &pkg,
        name,
        blocking,
        player.token.as_deref(),
        private,
    )
    .await;
    player
        .session
        .record_sent(response.body().size_hint().exact().unwrap_or(0));
    response
}

/// The answer to an admitted request; playlists with `token` in their URIs
/// when given.
async fn answer(
    hls: &Hls,
    key: &StreamKey,
    pkg: &Package,
    name: FileName,
    blocking: Blocking,
    token: Option<&str>,
    private: bool,
) -> Response {
    let flavour = pkg.flavour;
    let first = hls.config().first_segment_timeout;
    if pkg
        .wait_for(first, |s| s.ready().then_some(()))
        .await
        .is_none()
    {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("stream {key} has no complete segment yet; retry"),
        );
    }
    let td = pkg.with(|s| s.target_duration()).unwrap_or(1);
    let hold = Duration::from_secs(u64::from(td) * 3);
    // A shared cache may keep a playlist for half a target duration (LL-HLS:
    // a second, its parts are shorter), a blocking reload's answer for one
    // target duration (see the module docs).
    let playlist_age = match (flavour, blocking.msn) {
        (Flavour::Ts, _) => (td / 2).max(1),
        (Flavour::Fmp4, None) => 1,
        (Flavour::Fmp4, Some(_)) => td.max(1),
    };
    let cache = PlaylistCache {
        token,
        private,
        max_age: playlist_age,
    };
    let file_cache = if private {
        "private, max-age=3600, immutable"
    } else {
        "public, max-age=3600, immutable"
    };
    match name {
        FileName::Media => media(pkg, flavour, blocking, hold, cache).await,
        FileName::Master => match pkg.master_playlist() {
            Some(playlist) => playlist_reply(Bytes::from(playlist), cache),
            None => text(StatusCode::SERVICE_UNAVAILABLE, "no tracks yet; retry"),
        },
        FileName::Segment { epoch, msn } => {
            media_file(pkg, &epoch, hold, (flavour, file_cache), move |s| {
                s.segment(msn)
            })
            .await
        }
        FileName::Part { epoch, msn, index } => {
            media_file(pkg, &epoch, hold, (flavour, file_cache), move |s| {
                s.part(msn, index)
            })
            .await
        }
        FileName::Init { epoch, id } => {
            media_file(pkg, &epoch, hold, (flavour, file_cache), move |s| {
                match s.init(id) {
                    Some(b) => Lookup::Ready(b),
                    None => Lookup::Missing,
                }
            })
            .await
        }
    }
}

/// How a playlist answer may be cached.
#[derive(Clone, Copy, Debug)]
struct PlaylistCache<'a> {
    /// The player's read token, to write into the playlist's URIs.
    token: Option<&'a str>,
    /// Asked with credentials: for no shared cache.
    private: bool,
    /// Seconds a shared cache may keep it.
    max_age: u32,
}

/// A playlist answer: the cached text, or a copy with `token` in its URIs.
fn playlist_reply(playlist: Bytes, cache: PlaylistCache<'_>) -> Response {
    let body = match (cache.token, std::str::from_utf8(&playlist)) {
        (Some(t), Ok(text)) => Bytes::from(with_token(text, t)),
        _ => playlist,
    };
    let mut r = reply(StatusCode::OK, PLAYLIST, "no-cache", body);
    if !cache.private {
        let value = format!("public, max-age=0, s-maxage={}", cache.max_age);
        if let Ok(v) = HeaderValue::from_str(&value) {
            r.headers_mut().insert(header::CACHE_CONTROL, v);
        }
    } else {
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-cache"),
        );
    }
    r
}

async fn media(
    pkg: &Package,
    flavour: Flavour,
    blocking: Blocking,
    hold: Duration,
    cache: PlaylistCache<'_>,
) -> Response {
    if let (Flavour::Fmp4, Some(msn)) = (flavour, blocking.msn) {
        let pos = pkg.with(PlaylistState::position);
        if msn > pos.msn + 1 {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "_HLS_msn={msn} is more than two segments past the playlist's last ({})",
                    pos.msn.saturating_sub(1)
                ),
            );
        }
        let part = blocking.part;
        if pkg
            .wait_for(hold, |s| s.satisfies(msn, part).then_some(()))
            .await
            .is_none()
        {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("segment {msn} part {part:?} not available within {hold:?}"),
            );
        }
    }
    match pkg.media_playlist() {
        Some(playlist) => playlist_reply(playlist, cache),
        None => text(StatusCode::SERVICE_UNAVAILABLE, "no playlist yet; retry"),
    }
}

async fn media_file(
    pkg: &Package,
    epoch: &str,
    hold: Duration,
    (flavour, cache): (Flavour, &'static str),
    lookup: impl Fn(&PlaylistState) -> Lookup,
) -> Response {
    if pkg.with(|s| s.epoch() != epoch) {
        return text(
            StatusCode::NOT_FOUND,
            "no such segment: it belongs to an earlier packaging of this stream",
        );
    }
    let found = pkg
        .wait_for(hold, |s| match lookup(s) {
            Lookup::Ready(b) => Some(Some(b)),
            Lookup::Missing => Some(None),
            Lookup::Pending => None,
        })
        .await;
    let content_type = match flavour {
        Flavour::Ts => "video/mp2t",
        Flavour::Fmp4 => "video/mp4",
    };
    match found {
        Some(Some(bytes)) => reply(StatusCode::OK, content_type, cache, bytes),
        Some(None) => text(
            StatusCode::NOT_FOUND,
            "no such segment: not in the playlist's window",
        ),
        None => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not complete within {hold:?}; retry"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        assert_eq!(parse_query(None), Ok(Blocking::default()));
        assert_eq!(
            parse_query(Some("_HLS_msn=12&_HLS_part=3&_HLS_skip=YES")),
            Ok(Blocking {
                msn: Some(12),
                part: Some(3)
            })
        );
        assert_eq!(parse_query(Some("x=1&&y")), Ok(Blocking::default()));
        for bad in [
            "_HLS_msn=abc",
            "_HLS_msn=-1",
            "_HLS_msn=",
            "_HLS_msn=+3",
            "_HLS_msn=99999999999999999999999",
            "_HLS_part=1",
            "_HLS_msn=1&_HLS_part=x",
        ] {
            assert!(parse_query(Some(bad)).is_err(), "{bad}");
        }
    }
}
