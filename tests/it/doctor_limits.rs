//! `irsa doctor` reads an issuer's discovery document and JWKS with a size cap.
//! A hostile issuer (an endless JWKS, an announced 100 MB document) gets a clear error naming
//! the URL and the cap, not the doctor's memory. The issuer is served by
//! `common::issuer::HttpsListener` (axum over rustls on 127.0.0.1), with bodies of our choosing.

use std::time::Duration;

use axum::{
    Json, Router,
    body::{Body, Bytes},
    http::header,
    response::IntoResponse,
    routing::get,
};
use irsa::doctor::sources::{MAX_ISSUER_DOCUMENT, http_client, issuer_documents};
use serde_json::json;

use crate::common::issuer::HttpsListener;

/// Serves `/.well-known/openid-configuration` with `discovery` (or the normal document
/// pointing at `/keys`) and `/keys` with `keys`; returns the issuer URL and its CA.
async fn issuer(
    discovery: Option<fn() -> axum::response::Response>,
    keys: fn() -> axum::response::Response,
) -> (String, String) {
    let listener = HttpsListener::bind();
    let url = listener.url.clone();
    let doc = json!({"issuer": url, "jwks_uri": format!("{url}/keys")});
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || async move {
                match discovery {
                    Some(serve) => serve(),
                    None => Json(doc).into_response(),
                }
            }),
        )
        .route("/keys", get(move || async move { keys() }));
    let ca_pem = listener.serve(app).await;
    (url, ca_pem)
}

/// `{"keys": [` and then spaces forever, chunked (no Content-Length).
fn endless_jwks() -> axum::response::Response {
    let start = futures::stream::once(async {
        Ok::<_, std::io::Error>(Bytes::from_static(b"{\"keys\": ["))
    });
    let filler = futures::stream::repeat_with(|| Ok(Bytes::from(vec![b' '; 64 * 1024])));
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(futures::StreamExt::chain(start, filler)),
    )
        .into_response()
}

/// A discovery document announced (Content-Length) at 100 MB.
fn announced_huge() -> axum::response::Response {
    let body = vec![b' '; 100 * 1024 * 1024];
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn no_keys() -> axum::response::Response {
    Json(json!({"keys": []})).into_response()
}

/// Generous: the doctor's own HTTP timeout is 10 s; a capped read ends long before.
const DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn an_endless_jwks_is_cut_at_the_cap_with_the_url_in_the_error() {
    let (url, ca) = issuer(None, endless_jwks).await;
    let http = http_client(Some(ca.as_bytes())).unwrap();
    let (discovery, jwks) = tokio::time::timeout(DEADLINE, issuer_documents(&http, &url))
        .await
        .expect("the doctor kept reading an endless JWKS");
    assert!(discovery.is_ok(), "{discovery:?}");
    let err = jwks.unwrap_err();
    assert!(
        err.contains(&format!("{url}/keys"))
            && err.contains(&format!("{} KiB", MAX_ISSUER_DOCUMENT / 1024)),
        "{err}"
    );
}

#[tokio::test]
async fn an_announced_oversized_discovery_document_is_refused_before_reading() {
    let (url, ca) = issuer(Some(announced_huge), no_keys).await;
    let http = http_client(Some(ca.as_bytes())).unwrap();
    let (discovery, _) = tokio::time::timeout(DEADLINE, issuer_documents(&http, &url))
        .await
        .expect("the doctor kept reading an oversized discovery document");
    let err = discovery.unwrap_err();
    assert!(
        err.contains("/.well-known/openid-configuration") && err.contains("larger than"),
        "{err}"
    );
}

#[tokio::test]
async fn a_normal_issuer_still_reads() {
    let (url, ca) = issuer(None, no_keys).await;
    let http = http_client(Some(ca.as_bytes())).unwrap();
    let (discovery, jwks) = issuer_documents(&http, &url).await;
    assert_eq!(discovery.unwrap()["jwks_uri"], format!("{url}/keys"));
    assert!(jwks.unwrap().keys.is_empty());
}
