//! `irsa webhook`: the mutating admission webhook (docs/design.md §2.5–2.6).
//!
//! [`server`] serves `POST /mutate` over TLS and the admin port; [`review`] is the pure
//! AdmissionReview codec; [`decide`] turns one request into a call of the pure engine
//! ([`crate::mutate`]); [`cache`] finds the ServiceAccount; [`tls`] and [`identities`] keep
//! their files current.

pub mod cache;
pub mod connections;
pub mod decide;
pub mod identities;
pub mod metrics;
pub mod reload;
pub mod review;
pub mod server;
pub mod tls;

use std::{process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context as _;

pub use self::{
    cache::{Lookup, ServiceAccountCache, load_service_accounts_file},
    connections::ConnectionLimits,
    metrics::Metrics,
    server::{AppState, Options, Running, admin_router, router, start},
};
use crate::cli::WebhookArgs;

/// In-flight admission requests get this long after SIGTERM. The API server gives up on a
/// webhook after at most 30s (10s by default), and the chart's terminationGracePeriodSeconds
/// is 30s, so 20s drains every request that can still matter.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

pub async fn run(args: WebhookArgs) -> anyhow::Result<ExitCode> {
    let mutation = args.mutation.config();
    let metrics = Arc::new(Metrics::new());
    let cache = match &args.service_accounts_file {
        Some(path) => {
            let accounts = load_service_accounts_file(path)?;
            tracing::warn!(
                file = %path.display(),
                count = accounts.len(),
                "TEST/BENCH MODE: ServiceAccounts come from --service-accounts-file; no Kubernetes connection"
            );
            ServiceAccountCache::fixed(accounts, &mutation.annotation_prefix, metrics.clone())
        }
        None => {
            let client = kube::Client::try_default().await.context(
                "cannot build a Kubernetes client (in-cluster service account or KUBECONFIG)",
            )?;
            ServiceAccountCache::kube(
                client,
                &mutation.annotation_prefix,
                args.sa_lookup_timeout,
                metrics.clone(),
            )
        }
    };
    let opts = Options {
        listen: args.listen,
        metrics_listen: args.metrics_listen,
        tls_cert_file: args.tls_cert_file,
        tls_key_file: args.tls_key_file,
        tls_min_version: args.tls_min_version,
        reload_interval: args.reload_interval,
        shutdown_grace: SHUTDOWN_GRACE,
        sa_lookup_timeout: args.sa_lookup_timeout,
        identities_file: args.mutation.container_credentials_config.clone(),
        mutation,
        limits: ConnectionLimits::ADMISSION,
        admin_limits: ConnectionLimits::ADMIN,
    };
    let mut running = start(opts, cache, metrics).await?;
    let failure = tokio::select! {
        () = crate::shutdown::signal() => None,
        err = running.failed() => Some(err),
    };
    if let Some(err) = &failure {
        tracing::error!(
            error = format!("{err:#}"),
            "a part of the webhook stopped; exiting so that it is restarted"
        );
    }
    running.shutdown();
    running.wait().await?;
    match failure {
        // Non-zero: Kubernetes restarts the pod.
        Some(err) => Err(err),
        None => {
            tracing::info!("irsa webhook stopped");
            Ok(ExitCode::SUCCESS)
        }
    }
}
