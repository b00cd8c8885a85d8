//! Least privilege, as the API server enforces it: the chart's webhook and controller
//! identities (TokenRequest tokens of their ServiceAccounts, with the chart's RBAC applied)
//! can write exactly what the chart grants them and nothing else, and can never read Secrets
//! or mint tokens. The other e2e tests run the processes under these identities, so a verb
//! the chart forgot fails those tests; this one fails on a verb too many.

use std::collections::BTreeSet;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    SelfSubjectRulesReview, SelfSubjectRulesReviewSpec,
};
use kube::Api;
use kube::api::PostParams;
use serde_json::Value;

use irsa_e2e::identity::{self, Component, RELEASE_NAMESPACE};
use irsa_e2e::support;

const WRITE_VERBS: [&str; 6] = [
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "*",
];

/// What every authenticated identity may create (the API server's default
/// `system:basic-user` role): reviews of its own permissions and identity.
const BASELINE_WRITES: [(&str, &str); 3] = [
    ("authorization.k8s.io", "selfsubjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectrulesreviews"),
    ("authentication.k8s.io", "selfsubjectreviews"),
];

type Grant = (String, String, String);

/// (apiGroup, resource, verb) triples a list of RBAC rules grants, write verbs only.
fn writes_of(rules: &[Value]) -> BTreeSet<Grant> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = BTreeSet::new();
    for rule in rules {
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                for v in strings(&rule["verbs"]) {
                    if WRITE_VERBS.contains(&v.as_str()) {
                        out.insert((g.clone(), r.clone(), v));
                    }
                }
            }
        }
    }
    out
}

/// The write grants the chart gives `component` in `namespace`: its ClusterRole everywhere,
/// its Roles in the release namespace.
fn chart_writes(component: Component, namespace: &str) -> BTreeSet<Grant> {
    let sa = component.service_account();
    let docs = identity::chart_rbac();
    let bound_to_sa = |binding: &Value| {
        binding["subjects"].as_array().is_some_and(|s| {
            s.iter()
                .any(|s| s["kind"] == "ServiceAccount" && s["name"] == sa)
        })
    };
    let mut rules = Vec::new();
    for binding in docs.iter().filter(|d| {
        (d["kind"] == "ClusterRoleBinding"
            || (d["kind"] == "RoleBinding" && d["metadata"]["namespace"] == namespace))
            && bound_to_sa(d)
    }) {
        let role_kind = binding["roleRef"]["kind"].as_str().unwrap();
        let role_name = &binding["roleRef"]["name"];
        let role = docs
            .iter()
            .find(|d| d["kind"] == role_kind && d["metadata"]["name"] == *role_name)
            .unwrap_or_else(|| panic!("the chart binds {role_kind} {role_name} it does not ship"));
        rules.extend(role["rules"].as_array().cloned().unwrap_or_default());
    }
    writes_of(&rules)
}

/// What the API server says `client` may write in `namespace` (cluster-wide grants included),
/// minus the baseline every identity has; panics if any rule reads Secrets.
async fn live_writes(client: &kube::Client, namespace: &str) -> BTreeSet<Grant> {
    let review = SelfSubjectRulesReview {
        spec: SelfSubjectRulesReviewSpec {
            namespace: Some(namespace.to_string()),
        },
        ..SelfSubjectRulesReview::default()
    };
    let out = Api::<SelfSubjectRulesReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap();
    let status = out.status.unwrap();
    assert!(
        !status.incomplete,
        "the rules review is complete: {status:?}"
    );
    let rules: Vec<Value> = status
        .resource_rules
        .iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .collect();
    for rule in &rules {
        let has = |k: &str, want: &[&str]| {
            rule[k]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| want.iter().any(|w| x == *w)))
        };
        assert!(
            !(has("apiGroups", &["", "*"]) && has("resources", &["secrets", "*"])),
            "an irsa identity can touch Secrets in {namespace}: {rule}"
        );
    }
    writes_of(&rules)
        .into_iter()
        .filter(|(g, r, _)| !BASELINE_WRITES.contains(&(g.as_str(), r.as_str())))
        .collect()
}

/// One SelfSubjectAccessReview: may `client` do `verb` on `resource` (`group`) in `namespace`?
async fn can(
    client: &kube::Client,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
) -> bool {
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_string())),
        None => (resource, None),
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource,
                namespace: namespace.map(String::from),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap()
        .status
        .unwrap()
        .allowed
}

async fn check_identity(component: Component) {
    support::settings();
    let admin = support::client().await;
    let client = identity::client_as(&admin, component).await;
    let other = support::create_namespace(&admin, "irsa-e2e-rbac").await;

    for ns in [RELEASE_NAMESPACE, other.as_str()] {
        let live = live_writes(&client, ns).await;
        let chart = chart_writes(component, ns);
        assert_eq!(
            live, chart,
            "{component:?} may write exactly what the chart grants in {ns}"
        );
    }

    let denied: [(&str, &str, &str, Option<&str>); 7] = [
        ("get", "", "secrets", Some(RELEASE_NAMESPACE)),
        ("list", "", "secrets", None),
        (
            "create",
            "",
            "serviceaccounts/token",
            Some(RELEASE_NAMESPACE),
        ),
        ("create", "", "serviceaccounts/token", Some(other.as_str())),
        ("create", "", "pods", Some(other.as_str())),
        (
            "update",
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            None,
        ),
        ("update", "irsa.dev", "iamrolegrants", None),
    ];
    for (verb, group, resource, ns) in denied {
        assert!(
            !can(&client, verb, group, resource, ns).await,
            "{component:?} must not {verb} {group}/{resource} in {ns:?}"
        );
    }
    let (allowed, refused): (&[_], &[_]) = match component {
        Component::Webhook => (
            &[("watch", "", "serviceaccounts", None)],
            &[("patch", "", "serviceaccounts", Some(other.as_str()))],
        ),
        Component::Controller => (
            &[
                ("patch", "", "serviceaccounts", Some(other.as_str())),
                (
                    "create",
                    "coordination.k8s.io",
                    "leases",
                    Some(RELEASE_NAMESPACE),
                ),
            ],
            &[(
                "create",
                "coordination.k8s.io",
                "leases",
                Some(other.as_str()),
            )],
        ),
    };
    for &(verb, group, resource, ns) in allowed {
        assert!(
            can(&client, verb, group, resource, ns).await,
            "{component:?} may {verb} {group}/{resource} in {ns:?}"
        );
    }
    for &(verb, group, resource, ns) in refused {
        assert!(
            !can(&client, verb, group, resource, ns).await,
            "{component:?} must not {verb} {group}/{resource} in {ns:?}"
        );
    }
    support::delete_namespace(&admin, &other).await;
}

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn the_webhook_identity_can_do_exactly_what_the_chart_grants() {
    check_identity(Component::Webhook).await;
}

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn the_controller_identity_can_do_exactly_what_the_chart_grants() {
    check_identity(Component::Controller).await;
}
