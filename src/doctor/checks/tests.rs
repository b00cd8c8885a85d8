use serde_json::json;

use super::*;
use crate::testing::fixtures::service_account as sa;
use crate::testing::oidc::{SigningKey, now, sa_claims};
use crate::{aws::OidcProvider, doctor::report::Status};

const ISSUER: &str = "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC";
const ARN: &str = "arn:aws:iam::111122223333:role/app";

fn check_sa(s: Option<&ServiceAccountInfo>) -> (Check, Option<SaFacts>) {
    service_account("team-a", "app", s, "eks.amazonaws.com", "sts.amazonaws.com")
}

#[test]
fn service_account_pass_and_each_failure() {
    let ok = sa(&[
        ("eks.amazonaws.com/role-arn", ARN),
        ("eks.amazonaws.com/audience", "aud-x"),
    ]);
    let (check, facts) = check_sa(Some(&ok));
    assert_eq!(check.status, Status::Pass, "{check:?}");
    let facts = facts.unwrap();
    assert_eq!(facts.audience, "aud-x");
    assert_eq!(facts.subject, "system:serviceaccount:team-a:app");

    let (check, facts) = check_sa(None);
    assert_eq!((check.status, facts), (Status::Fail, None));
    assert!(check.evidence.contains("does not exist"));

    let (check, _) = check_sa(Some(&sa(&[])));
    assert_eq!(check.status, Status::Fail);
    assert!(
        check.fix.unwrap().starts_with(
            "kubectl annotate serviceaccount -n team-a app eks.amazonaws.com/role-arn="
        )
    );

    // A typo'd prefix (often made with the reference webhook) is named, with the rename.
    let (check, facts) = check_sa(Some(&sa(&[
        ("eks.amazon.com/role-arn", ARN),
        ("eks.amazonaws.com/audience", "aud-x"),
    ])));
    assert_eq!((check.status, facts), (Status::Fail, None));
    assert!(
        check.evidence.starts_with(
            "team-a/app has eks.amazon.com/role-arn, which the webhook ignores: it reads eks.amazonaws.com/role-arn"
        ),
        "{}",
        check.evidence
    );
    assert_eq!(
        check.fix.as_deref(),
        Some(
            "kubectl annotate serviceaccount -n team-a app eks.amazon.com/role-arn- eks.amazonaws.com/role-arn=arn:aws:iam::111122223333:role/app, then recreate its pods"
        )
    );
    assert_eq!(check.sts_error.as_deref(), Some(STS_NO_WEB_IDENTITY));

    let (check, _) = check_sa(Some(&sa(&[(
        "eks.amazonaws.com/role-arn",
        "arn:aws:iam::1:role/x",
    )])));
    assert_eq!(check.status, Status::Fail);
    assert!(
        check.evidence.contains("not 12 digits"),
        "{}",
        check.evidence
    );

    let (check, facts) = check_sa(Some(&sa(&[
        ("eks.amazonaws.com/role-arn", ARN),
        ("eks.amazonaws.com/token-expiration", "soon"),
    ])));
    assert_eq!(check.status, Status::Warn);
    assert!(
        check.evidence.contains("is not an integer"),
        "{}",
        check.evidence
    );
    assert!(facts.is_some(), "a warning does not stop the later steps");
}

#[test]
fn pod_mutated_detects_the_sa_annotated_after_the_pod_case() {
    let cfg = MutationConfig::default();
    let ids = Identities::default();
    let role = sa(&[("eks.amazonaws.com/role-arn", ARN)]);
    let bare = json!({"metadata": {"name": "web-0"}, "spec": {"containers": [{"name": "app"}]}});
    let check = pod_mutated(&bare, "team-a", &role, &cfg, &ids);
    assert_eq!(check.status, Status::Fail);
    assert!(
        check.evidence.contains("/spec/volumes"),
        "{}",
        check.evidence
    );
    assert!(check.fix.unwrap().contains("rollout restart"));

    let m = mutate::mutate(&cfg, &ids, "team-a", &role, &bare, &mut rand::rng()).unwrap();
    let mut injected = bare.clone();
    json_patch::patch(&mut injected, &m.patch).unwrap();
    assert_eq!(
        pod_mutated(&injected, "team-a", &role, &cfg, &ids).status,
        Status::Pass
    );

    let opted_out = json!({"metadata": {"name": "w", "labels": {"irsa.dev/skip": "true"}}, "spec": {"containers": []}});
    assert_eq!(
        pod_mutated(&opted_out, "team-a", &role, &cfg, &ids).status,
        Status::Warn
    );

    // An SA with no role: nothing is injected, so nothing can be missing, and nothing passes.
    let check = pod_mutated(&bare, "team-a", &sa(&[]), &cfg, &ids);
    assert_eq!(check.status, Status::Skip, "{check:?}");
    assert!(
        check
            .evidence
            .starts_with("the webhook injects nothing for ServiceAccount team-a/app"),
        "{}",
        check.evidence
    );
}

/// The pod step reports "opted out" for exactly the pods the webhook's rule opts out: a bare
/// pod of a role that is not opted out lacks its credentials (FAIL), whatever else it is
/// labelled.
#[test]
fn pod_mutated_opts_out_by_the_webhooks_rule() {
    let cfg = MutationConfig::default();
    let ids = Identities::default();
    let role = sa(&[("eks.amazonaws.com/role-arn", ARN)]);
    for skip in [None, Some("true"), Some("false"), Some(""), Some("yes")] {
        for eks in [None, Some("true"), Some("false"), Some(""), Some("yes")] {
            let labels: std::collections::BTreeMap<String, String> =
                [(mutate::SKIP_LABEL, skip), (mutate::EKS_SKIP_LABEL, eks)]
                    .into_iter()
                    .filter_map(|(k, v)| Some((k.to_string(), v?.to_string())))
                    .collect();
            let pod = json!({"metadata": {"name": "web-0", "labels": labels},
                             "spec": {"containers": [{"name": "app"}]}});
            let check = pod_mutated(&pod, "team-a", &role, &cfg, &ids);
            match mutate::opted_out(&labels) {
                Some(label) => {
                    assert_eq!(check.status, Status::Warn, "{labels:?}: {check:?}");
                    assert!(
                        check
                            .evidence
                            .contains(&format!("opts out of injection with label {label}=")),
                        "{labels:?}: {check:?}"
                    );
                }
                None => assert_eq!(check.status, Status::Fail, "{labels:?}: {check:?}"),
            }
        }
    }
}

/// A pod with credentials but not all of today's injection (here a container added after
/// admission) is a WARN, like the controller, which does not report it; its Event is not
/// looked up.
#[test]
fn a_partly_injected_pod_is_a_warning() {
    let cfg = MutationConfig::default();
    let ids = Identities::default();
    let role = sa(&[("eks.amazonaws.com/role-arn", ARN)]);
    let bare = json!({"metadata": {"name": "web-0"}, "spec": {"containers": [{"name": "app"}]}});
    let m = mutate::mutate(&cfg, &ids, "team-a", &role, &bare, &mut rand::rng()).unwrap();
    let mut pod = bare.clone();
    json_patch::patch(&mut pod, &m.patch).unwrap();
    pod["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "late"}));
    let check = pod_mutated(&pod, "team-a", &role, &cfg, &ids);
    assert_eq!(check.status, Status::Warn, "{check:?}");
    assert!(
        check
            .evidence
            .contains("carries AWS credentials but not all")
            && check.evidence.contains("/spec/containers/1/env"),
        "{}",
        check.evidence
    );
    assert!(check.sts_error.is_none(), "{check:?}");
    let evidence = check.evidence.clone();
    assert_eq!(with_controller_event(check, Ok(None)).evidence, evidence);
}

fn provider(url: &str, client_ids: &[&str]) -> OidcProvider {
    OidcProvider {
        arn: format!("arn:aws:iam::111122223333:oidc-provider/{url}"),
        url: url.into(),
        client_ids: client_ids.iter().map(|s| s.to_string()).collect(),
        thumbprints: vec![],
        tags: Default::default(),
    }
}

#[test]
fn oidc_provider_exact_match_audience_and_near_misses() {
    let exact = ProviderLookup {
        provider: Some(provider(
            "oidc.eks.eu-west-1.amazonaws.com/id/ABC",
            &["sts.amazonaws.com"],
        )),
        near_misses: vec![],
    };
    assert_eq!(
        oidc_provider(ISSUER, &exact, "sts.amazonaws.com").status,
        Status::Pass
    );

    let check = oidc_provider(ISSUER, &exact, "other-aud");
    assert_eq!(check.status, Status::Fail);
    assert_eq!(check.sts_error.as_deref(), Some(STS_BAD_AUDIENCE));

    let near = ProviderLookup {
        provider: None,
        near_misses: vec![
            "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/abc"
                .into(),
        ],
    };
    let check = oidc_provider(ISSUER, &near, "sts.amazonaws.com");
    assert_eq!(check.status, Status::Fail);
    assert!(
        check.evidence.contains("byte for byte"),
        "{}",
        check.evidence
    );
    assert_eq!(
        check.sts_error.unwrap(),
        format!("{STS_NO_PROVIDER} {ISSUER}")
    );

    let check = oidc_provider(ISSUER, &ProviderLookup::default(), "sts.amazonaws.com");
    assert!(
        check
            .fix
            .unwrap()
            .contains("create-open-id-connect-provider")
    );
}

#[test]
fn role_exists_in_the_provider_account() {
    let arn = RoleArn::parse(ARN).unwrap();
    let found = RoleTrust {
        arn: arn.clone(),
        role_id: "AROA1".into(),
        document: "{}".into(),
        tags: Default::default(),
    };
    assert_eq!(role(&arn, Ok(&found), "111122223333").status, Status::Pass);
    let other = role(&arn, Ok(&found), "999999999999");
    assert_eq!(other.status, Status::Fail);
    assert!(
        other
            .evidence
            .contains("account 111122223333, the OIDC provider in 999999999999")
    );
    let not_found = AwsError::NotFound {
        service: "iam",
        operation: "GetRole",
        resource: "role app".into(),
    };
    let missing = role(&arn, Err(&not_found), "111122223333");
    assert_eq!(
        (missing.status, missing.sts_error.as_deref()),
        (Status::Fail, Some(STS_ACCESS_DENIED))
    );
    let own_trouble = AwsError::Unexpected {
        service: "iam",
        operation: "GetRole",
        resource: "role app".into(),
        detail: "an answer without a role".into(),
    };
    assert_eq!(
        role(&arn, Err(&own_trouble), "111122223333").status,
        Status::Warn,
        "the doctor's own trouble is not the pod's"
    );
}

#[test]
fn trust_policy_verdicts_name_the_failed_condition() {
    let provider_arn =
        "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC";
    let host = "oidc.eks.eu-west-1.amazonaws.com/id/ABC";
    let doc = json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "App", "Effect": "Allow", "Principal": {"Federated": provider_arn},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {
            format!("{host}:aud"): "sts.amazonaws.com",
            format!("{host}:sub"): "system:serviceaccount:team-a:api"}}}]})
    .to_string();
    let ok = trust_policy(
        &doc,
        provider_arn,
        "system:serviceaccount:team-a:api",
        "sts.amazonaws.com",
    );
    assert_eq!(ok.status, Status::Pass, "{ok:?}");
    assert!(ok.evidence.contains("statement App"));

    let denied = trust_policy(
        &doc,
        provider_arn,
        "system:serviceaccount:team-a:app",
        "sts.amazonaws.com",
    );
    assert_eq!(
        (denied.status, denied.sts_error.as_deref()),
        (Status::Fail, Some(STS_ACCESS_DENIED))
    );
    assert!(
        denied
            .evidence
            .contains("sub is system:serviceaccount:team-a:app"),
        "{}",
        denied.evidence
    );
    assert!(
        denied.evidence.contains("system:serviceaccount:team-a:api"),
        "{}",
        denied.evidence
    );

    let other_provider = trust_policy(
        &doc,
        "arn:aws:iam::111122223333:oidc-provider/elsewhere",
        "system:serviceaccount:team-a:api",
        "sts.amazonaws.com",
    );
    assert_eq!(other_provider.status, Status::Fail);
    // Adding the subject would not help when no statement is about this provider.
    assert!(
        other_provider.fix.as_deref().is_some_and(|f| f.starts_with(
            "no statement trusts this cluster's provider: name arn:aws:iam::111122223333:oidc-provider/elsewhere as Principal.Federated"
        )),
        "{other_provider:?}"
    );
    assert!(
        denied
            .fix
            .as_deref()
            .is_some_and(|f| f.starts_with("trust system:serviceaccount:team-a:app")),
        "{denied:?}"
    );

    assert_eq!(
        trust_policy("{not json", provider_arn, "s", "a").status,
        Status::Fail
    );
}

#[test]
fn a_statement_has_one_number_whether_it_passes_or_fails() {
    let provider_arn = "arn:aws:iam::111122223333:oidc-provider/oidc.example.com";
    let doc = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Federated": provider_arn},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {"oidc.example.com:sub": "system:serviceaccount:a:b"}}}]})
    .to_string();
    let pass = trust_policy(&doc, provider_arn, "system:serviceaccount:a:b", "sts");
    let fail = trust_policy(&doc, provider_arn, "system:serviceaccount:a:c", "sts");
    assert_eq!((pass.status, fail.status), (Status::Pass, Status::Fail));
    // It used to be `#0` on a pass and `#1` on a failure.
    assert!(
        pass.evidence.starts_with("statement #1 allows"),
        "{}",
        pass.evidence
    );
    assert!(
        fail.evidence.starts_with("statement #1:"),
        "{}",
        fail.evidence
    );
}

#[test]
fn issuer_discovery_and_jwks() {
    let key = SigningKey::generate("k1");
    let jwks: JwkSet = serde_json::from_value(SigningKey::jwks(&[&key])).unwrap();
    let doc = json!({"issuer": ISSUER, "jwks_uri": format!("{ISSUER}/keys")});
    assert_eq!(
        issuer(ISSUER, Ok(&doc), Ok(&jwks), Some("k1")).status,
        Status::Pass
    );

    let unknown = issuer(ISSUER, Ok(&doc), Ok(&jwks), Some("rotated"));
    assert_eq!(
        (unknown.status, unknown.sts_error.as_deref()),
        (Status::Fail, Some(STS_NO_KEY))
    );

    let wrong = json!({"issuer": format!("{ISSUER}/"), "jwks_uri": "x"});
    let check = issuer(ISSUER, Ok(&wrong), Ok(&jwks), Some("k1"));
    assert_eq!(check.status, Status::Fail);
    assert!(
        check.evidence.contains("discovery document says issuer"),
        "{}",
        check.evidence
    );

    let down = issuer(ISSUER, Err("connection refused"), Err("not fetched"), None);
    assert_eq!(down.status, Status::Fail);
    assert!(
        down.evidence
            .contains("/.well-known/openid-configuration failed: connection refused")
    );

    let no_jwks = issuer(ISSUER, Ok(&doc), Err("404"), Some("k1"));
    assert_eq!(no_jwks.status, Status::Fail);
}

#[test]
fn token_verification_names_the_claim_that_is_off() {
    let key = SigningKey::generate("k1");
    let other = SigningKey::generate("k1"); // same kid, different key: a bad signature
    let jwks: JwkSet = serde_json::from_value(SigningKey::jwks(&[&key])).unwrap();
    let t = now();
    let sub = Some("system:serviceaccount:team-a:app");
    let check = |token: &str| self::token(token, &jwks, ISSUER, "sts.amazonaws.com", sub, t);

    let good = key.sign(&sa_claims(
        ISSUER,
        "team-a",
        "app",
        "sts.amazonaws.com",
        t + 3600,
    ));
    assert_eq!(check(&good).status, Status::Pass, "{:?}", check(&good));

    let cases = [
        (
            key.sign(&sa_claims(ISSUER, "team-a", "app", "other", t + 3600)),
            STS_BAD_AUDIENCE,
            "aud is",
        ),
        (
            key.sign(&sa_claims(
                "https://elsewhere",
                "team-a",
                "app",
                "sts.amazonaws.com",
                t + 3600,
            )),
            STS_NO_PROVIDER,
            "iss is",
        ),
        (
            key.sign(&sa_claims(
                ISSUER,
                "team-a",
                "app",
                "sts.amazonaws.com",
                t - 10,
            )),
            STS_EXPIRED,
            "expired",
        ),
        (
            key.sign(&sa_claims(
                ISSUER,
                "team-b",
                "app",
                "sts.amazonaws.com",
                t + 3600,
            )),
            STS_ACCESS_DENIED,
            "sub is",
        ),
        (
            other.sign(&sa_claims(
                ISSUER,
                "team-a",
                "app",
                "sts.amazonaws.com",
                t + 3600,
            )),
            STS_BAD_SIGNATURE,
            "signature",
        ),
        (
            SigningKey::generate("k2").sign(&sa_claims(
                ISSUER,
                "team-a",
                "app",
                "sts.amazonaws.com",
                t + 3600,
            )),
            STS_NO_KEY,
            "no JWKS key",
        ),
        ("not.a.jwt".to_string(), STS_BAD_SIGNATURE, "not a JWT"),
    ];
    for (token, sts, evidence) in cases {
        let c = check(&token);
        assert_eq!(c.status, Status::Fail, "{c:?}");
        assert!(c.sts_error.as_deref().unwrap().starts_with(sts), "{c:?}");
        assert!(c.evidence.contains(evidence), "{c:?}");
    }
}

#[test]
fn peek_reads_single_and_list_audiences() {
    let key = SigningKey::generate("k1");
    let mut claims = sa_claims(ISSUER, "a", "b", "x", 1);
    claims["aud"] = json!("single");
    let (c, kid) = peek(&key.sign(&claims)).unwrap();
    assert_eq!(
        (c.aud, kid.as_deref()),
        (vec!["single".to_string()], Some("k1"))
    );
}

fn key_set(kids: &[&str]) -> JwkSet {
    serde_json::from_value(json!({"keys": kids.iter().map(|kid| json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
        "x": "WKn-ZIGevcwGIyyrzFoZNBdaq9_TsqzGl96oc0CWuis",
        "y": "y77t-RvAHRKTsSGdIYUfweuOvwrvDD-Q3Hv5J0fSKbE"
    })).collect::<Vec<_>>()}))
    .unwrap()
}

const CM: &str = "irsa-system/irsa-issuer-keys";

fn reported(status: &str) -> PublisherStatus {
    PublisherStatus::Reported {
        configmap: CM.into(),
        status: Some(status.into()),
    }
}

#[test]
fn a_stale_publish_is_named_with_the_missing_keys() {
    let api = key_set(&["new", "old"]);
    let none = PublisherStatus::NotInUse {
        configmap: CM.into(),
    };
    let current = published_keys(&api, &key_set(&["old", "new", "older"]), &none);
    assert_eq!(current.status, Status::Pass, "{current:?}");
    assert!(!current.evidence.contains("publisher"), "{current:?}");
    let stale = published_keys(&api, &key_set(&["old"]), &none);
    assert_eq!(stale.status, Status::Fail, "{stale:?}");
    assert!(
        stale.evidence.contains("\"new\"") && !stale.evidence.contains("\"old\""),
        "{stale:?}"
    );
    // Said plainly: nothing of irsa publishes this JWKS, so the fix is to publish it.
    assert!(
        stale
            .evidence
            .ends_with(&format!("no issuer publisher in use (no ConfigMap {CM}; pass --irsa-namespace if irsa controller runs elsewhere)")),
        "{stale:?}"
    );
    assert!(stale.fix.as_deref().unwrap().contains("irsa issuer render"));
    assert_eq!(stale.sts_error.as_deref(), Some(STS_NO_KEY));
}

#[test]
fn a_stale_publish_names_the_publishers_status() {
    let (api, stale) = (key_set(&["new", "old"]), key_set(&["old"]));
    let refusal = "refused: the API server's issuer is \"https://a\" but ...";
    let refused = published_keys(&api, &stale, &reported(refusal));
    assert_eq!(refused.status, Status::Fail, "{refused:?}");
    assert!(
        refused.evidence.ends_with(&format!(
            "the issuer publisher's status (ConfigMap {CM}): {refusal}"
        )),
        "{refused:?}"
    );
    assert!(
        refused.fix.as_deref().unwrap().contains("refuses"),
        "{refused:?}"
    );

    let behind = published_keys(
        &api,
        &stale,
        &reported("published 1 key(s), 0 retired key(s) kept"),
    );
    assert!(behind.evidence.contains("published 1 key(s)"), "{behind:?}");
    assert!(
        behind.fix.as_deref().unwrap().contains("is the leader"),
        "{behind:?}"
    );

    // RBAC may hide the ConfigMap: the step says so, and still judges the keys alone.
    let forbidden = PublisherStatus::Unreadable {
        configmap: CM.into(),
        error: "configmaps \"irsa-issuer-keys\" is forbidden".into(),
    };
    let hidden = published_keys(&api, &stale, &forbidden);
    assert_eq!(hidden.status, Status::Fail, "{hidden:?}");
    assert!(
        hidden.evidence.contains("cannot read ConfigMap") && hidden.evidence.contains("forbidden"),
        "{hidden:?}"
    );
    for publisher in [
        forbidden,
        PublisherStatus::NotInUse {
            configmap: CM.into(),
        },
    ] {
        let current = published_keys(&api, &api, &publisher);
        assert_eq!(current.status, Status::Pass, "{current:?}");
    }

    // Current today but refusing: still a pass (the keys decide), with the refusal named.
    let current = published_keys(&api, &api, &reported(refusal));
    assert_eq!(current.status, Status::Pass, "{current:?}");
    assert!(current.evidence.contains(refusal), "{current:?}");
    let fresh = PublisherStatus::Reported {
        configmap: CM.into(),
        status: None,
    };
    assert!(fresh.describe().contains("no status yet"), "{fresh:?}");
}

#[test]
fn an_uninjected_pod_names_the_controllers_event() {
    let cfg = MutationConfig::default();
    let ids = Identities::default();
    let role = sa(&[("eks.amazonaws.com/role-arn", ARN)]);
    let bare = json!({"metadata": {"name": "web-0"}, "spec": {"containers": [{"name": "app"}]}});
    let failed = || pod_mutated(&bare, "team-a", &role, &cfg, &ids);
    let check = with_controller_event(
        failed(),
        Ok(Some("Pod team-a/web-0 carries no AWS credentials".into())),
    );
    assert_eq!(check.status, Status::Fail);
    assert!(
        check.evidence.ends_with(
            "; the controller reported it (Event PodNotInjected): Pod team-a/web-0 carries no AWS credentials"
        ),
        "{}",
        check.evidence
    );
    let check = with_controller_event(failed(), Ok(None));
    assert!(
        check.evidence.contains("no PodNotInjected Event"),
        "{}",
        check.evidence
    );
    let check = with_controller_event(failed(), Err("forbidden".into()));
    assert!(
        check.evidence.ends_with("could not be read: forbidden"),
        "{}",
        check.evidence
    );
    // A pod that is fine is left as it is.
    let opted_out = json!({"metadata": {"name": "w", "labels": {"irsa.dev/skip": "true"}}, "spec": {"containers": []}});
    let check = pod_mutated(&opted_out, "team-a", &role, &cfg, &ids);
    let evidence = check.evidence.clone();
    assert_eq!(
        with_controller_event(check, Ok(Some("x".into()))).evidence,
        evidence
    );
}

fn binding_with(conditions: serde_json::Value) -> crate::crd::IAMRoleBinding {
    serde_json::from_value(json!({
        "apiVersion": "irsa.dev/v1alpha1", "kind": "IAMRoleBinding",
        "metadata": {"name": "app", "namespace": "team-a"},
        "spec": {"roleArn": ARN, "serviceAccounts": ["app"]},
        "status": {"conditions": conditions},
    }))
    .unwrap()
}

fn condition(type_: &str, status: &str, reason: &str) -> serde_json::Value {
    json!({"type": type_, "status": status, "reason": reason, "message": "m",
           "lastTransitionTime": "2026-12-07T00:00:00Z"})
}

#[test]
fn a_binding_not_ready_predicts_access_denied_only_while_its_trust_statement_is_missing() {
    let arn = RoleArn::parse(ARN).unwrap();
    let conflict = binding_with(json!([
        condition("Ready", "False", "Conflict"),
        condition("TrustPolicyApplied", "True", "TrustPolicyApplied"),
        condition("ServiceAccountsAnnotated", "False", "Conflict"),
    ]));
    let check = bindings("team-a", "app", &arn, Ok(std::slice::from_ref(&conflict)));
    assert_eq!(check.status, Status::Fail, "{check:?}");
    assert!(
        check.evidence.contains("Ready=False (Conflict)"),
        "{check:?}"
    );
    assert_eq!(
        check.sts_error, None,
        "the role trusts the ServiceAccount: {check:?}"
    );

    let too_large = binding_with(json!([
        condition("Ready", "False", "TrustPolicyTooLarge"),
        condition("TrustPolicyApplied", "False", "TrustPolicyTooLarge"),
    ]));
    let check = bindings("team-a", "app", &arn, Ok(std::slice::from_ref(&too_large)));
    assert_eq!(check.status, Status::Fail, "{check:?}");
    assert_eq!(
        check.sts_error.as_deref(),
        Some(STS_ACCESS_DENIED),
        "{check:?}"
    );
}
