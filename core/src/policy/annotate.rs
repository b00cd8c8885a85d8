//! PURE: which annotations a binding with `annotateServiceAccounts` writes on a
//! ServiceAccount, and how ownership is recorded so it only ever removes what it set.
//!
//! Ownership: the binding records itself in [`OWNER`] (`irsa.dev/role-binding: <binding>`)
//! and the keys it wrote in [`MANAGED`] (`irsa.dev/managed-annotations: k1,k2`). A key that
//! exists with a different value and is not in that list belongs to someone else: the
//! result is a [`Plan::Conflict`] and nothing is written. A key that already has the wanted
//! value but was set by someone else is left theirs (not claimed, never removed by us).

use std::collections::BTreeMap;

/// The binding (same namespace) that wrote annotations on this ServiceAccount.
pub const OWNER: &str = "irsa.dev/role-binding";
/// Comma-separated annotation keys that binding wrote.
pub const MANAGED: &str = "irsa.dev/managed-annotations";

/// What a binding wants on its ServiceAccounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub binding: String,
    /// key → value, e.g. `eks.amazonaws.com/role-arn` → the ARN.
    pub annotations: BTreeMap<String, String>,
}

impl Wanted {
    /// The annotations of docs/design.md §3.1 under `prefix`.
    pub fn for_binding(
        binding: &str,
        prefix: &str,
        role_arn: &str,
        audience: Option<&str>,
        sts_regional_endpoints: Option<bool>,
        token_expiration: Option<i64>,
    ) -> Self {
        let mut annotations = BTreeMap::new();
        annotations.insert(format!("{prefix}/role-arn"), role_arn.to_string());
        if let Some(a) = audience {
            annotations.insert(format!("{prefix}/audience"), a.to_string());
        }
        if let Some(r) = sts_regional_endpoints {
            annotations.insert(format!("{prefix}/sts-regional-endpoints"), r.to_string());
        }
        if let Some(t) = token_expiration {
            annotations.insert(format!("{prefix}/token-expiration"), t.to_string());
        }
        Self {
            binding: binding.to_string(),
            annotations,
        }
    }
}

/// The merge patch to apply to `metadata.annotations` (`None` removes the key).
pub type Patch = BTreeMap<String, Option<String>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Already as wanted.
    UpToDate,
    Patch(Patch),
    /// `key` holds `theirs`, set by someone else; we wanted `ours`.
    Conflict {
        key: String,
        theirs: String,
        ours: String,
    },
}

fn managed_keys(current: &BTreeMap<String, String>, binding: &str) -> Vec<String> {
    if current.get(OWNER).map(String::as_str) != Some(binding) {
        return Vec::new();
    }
    current
        .get(MANAGED)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// What to change on a ServiceAccount whose annotations are `current`.
pub fn plan(current: &BTreeMap<String, String>, wanted: &Wanted) -> Plan {
    let owner = current.get(OWNER);
    let ours = managed_keys(current, &wanted.binding);
    // Another binding manages this SA: only agreeing values are fine.
    let foreign_owner = owner.is_some_and(|o| *o != wanted.binding);
    for (key, value) in &wanted.annotations {
        match current.get(key) {
            Some(v) if v != value && (foreign_owner || !ours.contains(key)) => {
                return Plan::Conflict {
                    key: key.clone(),
                    theirs: v.clone(),
                    ours: value.clone(),
                };
            }
            _ => {}
        }
    }
    if foreign_owner {
        return Plan::UpToDate;
    }
    let mut patch = Patch::new();
    let mut managed: Vec<String> = Vec::new();
    for (key, value) in &wanted.annotations {
        match current.get(key) {
            None => {
                patch.insert(key.clone(), Some(value.clone()));
                managed.push(key.clone());
            }
            Some(v) if v != value => {
                // Ours (checked above): update.
                patch.insert(key.clone(), Some(value.clone()));
                managed.push(key.clone());
            }
            Some(_) if ours.contains(key) => managed.push(key.clone()),
            Some(_) => {} // someone else's, same value: leave it theirs
        }
    }
    for key in &ours {
        if !wanted.annotations.contains_key(key) {
            patch.insert(key.clone(), None);
        }
    }
    managed.sort();
    let list = managed.join(",");
    if managed.is_empty() {
        if owner.is_some() {
            patch.insert(OWNER.into(), None);
        }
        if current.contains_key(MANAGED) {
            patch.insert(MANAGED.into(), None);
        }
    } else {
        if owner.map(String::as_str) != Some(wanted.binding.as_str()) {
            patch.insert(OWNER.into(), Some(wanted.binding.clone()));
        }
        if current.get(MANAGED) != Some(&list) {
            patch.insert(MANAGED.into(), Some(list));
        }
    }
    if patch.is_empty() {
        Plan::UpToDate
    } else {
        Plan::Patch(patch)
    }
}

/// What to remove when `binding` lets go of the SA (binding deleted, SA dropped from its
/// list, annotation switched off): exactly the keys it recorded, and the markers.
pub fn release(current: &BTreeMap<String, String>, binding: &str) -> Option<Patch> {
    if current.get(OWNER).map(String::as_str) != Some(binding) {
        return None;
    }
    let mut patch: Patch = managed_keys(current, binding)
        .into_iter()
        .map(|k| (k, None))
        .collect();
    patch.insert(OWNER.into(), None);
    patch.insert(MANAGED.into(), None);
    Some(patch)
}

/// The JSON merge patch body for `patch`.
pub fn merge_patch(patch: &Patch) -> serde_json::Value {
    serde_json::json!({"metadata": {"annotations": patch}})
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "arn:aws:iam::111122223333:role/r";
    const P: &str = "eks.amazonaws.com";

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn wanted(role: &str, sts: Option<bool>) -> Wanted {
        Wanted::for_binding("b", P, role, None, sts, None)
    }

    fn apply(current: &BTreeMap<String, String>, patch: &Patch) -> BTreeMap<String, String> {
        let mut out = current.clone();
        for (k, v) in patch {
            match v {
                Some(v) => out.insert(k.clone(), v.clone()),
                None => out.remove(k),
            };
        }
        out
    }

    #[test]
    fn sets_records_updates_and_releases_only_its_own() {
        let mut sa = ann(&[("team", "x")]);
        let Plan::Patch(p) = plan(&sa, &wanted(ROLE, Some(true))) else {
            panic!()
        };
        sa = apply(&sa, &p);
        assert_eq!(sa[&format!("{P}/role-arn")], ROLE);
        assert_eq!(sa[OWNER], "b");
        assert_eq!(
            sa[MANAGED],
            format!("{P}/role-arn,{P}/sts-regional-endpoints")
        );
        assert_eq!(plan(&sa, &wanted(ROLE, Some(true))), Plan::UpToDate);
        // Spec drops stsRegionalEndpoints and moves the role: our keys follow.
        let Plan::Patch(p) = plan(&sa, &wanted("arn:aws:iam::111122223333:role/new", None)) else {
            panic!()
        };
        sa = apply(&sa, &p);
        assert!(!sa.contains_key(&format!("{P}/sts-regional-endpoints")));
        assert_eq!(sa[MANAGED], format!("{P}/role-arn"));
        // Release removes exactly ours; the unrelated annotation stays.
        sa = apply(&sa, &release(&sa, "b").unwrap());
        assert_eq!(sa, ann(&[("team", "x")]));
        assert_eq!(release(&sa, "b"), None);
    }

    #[test]
    fn a_different_value_set_by_someone_else_is_a_conflict() {
        let sa = ann(&[(
            &format!("{P}/role-arn"),
            "arn:aws:iam::111122223333:role/human",
        )]);
        assert!(matches!(
            plan(&sa, &wanted(ROLE, None)),
            Plan::Conflict { ref theirs, .. } if theirs.ends_with("role/human")
        ));
        // Another binding owns it with another role: conflict too.
        let other = ann(&[
            (&format!("{P}/role-arn"), "arn:aws:iam::111122223333:role/o"),
            (OWNER, "other"),
            (MANAGED, &format!("{P}/role-arn")),
        ]);
        assert!(matches!(
            plan(&other, &wanted(ROLE, None)),
            Plan::Conflict { .. }
        ));
        assert_eq!(release(&other, "b"), None);
    }

    #[test]
    fn an_agreeing_value_set_by_someone_else_is_left_theirs() {
        let sa = ann(&[(&format!("{P}/role-arn"), ROLE)]);
        assert_eq!(plan(&sa, &wanted(ROLE, None)), Plan::UpToDate);
        assert_eq!(release(&sa, "b"), None);
        let body = merge_patch(&[("k".to_string(), None)].into());
        assert_eq!(
            body,
            serde_json::json!({"metadata":{"annotations":{"k":null}}})
        );
    }
}
