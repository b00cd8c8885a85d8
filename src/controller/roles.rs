//! The per-role trust reconciler and its work queue.
//!
//! [`reconcile_role`] makes one role's trust policy say what the cluster wants: it reads the
//! role (document + tags) and, inside [`Aws::converge_trust`]'s read→plan→write→re-read loop,
//! decides authorization ([`desired::for_role`], the tags come with the role) and compiles
//! ([`trust::compile`]). Nothing is written unless the compiled document differs semantically
//! from IAM's, so a resync at steady state costs one GetRole per role and zero writes.
//!
//! [`RoleWorker`] owns the IAM side of the controller: a set of dirty role ARNs, filled by the
//! Kubernetes watches, drained after a short debounce ([`WorkerOptions::debounce`]), so a burst
//! of N bindings on one role costs one pass — one read and at most one write — instead of N.
//! Every known role is re-checked every `--resync-interval` (drift repair). Roles that failed
//! with a retryable error are retried with exponential backoff and jitter.
//!
//! # When no statement is left
//! IAM refuses a trust policy without statements. When our statement was the role's only one
//! and its last subject goes, the statement is replaced by [`PLACEHOLDER_SID`], a `Deny` of
//! `sts:AssumeRole` to every AWS principal: the role then trusts nobody, which is what
//! "unbind" means, and keeping our last statement would leave a removed ServiceAccount able to
//! assume the role. The placeholder is ours: it is dropped again when subjects come back.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::desired::{self, Key, RoleDesired, Snapshot};
use super::metrics::Aws;
use crate::arn::RoleArn;
use crate::aws::{ConvergeOptions, ProviderSpec};
use crate::backoff::{Backoff, Jitter};
use crate::trust::{self, CompileInput, Compiled, PolicyDocument, Refusal};

/// Sid of the statement written when our last subject goes and nothing else is left.
pub const PLACEHOLDER_SID: &str = "IrsaNoSubjects";

/// What every role reconcile needs to know about this cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSettings {
    /// The issuer URL, exactly as tokens carry it.
    pub issuer: String,
    /// This issuer's IAM OIDC provider ARN.
    pub provider_arn: String,
    /// `--trust-policy-max-chars`.
    pub max_chars: usize,
    pub desired: desired::Settings,
    pub converge: ConvergeOptions,
}

/// The result of one role reconcile.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// IAM holds what the cluster wants (`writes` = 0: nothing needed changing).
    Applied {
        writes: u32,
        chars: usize,
        collapsed: Vec<String>,
        /// Our statements someone edited by hand, replaced (reported as events).
        hand_edited: Vec<String>,
    },
    /// Nothing of this cluster is wanted and nothing else is left: the role holds only
    /// [`PLACEHOLDER_SID`] (see the module docs).
    NoSubjects { writes: u32, chars: usize },
    /// The subjects do not fit the quota; nothing was written.
    TooLarge(Refusal),
    /// IAM (or the role's current document) failed us.
    Failed {
        /// [`aws::Error::metric_label`], or `unparseable_policy` / `invalid_role_arn`.
        label: &'static str,
        message: String,
        retryable: bool,
    },
}

impl Outcome {
    pub fn writes(&self) -> u32 {
        match self {
            Outcome::Applied { writes, .. } | Outcome::NoSubjects { writes, .. } => *writes,
            _ => 0,
        }
    }

    pub fn chars(&self) -> Option<usize> {
        match self {
            Outcome::Applied { chars, .. } | Outcome::NoSubjects { chars, .. } => Some(*chars),
            _ => None,
        }
    }

    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Applied { .. } | Outcome::NoSubjects { .. })
    }
}

/// One role's latest reconcile: what was wanted, and what happened.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleReport {
    pub role: String,
    /// Empty when the role could not be read (its tags are needed to authorize).
    pub desired: RoleDesired,
    /// False when `desired` was computed without the role's tags (the role was unreadable).
    pub authorized_with_tags: bool,
    pub outcome: Outcome,
    pub provider_arn: String,
    pub limit: usize,
    /// Increases with every report of the controller (ordering for waiters and tests).
    pub pass: u64,
}

impl RoleReport {
    /// Has this role been reconciled with `binding` at `generation` (or later)?
    pub fn saw(&self, binding: &Key, generation: i64) -> bool {
        self.desired
            .verdicts
            .get(binding)
            .is_some_and(|(g, _)| *g >= generation)
    }

    /// Does the role (as reconciled) trust subjects of `binding`?
    pub fn trusts_binding(&self, binding: &Key) -> bool {
        self.desired.bindings.contains_key(binding)
    }
}

#[derive(Debug)]
enum PlanError {
    TooLarge(Refusal),
    Unparseable(String),
}

/// Strips our placeholder from `doc`; tells whether there was one.
fn without_placeholder(doc: &PolicyDocument) -> (PolicyDocument, bool) {
    let statements: Vec<serde_json::Value> = doc.statements().into_iter().cloned().collect();
    let before = statements.len();
    let kept: Vec<serde_json::Value> = statements
        .into_iter()
        .filter(|s| s.get("Sid").and_then(|v| v.as_str()) != Some(PLACEHOLDER_SID))
        .collect();
    let had = kept.len() != before;
    (doc.with_statements(kept), had)
}

fn placeholder_statement() -> serde_json::Value {
    json!({
        "Sid": PLACEHOLDER_SID,
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": "sts:AssumeRole",
    })
}

/// What one plan step decided (the document to write, if any).
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    write: Option<String>,
    outcome: Outcome,
}

/// PURE: the plan for one role given IAM's current document and what the cluster wants.
fn plan(settings: &RoleSettings, current: &str, want: &RoleDesired) -> Result<Plan, PlanError> {
    let doc = PolicyDocument::parse(current).map_err(|e| PlanError::Unparseable(e.to_string()))?;
    let (stripped, had_placeholder) = without_placeholder(&doc);
    let compiled = trust::compile(&CompileInput {
        current: Some(&stripped),
        issuer: &settings.issuer,
        provider_arn: &settings.provider_arn,
        desired: &want.desired,
        max_chars: settings.max_chars,
        wildcard_namespaces: &want.wildcard_namespaces,
    })
    .map_err(PlanError::TooLarge)?;
    Ok(match compiled {
        Compiled::Unchanged { chars, collapsed } => {
            if had_placeholder && !stripped.statements().is_empty() {
                // Others' statements arrived next to our placeholder: it is not needed.
                let text = stripped.to_compact();
                Plan {
                    outcome: Outcome::Applied {
                        writes: 0,
                        chars: stripped.chars(),
                        collapsed,
                        hand_edited: vec![],
                    },
                    write: Some(text),
                }
            } else if had_placeholder {
                Plan {
                    write: None,
                    outcome: Outcome::NoSubjects {
                        writes: 0,
                        chars: doc.chars(),
                    },
                }
            } else {
                Plan {
                    write: None,
                    outcome: Outcome::Applied {
                        writes: 0,
                        chars,
                        collapsed,
                        hand_edited: vec![],
                    },
                }
            }
        }
        Compiled::Changed {
            document,
            chars,
            collapsed,
            hand_edited,
            ..
        } => Plan {
            write: Some(document.to_compact()),
            outcome: Outcome::Applied {
                writes: 0,
                chars,
                collapsed,
                hand_edited: hand_edited.iter().map(ToString::to_string).collect(),
            },
        },
        Compiled::NoStatementLeft { .. } => {
            let only = stripped.with_statements(vec![placeholder_statement()]);
            Plan {
                write: Some(only.to_compact()),
                outcome: Outcome::NoSubjects {
                    writes: 0,
                    chars: only.chars(),
                },
            }
        }
    })
}

/// Reconciles one role against IAM (see the module docs). Never panics on IAM's answers;
/// every failure is an [`Outcome::Failed`].
pub async fn reconcile_role(
    aws: &Aws,
    settings: &RoleSettings,
    role: &str,
    snapshot: &Snapshot,
) -> RoleReport {
    let report = |desired: RoleDesired, with_tags: bool, outcome: Outcome| RoleReport {
        role: role.to_string(),
        desired,
        authorized_with_tags: with_tags,
        outcome,
        provider_arn: settings.provider_arn.clone(),
        limit: settings.max_chars,
        pass: 0,
    };
    let arn = match RoleArn::parse(role) {
        Ok(a) => a,
        Err(e) => {
            let desired = desired::for_role(snapshot, &settings.desired, role, &BTreeMap::new());
            return report(
                desired,
                false,
                Outcome::Failed {
                    label: "invalid_role_arn",
                    message: format!("role ARN {role:?} {e}; fix spec.roleArn"),
                    retryable: false,
                },
            );
        }
    };
    let mut last_desired = None;
    let mut last_outcome = None;
    let result = aws
        .converge_trust(&arn, settings.converge, |trust| {
            let want = desired::for_role(snapshot, &settings.desired, role, &trust.tags);
            let planned = plan(settings, &trust.document, &want);
            last_desired = Some(want);
            let p = planned?;
            last_outcome = Some(p.outcome);
            Ok(p.write)
        })
        .await;
    match result {
        Ok(Ok(done)) => {
            let mut outcome = last_outcome.unwrap_or(Outcome::Applied {
                writes: 0,
                chars: 0,
                collapsed: vec![],
                hand_edited: vec![],
            });
            match &mut outcome {
                Outcome::Applied { writes, .. } | Outcome::NoSubjects { writes, .. } => {
                    *writes = done.writes
                }
                _ => {}
            }
            report(last_desired.unwrap_or_default(), true, outcome)
        }
        Ok(Err(PlanError::TooLarge(refusal))) => report(
            last_desired.unwrap_or_default(),
            true,
            Outcome::TooLarge(refusal),
        ),
        Ok(Err(PlanError::Unparseable(why))) => report(
            last_desired.unwrap_or_default(),
            true,
            Outcome::Failed {
                label: "unparseable_policy",
                message: format!(
                    "the trust policy of role {role} {why}; fix it in IAM (the controller never \
                     rewrites a document it cannot read)"
                ),
                retryable: false,
            },
        ),
        Err(e) => {
            // Without the role's tags a tag-based authorization cannot be decided; report
            // grant-based verdicts so the status still says something useful.
            let desired = last_desired.unwrap_or_else(|| {
                desired::for_role(snapshot, &settings.desired, role, &BTreeMap::new())
            });
            report(
                desired,
                false,
                Outcome::Failed {
                    label: e.metric_label(),
                    message: e.to_string(),
                    retryable: e.is_retryable(),
                },
            )
        }
    }
}

/// The latest report of every role, shared with the binding reconciler.
#[derive(Debug, Default)]
pub struct RoleState {
    reports: RwLock<BTreeMap<String, Arc<RoleReport>>>,
}

impl RoleState {
    pub fn get(&self, role: &str) -> Option<Arc<RoleReport>> {
        self.reports.read().ok()?.get(role).cloned()
    }

    pub fn roles(&self) -> BTreeSet<String> {
        self.reports
            .read()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Every audience the roles' last reconciles trust (authorized subjects only).
    pub fn audiences(&self) -> BTreeSet<String> {
        self.reports
            .read()
            .map(|r| {
                r.values()
                    .flat_map(|rep| rep.desired.audiences().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Roles whose last reconcile trusted the annotated ServiceAccount `sa`.
    pub fn roles_trusting_sa(&self, sa: &Key) -> Vec<String> {
        self.reports
            .read()
            .map(|r| {
                r.values()
                    .filter(|rep| rep.desired.service_accounts.contains(sa))
                    .map(|rep| rep.role.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records `report` as the role's latest (the worker does this after every reconcile).
    pub fn put(&self, report: Arc<RoleReport>) {
        // Kept even when nothing refers to the role any more: the binding reconciler reads
        // "cleaned" from it after a roleArn move, and resync keeps checking the role (one
        // GetRole per interval) so a hand edit re-adding our statement is still repaired.
        if let Ok(mut r) = self.reports.write() {
            r.insert(report.role.clone(), report);
        }
    }
}

/// A request to the worker (public so tests can stand in for the worker).
pub enum Msg {
    Dirty(String),
    Sync(String, oneshot::Sender<Arc<RoleReport>>),
}

/// Handle to mark roles dirty or wait for one to be reconciled. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RoleQueue {
    tx: mpsc::UnboundedSender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Dirty(r) => write!(f, "Dirty({r})"),
            Msg::Sync(r, _) => write!(f, "Sync({r})"),
        }
    }
}

/// The worker was stopped; nothing can be reconciled any more.
#[derive(Debug, thiserror::Error)]
#[error("the IAM worker has stopped (controller shutting down)")]
pub struct Stopped;

impl RoleQueue {
    /// A queue and the receiving end of its requests, without a worker (tests answer them).
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<Msg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, rx)
    }

    /// Reconcile `role` in the next pass (after the debounce).
    pub fn mark(&self, role: &str) {
        let _ = self.tx.send(Msg::Dirty(role.to_string()));
    }

    /// Reconcile `role` in the next pass and wait for its report; the pass reads the
    /// snapshot after this call, so it sees every change made before it.
    pub async fn sync(&self, role: &str) -> Result<Arc<RoleReport>, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Msg::Sync(role.to_string(), tx))
            .map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }
}

/// Knobs of the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerOptions {
    /// How long to collect dirty roles after the first one before reconciling.
    pub debounce: Duration,
    /// `--resync-interval`: every known role is re-checked this often.
    pub resync: Duration,
    /// Roles reconciled concurrently in one pass.
    pub concurrency: usize,
    /// First retry delay of a retryable failure (doubles per failure, full jitter, max 5m).
    pub retry_base: Duration,
    /// `--manage-oidc-provider`.
    pub manage_oidc_provider: bool,
    /// Thumbprint of the issuer's top CA, when obtainable.
    pub thumbprint: Option<String>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            debounce: Duration::from_secs(1),
            resync: Duration::from_secs(600),
            concurrency: 4,
            retry_base: Duration::from_secs(2),
            manage_oidc_provider: true,
            thumbprint: None,
        }
    }
}

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
    tx: mpsc::UnboundedSender<Msg>,
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
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(RoleState::default());
        let worker = Self {
            aws,
            settings,
            options,
            snapshot,
            state: state.clone(),
            rx,
            tx: tx.clone(),
            reports: None,
            provider_audiences: BTreeSet::new(),
            failures: HashMap::new(),
            pass: 0,
            ready: None,
        };
        (worker, RoleQueue { tx }, state)
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
    /// worker holds its own sender for retries, so callers stop it by dropping the future.
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
                    // Debounce: let the rest of a burst arrive, then do one pass for all.
                    tokio::time::sleep(self.options.debounce).await;
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
            thumbprint: self.options.thumbprint.clone(),
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
                let tx = self.tx.clone();
                let role = report.role.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    let _ = tx.send(Msg::Dirty(role));
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::trust::Subject;

    const ISSUER: &str = "https://oidc.example/id/blue";
    const PROVIDER: &str = "arn:aws:iam::111122223333:oidc-provider/oidc.example/id/blue";

    fn settings() -> RoleSettings {
        RoleSettings {
            issuer: ISSUER.into(),
            provider_arn: PROVIDER.into(),
            max_chars: 2048,
            desired: desired::Settings {
                cluster: "blue".into(),
                default_audience: "sts.amazonaws.com".into(),
                manage_annotated: true,
            },
            converge: ConvergeOptions::default(),
        }
    }

    fn want(subjects: &[&str]) -> RoleDesired {
        let set: BTreeSet<Subject> = subjects.iter().map(|s| s.parse().unwrap()).collect();
        let mut d = RoleDesired::default();
        if !set.is_empty() {
            d.desired.insert("sts.amazonaws.com".into(), set);
        }
        d
    }

    const FOREIGN: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Saml","Effect":"Allow","Principal":{"Federated":"arn:aws:iam::111122223333:saml-provider/x"},"Action":"sts:AssumeRoleWithSAML"}]}"#;

    #[test]
    fn last_subject_gone_leaves_a_deny_placeholder_then_recovers() {
        let s = settings();
        let empty = r#"{"Version":"2012-10-17","Statement":[]}"#;
        let first = plan(&s, empty, &want(&["a:b"])).unwrap();
        let with_ours = first.write.unwrap();
        // Unbind: nothing else in the policy → placeholder.
        let gone = plan(&s, &with_ours, &want(&[])).unwrap();
        assert!(matches!(gone.outcome, Outcome::NoSubjects { .. }));
        let placeholder = gone.write.unwrap();
        assert!(placeholder.contains(PLACEHOLDER_SID));
        assert!(!placeholder.contains("system:serviceaccount"));
        // Steady: nothing to write.
        assert_eq!(plan(&s, &placeholder, &want(&[])).unwrap().write, None);
        // Rebind: the placeholder goes.
        let back = plan(&s, &placeholder, &want(&["a:b"]))
            .unwrap()
            .write
            .unwrap();
        assert!(!back.contains(PLACEHOLDER_SID));
        assert!(back.contains("system:serviceaccount:a:b"));
    }

    #[test]
    fn with_foreign_statements_ours_is_simply_removed() {
        let s = settings();
        let bound = plan(&s, FOREIGN, &want(&["a:b"])).unwrap().write.unwrap();
        let unbound = plan(&s, &bound, &want(&[])).unwrap().write.unwrap();
        assert_eq!(
            PolicyDocument::parse(&unbound).unwrap(),
            PolicyDocument::parse(FOREIGN).unwrap()
        );
        // Unauthorized / nothing wanted on a role we never touched: no write.
        assert_eq!(plan(&s, FOREIGN, &want(&[])).unwrap().write, None);
    }

    #[test]
    fn over_quota_is_refused() {
        let mut s = settings();
        s.max_chars = 300;
        let many: Vec<String> = (0..40).map(|i| format!("team-a:sa-{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(matches!(
            plan(&s, FOREIGN, &want(&refs)),
            Err(PlanError::TooLarge(_))
        ));
    }
}
