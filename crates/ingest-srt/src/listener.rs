//! The accept loop: each handshake's stream id is read, the path's
//! encryption and the kernel's answer are checked, and the caller is
//! accepted (with that path's key) or rejected with a reason and a log line.
//! What srt-protocol 0.4.4 cannot accept without panicking is refused here
//! first, from what the handshake shows ([`ConnectionRequest::offer`]).

use std::net::SocketAddr;
use std::sync::Arc;

use srt_protocol::options::KeySize;
use srt_protocol::packet::{CoreRejectReason, RejectReason, ServerRejectReason};
use srt_protocol::settings::KeySettings;
use tidewater_core::{CancellationToken, IngestContext, Request};
use tracing::info;

use crate::config::{self, SrtConfig};
use crate::demux::ConnectionRequest;
use crate::streamid::{self, Mode, StreamRequest};
use crate::{publish, read};

fn reject_reason(e: &tidewater_core::Error) -> RejectReason {
    use tidewater_core::Error as E;
    RejectReason::Server(match e {
        E::Unauthorized { .. } => ServerRejectReason::Unauthorized,
        E::AlreadyPublishing { .. } | E::PublisherLimit { .. } => ServerRejectReason::Conflict,
        E::NotFound { .. } | E::UnknownApp { .. } => ServerRejectReason::Notfound,
        E::InvalidKey { .. } => ServerRejectReason::BadRequest,
        _ => ServerRejectReason::Unacceptable,
    })
}

fn reject(req: ConnectionRequest, reason: RejectReason, peer: SocketAddr, why: &str) {
    info!(%peer, "srt connection refused: {why}");
    req.reject(reason);
}

/// A refusal of a handshake: the reason sent and the log line.
type Refusal = (RejectReason, String);

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
            format!("stream id {:?}: {e}", id.unwrap_or("")),
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
            format!(
                "{mode} {key}: the handshake has no HSv5 handshake request (libsrt 1.3 or later expected)"
            ),
        ));
    }
    if offer.other_key_material {
        return Err((
            rogue,
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
                format!(
                    "{mode} {key}: the caller encrypts (it has a passphrase) but the path has no passphrase"
                ),
            ));
        }
        (Some(_), false, _) => {
            return Err((
                unsecure,
                format!("{mode} {key}: the path has a passphrase and the caller has none"),
            ));
        }
        (Some(e), true, KeySize::Unspecified) if e.key_length != 16 => {
            return Err((
                bad_secret,
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
                format!(
                    "{mode} {key}: key length {size:?} offered, {} bytes configured",
                    e.key_length
                ),
            ));
        }
        (Some(e), true, size) => Some(config::key_settings(e, size).map_err(|err| {
            (
                RejectReason::Server(ServerRejectReason::InternalServerError),
                err.to_string(),
            )
        })?),
    };
    Ok((parsed, key_settings))
}

/// Answers one handshake, then serves the connection until it ends.
pub(crate) async fn handle(
    req: ConnectionRequest,
    ctx: IngestContext,
    config: Arc<SrtConfig>,
    shutdown: CancellationToken,
) {
    let peer = req.remote();
    let (parsed, key_settings) = match check_handshake(&req, &config) {
        Ok(checked) => checked,
        Err((reason, why)) => return reject(req, reason, peer, &why),
    };
    let key = parsed.key.clone();
    let encrypted = key_settings.is_some();
    let mut request = Request::new(key.clone(), "srt")
        .peer(peer)
        .credentials(parsed.credentials);
    if let Some(q) = parsed.query {
        request = request.query(q);
    }
    match parsed.mode {
        Mode::Read => {
            let sub = match ctx.subscribe(request).await {
                Ok(s) => s,
                Err(e) => {
                    let reason = reject_reason(&e);
                    return reject(req, reason, peer, &format!("read {key}: {e}"));
                }
            };
            let socket = match req.accept(key_settings).await {
                Ok(s) => s,
                Err(e) => {
                    info!(%peer, stream = %key, "srt read handshake failed (a wrong or no passphrase): {e}");
                    return;
                }
            };
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
                Err(e) => {
                    info!(%peer, stream = %key, "srt publish handshake failed (a wrong or no passphrase): {e}");
                    return;
                }
            };
            let session = match ctx.open_publish(request).await {
                Ok(s) => s,
                Err(e) => {
                    info!(%peer, "srt connection refused: publish {key}: {e}");
                    let mut socket = socket;
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), socket.close())
                        .await;
                    return;
                }
            };
            info!(%peer, stream = %key, encrypted, "srt publish started");
            publish::run(socket, session, peer, config.read_timeout, shutdown).await;
        }
        Mode::Publish => {
            let session = match ctx.open_publish(request).await {
                Ok(s) => s,
                Err(e) => {
                    let reason = reject_reason(&e);
                    return reject(req, reason, peer, &format!("publish {key}: {e}"));
                }
            };
            let socket = match req.accept(None).await {
                Ok(s) => s,
                Err(e) => {
                    info!(%peer, stream = %key, "srt publish handshake failed: {e}");
                    session.finish().await;
                    return;
                }
            };
            info!(%peer, stream = %key, encrypted, "srt publish started");
            publish::run(socket, session, peer, config.read_timeout, shutdown).await;
        }
    }
}
