//! The accept loop: each handshake's stream id is read, the path's
//! encryption and the kernel's answer are checked, and the caller is
//! accepted (with that path's key) or rejected with a reason and a log line.

use std::net::SocketAddr;
use std::sync::Arc;

use srt_protocol::options::KeySize;
use srt_protocol::packet::{CoreRejectReason, RejectReason, ServerRejectReason};
use srt_tokio::ConnectionRequest;
use tidewater_core::{CancellationToken, IngestContext, Request};
use tracing::{info, warn};

use crate::config::{self, SrtConfig};
use crate::streamid::{self, Mode};
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

async fn reject(req: ConnectionRequest, reason: RejectReason, peer: SocketAddr, why: &str) {
    info!(%peer, "srt connection refused: {why}");
    if let Err(e) = req.reject(reason).await {
        warn!(%peer, "srt: could not send the rejection: {e}");
    }
}

/// Answers one handshake, then serves the connection until it ends.
pub(crate) async fn handle(
    req: ConnectionRequest,
    ctx: IngestContext,
    config: Arc<SrtConfig>,
    shutdown: CancellationToken,
) {
    let peer = req.remote();
    let id = req.stream_id().map(|s| s.as_str().to_owned());
    let parsed = match streamid::parse(id.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            let why = format!("stream id {:?}: {e}", id.as_deref().unwrap_or(""));
            return reject(
                req,
                RejectReason::Server(ServerRejectReason::BadRequest),
                peer,
                &why,
            )
            .await;
        }
    };
    let key = parsed.key.clone();
    let mode = match parsed.mode {
        Mode::Publish => "publish",
        Mode::Read => "read",
    };
    // srt-protocol 0.4.4 panics (unimplemented!) when the key size the caller
    // announces differs from the one accepted with, or when the caller
    // encrypts and the path does not: what can be told from the handshake
    // is refused here. A caller that encrypts without announcing its key
    // length (no pbkeylen) looks like one that does not encrypt; on an
    // encrypted path srt-protocol then sorts them out itself (a wrong or no
    // passphrase is rejected in the handshake).
    let key_settings = match (config.encryption_for(&key), req.key_size()) {
        (Some(e), KeySize::Unspecified) if e.key_length != 16 => {
            let why = format!(
                "{mode} {key}: the path uses {}-byte keys and the caller did not announce its key length (pbkeylen)",
                e.key_length
            );
            return reject(
                req,
                RejectReason::Core(CoreRejectReason::BadSecret),
                peer,
                &why,
            )
            .await;
        }
        (Some(e), size)
            if size != KeySize::Unspecified && size != config::key_size(e.key_length) =>
        {
            let why = format!(
                "{mode} {key}: key length {size:?} offered, {} bytes configured",
                e.key_length
            );
            return reject(
                req,
                RejectReason::Core(CoreRejectReason::BadSecret),
                peer,
                &why,
            )
            .await;
        }
        (Some(e), size) => match config::key_settings(e, size) {
            Ok(k) => Some(k),
            Err(err) => {
                return reject(
                    req,
                    RejectReason::Server(ServerRejectReason::InternalServerError),
                    peer,
                    &err.to_string(),
                )
                .await;
            }
        },
        (None, KeySize::Unspecified) => None,
        (None, _) => {
            let why = format!("{mode} {key}: the caller encrypts but the path has no passphrase");
            return reject(
                req,
                RejectReason::Core(CoreRejectReason::Unsecure),
                peer,
                &why,
            )
            .await;
        }
    };
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
                    return reject(req, reason, peer, &format!("read {key}: {e}")).await;
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
            read::run(socket, sub, ctx, key, peer, config.write_timeout, shutdown).await;
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
                    let _ = tokio::time::timeout(
                        std::time::Duration::from_secs(1),
                        socket.close_and_finish(),
                    )
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
                    return reject(req, reason, peer, &format!("publish {key}: {e}")).await;
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
