//! The accept loop: each handshake's stream id is read, the path's
//! encryption and the kernel's answer are checked, and the caller is
//! accepted (with that path's key) or rejected with a reason, a log line and
//! a count in the listener's [`ListenerStats`] (`refused`, with a fixed
//! word per reason). What srt-protocol 0.4.4 cannot accept without
//! panicking is refused here first, from what the handshake shows
//! ([`ConnectionRequest::offer`]). A connection served is counted
//! `accepted` and open until it ends.

// This module reads what the network sends: no panics on it.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::SocketAddr;
use std::sync::Arc;

use srt_protocol::options::KeySize;
use srt_protocol::packet::{CoreRejectReason, RejectReason, ServerRejectReason};
use srt_protocol::settings::KeySettings;
use tidewater_core::{CancellationToken, IngestContext, ListenerStats, Request};
use tracing::{info, warn};

use crate::config::{self, SrtConfig};
use crate::demux::{AcceptError, ConnectionRequest, refusal_name};
use crate::streamid::{self, Mode, StreamRequest};
use crate::{publish, read};

/// The rejection code and counter name of the kernel's refusal.
fn kernel_refusal(e: &tidewater_core::Error) -> (RejectReason, &'static str) {
    use tidewater_core::Error as E;
    use tidewater_core::RefusalKind as K;
    let (reason, name) = match e {
        E::Unauthorized { refusal, .. } => match refusal.kind() {
            K::Forbidden => (ServerRejectReason::Forbidden, "unauthorized"),
            K::RateLimited => (ServerRejectReason::Overload, "unauthorized"),
            K::Unavailable => (ServerRejectReason::Down, "unauthorized"),
            _ => (ServerRejectReason::Unauthorized, "unauthorized"),
        },
        E::AlreadyPublishing { .. } => (ServerRejectReason::Conflict, "already_publishing"),
        E::PublisherLimit { .. } => (ServerRejectReason::Conflict, "too_many_publishers"),
        E::NotFound { .. } | E::UnknownApp { .. } => (ServerRejectReason::Notfound, "not_found"),
        E::InvalidKey { .. } => (ServerRejectReason::BadRequest, "bad_stream_id"),
        _ => (ServerRejectReason::Unacceptable, "refused"),
    };
    (RejectReason::Server(reason), name)
}

/// Refuses a handshake: the rejection sent, one log line, one count.
fn reject(req: ConnectionRequest, refusal: Refusal, peer: SocketAddr, stats: &ListenerStats) {
    let (reason, name, why) = refusal;
    // Rate-limited with the demultiplexer's refusals: one budget per listener.
    if let Some(note) = stats.log_limit().check_now() {
        info!(%peer, reason = name, "srt connection refused: {why}{note}");
    }
    stats.refused(name);
    req.reject(reason);
}

/// A refusal of a handshake: the reason sent, the counter's name and the
/// log line.
type Refusal = (RejectReason, &'static str, String);

/// What a handshake asks for, and the key to accept it with, or why it is
/// refused before the kernel is asked.
fn check_handshake(
    req: &ConnectionRequest,
    config: &SrtConfig,
) -> Result<(StreamRequest, Option<KeySettings>), Refusal> {
    let id = req.stream_id().map(|s| s.as_str());
    let parsed = streamid::parse(id).map_err(|e| {
        (
            RejectReason::Server(ServerRejectReason::BadRequest),
            "bad_stream_id",
            format!("stream id {:?}: {e}", streamid::shown(id.unwrap_or(""))),
        )
    })?;
    let (key, mode) = (&parsed.key, parsed.mode);
    let rogue = RejectReason::Core(CoreRejectReason::Rogue);
    let bad_secret = RejectReason::Core(CoreRejectReason::BadSecret);
    let unsecure = RejectReason::Core(CoreRejectReason::Unsecure);
    let offer = req.offer();
    // srt-protocol 0.4.4 panics (unimplemented!) when accepting a caller
    // that sends key material on a path without a key, key material of the
    // wrong kind, or a key size other than the one it is accepted with; it
    // never answers an acceptance of a handshake without the HSv5 request.
    // All of that shows in the handshake: it is refused here.
    if !offer.handshake_request {
        return Err((
            rogue,
            "malformed",
            format!(
                "{mode} {key}: the handshake has no HSv5 handshake request (libsrt 1.3 or later expected)"
            ),
        ));
    }
    if offer.other_key_material {
        return Err((
            rogue,
            "malformed",
            format!("{mode} {key}: the handshake carries a key material response, not a request"),
        ));
    }
    let key_settings = match (
        config.encryption_for(key),
        offer.key_material,
        req.key_size(),
    ) {
        (None, false, _) => None,
        (None, true, _) => {
            return Err((
                unsecure,
                "unsecure",
                format!(
                    "{mode} {key}: the caller encrypts (it has a passphrase) but the path has no passphrase"
                ),
            ));
        }
        (Some(_), false, _) => {
            return Err((
                unsecure,
                "unsecure",
                format!("{mode} {key}: the path has a passphrase and the caller has none"),
            ));
        }
        (Some(e), true, KeySize::Unspecified) if e.key_length != 16 => {
            return Err((
                bad_secret,
                "bad_key_length",
                format!(
                    "{mode} {key}: the path uses {}-byte keys and the caller did not announce its key length (pbkeylen)",
                    e.key_length
                ),
            ));
        }
        (Some(e), true, size)
            if size != KeySize::Unspecified && size != config::key_size(e.key_length) =>
        {
            return Err((
                bad_secret,
                "bad_key_length",
                format!(
                    "{mode} {key}: key length {size:?} offered, {} bytes configured",
                    e.key_length
                ),
            ));
        }
        (Some(e), true, size) => Some(config::key_settings(e, size).map_err(|err| {
            (
                RejectReason::Server(ServerRejectReason::InternalServerError),
                "internal",
                err.to_string(),
            )
        })?),
    };
    Ok((parsed, key_settings))
}

/// The accept of a handshake failed: logged, and counted when srt-protocol
/// refused it (a wrong passphrase); a handshake gone was counted by the
/// listener that forgot it.
fn accept_failed(
    e: &AcceptError,
    peer: SocketAddr,
    key: &tidewater_core::StreamKey,
    mode: Mode,
    stats: &ListenerStats,
) {
    match e {
        AcceptError::Rejected(reason) => {
            let name = refusal_name(*reason);
            if let Some(note) = stats.log_limit().check_now() {
                info!(%peer, reason = name, "srt connection refused: {mode} {key}: {e} (a wrong passphrase?){note}");
            }
            stats.refused(name);
        }
        AcceptError::Gone(_) => info!(%peer, stream = %key, "srt {mode} handshake failed: {e}"),
    }
}

/// Answers one handshake, then serves the connection until it ends.
pub(crate) async fn handle(
    req: ConnectionRequest,
    ctx: IngestContext,
    config: Arc<SrtConfig>,
    stats: Arc<ListenerStats>,
    shutdown: CancellationToken,
) {
    let peer = req.remote();
    let (parsed, key_settings) = match check_handshake(&req, &config) {
        Ok(checked) => checked,
        Err(refusal) => return reject(req, refusal, peer, &stats),
    };
    let key = parsed.key.clone();
    let mode = parsed.mode;
    let encrypted = key_settings.is_some();
    let mut request = Request::new(key.clone(), "srt")
        .peer(peer)
        .credentials(parsed.credentials);
    if let Some(q) = parsed.query {
        request = request.query(q);
    }
    let kernel = |e: &tidewater_core::Error| {
        let (reason, name) = kernel_refusal(e);
        (reason, name, format!("{mode} {key}: {e}"))
    };
    match mode {
        Mode::Read => {
            // A reader follows: it plays on across a republish within the
            // stream's grace.
            let sub = match ctx.follow_live(request).await {
                Ok(s) => s,
                Err(e) => return reject(req, kernel(&e), peer, &stats),
            };
            // Video TS cannot carry (VP8, VP9, AV1 from WHIP): the caller is
            // rejected (SRT has no text for it: the log line names codec
            // and stream) rather than served sound alone.
            if let Some(why) = ctx
                .stream(&key)
                .and_then(|s| s.catalog)
                .and_then(|c| tidewater_media::codec::ts_uncarried_video(c.catalog().tracks()))
            {
                drop(sub);
                warn!(%peer, stream = %key, "srt read refused: {why}");
                let refusal = (
                    RejectReason::Server(ServerRejectReason::Unacceptable),
                    "refused",
                    format!("{mode} {key}: {why}"),
                );
                return reject(req, refusal, peer, &stats);
            }
            let socket = match req.accept(key_settings).await {
                Ok(s) => s,
                Err(e) => return accept_failed(&e, peer, &key, mode, &stats),
            };
            let _open = stats.accepted();
            info!(%peer, stream = %key, encrypted, "srt read started");
            read::run(socket, sub, key, peer, config.write_timeout, shutdown).await;
        }
        Mode::Publish if encrypted => {
            // The passphrase is checked in the handshake: the stream is only
            // claimed once it is, so a caller with a wrong passphrase never
            // disturbs a live publish. A refusal by the authorizer then closes
            // the connection right after the handshake.
            let socket = match req.accept(key_settings).await {
                Ok(s) => s,
                Err(e) => return accept_failed(&e, peer, &key, mode, &stats),
            };
            let session = match ctx.open_publish(request).await {
                Ok(s) => s,
                Err(e) => {
                    let (_, name, why) = kernel(&e);
                    info!(%peer, reason = name, "srt connection refused: {why} (closed after the handshake)");
                    stats.refused(name);
                    let mut socket = socket;
                    let _ =
                        tokio::time::timeout(std::time::Duration::from_secs(1), socket.shut_down())
                            .await;
                    return;
                }
            };
            let _open = stats.accepted();
            info!(%peer, stream = %key, encrypted, "srt publish started");
            publish::run(socket, session, peer, config.read_timeout, shutdown).await;
        }
        Mode::Publish => {
            let session = match ctx.open_publish(request).await {
                Ok(s) => s,
                Err(e) => return reject(req, kernel(&e), peer, &stats),
            };
            let socket = match req.accept(None).await {
                Ok(s) => s,
                Err(e) => {
                    accept_failed(&e, peer, &key, mode, &stats);
                    session.finish().await;
                    return;
                }
            };
            let _open = stats.accepted();
            info!(%peer, stream = %key, encrypted, "srt publish started");
            publish::run(socket, session, peer, config.read_timeout, shutdown).await;
        }
    }
}
