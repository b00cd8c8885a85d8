//! A real HTTPS OIDC issuer on 127.0.0.1: discovery document and JWKS served by axum over
//! rustls with a certificate made in the test (its PEM is handed to the client as a root).

use std::net::SocketAddr;

use axum::{Json, Router, routing::get};
use serde_json::{Value, json};

pub struct Issuer {
    /// `https://127.0.0.1:<port>`, exactly as the tokens' `iss`.
    pub url: String,
    /// The server certificate, to trust it.
    pub ca_pem: String,
}

/// Serves `/.well-known/openid-configuration` (naming `issuer_field`, which a test may set
/// to something else than the real URL) and `/keys` with `jwks`.
pub async fn start(jwks: Value, issuer_field: Option<String>) -> Issuer {
    let listener = HttpsListener::bind();
    let url = listener.url.clone();
    let discovery = json!({
        "issuer": issuer_field.unwrap_or_else(|| url.clone()),
        "jwks_uri": format!("{url}/keys"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256"],
    });
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { Json(discovery) }),
        )
        .route("/keys", get(move || async move { Json(jwks) }));
    let ca_pem = listener.serve(app).await;
    Issuer { url, ca_pem }
}

/// A port on 127.0.0.1, bound before the app is built because an issuer's documents name
/// their own URL.
pub struct HttpsListener {
    listener: std::net::TcpListener,
    /// `https://127.0.0.1:<port>`.
    pub url: String,
}

impl HttpsListener {
    pub fn bind() -> Self {
        irsa::install_crypto_provider();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let url = format!("https://127.0.0.1:{}", addr.port());
        Self { listener, url }
    }

    /// Serves `app` over rustls with a certificate for 127.0.0.1 made here; returns its PEM,
    /// for the client to trust.
    pub async fn serve(self, app: Router) -> String {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
            cert.cert.pem().into_bytes(),
            cert.signing_key.serialize_pem().into_bytes(),
        )
        .await
        .unwrap();
        let server = axum_server::from_tcp_rustls(self.listener, tls).unwrap();
        tokio::spawn(async move { server.serve(app.into_make_service()).await });
        cert.cert.pem()
    }
}
