//! Small values many tests build the same way.

use crate::mutate::ServiceAccountInfo;
use crate::policy::desired::BindingInfo;

/// The ServiceAccount `team-a/app` with these annotations.
pub fn service_account(annotations: &[(&str, &str)]) -> ServiceAccountInfo {
    ServiceAccountInfo {
        namespace: "team-a".into(),
        name: "app".into(),
        annotations: annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// A live, first-generation binding of `role` to `sas` in `ns`, with the default audience.
pub fn binding(ns: &str, name: &str, role: &str, sas: &[&str]) -> BindingInfo {
    BindingInfo {
        namespace: ns.into(),
        name: name.into(),
        generation: 1,
        role_arn: role.into(),
        service_accounts: sas.iter().map(|s| s.to_string()).collect(),
        audience: None,
        deleting: false,
        previous_role_arn: None,
    }
}
