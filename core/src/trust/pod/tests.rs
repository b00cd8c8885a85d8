//! The Pod Identity statements through the compiler: their shape, one per namespace, next to
//! the web-identity and foreign statements, steady state, removal, hand edits, the quota and
//! the statement without session tags.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::trust::{
    CompileInput, Compiled, DEFAULT_MAX_CHARS, POD_IDENTITY_LABEL, PodIdentityInput,
    PodIdentityTrust, PolicyDocument, Refusal, Subject, compile, pod_identity_sid,
    pod_identity_untagged_sid, statement_sid,
};

const ISSUER: &str = "https://oidc.example.com/id/ABC";
const HOST: &str = "oidc.example.com/id/ABC";
const PROVIDER: &str = "arn:aws:iam::111122223333:oidc-provider/oidc.example.com/id/ABC";
const AGENT: &str = "arn:aws:iam::111122223333:role/irsa-agent";
const CLUSTER: &str = "prod-1";
const STS: &str = "sts.amazonaws.com";

fn trust(namespaces: &[(&str, &[&str])]) -> PodIdentityTrust {
    PodIdentityTrust {
        service_accounts: namespaces
            .iter()
            .map(|(ns, sas)| (ns.to_string(), sas.iter().map(|s| s.to_string()).collect()))
            .collect(),
        ..PodIdentityTrust::default()
    }
}

struct Case {
    current: Option<PolicyDocument>,
    web: BTreeMap<String, BTreeSet<Subject>>,
    pod: PodIdentityTrust,
    agent: &'static str,
    cluster: &'static str,
    configured: bool,
    max_chars: usize,
}

impl Case {
    fn new(pod: PodIdentityTrust) -> Self {
        Self {
            current: None,
            web: BTreeMap::new(),
            pod,
            agent: AGENT,
            cluster: CLUSTER,
            configured: true,
            max_chars: DEFAULT_MAX_CHARS,
        }
    }

    fn current(mut self, doc: &PolicyDocument) -> Self {
        self.current = Some(doc.clone());
        self
    }

    fn web(mut self, subjects: &[&str]) -> Self {
        let set: BTreeSet<Subject> = subjects.iter().map(|s| s.parse().unwrap()).collect();
        self.web.insert(STS.into(), set);
        self
    }

    fn run(&self) -> Result<Compiled, Refusal> {
        compile(&CompileInput {
            current: self.current.as_ref(),
            issuer: ISSUER,
            provider_arn: PROVIDER,
            desired: &self.web,
            max_chars: self.max_chars,
            wildcard_namespaces: &BTreeSet::new(),
            pod_identity: self.configured.then_some(PodIdentityInput {
                agent_role_arn: self.agent,
                cluster: self.cluster,
                desired: &self.pod,
            }),
        })
    }

    fn changed(&self) -> PolicyDocument {
        match self.run() {
            Ok(Compiled::Changed { document, .. }) => document,
            other => panic!("expected Changed, got {other:?}"),
        }
    }

    fn unchanged(&self) {
        let got = self.run();
        assert!(
            matches!(got, Ok(Compiled::Unchanged { .. })),
            "expected Unchanged, got {got:?}"
        );
    }
}

fn by_sid<'a>(doc: &'a PolicyDocument, sid: &str) -> Option<&'a Value> {
    doc.statements().into_iter().find(|s| s["Sid"] == sid)
}

fn saml() -> Value {
    json!({"Principal": {"Federated": "arn:aws:iam::111122223333:saml-provider/corp"},
           "Sid": "HumanSaml", "Effect": "Allow", "Action": "sts:AssumeRoleWithSAML"})
}

#[test]
fn one_statement_per_namespace_with_the_documented_shape() {
    let doc = Case::new(trust(&[("team-a", &["web", "api"]), ("team-b", &["job"])])).changed();
    assert_eq!(doc.statements().len(), 2, "{doc}");
    let sid = pod_identity_sid(AGENT, CLUSTER, "team-a");
    assert_eq!(
        by_sid(&doc, &sid).unwrap(),
        &json!({
            "Sid": sid,
            "Effect": "Allow",
            "Principal": {"AWS": AGENT},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": {"StringEquals": {
                "aws:RequestTag/irsa-cluster-name": CLUSTER,
                "aws:RequestTag/kubernetes-namespace": "team-a",
                "aws:RequestTag/kubernetes-service-account": ["api", "web"],
            }},
        })
    );
    // One ServiceAccount is written as a string, like one subject.
    let b = by_sid(&doc, &pod_identity_sid(AGENT, CLUSTER, "team-b")).unwrap();
    assert_eq!(
        b["Condition"]["StringEquals"]["aws:RequestTag/kubernetes-service-account"],
        json!("job")
    );
    // The exact key order, as the documentation shows it.
    let text = doc.to_compact();
    assert!(
        text.contains(r#""Principal":{"AWS":"arn:aws:iam::111122223333:role/irsa-agent"},"Action":["sts:AssumeRole","sts:TagSession"],"Condition":{"StringEquals":{"aws:RequestTag/irsa-cluster-name":"prod-1","aws:RequestTag/kubernetes-namespace":"team-a""#),
        "{text}"
    );
}

#[test]
fn written_with_web_identity_and_foreign_statements_in_one_document() {
    let start = PolicyDocument::new(vec![saml()]);
    let case = Case::new(trust(&[("team-a", &["web"])]))
        .web(&["team-a:app"])
        .current(&start);
    let doc = case.changed();
    let statements = doc.statements();
    assert_eq!(statements.len(), 3, "{doc}");
    // The foreign statement first, exactly as it was (key order included).
    assert_eq!(
        serde_json::to_string(statements[0]).unwrap(),
        serde_json::to_string(&saml()).unwrap()
    );
    assert!(by_sid(&doc, &statement_sid(HOST, STS)).is_some());
    assert!(by_sid(&doc, &pod_identity_sid(AGENT, CLUSTER, "team-a")).is_some());

    // Steady state: compiling its own output writes nothing...
    Case::new(trust(&[("team-a", &["web"])]))
        .web(&["team-a:app"])
        .current(&doc)
        .unchanged();
    // ...nor does the same statement with another key order, list form and whitespace.
    let sid = pod_identity_sid(AGENT, CLUSTER, "team-a");
    let reordered = PolicyDocument::parse(&format!(
        r#"{{ "Statement": [ {{"Action": "sts:TagSession", "Effect": "Allow", "Sid": "{sid}",
             "Principal": {{"AWS": ["{AGENT}"]}}, "Condition": {{"StringEquals": {{
             "aws:RequestTag/kubernetes-service-account": ["web", "api"],
             "aws:RequestTag/kubernetes-namespace": "team-a",
             "aws:RequestTag/irsa-cluster-name": ["{CLUSTER}"]}}}}}} ], "Version": "2012-10-17" }}"#
    ))
    .unwrap();
    let hand = Case::new(trust(&[("team-a", &["api", "web"])])).current(&reordered);
    // One action is missing: that is a hand edit, not the same statement.
    let Ok(Compiled::Changed { hand_edited, .. }) = hand.run() else {
        panic!("a statement missing sts:AssumeRole must be rewritten");
    };
    assert!(hand_edited[0].reason.contains("Action"), "{hand_edited:?}");
    let fixed = PolicyDocument::parse(&reordered.to_compact().replace(
        r#""Action":"sts:TagSession""#,
        r#""Action":["sts:TagSession","sts:AssumeRole"]"#,
    ))
    .unwrap();
    Case::new(trust(&[("team-a", &["api", "web"])]))
        .current(&fixed)
        .unchanged();
}

#[test]
fn namespaces_no_longer_wanted_and_old_agent_roles_are_removed_others_kept() {
    let other_cluster = Case {
        cluster: "prod-2",
        ..Case::new(trust(&[("team-a", &["web"])]))
    }
    .changed();
    let old_agent = Case {
        agent: "arn:aws:iam::111122223333:role/old-agent",
        ..Case::new(trust(&[("team-z", &["web"])]))
    }
    .changed();
    let mut statements: Vec<Value> = vec![saml()];
    statements.extend(other_cluster.statements().into_iter().cloned());
    statements.extend(old_agent.statements().into_iter().cloned());
    let start = PolicyDocument::new(statements);
    let doc = Case::new(trust(&[("team-a", &["web"]), ("team-b", &["job"])]))
        .current(&start)
        .changed();
    let mine = |ns: &str| by_sid(&doc, &pod_identity_sid(AGENT, CLUSTER, ns)).is_some();
    assert!(mine("team-a") && mine("team-b"), "{doc}");
    // Another cluster's statement (same agent role) is foreign; the replaced agent role's
    // statement of this cluster is ours and goes.
    assert!(by_sid(&doc, &pod_identity_sid(AGENT, "prod-2", "team-a")).is_some());
    let old = pod_identity_sid(
        "arn:aws:iam::111122223333:role/old-agent",
        CLUSTER,
        "team-z",
    );
    assert!(by_sid(&doc, &old).is_none(), "{doc}");
    assert_eq!(doc.statements().len(), 4, "{doc}");

    // team-b's association goes: only its statement does.
    let fewer = Case::new(trust(&[("team-a", &["web"])]))
        .current(&doc)
        .changed();
    assert!(by_sid(&fewer, &pod_identity_sid(AGENT, CLUSTER, "team-b")).is_none());
    assert_eq!(fewer.statements().len(), 3, "{fewer}");
    // Every association goes and only ours were there: nothing would be left.
    let only_ours = Case::new(trust(&[("team-a", &["web"])])).changed();
    let none = Case::new(PodIdentityTrust::default())
        .current(&only_ours)
        .run()
        .unwrap();
    assert!(matches!(none, Compiled::NoStatementLeft { .. }), "{none:?}");
}

#[test]
fn without_the_agent_role_pod_statements_are_left_alone() {
    let doc = Case::new(trust(&[("team-a", &["web"])])).changed();
    let case = Case {
        configured: false,
        ..Case::new(PodIdentityTrust::default())
    }
    .current(&doc);
    case.unchanged();
}

#[test]
fn a_hand_edited_pod_statement_is_reported_and_replaced() {
    let doc = Case::new(trust(&[("team-a", &["web"])])).changed();
    let sid = pod_identity_sid(AGENT, CLUSTER, "team-a");
    let mut statement = by_sid(&doc, &sid).unwrap().clone();
    statement["Condition"]["StringEquals"]["aws:RequestTag/kubernetes-service-account"] =
        json!(["web", "admin"]);
    let edited = PolicyDocument::new(vec![statement]);
    let Ok(Compiled::Changed {
        document,
        hand_edited,
        ..
    }) = Case::new(trust(&[("team-a", &["web"])]))
        .current(&edited)
        .run()
    else {
        panic!("the edit must be undone");
    };
    // Not a hand edit by shape (a wider list is still our shape): replaced all the same.
    assert!(hand_edited.is_empty(), "{hand_edited:?}");
    assert_eq!(document, doc);

    let mut statement = by_sid(&doc, &sid).unwrap().clone();
    statement["Condition"]["StringLike"] = json!({"aws:RequestTag/x": "*"});
    let Ok(Compiled::Changed { hand_edited, .. }) = Case::new(trust(&[("team-a", &["web"])]))
        .current(&PolicyDocument::new(vec![statement]))
        .run()
    else {
        panic!("the edit must be undone");
    };
    assert_eq!(hand_edited.len(), 1);
    assert!(
        hand_edited[0]
            .to_string()
            .contains("(Pod Identity, namespace team-a) was edited outside irsa"),
        "{}",
        hand_edited[0]
    );
}

#[test]
fn disabled_session_tags_get_one_unconditioned_statement_while_wanted() {
    let mut pod = trust(&[("team-a", &["web"])]);
    pod.untagged = true;
    let doc = Case::new(pod.clone()).changed();
    let sid = pod_identity_untagged_sid(AGENT, CLUSTER);
    assert_eq!(
        by_sid(&doc, &sid).unwrap(),
        &json!({"Sid": sid, "Effect": "Allow", "Principal": {"AWS": AGENT},
                "Action": "sts:AssumeRole"})
    );
    assert_eq!(doc.statements().len(), 2);
    Case::new(pod).current(&doc).unchanged();
    // The last association without tags goes: so does the statement.
    let after = Case::new(trust(&[("team-a", &["web"])]))
        .current(&doc)
        .changed();
    assert!(by_sid(&after, &sid).is_none(), "{after}");
    assert_eq!(after.statements().len(), 1);
}

fn many(ns: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{ns}-service-account-{i}"))
        .collect()
}

fn big(namespaces: &[&str], n: usize) -> PodIdentityTrust {
    PodIdentityTrust {
        service_accounts: namespaces
            .iter()
            .map(|ns| (ns.to_string(), many(ns, n).into_iter().collect()))
            .collect(),
        ..PodIdentityTrust::default()
    }
}

#[test]
fn over_quota_collapses_allowed_namespaces_or_refuses_with_the_numbers() {
    let mut pod = big(&["team-a", "team-b"], 30);
    let refused = Case::new(pod.clone()).run().unwrap_err();
    assert!(refused.chars > DEFAULT_MAX_CHARS && refused.quota == DEFAULT_MAX_CHARS);
    assert_eq!(refused.desired, 60);
    assert!(!refused.not_fitting.is_empty() && refused.not_fitting.len() < 60);
    assert_eq!(refused.not_fitting[0].0, POD_IDENTITY_LABEL);
    let text = refused.to_string();
    assert!(text.contains("(Pod Identity)"), "{text}");

    // team-b allows wildcard trust: its ServiceAccount condition goes, team-a's stays.
    pod.wildcard_namespaces.insert("team-b".into());
    let Ok(Compiled::Changed {
        document,
        collapsed,
        chars,
        ..
    }) = Case::new(pod.clone()).run()
    else {
        panic!("collapsing team-b must fit");
    };
    assert_eq!(collapsed, ["team-b"]);
    assert!(chars <= DEFAULT_MAX_CHARS);
    let b = by_sid(&document, &pod_identity_sid(AGENT, CLUSTER, "team-b")).unwrap();
    assert_eq!(
        b["Condition"]["StringEquals"],
        json!({"aws:RequestTag/irsa-cluster-name": CLUSTER,
               "aws:RequestTag/kubernetes-namespace": "team-b"})
    );
    let a = by_sid(&document, &pod_identity_sid(AGENT, CLUSTER, "team-a")).unwrap();
    assert_eq!(
        a["Condition"]["StringEquals"]["aws:RequestTag/kubernetes-service-account"]
            .as_array()
            .map(Vec::len),
        Some(30)
    );
    // Steady state holds for the collapsed form too.
    let Ok(Compiled::Unchanged { collapsed, .. }) = Case::new(pod.clone()).current(&document).run()
    else {
        panic!("the collapsed document is what is wanted");
    };
    assert_eq!(collapsed, ["team-b"]);

    // It fits again without collapsing: the exact list comes back.
    let small = trust(&[("team-a", &["web"]), ("team-b", &["job"])]);
    let mut small_wild = small.clone();
    small_wild.wildcard_namespaces = pod.wildcard_namespaces.clone();
    let back = Case::new(small_wild).current(&document).changed();
    assert_eq!(back, Case::new(small).changed());
}
