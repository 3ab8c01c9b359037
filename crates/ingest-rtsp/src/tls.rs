//! TLS for RTSPS, on rustls (with the `ring` provider), handled as RTMPS
//! handles it: a PEM certificate chain and key read from files, looked at
//! again every [`RELOAD_CHECK_INTERVAL`] (modification time and size) and
//! read anew when either changed. Connections accepted from then on get the
//! new certificate, open ones keep theirs; a new pair that cannot be used
//! (a file half written, a key that does not fit) is logged and the old one
//! stays in service until the files change again.
// Reads the operator's certificate and key files, again whenever they
// change: no indexing, unwrap, expect or panic outside tests
// (RELIABILITY.md, "Lints").
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::expect_used,
        clippy::unwrap_used,
        clippy::panic
    )
)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use crate::error::{Error, Result};

/// How often an RTSPS listener checks whether its certificate or key file
/// changed.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Modification time and size of the certificate and key files.
type Stamp = Option<[(SystemTime, u64); 2]>;

/// The RTSPS listener's certificate chain and key (see the module docs).
pub struct ServerTls {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<State>,
}

struct State {
    config: Arc<rustls::ServerConfig>,
    stamp: Stamp,
    checked: Instant,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key
    /// (PKCS#8, PKCS#1 or SEC1); the error says which file is wrong.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<ServerTls> {
        let stamp = stamp(cert, key);
        let config = load(cert, key)?;
        Ok(ServerTls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            state: Mutex::new(State {
                config,
                stamp,
                checked: Instant::now(),
            }),
        })
    }

    /// An acceptor with the pair in service, read again first when the
    /// files changed since the last look (at most every
    /// [`RELOAD_CHECK_INTERVAL`]).
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.checked.elapsed() >= RELOAD_CHECK_INTERVAL {
            state.checked = Instant::now();
            let now = stamp(&self.cert, &self.key);
            if now.is_some() && now != state.stamp {
                state.stamp = now;
                match load(&self.cert, &self.key) {
                    Ok(config) => {
                        info!("rtsps: certificate {} read again", self.cert.display());
                        state.config = config;
                    }
                    Err(e) => warn!("rtsps: the certificate in service stays: {e}"),
                }
            }
        }
        TlsAcceptor::from(Arc::clone(&state.config))
    }
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let one = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| Ok((m.modified()?, m.len())))
            .ok()
    };
    Some([one(cert)?, one(key)?])
}

fn load(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| {
            Error::tls(format!(
                "cannot read certificates from {}: {e}",
                cert.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::tls(format!(
            "no PEM certificate in {}",
            cert.display()
        )));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        Error::tls(format!(
            "cannot read a private key from {}: {e}",
            key.display()
        ))
    })?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key_der)
    .map_err(|e| {
        Error::tls(format!(
            "the private key in {} does not fit the certificate in {}: {e}",
            key.display(),
            cert.display()
        ))
    })?;
    Ok(Arc::new(config))
}
