//! The IAM OIDC provider thumbprint: SHA-1 of the top (last) certificate the issuer's TLS
//! endpoint presents, which is what eksctl and the AWS console compute.
//!
//! AWS ignores the thumbprint for issuers whose certificate chains to a well-known CA, so it is
//! optional: every failure here becomes [`Thumbprint::Unavailable`] with a warning for the
//! operator, never an error that stops reconciliation.
//!
//! The chain is verified (platform roots, or the roots given) before it is trusted: pinning a
//! certificate a man in the middle presented would silently break every pod's AssumeRole.

use std::time::Duration;

use rustls::pki_types::CertificateDer;

use crate::issuer::{DISCOVERY_PATH, document_url};
use crate::tls_probe;
pub use crate::tls_probe::Roots;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Thumbprint {
    /// Lower-case hex SHA-1 (40 characters) of the top certificate presented.
    Sha1(String),
    /// Why none could be computed; log it and carry on without a thumbprint.
    Unavailable(String),
}

impl Thumbprint {
    pub fn value(&self) -> Option<&str> {
        match self {
            Thumbprint::Sha1(v) => Some(v),
            Thumbprint::Unavailable(_) => None,
        }
    }

    pub fn warning(&self) -> Option<&str> {
        match self {
            Thumbprint::Sha1(_) => None,
            Thumbprint::Unavailable(w) => Some(w),
        }
    }
}

/// Lower-case hex SHA-1 of `der`.
pub fn sha1_hex(der: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        der,
    ))
}

/// The thumbprint of a chain as presented (leaf first): the last certificate's SHA-1.
pub fn chain_thumbprint(chain: &[CertificateDer<'_>]) -> Option<String> {
    chain.last().map(|c| sha1_hex(c))
}

/// The thumbprints IAM may verify against: the issuer host's, and the JWKS host's when the
/// issuer's discovery document points elsewhere (IAM checks the certificate of the host that
/// serves the keys). The JWKS host is read from the discovery document served at the issuer
/// URL, as STS reads it, over a connection verified against the same `roots`.
pub async fn issuer_thumbprints(issuer: &str, roots: &Roots, timeout: Duration) -> Vec<Thumbprint> {
    let mut out = vec![fetch(issuer, roots, timeout).await];
    match tokio::time::timeout(timeout, jwks_uri(issuer, roots)).await {
        Ok(Ok(uri)) if origin(&uri) != origin(issuer) => {
            out.push(fetch(&uri, roots, timeout).await);
        }
        Ok(Ok(_)) => {}
        Ok(Err(why)) => out.push(Thumbprint::Unavailable(format!(
            "no thumbprint for the JWKS host of issuer {issuer}: {why}; only the issuer \
             host's is kept"
        ))),
        Err(_) => out.push(Thumbprint::Unavailable(format!(
            "no thumbprint for the JWKS host of issuer {issuer}: its discovery document did \
             not arrive within {timeout:?}; only the issuer host's is kept"
        ))),
    }
    out
}

/// Scheme, host and port: what one TLS certificate covers.
fn origin(url: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()
        .map(|u| u.origin().ascii_serialization())
}

/// The `jwks_uri` of the discovery document served at `issuer`.
async fn jwks_uri(issuer: &str, roots: &Roots) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Discovery {
        jwks_uri: String,
    }
    let url = document_url(issuer, DISCOVERY_PATH);
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls_probe::client_config(roots)?)
        .build()
        .map_err(|e| e.to_string())?;
    let discovery: Discovery = async {
        http.get(&url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
    }
    .await
    .map_err(|e| format!("GET {url}: {e}"))?;
    Ok(discovery.jwks_uri)
}

/// Connects to the issuer's host over TLS and returns the thumbprint of what it presents.
pub async fn fetch(issuer: &str, roots: &Roots, timeout: Duration) -> Thumbprint {
    match tokio::time::timeout(timeout, fetch_inner(issuer, roots)).await {
        Ok(Ok(t)) => Thumbprint::Sha1(t),
        Ok(Err(why)) => Thumbprint::Unavailable(format!(
            "no thumbprint for issuer {issuer}: {why}; the OIDC provider is managed without one \
             (AWS verifies issuers with well-known CAs itself)"
        )),
        Err(_) => Thumbprint::Unavailable(format!(
            "no thumbprint for issuer {issuer}: no TLS handshake within {timeout:?}; the OIDC \
             provider is managed without one"
        )),
    }
}

async fn fetch_inner(issuer: &str, roots: &Roots) -> Result<String, String> {
    let url = reqwest::Url::parse(issuer).map_err(|e| format!("not a URL: {e}"))?;
    if url.scheme() != "https" {
        return Err("not an https URL".into());
    }
    let host = url.host_str().ok_or("URL has no host")?;
    let port = url.port_or_known_default().unwrap_or(443);
    let chain = tls_probe::handshake(host, port, host, roots)
        .await
        .map_err(|e| e.to_string())?;
    chain_thumbprint(&chain).ok_or_else(|| "the server presented no certificate".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use rustls::pki_types::PrivateKeyDer;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn sha1_known_vector() {
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(chain_thumbprint(&[]), None);
    }

    struct Pki {
        root: CertificateDer<'static>,
        intermediate: CertificateDer<'static>,
        leaf: CertificateDer<'static>,
        leaf_key: PrivateKeyDer<'static>,
    }

    fn ca_params(name: &str) -> CertificateParams {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, name.to_string());
        p
    }

    /// root CA → intermediate CA → leaf for 127.0.0.1.
    fn pki() -> Pki {
        let root =
            CertifiedIssuer::self_signed(ca_params("test root"), KeyPair::generate().unwrap())
                .unwrap();
        let intermediate = CertifiedIssuer::signed_by(
            ca_params("test intermediate"),
            KeyPair::generate().unwrap(),
            &root,
        )
        .unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &intermediate)
            .unwrap();
        Pki {
            root: root.der().clone(),
            intermediate: intermediate.der().clone(),
            leaf: leaf.der().clone(),
            leaf_key: PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap(),
        }
    }

    /// Serves TLS handshakes with `chain` on a free port until the test ends.
    async fn serve(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> u16 {
        serve_document(chain, key, None).await
    }

    /// As [`serve`], answering every HTTP/1.1 request with `document` when given, `PORT` in it
    /// replaced by the port served.
    async fn serve_document(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        document: Option<String>,
    ) -> u16 {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let document = document.map(|d| d.replace("PORT", &port.to_string()));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let document = document.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Some(body) = document else { return };
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.ends_with(b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        port
    }

    const T: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn thumbprint_is_the_last_certificate_presented() {
        crate::install_crypto_provider();
        let pki = pki();
        let roots = Roots::Only(vec![pki.root.clone()]);

        // Full chain presented: the top is the root.
        let port = serve(
            vec![pki.leaf.clone(), pki.intermediate.clone(), pki.root.clone()],
            pki.leaf_key.clone_key(),
        )
        .await;
        let issuer = format!("https://127.0.0.1:{port}/id/ABC");
        assert_eq!(
            fetch(&issuer, &roots, T).await,
            Thumbprint::Sha1(sha1_hex(&pki.root))
        );

        // Root omitted (the usual case): the top presented is the intermediate, as in eksctl.
        let port = serve(
            vec![pki.leaf.clone(), pki.intermediate.clone()],
            pki.leaf_key.clone_key(),
        )
        .await;
        let t = fetch(&format!("https://127.0.0.1:{port}"), &roots, T).await;
        assert_eq!(t, Thumbprint::Sha1(sha1_hex(&pki.intermediate)));
        assert_eq!(t.value().map(str::len), Some(40));
    }

    /// A private CA, the discovery document on one host and the keys on another: both hosts'
    /// thumbprints, each its own chain's top. Keys on the issuer's own origin add none.
    #[tokio::test]
    async fn the_jwks_host_is_pinned_too_when_it_is_another_host() {
        crate::install_crypto_provider();
        let (issuer_pki, jwks_pki) = (pki(), pki());
        let roots = Roots::Only(vec![issuer_pki.root.clone(), jwks_pki.root.clone()]);
        let jwks_port = serve(
            vec![jwks_pki.leaf.clone(), jwks_pki.intermediate.clone()],
            jwks_pki.leaf_key.clone_key(),
        )
        .await;
        let discovery =
            |jwks_uri: &str| Some(format!(r#"{{"issuer":"x","jwks_uri":"{jwks_uri}"}}"#));
        let issuer_port = serve_document(
            vec![issuer_pki.leaf.clone(), issuer_pki.intermediate.clone()],
            issuer_pki.leaf_key.clone_key(),
            discovery(&format!("https://127.0.0.1:{jwks_port}/keys")),
        )
        .await;
        let issuer = format!("https://127.0.0.1:{issuer_port}/id/ABC");
        assert_eq!(
            issuer_thumbprints(&issuer, &roots, T).await,
            vec![
                Thumbprint::Sha1(sha1_hex(&issuer_pki.intermediate)),
                Thumbprint::Sha1(sha1_hex(&jwks_pki.intermediate)),
            ]
        );

        let self_served = serve_document(
            vec![issuer_pki.leaf.clone(), issuer_pki.intermediate.clone()],
            issuer_pki.leaf_key.clone_key(),
            discovery("https://127.0.0.1:PORT/openid/v1/jwks"),
        )
        .await;
        let issuer = format!("https://127.0.0.1:{self_served}");
        assert_eq!(
            issuer_thumbprints(&issuer, &roots, T).await,
            vec![Thumbprint::Sha1(sha1_hex(&issuer_pki.intermediate))]
        );
    }

    #[tokio::test]
    async fn failures_are_warnings() {
        crate::install_crypto_provider();
        let pki = pki();
        let port = serve(
            vec![pki.leaf.clone(), pki.intermediate.clone()],
            pki.leaf_key.clone_key(),
        )
        .await;
        let issuer = format!("https://127.0.0.1:{port}");

        // A chain that does not verify is not pinned.
        let other = pki_root_only();
        let t = fetch(&issuer, &Roots::Only(vec![other]), T).await;
        let w = t.warning().unwrap();
        assert!(w.contains("TLS handshake") && w.contains(&issuer), "{w}");

        // Nothing listening.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let t = fetch(&format!("https://127.0.0.1:{closed}"), &Roots::Platform, T).await;
        assert!(t.warning().unwrap().contains("connecting to"), "{t:?}");

        // Not https.
        let t = fetch("http://127.0.0.1:1", &Roots::Platform, T).await;
        assert!(t.warning().unwrap().contains("not an https URL"), "{t:?}");
    }

    fn pki_root_only() -> CertificateDer<'static> {
        CertifiedIssuer::self_signed(ca_params("unrelated"), KeyPair::generate().unwrap())
            .unwrap()
            .der()
            .clone()
    }
}
