//! Installing irsa the ways the README tells a user to: `helm install` / `upgrade
//! --reuse-values` / `uninstall` of `charts/irsa` with the real helm CLI, `kubectl apply -k
//! config/default`, and `kubectl apply -f crds/` (what the controller and the doctor say when
//! the CRDs are missing). There is no kubelet or scheduler in the local control plane, so the
//! Deployments' pods are never created or stay Pending: these tests check what the API server
//! stored, not running pods (the other e2e tests run the binaries themselves).

use std::collections::BTreeSet;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use serde_json::{Value, json};

use irsa_e2e::support::{self, helm, kubectl, run, unique};

const CRDS: [&str; 3] = [
    "iamrolebindings.irsa.dev",
    "iamrolegrants.irsa.dev",
    "podidentityassociations.irsa.dev",
];

fn helm_ok(args: &[&str], stdin: &str) -> String {
    let (ok, stdout, stderr) = run(&helm(), args, stdin);
    assert!(ok, "helm {}: {stderr}\n{stdout}", args.join(" "));
    stdout
}

/// Parses a multi-document manifest, without empty documents.
fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap()
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// `kubectl get` of each object; returns the ones the API server has (as JSON).
fn existing(objects: &[Value], namespace: &str) -> Vec<Value> {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let (_, stdout, stderr) = kubectl(
        &[
            "get",
            "-n",
            namespace,
            "--ignore-not-found",
            "-o",
            "json",
            "-f",
            "-",
        ],
        &list.to_string(),
    );
    if stdout.trim().is_empty() {
        assert!(
            stderr.trim().is_empty() || stderr.contains("NotFound"),
            "kubectl get: {stderr}"
        );
        return Vec::new();
    }
    let got: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    match got["kind"].as_str() {
        Some("List") => got["items"].as_array().cloned().unwrap_or_default(),
        _ => vec![got],
    }
}

fn names(objects: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or("?"),
                o["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect();
    out.sort();
    out
}

async fn crds_established(client: &kube::Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in CRDS {
        support::wait_established(&api, name).await;
    }
}

async fn ca_bundle(client: &kube::Client, name: &str) -> String {
    let mwc = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("MutatingWebhookConfiguration {name}: {e}"));
    let bundle = mwc.webhooks.unwrap()[0]
        .client_config
        .ca_bundle
        .clone()
        .unwrap_or_else(|| panic!("{name} has no caBundle"));
    String::from_utf8(bundle.0).unwrap()
}

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn helm_install_upgrade_keeps_the_ca_and_uninstall_keeps_the_crds() {
    support::settings();
    let client = support::client().await;
    let ns = support::create_namespace(&client, "irsa-e2e-helm").await;
    let release = unique("irsa-e2e");
    let chart = irsa_e2e::repo().join("charts/irsa");
    let chart = &*chart.to_string_lossy();
    // The values a user passes (README "Install"), plus one the test needs: the webhook must
    // not intercept the pods of other tests running at once, so it selects no real namespace.
    let values = json!({
        "controller": {
            "clusterName": "e2e",
            "issuerUrl": "https://oidc.example.com/id/E2E",
            "awsRegion": "us-east-1",
            "iamRoleArn": "arn:aws:iam::123456789012:role/irsa-controller"
        },
        "webhook": {"namespaceSelectorExpressions": [{
            "key": "kubernetes.io/metadata.name", "operator": "In", "values": ["irsa-e2e-nowhere"]
        }]},
        // docs/pod-identity.md "Install with the chart": the API server takes its DaemonSet.
        "agent": {
            "enabled": true,
            "iamRoleArn": "arn:aws:iam::123456789012:role/irsa-agent"
        }
    })
    .to_string();

    helm_ok(&["lint", "--strict", chart, "-f", "-"], &values);
    helm_ok(&["install", &release, chart, "-n", &ns, "-f", "-"], &values);
    crds_established(&client).await;
    let manifest = documents(&helm_ok(&["get", "manifest", &release, "-n", &ns], ""));
    assert!(
        manifest.len() >= 10,
        "the release has objects: {}",
        names(&manifest).join(", ")
    );
    assert!(
        manifest.iter().any(|d| d["kind"] == "DaemonSet"),
        "the agent's DaemonSet is part of the release: {}",
        names(&manifest).join(", ")
    );
    let stored = existing(&manifest, &ns);
    assert_eq!(
        names(&stored),
        names(&manifest),
        "every object of the release exists"
    );
    let webhook_config = manifest
        .iter()
        .find(|d| d["kind"] == "MutatingWebhookConfiguration")
        .and_then(|d| d["metadata"]["name"].as_str())
        .unwrap()
        .to_string();
    let before = ca_bundle(&client, &webhook_config).await;
    assert!(before.contains("BEGIN CERTIFICATE"), "{before}");

    helm_ok(
        &["upgrade", &release, chart, "-n", &ns, "--reuse-values"],
        "",
    );
    let after = ca_bundle(&client, &webhook_config).await;
    assert_eq!(
        before, after,
        "helm upgrade --reuse-values keeps the generated webhook CA"
    );
    let status = helm_ok(&["status", &release, "-n", &ns, "-o", "json"], "");
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["version"], 2, "{status}");
    assert_eq!(status["info"]["status"], "deployed", "{status}");

    helm_ok(&["uninstall", &release, "-n", &ns], "");
    let left = existing(&manifest, &ns);
    assert!(
        left.is_empty(),
        "helm uninstall removed the release: {:?}",
        names(&left)
    );
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in CRDS {
        assert!(
            crds.get_opt(name).await.unwrap().is_some(),
            "helm uninstall keeps CRD {name} (and so every binding)"
        );
    }
    support::delete_namespace(&client, &ns).await;
}

/// `kubectl apply -k config/default --server-side`, through an overlay (as the README
/// suggests) that only moves it to a namespace and name prefix of its own and points the
/// webhook at no real namespace. The cert-manager objects (`Issuer`, `Certificate`) are sent
/// with `--dry-run=server`, which fails without cert-manager's CRDs: the test asserts they are
/// exactly what is missing.
#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn kubectl_apply_k_config_default_creates_everything_but_cert_manager_objects() {
    support::settings();
    let client = support::client().await;
    let ns = unique("irsa-e2e-kustomize");
    let prefix = format!("{}-", unique("e2e"));
    // Kustomize takes bases by relative path only: the overlay lives at a known depth below
    // the repository (target/ is ignored by git).
    let overlay = irsa_e2e::repo().join("target/e2e-kustomize").join(&ns);
    std::fs::create_dir_all(&overlay).unwrap();
    let base = "../../../config/default";
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             namespace: {ns}\nnamePrefix: {prefix}\nresources:\n  - {base}\n\
             patches:\n  - target: {{kind: MutatingWebhookConfiguration}}\n    patch: |-\n\
             \x20     - op: add\n        path: /webhooks/0/namespaceSelector/matchExpressions/-\n\
             \x20       value: {{key: kubernetes.io/metadata.name, operator: In, values: [irsa-e2e-nowhere]}}\n"
        ),
    )
    .unwrap();
    let dir = overlay.to_str().unwrap();
    let (ok, rendered, stderr) = kubectl(&["kustomize", dir], "");
    assert!(ok, "kubectl kustomize: {stderr}");
    let docs = documents(&rendered);
    let is_cert_manager = |d: &Value| {
        d["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("cert-manager.io/"))
    };
    let (cert_manager, rest): (Vec<Value>, Vec<Value>) =
        docs.into_iter().partition(is_cert_manager);
    let kinds: BTreeSet<&str> = cert_manager
        .iter()
        .filter_map(|d| d["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["Certificate", "Issuer"]),
        "only cert-manager's objects are set aside"
    );

    let list =
        |items: &[Value]| json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
    let (ok, _, stderr) = kubectl(
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "irsa-e2e",
            "-f",
            "-",
        ],
        &list(&rest),
    );
    assert!(
        ok,
        "kubectl apply --server-side of config/default: {stderr}"
    );
    crds_established(&client).await;
    let stored = existing(&rest, &ns);
    assert_eq!(
        names(&stored),
        names(&rest),
        "every object of config/default exists"
    );

    let (ok, _, stderr) = kubectl(
        &["apply", "--server-side", "--dry-run=server", "-f", "-"],
        &list(&cert_manager),
    );
    assert!(
        !ok && stderr.contains("cert-manager.io"),
        "without cert-manager, its objects are what the API server refuses: {stderr}"
    );

    // Remove what was applied (the CRDs stay: other tests use them).
    let removable: Vec<Value> = rest
        .into_iter()
        .filter(|d| d["kind"] != "CustomResourceDefinition")
        .collect();
    let (ok, _, stderr) = kubectl(
        &["delete", "--ignore-not-found", "--wait=false", "-f", "-"],
        &list(&removable),
    );
    assert!(ok, "kubectl delete: {stderr}");
}

/// The command the controller's and the doctor's messages give when the CRDs are missing
/// (`irsa::crd::INSTALL_COMMAND`, docs/controller.md), run as a user runs it: the real kubectl
/// from the repository's root. It exits 0, applies both CRDs and nothing else, and the API
/// server serves them. The CRDs may already be there (other tests install them): applying them
/// again is what a user repeating the command does.
#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn kubectl_apply_f_crds_as_the_messages_say_installs_the_crds() {
    support::settings();
    let client = support::client().await;
    let command: Vec<&str> = irsa::crd::INSTALL_COMMAND.split_whitespace().collect();
    assert_eq!(command[0], "kubectl", "{command:?}");
    let out = std::process::Command::new("kubectl")
        .args(&command[1..])
        .current_dir(irsa_e2e::repo())
        .output()
        .unwrap_or_else(|e| panic!("running kubectl: {e}"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "`{}` exited with {}: {stderr}\n{stdout}",
        irsa::crd::INSTALL_COMMAND,
        out.status
    );
    // One line per object: `<kind>.<group>/<name> created|configured|unchanged`.
    let applied: BTreeSet<String> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let crds: BTreeSet<String> = CRDS
        .iter()
        .map(|name| format!("customresourcedefinition.apiextensions.k8s.io/{name}"))
        .collect();
    assert_eq!(applied, crds, "{stdout}");
    crds_established(&client).await;
}
