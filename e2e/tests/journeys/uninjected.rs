//! The controller reports pods that were not injected: the webhook is
//! registered with `failurePolicy: Ignore` and then stopped, a pod of an annotated
//! ServiceAccount is admitted unmutated, and the controller (a local process under the chart's
//! RBAC) gives it a `PodNotInjected` Warning Event and counts it in
//! `irsa_controller_uninjected_pods`; `irsa doctor --pod` names the Event; a deleted pod is
//! no longer counted. A pod created before its ServiceAccount got the role is found when the
//! annotation arrives. Pods stay Pending (no kubelet), which changes nothing here.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod, ServiceAccount};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;

use irsa_e2e::metrics;
use irsa_e2e::process::Process;
use irsa_e2e::support::{self, WAIT, doctor_step};
use irsa_e2e::webhook::{
    ROLE_ARN, assert_untouched, create_pod, create_service_account, namespace_with_annotated_app,
    pod, serve_namespace, unregister,
};

/// How long the controller may take to report a pod once it is running: one watch event and
/// one Event write, so seconds; the bound leaves room for a loaded 2-core machine.
const REPORT_WITHIN: Duration = Duration::from_secs(60);

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn a_pod_admitted_unmutated_is_reported_with_an_event_a_metric_and_by_the_doctor() {
    let cluster = support::controller_cluster().await;
    let client = cluster.client.clone();
    let prefix = cluster.settings.annotation_prefix.clone();
    let ns = namespace_with_annotated_app(&client, "irsa-e2e-uninjected").await;
    let role_key = format!("{prefix}/role-arn");
    create_service_account(&client, &ns, "late", json!({})).await;

    // The webhook, registered the chart's way with Ignore, answering; then gone.
    let (webhook, registration) = serve_namespace(&client, &ns, "uninjected", "Ignore").await;
    webhook.kill();

    // Not the IAM side under test: annotated ServiceAccounts are left to themselves.
    let controller = Process::controller_with(
        &cluster,
        None,
        "uninjected",
        &["--manage-annotated-serviceaccounts", "false"],
    );
    controller.wait_ready(WAIT).await;
    controller
        .wait_for("the controller to lead", WAIT, async || {
            metrics::metric(&controller.metrics().await, "irsa_controller_is_leader") == 1.0
        })
        .await;

    let stored = create_pod(&client, &ns, &pod("web-0", "app", json!({})))
        .await
        .unwrap();
    assert_untouched(&stored);
    // Opted out, and of a ServiceAccount with no role yet: neither is reported.
    create_pod(
        &client,
        &ns,
        &pod(
            "skipped",
            "app",
            json!({"metadata": {"labels": {"irsa.dev/skip": "true"}}}),
        ),
    )
    .await
    .unwrap();
    create_pod(&client, &ns, &pod("old-0", "late", json!({})))
        .await
        .unwrap();

    let note = wait_for_note(&controller, &client, &ns, "web-0").await;
    for part in [
        format!("Pod {ns}/web-0"),
        format!("ServiceAccount {ns}/app"),
        ROLE_ARN.to_string(),
        "failurePolicy Ignore".to_string(),
    ] {
        assert!(note.contains(&part), "the Event names {part}: {note}");
    }
    wait_for_count(&controller, &ns, Some(1.0)).await;

    let (_, report) =
        cluster
            .aws_env
            .doctor(&["-n", &ns, "--annotation-prefix", &prefix, "--pod", "web-0"]);
    let check = doctor_step(&report, "pod");
    assert_eq!(check["status"], "FAIL", "{check}");
    let evidence = check["evidence"].as_str().unwrap();
    assert!(
        evidence.contains("the controller reported it (Event PodNotInjected)")
            && evidence.contains(&format!("Pod {ns}/web-0")),
        "the doctor names the controller's Event: {evidence}"
    );

    // The role arrives after old-0 was created: old-0 is found and reported as such.
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .patch(
            "late",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {&role_key: ROLE_ARN}}})),
        )
        .await
        .unwrap();
    let note = wait_for_note(&controller, &client, &ns, "old-0").await;
    assert!(
        note.contains("created before the ServiceAccount got the role"),
        "{note}"
    );
    wait_for_count(&controller, &ns, Some(2.0)).await;

    // Deleted pods are no longer counted (and the namespace's series goes away at zero).
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    for name in ["web-0", "old-0"] {
        pods.delete(name, &DeleteParams::default().grace_period(0))
            .await
            .unwrap();
    }
    wait_for_count(&controller, &ns, None).await;
    controller.assert_running();

    unregister(&client, &registration).await;
    support::delete_namespace(&client, &ns).await;
}

/// Waits (at most [`REPORT_WITHIN`]) until the controller's `irsa_controller_uninjected_pods`
/// series of `ns` has the value `n`, or is gone when `n` is `None` (at zero the series is
/// removed, not kept at 0).
async fn wait_for_count(controller: &Process, ns: &str, n: Option<f64>) {
    let series = format!("irsa_controller_uninjected_pods{{namespace=\"{ns}\"}}");
    let what = format!("{series} to be {n:?}");
    controller
        .wait_for(&what, REPORT_WITHIN, async || {
            metrics::find(&controller.metrics().await, &series) == n
        })
        .await;
}

/// Waits (at most [`REPORT_WITHIN`]) for the controller's Event on pod `name`; its message.
async fn wait_for_note(
    controller: &Process,
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> String {
    let what = format!("the PodNotInjected Event on {ns}/{name}");
    controller
        .wait_for(&what, REPORT_WITHIN, || not_injected_note(client, ns, name))
        .await
}

/// The message of the controller's `PodNotInjected` Event on pod `name`, once there is one.
async fn not_injected_note(client: &kube::Client, ns: &str, name: &str) -> Option<String> {
    let fields = format!("involvedObject.name={name},reason=PodNotInjected");
    let events = Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default().fields(&fields))
        .await
        .ok()?;
    let event = events.items.into_iter().next()?;
    assert_eq!(event.type_.as_deref(), Some("Warning"), "{event:?}");
    event.message
}
