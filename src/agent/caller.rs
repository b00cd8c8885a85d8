//! Who is asking: the token checked by the API server (TokenReview with the agent's
//! audience; a verified token is remembered for a short while, [`Reviews`]), then the pod it
//! is bound to checked against the pods of this node, then that pod's ServiceAccount's
//! association and the grant that allows it. Those checks run on every request and read
//! watched stores ([`Stores`]), never the API server: a deleted or replaced pod is refused at
//! once, whatever the review said.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::PostParams;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use irsa_core::pod_identity::{self, PodRef};
use irsa_core::policy::authz::Decision;

use super::metrics::Metrics;
use super::refusal::{Refusal, reason};
use super::stores::Stores;
use crate::crd::PodIdentityAssociation;

/// The `user.extra` keys under which the API server names the pod a token is bound to.
const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";
const SA_USER_PREFIX: &str = "system:serviceaccount:";

/// A pod the API server vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub namespace: String,
    pub service_account: String,
    pub pod_name: String,
    pub pod_uid: String,
}

impl Caller {
    pub fn pod_ref(&self) -> PodRef<'_> {
        PodRef {
            namespace: &self.namespace,
            service_account: &self.service_account,
            pod_name: &self.pod_name,
            pod_uid: &self.pod_uid,
        }
    }
}

/// Most verified tokens remembered (one per pod, or two while the kubelet rotates one).
const MAX_REVIEWS: u64 = 100_000;

/// The TokenReviews of the agent's audience, each verified token remembered by its SHA-256
/// (never the token itself) for at most `ttl` and never past the token's own `exp`; a
/// refused token is not remembered, and concurrent requests with one token share one review.
#[derive(Clone)]
pub struct Reviews {
    client: kube::Client,
    audience: Arc<str>,
    ttl: Duration,
    cache: moka::future::Cache<[u8; 32], Reviewed>,
    metrics: Metrics,
}

#[derive(Clone)]
struct Reviewed {
    caller: Arc<Caller>,
    until: Instant,
}

struct Until;

impl moka::Expiry<[u8; 32], Reviewed> for Until {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Reviewed,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(value.until.saturating_duration_since(created_at))
    }
}

impl Reviews {
    /// `ttl` zero: every request is reviewed.
    pub fn new(client: kube::Client, audience: &str, ttl: Duration, metrics: Metrics) -> Self {
        Self {
            client,
            audience: audience.into(),
            ttl,
            cache: moka::future::Cache::builder()
                .max_capacity(MAX_REVIEWS)
                .expire_after(Until)
                .build(),
            metrics,
        }
    }

    /// The caller of `token`, remembered or reviewed now.
    pub async fn caller(&self, token: &str) -> Result<Arc<Caller>, Refusal> {
        if self.ttl.is_zero() {
            return self.review(token).await.map(Arc::new);
        }
        let key = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let key: [u8; 32] = key.as_ref().try_into().unwrap_or([0; 32]);
        self.cache
            .try_get_with(key, async {
                let caller = self.review(token).await?;
                let until = Instant::now() + self.ttl.min(time_left(token));
                Ok(Reviewed {
                    caller: Arc::new(caller),
                    until,
                })
            })
            .await
            .map(|reviewed| reviewed.caller)
            .map_err(|e: Arc<Refusal>| (*e).clone())
    }

    async fn review(&self, token: &str) -> Result<Caller, Refusal> {
        self.metrics.token_review();
        review(&self.client, token, &self.audience).await
    }
}

/// How long until `token` (a JWT the API server just verified) expires, from its `exp`
/// claim; zero when it has none, so that it is not remembered.
fn time_left(token: &str) -> Duration {
    let exp = token
        .split('.')
        .nth(1)
        .and_then(|payload| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .ok()
        })
        .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
        .and_then(|claims| claims.get("exp")?.as_u64());
    exp.map(|exp| UNIX_EPOCH + Duration::from_secs(exp))
        .and_then(|exp| exp.duration_since(SystemTime::now()).ok())
        .unwrap_or_default()
}

/// The caller of `token` per a TokenReview for `audience`.
pub async fn review(client: &kube::Client, token: &str, audience: &str) -> Result<Caller, Refusal> {
    let request = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_string()),
            audiences: Some(vec![audience.to_string()]),
        },
        ..TokenReview::default()
    };
    let answer = Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &request)
        .await
        // kube's error names the request, not its body: no token in it.
        .map_err(|e| {
            Refusal::unavailable(
                reason::TOKEN_REVIEW_FAILED,
                format!("the API server did not review the token: {e}"),
            )
        })?;
    let status = answer.status.unwrap_or_default();
    if status.authenticated != Some(true) {
        let why = status
            .error
            .filter(|e| !e.is_empty())
            .map(|e| e.replace(token, "<token>"))
            .unwrap_or_else(|| "not authenticated".into());
        return Err(Refusal::unauthorized(
            reason::INVALID_TOKEN,
            format!("the API server rejected the token for audience {audience:?}: {why}"),
        ));
    }
    if !status
        .audiences
        .as_ref()
        .is_some_and(|a| a.iter().any(|a| a == audience))
    {
        return Err(Refusal::unauthorized(
            reason::INVALID_TOKEN,
            format!("the token is not for audience {audience:?}"),
        ));
    }
    let user = status.user.unwrap_or_default();
    let (namespace, service_account) = user
        .username
        .as_deref()
        .and_then(|u| u.strip_prefix(SA_USER_PREFIX))
        .and_then(|rest| rest.split_once(':'))
        .ok_or_else(|| {
            Refusal::unauthorized(
                reason::INVALID_TOKEN,
                "the token is not a ServiceAccount's".to_string(),
            )
        })?;
    let extra = |key: &str| {
        user.extra
            .as_ref()
            .and_then(|e| e.get(key))
            .and_then(|v| v.first())
            .cloned()
    };
    let (Some(pod_name), Some(pod_uid)) = (extra(EXTRA_POD_NAME), extra(EXTRA_POD_UID)) else {
        return Err(Refusal::unauthorized(
            reason::NOT_BOUND_TO_POD,
            format!(
                "the token of ServiceAccount {namespace}/{service_account} is not bound to a pod (a projected token is)"
            ),
        ));
    };
    Ok(Caller {
        namespace: namespace.to_string(),
        service_account: service_account.to_string(),
        pod_name,
        pod_uid,
    })
}

/// The association that gives `caller` a role: `caller`'s pod runs on this node (`node`),
/// has the token's uid, and an `IAMRoleGrant` allows the association's roles.
pub fn association(
    stores: &Stores,
    caller: &Caller,
    node: &str,
    cluster: &str,
) -> Result<std::sync::Arc<PodIdentityAssociation>, Refusal> {
    let pod = stores
        .pods
        .get(&ObjectRef::new(&caller.pod_name).within(&caller.namespace))
        .ok_or_else(|| {
            Refusal::forbidden(
                reason::POD_NOT_ON_NODE,
                format!(
                    "pod {}/{} does not run on node {node} (or no longer exists)",
                    caller.namespace, caller.pod_name
                ),
            )
        })?;
    if pod.uid().as_deref() != Some(caller.pod_uid.as_str()) {
        return Err(Refusal::forbidden(
            reason::POD_UID_MISMATCH,
            format!(
                "the token is bound to pod {}/{} uid {}, which is not the pod of that name on node {node}",
                caller.namespace, caller.pod_name, caller.pod_uid
            ),
        ));
    }
    let found = stores.associations_of(&caller.namespace, &caller.service_account);
    let association = match found.as_slice() {
        [] => {
            return Err(Refusal::forbidden(
                reason::NO_ASSOCIATION,
                format!(
                    "no PodIdentityAssociation in namespace {} names ServiceAccount {}",
                    caller.namespace, caller.service_account
                ),
            ));
        }
        [one] => one.clone(),
        many => {
            let names: Vec<_> = many.iter().map(|a| a.name_any()).collect();
            return Err(Refusal::forbidden(
                reason::AMBIGUOUS_ASSOCIATION,
                format!(
                    "PodIdentityAssociations {names:?} in namespace {} all name ServiceAccount {}; keep one",
                    caller.namespace, caller.service_account
                ),
            ));
        }
    };
    let mut roles = vec![association.spec.role_arn.as_str()];
    roles.extend(association.spec.target_role_arn.as_deref());
    match pod_identity::authorize(
        &caller.namespace,
        &caller.service_account,
        &roles,
        cluster,
        &stores.grants(),
    ) {
        Decision::Authorized { .. } => Ok(association),
        Decision::Denied { reason: why } => Err(Refusal::forbidden(
            reason::NOT_AUTHORIZED,
            format!(
                "PodIdentityAssociation {}/{}: {why}",
                caller.namespace,
                association.name_any()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;

    use super::*;
    use crate::agent::stores::tests as stores_tests;
    use crate::crd::{IAMRoleGrant, IAMRoleGrantSpec};

    const ROLE: &str = "arn:aws:iam::123456789012:role/app";

    fn pod(name: &str, uid: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.namespace = Some("team-a".into());
        pod.metadata.name = Some(name.into());
        pod.metadata.uid = Some(uid.into());
        pod
    }

    fn caller(service_account: &str, pod_name: &str, pod_uid: &str) -> Caller {
        Caller {
            namespace: "team-a".into(),
            service_account: service_account.into(),
            pod_name: pod_name.into(),
            pod_uid: pod_uid.into(),
        }
    }

    fn stores() -> Stores {
        Stores::listed(
            vec![
                pod("web", "uid-web"),
                pod("cron", "uid-cron"),
                pod("lone", "uid-lone"),
            ],
            vec![
                stores_tests::association("web", "app"),
                stores_tests::association("cron-a", "cron"),
                stores_tests::association("cron-b", "cron"),
            ],
            vec![IAMRoleGrant::new(
                "team-a",
                IAMRoleGrantSpec {
                    namespaces: vec!["team-a".into()],
                    role_arns: vec![ROLE.into()],
                    service_accounts: None,
                    allow_namespace_wildcard_trust: false,
                },
            )],
        )
    }

    fn refused(caller: &Caller) -> (u16, &'static str, String) {
        let refusal = association(&stores(), caller, "node-a", "c")
            .map(|a| a.name_any())
            .expect_err("refused");
        (refusal.status.as_u16(), refusal.reason, refusal.message)
    }

    #[test]
    fn the_pod_must_be_this_nodes_with_the_tokens_uid() {
        let found = association(&stores(), &caller("app", "web", "uid-web"), "node-a", "c");
        assert_eq!(found.map(|a| a.name_any()), Ok("web".to_string()));

        // The pod of that name was deleted and re-created: the token is the old one's.
        let (status, reason, message) = refused(&caller("app", "web", "uid-old"));
        assert_eq!((status, reason), (403, reason::POD_UID_MISMATCH));
        assert!(message.contains("uid uid-old"), "{message}");

        let (status, reason, _) = refused(&caller("app", "elsewhere", "uid-x"));
        assert_eq!((status, reason), (403, reason::POD_NOT_ON_NODE));
    }

    #[test]
    fn no_association_or_two_for_one_service_account_is_refused() {
        let (status, reason, _) = refused(&caller("lone", "lone", "uid-lone"));
        assert_eq!((status, reason), (403, reason::NO_ASSOCIATION));

        let (status, reason, message) = refused(&caller("cron", "cron", "uid-cron"));
        assert_eq!((status, reason), (403, reason::AMBIGUOUS_ASSOCIATION));
        assert!(message.contains(r#"["cron-a", "cron-b"]"#), "{message}");
    }

    #[test]
    fn a_token_is_remembered_until_its_exp_at_most() {
        let jwt = |claims: serde_json::Value| {
            format!(
                "e30.{}.sig",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string())
            )
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let left = time_left(&jwt(serde_json::json!({"exp": now + 600})));
        assert!(
            left > Duration::from_secs(590) && left <= Duration::from_secs(600),
            "{left:?}"
        );
        for not_remembered in [
            jwt(serde_json::json!({"exp": now - 1})),
            jwt(serde_json::json!({"sub": "no exp"})),
            "not a jwt".to_string(),
            "a.%%%.b".to_string(),
        ] {
            assert_eq!(
                time_left(&not_remembered),
                Duration::ZERO,
                "{not_remembered}"
            );
        }
    }
}
