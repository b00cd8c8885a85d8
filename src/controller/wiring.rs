//! How the controller's parts are started and joined: one named function per task. Tasks that
//! run until shutdown are spawned into a [`Supervisor`] (`spawn_*`), so that one ending on its
//! own fails the process; the binding and association `Controller`s, the issuer publisher and
//! the leader elector are futures their caller drives, as each decides when the others stop.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::Api;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::{Predicate as _, PredicateConfig, predicates};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::admin;
use crate::controller::election::{self, Election};
use crate::controller::iam::queue::RoleQueue;
use crate::controller::iam::reconcile::RoleSettings;
use crate::controller::iam::state::RoleState;
use crate::controller::iam::worker::{RoleWorker, SnapshotFn, WorkerOptions};
use crate::controller::k8s::associations;
use crate::controller::k8s::events::EventPublisher;
use crate::controller::k8s::index::{self, Index};
use crate::controller::k8s::own_writes::OwnWrites;
use crate::controller::k8s::pods::{self, PodWatch};
use crate::controller::k8s::reconcile::{self as bindings, Context};
use crate::controller::k8s::snapshot::{
    self, associations_of_role, bindings_of_role, bindings_of_sa, strip_managed, strip_sa,
};
use crate::controller::metrics::{Aws, Metrics};
use crate::controller::policy::desired::{self, Key, Snapshot};
use crate::controller::policy::report::RoleReport;
use crate::controller::publish;
use crate::crd::{IAMRoleBinding, IAMRoleGrant, PodIdentityAssociation};
use crate::error::UsageError;
use crate::issuer::{IssuerUrl, thumbprint};
use crate::supervise::Supervisor;
use crate::webhook::ConnectionLimits;

/// How long in-flight binding reconciles may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Binding reconciles at once. Each is a few API-server requests (or a wait for an IAM pass,
/// when deleting): unbounded, thousands of new bindings opened thousands of connections at
/// once. Triggers of a binding waiting for its turn merge into one reconcile.
const BINDING_CONCURRENCY: u16 = 32;

/// Spawns the admin port (metrics, health, readiness); it serves standbys too. Binding the
/// address fails here, before anything else starts.
pub fn spawn_admin_server(
    tasks: &mut Supervisor,
    addr: SocketAddr,
    registry: Registry,
    ready: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let listener = admin::bind(addr)?;
    let app = admin_router(registry, ready);
    tasks.spawn(
        "metrics server",
        admin::serve(listener, app, ConnectionLimits::ADMIN)?,
    );
    Ok(())
}

/// The controller's admin router: ready once its caches have synced, or while standing by.
fn admin_router(registry: Registry, ready: Arc<AtomicBool>) -> axum::Router {
    admin::router(Arc::new(registry), move || {
        match ready.load(Ordering::Relaxed) {
            true => Ok("ok\n"),
            false => Err("caches not synced yet\n"),
        }
    })
}

/// The roots the issuer's chain is verified against before it is pinned: `--issuer-ca-file`
/// (a private CA) when given, else the system's. Read at startup, so a bad file is a usage
/// error before anything is contacted.
pub fn issuer_roots(ca_file: Option<&Path>) -> Result<thumbprint::Roots, UsageError> {
    let Some(path) = ca_file else {
        return Ok(thumbprint::Roots::Platform);
    };
    let flag_error =
        |why: String| UsageError::new(format!("--issuer-ca-file {}: {why}", path.display()));
    let pem = std::fs::read(path).map_err(|e| flag_error(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| flag_error(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(flag_error("holds no PEM certificate".into()));
    }
    Ok(thumbprint::Roots::Only(certs))
}

/// The thumbprints to keep on the OIDC provider (issuer host, JWKS host). Those that cannot
/// be computed are warnings: AWS verifies issuers under a well-known CA without them.
pub async fn issuer_thumbprints(issuer: &IssuerUrl, roots: &thumbprint::Roots) -> Vec<String> {
    thumbprint::issuer_thumbprints(issuer, roots, Duration::from_secs(10))
        .await
        .into_iter()
        .filter_map(|t| {
            if let Some(w) = t.warning() {
                warn!("{w}");
            }
            t.value().map(str::to_string)
        })
        .collect()
}

/// Everything that writes (IAM, SA annotations, status, the issuer documents): the work only
/// the leader does.
pub struct ElectedWork {
    pub client: Client,
    pub aws: Aws,
    pub settings: RoleSettings,
    pub options: WorkerOptions,
    /// `--annotation-prefix`.
    pub prefix: String,
    pub metrics: Metrics,
    /// Raised once the caches have synced.
    pub ready: Arc<AtomicBool>,
    /// The issuer publisher and its `--issuer-publish-interval`.
    pub publisher: Option<(publish::Publisher, Duration)>,
    /// The pod watch, unless `--detect-uninjected-pods false`.
    pub pods: Option<pods::Settings>,
}

impl ElectedWork {
    /// Runs the reconcilers (and the publisher) until `stop` turns true. Dropping it stops all
    /// of it (the tasks live in a Supervisor), which is what losing a Lease needs.
    async fn run(self, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let reconcilers = run_reconcilers(
            self.client,
            self.aws,
            self.settings,
            self.options,
            self.prefix,
            self.metrics,
            self.ready,
            self.pods,
            stopped(stop.clone()),
        );
        let Some((publisher, interval)) = self.publisher else {
            return reconcilers.await;
        };
        // Whichever ends first ends the elected work: a failed reconciler takes the process
        // down (and a pass cut short is simply redone by the next leader).
        tokio::select! {
            r = reconcilers => r,
            r = publisher.run(interval, stopped(stop)) => r,
        }
    }
}

/// Runs `work` while this replica leads (`election`; at once and alone without it) until a
/// shutdown signal, or until a task of `outer` ends on its own (then with that as the error).
/// Either way `work` is stopped the graceful way and the Lease released before `outer` stops.
pub async fn run_until_shutdown(
    election: Option<Election>,
    work: ElectedWork,
    mut outer: Supervisor,
    is_leader: Gauge,
    standby_ready: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    // One stop signal for everything below: SIGTERM, or a task of `outer` ending.
    let (stop_tx, stop_rx) = watch::channel(false);
    let work = {
        let stop = stop_rx.clone();
        move || work.run(stop)
    };
    let mut main: Pin<Box<dyn Future<Output = anyhow::Result<()>>>> = match election {
        Some(election) => Box::pin(election::run_until_shutdown(
            election,
            is_leader,
            standby_ready,
            stopped(stop_rx),
            work,
        )),
        None => Box::pin(async move {
            is_leader.set(1);
            let result = work().await;
            is_leader.set(0);
            result
        }),
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
    Ok(())
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
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

/// The Events recorder of the controller.
pub fn recorder(client: &Client) -> Recorder {
    Recorder::new(client.clone(), reporter())
}

/// Who the controller's Events say reported them.
fn reporter() -> Reporter {
    Reporter::from("irsa-controller")
}

/// The four reflector stores and the annotation prefix: what a [`Snapshot`] is read from.
#[derive(Clone)]
struct Stores {
    bindings: Store<IAMRoleBinding>,
    service_accounts: Store<ServiceAccount>,
    grants: Store<IAMRoleGrant>,
    associations: Store<PodIdentityAssociation>,
    prefix: String,
}

impl Stores {
    fn snapshot(&self) -> Snapshot {
        snapshot::snapshot(
            &self.bindings,
            &self.service_accounts,
            &self.grants,
            &self.associations,
            &self.prefix,
        )
    }
}

/// What the watch tasks share: the stores they read and their indexes, the IAM worker's queue
/// and reports, the ServiceAccount writes the reconciler made, the channels that re-trigger
/// binding and association reconciles and the one naming changed ServiceAccounts to the pod
/// watch (a send fails harmlessly when it is off).
#[derive(Clone)]
struct Handles {
    stores: Stores,
    bindings_by_service_account: Index<IAMRoleBinding>,
    bindings_by_role: Index<IAMRoleBinding>,
    associations_by_role: Index<PodIdentityAssociation>,
    own_writes: OwnWrites,
    queue: RoleQueue,
    roles: Arc<RoleState>,
    triggers: mpsc::UnboundedSender<ObjectRef<IAMRoleBinding>>,
    association_triggers: mpsc::UnboundedSender<ObjectRef<PodIdentityAssociation>>,
    service_account_changes: mpsc::UnboundedSender<Key>,
}

/// Wires the watches, the IAM worker and the binding and association `Controller`s; returns
/// `Ok` once
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
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    pods: Option<pods::Settings>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    // Each cache reports its first complete list through a flag set on the watcher's InitDone
    // (not Store::wait_until_ready: kube-runtime 5 wakes only the most recent waiter of a
    // store, and the Controller's runner already waits on the bindings store).
    let synced: [Arc<AtomicBool>; 4] = Default::default();
    let (binding_store, binding_writer) = reflector::store::<IAMRoleBinding>();
    let by_service_account = index::bindings_by_service_account();
    let by_role = index::bindings_by_role();
    let binding_stream = watcher(
        Api::<IAMRoleBinding>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .backoff(crate::backoff::watch())
    .modify(strip_managed)
    .inspect(by_service_account.updater())
    .inspect(by_role.updater())
    .reflect(binding_writer)
    .inspect(on_init_done(synced[0].clone()))
    .applied_objects()
    // Only a change of the spec (generation; a deletion raises it too) or of the finalizers
    // is news to the reconciler: not its own status writes, which would reconcile every
    // binding once more per write. Role reports and ServiceAccount changes trigger bindings
    // through their own channels.
    .predicate_filter(
        predicates::generation.combine(predicates::finalizers),
        PredicateConfig::default(),
    );
    let controller = Controller::for_stream(binding_stream, binding_store.clone())
        .with_config(controller::Config::default().concurrency(BINDING_CONCURRENCY));
    let (sa_store, sa_writer) = reflector::store::<ServiceAccount>();
    let (grant_store, grant_writer) = reflector::store::<IAMRoleGrant>();
    let (association_store, association_writer) = reflector::store::<PodIdentityAssociation>();
    let stores = Stores {
        bindings: binding_store,
        service_accounts: sa_store,
        grants: grant_store,
        associations: association_store,
        prefix,
    };

    let snapshot: SnapshotFn = {
        let stores = stores.clone();
        Arc::new(move || stores.snapshot())
    };
    let (ready_tx, ready_rx) = oneshot::channel();
    let (report_tx, report_rx) = mpsc::unbounded_channel();
    let (worker, queue, state) = RoleWorker::new(aws, settings.clone(), options, snapshot);
    let worker = worker.with_reports(report_tx).wait_for(ready_rx);
    let (trigger_tx, trigger_rx) = mpsc::unbounded_channel::<ObjectRef<IAMRoleBinding>>();
    let (association_tx, association_rx) = mpsc::unbounded_channel();
    let (sa_changes_tx, sa_changes_rx) = mpsc::unbounded_channel();
    let owners = index::service_accounts_by_owner();
    let own_writes = OwnWrites::default();
    let handles = Handles {
        stores: stores.clone(),
        bindings_by_service_account: by_service_account,
        bindings_by_role: by_role,
        associations_by_role: index::associations_by_role(),
        own_writes: own_writes.clone(),
        queue: queue.clone(),
        roles: state.clone(),
        triggers: trigger_tx,
        association_triggers: association_tx,
        service_account_changes: sa_changes_tx,
    };
    let agent_role_arn = settings.desired.pod_identity_agent.clone();
    let association_controller = association_controller(
        &client,
        &handles,
        association_writer,
        synced[3].clone(),
        agent_role_arn.is_some(),
    );

    let mut tasks = Supervisor::new();
    spawn_iam_worker(&mut tasks, worker);
    spawn_service_account_watch(
        &mut tasks,
        &client,
        &handles,
        (sa_writer, owners.clone()),
        synced[1].clone(),
    );
    spawn_grant_watch(
        &mut tasks,
        &client,
        &handles,
        grant_writer,
        synced[2].clone(),
        settings.desired.clone(),
    );
    spawn_report_handler(&mut tasks, &client, &handles, report_rx);
    if let Some(settings) = pods {
        spawn_pod_watch(
            &mut tasks,
            &client,
            &stores,
            &metrics,
            settings,
            synced[1].clone(),
            sa_changes_rx,
        );
    }
    spawn_cache_sync(&mut tasks, synced, ready, ready_tx);

    let association_ctx = Arc::new(associations::Context {
        client: client.clone(),
        metrics: metrics.clone(),
        queue: queue.clone(),
        roles: state.clone(),
        agent_role_arn,
        failures: Default::default(),
    });
    let ctx = Arc::new(Context {
        client: client.clone(),
        metrics,
        queue,
        roles: state,
        service_accounts: stores.service_accounts,
        owners,
        own_writes,
        prefix: stores.prefix,
        failures: Default::default(),
    });
    let shutdown = futures::FutureExt::shared(shutdown);
    let reconcilers = futures::future::join(
        run_controller(
            controller,
            trigger_rx,
            shutdown.clone(),
            (bindings::reconcile, bindings::error_policy),
            ctx,
        ),
        run_controller(
            association_controller,
            association_rx,
            shutdown.clone(),
            (associations::reconcile, associations::error_policy),
            association_ctx,
        ),
    );
    // kube-runtime's graceful shutdown finishes in-flight reconciles, but a runner still
    // waiting for its store's first list (a SIGTERM right after winning the Lease) never
    // finishes: the watch was cut before the list arrived. Bound the wait.
    let grace = async {
        shutdown.await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let result = tokio::select! {
        _ = reconcilers => Ok(()),
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

/// The IAM worker: debounced passes over dirty roles, and the periodic resync.
fn spawn_iam_worker(tasks: &mut Supervisor, worker: RoleWorker) {
    tasks.spawn("IAM worker", async move {
        worker.run().await;
        Ok(())
    });
}

/// ServiceAccounts: keep the store and its index of owners; re-trigger the bindings listing
/// them (not the one whose own write an event is); mark their roles.
fn spawn_service_account_watch(
    tasks: &mut Supervisor,
    client: &Client,
    handles: &Handles,
    (writer, owners): (
        reflector::store::Writer<ServiceAccount>,
        Index<ServiceAccount>,
    ),
    synced: Arc<AtomicBool>,
) {
    let h = handles.clone();
    let role_key = format!("{}/role-arn", h.stores.prefix);
    let stream = watcher(
        Api::<ServiceAccount>::all(client.clone()),
        watcher::Config::default(),
    )
    .backoff(crate::backoff::watch())
    .modify({
        let prefix = h.stores.prefix.clone();
        move |sa| strip_sa(sa, &prefix)
    })
    .inspect(owners.updater())
    .reflect(writer)
    .inspect(on_init_done(synced))
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
            let key = Key::new(&sa.namespace().unwrap_or_default(), &sa.name_any());
            let writer = own_write(&h, &key, &sa);
            for r in bindings_of_sa(&h.bindings_by_service_account, &sa) {
                if writer.as_deref() != Some(r.name.as_str()) {
                    let _ = h.triggers.send(r);
                }
            }
            if let Some(role) = sa.annotations().get(&role_key) {
                h.queue.mark(role.trim());
            }
            for role in h.roles.roles_trusting_sa(&key) {
                h.queue.mark(&role);
            }
            let _ = h.service_account_changes.send(key);
        }
        Ok(())
    });
}

/// The binding whose own write `sa` is, while the binding is still at the generation that
/// made it (a binding changed since is reconciled as usual).
fn own_write(h: &Handles, key: &Key, sa: &ServiceAccount) -> Option<String> {
    let write = h
        .own_writes
        .writer_of(key, sa.metadata.resource_version.as_deref())?;
    let binding = h
        .stores
        .bindings
        .get(&ObjectRef::new(&write.binding).within(&key.namespace))?;
    (binding.metadata.generation.unwrap_or(0) == write.generation).then_some(write.binding)
}

/// Pods (`--detect-uninjected-pods`): judged against the ServiceAccount store once it has
/// synced (`sa_synced`), re-judged on the ServiceAccount changes the watch above names.
fn spawn_pod_watch(
    tasks: &mut Supervisor,
    client: &Client,
    stores: &Stores,
    metrics: &Metrics,
    settings: pods::Settings,
    sa_synced: Arc<AtomicBool>,
    changes: mpsc::UnboundedReceiver<Key>,
) {
    let watch = PodWatch {
        client: client.clone(),
        settings,
        service_accounts: stores.service_accounts.clone(),
        prefix: stores.prefix.clone(),
        metrics: metrics.clone(),
        recorder: recorder(client),
    };
    tasks.spawn("Pod watch", watch.run(sa_synced, changes));
}

/// Grants: any change may change any verdict; mark every known role.
fn spawn_grant_watch(
    tasks: &mut Supervisor,
    client: &Client,
    handles: &Handles,
    writer: reflector::store::Writer<IAMRoleGrant>,
    synced: Arc<AtomicBool>,
    manage: desired::Settings,
) {
    let h = handles.clone();
    let stream = watcher(
        Api::<IAMRoleGrant>::all(client.clone()),
        watcher::Config::default(),
    )
    .backoff(crate::backoff::watch())
    .reflect(writer)
    .inspect(on_init_done(synced))
    .touched_objects();
    tasks.spawn("IAMRoleGrant watch", async move {
        futures::pin_mut!(stream);
        while let Some(item) = stream.next().await {
            if let Err(e) = item {
                warn!(error = %e, "IAMRoleGrant watch error; retrying");
                continue;
            }
            let snap = h.stores.snapshot();
            for role in desired::roles(&snap, &manage)
                .into_iter()
                .chain(h.roles.roles())
            {
                h.queue.mark(&role);
            }
        }
        Ok(())
    });
}

/// Role reports: re-trigger the bindings and associations of the role so their status follows (unless the
/// report says what the role's previous one said, as a resync's do), and publish the Events
/// in a task of their own, so that Event writes never hold up the re-triggers.
fn spawn_report_handler(
    tasks: &mut Supervisor,
    client: &Client,
    handles: &Handles,
    mut reports: mpsc::UnboundedReceiver<Arc<RoleReport>>,
) {
    let mut events =
        EventPublisher::new(client.clone(), reporter(), handles.stores.bindings.clone());
    let (by_role, tx) = (handles.bindings_by_role.clone(), handles.triggers.clone());
    let (associations, association_tx) = (
        handles.associations_by_role.clone(),
        handles.association_triggers.clone(),
    );
    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<Arc<RoleReport>>();
    tasks.spawn("role reports", async move {
        let mut last: HashMap<String, Arc<RoleReport>> = HashMap::new();
        while let Some(report) = reports.recv().await {
            let previous = last.insert(report.role.clone(), report.clone());
            if !previous.is_some_and(|p| same_but_pass(&p, &report)) {
                for r in bindings_of_role(&by_role, &report.role) {
                    let _ = tx.send(r);
                }
                for r in associations_of_role(&associations, &report.role) {
                    let _ = association_tx.send(r);
                }
            }
            let _ = events_tx.send(report);
        }
        Ok(())
    });
    tasks.spawn("role events", async move {
        while let Some(report) = events_rx.recv().await {
            events.on_report(&report).await;
        }
        Ok(())
    });
}

/// Do two reports of a role say the same (`pass` aside, which every report raises)?
fn same_but_pass(a: &RoleReport, b: &RoleReport) -> bool {
    // Destructured, so that a new field of the report is a decision here.
    let RoleReport {
        role,
        desired,
        authorized_with_tags,
        outcome,
        provider_arn,
        limit,
        pass: _,
    } = a;
    *role == b.role
        && *desired == b.desired
        && *authorized_with_tags == b.authorized_with_tags
        && *outcome == b.outcome
        && *provider_arn == b.provider_arn
        && *limit == b.limit
}

/// Ready once every cache has its initial list: then the first resync may remove subjects.
fn spawn_cache_sync(
    tasks: &mut Supervisor,
    synced: [Arc<AtomicBool>; 4],
    ready: Arc<AtomicBool>,
    worker_ready: oneshot::Sender<()>,
) {
    tasks.spawn_finite("cache sync", async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        while !synced.iter().all(|s| s.load(Ordering::Relaxed)) {
            tick.tick().await;
        }
        info!("caches synced");
        ready.store(true, Ordering::Relaxed);
        let _ = worker_ready.send(());
        Ok(())
    });
}

/// The association watch and its `Controller` (not yet running): keeps the store and the
/// index by role; with the agent's role configured, a deleted association's roles are
/// marked (its statement goes), and so are the roles it named before a `roleArn` change.
/// Only spec changes reach the reconciler, not its own status writes.
fn association_controller(
    client: &Client,
    handles: &Handles,
    writer: reflector::store::Writer<PodIdentityAssociation>,
    synced: Arc<AtomicBool>,
    pod_identity: bool,
) -> Controller<PodIdentityAssociation> {
    let (queue, roles) = (handles.queue.clone(), handles.roles.clone());
    let mark_old_roles = move |event: &Result<watcher::Event<PodIdentityAssociation>, _>| {
        let (Ok(watcher::Event::Apply(a) | watcher::Event::Delete(a)), true) =
            (event, pod_identity)
        else {
            return;
        };
        let deleted = matches!(event, Ok(watcher::Event::Delete(_)));
        let key = Key::new(&a.namespace().unwrap_or_default(), &a.name_any());
        for role in roles.roles_with_association(&key) {
            if deleted || role != a.spec.role_arn {
                queue.mark(&role);
            }
        }
        if deleted {
            queue.mark(&a.spec.role_arn);
        }
    };
    let stream = watcher(
        Api::<PodIdentityAssociation>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .backoff(crate::backoff::watch())
    .modify(strip_managed)
    .inspect(handles.associations_by_role.updater())
    .inspect(mark_old_roles)
    .reflect(writer)
    .inspect(on_init_done(synced))
    .applied_objects()
    .predicate_filter(predicates::generation, PredicateConfig::default());
    Controller::for_stream(stream, handles.stores.associations.clone())
        .with_config(controller::Config::default().concurrency(BINDING_CONCURRENCY))
}

/// Drives `controller` on its watch and on `triggers` until `shutdown`, after which in-flight
/// reconciles finish: the binding `Controller` (triggered by ServiceAccount changes and role
/// reports) and the association one (by role reports). Failures are the error policies' to
/// log; here only at debug level.
fn run_controller<K, Ctx, Fut, E>(
    controller: Controller<K>,
    triggers: mpsc::UnboundedReceiver<ObjectRef<K>>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    (reconcile, error_policy): (
        impl FnMut(Arc<K>, Arc<Ctx>) -> Fut,
        impl Fn(Arc<K>, &E, Arc<Ctx>) -> controller::Action,
    ),
    ctx: Arc<Ctx>,
) -> impl Future<Output = ()>
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + std::fmt::Debug + Unpin,
    Fut: Future<Output = Result<controller::Action, E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let triggers = futures::stream::unfold(triggers, |mut rx| async move {
        rx.recv().await.map(|r| (r, rx))
    });
    let kind = K::kind(&Default::default()).to_string();
    controller
        .reconcile_on(triggers)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(move |res| {
            if let Err(e) = res {
                tracing::debug!(error = %e, "{kind} reconcile");
            }
            futures::future::ready(())
        })
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;

    async fn get(app: axum::Router, path: &str) -> (StatusCode, String) {
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

    /// Handles over empty stores but `bindings`; the channels' receivers are dropped.
    fn handles(bindings: Store<IAMRoleBinding>) -> Handles {
        let (queue, _) = RoleQueue::channel();
        Handles {
            stores: Stores {
                bindings,
                service_accounts: reflector::store().0,
                grants: reflector::store().0,
                associations: reflector::store().0,
                prefix: "eks.amazonaws.com".into(),
            },
            bindings_by_service_account: index::bindings_by_service_account(),
            bindings_by_role: index::bindings_by_role(),
            associations_by_role: index::associations_by_role(),
            own_writes: OwnWrites::default(),
            queue,
            roles: Arc::default(),
            triggers: mpsc::unbounded_channel().0,
            association_triggers: mpsc::unbounded_channel().0,
            service_account_changes: mpsc::unbounded_channel().0,
        }
    }

    #[test]
    fn an_own_write_spares_its_binding_only_while_the_binding_is_unchanged() {
        let (bindings, mut writer) = reflector::store::<IAMRoleBinding>();
        let h = handles(bindings);
        let mut b = IAMRoleBinding::new(
            "b",
            serde_json::from_value(serde_json::json!({
                "roleArn": "arn:aws:iam::111122223333:role/app", "serviceAccounts": ["app"]
            }))
            .unwrap(),
        );
        b.metadata.namespace = Some("team-a".into());
        b.metadata.generation = Some(1);
        writer.apply_watcher_event(&watcher::Event::Apply(b.clone()));
        let key = Key::new("team-a", "app");
        let mut sa = ServiceAccount::default();
        sa.metadata.resource_version = Some("7".into());
        let write = || crate::controller::k8s::own_writes::Write {
            resource_version: "7".into(),
            binding: "b".into(),
            generation: 1,
        };

        h.own_writes.record(key.clone(), write());
        assert_eq!(own_write(&h, &key, &sa), Some("b".into()));
        assert_eq!(own_write(&h, &key, &sa), None, "one event per write");

        // The binding's spec changed between its write and the write's event: that binding
        // must be reconciled again (the ServiceAccount may no longer be listed).
        h.own_writes.record(key.clone(), write());
        b.metadata.generation = Some(2);
        writer.apply_watcher_event(&watcher::Event::Apply(b));
        assert_eq!(own_write(&h, &key, &sa), None);
    }

    #[tokio::test]
    async fn the_admin_port_serves_readiness_and_the_controller_metrics() {
        let metrics = Metrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.reconciled("binding");
        metrics.reconcile_failed("role", "throttled");
        metrics.set_trust_chars("arn:aws:iam::111122223333:role/r", 812);
        let ready = Arc::new(AtomicBool::new(false));
        let app = admin_router(registry, ready.clone());

        assert_eq!(
            get(app.clone(), "/healthz").await,
            (StatusCode::OK, "ok\n".into())
        );
        assert_eq!(
            get(app.clone(), "/readyz").await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "caches not synced yet\n".into()
            )
        );
        ready.store(true, Ordering::Relaxed);
        assert_eq!(
            get(app.clone(), "/readyz").await,
            (StatusCode::OK, "ok\n".into())
        );
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
