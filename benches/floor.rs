//! The floor for `irsa webhook`'s per-request cost: the least an HTTPS admission
//! server on the same stack can do. axum + axum-server + rustls (aws-lc-rs), the same TLS
//! configuration shape as `irsa webhook` (TLS 1.3 and 1.2, ALPN h2 then http/1.1) and the same
//! multi-threaded tokio runtime; `POST /mutate` reads the body, parses it into
//! `serde_json::Value` and answers a constant AdmissionReview response with a constant patch
//! (only the request's uid is echoed, as the API server requires).
//!
//! Not a criterion bench: a server for `scripts/bench-floor.sh`, which measures it beside
//! `irsa webhook`. Run by hand with
//! `cargo bench --bench floor -- --listen 127.0.0.1:18445 --cert tls.crt --key tls.key`;
//! it stops on SIGTERM or Ctrl-C, so that valgrind writes its profile.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::Context;
use axum::{Router, body::Bytes, http::header, response::IntoResponse, routing::post};
use axum_server::tls_rustls::RustlsConfig;
use base64::{Engine, engine::general_purpose::STANDARD};
use clap::Parser;
use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};
use serde_json::Value;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    key: PathBuf,
    /// Appended by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The patch irsa adds to the benchmark pod, in substance: an env var and a token volume.
const PATCH: &str = r#"[{"op":"add","path":"/spec/containers/0/env/-","value":{"name":"AWS_ROLE_ARN","value":"arn:aws:iam::111122223333:role/bench-app"}},{"op":"add","path":"/spec/volumes/-","value":{"name":"aws-iam-token","projected":{"sources":[{"serviceAccountToken":{"audience":"sts.amazonaws.com","expirationSeconds":86400,"path":"token"}}]}}}]"#;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    // Only fails when a provider is installed already, which this process never does.
    let _ = provider.clone().install_default();
    let chain = CertificateDer::pem_file_iter(&args.cert)
        .with_context(|| format!("cannot read {}", args.cert.display()))?
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&args.key)
        .with_context(|| format!("cannot read {}", args.key.display()))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let patch = STANDARD.encode(PATCH);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let app = Router::new().route(
            "/mutate",
            post(move |body: Bytes| async move { respond(&body, &patch) }),
        );
        let handle = axum_server::Handle::new();
        let stop = handle.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            stop.shutdown();
            anyhow::Ok(())
        });
        axum_server::bind_rustls(args.listen, RustlsConfig::from_config(Arc::new(config)))
            .handle(handle)
            .serve(app.into_make_service())
            .await?;
        anyhow::Ok(())
    })
}

fn respond(body: &[u8], patch: &str) -> impl IntoResponse + use<> {
    let review: Value = match serde_json::from_slice(body) {
        Ok(review) => review,
        Err(_) => {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "text/plain")],
                String::new(),
            );
        }
    };
    // `Value`'s Display writes the uid as a JSON string, quoted and escaped.
    let uid = &review["request"]["uid"];
    let answer = format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{{"uid":{uid},"allowed":true,"patchType":"JSONPatch","patch":"{patch}"}}}}"#
    );
    (
        axum::http::StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        answer,
    )
}
