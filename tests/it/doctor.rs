//! `irsa doctor` end to end in-process: IAM and STS on a real local moto_server, the
//! Kubernetes API mocked with tower-test (ServiceAccount, Pod, IAMRoleBindings and the
//! TokenRequest), and the issuer as a real HTTPS server serving a discovery document and a
//! JWKS made from a key generated here; tokens are signed with that key.

use http::Method;
use irsa::doctor::{
    checks,
    diagnose::{Env, Options, Target, diagnose},
    report::{Report, Status},
    sources,
};
use irsa::issuer::IssuerUrl;
use irsa::testing::{
    kube_api::{self, Route, not_found, route},
    oidc::{SigningKey, now, sa_claims},
};
use serde_json::{Value, json};

use crate::common::issuer::{self, Issuer};
use irsa_e2e::moto::{self, Fault, TestAws};

const NS: &str = "team-a";
const SA: &str = "app";
const AUD: &str = "sts.amazonaws.com";
const SA_PATH: &str = "/api/v1/namespaces/team-a/serviceaccounts/app";
const TOKEN_PATH: &str = "/api/v1/namespaces/team-a/serviceaccounts/app/token";
const IRB_PATH: &str = "/apis/irsa.dev/v1alpha1/namespaces/team-a/iamrolebindings";
const PIA_PATH: &str = "/apis/irsa.dev/v1alpha1/namespaces/team-a/podidentityassociations";
const POD_PATH: &str = "/api/v1/namespaces/team-a/pods/web-0";
const JWKS_PATH: &str = "/openid/v1/jwks";
const IRSA_NS: &str = "irsa-system";
/// Not the default name: the doctor looks where `--issuer-state-configmap` says.
const STATE_CONFIGMAP: &str = "blue-issuer-keys";
const PUBLISHER_PATH: &str = "/api/v1/namespaces/irsa-system/configmaps/blue-issuer-keys";

struct World {
    aws: TestAws,
    issuer: Issuer,
    key: SigningKey,
    role_arn: String,
}

/// A role trusting `trusted_sub` with `trusted_aud`, and an OIDC provider for the issuer
/// listing `client_ids` (none created when empty).
async fn world(role: &str, trusted_sub: &str, trusted_aud: &str, client_ids: &[&str]) -> World {
    irsa::install_crypto_provider();
    let key = SigningKey::generate("key-1");
    let issuer = issuer::start(SigningKey::jwks(&[&key]), None).await;
    let aws = moto::test_aws().await;
    let iam = aws.iam_direct();
    let host = issuer.url.trim_start_matches("https://");
    let provider_arn = format!("arn:aws:iam::{}:oidc-provider/{host}", moto::ACCOUNT);
    if !client_ids.is_empty() {
        let mut create = iam
            .create_open_id_connect_provider()
            .url(&issuer.url)
            .thumbprint_list("0".repeat(40));
        for id in client_ids {
            create = create.client_id_list(*id);
        }
        create.send().await.unwrap();
    }
    let trust = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Federated": provider_arn},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {format!("{host}:aud"): trusted_aud, format!("{host}:sub"): trusted_sub}},
    }]});
    let created = iam
        .create_role()
        .role_name(role)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .unwrap();
    let role_arn = created.role().unwrap().arn().to_string();
    World {
        aws,
        issuer,
        key,
        role_arn,
    }
}

fn sa_object(annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount",
           "metadata": {"name": SA, "namespace": NS, "annotations": annotations}})
}

fn token_response(token: &str) -> Value {
    json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
           "spec": {"audiences": [AUD]},
           "status": {"token": token, "expirationTimestamp": "2030-01-01T00:00:00Z"}})
}

fn empty_bindings() -> Value {
    json!({"apiVersion": "irsa.dev/v1alpha1", "kind": "IAMRoleBindingList", "metadata": {}, "items": []})
}

/// The routes of a ServiceAccount diagnosis: the SA, its bindings, a fresh token, the API
/// server's JWKS (the key the issuer serves: the public copy is current), and no issuer
/// publisher.
fn sa_routes(w: &World, sa: Value, token_aud: &str) -> Vec<Route> {
    sa_routes_with_keys(w, sa, token_aud, SigningKey::jwks(&[&w.key]))
}

fn sa_routes_with_keys(w: &World, sa: Value, token_aud: &str, api_jwks: Value) -> Vec<Route> {
    let token = w
        .key
        .sign(&sa_claims(&w.issuer.url, NS, SA, token_aud, now() + 600));
    vec![
        route(Method::GET, SA_PATH, 200, sa),
        route(Method::GET, IRB_PATH, 200, empty_bindings()),
        route(Method::POST, TOKEN_PATH, 201, token_response(&token)),
        route(Method::GET, JWKS_PATH, 200, api_jwks),
        route(
            Method::GET,
            PUBLISHER_PATH,
            404,
            not_found("configmaps", STATE_CONFIGMAP),
        ),
    ]
}

/// `routes`, then no PodIdentityAssociation (the doctor first asks whether the ServiceAccount
/// uses Pod Identity).
fn env(w: &World, mut routes: Vec<Route>) -> (Env, kube_api::Calls) {
    routes.push(route(
        Method::GET,
        PIA_PATH,
        200,
        json!({"apiVersion": "irsa.dev/v1alpha1", "kind": "PodIdentityAssociationList", "metadata": {}, "items": []}),
    ));
    let (client, handle) = kube_api::mock_client();
    let calls = kube_api::serve(handle, routes);
    let env = Env {
        kube: Some(client),
        aws: Some(w.aws.sdk_config().clone()),
        http: sources::http_client(Some(w.issuer.ca_pem.as_bytes())).unwrap(),
        now: now(),
    };
    (env, calls)
}

fn opts(assume: bool) -> Options {
    Options {
        annotation_prefix: "eks.amazonaws.com".into(),
        default_audience: AUD.into(),
        issuer_url: None,
        assume,
        irsa_namespace: IRSA_NS.into(),
        issuer_state_configmap: STATE_CONFIGMAP.into(),
        webhook_configuration: None,
        agent_url: None,
        agent_role_arn: None,
        cluster_name: None,
        pod_identity_audience: irsa::mutate::config::DEFAULT_CC_AUDIENCE.into(),
    }
}

fn sa_target() -> Target {
    Target::ServiceAccount {
        namespace: NS.into(),
        name: SA.into(),
    }
}

fn status_of(report: &Report, id: &str) -> Status {
    report
        .checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no check {id} in {report:#?}"))
        .status
}

fn statuses(report: &Report) -> Vec<(&'static str, Status)> {
    report.checks.iter().map(|c| (c.id, c.status)).collect()
}

#[tokio::test]
async fn a_healthy_service_account_passes_every_step_including_a_real_assume() {
    let w = world(
        "doctor-healthy",
        "system:serviceaccount:team-a:app",
        AUD,
        &[AUD],
    )
    .await;
    let sa = sa_object(json!({"eks.amazonaws.com/role-arn": w.role_arn}));
    let (env, calls) = env(&w, sa_routes(&w, sa, AUD));
    let report = diagnose(&env, &sa_target(), &opts(true)).await;
    assert_eq!(
        statuses(&report),
        [
            ("service-account", Status::Pass),
            ("binding", Status::Skip),
            ("role", Status::Pass),
            ("trust-policy", Status::Pass),
            ("oidc-provider", Status::Pass),
            ("issuer", Status::Pass),
            ("issuer-keys", Status::Pass),
            ("token", Status::Pass),
            ("assume", Status::Pass),
            ("webhook", Status::Skip),
            ("dry-run", Status::Skip),
        ],
        "{}",
        report.render_text(false)
    );
    assert!(report.ok);
    assert!(calls.unexpected().is_empty(), "{:?}", calls.unexpected());
    // The TokenRequest asked for the SA's audience; nothing was written anywhere else.
    let request = calls.body_of(&format!("POST {TOKEN_PATH}")).unwrap();
    assert_eq!(request["spec"]["audiences"], json!([AUD]));
    // Only reads reached AWS, plus the one STS call --assume asked for.
    let calls = w.aws.faults().forwarded_counts();
    assert!(
        calls.keys().all(|op| op.starts_with("Get")
            || op.starts_with("List")
            || op == "AssumeRoleWithWebIdentity"),
        "{calls:?}"
    );
    assert_eq!(calls.get("AssumeRoleWithWebIdentity"), Some(&1));
}

/// After a signing-key rotation the API server publishes a key the public JWKS lacks and signs
/// with it: the token's `kid` is missing from the JWKS at the issuer URL (the issuer step), a
/// stale publish, named with the key, the STS error the tokens it signs get, and why the
/// issuer publisher did not publish it (its status, read from its state ConfigMap).
#[tokio::test]
async fn a_stale_published_jwks_is_named() {
    let w = world(
        "doctor-stale",
        "system:serviceaccount:team-a:app",
        AUD,
        &[AUD],
    )
    .await;
    let sa = sa_object(json!({"eks.amazonaws.com/role-arn": w.role_arn}));
    let rotated = SigningKey::generate("key-2");
    let api_keys = SigningKey::jwks(&[&w.key, &rotated]);
    let refusal = "refused: the API server's issuer is \"https://kube.internal\" but ...";
    let mut routes = sa_routes_with_keys(&w, sa, AUD, api_keys);
    let token = rotated.sign(&sa_claims(&w.issuer.url, NS, SA, AUD, now() + 600));
    routes.retain(|r| r.path != PUBLISHER_PATH && r.path != TOKEN_PATH);
    routes.push(route(Method::POST, TOKEN_PATH, 201, token_response(&token)));
    routes.push(route(
        Method::GET,
        PUBLISHER_PATH,
        200,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": STATE_CONFIGMAP, "namespace": IRSA_NS},
               "data": {"keys.json": "{}", "status": refusal}}),
    ));
    let (env, calls) = env(&w, routes);
    let report = diagnose(&env, &sa_target(), &opts(false)).await;
    assert!(calls.unexpected().is_empty(), "{:?}", calls.unexpected());
    let check = report
        .checks
        .iter()
        .find(|c| c.id == "issuer-keys")
        .unwrap_or_else(|| panic!("{}", report.render_text(false)));
    assert_eq!(check.status, Status::Fail, "{check:?}");
    assert!(
        check.evidence.contains("key-2") && !check.evidence.contains("key-1"),
        "{check:?}"
    );
    assert!(
        check.evidence.ends_with(&format!(
            "the issuer publisher's status (ConfigMap {IRSA_NS}/{STATE_CONFIGMAP}): {refusal}"
        )),
        "{check:?}"
    );
    assert_eq!(check.sts_error.as_deref(), Some(checks::STS_NO_KEY));
    let issuer_step = report.checks.iter().find(|c| c.id == "issuer").unwrap();
    assert_eq!(issuer_step.status, Status::Fail, "{issuer_step:?}");
    assert!(
        issuer_step
            .evidence
            .contains("the token's key id \"key-2\" is not in the JWKS"),
        "{issuer_step:?}"
    );
    assert_eq!(issuer_step.sts_error.as_deref(), Some(checks::STS_NO_KEY));
    assert!(!report.ok);
}

#[tokio::test]
async fn audience_mismatch_golden_report() {
    // The classic: the provider was created with the wrong client ID and the trust policy
    // names that audience too, while the pods' tokens say sts.amazonaws.com.
    let w = world(
        "doctor-golden",
        "system:serviceaccount:team-a:app",
        "sts.amazonaws.com.cn",
        &["sts.amazonaws.com.cn"],
    )
    .await;
    let sa = sa_object(json!({"eks.amazonaws.com/role-arn": w.role_arn}));
    let (env, _) = env(&w, sa_routes(&w, sa, AUD));
    let report = diagnose(&env, &sa_target(), &opts(false)).await;
    assert!(!report.ok);
    let text = report
        .render_text(false)
        .replace(&w.issuer.url, "https://ISSUER")
        .replace(w.issuer.url.trim_start_matches("https://"), "ISSUER");
    let text = mask(
        &mask(&text, "expires in ", char::is_ascii_digit),
        "(id ",
        char::is_ascii_alphanumeric,
    );
    let golden = include_str!("golden/doctor-audience-mismatch.txt");
    assert_eq!(
        text, golden,
        "\n--- got ---\n{text}\n--- want ---\n{golden}"
    );
}

/// Replaces what varies between runs (the token's remaining seconds, the role id IAM made
/// up) by `N` after `marker`, so the golden file holds only the wording.
fn mask(text: &str, marker: &str, varying: fn(&char) -> bool) -> String {
    text.lines()
        .map(|line| match line.find(marker) {
            Some(i) => {
                let rest = &line[i + marker.len()..];
                let n = rest.chars().take_while(varying).count();
                format!("{}{marker}N{}", &line[..i], &rest[n..])
            }
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[tokio::test]
async fn each_missing_piece_fails_with_its_sts_error() {
    // A role that trusts another SA, no OIDC provider at all.
    let w = world(
        "doctor-broken",
        "system:serviceaccount:team-a:api",
        AUD,
        &[],
    )
    .await;
    let sa = sa_object(json!({"eks.amazonaws.com/role-arn": w.role_arn}));
    let (env, _) = env(&w, sa_routes(&w, sa, AUD));
    let report = diagnose(&env, &sa_target(), &opts(false)).await;
    assert_eq!(status_of(&report, "role"), Status::Pass);
    let trust = report
        .checks
        .iter()
        .find(|c| c.id == "trust-policy")
        .unwrap();
    assert_eq!(trust.status, Status::Fail);
    assert!(
        trust
            .evidence
            .contains("sub is system:serviceaccount:team-a:app"),
        "{}",
        trust.evidence
    );
    assert!(
        trust
            .sts_error
            .as_deref()
            .unwrap()
            .starts_with("AccessDenied")
    );
    let provider = report
        .checks
        .iter()
        .find(|c| c.id == "oidc-provider")
        .unwrap();
    assert_eq!(provider.status, Status::Fail);
    assert!(
        provider
            .sts_error
            .as_deref()
            .unwrap()
            .starts_with("InvalidIdentityToken: No OpenIDConnect provider found")
    );
    // The later steps still run: the issuer and the token are fine.
    assert_eq!(status_of(&report, "issuer"), Status::Pass);
    assert_eq!(status_of(&report, "token"), Status::Pass);
}

#[tokio::test]
async fn missing_role_missing_sa_and_unreachable_issuer() {
    let w = world(
        "doctor-exists",
        "system:serviceaccount:team-a:app",
        AUD,
        &[AUD],
    )
    .await;
    // A role that does not exist in the account.
    let ghost = format!("arn:aws:iam::{}:role/doctor-ghost", moto::ACCOUNT);
    let (env1, _) = env(
        &w,
        sa_routes(
            &w,
            sa_object(json!({"eks.amazonaws.com/role-arn": ghost})),
            AUD,
        ),
    );
    let report = diagnose(&env1, &sa_target(), &opts(false)).await;
    assert_eq!(status_of(&report, "role"), Status::Fail);
    assert_eq!(status_of(&report, "trust-policy"), Status::Skip);

    // No ServiceAccount: one failure, the rest skipped, nothing else asked.
    let (env2, calls) = env(
        &w,
        vec![route(
            Method::GET,
            SA_PATH,
            404,
            not_found("serviceaccounts", SA),
        )],
    );
    let report = diagnose(&env2, &sa_target(), &opts(false)).await;
    assert_eq!(status_of(&report, "service-account"), Status::Fail);
    assert!(
        report.checks[1..].iter().all(|c| c.status == Status::Skip),
        "{}",
        report.render_text(false)
    );
    assert_eq!(
        calls.seen(),
        [format!("GET {PIA_PATH}"), format!("GET {SA_PATH}")]
    );

    // An issuer nobody can reach (the client does not trust its certificate): STS could not
    // fetch the keys either.
    let sa = sa_object(json!({"eks.amazonaws.com/role-arn": w.role_arn}));
    let (mut env3, _) = env(&w, sa_routes(&w, sa, AUD));
    env3.http = sources::http_client(None).unwrap();
    let report = diagnose(&env3, &sa_target(), &opts(false)).await;
    let issuer = report.checks.iter().find(|c| c.id == "issuer").unwrap();
    assert_eq!(issuer.status, Status::Fail, "{issuer:?}");
    assert!(
        issuer
            .evidence
            .contains("/.well-known/openid-configuration failed"),
        "{}",
        issuer.evidence
    );
    assert_eq!(status_of(&report, "token"), Status::Skip);
}

#[tokio::test]
async fn token_request_refused_and_sts_rejecting_the_assume() {
    let w = world(
        "doctor-token",
        "system:serviceaccount:team-a:app",
        AUD,
        &[AUD],
    )
    .await;
    let sa = sa_object(json!({"eks.amazonaws.com/role-arn": w.role_arn}));
    let forbidden = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden",
        "message": "serviceaccounts \"app\" is forbidden: cannot create resource \"serviceaccounts/token\"", "code": 403});
    let routes = vec![
        route(Method::GET, SA_PATH, 200, sa.clone()),
        route(Method::GET, IRB_PATH, 200, empty_bindings()),
        route(Method::POST, TOKEN_PATH, 403, forbidden),
    ];
    let (env1, _) = env(&w, routes);
    let mut o = opts(false);
    o.issuer_url = Some(IssuerUrl::parse(&w.issuer.url).unwrap());
    let report = diagnose(&env1, &sa_target(), &o).await;
    let token = report.checks.iter().find(|c| c.id == "token").unwrap();
    assert_eq!(token.status, Status::Fail);
    assert!(
        token
            .evidence
            .contains("TokenRequest for team-a/app failed"),
        "{}",
        token.evidence
    );

    // moto accepts every web-identity token, so STS's refusal is injected at the HTTP layer
    // (a persistent 500): the doctor reports the code and message the pod would get.
    w.aws
        .faults()
        .inject_for("AssumeRoleWithWebIdentity", Fault::ServerError, 20);
    let (env2, _) = env(&w, sa_routes(&w, sa, AUD));
    let report = diagnose(&env2, &sa_target(), &opts(true)).await;
    let assume = report.checks.iter().find(|c| c.id == "assume").unwrap();
    assert_eq!(assume.status, Status::Fail, "{assume:?}");
    assert!(
        assume
            .sts_error
            .as_deref()
            .unwrap()
            .starts_with("ServiceFailure"),
        "{assume:?}"
    );
}

#[tokio::test]
async fn a_pod_created_before_its_sa_was_annotated_is_caught() {
    let w = world(
        "doctor-pod",
        "system:serviceaccount:team-a:app",
        AUD,
        &[AUD],
    )
    .await;
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": NS},
        "spec": {"serviceAccountName": SA, "containers": [{"name": "app", "image": "app:1"}]}});
    let mut routes = sa_routes(
        &w,
        sa_object(json!({"eks.amazonaws.com/role-arn": w.role_arn})),
        AUD,
    );
    routes.push(route(Method::GET, POD_PATH, 200, pod));
    let (env, _) = env(&w, routes);
    let target = Target::Pod {
        namespace: NS.into(),
        name: "web-0".into(),
    };
    let report = diagnose(&env, &target, &opts(false)).await;
    assert_eq!(report.subject, "Pod team-a/web-0");
    let pod = report.checks.iter().find(|c| c.id == "pod").unwrap();
    assert_eq!(pod.status, Status::Fail);
    assert!(pod.fix.as_deref().unwrap().contains("rollout restart"));
    assert_eq!(
        status_of(&report, "trust-policy"),
        Status::Pass,
        "the rest is fine"
    );
}

/// A cluster without irsa's CRDs answers the bindings' path with the API server's plain-text
/// `404 page not found` (no `Status`): the binding step says the CRDs are not installed and
/// how to install them, not kube's parse error, and the other steps run as usual.
#[tokio::test]
async fn without_the_crds_the_binding_step_says_how_to_install_them() {
    let w = world(
        "doctor-no-crds",
        "system:serviceaccount:team-a:app",
        AUD,
        &[AUD],
    )
    .await;
    let mut routes = sa_routes(
        &w,
        sa_object(json!({"eks.amazonaws.com/role-arn": w.role_arn})),
        AUD,
    );
    routes[1] = kube_api::not_served(Method::GET, IRB_PATH);
    let (env, calls) = env(&w, routes);
    let report = diagnose(&env, &sa_target(), &opts(false)).await;
    let text = report.render_text(false);
    let check = report.checks.iter().find(|c| c.id == "binding").unwrap();
    assert_eq!(check.status, Status::Skip, "{text}");
    assert!(
        check.evidence.starts_with(
            "irsa's CRDs are not installed (the API server does not serve iamrolebindings.irsa.dev)"
        ),
        "{text}"
    );
    assert!(
        check
            .fix
            .as_deref()
            .is_some_and(|f| f.contains(irsa::crd::INSTALL_COMMAND)),
        "{text}"
    );
    assert!(!text.contains("Failed to parse error data"), "{text}");
    assert!(report.ok, "a missing binding fails nothing: {text}");
    assert_eq!(status_of(&report, "trust-policy"), Status::Pass, "{text}");
    assert_eq!(
        calls
            .seen()
            .iter()
            .filter(|c| *c == &format!("GET {IRB_PATH}"))
            .count(),
        1
    );
}

#[tokio::test]
async fn binding_status_is_reported() {
    let w = world(
        "doctor-binding",
        "system:serviceaccount:team-a:app",
        AUD,
        &[AUD],
    )
    .await;
    let binding = json!({"apiVersion": "irsa.dev/v1alpha1", "kind": "IAMRoleBinding",
        "metadata": {"name": "s3-reader", "namespace": NS},
        "spec": {"roleArn": w.role_arn, "serviceAccounts": [SA]},
        "status": {"conditions": [{"type": "Authorized", "status": "False", "reason": "NotAuthorized",
            "message": "no IAMRoleGrant allows namespace team-a", "lastTransitionTime": "2026-11-23T00:00:00Z"}]}});
    let mut routes = sa_routes(
        &w,
        sa_object(json!({"eks.amazonaws.com/role-arn": w.role_arn})),
        AUD,
    );
    routes[1] = route(
        Method::GET,
        IRB_PATH,
        200,
        json!({"apiVersion": "irsa.dev/v1alpha1", "kind": "IAMRoleBindingList", "metadata": {}, "items": [binding]}),
    );
    let (env, _) = env(&w, routes);
    let report = diagnose(&env, &sa_target(), &opts(false)).await;
    let check = report.checks.iter().find(|c| c.id == "binding").unwrap();
    assert_eq!(check.status, Status::Fail);
    assert!(
        check
            .evidence
            .contains("Authorized=False (NotAuthorized): no IAMRoleGrant allows namespace team-a"),
        "{}",
        check.evidence
    );
}

#[tokio::test]
async fn offline_token_against_a_trust_policy_file() {
    let key = SigningKey::generate("key-1");
    let issuer = issuer::start(SigningKey::jwks(&[&key]), None).await;
    let host = issuer.url.trim_start_matches("https://");
    let provider_arn = format!("arn:aws:iam::111122223333:oidc-provider/{host}");
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Federated": provider_arn}, "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {format!("{host}:sub"): "system:serviceaccount:team-a:app"}}}]});
    let env = Env {
        kube: None,
        aws: None,
        http: sources::http_client(Some(issuer.ca_pem.as_bytes())).unwrap(),
        now: now(),
    };
    let run = |token: String| {
        let target = Target::Token {
            token,
            role_arn: "arn:aws:iam::111122223333:role/app".into(),
            trust_policy: Some((policy.to_string(), "trust.json".into())),
        };
        let env = &env;
        async move { diagnose(env, &target, &opts(false)).await }
    };
    let good = key.sign(&sa_claims(&issuer.url, NS, SA, AUD, now() + 600));
    let report = run(good).await;
    assert_eq!(
        status_of(&report, "trust-policy"),
        Status::Pass,
        "{}",
        report.render_text(false)
    );
    assert_eq!(status_of(&report, "token"), Status::Pass);
    assert_eq!(status_of(&report, "role"), Status::Skip);
    assert!(report.ok);

    let expired = key.sign(&sa_claims(&issuer.url, NS, SA, AUD, now() - 60));
    let report = run(expired).await;
    assert_eq!(status_of(&report, "token"), Status::Fail);
    assert!(!report.ok);

    let other_sa = key.sign(&sa_claims(&issuer.url, NS, "worker", AUD, now() + 600));
    assert_eq!(
        status_of(&run(other_sa).await, "trust-policy"),
        Status::Fail
    );
}
