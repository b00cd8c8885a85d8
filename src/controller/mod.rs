//! The controller: reconciles the IAM OIDC provider and role trust policies (docs/design.md §4).
//!
//! [`run`] reads the flags, resolves the cluster's identity and hands over to [`wiring`].
//! The work is split by side: [`k8s`] (bindings, stores, Events) marks roles for [`iam`]
//! (queue, worker, role reconcile) and reads its reports; both decide through [`policy`],
//! which is pure (in the `irsa-core` crate). AWS is reached through [`crate::aws`] (as [`metrics::Aws`], counting every
//! call), the issuer through [`crate::issuer::discover`].

pub mod election;
pub mod iam;
pub mod k8s;
pub mod metrics;
pub mod publish;
pub mod wiring;

/// The controller's pure decisions, in the core crate.
pub use irsa_core::policy;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context as _;
use kube::Client;
use kube::api::{Api, ListParams};
use tracing::info;

use self::iam::reconcile::RoleSettings;
use self::iam::worker::WorkerOptions;
use self::metrics::Aws;
use self::policy::desired;
use self::wiring::ElectedWork;
use crate::aws::{self, ConvergeOptions};
use crate::cli::ControllerArgs;
use crate::cluster;
use crate::crd::{IAMRoleBinding, IAMRoleGrant};
use crate::supervise::Supervisor;

/// How long the IAM worker collects dirty roles before a pass: long enough that a
/// `kubectl apply` of many bindings lands in one pass, short enough to feel immediate.
pub const COALESCE_WINDOW: Duration = Duration::from_secs(2);

/// Fails with the fix when the CRDs are not installed (the watches would only log 404s).
pub async fn check_crds(client: &Client) -> anyhow::Result<()> {
    let lp = ListParams::default().limit(1);
    let bindings: Api<IAMRoleBinding> = Api::all(client.clone());
    crd_answer(
        "iamrolebindings.irsa.dev",
        bindings.list_metadata(&lp).await.map(|_| ()),
    )?;
    let grants: Api<IAMRoleGrant> = Api::all(client.clone());
    crd_answer(
        "iamrolegrants.irsa.dev",
        grants.list_metadata(&lp).await.map(|_| ()),
    )
}

fn crd_answer(crd: &str, result: Result<(), kube::Error>) -> anyhow::Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => anyhow::bail!(
            "the CustomResourceDefinition {crd} is not installed; install the CRDs first: \
             `{}` (or `irsa crd | kubectl apply -f -`)",
            crate::crd::INSTALL_COMMAND
        ),
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "cannot list {crd}; the controller needs list/watch on it (config/rbac)"
        ))),
    }
}

/// `irsa controller`: setup (Kubernetes client, CRDs, admin port, AWS, cluster identity,
/// settings), then the elected work until SIGTERM or a failed task.
pub async fn run(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    let issuer_roots = wiring::issuer_roots(args.issuer_ca_file.as_deref())?;
    let config = kube::Config::infer().await.context(
        "cannot configure a Kubernetes client (in-cluster service account or KUBECONFIG)",
    )?;
    let client = Client::try_from(config.clone()).context("cannot build a Kubernetes client")?;
    check_crds(&client).await?;

    let metrics = metrics::Metrics::default();
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let ready = Arc::new(AtomicBool::new(false));
    // Long-running tasks outside the elected work (the admin port serves standbys too).
    let mut outer = Supervisor::new();
    wiring::spawn_admin_server(&mut outer, args.metrics_listen, registry, ready.clone())?;

    let sdk = aws::load_sdk_config(args.aws_endpoint_url.as_deref()).await;
    let aws = Aws::new(&sdk, metrics.clone());
    let identity =
        cluster::resolve(&client, args.issuer_url.as_ref(), &args.cluster_name, &aws).await?;
    info!(issuer = %identity.issuer.url, account = %identity.account,
          provider = %identity.provider_arn(), "cluster identity");
    let thumbprints = match args.manage_oidc_provider {
        true => wiring::issuer_thumbprints(&identity.issuer.url, &issuer_roots).await,
        false => Vec::new(),
    };

    let settings = RoleSettings {
        issuer: identity.issuer.url.clone(),
        provider_arn: identity.provider_arn(),
        max_chars: args.trust_policy_max_chars,
        desired: desired::Settings {
            cluster: args.cluster_name.clone(),
            default_audience: args.token_audience.clone(),
            manage_annotated: args.manage_annotated_serviceaccounts,
        },
        converge: ConvergeOptions::default(),
    };
    let options = WorkerOptions {
        debounce: COALESCE_WINDOW,
        resync: args.resync_interval,
        manage_oidc_provider: args.manage_oidc_provider,
        thumbprints,
        ..WorkerOptions::default()
    };
    let publisher = wiring::publisher(&args.publish, &client, &sdk, &issuer_roots, &metrics)?;
    let is_leader = metrics.is_leader.clone();
    let work = ElectedWork {
        client: client.clone(),
        aws,
        settings,
        options,
        prefix: args.annotation_prefix,
        metrics,
        ready: ready.clone(),
        publisher: publisher.map(|p| (p, args.publish.issuer_publish_interval)),
        pods: args
            .detect_uninjected_pods
            .then(|| k8s::pods::Settings::excluding(client.default_namespace())),
    };
    let election = match args.leader_election {
        true => Some(election::Election::for_controller(
            &config,
            args.leader_election_namespace.as_deref(),
            &args.leader_election_lease_name,
        )?),
        false => None,
    };
    wiring::run_until_shutdown(election, work, outer, is_leader, ready).await?;
    info!("irsa controller stopped");
    Ok(ExitCode::SUCCESS)
}
