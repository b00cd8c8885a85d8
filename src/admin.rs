//! The plain-HTTP admin port of `irsa webhook` and `irsa controller`: `/healthz` (the process
//! serves), `/readyz` (the component's own readiness check) and `/metrics` (the OpenMetrics
//! text of its registry).
//!
//! It runs on its own thread and single-threaded runtime, so that the kubelet's probes are
//! answered even while every worker of the main runtime is busy (big admission reviews, an
//! IAM pass), and under [`ConnectionLimits`], so that slow or idle clients cannot pile up.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::{
    Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use axum_server::accept::DefaultAcceptor;
use prometheus_client::registry::Registry;

use crate::webhook::connections::{Capped, ConnectionLimits};

/// What `/metrics` exposes: a registry, or a component's metrics that keep their own.
pub trait Exposition: Send + Sync + 'static {
    fn response(&self) -> Response;
}

impl Exposition for Registry {
    fn response(&self) -> Response {
        crate::metrics::response(self)
    }
}

/// The `/readyz` answer: `Ok(body)` with 200, or `Err(reason)` with 503.
pub type Readiness = Result<&'static str, &'static str>;

#[derive(Clone)]
struct Admin {
    metrics: Arc<dyn Exposition>,
    ready: Arc<dyn Fn() -> Readiness + Send + Sync>,
}

/// The admin router (usable in-process with `tower::ServiceExt::oneshot`).
pub fn router(
    metrics: Arc<dyn Exposition>,
    ready: impl Fn() -> Readiness + Send + Sync + 'static,
) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Admin {
            metrics,
            ready: Arc::new(ready),
        })
}

async fn readyz(State(admin): State<Admin>) -> (StatusCode, &'static str) {
    match (admin.ready)() {
        Ok(body) => (StatusCode::OK, body),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

async fn metrics_text(State(admin): State<Admin>) -> Response {
    admin.metrics.response().into_response()
}

/// Binds `--metrics-listen`: a taken address fails at startup, before anything else runs.
pub fn bind(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on --metrics-listen {addr}; pick a free address"))
}

/// Serves `app` on `listener` on the admin thread. The returned future ends when that server
/// does (an error: the component is no longer whole); dropping it stops the server.
pub fn serve(
    listener: std::net::TcpListener,
    app: Router,
    limits: ConnectionLimits,
) -> anyhow::Result<impl Future<Output = anyhow::Result<()>> + Send + 'static> {
    let handle = axum_server::Handle::new();
    let stop = StopOnDrop(handle.clone());
    let (done, ended) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("irsa-admin".into())
        .spawn(move || {
            let served = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .and_then(|runtime| {
                    runtime.block_on(async move {
                        let server = axum_server::from_tcp(listener)?
                            .acceptor(Capped::new(DefaultAcceptor, limits.max_connections))
                            .handle(handle);
                        limits.apply(server).serve(app.into_make_service()).await
                    })
                });
            // Nobody listens any more when the component is shutting down.
            let _ = done.send(served);
        })
        .context("cannot start the admin server's thread")?;
    Ok(async move {
        let _stop = stop;
        match ended.await {
            Ok(served) => served.context("the metrics server stopped"),
            Err(_) => Err(anyhow::anyhow!("the metrics server's thread panicked")),
        }
    })
}

/// Stops an axum-server when dropped.
struct StopOnDrop(axum_server::Handle<SocketAddr>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use axum::body::Body;
    use axum::http::{Request, header};
    use prometheus_client::metrics::counter::Counter;
    use tower::ServiceExt;

    use super::*;

    async fn get(app: Router, path: &str) -> (StatusCode, Option<String>, String) {
        let resp = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        (
            status,
            content_type,
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }

    fn registry() -> Arc<Registry> {
        let mut registry = Registry::with_prefix("irsa_test");
        let counter = Counter::<u64>::default();
        counter.inc();
        registry.register("probes", "probes seen", counter);
        Arc::new(registry)
    }

    #[tokio::test]
    async fn readyz_answers_the_check_with_its_text_and_healthz_always_ok() {
        let ready = Arc::new(AtomicBool::new(false));
        let app = router(registry(), {
            let ready = ready.clone();
            move || match ready.load(Ordering::Relaxed) {
                true => Ok("ready\n"),
                false => Err("cache not synced yet\n"),
            }
        });
        let (status, _, body) = get(app.clone(), "/readyz").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "cache not synced yet\n")
        );
        assert_eq!(get(app.clone(), "/healthz").await.0, StatusCode::OK);
        ready.store(true, Ordering::Relaxed);
        let (status, _, body) = get(app, "/readyz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ready\n"));
    }

    #[tokio::test]
    async fn metrics_are_the_registry_as_openmetrics_text() {
        let (status, content_type, body) = get(router(registry(), || Ok("ok\n")), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            content_type.as_deref(),
            Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
        );
        assert!(body.contains("irsa_test_probes_total 1"), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");
    }

    #[tokio::test]
    async fn serves_on_its_own_thread_until_dropped() {
        crate::install_crypto_provider();
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(registry(), || Ok("ok\n"));
        let server = tokio::spawn(serve(listener, app, ConnectionLimits::ADMIN).unwrap());
        let body = reqwest::get(format!("http://{addr}/healthz"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "ok\n");
        server.abort();
        let _ = server.await;
        // The thread's server stops with the future: the port no longer answers.
        let mut refused = false;
        for _ in 0..50 {
            if reqwest::get(format!("http://{addr}/healthz"))
                .await
                .is_err()
            {
                refused = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(
            refused,
            "the admin port still answers after the future was dropped"
        );
    }

    #[test]
    fn a_taken_address_fails_naming_the_flag() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = bind(taken.local_addr().unwrap()).unwrap_err();
        assert!(format!("{err:#}").contains("--metrics-listen"), "{err:#}");
    }
}
