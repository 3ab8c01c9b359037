//! `[https]`: the same HTTP service (every route, the same limits) inside
//! TLS, when a certificate and key are configured.
//!
//! The files are PEM: the chain leaf first, and a PKCS#8, PKCS#1 or SEC1
//! key. While the server runs they are looked at every few seconds and
//! loaded again when either changed; a new pair that does not load (half
//! written, not matching) is logged and the previous one stays in use.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;

use super::setting_error;
use crate::error::Result;
use crate::tls::TlsFiles;

/// The HTTPS port when none is configured.
pub const DEFAULT_HTTPS_PORT: u16 = 8443;

/// `[https]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpsSection {
    /// Address and port (default `0.0.0.0:8443`).
    pub listen: SocketAddr,
    /// The certificate chain, PEM, leaf first. Without `cert` and `key` there
    /// is no HTTPS listener.
    pub cert: Option<PathBuf>,
    /// The private key of `cert`, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
}

impl Default for HttpsSection {
    fn default() -> Self {
        HttpsSection {
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_HTTPS_PORT)),
            cert: None,
            key: None,
        }
    }
}

impl HttpsSection {
    /// Checks the section: both or neither of `cert` and `key`, and that
    /// their files load.
    pub(super) fn check(&self) -> Result<()> {
        self.tls_files().map(drop)
    }

    /// The certificate and key files, loaded once to check them, when both
    /// are configured; an error names the key whose file is wrong.
    pub fn tls_files(&self) -> Result<Option<TlsFiles>> {
        match (&self.cert, &self.key) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(setting_error(
                "https.key".into(),
                "missing: https.cert is set, the listener needs its key too".into(),
            )),
            (None, Some(_)) => Err(setting_error(
                "https.cert".into(),
                "missing: https.key is set, the listener needs its certificate too".into(),
            )),
            (Some(cert), Some(key)) => {
                let files = TlsFiles::new(cert.clone(), key.clone());
                match files.load() {
                    Ok(_) => Ok(Some(files)),
                    Err(e) => Err(setting_error(e.key().into(), e.to_string())),
                }
            }
        }
    }
}
