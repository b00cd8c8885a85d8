//! `irsa controller --pod-identity-agent-role-arn` end to end against a real API server and
//! moto: a granted `PodIdentityAssociation` puts the documented statement for the agent's
//! role in its role's trust policy and gets Ready (one with `disableSessionTags`, the
//! statement without conditions); one without a grant gets nothing and says why; a foreign
//! statement is kept byte for byte; resyncs at steady state write nothing; deleting the
//! associations takes the statements away again.

use irsa::crd::{IAMRoleGrant, PodIdentityAssociation};
use irsa::trust::{pod_identity_sid, pod_identity_untagged_sid};
use kube::Api;
use kube::api::DeleteParams;
use serde_json::{Value, json};

use irsa_e2e::metrics;
use irsa_e2e::process::Process;
use irsa_e2e::support::{self, WAIT};
use irsa_e2e::trust_check::{statement_by_sid, statements};

/// The controller journeys' `--cluster-name` (`Process::controller_with`).
const CLUSTER: &str = "e2e";

/// `(status, reason, message)` of condition `type_`, for the current generation only.
fn condition_of(a: &PodIdentityAssociation, type_: &str) -> Option<(String, String, String)> {
    let status = a.status.as_ref()?;
    let c = status.conditions.iter().find(|c| c.type_ == type_)?;
    (c.observed_generation == a.metadata.generation)
        .then(|| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn association_trust_statement_is_written_kept_steady_and_removed() {
    let cluster = support::controller_cluster().await;
    let aws = cluster.aws_env.local.as_ref().unwrap_or_else(|| {
        panic!("this journey counts IAM writes: it needs the local emulator (unset IRSA_E2E_AWS)")
    });
    let client = cluster.client.clone();
    let ns = support::create_namespace(&client, "irsa-e2e-pia").await;
    let account = irsa_e2e::moto::ACCOUNT;
    let agent = aws
        .seed_role(
            "/",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
            &[],
        )
        .await;
    // A human's statement, keys in an unusual order: it must come back byte for byte.
    let foreign = json!({
        "Sid": "HumanSaml",
        "Principal": {"Federated": format!("arn:aws:iam::{account}:saml-provider/corp-idp")},
        "Effect": "Allow",
        "Condition": {"StringEquals": {"SAML:aud": "https://signin.aws.amazon.com/saml"}},
        "Action": "sts:AssumeRoleWithSAML"
    });
    let role = aws
        .seed_role(
            "/irsa-e2e/",
            &json!({"Version": "2012-10-17", "Statement": [foreign.clone()]}).to_string(),
            &[],
        )
        .await;
    let grant = support::create_grant(
        &client,
        "irsa-e2e-pia",
        &ns,
        &[&role],
        Some(vec!["web".into(), "api".into(), "batch".into()]),
    )
    .await;
    let associations: Api<PodIdentityAssociation> = Api::namespaced(client.clone(), &ns);
    for (name, sa) in [("web", "web"), ("api", "api"), ("intruder", "intruder")] {
        support::create_association(&client, &ns, &support::association(name, sa, &role)).await;
    }
    // Sessions without tags: trusted by the one statement without conditions.
    let mut untagged = support::association("batch", "batch", &role);
    untagged.spec.disable_session_tags = true;
    support::create_association(&client, &ns, &untagged).await;
    let controller = Process::controller_with(
        &cluster,
        None,
        "controller-pia",
        &[
            "--pod-identity-agent-role-arn",
            &agent,
            "--resync-interval",
            "3s",
        ],
    );

    // Granted: the documented statement, and Ready.
    let sid = pod_identity_sid(&agent, CLUSTER, &ns);
    let expected = json!({
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"AWS": agent},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
        "Condition": {"StringEquals": {
            "aws:RequestTag/irsa-cluster-name": CLUSTER,
            "aws:RequestTag/kubernetes-namespace": ns,
            "aws:RequestTag/kubernetes-service-account": ["api", "web"],
        }},
    });
    let untagged_sid = pod_identity_untagged_sid(&agent, CLUSTER);
    let expected_untagged = json!({
        "Sid": untagged_sid,
        "Effect": "Allow",
        "Principal": {"AWS": agent},
        "Action": "sts:AssumeRole",
    });
    let trust = || async {
        let text = aws.trust_of(&role).await;
        serde_json::from_str::<Value>(&text).unwrap()
    };
    let doc = controller
        .wait_for(
            &format!("{role} to hold the Pod Identity statement {sid}"),
            WAIT,
            || async {
                let doc = trust().await;
                (statement_by_sid(&doc, &sid) == Some(&expected)
                    && statement_by_sid(&doc, &untagged_sid) == Some(&expected_untagged))
                .then_some(doc)
            },
        )
        .await;
    let kept = |doc: &Value| {
        let list = statements(doc);
        assert_eq!(
            list.first().map(|s| s.to_string()),
            Some(foreign.to_string()),
            "the foreign statement is first and byte-identical: {doc}"
        );
    };
    kept(&doc);
    assert_eq!(statements(&doc).len(), 3, "{doc}");
    for name in ["web", "api", "batch"] {
        let (_, reason, message) = controller
            .wait_for(
                &format!("PodIdentityAssociation {ns}/{name} to be Ready"),
                WAIT,
                || async {
                    let a = associations.get(name).await.ok()?;
                    condition_of(&a, "Ready").filter(|(status, ..)| status == "True")
                },
            )
            .await;
        assert_eq!(reason, "TrustPolicyApplied");
        assert!(message.contains(&agent), "{message}");
    }

    // Not granted: no trust for it, and the status says which grant missed and why.
    let (_, reason, message) = controller
        .wait_for(
            &format!("PodIdentityAssociation {ns}/intruder to be refused"),
            WAIT,
            || async {
                let a = associations.get("intruder").await.ok()?;
                condition_of(&a, "Authorized").filter(|(status, ..)| status == "False")
            },
        )
        .await;
    assert_eq!(reason, "NotAuthorized");
    assert!(
        message.contains("ServiceAccount intruder not in") && message.contains(&grant),
        "{message}"
    );
    let intruder = associations.get("intruder").await.unwrap();
    assert_eq!(
        condition_of(&intruder, "Ready").map(|(s, r, _)| (s, r)),
        Some(("False".into(), "NotAuthorized".into()))
    );

    // Steady state: resyncs (every 3 s) read the role and write nothing.
    let calls = cluster.aws_env.calls();
    calls.reset_counts();
    let passes = "irsa_controller_reconciles_total{kind=\"role\"}";
    let count = async || metrics::find(&controller.metrics().await, passes).unwrap_or(0.0);
    let before = count().await;
    controller
        .wait_for("two resyncs of the role", WAIT, async || {
            (count().await >= before + 2.0).then_some(())
        })
        .await;
    assert!(
        calls.forwarded("GetRole") >= 2,
        "{:?}",
        calls.forwarded_counts()
    );
    assert_eq!(
        calls.forwarded("UpdateAssumeRolePolicy"),
        0,
        "IAM writes at steady state: {:?}",
        calls.forwarded_counts()
    );
    assert_eq!(trust().await, doc, "the trust policy is unchanged");

    // Deleting the associations: first the ServiceAccount leaves the list, then the
    // statement goes, and only the foreign one is left.
    associations
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    controller
        .wait_for("web to leave the statement", WAIT, || async {
            let doc = trust().await;
            let sas = statement_by_sid(&doc, &sid)?["Condition"]["StringEquals"]
                ["aws:RequestTag/kubernetes-service-account"]
                .clone();
            (sas == json!("api")).then_some(())
        })
        .await;
    for name in ["api", "batch"] {
        associations
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    let doc = controller
        .wait_for(
            "the Pod Identity statements to be removed",
            WAIT,
            || async {
                let doc = trust().await;
                (statement_by_sid(&doc, &sid).is_none()
                    && statement_by_sid(&doc, &untagged_sid).is_none())
                .then_some(doc)
            },
        )
        .await;
    kept(&doc);
    assert_eq!(statements(&doc).len(), 1, "{doc}");

    controller.assert_running();
    drop(controller);
    let _ = Api::<IAMRoleGrant>::all(client.clone())
        .delete(&grant, &DeleteParams::default())
        .await;
    support::delete_namespace(&client, &ns).await;
}
