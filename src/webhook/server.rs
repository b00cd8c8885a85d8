//! The two HTTP surfaces: `POST /mutate` (TLS) and the plain-HTTP admin port
//! (`/healthz`, `/readyz`, `/metrics`), plus their lifecycle.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use futures::FutureExt as _;

use super::{
    admission::{self, Answer},
    cache::ServiceAccountCache,
    identities::WatchedIdentities,
    metrics::{Metrics, Outcome},
    reload,
    tls::{self, ReloadingCert},
};
use crate::{cli::TlsVersion, mutate::MutationConfig, supervise::Supervisor};

/// Admission bodies carry the object (and `oldObject` on updates); the API server caps an
/// object at 3 MiB, so 8 MiB never refuses a real review.
const MAX_BODY: usize = 8 * 1024 * 1024;

/// What the handlers share.
#[derive(Debug)]
pub struct AppState {
    pub config: MutationConfig,
    pub identities: Arc<WatchedIdentities>,
    pub cache: ServiceAccountCache,
    pub metrics: Arc<Metrics>,
    pub sa_lookup_timeout: Duration,
}

/// The admission router (`POST /mutate`), usable in-process with `tower::ServiceExt::oneshot`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// The plain-HTTP admin router.
pub fn admin_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn mutate(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let (outcome, response) = answer(&state, &headers, &body).await;
    let elapsed = started.elapsed();
    state.metrics.request(outcome);
    state
        .metrics
        .request_duration
        .observe(elapsed.as_secs_f64());
    tracing::debug!(outcome = outcome.as_str(), ?elapsed, "admission answered");
    response
}

async fn answer(state: &AppState, headers: &HeaderMap, body: &[u8]) -> (Outcome, Response) {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if !admission::is_json_content_type(content_type) {
        let message = format!(
            "Content-Type must be application/json (got {})\n",
            content_type.unwrap_or("none")
        );
        return (
            Outcome::UnsupportedMediaType,
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, message).into_response(),
        );
    }
    let (api_version, request) = match admission::decode(body) {
        Ok(decoded) => decoded,
        Err(err) => {
            tracing::warn!(error = %err, "rejected a malformed AdmissionReview");
            return (
                Outcome::BadRequest,
                (StatusCode::BAD_REQUEST, format!("{err}\n")).into_response(),
            );
        }
    };
    let uid = request.uid.clone();
    let answer: Answer = admission::decide(state, request).await;
    let body = admission::encode(&api_version, &uid, &answer);
    (answer.outcome, axum::Json(body).into_response())
}

async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, &'static str) {
    // The certificate is loaded before the server starts, so only the cache can lag.
    if state.cache.is_synced() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceAccount cache not synced yet\n",
        )
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state.metrics.response()
}

/// Everything `start` needs besides the ServiceAccount cache.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub tls_cert_file: PathBuf,
    pub tls_key_file: PathBuf,
    pub tls_min_version: TlsVersion,
    /// How often the certificate and identities files are checked for changes.
    pub reload_interval: Duration,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
    pub sa_lookup_timeout: Duration,
    pub mutation: MutationConfig,
    pub identities_file: Option<PathBuf>,
}

/// A started webhook: both listeners bound, background tasks running.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    pub cert: Arc<ReloadingCert>,
    grace: Duration,
    handle: axum_server::Handle<SocketAddr>,
    /// `None` once [`Running::failed`] has seen it end.
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    background: Supervisor,
}

/// Binds both ports, loads the certificate, starts the watchers and serves.
pub async fn start(
    opts: Options,
    cache: ServiceAccountCache,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Running> {
    let cert = Arc::new(ReloadingCert::load(
        &opts.tls_cert_file,
        &opts.tls_key_file,
    )?);
    metrics.cert_reloads.inc();
    let identities = Arc::new(match &opts.identities_file {
        Some(path) => WatchedIdentities::load(path)?,
        None => WatchedIdentities::fixed(Default::default()),
    });
    let state = Arc::new(AppState {
        config: opts.mutation.clone(),
        identities: identities.clone(),
        cache: cache.clone(),
        metrics: metrics.clone(),
        sa_lookup_timeout: opts.sa_lookup_timeout,
    });

    let mut background = Supervisor::new();
    if let Some(watch) = cache.watch() {
        background.spawn("ServiceAccount watch", watch.map(Ok::<(), anyhow::Error>));
    }
    // Reading two small files per poll: cheap enough for a runtime thread.
    let (reloading, reload_metrics) = (cert.clone(), metrics.clone());
    background.spawn(
        "certificate reload",
        reload::polling(opts.reload_interval, move || {
            reloading.reload_if_changed(&reload_metrics);
        }),
    );
    if opts.identities_file.is_some() {
        let reload_metrics = metrics.clone();
        background.spawn(
            "identities reload",
            reload::polling(opts.reload_interval, move || {
                identities.reload_if_changed(&reload_metrics);
            }),
        );
    }

    let admin = tokio::net::TcpListener::bind(opts.metrics_listen)
        .await
        .with_context(|| format!("cannot listen on --metrics-listen {}", opts.metrics_listen))?;
    let metrics_addr = admin.local_addr()?;
    let admin_app = admin_router(state.clone());
    background.spawn("metrics server", async move {
        axum::serve(admin, admin_app)
            .await
            .context("the metrics server stopped")
    });

    let listener = std::net::TcpListener::bind(opts.listen)
        .with_context(|| format!("cannot listen on --listen {}", opts.listen))?;
    let addr = listener.local_addr()?;
    let rustls = axum_server::tls_rustls::RustlsConfig::from_config(tls::server_config(
        cert.clone(),
        opts.tls_min_version,
    )?);
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(listener, rustls)?.handle(handle.clone());
    let app = router(state);
    let server = tokio::spawn(async move { server.serve(app.into_make_service()).await });
    tracing::info!(%addr, %metrics_addr, "irsa webhook serving");

    Ok(Running {
        addr,
        metrics_addr,
        metrics,
        cert,
        grace: opts.shutdown_grace,
        handle,
        server: Some(server),
        background,
    })
}

impl Running {
    /// Stops accepting connections and lets in-flight requests finish (up to the grace).
    pub fn shutdown(&self) {
        tracing::info!(grace = ?self.grace, "shutting down: draining in-flight requests");
        self.handle.graceful_shutdown(Some(self.grace));
    }

    /// Resolves when the TLS server or a background task (ServiceAccount watch, file reload,
    /// metrics server) ends on its own: the webhook is no longer whole and must exit.
    pub async fn failed(&mut self) -> anyhow::Error {
        let Some(server) = &mut self.server else {
            return self.background.failed().await.into();
        };
        tokio::select! {
            joined = server => {
                self.server = None;
                let why = match joined {
                    Ok(Ok(())) => anyhow::anyhow!("stopped unexpectedly"),
                    Ok(Err(err)) => anyhow::Error::new(err),
                    Err(err) => anyhow::Error::new(err),
                };
                why.context("the webhook's TLS server")
            }
            ended = self.background.failed() => ended.into(),
        }
    }

    /// Waits for the TLS server to finish, then stops and joins the background tasks.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let result = match self.server.take() {
            Some(server) => server.await,
            None => Ok(Ok(())),
        };
        self.background.shutdown().await;
        result
            .context("the webhook server task failed")?
            .context("the webhook server failed")
    }
}
