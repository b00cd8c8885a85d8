//! The reflector stores: what the ServiceAccount store keeps ([`strip_sa`]), which bindings
//! and associations a change concerns ([`bindings_of_role`], [`bindings_of_sa`],
//! [`associations_of_role`], from the stores'
//! [indexes](crate::controller::k8s::index)), and the pure [`Snapshot`] the
//! IAM side computes from ([`snapshot`]).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::controller::k8s::index::{self, Index};
use crate::controller::policy::annotate;
use crate::controller::policy::authz::GrantSpec;
use crate::controller::policy::desired::{
    AnnotatedSa, AssociationInfo, BindingInfo, Key, Snapshot,
};
use crate::crd::{IAMRoleBinding, IAMRoleGrant, PodIdentityAssociation};

/// `kubectl apply`'s copy of the whole object, in an annotation no reader of the stores needs.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Keeps of a ServiceAccount what the readers of its store use: its name, namespace and
/// resource version (matched against the reconciler's own writes), and the annotations under
/// `prefix` and `irsa.dev/` (a binding's ownership records). A store holds every
/// ServiceAccount of the cluster; the rest (labels, uid, other tools' annotations, secrets
/// lists) would be most of its memory.
pub fn strip_sa(sa: &mut ServiceAccount, prefix: &str) {
    let meta = std::mem::take(&mut sa.metadata);
    let ours = |key: &str| {
        key.strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
            || key.starts_with("irsa.dev/")
    };
    let annotations = meta
        .annotations
        .map(|a| {
            a.into_iter()
                .filter(|(k, _)| ours(k))
                .collect::<BTreeMap<_, _>>()
        })
        .filter(|a| !a.is_empty());
    *sa = ServiceAccount {
        metadata: ObjectMeta {
            name: meta.name,
            namespace: meta.namespace,
            resource_version: meta.resource_version,
            annotations,
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
}

/// Drops what no reader of a binding or association store needs before it is stored: the
/// field managers' records (several per object: its creator, the controller's finalizer and
/// status) are most of a stored object's memory.
pub fn strip_managed<K: kube::Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// Bindings to re-reconcile after `report`: those pointing at the role now or before.
pub fn bindings_of_role(
    by_role: &Index<IAMRoleBinding>,
    role: &str,
) -> Vec<ObjectRef<IAMRoleBinding>> {
    by_role.get(role).iter().map(binding_ref).collect()
}

/// Associations to re-reconcile after `report`: those naming the role.
pub fn associations_of_role(
    by_role: &Index<PodIdentityAssociation>,
    role: &str,
) -> Vec<ObjectRef<PodIdentityAssociation>> {
    by_role
        .get(role)
        .iter()
        .map(|key| ObjectRef::new(&key.name).within(&key.namespace))
        .collect()
}

/// Bindings affected by a change of `sa` (they list it, or they annotated it).
pub fn bindings_of_sa(
    by_service_account: &Index<IAMRoleBinding>,
    sa: &ServiceAccount,
) -> Vec<ObjectRef<IAMRoleBinding>> {
    let ns = sa.namespace().unwrap_or_default();
    let mut keys: BTreeSet<Key> = by_service_account
        .get(&index::namespaced(&ns, &sa.name_any()))
        .into_iter()
        .collect();
    if let Some(owner) = sa.annotations().get(annotate::OWNER) {
        keys.insert(Key::new(&ns, owner));
    }
    keys.iter().map(binding_ref).collect()
}

fn binding_ref(key: &Key) -> ObjectRef<IAMRoleBinding> {
    ObjectRef::new(&key.name).within(&key.namespace)
}

/// The snapshot the role worker computes from, read from the reflector stores.
pub fn snapshot(
    bindings: &Store<IAMRoleBinding>,
    service_accounts: &Store<ServiceAccount>,
    grants: &Store<IAMRoleGrant>,
    associations: &Store<PodIdentityAssociation>,
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
        associations: associations
            .state()
            .iter()
            .filter_map(|a| {
                Some(AssociationInfo {
                    namespace: a.namespace()?,
                    name: a.name_any(),
                    generation: a.metadata.generation.unwrap_or(0),
                    service_account: a.spec.service_account_name.clone(),
                    role_arn: a.spec.role_arn.clone(),
                    target_role_arn: a.spec.target_role_arn.clone(),
                    disable_session_tags: a.spec.disable_session_tags,
                })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    use super::*;

    fn annotation_keys(meta: &ObjectMeta) -> Option<Vec<&str>> {
        meta.annotations
            .as_ref()
            .map(|a| a.keys().map(String::as_str).collect())
    }

    #[test]
    fn stripping_keeps_what_the_readers_use() {
        let meta = ObjectMeta {
            name: Some("app".into()),
            namespace: Some("team-a".into()),
            resource_version: Some("42".into()),
            uid: Some("0b6c1f0e-5d8f-4a53-9a57-1a2b3c4d5e6f".into()),
            labels: Some(BTreeMap::from([("app".into(), "web".into())])),
            managed_fields: Some(vec![ManagedFieldsEntry::default()]),
            annotations: Some(BTreeMap::from([
                (LAST_APPLIED.to_string(), "{...}".to_string()),
                ("example.com/role-arn".to_string(), "x".to_string()),
                ("example.com.evil/x".to_string(), "x".to_string()),
                ("meta.helm.sh/release-name".to_string(), "x".to_string()),
                (annotate::OWNER.to_string(), "b".to_string()),
            ])),
            ..ObjectMeta::default()
        };
        let mut sa = ServiceAccount {
            metadata: meta,
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        };
        let mut binding = IAMRoleBinding::new(
            "b",
            serde_json::from_value(serde_json::json!({
                "roleArn": "arn:aws:iam::111122223333:role/app", "serviceAccounts": ["app"]
            }))
            .unwrap(),
        );
        binding.metadata = sa.metadata.clone();

        strip_sa(&mut sa, "example.com");
        strip_managed(&mut binding);
        assert_eq!(
            sa,
            ServiceAccount {
                metadata: ObjectMeta {
                    name: Some("app".into()),
                    namespace: Some("team-a".into()),
                    resource_version: Some("42".into()),
                    annotations: Some(BTreeMap::from([
                        ("example.com/role-arn".to_string(), "x".to_string()),
                        (annotate::OWNER.to_string(), "b".to_string()),
                    ])),
                    ..ObjectMeta::default()
                },
                ..ServiceAccount::default()
            }
        );
        assert_eq!(binding.metadata.managed_fields, None);
        assert_eq!(
            annotation_keys(&binding.metadata),
            Some(vec![
                "example.com.evil/x",
                "example.com/role-arn",
                "irsa.dev/role-binding",
                "meta.helm.sh/release-name",
            ])
        );
        assert_eq!(
            binding.metadata.uid.as_deref(),
            Some("0b6c1f0e-5d8f-4a53-9a57-1a2b3c4d5e6f")
        );
        assert_eq!(binding.spec.service_accounts, ["app"]);
    }
}
