//! The `PodIdentityAssociation` reconciler (kube-runtime `Controller`): status only. As for a
//! binding, the IAM side is the worker's: a reconcile marks the association's role dirty
//! when the role's last report has not seen this generation, and writes the status from the
//! role's latest report; the worker's reports re-trigger the associations of each role.
//!
//! There is no finalizer: a deleted association's role is marked by the watch
//! (`wiring::spawn_association_watch`'s delete events), and the next pass drops its
//! statement. An association deleted while no controller runs keeps its namespace's statement
//! until another association of that role changes or the role is reconciled again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use serde_json::json;
use tracing::{instrument, warn};

use crate::controller::iam::queue::RoleQueue;
use crate::controller::iam::state::RoleState;
use crate::controller::k8s::reconcile::retry_delay;
use crate::controller::metrics::Metrics;
use crate::controller::policy::desired::Key;
use crate::controller::policy::status;
use crate::crd::PodIdentityAssociation;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("PodIdentityAssociation {key}: writing status: {source}")]
    Status {
        key: Key,
        #[source]
        source: kube::Error,
    },
    #[error("PodIdentityAssociation {name} has no namespace")]
    NoNamespace { name: String },
}

/// What the association reconciler shares.
pub struct Context {
    pub client: kube::Client,
    pub metrics: Metrics,
    pub queue: RoleQueue,
    pub roles: Arc<RoleState>,
    /// `--pod-identity-agent-role-arn`.
    pub agent_role_arn: Option<String>,
    /// Consecutive failures per association, for `error_policy`'s backoff.
    pub failures: Mutex<HashMap<Key, u32>>,
}

fn key_of(a: &PodIdentityAssociation) -> Result<Key, Error> {
    let namespace = a
        .namespace()
        .ok_or_else(|| Error::NoNamespace { name: a.name_any() })?;
    Ok(Key::new(&namespace, &a.name_any()))
}

#[instrument(skip(association, ctx), fields(association = %association.name_any(), namespace = association.namespace().unwrap_or_default()))]
pub async fn reconcile(
    association: Arc<PodIdentityAssociation>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    ctx.metrics.reconciled("association");
    let key = key_of(&association)?;
    let generation = association.metadata.generation.unwrap_or(0);
    let role = &association.spec.role_arn;
    let report = ctx.roles.get(role);
    let seen = report
        .as_ref()
        .is_some_and(|r| r.saw_association(&key, generation));
    if ctx.agent_role_arn.is_some() && !seen {
        ctx.queue.mark(role);
    }
    let new = status::compute_association(&status::AssociationInput {
        key: &key,
        generation,
        role_arn: role,
        current: association.status.as_ref(),
        report: report.as_deref(),
        agent_role_arn: ctx.agent_role_arn.as_deref(),
        now: Time(k8s_openapi::jiff::Timestamp::now()),
    });
    if association.status.as_ref() != Some(&new) {
        let api: Api<PodIdentityAssociation> = Api::namespaced(ctx.client.clone(), &key.namespace);
        match api
            .patch_status(
                &key.name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": new })),
            )
            .await
        {
            // Deleted meanwhile: nothing to report on.
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => return Err(Error::Status { key, source }),
            Ok(_) => {}
        }
    }
    if let Ok(mut f) = ctx.failures.lock() {
        f.remove(&key);
    }
    Ok(Action::await_change())
}

/// Requeue with exponential backoff (5s · 2^n, max 5 min) and count the error.
pub fn error_policy(
    association: Arc<PodIdentityAssociation>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    ctx.metrics.reconcile_failed("association", "kube");
    let wait = retry_delay(&ctx.failures, key_of(&association).ok());
    warn!(association = %association.name_any(), error = %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}
