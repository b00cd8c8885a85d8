//! The one AWS layer: the shared `SdkConfig`, an IAM/STS client, and who this cluster is to
//! IAM. The controller and the doctor both talk to AWS through it.
//!
//! Every call is reported to a [`CallObserver`] (the controller counts them in
//! `irsa_controller_iam_calls_total{operation,outcome}`, one per API call as the caller sees
//! it, i.e. after the SDK's own retries; the doctor observes nothing). Retries: the SDK's
//! standard strategy in *adaptive* mode, whatever the given `SdkConfig` says, so throttling
//! slows this client down instead of hammering IAM; the reconcilers add their own requeue with
//! backoff and jitter on top of [`Error::is_retryable`] errors.
//!
//! What the layer guarantees, so the reconcilers need not:
//! - the trust policy text is the exact bytes IAM holds (GetRole's URL-encoding undone,
//!   nothing re-serialized), so foreign statements survive a read-modify-write untouched;
//! - a role is only read/written when IAM's ARN for that name is the requested ARN (GetRole
//!   looks roles up by name, so a wrong account or path would otherwise hit another role);
//! - OIDC providers are matched on the byte-exact issuer URL, near misses (case, trailing `/`)
//!   are reported and never adopted; client IDs and thumbprints are only ever added, a
//!   provider is never deleted, and the [`crate::names::CLUSTER_TAG`] is only put on providers this
//!   controller creates — that tag is how ownership is recognised later.

mod error;
mod oidc;
mod role;
mod sts;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_iam::config::retry::{RetryConfig, RetryMode};
use aws_sdk_iam::config::timeout::TimeoutConfig;

pub use self::error::{Error, Result};
pub use self::oidc::{OidcProvider, ProviderLookup, ProviderOutcome, ProviderSpec};
pub use self::role::{ConvergeOptions, RoleTrust, TrustOutcome};
pub use self::sts::{AssumedRole, CallerIdentity, StsRejection};

/// Attempts per API call (first try included) of the production config.
const MAX_ATTEMPTS: u32 = 8;

/// Told the outcome of every IAM/STS call, so that metrics stay the caller's business.
pub trait CallObserver {
    /// `operation` is the API action (`UpdateAssumeRolePolicy`); `outcome` is `success` or
    /// the error's [`Error::metric_label`].
    fn observe(&self, operation: &'static str, outcome: &'static str);
}

/// Observes nothing: for callers without metrics (the doctor).
impl CallObserver for () {
    fn observe(&self, _: &'static str, _: &'static str) {}
}

fn tags_to_map(tags: &[aws_sdk_iam::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

/// The production `SdkConfig`: region from the usual chain (IAM is global; STS needs one, so
/// us-east-1 when none is configured), adaptive retries, bounded attempts (8
/// unless the SDKs' own `AWS_MAX_ATTEMPTS` says otherwise), and the endpoint override
/// (`--aws-endpoint-url`; the SDK also honours `AWS_ENDPOINT_URL` by itself).
pub async fn load_sdk_config(endpoint_url: Option<&str>) -> SdkConfig {
    let region = aws_config::meta::region::RegionProviderChain::default_provider()
        .or_else(Region::new("us-east-1"));
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(20))
                .operation_timeout(Duration::from_secs(120))
                .build(),
        );
    // Left unset, the loader reads AWS_MAX_ATTEMPTS (and AWS_RETRY_MODE; [`Aws::new`] makes
    // the mode adaptive either way).
    if std::env::var_os("AWS_MAX_ATTEMPTS").is_none() {
        loader = loader.retry_config(RetryConfig::adaptive().with_max_attempts(MAX_ATTEMPTS));
    }
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// The IAM/STS client; `O` observes every call. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Aws<O = ()> {
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
    observer: O,
}

impl<O: CallObserver> Aws<O> {
    /// Clients on `sdk` with its retry settings (attempts, backoff) switched to adaptive mode.
    pub fn new(sdk: &SdkConfig, observer: O) -> Self {
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
            observer,
        }
    }

    /// The observer given to [`Self::new`] (the controller's metrics).
    pub fn metrics(&self) -> &O {
        &self.observer
    }

    fn count<T>(&self, operation: &'static str, result: &Result<T>) {
        let outcome = match result {
            Ok(_) => "success",
            Err(e) => e.metric_label(),
        };
        self.observer.observe(operation, outcome);
    }
}
