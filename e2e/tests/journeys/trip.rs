//! The whole trip, through real parts only: a token the API server issued for a pod, read by
//! real AWS SDKs (boto3 and the Rust SDK's default chain) from exactly what the webhook
//! injected, accepted by an STS that checks it (the verifying STS, `common/verifier.rs`), and
//! credentials that work on S3. irsa's controller writes the OIDC provider and the trust
//! policy into the verifier's IAM, and, on a self-managed cluster, publishes the issuer's
//! discovery document and JWKS to the verifier's S3, where its STS reads them.
//!
//! - [`a_self_managed_cluster_gets_working_credentials`]: a control plane of its own whose
//!   issuer is an https bucket URL; the trip succeeds, then the STS says no where it must (a
//!   ServiceAccount not in the binding, an audience not among the provider's client IDs, an
//!   expired token, a token signed by a key never published, a deleted binding), and the
//!   doctor predicts each outcome, naming the error the SDK got.
//! - [`a_rotated_key_works_until_its_retention_ends`]: a token signed by the retired key keeps
//!   working while the publisher retains the key, then fails.
//! - [`an_eks_shaped_issuer_gets_working_credentials`]: the suite's control plane, whose
//!   issuer is the API server itself (its own discovery, no publisher).
//!
//! The kubelet's part is played by `e2e/kubelet.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use irsa::crd::{IAMRoleBinding, IAMRoleGrant, IAMRoleGrantSpec};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::{Value, json};

use irsa_e2e::identity::{self, Component};
use irsa_e2e::kubelet::Container;
use irsa_e2e::process::Process;
use irsa_e2e::process::wait_guarded;
use irsa_e2e::sdk::{SDK_PROBE_PY, python};
use irsa_e2e::support::{self, AwsEnv, ControllerCluster, OwnPlane, WAIT, unique};
use irsa_e2e::verifier::Verifier;
use irsa_e2e::webhook::{
    Registration, WebhookProcess, assert_injected, chart_registration, create_pod,
    create_service_account, pod, register, unregister, wait_until_mutating,
};

const TOKEN_FILE: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token";

/// What the verifier answers for each refusal of the self-managed trip, in its order (a
/// subject the trust policy lacks, an audience not among the provider's client IDs, an
/// expired token, a key never published, a deleted binding): its error code and a fragment
/// of its message. AWS's codes differ for the second and fourth (`InvalidIdentityToken`):
/// docs/development.md, "The verifying STS".
const REFUSALS: [(&str, &str); 5] = [
    ("AccessDenied", TRUST_DENIES),
    (
        "InvalidParameterValue",
        "token audience matches none of the configured client IDs",
    ),
    ("ExpiredTokenException", "token has expired"),
    ("AccessDenied", UNKNOWN_KEY),
    ("AccessDenied", TRUST_DENIES),
];
const TRUST_DENIES: &str = "trust policy denies web identity assumption";
const UNKNOWN_KEY: &str = "not found in JWKS";

/// What an SDK or the doctor concluded: credentials (`Ok(assumed-role ARN)`) or the error.
type Outcome = Result<String, String>;

/// One cluster's trip: the verifier, the cluster, irsa's controller and webhook, a namespace
/// with a role the namespace is granted and a bucket that role may use.
struct Trip {
    verifier: Verifier,
    s3: aws_sdk_s3::Client,
    iam: aws_sdk_iam::Client,
    client: kube::Client,
    cluster: ControllerCluster,
    /// The CA an HTTPS client needs for the issuer (the doctor's `--issuer-ca-file`).
    issuer_ca: PathBuf,
    ns: String,
    role: String,
    data_bucket: String,
    controller: Option<Process>,
    webhook: Option<(WebhookProcess, String)>,
    plane: Option<OwnPlane>,
}

impl Trip {
    /// A self-managed cluster: the issuer is `https://<verifier>/<bucket>/cluster`, a bucket
    /// anyone may read below `cluster/`, and a control plane of its own issuing for it.
    async fn self_managed() -> (Self, String) {
        let verifier = Verifier::from_env();
        let s3 = support::s3_client(&verifier.sdk().await);
        let bucket = support::issuer_bucket(&s3, "cluster").await;
        let issuer = format!("{}/{bucket}/cluster", verifier.https);
        let plane = OwnPlane::up_with_issuer(&issuer);
        let admin = plane.kubeconfig();
        let ca = verifier.ca.clone();
        let trip = Self::on(verifier, &admin, ca, Some(plane)).await;
        assert_eq!(
            trip.cluster.issuer.url.as_str(),
            issuer,
            "the plane's API server issues tokens for the bucket's URL"
        );
        (trip, bucket)
    }

    /// The suite's control plane, as EKS is shaped: the issuer is the API server's URL and
    /// its discovery document is served (anonymously) by the API server.
    async fn eks_shaped() -> Self {
        let verifier = Verifier::from_env();
        let ca = std::env::var_os("IRSA_E2E_CLUSTER_CA")
            .filter(|c| !c.is_empty())
            .expect("IRSA_E2E_CLUSTER_CA: the local control plane's CA (make test sets it)")
            .into();
        Self::on(verifier, &support::admin_kubeconfig(), ca, None).await
    }

    async fn on(
        verifier: Verifier,
        admin: &Path,
        issuer_ca: PathBuf,
        plane: Option<OwnPlane>,
    ) -> Self {
        let settings = support::settings();
        let client = support::client_for(admin).await;
        support::install_crds(&client).await;
        let issuer = irsa::issuer::discover::issuer(&client, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut child_env = verifier.child_env();
        child_env.push(("KUBECONFIG", admin.display().to_string()));
        let aws_env = AwsEnv {
            sdk: verifier.sdk_for(&verifier.irsa_endpoint).await,
            endpoint: Some(verifier.irsa_endpoint.clone()),
            child_env,
            local: None,
            issuer_ca: Some(issuer_ca.clone()),
        };
        let kubeconfig = identity::kubeconfig_in(&client, admin, Component::Controller).await;
        let direct = verifier.sdk().await;
        let ns = support::create_namespace(&client, "irsa-e2e-trip").await;
        let mut trip = Self {
            s3: support::s3_client(&direct),
            iam: aws_sdk_iam::Client::new(&direct),
            verifier,
            client: client.clone(),
            cluster: ControllerCluster {
                settings,
                client,
                issuer,
                aws_env,
                kubeconfig,
            },
            issuer_ca,
            ns,
            role: String::new(),
            data_bucket: unique("irsa-data"),
            controller: None,
            webhook: None,
            plane,
        };
        trip.create_role().await;
        trip
    }

    /// A role that starts with one unrelated statement, as a real role would, and may put
    /// and get objects in the trip's data bucket; the bucket; the admin's grant.
    async fn create_role(&mut self) {
        let name = unique("irsa-e2e-trip");
        let unrelated = json!({"Version": "2012-10-17", "Statement": [{"Sid": "Ec2",
            "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole"}]});
        self.iam
            .create_role()
            .role_name(&name)
            .assume_role_policy_document(unrelated.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating IAM role {name}: {e:?}"));
        // Its IAM answers `arn:aws:iam::role/NAME`; AWS's form carries the account.
        self.role = format!("arn:aws:iam::{}:role/{name}", self.verifier.account);
        let permissions = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": ["s3:PutObject", "s3:GetObject"],
            "Resource": [format!("arn:aws:s3:::{}/*", self.data_bucket)]}]});
        // The verifier has no inline role policies: a managed policy, attached.
        let policy = self
            .iam
            .create_policy()
            .policy_name(&name)
            .policy_document(permissions.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("the role's permission policy: {e:?}"));
        self.iam
            .attach_role_policy()
            .role_name(&name)
            .policy_arn(policy.policy().and_then(|p| p.arn()).unwrap())
            .send()
            .await
            .unwrap_or_else(|e| panic!("attaching the role's permission policy: {e:?}"));
        self.s3
            .create_bucket()
            .bucket(&self.data_bucket)
            .send()
            .await
            .unwrap();
        let grant = IAMRoleGrant::new(
            &self.ns,
            IAMRoleGrantSpec {
                namespaces: vec![self.ns.clone()],
                role_arns: vec![self.role.clone()],
                service_accounts: None,
                allow_namespace_wildcard_trust: false,
            },
        );
        Api::<IAMRoleGrant>::all(self.client.clone())
            .create(&PostParams::default(), &grant)
            .await
            .unwrap();
    }

    /// `irsa controller` (only bindings are trusted: `--manage-annotated-serviceaccounts
    /// false`) and `irsa webhook`, registered for the trip's namespace.
    async fn start_irsa(&mut self, controller_args: &[&str]) {
        self.start_controller("trip-controller", controller_args);
        let kubeconfig =
            identity::kubeconfig_in(&self.client, &self.admin_kubeconfig(), Component::Webhook)
                .await;
        let webhook = WebhookProcess::start(
            &kubeconfig,
            "trip-webhook",
            &["--aws-default-region", "us-east-1"],
        )
        .await;
        let reg = Registration::new(&[&self.ns]);
        let name = register(
            &self.client,
            &chart_registration(&reg, &webhook.url, &webhook.cert),
        )
        .await;
        self.webhook = Some((webhook, name));
    }

    fn start_controller(&mut self, name: &str, extra: &[&str]) {
        let ca = self.issuer_ca.display().to_string();
        let mut args = vec![
            "--manage-annotated-serviceaccounts",
            "false",
            "--issuer-ca-file",
            ca.as_str(),
        ];
        args.extend_from_slice(extra);
        self.controller = None;
        self.controller = Some(Process::controller_with(&self.cluster, None, name, &args));
    }

    fn admin_kubeconfig(&self) -> PathBuf {
        self.plane
            .as_ref()
            .map_or_else(support::admin_kubeconfig, OwnPlane::kubeconfig)
    }

    /// The issuer's discovery document, once published where STS reads it.
    async fn published_discovery(&self) -> Value {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.cluster.issuer.url
        );
        wait_guarded(
            self.controller.as_ref(),
            "the issuer's discovery document to be published",
            WAIT,
            || async { https_get(&self.issuer_ca, &url).await.ok() },
        )
        .await
    }

    /// The ARN of the OIDC provider for the issuer, as the controller created it.
    fn provider_arn(&self) -> String {
        self.cluster
            .issuer
            .url
            .provider_arn("aws", &self.verifier.account)
    }

    /// A binding of the role for `service_accounts`, returned once Ready with every
    /// ServiceAccount annotated.
    async fn bind(&self, name: &str, service_accounts: &[&str]) {
        support::create_binding(&self.client, &self.ns, name, &self.role, service_accounts).await;
        let prefix = &self.cluster.settings.annotation_prefix;
        support::wait_bound(
            &self.client,
            &self.ns,
            name,
            (prefix, &self.role),
            service_accounts,
            self.controller.as_ref(),
        )
        .await;
    }

    async fn unbind(&self, name: &str) {
        let bindings: Api<IAMRoleBinding> = Api::namespaced(self.client.clone(), &self.ns);
        bindings
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
        wait_guarded(
            self.controller.as_ref(),
            &format!("binding {}/{name} to be finalized", self.ns),
            WAIT,
            || async { bindings.get_opt(name).await.ok()?.is_none().then_some(()) },
        )
        .await;
    }

    /// The role's trust policy as irsa reads it (through the dialect proxy: AWS's form).
    async fn trust_policy(&self) -> Value {
        let iam = aws_sdk_iam::Client::new(&self.cluster.aws_env.sdk);
        let name = self.role.rsplit('/').next().unwrap();
        let out = iam.get_role().role_name(name).send().await.unwrap();
        let raw = out.role().unwrap().assume_role_policy_document().unwrap();
        serde_json::from_str(&irsa::trust::decode_policy_document(raw).unwrap()).unwrap()
    }

    /// A pod of `service_account` created through the API server (the webhook runs), and its
    /// container `app` as the kubelet stand-in starts it.
    async fn pod(&self, name: &str, service_account: &str) -> (Value, Container) {
        wait_until_mutating(&self.client, &self.ns, service_account, json!({})).await;
        let stored = create_pod(
            &self.client,
            &self.ns,
            &pod(name, service_account, json!({})),
        )
        .await
        .unwrap_or_else(|e| panic!("creating pod {}/{name}: {e}", self.ns));
        let container = Container::start(&self.client, &stored, "app").await;
        (stored, container)
    }

    /// boto3's and the Rust SDK's outcome, each run as the container's process with the
    /// endpoint override only (the pod talks to STS and S3 directly, not through the dialect
    /// proxy).
    fn sdks(&self, container: &Container, key: &str) -> [(&'static str, Outcome); 2] {
        let extra = [("AWS_ENDPOINT_URL", self.verifier.endpoint.as_str())];
        let args = [self.data_bucket.as_str(), key];
        let boto3 = container.run(&python(), &[SDK_PROBE_PY, args[0], args[1]], &extra);
        let rust = container.run(&rust_probe(), &args, &extra);
        [
            ("boto3", probe_outcome(&boto3)),
            ("aws-sdk-rust", probe_outcome(&rust)),
        ]
    }

    /// `irsa doctor -n NS --assume ARGS` against the verifier: what it predicts from its
    /// checks, and what its own `sts:AssumeRoleWithWebIdentity` call got.
    fn doctor(&self, args: &[&str]) -> DoctorSays {
        let mut all = vec!["-n", self.ns.as_str(), "--assume"];
        all.extend_from_slice(args);
        let (_, report) = self.cluster.aws_env.doctor(&all);
        let failed: Vec<String> = report["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["status"] == "FAIL" && c["id"] != "assume")
            .map(|c| c["id"].as_str().unwrap_or("?").to_string())
            .collect();
        let assume = support::doctor_step(&report, "assume");
        let evidence = assume["evidence"].as_str().unwrap_or_default().to_string();
        let sts = match assume["status"].as_str() {
            Some("PASS") => Ok(evidence),
            Some("FAIL") => Err(evidence),
            other => panic!("the doctor made no STS call ({other:?}): {report:#}"),
        };
        DoctorSays { failed, sts }
    }

    async fn finish(mut self) {
        if let Some((_, name)) = &self.webhook {
            unregister(&self.client, name).await;
        }
        self.webhook = None;
        self.controller = None;
        support::delete_namespace(&self.client, &self.ns).await;
    }
}

/// `examples/aws_sdk_probe.rs`, which cargo builds beside this test binary
/// (`target/<profile>/examples/`).
pub(crate) fn rust_probe() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("examples").join("aws_sdk_probe"))
        .unwrap();
    assert!(
        path.is_file(),
        "{} is missing: cargo builds examples with the tests (cargo build --example aws_sdk_probe)",
        path.display()
    );
    path
}

fn probe_outcome(out: &std::process::Output) -> Outcome {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "the SDK probe printed no report ({}):\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    if out.status.success() {
        Ok(report["arn"].as_str().unwrap().to_string())
    } else {
        Err(format!(
            "{} failed: {}",
            report["stage"].as_str().unwrap_or("?"),
            report["error"].as_str().unwrap_or("?")
        ))
    }
}

/// Asserts every SDK got credentials for the role and read back what it wrote.
fn assert_works(what: &str, sdks: &[(&str, Outcome)], role: &str) {
    let role_name = role.rsplit('/').next().unwrap();
    for (sdk, outcome) in sdks {
        println!("{what}: {sdk}: {outcome:?}");
    }
    for (sdk, outcome) in sdks {
        let arn = outcome
            .as_ref()
            .unwrap_or_else(|e| panic!("{what}: {sdk} got no working credentials: {e}"));
        assert!(
            arn.contains(&format!(":assumed-role/{role_name}/")),
            "{what}: {sdk} is not the role {role}: {arn}"
        );
    }
}

/// What the doctor said: the steps it failed before calling STS (its prediction), and the
/// outcome of its own call.
struct DoctorSays {
    failed: Vec<String>,
    sts: Outcome,
}

/// One case, seen by the SDKs and by the doctor.
struct Verdict {
    case: &'static str,
    sdks: Vec<(&'static str, Outcome)>,
    doctor: DoctorSays,
}

/// The doctor predicts success (no step failed) and its own call works.
fn assert_doctor_agrees_it_works(doctor: &DoctorSays) {
    assert!(
        doctor.failed.is_empty(),
        "the doctor predicts failure: {:?}",
        doctor.failed
    );
    assert!(
        doctor.sts.is_ok(),
        "the doctor's own call failed: {:?}",
        doctor.sts
    );
}

/// The doctor predicted the refusal (a step failed before its call), its own call got
/// `code` with a message naming `fragment`, and every SDK was refused with that same code and
/// message.
fn assert_refused(verdict: &Verdict, (code, fragment): (&str, &str)) {
    let case = verdict.case;
    assert!(
        !verdict.doctor.failed.is_empty(),
        "{case}: the doctor predicts success where the STS refused"
    );
    let named = verdict.doctor.sts.as_ref().err().unwrap_or_else(|| {
        panic!(
            "{case}: the doctor's own STS call worked: {:?}",
            verdict.doctor.sts
        )
    });
    let message = named
        .strip_prefix(&format!("{code}: "))
        .unwrap_or_else(|| panic!("{case}: the doctor names another error than {code}: {named}"));
    assert!(
        message.contains(fragment),
        "{case}: the STS's message does not say {fragment:?}: {named}"
    );
    for (sdk, outcome) in &verdict.sdks {
        let error = outcome.as_ref().err().unwrap_or_else(|| {
            panic!("{case}: {sdk} got credentials the STS refused: {outcome:?}")
        });
        assert!(
            error.contains(code) && error.contains(message),
            "{case}: {sdk} got another error than the doctor names ({named}): {error}"
        );
    }
}

fn print_table(rows: &[Verdict]) {
    let word = |o: &Outcome| if o.is_ok() { "works" } else { "refused" };
    println!(
        "\n{:<40} {:<8} {:<9} {:<30} {:<8} the STS said",
        "case", "boto3", "rust sdk", "doctor predicts (failed steps)", "doctor"
    );
    for row in rows {
        let said = row.sdks[0].1.as_ref().err().map_or("-", String::as_str);
        println!(
            "{:<40} {:<8} {:<9} {:<30} {:<8} {}",
            row.case,
            word(&row.sdks[0].1),
            word(&row.sdks[1].1),
            if row.doctor.failed.is_empty() {
                "works".to_string()
            } else {
                row.doctor.failed.join(",")
            },
            word(&row.doctor.sts),
            said.chars().take(160).collect::<String>()
        );
    }
    println!();
}

/// `GET url` over HTTPS trusting only `ca`, as JSON: what STS reads at the issuer.
async fn https_get(ca: &Path, url: &str) -> Result<Value, String> {
    let pem = std::fs::read(ca).unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .build()
        .unwrap();
    let response = http
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("GET {url}: {e}"))?;
    response
        .json()
        .await
        .map_err(|e| format!("GET {url}: not JSON: {e}"))
}

/// A JWT's claims, unverified.
fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// `token`'s claims and key id, expired an hour ago, signed with `key` (PEM): the API
/// server's own signing key, so only the expiry is wrong.
fn resign_expired(token: &str, key: &Path) -> String {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let mut claims = claims(token);
    let now = irsa::testing::oidc::now();
    claims["iat"] = json!(now - 7200);
    claims["nbf"] = json!(now - 7200);
    claims["exp"] = json!(now - 3600);
    let pem = std::fs::read(key).unwrap();
    let mut out = jsonwebtoken::Header::new(header.alg);
    out.kid = header.kid;
    jsonwebtoken::encode(
        &out,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap()
}

/// `text` in a fresh file under the test's temporary directory.
fn write_temp(text: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique("token"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A signing-key rotation on a self-managed cluster: a token signed by the retired key keeps
/// working while the publisher retains the key, a token of the new key works, and once the
/// retention has passed and the key left the published JWKS, STS refuses the old token (the
/// doctor names the same error).
#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn a_rotated_key_works_until_its_retention_ends() {
    const RETENTION: Duration = Duration::from_secs(45);
    let (mut trip, bucket) = Trip::self_managed().await;
    let issuer = trip.cluster.issuer.url.to_string();
    let target = format!("s3://{bucket}/cluster");
    let retention = format!("{}s", RETENTION.as_secs());
    let publish = [
        "--publish-issuer",
        target.as_str(),
        "--issuer-public-url",
        issuer.as_str(),
        "--issuer-publish-interval",
        "1s",
        "--issuer-key-retention",
        retention.as_str(),
    ];
    trip.start_irsa(&publish).await;
    create_service_account(&trip.client, &trip.ns, "app", json!({})).await;
    trip.bind("app", &["app"]).await;
    trip.published_discovery().await;
    let (stored, app) = trip.pod("app", "app").await;
    assert_works(
        "before the rotation",
        &trip.sdks(&app, "before.txt"),
        &trip.role,
    );
    let old_kid = jsonwebtoken::decode_header(app.token_at(TOKEN_FILE))
        .unwrap()
        .kid
        .unwrap();
    let jwks_url = format!("{issuer}/openid/v1/jwks");
    let ca = trip.issuer_ca.clone();
    let published = || async {
        https_get(&ca, &jwks_url).await.unwrap_or_default()["keys"]
            .as_array()
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| k["kid"].as_str().map(String::from))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };

    let plane = trip.plane.as_ref().unwrap();
    plane.script(&["rotate-key", "add"]);
    wait_guarded(
        trip.controller.as_ref(),
        "both keys to be published",
        WAIT,
        || async { (published().await.len() == 2).then_some(()) },
    )
    .await;
    plane.script(&["rotate-key", "drop"]);
    // The controller's own token was signed by the retired key, which the API server no
    // longer accepts: it starts again with a fresh one (a kubelet refreshes it in a pod).
    let admin = trip.admin_kubeconfig();
    trip.cluster.kubeconfig =
        identity::kubeconfig_in(&trip.client, &admin, Component::Controller).await;
    trip.start_controller("trip-controller-rotated", &publish);
    let dropped = std::time::Instant::now();
    assert!(
        published().await.contains(&old_kid),
        "the retired key is retained"
    );
    assert_works(
        "the retired key's token within the retention",
        &trip.sdks(&app, "retained.txt"),
        &trip.role,
    );
    let fresh = Container::start(&trip.client, &stored, "app").await;
    assert_ne!(
        jsonwebtoken::decode_header(fresh.token_at(TOKEN_FILE))
            .unwrap()
            .kid,
        Some(old_kid.clone()),
        "a fresh token is signed by the new key"
    );
    assert_works(
        "a token of the new key",
        &trip.sdks(&fresh, "fresh.txt"),
        &trip.role,
    );

    wait_guarded(
        trip.controller.as_ref(),
        "the retired key to leave the published JWKS after the retention",
        WAIT,
        || async { (!published().await.contains(&old_kid)).then_some(()) },
    )
    .await;
    assert!(
        dropped.elapsed() + Duration::from_secs(5) >= RETENTION,
        "dropped before the retention"
    );
    // The verifier keeps a JWKS for an hour and fetches it again only for a kid it lacks;
    // a change of the provider's client IDs empties that cache (docs/development.md, "The
    // verifying STS"), so the next call reads the JWKS as published now.
    let provider = trip.provider_arn();
    trip.iam
        .add_client_id_to_open_id_connect_provider()
        .open_id_connect_provider_arn(&provider)
        .client_id("irsa-e2e-jwks-refresh")
        .send()
        .await
        .unwrap_or_else(|e| panic!("adding a client ID to {provider}: {e:?}"));
    let sdks = wait_guarded(
        trip.controller.as_ref(),
        "STS to refuse the retired key's token",
        WAIT,
        || async {
            let sdks = trip.sdks(&app, "late.txt");
            sdks.iter().all(|(_, o)| o.is_err()).then_some(sdks)
        },
    )
    .await;
    let file = write_temp(app.token_at(TOKEN_FILE));
    let verdict = Verdict {
        case: "token of a key past its retention",
        sdks: sdks.into(),
        doctor: trip.doctor(&["--token", file.to_str().unwrap(), "--role-arn", &trip.role]),
    };
    print_table(std::slice::from_ref(&verdict));
    assert_refused(&verdict, ("AccessDenied", UNKNOWN_KEY));
    trip.finish().await;
}

/// The trip on an EKS-shaped issuer: the suite's control plane, whose issuer is the API
/// server itself, serving its own discovery document and JWKS (no publisher). Runs in
/// nextest's `e2e-controller` group: its controller watches the whole cluster.
#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn an_eks_shaped_issuer_gets_working_credentials() {
    let mut trip = Trip::eks_shaped().await;
    trip.start_irsa(&[]).await;
    create_service_account(&trip.client, &trip.ns, "app", json!({})).await;
    trip.bind("app", &["app"]).await;
    println!("trust policy written:\n{:#}", trip.trust_policy().await);
    let (stored, app) = trip.pod("app", "app").await;
    assert_works("the app's pod", &trip.sdks(&app, "app.txt"), &trip.role);
    assert_injected(&stored, "app", &trip.role);
    assert_doctor_agrees_it_works(&trip.doctor(&["--service-account", "app"]));
    trip.finish().await;
}

/// The self-managed trip, end to end, then every refusal the STS owes, each predicted by the
/// doctor. Runs on a control plane of its own, so beside the other tests.
#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn a_self_managed_cluster_gets_working_credentials() {
    let (mut trip, bucket) = Trip::self_managed().await;
    let issuer = trip.cluster.issuer.url.to_string();
    let target = format!("s3://{bucket}/cluster");
    trip.start_irsa(&[
        "--publish-issuer",
        &target,
        "--issuer-public-url",
        &issuer,
        "--issuer-publish-interval",
        "2s",
    ])
    .await;
    let prefix = trip.cluster.settings.annotation_prefix.clone();
    // "stranger" is annotated by hand and in no binding: the webhook injects it, the trust
    // policy does not admit it. "other-audience" is in the binding, but its pods' tokens are
    // for an audience IAM does not know.
    let service_accounts = [
        ("app", json!({})),
        ("stranger", json!({format!("{prefix}/role-arn"): trip.role})),
        (
            "other-audience",
            json!({format!("{prefix}/audience"): "irsa-e2e-other"}),
        ),
    ];
    for (sa, annotations) in service_accounts {
        create_service_account(&trip.client, &trip.ns, sa, annotations).await;
    }
    trip.bind("app", &["app", "other-audience"]).await;

    // Published: the discovery document and JWKS, anonymously over HTTPS at the issuer URL.
    let discovery = trip.published_discovery().await;
    assert_eq!(discovery["issuer"], issuer.as_str(), "{discovery}");
    let jwks = https_get(&trip.issuer_ca, discovery["jwks_uri"].as_str().unwrap())
        .await
        .unwrap();
    println!(
        "issuer published at {issuer}: {} key(s)",
        jwks["keys"].as_array().map_or(0, Vec::len)
    );
    let provider = trip.provider_arn();
    let created = trip
        .iam
        .get_open_id_connect_provider()
        .open_id_connect_provider_arn(&provider)
        .send()
        .await
        .unwrap_or_else(|e| panic!("no OIDC provider {provider}: {e:?}"));
    println!(
        "OIDC provider created: {provider}, client IDs {:?}",
        created.client_id_list()
    );
    println!("trust policy written:\n{:#}", trip.trust_policy().await);

    let (stored, app) = trip.pod("app", "app").await;
    assert_works("the app's pod", &trip.sdks(&app, "app.txt"), &trip.role);
    assert_injected(&stored, "app", &trip.role);
    assert_eq!(app.env_var("AWS_WEB_IDENTITY_TOKEN_FILE"), Some(TOKEN_FILE));
    assert_doctor_agrees_it_works(&trip.doctor(&["--service-account", "app"]));

    let mut verdicts = Vec::new();
    let (_, stranger) = trip.pod("stranger", "stranger").await;
    verdicts.push(Verdict {
        case: "ServiceAccount not in the binding (sub)",
        sdks: trip.sdks(&stranger, "stranger.txt").into(),
        doctor: trip.doctor(&["--service-account", "stranger"]),
    });
    let (_, other) = trip.pod("other-audience", "other-audience").await;
    assert_ne!(
        claims(app.token_at(TOKEN_FILE))["aud"],
        claims(other.token_at(TOKEN_FILE))["aud"]
    );
    verdicts.push(Verdict {
        case: "audience not a client ID of the provider",
        sdks: trip.sdks(&other, "other.txt").into(),
        doctor: trip.doctor(&["--service-account", "other-audience"]),
    });

    // Tokens the API server would never hand a pod: the app's own claims, expired and signed
    // with the API server's real key; then signed with a key that was never published.
    let real = app.token_at(TOKEN_FILE).to_string();
    let plane = trip.plane.as_ref().expect("a plane of its own");
    let expired = resign_expired(&real, &plane.dir().join("pki/sa.key"));
    let never_published = irsa::testing::oidc::SigningKey::generate("irsa-e2e-never-published");
    let unpublished = never_published.sign(&claims(&real));
    for (case, token) in [
        ("expired token (the API server's key)", expired),
        ("token signed by a key never published", unpublished),
    ] {
        let forged = app.with_token(TOKEN_FILE, &token);
        let file = write_temp(&token);
        verdicts.push(Verdict {
            case,
            sdks: trip.sdks(&forged, "forged.txt").into(),
            doctor: trip.doctor(&["--token", file.to_str().unwrap(), "--role-arn", &trip.role]),
        });
    }

    // The binding goes: the controller takes its subjects out of the trust policy (and its
    // annotation off the ServiceAccount), and a fresh token of the pod, which still has the
    // role in its environment, is refused.
    trip.unbind("app").await;
    let app_again = Container::start(&trip.client, &stored, "app").await;
    let file = write_temp(app_again.token_at(TOKEN_FILE));
    verdicts.push(Verdict {
        case: "binding deleted",
        sdks: trip.sdks(&app_again, "gone.txt").into(),
        doctor: trip.doctor(&["--token", file.to_str().unwrap(), "--role-arn", &trip.role]),
    });

    print_table(&verdicts);
    for (verdict, expected) in verdicts.iter().zip(REFUSALS) {
        assert_refused(verdict, expected);
    }
    assert_eq!(verdicts.len(), REFUSALS.len());
    trip.finish().await;
}
