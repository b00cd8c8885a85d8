//! The controller's world for the fault and chaos journeys: IAM roles that already hold
//! statements of "someone else" (a human's SAML access, another cluster's OIDC trust), one
//! grant over them, bindings, and the one check that the controller converged: every role
//! trusts exactly the subjects the bindings ask for, every foreign statement is byte-identical
//! and in its place, every binding is Ready for its current spec and none is stuck deleting.

use std::collections::{BTreeMap, BTreeSet};

use irsa::crd::{IAMRoleBinding, IAMRoleGrant, IAMRoleGrantSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use crate::moto::TestAws;
use crate::process::Process;
use crate::support::{self, ControllerCluster, WAIT};
use crate::trust_check::{provider_subjects, statements};

/// Statements the controller must never touch, with deliberately unusual key order and
/// spacing-insensitive content: compared byte for byte after serialisation.
fn foreign_statements(account: &str, n: usize) -> Vec<Value> {
    vec![
        json!({
            "Sid": format!("HumanSaml{n}"),
            "Principal": {"Federated": format!("arn:aws:iam::{account}:saml-provider/corp-idp")},
            "Effect": "Allow",
            "Condition": {"StringEquals": {"SAML:aud": "https://signin.aws.amazon.com/saml"}},
            "Action": "sts:AssumeRoleWithSAML"
        }),
        json!({
            "Effect": "Allow",
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Principal": {"Federated": format!(
                "arn:aws:iam::{account}:oidc-provider/other-cluster.example/id/{n}")},
            "Condition": {"StringLike": {
                format!("other-cluster.example/id/{n}:sub"): ["system:serviceaccount:team:*"]}}
        }),
    ]
}

/// A role seeded with foreign statements before any controller runs.
#[derive(Debug, Clone)]
pub struct Role {
    pub name: String,
    pub arn: String,
    pub foreign: Vec<Value>,
}

/// One journey's world: cluster, IAM behind the fault proxy, a namespace, roles, one grant.
pub struct World {
    pub cluster: ControllerCluster,
    pub ns: String,
    pub roles: Vec<Role>,
    pub provider_arn: String,
    grant: String,
}

impl World {
    /// `roles` roles with foreign statements, `service_accounts` ServiceAccounts `sa-0..`, and
    /// a grant letting every ServiceAccount of the namespace bind every role.
    pub async fn new(prefix: &str, roles: usize, service_accounts: usize) -> Self {
        Self::on(
            support::controller_cluster().await,
            prefix,
            roles,
            service_accounts,
        )
        .await
    }

    /// [`Self::new`] on `cluster` (e.g. a control plane of the test's own).
    pub async fn on(
        cluster: ControllerCluster,
        prefix: &str,
        roles: usize,
        service_accounts: usize,
    ) -> Self {
        let aws = cluster.aws_env.local.as_ref().unwrap_or_else(|| {
            panic!(
                "fault journeys need the local emulator behind the fault proxy (unset IRSA_E2E_AWS)"
            )
        });
        let account = crate::moto::ACCOUNT;
        let provider_arn = format!(
            "arn:aws:iam::{account}:oidc-provider/{}",
            cluster.issuer.host_path()
        );
        let ns = support::create_namespace(&cluster.client, prefix).await;
        let mut seeded = Vec::new();
        for i in 0..roles {
            let foreign = foreign_statements(account, i);
            let doc = json!({"Version": "2012-10-17", "Statement": foreign});
            let arn = aws.seed_role("/irsa-e2e/", &doc.to_string(), &[]).await;
            let name = arn.rsplit('/').next().unwrap_or(&arn).to_string();
            seeded.push(Role { name, arn, foreign });
        }
        let grant = support::unique(prefix);
        let spec = IAMRoleGrantSpec {
            namespaces: vec![ns.clone()],
            role_arns: seeded.iter().map(|r| r.arn.clone()).collect(),
            service_accounts: Some(vec!["*".into()]),
            allow_namespace_wildcard_trust: false,
        };
        Api::<IAMRoleGrant>::all(cluster.client.clone())
            .create(&PostParams::default(), &IAMRoleGrant::new(&grant, spec))
            .await
            .unwrap_or_else(|e| panic!("creating IAMRoleGrant {grant}: {e}"));
        let sas: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), &ns);
        for i in 0..service_accounts {
            let sa: ServiceAccount = serde_json::from_value(
                json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": format!("sa-{i}")}}),
            )
            .unwrap();
            sas.create(&PostParams::default(), &sa)
                .await
                .unwrap_or_else(|e| panic!("creating ServiceAccount {ns}/sa-{i}: {e}"));
        }
        Self {
            cluster,
            ns,
            roles: seeded,
            provider_arn,
            grant,
        }
    }

    pub fn aws(&self) -> &TestAws {
        self.cluster.aws_env.local.as_ref().unwrap()
    }

    pub fn bindings(&self) -> Api<IAMRoleBinding> {
        Api::namespaced(self.cluster.client.clone(), &self.ns)
    }

    pub fn subject(&self, sa: &str) -> String {
        format!("system:serviceaccount:{}:{sa}", self.ns)
    }

    /// A role's trust policy as IAM holds it, parsed (key order kept). A read moto did not
    /// answer in time (a busy machine) is an `Err`, for the caller to poll again.
    pub async fn trust(&self, role: &Role) -> Result<Value, String> {
        let out = self
            .aws()
            .iam_direct()
            .get_role()
            .role_name(&role.name)
            .send()
            .await
            .map_err(|e| format!("reading {}: {e}", role.name))?;
        let raw = out
            .role()
            .and_then(|r| r.assume_role_policy_document())
            .unwrap_or_else(|| panic!("{} has no trust policy", role.name));
        let text = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
        Ok(serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("trust policy of {} is not JSON ({e}): {text}", role.arn)))
    }

    /// What the bindings ask for now: role ARN → subjects (bindings being deleted ask for none).
    pub async fn desired(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for b in self.bindings().list(&ListParams::default()).await.unwrap() {
            if b.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let subjects = out.entry(b.spec.role_arn.clone()).or_default();
            subjects.extend(b.spec.service_accounts.iter().map(|sa| self.subject(sa)));
        }
        out
    }

    /// `Ok` once IAM and the bindings are converged, else what is not (see the module docs);
    /// panics on a foreign statement changed, moved or lost.
    pub async fn converged(&self) -> Result<(), String> {
        let desired = self.desired().await;
        for b in self.bindings().list(&ListParams::default()).await.unwrap() {
            let name = b.name_any();
            if b.metadata.deletion_timestamp.is_some() {
                return Err(format!("binding {name} is still deleting (finalizer)"));
            }
            let status = b.status.clone().unwrap_or_default();
            let ready = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if !ready || status.observed_generation != b.metadata.generation {
                return Err(format!(
                    "binding {name} is not Ready for its spec: {status:?}"
                ));
            }
            if status.role_arn.as_deref() != Some(b.spec.role_arn.as_str()) {
                return Err(format!(
                    "binding {name} still records role {:?}",
                    status.role_arn
                ));
            }
        }
        for role in &self.roles {
            let doc = self.trust(role).await?;
            let want: Vec<String> = desired
                .get(&role.arn)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
            let have = provider_subjects(&doc, &self.provider_arn, self.cluster.issuer.host_path());
            if have != want {
                return Err(format!("{} trusts {have:?}, not {want:?}", role.name));
            }
            // Never transient: a foreign statement the controller dropped or rewrote does not
            // come back, so this fails at once rather than at the deadline.
            if let Err(lost) = check_foreign(role, &doc) {
                panic!("data loss: {lost}");
            }
            let ours = usize::from(!want.is_empty());
            let total = statements(&doc).len();
            if total != role.foreign.len() + ours {
                return Err(format!("{} has {total} statements: {doc}", role.name));
            }
        }
        Ok(())
    }

    /// Waits (bounded, guarded by `controller`) until [`Self::converged`]; prints each new
    /// mismatch on the way, so a timeout shows the last one.
    pub async fn wait_converged(&self, controller: &Process, what: &str) {
        let mut last = String::new();
        controller
            .wait_for(what, WAIT, async || match self.converged().await {
                Ok(()) => true,
                Err(e) => {
                    if e != last {
                        println!("not yet converged: {e}");
                        last = e;
                    }
                    false
                }
            })
            .await;
    }

    /// Everything this world created, best effort: bindings (their finalizers need a
    /// controller still running), namespace, grant, roles.
    pub async fn cleanup(self) {
        let client = self.cluster.client.clone();
        let _ = Api::<IAMRoleGrant>::all(client.clone())
            .delete(&self.grant, &DeleteParams::default())
            .await;
        support::delete_namespace(&client, &self.ns).await;
        let iam = self.aws().iam_direct();
        for role in &self.roles {
            let _ = iam.delete_role().role_name(&role.name).send().await;
        }
    }
}

/// Every foreign statement is in `doc`, serialised byte for byte as seeded, in seeded order.
pub fn check_foreign(role: &Role, doc: &Value) -> Result<(), String> {
    let seen: Vec<String> = statements(doc).into_iter().map(|s| s.to_string()).collect();
    let mut at = 0;
    for want in &role.foreign {
        let want = want.to_string();
        match seen[at..].iter().position(|s| *s == want) {
            Some(i) => at += i + 1,
            None => {
                return Err(format!(
                    "foreign statement of {} changed, moved or lost: {want} not in {doc}",
                    role.name
                ));
            }
        }
    }
    Ok(())
}
