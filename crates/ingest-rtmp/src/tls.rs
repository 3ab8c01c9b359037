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

use std::path::Path;
use std::sync::Arc;

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

/// The RTMPS listener's certificate chain and key.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key
    /// (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<ServerTls> {
        let certs = read_certs(cert)?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
            Error::tls(format!(
                "cannot read a private key from {}: {e}",
                key.display()
            ))
        })?;
        Self::from_der(certs, key)
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
        })
    }

    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.config))
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
