//! I/O adapter over IAM and STS: the only place the controller talks to AWS.
//!
//! Every call is counted in `irsa_controller_iam_calls_total{operation,outcome}` (one count
//! per API call as the controller sees it, i.e. after the SDK's own retries). Retries: the
//! SDK's standard strategy in *adaptive* mode, whatever the given `SdkConfig` says, so
//! throttling slows this client down instead of hammering IAM; the reconcilers add their own
//! requeue with backoff and jitter on top of [`Error::is_retryable`] errors.
//!
//! What the adapter guarantees, so the reconcilers need not:
//! - the trust policy text is the exact bytes IAM holds (GetRole's URL-encoding undone,
//!   nothing re-serialized), so foreign statements survive a read-modify-write untouched;
//! - a role is only read/written when IAM's ARN for that name is the requested ARN (GetRole
//!   looks roles up by name, so a wrong account or path would otherwise hit another role);
//! - OIDC providers are matched on the byte-exact issuer URL, near misses (case, trailing `/`)
//!   are reported and never adopted; client IDs and thumbprints are only ever added, a
//!   provider is never deleted, and the `irsa.dev/cluster` tag is only put on providers
//!   this controller creates — that tag is how ownership is recognised later.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_iam::config::retry::{RetryConfig, RetryMode};
use aws_sdk_iam::config::timeout::TimeoutConfig;
use aws_sdk_iam::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use tracing::{debug, info};

use super::metrics::Metrics;
use crate::arn::RoleArn;

/// Tag put on OIDC providers the controller creates (value: `--cluster-name`); also the role
/// tag that restricts `irsa.dev/allowed-namespaces` to one cluster.
pub const CLUSTER_TAG: &str = super::policy::authz::CLUSTER_TAG;
/// IAM accepts at most 5 thumbprints per provider.
const MAX_THUMBPRINTS: usize = 5;
/// Attempts per API call (first try included) of the production config.
const MAX_ATTEMPTS: u32 = 8;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{resource} does not exist ({service}:{operation}); create it or fix the reference")]
    NotFound {
        service: &'static str,
        operation: &'static str,
        resource: String,
    },
    #[error(
        "role {requested}: IAM's role of that name is {actual}; fix the roleArn's account or path \
         (the controller manages roles of the account its credentials belong to)"
    )]
    RoleMismatch { requested: String, actual: String },
    #[error(
        "issuer URL {issuer:?} does not start with https://; IAM OIDC providers need an https \
         issuer: set --issuer-url to the cluster's service-account issuer"
    )]
    InvalidIssuer { issuer: String },
    #[error(
        "{service}:{operation} on {resource} was denied: {message}; give the controller the IAM \
         policy in config/ (README: Controller: IAM permissions)"
    )]
    AccessDenied {
        service: &'static str,
        operation: &'static str,
        resource: String,
        message: String,
    },
    #[error("IAM rejected the trust policy of {resource} ({operation}): {message}")]
    MalformedPolicy {
        operation: &'static str,
        resource: String,
        message: String,
    },
    #[error(
        "{service}:{operation} on {resource} hit an IAM quota: {message}; raise the quota \
         (Service Quotas) or bind fewer subjects to it"
    )]
    LimitExceeded {
        service: &'static str,
        operation: &'static str,
        resource: String,
        message: String,
    },
    #[error("{resource} already exists ({service}:{operation})")]
    AlreadyExists {
        service: &'static str,
        operation: &'static str,
        resource: String,
    },
    #[error(
        "{service}:{operation} on {resource} is still throttled after the SDK's retries: \
         {message}; retrying later with backoff"
    )]
    Throttled {
        service: &'static str,
        operation: &'static str,
        resource: String,
        message: String,
    },
    #[error(
        "{service}:{operation} on {resource} timed out after the SDK's retries; check the network \
         path to the AWS endpoint (--aws-endpoint-url)"
    )]
    Timeout {
        service: &'static str,
        operation: &'static str,
        resource: String,
    },
    #[error(
        "could not reach AWS for {service}:{operation} on {resource}: {message}; check the \
         network path and --aws-endpoint-url"
    )]
    Transport {
        service: &'static str,
        operation: &'static str,
        resource: String,
        message: String,
    },
    #[error(
        "{service}:{operation} on {resource} failed on AWS's side ({code}): {message}; retrying \
         later with backoff"
    )]
    ServerError {
        service: &'static str,
        operation: &'static str,
        resource: String,
        code: String,
        message: String,
    },
    #[error("{service}:{operation} on {resource} failed: {code}: {message}")]
    Api {
        service: &'static str,
        operation: &'static str,
        resource: String,
        code: String,
        message: String,
    },
    #[error(
        "the trust policy of role {role} was changed by another writer after each of our {writes} \
         writes; retrying later with backoff (is a second controller or a Terraform run also \
         managing this role's statement for this issuer?)"
    )]
    Contended { role: String, writes: u32 },
    #[error("unexpected answer from {service}:{operation} on {resource}: {detail}")]
    Unexpected {
        service: &'static str,
        operation: &'static str,
        resource: String,
        detail: String,
    },
}

impl Error {
    /// The `outcome` label of `irsa_controller_iam_calls_total` and of error metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not_found",
            Error::RoleMismatch { .. } => "role_mismatch",
            Error::InvalidIssuer { .. } => "invalid_issuer",
            Error::AccessDenied { .. } => "access_denied",
            Error::MalformedPolicy { .. } => "malformed_policy",
            Error::LimitExceeded { .. } => "limit_exceeded",
            Error::AlreadyExists { .. } => "already_exists",
            Error::Throttled { .. } => "throttled",
            Error::Timeout { .. } => "timeout",
            Error::Transport { .. } => "transport",
            Error::ServerError { .. } => "server_error",
            Error::Api { .. } => "api_error",
            Error::Contended { .. } => "contended",
            Error::Unexpected { .. } => "unexpected",
        }
    }

    /// Worth retrying later unchanged (the SDK already retried these a few times).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Throttled { .. }
                | Error::Timeout { .. }
                | Error::Transport { .. }
                | Error::ServerError { .. }
                | Error::Contended { .. }
        )
    }
}

/// Maps an SDK error to [`Error`] by what the caller can do about it.
fn classify<E>(
    service: &'static str,
    operation: &'static str,
    resource: &str,
    err: SdkError<E>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let resource = resource.to_string();
    match &err {
        SdkError::TimeoutError(_) => {
            return Error::Timeout {
                service,
                operation,
                resource,
            };
        }
        SdkError::DispatchFailure(f) if f.is_timeout() => {
            return Error::Timeout {
                service,
                operation,
                resource,
            };
        }
        SdkError::DispatchFailure(_) => {
            return Error::Transport {
                service,
                operation,
                resource,
                message: DisplayErrorContext(&err).to_string(),
            };
        }
        _ => {}
    }
    let code = err.code().unwrap_or_default().to_string();
    let message = err.message().unwrap_or_default().to_string();
    let status = err.raw_response().map(|r| r.status().as_u16());
    match code.as_str() {
        "NoSuchEntity" => Error::NotFound {
            service,
            operation,
            resource,
        },
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" => Error::AccessDenied {
            service,
            operation,
            resource,
            message,
        },
        "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "TooManyRequests" => {
            Error::Throttled {
                service,
                operation,
                resource,
                message,
            }
        }
        "MalformedPolicyDocument" => Error::MalformedPolicy {
            operation,
            resource,
            message,
        },
        "LimitExceeded" | "PackedPolicyTooLarge" => Error::LimitExceeded {
            service,
            operation,
            resource,
            message,
        },
        "EntityAlreadyExists" => Error::AlreadyExists {
            service,
            operation,
            resource,
        },
        _ if status.is_some_and(|s| s >= 500) || code == "ServiceFailure" => Error::ServerError {
            service,
            operation,
            resource,
            code,
            message,
        },
        "" => Error::Unexpected {
            service,
            operation,
            resource,
            detail: DisplayErrorContext(&err).to_string(),
        },
        _ => Error::Api {
            service,
            operation,
            resource,
            code,
            message,
        },
    }
}

/// Who the controller's credentials are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    pub account: String,
    /// `aws`, `aws-cn`, `aws-us-gov`, ...: the first field of the caller's ARN.
    pub partition: String,
    pub arn: String,
}

/// A role as GetRole returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleTrust {
    pub arn: RoleArn,
    pub role_id: String,
    /// The trust policy exactly as IAM stores it (URL-decoded, never re-serialized).
    pub document: String,
    pub tags: BTreeMap<String, String>,
}

/// An IAM OIDC identity provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcProvider {
    pub arn: String,
    /// IAM's URL: the issuer without `https://`.
    pub url: String,
    pub client_ids: Vec<String>,
    pub thumbprints: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

impl OidcProvider {
    /// Created by this controller for `cluster` (only those carry our tag).
    pub fn created_by(&self, cluster: &str) -> bool {
        self.tags.get(CLUSTER_TAG).is_some_and(|v| v == cluster)
    }
}

/// The result of looking for the provider of one issuer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderLookup {
    /// The provider whose URL is byte-for-byte the issuer's (minus `https://`).
    pub provider: Option<OidcProvider>,
    /// ARNs of providers whose URL differs only in case or a trailing `/`: almost certainly
    /// meant for this issuer, but IAM compares exactly, so tokens will not match them.
    pub near_misses: Vec<String>,
}

/// What the OIDC provider must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSpec {
    /// The issuer URL, `https://...`, exactly as in the tokens' `iss`.
    pub issuer: String,
    /// Every audience in use; added when missing, never removed.
    pub client_ids: Vec<String>,
    /// SHA-1 hex of the issuer's top CA certificate, when it could be computed.
    pub thumbprint: Option<String>,
    /// `--cluster-name`, the value of the `irsa.dev/cluster` tag on a created provider.
    pub cluster: String,
}

/// What [`Aws::ensure_oidc_provider`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderOutcome {
    /// The provider as it now is in IAM.
    pub provider: OidcProvider,
    pub created: bool,
    pub added_client_ids: Vec<String>,
    pub thumbprint_updated: bool,
    pub near_misses: Vec<String>,
}

impl ProviderOutcome {
    /// How many IAM writes the ensure made (0 at steady state).
    pub fn writes(&self) -> usize {
        usize::from(self.created)
            + self.added_client_ids.len()
            + usize::from(self.thumbprint_updated)
    }
}

/// Bounds of [`Aws::converge_trust`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvergeOptions {
    /// Writes per call before giving up with [`Error::Contended`].
    pub max_writes: u32,
    /// The n-th rewrite waits a random time in `[0, base_backoff * 2^(n-1)]` (full jitter), so
    /// two writers that keep undoing each other drift apart instead of alternating in step.
    pub base_backoff: Duration,
}

impl Default for ConvergeOptions {
    fn default() -> Self {
        Self {
            max_writes: 4,
            base_backoff: Duration::from_millis(500),
        }
    }
}

/// What [`Aws::converge_trust`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustOutcome {
    /// UpdateAssumeRolePolicy calls made (0 when the role already matched).
    pub writes: u32,
    /// The role as last read, on which `plan` asked for no change.
    pub trust: RoleTrust,
}

/// IAM's URL for an issuer: the issuer without its `https://`. Nothing else is normalised:
/// IAM and STS compare the token's `iss` byte for byte.
pub fn provider_url(issuer: &str) -> Result<&str> {
    issuer
        .strip_prefix("https://")
        .filter(|rest| !rest.is_empty())
        .ok_or_else(|| Error::InvalidIssuer {
            issuer: issuer.to_string(),
        })
}

/// The ARN IAM gives the provider of `issuer` in `account`.
pub fn provider_arn(partition: &str, account: &str, issuer: &str) -> Result<String> {
    Ok(format!(
        "arn:{partition}:iam::{account}:oidc-provider/{}",
        provider_url(issuer)?
    ))
}

/// GetRole's `AssumeRolePolicyDocument` is URL-encoded (RFC 3986: `%20` for a space, `+`
/// stays `+`); the SDK hands it over as received. An encoded document never contains a raw
/// `{` (it is always escaped), so text that does is already plain JSON (some emulators and
/// proxies decode it) and is returned unchanged rather than decoded twice.
pub fn decode_policy_document(raw: &str) -> std::result::Result<String, String> {
    if raw.contains('{') {
        return Ok(raw.to_string());
    }
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|e| format!("trust policy is not UTF-8 after URL-decoding: {e}"))
}

fn tags_to_map(tags: &[aws_sdk_iam::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

/// The production `SdkConfig`: region from the usual chain (IAM is global; STS needs one, so
/// us-east-1 when none is configured), adaptive retries, bounded attempts, and the endpoint
/// override (`--aws-endpoint-url`; the SDK also honours `AWS_ENDPOINT_URL` by itself).
pub async fn load_sdk_config(endpoint_url: Option<&str>) -> SdkConfig {
    let region = aws_config::meta::region::RegionProviderChain::default_provider()
        .or_else(Region::new("us-east-1"));
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .retry_config(RetryConfig::adaptive().with_max_attempts(MAX_ATTEMPTS))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(20))
                .operation_timeout(Duration::from_secs(120))
                .build(),
        );
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// The IAM/STS adapter. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Aws {
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
    metrics: Metrics,
}

impl Aws {
    /// Clients on `sdk` with its retry settings (attempts, backoff) switched to adaptive mode.
    pub fn new(sdk: &SdkConfig, metrics: Metrics) -> Self {
        let retry = sdk
            .retry_config()
            .cloned()
            .unwrap_or_else(RetryConfig::standard)
            .with_retry_mode(RetryMode::Adaptive);
        let iam = aws_sdk_iam::config::Builder::from(sdk)
            .retry_config(retry.clone())
            .build();
        let sts = aws_sdk_sts::config::Builder::from(sdk)
            .retry_config(retry)
            .build();
        Self {
            iam: aws_sdk_iam::Client::from_conf(iam),
            sts: aws_sdk_sts::Client::from_conf(sts),
            metrics,
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn count<T>(&self, operation: &'static str, result: &Result<T>) {
        let outcome = match result {
            Ok(_) => "success",
            Err(e) => e.metric_label(),
        };
        self.metrics.count_iam_call(operation, outcome);
    }

    /// sts:GetCallerIdentity → account and partition.
    pub async fn caller_identity(&self) -> Result<CallerIdentity> {
        const OP: &str = "GetCallerIdentity";
        let result = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| classify("sts", OP, "the controller's credentials", e))
            .and_then(|out| {
                let unexpected = |detail: &str| Error::Unexpected {
                    service: "sts",
                    operation: OP,
                    resource: "the controller's credentials".into(),
                    detail: detail.to_string(),
                };
                let arn = out.arn().ok_or_else(|| unexpected("no Arn"))?;
                let partition = arn
                    .strip_prefix("arn:")
                    .and_then(|r| r.split(':').next())
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| unexpected(&format!("Arn {arn:?} is not an ARN")))?;
                let account = out.account().ok_or_else(|| unexpected("no Account"))?;
                Ok(CallerIdentity {
                    account: account.to_string(),
                    partition: partition.to_string(),
                    arn: arn.to_string(),
                })
            });
        self.count(OP, &result);
        result
    }

    /// iam:GetRole → the role's trust policy (exact text) and tags.
    pub async fn get_role_trust(&self, role: &RoleArn) -> Result<RoleTrust> {
        const OP: &str = "GetRole";
        let resource = format!("role {role}");
        let result = self
            .iam
            .get_role()
            .role_name(&role.name)
            .send()
            .await
            .map_err(|e| classify("iam", OP, &resource, e))
            .and_then(|out| {
                let unexpected = |detail: String| Error::Unexpected {
                    service: "iam",
                    operation: OP,
                    resource: resource.clone(),
                    detail,
                };
                let r = out.role().ok_or_else(|| unexpected("no Role".into()))?;
                let arn = RoleArn::parse(r.arn())
                    .map_err(|e| unexpected(format!("role ARN {:?} {e}", r.arn())))?;
                if arn != *role {
                    return Err(Error::RoleMismatch {
                        requested: role.to_string(),
                        actual: arn.to_string(),
                    });
                }
                let raw = r
                    .assume_role_policy_document()
                    .ok_or_else(|| unexpected("no AssumeRolePolicyDocument".into()))?;
                Ok(RoleTrust {
                    arn,
                    role_id: r.role_id().to_string(),
                    document: decode_policy_document(raw).map_err(unexpected)?,
                    tags: tags_to_map(r.tags()),
                })
            });
        self.count(OP, &result);
        result
    }

    /// iam:ListRoleTags, all pages.
    pub async fn list_role_tags(&self, role: &RoleArn) -> Result<BTreeMap<String, String>> {
        const OP: &str = "ListRoleTags";
        let resource = format!("role {role}");
        let mut tags = BTreeMap::new();
        let mut marker: Option<String> = None;
        loop {
            let result = self
                .iam
                .list_role_tags()
                .role_name(&role.name)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| classify("iam", OP, &resource, e));
            self.count(OP, &result);
            let out = result?;
            tags.extend(tags_to_map(out.tags()));
            match out.marker() {
                Some(m) if out.is_truncated() => marker = Some(m.to_string()),
                _ => return Ok(tags),
            }
        }
    }

    /// iam:UpdateAssumeRolePolicy with `document` sent exactly as given. Callers read the role
    /// with [`Self::get_role_trust`] first, which checks the ARN (UpdateAssumeRolePolicy
    /// addresses the role by name only).
    pub async fn update_trust(&self, role: &RoleArn, document: &str) -> Result<()> {
        const OP: &str = "UpdateAssumeRolePolicy";
        let result = self
            .iam
            .update_assume_role_policy()
            .role_name(&role.name)
            .policy_document(document)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("iam", OP, &format!("role {role}"), e));
        self.count(OP, &result);
        if result.is_ok() {
            info!(%role, chars = document.len(), "updated trust policy");
        }
        result
    }

    /// Read → plan → write → read again, until `plan` is satisfied with what IAM holds.
    ///
    /// `plan` gets the role as IAM has it now and returns the document to write, `None` when
    /// nothing needs to change, or its own error (e.g. the policy would exceed the quota),
    /// which is handed back as the inner `Err` with nothing written. Every write is followed by
    /// a re-read on which `plan` must return `None`: IAM has no conditional write, so this is
    /// how another writer's interference is noticed; then the write is redone after a
    /// jittered backoff, up to `options.max_writes`, and [`Error::Contended`] after that.
    /// Another writer's change that lands between our read and our write is overwritten;
    /// reading immediately before writing keeps that window to one round trip.
    pub async fn converge_trust<E>(
        &self,
        role: &RoleArn,
        options: ConvergeOptions,
        mut plan: impl FnMut(&RoleTrust) -> std::result::Result<Option<String>, E>,
    ) -> Result<std::result::Result<TrustOutcome, E>> {
        let mut writes = 0u32;
        loop {
            let trust = self.get_role_trust(role).await?;
            let document = match plan(&trust) {
                Err(e) => return Ok(Err(e)),
                Ok(None) => return Ok(Ok(TrustOutcome { writes, trust })),
                Ok(Some(d)) => d,
            };
            if writes >= options.max_writes {
                return Err(Error::Contended {
                    role: role.to_string(),
                    writes,
                });
            }
            if writes > 0 {
                let cap = options
                    .base_backoff
                    .saturating_mul(1 << (writes - 1).min(16))
                    .as_millis();
                let wait = rand::random_range(0..=u64::try_from(cap).unwrap_or(u64::MAX));
                debug!(%role, writes, wait_ms = wait, "trust policy changed under us; rewriting");
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            self.update_trust(role, &document).await?;
            writes += 1;
        }
    }

    /// The provider for `issuer` (byte-exact URL), plus near misses.
    pub async fn find_oidc_provider(&self, issuer: &str) -> Result<ProviderLookup> {
        const OP: &str = "ListOpenIDConnectProviders";
        let url = provider_url(issuer)?;
        let result = self
            .iam
            .list_open_id_connect_providers()
            .send()
            .await
            .map_err(|e| classify("iam", OP, "the account's OIDC providers", e));
        self.count(OP, &result);
        let mut exact = None;
        let mut near_misses = Vec::new();
        for arn in result?
            .open_id_connect_provider_list()
            .iter()
            .filter_map(|p| p.arn())
        {
            let Some((_, their_url)) = arn.split_once(":oidc-provider/") else {
                continue;
            };
            if their_url == url {
                exact = Some(arn.to_string());
            } else if their_url
                .trim_end_matches('/')
                .eq_ignore_ascii_case(url.trim_end_matches('/'))
            {
                near_misses.push(arn.to_string());
            }
        }
        let provider = match exact {
            Some(arn) => Some(self.get_oidc_provider(&arn).await?),
            None => None,
        };
        Ok(ProviderLookup {
            provider,
            near_misses,
        })
    }

    /// iam:GetOpenIDConnectProvider.
    pub async fn get_oidc_provider(&self, arn: &str) -> Result<OidcProvider> {
        const OP: &str = "GetOpenIDConnectProvider";
        let result = self
            .iam
            .get_open_id_connect_provider()
            .open_id_connect_provider_arn(arn)
            .send()
            .await
            .map_err(|e| classify("iam", OP, &format!("OIDC provider {arn}"), e))
            .map(|out| OidcProvider {
                arn: arn.to_string(),
                url: out.url().unwrap_or_default().to_string(),
                client_ids: out.client_id_list().to_vec(),
                thumbprints: out.thumbprint_list().to_vec(),
                tags: tags_to_map(out.tags()),
            });
        self.count(OP, &result);
        result
    }

    /// iam:CreateOpenIDConnectProvider tagged `irsa.dev/cluster=<cluster>`.
    pub async fn create_oidc_provider(&self, spec: &ProviderSpec) -> Result<String> {
        const OP: &str = "CreateOpenIDConnectProvider";
        provider_url(&spec.issuer)?;
        let resource = format!("OIDC provider for {}", spec.issuer);
        let tag = aws_sdk_iam::types::Tag::builder()
            .key(CLUSTER_TAG)
            .value(&spec.cluster)
            .build()
            .map_err(|e| Error::Unexpected {
                service: "iam",
                operation: OP,
                resource: resource.clone(),
                detail: e.to_string(),
            })?;
        let result = self
            .iam
            .create_open_id_connect_provider()
            .url(&spec.issuer)
            .set_client_id_list(Some(sorted_unique(&spec.client_ids)))
            .set_thumbprint_list(spec.thumbprint.clone().map(|t| vec![t]))
            .tags(tag)
            .send()
            .await
            .map_err(|e| classify("iam", OP, &resource, e))
            .and_then(|out| {
                out.open_id_connect_provider_arn()
                    .map(str::to_string)
                    .ok_or_else(|| Error::Unexpected {
                        service: "iam",
                        operation: OP,
                        resource: resource.clone(),
                        detail: "no OpenIDConnectProviderArn".into(),
                    })
            });
        self.count(OP, &result);
        result
    }

    /// iam:AddClientIDToOpenIDConnectProvider for each wanted ID the provider lacks; returns
    /// those added. Never removes one: others (eksctl, Terraform, humans) may rely on them.
    pub async fn add_client_ids(
        &self,
        provider: &OidcProvider,
        wanted: &[String],
    ) -> Result<Vec<String>> {
        const OP: &str = "AddClientIDToOpenIDConnectProvider";
        let mut added = Vec::new();
        for id in sorted_unique(wanted) {
            if provider.client_ids.contains(&id) {
                continue;
            }
            let result = self
                .iam
                .add_client_id_to_open_id_connect_provider()
                .open_id_connect_provider_arn(&provider.arn)
                .client_id(&id)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify("iam", OP, &format!("OIDC provider {}", provider.arn), e));
            self.count(OP, &result);
            result?;
            added.push(id);
        }
        Ok(added)
    }

    /// Puts `thumbprint` first in the provider's list unless present; keeps the others (up to
    /// IAM's 5) since they may be pins someone else relies on. Returns whether it wrote.
    pub async fn update_thumbprint(
        &self,
        provider: &OidcProvider,
        thumbprint: &str,
    ) -> Result<bool> {
        const OP: &str = "UpdateOpenIDConnectProviderThumbprint";
        let thumbprint = thumbprint.to_ascii_lowercase();
        if provider
            .thumbprints
            .iter()
            .any(|t| t.eq_ignore_ascii_case(&thumbprint))
        {
            return Ok(false);
        }
        let list: Vec<String> = std::iter::once(thumbprint)
            .chain(provider.thumbprints.iter().cloned())
            .take(MAX_THUMBPRINTS)
            .collect();
        let result = self
            .iam
            .update_open_id_connect_provider_thumbprint()
            .open_id_connect_provider_arn(&provider.arn)
            .set_thumbprint_list(Some(list))
            .send()
            .await
            .map(|_| true)
            .map_err(|e| classify("iam", OP, &format!("OIDC provider {}", provider.arn), e));
        self.count(OP, &result);
        result
    }

    /// Makes the provider for `spec.issuer` exist with every client ID and the thumbprint.
    /// Reads first and writes only what is missing: at steady state this is two reads, zero
    /// writes. Safe to repeat after any failure: a create whose answer was lost (timeout after
    /// IAM applied it) comes back as EntityAlreadyExists and is continued as an update.
    pub async fn ensure_oidc_provider(&self, spec: &ProviderSpec) -> Result<ProviderOutcome> {
        let lookup = self.find_oidc_provider(&spec.issuer).await?;
        let (mut provider, created) = match lookup.provider {
            Some(p) => (p, false),
            None => match self.create_oidc_provider(spec).await {
                Ok(arn) => (self.get_oidc_provider(&arn).await?, true),
                Err(Error::AlreadyExists { .. }) => {
                    debug!(issuer = %spec.issuer, "provider appeared meanwhile; updating it instead");
                    let again = self.find_oidc_provider(&spec.issuer).await?;
                    match again.provider {
                        Some(p) => (p, false),
                        None => {
                            return Err(Error::Unexpected {
                                service: "iam",
                                operation: "CreateOpenIDConnectProvider",
                                resource: format!("OIDC provider for {}", spec.issuer),
                                detail: "EntityAlreadyExists, but no provider has that URL".into(),
                            });
                        }
                    }
                }
                Err(e) => return Err(e),
            },
        };
        let added_client_ids = self.add_client_ids(&provider, &spec.client_ids).await?;
        provider.client_ids.extend(added_client_ids.iter().cloned());
        let mut thumbprint_updated = false;
        if let Some(t) = &spec.thumbprint {
            thumbprint_updated = self.update_thumbprint(&provider, t).await?;
            if thumbprint_updated {
                provider.thumbprints.insert(0, t.to_ascii_lowercase());
                provider.thumbprints.truncate(MAX_THUMBPRINTS);
            }
        }
        if created {
            info!(arn = %provider.arn, "created OIDC provider");
        }
        Ok(ProviderOutcome {
            provider,
            created,
            added_client_ids,
            thumbprint_updated,
            near_misses: lookup.near_misses,
        })
    }
}

fn sorted_unique(ids: &[String]) -> Vec<String> {
    let mut v = ids.to_vec();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_url_only_strips_the_scheme() {
        assert_eq!(
            provider_url("https://oidc.eks.eu-west-1.amazonaws.com/id/ABC").unwrap(),
            "oidc.eks.eu-west-1.amazonaws.com/id/ABC"
        );
        // Trailing slash and case are kept: IAM compares them.
        assert_eq!(
            provider_url("https://Issuer.example/").unwrap(),
            "Issuer.example/"
        );
        for bad in [
            "http://issuer.example",
            "issuer.example",
            "https://",
            "HTTPS://x",
        ] {
            assert!(
                matches!(provider_url(bad), Err(Error::InvalidIssuer { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            provider_arn("aws-cn", "123456789012", "https://k8s.example/x").unwrap(),
            "arn:aws-cn:iam::123456789012:oidc-provider/k8s.example/x"
        );
    }

    #[test]
    fn policy_documents_are_url_decoded_exactly_once() {
        let plain = r#"{"Version":"2012-10-17","Statement":[{"Sid":"a+b %41 é"}]}"#;
        // RFC 3986 encoding as IAM does it: `+` and `%` escaped, `/` kept.
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Sid%22%3A%22a%2Bb%20%2541%20%C3%A9%22%7D%5D%7D";
        assert_eq!(decode_policy_document(encoded).unwrap(), plain);
        // Already plain (an emulator or proxy decoded it): untouched, `%41` stays.
        assert_eq!(decode_policy_document(plain).unwrap(), plain);
        assert!(decode_policy_document("%7B%FF%7D").is_err());
    }

    proptest::proptest! {
        /// Whatever a policy contains, IAM's RFC 3986 encoding (Python's `quote`, which keeps
        /// only unreserved characters and `/`) decodes back to the same bytes.
        #[test]
        fn any_encoded_document_decodes_to_itself(body in "\\PC*") {
            const IAM: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
                .remove(b'/')
                .remove(b'-')
                .remove(b'_')
                .remove(b'.')
                .remove(b'~');
            let doc = format!("{{\"Statement\":[{{\"Sid\":{body:?}}}]}}");
            let encoded = percent_encoding::utf8_percent_encode(&doc, IAM).to_string();
            proptest::prop_assert_eq!(decode_policy_document(&encoded).unwrap(), doc.clone());
            proptest::prop_assert_eq!(decode_policy_document(&doc).unwrap(), doc);
        }
    }

    #[test]
    fn errors_have_stable_metric_labels_and_retryability() {
        let e = Error::Throttled {
            service: "iam",
            operation: "GetRole",
            resource: "role x".into(),
            message: "Rate exceeded".into(),
        };
        assert_eq!(e.metric_label(), "throttled");
        assert!(e.is_retryable());
        let e = Error::AccessDenied {
            service: "iam",
            operation: "UpdateAssumeRolePolicy",
            resource: "role arn:aws:iam::111122223333:role/app".into(),
            message: "not authorized".into(),
        };
        assert_eq!(e.metric_label(), "access_denied");
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("arn:aws:iam::111122223333:role/app"));
        assert!(e.to_string().contains("config/"));
    }

    #[test]
    fn ownership_is_the_cluster_tag() {
        let mut p = OidcProvider {
            arn: "arn:aws:iam::123456789012:oidc-provider/x".into(),
            url: "x".into(),
            client_ids: vec![],
            thumbprints: vec![],
            tags: BTreeMap::new(),
        };
        assert!(!p.created_by("blue"));
        p.tags.insert(CLUSTER_TAG.into(), "blue".into());
        assert!(p.created_by("blue"));
        assert!(!p.created_by("green"));
    }
}
