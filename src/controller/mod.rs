//! The controller: reconciles the IAM OIDC provider and role trust policies (SPEC §4).
//!
//! I/O adapters live here ([`aws`], [`identity`], [`thumbprint`]); decisions that need no I/O
//! are pure ([`authz`], [`desired`], [`annotate`], [`status`]) so they can be table-tested.
//! [`roles`] is the IAM side (a debounced queue of dirty roles, resync, OIDC provider);
//! [`bindings`] is the Kubernetes side (finalizer, ServiceAccount annotations, status).

pub mod admin;
pub mod annotate;
pub mod authz;
pub mod bindings;
pub mod desired;
pub mod leader;
pub mod metrics;
pub mod publish;
pub mod roles;
pub mod status;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use self::desired::Key;
use self::metrics::Aws;
use self::roles::{RoleSettings, RoleWorker, SnapshotFn, WorkerOptions};
use crate::aws::{self, ConvergeOptions, thumbprint};
use crate::cli::ControllerArgs;
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
             `kubectl apply -f crds/` (or `irsa crd | kubectl apply -f -`)"
        ),
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "cannot list {crd}; the controller needs list/watch on it (config/rbac)"
        ))),
    }
}

pub async fn run(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    let client = Client::try_default()
        .await
        .context("cannot build a Kubernetes client (in-cluster service account or KUBECONFIG)")?;
    check_crds(&client).await?;

    let metrics = metrics::Metrics::default();
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let ready = Arc::new(AtomicBool::new(false));
    // Long-running tasks outside the elected work (the admin port serves standbys too).
    let mut outer = Supervisor::new();
    outer.spawn(
        "metrics server",
        admin::serve(args.metrics_listen, Arc::new(registry), ready.clone()).await?,
    );

    let sdk = aws::load_sdk_config(args.aws_endpoint_url.as_deref()).await;
    let aws = Aws::new(&sdk, metrics.clone());
    let identity = aws::resolve(
        &client,
        args.issuer_url.as_deref(),
        &args.cluster_name,
        &aws,
    )
    .await?;
    info!(issuer = %identity.issuer.url, account = %identity.account,
          provider = %identity.provider_arn(), "cluster identity");
    let thumbprint = if args.manage_oidc_provider {
        let t = thumbprint::fetch(
            &identity.issuer.url,
            &thumbprint::Roots::Platform,
            Duration::from_secs(10),
        )
        .await;
        if let Some(w) = t.warning() {
            warn!("{w}");
        }
        t.value().map(str::to_string)
    } else {
        None
    };

    let settings = RoleSettings {
        issuer: identity.issuer.url.to_string(),
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
        thumbprint,
        ..WorkerOptions::default()
    };
    // One stop signal for everything below: SIGTERM, or a task of `outer` ending.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Everything that writes (IAM, SA annotations, status) runs inside `work`; dropping it
    // stops all of it (the tasks live in a Supervisor), which is what losing a Lease needs.
    let is_leader = metrics.is_leader.clone();
    let standby_ready = ready.clone();
    let publisher = publisher(&args.publish, &client, &sdk, &metrics)?;
    let publish_interval = args.publish.issuer_publish_interval;
    let work = {
        let client = client.clone();
        let stop = stop_rx.clone();
        move || {
            let reconcilers = run_reconcilers(
                client,
                aws,
                settings,
                options,
                args.annotation_prefix,
                metrics,
                ready,
                stopped(stop.clone()),
            );
            async move {
                let Some(publisher) = publisher else {
                    return reconcilers.await;
                };
                // Whichever ends first ends the elected work: a failed reconciler takes
                // the process down (and a pass cut short is simply redone by the next leader).
                tokio::select! {
                    r = reconcilers => r,
                    r = publisher.run(publish_interval, stopped(stop)) => r,
                }
            }
        }
    };
    let mut main: std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>>>> =
        if args.leader_election {
            let cfg = leader::LeaderConfig::for_controller(
                &client,
                args.leader_election_namespace.as_deref(),
                &args.leader_election_lease_name,
            );
            Box::pin(leader::run_until_shutdown(
                client.clone(),
                cfg,
                is_leader.clone(),
                standby_ready,
                stopped(stop_rx.clone()),
                work,
            ))
        } else {
            Box::pin(async move {
                is_leader.set(1);
                let result = work().await;
                is_leader.set(0);
                result
            })
        };
    // A task that ends on its own inside `work` makes `work` fail, which releases the Lease;
    // one of `outer` stops `work` the graceful way first (the Lease is released too).
    let mut failure = None;
    let mut stopping = false;
    let result = loop {
        tokio::select! {
            result = &mut main => break result,
            () = crate::shutdown::signal(), if !stopping => {
                stopping = true;
                let _ = stop_tx.send(true);
            }
            ended = outer.failed(), if failure.is_none() => {
                tracing::error!(error = %ended, "a part of the controller stopped; releasing the Lease and exiting so that it is restarted");
                failure = Some(ended);
                stopping = true;
                let _ = stop_tx.send(true);
            }
        }
    };
    outer.shutdown().await;
    result?;
    if let Some(ended) = failure {
        return Err(ended.into());
    }
    info!("irsa controller stopped");
    Ok(ExitCode::SUCCESS)
}

/// Resolves once `stop` turns true (or its sender is gone).
/// The issuer publisher, when `--publish-issuer` is set.
fn publisher(
    args: &crate::cli::PublishArgs,
    client: &Client,
    sdk: &aws_config::SdkConfig,
    metrics: &metrics::Metrics,
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
    .map_err(|e| crate::error::UsageError::new(e.to_string()))?;
    let mut s3 = aws_sdk_s3::config::Builder::from(sdk);
    if sdk.endpoint_url().is_some() {
        // An emulator or a private endpoint: buckets by path, not by host name.
        s3 = s3.force_path_style(true);
    }
    info!(bucket = %target.bucket, prefix = %target.prefix, public = %target.public_url,
          "publishing the issuer documents");
    Ok(Some(publish::Publisher {
        kube: client.clone(),
        s3: aws_sdk_s3::Client::from_conf(s3.build()),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client for the issuer read-back")?,
        target,
        retention: args.issuer_key_retention,
        state: (
            client.default_namespace().to_string(),
            args.issuer_state_configmap.clone(),
        ),
        metrics: metrics.clone(),
    }))
}

/// How long in-flight binding reconciles may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// A watch-stream inspector that raises `flag` once the first complete list is in the store.
fn on_init_done<K>(
    flag: Arc<AtomicBool>,
) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) {
    move |event| {
        if let Ok(watcher::Event::InitDone) = event {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

fn strip_sa(sa: &mut ServiceAccount) {
    // Only metadata is read; secrets lists can be long on old clusters.
    sa.secrets = None;
    sa.image_pull_secrets = None;
    sa.metadata.managed_fields = None;
}

/// Wires the watches, the IAM worker and the binding `Controller`; returns `Ok` once
/// `shutdown` resolves and the reconcilers are done, and an error naming the task as soon as
/// one of its long-running tasks ends on its own (the caller releases the Lease and exits).
/// Dropping it stops everything: every task it spawned lives in a [`Supervisor`] it owns.
#[allow(clippy::too_many_arguments)]
pub async fn run_reconcilers(
    client: Client,
    aws: Aws,
    settings: RoleSettings,
    options: WorkerOptions,
    prefix: String,
    metrics: metrics::Metrics,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    // Each cache reports its first complete list through a flag set on the watcher's InitDone
    // (not Store::wait_until_ready: kube-runtime 5 wakes only the most recent waiter of a
    // store, and the Controller's runner already waits on the bindings store).
    let synced: [Arc<AtomicBool>; 3] = Default::default();
    let (binding_store, binding_writer) = reflector::store::<IAMRoleBinding>();
    let binding_stream = watcher(
        Api::<IAMRoleBinding>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .reflect(binding_writer)
    .inspect(on_init_done(synced[0].clone()))
    .applied_objects();
    let controller = Controller::for_stream(binding_stream, binding_store.clone());
    let (sa_store, sa_writer) = reflector::store::<ServiceAccount>();
    let (grant_store, grant_writer) = reflector::store::<IAMRoleGrant>();

    let snapshot: SnapshotFn = {
        let (b, s, g, p) = (
            binding_store.clone(),
            sa_store.clone(),
            grant_store.clone(),
            prefix.clone(),
        );
        Arc::new(move || bindings::snapshot(&b, &s, &g, &p))
    };
    let (ready_tx, ready_rx) = oneshot::channel();
    let (report_tx, mut report_rx) = mpsc::unbounded_channel();
    let (worker, queue, state) = RoleWorker::new(aws, settings.clone(), options, snapshot);
    let worker = worker.with_reports(report_tx).wait_for(ready_rx);
    let (trigger_tx, trigger_rx) = mpsc::unbounded_channel::<ObjectRef<IAMRoleBinding>>();

    let mut tasks = Supervisor::new();
    tasks.spawn("IAM worker", async move {
        worker.run().await;
        Ok(())
    });

    // ServiceAccounts: keep the store; re-trigger bindings listing them; mark their roles.
    {
        let (bs, q, st, tx) = (
            binding_store.clone(),
            queue.clone(),
            state.clone(),
            trigger_tx.clone(),
        );
        let role_key = format!("{prefix}/role-arn");
        let stream = watcher(
            Api::<ServiceAccount>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .modify(strip_sa)
        .reflect(sa_writer)
        .inspect(on_init_done(synced[1].clone()))
        .touched_objects();
        tasks.spawn("ServiceAccount watch", async move {
            futures::pin_mut!(stream);
            while let Some(item) = stream.next().await {
                let sa = match item {
                    Ok(sa) => sa,
                    Err(e) => {
                        warn!(error = %e, "ServiceAccount watch error; retrying");
                        continue;
                    }
                };
                for r in bindings::bindings_of_sa(&bs, &sa) {
                    let _ = tx.send(r);
                }
                if let Some(role) = sa.annotations().get(&role_key) {
                    q.mark(role.trim());
                }
                let key = Key::new(&sa.namespace().unwrap_or_default(), &sa.name_any());
                for role in st.roles_trusting_sa(&key) {
                    q.mark(&role);
                }
            }
            Ok(())
        });
    }
    // Grants: any change may change any verdict; mark every known role.
    {
        let (q, st, bs, ss, gs, p) = (
            queue.clone(),
            state.clone(),
            binding_store.clone(),
            sa_store.clone(),
            grant_store.clone(),
            prefix.clone(),
        );
        let manage = settings.desired.clone();
        let stream = watcher(
            Api::<IAMRoleGrant>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(grant_writer)
        .inspect(on_init_done(synced[2].clone()))
        .touched_objects();
        tasks.spawn("IAMRoleGrant watch", async move {
            futures::pin_mut!(stream);
            while let Some(item) = stream.next().await {
                if let Err(e) = item {
                    warn!(error = %e, "IAMRoleGrant watch error; retrying");
                    continue;
                }
                let snap = bindings::snapshot(&bs, &ss, &gs, &p);
                for role in desired::roles(&snap, &manage).into_iter().chain(st.roles()) {
                    q.mark(&role);
                }
            }
            Ok(())
        });
    }
    // Reports: Events, and re-trigger the bindings of the role so their status follows.
    {
        let recorder = Recorder::new(client.clone(), Reporter::from("irsa-controller"));
        let mut events = bindings::EventPublisher::new(recorder, binding_store.clone());
        let (bs, tx) = (binding_store.clone(), trigger_tx.clone());
        tasks.spawn("role reports", async move {
            while let Some(report) = report_rx.recv().await {
                for r in bindings::bindings_of_role(&bs, &report.role) {
                    let _ = tx.send(r);
                }
                events.on_report(&report).await;
            }
            Ok(())
        });
    }
    // Ready once every cache has its initial list: then the first resync may remove subjects.
    {
        let ready = ready.clone();
        let synced = synced.clone();
        tasks.spawn_finite("cache sync", async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while !synced.iter().all(|s| s.load(Ordering::Relaxed)) {
                tick.tick().await;
            }
            info!("caches synced");
            ready.store(true, Ordering::Relaxed);
            let _ = ready_tx.send(());
            Ok(())
        });
    }

    let ctx = Arc::new(bindings::Context {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), Reporter::from("irsa-controller")),
        metrics,
        queue,
        roles: state,
        service_accounts: sa_store,
        prefix,
        failures: Mutex::new(HashMap::new()),
    });
    let triggers = futures::stream::unfold(trigger_rx, |mut rx| async move {
        rx.recv().await.map(|r| (r, rx))
    });
    let shutdown = futures::FutureExt::shared(shutdown);
    let reconcilers = controller
        .reconcile_on(triggers)
        .graceful_shutdown_on(shutdown.clone())
        .run(bindings::reconcile, bindings::error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "binding reconcile");
            }
        });
    // kube-runtime's graceful shutdown finishes in-flight reconciles, but a runner still
    // waiting for its store's first list (a SIGTERM right after winning the Lease) never
    // finishes: the watch was cut before the list arrived. Bound the wait.
    let grace = async {
        shutdown.await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let result = tokio::select! {
        () = reconcilers => Ok(()),
        ended = tasks.failed() => {
            tracing::error!(error = %ended, "a controller task stopped; stopping the reconcilers");
            Err(ended.into())
        }
        () = grace => {
            warn!("the binding reconcilers did not stop within {SHUTDOWN_GRACE:?} of shutdown; stopping them");
            Ok(())
        }
    };
    tasks.shutdown().await;
    result
}
