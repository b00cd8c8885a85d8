//! Why the agent did not hand out credentials, as the HTTP answer an SDK gets: 401 (the
//! token is not good), 403 (a good token, but no credentials for it here), 503 (try again:
//! the body says when, and so does `Retry-After`). The body is JSON, `{"reason", "message"}`;
//! no message ever holds the token.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

/// Seconds an SDK is asked to wait after a 503.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// `reason` values of refusals (CamelCase, like Kubernetes' condition reasons).
pub mod reason {
    pub const MISSING_TOKEN: &str = "MissingToken";
    pub const INVALID_TOKEN: &str = "InvalidToken";
    pub const NOT_BOUND_TO_POD: &str = "TokenNotBoundToPod";
    pub const POD_NOT_ON_NODE: &str = "PodNotOnThisNode";
    pub const POD_UID_MISMATCH: &str = "PodUidMismatch";
    pub const NO_ASSOCIATION: &str = "NoPodIdentityAssociation";
    pub const AMBIGUOUS_ASSOCIATION: &str = "AmbiguousPodIdentityAssociation";
    pub const NOT_AUTHORIZED: &str = "NotAuthorized";
    pub const INVALID_ASSOCIATION: &str = "InvalidPodIdentityAssociation";
    pub const STS_REFUSED: &str = "STSRefused";
    pub const STS_UNAVAILABLE: &str = "STSUnavailable";
    pub const TOKEN_REVIEW_FAILED: &str = "TokenReviewFailed";
    pub const NOT_READY: &str = "NotReady";
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {reason}: {message}")]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn unauthorized(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, reason, message)
    }

    pub fn forbidden(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, reason, message)
    }

    pub fn unavailable(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, reason, message)
    }

    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({"reason": self.reason, "message": self.message}));
        let mut response = (self.status, body).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unavailable_carries_a_retry_hint() {
        let response = Refusal::unavailable(reason::STS_UNAVAILABLE, "throttled").into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        let forbidden = Refusal::forbidden(reason::NO_ASSOCIATION, "none").into_response();
        assert!(forbidden.headers().get(header::RETRY_AFTER).is_none());
        let body = axum::body::to_bytes(forbidden.into_body(), 1024)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["reason"], "NoPodIdentityAssociation");
        assert_eq!(body["message"], "none");
    }
}
