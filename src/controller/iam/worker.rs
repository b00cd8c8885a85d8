//! [`RoleWorker`] owns the IAM side of the controller: a set of dirty role ARNs, filled by the
//! Kubernetes watches, drained after a short debounce ([`WorkerOptions::debounce`]), so a burst
//! of N bindings on one role costs one pass — one read and at most one write — instead of N.
//! Every known role is re-checked every `--resync-interval` (drift repair). Roles that failed
//! with a retryable error are retried with exponential backoff and jitter.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::aws::ProviderSpec;
use crate::backoff::{Backoff, Jitter};
use crate::controller::iam::queue::{Msg, RoleQueue};
use crate::controller::iam::reconcile::{RoleSettings, reconcile_role};
use crate::controller::iam::state::RoleState;
use crate::controller::metrics::Aws;
use crate::controller::policy::desired::{self, Snapshot};
use crate::controller::policy::report::{Outcome, RoleReport};

/// Knobs of the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerOptions {
    /// A pass starts once no role was marked dirty for this long (the burst is over), and at
    /// the latest [`MAX_DEBOUNCES`] times this after the first mark (a steady stream of
    /// changes still gets passes).
    pub debounce: Duration,
    /// `--resync-interval`: every known role is re-checked this often.
    pub resync: Duration,
    /// Roles reconciled concurrently in one pass.
    pub concurrency: usize,
    /// First retry delay of a retryable failure (doubles per failure, equal jitter: half fixed, half random; max 5m).
    pub retry_base: Duration,
    /// `--manage-oidc-provider`.
    pub manage_oidc_provider: bool,
    /// Thumbprints of the issuer's and the JWKS host's top CA, those obtainable.
    pub thumbprints: Vec<String>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            debounce: Duration::from_secs(1),
            resync: Duration::from_secs(600),
            concurrency: 4,
            retry_base: Duration::from_secs(2),
            manage_oidc_provider: true,
            thumbprints: Vec::new(),
        }
    }
}

/// A pass waits at most this many debounce periods after the first mark of a burst: with the
/// controller's 2 s, 30 s, the time a loaded API server took to deliver 1,000 edited bindings
/// (a shorter cap split such a burst into two writes per role; docs/benchmarks.md).
pub const MAX_DEBOUNCES: u32 = 15;

/// A function returning the current snapshot (the reflector stores, or a test's fixture).
pub type SnapshotFn = Arc<dyn Fn() -> Snapshot + Send + Sync>;

/// The IAM side of the controller: drains the queue, reconciles roles, publishes reports.
pub struct RoleWorker {
    aws: Aws,
    settings: RoleSettings,
    options: WorkerOptions,
    snapshot: SnapshotFn,
    state: Arc<RoleState>,
    rx: mpsc::UnboundedReceiver<Msg>,
    /// Its own handle, for scheduled retries (it also keeps `rx` open).
    queue: RoleQueue,
    /// Every report is also sent here (events, status triggers); `None` in tests.
    reports: Option<mpsc::UnboundedSender<Arc<RoleReport>>>,
    /// Audiences the OIDC provider is known to have (ensured once per resync or new one).
    provider_audiences: BTreeSet<String>,
    failures: HashMap<String, u32>,
    pass: u64,
    /// Set after the initial snapshot is in (caches synced): resync starts from there.
    ready: Option<oneshot::Receiver<()>>,
}

impl RoleWorker {
    pub fn new(
        aws: Aws,
        settings: RoleSettings,
        options: WorkerOptions,
        snapshot: SnapshotFn,
    ) -> (Self, RoleQueue, Arc<RoleState>) {
        let (queue, rx) = RoleQueue::channel();
        let state = Arc::new(RoleState::default());
        let worker = Self {
            aws,
            settings,
            options,
            snapshot,
            state: state.clone(),
            rx,
            queue: queue.clone(),
            reports: None,
            provider_audiences: BTreeSet::new(),
            failures: HashMap::new(),
            pass: 0,
            ready: None,
        };
        (worker, queue, state)
    }

    /// Send every report to `tx` as well.
    pub fn with_reports(mut self, tx: mpsc::UnboundedSender<Arc<RoleReport>>) -> Self {
        self.reports = Some(tx);
        self
    }

    /// Hold the first resync until `ready` fires (the Kubernetes caches are synced), so a
    /// half-loaded snapshot never removes subjects.
    pub fn wait_for(mut self, ready: oneshot::Receiver<()>) -> Self {
        self.ready = Some(ready);
        self
    }

    /// Every role worth re-checking: those the cluster refers to and those we last touched.
    fn known_roles(&self, snapshot: &Snapshot) -> BTreeSet<String> {
        let mut roles = desired::roles(snapshot, &self.settings.desired);
        roles.extend(self.state.roles());
        roles
    }

    /// Runs until every [`RoleQueue`] handle is dropped... which never happens while the
    /// worker holds its own handle for retries, so callers stop it by dropping the future.
    pub async fn run(mut self) {
        if let Some(ready) = self.ready.take() {
            let _ = ready.await;
        }
        let mut resync = tokio::time::interval(self.options.resync);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut dirty: BTreeSet<String> = BTreeSet::new();
            let mut waiters: Vec<(String, oneshot::Sender<Arc<RoleReport>>)> = Vec::new();
            let mut resyncing = false;
            tokio::select! {
                msg = self.rx.recv() => {
                    let Some(msg) = msg else { return };
                    Self::take(msg, &mut dirty, &mut waiters);
                    // Debounce: let the rest of a burst arrive, then do one pass for all. A
                    // `kubectl apply` of many bindings arrives over seconds, so the pass waits
                    // for a quiet period rather than a fixed time after the first mark.
                    let latest = tokio::time::Instant::now()
                        + self.options.debounce * MAX_DEBOUNCES;
                    loop {
                        let quiet = tokio::time::Instant::now() + self.options.debounce;
                        match tokio::time::timeout_at(quiet.min(latest), self.rx.recv()).await {
                            Ok(Some(msg)) => Self::take(msg, &mut dirty, &mut waiters),
                            Ok(None) | Err(_) => break,
                        }
                    }
                }
                _ = resync.tick() => {
                    resyncing = true;
                }
            }
            while let Ok(msg) = self.rx.try_recv() {
                Self::take(msg, &mut dirty, &mut waiters);
            }
            let snapshot = (self.snapshot)();
            if resyncing {
                dirty.extend(self.known_roles(&snapshot));
            }
            self.pass_over(dirty, waiters, &snapshot, resyncing).await;
        }
    }

    fn take(
        msg: Msg,
        dirty: &mut BTreeSet<String>,
        waiters: &mut Vec<(String, oneshot::Sender<Arc<RoleReport>>)>,
    ) {
        match msg {
            Msg::Dirty(r) => {
                dirty.insert(r);
            }
            Msg::Sync(r, tx) => {
                dirty.insert(r.clone());
                waiters.push((r, tx));
            }
        }
    }

    /// The audiences the provider must list: the default, plus every audience some
    /// authorized binding or ServiceAccount uses (a refused binding adds no client ID).
    fn audiences_in_use(&self) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self.state.audiences();
        out.insert(self.settings.desired.default_audience.clone());
        out
    }

    /// Makes sure the OIDC provider exists and lists every audience in use. Reads only,
    /// unless an audience is missing or the provider does not exist; skipped entirely when
    /// nothing new is in use since the last success (and not `force`d by a resync).
    async fn ensure_provider(&mut self, force: bool) {
        if !self.options.manage_oidc_provider {
            return;
        }
        let audiences = self.audiences_in_use();
        if !force && audiences.is_subset(&self.provider_audiences) {
            return;
        }
        let spec = ProviderSpec {
            issuer: self.settings.issuer.clone(),
            client_ids: audiences.iter().cloned().collect(),
            thumbprints: self.options.thumbprints.clone(),
            cluster: self.settings.desired.cluster.clone(),
        };
        match self.aws.ensure_oidc_provider(&spec).await {
            Ok(done) => {
                for near in &done.near_misses {
                    warn!(
                        provider = %near,
                        issuer = %self.settings.issuer,
                        "an OIDC provider almost matches this issuer (case or trailing /); IAM \
                         compares exactly, so tokens will not match it"
                    );
                }
                if done.writes() > 0 {
                    info!(arn = %done.provider.arn, created = done.created,
                          added = ?done.added_client_ids, "OIDC provider updated");
                }
                if done.provider.arn != self.settings.provider_arn {
                    warn!(
                        expected = %self.settings.provider_arn, actual = %done.provider.arn,
                        "the OIDC provider's ARN differs from the one trust statements name"
                    );
                }
                self.provider_audiences = audiences;
            }
            Err(e) => warn!(error = %e, "could not ensure the OIDC provider; retrying next pass"),
        }
    }

    async fn pass_over(
        &mut self,
        dirty: BTreeSet<String>,
        waiters: Vec<(String, oneshot::Sender<Arc<RoleReport>>)>,
        snapshot: &Snapshot,
        resyncing: bool,
    ) {
        // Before the writes: a trust statement naming a provider that does not exist is
        // refused by IAM. After them: audiences newly authorized in this pass.
        self.ensure_provider(resyncing).await;
        let aws = &self.aws;
        let settings = &self.settings;
        let reports: Vec<RoleReport> = futures::stream::iter(dirty)
            .map(|role| async move { reconcile_role(aws, settings, &role, snapshot).await })
            .buffer_unordered(self.options.concurrency.max(1))
            .collect()
            .await;
        let mut by_role: HashMap<String, Arc<RoleReport>> = HashMap::new();
        for mut report in reports {
            self.pass += 1;
            report.pass = self.pass;
            self.after(&report);
            let report = Arc::new(report);
            self.state.put(report.clone());
            if let Some(tx) = &self.reports {
                let _ = tx.send(report.clone());
            }
            by_role.insert(report.role.clone(), report);
        }
        self.ensure_provider(false).await;
        for (role, tx) in waiters {
            if let Some(r) = by_role.get(&role) {
                let _ = tx.send(r.clone());
            }
        }
    }

    /// Counts and logs the outcome, and schedules a retry for retryable failures.
    fn after(&mut self, report: &RoleReport) {
        let metrics = self.aws.metrics();
        metrics.reconciled("role");
        if let Some(chars) = report.outcome.chars() {
            metrics.set_trust_chars(&report.role, chars);
        }
        match &report.outcome {
            Outcome::Failed { label, .. } => metrics.reconcile_failed("role", label),
            Outcome::TooLarge(_) => metrics.reconcile_failed("role", "trust_policy_too_large"),
            _ => {}
        }
        match &report.outcome {
            Outcome::Failed {
                retryable: true,
                message,
                ..
            } => {
                let n = self.failures.entry(report.role.clone()).or_insert(0);
                *n += 1;
                let wait = Backoff {
                    base: self.options.retry_base,
                    max: Duration::from_secs(300),
                    jitter: Jitter::Equal,
                }
                .delay(*n);
                warn!(role = %report.role, attempt = *n, retry_in = ?wait, "{message}");
                let queue = self.queue.clone();
                let role = report.role.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    queue.mark(&role);
                });
            }
            Outcome::Failed { message, .. } => {
                self.failures.remove(&report.role);
                warn!(role = %report.role, "{message}");
            }
            Outcome::TooLarge(refusal) => {
                self.failures.remove(&report.role);
                warn!(role = %report.role, "{refusal}");
            }
            _ => {
                self.failures.remove(&report.role);
            }
        }
    }
}
