//! The role's credentials for one pod: `sts:AssumeRole` with the agent's own credentials,
//! the pod's session name and session tags (transitive), then, with those credentials, the
//! target role when the association chains. Cached per pod and association until a margin
//! before they expire; concurrent requests for one key wait for one STS call.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_config::SdkConfig;
use aws_sdk_sts::error::ProvideErrorMetadata;
use aws_sdk_sts::primitives::DateTimeFormat;
use aws_sdk_sts::types::Tag;
use moka::Expiry;
use serde::Serialize;

use super::metrics::Metrics;
use super::refusal::{Refusal, reason};

/// Most entries kept (one per pod and association).
const MAX_ENTRIES: u64 = 100_000;
/// STS error codes that retrying does not fix: the trust policy, the tags or the request are
/// wrong. Anything else (throttling, 5xx, timeouts) is answered 503.
const REFUSALS: [&str; 5] = [
    "AccessDenied",
    "ValidationError",
    "MalformedPolicyDocument",
    "PackedPolicyTooLarge",
    "RegionDisabledException",
];

/// The container-credentials answer, as AWS SDKs read it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Issued {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub token: String,
    pub account_id: String,
    /// RFC 3339.
    pub expiration: String,
    /// When the cache stops handing these out.
    #[serde(skip)]
    fresh_until: Instant,
}

/// One cache entry's identity: the pod (by uid: a new pod of the same name gets its own
/// session) and the association as of its generation (an edit gets new credentials).
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct Key {
    pub pod_uid: String,
    pub association_uid: String,
    pub association_generation: i64,
}

/// What STS is asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub role_arn: String,
    pub target_role_arn: Option<String>,
    pub session_name: String,
    pub tags: Vec<(String, String)>,
}

struct FreshUntil;

impl Expiry<Key, Arc<Issued>> for FreshUntil {
    fn expire_after_create(
        &self,
        _key: &Key,
        value: &Arc<Issued>,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(value.fresh_until.saturating_duration_since(created_at))
    }
}

#[derive(Clone)]
pub struct Issuer {
    sdk: SdkConfig,
    sts: aws_sdk_sts::Client,
    session: Duration,
    margin: Duration,
    cache: moka::future::Cache<Key, Arc<Issued>>,
    metrics: Metrics,
}

impl Issuer {
    /// STS through `sdk` (the agent's own credentials), sessions of `session`, handed out
    /// until `margin` before they expire.
    pub fn new(sdk: SdkConfig, session: Duration, margin: Duration, metrics: Metrics) -> Self {
        Self {
            sts: aws_sdk_sts::Client::new(&sdk),
            sdk,
            session,
            margin,
            cache: moka::future::Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .expire_after(FreshUntil)
                .build(),
            metrics,
        }
    }

    /// The cached credentials of `key`, or new ones for `request`.
    pub async fn get(&self, key: Key, request: Request) -> Result<Arc<Issued>, Refusal> {
        self.cache
            .try_get_with(key, self.assume(request))
            .await
            .map_err(|e| (*e).clone())
    }

    async fn assume(&self, request: Request) -> Result<Arc<Issued>, Refusal> {
        let first = self
            .assume_one(&self.sts, &request.role_arn, &request, true)
            .await?;
        let issued = match &request.target_role_arn {
            None => first,
            Some(target) => {
                let creds = aws_sdk_sts::config::Credentials::new(
                    first.access_key_id.clone(),
                    first.secret_access_key.clone(),
                    Some(first.token.clone()),
                    None,
                    "irsa-agent-chain",
                );
                let chained = aws_sdk_sts::Client::from_conf(
                    aws_sdk_sts::config::Builder::from(&self.sdk)
                        .credentials_provider(creds)
                        .build(),
                );
                // The first session's tags are transitive: STS carries them over.
                self.assume_one(&chained, target, &request, false).await?
            }
        };
        Ok(Arc::new(issued))
    }

    async fn assume_one(
        &self,
        sts: &aws_sdk_sts::Client,
        role_arn: &str,
        request: &Request,
        with_tags: bool,
    ) -> Result<Issued, Refusal> {
        let mut call = sts
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(&request.session_name)
            .duration_seconds(i32::try_from(self.session.as_secs()).unwrap_or(i32::MAX));
        if with_tags && !request.tags.is_empty() {
            for (key, value) in &request.tags {
                let tag = Tag::builder().key(key).value(value).build().map_err(|e| {
                    Refusal::forbidden(reason::INVALID_ASSOCIATION, format!("session tag: {e}"))
                })?;
                call = call.tags(tag).transitive_tag_keys(key);
            }
        }
        let result = call.send().await;
        self.metrics
            .sts_call(if result.is_ok() { "success" } else { "error" });
        let out = result.map_err(|err| {
            let code = err.code().unwrap_or("error").to_string();
            let message = err
                .message()
                .map(str::to_string)
                .unwrap_or_else(|| err.to_string());
            let text = format!("sts:AssumeRole of {role_arn}: {code}: {message}");
            if REFUSALS.contains(&code.as_str()) {
                Refusal::forbidden(reason::STS_REFUSED, text)
            } else {
                Refusal::unavailable(reason::STS_UNAVAILABLE, text)
            }
        })?;
        let unexpected = |what: &str| {
            Refusal::unavailable(
                reason::STS_UNAVAILABLE,
                format!("sts:AssumeRole of {role_arn} answered without {what}"),
            )
        };
        let creds = out.credentials().ok_or_else(|| unexpected("Credentials"))?;
        let expires = SystemTime::try_from(*creds.expiration())
            .map_err(|_| unexpected("a valid Expiration"))?;
        let left = expires
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let account_id = out
            .assumed_role_user()
            .map(|u| u.arn())
            .unwrap_or(role_arn)
            .split(':')
            .nth(4)
            .unwrap_or_default()
            .to_string();
        Ok(Issued {
            access_key_id: creds.access_key_id().to_string(),
            secret_access_key: creds.secret_access_key().to_string(),
            token: creds.session_token().to_string(),
            account_id,
            expiration: creds
                .expiration()
                .fmt(DateTimeFormat::DateTime)
                .map_err(|_| unexpected("a valid Expiration"))?,
            fresh_until: Instant::now() + left.saturating_sub(self.margin),
        })
    }
}
