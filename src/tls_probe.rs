//! One verified TLS handshake that also returns the chain the server presented: how the
//! controller pins an issuer's thumbprint and how the doctor checks that a webhook's
//! `caBundle` verifies the certificate it serves now. No HTTP: a server need only speak TLS.

use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;

/// Which roots verify a server's chain.
#[derive(Debug, Clone, Default)]
pub enum Roots {
    /// The operating system's trust store (production).
    #[default]
    Platform,
    /// Only these CA certificates (private issuers, a webhook's caBundle, tests).
    Only(Vec<CertificateDer<'static>>),
}

/// Why a [`handshake`] failed: the server could not be reached, or it was and its chain did
/// not verify (or the probe could not be set up).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Setup(String),
    #[error("{0}")]
    Connect(String),
    #[error("{0}")]
    Handshake(String),
}

/// Connects to `host:port`, verifies the chain for `server_name` against `roots`, and returns
/// it as presented (leaf first). The error says which part failed (connect or handshake, with
/// rustls' reason, such as an unknown issuer or an expired certificate).
pub async fn handshake(
    host: &str,
    port: u16,
    server_name: &str,
    roots: &Roots,
) -> Result<Vec<CertificateDer<'static>>, ProbeError> {
    let recorder = recording_verifier(roots).map_err(ProbeError::Setup)?;
    let config = config_with(recorder.clone()).map_err(ProbeError::Setup)?;
    // IP literals are valid names (tests, some on-prem setups); URL parsers already strip the
    // brackets of IPv6 hosts.
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| {
        ProbeError::Setup(format!(
            "{server_name:?} is not a valid TLS server name: {e}"
        ))
    })?;
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| ProbeError::Connect(format!("connecting to {host}:{port}: {e}")))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| ProbeError::Handshake(format!("TLS handshake with {host}:{port}: {e}")))?;
    Ok(recorder
        .chain
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone())
}

/// A client configuration verifying against `roots` (for an HTTP client on the same terms).
pub fn client_config(roots: &Roots) -> Result<rustls::ClientConfig, String> {
    config_with(recording_verifier(roots)?)
}

/// A verifier for `roots` that records the chain it verified.
fn recording_verifier(roots: &Roots) -> Result<Arc<RecordingVerifier>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let inner: Arc<dyn ServerCertVerifier> = match roots {
        Roots::Platform => Arc::new(
            rustls_platform_verifier::Verifier::new(provider)
                .map_err(|e| format!("loading the platform's trust store: {e}"))?,
        ),
        Roots::Only(certs) => {
            let mut store = rustls::RootCertStore::empty();
            for c in certs {
                store
                    .add(c.clone())
                    .map_err(|e| format!("bad root certificate: {e}"))?;
            }
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider)
                .build()
                .map_err(|e| format!("building the verifier: {e}"))?
        }
    };
    Ok(Arc::new(RecordingVerifier {
        inner,
        chain: Mutex::new(Vec::new()),
    }))
}

fn config_with(verifier: Arc<RecordingVerifier>) -> Result<rustls::ClientConfig, String> {
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .dangerous()
    .with_custom_certificate_verifier(verifier)
    .with_no_client_auth())
}

/// Delegates every decision to `inner` and remembers the chain the server presented.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<dyn ServerCertVerifier>,
    chain: Mutex<Vec<CertificateDer<'static>>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        *self.chain.lock().unwrap_or_else(PoisonError::into_inner) = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
