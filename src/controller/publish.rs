//! `--publish-issuer s3://BUCKET/PREFIX`: mirror the API server's issuer documents to where
//! STS reads them, for self-managed clusters.
//!
//! One pass: read the discovery document and JWKS **through the API** (so external signers
//! whose keys rotate without a restart are followed); refuse unless the API server's `issuer`
//! and `jwks_uri` are exactly the public URL; plan the JWKS with
//! [`crate::issuer::retention`] (retired keys kept until their tokens expired; the state in a
//! ConfigMap); write each object only when S3 holds other bytes (so drift made by someone
//! else is repaired); then read both back the way STS does, with an anonymous GET of the
//! public (or `--issuer-verify-url`) URL.
//!
//! At steady state a pass writes nothing, neither to S3 nor to the state ConfigMap: the key
//! state changes only with the API server's keys, the `status` text holds no timestamp, and
//! the ConfigMap is patched only when either differs from what was loaded. A refusal is
//! written to that `status`, and when it is new there (not on every pass, nor again after a
//! restart) it is also a Warning Event `IssuerPublishRefused` on the ConfigMap; the first
//! publish after it is a Normal Event `IssuerPublishResumed`, so the Warning is not left as
//! the last word.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::primitives::ByteStream;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{EventType, Recorder};
use kube::{Api, Resource};
use serde_json::Value;
use tracing::{info, warn};

use super::k8s::events::publish_on;
use super::metrics::Metrics;
use crate::issuer::discover::api_server_document;
use crate::issuer::retention::{self, KeyState, REFUSED_PREFIX, STATE_KEY, STATUS_KEY};
use crate::issuer::{DISCOVERY_PATH, JWKS_PATH, document_url};
use crate::issuer::{InvalidIssuerUrl, IssuerUrl};

/// What STS and caches may keep: short, so a rotation is seen within minutes.
pub const CACHE_CONTROL: &str = "max-age=300";
/// The Event reason of a refused publish (issuer or `jwks_uri` not the public URL).
pub const REFUSED_REASON: &str = "IssuerPublishRefused";
/// The Event reason of the first publish after a refusal: the Warning is over.
pub const RESUMED_REASON: &str = "IssuerPublishResumed";
/// Both documents are kilobytes; anything far larger is not ours to copy.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("--publish-issuer {0:?} is not s3://BUCKET[/PREFIX]")]
    BadTarget(String),
    #[error("--issuer-public-url: {0}")]
    BadPublicUrl(#[from] InvalidIssuerUrl),
    #[error(
        "the API server's {field} is {api:?} but the documents would be served at {public:?}; \
         nothing is published until they are equal byte for byte (set the API server's \
         --service-account-issuer to the public URL, or --issuer-public-url to the issuer)"
    )]
    IssuerMismatch {
        field: &'static str,
        api: String,
        public: String,
    },
    #[error("reading /{0} from the API server: {1}")]
    Api(&'static str, String),
    #[error("S3 {0} s3://{1}/{2}: {3}")]
    S3(&'static str, String, String, String),
    #[error("the issuer key state ConfigMap {0}: {1}")]
    State(String, String),
}

impl PublishError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::BadTarget(_) | Self::BadPublicUrl(_) => "bad_target",
            Self::IssuerMismatch { .. } => "issuer_mismatch",
            Self::Api(..) => "api",
            Self::S3(..) => "s3",
            Self::State(..) => "state",
        }
    }
}

/// Where and how to publish.
#[derive(Debug, Clone)]
pub struct Target {
    pub bucket: String,
    /// Object key prefix without slashes at either end (may be empty).
    pub prefix: String,
    /// The URL the objects are served at: must equal the API server's issuer.
    pub public_url: String,
    /// Where the verification GET goes (default: the public URL).
    pub verify_url: String,
}

impl Target {
    /// `s3://BUCKET[/PREFIX]`; the public URL defaults to the bucket's regional HTTPS URL.
    /// A given public URL must be a valid issuer URL: the API server's issuer can never equal
    /// an invalid one, so it is a startup error rather than a refusal on every pass.
    pub fn parse(
        s3_url: &str,
        public_url: Option<&str>,
        verify_url: Option<&str>,
        region: &str,
    ) -> Result<Self, PublishError> {
        let bad = || PublishError::BadTarget(s3_url.to_string());
        let rest = s3_url.strip_prefix("s3://").ok_or_else(bad)?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !valid_bucket {
            return Err(bad());
        }
        let prefix = prefix.trim_matches('/').to_string();
        let default_public = if prefix.is_empty() {
            format!("https://{bucket}.s3.{region}.amazonaws.com")
        } else {
            format!("https://{bucket}.s3.{region}.amazonaws.com/{prefix}")
        };
        let public_url = match public_url {
            Some(url) => IssuerUrl::parse(url)?.as_str().to_string(),
            None => default_public,
        };
        let verify_url = verify_url.map_or_else(|| public_url.clone(), str::to_string);
        Ok(Self {
            bucket: bucket.to_string(),
            prefix,
            public_url,
            verify_url,
        })
    }

    pub fn key(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    /// The `jwks_uri` a correct discovery document names.
    pub fn jwks_uri(&self) -> String {
        document_url(&self.public_url, JWKS_PATH)
    }
}

/// The documents one pass wants served, and what it changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Unix seconds of the pass (the `now` its plan was made for).
    pub at: i64,
    pub writes: usize,
    pub keys_published: usize,
    pub keys_retired: usize,
    pub verified: bool,
}

impl Outcome {
    /// What a pass that published (or found everything current) shows on /metrics.
    fn record(&self, metrics: &Metrics) {
        metrics.issuer_last_publish.set(self.at);
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        metrics
            .issuer_keys_published
            .set(count(self.keys_published));
        metrics
            .issuer_keys_pending_removal
            .set(count(self.keys_retired));
        metrics
            .issuer_writes
            .inc_by(u64::try_from(self.writes).unwrap_or(u64::MAX));
        if !self.verified {
            metrics.issuer_drift.inc();
        }
    }
}

pub struct Publisher {
    pub kube: kube::Client,
    pub s3: aws_sdk_s3::Client,
    pub http: reqwest::Client,
    pub target: Target,
    pub retention: Duration,
    pub state: (String, String),
    pub metrics: Metrics,
    /// Events on the state ConfigMap (a refused publish).
    pub recorder: Recorder,
}

/// The state ConfigMap's two keys as loaded, so that a pass writes only what changed.
#[derive(Debug)]
struct Stored {
    state: KeyState,
    state_text: Option<String>,
    status: Option<String>,
}

/// Checks that the API server's discovery document names the public URL exactly.
pub fn check_issuer(discovery: &Value, target: &Target) -> Result<(), PublishError> {
    let field = |name: &'static str, want: String| {
        let api = discovery.get(name).and_then(Value::as_str).unwrap_or("");
        if api == want {
            Ok(())
        } else {
            Err(PublishError::IssuerMismatch {
                field: name,
                api: api.to_string(),
                public: want,
            })
        }
    };
    field("issuer", target.public_url.clone())?;
    field("jwks_uri", target.jwks_uri())
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Publisher {
    async fn api_text(&self, path: &'static str) -> Result<String, PublishError> {
        let text = api_server_document(&self.kube, path)
            .await
            .map_err(|e| PublishError::Api(path, e.to_string()))?;
        if text.len() > MAX_DOCUMENT_BYTES {
            return Err(PublishError::Api(path, format!("{} bytes", text.len())));
        }
        Ok(text)
    }

    fn state_api(&self) -> Api<ConfigMap> {
        Api::namespaced(self.kube.clone(), &self.state.0)
    }

    fn state_error(&self, e: impl ToString) -> PublishError {
        PublishError::State(format!("{}/{}", self.state.0, self.state.1), e.to_string())
    }

    async fn load(&self) -> Result<Stored, PublishError> {
        let cm = self
            .state_api()
            .get_opt(&self.state.1)
            .await
            .map_err(|e| self.state_error(e))?;
        let mut data = cm.and_then(|c| c.data).unwrap_or_default();
        let (state_text, status) = (data.remove(STATE_KEY), data.remove(STATUS_KEY));
        let state = match &state_text {
            None => KeyState::default(),
            Some(text) => serde_json::from_str(text).map_err(|e| self.state_error(e))?,
        };
        Ok(Stored {
            state,
            state_text,
            status,
        })
    }

    /// Patches the state ConfigMap unless it already holds exactly `state_text` and `status`;
    /// returns the ConfigMap when it wrote.
    async fn save(
        &self,
        stored: &Stored,
        state_text: String,
        status: String,
    ) -> Result<Option<ConfigMap>, PublishError> {
        if stored.state_text.as_ref() == Some(&state_text)
            && stored.status.as_ref() == Some(&status)
        {
            return Ok(None);
        }
        let patch = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": self.state.1},
            "data": {STATE_KEY: state_text, STATUS_KEY: status}
        });
        self.state_api()
            .patch(
                &self.state.1,
                &PatchParams::apply("irsa-controller").force(),
                &Patch::Apply(&patch),
            )
            .await
            .map(Some)
            .map_err(|e| self.state_error(e))
    }

    /// Keeps the refusal in the ConfigMap's `status` for the doctor and an operator, and
    /// publishes it as an Event when it is new there. Best effort: the refusal itself is
    /// the pass's error (log and metric).
    async fn report_refusal(&self, refusal: &PublishError) {
        let written = async {
            let stored = self.load().await?;
            let state_text = match &stored.state_text {
                Some(text) => text.clone(),
                None => serde_json::to_string(&stored.state).map_err(|e| self.state_error(e))?,
            };
            self.save(&stored, state_text, format!("{REFUSED_PREFIX}{refusal}"))
                .await
        }
        .await;
        match written {
            Ok(Some(cm)) => {
                publish_on(
                    &self.recorder,
                    &cm.object_ref(&()),
                    EventType::Warning,
                    REFUSED_REASON,
                    "PublishIssuer",
                    &refusal.to_string(),
                )
                .await;
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "could not record the refusal in the state ConfigMap"),
        }
    }

    fn s3_error(
        &self,
        operation: &'static str,
        key: &str,
        e: impl std::error::Error,
    ) -> PublishError {
        PublishError::S3(
            operation,
            self.target.bucket.clone(),
            key.to_string(),
            aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
        )
    }

    async fn s3_get(&self, key: &str) -> Result<Option<Vec<u8>>, PublishError> {
        let request = self.s3.get_object().bucket(&self.target.bucket).key(key);
        match request.send().await {
            Ok(out) => {
                let bytes = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| self.s3_error("GetObject", key, e))?;
                Ok(Some(bytes.into_bytes().to_vec()))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(self.s3_error("GetObject", key, e)),
        }
    }

    /// Writes `body` at `rel` unless S3 already holds exactly it; returns whether it wrote.
    async fn ensure(&self, rel: &str, body: &str) -> Result<bool, PublishError> {
        let key = self.target.key(rel);
        if self.s3_get(&key).await?.as_deref() == Some(body.as_bytes()) {
            return Ok(false);
        }
        self.s3
            .put_object()
            .bucket(&self.target.bucket)
            .key(&key)
            .content_type("application/json")
            .cache_control(CACHE_CONTROL)
            .body(ByteStream::from(body.as_bytes().to_vec()))
            .send()
            .await
            .map_err(|e| self.s3_error("PutObject", &key, e))?;
        info!(bucket = %self.target.bucket, key = %key, "published issuer document");
        Ok(true)
    }

    /// Reads `rel` below the verify URL anonymously; `true` when it is `want`.
    async fn verify(&self, rel: &str, want: &str) -> bool {
        let url = document_url(&self.target.verify_url, rel);
        let got = async {
            let response = self.http.get(&url).send().await?.error_for_status()?;
            response.text().await
        }
        .await;
        match got {
            Ok(text) if text == want => true,
            Ok(_) => {
                warn!(%url, "the public copy differs from what was published (a cache, or someone else wrote it)");
                false
            }
            Err(e) => {
                warn!(%url, error = %e, "the public copy cannot be read anonymously, as STS must");
                false
            }
        }
    }

    /// One pass; see the module docs.
    pub async fn pass(&self) -> Result<Outcome, PublishError> {
        let discovery_text = self.api_text(DISCOVERY_PATH).await?;
        let discovery: Value = serde_json::from_str(&discovery_text)
            .map_err(|e| PublishError::Api(DISCOVERY_PATH, e.to_string()))?;
        if let Err(e) = check_issuer(&discovery, &self.target) {
            self.report_refusal(&e).await;
            return Err(e);
        }
        let jwks_text = self.api_text(JWKS_PATH).await?;
        let jwks: Value = serde_json::from_str(&jwks_text)
            .map_err(|e| PublishError::Api(JWKS_PATH, e.to_string()))?;
        let current = jwks
            .get("keys")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let stored = self.load().await?;
        let retention_secs = i64::try_from(self.retention.as_secs()).unwrap_or(i64::MAX);
        let now = now_secs();
        let plan = retention::plan(&stored.state, &current, now, retention_secs);
        // With nothing retired, the API server's own bytes; else the union, compact.
        let jwks_out = if plan.retired.is_empty() {
            jwks_text
        } else {
            plan.jwks.to_string()
        };
        let mut writes = 0;
        writes += usize::from(self.ensure(DISCOVERY_PATH, &discovery_text).await?);
        writes += usize::from(self.ensure(JWKS_PATH, &jwks_out).await?);
        for kid in &plan.dropped {
            info!(%kid, "retired issuer key dropped: every token it signed has expired");
        }
        let verified = self.verify(DISCOVERY_PATH, &discovery_text).await
            && self.verify(JWKS_PATH, &jwks_out).await;
        let status = format!(
            "published {} key(s), {} retired key(s) kept{}",
            plan.state.keys.len(),
            plan.retired.len(),
            if verified {
                ""
            } else {
                "; the public copy did not match"
            }
        );
        // Compared as text: a state in the previous version's format is rewritten once.
        let state_text = serde_json::to_string(&plan.state).map_err(|e| self.state_error(e))?;
        let was_refused = stored
            .status
            .as_deref()
            .is_some_and(|s| s.starts_with(REFUSED_PREFIX));
        if let Some(cm) = self.save(&stored, state_text, status.clone()).await?
            && was_refused
        {
            info!(%status, "issuer publishing resumed after a refusal");
            publish_on(
                &self.recorder,
                &cm.object_ref(&()),
                EventType::Normal,
                RESUMED_REASON,
                "PublishIssuer",
                &format!("publishing resumed: {status}"),
            )
            .await;
        }
        Ok(Outcome {
            at: now,
            writes,
            keys_published: plan.state.keys.len(),
            keys_retired: plan.retired.len(),
            verified,
        })
    }

    /// Passes every `interval` until `stop`; errors are logged, counted and retried.
    pub async fn run(
        self,
        interval: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::pin!(stop);
        loop {
            match self.pass().await {
                Ok(outcome) => outcome.record(&self.metrics),
                Err(e) => {
                    warn!(error = %e, "issuer publishing failed");
                    self.metrics.issuer_publish_failed(e.metric_label());
                }
            }
            tokio::select! {
                () = &mut stop => return Ok(()),
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn targets_parse_with_the_regional_url_by_default() {
        let t = Target::parse("s3://my-bucket/clusters/a/", None, None, "eu-west-1").unwrap();
        assert_eq!(
            (t.bucket.as_str(), t.prefix.as_str()),
            ("my-bucket", "clusters/a")
        );
        assert_eq!(
            t.public_url,
            "https://my-bucket.s3.eu-west-1.amazonaws.com/clusters/a"
        );
        assert_eq!(t.verify_url, t.public_url);
        assert_eq!(t.key(JWKS_PATH), "clusters/a/openid/v1/jwks");
        let root = Target::parse("s3://b-1", Some("https://oidc.example.com"), None, "x").unwrap();
        assert_eq!(root.key(DISCOVERY_PATH), ".well-known/openid-configuration");
        assert_eq!(root.jwks_uri(), "https://oidc.example.com/openid/v1/jwks");
        for bad in ["https://b/x", "s3://", "s3://UPPER/x", "s3://a/x", "bucket"] {
            assert!(Target::parse(bad, None, None, "r").is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bad_public_url_is_a_startup_error_naming_the_flag() {
        for bad in [
            "http://oidc.example.com",
            "oidc.example.com",
            "https://oidc.example.com/x?y=1",
            "https://",
        ] {
            let err = Target::parse("s3://bucket/c", Some(bad), None, "r").unwrap_err();
            assert!(
                matches!(err, PublishError::BadPublicUrl(_)),
                "{bad}: {err:?}"
            );
            let message = err.to_string();
            assert!(
                message.starts_with("--issuer-public-url: ") && message.contains(bad),
                "{message}"
            );
        }
        // Legal oddities are the user's to choose: byte for byte, not normalised.
        let slash = Target::parse("s3://bucket", Some("https://O.example.com/"), None, "r");
        assert_eq!(slash.unwrap().public_url, "https://O.example.com/");
    }

    #[test]
    fn the_issuer_and_jwks_uri_must_be_the_public_url_byte_for_byte() {
        let t = Target::parse("s3://bucket/c", Some("https://o.example.com/c"), None, "r").unwrap();
        let good = json!({"issuer": "https://o.example.com/c", "jwks_uri": "https://o.example.com/c/openid/v1/jwks"});
        assert!(check_issuer(&good, &t).is_ok());
        let slash = json!({"issuer": "https://o.example.com/c/", "jwks_uri": "https://o.example.com/c/openid/v1/jwks"});
        let err = check_issuer(&slash, &t).unwrap_err();
        assert!(err.to_string().contains("issuer"), "{err}");
        assert_eq!(err.metric_label(), "issuer_mismatch");
        let other_jwks = json!({"issuer": "https://o.example.com/c", "jwks_uri": "https://kube:6443/openid/v1/jwks"});
        let err = check_issuer(&other_jwks, &t).unwrap_err();
        assert!(err.to_string().contains("jwks_uri"), "{err}");
    }
}
