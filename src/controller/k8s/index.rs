//! The controller's indexes ([`crate::index::Index`]): bindings by ServiceAccount and by role,
//! associations by role, ServiceAccounts by the binding that annotated them.

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::ResourceExt;

pub use crate::index::{Index, namespaced};

use crate::controller::policy::annotate;
use crate::crd::{IAMRoleBinding, PodIdentityAssociation};

/// Bindings by the ServiceAccounts they list (`namespace/name`).
pub fn bindings_by_service_account() -> Index<IAMRoleBinding> {
    Index::new(|b| {
        let ns = b.namespace().unwrap_or_default();
        b.spec
            .service_accounts
            .iter()
            .map(|sa| namespaced(&ns, sa))
            .collect()
    })
}

/// Bindings by role: the spec's, and the previous one of a move (status.roleArn).
pub fn bindings_by_role() -> Index<IAMRoleBinding> {
    Index::new(|b| {
        let mut roles = vec![b.spec.role_arn.clone()];
        if let Some(previous) = b.status.as_ref().and_then(|s| s.role_arn.clone())
            && previous != b.spec.role_arn
        {
            roles.push(previous);
        }
        roles
    })
}

/// Associations by the role they name (`spec.roleArn`).
pub fn associations_by_role() -> Index<PodIdentityAssociation> {
    Index::new(|a| vec![a.spec.role_arn.clone()])
}

/// ServiceAccounts by the binding that annotated them (`namespace/binding`).
pub fn service_accounts_by_owner() -> Index<ServiceAccount> {
    Index::new(|sa| {
        sa.annotations()
            .get(annotate::OWNER)
            .map(|owner| namespaced(&sa.namespace().unwrap_or_default(), owner))
            .into_iter()
            .collect()
    })
}
