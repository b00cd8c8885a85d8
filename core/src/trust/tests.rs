//! Compiler and evaluator tests, and the property tying them together.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

const ISSUER: &str = "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC";
const HOST: &str = "oidc.eks.eu-west-1.amazonaws.com/id/ABC";
const PROVIDER: &str =
    "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC";
const ISSUER_B: &str = "https://k8s-b.example.com";
const PROVIDER_B: &str = "arn:aws:iam::111122223333:oidc-provider/k8s-b.example.com";
const STS: &str = "sts.amazonaws.com";

fn subjects(list: &[&str]) -> BTreeSet<Subject> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn desired(groups: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<Subject>> {
    groups
        .iter()
        .map(|(aud, subs)| (aud.to_string(), subjects(subs)))
        .collect()
}

struct Case {
    current: Option<PolicyDocument>,
    issuer: &'static str,
    provider: &'static str,
    desired: BTreeMap<String, BTreeSet<Subject>>,
    max_chars: usize,
    wildcards: BTreeSet<String>,
}

impl Case {
    fn new(desired: BTreeMap<String, BTreeSet<Subject>>) -> Self {
        Self {
            current: None,
            issuer: ISSUER,
            provider: PROVIDER,
            desired,
            max_chars: DEFAULT_MAX_CHARS,
            wildcards: BTreeSet::new(),
        }
    }

    fn current(mut self, doc: &PolicyDocument) -> Self {
        self.current = Some(doc.clone());
        self
    }

    fn cluster_b(mut self) -> Self {
        self.issuer = ISSUER_B;
        self.provider = PROVIDER_B;
        self
    }

    fn run(&self) -> Result<Compiled, Refusal> {
        compile(&CompileInput {
            current: self.current.as_ref(),
            issuer: self.issuer,
            provider_arn: self.provider,
            desired: &self.desired,
            max_chars: self.max_chars,
            wildcard_namespaces: &self.wildcards,
            pod_identity: None,
        })
    }

    fn changed(&self) -> PolicyDocument {
        match self.run() {
            Ok(Compiled::Changed { document, .. }) => document,
            other => panic!("expected Changed, got {other:?}"),
        }
    }
}

fn allowed(doc: &PolicyDocument, provider: &str, sub: &str, aud: &str) -> bool {
    evaluate(doc, provider, &Claims::new(sub, aud)).allowed
}

fn statement_by_sid<'a>(doc: &'a PolicyDocument, sid: &str) -> &'a Value {
    doc.statements()
        .into_iter()
        .find(|s| s["Sid"] == sid)
        .unwrap_or_else(|| panic!("no statement {sid} in {doc}"))
}

// ---------------------------------------------------------------------------------------
// Compiler

#[test]
fn new_role_gets_the_documented_statement_per_audience() {
    let case = Case::new(desired(&[
        (STS, &["team-b:worker", "team-a:app", "team-a:api"]),
        ("vault", &["team-c:agent"]),
    ]));
    let doc = case.changed();
    assert_eq!(doc.statements().len(), 2);
    let sts_sid = statement_sid(HOST, STS);
    assert_eq!(
        statement_by_sid(&doc, &sts_sid),
        &json!({
            "Sid": sts_sid,
            "Effect": "Allow",
            "Principal": {"Federated": PROVIDER},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{HOST}:aud"): STS,
                format!("{HOST}:sub"): [
                    "system:serviceaccount:team-a:api",
                    "system:serviceaccount:team-a:app",
                    "system:serviceaccount:team-b:worker",
                ],
            }},
        })
    );
    // Audience grouping: one subject, written as a string, in its own statement.
    let vault = statement_by_sid(&doc, &statement_sid(HOST, "vault"));
    assert_eq!(
        vault["Condition"]["StringEquals"][format!("{HOST}:sub")],
        json!("system:serviceaccount:team-c:agent")
    );
    assert_eq!(doc.as_value()["Version"], POLICY_VERSION);
    // Each audience only for its subjects.
    assert!(allowed(
        &doc,
        PROVIDER,
        "system:serviceaccount:team-c:agent",
        "vault"
    ));
    assert!(!allowed(
        &doc,
        PROVIDER,
        "system:serviceaccount:team-c:agent",
        STS
    ));
    assert!(!allowed(
        &doc,
        PROVIDER,
        "system:serviceaccount:team-a:app",
        "vault"
    ));
    assert!(allowed(
        &doc,
        PROVIDER,
        "system:serviceaccount:team-a:app",
        STS
    ));
}

/// A role shared with humans, SAML, a service and another cluster, in odd formatting.
const SHARED_ROLE: &str = r#"{
  "Id": "shared-role",
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Principal": {"Service": ["ec2.amazonaws.com", "lambda.amazonaws.com"]},
     "Action": "sts:AssumeRole", "Sid": "Services"},
    {"Sid": "Saml", "Effect": "Allow",
     "Principal": {"Federated": "arn:aws:iam::111122223333:saml-provider/Okta"},
     "Action": ["sts:AssumeRoleWithSAML", "sts:TagSession"],
     "Condition": {"StringEquals": {"SAML:aud": "https://signin.aws.amazon.com/saml"},
                   "NumericLessThan": {"aws:MultiFactorAuthAge": 3600}}},
    {"Effect": "Deny", "NotPrincipal": {"AWS": "arn:aws:iam::111122223333:root"},
     "NotAction": "sts:AssumeRoleWithWebIdentity", "Condition": {"Bool": {"aws:SecureTransport": false}}},
    {"Sid": "OtherCluster", "Effect": "Allow",
     "Principal": {"Federated": "arn:aws:iam::111122223333:oidc-provider/oidc.other.example/id/Z"},
     "Action": "sts:AssumeRoleWithWebIdentity",
     "Condition": {"StringLike": {"oidc.other.example/id/Z:sub": "system:serviceaccount:x:*"}}}
  ]
}"#;

#[test]
fn foreign_statements_survive_byte_for_byte() {
    let current = PolicyDocument::parse(SHARED_ROLE).unwrap();
    let foreign: Vec<String> = current.statements().iter().map(|s| s.to_string()).collect();
    // Round trip alone is lossless.
    let compact = current.to_compact();
    assert_eq!(
        PolicyDocument::parse(&compact).unwrap().to_compact(),
        compact
    );
    assert!(compact.starts_with(r#"{"Id":"shared-role","Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":["ec2.amazonaws.com","lambda.amazonaws.com"]},"Action":"sts:AssumeRole","Sid":"Services"}"#));

    let doc = Case::new(desired(&[(STS, &["team-a:app"])]))
        .current(&current)
        .changed();
    let out = doc.to_compact();
    let statements = doc.statements();
    assert_eq!(statements.len(), 5);
    for (i, text) in foreign.iter().enumerate() {
        // Same position, same bytes.
        assert_eq!(&statements[i].to_string(), text);
        assert!(out.contains(text.as_str()));
    }
    assert!(out.starts_with(r#"{"Id":"shared-role","Version":"2012-10-17","Statement":["#));
    assert_eq!(statements[4]["Sid"], statement_sid(HOST, STS));

    // Removing our statement gives the original document back, byte for byte (compact).
    let removed = Case::new(BTreeMap::new()).current(&doc).changed();
    assert_eq!(removed.to_compact(), compact);
}

#[test]
fn two_issuers_share_one_role_without_touching_each_other() {
    let a = Case::new(desired(&[(STS, &["team-a:app"])])).changed();
    let both = Case::new(desired(&[(STS, &["team-b:app"])]))
        .cluster_b()
        .current(&a)
        .changed();
    assert_eq!(both.statements().len(), 2);
    assert_ne!(statement_sid(HOST, STS), statement_sid(ISSUER_B, STS));
    assert!(allowed(
        &both,
        PROVIDER,
        "system:serviceaccount:team-a:app",
        STS
    ));
    assert!(allowed(
        &both,
        PROVIDER_B,
        "system:serviceaccount:team-b:app",
        STS
    ));
    // A subject trusted on B is not trusted on A's issuer, and vice versa.
    assert!(!allowed(
        &both,
        PROVIDER,
        "system:serviceaccount:team-b:app",
        STS
    ));
    assert!(!allowed(
        &both,
        PROVIDER_B,
        "system:serviceaccount:team-a:app",
        STS
    ));

    // Cluster A changes its subjects: B's statement is untouched and stays in place.
    let b_statement = both.statements()[1].to_string();
    let updated = Case::new(desired(&[(STS, &["team-a:app", "team-a:api"])]))
        .current(&both)
        .changed();
    assert_eq!(updated.statements()[1].to_string(), b_statement);
    assert!(allowed(
        &updated,
        PROVIDER,
        "system:serviceaccount:team-a:api",
        STS
    ));
    // Cluster A leaves: B remains.
    let left = Case::new(BTreeMap::new()).current(&updated).changed();
    assert_eq!(left.statements().len(), 1);
    assert_eq!(left.statements()[0].to_string(), b_statement);
}

#[test]
fn compiling_its_own_output_is_unchanged_and_comparison_is_semantic() {
    let case = Case::new(desired(&[
        (STS, &["team-a:app", "team-a:api", "team-b:x"]),
        ("vault", &["team-c:agent"]),
    ]));
    let doc = case.changed();
    let chars = doc.chars();
    let again = Case::new(case.desired.clone()).current(&doc).run().unwrap();
    assert_eq!(
        again,
        Compiled::Unchanged {
            chars,
            collapsed: vec![]
        }
    );

    // Hand-reformatted: subjects reordered, keys reordered, the single subject as a list,
    // the audience as a list, statements reordered, pretty-printed.
    let sts_sid = statement_sid(HOST, STS);
    let vault_sid = statement_sid(HOST, "vault");
    let shuffled = format!(
        r#"{{
        "Statement": [
          {{ "Condition": {{ "StringEquals": {{ "{HOST}:sub": ["system:serviceaccount:team-c:agent"],
                                             "{HOST}:aud": ["vault"] }} }},
             "Action": ["sts:AssumeRoleWithWebIdentity"], "Principal": {{"Federated": ["{PROVIDER}"]}},
             "Effect": "Allow", "Sid": "{vault_sid}" }},
          {{ "Sid": "{sts_sid}", "Effect": "Allow", "Principal": {{"Federated": "{PROVIDER}"}},
             "Action": "sts:AssumeRoleWithWebIdentity",
             "Condition": {{ "StringEquals": {{ "{HOST}:aud": "sts.amazonaws.com",
               "{HOST}:sub": ["system:serviceaccount:team-b:x", "system:serviceaccount:team-a:app",
                              "system:serviceaccount:team-a:api"] }} }} }}
        ],
        "Version": "2012-10-17" }}"#
    );
    let shuffled = PolicyDocument::parse(&shuffled).unwrap();
    assert!(matches!(
        Case::new(case.desired.clone()).current(&shuffled).run(),
        Ok(Compiled::Unchanged { .. })
    ));
}

#[test]
fn getrole_url_encoded_form_is_read_and_compared() {
    let doc = Case::new(desired(&[(STS, &["team-a:app"])])).changed();
    // What `GetRole` returns in `AssumeRolePolicyDocument` (RFC 3986 encoding).
    let encoded =
        percent_encoding::utf8_percent_encode(&doc.to_pretty(), percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    assert!(encoded.starts_with("%7B"));
    let parsed = PolicyDocument::parse(&encoded).unwrap();
    assert_eq!(parsed, doc);
    assert!(matches!(
        Case::new(desired(&[(STS, &["team-a:app"])]))
            .current(&parsed)
            .run(),
        Ok(Compiled::Unchanged { .. })
    ));
}

/// 30 subjects in team-big, 3 in team-small, 2 in team-other: about 1.9k characters.
fn crowded() -> BTreeMap<String, BTreeSet<Subject>> {
    let mut subs: Vec<String> = (0..30)
        .map(|i| format!("team-big:service-{i:02}"))
        .collect();
    subs.extend((0..3).map(|i| format!("team-small:svc-{i}")));
    subs.extend(["team-other:a".to_string(), "team-other:b".to_string()]);
    let refs: Vec<&str> = subs.iter().map(String::as_str).collect();
    desired(&[(STS, &refs)])
}

#[test]
fn compaction_collapses_the_largest_allowed_namespace_first() {
    let mut case = Case::new(crowded());
    case.max_chars = 1000;
    case.wildcards = ["team-big", "team-small"].map(String::from).into();
    let Ok(Compiled::Changed {
        document,
        chars,
        collapsed,
        ..
    }) = case.run()
    else {
        panic!("expected Changed, got {:?}", case.run());
    };
    assert_eq!(collapsed, ["team-big"]);
    assert!(chars <= 1000, "{chars}");
    let statement = &document.statements()[0];
    // Everything moves under StringLike: a second operator would be ANDed.
    assert_eq!(
        statement["Condition"],
        json!({
            "StringEquals": {format!("{HOST}:aud"): STS},
            "StringLike": {format!("{HOST}:sub"): [
                "system:serviceaccount:team-big:*",
                "system:serviceaccount:team-other:a",
                "system:serviceaccount:team-other:b",
                "system:serviceaccount:team-small:svc-0",
                "system:serviceaccount:team-small:svc-1",
                "system:serviceaccount:team-small:svc-2",
            ]},
        })
    );
    for s in case.desired[STS].iter() {
        assert!(allowed(&document, PROVIDER, &s.sub(), STS), "{s}");
    }
    // The wildcard widens trust to its namespace only.
    assert!(allowed(
        &document,
        PROVIDER,
        "system:serviceaccount:team-big:new",
        STS
    ));
    assert!(!allowed(
        &document,
        PROVIDER,
        "system:serviceaccount:team-small:new",
        STS
    ));
    // Steady state: no rewrite, and the collapse is still reported.
    let again = Case {
        current: Some(document),
        ..case
    }
    .run()
    .unwrap();
    assert_eq!(
        again,
        Compiled::Unchanged {
            chars,
            collapsed: vec!["team-big".into()]
        }
    );
}

#[test]
fn no_collapse_when_it_fits_and_tighter_trust_when_it_fits_again() {
    let mut case = Case::new(crowded());
    case.max_chars = 1000;
    case.wildcards = ["team-big".to_string()].into();
    let collapsed = case.changed();
    // Most of team-big leaves: the exact list fits again and replaces the wildcard.
    let mut fewer = Case::new(desired(&[(
        STS,
        &["team-big:service-00", "team-small:svc-0"],
    )]))
    .current(&collapsed);
    fewer.max_chars = 1000;
    fewer.wildcards = case.wildcards.clone();
    let doc = fewer.changed();
    assert!(doc.statements()[0]["Condition"].get("StringLike").is_none());
    assert!(!allowed(
        &doc,
        PROVIDER,
        "system:serviceaccount:team-big:other",
        STS
    ));
}

#[test]
fn refusal_reports_the_numbers_and_the_subjects_that_do_not_fit() {
    let mut case = Case::new(crowded());
    case.max_chars = 1000;
    let refusal = case.run().unwrap_err();
    assert_eq!(refusal.quota, 1000);
    assert_eq!(refusal.desired, 35);
    assert!(refusal.chars > 1000);
    assert_eq!(refusal.current_chars, None);
    assert!(refusal.collapsed.is_empty());
    // The numbers are exact: everything before `not_fitting` fits, one more does not.
    let fit = 35 - refusal.not_fitting.len();
    assert!(fit > 0 && fit < 35, "{fit}");
    let all: Vec<Subject> = case.desired[STS].iter().cloned().collect();
    let size_of = |n: usize| {
        let subset: BTreeSet<Subject> = all[..n].iter().cloned().collect();
        match Case::new([(STS.to_string(), subset)].into()).run().unwrap() {
            Compiled::Changed { chars, .. } => chars,
            other => panic!("{other:?}"),
        }
    };
    assert!(size_of(fit) <= 1000);
    assert!(size_of(fit + 1) > 1000);
    assert_eq!(size_of(35), refusal.chars);
    assert_eq!(refusal.not_fitting[0], (STS.to_string(), all[fit].clone()));
    let text = refusal.to_string();
    assert!(
        text.contains(&format!("would be {} characters", refusal.chars)),
        "{text}"
    );
    assert!(text.contains("over the quota of 1000"), "{text}");
    assert!(
        text.contains(&format!("{} of 35 subjects do not fit", 35 - fit)),
        "{text}"
    );

    // With a collapse allowed but not enough, the refusal says what was collapsed.
    case.max_chars = 400;
    case.wildcards = ["team-small".to_string()].into();
    let refusal = case.run().unwrap_err();
    assert_eq!(refusal.collapsed, ["team-small"]);
    assert!(refusal.to_string().contains("team-small collapsed"));
}

#[test]
fn foreign_statements_alone_over_quota_refuse_everything() {
    let current = PolicyDocument::parse(SHARED_ROLE).unwrap();
    let mut case = Case::new(desired(&[(STS, &["team-a:app"])])).current(&current);
    case.max_chars = 100;
    let refusal = case.run().unwrap_err();
    assert_eq!(refusal.current_chars, Some(current.chars()));
    assert_eq!(refusal.not_fitting.len(), 1);
}

#[test]
fn removing_from_an_over_quota_role_is_never_refused() {
    let mut case = Case::new(crowded());
    let big = case.changed();
    let mut remove = Case::new(desired(&[(STS, &["team-big:service-00"])])).current(&big);
    remove.max_chars = 100; // the flag is lower than what IAM holds
    case.max_chars = 100;
    assert!(case.run().is_err());
    assert!(remove.changed().chars() < big.chars());
}

#[test]
fn empty_desired_set_removes_our_statement_or_says_none_is_left() {
    let ours = Case::new(desired(&[
        (STS, &["team-a:app"]),
        ("vault", &["team-a:app"]),
    ]))
    .changed();
    // Only vault is still desired; sts.amazonaws.com is found through its own aud value.
    let only_vault = Case::new(desired(&[("vault", &["team-a:app"])]))
        .current(&ours)
        .run()
        .unwrap();
    let Compiled::Changed {
        document,
        removed_audiences,
        ..
    } = &only_vault
    else {
        panic!("{only_vault:?}");
    };
    assert_eq!(removed_audiences, &[STS.to_string()]);
    assert_eq!(document.statements().len(), 1);
    // Nothing desired: no statement would remain, which IAM rejects.
    assert_eq!(
        Case::new(desired(&[(STS, &[])])).current(&ours).run(),
        Ok(Compiled::NoStatementLeft {
            removed_audiences: vec![STS.to_string(), "vault".to_string()]
        })
    );
    assert_eq!(
        Case::new(BTreeMap::new()).run(),
        Ok(Compiled::NoStatementLeft {
            removed_audiences: vec![]
        })
    );
    // A role without our statements and nothing desired: nothing to do.
    let foreign = PolicyDocument::parse(SHARED_ROLE).unwrap();
    assert!(matches!(
        Case::new(BTreeMap::new()).current(&foreign).run(),
        Ok(Compiled::Unchanged { .. })
    ));
}

#[test]
fn hand_edited_statement_is_reported_then_replaced() {
    let doc = Case::new(desired(&[(STS, &["team-a:app"])])).changed();
    let mut value = doc.as_value();
    value["Statement"][0]["Condition"]["StringLike"] = json!({"aws:PrincipalTag/team": "a*"});
    let edited = PolicyDocument::from_value(value).unwrap();
    let Ok(Compiled::Changed {
        document,
        hand_edited,
        ..
    }) = Case::new(desired(&[(STS, &["team-a:app"])]))
        .current(&edited)
        .run()
    else {
        panic!("expected a rewrite");
    };
    assert_eq!(document, doc);
    assert_eq!(hand_edited.len(), 1);
    assert_eq!(hand_edited[0].sid, statement_sid(HOST, STS));
    assert!(
        hand_edited[0].to_string().contains("edited outside irsa"),
        "{}",
        hand_edited[0]
    );

    // A duplicated Sid: the copy is dropped and reported.
    let mut value = doc.as_value();
    let copy = value["Statement"][0].clone();
    value["Statement"].as_array_mut().unwrap().push(copy);
    let duplicated = PolicyDocument::from_value(value).unwrap();
    let Ok(Compiled::Changed {
        document,
        hand_edited,
        ..
    }) = Case::new(desired(&[(STS, &["team-a:app"])]))
        .current(&duplicated)
        .run()
    else {
        panic!("expected a rewrite");
    };
    assert_eq!(document, doc);
    assert!(hand_edited[0].reason.contains("same Sid"));

    // Only the provider changed (recreated in another account): a plain change, no report.
    let moved = Case {
        provider: "arn:aws:iam::444455556666:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC",
        ..Case::new(desired(&[(STS, &["team-a:app"])]))
    }
    .current(&doc)
    .run()
    .unwrap();
    assert!(matches!(moved, Compiled::Changed { ref hand_edited, .. } if hand_edited.is_empty()));
}

// ---------------------------------------------------------------------------------------
// Evaluator

fn policy(statements: Value) -> PolicyDocument {
    PolicyDocument::from_value(json!({"Version": "2012-10-17", "Statement": statements})).unwrap()
}

fn web_identity(condition: Value) -> PolicyDocument {
    policy(json!([{
        "Sid": "Web",
        "Effect": "Allow",
        "Principal": {"Federated": PROVIDER},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": condition,
    }]))
}

fn eval(doc: &PolicyDocument, sub: &str, aud: &str) -> Decision {
    evaluate(doc, PROVIDER, &Claims::new(sub, aud))
}

const APP: &str = "system:serviceaccount:team-a:app";
const API: &str = "system:serviceaccount:team-a:api";

#[test]
fn string_equals_allows_the_listed_subject_and_explains_the_others() {
    let doc = web_identity(json!({"StringEquals": {
        format!("{HOST}:aud"): STS, format!("{HOST}:sub"): API}}));
    let ok = eval(&doc, API, STS);
    assert!(ok.allowed);
    assert_eq!(ok.matched_sid.as_deref(), Some("Web"));
    assert_eq!(ok.matched_index, Some(0));

    let no = eval(&doc, APP, STS);
    assert!(!no.allowed);
    assert_eq!(no.matched_sid, None);
    assert_eq!(
        no.reasons,
        [format!(
            "statement Web: sub is {APP}, trust allows only {API} (StringEquals on {HOST}:sub)"
        )]
    );
    // Multiple keys are ANDed: a wrong audience fails too, and both are reported.
    let both = eval(&doc, APP, "vault");
    assert_eq!(both.reasons.len(), 2, "{both}");
    assert!(both.reasons[0].contains("aud is vault, trust allows only sts.amazonaws.com"));
}

#[test]
fn multiple_values_are_ored() {
    let doc = web_identity(json!({"StringEquals": {format!("{HOST}:sub"): [API, APP]}}));
    assert!(eval(&doc, APP, STS).allowed);
    assert!(eval(&doc, API, STS).allowed);
    let no = eval(&doc, "system:serviceaccount:team-a:x", STS);
    assert!(no.reasons[0].contains(&format!("trust allows only {API} or {APP}")));
}

#[test]
fn string_like_and_not_like() {
    let like = web_identity(
        json!({"StringLike": {format!("{HOST}:sub"): "system:serviceaccount:team-?:*"}}),
    );
    assert!(eval(&like, APP, STS).allowed);
    assert!(eval(&like, "system:serviceaccount:team-b:x", STS).allowed);
    assert!(!eval(&like, "system:serviceaccount:team-ab:x", STS).allowed);
    // Case-sensitive.
    assert!(!eval(&like, "system:serviceaccount:TEAM-a:app", STS).allowed);

    let not_like = web_identity(
        json!({"StringNotLike": {format!("{HOST}:sub"): ["*:kube-system:*", "*:default:*"]}}),
    );
    assert!(eval(&not_like, APP, STS).allowed);
    let no = eval(&not_like, "system:serviceaccount:kube-system:x", STS);
    assert!(!no.allowed);
    assert!(no.reasons[0].contains("which the trust excludes"), "{no}");
}

#[test]
fn string_not_equals_and_ignore_case() {
    let ne = web_identity(json!({"StringNotEquals": {format!("{HOST}:sub"): APP}}));
    assert!(!eval(&ne, APP, STS).allowed);
    assert!(eval(&ne, API, STS).allowed);
    // Absent key satisfies a negated operator.
    let absent = web_identity(json!({"StringNotEquals": {"aws:PrincipalTag/x": "y"}}));
    assert!(eval(&absent, APP, STS).allowed);

    let ic = web_identity(
        json!({"StringEqualsIgnoreCase": {format!("{HOST}:sub"): APP.to_uppercase()}}),
    );
    assert!(eval(&ic, APP, STS).allowed);
    let nic = web_identity(
        json!({"StringNotEqualsIgnoreCase": {format!("{HOST}:sub"): APP.to_uppercase()}}),
    );
    assert!(!eval(&nic, APP, STS).allowed);
}

#[test]
fn set_qualifiers_if_exists_and_null() {
    let amr = "cognito-identity.amazonaws.com:amr".to_string();
    let mut claims = Claims::new(APP, STS);
    claims
        .extra
        .insert(amr.clone(), vec!["authenticated".into(), "x".into()]);

    let any = web_identity(json!({"ForAnyValue:StringLike": {&amr: "auth*"}}));
    assert!(evaluate(&any, PROVIDER, &claims).allowed);
    let all = web_identity(json!({"ForAllValues:StringEquals": {&amr: ["authenticated"]}}));
    assert!(!evaluate(&all, PROVIDER, &claims).allowed);
    let all_ok = web_identity(json!({"ForAllValues:StringEquals": {&amr: ["authenticated", "x"]}}));
    assert!(evaluate(&all_ok, PROVIDER, &claims).allowed);
    // Absent key: ForAllValues holds (vacuously), ForAnyValue does not.
    let bare = Claims::new(APP, STS);
    assert!(evaluate(&all, PROVIDER, &bare).allowed);
    assert!(!evaluate(&any, PROVIDER, &bare).allowed);
    // Negated with a set qualifier: any value outside the list.
    let any_not = web_identity(json!({"ForAnyValue:StringNotEquals": {&amr: "authenticated"}}));
    assert!(evaluate(&any_not, PROVIDER, &claims).allowed);

    let if_exists = web_identity(json!({"StringEqualsIfExists": {"aws:PrincipalTag/team": "a"}}));
    assert!(evaluate(&if_exists, PROVIDER, &bare).allowed);
    let mut tagged = Claims::new(APP, STS);
    tagged
        .extra
        .insert("aws:PrincipalTag/team".into(), vec!["b".into()]);
    assert!(!evaluate(&if_exists, PROVIDER, &tagged).allowed);
    let plain = web_identity(json!({"StringEquals": {"aws:PrincipalTag/team": "a"}}));
    let no = evaluate(&plain, PROVIDER, &bare);
    assert!(
        no.reasons[0].contains("the request has no such key"),
        "{no}"
    );

    let null_true = web_identity(json!({"Null": {"aws:PrincipalTag/team": "true"}}));
    assert!(evaluate(&null_true, PROVIDER, &bare).allowed);
    assert!(!evaluate(&null_true, PROVIDER, &tagged).allowed);
    let null_false = web_identity(json!({"Null": {format!("{HOST}:sub"): false}}));
    assert!(evaluate(&null_false, PROVIDER, &bare).allowed);
}

#[test]
fn other_operators_and_keys() {
    let arn = web_identity(
        json!({"ArnLike": {"aws:FederatedProvider": "arn:aws:iam::*:oidc-provider/oidc.eks.*"}}),
    );
    assert!(eval(&arn, APP, STS).allowed);
    let mut claims = Claims::new(APP, STS);
    claims
        .extra
        .insert("aws:SecureTransport".into(), vec!["true".into()]);
    claims
        .extra
        .insert("aws:MultiFactorAuthAge".into(), vec!["30".into()]);
    let boolean = web_identity(json!({"Bool": {"aws:SecureTransport": true}}));
    assert!(evaluate(&boolean, PROVIDER, &claims).allowed);
    let numeric = web_identity(json!({"NumericLessThan": {"aws:MultiFactorAuthAge": 60}}));
    assert!(evaluate(&numeric, PROVIDER, &claims).allowed);
    let date =
        web_identity(json!({"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}));
    let no = eval(&date, APP, STS);
    assert!(!no.allowed);
    assert!(no.reasons[0].contains("not evaluated by irsa"), "{no}");
    // Condition key names are case-insensitive.
    let upper =
        web_identity(json!({"StringEquals": {format!("{}:SUB", HOST.to_uppercase()): APP}}));
    assert!(eval(&upper, APP, STS).allowed);
}

#[test]
fn explicit_deny_wins_over_allow() {
    let doc = policy(json!([
        {"Sid": "Web", "Effect": "Allow", "Principal": {"Federated": PROVIDER},
         "Action": "sts:AssumeRoleWithWebIdentity"},
        {"Sid": "NoDefault", "Effect": "Deny", "Principal": "*", "Action": "sts:*",
         "Condition": {"StringLike": {format!("{HOST}:sub"): "system:serviceaccount:default:*"}}},
    ]));
    assert!(eval(&doc, APP, STS).allowed);
    let denied = eval(&doc, "system:serviceaccount:default:app", STS);
    assert!(!denied.allowed);
    assert_eq!(denied.matched_sid.as_deref(), Some("NoDefault"));
    assert_eq!(denied.matched_index, Some(1));
    assert!(denied.reasons[0].contains("explicit Deny"));
}

#[test]
fn principal_and_action_forms() {
    let star =
        policy(json!([{"Effect": "Allow", "Principal": "*", "Action": ["sts:AssumeRole*"]}]));
    assert!(eval(&star, APP, STS).allowed);
    let aws_star =
        policy(json!([{"Effect": "Allow", "Principal": {"AWS": "*"}, "NotAction": "s3:*"}]));
    assert!(eval(&aws_star, APP, STS).allowed);
    let not_principal = policy(
        json!([{"Effect": "Allow", "NotPrincipal": {"Federated": PROVIDER}, "Action": "*"}]),
    );
    assert!(!eval(&not_principal, APP, STS).allowed);
    let not_action = policy(
        json!([{"Effect": "Allow", "Principal": {"Federated": [PROVIDER]}, "NotAction": "sts:AssumeRoleWithWebIdentity"}]),
    );
    assert!(eval(&not_action, APP, STS).reasons[0].contains("NotAction excludes"));

    // The classic: AssumeRole instead of AssumeRoleWithWebIdentity.
    let wrong_action = policy(
        json!([{"Sid": "X", "Effect": "Allow", "Principal": {"Federated": PROVIDER}, "Action": "sts:AssumeRole"}]),
    );
    let no = eval(&wrong_action, APP, STS);
    assert_eq!(
        no.reasons,
        [
            "statement X: Action is sts:AssumeRole, not sts:AssumeRoleWithWebIdentity (the action STS checks for a web-identity token)"
        ]
    );
    // Statements for services are not this token's business: the reason says no statement
    // trusts the provider at all.
    let service = policy(
        json!([{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]),
    );
    let no = eval(&service, APP, STS);
    assert_eq!(no.reasons.len(), 1);
    assert!(
        no.reasons[0].starts_with("no statement trusts the OIDC provider"),
        "{no}"
    );
    let bad = evaluate(&service, "oidc.example.com", &Claims::new(APP, STS));
    assert!(bad.reasons[0].contains("is not an OIDC provider ARN"));
}

// The real-world mistakes, each with the hint the doctor prints.

#[test]
fn mistake_wildcard_under_string_equals() {
    let doc = web_identity(
        json!({"StringEquals": {format!("{HOST}:sub"): "system:serviceaccount:team-a:*"}}),
    );
    let no = eval(&doc, APP, STS);
    assert!(!no.allowed);
    assert!(
        no.reasons[0].contains("StringEquals compares `*` and `?` literally: use StringLike"),
        "{no}"
    );
}

#[test]
fn mistake_aud_and_sub_swapped() {
    let doc = web_identity(json!({"StringEquals": {
        format!("{HOST}:aud"): APP, format!("{HOST}:sub"): STS}}));
    let no = eval(&doc, APP, STS);
    assert_eq!(no.reasons.len(), 2, "{no}");
    assert!(
        no.reasons.iter().all(|r| r.contains("look swapped")),
        "{no}"
    );
}

#[test]
fn mistake_scheme_or_arn_in_the_condition_key() {
    let with_scheme = web_identity(json!({"StringEquals": {format!("https://{HOST}:sub"): APP}}));
    let no = eval(&with_scheme, APP, STS);
    assert!(!no.allowed);
    assert!(no.reasons[0].contains("includes the URL scheme"), "{no}");
    assert!(
        no.reasons[0].contains(&format!("IAM's key is {HOST}:sub")),
        "{no}"
    );

    let with_arn = web_identity(json!({"StringEquals": {format!("{PROVIDER}:sub"): APP}}));
    let no = eval(&with_arn, APP, STS);
    assert!(
        no.reasons[0].contains("built from the provider ARN"),
        "{no}"
    );

    let other_issuer = web_identity(json!({"StringEquals": {"oidc.other.example/id/Z:sub": APP}}));
    let no = eval(&other_issuer, APP, STS);
    assert!(
        no.reasons[0].contains("for the issuer oidc.other.example/id/Z"),
        "{no}"
    );
}

#[test]
fn mistake_case_mismatch() {
    let doc = web_identity(
        json!({"StringEquals": {format!("{HOST}:sub"): "system:serviceaccount:Team-A:app"}}),
    );
    let no = eval(&doc, APP, STS);
    assert!(no.reasons[0].contains("differ only in letter case"), "{no}");
    let principal = policy(json!([{"Effect": "Allow",
        "Principal": {"Federated": PROVIDER.replace("oidc.eks", "OIDC.eks")},
        "Action": "sts:AssumeRoleWithWebIdentity"}]));
    assert!(eval(&principal, APP, STS).reasons[0].contains("only in letter case"));
}

#[test]
fn mistake_trailing_slash_in_the_issuer() {
    let doc = policy(json!([{"Sid": "Slash", "Effect": "Allow",
        "Principal": {"Federated": format!("{PROVIDER}/")},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {format!("{HOST}/:sub"): APP}}}]));
    let no = eval(&doc, APP, STS);
    assert!(!no.allowed);
    assert_eq!(no.reasons.len(), 2, "{no}");
    assert!(no.reasons[0].contains("only by a trailing slash"), "{no}");
    assert!(no.reasons[1].contains("trailing slash"), "{no}");
    assert!(
        no.reasons[1].contains(&format!("IAM's key is {HOST}:sub")),
        "{no}"
    );
    // Principal given as the issuer URL instead of the provider ARN.
    let url = policy(
        json!([{"Effect": "Allow", "Principal": {"Federated": ISSUER},
        "Action": "sts:AssumeRoleWithWebIdentity"}]),
    );
    assert!(eval(&url, APP, STS).reasons[0].contains("must be the provider ARN"));
}

// ---------------------------------------------------------------------------------------
// The property: what the compiler writes, the evaluator enforces.

fn arb_desired() -> impl Strategy<Value = BTreeMap<String, BTreeSet<Subject>>> {
    // Never ending in `x`: the property's outsiders do, so none can be a desired subject.
    let subject = ("ns[0-5]", "[a-z][a-z0-9-]{0,12}[a-wyz0-9]")
        .prop_map(|(ns, name)| Subject::new(&ns, &name).unwrap());
    proptest::collection::btree_map(
        prop_oneof![Just(STS.to_string()), Just("vault".to_string())],
        proptest::collection::btree_set(subject, 0..40),
        1..3,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn compiled_policy_allows_exactly_the_desired_subjects(
        desired in arb_desired(),
        wildcards in proptest::collection::btree_set("ns[0-5]", 0..4),
        max_chars in 300usize..3000,
        outsider in "[a-z]{1,8}x",
        foreign in any::<bool>(),
    ) {
        let current = foreign.then(|| PolicyDocument::parse(SHARED_ROLE).unwrap());
        let input = CompileInput {
            current: current.as_ref(),
            issuer: ISSUER,
            provider_arn: PROVIDER,
            desired: &desired,
            max_chars,
            wildcard_namespaces: &wildcards,
            pod_identity: None,
        };
        match compile(&input) {
            Ok(Compiled::Changed { document, chars, collapsed, .. }) => {
                prop_assert!(chars <= max_chars);
                prop_assert_eq!(chars, document.chars());
                for c in &collapsed {
                    prop_assert!(wildcards.contains(c));
                }
                for (aud, subjects) in &desired {
                    for s in subjects {
                        prop_assert!(allowed(&document, PROVIDER, &s.sub(), aud), "{} {}", s, aud);
                    }
                    // Not in the set (the `x` suffix cannot be generated by arb_desired).
                    for ns in ["ns0", "ns3"] {
                        let stranger = Subject::new(ns, &outsider).unwrap();
                        let widened = collapsed.iter().any(|c| c == ns)
                            && subjects.iter().any(|s| s.namespace == ns);
                        prop_assert_eq!(
                            allowed(&document, PROVIDER, &stranger.sub(), aud),
                            widened,
                            "{} {}", stranger, aud
                        );
                    }
                }
                // Idempotent: compiling again over the result writes nothing.
                let again = compile(&CompileInput { current: Some(&document), ..input });
                prop_assert!(matches!(again, Ok(Compiled::Unchanged { .. })), "{:?}", again);
            }
            Ok(Compiled::NoStatementLeft { .. }) => {
                prop_assert!(!foreign && desired.values().all(BTreeSet::is_empty));
            }
            Ok(Compiled::Unchanged { .. }) => {
                prop_assert!(foreign && desired.values().all(BTreeSet::is_empty));
            }
            Err(refusal) => {
                prop_assert!(refusal.chars > max_chars);
                prop_assert!(!refusal.not_fitting.is_empty());
                prop_assert!(refusal.not_fitting.len() <= refusal.desired);
            }
        }
    }
}

#[test]
fn implicit_deny_always_has_a_reason() {
    let only_deny = policy(
        json!([{"Effect": "Deny", "Principal": "*", "Action": "sts:*",
        "Condition": {"StringLike": {format!("{HOST}:sub"): "*:default:*"}}}]),
    );
    let no = eval(&only_deny, APP, STS);
    assert!(!no.allowed);
    assert!(no.reasons[0].starts_with("no statement trusts"), "{no}");
    let no_effect = policy(json!([{"Sid": "E", "Principal": {"Federated": PROVIDER},
        "Action": "sts:AssumeRoleWithWebIdentity"}]));
    let no = eval(&no_effect, APP, STS);
    assert!(!no.allowed);
    assert_eq!(
        no.reasons,
        ["statement E: Effect is missing, neither Allow nor Deny; IAM rejects such a policy"]
    );
}

#[test]
fn multibyte_issuers_in_conditions_and_principals_do_not_panic() {
    // What `irsa doctor --trust-policy` feeds the evaluator: byte 7 of `https:/é` is inside
    // `é`, where `issuer_host_path` used to slice (exit 101).
    for issuer in ["https:/é", "é", "http://é", "https://oidc.exé.com/id/1"] {
        let doc = policy(json!([{
            "Effect": "Allow",
            "Principal": {"Federated": issuer},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{issuer}:sub"): "system:serviceaccount:a:b",
                format!("{issuer}:aud"): STS,
            }}
        }]));
        let decision = eval(&doc, "system:serviceaccount:a:b", STS);
        assert!(!decision.allowed, "{issuer}: {decision:?}");
        for provider in [
            "arn:aws:iam::111122223333:oidc-provider/é",
            "arn:aws:iam::111122223333:oidc-provider/oidc.exé.com/id/1",
        ] {
            let _ = evaluate(
                &doc,
                provider,
                &Claims::new("system:serviceaccount:a:b", STS),
            );
        }
    }
}

/// Arbitrary JSON, a few levels deep, biased towards the keys the evaluator reads.
fn arb_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("Effect".to_string()),
        Just("Principal".to_string()),
        Just("NotPrincipal".to_string()),
        Just("Federated".to_string()),
        Just("Action".to_string()),
        Just("NotAction".to_string()),
        Just("Condition".to_string()),
        Just("StringEquals".to_string()),
        Just("ForAnyValue:StringLike".to_string()),
        Just(format!("{HOST}:sub")),
        Just("https:/é:aud".to_string()),
        "\\PC{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop_oneof![
            Just("Allow".to_string()),
            Just("Deny".to_string()),
            Just("sts:AssumeRoleWithWebIdentity".to_string()),
            Just(PROVIDER.to_string()),
            Just("https:/é".to_string()),
            Just("system:serviceaccount:*".to_string()),
            "\\PC{0,16}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// `PolicyDocument::parse` answers every string, JSON or not, without panicking.
    #[test]
    fn parse_never_panics(text in "\\PC{0,64}", json in arb_json()) {
        let _ = PolicyDocument::parse(&text);
        let _ = PolicyDocument::parse(&json.to_string());
        let encoded = percent_encoding::utf8_percent_encode(
            &json.to_string(), percent_encoding::NON_ALPHANUMERIC).to_string();
        let _ = PolicyDocument::parse(&encoded);
    }

    /// `evaluate` answers any statements, provider and claims without panicking.
    #[test]
    fn evaluate_never_panics(
        statements in proptest::collection::vec(arb_json(), 0..4),
        provider in prop_oneof![Just(PROVIDER.to_string()), "\\PC{0,40}",
            "arn:aws:iam::111122223333:oidc-provider/\\PC{0,12}"],
        sub in "\\PC{0,24}",
        aud in "\\PC{0,12}",
    ) {
        let statements = statements
            .into_iter()
            .map(|s| if s.is_object() { s } else { json!({ "Condition": s }) })
            .collect();
        let doc = PolicyDocument::new(statements);
        let _ = evaluate(&doc, &provider, &Claims::new(sub, aud));
    }
}
