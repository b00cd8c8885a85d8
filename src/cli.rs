//! The command line: every subcommand's flags, each also readable from an `IRSA_*` env var.
//!
//! Flags shared by `irsa mutate` and `irsa webhook` live in [`MutationArgs`] so the two can
//! never drift apart: `irsa mutate` prints exactly what the webhook would do.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum, builder::PossibleValue};

use crate::controller::election;
use crate::issuer::IssuerUrl;
use crate::mutate::{self, config::DEFAULT_TOKEN_MOUNT_PATH};
use crate::telemetry::LogFormat;
use crate::webhook::tls::TlsVersion;

#[derive(Debug, Parser)]
#[command(
    name = "irsa",
    version,
    about = "IAM Roles for Service Accounts for Kubernetes",
    long_about = "IAM Roles for Service Accounts for Kubernetes: a mutating admission webhook that \
                  injects web-identity credentials into pods, a controller that reconciles IAM \
                  trust policies, and a doctor that explains why a pod cannot assume its role."
)]
pub struct Cli {
    /// Log format: `auto` is human on a terminal and JSON otherwise.
    #[arg(long, env = "IRSA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

// The flags' enums that library modules take are defined there, plain; their flag values
// are named here, so that clap stays in this module.

impl ValueEnum for LogFormat {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::Auto, Self::Text, Self::Json]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            Self::Auto => "auto",
            Self::Text => "text",
            Self::Json => "json",
        }))
    }
}

impl ValueEnum for TlsVersion {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::V1_2, Self::V1_3]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            Self::V1_2 => "1.2",
            Self::V1_3 => "1.3",
        }))
    }
}

/// Deferred: clap builds a subcommand's arguments only when it runs (or for `--help`), so
/// `irsa webhook` does not execute, and keep resident, the code that builds every other
/// subcommand's flags. A deferred subcommand's flattened `Args` would then replace its `about`
/// with their own doc comment, so those (`MutationArgs`, `SelfTlsArgs`, `PublishArgs`) carry a
/// plain comment instead.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Serve the mutating admission webhook over TLS, plus health and metrics.
    Webhook(WebhookArgs),
    /// Reconcile the IAM OIDC provider and role trust policies.
    Controller(ControllerArgs),
    /// Diagnose why a ServiceAccount or Pod can or cannot assume its role.
    Doctor(DoctorArgs),
    /// Offline: print the Pod (or JSON patch) exactly as the webhook would mutate it.
    Mutate(MutateArgs),
    /// Offline: print the trust policy the controller would write, with its size.
    TrustPolicy(TrustPolicyArgs),
    /// Print the CustomResourceDefinitions (the source of `crds/`).
    Crd(CrdArgs),
    /// Offline: the issuer documents (discovery + JWKS) of a self-managed cluster.
    Issuer(IssuerArgs),
    /// Serve Pod Identity credentials on this node (the container-credentials endpoint).
    Agent(AgentArgs),
}

#[derive(Debug, Args)]
pub struct IssuerArgs {
    #[command(subcommand)]
    pub command: IssuerCommand,
}

#[derive(Debug, Subcommand)]
pub enum IssuerCommand {
    /// Print the OpenID discovery document and JWKS that STS reads at the issuer URL, built
    /// from the API server's public signing keys, with `kid`s computed as the API server does.
    Render(IssuerRenderArgs),
}

#[derive(Debug, Args)]
pub struct IssuerRenderArgs {
    /// The issuer URL, exactly the API server's `--service-account-issuer` (https).
    #[arg(long, env = "IRSA_ISSUER_URL", value_parser = IssuerUrl::parse)]
    pub issuer: IssuerUrl,

    /// PEM public key or certificate the API server verifies tokens with (its
    /// `--service-account-key-file`); repeat it to publish the old and the new key during a
    /// rotation.
    #[arg(long = "public-key", value_name = "FILE", required = true)]
    pub public_keys: Vec<PathBuf>,

    /// Write `.well-known/openid-configuration` and `openid/v1/jwks` below DIR (ready to
    /// upload) instead of printing both as one JSON object.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

// The knobs of the pod mutation, shared by `irsa mutate` and `irsa webhook`.
#[derive(Debug, Clone, Args)]
pub struct MutationArgs {
    /// Annotation prefix of the ServiceAccount/Pod annotations (`<prefix>/role-arn`, ...).
    #[arg(long, env = "IRSA_ANNOTATION_PREFIX", default_value = mutate::config::DEFAULT_ANNOTATION_PREFIX, value_parser = non_empty)]
    pub annotation_prefix: String,

    /// Default audience of the projected token when the SA has no `<prefix>/audience`.
    #[arg(long, env = "IRSA_TOKEN_AUDIENCE", default_value = mutate::config::DEFAULT_AUDIENCE, value_parser = non_empty)]
    pub token_audience: String,

    /// Where the token volume is mounted in every container.
    #[arg(long, env = "IRSA_TOKEN_MOUNT_PATH", default_value = DEFAULT_TOKEN_MOUNT_PATH, value_parser = non_empty)]
    pub token_mount_path: String,

    /// Default token lifetime in seconds (values under 600 are raised to 600; at most 2^32,
    /// the API server's maximum).
    #[arg(long, env = "IRSA_TOKEN_EXPIRATION", default_value_t = mutate::config::DEFAULT_EXPIRATION,
          value_parser = clap::value_parser!(i64).range(..=mutate::config::MAX_EXPIRATION))]
    pub token_expiration: i64,

    /// Region injected as AWS_DEFAULT_REGION and AWS_REGION (empty: none, unless the SA has
    /// an `irsa.dev/region` annotation).
    #[arg(long, env = "IRSA_AWS_DEFAULT_REGION", default_value = "")]
    pub aws_default_region: String,

    /// Inject AWS_STS_REGIONAL_ENDPOINTS=regional unless the SA says otherwise.
    #[arg(long, env = "IRSA_STS_REGIONAL_ENDPOINTS", default_value_t = false,
          num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub sts_regional_endpoints: bool,

    /// JSON file `{"identities":[{"namespace":..,"serviceAccount":..}]}` listing the
    /// ServiceAccounts that use EKS Pod Identity (container credentials) instead of IRSA.
    #[arg(long, env = "IRSA_CONTAINER_CREDENTIALS_CONFIG")]
    pub container_credentials_config: Option<PathBuf>,

    /// Audience of the container-credentials token.
    #[arg(long, env = "IRSA_CONTAINER_CREDENTIALS_AUDIENCE", default_value = mutate::config::DEFAULT_CC_AUDIENCE, value_parser = non_empty)]
    pub container_credentials_audience: String,

    /// Where the container-credentials token volume is mounted.
    #[arg(long, env = "IRSA_CONTAINER_CREDENTIALS_MOUNT_PATH", default_value = mutate::config::DEFAULT_CC_MOUNT_PATH, value_parser = non_empty)]
    pub container_credentials_mount_path: String,

    /// Name of the container-credentials token volume.
    #[arg(long, env = "IRSA_CONTAINER_CREDENTIALS_VOLUME_NAME", default_value = mutate::config::DEFAULT_CC_VOLUME_NAME, value_parser = non_empty)]
    pub container_credentials_volume_name: String,

    /// File name of the container-credentials token inside its mount.
    #[arg(long, env = "IRSA_CONTAINER_CREDENTIALS_TOKEN_PATH", default_value = mutate::config::DEFAULT_CC_TOKEN_PATH, value_parser = non_empty)]
    pub container_credentials_token_path: String,

    /// AWS_CONTAINER_CREDENTIALS_FULL_URI injected in container-credentials mode.
    #[arg(long, env = "IRSA_CONTAINER_CREDENTIALS_FULL_URI", default_value = mutate::config::DEFAULT_CC_FULL_URI, value_parser = non_empty)]
    pub container_credentials_full_uri: String,

    /// Deny pods whose annotations are invalid instead of injecting defaults with a warning
    /// (the webhook also denies when it cannot read the pod's ServiceAccount in time).
    #[arg(long, env = "IRSA_STRICT", default_value_t = false)]
    pub strict: bool,
}

impl MutationArgs {
    pub fn config(&self) -> mutate::MutationConfig {
        mutate::MutationConfig {
            annotation_prefix: self.annotation_prefix.clone(),
            audience: self.token_audience.clone(),
            mount_path: self.token_mount_path.clone(),
            expiration: self.token_expiration,
            region: Some(self.aws_default_region.clone()).filter(|r| !r.is_empty()),
            sts_regional_endpoints: self.sts_regional_endpoints,
            container_credentials: mutate::ContainerCredentialsConfig {
                audience: self.container_credentials_audience.clone(),
                mount_path: self.container_credentials_mount_path.clone(),
                volume_name: self.container_credentials_volume_name.clone(),
                token_path: self.container_credentials_token_path.clone(),
                full_uri: self.container_credentials_full_uri.clone(),
            },
            strict: self.strict,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MutateOutput {
    Yaml,
    Json,
    Patch,
}

#[derive(Debug, Args)]
pub struct MutateArgs {
    /// The Pod manifest (YAML or JSON); `-` reads stdin.
    #[arg(short = 'f', long = "filename", env = "IRSA_FILENAME")]
    pub filename: PathBuf,

    /// The ServiceAccount manifest (YAML or JSON) whose annotations drive the mutation.
    #[arg(long, env = "IRSA_SERVICE_ACCOUNT", conflicts_with_all = ["role_arn", "audience"])]
    pub service_account: Option<PathBuf>,

    /// Instead of a ServiceAccount file: the role ARN to bind (as `<prefix>/role-arn`).
    #[arg(long, env = "IRSA_ROLE_ARN")]
    pub role_arn: Option<String>,

    /// Instead of a ServiceAccount file: the SA's `<prefix>/audience`.
    #[arg(long, env = "IRSA_AUDIENCE")]
    pub audience: Option<String>,

    /// Namespace of the pod (default: the pod's `metadata.namespace`, else `default`).
    #[arg(short = 'n', long, env = "IRSA_NAMESPACE")]
    pub namespace: Option<String>,

    /// What to print: the mutated pod as YAML or JSON, or the RFC 6902 JSON patch.
    #[arg(short = 'o', long, env = "IRSA_OUTPUT", value_enum, default_value_t = MutateOutput::Yaml)]
    pub output: MutateOutput,

    /// Seed of the container-credentials expiration jitter (for reproducible output).
    #[arg(long, env = "IRSA_JITTER_SEED")]
    pub jitter_seed: Option<u64>,

    #[command(flatten)]
    pub mutation: MutationArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TlsMode {
    File,
    #[value(name = "self")]
    SelfManaged,
}

// `--tls-mode self`: the Secret and webhook configuration the webhook manages.
#[derive(Debug, Clone, Args)]
pub struct SelfTlsArgs {
    /// Secret holding the CA(s), their keys and the serving certificate (--tls-mode self).
    #[arg(long, env = "IRSA_TLS_SECRET", required_if_eq("tls_mode", "self"))]
    pub tls_secret: Option<String>,

    /// Namespace of --tls-secret: the webhook's own (the chart sets it from the pod).
    #[arg(
        long,
        env = "IRSA_TLS_SECRET_NAMESPACE",
        required_if_eq("tls_mode", "self")
    )]
    pub tls_secret_namespace: Option<String>,

    /// The MutatingWebhookConfiguration whose every caBundle is kept at the CA bundle
    /// (--tls-mode self).
    #[arg(
        long,
        env = "IRSA_WEBHOOK_CONFIGURATION",
        required_if_eq("tls_mode", "self")
    )]
    pub webhook_configuration: Option<String>,

    /// A DNS name or IP address of the serving certificate (the Service's names); repeat it
    /// or separate with commas (--tls-mode self).
    #[arg(long = "tls-dns-name", env = "IRSA_TLS_DNS_NAMES", value_delimiter = ',',
          required_if_eq("tls_mode", "self"), value_parser = non_empty)]
    pub tls_dns_names: Vec<String>,

    /// Validity of a CA the webhook creates; a successor is added at 2/3 of it.
    #[arg(long, env = "IRSA_TLS_CA_VALIDITY", default_value = "1095d", value_parser = parse_validity)]
    pub tls_ca_validity: Duration,

    /// Validity of a serving certificate; it is renewed at 2/3 of it.
    #[arg(long, env = "IRSA_TLS_CERT_VALIDITY", default_value = "90d", value_parser = parse_validity)]
    pub tls_cert_validity: Duration,

    /// How long every caBundle must carry a new CA before it signs the serving certificate
    /// (the API server must have picked up the new bundle by then).
    #[arg(long, env = "IRSA_TLS_CA_OVERLAP", default_value = "10m", value_parser = parse_validity)]
    pub tls_ca_overlap: Duration,

    /// How often the Secret and the caBundles are checked (a changed caBundle is also seen at
    /// once through a watch).
    #[arg(long, env = "IRSA_TLS_CHECK_INTERVAL", default_value = "10s", value_parser = parse_interval)]
    pub tls_check_interval: Duration,
}

#[derive(Debug, Args)]
pub struct WebhookArgs {
    /// Address of the TLS admission endpoint.
    #[arg(long, env = "IRSA_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,

    /// Where the serving certificate comes from: `file` (--tls-cert-file/--tls-key-file) or
    /// `self` (the webhook keeps its own CA and certificate in --tls-secret and the caBundle of
    /// --webhook-configuration; see docs/webhook.md).
    #[arg(long, env = "IRSA_TLS_MODE", value_enum, default_value_t = TlsMode::File)]
    pub tls_mode: TlsMode,

    /// PEM certificate chain; reloaded when it changes (--tls-mode file).
    #[arg(long, env = "IRSA_TLS_CERT_FILE", required_if_eq("tls_mode", "file"))]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key; reloaded when it changes (--tls-mode file).
    #[arg(long, env = "IRSA_TLS_KEY_FILE", required_if_eq("tls_mode", "file"))]
    pub tls_key_file: Option<PathBuf>,

    #[command(flatten)]
    pub self_tls: SelfTlsArgs,

    /// Minimum TLS version.
    #[arg(long, env = "IRSA_TLS_MIN_VERSION", value_enum, default_value_t = TlsVersion::V1_2)]
    pub tls_min_version: TlsVersion,

    /// Plain-HTTP address serving /metrics, /healthz and /readyz.
    #[arg(long, env = "IRSA_METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    pub metrics_listen: SocketAddr,

    /// How long an admission waits for the direct API GET on a ServiceAccount cache miss
    /// (e.g. 300ms); past it the pod is admitted without credentials, with a warning. The GET
    /// itself may finish later and fill the cache for the next pods.
    #[arg(long, env = "IRSA_SA_LOOKUP_TIMEOUT", default_value = "300ms", value_parser = parse_timeout)]
    pub sa_lookup_timeout: Duration,

    /// For benchmarks and tests only, so hidden from `--help`: serve ServiceAccounts from this
    /// YAML/JSON list instead of the API server (no Kubernetes connection is made). The
    /// benchmarks (`scripts/bench-*.sh`) and the webhook's binary tests run it without a
    /// cluster; a deployment never sets it.
    #[arg(long, env = "IRSA_SERVICE_ACCOUNTS_FILE", hide = true)]
    pub service_accounts_file: Option<PathBuf>,

    /// Watch `PodIdentityAssociation`s: pods of a ServiceAccount with one get container
    /// credentials (from `irsa agent`) instead of IRSA, like the identities file's. Needs the
    /// CRD installed and list/watch on it; the webhook is ready once they are listed.
    #[arg(long, env = "IRSA_POD_IDENTITY_ASSOCIATIONS", default_value_t = false,
          num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set,
          conflicts_with = "service_accounts_file")]
    pub pod_identity_associations: bool,

    /// How often the certificate, key and identities files are checked for changes.
    #[arg(long, env = "IRSA_RELOAD_INTERVAL", default_value = "2s", value_parser = parse_interval)]
    pub reload_interval: Duration,

    #[command(flatten)]
    pub mutation: MutationArgs,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The node this agent serves: only pods running on it get credentials.
    #[arg(long, env = "IRSA_NODE_NAME")]
    pub node_name: String,

    /// This cluster's name: the `irsa-cluster-name` session tag.
    #[arg(long, env = "IRSA_CLUSTER_NAME")]
    pub cluster_name: String,

    /// Address of the credentials endpoint; repeat it (or separate with commas) to answer on
    /// several, as EKS's agent answers on 169.254.170.23:80 and [fd00:ec2::23]:80 (the chart
    /// sets both up on the node and passes both).
    #[arg(
        long,
        env = "IRSA_LISTEN",
        default_value = "169.254.170.23:80",
        value_delimiter = ','
    )]
    pub listen: Vec<SocketAddr>,

    /// Plain-HTTP address serving /metrics, /healthz and /readyz (the probes).
    #[arg(long, env = "IRSA_METRICS_LISTEN", default_value = "0.0.0.0:2705")]
    pub metrics_listen: SocketAddr,

    /// The audience the pods' tokens must be for.
    #[arg(long, env = "IRSA_TOKEN_AUDIENCE", default_value = mutate::config::DEFAULT_CC_AUDIENCE)]
    pub audience: String,

    /// AWS endpoint override for STS (tests point this at a local emulator).
    #[arg(long, env = "IRSA_AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,

    /// Duration of the role sessions asked of STS (15m to 1h: the agent's own credentials
    /// are a role session, and STS caps a chained session at one hour).
    #[arg(long, env = "IRSA_SESSION_DURATION", default_value = "1h", value_parser = parse_session_duration)]
    pub session_duration: Duration,

    /// Credentials are handed out again until this long before they expire; then new ones
    /// are assumed. Above the SDKs' own refresh windows (boto3 refreshes 15 minutes ahead).
    #[arg(long, env = "IRSA_REFRESH_MARGIN", default_value = "20m", value_parser = parse_interval)]
    pub refresh_margin: Duration,

    /// How long a token the API server verified is remembered (by its SHA-256, never past
    /// its expiry), so that a pod asking again costs no TokenReview; 0 reviews every request.
    /// The pod, association and grant checks run on every request regardless.
    #[arg(long, env = "IRSA_TOKEN_REVIEW_CACHE", default_value = "5m", value_parser = parse_token_review_cache)]
    pub token_review_cache: Duration,
}

#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// This cluster's name: tags the OIDC provider and matches the `irsa.dev/cluster` role tag.
    #[arg(long, env = "IRSA_CLUSTER_NAME")]
    pub cluster_name: String,

    /// The service-account issuer URL (default: discovered from the API server).
    #[arg(long, env = "IRSA_ISSUER_URL", value_parser = IssuerUrl::parse)]
    pub issuer_url: Option<IssuerUrl>,

    /// Create/update the IAM OIDC provider for the issuer.
    #[arg(long, env = "IRSA_MANAGE_OIDC_PROVIDER", default_value_t = true, action = clap::ArgAction::Set)]
    pub manage_oidc_provider: bool,

    /// PEM CA certificate(s) of a self-managed issuer served under a private CA: the chain is
    /// verified against these (instead of the system's roots) before its thumbprint is kept on
    /// the OIDC provider, and the issuer publisher's read-back trusts them too.
    #[arg(long, env = "IRSA_ISSUER_CA_FILE")]
    pub issuer_ca_file: Option<PathBuf>,

    /// Also trust ServiceAccounts that are only annotated (no IAMRoleBinding).
    #[arg(long, env = "IRSA_MANAGE_ANNOTATED_SERVICEACCOUNTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub manage_annotated_serviceaccounts: bool,

    /// Trust-policy size quota in characters (IAM default 2048; raisable to 4096/8192).
    #[arg(long, env = "IRSA_TRUST_POLICY_MAX_CHARS", default_value_t = 2048)]
    pub trust_policy_max_chars: usize,

    /// How often every role is re-read from IAM to repair drift.
    #[arg(long, env = "IRSA_RESYNC_INTERVAL", default_value = "10m", value_parser = parse_interval)]
    pub resync_interval: Duration,

    /// Elect a leader through a coordination.k8s.io Lease so only one replica writes.
    #[arg(long, env = "IRSA_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Namespace of the leader-election Lease (default: the pod's namespace).
    #[arg(long, env = "IRSA_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// Name of the leader-election Lease: two installations sharing a namespace need
    /// different names.
    #[arg(long, env = "IRSA_LEADER_ELECTION_LEASE_NAME", default_value = election::DEFAULT_LEASE_NAME)]
    pub leader_election_lease_name: String,

    /// AWS endpoint override for IAM and STS (tests point this at a local emulator).
    #[arg(long, env = "IRSA_AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,

    /// Default token audience trusted for bindings that name none.
    #[arg(long, env = "IRSA_TOKEN_AUDIENCE", default_value = mutate::config::DEFAULT_AUDIENCE)]
    pub token_audience: String,

    /// Annotation prefix written on ServiceAccounts.
    #[arg(long, env = "IRSA_ANNOTATION_PREFIX", default_value = mutate::config::DEFAULT_ANNOTATION_PREFIX)]
    pub annotation_prefix: String,

    /// The Pod Identity agent's own role (`irsa agent`): each PodIdentityAssociation's role
    /// gets a trust statement for it. Without it, associations are left alone (their status
    /// says so).
    #[arg(long, env = "IRSA_POD_IDENTITY_AGENT_ROLE_ARN", value_parser = parse_role_arn)]
    pub pod_identity_agent_role_arn: Option<String>,

    /// Plain-HTTP address serving /metrics, /healthz and /readyz.
    #[arg(long, env = "IRSA_METRICS_LISTEN", default_value = "0.0.0.0:9091")]
    pub metrics_listen: SocketAddr,

    /// Watch pods and report those whose ServiceAccount has a role but that carry no
    /// credentials (Warning Event, log, irsa_controller_uninjected_pods); needs list/watch
    /// on pods. Pods in kube-system and the controller's own namespace are not watched.
    #[arg(long, env = "IRSA_DETECT_UNINJECTED_PODS", default_value_t = true, action = clap::ArgAction::Set)]
    pub detect_uninjected_pods: bool,

    #[command(flatten)]
    pub publish: PublishArgs,
}

// Self-managed clusters: publish the issuer's discovery document and JWKS to S3.
#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    /// Mirror the API server's discovery document and JWKS to s3://BUCKET[/PREFIX] (off by
    /// default; EKS hosts its issuer itself).
    #[arg(long, env = "IRSA_PUBLISH_ISSUER", value_name = "S3_URL")]
    pub publish_issuer: Option<String>,

    /// The URL the published objects are served at, which must equal the API server's
    /// issuer byte for byte (default: https://BUCKET.s3.REGION.amazonaws.com/PREFIX).
    #[arg(long, env = "IRSA_ISSUER_PUBLIC_URL", requires = "publish_issuer")]
    pub issuer_public_url: Option<String>,

    /// Where the anonymous read-back goes (default: the public URL), e.g. the bucket's own
    /// URL behind a CDN.
    #[arg(long, env = "IRSA_ISSUER_VERIFY_URL", requires = "publish_issuer")]
    pub issuer_verify_url: Option<String>,

    /// How long a signing key stays published after the API server stopped publishing it:
    /// the longest lifetime of a token it signed, plus skew. The default covers the API
    /// server's default (tokens up to a year with --service-account-extend-token-expiration);
    /// lower it to your --service-account-max-token-expiration plus an hour.
    #[arg(long, env = "IRSA_ISSUER_KEY_RETENTION", default_value = "366d", value_parser = parse_retention)]
    pub issuer_key_retention: Duration,

    /// How often the documents are compared and, if needed, written.
    #[arg(long, env = "IRSA_ISSUER_PUBLISH_INTERVAL", default_value = "1m", value_parser = parse_interval)]
    pub issuer_publish_interval: Duration,

    /// ConfigMap (in the controller's namespace) that remembers when each key was seen, so a
    /// restart neither drops a retired key early nor keeps it forever.
    #[arg(long, env = "IRSA_ISSUER_STATE_CONFIGMAP", default_value = crate::issuer::retention::STATE_CONFIGMAP)]
    pub issuer_state_configmap: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Namespace of the ServiceAccount or Pod.
    #[arg(short = 'n', long, env = "IRSA_NAMESPACE")]
    pub namespace: Option<String>,

    /// The ServiceAccount to diagnose.
    #[arg(long, env = "IRSA_SERVICE_ACCOUNT", conflicts_with = "pod")]
    pub service_account: Option<String>,

    /// The Pod to diagnose (its ServiceAccount, and whether it was mutated).
    #[arg(long, env = "IRSA_POD")]
    pub pod: Option<String>,

    /// Offline: a token file to check against `--role-arn`.
    #[arg(long, env = "IRSA_TOKEN", requires = "role_arn", conflicts_with_all = ["service_account", "pod"])]
    pub token: Option<PathBuf>,

    /// The role to check (default: the ServiceAccount's annotation).
    #[arg(long, env = "IRSA_ROLE_ARN")]
    pub role_arn: Option<String>,

    /// Offline: read the trust policy from this file instead of `iam:GetRole`.
    #[arg(long, env = "IRSA_TRUST_POLICY")]
    pub trust_policy: Option<PathBuf>,

    /// The issuer URL (default: discovered from the API server, or the token's `iss`).
    #[arg(long, env = "IRSA_ISSUER_URL", value_parser = IssuerUrl::parse)]
    pub issuer_url: Option<IssuerUrl>,

    /// Extra PEM root CA(s) for reaching a self-managed issuer over HTTPS (STS itself only
    /// trusts public CAs, so the doctor warns when this is needed).
    #[arg(long, env = "IRSA_ISSUER_CA_FILE")]
    pub issuer_ca_file: Option<PathBuf>,

    /// Also call sts:AssumeRoleWithWebIdentity with a fresh token.
    #[arg(long, env = "IRSA_ASSUME", default_value_t = false)]
    pub assume: bool,

    /// Report format.
    #[arg(short = 'o', long, env = "IRSA_OUTPUT", value_enum, default_value_t = ReportFormat::Text)]
    pub output: ReportFormat,

    /// AWS endpoint override for IAM and STS.
    #[arg(long, env = "IRSA_AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,

    /// Annotation prefix of the ServiceAccount annotations.
    #[arg(long, env = "IRSA_ANNOTATION_PREFIX", default_value = mutate::config::DEFAULT_ANNOTATION_PREFIX)]
    pub annotation_prefix: String,

    /// Audience assumed when the SA has no `<prefix>/audience`.
    #[arg(long, env = "IRSA_TOKEN_AUDIENCE", default_value = mutate::config::DEFAULT_AUDIENCE)]
    pub token_audience: String,

    /// Namespace of irsa controller, where its issuer publisher keeps its status.
    #[arg(long, env = "IRSA_IRSA_NAMESPACE", default_value = "irsa-system")]
    pub irsa_namespace: String,

    /// Also check this MutatingWebhookConfiguration (the chart's is `irsa-webhook`): its
    /// caBundle against the certificate served now, its ready endpoints, and a dry-run pod of
    /// the ServiceAccount through it (needs create on pods; nothing is stored).
    #[arg(long, env = "IRSA_WEBHOOK_CONFIGURATION")]
    pub webhook_configuration: Option<String>,

    /// The issuer publisher's state ConfigMap there (the controller's flag of the same name).
    #[arg(long, env = "IRSA_ISSUER_STATE_CONFIGMAP", default_value = crate::issuer::retention::STATE_CONFIGMAP)]
    pub issuer_state_configmap: String,

    /// Pod Identity (a ServiceAccount with a PodIdentityAssociation): also ask the agent at
    /// this URL for the pod's credentials with a token bound to the pod (from the pod's node,
    /// http://169.254.170.23/v1/credentials; through a port-forward, its local address).
    /// Only the account and expiry of the answer are printed.
    #[arg(long, env = "IRSA_AGENT_URL")]
    pub agent_url: Option<String>,

    /// Pod Identity: the agent's IAM role, trusted by the associated role (default: the
    /// AWS_ROLE_ARN of the agent's pod in --irsa-namespace).
    #[arg(long, env = "IRSA_AGENT_ROLE_ARN")]
    pub agent_role_arn: Option<String>,

    /// Pod Identity: the cluster name the agent tags sessions with (default: the agent pod's
    /// --cluster-name).
    #[arg(long, env = "IRSA_CLUSTER_NAME")]
    pub cluster_name: Option<String>,

    /// Pod Identity: the audience of the agent's tokens.
    #[arg(long, env = "IRSA_CONTAINER_CREDENTIALS_AUDIENCE", default_value = mutate::config::DEFAULT_CC_AUDIENCE)]
    pub container_credentials_audience: String,
}

#[derive(Debug, Args)]
pub struct TrustPolicyArgs {
    /// The service-account issuer URL (`https://` optional).
    #[arg(long, env = "IRSA_ISSUER_URL")]
    pub issuer: String,

    /// ARN of the IAM OIDC provider for that issuer.
    #[arg(long, env = "IRSA_PROVIDER_ARN")]
    pub provider_arn: String,

    /// A subject to trust, `namespace:serviceaccount` (repeatable).
    #[arg(long = "subject", env = "IRSA_SUBJECTS", value_delimiter = ',')]
    pub subjects: Vec<String>,

    /// Audience of these subjects.
    #[arg(long, env = "IRSA_TOKEN_AUDIENCE", default_value = mutate::config::DEFAULT_AUDIENCE)]
    pub audience: String,

    /// The role's current trust policy (JSON, plain or URL-encoded as GetRole returns it).
    #[arg(long, env = "IRSA_CURRENT")]
    pub current: Option<PathBuf>,

    /// Size quota in characters, whitespace excluded.
    #[arg(long, env = "IRSA_TRUST_POLICY_MAX_CHARS", default_value_t = 2048)]
    pub max_chars: usize,

    /// A namespace whose subjects may be collapsed to `system:serviceaccount:<ns>:*`.
    #[arg(
        long = "allow-namespace-wildcard",
        env = "IRSA_ALLOW_NAMESPACE_WILDCARD",
        value_delimiter = ','
    )]
    pub allow_namespace_wildcard: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CrdArgs {}

/// A value that must not be empty or blank (a path, a name, an audience): an empty one only
/// yields pods the API server refuses.
fn non_empty(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(s.to_string())
    }
}

/// An IAM role ARN (`arn:<partition>:iam::<account>:role/<path/name>`), kept as written.
fn parse_role_arn(s: &str) -> Result<String, String> {
    crate::arn::RoleArn::parse(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("{s:?} {e}"))
}

/// Parses a duration as humantime spells it (`300ms`, `5s`, `10m`, `1h30m`) or a bare number
/// of seconds (`7`), and keeps it within `(0, max]`: a zero period panics
/// `tokio::time::interval`, and a period of centuries is a typo, not a setting.
fn parse_bounded(s: &str, max: Duration) -> Result<Duration, String> {
    let s = s.trim();
    let d = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("{s:?} is too large (at most {})", human(max)))?
    } else {
        humantime::parse_duration(s)
            .map_err(|e| format!("{s:?} is not a duration like 300ms, 5s, 10m or 1h30m ({e})"))?
    };
    if d.is_zero() {
        return Err(format!("{s:?}: must be more than zero"));
    }
    if d > max {
        return Err(format!("{s:?} is too long: at most {}", human(max)));
    }
    Ok(d)
}

fn human(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(d)
}

/// The longest `--sa-lookup-timeout`: the API server waits at most 30s for a webhook.
pub const MAX_LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest polling or resync period.
pub const MAX_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);

/// `--sa-lookup-timeout`: more than zero, at most [`MAX_LOOKUP_TIMEOUT`].
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    parse_bounded(s, MAX_LOOKUP_TIMEOUT)
}

/// A period fed to `tokio::time::interval`: more than zero, at most [`MAX_INTERVAL`].
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    parse_bounded(s, MAX_INTERVAL)
}

/// `--token-review-cache`: 0 (off) to 15 minutes.
pub fn parse_token_review_cache(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" || humantime::parse_duration(t).is_ok_and(|d| d.is_zero()) {
        return Ok(Duration::ZERO);
    }
    parse_bounded(s, Duration::from_secs(900))
}

/// `--session-duration`: STS's bounds for a chained role session, 15 minutes to one hour.
pub fn parse_session_duration(s: &str) -> Result<Duration, String> {
    let d = parse_bounded(s, Duration::from_secs(3600))?;
    if d < Duration::from_secs(900) {
        return Err(format!("{} is below STS's minimum of 15m", human(d)));
    }
    Ok(d)
}

/// `--tls-*-validity`, `--tls-ca-overlap`: more than zero, at most [`MAX_RETENTION`].
pub fn parse_validity(s: &str) -> Result<Duration, String> {
    parse_bounded(s, MAX_RETENTION)
}

/// The longest `--issuer-key-retention`: ten years, far beyond any token lifetime.
pub const MAX_RETENTION: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

/// `--issuer-key-retention`: more than zero, at most [`MAX_RETENTION`].
pub fn parse_retention(s: &str) -> Result<Duration, String> {
    parse_bounded(s, MAX_RETENTION)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_timeout("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_interval("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_interval("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_interval("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_interval("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_interval(" 7 "), Ok(Duration::from_secs(7)));
        assert!(parse_interval("soon").is_err());
        assert!(parse_interval("").is_err());
        assert!(parse_interval("-1s").is_err());
        assert_eq!(parse_token_review_cache("0"), Ok(Duration::ZERO));
        assert_eq!(parse_token_review_cache("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_token_review_cache("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_token_review_cache("1h").is_err());
    }

    #[test]
    fn empty_paths_and_names_are_refused() {
        use clap::Parser as _;
        let base = ["irsa", "mutate", "-f", "pod.yaml"];
        for flag in [
            "--token-mount-path",
            "--annotation-prefix",
            "--token-audience",
            "--container-credentials-mount-path",
            "--container-credentials-volume-name",
            "--container-credentials-token-path",
        ] {
            for value in ["", "  "] {
                let err =
                    Cli::try_parse_from(base.iter().copied().chain([flag, value])).expect_err(flag);
                assert_eq!(err.exit_code(), 2, "{flag}");
                assert!(
                    err.to_string().contains("must not be empty"),
                    "{flag}: {err}"
                );
            }
        }
        let err = Cli::try_parse_from(
            base.iter()
                .copied()
                .chain(["--token-expiration", "4294967297"]),
        )
        .expect_err("over 2^32");
        assert_eq!(err.exit_code(), 2);
        assert!(
            Cli::try_parse_from(
                base.iter()
                    .copied()
                    .chain(["--token-expiration", "4294967296"])
            )
            .is_ok()
        );
    }

    #[test]
    fn zero_and_absurd_durations_are_refused() {
        for zero in ["0", "0s", "0ms", "0h"] {
            let err = parse_interval(zero).unwrap_err();
            assert!(err.contains("more than zero"), "{zero}: {err}");
            assert!(parse_timeout(zero).is_err());
        }
        // 99999999999999h overflowed the old parser's `n * 3600`.
        for absurd in [
            "99999999999999h",
            "99999999999999999999",
            "18446744073709551615s",
            "8d",
        ] {
            let err = parse_interval(absurd).unwrap_err();
            assert!(
                err.contains("too l") || err.contains("not a duration"),
                "{absurd}: {err}"
            );
        }
        assert!(parse_timeout("31s").is_err());
        assert_eq!(parse_timeout("30s"), Ok(MAX_LOOKUP_TIMEOUT));
        assert_eq!(parse_interval("7d"), Ok(MAX_INTERVAL));
    }
}
