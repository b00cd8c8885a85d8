//! Trust reconciliation end to end on the IAM side: the role reconciler and its worker
//! (desired state → trust compiler → converge) against a real IAM emulator (moto) behind the
//! fault-injecting, call-counting proxy; and the IAMRoleBinding reconciler against a mocked
//! API server (tower-test) that asserts every request.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use irsa::arn::RoleArn;
use irsa::aws::ConvergeOptions;
use irsa::controller::iam::queue::RoleQueue;
use irsa::controller::iam::reconcile::{RoleSettings, reconcile_role};
use irsa::controller::iam::worker::{RoleWorker, WorkerOptions};
use irsa::controller::metrics::{Aws, Metrics};
use irsa::controller::policy::authz::{ALLOWED_NAMESPACES_TAG, GrantSpec};
use irsa::controller::policy::desired::{
    self, AssociationInfo, BindingInfo, Key, Snapshot, Verdict,
};
use irsa::controller::policy::plan::PLACEHOLDER_SID;
use irsa::controller::policy::report::Outcome;
use irsa::issuer::IssuerUrl;
use irsa::testing::fixtures::binding;
use irsa::trust::{PolicyDocument, pod_identity_sid, statement_sid};
use irsa_e2e::moto::{self, ACCOUNT, Fault, TestAws};
use irsa_e2e::wait::wait_for;

use crate::common::WAIT;
use serde_json::Value;

const STS_AUD: &str = "sts.amazonaws.com";

/// A human's SAML statement and another cluster's statement, formatted by hand: both must
/// come out of every reconcile exactly as they went in.
const FOREIGN: &str = r#"{"Version":"2012-10-17","Statement":[
 {"Sid":"HumansViaSaml","Effect":"Allow","Principal":{"Federated":"arn:aws:iam::123456789012:saml-provider/Corp"},
  "Action":"sts:AssumeRoleWithSAML","Condition":{"StringEquals":{"SAML:aud":"https://signin.aws.amazon.com/saml?a=1&b=%2B é"}}},
 {"Sid":"OtherClusterTerraform","Effect":"Allow","Principal":{"Federated":"arn:aws:iam::123456789012:oidc-provider/oidc.other.example/id/Z"},
  "Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEquals":{"oidc.other.example/id/Z:sub":"system:serviceaccount:x:y"}}}
]}"#;

fn issuer() -> String {
    format!("https://oidc.test.example/id/{}", moto::unique("c"))
}

fn settings(issuer: &str, cluster: &str) -> RoleSettings {
    RoleSettings {
        issuer: IssuerUrl::parse(issuer).unwrap(),
        provider_arn: format!(
            "arn:aws:iam::{ACCOUNT}:oidc-provider/{}",
            issuer.strip_prefix("https://").unwrap()
        ),
        max_chars: 2048,
        desired: desired::Settings {
            cluster: cluster.into(),
            default_audience: STS_AUD.into(),
            manage_annotated: true,
            pod_identity_agent: None,
        },
        converge: ConvergeOptions {
            max_writes: 4,
            base_backoff: Duration::from_millis(50),
        },
    }
}

fn adapter(aws: &TestAws) -> Aws {
    Aws::new(aws.sdk_config(), Metrics::default())
}

async fn seed_role(aws: &TestAws, trust: &str, tags: &[(&str, &str)]) -> String {
    aws.seed_role("/", trust, tags).await
}

async fn hand_edit(aws: &TestAws, role: &str, doc: &str) {
    let name = RoleArn::parse(role).unwrap().name;
    aws.iam_direct()
        .update_assume_role_policy()
        .role_name(name)
        .policy_document(doc)
        .send()
        .await
        .unwrap();
}

fn statements(doc: &str) -> Vec<Value> {
    PolicyDocument::parse(doc)
        .unwrap()
        .statements()
        .into_iter()
        .cloned()
        .collect()
}

fn foreign_statements() -> Vec<Value> {
    statements(FOREIGN)
}

/// Statements without our Sid for `issuer`, in order.
fn others(doc: &str, issuer: &str) -> Vec<Value> {
    let sid = statement_sid(issuer, STS_AUD);
    statements(doc)
        .into_iter()
        .filter(|s| s["Sid"] != Value::String(sid.clone()))
        .collect()
}

/// The `sub` values of our statement for `issuer` (sorted as written), or None.
fn our_subjects(doc: &str, issuer: &str) -> Option<Vec<String>> {
    let sid = statement_sid(issuer, STS_AUD);
    let host = issuer.strip_prefix("https://").unwrap();
    let st = statements(doc)
        .into_iter()
        .find(|s| s["Sid"] == Value::String(sid.clone()))?;
    let key = format!("{host}:sub");
    let sub = ["StringEquals", "StringLike"]
        .iter()
        .find_map(|op| st["Condition"].get(op).and_then(|c| c.get(&key)))
        .unwrap();
    Some(match sub {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_string()).collect(),
        other => panic!("sub is {other}"),
    })
}

fn subs(list: &[&str]) -> Vec<String> {
    list.iter()
        .map(|s| format!("system:serviceaccount:{s}"))
        .collect()
}

/// A grant for every role of the test account, namespaces `team-*`.
fn grant(wildcard: bool) -> (String, GrantSpec) {
    (
        "teams".into(),
        GrantSpec {
            namespaces: vec!["team-*".into()],
            role_arns: vec![format!("arn:aws:iam::{ACCOUNT}:role/*")],
            service_accounts: None,
            allow_namespace_wildcard_trust: wildcard,
        },
    )
}

fn snapshot(bindings: Vec<BindingInfo>) -> Snapshot {
    Snapshot {
        bindings,
        service_accounts: vec![],
        grants: vec![grant(false)],
        associations: vec![],
    }
}

#[tokio::test]
async fn bind_trusts_exactly_the_subjects_and_unbind_removes_them_keeping_foreign_statements() {
    let aws = moto::test_aws().await;
    let iam = adapter(&aws);
    let iss = issuer();
    let s = settings(&iss, "blue");
    let role = seed_role(&aws, FOREIGN, &[]).await;

    let bound = snapshot(vec![
        binding("team-a", "b1", &role, &["worker", "app"]),
        binding("team-b", "b2", &role, &["api"]),
    ]);
    let r = reconcile_role(&iam, &s, &role, &bound).await;
    assert!(
        matches!(r.outcome, Outcome::Applied { writes: 1, .. }),
        "{:?}",
        r.outcome
    );
    let doc = aws.trust_of(&role).await;
    assert_eq!(
        our_subjects(&doc, &iss).unwrap(),
        subs(&["team-a:app", "team-a:worker", "team-b:api"])
    );
    assert_eq!(others(&doc, &iss), foreign_statements());
    assert!(r.saw(&Key::new("team-a", "b1"), 1));
    assert!(r.trusts_binding(&Key::new("team-b", "b2")));

    // Shrink: one SA less.
    let shrunk = snapshot(vec![binding("team-a", "b1", &role, &["app"])]);
    reconcile_role(&iam, &s, &role, &shrunk).await;
    let doc = aws.trust_of(&role).await;
    assert_eq!(our_subjects(&doc, &iss).unwrap(), subs(&["team-a:app"]));

    // Unbind: our statement goes, the document is the foreign statements, unchanged.
    let r = reconcile_role(&iam, &s, &role, &snapshot(vec![])).await;
    assert!(matches!(r.outcome, Outcome::Applied { writes: 1, .. }));
    let doc = aws.trust_of(&role).await;
    assert_eq!(our_subjects(&doc, &iss), None);
    assert_eq!(statements(&doc), foreign_statements());
    // Each foreign statement's text is byte-identical to what the human wrote (modulo the
    // whitespace between statements, which IAM does not keep either).
    for (got, want) in statements(&doc).iter().zip(foreign_statements()) {
        assert_eq!(got.to_string(), want.to_string());
    }
}

/// A binding and a `PodIdentityAssociation` on one role: both statements land in ONE
/// UpdateAssumeRolePolicy next to the foreign ones; a second pass writes nothing; the
/// association's removal takes only its statement away.
#[tokio::test]
async fn web_identity_and_pod_identity_statements_are_one_write() {
    let aws = moto::test_aws().await;
    let iam = adapter(&aws);
    let iss = issuer();
    let agent = seed_role(&aws, FOREIGN, &[]).await;
    let mut s = settings(&iss, "blue");
    s.desired.pod_identity_agent = Some(agent.clone());
    let role = seed_role(&aws, FOREIGN, &[]).await;
    let association = AssociationInfo {
        namespace: "team-a".into(),
        name: "pia".into(),
        generation: 1,
        service_account: "web".into(),
        role_arn: role.clone(),
        target_role_arn: None,
        disable_session_tags: false,
    };
    let mut both = snapshot(vec![binding("team-a", "b", &role, &["app"])]);
    both.associations.push(association);
    let r = reconcile_role(&iam, &s, &role, &both).await;
    assert!(
        matches!(r.outcome, Outcome::Applied { writes: 1, .. }),
        "{:?}",
        r.outcome
    );
    assert!(r.saw_association(&Key::new("team-a", "pia"), 1));
    let doc = aws.trust_of(&role).await;
    assert_eq!(our_subjects(&doc, &iss).unwrap(), subs(&["team-a:app"]));
    let sid = pod_identity_sid(&agent, "blue", "team-a");
    let pod = statements(&doc)
        .into_iter()
        .find(|st| st["Sid"] == Value::String(sid.clone()))
        .unwrap_or_else(|| panic!("no Pod Identity statement {sid}: {doc}"));
    assert_eq!(pod["Principal"]["AWS"], Value::String(agent.clone()));
    assert_eq!(
        pod["Condition"]["StringEquals"]["aws:RequestTag/kubernetes-service-account"],
        "web"
    );
    assert_eq!(
        &statements(&doc)[..foreign_statements().len()],
        foreign_statements()
    );

    let again = reconcile_role(&iam, &s, &role, &both).await;
    assert!(
        matches!(again.outcome, Outcome::Applied { writes: 0, .. }),
        "steady state: {:?}",
        again.outcome
    );

    both.associations.clear();
    reconcile_role(&iam, &s, &role, &both).await;
    let doc = aws.trust_of(&role).await;
    assert!(!doc.contains(&sid), "{doc}");
    assert_eq!(our_subjects(&doc, &iss).unwrap(), subs(&["team-a:app"]));
}

#[tokio::test]
async fn a_deleting_binding_and_a_moved_role_arn_clean_the_role() {
    let aws = moto::test_aws().await;
    let iam = adapter(&aws);
    let iss = issuer();
    let s = settings(&iss, "blue");
    let old = seed_role(&aws, FOREIGN, &[]).await;
    let new = seed_role(&aws, FOREIGN, &[]).await;
    reconcile_role(
        &iam,
        &s,
        &old,
        &snapshot(vec![binding("team-a", "b", &old, &["app"])]),
    )
    .await;
    assert!(our_subjects(&aws.trust_of(&old).await, &iss).is_some());

    // roleArn moved: the old role is reconciled without the binding, the new one with it.
    let mut moved = binding("team-a", "b", &new, &["app"]);
    moved.previous_role_arn = Some(old.clone());
    let snap = snapshot(vec![moved]);
    assert!(
        desired::roles(&snap, &s.desired).contains(&old),
        "the old role stays known"
    );
    let r_old = reconcile_role(&iam, &s, &old, &snap).await;
    let r_new = reconcile_role(&iam, &s, &new, &snap).await;
    assert!(!r_old.trusts_binding(&Key::new("team-a", "b")));
    assert!(r_new.trusts_binding(&Key::new("team-a", "b")));
    assert_eq!(statements(&aws.trust_of(&old).await), foreign_statements());
    assert_eq!(
        our_subjects(&aws.trust_of(&new).await, &iss).unwrap(),
        subs(&["team-a:app"])
    );

    // Deleting (finalizer pending): contributes nothing.
    let mut deleting = binding("team-a", "b", &new, &["app"]);
    deleting.deleting = true;
    reconcile_role(&iam, &s, &new, &snapshot(vec![deleting])).await;
    assert_eq!(statements(&aws.trust_of(&new).await), foreign_statements());
}

#[tokio::test]
async fn when_ours_was_the_only_statement_unbind_leaves_a_deny_placeholder() {
    let aws = moto::test_aws().await;
    let iam = adapter(&aws);
    let iss = issuer();
    let s = settings(&iss, "blue");
    let role = seed_role(
        &aws,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        &[],
    )
    .await;
    // Someone removes the EC2 statement after we bound: ours is the last one standing.
    reconcile_role(
        &iam,
        &s,
        &role,
        &snapshot(vec![binding("team-a", "b", &role, &["app"])]),
    )
    .await;
    let doc = aws.trust_of(&role).await;
    let ours_only: Vec<Value> = statements(&doc)
        .into_iter()
        .filter(|st| st["Sid"].is_string())
        .collect();
    hand_edit(
        &aws,
        &role,
        &serde_json::json!({"Version":"2012-10-17","Statement":ours_only}).to_string(),
    )
    .await;

    let r = reconcile_role(&iam, &s, &role, &snapshot(vec![])).await;
    assert!(
        matches!(r.outcome, Outcome::NoSubjects { writes: 1, .. }),
        "{:?}",
        r.outcome
    );
    let doc = aws.trust_of(&role).await;
    assert!(!doc.contains("system:serviceaccount"), "{doc}");
    assert_eq!(statements(&doc)[0]["Sid"], PLACEHOLDER_SID);
    assert_eq!(statements(&doc)[0]["Effect"], "Deny");
    // And nothing more to do.
    aws.faults().reset_counts();
    reconcile_role(&iam, &s, &role, &snapshot(vec![])).await;
    assert_eq!(aws.faults().writes(), 0);
}

#[tokio::test]
async fn two_issuers_sharing_a_role_never_remove_each_other() {
    let aws = moto::test_aws().await;
    let iam = adapter(&aws);
    let (blue_iss, green_iss) = (issuer(), issuer());
    let (blue, green) = (settings(&blue_iss, "blue"), settings(&green_iss, "green"));
    let role = seed_role(&aws, FOREIGN, &[]).await;
    let blue_snap = snapshot(vec![binding("team-a", "b", &role, &["app"])]);
    let green_snap = snapshot(vec![binding("team-a", "b", &role, &["app", "canary"])]);

    reconcile_role(&iam, &blue, &role, &blue_snap).await;
    reconcile_role(&iam, &green, &role, &green_snap).await;
    // Both resync (each sees the other's statement as foreign): nothing changes.
    aws.faults().reset_counts();
    reconcile_role(&iam, &blue, &role, &blue_snap).await;
    reconcile_role(&iam, &green, &role, &green_snap).await;
    assert_eq!(aws.faults().writes(), 0);
    let doc = aws.trust_of(&role).await;
    assert_eq!(
        our_subjects(&doc, &blue_iss).unwrap(),
        subs(&["team-a:app"])
    );
    assert_eq!(
        our_subjects(&doc, &green_iss).unwrap(),
        subs(&["team-a:app", "team-a:canary"])
    );

    // Blue unbinds everything: green's statement and the foreign ones stay.
    reconcile_role(&iam, &blue, &role, &snapshot(vec![])).await;
    let doc = aws.trust_of(&role).await;
    assert_eq!(our_subjects(&doc, &blue_iss), None);
    assert_eq!(
        our_subjects(&doc, &green_iss).unwrap(),
        subs(&["team-a:app", "team-a:canary"])
    );
    let foreign: Vec<Value> = others(&doc, &green_iss);
    assert_eq!(foreign, foreign_statements());
}

#[tokio::test]
async fn an_unauthorized_binding_is_refused_and_the_role_untouched() {
    let aws = moto::test_aws().await;
    let iam = adapter(&aws);
    let iss = issuer();
    let s = settings(&iss, "blue");
    // Tagged for another cluster: the tag does not authorize this one.
    let role = seed_role(
        &aws,
        FOREIGN,
        &[
            (ALLOWED_NAMESPACES_TAG, "ops"),
            ("irsa.dev/cluster", "green"),
        ],
    )
    .await;
    aws.faults().reset_counts();
    let snap = snapshot(vec![binding("ops", "b", &role, &["app"])]);
    let r = reconcile_role(&iam, &s, &role, &snap).await;
    let (_, verdict) = &r.desired.verdicts[&Key::new("ops", "b")];
    let Verdict::Denied { reason } = verdict else {
        panic!("expected a denial, got {verdict:?}")
    };
    assert!(reason.contains("irsa.dev/cluster"), "{reason}");
    assert!(!r.trusts_binding(&Key::new("ops", "b")));
    assert_eq!(
        aws.faults().writes(),
        0,
        "{:?}",
        aws.faults().forwarded_counts()
    );
    assert_eq!(aws.trust_of(&role).await, FOREIGN, "byte for byte");

    // The same role tag naming this cluster authorizes it.
    let mine = seed_role(
        &aws,
        FOREIGN,
        &[
            (ALLOWED_NAMESPACES_TAG, "ops"),
            ("irsa.dev/cluster", "blue"),
        ],
    )
    .await;
    let r = reconcile_role(
        &iam,
        &s,
        &mine,
        &snapshot(vec![binding("ops", "b", &mine, &["app"])]),
    )
    .await;
    assert!(r.trusts_binding(&Key::new("ops", "b")));
}

#[tokio::test]
async fn over_quota_is_refused_with_no_write_unless_a_grant_allows_the_namespace_wildcard() {
    let aws = moto::test_aws().await;
    let iam = adapter(&aws);
    let iss = issuer();
    let s = settings(&iss, "blue");
    let role = seed_role(&aws, FOREIGN, &[]).await;
    let names: Vec<String> = (0..60).map(|i| format!("service-account-{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut snap = snapshot(vec![binding("team-a", "many", &role, &refs)]);

    aws.faults().reset_counts();
    let r = reconcile_role(&iam, &s, &role, &snap).await;
    let Outcome::TooLarge(refusal) = &r.outcome else {
        panic!("expected TooLarge, got {:?}", r.outcome)
    };
    assert_eq!(refusal.quota, 2048);
    assert!(refusal.chars > 2048);
    assert!(refusal.to_string().contains("Fix:"));
    assert_eq!(aws.faults().writes(), 0);
    assert_eq!(aws.trust_of(&role).await, FOREIGN);

    snap.grants = vec![grant(true)];
    let r = reconcile_role(&iam, &s, &role, &snap).await;
    assert!(
        matches!(r.outcome, Outcome::Applied { writes: 1, ref collapsed, .. } if collapsed == &["team-a"]),
        "{:?}",
        r.outcome
    );
    let doc = aws.trust_of(&role).await;
    assert_eq!(
        our_subjects(&doc, &iss).unwrap(),
        ["system:serviceaccount:team-a:*"]
    );
    assert_eq!(others(&doc, &iss), foreign_statements());
}

#[tokio::test]
async fn drift_is_repaired_and_the_hand_edit_of_foreign_statements_kept() {
    let aws = moto::test_aws().await;
    let iam = adapter(&aws);
    let iss = issuer();
    let s = settings(&iss, "blue");
    let role = seed_role(&aws, FOREIGN, &[]).await;
    let snap = snapshot(vec![binding("team-a", "b", &role, &["app", "worker"])]);
    reconcile_role(&iam, &s, &role, &snap).await;

    // By hand: drop a subject from our statement, and edit the SAML statement.
    let doc = aws.trust_of(&role).await;
    let edited = doc
        .replace(
            r#""system:serviceaccount:team-a:worker""#,
            r#""system:serviceaccount:evil:x""#,
        )
        .replace("HumansViaSaml", "HumansViaSamlEdited");
    assert_ne!(edited, doc);
    hand_edit(&aws, &role, &edited).await;

    aws.faults().reset_counts();
    let r = reconcile_role(&iam, &s, &role, &snap).await;
    assert!(
        matches!(r.outcome, Outcome::Applied { writes: 1, .. }),
        "{:?}",
        r.outcome
    );
    let doc = aws.trust_of(&role).await;
    assert_eq!(
        our_subjects(&doc, &iss).unwrap(),
        subs(&["team-a:app", "team-a:worker"])
    );
    let kept = others(&doc, &iss);
    assert_eq!(
        kept[0]["Sid"], "HumansViaSamlEdited",
        "the foreign hand edit stays"
    );
    assert_eq!(kept[1], foreign_statements()[1]);
}

/// Starts a worker over a shared snapshot; returns the queue, the state and the snapshot.
fn start_worker(
    aws: &TestAws,
    s: RoleSettings,
    options: WorkerOptions,
    initial: Snapshot,
) -> (
    RoleQueue,
    Arc<irsa::controller::iam::state::RoleState>,
    Arc<Mutex<Snapshot>>,
    Metrics,
) {
    let snap = Arc::new(Mutex::new(initial));
    let metrics = Metrics::default();
    let aws = Aws::new(aws.sdk_config(), metrics.clone());
    let source = snap.clone();
    let (worker, queue, state) = RoleWorker::new(
        aws,
        s,
        options,
        Arc::new(move || source.lock().unwrap().clone()),
    );
    tokio::spawn(worker.run());
    (queue, state, snap, metrics)
}

fn quick(resync: Duration) -> WorkerOptions {
    WorkerOptions {
        debounce: Duration::from_millis(300),
        resync,
        retry_base: Duration::from_millis(100),
        ..WorkerOptions::default()
    }
}

#[tokio::test]
async fn fifty_bindings_created_at_once_cost_a_handful_of_writes() {
    let aws = moto::test_aws().await;
    let iss = issuer();
    let mut s = settings(&iss, "blue");
    s.max_chars = 8192; // 50 subjects need the raised quota
    let role = seed_role(&aws, FOREIGN, &[]).await;
    aws.faults().reset_counts();
    let (queue, _state, snap, metrics) = start_worker(
        &aws,
        s,
        quick(Duration::from_secs(3600)),
        Snapshot::default(),
    );

    // What the binding reconciler does for each new binding: the store gains it, the role is
    // marked dirty.
    for i in 0..50 {
        {
            let mut sn = snap.lock().unwrap();
            sn.grants = vec![grant(false)];
            sn.bindings.push(binding(
                "team-a",
                &format!("b{i}"),
                &role,
                &[&format!("sa-{i}")],
            ));
        }
        queue.mark(&role);
        tokio::task::yield_now().await;
    }
    let r = queue.sync(&role).await.unwrap();
    assert!(r.outcome.is_ok(), "{:?}", r.outcome);
    assert_eq!(r.desired.bindings.len(), 50);
    let writes = aws.faults().forwarded("UpdateAssumeRolePolicy");
    assert!(
        (1..=3).contains(&writes),
        "{writes} UpdateAssumeRolePolicy calls for 50 bindings"
    );
    assert_eq!(
        metrics.iam_call_count("UpdateAssumeRolePolicy", "success") as usize,
        writes
    );
    let doc = aws.trust_of(&role).await;
    assert_eq!(our_subjects(&doc, &iss).unwrap().len(), 50);
    // The OIDC provider was ensured with the audience in use.
    let providers = aws
        .iam_direct()
        .list_open_id_connect_providers()
        .send()
        .await
        .unwrap();
    let host = iss.strip_prefix("https://").unwrap();
    assert!(
        providers
            .open_id_connect_provider_list()
            .iter()
            .any(|p| p.arn().unwrap().ends_with(host))
    );
}

#[tokio::test]
async fn resync_at_steady_state_makes_no_iam_write_and_repairs_drift() {
    let aws = moto::test_aws().await;
    let iss = issuer();
    let s = settings(&iss, "blue");
    let role = seed_role(&aws, FOREIGN, &[]).await;
    let mut b = binding("team-a", "b", &role, &["app"]);
    b.audience = Some("vault".into());
    // Refused (namespace not granted): its audience must not reach the provider.
    let mut refused = binding("ops", "r", &role, &["app"]);
    refused.audience = Some("not-authorized".into());
    let initial = snapshot(vec![b, binding("team-a", "c", &role, &["app"]), refused]);
    let (queue, state, _snap, _m) =
        start_worker(&aws, s, quick(Duration::from_millis(200)), initial);
    let first = queue.sync(&role).await.unwrap();
    assert!(first.outcome.is_ok());
    // Let the worker settle (the provider is created with both audiences in the first pass).
    let settled = queue.sync(&role).await.unwrap();
    aws.faults().reset_counts();

    // Three resyncs later: reads only.
    let start = settled.pass;
    wait_for("three resync passes", WAIT, async || {
        state.get(&role).unwrap().pass >= start + 3
    })
    .await;
    assert_eq!(
        aws.faults().writes(),
        0,
        "{:?}",
        aws.faults().forwarded_counts()
    );
    assert!(aws.faults().forwarded("GetRole") >= 3);

    // Drift by hand: our statement deleted. The next resync puts it back.
    hand_edit(&aws, &role, FOREIGN).await;
    let seen = state.get(&role).unwrap().pass;
    wait_for("a resync pass that repairs the drift", WAIT, async || {
        let r = state.get(&role).unwrap();
        r.pass > seen && r.outcome.writes() > 0
    })
    .await;
    let doc = aws.trust_of(&role).await;
    assert_eq!(our_subjects(&doc, &iss).unwrap(), subs(&["team-a:app"]));
    let providers = aws
        .iam_direct()
        .list_open_id_connect_providers()
        .send()
        .await
        .unwrap();
    let host = iss.strip_prefix("https://").unwrap();
    let arn = providers
        .open_id_connect_provider_list()
        .iter()
        .find_map(|p| p.arn().filter(|a| a.ends_with(host)))
        .unwrap()
        .to_string();
    let p = aws
        .iam_direct()
        .get_open_id_connect_provider()
        .open_id_connect_provider_arn(arn)
        .send()
        .await
        .unwrap();
    let mut ids = p.client_id_list().to_vec();
    ids.sort();
    assert_eq!(
        ids,
        ["sts.amazonaws.com", "vault"],
        "client IDs = every audience in use"
    );
}

#[tokio::test]
async fn throttling_5xx_and_timeouts_converge_with_nothing_lost() {
    let aws = moto::test_aws().await;
    let iss = issuer();
    let s = settings(&iss, "blue");
    let role = seed_role(&aws, FOREIGN, &[]).await;
    let (queue, _state, _snap, _m) = start_worker(
        &aws,
        s,
        quick(Duration::from_secs(3600)),
        snapshot(vec![binding("team-a", "b", &role, &["app", "worker"])]),
    );
    // Provider first, so the faults below land on the trust calls.
    assert!(queue.sync(&role).await.unwrap().outcome.is_ok());

    let f = aws.faults();
    f.inject_for("GetRole", Fault::Throttle, 3);
    f.inject_for("GetRole", Fault::ServerError, 2);
    f.inject_for("GetRole", Fault::Timeout, 1);
    f.inject_for("UpdateAssumeRolePolicy", Fault::Throttle, 2);
    f.inject_for("UpdateAssumeRolePolicy", Fault::ServerError, 2);
    f.inject_for("UpdateAssumeRolePolicy", Fault::TimeoutAfterForward, 1);
    hand_edit(&aws, &role, FOREIGN).await; // force a write through the faults

    let mut last = None;
    for _ in 0..10 {
        let r = queue.sync(&role).await.unwrap();
        if r.outcome.is_ok() {
            last = Some(r);
            break;
        }
        // A retryable failure: the worker also requeues by itself; ask again.
    }
    let r = last.expect("converged within 10 passes");
    assert!(r.outcome.is_ok());
    assert_eq!(f.pending_faults(), 0, "every fault was served");
    let doc = aws.trust_of(&role).await;
    assert_eq!(
        our_subjects(&doc, &iss).unwrap(),
        subs(&["team-a:app", "team-a:worker"])
    );
    assert_eq!(others(&doc, &iss), foreign_statements(), "nothing lost");
}

mod kube_side {
    //! The IAMRoleBinding reconciler against a mocked API server (controller-rs pattern):
    //! every request is checked for method, path and body, in order.

    use std::collections::HashMap;

    use http::{Request, Response};
    use irsa::controller::iam::queue::Msg;
    use irsa::controller::iam::state::RoleState;
    use irsa::controller::k8s::reconcile::{self as bindings, Context};
    use irsa::controller::k8s::{events, index, snapshot};
    use irsa::controller::policy::annotate::{MANAGED, OWNER};
    use irsa::controller::policy::desired::RoleDesired;
    use irsa::controller::policy::report::RoleReport;
    use irsa::crd::{FINALIZER, IAMRoleBinding, IAMRoleBindingSpec};
    use irsa::testing::kube_api::mock_client;
    use k8s_openapi::api::core::v1::ServiceAccount;
    use kube::client::Body;
    use kube::runtime::events::Reporter;
    use kube::runtime::reflector::{self, Store};
    use kube::runtime::watcher;
    use serde_json::json;

    use super::*;

    const ROLE: &str = "arn:aws:iam::123456789012:role/team-a-s3";
    const P: &str = "eks.amazonaws.com";

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    fn the_binding(finalizer: bool, deleting: bool) -> IAMRoleBinding {
        let mut b = IAMRoleBinding::new(
            "s3",
            IAMRoleBindingSpec {
                role_arn: ROLE.into(),
                service_accounts: vec!["app".into()],
                audience: None,
                annotate_service_accounts: true,
                sts_regional_endpoints: None,
                token_expiration_seconds: None,
            },
        );
        b.metadata.namespace = Some("team-a".into());
        b.metadata.generation = Some(1);
        b.metadata.resource_version = Some("1".into());
        b.metadata.uid = Some("uid-1".into());
        if finalizer {
            b.metadata.finalizers = Some(vec![FINALIZER.into()]);
        }
        if deleting {
            b.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::now(),
                ));
        }
        b
    }

    fn sa(annotations: &[(&str, &str)]) -> ServiceAccount {
        let mut sa = ServiceAccount::default();
        sa.metadata.name = Some("app".into());
        sa.metadata.namespace = Some("team-a".into());
        sa.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        sa
    }

    fn report(trusts: bool) -> Arc<RoleReport> {
        let key = Key::new("team-a", "s3");
        let mut desired = RoleDesired::default();
        if trusts {
            desired.bindings.insert(key.clone(), 1);
            desired
                .desired
                .entry(STS_AUD.into())
                .or_default()
                .insert("team-a:app".parse().unwrap());
            desired.verdicts.insert(
                key,
                (
                    1,
                    Verdict::Authorized {
                        via: vec!["team-a".into()],
                        tag: false,
                    },
                ),
            );
        }
        Arc::new(RoleReport {
            role: ROLE.into(),
            desired,
            authorized_with_tags: true,
            outcome: Outcome::Applied {
                writes: 1,
                chars: 512,
                collapsed: vec![],
                hand_edited: vec![],
            },
            provider_arn: format!("arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.example/id/X"),
            limit: 2048,
            pass: 1,
        })
    }

    struct Fixture {
        ctx: Arc<Context>,
        handle: Handle,
        requests: tokio::sync::mpsc::UnboundedReceiver<Msg>,
    }

    fn fixture(sas: Vec<ServiceAccount>, reports: Vec<Arc<RoleReport>>) -> Fixture {
        let (client, handle) = mock_client();
        let (store, mut writer): (Store<ServiceAccount>, _) = reflector::store();
        let owners = index::service_accounts_by_owner();
        for s in sas {
            let event = watcher::Event::Apply(s);
            owners.apply_watcher_event(&event);
            writer.apply_watcher_event(&event);
        }
        let state = Arc::new(RoleState::default());
        for r in reports {
            state.put(r);
        }
        let (queue, requests) = RoleQueue::channel();
        let ctx = Arc::new(Context {
            client: client.clone(),
            metrics: Metrics::default(),
            queue,
            roles: state,
            service_accounts: store,
            owners,
            own_writes: Default::default(),
            prefix: P.into(),
            failures: std::sync::Mutex::new(HashMap::new()),
        });
        Fixture {
            ctx,
            handle,
            requests,
        }
    }

    /// Takes the next request, checks method and path, answers `reply`; returns the body.
    async fn expect(handle: &mut Handle, method: &str, path: &str, reply: Value) -> Value {
        let (req, send) = handle.next_request().await.expect("a request");
        assert_eq!(req.method().as_str(), method, "{}", req.uri());
        assert_eq!(req.uri().path(), path);
        let bytes = http_body_util::BodyExt::collect(req.into_body())
            .await
            .unwrap()
            .to_bytes();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        send.send_response(
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap(),
        );
        body
    }

    const BINDING_PATH: &str = "/apis/irsa.dev/v1alpha1/namespaces/team-a/iamrolebindings/s3";
    const SA_PATH: &str = "/api/v1/namespaces/team-a/serviceaccounts/app";

    #[tokio::test]
    async fn first_reconcile_adds_the_finalizer() {
        let mut f = fixture(vec![], vec![]);
        let b = Arc::new(the_binding(false, false));
        let task = tokio::spawn(bindings::reconcile(b.clone(), f.ctx.clone()));
        let body = expect(
            &mut f.handle,
            "PATCH",
            BINDING_PATH,
            serde_json::to_value(the_binding(true, false)).unwrap(),
        )
        .await;
        let text = body.to_string();
        assert!(text.contains(FINALIZER), "{text}");
        assert!(
            text.contains("\"op\":\"add\"") || text.contains("\"op\":\"test\""),
            "{text}"
        );
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn apply_annotates_the_sa_and_writes_the_status() {
        let mut f = fixture(vec![sa(&[("team", "x")])], vec![report(true)]);
        let b = Arc::new(the_binding(true, false));
        let task = tokio::spawn(bindings::reconcile(b.clone(), f.ctx.clone()));
        let patch = expect(
            &mut f.handle,
            "PATCH",
            SA_PATH,
            serde_json::to_value(sa(&[])).unwrap(),
        )
        .await;
        assert_eq!(
            patch,
            json!({"metadata": {"annotations": {
                format!("{P}/role-arn"): ROLE,
                OWNER: "s3",
                MANAGED: format!("{P}/role-arn"),
            }}})
        );
        let status = expect(
            &mut f.handle,
            "PATCH",
            &format!("{BINDING_PATH}/status"),
            serde_json::to_value(the_binding(true, false)).unwrap(),
        )
        .await;
        let st = &status["status"];
        assert_eq!(st["observedGeneration"], 1);
        assert_eq!(st["roleArn"], ROLE);
        assert_eq!(st["trustPolicyChars"], 512);
        assert_eq!(st["trustPolicyLimit"], 2048);
        let conds: BTreeMap<String, (String, String)> = st["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                assert_eq!(c["observedGeneration"], 1);
                (
                    c["type"].as_str().unwrap().to_string(),
                    (
                        c["status"].as_str().unwrap().to_string(),
                        c["reason"].as_str().unwrap().to_string(),
                    ),
                )
            })
            .collect();
        for t in [
            "Ready",
            "Authorized",
            "TrustPolicyApplied",
            "ServiceAccountsAnnotated",
        ] {
            assert_eq!(conds[t].0, "True", "{t}: {conds:?}");
        }
        assert_eq!(conds["Authorized"].1, "GrantMatched");
        task.await.unwrap().unwrap();
        // The role already reflects generation 1: the binding did not re-queue it.
        assert!(f.requests.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_foreign_annotation_is_a_conflict_not_an_overwrite() {
        let human = "arn:aws:iam::123456789012:role/human";
        let mut f = fixture(
            vec![sa(&[(&format!("{P}/role-arn"), human)])],
            vec![report(true)],
        );
        let b = Arc::new(the_binding(true, false));
        let task = tokio::spawn(bindings::reconcile(b, f.ctx.clone()));
        // No ServiceAccount PATCH: the first request is the status.
        let status = expect(
            &mut f.handle,
            "PATCH",
            &format!("{BINDING_PATH}/status"),
            serde_json::to_value(the_binding(true, false)).unwrap(),
        )
        .await;
        let conds = status["status"]["conditions"].as_array().unwrap();
        let annotated = conds
            .iter()
            .find(|c| c["type"] == "ServiceAccountsAnnotated")
            .unwrap();
        assert_eq!(annotated["status"], "False");
        assert_eq!(annotated["reason"], "Conflict");
        assert!(
            annotated["message"]
                .as_str()
                .unwrap()
                .contains("role/human")
        );
        let ready = conds.iter().find(|c| c["type"] == "Ready").unwrap();
        assert_eq!(ready["status"], "False");
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_new_generation_marks_the_role_and_reports_reconciling() {
        let mut f = fixture(vec![sa(&[])], vec![]);
        let b = Arc::new(the_binding(true, false));
        let task = tokio::spawn(bindings::reconcile(b, f.ctx.clone()));
        expect(
            &mut f.handle,
            "PATCH",
            SA_PATH,
            serde_json::to_value(sa(&[])).unwrap(),
        )
        .await;
        let status = expect(
            &mut f.handle,
            "PATCH",
            &format!("{BINDING_PATH}/status"),
            serde_json::to_value(the_binding(true, false)).unwrap(),
        )
        .await;
        let ready = status["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap()
            .clone();
        assert_eq!(ready["status"], "Unknown");
        assert_eq!(ready["reason"], "Reconciling");
        task.await.unwrap().unwrap();
        match f.requests.try_recv() {
            Ok(Msg::Dirty(role)) => assert_eq!(role, ROLE),
            other => panic!("expected the role to be marked, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn deletion_releases_annotations_cleans_the_role_then_the_finalizer() {
        let owned = sa(&[
            (&format!("{P}/role-arn"), ROLE),
            (OWNER, "s3"),
            (MANAGED, &format!("{P}/role-arn")),
            ("team", "x"),
        ]);
        let mut f = fixture(vec![owned], vec![report(true)]);
        let b = Arc::new(the_binding(true, true));
        let task = tokio::spawn(bindings::reconcile(b, f.ctx.clone()));
        let patch = expect(
            &mut f.handle,
            "PATCH",
            SA_PATH,
            serde_json::to_value(sa(&[])).unwrap(),
        )
        .await;
        assert_eq!(
            patch,
            json!({"metadata": {"annotations": {
                format!("{P}/role-arn"): null, OWNER: null, MANAGED: null,
            }}})
        );
        // The reconciler waits for the role to be reconciled without the binding.
        match f.requests.recv().await {
            Some(Msg::Sync(role, reply)) => {
                assert_eq!(role, ROLE);
                reply.send(report(false)).unwrap();
            }
            other => panic!("expected a sync, got {other:?}"),
        }
        let body = expect(
            &mut f.handle,
            "PATCH",
            BINDING_PATH,
            serde_json::to_value(the_binding(false, true)).unwrap(),
        )
        .await;
        let text = body.to_string();
        assert!(
            text.contains("\"op\":\"remove\""),
            "finalizer removed: {text}"
        );
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn deletion_keeps_the_finalizer_while_iam_fails() {
        let mut f = fixture(vec![], vec![report(true)]);
        let b = Arc::new(the_binding(true, true));
        let task = tokio::spawn(bindings::reconcile(b, f.ctx.clone()));
        match f.requests.recv().await {
            Some(Msg::Sync(_, reply)) => {
                let mut r = (*report(false)).clone();
                r.outcome = Outcome::Failed {
                    label: "access_denied",
                    message: "iam:UpdateAssumeRolePolicy on role x was denied".into(),
                    retryable: false,
                };
                reply.send(Arc::new(r)).unwrap();
            }
            other => panic!("expected a sync, got {other:?}"),
        }
        let err = task.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("finalizer stays"), "{err}");
        assert_eq!(err.metric_label(), "cleanup");
        // No request reached the API server (no finalizer removal): once every client is
        // gone, the mock has nothing queued.
        drop(f.ctx);
        assert!(f.handle.next_request().await.is_none());
    }

    #[tokio::test]
    async fn startup_fails_with_a_hint_when_the_crds_are_missing() {
        let (client, mut handle) = mock_client();
        let check = tokio::spawn(async move { irsa::controller::check_crds(&client).await });
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(req.uri().path(), "/apis/irsa.dev/v1alpha1/iamrolebindings");
        send.send_response(
            Response::builder()
                .status(404)
                .header("content-type", "application/json")
                .body(Body::from(
                    json!({"kind":"Status","apiVersion":"v1","status":"Failure",
                           "message":"the server could not find the requested resource",
                           "reason":"NotFound","code":404})
                    .to_string()
                    .into_bytes(),
                ))
                .unwrap(),
        );
        let err = tokio::time::timeout(Duration::from_secs(5), check)
            .await
            .expect("check_crds answered")
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(err.contains("kubectl apply -f crds/"), "{err}");
        assert!(err.contains("iamrolebindings.irsa.dev"), "{err}");
    }

    #[test]
    fn the_snapshot_reads_bindings_annotated_sas_and_grants_from_the_stores() {
        let (bs, mut bw) = reflector::store::<IAMRoleBinding>();
        let (ss, mut sw) = reflector::store::<ServiceAccount>();
        let (gs, _gw) = reflector::store::<irsa::crd::IAMRoleGrant>();
        let mut moved = the_binding(true, true);
        moved.status = Some(irsa::crd::IAMRoleBindingStatus {
            role_arn: Some("arn:aws:iam::123456789012:role/old".into()),
            ..Default::default()
        });
        let (by_sa, by_role) = (
            index::bindings_by_service_account(),
            index::bindings_by_role(),
        );
        let moved = watcher::Event::Apply(moved);
        by_sa.apply_watcher_event(&moved);
        by_role.apply_watcher_event(&moved);
        bw.apply_watcher_event(&moved);
        sw.apply_watcher_event(&watcher::Event::Apply(sa(&[(
            &format!("{P}/role-arn"),
            " arn:aws:iam::123456789012:role/x ",
        )])));
        let mut plain = sa(&[]);
        plain.metadata.name = Some("plain".into());
        sw.apply_watcher_event(&watcher::Event::Apply(plain));
        let snap = snapshot::snapshot(&bs, &ss, &gs, &reflector::store().0, P);
        assert_eq!(snap.bindings.len(), 1);
        let b = &snap.bindings[0];
        assert!(b.deleting);
        assert_eq!(
            b.previous_role_arn.as_deref(),
            Some("arn:aws:iam::123456789012:role/old")
        );
        assert_eq!(snap.service_accounts.len(), 1, "only annotated SAs");
        assert_eq!(
            snap.service_accounts[0].role_arn,
            "arn:aws:iam::123456789012:role/x"
        );
        // Re-trigger maps: the SA's binding, the role's bindings (spec or previous role).
        assert_eq!(snapshot::bindings_of_sa(&by_sa, &sa(&[])).len(), 1);
        assert_eq!(snapshot::bindings_of_role(&by_role, ROLE).len(), 1);
        assert_eq!(
            snapshot::bindings_of_role(&by_role, "arn:aws:iam::123456789012:role/old").len(),
            1
        );
        assert!(
            snapshot::bindings_of_role(&by_role, "arn:aws:iam::123456789012:role/x").is_empty()
        );
    }

    /// Answers the next request, which must create an Event; returns (reason, type, note).
    async fn expect_event(handle: &mut Handle) -> (String, String, String) {
        let body = expect(
            handle,
            "POST",
            "/apis/events.k8s.io/v1/namespaces/team-a/events",
            json!({"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"name":"e","namespace":"team-a"},"eventTime":"2026-01-01T00:00:00.000000Z"}),
        )
        .await;
        assert_eq!(body["regarding"]["name"], "s3");
        assert_eq!(body["regarding"]["kind"], "IAMRoleBinding");
        (
            body["reason"].as_str().unwrap().to_string(),
            body["type"].as_str().unwrap().to_string(),
            body["note"].as_str().unwrap().to_string(),
        )
    }

    #[tokio::test]
    async fn iam_writes_and_refusals_become_events_on_the_bindings() {
        let (client, mut handle) = mock_client();
        let (bs, mut bw) = reflector::store::<IAMRoleBinding>();
        bw.apply_watcher_event(&watcher::Event::Apply(the_binding(true, false)));
        let mut events = events::EventPublisher::new(client, Reporter::from("irsa-test"), bs);

        // A write: TrustPolicyUpdated with the numbers.
        let written = report(true);
        let task = tokio::spawn(async move {
            events.on_report(&written).await;
            events
        });
        let (reason, type_, note) = expect_event(&mut handle).await;
        assert_eq!(
            (reason.as_str(), type_.as_str()),
            ("TrustPolicyUpdated", "Normal")
        );
        assert!(note.contains("512/2048"), "{note}");
        let mut events = task.await.unwrap();

        // A steady-state resync (no write): no Event.
        let mut steady = (*report(true)).clone();
        steady.outcome = Outcome::Applied {
            writes: 0,
            chars: 512,
            collapsed: vec![],
            hand_edited: vec![],
        };
        events.on_report(&steady).await;

        // Over quota: one Warning when it starts, none while it lasts.
        let mut too_large = steady.clone();
        too_large.outcome = Outcome::TooLarge(irsa::trust::Refusal {
            chars: 3000,
            quota: 2048,
            current_chars: Some(500),
            collapsed: vec![],
            desired: 60,
            not_fitting: vec![],
        });
        let tl = too_large.clone();
        let task = tokio::spawn(async move {
            events.on_report(&tl).await;
            events.on_report(&tl).await;
            events
        });
        let (reason, type_, note) = expect_event(&mut handle).await;
        assert_eq!(
            (reason.as_str(), type_.as_str()),
            ("TrustPolicyTooLarge", "Warning")
        );
        assert!(note.contains("3000") && note.contains("2048"), "{note}");
        let events = task.await.unwrap();
        drop(events);
        assert!(
            handle.next_request().await.is_none(),
            "only one Event for a lasting refusal"
        );
    }
}
