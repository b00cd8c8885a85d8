//! `irsa controller` end to end against a real API server and IAM (a local moto by default):
//! bindings and annotated ServiceAccounts become trust-policy subjects and leave again when
//! their binding, grant, role or namespace goes; a restart with nothing changed writes nothing;
//! a foreign statement in every role survives everything byte for byte.

use irsa::arn::RoleArn;
use irsa::controller::metrics::{Aws, Metrics};
use irsa::crd::{IAMRoleBinding, IAMRoleBindingSpec, IAMRoleGrant, IAMRoleGrantSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use irsa_e2e::metrics;
use irsa_e2e::process::Process;
use irsa_e2e::support::{self, ControllerCluster, WAIT};
use irsa_e2e::trust_check::{provider_subjects, statement_by_sid, statements};

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

fn is_ready(binding: &IAMRoleBinding) -> bool {
    condition_is(binding, "Ready", "True")
}

fn condition_is(binding: &IAMRoleBinding, type_: &str, status: &str) -> bool {
    binding.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == status)
    })
}

fn annotation<'a>(sa: &'a ServiceAccount, key: &str) -> Option<&'a str> {
    sa.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// A role created for one test, with a foreign statement the controller must preserve.
struct TestRole {
    arn: String,
    role: RoleArn,
    foreign: Value,
}

/// One test's world: cluster, IAM, a fresh namespace, and what it created (cleaned up by
/// [`Fixture::cleanup`], best effort).
struct Fixture {
    cluster: ControllerCluster,
    aws: Aws,
    iam: aws_sdk_iam::Client,
    provider_arn: String,
    account: String,
    partition: String,
    ns: String,
    roles: Vec<String>,
    grants: Vec<String>,
}

impl Fixture {
    async fn new(prefix: &str) -> Self {
        let cluster = support::controller_cluster().await;
        let aws = Aws::new(&cluster.aws_env.sdk, Metrics::default());
        let me = aws
            .caller_identity()
            .await
            .unwrap_or_else(|e| panic!("{e} (is the AWS endpoint up?)"));
        let provider_arn = format!(
            "arn:{}:iam::{}:oidc-provider/{}",
            me.partition,
            me.account,
            cluster.issuer.host_path()
        );
        let iam = aws_sdk_iam::Client::new(&cluster.aws_env.sdk);
        let ns = support::create_namespace(&cluster.client, prefix).await;
        Self {
            cluster,
            aws,
            iam,
            provider_arn,
            account: me.account,
            partition: me.partition,
            ns,
            roles: Vec::new(),
            grants: Vec::new(),
        }
    }

    fn client(&self) -> kube::Client {
        self.cluster.client.clone()
    }

    fn subject(&self, sa: &str) -> String {
        format!("system:serviceaccount:{}:{sa}", self.ns)
    }

    fn start_controller(&self, name: &str) -> Process {
        Process::controller(&self.cluster, None, name)
    }

    async fn create_role(&mut self) -> TestRole {
        let name = support::unique("irsa-e2e");
        let foreign = foreign_statement(&self.account, &self.partition);
        let initial = json!({"Version": "2012-10-17", "Statement": [foreign.clone()]});
        let created = self
            .iam
            .create_role()
            .role_name(&name)
            .assume_role_policy_document(initial.to_string())
            .description("irsa e2e test role; safe to delete")
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating IAM role {name}: {e:?}"));
        let arn = created.role().map(|r| r.arn().to_string()).unwrap();
        self.roles.push(name);
        TestRole {
            role: RoleArn::parse(&arn).unwrap(),
            arn,
            foreign,
        }
    }

    /// A grant letting every ServiceAccount of this namespace bind `role_arns`.
    async fn create_grant(&mut self, role_arns: Vec<String>) -> String {
        let name = support::unique("irsa-e2e");
        let grant = IAMRoleGrant::new(
            &name,
            IAMRoleGrantSpec {
                namespaces: vec![self.ns.clone()],
                role_arns,
                service_accounts: Some(vec!["*".into()]),
                allow_namespace_wildcard_trust: false,
            },
        );
        Api::<IAMRoleGrant>::all(self.client())
            .create(&PostParams::default(), &grant)
            .await
            .unwrap();
        self.grants.push(name.clone());
        name
    }

    async fn create_service_account(&self, name: &str, annotations: Option<Value>) {
        let sa: ServiceAccount = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "annotations": annotations.unwrap_or(json!({}))}
        }))
        .unwrap();
        self.service_accounts()
            .create(&PostParams::default(), &sa)
            .await
            .unwrap();
    }

    fn service_accounts(&self) -> Api<ServiceAccount> {
        Api::namespaced(self.client(), &self.ns)
    }

    fn bindings(&self) -> Api<IAMRoleBinding> {
        Api::namespaced(self.client(), &self.ns)
    }

    async fn create_binding(&self, name: &str, role_arn: &str, sas: &[&str]) {
        let binding = IAMRoleBinding::new(
            name,
            IAMRoleBindingSpec {
                role_arn: role_arn.to_string(),
                service_accounts: sas.iter().map(ToString::to_string).collect(),
                audience: None,
                annotate_service_accounts: true,
                sts_regional_endpoints: None,
                token_expiration_seconds: None,
            },
        );
        self.bindings()
            .create(&PostParams::default(), &binding)
            .await
            .unwrap();
    }

    async fn wait_ready(&self, name: &str, controller: &Process) -> IAMRoleBinding {
        let bindings = self.bindings();
        controller
            .wait_for(
                &format!("IAMRoleBinding {}/{name} to become Ready", self.ns),
                WAIT,
                || async { bindings.get(name).await.ok().filter(is_ready) },
            )
            .await
    }

    async fn trust_document(&self, role: &TestRole) -> Value {
        let trust = self
            .aws
            .get_role_trust(&role.role)
            .await
            .unwrap_or_else(|e| panic!("reading the trust policy of {}: {e}", role.arn));
        serde_json::from_str(&trust.document).unwrap_or_else(|e| {
            panic!(
                "trust policy of {} is not JSON ({e}): {}",
                role.arn, trust.document
            )
        })
    }

    fn subjects_in(&self, doc: &Value) -> Vec<String> {
        provider_subjects(doc, &self.provider_arn, self.cluster.issuer.host_path())
    }

    /// Waits until `role` trusts exactly `expected` through this cluster's provider, then
    /// checks the foreign statement is byte-identical and returns the document.
    async fn wait_subjects(
        &self,
        role: &TestRole,
        expected: &[String],
        controller: &Process,
    ) -> Value {
        let doc = controller
            .wait_for(
                &format!("{} to trust exactly {expected:?}", role.arn),
                WAIT,
                || async {
                    let doc = self.trust_document(role).await;
                    (self.subjects_in(&doc) == expected).then_some(doc)
                },
            )
            .await;
        self.assert_foreign_kept(role, &doc);
        if expected.is_empty() {
            assert_eq!(
                statements(&doc).len(),
                1,
                "our emptied statement is removed from {}: {doc}",
                role.arn
            );
        }
        doc
    }

    fn assert_foreign_kept(&self, role: &TestRole, doc: &Value) {
        assert_eq!(
            statement_by_sid(doc, "HumanSaml"),
            Some(&role.foreign),
            "the foreign statement of {} is unchanged: {doc}",
            role.arn
        );
    }

    /// The controller ran to the end; then everything the test created goes.
    async fn finish(self, controller: Process) {
        controller.assert_running();
        drop(controller);
        self.cleanup().await;
    }

    async fn cleanup(self) {
        let client = self.client();
        for grant in &self.grants {
            let _ = Api::<IAMRoleGrant>::all(client.clone())
                .delete(grant, &DeleteParams::default())
                .await;
        }
        support::delete_namespace(&client, &self.ns).await;
        for role in &self.roles {
            if let Err(e) = self.iam.delete_role().role_name(role).send().await {
                println!("note: deleting IAM role {role} failed: {e:?}");
            }
        }
    }
}

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn binding_is_trusted_then_cleaned_up() {
    let mut f = Fixture::new("irsa-e2e").await;
    let role = f.create_role().await;
    f.create_service_account("app", None).await;
    f.create_grant(vec![role.arn.clone()]).await;
    f.create_binding("reader", &role.arn, &["app"]).await;
    let controller = f.start_controller("controller");

    // Bind: Ready, and the role trusts exactly this ServiceAccount.
    let ready = f.wait_ready("reader", &controller).await;
    let status = ready.status.clone().unwrap();
    assert_eq!(status.role_arn.as_deref(), Some(role.arn.as_str()));
    assert_eq!(
        status.oidc_provider_arn.as_deref(),
        Some(f.provider_arn.as_str())
    );
    let subject = f.subject("app");
    let doc = f
        .wait_subjects(&role, std::slice::from_ref(&subject), &controller)
        .await;
    let sid = irsa::trust::statement_sid(&f.cluster.issuer.url, AUDIENCE);
    let ours = statement_by_sid(&doc, &sid)
        .unwrap_or_else(|| panic!("no statement with our Sid {sid}: {doc}"));
    assert_eq!(ours["Action"], "sts:AssumeRoleWithWebIdentity", "{doc}");
    let host_path = f.cluster.issuer.host_path();
    let aud = &ours["Condition"]["StringEquals"][format!("{host_path}:aud").as_str()];
    assert!(
        *aud == json!(AUDIENCE) || *aud == json!([AUDIENCE]),
        "our statement trusts the audience {AUDIENCE}: {doc}"
    );
    assert_eq!(statements(&doc).len(), 2, "{doc}");

    let provider = f
        .aws
        .get_oidc_provider(&f.provider_arn)
        .await
        .unwrap_or_else(|e| panic!("the controller created no OIDC provider: {e}"));
    assert!(
        provider.client_ids.iter().any(|c| c == AUDIENCE),
        "{provider:?}"
    );

    let role_annotation = format!("{}/role-arn", f.cluster.settings.annotation_prefix);
    let sas = f.service_accounts();
    controller
        .wait_for(
            &format!("ServiceAccount {}/app to carry {role_annotation}", f.ns),
            WAIT,
            || async {
                let sa = sas.get("app").await.ok()?;
                (annotation(&sa, &role_annotation) == Some(role.arn.as_str())).then_some(())
            },
        )
        .await;

    // Unbind: the binding goes (after the finalizer ran), and so does the subject.
    let bindings = f.bindings();
    bindings
        .delete("reader", &DeleteParams::default())
        .await
        .unwrap();
    controller
        .wait_for(
            &format!("IAMRoleBinding {}/reader to be deleted (finalizer)", f.ns),
            WAIT,
            || async { matches!(bindings.get_opt("reader").await, Ok(None)).then_some(()) },
        )
        .await;
    // The annotation the binding wrote is removed too; until then an annotated-SA reconcile
    // may legitimately still trust the SA, so both are awaited rather than read once.
    controller
        .wait_for(
            &format!(
                "{role_annotation} to be removed from ServiceAccount {}/app",
                f.ns
            ),
            WAIT,
            || async {
                let sa = sas.get("app").await.ok()?;
                annotation(&sa, &role_annotation).is_none().then_some(())
            },
        )
        .await;
    f.wait_subjects(&role, &[], &controller).await;
    f.finish(controller).await;
}

/// A ServiceAccount that only carries the role-arn annotation (no binding) is trusted while
/// a grant allows it, and untrusted once the grant is deleted.
#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn annotated_service_account_is_trusted_only_while_a_grant_allows_it() {
    let mut f = Fixture::new("irsa-e2e-sa").await;
    let role = f.create_role().await;
    let prefix = f.cluster.settings.annotation_prefix.clone();
    f.create_service_account("app", Some(json!({format!("{prefix}/role-arn"): role.arn})))
        .await;
    let grant = f.create_grant(vec![role.arn.clone()]).await;
    let controller = f.start_controller("controller-sa");

    f.wait_subjects(&role, &[f.subject("app")], &controller)
        .await;

    Api::<IAMRoleGrant>::all(f.client())
        .delete(&grant, &DeleteParams::default())
        .await
        .unwrap();
    f.wait_subjects(&role, &[], &controller).await;
    f.finish(controller).await;
}

/// Moving a binding to another role cleans the old role and trusts the SA on the new one.
#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn changed_role_arn_cleans_the_old_role() {
    let mut f = Fixture::new("irsa-e2e-move").await;
    let old = f.create_role().await;
    let new = f.create_role().await;
    f.create_service_account("app", None).await;
    f.create_grant(vec![old.arn.clone(), new.arn.clone()]).await;
    f.create_binding("reader", &old.arn, &["app"]).await;
    let controller = f.start_controller("controller-move");
    f.wait_ready("reader", &controller).await;
    let subject = f.subject("app");
    f.wait_subjects(&old, std::slice::from_ref(&subject), &controller)
        .await;

    let patch = json!({"spec": {"roleArn": new.arn}});
    f.bindings()
        .patch("reader", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    f.wait_subjects(&new, std::slice::from_ref(&subject), &controller)
        .await;
    f.wait_subjects(&old, &[], &controller).await;
    let bindings = f.bindings();
    let status = controller
        .wait_for(
            "the binding's status to name the new role",
            WAIT,
            || async {
                let b = bindings.get("reader").await.ok()?;
                let status = b.status.clone()?;
                (is_ready(&b) && status.role_arn.as_deref() == Some(new.arn.as_str()))
                    .then_some(status)
            },
        )
        .await;
    assert_eq!(status.role_arn.as_deref(), Some(new.arn.as_str()));
    f.finish(controller).await;
}

/// Deleting the namespace of a binding removes its subjects from IAM, and the finalizer lets
/// the namespace go.
#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn deleted_namespace_leaves_iam_and_is_not_blocked() {
    let mut f = Fixture::new("irsa-e2e-ns").await;
    let role = f.create_role().await;
    f.create_service_account("app", None).await;
    f.create_service_account("worker", None).await;
    f.create_grant(vec![role.arn.clone()]).await;
    f.create_binding("reader", &role.arn, &["app", "worker"])
        .await;
    let controller = f.start_controller("controller-ns");
    f.wait_ready("reader", &controller).await;
    f.wait_subjects(&role, &[f.subject("app"), f.subject("worker")], &controller)
        .await;

    let namespaces: Api<Namespace> = Api::all(f.client());
    namespaces
        .delete(&f.ns, &DeleteParams::background())
        .await
        .unwrap();
    f.wait_subjects(&role, &[], &controller).await;
    controller.wait_for(
        &format!(
            "namespace {} to be gone (kube-controller-manager's namespace controller, then our finalizer)",
            f.ns
        ),
        WAIT,
        || async { matches!(namespaces.get_opt(&f.ns).await, Ok(None)).then_some(()) })
    .await;
    f.finish(controller).await;
}

/// A controller restarted with nothing changed reads IAM and writes nothing (counted at the
/// emulator's proxy: every IAM/STS request of the new process goes through it).
#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn restart_with_nothing_changed_writes_nothing() {
    let mut f = Fixture::new("irsa-e2e-restart").await;
    let role = f.create_role().await;
    f.create_service_account("app", None).await;
    f.create_grant(vec![role.arn.clone()]).await;
    f.create_binding("reader", &role.arn, &["app"]).await;
    let first = f.start_controller("controller-first");
    f.wait_ready("reader", &first).await;
    let subject = f.subject("app");
    let before = f
        .wait_subjects(&role, std::slice::from_ref(&subject), &first)
        .await;
    first.terminate();
    drop(first);

    let calls = f.cluster.aws_env.calls();
    calls.reset_counts();
    let second = f.start_controller("controller-second");
    // The new process has done its pass over the role once the IAM worker counts it: the
    // count comes after the pass's reads and any write of the trust policy, and after the
    // provider check of its start.
    let role_passes = "irsa_controller_reconciles_total{kind=\"role\"}";
    second.wait_ready(WAIT).await;
    second
        .wait_for(
            "the restarted controller to finish a pass over the role",
            WAIT,
            async || metrics::find(&second.metrics().await, role_passes).is_some_and(|n| n >= 1.0),
        )
        .await;
    assert!(calls.forwarded("GetRole") > 0, "the pass read the role");
    assert_eq!(
        calls.writes(),
        0,
        "IAM writes after a restart with nothing changed: {:?}",
        calls.forwarded_counts()
    );
    let after = f.trust_document(&role).await;
    assert_eq!(before, after, "the trust policy is unchanged");
    drop(second);
    f.cleanup().await;
}
