//! The installed webhook end to end: a Pod created through the API server for an annotated
//! ServiceAccount comes back with the token volume and the AWS environment.

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;

use crate::support::{self, WAIT, wait_for};

const ROLE_ARN: &str = "arn:aws:iam::111122223333:role/irsa-e2e-webhook";

/// The irsa webhook's registration, if one is installed (chart or `config/`): it registers
/// a webhook named `pods.irsa.dev`.
async fn irsa_webhook_installed(client: &kube::Client) -> Option<String> {
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let list = configs
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("listing MutatingWebhookConfigurations: {e}"));
    list.items.into_iter().find_map(|c| {
        let ours = c
            .webhooks
            .iter()
            .flatten()
            .any(|w| w.name == "pods.irsa.dev");
        ours.then(|| c.metadata.name.unwrap_or_default())
    })
}

#[tokio::test]
async fn pod_of_an_annotated_serviceaccount_is_mutated() {
    let Some(settings) = support::settings("pod_of_an_annotated_serviceaccount_is_mutated") else {
        return;
    };
    let client = support::client().await;
    let Some(config_name) = irsa_webhook_installed(&client).await else {
        println!(
            "pod_of_an_annotated_serviceaccount_is_mutated: skipped: no MutatingWebhookConfiguration \
             with the pods.irsa.dev webhook is installed (helm install the chart, or \
             kubectl apply -k config/default, then rerun)"
        );
        return;
    };
    println!("testing the webhook registered by MutatingWebhookConfiguration {config_name}");

    let ns = support::create_namespace(&client, "irsa-e2e-webhook").await;
    let prefix = &settings.annotation_prefix;
    let sa: ServiceAccount = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "app", "annotations": {format!("{prefix}/role-arn"): ROLE_ARN}}
    }))
    .unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();

    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "app"},
        "spec": {
            "serviceAccountName": "app",
            "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]
        }
    }))
    .unwrap();
    // A dry-run create runs the admission chain (the webhook declares sideEffects: None) and
    // returns the pod as it would be stored, without scheduling anything. It is repeated until
    // mutated because the webhook's failurePolicy may be Ignore: a webhook that is still
    // starting, or whose ServiceAccount lookup timed out, lets the pod through unchanged.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let mutated = wait_for(
        &format!("the webhook ({config_name}) to inject credentials into a pod in {ns}"),
        WAIT,
        None,
        || async {
            let created = pods
                .create(&dry_run, &pod)
                .await
                .unwrap_or_else(|e| panic!("dry-run create of pod {ns}/app: {e}"));
            let has_volume = created
                .spec
                .as_ref()?
                .volumes
                .iter()
                .flatten()
                .any(|v| v.name == irsa::mutate::config::TOKEN_VOLUME_NAME);
            has_volume.then_some(created)
        },
    )
    .await;
    support::delete_namespace(&client, &ns).await;

    let spec = mutated.spec.unwrap();
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == irsa::mutate::config::TOKEN_VOLUME_NAME)
        .unwrap();
    let token = volume
        .projected
        .as_ref()
        .and_then(|p| p.sources.as_ref())
        .and_then(|s| s.iter().find_map(|s| s.service_account_token.as_ref()))
        .unwrap_or_else(|| panic!("{} is not a projected SA token: {volume:?}", volume.name));
    assert_eq!(
        token.audience.as_deref(),
        Some(irsa::mutate::config::DEFAULT_AUDIENCE)
    );

    let container = &spec.containers[0];
    let env = |name: &str| {
        container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(
        env("AWS_ROLE_ARN").as_deref(),
        Some(ROLE_ARN),
        "{container:?}"
    );
    let token_file = env("AWS_WEB_IDENTITY_TOKEN_FILE").unwrap_or_default();
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == irsa::mutate::config::TOKEN_VOLUME_NAME)
        .unwrap_or_else(|| panic!("no mount of the token volume: {container:?}"));
    assert!(
        token_file.starts_with(&mount.mount_path),
        "AWS_WEB_IDENTITY_TOKEN_FILE={token_file} is inside the mount {}",
        mount.mount_path
    );
}
