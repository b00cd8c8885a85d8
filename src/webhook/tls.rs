//! The serving certificate: loaded from PEM files and swapped in place when they change.
//!
//! cert-manager (and any Secret volume) rotates the files behind the webhook's back, either by
//! an atomic symlink swap (`..data` in a Secret mount) or a plain rewrite. The resolver below
//! hands rustls whatever pair is current, so new handshakes pick up a rotation while open
//! connections keep the key they negotiated with. The files are polled (they are tiny): inotify
//! does not see symlink swaps on the mounted directory reliably, and polling needs no extra
//! crate. A changed pair is only installed if both files parse and the key matches the
//! certificate; otherwise the old pair stays, and the error is logged and counted once the
//! broken content is stable (see [`super::reload`]).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};

use super::{
    metrics::Metrics,
    reload::{Reloading, Verdict},
};
use crate::cli::TlsVersion;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} file {path}: {source} (check --tls-cert-file/--tls-key-file)")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate file {0} holds no PEM CERTIFICATE block")]
    NoCertificate(PathBuf),
    #[error("certificate file {path} is not valid PEM: {message}")]
    BadCertificate { path: PathBuf, message: String },
    #[error("key file {path} holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {message}")]
    BadKey { path: PathBuf, message: String },
    #[error("key file {key} does not match certificate {cert}: {message}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
    #[error("cannot build the TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The raw bytes of the two files, to notice changes without parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
}

/// A `ResolvesServerCert` whose certificate can be replaced while the server runs.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: Reloading<CertifiedKey, Contents>,
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.current())
    }
}

impl ReloadingCert {
    /// Loads the pair once; startup fails on a bad pair (the Secret volume is mounted before
    /// the container starts, so a bad pair here is a configuration error, not a race).
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let contents = read(cert_path, key_path)?;
        let key = parse(cert_path, key_path, &contents)?;
        Ok(Self {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: Reloading::new(key, contents),
        })
    }

    /// Re-reads the files; installs the pair if it changed and is valid. Returns whether a new
    /// pair was installed.
    pub fn reload_if_changed(&self, metrics: &Metrics) -> bool {
        let contents = match read(&self.cert_path, &self.key_path) {
            Ok(c) => c,
            Err(err) => {
                // A missing file mid-swap is normal for an instant; it is reported once the
                // content settles into something unparsable, not here.
                tracing::debug!(error = %err, "certificate files not readable right now");
                return false;
            }
        };
        match self
            .current
            .offer(contents, |c| parse(&self.cert_path, &self.key_path, c))
        {
            Verdict::Install(_) => {
                metrics.cert_reloads.inc();
                tracing::info!(cert = %self.cert_path.display(), "serving certificate reloaded");
                true
            }
            Verdict::Reject(err) => {
                metrics.cert_reload_errors.inc();
                tracing::error!(error = %err, "new certificate/key pair rejected; still serving the previous one");
                false
            }
            Verdict::Wait => {
                tracing::debug!("certificate files changed but do not form a valid pair yet");
                false
            }
            Verdict::Unchanged => false,
        }
    }

    /// The current end-entity certificate (DER), for tests and logs.
    pub fn current_certificate(&self) -> Option<CertificateDer<'static>> {
        self.current.current().cert.first().cloned()
    }
}

fn read(cert_path: &Path, key_path: &Path) -> Result<Contents, TlsError> {
    let read = |what, path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            what,
            path: path.to_path_buf(),
            source,
        })
    };
    Ok(Contents {
        cert: read("certificate", cert_path)?,
        key: read("key", key_path)?,
    })
}

fn parse(cert_path: &Path, key_path: &Path, c: &Contents) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(&c.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: cert_path.to_path_buf(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert_path.to_path_buf()));
    }
    let key = PrivateKeyDer::from_pem_slice(&c.key).map_err(|e| TlsError::BadKey {
        path: key_path.to_path_buf(),
        message: e.to_string(),
    })?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(chain, key, &provider).map_err(|e| TlsError::Mismatch {
        cert: cert_path.to_path_buf(),
        key: key_path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The rustls server configuration: HTTP/2 preferred (the API server speaks it to webhooks),
/// HTTP/1.1 for curl and older clients.
pub fn server_config(
    cert: Arc<ReloadingCert>,
    min_version: TlsVersion,
) -> Result<Arc<ServerConfig>, TlsError> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
