//! Pod Identity on any cluster: `irsa agent` (a local process on 127.0.0.1, node `node-a`)
//! against the real API server (TokenReview of pod-bound projected tokens, watched pods,
//! associations and grants) and moto's STS behind the recording proxy. boto3's container
//! provider and the Rust SDK's read the container-credentials environment of a pod's process
//! and get credentials from the agent, then call STS and S3 with them; the AssumeRole the
//! agent made carries the expected role, session name and transitive session tags, and is
//! made once.
//! Every refusal gets its status and reason, and no STS call.
//!
//! moto, not the verifying STS: the verifying STS's AssumeRole reads no `Tags`, so it could not
//! show the session tags; moto does not evaluate trust policies either, so the proxy's record
//! of the call is what is asserted. Pods stay Pending (no kubelet), with `spec.nodeName` set
//! by the test; the API server binds tokens to them all the same.

use std::collections::BTreeMap;

use irsa::crd::{IAMRoleGrant, PodIdentityAssociation};
use irsa::mutate::config::{DEFAULT_CC_AUDIENCE, DEFAULT_CC_MOUNT_PATH};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::{Value, json};

use irsa_e2e::kubelet::Container;
use irsa_e2e::moto::{self, ACCOUNT, FaultProxy, REGION};
use irsa_e2e::process::Process;
use irsa_e2e::sdk::{SDK_PROBE_PY, probe_report, python, rust_probe};
use irsa_e2e::support::{self, WAIT, unique};
use irsa_e2e::wait::wait_for;
use irsa_e2e::webhook::{create_pod, create_service_account, pod};

const NODE: &str = "node-a";
const CLUSTER: &str = "e2e-agent";
const TOKEN_FILE: &str = "eks-pod-identity-token";
/// A second projected token of the same pods, for STS's audience: not the agent's.
const OTHER_TOKEN_FILE: &str = "sts-token";

/// A pod of `sa` on `node` as the webhook's container-credentials mode shapes it (the token
/// volume and the two SDK variables), plus a token for another audience.
fn pod_identity_pod(name: &str, sa: &str, node: &str, full_uri: &str) -> Value {
    pod(
        name,
        sa,
        json!({"spec": {
            "nodeName": node,
            "volumes": [{"name": "eks-pod-identity-token", "projected": {"sources": [
                {"serviceAccountToken": {"audience": DEFAULT_CC_AUDIENCE, "expirationSeconds": 3600, "path": TOKEN_FILE}},
                {"serviceAccountToken": {"audience": "sts.amazonaws.com", "expirationSeconds": 3600, "path": OTHER_TOKEN_FILE}},
            ]}}],
            "containers": [{
                "name": "app",
                "image": "registry.k8s.io/pause:3.10",
                "env": [
                    {"name": "AWS_CONTAINER_CREDENTIALS_FULL_URI", "value": full_uri},
                    {"name": "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "value": format!("{DEFAULT_CC_MOUNT_PATH}/{TOKEN_FILE}")},
                    {"name": "AWS_REGION", "value": REGION},
                    {"name": "AWS_DEFAULT_REGION", "value": REGION},
                ],
                "volumeMounts": [{"name": "eks-pod-identity-token", "mountPath": DEFAULT_CC_MOUNT_PATH, "readOnly": true}],
            }],
        }}),
    )
}

fn role_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{name}")
}

/// The agent's answer to `token`: status and JSON body.
async fn ask(url: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.header("Authorization", token);
    }
    let response = request.send().await.expect("the agent answers");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn the_agent_serves_an_associated_pod_and_refuses_every_other_caller() {
    support::settings();
    let client = support::client().await;
    support::install_crds(&client).await;
    let aws = moto::test_aws().await;
    let ns = support::create_namespace(&client, "irsa-e2e-agent").await;
    for sa in ["app", "lonely", "ungranted", "twice"] {
        create_service_account(&client, &ns, sa, json!({})).await;
    }

    let granted = unique("agent-app");
    let ungranted = unique("agent-other");
    let iam = aws.iam_direct();
    for role in [&granted, &ungranted] {
        iam.create_role()
            .role_name(role)
            .assume_role_policy_document(r#"{"Version":"2012-10-17","Statement":[]}"#)
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating role {role} in moto: {e:?}"));
    }
    let grant_name = support::create_grant(
        &client,
        "agent-grant",
        &ns,
        &[&role_arn("agent-app-*")],
        None,
    )
    .await;
    for (name, sa, role, tags) in [
        (
            "app",
            "app",
            &granted,
            BTreeMap::from([("team".to_string(), "payments".to_string())]),
        ),
        ("ungranted", "ungranted", &ungranted, BTreeMap::new()),
        // Two for one ServiceAccount: which role is meant is not the agent's to guess.
        ("twice-a", "twice", &granted, BTreeMap::new()),
        ("twice-b", "twice", &granted, BTreeMap::new()),
    ] {
        let mut association = support::association(name, sa, &role_arn(role));
        association.spec.session_tags = tags;
        support::create_association(&client, &ns, &association).await;
    }

    let endpoint = aws.faults().endpoint();
    let (agent, full_uri) = Process::agent("agent", NODE, CLUSTER, &endpoint, &[], &[]);

    let mut pods = BTreeMap::new();
    for (name, sa, node) in [
        ("web", "app", NODE),
        ("far", "app", "node-b"),
        ("doomed", "app", NODE),
        ("lonely", "lonely", NODE),
        ("ungranted", "ungranted", NODE),
        ("twice", "twice", NODE),
        ("reborn", "app", NODE),
    ] {
        let stored = create_pod(&client, &ns, &pod_identity_pod(name, sa, node, &full_uri))
            .await
            .unwrap_or_else(|e| panic!("creating pod {name}: {e}"));
        pods.insert(name, Container::start(&client, &stored, "app").await);
    }
    let token_path = format!("{DEFAULT_CC_MOUNT_PATH}/{TOKEN_FILE}");
    let token = |pod: &str| pods[pod].token_at(&token_path).to_string();
    agent.wait_ready(WAIT).await;

    // The deleted pod's token: the API server no longer vouches for it.
    Api::<Pod>::namespaced(client.clone(), &ns)
        .delete("doomed", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let pods_api = Api::<Pod>::namespaced(client.clone(), &ns);
    wait_for("pod doomed to be gone", WAIT, || async {
        pods_api
            .get_opt("doomed")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;

    let other_audience = pods["web"]
        .token_at(&format!("{DEFAULT_CC_MOUNT_PATH}/{OTHER_TOKEN_FILE}"))
        .to_string();
    let refusals = [
        ("no token", None, 401, "MissingToken"),
        (
            "a token for another audience",
            Some(other_audience),
            401,
            "InvalidToken",
        ),
        (
            "a pod on another node",
            Some(token("far")),
            403,
            "PodNotOnThisNode",
        ),
        (
            // TokenReview fails: the API server checks that a token's bound pod still exists
            // (with its uid), so the agent never gets as far as its own pod store.
            "a deleted pod's token",
            Some(token("doomed")),
            401,
            "InvalidToken",
        ),
        (
            "a ServiceAccount without association",
            Some(token("lonely")),
            403,
            "NoPodIdentityAssociation",
        ),
        (
            "an association without grant",
            Some(token("ungranted")),
            403,
            "NotAuthorized",
        ),
        (
            "two associations for one ServiceAccount",
            Some(token("twice")),
            403,
            "AmbiguousPodIdentityAssociation",
        ),
    ];
    for (case, token, status, reason) in &refusals {
        let (got, body) = ask(&full_uri, token.as_deref()).await;
        assert_eq!(
            (got, body["reason"].as_str()),
            (*status, Some(*reason)),
            "{case}: {body}"
        );
        let message = body["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{case}: a refusal says why: {body}");
        if *reason == "AmbiguousPodIdentityAssociation" {
            assert!(
                message.contains(r#"["twice-a", "twice-b"]"#),
                "{case}: names both: {body}"
            );
        }
        if let Some(token) = token {
            assert!(!message.contains(token.as_str()), "{case}: token in {body}");
        }
    }
    assert_eq!(
        aws.faults().calls("AssumeRole"),
        0,
        "no refusal reaches STS"
    );
    let log = agent.log();
    for (case, token, ..) in &refusals {
        if let Some(token) = token {
            assert!(
                !log.contains(token.as_str()),
                "{case}: the token is in the agent's log"
            );
        }
    }

    // Concurrent first requests of one pod wait for one STS call.
    let reviews =
        |metrics: &str| irsa_e2e::metrics::metric(metrics, "irsa_agent_token_reviews_total");
    let reviews_before = reviews(&agent.metrics().await);
    let web = token("web");
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (url, token) = (full_uri.clone(), web.clone());
        burst.spawn(async move { ask(&url, Some(&token)).await });
    }
    let answers = burst.join_all().await;
    let keys: std::collections::BTreeSet<_> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            body["AccessKeyId"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(keys.len(), 1, "one set of credentials: {keys:?}");
    assert_eq!(
        aws.faults().calls("AssumeRole"),
        1,
        "one STS call for 16 requests"
    );
    let (_, answer) = &answers[0];
    assert_eq!(answer["AccountId"], ACCOUNT);
    for field in ["SecretAccessKey", "Token", "Expiration"] {
        assert!(
            answer[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field}: {answer}"
        );
    }

    // boto3's container provider, in the pod's environment, gets credentials from the agent
    // and uses them (moto answers STS and S3 for the assumed role's keys), twice.
    let s3 = support::s3_client(aws.sdk_config());
    let bucket = unique("agent-bucket");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let extra = [("AWS_ENDPOINT_URL", aws.faults().endpoint())];
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // The AWS SDK for Rust's default chain too: its container provider reads
    // AWS_CONTAINER_CREDENTIALS_FULL_URI and AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE.
    for (attempt, program, script) in [
        ("first boto3", python(), Some(SDK_PROBE_PY)),
        ("second boto3", python(), Some(SDK_PROBE_PY)),
        ("aws-sdk-rust", rust_probe(), None),
    ] {
        let args: Vec<&str> = script
            .into_iter()
            .chain([bucket.as_str(), attempt])
            .collect();
        let out = pods["web"].run(&program, &args, &extra);
        let report = probe_report(&out);
        assert_eq!(
            report["arn"],
            format!("arn:aws:sts::{ACCOUNT}:assumed-role/{granted}/{ns}-web"),
            "{attempt} probe: {report}"
        );
        assert!(
            report["object"]
                .as_str()
                .unwrap_or_default()
                .contains(&granted),
            "{attempt} probe wrote and read S3 as the role: {report}"
        );
    }

    let calls = aws.faults().requests("AssumeRole");
    assert_eq!(
        calls.len(),
        1,
        "the three processes got the cached credentials: {calls:?}"
    );
    assert_eq!(
        reviews(&agent.metrics().await) - reviews_before,
        1.0,
        "19 requests with one token, one TokenReview (--token-review-cache)"
    );
    let call = &calls[0];
    assert_eq!(call["RoleArn"], role_arn(&granted));
    assert_eq!(call["RoleSessionName"], format!("{ns}-web"));
    let sent = FaultProxy::session_tags(call);
    let tags: BTreeMap<&str, &str> = sent.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let web_uid = pods_api.get("web").await.unwrap().metadata.uid.unwrap();
    assert_eq!(
        tags,
        BTreeMap::from([
            ("kubernetes-namespace", ns.as_str()),
            ("kubernetes-service-account", "app"),
            ("kubernetes-pod-name", "web"),
            ("kubernetes-pod-uid", web_uid.as_str()),
            ("irsa-cluster-name", CLUSTER),
            ("team", "payments"),
        ])
    );
    let transitive = FaultProxy::members(call, "TransitiveTagKeys");
    let mut expected: Vec<&str> = tags.keys().copied().collect();
    let mut sorted = transitive.clone();
    sorted.sort_unstable();
    expected.sort_unstable();
    assert_eq!(sorted, expected, "every tag is transitive");

    let metrics = agent.metrics().await;
    assert_eq!(
        irsa_e2e::metrics::metric(&metrics, "irsa_agent_sts_calls_total{outcome=\"success\"}"),
        1.0
    );

    // A pod deleted and re-created under the same name while its old token is still vouched
    // for (the agent remembers its review, as the API server does for 10 s): the agent's own
    // check of the pod's uid against its watched pods refuses the old token, at once.
    let reborn = token("reborn");
    let (status, body) = ask(&full_uri, Some(&reborn)).await;
    assert_eq!(status, 200, "reborn, first: {body}");
    let calls = aws.faults().calls("AssumeRole");
    pods_api
        .delete("reborn", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    wait_for("pod reborn to be gone", WAIT, || async {
        pods_api
            .get_opt("reborn")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    create_pod(
        &client,
        &ns,
        &pod_identity_pod("reborn", "app", NODE, &full_uri),
    )
    .await
    .expect("re-creating pod reborn");
    let (status, body) = wait_for("the agent to see the new pod reborn", WAIT, || async {
        let (status, body) = ask(&full_uri, Some(&reborn)).await;
        (body["reason"] != "PodNotOnThisNode").then_some((status, body))
    })
    .await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (403, Some("PodUidMismatch")),
        "the old token of a re-created pod: {body}"
    );
    assert_eq!(
        aws.faults().calls("AssumeRole"),
        calls,
        "the old token of a re-created pod reaches no STS"
    );
    support::delete_namespace(&client, &ns).await;
    let _ = Api::<IAMRoleGrant>::all(client)
        .delete(&grant_name, &DeleteParams::default())
        .await;
}

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn the_api_server_refuses_an_association_sts_would_refuse() {
    support::settings();
    let client = support::client().await;
    support::install_crds(&client).await;
    let ns = support::create_namespace(&client, "irsa-e2e-pia").await;
    let api = Api::<PodIdentityAssociation>::namespaced(client.clone(), &ns);
    let valid = json!({
        "apiVersion": "irsa.dev/v1alpha1", "kind": "PodIdentityAssociation",
        "metadata": {"name": "app"},
        "spec": {"serviceAccountName": "app", "roleArn": role_arn("app")},
    });
    for (case, spec, expected) in [
        (
            "a tag the agent sets",
            json!({"sessionTags": {"Kubernetes-Namespace": "other"}}),
            "cannot use the aws: prefix or the agent's own tags",
        ),
        (
            "an unknown placeholder",
            json!({"roleSessionName": "{node}-x"}),
            "the placeholders {namespace}, {serviceAccount}, {podName}, {podUid}",
        ),
        (
            "a target equal to the role",
            json!({"targetRoleArn": role_arn("app")}),
            "it must differ from roleArn",
        ),
        (
            "tags with tags disabled",
            json!({"disableSessionTags": true, "sessionTags": {"team": "a"}}),
            "cannot be set with disableSessionTags: true",
        ),
        (
            "not a role ARN",
            json!({"roleArn": "app"}),
            "must be an IAM role ARN",
        ),
    ] {
        let mut object = valid.clone();
        irsa_e2e::merge(&mut object, json!({"spec": spec}));
        let object: PodIdentityAssociation = serde_json::from_value(object).unwrap();
        let err = api
            .create(&PostParams::default(), &object)
            .await
            .expect_err(case);
        assert!(err.to_string().contains(expected), "{case}: {err}");
    }
    let object: PodIdentityAssociation = serde_json::from_value(valid).unwrap();
    api.create(&PostParams::default(), &object)
        .await
        .expect("the valid association is accepted");
    support::delete_namespace(&client, &ns).await;
}
