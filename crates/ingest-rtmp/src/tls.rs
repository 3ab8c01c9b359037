//! TLS for RTMPS, on rustls (with the `ring` provider): the listener's
//! certificate and key, and the roots a push verifies its destination with.
//!
//! **Roots.** A push to an `rtmps://` destination verifies its certificate
//! against either the CA file configured for it ([`ClientTls::with_ca_file`],
//! used alone: the usual case for a private or self-signed destination) or
//! the platform's roots ([`ClientTls::platform_roots`]), loaded once with
//! `rustls-native-certs`. That crate was picked over
//! `rustls-platform-verifier`: both are maintained by the rustls project,
//! but `rustls-native-certs` is a few hundred lines with one dependency on
//! Linux (it reads the system store, honouring `SSL_CERT_FILE` /
//! `SSL_CERT_DIR`), and its roots go into an ordinary `RootCertStore`, the
//! same path as a configured CA. The platform verifier would add
//! OS-specific verification (and, on Linux, does the same file reading).
//!
//! **Certificate renewal.** A listener whose certificate came from files
//! ([`ServerTls::from_pem_files`]) looks at the files' modification times
//! and sizes every [`RELOAD_CHECK_INTERVAL`] and reads them again when
//! either changed: connections accepted from then on get the new
//! certificate, open ones keep theirs. A new pair that cannot be used (a
//! file half written, a key that does not fit the certificate) is logged
//! and the old certificate stays in service; the next change is tried again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::error::{Error, Result};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            Error::tls(format!(
                "cannot read certificates from {}: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::tls(format!(
            "no PEM certificate in {}",
            path.display()
        )));
    }
    Ok(certs)
}

/// How often an RTMPS listener checks whether its certificate or key file
/// changed.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// The RTMPS listener's certificate chain and key.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
    /// The certificate and key files, when read from files.
    files: Option<Arc<(PathBuf, PathBuf)>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key
    /// (PKCS#8, PKCS#1 or SEC1). A listener serving it reads them again
    /// when they change (see the [module docs](self)).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<ServerTls> {
        let certs = read_certs(cert)?;
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
            Error::tls(format!(
                "cannot read a private key from {}: {e}",
                key.display()
            ))
        })?;
        Ok(ServerTls {
            files: Some(Arc::new((cert.to_path_buf(), key.to_path_buf()))),
            ..Self::from_der(certs, key_der)?
        })
    }

    /// The certificate and key files, when read from files.
    pub fn files(&self) -> Option<(&Path, &Path)> {
        self.files
            .as_deref()
            .map(|(c, k)| (c.as_path(), k.as_path()))
    }

    /// A certificate chain and key already in DER form.
    pub fn from_der(
        certs: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<ServerTls> {
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| Error::tls(format!("certificate and key do not fit: {e}")))?;
        Ok(ServerTls {
            config: Arc::new(config),
            files: None,
        })
    }

    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.config))
    }
}

/// What identifies a version of a file: its modification time and size
/// (`None` when it cannot be read).
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// A listener's certificate, read again from its files when they change.
pub(crate) struct Reloading {
    current: ServerTls,
    acceptor: TlsAcceptor,
    /// The versions of the files last read (or tried).
    seen: [Stamp; 2],
}

impl Reloading {
    pub(crate) fn new(tls: ServerTls) -> Self {
        let seen = Self::stamps(&tls);
        Reloading {
            acceptor: tls.acceptor(),
            current: tls,
            seen,
        }
    }

    fn stamps(tls: &ServerTls) -> [Stamp; 2] {
        match tls.files() {
            Some((cert, key)) => [stamp(cert), stamp(key)],
            None => [None, None],
        }
    }

    /// Whether the certificate came from files (that may change).
    pub(crate) fn files_known(&self) -> bool {
        self.current.files.is_some()
    }

    /// The acceptor for new connections.
    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Reads the files again if they changed since last time: `Ok(true)`
    /// when the new certificate is in service, `Ok(false)` when nothing
    /// changed (or the certificate does not come from files), an error
    /// (the old certificate stays) when the new files are not usable.
    pub(crate) fn check(&mut self) -> Result<bool> {
        let Some((cert, key)) = self.current.files() else {
            return Ok(false);
        };
        let now = Self::stamps(&self.current);
        if now == self.seen {
            return Ok(false);
        }
        // Tried once per change: a bad file is not re-read every check.
        self.seen = now;
        let fresh = ServerTls::from_pem_files(cert, key)?;
        self.acceptor = fresh.acceptor();
        self.current = fresh;
        Ok(true)
    }
}

/// How a push verifies an `rtmps://` destination.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Trusts the platform's roots. Certificates that cannot be parsed are
    /// skipped; no usable root at all is an error.
    pub fn platform_roots() -> Result<ClientTls> {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = rustls::RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            let why = found
                .errors
                .first()
                .map_or_else(|| "none found".to_string(), |e| e.to_string());
            return Err(Error::tls(format!("no platform root certificates: {why}")));
        }
        Self::with_roots(roots)
    }

    /// Trusts exactly the certificates of a PEM file.
    pub fn with_ca_file(path: &Path) -> Result<ClientTls> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in read_certs(path)? {
            roots.add(cert).map_err(|e| {
                Error::tls(format!(
                    "unusable CA certificate in {}: {e}",
                    path.display()
                ))
            })?;
        }
        Self::with_roots(roots)
    }

    /// Trusts these roots.
    pub fn with_roots(roots: rustls::RootCertStore) -> Result<ClientTls> {
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ClientTls {
            config: Arc::new(config),
        })
    }

    pub(crate) fn connector(&self) -> TlsConnector {
        TlsConnector::from(Arc::clone(&self.config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate and its key, PEM.
    fn pair() -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    /// Writes `text` to `path` with modification time `secs` after the epoch
    /// (explicit, so that two writes in one clock tick still differ).
    fn write(path: &Path, text: &str, secs: u64) {
        std::fs::write(path, text).expect("write");
        let f = std::fs::File::options()
            .write(true)
            .open(path)
            .expect("open");
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
            .expect("mtime");
    }

    #[test]
    fn a_changed_pair_is_read_again_and_a_bad_one_keeps_the_old() {
        let dir = std::env::temp_dir().join(format!("tidewater-tls-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let (c1, k1) = pair();
        write(&cert, &c1, 1_000);
        write(&key, &k1, 1_000);
        let tls = ServerTls::from_pem_files(&cert, &key).expect("tls");
        let first = Arc::clone(&tls.config);
        let mut r = Reloading::new(tls);
        assert!(r.files_known());
        assert!(!r.check().expect("unchanged"));

        let (c2, k2) = pair();
        write(&cert, &c2, 2_000);
        write(&key, &k2, 2_000);
        assert!(r.check().expect("reloaded"));
        assert!(!Arc::ptr_eq(&r.current.config, &first), "a new config");
        let second = Arc::clone(&r.current.config);

        // A key that does not fit: the second pair stays, and the bad files
        // are not read again until they change.
        write(&key, &k1, 3_000);
        let e = r.check().expect_err("does not fit");
        assert!(e.to_string().contains("do not fit"), "{e}");
        assert!(Arc::ptr_eq(&r.current.config, &second));
        assert!(!r.check().expect("tried already"));
        // Garbage, then the matching key again.
        write(&key, "not a key", 4_000);
        assert!(r.check().is_err());
        write(&key, &k2, 5_000);
        assert!(r.check().expect("usable again"));

        // A certificate that does not come from files is never re-read.
        let mut fixed = Reloading::new(ServerTls {
            files: None,
            ..r.current.clone()
        });
        assert!(!fixed.files_known());
        assert!(!fixed.check().expect("nothing to read"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
