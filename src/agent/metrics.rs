//! The agent's Prometheus metrics (prefix `irsa_agent_`). Cheap to clone.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Labels of `irsa_agent_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `200`, `401`, `403`, `503`.
    pub code: u16,
    /// `Issued`, or the refusal's reason.
    pub reason: &'static str,
}

/// Labels of `irsa_agent_sts_calls_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    pub sts_calls: Family<OutcomeLabels, Counter>,
    pub token_reviews: Counter,
}

impl Metrics {
    pub fn request(&self, code: u16, reason: &'static str) {
        self.requests
            .get_or_create(&RequestLabels { code, reason })
            .inc();
    }

    pub fn sts_call(&self, outcome: &'static str) {
        self.sts_calls
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn token_review(&self) {
        self.token_reviews.inc();
    }

    pub fn registry(&self) -> Registry {
        let mut registry = Registry::with_prefix("irsa_agent");
        registry.register(
            "requests",
            "Credential requests answered, by HTTP status and reason",
            self.requests.clone(),
        );
        registry.register(
            "sts_calls",
            "sts:AssumeRole calls made (cache misses), by outcome",
            self.sts_calls.clone(),
        );
        registry.register(
            "token_reviews",
            "TokenReviews asked of the API server (tokens not remembered)",
            self.token_reviews.clone(),
        );
        registry
    }
}
