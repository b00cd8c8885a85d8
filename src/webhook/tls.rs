//! The serving certificate, swapped in place when it changes: read from PEM files (polled), or
//! handed over by the self-managed TLS loop ([`super::selftls`]), which reads it from its
//! Secret through the API.
//!
//! cert-manager (and any Secret volume) rotates the files behind the webhook's back, either by
//! an atomic symlink swap (`..data` in a Secret mount) or a plain rewrite. The resolver below
//! hands rustls whatever pair is current, so new handshakes pick up a rotation while open
//! connections keep the key they negotiated with. The files are polled (they are tiny): inotify
//! does not see symlink swaps on the mounted directory reliably, and polling needs no extra
//! crate. A changed pair is only installed if both parts parse and the key matches the
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

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} file {path}: {source} (check --tls-cert-file/--tls-key-file)")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate {0} holds no PEM CERTIFICATE block")]
    NoCertificate(String),
    #[error("certificate {origin} is not valid PEM: {message}")]
    BadCertificate { origin: String, message: String },
    #[error("key {origin} holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {message}")]
    BadKey { origin: String, message: String },
    #[error("key {key} does not match certificate {cert}: {message}")]
    Mismatch {
        cert: String,
        key: String,
        message: String,
    },
    #[error("cannot build the TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The raw bytes of the pair, to notice changes without parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contents {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

/// Where the pair comes from, as the errors name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub cert: String,
    pub key: String,
}

impl Origin {
    fn files(cert: &Path, key: &Path) -> Self {
        Self {
            cert: format!("file {}", cert.display()),
            key: format!("file {}", key.display()),
        }
    }
}

/// A `ResolvesServerCert` whose certificate can be replaced while the server runs.
#[derive(Debug)]
pub struct ReloadingCert {
    /// The files polled by [`ReloadingCert::reload_if_changed`]; `None` when the pair is handed
    /// over with [`ReloadingCert::offer`] instead.
    files: Option<(PathBuf, PathBuf)>,
    origin: Origin,
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
        let mut cert = Self::new(
            Origin::files(cert_path, key_path),
            read(cert_path, key_path)?,
        )?;
        cert.files = Some((cert_path.to_path_buf(), key_path.to_path_buf()));
        Ok(cert)
    }

    /// A pair that the caller replaces with [`ReloadingCert::offer`].
    pub fn new(origin: Origin, contents: Contents) -> Result<Self, TlsError> {
        let key = parse(&origin, &contents)?;
        Ok(Self {
            files: None,
            origin,
            current: Reloading::new(key, contents),
        })
    }

    /// Re-reads the files (if the pair comes from files); installs the pair if it changed and
    /// is valid. Returns whether a new pair was installed.
    pub fn reload_if_changed(&self, metrics: &Metrics) -> bool {
        let Some((cert_path, key_path)) = &self.files else {
            return false;
        };
        match read(cert_path, key_path) {
            Ok(contents) => self.offer(contents, metrics),
            Err(err) => {
                // A missing file mid-swap is normal for an instant; it is reported once the
                // content settles into something unparsable, not here.
                tracing::debug!(error = %err, "certificate files not readable right now");
                false
            }
        }
    }

    /// Installs `contents` if they differ from the pair in force and are valid; returns
    /// whether they were installed. Invalid contents are reported (log + metric) once stable.
    pub fn offer(&self, contents: Contents, metrics: &Metrics) -> bool {
        match self.current.offer(contents, |c| parse(&self.origin, c)) {
            Verdict::Install(key) => {
                record_loaded(&key, metrics);
                tracing::info!(cert = %self.origin.cert, "serving certificate reloaded");
                true
            }
            Verdict::Reject(err) => {
                metrics.cert_reload_errors.inc();
                tracing::error!(error = %err, "new certificate/key pair rejected; still serving the previous one");
                false
            }
            Verdict::Wait => {
                tracing::debug!("certificate and key changed but do not form a valid pair yet");
                false
            }
            Verdict::Unchanged => false,
        }
    }

    /// Counts the pair in force as loaded and exports its expiry (the server calls it once at
    /// startup; [`ReloadingCert::offer`] on every change).
    pub fn record_loaded(&self, metrics: &Metrics) {
        record_loaded(&self.current.current(), metrics);
    }

    /// The current end-entity certificate (DER), for tests and logs.
    pub fn current_certificate(&self) -> Option<CertificateDer<'static>> {
        self.current.current().cert.first().cloned()
    }
}

fn record_loaded(key: &CertifiedKey, metrics: &Metrics) {
    metrics.cert_reloads.inc();
    if let Some(not_after) = key.cert.first().and_then(|der| not_after(der)) {
        metrics.certificate_expiry.set(not_after);
    }
}

/// The certificate's notAfter, in seconds since the Unix epoch.
fn not_after(der: &CertificateDer<'_>) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
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

fn parse(origin: &Origin, c: &Contents) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(&c.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            origin: origin.cert.clone(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(origin.cert.clone()));
    }
    let key = PrivateKeyDer::from_pem_slice(&c.key).map_err(|e| TlsError::BadKey {
        origin: origin.key.clone(),
        message: e.to_string(),
    })?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(chain, key, &provider).map_err(|e| TlsError::Mismatch {
        cert: origin.cert.clone(),
        key: origin.key.clone(),
        message: e.to_string(),
    })
}

/// `--tls-min-version`: the oldest TLS version the admission port accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    V1_2,
    V1_3,
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
