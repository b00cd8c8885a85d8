//! What every e2e test needs: the cluster settings, a client, the CRDs, a fresh namespace, the
//! `irsa controller` process, AWS (a local moto by default) and bounded waiting.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use irsa::crd::{
    IAMRoleBinding, IAMRoleBindingSpec, IAMRoleGrant, IAMRoleGrantSpec, PodIdentityAssociation,
    PodIdentityAssociationSpec,
};
use irsa::issuer::IssuerUrl;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::identity::{self, Component};
use crate::merge;
use crate::moto::{self, TestAws};
use crate::process::{Process, wait_guarded};
use crate::wait::wait_for;

/// Label on every namespace the suite creates: `kubectl delete ns -l irsa.dev/e2e=true`
/// removes what an interrupted run left behind.
pub const E2E_LABEL: &str = "irsa.dev/e2e";

/// How long the suite waits for the cluster or the controller to do something.
pub const WAIT: Duration = Duration::from_secs(180);

/// The run's settings. A cluster test that runs without a cluster fails here: it was asked to
/// run (`--run-ignored`), so a missing cluster is an error, never a pass.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The annotation prefix of the webhook under test and of the controller the suite starts
    /// (`IRSA_E2E_ANNOTATION_PREFIX`, default the EKS one).
    pub annotation_prefix: String,
}

pub fn settings() -> Settings {
    let kubeconfig = std::env::var_os("KUBECONFIG").filter(|k| !k.is_empty());
    let enabled = std::env::var("IRSA_E2E").is_ok_and(|v| v == "1");
    assert!(
        kubeconfig.is_some() && enabled,
        "this test needs a cluster: set KUBECONFIG and IRSA_E2E=1 (make e2e), or run make test, \
         which starts a local control plane"
    );
    irsa::install_crypto_provider();
    let non_empty = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    Settings {
        annotation_prefix: non_empty("IRSA_E2E_ANNOTATION_PREFIX")
            .unwrap_or_else(|| irsa::mutate::config::DEFAULT_ANNOTATION_PREFIX.to_string()),
    }
}

/// The kubeconfig file the suite runs with (the first of `KUBECONFIG`).
pub fn admin_kubeconfig() -> PathBuf {
    let paths = std::env::var_os("KUBECONFIG").expect("KUBECONFIG is set");
    std::env::split_paths(&paths)
        .next()
        .expect("KUBECONFIG names a file")
}

/// A client for the cluster of the kubeconfig file at `path`.
pub async fn client_for(path: &std::path::Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    kube::Client::try_from(config).unwrap()
}

pub async fn client() -> kube::Client {
    kube::Client::try_default()
        .await
        .unwrap_or_else(|e| panic!("cannot build a Kubernetes client from KUBECONFIG: {e}"))
}

/// A short random suffix so concurrent or repeated runs never collide.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// Installs (or updates) the CRDs from `crds/` by server-side apply and waits until the API
/// server serves them.
pub async fn install_crds(client: &kube::Client) {
    let yaml = include_str!("../../crds/irsa.dev.yaml");
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).expect("crds/irsa.dev.yaml is YAML");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply("irsa-e2e").force();
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        let name = doc["metadata"]["name"]
            .as_str()
            .expect("every CRD has a name")
            .to_string();
        api.patch(&name, &pp, &Patch::Apply(&doc))
            .await
            .unwrap_or_else(|e| {
                panic!("applying CRD {name}: {e} (the e2e needs cluster-admin on KUBECONFIG)")
            });
        wait_established(&api, &name).await;
    }
}

/// Waits (bounded) until the API server serves CRD `name`.
pub async fn wait_established(api: &Api<CustomResourceDefinition>, name: &str) {
    wait_for(&format!("CRD {name} to be Established"), WAIT, || async {
        let crd = api.get_opt(name).await.ok()??;
        crd.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
            .then_some(())
    })
    .await;
}

/// `GET path` on the API server (a non-resource URL such as the issuer documents), as text.
pub async fn api_text(client: &kube::Client, path: &str) -> String {
    let request = http::Request::get(path).body(Vec::new()).unwrap();
    client
        .request_text(request)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Creates a fresh labelled namespace and returns its name.
pub async fn create_namespace(client: &kube::Client, prefix: &str) -> String {
    let name = unique(prefix);
    let ns: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {E2E_LABEL: "true"}}
    }))
    .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
    name
}

/// Best effort: a failed cleanup must not hide the test's own result.
pub async fn delete_namespace(client: &kube::Client, name: &str) {
    if let Err(e) = Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::background())
        .await
    {
        println!("note: deleting namespace {name} failed: {e}");
    }
}

/// What every controller e2e test starts from: the settings, a client, the CRDs installed,
/// the issuer the controller will see (`IRSA_E2E_ISSUER_URL`, else the API server's
/// discovery document) and the AWS side.
pub struct ControllerCluster {
    pub settings: Settings,
    pub client: kube::Client,
    pub issuer: irsa::issuer::discover::Issuer,
    pub aws_env: AwsEnv,
    /// The controller's identity: the chart's ServiceAccount with the chart's RBAC.
    pub kubeconfig: PathBuf,
}

pub async fn controller_cluster() -> ControllerCluster {
    let settings = settings();
    let issuer_flag = std::env::var("IRSA_E2E_ISSUER_URL")
        .ok()
        .map(|url| IssuerUrl::parse(&url).unwrap_or_else(|e| panic!("IRSA_E2E_ISSUER_URL: {e}")));
    let client = client().await;
    controller_cluster_with(settings, client, &admin_kubeconfig(), issuer_flag).await
}

/// [`controller_cluster`] on the cluster of the admin kubeconfig `admin` (e.g. an
/// [`OwnPlane`]'s), whose issuer is its API server's.
pub async fn controller_cluster_at(admin: &std::path::Path) -> ControllerCluster {
    let settings = settings();
    controller_cluster_with(settings, client_for(admin).await, admin, None).await
}

async fn controller_cluster_with(
    settings: Settings,
    client: kube::Client,
    admin: &std::path::Path,
    issuer_flag: Option<IssuerUrl>,
) -> ControllerCluster {
    install_crds(&client).await;
    let issuer = irsa::issuer::discover::issuer(&client, issuer_flag.as_ref())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let aws_env = aws_env().await;
    let kubeconfig = identity::kubeconfig_in(&client, admin, Component::Controller).await;
    ControllerCluster {
        settings,
        client,
        issuer,
        aws_env,
        kubeconfig,
    }
}

/// The AWS side of a test and of the controller it starts.
///
/// By default a local moto (IAM/STS emulator) started by this test process, reached through
/// the counting proxy of `e2e/src/moto.rs`, so a test can count the IAM calls the
/// controller makes. With `IRSA_E2E_AWS=env` the test and the controller use the
/// environment's AWS configuration instead (`AWS_ENDPOINT_URL` for another emulator, or real
/// AWS with real credentials); call counting is then unavailable.
pub struct AwsEnv {
    pub sdk: SdkConfig,
    /// The CA the doctor trusts for the issuer (`--issuer-ca-file`): by default the local
    /// control plane's (`IRSA_E2E_CLUSTER_CA`); a cluster whose issuer has a public
    /// certificate, EKS, needs none.
    pub issuer_ca: Option<PathBuf>,
    /// `--aws-endpoint-url` for the controller, when not real AWS.
    pub endpoint: Option<String>,
    /// Extra environment for the controller process.
    pub child_env: Vec<(&'static str, String)>,
    /// The local emulator's proxy (call counters), when the test runs one.
    pub local: Option<TestAws>,
}

impl AwsEnv {
    /// The proxy counting the IAM/STS calls that reach the local emulator.
    pub fn calls(&self) -> &moto::FaultProxy {
        self.local.as_ref().map(TestAws::faults).unwrap_or_else(|| {
            panic!("counting IAM calls needs the local emulator (unset IRSA_E2E_AWS)")
        })
    }
}

impl AwsEnv {
    /// `irsa doctor -o json ARGS` (the built binary) as a user runs it: the suite's
    /// KUBECONFIG (unless `child_env` names another), this AWS endpoint and credentials, and
    /// [`Self::issuer_ca`]. Returns the exit code and the report.
    pub fn doctor(&self, args: &[&str]) -> (i32, Value) {
        let mut cmd = Command::new(crate::irsa_bin());
        cmd.args(["doctor", "-o", "json"]).args(args);
        if let Some(url) = &self.endpoint {
            cmd.args(["--aws-endpoint-url", url]);
        }
        if let Some(ca) = &self.issuer_ca {
            cmd.arg("--issuer-ca-file").arg(ca);
        }
        cmd.envs(self.child_env.iter().map(|(k, v)| (*k, v.as_str())));
        println!("$ irsa doctor -o json {}", args.join(" "));
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", crate::irsa_bin().display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        println!("{stdout}");
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        let report = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("the doctor printed no JSON report ({e}): {stdout}"));
        (out.status.code().expect("the doctor exited"), report)
    }
}

/// The step `id` of a doctor report.
pub fn doctor_step<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("no {id} step: {report:#}"))
}

pub async fn aws_env() -> AwsEnv {
    if std::env::var("IRSA_E2E_AWS").is_ok_and(|v| v == "env") {
        return env_aws().await;
    }
    let local = moto::test_aws().await;
    let endpoint = local.faults().endpoint();
    AwsEnv {
        sdk: local.sdk_config().clone(),
        issuer_ca: cluster_ca(),
        endpoint: Some(endpoint),
        child_env: vec![
            ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "moto-test-secret".to_string()),
            ("AWS_REGION", moto::REGION.to_string()),
        ],
        local: Some(local),
    }
}

/// The local control plane's CA (`IRSA_E2E_CLUSTER_CA`), when the suite runs on it.
fn cluster_ca() -> Option<PathBuf> {
    std::env::var_os("IRSA_E2E_CLUSTER_CA")
        .filter(|c| !c.is_empty())
        .map(PathBuf::from)
}

/// The environment's AWS: region (us-east-1 when unset), `AWS_ENDPOINT_URL`, and, against an
/// emulator with no credentials in the environment, dummy ones (emulators accept any).
async fn env_aws() -> AwsEnv {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let region = aws_config::meta::region::RegionProviderChain::default_provider()
        .or_else(Region::new("us-east-1"));
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(region);
    let mut child_env = Vec::new();
    if let Some(url) = &endpoint {
        loader = loader.endpoint_url(url);
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
            && std::env::var_os("AWS_PROFILE").is_none()
        {
            loader = loader.credentials_provider(aws_sdk_iam::config::Credentials::new(
                "testing", "testing", None, None, "irsa-e2e",
            ));
            child_env.push(("AWS_ACCESS_KEY_ID", "testing".to_string()));
            child_env.push(("AWS_SECRET_ACCESS_KEY", "testing".to_string()));
        }
    }
    let sdk = loader.load().await;
    if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none()
    {
        let region = sdk
            .region()
            .map_or_else(|| "us-east-1".to_string(), ToString::to_string);
        child_env.push(("AWS_REGION", region));
    }
    AwsEnv {
        sdk,
        issuer_ca: cluster_ca(),
        endpoint,
        child_env,
        local: None,
    }
}

/// An S3 client for an emulator's endpoint: buckets by path, not by host name.
pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    )
}

/// A fresh bucket whose shipped bucket policy (`config/iam/issuer-bucket-policy.json`) lets
/// anyone read exactly the issuer's two objects below `prefix/`, never ACLs: where a
/// self-managed cluster's issuer lives. Its name.
pub async fn issuer_bucket(s3: &aws_sdk_s3::Client, prefix: &str) -> String {
    let bucket = unique("irsa-issuer");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating bucket {bucket}: {e:?}"));
    let policy = include_str!("../../config/iam/issuer-bucket-policy.json")
        .replace("BUCKET", &bucket)
        .replace("PREFIX", prefix);
    s3.put_bucket_policy()
        .bucket(&bucket)
        .policy(policy)
        .send()
        .await
        .unwrap_or_else(|e| panic!("the issuer bucket's public-read policy: {e:?}"));
    bucket
}

/// Creates the IAMRoleBinding `name` in `ns` of `role_arn` for `service_accounts` (which
/// it annotates), as an app team writes it.
pub async fn create_binding(
    client: &kube::Client,
    ns: &str,
    name: &str,
    role_arn: &str,
    service_accounts: &[&str],
) {
    let binding = IAMRoleBinding::new(
        name,
        IAMRoleBindingSpec {
            role_arn: role_arn.to_string(),
            service_accounts: service_accounts.iter().map(ToString::to_string).collect(),
            audience: None,
            annotate_service_accounts: true,
            sts_regional_endpoints: None,
            token_expiration_seconds: None,
        },
    );
    Api::<IAMRoleBinding>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap_or_else(|e| panic!("creating IAMRoleBinding {ns}/{name}: {e}"));
}

/// Waits (bounded) until the binding `ns/name` is Ready and each of `service_accounts` carries
/// `role_arn` under `<prefix>/role-arn`: what the controller does for it.
pub async fn wait_bound(
    client: &kube::Client,
    ns: &str,
    name: &str,
    (prefix, role_arn): (&str, &str),
    service_accounts: &[&str],
    controller: Option<&Process>,
) {
    let bindings: Api<IAMRoleBinding> = Api::namespaced(client.clone(), ns);
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let annotation = format!("{prefix}/role-arn");
    wait_guarded(
        controller,
        &format!("binding {ns}/{name} Ready, its ServiceAccounts annotated"),
        WAIT,
        || async {
            let ready = bindings
                .get(name)
                .await
                .ok()?
                .status?
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            for sa in service_accounts {
                let annotations = sas.get(sa).await.ok()?.metadata.annotations?;
                (annotations.get(&annotation).map(String::as_str) == Some(role_arn))
                    .then_some(())?;
            }
            ready.then_some(())
        },
    )
    .await;
}

/// A control plane of the test's own (`scripts/control-plane.sh` in a fresh state directory),
/// for a test that restarts its API server or needs another issuer. Brought down on drop.
pub struct OwnPlane {
    dir: PathBuf,
}

impl OwnPlane {
    pub fn up() -> Self {
        Self::start(None)
    }

    /// A plane whose API server issues tokens for `issuer` (`IRSA_CONTROL_PLANE_ISSUER`),
    /// e.g. a self-managed cluster's bucket URL, instead of its own URL.
    pub fn up_with_issuer(issuer: &str) -> Self {
        Self::start(Some(issuer))
    }

    fn start(issuer: Option<&str>) -> Self {
        let plane = Self {
            dir: std::env::temp_dir().join(unique("irsa-e2e-plane")),
        };
        plane.run(&["up"], issuer);
        plane
    }

    /// `scripts/control-plane.sh ARGS` on this plane (e.g. `rotate-key add`).
    pub fn script(&self, args: &[&str]) {
        self.run(args, None);
    }

    fn run(&self, args: &[&str], issuer: Option<&str>) {
        let mut cmd = Command::new(crate::repo().join("scripts/control-plane.sh"));
        cmd.args(args)
            .env("IRSA_CONTROL_PLANE_DIR", &self.dir)
            .stdout(Stdio::null());
        if let Some(issuer) = issuer {
            cmd.env("IRSA_CONTROL_PLANE_ISSUER", issuer);
        }
        let status = cmd.status().unwrap();
        assert!(
            status.success(),
            "scripts/control-plane.sh {}: {status}",
            args.join(" ")
        );
    }

    /// Its state directory: PKI (`pki/sa.key` signs its tokens), logs, kubeconfig.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Its admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }
}

impl Drop for OwnPlane {
    fn drop(&mut self) {
        self.run(&["down"], None);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `irsa controller` processes: [`Process`] started the way the controller journeys need.
impl Process {
    /// Starts `irsa controller` named `name` (its `HOSTNAME`, hence the prefix of its
    /// leader-election identity, and its log file's name), authenticated as the chart's
    /// controller ServiceAccount. `lease`: elect a leader through the Lease with this name in
    /// the release namespace (where the chart's Role allows Leases), or run without leader
    /// election when `None`.
    pub fn controller(cluster: &ControllerCluster, lease: Option<&str>, name: &str) -> Self {
        Self::controller_with(cluster, lease, name, &[])
    }

    /// [`Self::controller`] with `extra` flags.
    pub fn controller_with(
        cluster: &ControllerCluster,
        lease: Option<&str>,
        name: &str,
        extra: &[&str],
    ) -> Self {
        let (settings, aws, issuer_url) =
            (&cluster.settings, &cluster.aws_env, &cluster.issuer.url);
        // A free port: several controllers and test processes may run at once.
        let admin = format!("127.0.0.1:{}", crate::free_port());
        let mut args = vec![
            "controller",
            "--cluster-name",
            "e2e",
            // The issuer the test computes its expectations from, not a second discovery.
            "--issuer-url",
            issuer_url,
            "--metrics-listen",
            &admin,
            "--log-format",
            "json",
            "--annotation-prefix",
            &settings.annotation_prefix,
        ];
        args.extend(extra);
        match lease {
            Some(lease) => args.extend([
                "--leader-election",
                "true",
                "--leader-election-namespace",
                identity::RELEASE_NAMESPACE,
                "--leader-election-lease-name",
                lease,
            ]),
            None => args.extend(["--leader-election", "false"]),
        }
        if let Some(url) = &aws.endpoint {
            args.extend(["--aws-endpoint-url", url]);
        }
        let kubeconfig = cluster.kubeconfig.to_string_lossy();
        let env = aws
            .child_env
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain([("KUBECONFIG", &*kubeconfig), ("HOSTNAME", name)]);
        Self::irsa(name, args, env, Some(admin.clone()))
    }
}

impl Process {
    /// Starts `irsa agent` named `name` for node `node` of cluster `cluster` on a free
    /// 127.0.0.1 port, with STS at `sts_endpoint` (an emulator: its credentials are static
    /// ones of its own) and `extra` flags. Returns it with the URL pods are given
    /// (`AWS_CONTAINER_CREDENTIALS_FULL_URI`).
    pub fn agent(
        name: &str,
        node: &str,
        cluster: &str,
        sts_endpoint: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> (Self, String) {
        let listen = format!("127.0.0.1:{}", crate::free_port());
        let admin = format!("127.0.0.1:{}", crate::free_port());
        let mut args = vec![
            "agent",
            "--node-name",
            node,
            "--cluster-name",
            cluster,
            "--listen",
            &listen,
            "--metrics-listen",
            &admin,
            "--aws-endpoint-url",
            sts_endpoint,
        ];
        args.extend_from_slice(extra);
        let env = [
            ("AWS_ACCESS_KEY_ID", "agent-key"),
            ("AWS_SECRET_ACCESS_KEY", "agent-secret"),
            ("AWS_REGION", moto::REGION),
        ]
        .into_iter()
        .chain(env.iter().copied());
        let agent = Self::irsa(name, args, env, Some(admin.clone()));
        (agent, format!("http://{listen}/v1/credentials"))
    }
}

/// The helm CLI the tests use: `IRSA_E2E_HELM` (set by scripts/control-plane.sh to the helm
/// it built from Go modules), else `helm` on PATH.
pub fn helm() -> String {
    std::env::var("IRSA_E2E_HELM")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "helm".into())
}

/// `helm template RELEASE charts/irsa -n NAMESPACE -f <values>`: the documents a
/// `helm install` with these values would create (CRDs excluded), parsed.
pub fn helm_template(release: &str, namespace: &str, values: &Value) -> Vec<Value> {
    let mut all = json!({"controller": {"clusterName": "e2e"}});
    merge(&mut all, values.clone());
    let chart = crate::repo().join("charts/irsa");
    let chart = chart.to_string_lossy();
    let (ok, stdout, stderr) = run(
        &helm(),
        &["template", release, &chart, "-n", namespace, "-f", "-"],
        &all.to_string(),
    );
    assert!(ok, "helm template failed: {stderr}");
    serde_saphyr::from_multiple::<Value>(&stdout)
        .unwrap_or_else(|e| panic!("helm template printed no YAML ({e}): {stdout}"))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// Runs `kubectl` with the test run's KUBECONFIG, `stdin` as input.
pub fn kubectl(args: &[&str], stdin: &str) -> (bool, String, String) {
    run("kubectl", args, stdin)
}

/// Runs `program` with `stdin` as input; returns (success, stdout, stderr).
pub fn run(program: &str, args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    let mut input = child.stdin.take().unwrap();
    let text = stdin.to_string();
    // Written from a thread: a large input must not deadlock against a full stdout pipe.
    let writer = std::thread::spawn(move || input.write_all(text.as_bytes()));
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An `IAMRoleGrant` (named `prefix` + a unique suffix) allowing `role_arns` for `namespace`;
/// returns its name.
pub async fn create_grant(
    client: &kube::Client,
    prefix: &str,
    namespace: &str,
    role_arns: &[&str],
    service_accounts: Option<Vec<String>>,
) -> String {
    let name = unique(prefix);
    let spec = IAMRoleGrantSpec {
        namespaces: vec![namespace.to_string()],
        role_arns: role_arns.iter().map(ToString::to_string).collect(),
        service_accounts,
        allow_namespace_wildcard_trust: false,
    };
    Api::<IAMRoleGrant>::all(client.clone())
        .create(&PostParams::default(), &IAMRoleGrant::new(&name, spec))
        .await
        .unwrap_or_else(|e| panic!("creating IAMRoleGrant {name}: {e}"));
    name
}

/// A `PodIdentityAssociation` `name` of `service_account` for `role_arn`, every option at its
/// default (no target role, the agent's tags only, the default session name).
pub fn association(name: &str, service_account: &str, role_arn: &str) -> PodIdentityAssociation {
    PodIdentityAssociation::new(
        name,
        PodIdentityAssociationSpec {
            service_account_name: service_account.into(),
            role_arn: role_arn.into(),
            target_role_arn: None,
            disable_session_tags: false,
            session_tags: Default::default(),
            role_session_name: None,
        },
    )
}

/// Creates `association` in `namespace`.
pub async fn create_association(
    client: &kube::Client,
    namespace: &str,
    association: &PodIdentityAssociation,
) {
    let name = association.metadata.name.as_deref().unwrap_or_default();
    Api::<PodIdentityAssociation>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), association)
        .await
        .unwrap_or_else(|e| panic!("creating PodIdentityAssociation {namespace}/{name}: {e}"));
}
