//! Pod Identity's whole trip on a cluster that is not EKS, every irsa part a process against
//! the real API server and moto (IAM, STS, S3) behind the recording proxy:
//!
//! an `IAMRoleGrant` and a `PodIdentityAssociation` are applied → the controller writes the
//! role's trust statement for the agent's role and marks the association Ready → a pod of the
//! ServiceAccount is admitted through the webhook with the container-credentials environment
//! → boto3 and the Rust SDK, run with exactly that environment and the projected token
//! (`e2e/src/kubelet.rs`), get credentials from `irsa agent` → the agent's `AssumeRole`
//! carries the session name and tags → S3 works with the credentials → `irsa doctor --pod`
//! passes every step, asking the agent itself.
//!
//! moto evaluates no trust policy and the verifying STS reads no session tags, so the trust
//! statement the controller wrote is evaluated here with irsa's IAM evaluator against the tags
//! the agent really sent (and refused for another namespace's); docs/pod-identity.md says so.

use std::collections::BTreeMap;

use irsa::crd::{IAMRoleGrant, PodIdentityAssociation};
use irsa::mutate::config::DEFAULT_CC_AUDIENCE;
use irsa::trust::{PolicyDocument, evaluate_assume_role};
use kube::Api;
use kube::api::DeleteParams;
use serde_json::{Value, json};

use irsa_e2e::identity::{self, Component};
use irsa_e2e::kubelet::Container;
use irsa_e2e::moto::{ACCOUNT, FaultProxy, REGION};
use irsa_e2e::process::Process;
use irsa_e2e::sdk::{SDK_PROBE_PY, probe_report, python, rust_probe};
use irsa_e2e::support::{self, WAIT, unique};
use irsa_e2e::wait::wait_for;
use irsa_e2e::webhook::{
    Registration, WebhookProcess, chart_registration, create_pod, create_service_account, pod,
    register, unregister, volumes,
};

const NODE: &str = "node-pi";
/// The cluster name `Process::controller` gives the controller; the agent says the same.
const CLUSTER: &str = "e2e";
const AGENT_ROLE: &str = "arn:aws:iam::123456789012:role/irsa-e2e-agent";

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn an_association_gives_a_pod_working_credentials_through_every_part() {
    let cluster = support::controller_cluster().await;
    let client = cluster.client.clone();
    let aws = &cluster.aws_env;
    let ns = support::create_namespace(&client, "irsa-e2e-pi").await;
    create_service_account(&client, &ns, "app", json!({})).await;

    // The role, with a statement of someone else's that must survive.
    let role = unique("pi-app");
    let role_arn = format!("arn:aws:iam::{ACCOUNT}:role/{role}");
    let foreign = json!({"Sid": "HumanSaml", "Effect": "Allow",
        "Principal": {"Federated": format!("arn:aws:iam::{ACCOUNT}:saml-provider/corp")},
        "Action": "sts:AssumeRoleWithSAML"});
    let iam = aws.local.as_ref().expect("moto").iam_direct();
    iam.create_role()
        .role_name(&role)
        .assume_role_policy_document(
            json!({"Version": "2012-10-17", "Statement": [foreign]}).to_string(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating role {role}: {e:?}"));
    let grant_name = support::create_grant(&client, "pi-grant", &ns, &[&role_arn], None).await;
    let mut association = support::association("app", "app", &role_arn);
    association.spec.session_tags = BTreeMap::from([("team".into(), "payments".into())]);
    support::create_association(&client, &ns, &association).await;
    let associations = Api::<PodIdentityAssociation>::namespaced(client.clone(), &ns);

    // The controller writes the statement and reports the association Ready.
    let controller = Process::controller_with(
        &cluster,
        None,
        "pi-controller",
        &["--pod-identity-agent-role-arn", AGENT_ROLE],
    );
    wait_for("the association to be Ready", WAIT, async || {
        let a = associations.get("app").await.ok()?;
        let ready = a
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")?;
        (ready.status == "True").then_some(())
    })
    .await;
    controller.assert_running();

    // The agent, the webhook pointing pods at it, and a pod admitted through the webhook.
    let endpoint = aws.endpoint.clone().expect("moto");
    let (agent, full_uri) = Process::agent("pi-agent", NODE, CLUSTER, &endpoint, &[], &[]);
    let webhook_identity = identity::kubeconfig(&client, Component::Webhook).await;
    let webhook = WebhookProcess::start(
        &webhook_identity,
        "pi-webhook",
        &[
            "--pod-identity-associations",
            "--container-credentials-full-uri",
            &full_uri,
            "--aws-default-region",
            REGION,
        ],
    )
    .await;
    let registration = Registration::new(&[&ns]);
    let registered = register(
        &client,
        &chart_registration(&registration, &webhook.url, &webhook.cert),
    )
    .await;
    let stored = wait_for(
        "the API server to call the webhook for the pod",
        WAIT,
        async || {
            let stored = create_pod(
                &client,
                &ns,
                &pod("web", "app", json!({"spec": {"nodeName": NODE}})),
            )
            .await
            .ok()?;
            if volumes(&stored, "eks-pod-identity-token") == 1 {
                return Some(stored);
            }
            // Admitted before the registration took effect: try again.
            let _ = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), &ns)
                .delete("web", &DeleteParams::default().grace_period(0))
                .await;
            None
        },
    )
    .await;
    let token_source = &stored["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "eks-pod-identity-token")
        .unwrap()["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(token_source["audience"], DEFAULT_CC_AUDIENCE, "{stored}");
    let container = Container::start(&client, &stored, "app").await;
    assert_eq!(
        container.env_var("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
        Some(full_uri.as_str())
    );
    agent.wait_ready(WAIT).await;

    // Both SDKs get credentials from the agent and use them on S3.
    let s3 = support::s3_client(&aws.sdk);
    let bucket = unique("pi-bucket");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let extra = [("AWS_ENDPOINT_URL", endpoint.as_str())];
    let assumed = format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{ns}-web");
    for (sdk, program, script) in [
        ("boto3", python(), Some(SDK_PROBE_PY)),
        ("aws-sdk-rust", rust_probe(), None),
    ] {
        let args: Vec<&str> = script.into_iter().chain([bucket.as_str(), sdk]).collect();
        let out = container.run(&program, &args, &extra);
        let report = probe_report(&out);
        assert_eq!(report["arn"], assumed.as_str(), "{sdk}: {report}");
        assert!(
            report["object"].as_str().is_some_and(|o| o.contains(&role)),
            "{sdk} wrote and read S3 as the role: {report}"
        );
    }

    // One AssumeRole for both processes, with the pod's session name and tags.
    let calls = aws.calls().requests("AssumeRole");
    assert_eq!(
        calls.len(),
        1,
        "the agent's cache served the second SDK: {calls:?}"
    );
    let call = &calls[0];
    assert_eq!(call["RoleArn"], role_arn);
    assert_eq!(call["RoleSessionName"], format!("{ns}-web"));
    let tags = FaultProxy::session_tags(call);
    let uid = stored["metadata"]["uid"].as_str().unwrap();
    let expected: Vec<(String, String)> = [
        ("kubernetes-namespace", ns.as_str()),
        ("kubernetes-service-account", "app"),
        ("kubernetes-pod-name", "web"),
        ("kubernetes-pod-uid", uid),
        ("irsa-cluster-name", CLUSTER),
        ("team", "payments"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(tags, expected);

    // The statement the controller wrote lets the agent in with exactly these tags, and no
    // other namespace; the foreign statement is untouched.
    let document = iam
        .get_role()
        .role_name(&role)
        .send()
        .await
        .unwrap()
        .role
        .and_then(|r| r.assume_role_policy_document)
        .unwrap();
    let policy = PolicyDocument::parse(&document).unwrap();
    let decision = evaluate_assume_role(&policy, AGENT_ROLE, &tags);
    assert!(decision.allowed, "{decision}\n{document}");
    let mut elsewhere = tags.clone();
    elsewhere[0].1 = "someone-else".into();
    assert!(
        !evaluate_assume_role(&policy, AGENT_ROLE, &elsewhere).allowed,
        "{document}"
    );
    let statements: Value =
        serde_json::from_str(&irsa::trust::decode_policy_document(&document).unwrap()).unwrap();
    assert!(
        statements["Statement"]
            .as_array()
            .unwrap()
            .contains(&foreign),
        "{document}"
    );

    // The doctor agrees, step by step, asking the agent for the pod's credentials itself.
    let (code, report) = aws.doctor(&[
        "--pod",
        "web",
        "-n",
        &ns,
        "--agent-url",
        &full_uri,
        // The agent runs beside the test, not as a pod the doctor could read them from.
        "--agent-role-arn",
        AGENT_ROLE,
        "--cluster-name",
        CLUSTER,
    ]);
    for step in [
        "service-account",
        "pod",
        "association",
        "grant",
        "role",
        "trust-policy",
        "agent",
    ] {
        assert_eq!(
            support::doctor_step(&report, step)["status"],
            "PASS",
            "{step}: {report:#}"
        );
    }
    assert_eq!(code, 0, "{report:#}");

    controller.assert_running();
    webhook.assert_running();
    agent.assert_running();
    unregister(&client, &registered).await;
    support::delete_namespace(&client, &ns).await;
    let _ = Api::<IAMRoleGrant>::all(client)
        .delete(&grant_name, &DeleteParams::default())
        .await;
}
