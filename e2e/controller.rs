//! `irsa controller` end to end: a grant + binding + ServiceAccount in a fresh namespace make
//! the role trust exactly that ServiceAccount; deleting the binding removes it again; a foreign
//! statement in the role survives both untouched.

use irsa::arn::RoleArn;
use irsa::controller::aws::Aws;
use irsa::controller::metrics::Metrics;
use irsa::crd::{IAMRoleBinding, IAMRoleBindingSpec, IAMRoleGrant, IAMRoleGrantSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use serde_json::{Value, json};

use crate::support::{self, ControllerProcess, WAIT, wait_for};
use crate::trust_check::{provider_subjects, statement_by_sid, statements};

const AUDIENCE: &str = irsa::mutate::config::DEFAULT_AUDIENCE;

/// A human's SAML statement: the controller must never move it.
fn foreign_statement(account: &str, partition: &str) -> Value {
    json!({
        "Sid": "HumanSaml",
        "Effect": "Allow",
        "Principal": {"Federated": format!("arn:{partition}:iam::{account}:saml-provider/corp-idp")},
        "Action": "sts:AssumeRoleWithSAML",
        "Condition": {"StringEquals": {"SAML:aud": "https://signin.aws.amazon.com/saml"}}
    })
}

async fn trust_document(aws: &Aws, role: &RoleArn) -> Value {
    let trust = aws
        .get_role_trust(role)
        .await
        .unwrap_or_else(|e| panic!("reading the trust policy of {role}: {e}"));
    serde_json::from_str(&trust.document).unwrap_or_else(|e| {
        panic!(
            "trust policy of {role} is not JSON ({e}): {}",
            trust.document
        )
    })
}

fn is_ready(binding: &IAMRoleBinding) -> bool {
    binding.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

fn annotation<'a>(sa: &'a ServiceAccount, key: &str) -> Option<&'a str> {
    sa.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

#[tokio::test]
async fn binding_is_trusted_then_cleaned_up() {
    let Some(support::ControllerCluster {
        settings,
        client,
        issuer,
        aws_env,
    }) = support::controller_cluster("binding_is_trusted_then_cleaned_up").await
    else {
        return;
    };
    let aws = Aws::new(&aws_env.sdk, Metrics::default());
    let me = aws
        .caller_identity()
        .await
        .unwrap_or_else(|e| panic!("{e} (is AWS_ENDPOINT_URL right and the emulator up?)"));
    let provider_arn = format!(
        "arn:{}:iam::{}:oidc-provider/{}",
        me.partition,
        me.account,
        issuer.host_path()
    );

    // A role whose trust policy already has someone else's statement.
    let iam = aws_sdk_iam::Client::new(&aws_env.sdk);
    let role_name = support::unique("irsa-e2e");
    let foreign = foreign_statement(&me.account, &me.partition);
    let initial = json!({"Version": "2012-10-17", "Statement": [foreign.clone()]});
    let created = iam
        .create_role()
        .role_name(&role_name)
        .assume_role_policy_document(initial.to_string())
        .description("irsa e2e test role; safe to delete")
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating IAM role {role_name}: {e:?}"));
    let role_arn_text = created.role().map(|r| r.arn().to_string()).unwrap();
    let role = RoleArn::parse(&role_arn_text).unwrap();

    let ns = support::create_namespace(&client, "irsa-e2e").await;
    let subject = format!("system:serviceaccount:{ns}:app");
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("app".into()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    sas.create(&PostParams::default(), &sa).await.unwrap();

    let grants: Api<IAMRoleGrant> = Api::all(client.clone());
    let grant_name = support::unique("irsa-e2e");
    let grant = IAMRoleGrant::new(
        &grant_name,
        IAMRoleGrantSpec {
            namespaces: vec![ns.clone()],
            role_arns: vec![role_arn_text.clone()],
            service_accounts: Some(vec!["*".into()]),
            allow_namespace_wildcard_trust: false,
        },
    );
    grants.create(&PostParams::default(), &grant).await.unwrap();

    let bindings: Api<IAMRoleBinding> = Api::namespaced(client.clone(), &ns);
    let binding = IAMRoleBinding::new(
        "reader",
        IAMRoleBindingSpec {
            role_arn: role_arn_text.clone(),
            service_accounts: vec!["app".into()],
            audience: None,
            annotate_service_accounts: true,
            sts_regional_endpoints: None,
            token_expiration_seconds: None,
        },
    );
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();

    let controller = ControllerProcess::start(&settings, &aws_env, &issuer.url, None, "controller");

    // Bind: Ready, and the role trusts exactly this ServiceAccount.
    let ready = wait_for(
        &format!("IAMRoleBinding {ns}/reader to become Ready"),
        WAIT,
        Some(&controller),
        || async { bindings.get("reader").await.ok().filter(is_ready) },
    )
    .await;
    let status = ready.status.clone().unwrap();
    assert_eq!(status.role_arn.as_deref(), Some(role_arn_text.as_str()));
    assert_eq!(
        status.oidc_provider_arn.as_deref(),
        Some(provider_arn.as_str())
    );

    let doc = trust_document(&aws, &role).await;
    assert_eq!(
        provider_subjects(&doc, &provider_arn, issuer.host_path()),
        std::slice::from_ref(&subject),
        "the role trusts exactly {subject}: {doc}"
    );
    let sid = irsa::trust::statement_sid(&issuer.url, AUDIENCE);
    let ours = statement_by_sid(&doc, &sid)
        .unwrap_or_else(|| panic!("no statement with our Sid {sid}: {doc}"));
    assert_eq!(ours["Action"], "sts:AssumeRoleWithWebIdentity", "{doc}");
    let aud = &ours["Condition"]["StringEquals"][format!("{}:aud", issuer.host_path()).as_str()];
    assert!(
        *aud == json!(AUDIENCE) || *aud == json!([AUDIENCE]),
        "our statement trusts the audience {AUDIENCE}: {doc}"
    );
    assert_eq!(
        statement_by_sid(&doc, "HumanSaml"),
        Some(&foreign),
        "the foreign statement is unchanged: {doc}"
    );
    assert_eq!(statements(&doc).len(), 2, "{doc}");

    let provider = aws
        .get_oidc_provider(&provider_arn)
        .await
        .unwrap_or_else(|e| panic!("the controller created no OIDC provider: {e}"));
    assert!(
        provider.client_ids.iter().any(|c| c == AUDIENCE),
        "{provider:?}"
    );

    let role_annotation = format!("{}/role-arn", settings.annotation_prefix);
    wait_for(
        &format!("ServiceAccount {ns}/app to carry {role_annotation}"),
        WAIT,
        Some(&controller),
        || async {
            let sa = sas.get("app").await.ok()?;
            (annotation(&sa, &role_annotation) == Some(role_arn_text.as_str())).then_some(())
        },
    )
    .await;

    // Unbind: the binding goes (after the finalizer ran), and so does the subject.
    bindings
        .delete("reader", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        &format!("IAMRoleBinding {ns}/reader to be deleted (finalizer)"),
        WAIT,
        Some(&controller),
        || async {
            match bindings.get_opt("reader").await {
                Ok(None) => Some(()),
                _ => None,
            }
        },
    )
    .await;
    // The annotation the binding wrote is removed too; until then an annotated-SA reconcile
    // may legitimately still trust the SA, so both are awaited rather than read once.
    wait_for(
        &format!("{role_annotation} to be removed from ServiceAccount {ns}/app"),
        WAIT,
        Some(&controller),
        || async {
            let sa = sas.get("app").await.ok()?;
            annotation(&sa, &role_annotation).is_none().then_some(())
        },
    )
    .await;
    let doc = wait_for(
        &format!("{subject} to leave the trust policy of {role}"),
        WAIT,
        Some(&controller),
        || async {
            let doc = trust_document(&aws, &role).await;
            provider_subjects(&doc, &provider_arn, issuer.host_path())
                .is_empty()
                .then_some(doc)
        },
    )
    .await;
    assert_eq!(
        statement_by_sid(&doc, "HumanSaml"),
        Some(&foreign),
        "the foreign statement survived: {doc}"
    );
    assert_eq!(
        statements(&doc).len(),
        1,
        "our emptied statement is removed: {doc}"
    );
    controller.assert_running();
    drop(controller);

    // Cleanup (best effort; the OIDC provider stays: other runs on this cluster share it).
    let _ = grants.delete(&grant_name, &DeleteParams::default()).await;
    support::delete_namespace(&client, &ns).await;
    if let Err(e) = iam.delete_role().role_name(&role_name).send().await {
        println!("note: deleting IAM role {role_name} failed: {e:?}");
    }
}
