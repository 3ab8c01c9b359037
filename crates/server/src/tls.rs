//! TLS for the HTTPS listener, on rustls with the `ring` provider (the same
//! crates and versions as RTMPS): the certificate and key files, and a
//! configuration that follows them while the server runs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tidewater::CancellationToken;
use tokio_rustls::TlsAcceptor;

/// How often the certificate and key files are looked at for changes.
pub const CERT_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// A certificate chain file and its key file (PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
}

/// Which of the two files is wrong, and why.
#[derive(Debug)]
pub(crate) enum CertKeyError {
    Cert(String),
    Key(String),
}

impl CertKeyError {
    /// The setting of the file at fault.
    pub(crate) fn key(&self) -> &'static str {
        match self {
            CertKeyError::Cert(_) => "https.cert",
            CertKeyError::Key(_) => "https.key",
        }
    }
}

impl std::fmt::Display for CertKeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertKeyError::Cert(m) | CertKeyError::Key(m) => f.write_str(m),
        }
    }
}

/// What the files looked like when last read: modification time and size
/// of each (`None` when either could not be looked at).
type Stamp = Option<[(SystemTime, u64); 2]>;

impl TlsFiles {
    /// The certificate chain (leaf first) and its private key.
    pub fn new(cert: PathBuf, key: PathBuf) -> Self {
        TlsFiles { cert, key }
    }

    /// The certificate file.
    pub fn cert(&self) -> &Path {
        &self.cert
    }

    /// The key file.
    pub fn key(&self) -> &Path {
        &self.key
    }

    /// Reads both files into a server configuration (HTTP/1.1 offered by ALPN).
    pub(crate) fn load(&self) -> Result<Arc<rustls::ServerConfig>, CertKeyError> {
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                CertKeyError::Cert(format!(
                    "cannot read certificates from {}: {e}",
                    self.cert.display()
                ))
            })?;
        if certs.is_empty() {
            return Err(CertKeyError::Cert(format!(
                "no PEM certificate in {}",
                self.cert.display()
            )));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| {
            CertKeyError::Key(format!(
                "cannot read a private key from {}: {e}",
                self.key.display()
            ))
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| CertKeyError::Cert(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| {
                CertKeyError::Key(format!(
                    "the key in {} does not fit the certificate in {}: {e}",
                    self.key.display(),
                    self.cert.display()
                ))
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    fn stamp(&self) -> Stamp {
        let one = |p: &Path| {
            std::fs::metadata(p)
                .and_then(|m| Ok((m.modified()?, m.len())))
                .ok()
        };
        Some([one(&self.cert)?, one(&self.key)?])
    }
}

/// The TLS configuration in use, replaced when the files change.
#[derive(Clone)]
pub(crate) struct LiveTls {
    current: Arc<RwLock<Arc<rustls::ServerConfig>>>,
    files: TlsFiles,
    stamp: Stamp,
}

impl std::fmt::Debug for LiveTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl LiveTls {
    /// Loads the files (an error names the file at fault).
    pub(crate) fn load(files: TlsFiles) -> Result<LiveTls, CertKeyError> {
        // Stamped before reading: a change while reading is seen by the next look.
        let stamp = files.stamp();
        let config = files.load()?;
        Ok(LiveTls {
            current: Arc::new(RwLock::new(config)),
            files,
            stamp,
        })
    }

    /// An acceptor with the configuration in use now.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        let config = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        TlsAcceptor::from(config)
    }

    /// Looks at the files every `every` until `shutdown`; when either
    /// changed, loads them again: a pair that loads replaces the one in use
    /// (connections already open keep theirs), one that does not is logged
    /// and the previous pair stays until the files change again.
    pub(crate) async fn watch(self, every: Duration, shutdown: CancellationToken) {
        let mut seen = self.stamp;
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let files = self.files.clone();
            let Ok((stamp, loaded)) = tokio::task::spawn_blocking(move || {
                let stamp = files.stamp();
                let changed = stamp.is_some() && stamp != seen;
                (stamp, changed.then(|| files.load()))
            })
            .await
            else {
                continue;
            };
            if stamp == seen {
                continue;
            }
            seen = stamp;
            let (cert, key) = (self.files.cert.display(), self.files.key.display());
            match loaded {
                Some(Ok(config)) => {
                    *self.current.write().unwrap_or_else(|p| p.into_inner()) = config;
                    tracing::info!("https: certificate reloaded from {cert} and {key}");
                }
                Some(Err(e)) => tracing::warn!(
                    "https: {cert} or {key} changed but does not load, keeping the previous \
                     certificate: {e}"
                ),
                None => tracing::warn!(
                    "https: cannot look at {cert} or {key}, keeping the previous certificate"
                ),
            }
        }
    }
}
