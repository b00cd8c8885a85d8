//! Packaging: the Helm chart, `config/` (kustomize), the CRDs and the IAM policy.
//!
//! The chart is rendered and linted offline by Helm's own Go SDK (PyPI `helm-python-sdk`,
//! driven by `scripts/helm-chart.py`), `config/default` by `kubectl kustomize`. Every rendered
//! manifest must deserialize into its k8s-openapi type (or the CRD's type) and serialize back
//! without losing a field: a misspelled or misplaced field is silently dropped by the API
//! server, so it is caught here instead. On top, the invariants a platform team relies on:
//! the webhook can never block its own pods, every pod is hardened, no RBAC reaches Secrets,
//! the image tag follows the chart, and the CLI accepts every flag the manifests pass.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
};

use clap::Parser;
use irsa::{
    cli::{Cli, Command as Sub},
    crd::{IAMRoleBinding, IAMRoleGrant},
    mutate::{EKS_SKIP_LABEL, SKIP_LABEL},
};
use k8s_openapi::{
    api::{
        admissionregistration::v1::MutatingWebhookConfiguration,
        apps::v1::{DaemonSet, Deployment},
        core::v1::{ConfigMap, Namespace, Pod, PodSpec, Secret, Service, ServiceAccount},
        networking::v1::NetworkPolicy,
        policy::v1::PodDisruptionBudget,
        rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

use irsa_e2e::merge;

const NS: &str = "irsa-system";
const RELEASE: &str = "irsa";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// Runs a command from the repository root: Ok(stdout) on success, Err(stderr) otherwise.
fn run(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd.current_dir(repo()).output().unwrap_or_else(|e| {
        panic!("cannot run {what}: {e} (`make deps` installs or checks the test tools)")
    });
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

pub(crate) fn helm(action: &str, values: &Value) -> Result<String, String> {
    helm_in(action, values, NS)
}

fn helm_in(action: &str, values: &Value, namespace: &str) -> Result<String, String> {
    run(
        Command::new("python3").args([
            "scripts/helm-chart.py",
            action,
            "charts/irsa",
            "--name",
            RELEASE,
            "--namespace",
            namespace,
            "--values",
            &values.to_string(),
        ]),
        "python3 scripts/helm-chart.py (needs PyPI helm-python-sdk)",
    )
}

/// Chart values with the one value every install must give.
pub(crate) fn values(extra: Value) -> Value {
    let mut v = json!({"controller": {"clusterName": "demo"}});
    merge(&mut v, extra);
    v
}

fn parse_docs(yaml: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml)
        .unwrap_or_else(|e| panic!("rendered output is not YAML: {e}\n{yaml}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// Renders, lints, and checks every manifest's round trip; panics with all problems.
pub(crate) fn render_checked(vals: &Value) -> Vec<Value> {
    let out = helm("render", vals).unwrap_or_else(|e| panic!("render with {vals} failed:\n{e}"));
    if let Err(e) = helm("lint", vals) {
        panic!("helm lint --strict with {vals} failed:\n{e}");
    }
    let docs = parse_docs(&out);
    assert_round_trips(&docs);
    docs
}

fn kustomize(dir: &str) -> Vec<Value> {
    let out = run(
        Command::new("kubectl").args(["kustomize", dir]),
        "kubectl kustomize",
    )
    .unwrap_or_else(|e| panic!("kubectl kustomize {dir} failed:\n{e}"));
    let docs = parse_docs(&out);
    assert_round_trips(&docs);
    docs
}

// ---------------------------------------------------------------------------------------
// Round trip: typed deserialization must keep every field.

/// Types for the third-party kinds the chart renders. Only the fields the chart uses, with
/// `deny_unknown_fields`, named as in the upstream CRDs: a typo fails deserialization.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Foreign<S> {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: S,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CertificateSpec {
    secret_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    common_name: Option<String>,
    #[serde(rename = "isCA", skip_serializing_if = "Option::is_none")]
    is_ca: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    renew_before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dns_names: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usages: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    private_key: Option<PrivateKey>,
    issuer_ref: IssuerRef,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PrivateKey {
    algorithm: String,
    size: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotation_policy: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct IssuerRef {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct IssuerSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    self_signed: Option<Empty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca: Option<CaIssuer>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CaIssuer {
    secret_name: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ServiceMonitorSpec {
    namespace_selector: NamespaceSelector,
    selector: LabelSelector,
    endpoints: Vec<Endpoint>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NamespaceSelector {
    match_names: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Endpoint {
    port: String,
    path: String,
    scheme: String,
    interval: String,
    scrape_timeout: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PodMonitorSpec {
    namespace_selector: NamespaceSelector,
    selector: LabelSelector,
    pod_metrics_endpoints: Vec<Endpoint>,
}

/// The Prometheus Operator's PrometheusRule, as far as the chart uses it.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PrometheusRuleSpec {
    groups: Vec<RuleGroup>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RuleGroup {
    name: String,
    rules: Vec<AlertRule>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AlertRule {
    alert: String,
    expr: String,
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    for_: Option<String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

/// Where `want` has something `got` lost or changed (fields only `got` has are defaults).
fn lost(want: &Value, got: &Value, path: &str, out: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                match g.get(k) {
                    Some(gv) => lost(wv, gv, &format!("{path}.{k}"), out),
                    None if wv.is_null() => {}
                    None => out.push(format!(
                        "{path}.{k}: dropped (misspelled or misplaced field?)"
                    )),
                }
            }
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => {
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                lost(wv, gv, &format!("{path}[{i}]"), out);
            }
        }
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
        _ if want == got => {}
        _ => out.push(format!("{path}: {want} came back as {got}")),
    }
}

fn round_trip<T: DeserializeOwned + Serialize>(doc: &Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
    lost(doc, &back, "", &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn api_kind(doc: &Value) -> (&str, &str) {
    (
        doc["apiVersion"].as_str().unwrap_or(""),
        doc["kind"].as_str().unwrap_or(""),
    )
}

fn check_typed(doc: &Value) -> Result<(), String> {
    let (api, kind) = api_kind(doc);
    macro_rules! k8s {
        ($($t:ty),* $(,)?) => {$(
            if api == <$t as k8s_openapi::Resource>::API_VERSION
                && kind == <$t as k8s_openapi::Resource>::KIND
            {
                return round_trip::<$t>(doc);
            }
        )*};
    }
    k8s!(
        ServiceAccount,
        Service,
        ConfigMap,
        Secret,
        Namespace,
        Pod,
        Deployment,
        DaemonSet,
        PodDisruptionBudget,
        ClusterRole,
        ClusterRoleBinding,
        Role,
        RoleBinding,
        MutatingWebhookConfiguration,
        NetworkPolicy,
        CustomResourceDefinition,
    );
    match (api, kind) {
        ("irsa.dev/v1alpha1", "IAMRoleBinding") => round_trip::<IAMRoleBinding>(doc),
        ("irsa.dev/v1alpha1", "IAMRoleGrant") => round_trip::<IAMRoleGrant>(doc),
        ("cert-manager.io/v1", "Certificate") => round_trip::<Foreign<CertificateSpec>>(doc),
        ("cert-manager.io/v1", "Issuer") => round_trip::<Foreign<IssuerSpec>>(doc),
        ("monitoring.coreos.com/v1", "ServiceMonitor") => {
            round_trip::<Foreign<ServiceMonitorSpec>>(doc)
        }
        ("monitoring.coreos.com/v1", "PrometheusRule") => {
            round_trip::<Foreign<PrometheusRuleSpec>>(doc)
        }
        ("monitoring.coreos.com/v1", "PodMonitor") => round_trip::<Foreign<PodMonitorSpec>>(doc),
        _ => Err(format!(
            "no type known for {api} {kind}: add it to check_typed"
        )),
    }
}

fn assert_round_trips(docs: &[Value]) {
    let problems: Vec<String> = docs
        .iter()
        .filter_map(|d| {
            check_typed(d).err().map(|e| {
                let (api, kind) = api_kind(d);
                format!("{api} {kind} {}: {e}", d["metadata"]["name"])
            })
        })
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Lookups and invariants.

fn find<T: DeserializeOwned>(docs: &[Value], kind: &str, name: &str) -> T {
    let doc = docs
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"));
    serde_json::from_value(doc.clone()).unwrap()
}

fn all<T: DeserializeOwned>(docs: &[Value], kind: &str) -> Vec<T> {
    docs.iter()
        .filter(|d| d["kind"] == kind)
        .map(|d| serde_json::from_value(d.clone()).unwrap())
        .collect()
}

fn kinds_and_names(docs: &[Value]) -> BTreeSet<(String, String)> {
    docs.iter()
        .map(|d| {
            let (_, kind) = api_kind(d);
            (
                kind.to_string(),
                d["metadata"]["name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The webhook configuration can never block its own pods or kube-system, and its selectors
/// never leave out a pod the webhook's opt-out rule would inject.
fn assert_webhook_selectors(mwc: &MutatingWebhookConfiguration, namespace: &str) {
    let hooks = mwc.webhooks.as_ref().unwrap();
    assert_eq!(hooks.len(), 1);
    let h = &hooks[0];
    assert_eq!(h.admission_review_versions, ["v1", "v1beta1"]);
    assert_eq!(h.side_effects, "None");
    assert_eq!(h.match_policy.as_deref(), Some("Equivalent"));
    assert_eq!(h.reinvocation_policy.as_deref(), Some("IfNeeded"));
    let rule = &h.rules.as_ref().unwrap()[0];
    assert_eq!(
        rule.operations.as_deref(),
        Some(&["CREATE".to_string()][..])
    );
    assert_eq!(rule.resources.as_deref(), Some(&["pods".to_string()][..]));
    assert_eq!(
        h.client_config.service.as_ref().unwrap().path.as_deref(),
        Some("/mutate")
    );

    let ns_exprs = h
        .namespace_selector
        .as_ref()
        .and_then(|s| s.match_expressions.clone())
        .unwrap_or_default();
    let excluded = ns_exprs
        .iter()
        .find(|e| e.key == "kubernetes.io/metadata.name" && e.operator == "NotIn")
        .and_then(|e| e.values.clone())
        .expect("namespaceSelector must exclude namespaces by name");
    for ns in ["kube-system", namespace] {
        assert!(
            excluded.iter().any(|v| v == ns),
            "namespace {ns} is not excluded: {excluded:?}"
        );
    }
    let obj_exprs = h
        .object_selector
        .as_ref()
        .and_then(|s| s.match_expressions.clone())
        .unwrap_or_default();
    for exprs in [&ns_exprs, &obj_exprs] {
        assert!(exprs.iter().any(|e| e.key == SKIP_LABEL
            && e.operator == "NotIn"
            && e.values.as_deref() == Some(&["true".to_string()][..])));
    }
    // Namespaces: the selector alone decides (the webhook never sees namespace labels).
    assert!(
        ns_exprs
            .iter()
            .any(|e| e.key == EKS_SKIP_LABEL && e.operator == "DoesNotExist")
    );
    // Pods: the EKS label's expression only pre-filters values the webhook's rule opts out
    // (the cluster journey opt_out checks the whole table through an API server).
    let eks: Vec<_> = obj_exprs
        .iter()
        .filter(|e| e.key == EKS_SKIP_LABEL)
        .collect();
    assert_eq!(eks.len(), 1, "{obj_exprs:?}");
    assert_eq!(eks[0].operator, "NotIn", "{eks:?}");
    let values = eks[0].values.clone().unwrap_or_default();
    assert!(!values.is_empty(), "{eks:?}");
    for value in values {
        let labels = BTreeMap::from([(EKS_SKIP_LABEL.to_string(), value)]);
        assert!(
            irsa::mutate::opted_out(&labels).is_some(),
            "the objectSelector leaves out {labels:?}, which the webhook injects"
        );
    }
}

/// Every pod: non-root, read-only root FS, no privilege escalation, no capabilities,
/// RuntimeDefault seccomp, requests and limits, both probes.
fn assert_hardened(name: &str, spec: &PodSpec) {
    let pod_sc = spec.security_context.clone().unwrap_or_default();
    for c in &spec.containers {
        let sc = c.security_context.clone().unwrap_or_default();
        let who = format!("{name}/{}", c.name);
        assert!(
            sc.run_as_non_root.or(pod_sc.run_as_non_root) == Some(true),
            "{who}: runAsNonRoot"
        );
        assert!(
            sc.run_as_user.or(pod_sc.run_as_user).unwrap_or(0) != 0,
            "{who}: runs as uid 0"
        );
        assert_eq!(
            sc.read_only_root_filesystem,
            Some(true),
            "{who}: readOnlyRootFilesystem"
        );
        assert_eq!(
            sc.allow_privilege_escalation,
            Some(false),
            "{who}: allowPrivilegeEscalation"
        );
        assert_eq!(
            sc.capabilities.and_then(|c| c.drop),
            Some(vec!["ALL".to_string()]),
            "{who}: capabilities.drop"
        );
        let seccomp = sc.seccomp_profile.or(pod_sc.seccomp_profile.clone());
        assert_eq!(
            seccomp.map(|s| s.type_).as_deref(),
            Some("RuntimeDefault"),
            "{who}: seccomp"
        );
        let res = c.resources.clone().unwrap_or_default();
        for (what, list) in [("requests", res.requests), ("limits", res.limits)] {
            let list = list.unwrap_or_default();
            assert!(
                list.contains_key("cpu") && list.contains_key("memory"),
                "{who}: resources.{what} needs cpu and memory"
            );
        }
        for (probe, path) in [
            (&c.liveness_probe, "/healthz"),
            (&c.readiness_probe, "/readyz"),
        ] {
            let http = probe.as_ref().and_then(|p| p.http_get.clone());
            assert_eq!(
                http.and_then(|h| h.path).as_deref(),
                Some(path),
                "{who}: probe"
            );
        }
    }
}

fn assert_no_secrets_in_rbac(docs: &[Value]) {
    let mut rules: Vec<(String, PolicyRule)> = Vec::new();
    for r in all::<ClusterRole>(docs, "ClusterRole") {
        let name = r.metadata.name.clone().unwrap_or_default();
        rules.extend(
            r.rules
                .unwrap_or_default()
                .into_iter()
                .map(|x| (name.clone(), x)),
        );
    }
    for r in all::<Role>(docs, "Role") {
        let name = r.metadata.name.clone().unwrap_or_default();
        rules.extend(
            r.rules
                .unwrap_or_default()
                .into_iter()
                .map(|x| (name.clone(), x)),
        );
    }
    assert!(!rules.is_empty());
    for (name, rule) in rules {
        let resources = rule.resources.unwrap_or_default();
        let groups = rule.api_groups.unwrap_or_default();
        assert!(
            !resources.iter().any(|r| r == "secrets" || r.contains('*')),
            "{name} grants {resources:?}"
        );
        assert!(!groups.iter().any(|g| g == "*"), "{name} grants group *");
        assert!(!rule.verbs.iter().any(|v| v == "*"), "{name} grants verb *");
    }
}

/// (apiGroup, resource) -> sorted verbs, merged over a role's rules.
fn rule_table(rules: &[PolicyRule]) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut table: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for rule in rules {
        for g in rule.api_groups.clone().unwrap_or_default() {
            for r in rule.resources.clone().unwrap_or_default() {
                table
                    .entry((g.clone(), r))
                    .or_default()
                    .extend(rule.verbs.iter().cloned());
            }
        }
    }
    table
}

fn table(entries: &[(&str, &str, &[&str])]) -> BTreeMap<(String, String), BTreeSet<String>> {
    entries
        .iter()
        .map(|(g, r, verbs)| {
            (
                (g.to_string(), r.to_string()),
                verbs.iter().map(|v| v.to_string()).collect(),
            )
        })
        .collect()
}

/// Every permission the chart and `config/rbac` grant, one row per (component, apiGroup,
/// resource), as README.md's "RBAC" table lists them: `role` is the ClusterRole, or the
/// namespaced Role (`-leader-election`) of the release namespace. The e2e suite proves the
/// API server enforces exactly these (e2e/tests/journeys/rbac.rs); this table ties chart, kustomize and
/// README together.
const RBAC: &[(&str, &str, &str, &[&str])] = &[
    ("webhook", "", "serviceaccounts", &["get", "list", "watch"]),
    (
        "webhook",
        "irsa.dev",
        "podidentityassociations",
        &["list", "watch"],
    ),
    (
        "controller",
        "",
        "serviceaccounts",
        &["get", "list", "watch", "patch"],
    ),
    (
        "controller",
        "irsa.dev",
        "iamrolebindings",
        &["get", "list", "watch", "patch", "update"],
    ),
    (
        "controller",
        "irsa.dev",
        "iamrolegrants",
        &["get", "list", "watch"],
    ),
    (
        "controller",
        "irsa.dev",
        "iamrolebindings/status",
        &["get", "patch", "update"],
    ),
    (
        "controller",
        "irsa.dev",
        "iamrolebindings/finalizers",
        &["get", "patch", "update"],
    ),
    (
        "controller",
        "irsa.dev",
        "podidentityassociations",
        &["list", "watch"],
    ),
    (
        "controller",
        "irsa.dev",
        "podidentityassociations/status",
        &["patch", "update"],
    ),
    (
        "controller",
        "events.k8s.io",
        "events",
        &["create", "patch"],
    ),
    ("controller", "", "events", &["create", "patch"]),
    ("controller", "", "pods", &["get", "list", "watch"]),
    (
        "controller-leader-election",
        "coordination.k8s.io",
        "leases",
        &["get", "create", "patch"],
    ),
    // tls.mode=self only, each restricted by resourceName to the release's own object.
    ("webhook-self-tls", "", "secrets", &["get", "update"]),
    (
        "webhook-self-tls",
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        &["get", "list", "watch", "update"],
    ),
    // agent.enabled only (the Pod Identity agent's DaemonSet).
    (
        "agent",
        "authentication.k8s.io",
        "tokenreviews",
        &["create"],
    ),
    ("agent", "", "pods", &["list", "watch"]),
    (
        "agent",
        "irsa.dev",
        "podidentityassociations",
        &["list", "watch"],
    ),
    ("agent", "irsa.dev", "iamrolegrants", &["list", "watch"]),
];

fn rbac_of(role: &str) -> BTreeMap<(String, String), BTreeSet<String>> {
    let rows: Vec<(&str, &str, &[&str])> = RBAC
        .iter()
        .filter(|(r, ..)| *r == role)
        .map(|(_, g, res, verbs)| (*g, *res, *verbs))
        .collect();
    table(&rows)
}

fn assert_least_privilege_rbac(docs: &[Value], prefix: &str) {
    let webhook: ClusterRole = find(docs, "ClusterRole", &format!("{prefix}-webhook"));
    assert_eq!(rule_table(&webhook.rules.unwrap()), rbac_of("webhook"));
    let controller: ClusterRole = find(docs, "ClusterRole", &format!("{prefix}-controller"));
    assert_eq!(
        rule_table(&controller.rules.unwrap()),
        rbac_of("controller")
    );
    // The one non-resource URL: issuer discovery, read-only.
    let non_resource: Vec<(Vec<String>, Vec<String>)> =
        find::<ClusterRole>(docs, "ClusterRole", &format!("{prefix}-controller"))
            .rules
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| r.non_resource_urls.map(|urls| (urls, r.verbs)))
            .collect();
    assert_eq!(
        non_resource,
        [(
            vec!["/.well-known/openid-configuration".to_string()],
            vec!["get".to_string()]
        )]
    );
    let lease: Role = find(
        docs,
        "Role",
        &format!("{prefix}-controller-leader-election"),
    );
    assert_eq!(lease.metadata.namespace.as_deref(), Some(NS));
    assert_eq!(
        rule_table(&lease.rules.unwrap()),
        rbac_of("controller-leader-election")
    );
}

/// docs/operations.md's RBAC table is exactly [`RBAC`]: the rows between its header and the
/// next blank line, in order.
#[test]
fn documented_rbac_table_is_what_the_chart_grants() {
    let doc = read("docs/operations.md");
    let header = "| role | apiGroup | resource | verbs |";
    let start = doc
        .find(header)
        .unwrap_or_else(|| panic!("docs/operations.md has no RBAC table starting with {header}"));
    let rows: Vec<&str> = doc[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    let want: Vec<String> = RBAC
        .iter()
        .map(|(role, group, resource, verbs)| {
            let role = format!("`irsa-{role}`");
            let group = if group.is_empty() { "core" } else { group };
            format!("| {role} | {group} | {resource} | {} |", verbs.join(", "))
        })
        .collect();
    assert_eq!(
        rows, want,
        "docs/operations.md's RBAC table matches the chart"
    );
}

/// The container's args (plus its `IRSA_*` env, the CLI's env spelling of a flag) parsed by
/// the real CLI: the manifests can only pass flags the binary accepts.
fn pod_spec(deploy: &Deployment) -> &PodSpec {
    deploy
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
}

fn parse_cli(deploy: &Deployment) -> Sub {
    parse_pod_cli(pod_spec(deploy))
}

fn parse_pod_cli(spec: &PodSpec) -> Sub {
    let c = &spec.containers[0];
    let mut argv = vec!["irsa".to_string()];
    argv.extend(c.args.clone().unwrap_or_default());
    for e in c.env.clone().unwrap_or_default() {
        if let (Some(flag), Some(value)) = (e.name.strip_prefix("IRSA_"), e.value) {
            argv.push(format!(
                "--{}={value}",
                flag.to_lowercase().replace('_', "-")
            ));
        }
    }
    Cli::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("the CLI rejects {argv:?}:\n{e}"))
        .command
}

fn container_port(deploy: &Deployment, name: &str) -> i32 {
    pod_container_port(pod_spec(deploy), name)
}

fn pod_container_port(spec: &PodSpec, name: &str) -> i32 {
    spec.containers[0]
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .find(|p| p.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no container port named {name}"))
        .container_port
}

fn tls_secret_name(deploy: &Deployment) -> String {
    let spec = pod_spec(deploy);
    spec.volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "tls")
        .and_then(|v| v.secret.as_ref())
        .and_then(|s| s.secret_name.clone())
        .expect("the webhook mounts its TLS Secret as volume `tls`")
}

fn chart_app_version() -> String {
    let chart: Value = serde_saphyr::from_str(&read("charts/irsa/Chart.yaml")).unwrap();
    chart["appVersion"].as_str().unwrap().to_string()
}

/// Checks shared by every chart rendering.
fn assert_chart_invariants(docs: &[Value]) -> (Deployment, MutatingWebhookConfiguration) {
    let mwc: MutatingWebhookConfiguration =
        find(docs, "MutatingWebhookConfiguration", "irsa-webhook");
    assert_webhook_selectors(&mwc, NS);
    assert_no_secrets_in_rbac(docs);
    assert_least_privilege_rbac(docs, "irsa");

    let deployments: Vec<Deployment> = all(docs, "Deployment");
    assert_eq!(deployments.len(), 2, "webhook and controller");
    let image = format!("ghcr.io/irsa-dev/irsa:{}", chart_app_version());
    for d in &deployments {
        let name = d.metadata.name.clone().unwrap();
        let spec = d.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(2), "{name}: replicas");
        let pod = spec.template.spec.as_ref().unwrap();
        assert_hardened(&name, pod);
        assert_eq!(pod.containers[0].image.as_deref(), Some(image.as_str()));
        assert!(
            pod.topology_spread_constraints
                .as_ref()
                .is_some_and(|t| t.iter().all(|c| c.label_selector.is_some())),
            "{name}: topology spread with a selector"
        );
    }

    let webhook: Deployment = find(docs, "Deployment", "irsa-webhook");
    match parse_cli(&webhook) {
        Sub::Webhook(args) => {
            assert_eq!(
                i32::from(args.listen.port()),
                container_port(&webhook, "https")
            );
            assert_eq!(
                i32::from(args.metrics_listen.port()),
                container_port(&webhook, "metrics")
            );
            assert!(
                args.tls_cert_file
                    .is_some_and(|f| f.starts_with("/etc/irsa/tls"))
            );
        }
        other => panic!("webhook Deployment runs {other:?}"),
    }
    let controller: Deployment = find(docs, "Deployment", "irsa-controller");
    match parse_cli(&controller) {
        Sub::Controller(args) => {
            assert!(args.leader_election);
            assert_eq!(args.leader_election_namespace.as_deref(), Some(NS));
            assert_eq!(
                i32::from(args.metrics_listen.port()),
                container_port(&controller, "metrics")
            );
        }
        other => panic!("controller Deployment runs {other:?}"),
    }

    // Service 443 -> the webhook's https port, pointed at by the webhook configuration.
    let svc: Service = find(docs, "Service", "irsa-webhook");
    let https = svc
        .spec
        .as_ref()
        .unwrap()
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .find(|p| p.name.as_deref() == Some("https"))
        .cloned()
        .unwrap();
    assert_eq!(https.port, 443);
    let target = serde_json::to_value(&https.target_port).unwrap();
    assert!(
        target == json!("https") || target == json!(8443),
        "{target}"
    );
    let client = mwc.webhooks.as_ref().unwrap()[0]
        .client_config
        .service
        .clone();
    let client = client.unwrap();
    assert_eq!(
        (client.name.as_str(), client.namespace.as_str(), client.port),
        ("irsa-webhook", NS, Some(443))
    );
    for name in ["irsa-webhook", "irsa-controller"] {
        let _: PodDisruptionBudget = find(docs, "PodDisruptionBudget", name);
    }
    (webhook, mwc)
}

// ---------------------------------------------------------------------------------------
// Tests.

#[test]
fn chart_default_values_generate_a_ca_the_webhook_config_trusts() {
    irsa::install_crypto_provider();
    let docs = render_checked(&values(json!({})));
    let (webhook, mwc) = assert_chart_invariants(&docs);
    let h = &mwc.webhooks.as_ref().unwrap()[0];
    assert_eq!(h.failure_policy.as_deref(), Some("Ignore"));
    let secret: Secret = find(&docs, "Secret", &tls_secret_name(&webhook));
    let data = secret.data.unwrap();
    let ca = &data["ca.crt"].0;
    assert_eq!(
        h.client_config.ca_bundle.as_ref().map(|b| &b.0),
        Some(ca),
        "caBundle must be the CA of the generated Secret"
    );
    // The generated certificate really serves the Service's DNS name under that CA.
    handshake(
        ca,
        &data["tls.crt"].0,
        &data["tls.key"].0,
        "irsa-webhook.irsa-system.svc",
    );
    // No cert-manager objects in this mode; no ServiceMonitor or NetworkPolicy by default.
    for kind in ["Certificate", "Issuer", "ServiceMonitor", "NetworkPolicy"] {
        assert!(!docs.iter().any(|d| d["kind"] == kind), "{kind} rendered");
    }
}

/// An in-memory TLS handshake: the client trusts only `ca_pem` and checks `host`.
fn handshake(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8], host: &str) {
    use rustls::{
        ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection,
        pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
    };
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<_> = CertificateDer::pem_slice_iter(cert_pem)
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_slice(key_pem).unwrap();
    let server_cfg = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let client_cfg = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string()).unwrap();
    let mut client = ClientConnection::new(Arc::new(client_cfg), name).unwrap();
    let mut server = ServerConnection::new(Arc::new(server_cfg)).unwrap();
    for _ in 0..10 {
        let mut buf = Vec::new();
        client.write_tls(&mut buf).unwrap();
        server.read_tls(&mut buf.as_slice()).unwrap();
        server.process_new_packets().unwrap();
        let mut buf = Vec::new();
        server.write_tls(&mut buf).unwrap();
        client.read_tls(&mut buf.as_slice()).unwrap();
        client
            .process_new_packets()
            .unwrap_or_else(|e| panic!("the client rejects the generated certificate: {e}"));
        if !client.is_handshaking() && !server.is_handshaking() {
            return;
        }
    }
    panic!("TLS handshake did not complete");
}

#[test]
fn chart_cert_manager_mode_injects_the_ca_from_the_certificate() {
    let docs = render_checked(&values(json!({"tls": {"mode": "certManager"}})));
    let (webhook, mwc) = assert_chart_invariants(&docs);
    let annotations = mwc.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get("cert-manager.io/inject-ca-from")
            .map(String::as_str),
        Some("irsa-system/irsa-webhook")
    );
    assert!(
        mwc.webhooks.as_ref().unwrap()[0]
            .client_config
            .ca_bundle
            .is_none()
    );
    let cert: Foreign<CertificateSpec> = find(&docs, "Certificate", "irsa-webhook");
    assert_eq!(cert.spec.secret_name, tls_secret_name(&webhook));
    assert!(
        cert.spec
            .dns_names
            .unwrap()
            .contains(&"irsa-webhook.irsa-system.svc".to_string())
    );
    // The serving certificate is issued by a chart-made CA, so rotation keeps the CA.
    assert_eq!(cert.spec.issuer_ref.name, "irsa-webhook-ca");
    let ca: Foreign<CertificateSpec> = find(&docs, "Certificate", "irsa-webhook-ca");
    assert_eq!(ca.spec.is_ca, Some(true));
    assert!(
        !docs.iter().any(|d| d["kind"] == "Secret"),
        "no chart-made Secret"
    );

    // A user-supplied issuer replaces the chart's CA.
    let docs = render_checked(&values(json!({"tls": {"mode": "certManager",
        "certManager": {"issuerRef": {"kind": "ClusterIssuer", "name": "corp-ca"}}}})));
    let cert: Foreign<CertificateSpec> = find(&docs, "Certificate", "irsa-webhook");
    assert_eq!(cert.spec.issuer_ref.name, "corp-ca");
    assert!(!docs.iter().any(|d| d["kind"] == "Issuer"));
}

#[test]
fn chart_existing_secret_mode_uses_the_given_secret_and_ca() {
    let ca = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==";
    let docs = render_checked(&values(json!({"tls": {"mode": "existingSecret",
        "existingSecret": {"name": "my-webhook-tls", "caBundle": ca}}})));
    let (webhook, mwc) = assert_chart_invariants(&docs);
    assert_eq!(tls_secret_name(&webhook), "my-webhook-tls");
    let bundle = mwc.webhooks.as_ref().unwrap()[0]
        .client_config
        .ca_bundle
        .clone()
        .unwrap();
    assert_eq!(bundle.0, b"-----BEGIN CERTIFICATE-----\n");
    for kind in ["Secret", "Certificate", "Issuer"] {
        assert!(!docs.iter().any(|d| d["kind"] == kind), "{kind} rendered");
    }
    // Without the CA bundle the API server could not trust the webhook: refused up front.
    let err = helm(
        "render",
        &values(json!({"tls": {"mode": "existingSecret", "existingSecret": {"name": "x"}}})),
    )
    .unwrap_err();
    assert!(err.contains("caBundle"), "{err}");
}

#[test]
fn chart_self_mode_lets_the_webhook_manage_its_secret_and_ca_bundle() {
    let vals =
        values(json!({"tls": {"mode": "self"}, "webhook": {"strictOptIn": {"enabled": true}}}));
    let docs = render_checked(&vals);
    let mwc: MutatingWebhookConfiguration =
        find(&docs, "MutatingWebhookConfiguration", "irsa-webhook");
    let hooks = mwc.webhooks.unwrap();
    assert_eq!(
        hooks.len(),
        3,
        "strict opt-in: the webhook keeps all three caBundles"
    );
    for h in &hooks {
        assert_eq!(
            h.client_config.ca_bundle, None,
            "{}: the webhook sets it",
            h.name
        );
    }

    // The Secret exists, empty: the webhook fills it; upgrades never render its data.
    let secret: Secret = find(&docs, "Secret", "irsa-webhook-self-tls");
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    assert_eq!(secret.data, None);
    assert_eq!(secret.string_data, None);
    for kind in ["Certificate", "Issuer"] {
        assert!(!docs.iter().any(|d| d["kind"] == kind), "{kind} rendered");
    }

    let webhook: Deployment = find(&docs, "Deployment", "irsa-webhook");
    let pod = pod_spec(&webhook);
    assert!(
        !pod.volumes
            .iter()
            .flatten()
            .any(|v| v.name == "tls" || v.secret.is_some()),
        "no Secret is mounted"
    );
    let Sub::Webhook(args) = parse_cli(&webhook) else {
        panic!("the webhook Deployment runs something else")
    };
    assert_eq!(args.tls_mode, irsa::cli::TlsMode::SelfManaged);
    assert_eq!(args.tls_cert_file, None);
    let config = irsa::commands::webhook::self_tls_config(&args.self_tls)
        .unwrap_or_else(|e| panic!("the chart's self-TLS flags: {e}"));
    assert_eq!(config.secret, "irsa-webhook-self-tls");
    assert_eq!(config.namespace, NS);
    assert_eq!(config.configuration, "irsa-webhook");
    assert!(
        config
            .names
            .contains(&"irsa-webhook.irsa-system.svc".to_string()),
        "{:?}",
        config.names
    );

    // Exactly the documented grants, each on the one object by name, bound to the webhook.
    let role: Role = find(&docs, "Role", "irsa-webhook-self-tls");
    let cluster_role: ClusterRole = find(&docs, "ClusterRole", "irsa-webhook-self-tls");
    let mut rules = role.rules.clone().unwrap();
    rules.extend(cluster_role.rules.clone().unwrap());
    assert_eq!(rule_table(&rules), rbac_of("webhook-self-tls"));
    for (rule, name) in [
        (&role.rules.unwrap()[0], "irsa-webhook-self-tls"),
        (&cluster_role.rules.unwrap()[0], "irsa-webhook"),
    ] {
        assert_eq!(rule.resource_names, Some(vec![name.to_string()]));
    }
    for kind in ["RoleBinding", "ClusterRoleBinding"] {
        let binding: Value = docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == "irsa-webhook-self-tls")
            .cloned()
            .unwrap_or_else(|| panic!("no {kind}"));
        assert_eq!(binding["subjects"][0]["name"], "irsa-webhook", "{kind}");
    }
    // Everything else is as in the other modes: no other rule touches Secrets.
    assert_least_privilege_rbac(&docs, "irsa");
    let others: Vec<Value> = docs
        .iter()
        .filter(|d| d["metadata"]["name"] != "irsa-webhook-self-tls")
        .cloned()
        .collect();
    assert_no_secrets_in_rbac(&others);
}

#[test]
fn chart_failure_policy_fail_keeps_the_safety_selectors() {
    let docs = render_checked(&values(json!({"webhook": {"failurePolicy": "Fail",
        "timeoutSeconds": 5, "reinvocationPolicy": "IfNeeded"}})));
    let (_, mwc) = assert_chart_invariants(&docs);
    let h = &mwc.webhooks.as_ref().unwrap()[0];
    assert_eq!(h.failure_policy.as_deref(), Some("Fail"));
    assert_eq!(h.timeout_seconds, Some(5));
    // Installed elsewhere, the webhook excludes that namespace, not a hard-coded one.
    let out = helm_in(
        "render",
        &values(json!({"webhook": {"failurePolicy": "Fail"}})),
        "platform-iam",
    )
    .unwrap();
    let mwc: MutatingWebhookConfiguration = find(
        &parse_docs(&out),
        "MutatingWebhookConfiguration",
        "irsa-webhook",
    );
    assert_webhook_selectors(&mwc, "platform-iam");
}

#[test]
fn chart_service_monitor_and_network_policy_select_the_metrics_ports() {
    let docs = render_checked(&values(json!({
        "metrics": {"serviceMonitor": {"enabled": true, "labels": {"release": "prom"}}},
        "networkPolicy": {"enabled": true},
        "webhook": {"priorityClassName": "system-cluster-critical",
                    "extraArgs": ["--strict"], "extraEnv": [{"name": "RUST_LOG", "value": "debug"}],
                    "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "podIdentityAssociations": [{"namespace": "a", "serviceAccount": "b"}]},
        "controller": {"iamRoleArn": "arn:aws:iam::111122223333:role/irsa-controller",
                       "awsRegion": "eu-west-1", "issuerCA": PRIVATE_CA},
    })));
    assert_chart_invariants(&docs);
    let monitors: Vec<Foreign<ServiceMonitorSpec>> = all(&docs, "ServiceMonitor");
    assert_eq!(monitors.len(), 2);
    let services: Vec<Service> = all(&docs, "Service");
    for m in &monitors {
        let want = m.spec.selector.match_labels.clone().unwrap();
        let svc = services
            .iter()
            .find(|s| {
                let labels = s.metadata.labels.clone().unwrap_or_default();
                want.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .unwrap_or_else(|| panic!("no Service matches {want:?}"));
        let ports = svc.spec.as_ref().unwrap().ports.clone().unwrap();
        assert!(ports.iter().any(|p| p.name.as_deref() == Some("metrics")));
        assert_eq!(
            m.metadata
                .labels
                .as_ref()
                .unwrap()
                .get("release")
                .map(String::as_str),
            Some("prom")
        );
    }
    let policies: Vec<NetworkPolicy> = all(&docs, "NetworkPolicy");
    assert_eq!(policies.len(), 2);

    let webhook: Deployment = find(&docs, "Deployment", "irsa-webhook");
    let pod = webhook.spec.unwrap().template.spec.unwrap();
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-cluster-critical")
    );

    // The controller's own role: on its ServiceAccount, and injected into its pod directly
    // (the webhook skips its own namespace).
    let sa: ServiceAccount = find(&docs, "ServiceAccount", "irsa-controller");
    assert_eq!(
        sa.metadata.annotations.unwrap()["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::111122223333:role/irsa-controller"
    );
    let controller: Deployment = find(&docs, "Deployment", "irsa-controller");
    let pod = controller.spec.unwrap().template.spec.unwrap();
    let env: BTreeMap<_, _> = pod.containers[0]
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect();
    assert_eq!(
        env["AWS_ROLE_ARN"],
        "arn:aws:iam::111122223333:role/irsa-controller"
    );
    assert_eq!(env["AWS_REGION"], "eu-west-1");
    let volumes = pod.volumes.unwrap();
    assert!(volumes.iter().any(|v| v.name == "aws-iam-token"));

    // A private issuer CA: a ConfigMap, mounted beside the token, named by the flag.
    let ca: ConfigMap = find(&docs, "ConfigMap", "irsa-controller-issuer-ca");
    assert_eq!(ca.data.unwrap()["ca.crt"].trim(), PRIVATE_CA.trim());
    let ca_volume = volumes.iter().find(|v| v.name == "issuer-ca").unwrap();
    assert_eq!(
        ca_volume.config_map.as_ref().map(|c| c.name.as_str()),
        Some("irsa-controller-issuer-ca")
    );
    let mount = pod.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "issuer-ca")
        .unwrap();
    let args = pod.containers[0].args.clone().unwrap();
    assert!(
        args.contains(&format!("--issuer-ca-file={}/ca.crt", mount.mount_path)),
        "{args:?}"
    );
}

/// Shape only: the chart copies it, the controller parses it.
const PRIVATE_CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

#[test]
fn chart_values_schema_rejects_wrong_types_typos_and_a_missing_cluster_name() {
    let cases = [
        (json!({"webhook": {"replicas": "two"}}), "/webhook/replicas"),
        (
            json!({"webhook": {"failurePolicy": "Sometimes"}}),
            "/webhook/failurePolicy",
        ),
        (
            json!({"controller": {"iamRoleArn": "my-role"}}),
            "/controller/iamRoleArn",
        ),
        (json!({"tls": {"mode": "selfSigned"}}), "/tls/mode"),
        (json!({"webhok": {"replicas": 2}}), "webhok"),
    ];
    for (bad, mentions) in cases {
        let err = helm("render", &values(bad.clone())).expect_err(&format!("{bad} was accepted"));
        assert!(
            err.contains(mentions),
            "{bad}: error does not name {mentions}:\n{err}"
        );
        assert!(
            helm("lint", &values(bad.clone())).is_err(),
            "lint accepts {bad}"
        );
    }
    let err = helm("render", &json!({})).unwrap_err();
    assert!(err.contains("controller.clusterName is required"), "{err}");
    // Without the controller no cluster name is needed.
    let docs = render_checked(&json!({"controller": {"enabled": false}}));
    assert!(
        !kinds_and_names(&docs)
            .iter()
            .any(|(_, n)| n.contains("controller"))
    );
}

/// Every value in values.yaml is declared (typed) in values.schema.json and every declared
/// value has a default in values.yaml, so `helm show values` documents the whole surface.
#[test]
fn chart_values_schema_covers_every_value() {
    fn walk(values: &Value, schema: &Value, path: &str, out: &mut Vec<String>) {
        let declared = schema["properties"].as_object();
        let Some(declared) = declared else { return }; // a free-form map: keys are the user's
        let Some(values) = values.as_object() else {
            out.push(format!(
                "{path}: schema has properties, values.yaml has {values}"
            ));
            return;
        };
        for (k, v) in values {
            match declared.get(k) {
                None => out.push(format!("{path}.{k}: not in values.schema.json")),
                Some(s) => {
                    if ["type", "enum", "anyOf"].iter().all(|t| s.get(t).is_none()) {
                        out.push(format!("{path}.{k}: no type in values.schema.json"));
                    }
                    walk(v, s, &format!("{path}.{k}"), out);
                }
            }
        }
        // An empty default (`issuerRef: {}`) is an optional object: its keys are opt-in.
        for k in declared.keys().filter(|_| !values.is_empty()) {
            let helm_global = path.is_empty() && k == "global";
            if !values.contains_key(k) && !helm_global {
                out.push(format!(
                    "{path}.{k}: declared but has no default in values.yaml"
                ));
            }
        }
    }
    let values: Value = serde_saphyr::from_str(&read("charts/irsa/values.yaml")).unwrap();
    let schema: Value = serde_json::from_str(&read("charts/irsa/values.schema.json")).unwrap();
    assert_eq!(schema["additionalProperties"], json!(false));
    let mut problems = Vec::new();
    walk(&values, &schema, "", &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Exactly what `irsa agent` calls: token reviews and its three watches (src/agent/).
fn agent_pod(docs: &[Value]) -> PodSpec {
    let ds: DaemonSet = find(docs, "DaemonSet", "irsa-agent");
    ds.spec.unwrap().template.spec.unwrap()
}

#[test]
fn chart_agent_is_off_by_default() {
    let docs = render_checked(&values(json!({})));
    assert!(!docs.iter().any(|d| d["kind"] == "DaemonSet"));
    assert!(
        !kinds_and_names(&docs)
            .iter()
            .any(|(_, n)| n.contains("agent")),
        "{:?}",
        kinds_and_names(&docs)
    );
}

/// The webhook gives associated ServiceAccounts container credentials, projected for the
/// audience the agent reviews, exactly when the chart runs the agent.
#[test]
fn chart_webhook_sends_associated_pods_to_the_agent_only_with_it() {
    for enabled in [false, true] {
        let docs = render_checked(&values(json!({"agent": {
            "enabled": enabled,
            "iamRoleArn": "arn:aws:iam::111122223333:role/irsa-agent",
            "audience": "agent.example.com"
        }})));
        let webhook: Deployment = find(&docs, "Deployment", "irsa-webhook");
        let Sub::Webhook(args) = parse_cli(&webhook) else {
            panic!("the webhook Deployment runs something else")
        };
        assert_eq!(args.pod_identity_associations, enabled);
        let audience = if enabled {
            "agent.example.com"
        } else {
            irsa::mutate::config::DEFAULT_CC_AUDIENCE
        };
        assert_eq!(args.mutation.container_credentials_audience, audience);
    }
}

/// `agent.enabled=true`: a DaemonSet on every node's host network whose init container alone
/// has NET_ADMIN (to add the link-local addresses), whose agent is non-root with only
/// NET_BIND_SERVICE, listens where the webhook sends pods, and whose ClusterRole grants
/// exactly what the agent calls.
#[test]
fn chart_agent_daemonset_serves_the_link_local_endpoint_with_least_privilege() {
    let role = "arn:aws:iam::111122223333:role/irsa-agent";
    let docs = render_checked(&values(json!({"agent": {
        "enabled": true, "iamRoleArn": role, "awsRegion": "eu-west-1"
    }})));
    assert_no_secrets_in_rbac(&docs);
    let ds: DaemonSet = find(&docs, "DaemonSet", "irsa-agent");
    let strategy = ds.spec.as_ref().unwrap().update_strategy.clone().unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let pod = agent_pod(&docs);
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.service_account_name.as_deref(), Some("irsa-agent"));
    assert_eq!(
        serde_json::to_value(&pod.tolerations).unwrap(),
        json!([{"operator": "Exists"}]),
        "every node, whatever its taints"
    );
    assert_hardened("irsa-agent", &pod);
    let agent = &pod.containers[0];
    let image = format!("ghcr.io/irsa-dev/irsa:{}", chart_app_version());
    assert_eq!(agent.image.as_deref(), Some(image.as_str()));
    let caps = |c: &k8s_openapi::api::core::v1::Container| {
        let sc = c.security_context.clone().unwrap_or_default();
        let caps = sc.capabilities.unwrap_or_default();
        (caps.add.unwrap_or_default(), caps.drop.unwrap_or_default())
    };
    assert_eq!(
        caps(agent),
        (
            vec!["NET_BIND_SERVICE".to_string()],
            vec!["ALL".to_string()]
        )
    );

    // The init container: NET_ADMIN only, both addresses on a dummy interface.
    let inits = pod.init_containers.clone().unwrap_or_default();
    assert_eq!(inits.len(), 1);
    let init = &inits[0];
    assert_eq!(
        caps(init),
        (vec!["NET_ADMIN".to_string()], vec!["ALL".to_string()])
    );
    let sc = init.security_context.clone().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_ne!(sc.privileged, Some(true));
    let script = init.args.clone().unwrap_or_default().join("\n");
    for step in [
        "ip link add irsa-agent type dummy",
        "ip addr add 169.254.170.23/32 dev irsa-agent",
        "ip -6 addr add fd00:ec2::23/128 dev irsa-agent",
    ] {
        assert!(
            script.contains(step),
            "the init script lacks `{step}`:\n{script}"
        );
    }

    // The flags, parsed by the real CLI: the endpoint the webhook injects, probes apart.
    let Sub::Agent(args) = parse_pod_cli(&pod) else {
        panic!("the DaemonSet does not run `irsa agent`: {:?}", agent.args)
    };
    // Both of EKS's addresses; the first is the one the webhook injects.
    let uri = irsa::mutate::config::DEFAULT_CC_FULL_URI;
    let listen: Vec<String> = args.listen.iter().map(ToString::to_string).collect();
    assert_eq!(listen, ["169.254.170.23:80", "[fd00:ec2::23]:80"]);
    assert_eq!(
        format!("http://{}/v1/credentials", args.listen[0].ip()),
        uri
    );
    for address in &args.listen {
        assert_eq!(
            i32::from(address.port()),
            pod_container_port(&pod, "credentials")
        );
    }
    assert_eq!(
        i32::from(args.metrics_listen.port()),
        pod_container_port(&pod, "metrics")
    );
    for probe in [&agent.liveness_probe, &agent.readiness_probe] {
        let port = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .unwrap()
            .port
            .clone();
        assert_eq!(serde_json::to_value(port).unwrap(), json!("metrics"));
    }
    assert_eq!(args.audience, irsa::mutate::config::DEFAULT_CC_AUDIENCE);
    assert_eq!(
        args.cluster_name, "demo",
        "controller.clusterName by default"
    );
    assert_eq!(args.node_name, "$(NODE_NAME)");
    let env = agent.env.clone().unwrap_or_default();
    let var = |name: &str| env.iter().find(|e| e.name == name).cloned();
    let node = var("NODE_NAME")
        .and_then(|e| e.value_from)
        .and_then(|v| v.field_ref);
    assert_eq!(node.map(|f| f.field_path).as_deref(), Some("spec.nodeName"));

    // Its own role: on its ServiceAccount and in its environment (the webhook skips the
    // release namespace), with the token that role's web identity reads.
    let sa: ServiceAccount = find(&docs, "ServiceAccount", "irsa-agent");
    assert_eq!(
        sa.metadata.annotations.unwrap()["eks.amazonaws.com/role-arn"],
        role
    );
    assert_eq!(
        var("AWS_ROLE_ARN").and_then(|e| e.value).as_deref(),
        Some(role)
    );
    assert_eq!(
        var("AWS_REGION").and_then(|e| e.value).as_deref(),
        Some("eu-west-1")
    );
    let token = var("AWS_WEB_IDENTITY_TOKEN_FILE")
        .and_then(|e| e.value)
        .unwrap();
    let mounts = agent.volume_mounts.clone().unwrap_or_default();
    assert!(
        mounts.iter().any(|m| token.starts_with(&m.mount_path)),
        "{token} is not mounted: {mounts:?}"
    );

    let cluster_role: ClusterRole = find(&docs, "ClusterRole", "irsa-agent");
    assert_eq!(rule_table(&cluster_role.rules.unwrap()), rbac_of("agent"));
    let binding: ClusterRoleBinding = find(&docs, "ClusterRoleBinding", "irsa-agent");
    assert_eq!(binding.role_ref.name, "irsa-agent");
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        (
            subject.kind.as_str(),
            subject.name.as_str(),
            subject.namespace.as_deref()
        ),
        ("ServiceAccount", "irsa-agent", Some(NS))
    );
}

#[test]
fn chart_agent_pod_monitor_scrapes_the_agents_metrics_port() {
    let on = |monitors: bool| {
        render_checked(&values(json!({
            "agent": {"enabled": true, "clusterName": "c"},
            "metrics": {"serviceMonitor": {"enabled": monitors, "labels": {"release": "prom"}}},
        })))
    };
    assert!(!on(false).iter().any(|d| d["kind"] == "PodMonitor"));
    let docs = on(true);
    let monitor: Foreign<PodMonitorSpec> = find(&docs, "PodMonitor", "irsa-agent");
    let ds: DaemonSet = find(&docs, "DaemonSet", "irsa-agent");
    let template = ds.spec.unwrap().template;
    let labels = template
        .metadata
        .unwrap_or_default()
        .labels
        .unwrap_or_default();
    let pod = template.spec.unwrap();
    let want = monitor.spec.selector.match_labels.clone().unwrap();
    assert!(
        want.iter().all(|(k, v)| labels.get(k) == Some(v)),
        "{want:?} does not select the agent's pods {labels:?}"
    );
    let endpoint = &monitor.spec.pod_metrics_endpoints[0];
    assert_eq!(endpoint.port, "metrics");
    assert!(pod_container_port(&pod, "metrics") > 0);
    assert_eq!(
        monitor
            .metadata
            .labels
            .unwrap()
            .get("release")
            .map(String::as_str),
        Some("prom")
    );
}

#[test]
fn chart_agent_values_listen_address_cluster_name_and_schema() {
    // IPv6-only clusters: the other link-local address, bracketed for the CLI.
    let docs = render_checked(&json!({
        "controller": {"enabled": false},
        "agent": {"enabled": true, "clusterName": "v6", "listenAddresses": ["fd00:ec2::23"]}
    }));
    let Sub::Agent(args) = parse_pod_cli(&agent_pod(&docs)) else {
        panic!("not the agent")
    };
    assert_eq!(args.listen, ["[fd00:ec2::23]:80".parse().unwrap()]);
    assert_eq!(args.cluster_name, "v6");

    let err = helm(
        "render",
        &json!({"controller": {"enabled": false}, "agent": {"enabled": true}}),
    )
    .unwrap_err();
    assert!(err.contains("agent.clusterName"), "{err}");
    for (bad, mentions) in [
        (
            json!({"agent": {"listenAddresses": ["0.0.0.0"]}}),
            "/agent/listenAddresses",
        ),
        (
            json!({"agent": {"listenAddresses": []}}),
            "/agent/listenAddresses",
        ),
        (
            json!({"agent": {"iamRoleArn": "irsa-agent"}}),
            "/agent/iamRoleArn",
        ),
        (json!({"agent": {"enable": true}}), "enable"),
    ] {
        let err = helm("render", &values(bad.clone())).expect_err(&format!("{bad} was accepted"));
        assert!(
            err.contains(mentions),
            "{bad}: error does not name {mentions}:\n{err}"
        );
    }
}

/// The controller writes Pod Identity trust statements for the agent's role when the chart
/// knows it (`agent.iamRoleArn`), and refuses an agent cluster name its statements would not
/// match.
#[test]
fn chart_controller_trusts_the_agent_role_it_is_given() {
    let role = "arn:aws:iam::111122223333:role/irsa-agent";
    let agent_role = |vals: Value| {
        let docs = render_checked(&values(vals));
        let Sub::Controller(args) = parse_cli(&find(&docs, "Deployment", "irsa-controller")) else {
            panic!("not the controller")
        };
        args.pod_identity_agent_role_arn
    };
    assert_eq!(agent_role(json!({})), None);
    assert_eq!(
        agent_role(json!({"agent": {"enabled": true, "iamRoleArn": role}})).as_deref(),
        Some(role)
    );
    let err = helm(
        "render",
        &values(json!({"agent": {"iamRoleArn": role, "clusterName": "other"}})),
    )
    .unwrap_err();
    assert!(err.contains("agent.clusterName (other) differs"), "{err}");
}

#[test]
fn chart_image_tag_defaults_to_app_version_which_is_the_crate_version() {
    assert_eq!(chart_app_version(), env!("CARGO_PKG_VERSION"));
    let chart: Value = serde_saphyr::from_str(&read("charts/irsa/Chart.yaml")).unwrap();
    assert_eq!(chart["version"], json!(env!("CARGO_PKG_VERSION")));
    let docs = render_checked(&values(json!({"image": {"tag": "1.2.3"}})));
    let d: Deployment = find(&docs, "Deployment", "irsa-webhook");
    let image = d.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("ghcr.io/irsa-dev/irsa:1.2.3"));
}

#[test]
fn chart_notes_tell_the_next_steps() {
    let out = run(
        Command::new("python3").args([
            "scripts/helm-chart.py",
            "render",
            "charts/irsa",
            "--notes",
            "--values",
            &values(json!({})).to_string(),
        ]),
        "helm-chart.py",
    )
    .unwrap();
    for want in [
        "IAMRoleGrant",
        "IAMRoleBinding",
        "irsa doctor",
        "controller.iamRoleArn",
    ] {
        assert!(out.contains(want), "NOTES.txt lacks {want}:\n{out}");
    }
}

#[test]
fn crds_match_the_code_and_the_chart_ships_the_same() {
    let generated = irsa::crd::crds_yaml().unwrap();
    // `irsa crd` (what `make crds` runs) prints exactly that.
    let out = Command::new(env!("CARGO_BIN_EXE_irsa"))
        .arg("crd")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), generated);
    assert!(
        read("crds/irsa.dev.yaml") == generated,
        "crds/irsa.dev.yaml drifted from src/crd.rs: run `make crds` and commit"
    );
    assert!(
        read("charts/irsa/crds/irsa.dev.yaml") == generated,
        "charts/irsa/crds/irsa.dev.yaml differs from crds/: run `make crds` and commit"
    );
    let chart_crds: Vec<_> = std::fs::read_dir(repo().join("charts/irsa/crds"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(chart_crds, ["irsa.dev.yaml"]);
    assert_round_trips(&parse_docs(&generated));
}

/// `kubectl apply -f crds/`, the command the controller and the doctor give when the CRDs are
/// missing, reads every `.json`, `.yaml` and `.yml` file of the directory as objects: those
/// must be the CRDs only (the kustomization that lets `config/default` include them has no
/// such extension). The real kubectl runs it in the install journey (e2e/tests/journeys/install.rs).
#[test]
fn kubectl_apply_f_crds_reads_only_the_crds() {
    let read_by_kubectl: Vec<String> = std::fs::read_dir(repo().join("crds"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| [".json", ".yaml", ".yml"].iter().any(|x| f.ends_with(x)))
        .collect();
    assert_eq!(read_by_kubectl, ["irsa.dev.yaml"]);
    assert_eq!(irsa::crd::INSTALL_COMMAND, "kubectl apply -f crds/");
}

#[test]
fn kustomize_default_matches_the_chart() {
    let k = kustomize("config/default");
    let mwc: MutatingWebhookConfiguration =
        find(&k, "MutatingWebhookConfiguration", "irsa-webhook");
    assert_webhook_selectors(&mwc, NS);
    assert_no_secrets_in_rbac(&k);
    assert_least_privilege_rbac(&k, "irsa");
    for d in all::<Deployment>(&k, "Deployment") {
        let name = d.metadata.name.clone().unwrap();
        assert_eq!(d.metadata.namespace.as_deref(), Some(NS));
        assert_hardened(
            &name,
            d.spec.as_ref().unwrap().template.spec.as_ref().unwrap(),
        );
        parse_cli(&d);
    }
    let crds: Vec<CustomResourceDefinition> = all(&k, "CustomResourceDefinition");
    assert_eq!(crds.len(), 3);

    // Same objects as the chart in cert-manager mode, same webhook, same pod specs: the two
    // install paths cannot drift apart.
    let chart = render_checked(&json!({"controller": {"clusterName": "my-cluster"},
        "tls": {"mode": "certManager"}}));
    let without = |docs: &[Value]| -> BTreeSet<(String, String)> {
        kinds_and_names(docs)
            .into_iter()
            .filter(|(kind, _)| kind != "CustomResourceDefinition" && kind != "Namespace")
            .collect()
    };
    assert_eq!(without(&k), without(&chart));
    let chart_mwc: MutatingWebhookConfiguration =
        find(&chart, "MutatingWebhookConfiguration", "irsa-webhook");
    assert_eq!(mwc.webhooks, chart_mwc.webhooks);

    let pod = |docs: &[Value], name: &str| -> PodSpec {
        let d: Deployment = find(docs, "Deployment", name);
        d.spec.unwrap().template.spec.unwrap()
    };
    assert_eq!(pod(&k, "irsa-webhook"), pod(&chart, "irsa-webhook"));
    // The controller differs only in where the cluster's settings come from (env from the
    // kustomize patch instead of flags) and in its own-credentials volume.
    let normalize = |mut p: PodSpec| -> PodSpec {
        p.volumes = None;
        let c = &mut p.containers[0];
        c.env = None;
        c.volume_mounts = None;
        c.args = c.args.take().map(|a| {
            a.into_iter()
                .filter(|x| !x.starts_with("--cluster-name"))
                .collect()
        });
        p
    };
    assert_eq!(
        normalize(pod(&k, "irsa-controller")),
        normalize(pod(&chart, "irsa-controller"))
    );
    let cluster = match parse_cli(&find(&k, "Deployment", "irsa-controller")) {
        Sub::Controller(args) => args.cluster_name,
        other => panic!("{other:?}"),
    };
    assert_eq!(cluster, "my-cluster");
    for (kind, name) in [
        ("ClusterRole", "irsa-webhook"),
        ("ClusterRole", "irsa-controller"),
    ] {
        let a: ClusterRole = find(&k, kind, name);
        let b: ClusterRole = find(&chart, kind, name);
        assert_eq!(a.rules, b.rules, "{kind} {name}");
    }
}

#[test]
fn samples_are_valid_objects() {
    let mut samples = Vec::new();
    for f in ["pod", "serviceaccount", "grant", "binding"] {
        samples.extend(parse_docs(&read(&format!("config/samples/{f}.yaml"))));
    }
    assert_round_trips(&samples);
    let kinds: BTreeSet<_> = samples.iter().map(|d| api_kind(d).1.to_string()).collect();
    assert_eq!(
        kinds,
        ["IAMRoleBinding", "IAMRoleGrant", "Pod", "ServiceAccount"]
            .map(String::from)
            .into()
    );
    let binding: IAMRoleBinding = serde_json::from_value(
        samples
            .iter()
            .find(|d| d["kind"] == "IAMRoleBinding")
            .unwrap()
            .clone(),
    )
    .unwrap();
    irsa::arn::RoleArn::parse(&binding.spec.role_arn).unwrap();
    let grant: IAMRoleGrant = serde_json::from_value(
        samples
            .iter()
            .find(|d| d["kind"] == "IAMRoleGrant")
            .unwrap()
            .clone(),
    )
    .unwrap();
    assert!(grant.spec.namespaces.iter().any(|n| n == "team-a"));
}

#[test]
fn controller_iam_policy_is_least_privilege() {
    let policy: Value = serde_json::from_str(&read("config/iam/controller-policy.json")).unwrap();
    assert_eq!(policy["Version"], "2012-10-17");
    let mut actions = BTreeSet::new();
    for st in policy["Statement"].as_array().unwrap() {
        assert_eq!(st["Effect"], "Allow");
        assert!(st.get("NotAction").is_none() && st.get("NotResource").is_none());
        let list: Vec<String> = match &st["Action"] {
            Value::String(s) => vec![s.clone()],
            v => serde_json::from_value(v.clone()).unwrap(),
        };
        for a in &list {
            assert!(!a.contains('*'), "wildcard action {a}");
        }
        // `*` only where IAM offers no resource-level scoping.
        if st["Resource"] == "*" {
            for a in &list {
                assert!(
                    ["iam:ListOpenIDConnectProviders", "sts:GetCallerIdentity"]
                        .contains(&a.as_str()),
                    "{a} is granted on every resource"
                );
            }
        }
        actions.extend(list);
    }
    let want: BTreeSet<String> = [
        "iam:GetRole",
        "iam:UpdateAssumeRolePolicy",
        "iam:ListRoleTags",
        "iam:GetOpenIDConnectProvider",
        "iam:CreateOpenIDConnectProvider",
        "iam:AddClientIDToOpenIDConnectProvider",
        "iam:UpdateOpenIDConnectProviderThumbprint",
        "iam:TagOpenIDConnectProvider",
        "iam:ListOpenIDConnectProviders",
        "sts:GetCallerIdentity",
    ]
    .map(String::from)
    .into();
    assert_eq!(actions, want);
    let trust: Value =
        serde_json::from_str(&read("config/iam/controller-trust-policy.json")).unwrap();
    let sub = trust.to_string();
    assert!(sub.contains("system:serviceaccount:irsa-system:irsa-controller"));
}

#[test]
fn dockerfile_builds_a_non_root_image_with_the_version_checked() {
    let df = read("Dockerfile");
    let runtime = df.rsplit("\nFROM ").next().unwrap();
    assert!(
        runtime.starts_with("gcr.io/distroless/"),
        "small runtime image: {runtime}"
    );
    assert!(runtime.contains("USER 65532:65532"));
    assert!(df.contains("irsa --version"));
    // The image's link (build.rs): packed relocations need glibc 2.36 where the binary runs,
    // Debian 12's.
    assert!(df.contains("IRSA_IMAGE_LINK=1 cargo build --release"));
    assert!(
        runtime.starts_with("gcr.io/distroless/cc-debian12"),
        "a runtime with glibc >= 2.36: {runtime}"
    );
    assert!(Path::new(&repo().join(".dockerignore")).exists());
}

/// Every sample name the two binaries export: counters as `<name>_total`, histograms as
/// `_bucket`/`_sum`/`_count`, gauges as is (from their `# TYPE` lines; a labelled family is
/// only printed once it has a child, so each gets one).
fn exported_metrics() -> BTreeSet<String> {
    let wm = irsa::webhook::metrics::Metrics::new();
    for family in [&wm.requests, &wm.mutations, &wm.warnings, &wm.sa_lookups] {
        family.get_or_create(&[("x", "y")]).inc();
    }
    let webhook = wm.encode().unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    let cm = irsa::controller::metrics::Metrics::default();
    cm.register(&mut registry);
    cm.reconciled("binding");
    cm.reconcile_failed("binding", "x");
    cm.set_trust_chars("role", 1);
    cm.issuer_publish_failed("x");
    cm.set_uninjected("ns", 1);
    cm.iam_calls
        .get_or_create(&irsa::controller::metrics::IamCallLabels {
            operation: "GetRole",
            outcome: "success",
        })
        .inc();
    let controller = irsa::metrics::encode(&registry).unwrap();
    let am = irsa::agent::Metrics::default();
    am.request(200, "Issued");
    am.sts_call("error");
    am.token_review();
    let agent = irsa::metrics::encode(&am.registry()).unwrap();
    let mut names = BTreeSet::new();
    for line in webhook
        .lines()
        .chain(controller.lines())
        .chain(agent.lines())
    {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            match kind {
                "counter" => names.extend([format!("{name}_total")]),
                "histogram" => {
                    names.extend(["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}")))
                }
                _ => names.extend([name.to_string()]),
            }
        }
    }
    names
}

/// The `irsa_*` metric names a PromQL expression uses; panics if it does not parse.
fn metrics_in(expr: &str, origin: &str) -> Vec<String> {
    promql_parser::parser::parse(expr)
        .unwrap_or_else(|e| panic!("{origin}: {expr:?} is not valid PromQL: {e}"));
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("irsa_") {
        let tail = rest.get(at..).unwrap_or_default();
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail.get(..end).unwrap_or_default().to_string());
        rest = tail.get(end..).unwrap_or_default();
    }
    names
}

#[test]
fn alert_rules_and_dashboard_use_only_exported_metrics() {
    let exported = exported_metrics();
    assert!(
        exported.contains("irsa_webhook_requests_total"),
        "{exported:?}"
    );
    assert!(
        exported.contains("irsa_controller_iam_calls_total"),
        "{exported:?}"
    );
    let docs = render_checked(&values(json!({
        "metrics": {"prometheusRule": {"enabled": true}, "grafanaDashboard": {"enabled": true}},
        "controller": {"publishIssuer": {"s3Url": "s3://bucket/cluster"}},
        "agent": {"enabled": true, "clusterName": "c"}
    })));
    let rule = docs
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("a PrometheusRule");
    let mut alerts = Vec::new();
    for group in rule["spec"]["groups"].as_array().unwrap() {
        for r in group["rules"].as_array().unwrap() {
            let alert = r["alert"].as_str().unwrap();
            alerts.push(alert.to_string());
            assert!(
                ["warning", "critical"].contains(&r["labels"]["severity"].as_str().unwrap_or("")),
                "{alert} has a severity"
            );
            assert!(
                r["annotations"]["summary"].is_string(),
                "{alert} has a summary"
            );
            for name in metrics_in(r["expr"].as_str().unwrap(), alert) {
                assert!(
                    exported.contains(&name),
                    "{alert} uses {name}, which nothing exports"
                );
            }
        }
    }
    for wanted in [
        "IrsaWebhookDown",
        "IrsaWebhookSlow",
        "IrsaWebhookCertificateReloadFailing",
        "IrsaWebhookCertificateExpiringSoon",
        "IrsaControllerIamErrors",
        "IrsaTrustPolicyNearQuota",
        "IrsaIssuerPublishStale",
        "IrsaAgentStsErrors",
    ] {
        assert!(alerts.iter().any(|a| a == wanted), "{wanted} in {alerts:?}");
    }

    let dashboard = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "irsa-dashboard")
        .expect("the dashboard ConfigMap");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: Value =
        serde_json::from_str(dashboard["data"]["irsa.json"].as_str().unwrap()).unwrap();
    let mut used = BTreeSet::new();
    for panel in json["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        for target in panel["targets"].as_array().unwrap() {
            for name in metrics_in(target["expr"].as_str().unwrap(), title) {
                assert!(
                    exported.contains(&name),
                    "panel {title:?} uses {name}, which nothing exports"
                );
                used.insert(name);
            }
        }
    }
    assert!(
        used.len() >= 15,
        "the dashboard covers both binaries: {used:?}"
    );
}
