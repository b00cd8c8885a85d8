//! The AdmissionReview envelope, PURE: [`decode`] a body, [`encode`] an [`Answer`], and the
//! [`Outcome`] of one call. No server, no I/O: usable from a fuzzer or a test alone.
//!
//! Own envelope types rather than `kube::core::admission`: kube's `AdmissionRequest<K>`
//! deserializes the object into `K` (for a `DynamicObject`, metadata becomes a typed
//! `ObjectMeta`), while the engine must read the Pod exactly as the API server sent it.
//! `serde_json::Value` for the object, and serde skips the fields we do not read
//! (`oldObject`, `userInfo`, ...) without building them.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

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
    /// Kept as text until [`crate::mutate::limits::check_raw`] has seen its size.
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

/// Outcome of one `/mutate` call, the `result` label of `requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed with a patch.
    Mutated,
    /// Allowed, nothing to add (no role, opted out, already injected).
    Unchanged,
    /// `--strict` denied the pod.
    Denied,
    /// Not a Pod, or a Pod the engine cannot read: allowed unmutated with a warning.
    NotAPod,
    /// Over irsa's size limits (`mutate::limits`): allowed unmutated with a warning.
    TooLarge,
    /// The handler failed (a bug): HTTP 500.
    Internal,
    /// Not a CREATE of a pod (UPDATE, subresource...): allowed untouched.
    Skipped,
    /// The ServiceAccount is not there (yet) or its lookup failed/timed out: allowed unmutated.
    NoServiceAccount,
    /// HTTP 400: the body is not an AdmissionReview.
    BadRequest,
    /// HTTP 415.
    UnsupportedMediaType,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Mutated => "mutated",
            Outcome::Unchanged => "unchanged",
            Outcome::Denied => "denied",
            Outcome::NotAPod => "not_a_pod",
            Outcome::Skipped => "skipped",
            Outcome::TooLarge => "too_large",
            Outcome::Internal => "internal_error",
            Outcome::NoServiceAccount => "no_service_account",
            Outcome::BadRequest => "bad_request",
            Outcome::UnsupportedMediaType => "unsupported_media_type",
        }
    }
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
    pub fn allow(outcome: Outcome) -> Self {
        Self {
            outcome,
            patch: None,
            warnings: Vec::new(),
            denial: None,
        }
    }

    pub fn with_warning(mut self, warning: String) -> Self {
        self.warnings.push(warning);
        self
    }
}

/// The response envelope: same apiVersion as the request (v1 or v1beta1 share this shape),
/// serialized. Written straight from borrowed fields, the patch base64-encoded once into its
/// own string, and the output buffer sized for it up front: no `serde_json::Value` detour.
pub fn encode(api_version: &str, uid: &str, answer: &Answer) -> serde_json::Result<Vec<u8>> {
    // `patch` carries the JSON patch as base64 on the wire.
    let patch = answer.patch.as_deref().map(|patch| STANDARD.encode(patch));
    let review = ReviewOut {
        api_version,
        kind: "AdmissionReview",
        response: ResponseOut {
            uid,
            allowed: answer.denial.is_none(),
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch: patch.as_deref(),
            warnings: &answer.warnings,
            status: answer.denial.as_deref().map(|message| StatusOut {
                status: "Failure",
                code: 403,
                reason: "Forbidden",
                message,
            }),
        },
    };
    // The envelope around the patch and the warnings is under 200 bytes.
    let warnings = answer.warnings.iter().map(String::len).sum::<usize>();
    let mut out = Vec::with_capacity(256 + patch.as_ref().map_or(0, String::len) + 2 * warnings);
    serde_json::to_writer(&mut out, &review)?;
    Ok(out)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'a str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusOut<'a>>,
}

#[derive(Serialize)]
struct StatusOut<'a> {
    status: &'static str,
    code: u16,
    reason: &'static str,
    message: &'a str,
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
    use serde_json::{Value, json};

    use super::*;

    fn encoded(api_version: &str, uid: &str, answer: &Answer) -> Value {
        serde_json::from_slice(&encode(api_version, uid, answer).unwrap()).unwrap()
    }

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
        let plain = encoded(V1, "u", &Answer::allow(Outcome::Unchanged));
        assert_eq!(
            plain,
            json!({"apiVersion": V1, "kind": "AdmissionReview", "response": {"uid": "u", "allowed": true}})
        );
        let mut answer = Answer::allow(Outcome::Mutated);
        answer.patch = Some(b"[]".to_vec());
        let patched = encoded(V1BETA1, "u", &answer);
        assert_eq!(patched["apiVersion"], V1BETA1);
        assert_eq!(patched["response"]["patchType"], "JSONPatch");
        assert_eq!(patched["response"]["patch"], "W10=");
    }

    #[test]
    fn encode_writes_the_fields_in_the_envelope_order() {
        let mut answer = Answer::allow(Outcome::Denied).with_warning("w \"1\"".into());
        answer.patch = Some(b"[]".to_vec());
        answer.denial = Some("no".into());
        assert_eq!(
            String::from_utf8(encode(V1, "u", &answer).unwrap()).unwrap(),
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":false,"patchType":"JSONPatch","patch":"W10=","warnings":["w \"1\""],"status":{"status":"Failure","code":403,"reason":"Forbidden","message":"no"}}}"#
        );
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
