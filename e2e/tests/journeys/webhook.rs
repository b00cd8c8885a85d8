//! `irsa webhook` through the real API server: registered the way the chart registers it
//! (its MutatingWebhookConfiguration, pointed at a local process), pods created through the
//! API server, and the stored pod checked.

use std::sync::Arc;

use base64::Engine;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::PostParams;

use irsa::crd::PodIdentityAssociation;
use serde_json::{Value, json};

use irsa_e2e::identity::{self, Component};
use irsa_e2e::support::{self, WAIT, kubectl};
use irsa_e2e::wait::wait_for;
use irsa_e2e::webhook::{
    ROLE_ARN, Registration, TOKEN_VOLUME, WebhookProcess, assert_injected, assert_untouched,
    chart_registration, container, create_pod, create_service_account, env, has_token_volume,
    mounts, pod, register, unregister, volumes, wait_until_mutating,
};

/// One test's world: a client, namespaces (all selected by its registrations), the webhook
/// process and the registrations to remove at the end.
struct Case {
    client: kube::Client,
    /// The webhook's identity: the chart's ServiceAccount with the chart's RBAC.
    kubeconfig: std::path::PathBuf,
    prefix: String,
    namespaces: Vec<String>,
    registrations: Vec<String>,
}

impl Case {
    async fn new() -> Self {
        let settings = support::settings();
        let client = support::client().await;
        let kubeconfig = identity::kubeconfig(&client, Component::Webhook).await;
        Self {
            client,
            kubeconfig,
            prefix: settings.annotation_prefix,
            namespaces: Vec::new(),
            registrations: Vec::new(),
        }
    }

    /// A fresh namespace (with `labels`) holding the annotated ServiceAccount `app`.
    async fn namespace(&mut self, labels: Value) -> String {
        let ns = support::create_namespace(&self.client, "irsa-e2e-webhook").await;
        if labels.as_object().is_some_and(|l| !l.is_empty()) {
            let patch = json!({"metadata": {"labels": labels}});
            Api::<Namespace>::all(self.client.clone())
                .patch(
                    &ns,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await
                .unwrap();
        }
        self.annotated_sa(&ns, "app", json!({})).await;
        self.namespaces.push(ns.clone());
        ns
    }

    async fn annotated_sa(&self, ns: &str, name: &str, more: Value) {
        let mut ann = json!({format!("{}/role-arn", self.prefix): ROLE_ARN});
        if let (Some(a), Some(m)) = (ann.as_object_mut(), more.as_object()) {
            a.extend(m.clone());
        }
        create_service_account(&self.client, ns, name, ann).await;
    }

    /// Registers the chart's webhook for `namespaces` at `webhook`, then waits until the API
    /// server calls it for pods of the first namespace.
    async fn register(&mut self, reg: Registration, webhook: &WebhookProcess) {
        let config = chart_registration(&reg, &webhook.url, &webhook.cert);
        let name = register(&self.client, &config).await;
        self.registrations.push(name);
        for ns in &reg.namespaces {
            wait_until_mutating(&self.client, ns, "app", json!({})).await;
        }
    }

    async fn create(&self, ns: &str, pod: &Value) -> Value {
        create_pod(&self.client, ns, pod)
            .await
            .unwrap_or_else(|e| panic!("creating pod in {ns}: {e}\n{pod}"))
    }

    async fn finish(self) {
        for name in &self.registrations {
            unregister(&self.client, name).await;
        }
        for ns in &self.namespaces {
            support::delete_namespace(&self.client, ns).await;
        }
    }
}

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn pod_of_an_annotated_serviceaccount_is_mutated() {
    let mut case = Case::new().await;
    let ns = case.namespace(json!({})).await;
    let webhook = WebhookProcess::start(&case.kubeconfig, "mutated", &[]).await;
    case.register(Registration::new(&[&ns]), &webhook).await;

    let stored = case.create(&ns, &pod("app", "app", json!({}))).await;
    assert_injected(&stored, "app", ROLE_ARN);
    let volume = stored["spec"]["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == TOKEN_VOLUME))
        .unwrap_or_else(|| panic!("no {TOKEN_VOLUME} volume: {stored}"));
    assert_eq!(
        volume["projected"]["sources"][0]["serviceAccountToken"],
        json!({"audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"}),
        "{volume}"
    );
    // The API server's own ServiceAccount admission still ran: its token volume is there too.
    assert!(
        stored["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"]
                .as_str()
                .unwrap_or("")
                .starts_with("kube-api-access-")),
        "{stored}"
    );
    webhook.assert_running();
    case.finish().await;
}

/// The reference webhook's race with a new ServiceAccount: one created right before its pod (as one
/// `kubectl apply` of both does) is not in the cache yet; the direct lookup still finds it.
#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn service_account_created_just_before_its_pod_is_honoured() {
    let mut case = Case::new().await;
    let ns = case.namespace(json!({})).await;
    let webhook = WebhookProcess::start(&case.kubeconfig, "race", &[]).await;
    case.register(Registration::new(&[&ns]), &webhook).await;

    for i in 0..5 {
        let sa = format!("fresh-{i}");
        case.annotated_sa(&ns, &sa, json!({})).await;
        let stored = case
            .create(&ns, &pod(&format!("fresh-{i}"), &sa, json!({})))
            .await;
        assert_injected(&stored, "app", ROLE_ARN);
    }
    webhook.assert_running();
    case.finish().await;
}

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn skip_labels_and_skip_containers_are_honoured() {
    let mut case = Case::new().await;
    let ns = case.namespace(json!({})).await;
    let skipped_ns = case.namespace(json!({"irsa.dev/skip": "true"})).await;
    let webhook = WebhookProcess::start(&case.kubeconfig, "skip", &[]).await;
    // Only the first namespace is probed: the second is excluded by the chart's selector.
    let config = chart_registration(
        &Registration::new(&[&ns, &skipped_ns]),
        &webhook.url,
        &webhook.cert,
    );
    case.registrations
        .push(register(&case.client, &config).await);
    wait_until_mutating(&case.client, &ns, "app", json!({})).await;

    let labels = [
        "irsa.dev/skip",
        "eks.amazonaws.com/skip-pod-identity-webhook",
    ];
    for (i, label) in labels.into_iter().enumerate() {
        let name = format!("skip-{i}");
        let extra = json!({"metadata": {"labels": {label: "true"}}});
        let stored = case.create(&ns, &pod(&name, "app", extra)).await;
        assert_untouched(&stored);
    }
    let stored = case
        .create(&skipped_ns, &pod("in-skipped-ns", "app", json!({})))
        .await;
    assert_untouched(&stored);

    let two = json!({
        "metadata": {"annotations": {format!("{}/skip-containers", case.prefix): "sidecar"}},
        "spec": {"containers": [
            {"name": "app", "image": "registry.k8s.io/pause:3.10"},
            {"name": "sidecar", "image": "registry.k8s.io/pause:3.10"}
        ]}
    });
    let stored = case.create(&ns, &pod("partly", "app", two)).await;
    assert_injected(&stored, "app", ROLE_ARN);
    let sidecar = container(&stored, "sidecar");
    assert!(env(sidecar, "AWS_ROLE_ARN").is_empty(), "{sidecar}");
    assert_eq!(mounts(sidecar, TOKEN_VOLUME), 0, "{sidecar}");
    webhook.assert_running();
    case.finish().await;
}

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn pod_identity_through_an_identities_file() {
    let mut case = Case::new().await;
    let ns = case.namespace(json!({})).await;
    create_service_account(&case.client, &ns, "pi", json!({})).await;
    let file = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(support::unique("e2e-identities"))
        .with_extension("json");
    let identities = json!({"identities": [{"namespace": ns, "serviceAccount": "pi"}]});
    std::fs::write(&file, identities.to_string()).unwrap();
    let webhook = WebhookProcess::start(
        &case.kubeconfig,
        "pod-identity",
        &["--container-credentials-config", file.to_str().unwrap()],
    )
    .await;
    case.register(Registration::new(&[&ns]), &webhook).await;

    let stored = case.create(&ns, &pod("pi", "pi", json!({}))).await;
    assert_eq!(volumes(&stored, "eks-pod-identity-token"), 1, "{stored}");
    assert_eq!(volumes(&stored, TOKEN_VOLUME), 0, "{stored}");
    let app = container(&stored, "app");
    assert_eq!(
        env(app, "AWS_CONTAINER_CREDENTIALS_FULL_URI"),
        vec!["http://169.254.170.23/v1/credentials"],
        "{app}"
    );
    assert_eq!(
        env(app, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
        vec!["/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token"],
        "{app}"
    );
    assert!(env(app, "AWS_ROLE_ARN").is_empty(), "{app}");
    assert_eq!(
        stored["metadata"]["labels"]["eks.amazonaws.com/pod-identity"], "enabled",
        "{stored}"
    );
    let token = &stored["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "eks-pod-identity-token")
        .unwrap()["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(token["audience"], "pods.eks.amazonaws.com", "{token}");
    webhook.assert_running();
    case.finish().await;
}

/// `--pod-identity-associations` (the chart's with `agent.enabled`): a ServiceAccount with a
/// `PodIdentityAssociation` gets container credentials, even when it also carries a role
/// annotation; an association made or deleted while the webhook runs counts for the next pod.
#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn pod_identity_through_an_association() {
    let mut case = Case::new().await;
    support::install_crds(&case.client).await;
    let ns = case.namespace(json!({})).await;
    let associations = Api::<PodIdentityAssociation>::namespaced(case.client.clone(), &ns);
    let client = case.client.clone();
    let associate = async |service_account: &str| {
        let association = support::association(service_account, service_account, ROLE_ARN);
        support::create_association(&client, &ns, &association).await;
    };
    // Listed at start: `pi` has no role annotation, only an association.
    create_service_account(&case.client, &ns, "pi", json!({})).await;
    associate("pi").await;
    let webhook = WebhookProcess::start(
        &case.kubeconfig,
        "associations",
        &["--pod-identity-associations"],
    )
    .await;
    case.register(Registration::new(&[&ns]), &webhook).await;

    let stored = case.create(&ns, &pod("pi", "pi", json!({}))).await;
    assert!(is_pod_identity(&stored), "{stored}");
    let app = container(&stored, "app");
    assert_eq!(
        env(app, "AWS_CONTAINER_CREDENTIALS_FULL_URI"),
        vec!["http://169.254.170.23/v1/credentials"],
        "{app}"
    );

    // Made while the webhook runs, for the annotated `app`: the association wins.
    associate("app").await;
    let pods = Api::<Pod>::namespaced(case.client.clone(), &ns);
    let dry_run = async || {
        let probe: Pod =
            serde_json::from_value(pod(&support::unique("probe"), "app", json!({}))).unwrap();
        let created = pods
            .create(
                &PostParams {
                    dry_run: true,
                    ..PostParams::default()
                },
                &probe,
            )
            .await
            .ok()?;
        Some(serde_json::to_value(created).unwrap())
    };
    wait_for(
        "the new association to reach the webhook",
        WAIT,
        async || dry_run().await.filter(is_pod_identity),
    )
    .await;

    // Deleted: `app` is back to IRSA through its annotation.
    associations
        .delete("app", &Default::default())
        .await
        .unwrap();
    let stored = wait_for(
        "the deleted association to leave the webhook",
        WAIT,
        async || dry_run().await.filter(has_token_volume),
    )
    .await;
    assert!(!is_pod_identity(&stored), "{stored}");
    assert_eq!(
        env(container(&stored, "app"), "AWS_ROLE_ARN"),
        vec![ROLE_ARN]
    );
    webhook.assert_running();
    case.finish().await;
}

/// The pod got container credentials and nothing of IRSA.
fn is_pod_identity(stored: &Value) -> bool {
    volumes(stored, "eks-pod-identity-token") == 1
        && volumes(stored, TOKEN_VOLUME) == 0
        && env(container(stored, "app"), "AWS_ROLE_ARN").is_empty()
        && stored["metadata"]["labels"]["eks.amazonaws.com/pod-identity"] == "enabled"
}

/// The reference webhook answered v1 reviews without the envelope's apiVersion/kind and was
/// rejected by non-EKS API servers; both review versions must be accepted by a real one.
#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn both_review_versions_are_accepted() {
    let mut case = Case::new().await;
    let webhook = WebhookProcess::start(&case.kubeconfig, "versions", &[]).await;
    for version in ["v1", "v1beta1"] {
        // A namespace per version: a registration removed a moment ago may still be cached by
        // the API server, and must not answer for the other version.
        let ns = case.namespace(json!({})).await;
        let mut reg = Registration::new(&[&ns]);
        reg.review_versions = vec![version];
        case.register(reg, &webhook).await;
        let stored = case.create(&ns, &pod("app", "app", json!({}))).await;
        assert_injected(&stored, "app", ROLE_ARN);
    }
    webhook.assert_running();
    case.finish().await;
}

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn webhook_down_ignore_admits_unmutated_and_fail_rejects() {
    let mut case = Case::new().await;
    let ignore_ns = case.namespace(json!({})).await;
    let fail_ns = case.namespace(json!({})).await;
    let webhook = WebhookProcess::start(&case.kubeconfig, "down", &[]).await;
    let mut ignore = Registration::new(&[&ignore_ns]);
    ignore.failure_policy = "Ignore";
    case.register(ignore, &webhook).await;
    case.register(Registration::new(&[&fail_ns]), &webhook)
        .await;

    webhook.kill();
    let stored = case.create(&ignore_ns, &pod("app", "app", json!({}))).await;
    assert_untouched(&stored);

    let typed: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(pod("app", "app", json!({}))).unwrap();
    let err = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(case.client.clone(), &fail_ns)
        .create(&PostParams::default(), &typed)
        .await
        .expect_err("failurePolicy Fail rejects the pod while the webhook is down");
    let message = err.to_string();
    assert!(
        message.contains("failed calling webhook") && message.contains("pods.irsa.dev"),
        "the API server names the webhook it could not call: {message}"
    );
    case.finish().await;
}

/// A second webhook, called after ours, adds a container; `reinvocationPolicy: IfNeeded` (the
/// chart's default) makes the API server call ours again, which gives the new container
/// credentials and duplicates nothing.
#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn a_container_added_by_a_later_webhook_gets_credentials_on_reinvocation() {
    let mut case = Case::new().await;
    let ns = case.namespace(json!({})).await;
    let webhook = WebhookProcess::start(&case.kubeconfig, "reinvoke", &[]).await;
    // Configurations are called in name order: ours first, the sidecar adder second.
    let suffix = support::unique("reinvoke");
    let mut ours = Registration::new(&[&ns]);
    ours.name = format!("irsa-e2e-a-{suffix}");
    case.register(ours, &webhook).await;

    let adder = SidecarAdder::start().await;
    let mut config = chart_registration(&Registration::new(&[&ns]), &adder.url, &adder.cert);
    config["metadata"]["name"] = json!(format!("irsa-e2e-z-{suffix}"));
    config["webhooks"][0]["name"] = json!("sidecar.e2e.irsa.dev");
    config["webhooks"][0]["reinvocationPolicy"] = json!("Never");
    case.registrations
        .push(register(&case.client, &config).await);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(case.client.clone(), &ns);
    let probe: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(pod("probe", "app", json!({}))).unwrap();
    wait_for("the API server to call the sidecar adder", WAIT, || async {
        let created = pods.create(&dry_run, &probe).await.ok()?;
        let v = serde_json::to_value(created).unwrap();
        (v["spec"]["containers"].as_array()?.len() == 2).then_some(())
    })
    .await;

    let stored = case.create(&ns, &pod("app", "app", json!({}))).await;
    assert_eq!(
        stored["spec"]["containers"].as_array().unwrap().len(),
        2,
        "{stored}"
    );
    assert_injected(&stored, "app", ROLE_ARN);
    assert_injected(&stored, "sidecar", ROLE_ARN);
    assert!(has_token_volume(&stored), "one token volume: {stored}");
    assert!(
        adder.calls() >= 1,
        "the adder was called ({} calls)",
        adder.calls()
    );
    webhook.assert_running();
    case.finish().await;
}

/// An invalid annotation value is injected with the default (as the reference does) and the
/// API client is told: kubectl prints the admission warning.
#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn invalid_annotation_reaches_the_client_as_a_warning() {
    let mut case = Case::new().await;
    let ns = case.namespace(json!({})).await;
    let expiration = format!("{}/token-expiration", case.prefix);
    case.annotated_sa(&ns, "bad", json!({expiration.clone(): "soon"}))
        .await;
    let webhook = WebhookProcess::start(&case.kubeconfig, "warning", &[]).await;
    case.register(Registration::new(&[&ns]), &webhook).await;

    let manifest = pod("bad", "bad", json!({})).to_string();
    let (ok, stdout, stderr) = kubectl(&["-n", &ns, "create", "-o", "json", "-f", "-"], &manifest);
    assert!(ok, "kubectl create failed: {stderr}");
    assert!(
        stderr.contains("Warning:") && stderr.contains(&expiration) && stderr.contains("soon"),
        "kubectl shows the admission warning about {expiration}: {stderr}"
    );
    let stored: Value = serde_json::from_str(&stdout).unwrap();
    assert_injected(&stored, "app", ROLE_ARN);
    let token = &stored["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == TOKEN_VOLUME)
        .unwrap()["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(
        token["expirationSeconds"], 86400,
        "the default is used: {token}"
    );
    webhook.assert_running();
    case.finish().await;
}

/// A minimal second mutating webhook (in this test process, TLS on 127.0.0.1) that adds a
/// container named `sidecar` to every pod that lacks one.
struct SidecarAdder {
    url: String,
    cert: irsa_e2e::webhook::TestCert,
    calls: Arc<std::sync::atomic::AtomicUsize>,
}

impl SidecarAdder {
    async fn start() -> Self {
        use axum::{Json, Router, routing::post};
        let cert = irsa_e2e::webhook::TestCert::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = calls.clone();
        let app = Router::new().route(
            "/mutate",
            post(move |Json(review): Json<Value>| async move {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Json(add_sidecar(&review))
            }),
        );
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
            cert.cert_pem.clone().into_bytes(),
            cert.key_pem.clone().into_bytes(),
        )
        .await
        .unwrap();
        let server = axum_server::from_tcp_rustls(listener, tls).unwrap();
        tokio::spawn(async move { server.serve(app.into_make_service()).await });
        Self {
            url: format!("https://127.0.0.1:{port}/mutate"),
            cert,
            calls,
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn add_sidecar(review: &Value) -> Value {
    let request = &review["request"];
    let has_sidecar = request["object"]["spec"]["containers"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["name"] == "sidecar"));
    let mut response = json!({"uid": request["uid"], "allowed": true});
    if !has_sidecar {
        let patch = json!([{
            "op": "add", "path": "/spec/containers/-",
            "value": {"name": "sidecar", "image": "registry.k8s.io/pause:3.10"}
        }]);
        response["patchType"] = json!("JSONPatch");
        response["patch"] =
            json!(base64::engine::general_purpose::STANDARD.encode(patch.to_string()));
    }
    json!({"apiVersion": review["apiVersion"], "kind": "AdmissionReview", "response": response})
}

/// `webhook.strictOptIn`: a pod labelled `irsa.dev/inject: "true"`, and any pod of a namespace
/// so labelled, is rejected while the webhook is down (never started without credentials);
/// other pods are admitted unmutated (`failurePolicy: Ignore`); once the webhook is back, all
/// are mutated.
#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn strict_opt_in_rejects_labelled_pods_while_down_and_mutates_all_once_up() {
    let mut case = Case::new().await;
    let ns = case.namespace(json!({})).await;
    let strict_ns = case.namespace(json!({"irsa.dev/inject": "true"})).await;
    let webhook = WebhookProcess::start(&case.kubeconfig, "strict", &[]).await;
    let mut reg = Registration::new(&[&ns, &strict_ns]);
    reg.failure_policy = "Ignore";
    reg.values = json!({"webhook": {"strictOptIn": {"enabled": true}}});
    let config = chart_registration(&reg, &webhook.url, &webhook.cert);
    let names: Vec<&str> = config["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "pods.irsa.dev",
            "strict-pods.irsa.dev",
            "strict-namespaces.irsa.dev"
        ]
    );
    case.registrations
        .push(register(&case.client, &config).await);
    // Each of the three webhooks answers before the test relies on it.
    wait_until_mutating(&case.client, &ns, "app", json!({})).await;
    wait_until_mutating(&case.client, &strict_ns, "app", json!({})).await;
    let labelled = json!({"metadata": {"labels": {"irsa.dev/inject": "true"}}});
    wait_until_mutating(&case.client, &ns, "app", labelled.clone()).await;

    webhook.kill();
    for (namespace, name, extra, webhook_name) in [
        (&ns, "labelled", labelled.clone(), "strict-pods.irsa.dev"),
        (
            &strict_ns,
            "in-labelled-ns",
            json!({}),
            "strict-namespaces.irsa.dev",
        ),
    ] {
        let err = create_pod(&case.client, namespace, &pod(name, "app", extra))
            .await
            .expect_err("a strict pod is rejected while the webhook is down");
        let message = err.to_string();
        assert!(
            message.contains("failed calling webhook") && message.contains(webhook_name),
            "{webhook_name} rejected {namespace}/{name}: {message}"
        );
    }
    let admitted = case.create(&ns, &pod("unlabelled", "app", json!({}))).await;
    assert_untouched(&admitted);

    webhook.restart().await;
    for (namespace, name, extra) in [
        (&ns, "labelled", labelled.clone()),
        (&strict_ns, "in-labelled-ns", json!({})),
        (&ns, "unlabelled-2", json!({})),
    ] {
        let stored = case.create(namespace, &pod(name, "app", extra)).await;
        assert_injected(&stored, "app", ROLE_ARN);
    }
    webhook.assert_running();
    case.finish().await;
}
