//! `irsa doctor --webhook-configuration` on the real API server, with `irsa webhook` as a local
//! process registered the chart's way (failurePolicy Ignore, the silent case): healthy, both
//! webhook steps pass; with someone else's CA in the caBundle the webhook step names the
//! mismatch and the dry-run pod comes back unmutated; with the webhook stopped, the same
//! dry-run verdict, and the webhook step says it cannot reach it.

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use irsa_e2e::support::{self, WAIT, doctor_step};
use irsa_e2e::wait::wait_for;
use irsa_e2e::webhook::{
    TestCert, namespace_with_annotated_app, serve_namespace, unregister, wait_until_mutating,
};

/// The webhook and dry-run steps of `irsa doctor` for ServiceAccount `app` of `ns`.
fn webhook_steps(aws: &support::AwsEnv, ns: &str, config: &str) -> (Value, Value) {
    let prefix = support::settings().annotation_prefix;
    let (_, report) = aws.doctor(&[
        "-n",
        ns,
        "--service-account",
        "app",
        "--annotation-prefix",
        &prefix,
        "--webhook-configuration",
        config,
    ]);
    (
        doctor_step(&report, "webhook").clone(),
        doctor_step(&report, "dry-run").clone(),
    )
}

/// Every webhook of the configuration trusts `ca_bundle` (base64 PEM).
async fn set_ca_bundle(client: &kube::Client, name: &str, ca_bundle: &str) {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let config = api.get(name).await.unwrap();
    let patch: Vec<Value> = (0..config.webhooks.unwrap_or_default().len())
        .map(|i| json!({"op": "replace", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": ca_bundle}))
        .collect();
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(patch)).unwrap();
    api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .unwrap();
}

/// The webhook steps once the API server has picked up the change (asynchronously) and the
/// dry-run pod comes back unmutated.
async fn once_unmutated(aws: &support::AwsEnv, ns: &str, config: &str) -> (Value, Value) {
    wait_for(
        "the doctor to see the dry-run pod unmutated",
        WAIT,
        || async {
            let (step, dry_run) = webhook_steps(aws, ns, config);
            (dry_run["status"] == "FAIL").then_some((step, dry_run))
        },
    )
    .await
}

fn says(step: &Value, status: &str, fragment: &str) -> bool {
    step["status"] == status
        && step["evidence"]
            .as_str()
            .is_some_and(|e| e.contains(fragment))
}

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn the_doctor_checks_the_webhook_and_dry_runs_a_pod_through_it() {
    let client = support::client().await;
    let aws = support::aws_env().await;
    let ns = namespace_with_annotated_app(&client, "irsa-e2e-doctor-webhook").await;
    let (webhook, config) = serve_namespace(&client, &ns, "doctor", "Ignore").await;

    // Healthy: the served certificate verifies against the caBundle; the dry-run is mutated.
    let (step, dry_run) = webhook_steps(&aws, &ns, &config);
    assert!(
        says(
            &step,
            "PASS",
            "the certificate it serves verifies against the caBundle"
        ) && says(&step, "PASS", "failurePolicy Ignore"),
        "{step:#}"
    );
    assert!(
        says(&dry_run, "PASS", "came back with the token volume"),
        "{dry_run:#}"
    );

    // Someone else's CA in the caBundle: the API server's calls fail, and Ignore hides it.
    set_ca_bundle(&client, &config, &TestCert::new().ca_bundle()).await;
    let (step, dry_run) = once_unmutated(&aws, &ns, &config).await;
    assert!(
        says(&step, "FAIL", "does not verify against the caBundle")
            && says(&step, "FAIL", "admitted unmutated, silently"),
        "{step:#}"
    );
    assert!(says(&dry_run, "FAIL", "came back unmutated"), "{dry_run:#}");

    // The right caBundle again, and the webhook stopped: not reachable, unmutated.
    set_ca_bundle(&client, &config, &webhook.cert.ca_bundle()).await;
    wait_until_mutating(&client, &ns, "app", json!({})).await;
    webhook.kill();
    let (step, dry_run) = once_unmutated(&aws, &ns, &config).await;
    assert!(says(&step, "WARN", "not reachable from here"), "{step:#}");
    assert!(says(&dry_run, "FAIL", "came back unmutated"), "{dry_run:#}");

    unregister(&client, &config).await;
    support::delete_namespace(&client, &ns).await;
}
