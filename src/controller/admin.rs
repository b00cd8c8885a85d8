//! The controller's plain-HTTP admin port: `/metrics` (Prometheus text), `/healthz` (the
//! process serves) and `/readyz` (identity resolved and the Kubernetes caches synced).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::registry::Registry;

#[derive(Clone)]
struct AdminState {
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
}

/// The admin router (usable in-process in tests).
pub fn router(registry: Arc<Registry>, ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AdminState { registry, ready })
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet\n")
    }
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    crate::metrics::response(&s.registry)
}

/// Binds `addr` (an error now if it cannot) and returns the server, for the caller to run
/// under its [`crate::supervise::Supervisor`].
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
) -> anyhow::Result<impl Future<Output = anyhow::Result<()>> + Send + 'static> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on --metrics-listen {addr}; pick a free address")
    })?;
    let app = router(registry, ready);
    Ok(async move {
        axum::serve(listener, app)
            .await
            .context("the admin server stopped")
    })
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::controller::metrics::Metrics;

    async fn get(app: Router, path: &str) -> (StatusCode, String) {
        let resp = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn serves_health_readiness_and_the_controller_metrics() {
        let metrics = Metrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.reconciled("binding");
        metrics.reconcile_failed("role", "throttled");
        metrics.set_trust_chars("arn:aws:iam::111122223333:role/r", 812);
        let ready = Arc::new(AtomicBool::new(false));
        let app = router(Arc::new(registry), ready.clone());

        assert_eq!(get(app.clone(), "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get(app.clone(), "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        ready.store(true, Ordering::Relaxed);
        assert_eq!(get(app.clone(), "/readyz").await.0, StatusCode::OK);
        let (status, text) = get(app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        for line in [
            r#"irsa_controller_reconciles_total{kind="binding"} 1"#,
            r#"irsa_controller_reconcile_errors_total{kind="role",error="throttled"} 1"#,
            r#"irsa_controller_trust_policy_chars{role="arn:aws:iam::111122223333:role/r"} 812"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
