//! PURE: the rules of Pod Identity (`irsa agent` and `PodIdentityAssociation`): the STS
//! session name a pod's credentials carry, the session tags they are assumed with, and
//! whether an association is allowed at all (the `IAMRoleGrant` rule of [`crate::policy::authz`],
//! the same one bindings pass).
//!
//! STS's limits are checked here, before any call, so that an association STS would refuse
//! is refused with a sentence naming the field rather than with STS's `ValidationError`.

use std::collections::BTreeMap;

use crate::policy::authz::{self, Decision, GrantSpec, Request};

/// The session name of an association that sets no `roleSessionName`.
pub const DEFAULT_SESSION_NAME: &str = "{namespace}-{podName}";
/// STS's bounds on `RoleSessionName` (characters `[\w+=,.@-]`).
pub const MIN_SESSION_NAME: usize = 2;
pub const MAX_SESSION_NAME: usize = 64;
/// The placeholders a `roleSessionName` template may use.
pub const PLACEHOLDERS: [&str; 4] = ["namespace", "serviceAccount", "podName", "podUid"];
/// A template as the CRD's schema accepts it (RE2, for a CEL `matches` rule): literal
/// session-name characters and known placeholders, nothing else.
pub const SESSION_NAME_TEMPLATE_PATTERN: &str =
    r"^([\w+=,.@-]|\{(namespace|serviceAccount|podName|podUid)\})+$";

/// Session tags the agent always sets (unless the association disables session tags).
pub mod tag {
    pub const NAMESPACE: &str = "kubernetes-namespace";
    pub const SERVICE_ACCOUNT: &str = "kubernetes-service-account";
    pub const POD_NAME: &str = "kubernetes-pod-name";
    pub const POD_UID: &str = "kubernetes-pod-uid";
    pub const CLUSTER: &str = "irsa-cluster-name";
    pub const ALL: [&str; 5] = [NAMESPACE, SERVICE_ACCOUNT, POD_NAME, POD_UID, CLUSTER];
}

/// STS's limits on session tags: at most 50 per session, keys up to 128 characters, values
/// up to 256; keys may not start with `aws:` (any case).
pub const MAX_SESSION_TAGS: usize = 50;
pub const MAX_TAG_KEY: usize = 128;
pub const MAX_TAG_VALUE: usize = 256;

/// The pod a request comes from, as the API server vouched for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodRef<'a> {
    pub namespace: &'a str,
    pub service_account: &'a str,
    pub pod_name: &'a str,
    pub pod_uid: &'a str,
}

/// The `RoleSessionName` for `pod`: `template` (default [`DEFAULT_SESSION_NAME`]) with its
/// placeholders filled, every character STS does not accept replaced by `-`, cut to 64
/// characters; a result shorter than 2 characters becomes the pod's uid. Unknown
/// placeholders stay literal (the schema refuses them; this never fails).
pub fn session_name(template: Option<&str>, pod: &PodRef<'_>) -> String {
    let mut name = template.unwrap_or(DEFAULT_SESSION_NAME).to_string();
    for (placeholder, value) in [
        ("{namespace}", pod.namespace),
        ("{serviceAccount}", pod.service_account),
        ("{podName}", pod.pod_name),
        ("{podUid}", pod.pod_uid),
    ] {
        name = name.replace(placeholder, value);
    }
    let cleaned = |s: &str| -> String {
        s.chars()
            .map(|c| if is_session_name_char(c) { c } else { '-' })
            .take(MAX_SESSION_NAME)
            .collect()
    };
    let name = cleaned(&name);
    if name.chars().count() < MIN_SESSION_NAME {
        return cleaned(pod.pod_uid);
    }
    name
}

fn is_session_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

/// The session tags for `pod` under `cluster`, the association's `extra` tags after the
/// agent's own (all of them transitive, so a chained role keeps them). Empty when the
/// association disables session tags. An extra tag may not replace one of the agent's own
/// (a pod could then claim another namespace in an ABAC condition), and the whole set must
/// fit STS's limits.
pub fn session_tags(
    pod: &PodRef<'_>,
    cluster: &str,
    extra: &BTreeMap<String, String>,
    disabled: bool,
) -> Result<Vec<(String, String)>, String> {
    if disabled {
        return Ok(Vec::new());
    }
    let mut tags: Vec<(String, String)> = [
        (tag::NAMESPACE, pod.namespace),
        (tag::SERVICE_ACCOUNT, pod.service_account),
        (tag::POD_NAME, pod.pod_name),
        (tag::POD_UID, pod.pod_uid),
        (tag::CLUSTER, cluster),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (key, value) in extra {
        // IAM compares tag keys case-insensitively.
        if tags.iter().any(|(k, _)| k.eq_ignore_ascii_case(key)) {
            return Err(format!(
                "sessionTags may not set {key:?}: the agent sets it from the pod"
            ));
        }
        if key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:")) {
            return Err(format!(
                "sessionTags key {key:?}: the aws: prefix is reserved"
            ));
        }
        tags.push((key.clone(), value.clone()));
    }
    if tags.len() > MAX_SESSION_TAGS {
        return Err(format!(
            "{} session tags, STS accepts at most {MAX_SESSION_TAGS} ({} are the agent's own)",
            tags.len(),
            tag::ALL.len()
        ));
    }
    for (key, value) in &tags {
        let key_len = key.chars().count();
        if key_len == 0 || key_len > MAX_TAG_KEY {
            return Err(format!(
                "session tag key {key:?} has {key_len} characters, STS accepts 1 to {MAX_TAG_KEY}"
            ));
        }
        if value.chars().count() > MAX_TAG_VALUE {
            return Err(format!(
                "session tag {key:?}: its value is longer than STS's {MAX_TAG_VALUE} characters"
            ));
        }
    }
    Ok(tags)
}

/// May ServiceAccount `pod` use `role_arn` (and `target_role_arn`, when chaining)? Each role
/// must be allowed by an `IAMRoleGrant`, exactly as for an `IAMRoleBinding`. Role tags are not
/// consulted: the agent does not read IAM, so only grants open Pod Identity. When every role
/// is allowed, the answer is the first role's decision: its grant says whether the
/// controller may drop the ServiceAccount condition of that role's trust statement.
pub fn authorize(
    namespace: &str,
    service_account: &str,
    role_arns: &[&str],
    cluster: &str,
    grants: &[(String, GrantSpec)],
) -> Decision {
    let no_tags = BTreeMap::new();
    let mut first = None;
    for role_arn in role_arns {
        let req = Request {
            namespace,
            service_account,
            role_arn,
            cluster,
        };
        let decision = authz::authorize(&req, grants, &no_tags);
        if !decision.is_authorized() {
            return decision;
        }
        first.get_or_insert(decision);
    }
    first.unwrap_or_else(|| Decision::Denied {
        reason: "no role to authorize".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: PodRef<'static> = PodRef {
        namespace: "team-a",
        service_account: "app",
        pod_name: "web-7d9f-x2",
        pod_uid: "0b6e2f51-7d0c-4c8e-9a57-0f3c4a1b2c3d",
    };

    #[test]
    fn default_session_name_is_namespace_and_pod() {
        assert_eq!(session_name(None, &POD), "team-a-web-7d9f-x2");
    }

    #[test]
    fn template_fills_every_placeholder() {
        assert_eq!(
            session_name(Some("{serviceAccount}@{namespace}.{podUid}"), &POD),
            "app@team-a.0b6e2f51-7d0c-4c8e-9a57-0f3c4a1b2c3d"
        );
    }

    #[test]
    fn session_name_fits_sts() {
        let long = "p".repeat(253);
        let pod = PodRef {
            pod_name: &long,
            ..POD
        };
        let name = session_name(None, &pod);
        assert_eq!(name.len(), MAX_SESSION_NAME);
        assert!(name.starts_with("team-a-ppp"));
        // A literal STS refuses becomes '-'; a too-short result falls back to the uid.
        assert_eq!(session_name(Some("a b/c"), &POD), "a-b-c");
        assert_eq!(session_name(Some("x"), &POD), POD.pod_uid);
    }

    #[test]
    fn session_name_characters_are_always_valid() {
        for template in ["{podName}", "é{namespace}ü", "{unknown}", ""] {
            let name = session_name(Some(template), &POD);
            assert!((MIN_SESSION_NAME..=MAX_SESSION_NAME).contains(&name.chars().count()));
            assert!(name.chars().all(is_session_name_char), "{name}");
        }
    }

    #[test]
    fn tags_are_the_pods_then_extra() {
        let extra = BTreeMap::from([("team".to_string(), "payments".to_string())]);
        let tags = session_tags(&POD, "prod-1", &extra, false).unwrap();
        let keys: Vec<_> = tags.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "kubernetes-namespace",
                "kubernetes-service-account",
                "kubernetes-pod-name",
                "kubernetes-pod-uid",
                "irsa-cluster-name",
                "team"
            ]
        );
        assert_eq!(tags[4].1, "prod-1");
        assert!(
            session_tags(&POD, "prod-1", &extra, true)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn extra_tags_cannot_impersonate() {
        for key in ["kubernetes-namespace", "Kubernetes-Namespace", "AWS:foo"] {
            let extra = BTreeMap::from([(key.to_string(), "other".to_string())]);
            let err = session_tags(&POD, "c", &extra, false).unwrap_err();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn tag_limits() {
        let many: BTreeMap<_, _> = (0..46).map(|i| (format!("k{i}"), "v".into())).collect();
        assert!(
            session_tags(&POD, "c", &many, false)
                .unwrap_err()
                .contains("at most 50")
        );
        let long_key = BTreeMap::from([("k".repeat(129), "v".to_string())]);
        assert!(session_tags(&POD, "c", &long_key, false).is_err());
        let long_value = BTreeMap::from([("k".to_string(), "v".repeat(257))]);
        assert!(session_tags(&POD, "c", &long_value, false).is_err());
        let max: BTreeMap<_, _> = (0..45).map(|i| (format!("k{i}"), "v".into())).collect();
        assert_eq!(session_tags(&POD, "c", &max, false).unwrap().len(), 50);
    }

    #[test]
    fn every_role_needs_a_grant() {
        let grant = GrantSpec {
            namespaces: vec!["team-a".into()],
            role_arns: vec!["arn:aws:iam::111122223333:role/team-a-*".into()],
            service_accounts: None,
            allow_namespace_wildcard_trust: false,
        };
        let grants = [("team-a".to_string(), grant)];
        let ok = "arn:aws:iam::111122223333:role/team-a-s3";
        let other = "arn:aws:iam::111122223333:role/team-b-s3";
        assert!(authorize("team-a", "app", &[ok], "c", &grants).is_authorized());
        let Decision::Denied { reason } = authorize("team-a", "app", &[ok, other], "c", &grants)
        else {
            panic!("a target role without grant must be refused");
        };
        assert!(reason.contains("team-b-s3"), "{reason}");
        assert!(!authorize("team-b", "app", &[ok], "c", &grants).is_authorized());
        assert!(!authorize("team-a", "app", &[], "c", &grants).is_authorized());
    }
}
