//! TLS for the extender server: the serving certificate and key come from PEM files — a mounted
//! `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`), as cert-manager writes it — and are
//! reloaded on the next handshake after either file changes, so a rotated certificate is served
//! without a restart.
//!
//! With a client CA (`--extender-client-ca`) the extender also verifies client certificates:
//! that is how the scheduler authenticates (mutual TLS). Handshakes run per connection under
//! the limits of [`super::http`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

/// Where the serving certificate chain and its private key are read from.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first (`tls.crt`).
    pub cert: PathBuf,
    /// PEM private key, PKCS#8, PKCS#1 or SEC1 (`tls.key`).
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no usable PEM private key: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("{path} cannot verify client certificates: {reason}")]
    ClientCa { path: PathBuf, reason: String },
    #[error("the key in {key} does not match the certificate in {cert}: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

fn modified(path: &Path) -> Result<SystemTime, TlsError> {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
}

/// Reads and checks the certificate chain and key (the key must match the leaf certificate).
pub fn load(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let cert_pem = std::fs::read(&files.cert).map_err(|source| TlsError::Read {
        path: files.cert.clone(),
        source,
    })?;
    let key_pem = std::fs::read(&files.key).map_err(|source| TlsError::Read {
        path: files.key.clone(),
        source,
    })?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::NoCertificate {
            path: files.cert.clone(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Key {
        path: files.key.clone(),
        reason: e.to_string(),
    })?;
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| TlsError::Key {
        path: files.key.clone(),
        reason: e.to_string(),
    })?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|e| TlsError::Mismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
        reason: e.to_string(),
    })?;
    Ok(certified)
}

/// Serves the newest valid certificate: on each handshake it compares the files' modification
/// times with the loaded ones and reloads when they moved. A reload that fails (say, a
/// half-written file) keeps the previous certificate and logs a warning.
#[derive(Debug)]
struct ReloadingCertificate {
    files: TlsFiles,
    current: RwLock<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    stamps: (SystemTime, SystemTime),
    key: Arc<CertifiedKey>,
}

impl ReloadingCertificate {
    fn new(files: TlsFiles) -> Result<Self, TlsError> {
        let stamps = (modified(&files.cert)?, modified(&files.key)?);
        let key = Arc::new(load(&files)?);
        Ok(Self {
            files,
            current: RwLock::new(Loaded { stamps, key }),
        })
    }

    fn current(&self) -> Option<Arc<CertifiedKey>> {
        let stamps = (modified(&self.files.cert).ok()?, modified(&self.files.key).ok()?);
        {
            let loaded = self.current.read().ok()?;
            if loaded.stamps == stamps {
                return Some(loaded.key.clone());
            }
        }
        let mut loaded = self.current.write().ok()?;
        match load(&self.files) {
            Ok(key) => {
                tracing::info!(cert = %self.files.cert.display(), "reloaded the extender's serving certificate");
                *loaded = Loaded {
                    stamps,
                    key: Arc::new(key),
                };
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot reload the extender's serving certificate; keeping the previous one");
            }
        }
        Some(loaded.key.clone())
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

/// Reads the PEM CA bundle that signs the clients allowed to call (the scheduler's client
/// certificate); fails naming the file when it holds no usable certificate.
pub fn client_roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|_| TlsError::NoCertificate {
                path: path.to_path_buf(),
            })?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(roots)
}

/// The acceptor for the given files; fails now, naming the file, if they are unusable.
///
/// With `client_ca`, a client may present a certificate; one that does not chain to that CA
/// fails the handshake, one that does marks the connection as
/// [`super::http::Caller::VerifiedCertificate`]. Clients without a certificate still connect
/// (so probes reach `/healthz`); the routes that act refuse them with 401.
pub fn acceptor(files: TlsFiles, client_ca: Option<&Path>) -> Result<TlsAcceptor, TlsError> {
    let resolver = Arc::new(ReloadingCertificate::new(files)?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Key {
            path: PathBuf::new(),
            reason: e.to_string(),
        })?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let roots = client_roots(path)?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mom-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_missing_certificate_file_is_named_in_the_error() {
        let dir = temp_dir("missing");
        let files = TlsFiles {
            cert: dir.join("nope.crt"),
            key: dir.join("nope.key"),
        };
        let err = load(&files).unwrap_err().to_string();
        assert!(err.contains("nope.crt"), "{err}");
    }

    #[test]
    fn a_file_without_pem_blocks_is_rejected_naming_it() {
        let dir = temp_dir("garbage");
        let files = TlsFiles {
            cert: write(&dir, "tls.crt", "not a certificate\n"),
            key: write(&dir, "tls.key", "not a key\n"),
        };
        let err = load(&files).unwrap_err().to_string();
        assert!(err.contains("tls.crt") && err.contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn a_certificate_without_a_key_is_rejected_naming_the_key_file() {
        let dir = temp_dir("nokey");
        // Any syntactically valid PEM certificate block gets past the first check.
        let cert = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
        let files = TlsFiles {
            cert: write(&dir, "tls.crt", cert),
            key: write(&dir, "tls.key", "no key here\n"),
        };
        let err = load(&files).unwrap_err().to_string();
        assert!(err.contains("tls.key"), "{err}");
    }
}
