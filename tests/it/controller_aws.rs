//! The controller's IAM/STS adapter against a real IAM emulator (moto), with faults injected
//! by the test proxy in front of it.

use irsa::arn::RoleArn;
use irsa::aws::{ConvergeOptions, Error, ProviderSpec, RoleTrust};
use irsa::controller::metrics::{Aws, Metrics};
use irsa::issuer::IssuerUrl;
use irsa::names::CLUSTER_TAG;
use irsa_e2e::moto::{self, ACCOUNT, Fault, TestAws};

const STS_AUD: &str = "sts.amazonaws.com";

/// A human's SAML statement, formatted by hand (odd indentation, escaped and non-ASCII
/// characters, `+`, `%`, `&`): every byte of it must survive the controller's round trips.
const FOREIGN: &str = r#"{
  "Version" : "2012-10-17",
    "Statement": [ {"Sid":"HumansViaSaml","Effect":"Allow",
      "Principal": {"Federated": "arn:aws:iam::123456789012:saml-provider/Corp IdP"},
      "Action": "sts:AssumeRoleWithSAML",
      "Condition": {"StringEquals": {"SAML:aud": "https://signin.aws.amazon.com/saml?a=1&b=%2B+x é \u00e9 \"q\""}}}
  ]
}"#;

fn adapter(aws: &TestAws) -> Aws {
    Aws::new(aws.sdk_config(), Metrics::default())
}

/// Creates a role straight in moto (not counted, no faults) and returns its ARN.
async fn seed_role(aws: &TestAws, path: &str, trust: &str, tags: &[(&str, &str)]) -> RoleArn {
    RoleArn::parse(&aws.seed_role(path, trust, tags).await).unwrap()
}

/// FOREIGN with one more statement appended as text, the way a compiler that preserves
/// foreign statements byte-for-byte would produce it.
fn with_our_statement(issuer_host: &str, subjects: &[&str]) -> String {
    let subs = subjects
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(",");
    let ours = format!(
        r#",{{"Sid":"irsa0test","Effect":"Allow","Principal":{{"Federated":"arn:aws:iam::{ACCOUNT}:oidc-provider/{issuer_host}"}},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{{"StringEquals":{{"{issuer_host}:aud":"{STS_AUD}","{issuer_host}:sub":[{subs}]}}}}}}"#
    );
    let end = FOREIGN.rfind(']').unwrap();
    let mut doc = FOREIGN.to_string();
    doc.insert_str(end - 1, &ours);
    doc
}

fn spec(issuer: &str, client_ids: &[&str], thumbprints: &[&str]) -> ProviderSpec {
    ProviderSpec {
        issuer: IssuerUrl::parse(issuer).unwrap(),
        client_ids: client_ids.iter().map(|s| s.to_string()).collect(),
        thumbprints: thumbprints.iter().map(|t| t.to_string()).collect(),
        cluster: "blue".into(),
    }
}

fn unique_issuer() -> String {
    format!("https://oidc.test.example/id/{}", moto::unique("cluster"))
}

#[tokio::test]
async fn caller_identity_gives_account_and_partition() {
    let aws = moto::test_aws().await;
    let id = adapter(&aws).caller_identity().await.unwrap();
    assert_eq!(id.account, ACCOUNT);
    assert_eq!(id.partition, "aws");
    assert!(
        id.arn.starts_with("arn:aws:sts::123456789012:"),
        "{}",
        id.arn
    );
}

#[tokio::test]
async fn oidc_provider_is_created_completed_and_then_left_alone() {
    let aws = moto::test_aws().await;
    let iam = adapter(&aws);
    let issuer = unique_issuer();
    let thumb_a = "9e99a48a9960b14926bb7f3b02e22da2b0ab7280";

    let first = iam
        .ensure_oidc_provider(&spec(&issuer, &[STS_AUD], &[thumb_a]))
        .await
        .unwrap();
    assert!(first.created);
    let p = &first.provider;
    assert_eq!(p.url, issuer.strip_prefix("https://").unwrap());
    assert_eq!(
        p.arn,
        format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{}", p.url)
    );
    assert_eq!(p.client_ids, vec![STS_AUD.to_string()]);
    assert_eq!(p.thumbprints, vec![thumb_a.to_string()]);
    assert_eq!(p.tags.get(CLUSTER_TAG).map(String::as_str), Some("blue"));
    assert!(p.created_by("blue"));

    // Steady state: reads only.
    aws.faults().reset_counts();
    let again = iam
        .ensure_oidc_provider(&spec(&issuer, &[STS_AUD], &[thumb_a]))
        .await
        .unwrap();
    assert_eq!(again.writes(), 0);
    assert_eq!(
        aws.faults().writes(),
        0,
        "{:?}",
        aws.faults().forwarded_counts()
    );
    assert_eq!(again.provider, first.provider);

    // Someone else adds a client ID; we add a new audience and new thumbprints (the issuer
    // host's and the JWKS host's: one update). Nothing that was there is removed.
    aws.iam_direct()
        .add_client_id_to_open_id_connect_provider()
        .open_id_connect_provider_arn(&p.arn)
        .client_id("their-app")
        .send()
        .await
        .unwrap();
    let (thumb_b, thumb_c) = ("a".repeat(40), "c".repeat(40));
    aws.faults().reset_counts();
    let grown = iam
        .ensure_oidc_provider(&spec(
            &issuer,
            &[STS_AUD, "vault", STS_AUD],
            &[&thumb_b, &thumb_c],
        ))
        .await
        .unwrap();
    assert!(!grown.created);
    assert_eq!(grown.added_client_ids, vec!["vault".to_string()]);
    assert!(grown.thumbprint_updated);
    assert_eq!(
        aws.faults().forwarded("AddClientIDToOpenIDConnectProvider"),
        1
    );
    assert_eq!(
        aws.faults()
            .forwarded("UpdateOpenIDConnectProviderThumbprint"),
        1
    );
    assert_eq!(aws.faults().writes(), 2);

    let stored = iam.get_oidc_provider(&p.arn).await.unwrap();
    let mut ids = stored.client_ids.clone();
    ids.sort();
    assert_eq!(ids, vec!["sts.amazonaws.com", "their-app", "vault"]);
    assert_eq!(
        stored.thumbprints,
        vec![thumb_b.clone(), thumb_c.clone(), thumb_a.to_string()]
    );
    // What ensure reports is what IAM now holds.
    let mut reported = grown.provider.client_ids.clone();
    reported.sort();
    assert_eq!(reported, ids);
    assert_eq!(grown.provider.thumbprints, stored.thumbprints);

    // Fewer audiences wanted than present: still no write, nothing removed.
    aws.faults().reset_counts();
    let shrunk = iam
        .ensure_oidc_provider(&spec(&issuer, &[STS_AUD], &[]))
        .await
        .unwrap();
    assert_eq!((shrunk.writes(), aws.faults().writes()), (0, 0));
    assert_eq!(shrunk.provider.client_ids.len(), 3);
}

#[tokio::test]
async fn provider_urls_are_compared_byte_for_byte() {
    let aws = moto::test_aws().await;
    let iam = adapter(&aws);
    let id = moto::unique("Case");
    // Exists with a trailing slash and different case: a near miss, never adopted.
    let theirs = format!("https://OIDC.test.example/id/{id}/");
    aws.iam_direct()
        .create_open_id_connect_provider()
        .url(&theirs)
        .client_id_list(STS_AUD)
        .send()
        .await
        .unwrap();
    let ours = format!("https://oidc.test.example/id/{id}");
    let lookup = iam
        .find_oidc_provider(&IssuerUrl::parse(&ours).unwrap())
        .await
        .unwrap();
    assert_eq!(lookup.provider, None);
    assert_eq!(
        lookup.near_misses,
        vec![format!(
            "arn:aws:iam::{ACCOUNT}:oidc-provider/OIDC.test.example/id/{id}/"
        )]
    );
    let exact = iam
        .find_oidc_provider(&IssuerUrl::parse(&theirs).unwrap())
        .await
        .unwrap();
    assert_eq!(
        exact.provider.unwrap().url,
        format!("OIDC.test.example/id/{id}/")
    );
    assert!(exact.near_misses.is_empty());

    // Not created by us: no cluster tag, so a controller will never treat it as its own.
    let outcome = iam
        .ensure_oidc_provider(&spec(&theirs, &[STS_AUD], &[]))
        .await
        .unwrap();
    assert!(!outcome.created && !outcome.provider.created_by("blue"));
}

#[tokio::test]
async fn trust_round_trips_byte_for_byte_through_getrole_url_encoding() {
    let aws = moto::test_aws().await;
    let iam = adapter(&aws);
    let role = seed_role(
        &aws,
        "/team/a/",
        FOREIGN,
        &[("irsa.dev/allowed-namespaces", "team-a,team-a-*")],
    )
    .await;

    let read = iam.get_role_trust(&role).await.unwrap();
    assert_eq!(read.arn, role);
    assert_eq!(
        read.document, FOREIGN,
        "GetRole must give back the exact bytes"
    );
    assert_eq!(
        read.tags
            .get("irsa.dev/allowed-namespaces")
            .map(String::as_str),
        Some("team-a,team-a-*")
    );
    assert_eq!(iam.list_role_tags(&role).await.unwrap(), read.tags);

    let desired = with_our_statement(
        "oidc.test.example/id/X",
        &["system:serviceaccount:team-a:app"],
    );
    serde_json::from_str::<serde_json::Value>(&desired).expect("test document is JSON");
    iam.update_trust(&role, &desired).await.unwrap();
    let back = iam.get_role_trust(&role).await.unwrap();
    assert_eq!(back.document, desired);
    assert!(
        back.document
            .contains(&FOREIGN[..FOREIGN.rfind(']').unwrap() - 1])
    );

    // Back to only the foreign statement: identical to the original.
    iam.update_trust(&role, FOREIGN).await.unwrap();
    assert_eq!(iam.get_role_trust(&role).await.unwrap().document, FOREIGN);
    assert_eq!(
        iam.metrics()
            .iam_call_count("UpdateAssumeRolePolicy", "success"),
        2
    );
    assert_eq!(iam.metrics().iam_call_count("GetRole", "success"), 3);
}

#[tokio::test]
async fn roles_are_only_touched_when_iam_agrees_on_the_arn() {
    let aws = moto::test_aws().await;
    let iam = adapter(&aws);
    let role = seed_role(&aws, "/team/", FOREIGN, &[]).await;

    // Same name, wrong path: GetRole finds the role by name, the adapter refuses it.
    let wrong_path = RoleArn::parse(&format!("arn:aws:iam::{ACCOUNT}:role/{}", role.name)).unwrap();
    let err = iam.get_role_trust(&wrong_path).await.unwrap_err();
    assert!(matches!(err, Error::RoleMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&role.to_string()), "{err}");
    // Another account's role of the same name is not ours either.
    let other_account = RoleArn {
        account: "111122223333".into(),
        ..role.clone()
    };
    assert!(matches!(
        iam.get_role_trust(&other_account).await,
        Err(Error::RoleMismatch { .. })
    ));

    let missing = RoleArn::parse(&format!(
        "arn:aws:iam::{ACCOUNT}:role/{}",
        moto::unique("nope")
    ))
    .unwrap();
    let err = iam.get_role_trust(&missing).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert!(err.to_string().contains(&missing.to_string()), "{err}");
    assert_eq!(iam.metrics().iam_call_count("GetRole", "not_found"), 1);
    assert_eq!(iam.metrics().iam_call_count("GetRole", "role_mismatch"), 2);
    assert_eq!(aws.faults().writes(), 0);
}

#[tokio::test]
async fn throttling_5xx_and_timeouts_converge_without_losing_anything() {
    let aws = moto::test_aws().await;
    let iam = adapter(&aws);
    let role = seed_role(&aws, "/", FOREIGN, &[]).await;
    let desired = with_our_statement(
        "oidc.test.example/id/F",
        &["system:serviceaccount:a:x", "system:serviceaccount:b:y"],
    );

    let f = aws.faults();
    f.inject_for("GetRole", Fault::Throttle, 2);
    f.inject_for("GetRole", Fault::Timeout, 1);
    f.inject_for("UpdateAssumeRolePolicy", Fault::Throttle, 1);
    f.inject_for("UpdateAssumeRolePolicy", Fault::ServerError, 2);
    f.inject_for("UpdateAssumeRolePolicy", Fault::TimeoutAfterForward, 1);

    let before = iam.get_role_trust(&role).await.unwrap();
    assert_eq!(before.document, FOREIGN);
    iam.update_trust(&role, &desired).await.unwrap();
    let after = iam.get_role_trust(&role).await.unwrap();
    assert_eq!(after.document, desired);

    assert_eq!(f.pending_faults(), 0);
    assert_eq!(f.injected(), 7);
    assert_eq!(f.calls("GetRole"), 5, "3 faulted attempts + 2 good ones");
    assert_eq!(f.calls("UpdateAssumeRolePolicy"), 5);
    // The write whose answer was lost reached IAM, and so did its retry: same document twice,
    // which is why trust writes must be (and are) idempotent.
    assert_eq!(f.forwarded("UpdateAssumeRolePolicy"), 2);
    // The controller's metric counts calls, not attempts.
    assert_eq!(
        iam.metrics()
            .iam_call_count("UpdateAssumeRolePolicy", "success"),
        1
    );
    assert_eq!(iam.metrics().iam_call_count("GetRole", "success"), 2);
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_not_an_error() {
    let aws = moto::test_aws().await;
    let iam = adapter(&aws);
    let issuer = unique_issuer();
    aws.faults()
        .inject_for("CreateOpenIDConnectProvider", Fault::TimeoutAfterForward, 1);
    aws.faults()
        .inject_for("AddClientIDToOpenIDConnectProvider", Fault::ServerError, 1);

    // The create reached IAM but the answer timed out; the SDK's retry then gets
    // EntityAlreadyExists, which the adapter continues as "exists".
    let out = iam
        .ensure_oidc_provider(&spec(&issuer, &[STS_AUD, "vault"], &[]))
        .await
        .unwrap();
    assert_eq!(aws.faults().forwarded("CreateOpenIDConnectProvider"), 2);
    let mut ids = out.provider.client_ids.clone();
    ids.sort();
    assert_eq!(ids, vec![STS_AUD, "vault"]);
    assert!(out.provider.created_by("blue"));

    let url = issuer.strip_prefix("https://").unwrap();
    let all = aws
        .iam_direct()
        .list_open_id_connect_providers()
        .send()
        .await
        .unwrap();
    let same_url = all
        .open_id_connect_provider_list()
        .iter()
        .filter(|p| p.arn().is_some_and(|a| a.ends_with(url)))
        .count();
    assert_eq!(same_url, 1);
}

#[tokio::test]
async fn persistent_throttling_surfaces_as_a_retryable_error_and_writes_nothing() {
    let aws = moto::test_aws().await;
    let iam = adapter(&aws);
    let role = seed_role(&aws, "/", FOREIGN, &[]).await;
    // More throttles than the helper's 6 attempts.
    aws.faults()
        .inject_for("UpdateAssumeRolePolicy", Fault::Throttle, 8);
    let err = iam.update_trust(&role, "{}").await.unwrap_err();
    assert!(matches!(err, Error::Throttled { .. }), "{err}");
    assert!(err.is_retryable());
    assert_eq!(err.metric_label(), "throttled");
    assert!(err.to_string().contains(&role.to_string()), "{err}");
    assert_eq!(aws.faults().calls("UpdateAssumeRolePolicy"), 6);
    assert_eq!(aws.faults().forwarded("UpdateAssumeRolePolicy"), 0);
    assert_eq!(
        iam.metrics()
            .iam_call_count("UpdateAssumeRolePolicy", "throttled"),
        1
    );
    let untouched = aws
        .iam_direct()
        .get_role()
        .role_name(&role.name)
        .send()
        .await
        .unwrap();
    let doc = untouched
        .role()
        .unwrap()
        .assume_role_policy_document()
        .unwrap();
    assert_eq!(irsa::trust::decode_policy_document(doc).unwrap(), FOREIGN);
}

#[tokio::test]
async fn cluster_identity_names_the_provider_arn_iam_creates() {
    let aws = moto::test_aws().await;
    let iam = adapter(&aws);
    // --issuer-url given: the (mocked) API server is never asked.
    let (client, _api) = irsa::testing::kube_api::mock_client();
    let issuer = unique_issuer();
    let flag = IssuerUrl::parse(&issuer).unwrap();
    let id = irsa::cluster::resolve(&client, Some(&flag), "blue", &iam)
        .await
        .unwrap();
    assert_eq!(
        (id.account.as_str(), id.partition.as_str()),
        (ACCOUNT, "aws")
    );
    let created = iam
        .ensure_oidc_provider(&spec(&id.issuer.url, &[STS_AUD], &[]))
        .await
        .unwrap();
    assert_eq!(created.provider.arn, id.provider_arn());
}

fn fast() -> ConvergeOptions {
    ConvergeOptions {
        max_writes: 4,
        base_backoff: std::time::Duration::from_millis(20),
    }
}

/// A plan that wants exactly `desired`.
fn want(desired: &str) -> impl FnMut(&RoleTrust) -> Result<Option<String>, String> + use<> {
    let desired = desired.to_string();
    move |t: &RoleTrust| Ok((t.document != desired).then(|| desired.clone()))
}

/// Plays another writer: puts `doc` on the role straight in moto (not through the proxy).
async fn overwrite(aws: &TestAws, role: &RoleArn, doc: &str) {
    aws.iam_direct()
        .update_assume_role_policy()
        .role_name(&role.name)
        .policy_document(doc)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn converge_writes_once_then_never_at_steady_state() {
    let aws = moto::test_aws().await;
    let iam = adapter(&aws);
    let role = seed_role(&aws, "/", FOREIGN, &[]).await;
    let desired = with_our_statement("oidc.test.example/id/C", &["system:serviceaccount:a:x"]);

    let out = iam
        .converge_trust(&role, fast(), want(&desired))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.writes, 1);
    assert_eq!(out.trust.document, desired, "verified by a re-read");
    assert_eq!(aws.faults().forwarded("GetRole"), 2);

    aws.faults().reset_counts();
    let again = iam
        .converge_trust(&role, fast(), want(&desired))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.writes, 0);
    assert_eq!(aws.faults().writes(), 0);

    // A plan that refuses (say, over quota) writes nothing and hands its reason back.
    let refused = iam
        .converge_trust(&role, fast(), |_: &RoleTrust| {
            Err::<Option<String>, _>("TrustPolicyTooLarge: 2100 > 2048")
        })
        .await
        .unwrap();
    assert_eq!(refused.unwrap_err(), "TrustPolicyTooLarge: 2100 > 2048");
    assert_eq!(aws.faults().writes(), 0);
}

#[tokio::test]
async fn a_writer_that_undoes_our_write_is_noticed_and_repaired() {
    let aws = moto::test_aws().await;
    let iam = adapter(&aws);
    let role = seed_role(&aws, "/", FOREIGN, &[]).await;
    let desired = with_our_statement("oidc.test.example/id/I", &["system:serviceaccount:a:x"]);

    let held = aws.faults().hold_after("UpdateAssumeRolePolicy");
    let task = {
        let (iam, role, desired) = (iam.clone(), role.clone(), desired.clone());
        tokio::spawn(async move { iam.converge_trust(&role, fast(), want(&desired)).await })
    };
    // Our write reached IAM; before we re-read, a stale writer puts the old document back.
    let release = held.await.unwrap();
    overwrite(&aws, &role, FOREIGN).await;
    release.release();

    let out = task.await.unwrap().unwrap().unwrap();
    assert_eq!(
        out.writes, 2,
        "the re-read saw the interference and wrote again"
    );
    assert_eq!(out.trust.document, desired);
    assert_eq!(aws.faults().forwarded("UpdateAssumeRolePolicy"), 2);
}

#[tokio::test]
async fn endless_interference_gives_up_with_a_retryable_error() {
    let aws = moto::test_aws().await;
    let iam = adapter(&aws);
    let role = seed_role(&aws, "/", FOREIGN, &[]).await;
    let desired = with_our_statement("oidc.test.example/id/E", &["system:serviceaccount:a:x"]);
    let options = ConvergeOptions {
        max_writes: 2,
        ..fast()
    };
    let holds = [
        aws.faults().hold_after("UpdateAssumeRolePolicy"),
        aws.faults().hold_after("UpdateAssumeRolePolicy"),
    ];
    let task = {
        let (iam, role, desired) = (iam.clone(), role.clone(), desired.clone());
        tokio::spawn(async move { iam.converge_trust(&role, options, want(&desired)).await })
    };
    for held in holds {
        let release = held.await.unwrap();
        overwrite(&aws, &role, FOREIGN).await;
        release.release();
    }
    let err = task.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Contended { writes: 2, .. }), "{err}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains(&role.to_string()), "{err}");
    // The other writer's document is what IAM holds: we never leave a half-state of our own.
    assert_eq!(iam.get_role_trust(&role).await.unwrap().document, FOREIGN);
}
