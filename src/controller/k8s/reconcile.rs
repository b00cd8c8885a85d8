//! The `IAMRoleBinding` reconciler (kube-runtime `Controller`): finalizer, ServiceAccount
//! annotations, status. The IAM side is the [`RoleWorker`]'s: a binding reconcile only marks
//! its role dirty (when the role's last report has not seen this generation) and writes the
//! status from the role's latest report; the worker's reports re-trigger the bindings of each
//! role ([`bindings_of_role`]), so the two meet without loops.
//!
//! [`RoleWorker`]: crate::controller::iam::worker::RoleWorker
//! [`bindings_of_role`]: crate::controller::k8s::snapshot::bindings_of_role
//!
//! Deletion (finalizer `irsa.dev/trust-policy`): the binding's own annotations are removed
//! from its ServiceAccounts, then the role (and the previous role after a `roleArn` move) is
//! reconciled synchronously without the binding; only when IAM no longer trusts its subjects
//! is the finalizer released. A role that does not exist has nothing to clean.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;
use tracing::{debug, info, instrument, warn};

use crate::backoff::{Backoff, Jitter};
use crate::controller::iam::queue::{RoleQueue, Stopped};
use crate::controller::iam::state::RoleState;
use crate::controller::k8s::index::{self, Index};
use crate::controller::k8s::own_writes::{OwnWrites, Write};
use crate::controller::metrics::Metrics;
use crate::controller::policy::annotate::{self, Plan, Wanted};
use crate::controller::policy::desired::Key;
use crate::controller::policy::report::{Outcome, RoleReport};
use crate::controller::policy::status::{self, AnnotationSummary};
use crate::crd::{FINALIZER, IAMRoleBinding};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "IAMRoleBinding {binding}: cannot remove its subjects from role {role} yet: {message}; \
         the finalizer stays until this succeeds (remove it by hand to abandon the cleanup)"
    )]
    Cleanup {
        binding: String,
        role: String,
        message: String,
    },
    #[error("IAMRoleBinding {binding} has no namespace")]
    NoNamespace { binding: String },
    #[error(transparent)]
    Stopped(#[from] Stopped),
    #[error("{0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
}

impl Error {
    /// A finalizer patch whose test of the cached finalizers failed (422), or whose binding is
    /// gone (404, deleted since the cached copy was read): the binding was reconciled from a
    /// cached copy older than the API server's, typically a second reconcile of a burst before
    /// the watch delivered the first one's finalizer. Nothing is wrong; the next reconcile works
    /// on the current object, or there is none.
    pub fn is_stale_cache(&self) -> bool {
        let Error::Finalizer(e) = self else {
            return false;
        };
        matches!(
            e.as_ref(),
            finalizer::Error::AddFinalizer(kube::Error::Api(s))
                | finalizer::Error::RemoveFinalizer(kube::Error::Api(s)) if s.code == 422 || s.code == 404
        )
    }

    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube",
            Error::Cleanup { .. } => "cleanup",
            Error::NoNamespace { .. } => "no_namespace",
            Error::Stopped(_) => "stopped",
            Error::Finalizer(e) => match e.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => {
                    e.metric_label()
                }
                _ => "finalizer",
            },
        }
    }
}

/// How soon a binding reconciled from a stale cached copy is reconciled again: time for the
/// watch to deliver the current object.
const STALE_CACHE_RETRY: Duration = Duration::from_secs(1);

/// What the binding reconciler shares.
pub struct Context {
    pub client: kube::Client,
    pub metrics: Metrics,
    pub queue: RoleQueue,
    pub roles: Arc<RoleState>,
    pub service_accounts: Store<ServiceAccount>,
    /// The ServiceAccounts each binding annotated ([`index::service_accounts_by_owner`]).
    pub owners: Index<ServiceAccount>,
    /// The ServiceAccount writes made here, for the watch to recognise.
    pub own_writes: OwnWrites,
    /// `--annotation-prefix`.
    pub prefix: String,
    /// Consecutive failures per binding, for `error_policy`'s backoff.
    pub failures: Mutex<HashMap<Key, u32>>,
}

fn key_of(b: &IAMRoleBinding) -> Result<Key> {
    let namespace = b.namespace().ok_or_else(|| Error::NoNamespace {
        binding: b.name_any(),
    })?;
    Ok(Key::new(&namespace, &b.name_any()))
}

#[instrument(skip(binding, ctx), fields(binding = %binding.name_any(), namespace = binding.namespace().unwrap_or_default()))]
pub async fn reconcile(binding: Arc<IAMRoleBinding>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciled("binding");
    let key = key_of(&binding)?;
    let api: Api<IAMRoleBinding> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let action = finalizer(&api, FINALIZER, binding, |event| async {
        match event {
            finalizer::Event::Apply(b) => apply(&b, &ctx).await,
            finalizer::Event::Cleanup(b) => cleanup(&b, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    if let Ok(mut f) = ctx.failures.lock() {
        f.remove(&key);
    }
    Ok(action)
}

/// Requeue with exponential backoff (5s · 2^n, max 5 min) and count the error.
/// A stale cache ([`Error::is_stale_cache`]) is no failure: requeued at once, not counted,
/// logged at debug level.
pub fn error_policy(binding: Arc<IAMRoleBinding>, error: &Error, ctx: Arc<Context>) -> Action {
    if error.is_stale_cache() {
        debug!(binding = %binding.name_any(), error = %error, "the cached binding was behind the API server's; reconciling it again");
        return Action::requeue(STALE_CACHE_RETRY);
    }
    ctx.metrics
        .reconcile_failed("binding", error.metric_label());
    let wait = retry_delay(&ctx.failures, key_of(&binding).ok());
    warn!(binding = %binding.name_any(), error = %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// The next retry of an object whose reconcile failed once more: 5s · 2^n with jitter, at
/// most 5 min, `n` counted per object in `failures` (cleared by a successful reconcile).
pub fn retry_delay(failures: &Mutex<HashMap<Key, u32>>, key: Option<Key>) -> Duration {
    let n = match (key, failures.lock()) {
        (Some(key), Ok(mut f)) => {
            let n = f.entry(key).or_insert(0);
            *n += 1;
            *n
        }
        _ => 1,
    };
    Backoff {
        base: Duration::from_secs(5),
        max: Duration::from_secs(300),
        jitter: Jitter::Equal,
    }
    .delay(n)
}

/// Was `previous` (status.roleArn after a move) cleaned of this binding?
fn previous_pending(ctx: &Context, key: &Key, previous: &str) -> bool {
    match ctx.roles.get(previous) {
        None => {
            ctx.queue.mark(previous);
            true
        }
        Some(r) if r.outcome.is_ok() => {
            if r.trusts_binding(key) {
                ctx.queue.mark(previous);
                true
            } else {
                false
            }
        }
        // Failed: the worker retries (or resync does); marking here would spin.
        Some(_) => true,
    }
}

async fn apply(b: &IAMRoleBinding, ctx: &Context) -> Result<Action> {
    let key = key_of(b)?;
    let generation = b.metadata.generation.unwrap_or(0);
    let role = &b.spec.role_arn;
    let report = ctx.roles.get(role);
    if !report.as_ref().is_some_and(|r| r.saw(&key, generation)) {
        ctx.queue.mark(role);
    }
    let previous = b
        .status
        .as_ref()
        .and_then(|s| s.role_arn.clone())
        .filter(|p| p != role);
    let old_pending = previous
        .as_deref()
        .filter(|p| previous_pending(ctx, &key, p));

    let annotations = annotate_service_accounts(b, &key, ctx).await?;
    let new = status::compute(&status::Input {
        key: &key,
        generation,
        role_arn: role,
        current: b.status.as_ref(),
        report: report.as_deref(),
        old_role_pending: old_pending,
        annotations: &annotations,
        now: Time(k8s_openapi::jiff::Timestamp::now()),
    });
    if b.status.as_ref() != Some(&new) {
        let api: Api<IAMRoleBinding> = Api::namespaced(ctx.client.clone(), &key.namespace);
        api.patch_status(
            &key.name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": new })),
        )
        .await
        .map_err(|source| Error::Kube {
            what: format!("IAMRoleBinding {key}: writing status"),
            source,
        })?;
    }
    Ok(Action::await_change())
}

fn annotations_of(sa: &ServiceAccount) -> BTreeMap<String, String> {
    sa.metadata.annotations.clone().unwrap_or_default()
}

/// Writes `patch` on ServiceAccount `name` for binding `b`; false when it is gone.
async fn patch_sa(
    ctx: &Context,
    b: &IAMRoleBinding,
    binding: &Key,
    name: &str,
    patch: &annotate::Patch,
) -> Result<bool> {
    let namespace = &binding.namespace;
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), namespace);
    match api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(annotate::merge_patch(patch)),
        )
        .await
    {
        Ok(sa) => {
            if let Some(version) = sa.metadata.resource_version {
                let write = Write {
                    resource_version: version,
                    binding: binding.name.clone(),
                    generation: b.metadata.generation.unwrap_or(0),
                };
                ctx.own_writes.record(Key::new(namespace, name), write);
            }
            Ok(true)
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(source) => Err(Error::Kube {
            what: format!("ServiceAccount {namespace}/{name}: writing annotations"),
            source,
        }),
    }
}

/// The ServiceAccounts of the binding's namespace it wrote annotations on: those the index
/// names that the store still shows annotated by it.
fn owned_service_accounts(ctx: &Context, binding: &Key) -> Vec<Arc<ServiceAccount>> {
    ctx.owners
        .get(&index::namespaced(&binding.namespace, &binding.name))
        .into_iter()
        .filter_map(|sa| {
            ctx.service_accounts
                .get(&ObjectRef::new(&sa.name).within(&sa.namespace))
        })
        .filter(|sa| {
            sa.annotations()
                .get(annotate::OWNER)
                .is_some_and(|o| *o == binding.name)
        })
        .collect()
}

/// Sets (or releases) the annotations `annotateServiceAccounts` asks for.
async fn annotate_service_accounts(
    b: &IAMRoleBinding,
    key: &Key,
    ctx: &Context,
) -> Result<AnnotationSummary> {
    let mut summary = AnnotationSummary {
        disabled: !b.spec.annotate_service_accounts,
        ..Default::default()
    };
    // Let go of SAs we annotated that are no longer listed (or all, when switched off).
    for sa in owned_service_accounts(ctx, key) {
        let name = sa.name_any();
        if b.spec.annotate_service_accounts && b.spec.service_accounts.contains(&name) {
            continue;
        }
        if let Some(p) = annotate::release(&annotations_of(&sa), &key.name) {
            patch_sa(ctx, b, key, &name, &p).await?;
        }
    }
    if summary.disabled {
        return Ok(summary);
    }
    let wanted = Wanted::for_binding(
        &key.name,
        &ctx.prefix,
        &b.spec.role_arn,
        b.spec.audience.as_deref(),
        b.spec.sts_regional_endpoints,
        b.spec.token_expiration_seconds,
    );
    for name in &b.spec.service_accounts {
        let Some(sa) = ctx
            .service_accounts
            .get(&ObjectRef::new(name).within(&key.namespace))
        else {
            summary.missing.push(name.clone());
            continue;
        };
        match annotate::plan(&annotations_of(&sa), &wanted) {
            Plan::UpToDate => summary.annotated.push(name.clone()),
            Plan::Patch(p) => {
                if patch_sa(ctx, b, key, name, &p).await? {
                    info!(service_account = %name, "annotated");
                    summary.annotated.push(name.clone());
                } else {
                    summary.missing.push(name.clone());
                }
            }
            Plan::Conflict {
                key: k,
                theirs,
                ours,
            } => {
                summary
                    .conflicts
                    .push(format!("{name}: {k} is {theirs:?}, not {ours:?}"));
            }
        }
    }
    Ok(summary)
}

/// A role failure that means "nothing of ours can be in it" (gone, or never ours).
fn nothing_to_clean(report: &RoleReport) -> bool {
    matches!(
        &report.outcome,
        Outcome::Failed { label, .. } if matches!(*label, "not_found" | "invalid_role_arn" | "role_mismatch")
    )
}

async fn cleanup(b: &IAMRoleBinding, ctx: &Context) -> Result<Action> {
    let key = key_of(b)?;
    for sa in owned_service_accounts(ctx, &key) {
        if let Some(p) = annotate::release(&annotations_of(&sa), &key.name) {
            patch_sa(ctx, b, &key, &sa.name_any(), &p).await?;
        }
    }
    let mut roles = vec![b.spec.role_arn.clone()];
    if let Some(prev) = b.status.as_ref().and_then(|s| s.role_arn.clone())
        && !roles.contains(&prev)
    {
        roles.push(prev);
    }
    for role in roles {
        let report = ctx.queue.sync(&role).await?;
        let cleaned =
            (report.outcome.is_ok() && !report.trusts_binding(&key)) || nothing_to_clean(&report);
        if !cleaned {
            let message = match &report.outcome {
                Outcome::Failed { message, .. } => message.clone(),
                Outcome::TooLarge(r) => r.to_string(),
                _ => "the role still trusts its subjects".into(),
            };
            return Err(Error::Cleanup {
                binding: key.to_string(),
                role,
                message,
            });
        }
    }
    info!(binding = %key, "subjects removed; releasing the finalizer");
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn finalizer_error(add: bool, code: u16) -> Error {
        let api = kube::Error::Api(Box::new(Status {
            code,
            ..Status::default()
        }));
        Error::Finalizer(Box::new(if add {
            finalizer::Error::AddFinalizer(api)
        } else {
            finalizer::Error::RemoveFinalizer(api)
        }))
    }

    #[test]
    fn only_a_failed_finalizer_test_or_a_deleted_binding_is_a_stale_cache() {
        assert!(finalizer_error(true, 422).is_stale_cache());
        assert!(finalizer_error(false, 422).is_stale_cache());
        assert!(
            finalizer_error(true, 404).is_stale_cache(),
            "deleted meanwhile"
        );
        assert!(
            !finalizer_error(true, 403).is_stale_cache(),
            "RBAC is a failure"
        );
        assert!(!finalizer_error(true, 500).is_stale_cache());
        let apply = Error::Finalizer(Box::new(finalizer::Error::ApplyFailed(
            Error::NoNamespace {
                binding: "b".into(),
            },
        )));
        assert!(!apply.is_stale_cache());
    }
}
