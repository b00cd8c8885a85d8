//! The reflector stores: what the ServiceAccount store keeps ([`strip_sa`]), which bindings a
//! change concerns ([`bindings_of_role`], [`bindings_of_sa`]), and the pure [`Snapshot`] the
//! IAM side computes from ([`snapshot`]).

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::controller::policy::annotate;
use crate::controller::policy::authz::GrantSpec;
use crate::controller::policy::desired::{AnnotatedSa, BindingInfo, Snapshot};
use crate::crd::{IAMRoleBinding, IAMRoleGrant};

/// Drops what no reader of the ServiceAccount store needs before it is stored.
pub fn strip_sa(sa: &mut ServiceAccount) {
    // Only metadata is read; secrets lists can be long on old clusters.
    sa.secrets = None;
    sa.image_pull_secrets = None;
    sa.metadata.managed_fields = None;
}

/// Bindings to re-reconcile after `report`: those pointing at the role now or before.
pub fn bindings_of_role(
    store: &Store<IAMRoleBinding>,
    role: &str,
) -> Vec<ObjectRef<IAMRoleBinding>> {
    store
        .state_filter(|b| {
            b.spec.role_arn == role
                || b.status
                    .as_ref()
                    .and_then(|s| s.role_arn.as_deref())
                    .is_some_and(|r| r == role)
        })
        .iter()
        .map(|b| ObjectRef::from_obj(b.as_ref()))
        .collect()
}

/// Bindings affected by a change of `sa` (they list it, or they annotated it).
pub fn bindings_of_sa(
    store: &Store<IAMRoleBinding>,
    sa: &ServiceAccount,
) -> Vec<ObjectRef<IAMRoleBinding>> {
    let ns = sa.namespace().unwrap_or_default();
    let name = sa.name_any();
    let owner = sa.annotations().get(annotate::OWNER).cloned();
    store
        .state_filter(|b| {
            b.namespace().as_deref() == Some(ns.as_str())
                && (b.spec.service_accounts.contains(&name)
                    || owner.as_deref() == Some(&b.name_any()))
        })
        .iter()
        .map(|b| ObjectRef::from_obj(b.as_ref()))
        .collect()
}

/// The snapshot the role worker computes from, read from the reflector stores.
pub fn snapshot(
    bindings: &Store<IAMRoleBinding>,
    service_accounts: &Store<ServiceAccount>,
    grants: &Store<IAMRoleGrant>,
    prefix: &str,
) -> Snapshot {
    let role_key = format!("{prefix}/role-arn");
    let audience_key = format!("{prefix}/audience");
    Snapshot {
        bindings: bindings
            .state()
            .iter()
            .filter_map(|b| {
                let namespace = b.namespace()?;
                Some(BindingInfo {
                    namespace,
                    name: b.name_any(),
                    generation: b.metadata.generation.unwrap_or(0),
                    role_arn: b.spec.role_arn.clone(),
                    service_accounts: b.spec.service_accounts.clone(),
                    audience: b.spec.audience.clone(),
                    deleting: b.metadata.deletion_timestamp.is_some(),
                    previous_role_arn: b
                        .status
                        .as_ref()
                        .and_then(|s| s.role_arn.clone())
                        .filter(|r| *r != b.spec.role_arn),
                })
            })
            .collect(),
        service_accounts: service_accounts
            .state()
            .iter()
            .filter_map(|sa| {
                let a = sa.metadata.annotations.as_ref()?;
                let role = a.get(&role_key).filter(|r| !r.trim().is_empty())?;
                Some(AnnotatedSa {
                    namespace: sa.namespace()?,
                    name: sa.name_any(),
                    role_arn: role.trim().to_string(),
                    audience: a.get(&audience_key).cloned(),
                    managed_by: a.get(annotate::OWNER).cloned(),
                })
            })
            .collect(),
        grants: grants
            .state()
            .iter()
            .map(|g| (g.name_any(), GrantSpec::from(&g.spec)))
            .collect(),
    }
}
