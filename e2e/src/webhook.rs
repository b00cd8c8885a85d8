//! What the webhook e2e tests need: `irsa webhook` as a process with a test certificate, its
//! registration rendered from the chart and pointed at that process, pods created through the
//! API server, and the checks on what the API server stored.

use std::path::Path;

use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::{Value, json};

use crate::free_port;
use crate::merge;
use crate::process::Process;
use crate::support::{WAIT, helm_template, unique};
use crate::wait::wait_for;

pub const ROLE_ARN: &str = "arn:aws:iam::111122223333:role/irsa-e2e-webhook";
pub const TOKEN_VOLUME: &str = irsa::mutate::config::TOKEN_VOLUME_NAME;

/// A self-signed serving certificate for 127.0.0.1: the API server trusts it through the
/// registration's caBundle (a self-signed leaf is its own trust anchor).
pub struct TestCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCert {
    /// A fresh key and certificate each time: not a `Default`.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .unwrap();
        Self {
            cert_pem: ck.cert.pem(),
            key_pem: ck.signing_key.serialize_pem(),
        }
    }

    pub fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.cert_pem)
    }
}

/// `irsa webhook` as a child [`Process`] on free 127.0.0.1 ports, authenticated by
/// `kubeconfig` (the chart's webhook ServiceAccount), with its serving certificate. Killed on
/// drop; its log is printed when the test panics.
pub struct WebhookProcess {
    process: Process,
    pub url: String,
    pub cert: TestCert,
}

impl std::ops::Deref for WebhookProcess {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.process
    }
}

impl WebhookProcess {
    /// Starts the webhook with `extra` flags and waits until `/readyz` answers 200 (its
    /// ServiceAccount cache synced and its certificate loaded).
    pub async fn start(kubeconfig: &Path, name: &str, extra: &[&str]) -> Self {
        Self::launch(kubeconfig, name, true, extra).await
    }

    /// [`WebhookProcess::start`] without the certificate files: `extra` says where the
    /// certificate comes from (`--tls-mode self ...`).
    pub async fn start_without_files(kubeconfig: &Path, name: &str, extra: &[&str]) -> Self {
        Self::launch(kubeconfig, name, false, extra).await
    }

    async fn launch(kubeconfig: &Path, name: &str, files: bool, extra: &[&str]) -> Self {
        let dir = crate::target_tmp().join(unique(&format!("e2e-{name}")));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = TestCert::new();
        let (cert_file, key_file) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert_file, &cert.cert_pem).unwrap();
        std::fs::write(&key_file, &cert.key_pem).unwrap();
        let (port, admin) = (free_port(), format!("127.0.0.1:{}", free_port()));
        let listen = format!("127.0.0.1:{port}");
        let mut args: Vec<std::ffi::OsString> = ["webhook", "--listen", &listen]
            .into_iter()
            .chain(["--metrics-listen", &admin, "--log-format", "json"])
            .map(Into::into)
            .collect();
        if files {
            args.extend([
                "--tls-cert-file".into(),
                cert_file.into(),
                "--tls-key-file".into(),
                key_file.into(),
            ]);
        }
        args.extend(extra.iter().map(Into::into));
        let process = Process::irsa(name, args, [("KUBECONFIG", kubeconfig)], Some(admin));
        process.wait_ready(WAIT).await;
        Self {
            process,
            url: format!("https://{listen}/mutate"),
            cert,
        }
    }

    /// Starts the (killed) process again on the same ports with the same certificate and
    /// waits until it is ready.
    pub async fn restart(&self) {
        self.process.restart();
        self.process.wait_ready(WAIT).await;
    }
}

/// How a test registers the webhook; everything else comes from the chart.
pub struct Registration {
    /// Only pods of these namespaces are sent to this registration (through the chart's
    /// `webhook.namespaceSelectorExpressions`), so tests running at once never see each
    /// other's webhooks.
    pub namespaces: Vec<String>,
    pub failure_policy: &'static str,
    pub review_versions: Vec<&'static str>,
    /// Configurations are called in name order: a test that orders two webhooks picks
    /// names that sort accordingly.
    pub name: String,
    /// More chart values (e.g. `webhook.strictOptIn`).
    pub values: Value,
}

impl Registration {
    pub fn new(namespaces: &[&str]) -> Self {
        Self {
            namespaces: namespaces.iter().map(ToString::to_string).collect(),
            failure_policy: "Fail",
            review_versions: vec!["v1", "v1beta1"],
            name: unique("irsa-e2e-webhook"),
            values: json!({}),
        }
    }
}

/// The chart's MutatingWebhookConfiguration (`helm template`), with `clientConfig` pointed at
/// `url` and trusting `cert`.
pub fn chart_registration(reg: &Registration, url: &str, cert: &TestCert) -> Value {
    let mut values = json!({
        "webhook": {
            "failurePolicy": reg.failure_policy,
            "namespaceSelectorExpressions": [{
                "key": "kubernetes.io/metadata.name", "operator": "In", "values": reg.namespaces
            }]
        }
    });
    merge(&mut values, reg.values.clone());
    let mut config = helm_template("irsa", "irsa-system", &values)
        .into_iter()
        .find(|d| d["kind"] == "MutatingWebhookConfiguration")
        .expect("the chart renders a MutatingWebhookConfiguration");
    config["metadata"]["name"] = json!(reg.name);
    assert_eq!(config["webhooks"][0]["name"], "pods.irsa.dev", "{config}");
    for webhook in config["webhooks"].as_array_mut().unwrap() {
        webhook["clientConfig"] = json!({"url": url, "caBundle": cert.ca_bundle()});
        webhook["admissionReviewVersions"] = json!(reg.review_versions);
    }
    config
}

/// `irsa webhook` (as the chart's webhook ServiceAccount) registered the chart's way for `ns`
/// with `failure_policy`, returned once the API server calls it (a pod of ServiceAccount `app`
/// comes back mutated), with the registration's name for [`unregister`].
pub async fn serve_namespace(
    client: &kube::Client,
    ns: &str,
    name: &str,
    failure_policy: &'static str,
) -> (WebhookProcess, String) {
    let kubeconfig = crate::identity::kubeconfig(client, crate::identity::Component::Webhook).await;
    let webhook = WebhookProcess::start(&kubeconfig, name, &[]).await;
    let mut reg = Registration::new(&[ns]);
    reg.failure_policy = failure_policy;
    let registration = register(
        client,
        &chart_registration(&reg, &webhook.url, &webhook.cert),
    )
    .await;
    wait_until_mutating(client, ns, "app", json!({})).await;
    (webhook, registration)
}

/// Creates the registration and returns its name; the test removes it with [`unregister`].
pub async fn register(client: &kube::Client, config: &Value) -> String {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let typed: MutatingWebhookConfiguration = serde_json::from_value(config.clone()).unwrap();
    let created = api
        .create(&PostParams::default(), &typed)
        .await
        .unwrap_or_else(|e| panic!("creating MutatingWebhookConfiguration: {e}\n{config}"));
    created.metadata.name.unwrap()
}

pub async fn unregister(client: &kube::Client, name: &str) {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    if let Err(e) = api.delete(name, &DeleteParams::default()).await {
        println!("note: deleting MutatingWebhookConfiguration {name}: {e}");
    }
}

pub async fn create_service_account(client: &kube::Client, ns: &str, name: &str, ann: Value) {
    let sa: ServiceAccount = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": name, "annotations": ann}
    }))
    .unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &sa)
        .await
        .unwrap_or_else(|e| panic!("creating ServiceAccount {ns}/{name}: {e}"));
}

/// A fresh namespace (name starting with `prefix`) holding ServiceAccount `app`, annotated
/// with [`ROLE_ARN`] under the suite's annotation prefix: what the webhook injects for.
pub async fn namespace_with_annotated_app(client: &kube::Client, prefix: &str) -> String {
    let ns = crate::support::create_namespace(client, prefix).await;
    let annotation = format!("{}/role-arn", crate::support::settings().annotation_prefix);
    create_service_account(client, &ns, "app", json!({annotation: ROLE_ARN})).await;
    ns
}

/// A pod with one container `app` (plus `extra` merged into its metadata/spec).
pub fn pod(name: &str, service_account: &str, extra: Value) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "serviceAccountName": service_account,
            "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]
        }
    });
    merge(&mut pod, extra);
    pod
}

/// Creates `pod` through the API server (admission runs) and returns what it stored.
pub async fn create_pod(client: &kube::Client, ns: &str, pod: &Value) -> kube::Result<Value> {
    let typed: Pod = serde_json::from_value(pod.clone()).unwrap();
    let created = Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &typed)
        .await?;
    Ok(serde_json::to_value(created).unwrap())
}

/// Dry-run creates of a throwaway pod (`extra` merged in, e.g. labels) until it comes back
/// mutated: the API server picks up a new registration asynchronously, so a test waits for it
/// before it relies on it.
pub async fn wait_until_mutating(
    client: &kube::Client,
    ns: &str,
    service_account: &str,
    extra: Value,
) {
    let probe: Pod = serde_json::from_value(pod(&unique("probe"), service_account, extra)).unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    wait_for(
        &format!("the API server to call the registered webhook for pods in {ns}"),
        WAIT,
        || async {
            let created = pods.create(&dry_run, &probe).await.ok()?;
            has_token_volume(&serde_json::to_value(created).unwrap()).then_some(())
        },
    )
    .await;
}

pub fn has_token_volume(pod: &Value) -> bool {
    volumes(pod, TOKEN_VOLUME) == 1
}

/// How many volumes named `name` the pod has.
pub fn volumes(pod: &Value, name: &str) -> usize {
    pod["spec"]["volumes"]
        .as_array()
        .map_or(0, |v| v.iter().filter(|v| v["name"] == name).count())
}

pub fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["spec"]["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no container {name}: {pod}"))
}

/// The values of every env var `name` of a container (a duplicate shows as two).
pub fn env<'a>(container: &'a Value, name: &str) -> Vec<&'a str> {
    container["env"].as_array().map_or_else(Vec::new, |env| {
        env.iter()
            .filter(|e| e["name"] == name)
            .map(|e| e["value"].as_str().unwrap_or(""))
            .collect()
    })
}

pub fn mounts(container: &Value, volume: &str) -> usize {
    container["volumeMounts"]
        .as_array()
        .map_or(0, |m| m.iter().filter(|m| m["name"] == volume).count())
}

/// Asserts a container got IRSA credentials exactly once.
pub fn assert_injected(pod: &Value, name: &str, role_arn: &str) {
    let c = container(pod, name);
    assert_eq!(env(c, "AWS_ROLE_ARN"), vec![role_arn], "{name}: {c}");
    assert_eq!(
        env(c, "AWS_WEB_IDENTITY_TOKEN_FILE"),
        vec!["/var/run/secrets/eks.amazonaws.com/serviceaccount/token"],
        "{name}: {c}"
    );
    assert_eq!(mounts(c, TOKEN_VOLUME), 1, "{name}: {c}");
}

pub fn assert_untouched(pod: &Value) {
    assert_eq!(volumes(pod, TOKEN_VOLUME), 0, "{pod}");
    for c in pod["spec"]["containers"].as_array().unwrap() {
        assert!(env(c, "AWS_ROLE_ARN").is_empty(), "{c}");
    }
}
