//! The controller: reconciles the IAM OIDC provider and role trust policies (docs/design.md §4).
//!
//! `crate::commands::controller` reads the flags, resolves the cluster's identity and hands
//! over to [`wiring`]. The work is split by side: [`k8s`] (bindings, stores, Events) marks
//! roles for [`iam`] (queue, worker, role reconcile) and reads its reports; both decide
//! through [`policy`], which is pure (in the `irsa-core` crate). AWS is reached through
//! [`crate::aws`] (as [`metrics::Aws`], counting every call), the issuer through
//! [`crate::issuer::discover`]; [`election`] decides which replica writes.

pub mod election;
pub mod iam;
pub mod k8s;
pub mod metrics;
pub mod publish;
pub mod wiring;

/// The controller's pure decisions, in the core crate.
pub use irsa_core::policy;

use std::time::Duration;

use kube::Client;
use kube::api::{Api, ListParams};

use crate::crd::{IAMRoleBinding, IAMRoleGrant, PodIdentityAssociation};

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
    )?;
    let associations: Api<PodIdentityAssociation> = Api::all(client.clone());
    crd_answer(
        "podidentityassociations.irsa.dev",
        associations.list_metadata(&lp).await.map(|_| ()),
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
