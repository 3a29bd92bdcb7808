//! Built-in TLS: the server terminates HTTPS itself with rustls, from a
//! certificate chain and a private key in PEM files, and reads them again
//! when they change, so a renewed certificate is served without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// What HSTS tells browsers: HTTPS only, for a year.
pub const HSTS: &str = "max-age=31536000";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {}: {message}", path.display())]
    Read { path: PathBuf, message: String },
    #[error("{}: no certificate in the file", path.display())]
    NoCertificate { path: PathBuf },
    #[error("the certificate {} and the key {} do not go together: {source}", cert.display(), key.display())]
    Mismatch { cert: PathBuf, key: PathBuf, source: rustls::Error },
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The certificate in use, and where it comes from.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// Modification times of the two files when last read.
    read_at: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl ReloadingCert {
    /// Reads the certificate chain and its key; refuses a pair that does not
    /// match.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<ReloadingCert, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let stamps = (modified(cert_path), modified(key_path));
        let key = Self::read(&provider, cert_path, key_path)?;
        Ok(ReloadingCert {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            provider,
            current: RwLock::new(Arc::new(key)),
            read_at: Mutex::new(stamps),
        })
    }

    fn read(provider: &CryptoProvider, cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
        let read_error = |path: &Path, e: &dyn std::fmt::Display| TlsError::Read {
            path: path.to_owned(),
            message: e.to_string(),
        };
        let chain = CertificateDer::pem_file_iter(cert_path)
            .map_err(|e| read_error(cert_path, &e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| read_error(cert_path, &e))?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate { path: cert_path.to_owned() });
        }
        let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| read_error(key_path, &e))?;
        CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Mismatch {
            cert: cert_path.to_owned(),
            key: key_path.to_owned(),
            source,
        })
    }

    /// Reads the files again if either changed since last read. `Ok(true)`:
    /// the new certificate is served from the next handshake on. A pair
    /// that does not load (a renewal half written, a wrong key) leaves the
    /// certificate in use as it is.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let stamps = (modified(&self.cert_path), modified(&self.key_path));
        let mut read_at = self.read_at.lock().expect("tls stamps lock");
        if *read_at == stamps {
            return Ok(false);
        }
        let key = Self::read(&self.provider, &self.cert_path, &self.key_path)?;
        *self.current.write().expect("tls certificate lock") = Arc::new(key);
        *read_at = stamps;
        Ok(true)
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The server configuration: TLS 1.2 and 1.3, HTTP/1.1, this
    /// certificate (whichever is current at each handshake).
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("tls certificate lock").clone())
    }
}
