//! The opt-out rule through the real API server. `irsa::mutate::opted_out` is the one rule
//! the webhook, the controller's uninjected-pod watch and the doctor apply; the chart's
//! objectSelector can only pre-filter it (no selector says "any value but false"). For every
//! combination of both labels' values, a pod created with `dryRun=All` under the chart's
//! MutatingWebhookConfiguration comes back mutated exactly when the rule says it is not opted
//! out: the selector never leaves out a pod the rule injects, and the webhook leaves alone
//! every pod the selector lets through that the rule opts out. Then `irsa doctor --pod` on
//! stored pods says the same, in its pod step and in its dry run through the registration.

use std::collections::BTreeMap;

use irsa::mutate::{EKS_SKIP_LABEL, SKIP_LABEL, opted_out};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

use irsa_e2e::support::{self, doctor_step};
use irsa_e2e::webhook::{
    create_pod, has_token_volume, namespace_with_annotated_app, pod, serve_namespace, unregister,
};

/// Each label's values: absent, the two documented ones, and two that the rules used to read
/// differently (a bare label and an arbitrary word).
const VALUES: [Option<&str>; 5] = [None, Some("true"), Some("false"), Some(""), Some("yes")];

fn labels(skip: Option<&str>, eks: Option<&str>) -> BTreeMap<String, String> {
    [(SKIP_LABEL, skip), (EKS_SKIP_LABEL, eks)]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_string(), v?.to_string())))
        .collect()
}

fn labelled_pod(name: &str, labels: &BTreeMap<String, String>) -> Value {
    pod(name, "app", json!({"metadata": {"labels": labels}}))
}

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn a_pod_is_mutated_exactly_when_the_opt_out_rule_says_it_is_not_opted_out() {
    let client = support::client().await;
    let ns = namespace_with_annotated_app(&client, "irsa-e2e-opt-out").await;
    // Fail: a pod sent to the webhook that it cannot answer is refused, never silently
    // admitted unmutated, so "not mutated" below can only mean "left out or left alone".
    let (webhook, registration) = serve_namespace(&client, &ns, "opt-out", "Fail").await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let mut disagreements = Vec::new();
    for (i, skip) in VALUES.into_iter().enumerate() {
        for (j, eks) in VALUES.into_iter().enumerate() {
            let labels = labels(skip, eks);
            let typed: Pod =
                serde_json::from_value(labelled_pod(&format!("opt-out-{i}-{j}"), &labels)).unwrap();
            let created = pods
                .create(&dry_run, &typed)
                .await
                .unwrap_or_else(|e| panic!("dry-run create with {labels:?}: {e}"));
            let mutated = has_token_volume(&serde_json::to_value(created).unwrap());
            let rule = opted_out(&labels);
            println!("{labels:?}: mutated {mutated}, opted out by {rule:?}");
            if mutated != rule.is_none() {
                disagreements.push(format!(
                    "{labels:?}: mutated {mutated}, but the rule says opted out by {rule:?}"
                ));
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "the API server and the webhook disagree with irsa::mutate::opted_out:\n{}",
        disagreements.join("\n")
    );

    // The doctor, on stored pods (what `--pod` reads), with its dry run through the same
    // registration carrying each pod's labels.
    let aws = support::aws_env().await;
    let prefix = support::settings().annotation_prefix;
    let doctored = [
        (Some("false"), None),
        (None, Some("false")),
        (Some("yes"), None),
        (Some("true"), None),
        (None, Some("")),
        (None, Some("yes")),
    ];
    for (i, (skip, eks)) in doctored.into_iter().enumerate() {
        let labels = labels(skip, eks);
        let name = format!("doctored-{i}");
        let stored = create_pod(&client, &ns, &labelled_pod(&name, &labels))
            .await
            .unwrap_or_else(|e| panic!("creating {name} with {labels:?}: {e}"));
        let rule = opted_out(&labels);
        assert_eq!(has_token_volume(&stored), rule.is_none(), "{labels:?}");
        let (_, report) = aws.doctor(&[
            "-n",
            &ns,
            "--pod",
            &name,
            "--annotation-prefix",
            &prefix,
            "--webhook-configuration",
            &registration,
        ]);
        let (step, dry) = (doctor_step(&report, "pod"), doctor_step(&report, "dry-run"));
        let evidence = step["evidence"].as_str().unwrap_or_default();
        match rule {
            None => {
                assert_eq!(step["status"], "PASS", "{labels:?}: {step:#}");
                assert_eq!(dry["status"], "PASS", "{labels:?}: {dry:#}");
            }
            Some(label) => {
                assert_eq!(step["status"], "WARN", "{labels:?}: {step:#}");
                assert!(
                    evidence.contains(&format!("opts out of injection with label {label}=")),
                    "{labels:?}: {step:#}"
                );
                assert_eq!(dry["status"], "SKIP", "{labels:?}: {dry:#}");
            }
        }
    }

    webhook.assert_running();
    unregister(&client, &registration).await;
    support::delete_namespace(&client, &ns).await;
}
