//! The DASH routes (the packagers behind them live in the service module).
//!
//! | route | what |
//! |---|---|
//! | `GET /dash/{app}/{stream}/manifest.mpd` | the dynamic MPD (`application/dash+xml`); static once the stream ended, for [`DashConfig::linger`](crate::DashConfig::linger) |
//! | `GET /dash/{app}/{stream}/p{period}-{rep}-init.mp4` | a representation's init segment |
//! | `GET /dash/{app}/{stream}/p{period}-{rep}-t{time}.m4s` | a media segment by `$Time$` (timeline mode) |
//! | `GET /dash/{app}/{stream}/p{period}-{rep}-{number}.m4s` | a media segment by `$Number$` (low-latency mode); in progress: streamed chunk by chunk as produced |
//! | `GET /dash/time` | the server's clock, ISO-8601 (the MPD's `UTCTiming`); never guarded |
//!
//! Every route of a stream takes `?token=` (the player's read token, as its
//! MPD's URLs carry it) and `Authorization: Basic`/`Bearer`; see the crate
//! docs for who is asked when.
//!
//! `Cache-Control`, for a CDN in front: the MPD `public, max-age=0,
//! s-maxage=1` (a
//! player's own, with its token in the URLs: `private, no-cache`); init and
//! complete segments `public, max-age=60`, `private` when asked with
//! credentials or a token; a segment in progress `no-cache`. Init and
//! segments are not `immutable`: their names (`p1-…`) start again when a
//! stream's packager starts again (after its idle timeout or a restart),
//! so a name may come to mean other bytes; a minute bounds how long a cache
//! can serve the old ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::HttpBody;
use axum::extract::{Path, Request as HttpRequest, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use tidewater_core::{Credentials, IngestContext, PlayerSession, StreamKey};
use tidewater_http::{
    CHANNEL_DEPTH, asker, channel_body, chunks_body, get_with_preflight, reply, stream_key, text,
};
use tokio::sync::mpsc;
use tracing::debug;

use crate::DashConfig;
use crate::emsg;
use crate::mpd::{self, MpdOptions};
use crate::names::{FileName, SegmentId, find, parse_file};
use crate::players::{Admitted, Ask, Asker, Players};
use crate::service::{Entry, Shared, lock};
use crate::timefmt::iso8601;

/// The DASH routes (`/dash/…`), relative to where the router is mounted.
pub fn dash_router(ctx: IngestContext, config: DashConfig) -> Router {
    dash_router_until(ctx, config, tidewater_core::CancellationToken::new())
}

/// [`dash_router`], whose packagers all end when `finish` is cancelled, as
/// if their streams had (a server stopping): each MPD turns static and
/// stays served for [`DashConfig::linger`]. It covers streams waiting in
/// their follow grace for a republish, which would otherwise end only when
/// the grace does.
pub fn dash_router_until(
    ctx: IngestContext,
    config: DashConfig,
    finish: tidewater_core::CancellationToken,
) -> Router {
    let shared = Arc::new(Shared {
        players: Players::new(config.player_idle_timeout),
        ctx,
        config,
        streams: Mutex::new(HashMap::new()),
        finishing: finish,
    });
    // Always-on packaging needs a task: started here when a tokio runtime
    // runs (as it does wherever the router is served), ending with the
    // routes.
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(crate::service::run_always_on(Arc::downgrade(&shared)));
    }
    Router::new()
        .route("/dash/time", get_with_preflight(serve_time))
        .route(
            "/dash/{app}/{stream}/manifest.mpd",
            get_with_preflight(serve_mpd),
        )
        .route(
            "/dash/{app}/{stream}/{file}",
            get_with_preflight(serve_file),
        )
        .with_state(shared)
}

/// The stream a request names, its player (the request authorized, see
/// [`Shared::admit_player`]) and the stream's packager (started for it).
async fn admit(
    shared: &Arc<Shared>,
    asker: Asker,
    app: &str,
    stream: &str,
    ask: Ask,
) -> Result<(StreamKey, Admitted, Arc<Entry>), Response> {
    let peer = asker.0;
    let key = stream_key("dash", peer, app, stream).map_err(|r| *r)?;
    let player = shared.admit_player(&key, asker, ask).await?;
    let entry = shared
        .entry(&key, || shared.follow_request(&key, peer, &player.identity))
        .await
        .map_err(|r| answered(&player.session, *r))?;
    Ok((key, player, entry))
}

/// Counts an answer's body bytes as sent to `player` (when the body's
/// length is known: every answer but a streamed segment's).
fn answered(player: &PlayerSession, response: Response) -> Response {
    let bytes = HttpBody::size_hint(response.body()).exact().unwrap_or(0);
    player.record_sent(bytes);
    response
}

async fn serve_time() -> Response {
    reply(
        StatusCode::OK,
        "text/plain; charset=utf-8",
        "no-store",
        iso8601(SystemTime::now()),
    )
}

async fn serve_mpd(
    State(shared): State<Arc<Shared>>,
    Path((app, stream)): Path<(String, String)>,
    request: HttpRequest,
) -> Response {
    let time_url = time_url(&request, &app, &stream);
    let (key, player, entry) =
        match admit(&shared, asker(&request), &app, &stream, Ask::Manifest).await {
            Ok(admitted) => admitted,
            Err(r) => return r,
        };
    debug!(stream = %key, session = player.session.id(), "dash MPD request");
    // A manifest carrying a player's token is that player's alone; others
    // are everyone's, for a second (a CDN absorbs the players' polling).
    let cache = if player.token.is_some() {
        "private, no-cache"
    } else {
        "public, max-age=0, s-maxage=1"
    };
    let opts = MpdOptions {
        time_url,
        latency_target: shared.config.latency_target,
        token: player.token,
    };
    let session = player.session;
    // The first requests wait until a player can start with a buffer: the
    // suggested presentation delay (two segments) of complete segments, or
    // in low-latency mode a segment in progress. A player given a single
    // segment starts at its beginning, a segment behind live, and stalls at
    // every segment boundary.
    let deadline = tokio::time::Instant::now() + shared.config.ready_timeout;
    let mut changes = entry.changes.subscribe();
    let warm = shared.config.segment_target * 2 - shared.config.segment_target / 8;
    // In low-latency mode they also wait until the live edge is the latency
    // target past the stream's start (see `mpd::start_wait`).
    let mut late = false;
    let answer = loop {
        let (written, hold) = {
            let p = lock(&entry.packager);
            let now = SystemTime::now();
            // A static MPD (the stream ended) is what it will stay.
            let enough = p.config().low_latency || p.ended() || p.buffered() >= warm;
            let hold = if late || p.ended() {
                Duration::ZERO
            } else {
                mpd::start_wait(&p, now, opts.latency_target)
            };
            let written = ((enough && hold.is_zero()) || late)
                .then(|| mpd::write(&p, now, &opts))
                .flatten();
            (written, hold)
        };
        if let Some(xml) = written {
            break reply(StatusCode::OK, "application/dash+xml", cache, xml);
        }
        if late {
            break text(
                StatusCode::SERVICE_UNAVAILABLE,
                "no segment yet (no keyframe received)\n",
            );
        }
        // A hold ends on the clock, not on a change (frames may stop), and
        // keeps the packager from idling out meanwhile.
        let wake = if hold.is_zero() {
            deadline
        } else {
            entry.touch();
            deadline.min(tokio::time::Instant::now() + hold.min(Duration::from_millis(100)))
        };
        match tokio::time::timeout_at(wake, changes.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break text(StatusCode::NOT_FOUND, "stream ended\n"),
            Err(_) => late = tokio::time::Instant::now() >= deadline,
        }
    };
    answered(&session, answer)
}

/// The absolute URL of `/dash/time` next to this MPD (players resolve
/// `UTCTiming` against their page, not the MPD, so it must be absolute).
fn time_url(request: &HttpRequest, app: &str, stream: &str) -> String {
    let header = |name| {
        request
            .headers()
            .get(name)
            .and_then(|h: &HeaderValue| h.to_str().ok())
    };
    time_url_for(
        header(header::HOST.as_str()),
        header("x-forwarded-proto"),
        request.uri().path(),
        app,
        stream,
    )
}

/// [`time_url`] from the request's parts: `Host` (anything but visible
/// ASCII falls back to loopback), `X-Forwarded-Proto`, the path and the
/// decoded app and stream names.
pub(crate) fn time_url_for(
    host: Option<&str>,
    proto: Option<&str>,
    path: &str,
    app: &str,
    stream: &str,
) -> String {
    let host = host
        .filter(|h| !h.is_empty() && h.len() <= 255 && h.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or("127.0.0.1");
    let scheme = proto.filter(|p| *p == "https").unwrap_or("http");
    let base = path
        .strip_suffix("/manifest.mpd")
        .and_then(|p| p.strip_suffix(stream))
        .and_then(|p| p.strip_suffix('/'))
        .and_then(|p| p.strip_suffix(app))
        .and_then(|p| p.strip_suffix('/'))
        .unwrap_or("/dash");
    format!("{scheme}://{host}{base}/time")
}

/// Where a requested media segment stands.
enum Lookup {
    /// Complete: its chunks.
    Complete(Vec<Bytes>),
    /// Being produced; what goes before its chunks.
    InProgress(Option<Bytes>),
    /// Not started yet but next: worth waiting for.
    Upcoming,
    /// Not in the window (or never will be).
    Missing,
}

async fn serve_file(
    State(shared): State<Arc<Shared>>,
    Path((app, stream, file)): Path<(String, String, String)>,
    request: HttpRequest,
) -> Response {
    // Checked first: a name that is no DASH file never starts a packager.
    let Some(name) = parse_file(&file) else {
        return text(StatusCode::NOT_FOUND, "no such DASH file\n");
    };
    let asked = asker(&request);
    // Asked with credentials (a token included): for no shared cache.
    let private = !matches!(asked.2, Credentials::None);
    let cache = if private {
        "private, max-age=60"
    } else {
        "public, max-age=60"
    };
    let (key, player, entry) = match admit(&shared, asked, &app, &stream, Ask::File).await {
        Ok(admitted) => admitted,
        Err(r) => return r,
    };
    let session = player.session;
    debug!(stream = %key, session = session.id(), file = %file, "dash request");
    match name {
        FileName::Init { period, rep } => {
            let init = lock(&entry.packager)
                .period(period)
                .and_then(|p| p.track(rep))
                .map(|t| (t.init.clone(), t.info.kind()));
            let answer = match init {
                Some((bytes, kind)) => reply(StatusCode::OK, mime(kind), cache, bytes),
                None => text(StatusCode::NOT_FOUND, "no such period or representation\n"),
            };
            answered(&session, answer)
        }
        FileName::Media { period, rep, at } => {
            serve_segment(
                &shared,
                entry,
                session,
                (period, rep.to_string(), at),
                cache,
            )
            .await
        }
    }
}

fn mime(kind: tidewater_core::MediaKind) -> &'static str {
    match kind {
        tidewater_core::MediaKind::Video => "video/mp4",
        tidewater_core::MediaKind::Audio => "audio/mp4",
    }
}

fn lookup(entry: &Entry, period: u32, rep: &str, at: SegmentId) -> (Lookup, &'static str) {
    let p = lock(&entry.packager);
    let active = p.periods().back().map(|x| x.id);
    let Some(per) = p.period(period) else {
        return (Lookup::Missing, "video/mp4");
    };
    let Some(track) = per.track(rep) else {
        return (Lookup::Missing, "video/mp4");
    };
    let kind = mime(track.info.kind());
    if let Some(s) = find(track, at) {
        // The first representation's segments start with an MPD update event.
        let first = per.tracks.first().is_some_and(|t| t.rep_id == track.rep_id);
        let event = first.then(|| {
            let target = p.config().target.as_micros() * u128::from(track.timescale) / 1_000_000;
            let half = s.duration.map_or(target, u128::from) / 2;
            emsg::mpd_update(
                track.timescale,
                u32::try_from(half).unwrap_or(u32::MAX),
                s.number as u32,
            )
        });
        return match s.duration {
            Some(_) => {
                let chunks = event.into_iter().chain(s.chunks.iter().cloned()).collect();
                (Lookup::Complete(chunks), kind)
            }
            None => (Lookup::InProgress(event), kind),
        };
    }
    let newest = track.segments.back().map_or(0, |s| s.number);
    // In low-latency mode a player asks for the next segment as it starts
    // (its first keyframe may be a few milliseconds late): worth a wait.
    // Past the end of a period that ended (the publish stopped, or a
    // republish opened the next one) it never comes, but the player asked
    // before its MPD could say so: the request is held all the same (up to
    // the deadline) rather than refused at once, so a player that moves on
    // to the next period drops it instead of failing on a burst of 404s.
    let upcoming = match at {
        SegmentId::Number(n) => {
            let open = Some(period) == active && per.duration.is_none();
            (open || per.duration.is_some()) && n > newest && n <= newest + 2
        }
        SegmentId::Time(_) => false,
    };
    (
        if upcoming {
            Lookup::Upcoming
        } else {
            Lookup::Missing
        },
        kind,
    )
}

async fn serve_segment(
    shared: &Shared,
    entry: Arc<Entry>,
    player: PlayerSession,
    (period, rep, at): (u32, String, SegmentId),
    cache: &'static str,
) -> Response {
    let deadline =
        tokio::time::Instant::now() + shared.config.segment_target + Duration::from_secs(1);
    let mut changes = entry.changes.subscribe();
    loop {
        let (found, kind) = lookup(&entry, period, &rep, at);
        match found {
            Lookup::Complete(chunks) => {
                let len: usize = chunks.iter().map(Bytes::len).sum();
                let mut r = reply(StatusCode::OK, kind, cache, chunks_body(chunks));
                r.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                player.record_sent(len as u64);
                return r;
            }
            Lookup::InProgress(prefix) => {
                let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
                let mut first = 0;
                if let Some(event) = prefix {
                    first = event.len() as u64;
                    // The channel is new and empty: this cannot fail.
                    let _ = tx.try_send(event);
                }
                tokio::spawn(stream_segment(
                    entry,
                    (player, first),
                    period,
                    rep,
                    at,
                    tx,
                    shared.config.segment_target * 4,
                ));
                return reply(StatusCode::OK, kind, "no-cache", channel_body(rx));
            }
            Lookup::Upcoming => match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => {
                    return answered(
                        &player,
                        text(StatusCode::NOT_FOUND, "segment not available\n"),
                    );
                }
            },
            Lookup::Missing => {
                return answered(
                    &player,
                    text(StatusCode::NOT_FOUND, "segment not in the window\n"),
                );
            }
        }
    }
}

/// Sends a segment's chunks as they are produced, until it completes, leaves
/// the window, the packager stops, or the client stops reading for `timeout`;
/// then counts the bytes handed to the response (from `sent`, the bytes
/// queued before) as sent to the player.
async fn stream_segment(
    entry: Arc<Entry>,
    (player, sent): (PlayerSession, u64),
    period: u32,
    rep: String,
    at: SegmentId,
    tx: mpsc::Sender<Bytes>,
    timeout: Duration,
) {
    let mut bytes = sent;
    stream_chunks(&entry, &mut bytes, period, &rep, at, &tx, timeout).await;
    player.record_sent(bytes);
}

async fn stream_chunks(
    entry: &Entry,
    bytes: &mut u64,
    period: u32,
    rep: &str,
    at: SegmentId,
    tx: &mpsc::Sender<Bytes>,
    timeout: Duration,
) {
    let mut changes = entry.changes.subscribe();
    let mut sent = 0usize;
    loop {
        changes.mark_unchanged();
        let (new, done) = {
            let p = lock(&entry.packager);
            match p
                .period(period)
                .and_then(|x| x.track(rep))
                .and_then(|t| find(t, at))
            {
                Some(s) => (
                    s.chunks.get(sent..).unwrap_or(&[]).to_vec(),
                    s.is_complete(),
                ),
                None => (Vec::new(), true),
            }
        };
        for chunk in new {
            sent += 1;
            let len = chunk.len() as u64;
            match tokio::time::timeout(timeout, tx.send(chunk)).await {
                Ok(Ok(())) => *bytes += len,
                Ok(Err(_)) | Err(_) => return,
            }
        }
        entry.touch();
        if done {
            return;
        }
        match tokio::time::timeout(timeout, changes.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return,
        }
    }
}
