//! `irsa doctor` as a user runs it (the built binary, `-o json`), on real tokens: the
//! ServiceAccount token comes from the API server's TokenRequest and is signed with its key,
//! the discovery document and JWKS are fetched over HTTPS from the API server (its CA through
//! `--issuer-ca-file`), and the OIDC provider and the role live in the test's local IAM
//! emulator. The good case passes; each classic culprit fails at its own step, naming the STS
//! error the pod would get, and exits 1.
//!
//! The STS errors asserted are the doctor's (what real STS answers for each culprit): the
//! emulator's AssumeRoleWithWebIdentity checks neither the token nor the trust policy, so
//! `--assume` is only exercised in the good case.
//!
//! These tests create and delete the issuer's IAM OIDC provider, so they need the local
//! emulator: under `IRSA_E2E_AWS=env` they fail rather than touch a shared account.

use irsa::controller::metrics::{Aws, Metrics};
use irsa::crd::{IAMRoleBinding, IAMRoleGrant, IAMRoleGrantSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use irsa_e2e::process::Process;
use irsa_e2e::support::kubectl;
use irsa_e2e::support::{self, ControllerCluster, WAIT};
use irsa_e2e::webhook::{create_pod, create_service_account, pod};

const AUDIENCE: &str = irsa::mutate::config::DEFAULT_AUDIENCE;
const ACCESS_DENIED: &str = "AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity";
const BAD_AUDIENCE: &str = "InvalidIdentityToken: Incorrect token audience";
const NO_PROVIDER: &str =
    "InvalidIdentityToken: No OpenIDConnect provider found in your account for";
const NO_WEB_IDENTITY: &str =
    "none: the SDK finds no web-identity token and falls back to the node's credentials";

/// nextest gives every test its own process and emulator; `cargo test` runs them as threads
/// of one process sharing one emulator, where each test's provider for the same issuer would
/// collide. The doctor tests of a process therefore run one at a time, each starting from no
/// provider for the issuer.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One test's world: the cluster and its issuer, IAM in the local emulator, a fresh
/// namespace.
struct Case {
    _turn: tokio::sync::MutexGuard<'static, ()>,
    cluster: ControllerCluster,
    iam: aws_sdk_iam::Client,
    account: String,
    partition: String,
    ns: String,
}

impl Case {
    async fn new() -> Self {
        let turn = ONE_AT_A_TIME.lock().await;
        let cluster = support::controller_cluster().await;
        assert!(
            cluster.aws_env.local.is_some(),
            "the doctor tests create and delete the issuer's IAM OIDC provider: they run only \
             against the local emulator (unset IRSA_E2E_AWS)"
        );
        let me = Aws::new(&cluster.aws_env.sdk, Metrics::default())
            .caller_identity()
            .await
            .unwrap_or_else(|e| panic!("{e} (is the AWS endpoint up?)"));
        let iam = aws_sdk_iam::Client::new(&cluster.aws_env.sdk);
        let ns = support::create_namespace(&cluster.client, "irsa-e2e-doctor").await;
        let case = Self {
            _turn: turn,
            cluster,
            iam,
            account: me.account,
            partition: me.partition,
            ns,
        };
        case.delete_issuer_providers().await;
        case
    }

    /// Deletes what an earlier test of this process left for the issuer (with or without a
    /// trailing slash).
    async fn delete_issuer_providers(&self) {
        let issuer = self.issuer().to_string();
        let mine = [
            self.provider_arn(&issuer),
            self.provider_arn(&format!("{issuer}/")),
        ];
        let listed = self
            .iam
            .list_open_id_connect_providers()
            .send()
            .await
            .unwrap_or_else(|e| panic!("listing OIDC providers: {e:?}"));
        for arn in listed
            .open_id_connect_provider_list()
            .iter()
            .filter_map(|p| p.arn())
            .filter(|arn| mine.iter().any(|m| m == arn))
        {
            self.iam
                .delete_open_id_connect_provider()
                .open_id_connect_provider_arn(arn)
                .send()
                .await
                .unwrap_or_else(|e| panic!("deleting {arn}: {e:?}"));
        }
    }

    fn issuer(&self) -> &str {
        &self.cluster.issuer.url
    }

    fn prefix(&self) -> &str {
        &self.cluster.settings.annotation_prefix
    }

    fn subject(&self, sa: &str) -> String {
        format!("system:serviceaccount:{}:{sa}", self.ns)
    }

    /// The ARN IAM gives the provider of `url` (scheme dropped, the rest kept byte for byte).
    fn provider_arn(&self, url: &str) -> String {
        let host_path = url.split_once("://").map_or(url, |(_, rest)| rest);
        format!(
            "arn:{}:iam::{}:oidc-provider/{host_path}",
            self.partition, self.account
        )
    }

    /// Creates an IAM OIDC provider for `url` with these client IDs; returns its ARN.
    async fn create_provider(&self, url: &str, client_ids: &[&str]) -> String {
        let out = self
            .iam
            .create_open_id_connect_provider()
            .url(url)
            .set_client_id_list(Some(client_ids.iter().map(ToString::to_string).collect()))
            .thumbprint_list("9e99a48a9960b14926bb7f3b02e22da2b0ab7280")
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating the OIDC provider for {url}: {e:?}"));
        let arn = out.open_id_connect_provider_arn().unwrap().to_string();
        println!("OIDC provider {arn} for {url}, client IDs {client_ids:?}");
        arn
    }

    /// The provider a correct setup has: the issuer, byte for byte, and `sts.amazonaws.com`.
    async fn create_issuer_provider(&self) -> String {
        let issuer = self.issuer().to_string();
        self.create_provider(&issuer, &[AUDIENCE]).await
    }

    /// A role trusting `sub` with `aud` through `provider_arn` (the statement the controller
    /// or `irsa trust-policy` writes); returns its ARN.
    async fn create_role(&self, provider_arn: &str, sub: &str, aud: &str) -> String {
        let host = provider_arn
            .split_once(":oidc-provider/")
            .map(|(_, h)| h)
            .unwrap();
        let trust = json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {format!("{host}:sub"): sub, format!("{host}:aud"): aud}}
        }]});
        let name = support::unique("irsa-e2e-doctor");
        let out = self
            .iam
            .create_role()
            .role_name(&name)
            .assume_role_policy_document(trust.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating IAM role {name}: {e:?}"));
        out.role().unwrap().arn().to_string()
    }

    async fn create_sa(&self, name: &str, annotations: Value) {
        create_service_account(&self.cluster.client, &self.ns, name, annotations).await;
    }

    fn role_annotation(&self, role_arn: &str) -> Value {
        json!({format!("{}/role-arn", self.prefix()): role_arn})
    }

    /// `irsa doctor -n <ns> -o json ARGS` with the test's AWS endpoint and credentials and the
    /// cluster's CA; returns the exit code and the report.
    fn doctor(&self, args: &[&str]) -> (i32, Value) {
        let mut all = vec!["-n", &self.ns, "--annotation-prefix", self.prefix()];
        all.extend(args);
        self.cluster.aws_env.doctor(&all)
    }

    /// A role trusting ServiceAccount `sa` of the namespace with the default audience.
    async fn role_trusting(&self, provider_arn: &str, sa: &str) -> String {
        self.create_role(provider_arn, &self.subject(sa), AUDIENCE)
            .await
    }

    /// `irsa doctor --service-account app`: asserts that exactly the `failing` steps fail
    /// (see [`all_pass_but`]) and the exit code says so; returns the report.
    fn diagnose_app(&self, failing: &[&str]) -> Value {
        let (code, report) = self.doctor(&["--service-account", "app"]);
        assert_steps(&report, &all_pass_but(failing));
        let want = if failing.is_empty() { 0 } else { 1 };
        assert_eq!(code, want, "{report:#}");
        assert_eq!(report["ok"], failing.is_empty(), "{report:#}");
        report
    }

    async fn finish(self) {
        support::delete_namespace(&self.cluster.client, &self.ns).await;
    }
}

/// The report's steps as `(id, status)`, in order.
fn steps(report: &Value) -> Vec<(String, String)> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn assert_steps(report: &Value, want: &[(&str, &str)]) {
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(id, s)| (id.to_string(), s.to_string()))
        .collect();
    assert_eq!(steps(report), want, "{report:#}");
}

fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    support::doctor_step(report, id)
}

/// The failed step `id`, which must name `sts_error` as what the pod gets.
fn failure<'a>(report: &'a Value, id: &str, sts_error: &str) -> &'a Value {
    let failed = check(report, id);
    assert_eq!(text(failed, "stsError"), sts_error, "{failed:#}");
    failed
}

/// `check[field]` contains `fragment`.
fn assert_says(check: &Value, field: &str, fragment: &str) {
    assert!(
        text(check, field).contains(fragment),
        "{field} should say {fragment:?}: {check:#}"
    );
}

fn text<'a>(check: &'a Value, field: &str) -> &'a str {
    check[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field}: {check:#}"))
}

/// Every step but the ones named, which fail, passes (the binding step is skipped: the SA is
/// annotated by hand, no IAMRoleBinding lists it; AssumeRole needs `--assume`).
fn all_pass_but(failing: &[&str]) -> Vec<(&'static str, &'static str)> {
    [
        "service-account",
        "binding",
        "role",
        "trust-policy",
        "oidc-provider",
        "issuer",
        "issuer-keys",
        "token",
        "assume",
        "webhook",
        "dry-run",
    ]
    .into_iter()
    .map(|id| match id {
        _ if failing.contains(&id) => (id, "FAIL"),
        "binding" | "assume" | "webhook" | "dry-run" => (id, "SKIP"),
        _ => (id, "PASS"),
    })
    .collect()
}

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn a_trusted_service_account_passes_every_step() {
    let case = Case::new().await;
    let provider = case.create_issuer_provider().await;
    let role = case.role_trusting(&provider, "app").await;
    case.create_sa("app", case.role_annotation(&role)).await;

    let (code, report) = case.doctor(&["--service-account", "app", "--assume"]);
    let mut want = all_pass_but(&[]);
    want[8] = ("assume", "PASS");
    assert_steps(&report, &want);
    assert_eq!((code, &report["ok"]), (0, &json!(true)), "{report:#}");
    assert_eq!(report["roleArn"], role.as_str());
    // Each fact came from where docs/doctor.md says: the API server's issuer over HTTPS and its
    // TokenRequest, the role and provider from IAM.
    let issuer = case.issuer();
    assert_says(
        check(&report, "issuer"),
        "evidence",
        &format!("{issuer}/.well-known/openid-configuration names the issuer; JWKS has key "),
    );
    assert_says(
        check(&report, "token"),
        "evidence",
        &format!(
            "signature, iss, aud verified; sub {}; expires in ",
            case.subject("app")
        ),
    );
    assert_says(
        check(&report, "oidc-provider"),
        "evidence",
        &format!("{provider} lists audience {AUDIENCE}"),
    );
    case.finish().await;
}

/// (a) The role trusts another ServiceAccount of the namespace, not this one.
#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn no_trust_statement_for_the_service_account_fails_the_trust_policy_step() {
    let case = Case::new().await;
    let provider = case.create_issuer_provider().await;
    let role = case.role_trusting(&provider, "other").await;
    case.create_sa("app", case.role_annotation(&role)).await;

    let report = case.diagnose_app(&["trust-policy"]);
    let trust = failure(&report, "trust-policy", ACCESS_DENIED);
    // The evidence names the subject that is not trusted; the fix is to trust it.
    assert_says(trust, "evidence", &case.subject("app"));
    assert_says(
        trust,
        "fix",
        &format!(
            "trust {}: kubectl apply an IAMRoleBinding",
            case.subject("app")
        ),
    );
    case.finish().await;
}

/// (b) The provider does not list the token's audience as a client ID.
#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn audience_not_a_client_id_of_the_provider_fails_the_oidc_provider_step() {
    let case = Case::new().await;
    let issuer = case.issuer().to_string();
    let provider = case
        .create_provider(&issuer, &["sts.amazonaws.com.cn"])
        .await;
    let role = case.role_trusting(&provider, "app").await;
    case.create_sa("app", case.role_annotation(&role)).await;

    let report = case.diagnose_app(&["oidc-provider"]);
    let oidc = failure(&report, "oidc-provider", BAD_AUDIENCE);
    assert_says(
        oidc,
        "evidence",
        &format!(
            "{provider} client IDs are [\"sts.amazonaws.com.cn\"]; the token's audience {AUDIENCE} is not among them"
        ),
    );
    assert_says(oidc, "fix", "add-client-id-to-open-id-connect-provider");
    case.finish().await;
}

/// (b) The ServiceAccount asks for an audience the provider knows but the trust condition
/// does not name: the token (requested with that audience) is fine, the trust policy is not.
#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn audience_not_in_the_trust_condition_fails_the_trust_policy_step() {
    let case = Case::new().await;
    let issuer = case.issuer().to_string();
    let provider = case
        .create_provider(&issuer, &[AUDIENCE, "team-a.example.com"])
        .await;
    let role = case.role_trusting(&provider, "app").await;
    let mut annotations = case.role_annotation(&role);
    annotations[format!("{}/audience", case.prefix())] = json!("team-a.example.com");
    case.create_sa("app", annotations).await;

    let report = case.diagnose_app(&["trust-policy"]);
    let trust = failure(&report, "trust-policy", ACCESS_DENIED);
    assert_says(trust, "evidence", "aud is team-a.example.com");
    assert_says(
        trust,
        "fix",
        ":aud condition must name the token's audience team-a.example.com",
    );
    case.finish().await;
}

/// (c) The provider was created for the issuer with a trailing slash: IAM compares URLs byte
/// for byte, so STS finds no provider for the token's `iss`. The trust policy names that
/// provider, so it does not trust the issuer's either.
#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn provider_url_with_a_trailing_slash_fails_the_oidc_provider_step() {
    let case = Case::new().await;
    let issuer = case.issuer().to_string();
    let slashed = case
        .create_provider(&format!("{issuer}/"), &[AUDIENCE])
        .await;
    assert_eq!(slashed, case.provider_arn(&format!("{issuer}/")));
    let role = case.role_trusting(&slashed, "app").await;
    case.create_sa("app", case.role_annotation(&role)).await;

    let report = case.diagnose_app(&["trust-policy", "oidc-provider"]);
    let oidc = failure(&report, "oidc-provider", &format!("{NO_PROVIDER} {issuer}"));
    // The near miss is named.
    assert_says(
        oidc,
        "evidence",
        &format!("{slashed} differs only in case or a trailing slash"),
    );
    let trust = failure(&report, "trust-policy", ACCESS_DENIED);
    let exact = case.provider_arn(&issuer);
    assert_says(
        trust,
        "evidence",
        &format!("Principal.Federated is {slashed}, not this token's provider {exact}"),
    );
    // The fix is the principal, not one more subject.
    assert_says(
        trust,
        "fix",
        &format!(
            "no statement trusts this cluster's provider: name {exact} as Principal.Federated"
        ),
    );
    case.finish().await;
}

/// (d) `eks.amazon.com/role-arn` (a typo the reference webhook silently ignores): the doctor
/// names the misspelt annotation, says the webhook ignores it, and its fix command repairs it.
#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn typo_in_the_annotation_prefix_is_named_as_ignored_by_the_webhook() {
    let case = Case::new().await;
    let provider = case.create_issuer_provider().await;
    let role = case.role_trusting(&provider, "app").await;
    let prefix = case.prefix().to_string();
    let typo = match prefix.as_str() {
        "eks.amazonaws.com" => "eks.amazon.com".to_string(),
        other => format!("typo.{other}"),
    };
    case.create_sa("app", json!({format!("{typo}/role-arn"): role}))
        .await;

    let (code, report) = case.doctor(&["--service-account", "app"]);
    let mut want = vec![("service-account", "FAIL")];
    want.extend(
        all_pass_but(&[])
            .into_iter()
            .skip(1)
            .map(|(id, _)| (id, "SKIP")),
    );
    assert_steps(&report, &want);
    assert_eq!(code, 1, "{report:#}");
    let sa = failure(&report, "service-account", NO_WEB_IDENTITY);
    assert_eq!(
        text(sa, "evidence"),
        format!(
            "{ns}/app has {typo}/role-arn, which the webhook ignores: it reads {prefix}/role-arn (prefix {prefix}), so its pods get no web-identity credentials (the SDK falls back to the node's role)",
            ns = case.ns
        )
    );

    // The fix, run as printed, is the whole repair.
    let fix = text(sa, "fix");
    let command = fix
        .strip_suffix(", then recreate its pods")
        .unwrap_or_else(|| panic!("{fix}"));
    let args: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(args[..2], ["kubectl", "annotate"], "{fix}");
    let (ok, _, stderr) = kubectl(&args[1..], "");
    assert!(ok, "{command}: {stderr}");
    case.diagnose_app(&[]);
    case.finish().await;
}

/// `--pod` on a pod created before its ServiceAccount was annotated (no webhook registered for
/// this namespace, so the API server stored it as sent): "not injected", with the fix.
#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn pod_created_before_the_annotation_is_reported_not_injected() {
    let case = Case::new().await;
    let provider = case.create_issuer_provider().await;
    let role = case.role_trusting(&provider, "app").await;
    case.create_sa("app", json!({})).await;
    let stored = create_pod(
        &case.cluster.client,
        &case.ns,
        &pod("web-0", "app", json!({})),
    )
    .await
    .unwrap();
    assert!(
        stored["spec"]["containers"][0]["env"].is_null(),
        "stored unmutated: {stored:#}"
    );

    // Before the annotation: the ServiceAccount is the problem; the pod lacks nothing the
    // webhook would give it today (this step used to PASS with "has the token volume").
    let (code, report) = case.doctor(&["--pod", "web-0"]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        steps(&report)[..2],
        [
            ("service-account".to_string(), "FAIL".to_string()),
            ("pod".to_string(), "SKIP".to_string()),
        ]
    );
    assert_says(
        check(&report, "pod"),
        "evidence",
        "the webhook injects nothing",
    );

    Api::<ServiceAccount>::namespaced(case.cluster.client.clone(), &case.ns)
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": case.role_annotation(&role)}})),
        )
        .await
        .unwrap();

    let (code, report) = case.doctor(&["--pod", "web-0"]);
    let mut want = all_pass_but(&[]);
    want.insert(1, ("pod", "FAIL"));
    assert_steps(&report, &want);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["subject"], format!("Pod {}/web-0", case.ns));
    let pod = failure(&report, "pod", NO_WEB_IDENTITY);
    assert_says(
        pod,
        "evidence",
        &format!("pod {}/web-0 lacks what the webhook injects", case.ns),
    );
    assert_says(
        pod,
        "fix",
        "created before its ServiceAccount was annotated",
    );
    assert_says(pod, "fix", "kubectl rollout restart");
    case.finish().await;
}

/// The whole journey: an admin's grant, a team's binding, the real `irsa controller` (which
/// creates the OIDC provider, writes the trust statement and annotates the ServiceAccount),
/// then the doctor: every step passes, the binding's included (Ready), and `--assume` works.
/// Runs in nextest's `e2e-controller` group: its controller watches the whole cluster.
#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn a_binding_made_ready_by_the_controller_passes_every_step() {
    let case = Case::new().await;
    let client = case.cluster.client.clone();
    // No provider: the controller creates it (--manage-oidc-provider). The role starts with
    // one unrelated statement, as a real role would.
    let name = support::unique("irsa-e2e-doctor");
    let unrelated = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    let role = case
        .iam
        .create_role()
        .role_name(&name)
        .assume_role_policy_document(unrelated.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating IAM role {name}: {e:?}"))
        .role()
        .unwrap()
        .arn()
        .to_string();
    case.create_sa("app", json!({})).await;
    let grant = IAMRoleGrant::new(
        &support::unique("irsa-e2e-doctor"),
        IAMRoleGrantSpec {
            namespaces: vec![case.ns.clone()],
            role_arns: vec![role.clone()],
            service_accounts: None,
            allow_namespace_wildcard_trust: false,
        },
    );
    let grants: Api<IAMRoleGrant> = Api::all(client.clone());
    grants.create(&PostParams::default(), &grant).await.unwrap();
    support::create_binding(&client, &case.ns, "app", &role, &["app"]).await;
    let controller = Process::controller(&case.cluster, None, "doctor-controller");
    support::wait_bound(
        &client,
        &case.ns,
        "app",
        (case.prefix(), &role),
        &["app"],
        Some(&controller),
    )
    .await;

    let (code, report) = case.doctor(&["--service-account", "app", "--assume"]);
    let want: Vec<(&str, &str)> = all_pass_but(&[])
        .into_iter()
        .map(|(id, status)| match id {
            "webhook" | "dry-run" => (id, status),
            _ => (id, "PASS"),
        })
        .collect();
    assert_steps(&report, &want);
    assert_eq!(code, 0, "{report:#}");
    assert_says(
        check(&report, "binding"),
        "evidence",
        &format!("IAMRoleBinding {}/app: Ready (TrustPolicyApplied)", case.ns),
    );

    // The controller cleans up behind the binding before it stops.
    let bindings: Api<IAMRoleBinding> = Api::namespaced(client.clone(), &case.ns);
    bindings
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    controller
        .wait_for(
            &format!("binding {}/app to be finalized", case.ns),
            WAIT,
            || async { bindings.get_opt("app").await.ok()?.is_none().then_some(()) },
        )
        .await;
    drop(controller);
    let _ = grants
        .delete(&grant.name_any(), &DeleteParams::default())
        .await;
    case.finish().await;
}
