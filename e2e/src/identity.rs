//! The processes under test authenticate as the chart's ServiceAccounts, with the chart's RBAC
//! applied, never as admin: a verb the chart forgot then fails a test.

use std::path::PathBuf;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::support::{self, unique};

/// The release the RBAC is rendered for: `helm install irsa charts/irsa -n irsa-system`.
pub const RELEASE: &str = "irsa";
pub const RELEASE_NAMESPACE: &str = "irsa-system";

#[derive(Debug, Clone, Copy)]
pub enum Component {
    Webhook,
    Controller,
}

impl Component {
    pub fn service_account(self) -> &'static str {
        match self {
            Self::Webhook => "irsa-webhook",
            Self::Controller => "irsa-controller",
        }
    }
}

/// The values the identities are rendered with: the defaults plus issuer publishing, whose
/// extra permissions (a ConfigMap, the JWKS URL) the publishing test needs; every test of a
/// run applies the same RBAC.
pub fn values() -> Value {
    json!({"controller": {"publishIssuer": {"s3Url": "s3://irsa-e2e/cluster"}}})
}

/// The RBAC objects of the chart (ServiceAccounts, ClusterRoles, Roles and their bindings) as
/// `helm template` renders them for [`RELEASE`] in [`RELEASE_NAMESPACE`] with [`values`].
pub fn chart_rbac() -> Vec<Value> {
    rbac_of(RELEASE, &values())
}

/// The ServiceAccounts and RBAC objects of the chart rendered for `release` with `values`.
pub fn rbac_of(release: &str, values: &Value) -> Vec<Value> {
    const KINDS: [&str; 5] = [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ];
    support::helm_template(release, RELEASE_NAMESPACE, values)
        .into_iter()
        .filter(|d| KINDS.iter().any(|k| d["kind"] == *k))
        .collect()
}

/// Applies [`chart_rbac`] (server-side, idempotent: tests running at once apply the same
/// objects) into [`RELEASE_NAMESPACE`], creating the namespace if needed.
pub async fn apply_chart_rbac(client: &kube::Client) {
    apply_rbac(client, &chart_rbac()).await;
}

/// Applies RBAC objects (of [`rbac_of`]) into [`RELEASE_NAMESPACE`], creating it if needed.
pub async fn apply_rbac(client: &kube::Client, docs: &[Value]) {
    let ns: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": RELEASE_NAMESPACE}
    }))
    .unwrap();
    match Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("creating namespace {RELEASE_NAMESPACE}: {e}"),
    }
    for doc in docs {
        apply(client, doc).await;
    }
}

/// Server-side apply of one RBAC object or ServiceAccount of the chart.
async fn apply(client: &kube::Client, doc: &Value) {
    let name = doc["metadata"]["name"].as_str().unwrap();
    let ns = doc["metadata"]["namespace"]
        .as_str()
        .unwrap_or(RELEASE_NAMESPACE);
    let pp = PatchParams::apply("irsa-e2e").force();
    let patch = Patch::Apply(doc);
    let c = client.clone();
    let result = match doc["kind"].as_str().unwrap() {
        "ServiceAccount" => Api::<ServiceAccount>::namespaced(c, ns)
            .patch(name, &pp, &patch)
            .await
            .map(drop),
        "ClusterRole" => Api::<ClusterRole>::all(c)
            .patch(name, &pp, &patch)
            .await
            .map(drop),
        "ClusterRoleBinding" => Api::<ClusterRoleBinding>::all(c)
            .patch(name, &pp, &patch)
            .await
            .map(drop),
        "Role" => Api::<Role>::namespaced(c, ns)
            .patch(name, &pp, &patch)
            .await
            .map(drop),
        "RoleBinding" => Api::<RoleBinding>::namespaced(c, ns)
            .patch(name, &pp, &patch)
            .await
            .map(drop),
        other => panic!("not an RBAC kind: {other}"),
    };
    result.unwrap_or_else(|e| panic!("applying the chart's {} {name}: {e}", doc["kind"]));
}

/// A kubeconfig for `component`'s ServiceAccount: the cluster of the current `KUBECONFIG`
/// and a TokenRequest token (2 h) of `irsa-system/<sa>`.
pub async fn kubeconfig(client: &kube::Client, component: Component) -> PathBuf {
    kubeconfig_in(client, &support::admin_kubeconfig(), component).await
}

/// [`kubeconfig`] for the cluster of the admin kubeconfig `admin_path` (`client` is its).
pub async fn kubeconfig_in(
    client: &kube::Client,
    admin_path: &std::path::Path,
    component: Component,
) -> PathBuf {
    apply_chart_rbac(client).await;
    kubeconfig_of(client, admin_path, component.service_account()).await
}

/// A kubeconfig for the ServiceAccount `irsa-system/<sa>` (its RBAC already applied) on the
/// cluster of the admin kubeconfig `admin_path`.
pub async fn kubeconfig_of(
    client: &kube::Client,
    admin_path: &std::path::Path,
    sa: &str,
) -> PathBuf {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(7200),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let token = Api::<ServiceAccount>::namespaced(client.clone(), RELEASE_NAMESPACE)
        .create_token_request(sa, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {RELEASE_NAMESPACE}/{sa}: {e}"))
        .status
        .unwrap()
        .token;

    let text = std::fs::read_to_string(admin_path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", admin_path.display()));
    let admin: Value = serde_saphyr::from_str(&text).unwrap();
    let current = admin["current-context"].as_str().unwrap().to_string();
    let context = admin["contexts"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == current.as_str()))
        .unwrap_or_else(|| panic!("context {current} in {}", admin_path.display()));
    let cluster_name = context["context"]["cluster"].clone();
    let cluster = admin["clusters"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == cluster_name))
        .unwrap()
        .clone();
    let kubeconfig = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": sa, "context": {
            "cluster": cluster_name, "user": sa, "namespace": RELEASE_NAMESPACE
        }}],
        "current-context": sa,
    });
    let path = crate::target_tmp()
        .join(unique(&format!("e2e-{sa}")))
        .with_extension("kubeconfig");
    // JSON is YAML: kubectl and kube-rs read it as a kubeconfig.
    std::fs::write(&path, kubeconfig.to_string()).unwrap();
    path
}

/// A client authenticated as `component`.
pub async fn client_as(admin: &kube::Client, component: Component) -> kube::Client {
    support::client_for(&kubeconfig(admin, component).await).await
}
