//! The two HTTP surfaces: `POST /mutate` (TLS, answered by [`super::decide`]) and the
//! plain-HTTP admin port (served by [`crate::admin`], ready once the ServiceAccount cache has
//! synced), plus their lifecycle.

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
    extract::{DefaultBodyLimit, Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::post,
};
use axum_server::{
    accept::DefaultAcceptor,
    tls_rustls::{RustlsAcceptor, RustlsConfig},
};
use futures::FutureExt as _;

use tokio::sync::Semaphore;

use super::tls::TlsVersion;
use super::{
    associations::Associations,
    cache::ServiceAccountCache,
    connections::{Capped, ConnectionLimits},
    decide::{Decider, Step},
    identities::WatchedIdentities,
    metrics::Metrics,
    reload,
    review::{self, BadReview, Outcome},
    tls::{self, ReloadingCert},
};
use crate::{admin, mutate::MutationConfig, supervise::Supervisor};

/// The largest request body `POST /mutate` reads (HTTP 413 beyond): a CREATE review carries
/// one object, which the API server caps at 3 MiB, plus the envelope (user info, options).
/// Objects over [`crate::mutate::limits::MAX_OBJECT_BYTES`] get an admission answer, not a 413.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// Bodies up to this size are decided on the async worker (a normal pod is a few KiB and
/// answers in microseconds); bigger ones go to the blocking pool, [`HEAVY_CONCURRENCY`] at a
/// time, so that they neither hold the workers that serve other admissions nor pile up in
/// memory.
const INLINE_BODY: usize = 64 * 1024;

/// The request bodies of `/mutate` held in memory at once, over all connections and streams:
/// each request reserves its `Content-Length` (in [`BODY_UNIT`]s; [`MAX_BODY`] when it does
/// not say) before its body is read, so thousands of streams with 4 MiB bodies wait instead of
/// buffering gigabytes. 32 MiB: 8 maximal reviews, or 512 ordinary ones, at a time.
const BODY_BUDGET: usize = 32 * 1024 * 1024;
const BODY_UNIT: usize = 64 * 1024;

/// How many big reviews are parsed and decided at once.
fn heavy_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4))
}

/// What the handlers share.
#[derive(Debug)]
pub struct AppState {
    pub config: MutationConfig,
    pub identities: Arc<WatchedIdentities>,
    pub associations: Associations,
    pub cache: ServiceAccountCache,
    pub metrics: Arc<Metrics>,
    pub sa_lookup_timeout: Duration,
}

impl AppState {
    /// The part of the state that [`super::decide`] reads.
    pub fn decider(&self) -> Decider<'_> {
        Decider {
            config: &self.config,
            identities: &self.identities,
            associations: &self.associations,
            cache: &self.cache,
            metrics: &self.metrics,
            sa_lookup_timeout: self.sa_lookup_timeout,
        }
    }
}

/// The admission handler's state: the shared state and the slots for big reviews.
#[derive(Debug, Clone)]
struct Admission {
    state: Arc<AppState>,
    heavy: Arc<Semaphore>,
    /// [`BODY_BUDGET`] in [`BODY_UNIT`]s.
    bodies: Arc<Semaphore>,
}

/// The admission router (`POST /mutate`), usable in-process with `tower::ServiceExt::oneshot`.
pub fn router(state: Arc<AppState>) -> Router {
    let admission = Admission {
        state,
        heavy: Arc::new(Semaphore::new(heavy_concurrency())),
        bodies: Arc::new(Semaphore::new(BODY_BUDGET / BODY_UNIT)),
    };
    Router::new()
        .route("/mutate", post(mutate))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .route_layer(middleware::from_fn_with_state(
            admission.clone(),
            reserve_body,
        ))
        .with_state(admission)
}

/// Holds the request's share of [`BODY_BUDGET`] while its body is read and decided.
async fn reserve_body(
    State(admission): State<Admission>,
    request: Request,
    next: Next,
) -> Response {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let units = announced
        .unwrap_or(MAX_BODY)
        .min(MAX_BODY)
        .div_ceil(BODY_UNIT)
        .max(1);
    let units = u32::try_from(units).unwrap_or(u32::MAX);
    // The semaphore is never closed; without a permit the request simply goes on.
    let _reserved = admission.bodies.acquire_many_owned(units).await.ok();
    next.run(request).await
}

/// The plain-HTTP admin router: ready once the ServiceAccount cache and the associations have
/// synced (the certificate is loaded before the server starts, so only they can lag).
pub fn admin_router(state: Arc<AppState>) -> Router {
    admin::router(state.metrics.clone(), move || {
        if !state.cache.is_synced() {
            Err("ServiceAccount cache not synced yet\n")
        } else if !state.associations.is_synced() {
            Err("PodIdentityAssociations not synced yet\n")
        } else {
            Ok("ready\n")
        }
    })
}

impl admin::Exposition for Metrics {
    fn response(&self) -> Response {
        Metrics::response(self)
    }
}

async fn mutate(State(admission): State<Admission>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let state = admission.state.clone();
    let (outcome, response) = answer(admission, &headers, body).await;
    let elapsed = started.elapsed();
    state.metrics.request(outcome);
    state
        .metrics
        .request_duration
        .observe(elapsed.as_secs_f64());
    tracing::debug!(outcome = outcome.as_str(), ?elapsed, "admission answered");
    response
}

async fn answer(admission: Admission, headers: &HeaderMap, body: Bytes) -> (Outcome, Response) {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if !review::is_json_content_type(content_type) {
        let message = format!(
            "Content-Type must be application/json (got {})\n",
            content_type.unwrap_or("none")
        );
        return (
            Outcome::UnsupportedMediaType,
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, message).into_response(),
        );
    }
    let Admission { state, heavy, .. } = admission;
    // Held until the answer is encoded: a big review's memory is bounded by the slots.
    let slot = if body.len() > INLINE_BODY {
        // The semaphore is never closed, so this is always `Some`.
        heavy.acquire_owned().await.ok()
    } else {
        None
    };
    let offload = slot.is_some();

    let st = state.clone();
    let prepared = run(offload, move || {
        let (api_version, request) = review::decode(&body)?;
        let uid = request.uid.clone();
        Ok::<_, BadReview>((api_version, uid, st.decider().prepare(request)))
    })
    .await;
    let (api_version, uid, step) = match prepared {
        Ok(Ok(prepared)) => prepared,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "rejected a malformed AdmissionReview");
            return (
                Outcome::BadRequest,
                (StatusCode::BAD_REQUEST, format!("{err}\n")).into_response(),
            );
        }
        Err(failed) => return failed,
    };
    let answer = match step {
        Step::Answered(answer) => answer,
        Step::Pod(pod) => match state.decider().lookup(&pod).await {
            Err(answer) => answer,
            Ok(sa) => {
                let st = state.clone();
                match run(offload, move || st.decider().finish(&pod, &sa)).await {
                    Ok(answer) => answer,
                    Err(failed) => return failed,
                }
            }
        },
    };
    let outcome = answer.outcome;
    let response = match run(offload, move || review::encode(&api_version, &uid, &answer)).await {
        Ok(Ok(json)) => (
            outcome,
            ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        ),
        Ok(Err(err)) => internal_error(&err),
        Err(failed) => failed,
    };
    drop(slot);
    response
}

/// Runs `work` here, or on the blocking pool when `offload`; a panic there becomes a 500.
async fn run<T: Send + 'static>(
    offload: bool,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, (Outcome, Response)> {
    if !offload {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| internal_error(&err))
}

fn internal_error(err: &dyn std::fmt::Display) -> (Outcome, Response) {
    tracing::error!(error = %err, "the admission handler failed");
    (
        Outcome::Internal,
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response(),
    )
}

/// Everything `start` needs besides the ServiceAccount cache.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub tls: CertSource,
    pub tls_min_version: TlsVersion,
    /// How often the certificate and identities files are checked for changes.
    pub reload_interval: Duration,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
    pub sa_lookup_timeout: Duration,
    pub mutation: MutationConfig,
    pub identities_file: Option<PathBuf>,
    /// Connection limits of the admission port ([`ConnectionLimits::ADMISSION`]).
    pub limits: ConnectionLimits,
    /// Connection limits of the admin port ([`ConnectionLimits::ADMIN`]).
    pub admin_limits: ConnectionLimits,
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum CertSource {
    /// PEM files, polled every `reload_interval`.
    Files { cert: PathBuf, key: PathBuf },
    /// A pair kept current by someone else (the self-managed TLS loop).
    Managed(Arc<ReloadingCert>),
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
    associations: Associations,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Running> {
    let cert = match &opts.tls {
        CertSource::Files { cert, key } => Arc::new(ReloadingCert::load(cert, key)?),
        CertSource::Managed(cert) => cert.clone(),
    };
    cert.record_loaded(&metrics);
    let identities = Arc::new(match &opts.identities_file {
        Some(path) => WatchedIdentities::load(path)?,
        None => WatchedIdentities::fixed(Default::default()),
    });
    let state = Arc::new(AppState {
        config: opts.mutation.clone(),
        identities: identities.clone(),
        associations: associations.clone(),
        cache: cache.clone(),
        metrics: metrics.clone(),
        sa_lookup_timeout: opts.sa_lookup_timeout,
    });

    let mut background = Supervisor::new();
    if let Some(watch) = cache.watch() {
        background.spawn("ServiceAccount watch", watch.map(Ok::<(), anyhow::Error>));
    }
    if let Some(watch) = associations.watch(metrics.clone()) {
        background.spawn(
            "PodIdentityAssociation watch",
            watch.map(Ok::<(), anyhow::Error>),
        );
    }
    if let CertSource::Files { .. } = opts.tls {
        // Reading two small files per poll: cheap enough for a runtime thread.
        let (reloading, reload_metrics) = (cert.clone(), metrics.clone());
        background.spawn(
            "certificate reload",
            reload::polling(opts.reload_interval, move || {
                reloading.reload_if_changed(&reload_metrics);
            }),
        );
    }
    if opts.identities_file.is_some() {
        let reload_metrics = metrics.clone();
        background.spawn(
            "identities reload",
            reload::polling(opts.reload_interval, move || {
                identities.reload_if_changed(&reload_metrics);
            }),
        );
    }

    let admin_listener = admin::bind(opts.metrics_listen)?;
    let metrics_addr = admin_listener.local_addr()?;
    background.spawn(
        "metrics server",
        admin::serve(
            admin_listener,
            admin_router(state.clone()),
            opts.admin_limits,
        )?,
    );

    let listener = std::net::TcpListener::bind(opts.listen)
        .with_context(|| format!("cannot listen on --listen {}", opts.listen))?;
    let addr = listener.local_addr()?;
    let rustls = RustlsConfig::from_config(tls::server_config(cert.clone(), opts.tls_min_version)?);
    let acceptor = RustlsAcceptor::new(rustls)
        .handshake_timeout(opts.limits.handshake_timeout)
        .acceptor(Capped::new(DefaultAcceptor, opts.limits.max_connections));
    let handle = axum_server::Handle::new();
    let server = opts.limits.apply(
        axum_server::from_tcp(listener)?
            .acceptor(acceptor)
            .handle(handle.clone()),
    );
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
