//! `irsa webhook --tls-mode self` against the real API server: the webhook creates its CA and
//! certificate in the chart's (empty) Secret, fills the caBundle of the chart's
//! MutatingWebhookConfiguration, restores a caBundle someone else changed, and rotates its
//! certificate and CA while pods keep being admitted. The process runs as the ServiceAccount of
//! a release rendered with `tls.mode: self`, with exactly that release's RBAC.

use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;

use irsa_e2e::identity::{self, RELEASE_NAMESPACE};
use irsa_e2e::metrics::{self, metric};
use irsa_e2e::support::{self, helm_template, unique};
use irsa_e2e::wait::wait_for;
use irsa_e2e::webhook::{
    ROLE_ARN, Registration, TestCert, WebhookProcess, assert_injected, chart_registration,
    create_pod, has_token_volume, namespace_with_annotated_app, pod, register, unregister,
    wait_until_mutating,
};

/// One self-managed webhook: its release (RBAC, Secret, configuration names), a namespace
/// with the annotated ServiceAccount `app`, and the process.
struct Case {
    client: kube::Client,
    secret: String,
    configuration: String,
    ns: String,
    webhook: WebhookProcess,
    /// How to start another replica of the same release.
    kubeconfig: std::path::PathBuf,
    args: Vec<String>,
}

impl Case {
    /// `release`: distinct per test (tests run at once); `flags`: more webhook flags.
    async fn start(release: &str, flags: &[&str]) -> Self {
        let client = support::client().await;
        let values = json!({"tls": {"mode": "self"}});
        let docs = helm_template(release, RELEASE_NAMESPACE, &values);
        identity::apply_rbac(&client, &identity::rbac_of(release, &values)).await;

        // The chart's empty Secret, fresh: a previous run's CA must not be reused.
        let secret: Secret = docs
            .iter()
            .find(|d| d["kind"] == "Secret")
            .map(|d| serde_json::from_value(d.clone()).unwrap())
            .expect("tls.mode=self renders the Secret");
        assert_eq!(secret.data, None, "the chart renders no certificate");
        let secret_name = secret.metadata.name.clone().unwrap();
        let secrets: Api<Secret> = Api::namespaced(client.clone(), RELEASE_NAMESPACE);
        let _ = secrets.delete(&secret_name, &DeleteParams::default()).await;
        wait_for("the old Secret to go", support::WAIT, || async {
            secrets
                .get_opt(&secret_name)
                .await
                .unwrap()
                .is_none()
                .then_some(())
        })
        .await;
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();

        let sa = format!("{release}-webhook");
        let kubeconfig = identity::kubeconfig_of(&client, &support::admin_kubeconfig(), &sa).await;
        let configuration = format!("{release}-webhook");
        let args: Vec<String> = [
            "--tls-mode",
            "self",
            "--tls-secret",
            &secret_name,
            "--tls-secret-namespace",
            RELEASE_NAMESPACE,
            "--webhook-configuration",
            &configuration,
            "--tls-dns-name",
            "127.0.0.1",
        ]
        .iter()
        .chain(flags)
        .map(ToString::to_string)
        .collect();
        let webhook = replica(&kubeconfig, release, &args).await;

        let ns = namespace_with_annotated_app(&client, "irsa-e2e-selftls").await;
        Self {
            client,
            secret: secret_name,
            configuration,
            ns,
            webhook,
            kubeconfig,
            args,
        }
    }

    /// Another replica of the same release (same Secret and configuration, its own ports).
    async fn replica(&self, name: &str) -> WebhookProcess {
        replica(&self.kubeconfig, name, &self.args).await
    }

    /// Registers the chart's tls.mode=self configuration (failurePolicy Fail, no caBundle)
    /// pointed at the process, and waits until the webhook has filled in the caBundle and the
    /// API server calls it.
    async fn register(&self) {
        let mut reg = Registration::new(&[&self.ns]);
        reg.name = self.configuration.clone();
        reg.values = json!({"tls": {"mode": "self"}});
        let mut config = chart_registration(&reg, &self.webhook.url, &self.webhook.cert);
        for webhook in config["webhooks"].as_array_mut().unwrap() {
            webhook["clientConfig"]
                .as_object_mut()
                .unwrap()
                .remove("caBundle");
        }
        // A leftover of an earlier run would hold another CA.
        unregister(&self.client, &self.configuration).await;
        register(&self.client, &config).await;
        wait_until_mutating(&self.client, &self.ns, "app", json!({})).await;
    }

    /// The Secret's `ca.crt` and every webhook's caBundle.
    async fn bundles(&self) -> (Vec<u8>, Vec<Vec<u8>>) {
        let secret = Api::<Secret>::namespaced(self.client.clone(), RELEASE_NAMESPACE)
            .get(&self.secret)
            .await
            .unwrap();
        let ca = secret
            .data
            .unwrap_or_default()
            .get("ca.crt")
            .map(|b| b.0.clone())
            .unwrap_or_default();
        let config = Api::<MutatingWebhookConfiguration>::all(self.client.clone())
            .get(&self.configuration)
            .await
            .unwrap();
        let bundles = config
            .webhooks
            .unwrap_or_default()
            .into_iter()
            .map(|w| w.client_config.ca_bundle.map(|b| b.0).unwrap_or_default())
            .collect();
        (ca, bundles)
    }

    async fn finish(self) {
        unregister(&self.client, &self.configuration).await;
        self.webhook.assert_running();
        support::delete_namespace(&self.client, &self.ns).await;
    }
}

async fn replica(kubeconfig: &std::path::Path, name: &str, args: &[String]) -> WebhookProcess {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    WebhookProcess::start_without_files(kubeconfig, name, &args).await
}

/// The PEM certificates of a bundle.
fn certificates(bundle: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bundle);
    text.split_inclusive("-----END CERTIFICATE-----\n")
        .filter(|c| c.contains("BEGIN CERTIFICATE"))
        .map(String::from)
        .collect()
}

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn a_ca_bundle_someone_changed_is_restored_and_pods_are_mutated_again() {
    let case = Case::start("irsa-e2e-selftls-repair", &["--tls-check-interval", "5s"]).await;
    case.register().await;
    let stored = create_pod(&case.client, &case.ns, &pod("before", "app", json!({})))
        .await
        .unwrap();
    assert_injected(&stored, "app", ROLE_ARN);
    let (ca, bundles) = case.bundles().await;
    assert_eq!(certificates(&ca).len(), 1, "one CA");
    assert!(bundles.iter().all(|b| *b == ca), "every caBundle is the CA");

    // Someone replaces the caBundle with another CA: the API server can no longer call the
    // webhook. The watch sees it; the restore must not wait for the 5s period.
    let configs: Api<MutatingWebhookConfiguration> = Api::all(case.client.clone());
    let mut config = configs.get(&case.configuration).await.unwrap();
    let wrong = TestCert::new().cert_pem.into_bytes();
    for webhook in config.webhooks.iter_mut().flatten() {
        webhook.client_config.ca_bundle = Some(k8s_openapi::ByteString(wrong.clone()));
    }
    configs
        .replace(&case.configuration, &PostParams::default(), &config)
        .await
        .unwrap();
    let changed = Instant::now();
    wait_for(
        "the webhook to restore its caBundle",
        Duration::from_secs(30),
        || async {
            let (now, bundles) = case.bundles().await;
            (now == ca && bundles.iter().all(|b| *b == ca)).then_some(())
        },
    )
    .await;
    println!("caBundle restored {:?} after the change", changed.elapsed());
    let metrics = case.webhook.metrics().await;
    assert_eq!(
        metric(&metrics, "irsa_webhook_tls_ca_bundle_repairs_total"),
        1.0,
        "the one repair is counted; filling in the empty caBundle was none: {metrics}"
    );

    wait_until_mutating(&case.client, &case.ns, "app", json!({})).await;
    let stored = create_pod(&case.client, &case.ns, &pod("after", "app", json!({})))
        .await
        .unwrap();
    assert_injected(&stored, "app", ROLE_ARN);
    case.finish().await;
}

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn certificate_and_ca_rotate_while_every_admission_succeeds() {
    // A serving certificate renewed every ~4s, a CA replaced every ~10s with a 2s overlap.
    let case = Case::start(
        "irsa-e2e-selftls-rotate",
        &[
            "--tls-cert-validity",
            "6s",
            "--tls-ca-validity",
            "15s",
            "--tls-ca-overlap",
            "2s",
            "--tls-check-interval",
            "500ms",
        ],
    )
    .await;
    case.register().await;
    // A second replica races the first for every write (the API server calls the first one):
    // optimistic concurrency, no leader election.
    let second = case.replica("irsa-e2e-selftls-rotate-2").await;
    let (first_ca, _) = case.bundles().await;
    let first_cas = certificates(&first_ca);

    let pods: Api<Pod> = Api::namespaced(case.client.clone(), &case.ns);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let (mut admitted, mut unmutated, mut failed) = (0u32, 0u32, Vec::new());
    let mut serving = std::collections::BTreeSet::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(40) {
        let probe: Pod = serde_json::from_value(pod(&unique("rot"), "app", json!({}))).unwrap();
        match pods.create(&dry_run, &probe).await {
            Ok(created) => {
                admitted += 1;
                if !has_token_volume(&serde_json::to_value(created).unwrap()) {
                    unmutated += 1;
                }
            }
            Err(e) => failed.push(format!("{:?}: {e}", started.elapsed())),
        }
        if admitted % 20 == 0 {
            let secret = Api::<Secret>::namespaced(case.client.clone(), RELEASE_NAMESPACE)
                .get(&case.secret)
                .await
                .unwrap();
            if let Some(crt) = secret.data.unwrap_or_default().get("tls.crt") {
                serving.insert(crt.0.clone());
            }
        }
    }
    let (last_ca, bundles) = case.bundles().await;
    let last_cas = certificates(&last_ca);
    println!(
        "{admitted} admissions in {:?}, {} serving certificates seen, CAs at the start {}, at the end {}",
        started.elapsed(),
        serving.len(),
        first_cas.len(),
        last_cas.len()
    );
    assert!(failed.is_empty(), "failed admissions: {failed:#?}");
    assert_eq!(unmutated, 0, "of {admitted} admitted pods");
    assert!(admitted >= 100, "only {admitted} admissions");
    assert!(
        serving.len() >= 3,
        "the serving certificate rotated: {} seen",
        serving.len()
    );
    assert!(
        last_cas.iter().all(|ca| !first_cas.contains(ca)),
        "every CA of the start was rotated out of the bundle"
    );
    assert!(
        bundles.iter().all(|b| *b == last_ca),
        "the caBundles are the Secret's"
    );
    let (mut created, mut issued) = (0.0, 0.0);
    for (name, replica) in [("first", &case.webhook), ("second", &second)] {
        replica.assert_running();
        let metrics = replica.metrics().await;
        assert_eq!(
            metric(&metrics, "irsa_webhook_tls_check_errors_total"),
            0.0,
            "{name} replica: {metrics}"
        );
        assert_eq!(
            metric(&metrics, "irsa_webhook_tls_ca_bundle_repairs_total"),
            0.0,
            "{name} replica took a rotation for a foreign change: {metrics}"
        );
        // Summed over both replicas: either may have done a rotation, and one that never
        // did has no series of that kind (the family creates a series on its first count).
        created += metrics::find(
            &metrics,
            r#"irsa_webhook_tls_rotations_total{kind="ca_created"}"#,
        )
        .unwrap_or(0.0);
        issued += metrics::find(
            &metrics,
            r#"irsa_webhook_tls_rotations_total{kind="certificate_issued"}"#,
        )
        .unwrap_or(0.0);
    }
    println!("between both replicas: {created} CAs created, {issued} certificates issued");
    assert!(
        created >= 3.0,
        "the CA rotated at least twice: {created} created"
    );
    case.finish().await;
}
