//! AdmissionReview in and out, kept as raw JSON.
//!
//! Own envelope types rather than `kube::core::admission`: kube's `AdmissionRequest<K>`
//! deserializes the object into `K` (for a `DynamicObject`, metadata becomes a typed
//! `ObjectMeta`), while the engine must read the Pod exactly as the API server sent it.
//! `serde_json::Value` for the object, and serde skips the fields we do not read
//! (`oldObject`, `userInfo`, ...) without building them.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json, value::RawValue};

use super::{
    cache::{Lookup, MAX_CONCURRENT_FETCHES},
    metrics::Outcome,
    server::AppState,
};
use crate::mutate::{self, Mode, Refusal, ServiceAccountInfo, TooLarge};

const V1: &str = "admission.k8s.io/v1";
const V1BETA1: &str = "admission.k8s.io/v1beta1";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionReview {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    pub request: Option<AdmissionRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    #[serde(default)]
    pub uid: String,
    pub kind: Option<GroupVersionKind>,
    pub namespace: Option<String>,
    pub operation: Option<String>,
    pub sub_resource: Option<String>,
    /// Kept as text until [`mutate::limits::check_raw`] has seen its size.
    pub object: Option<Box<RawValue>>,
}

#[derive(Debug, Deserialize)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

/// Why a body is not an AdmissionReview we can answer (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadReview {
    #[error("the body is not a JSON AdmissionReview: {0}")]
    Json(String),
    #[error(
        "apiVersion {0:?} is not supported: send AdmissionReview admission.k8s.io/v1 or v1beta1 \
         (admissionReviewVersions in the MutatingWebhookConfiguration)"
    )]
    ApiVersion(String),
    #[error("kind {0:?} is not AdmissionReview")]
    Kind(String),
    #[error("the AdmissionReview has no request")]
    NoRequest,
    #[error("the AdmissionReview request has no uid")]
    NoUid,
}

/// Parses and checks the envelope.
pub fn decode(body: &[u8]) -> Result<(String, AdmissionRequest), BadReview> {
    let review: AdmissionReview =
        serde_json::from_slice(body).map_err(|e| BadReview::Json(e.to_string()))?;
    if review.api_version != V1 && review.api_version != V1BETA1 {
        return Err(BadReview::ApiVersion(review.api_version));
    }
    if review.kind != "AdmissionReview" {
        return Err(BadReview::Kind(review.kind));
    }
    let request = review.request.ok_or(BadReview::NoRequest)?;
    if request.uid.is_empty() {
        return Err(BadReview::NoUid);
    }
    Ok((review.api_version, request))
}

/// The decision for one request, before it becomes JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub outcome: Outcome,
    /// The JSON patch, serialized; `None` when nothing changes.
    pub patch: Option<Vec<u8>>,
    pub warnings: Vec<String>,
    /// Set: `allowed: false` with this message.
    pub denial: Option<String>,
}

impl Answer {
    fn allow(outcome: Outcome) -> Self {
        Self {
            outcome,
            patch: None,
            warnings: Vec::new(),
            denial: None,
        }
    }

    fn with_warning(mut self, warning: String) -> Self {
        self.warnings.push(warning);
        self
    }
}

/// The response envelope: same apiVersion as the request (v1 or v1beta1 share this shape).
pub fn encode(api_version: &str, uid: &str, answer: &Answer) -> Value {
    let mut response = serde_json::Map::new();
    response.insert("uid".into(), json!(uid));
    response.insert("allowed".into(), json!(answer.denial.is_none()));
    if let Some(patch) = &answer.patch {
        // ByteString serializes as base64, which is what `patch` carries on the wire.
        response.insert("patchType".into(), json!("JSONPatch"));
        response.insert(
            "patch".into(),
            json!(k8s_openapi::ByteString(patch.clone())),
        );
    }
    if !answer.warnings.is_empty() {
        response.insert("warnings".into(), json!(answer.warnings));
    }
    if let Some(message) = &answer.denial {
        response.insert(
            "status".into(),
            json!({
                "status": "Failure",
                "code": 403,
                "reason": "Forbidden",
                "message": message,
            }),
        );
    }
    json!({ "apiVersion": api_version, "kind": "AdmissionReview", "response": response })
}

/// A Pod CREATE that passed the cheap checks: what the lookup and the engine need.
#[derive(Debug)]
pub struct PodRequest {
    pub namespace: String,
    pub service_account: String,
    pub pod: Value,
}

/// Where [`prepare`] left a request.
#[derive(Debug)]
pub enum Step {
    /// Answered without a ServiceAccount (not a pod, not a CREATE, too large...).
    Answered(Answer),
    /// A Pod to look up the ServiceAccount for, then [`finish`].
    Pod(PodRequest),
}

/// Decides one admission request: [`prepare`], look up the ServiceAccount, [`finish`].
pub async fn decide(state: &AppState, request: AdmissionRequest) -> Answer {
    match prepare(state, request) {
        Step::Answered(answer) => answer,
        Step::Pod(pod) => match lookup(state, &pod).await {
            Ok(sa) => finish(state, &pod, &sa),
            Err(answer) => answer,
        },
    }
}

/// The CPU half before the lookup: kind and operation, the size limits
/// ([`mutate::limits`]) on the raw object, then the parse. Synchronous so that the server can
/// run it off the async workers; its cost is bounded by [`mutate::limits::MAX_OBJECT_BYTES`].
pub fn prepare(state: &AppState, request: AdmissionRequest) -> Step {
    if let Some(kind) = &request.kind
        && !(kind.group.is_empty() && kind.kind == "Pod")
    {
        let what = if kind.group.is_empty() {
            format!("{}/{}", kind.version, kind.kind)
        } else {
            format!("{}/{}/{}", kind.group, kind.version, kind.kind)
        };
        return Step::Answered(not_a_pod(
            state,
            format!(
                "irsa only mutates Pods; this {what} was admitted unchanged (check the rules of \
                 the MutatingWebhookConfiguration)"
            ),
        ));
    }
    if request
        .operation
        .as_deref()
        .is_some_and(|op| op != "CREATE")
        || request
            .sub_resource
            .as_deref()
            .is_some_and(|s| !s.is_empty())
    {
        // Credentials can only be injected at creation; nothing to say about the rest.
        return Step::Answered(Answer::allow(Outcome::Skipped));
    }
    let Some(raw) = request.object else {
        return Step::Answered(not_a_pod(
            state,
            "irsa: the AdmissionReview carries no object; admitted unchanged".into(),
        ));
    };
    if let Err(too_large) = mutate::limits::check_raw(raw.get()) {
        return Step::Answered(too_large_answer(state, &too_large));
    }
    let pod: Value = match serde_json::from_str(raw.get()) {
        Ok(pod) => pod,
        // Already valid JSON; only serde's nesting limit can refuse it here.
        Err(err) => {
            return Step::Answered(not_a_pod(
                state,
                format!("irsa: the object cannot be read ({err}); admitted unchanged"),
            ));
        }
    };
    drop(raw);
    let namespace = request
        .namespace
        .filter(|ns| !ns.is_empty())
        .or_else(|| {
            pod.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .filter(|ns| !ns.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "default".to_string());
    let service_account = mutate::pod_service_account_name(&pod).to_string();
    Step::Pod(PodRequest {
        namespace,
        service_account,
        pod,
    })
}

/// The ServiceAccount of the pod, or the answer when there is none to use.
pub async fn lookup(state: &AppState, req: &PodRequest) -> Result<Arc<ServiceAccountInfo>, Answer> {
    let (namespace, sa_name) = (&req.namespace, &req.service_account);
    match state.cache.lookup(namespace, sa_name).await {
        Lookup::Found(sa) => Ok(sa),
        // The API server's ServiceAccount admission rejects such a pod anyway.
        Lookup::NotFound => Err(Answer::allow(Outcome::NoServiceAccount)),
        Lookup::TimedOut => Err(lookup_trouble(
            state,
            "sa_lookup_timeout",
            format!(
                "ServiceAccount {namespace}/{sa_name} could not be read within {:?}",
                state.sa_lookup_timeout
            ),
        )),
        Lookup::Failed(err) => Err(lookup_trouble(
            state,
            "sa_lookup_failed",
            format!("ServiceAccount {namespace}/{sa_name} could not be read: {err}"),
        )),
        Lookup::Busy => Err(lookup_trouble(
            state,
            "sa_lookup_busy",
            format!(
                "ServiceAccount {namespace}/{sa_name} is not cached and {MAX_CONCURRENT_FETCHES} \
                 lookups are already in flight"
            ),
        )),
        // Like an unknown ServiceAccount (the API server refuses such a pod anyway), but said
        // in the answer: neither the name nor a lookup reaches the logs or the API.
        Lookup::InvalidName(why) => {
            state.metrics.warning("invalid_service_account_name");
            Err(
                Answer::allow(Outcome::NoServiceAccount).with_warning(format!(
                    "irsa: {why}; no such ServiceAccount can exist, the pod was admitted without \
                 IAM credentials"
                )),
            )
        }
    }
}

/// The CPU half after the lookup: run the engine, serialize the patch.
pub fn finish(state: &AppState, req: &PodRequest, sa: &ServiceAccountInfo) -> Answer {
    let (namespace, sa_name) = (&req.namespace, &req.service_account);
    let identities = state.identities.current();
    let mutation = match mutate::mutate(
        &state.config,
        &identities,
        namespace,
        sa,
        &req.pod,
        &mut rand::rng(),
    ) {
        Ok(m) => m,
        Err(Refusal::NotAPod(err)) => {
            return not_a_pod(
                state,
                format!("irsa: {err}; admitted without IAM credentials"),
            );
        }
        Err(Refusal::TooLarge(err)) => return too_large_answer(state, &err),
    };

    let mut answer = Answer::allow(Outcome::Unchanged);
    for warning in mutation.warnings {
        state.metrics.warning(warning.kind.as_str());
        tracing::warn!(%namespace, service_account = %sa_name, kind = warning.kind.as_str(), "{}", warning.message);
        answer.warnings.push(warning.message);
    }
    if let Some(denial) = mutation.denial {
        answer.outcome = Outcome::Denied;
        answer.denial = Some(denial);
        return answer;
    }
    if mutation.mode != Mode::None && !mutation.patch.0.is_empty() {
        match serde_json::to_vec(&mutation.patch) {
            Ok(bytes) => {
                answer.patch = Some(bytes);
                answer.outcome = Outcome::Mutated;
                state
                    .metrics
                    .mutations
                    .get_or_create(&[("mode", mutation.mode.as_str())])
                    .inc();
            }
            // Serializing a Vec of JSON values cannot fail; admit unchanged rather than panic.
            Err(err) => tracing::error!(error = %err, "cannot serialize the patch"),
        }
    }
    answer
}

/// More than irsa handles ([`mutate::limits`]): admitted unmutated with a warning, or denied
/// under `--strict`. Nothing of the object reaches the log.
fn too_large_answer(state: &AppState, too_large: &TooLarge) -> Answer {
    state.metrics.warning(too_large.as_str());
    tracing::warn!(reason = %too_large, "admission request over irsa's limits");
    if state.config.strict {
        let mut answer = Answer::allow(Outcome::Denied);
        answer.denial = Some(format!("denied by irsa (--strict): {too_large}"));
        return answer;
    }
    Answer::allow(Outcome::TooLarge).with_warning(format!(
        "irsa: {too_large}; the pod was admitted WITHOUT IAM credentials"
    ))
}

fn not_a_pod(state: &AppState, warning: String) -> Answer {
    state.metrics.warning("not_a_pod");
    tracing::warn!("{warning}");
    Answer::allow(Outcome::NotAPod).with_warning(warning)
}

/// Our own trouble reading the ServiceAccount: admit without credentials and say so — or,
/// with `--strict`, deny so that the controller creating the pod retries.
fn lookup_trouble(state: &AppState, kind: &'static str, problem: String) -> Answer {
    state.metrics.warning(kind);
    tracing::warn!("{problem}");
    if state.config.strict {
        let mut answer = Answer::allow(Outcome::Denied);
        answer.denial = Some(format!(
            "denied by irsa (--strict): {problem}; retry the pod creation"
        ));
        return answer;
    }
    Answer::allow(Outcome::NoServiceAccount).with_warning(format!(
        "irsa: {problem}; the pod was admitted WITHOUT IAM credentials (recreate it to get them)"
    ))
}

/// `application/json`, with or without parameters (`; charset=utf-8`).
pub fn is_json_content_type(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_rejects_what_is_not_a_review() {
        assert!(matches!(decode(b"nope"), Err(BadReview::Json(_))));
        assert!(matches!(
            decode(br#"{"apiVersion":"v1","kind":"AdmissionReview","request":{"uid":"1"}}"#),
            Err(BadReview::ApiVersion(_))
        ));
        assert_eq!(
            decode(br#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod"}"#).unwrap_err(),
            BadReview::Kind("Pod".into())
        );
        assert_eq!(
            decode(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#)
                .unwrap_err(),
            BadReview::NoRequest
        );
        assert_eq!(
            decode(
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}"#
            )
            .unwrap_err(),
            BadReview::NoUid
        );
    }

    #[test]
    fn encode_sets_patch_type_only_with_a_patch() {
        let plain = encode(V1, "u", &Answer::allow(Outcome::Unchanged));
        assert_eq!(
            plain,
            json!({"apiVersion": V1, "kind": "AdmissionReview", "response": {"uid": "u", "allowed": true}})
        );
        let mut answer = Answer::allow(Outcome::Mutated);
        answer.patch = Some(b"[]".to_vec());
        let patched = encode(V1BETA1, "u", &answer);
        assert_eq!(patched["apiVersion"], V1BETA1);
        assert_eq!(patched["response"]["patchType"], "JSONPatch");
        assert_eq!(patched["response"]["patch"], "W10=");
    }

    #[test]
    fn content_types() {
        assert!(is_json_content_type(Some("application/json")));
        assert!(is_json_content_type(Some(
            "Application/JSON; charset=utf-8"
        )));
        assert!(!is_json_content_type(Some("application/yaml")));
        assert!(!is_json_content_type(None));
    }

    proptest::proptest! {
        /// The fuzz property of the envelope: arbitrary bytes, and reviews whose fields have
        /// arbitrary JSON types, are decoded or refused with a reason, never a panic.
        #[test]
        fn decode_never_panics(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
            api_version in proptest::prop_oneof![
                proptest::strategy::Just(json!(V1)), proptest::strategy::Just(json!(null)),
                proptest::strategy::Just(json!(1)), proptest::strategy::Just(json!([V1]))],
            request in proptest::prop_oneof![
                proptest::strategy::Just(json!(null)), proptest::strategy::Just(json!("x")),
                proptest::strategy::Just(json!({"uid": 5})),
                proptest::strategy::Just(json!({"uid": "u", "object": [1], "kind": "Pod"})),
                proptest::strategy::Just(json!({"uid": "u", "namespace": {}, "object": {"spec": 1}}))],
        ) {
            let review = json!({"apiVersion": api_version, "kind": "AdmissionReview", "request": request});
            for body in [bytes, review.to_string().into_bytes()] {
                match decode(&body) {
                    Ok((version, request)) => {
                        proptest::prop_assert!(version == V1 || version == V1BETA1);
                        proptest::prop_assert!(!request.uid.is_empty());
                    }
                    Err(err) => proptest::prop_assert!(!err.to_string().is_empty()),
                }
            }
        }
    }
}
