//! `irsa controller`: its flags turned into the controller's settings (Kubernetes client,
//! CRDs, admin port, AWS, cluster identity, the issuer publisher, the election), then the
//! elected work until SIGTERM or a failed task.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context as _;
use kube::Client;
use tracing::info;

use crate::aws::{self, ConvergeOptions};
use crate::cli::{ControllerArgs, PublishArgs};
use crate::cluster;
use crate::controller::iam::reconcile::RoleSettings;
use crate::controller::iam::worker::WorkerOptions;
use crate::controller::metrics::{self, Aws, Metrics};
use crate::controller::policy::desired;
use crate::controller::wiring::{self, ElectedWork};
use crate::controller::{COALESCE_WINDOW, check_crds, election, k8s, publish};
use crate::error::UsageError;
use crate::issuer::thumbprint;
use crate::supervise::Supervisor;

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
    info!(issuer = %identity.issuer.url, issuer_source = identity.issuer.source.as_str(),
          account = %identity.account,
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
            pod_identity_agent: args.pod_identity_agent_role_arn.clone(),
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
    let publisher = publisher(&args.publish, &client, &sdk, &issuer_roots, &metrics)?;
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

/// The issuer publisher, when `--publish-issuer` is set.
fn publisher(
    args: &PublishArgs,
    client: &Client,
    sdk: &aws_config::SdkConfig,
    issuer_roots: &thumbprint::Roots,
    metrics: &Metrics,
) -> anyhow::Result<Option<publish::Publisher>> {
    let Some(url) = &args.publish_issuer else {
        return Ok(None);
    };
    let region = sdk
        .region()
        .map_or_else(|| "us-east-1".to_string(), ToString::to_string);
    let target = publish::Target::parse(
        url,
        args.issuer_public_url.as_deref(),
        args.issuer_verify_url.as_deref(),
        &region,
    )
    .map_err(|e| UsageError::new(e.to_string()))?;
    let mut s3 = aws_sdk_s3::config::Builder::from(sdk);
    if sdk.endpoint_url().is_some() {
        // An emulator or a private endpoint: buckets by path, not by host name.
        s3 = s3.force_path_style(true);
    }
    info!(bucket = %target.bucket, prefix = %target.prefix, public = %target.public_url,
          "publishing the issuer documents");
    // The read-back is what STS will do at the public URL: a private issuer CA
    // (--issuer-ca-file) must verify it too.
    let mut http = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if let thumbprint::Roots::Only(certs) = issuer_roots {
        for cert in certs {
            http = http.add_root_certificate(
                reqwest::Certificate::from_der(cert).context("--issuer-ca-file")?,
            );
        }
    }
    Ok(Some(publish::Publisher {
        kube: client.clone(),
        s3: aws_sdk_s3::Client::from_conf(s3.build()),
        http: http
            .build()
            .context("building the HTTP client for the issuer read-back")?,
        target,
        retention: args.issuer_key_retention,
        state: (
            client.default_namespace().to_string(),
            args.issuer_state_configmap.clone(),
        ),
        metrics: metrics.clone(),
        recorder: wiring::recorder(client),
    }))
}
