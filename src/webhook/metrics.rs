//! The webhook's Prometheus metrics (prefix `irsa_webhook_`), served on `--metrics-listen`.

use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use super::review::Outcome;

const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// One label, `name="value"`; values are always from a small fixed set.
pub type Label = [(&'static str, &'static str); 1];

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Family<Label, Counter>,
    pub request_duration: Histogram,
    pub mutations: Family<Label, Counter>,
    pub warnings: Family<Label, Counter>,
    pub sa_cache_misses: Counter,
    pub sa_lookups: Family<Label, Counter>,
    pub sa_not_found: Counter,
    pub sa_invalid_names: Counter,
    pub sa_lookups_shed: Counter,
    pub sa_cache_entries: Gauge,
    pub sa_cache_annotated: Gauge,
    pub sa_watch_errors: Counter,
    pub association_watch_errors: Counter,
    pub cert_reloads: Counter,
    pub cert_reload_errors: Counter,
    pub certificate_expiry: Gauge,
    pub tls_rotations: Family<Label, Counter>,
    pub tls_repairs: Counter,
    pub tls_check_errors: Counter,
    pub identities_reloads: Counter,
    pub identities_reload_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("irsa_webhook");
        let requests = Family::<Label, Counter>::default();
        registry.register(
            "requests",
            "AdmissionReview requests by result",
            requests.clone(),
        );
        // Fine below a millisecond (the target), coarse up to the API server's 10s timeout;
        // 1ms is a boundary so "share answered under 1ms" reads straight off the buckets.
        let request_duration = Histogram::new(LATENCY_BUCKETS.iter().copied());
        registry.register(
            "request_duration_seconds",
            "Time to answer one AdmissionReview, from body received to response built",
            request_duration.clone(),
        );
        let mutations = Family::<Label, Counter>::default();
        registry.register(
            "mutations",
            "Pods patched, by mode (irsa, container-credentials)",
            mutations.clone(),
        );
        let warnings = Family::<Label, Counter>::default();
        registry.register(
            "warnings",
            "Admission warnings returned, by kind",
            warnings.clone(),
        );
        let sa_cache_misses = Counter::default();
        registry.register(
            "sa_cache_misses",
            "ServiceAccount lookups not answered by the watch cache",
            sa_cache_misses.clone(),
        );
        let sa_lookups = Family::<Label, Counter>::default();
        registry.register(
            "sa_lookups",
            "Direct API GETs of ServiceAccounts after a cache miss, by result",
            sa_lookups.clone(),
        );
        let sa_not_found = Counter::default();
        registry.register(
            "sa_not_found",
            "Pods whose ServiceAccount does not exist (admitted unmutated)",
            sa_not_found.clone(),
        );
        let sa_invalid_names = Counter::default();
        registry.register(
            "sa_invalid_names",
            "Pods whose namespace or ServiceAccount name cannot exist (answered without a lookup)",
            sa_invalid_names.clone(),
        );
        let sa_lookups_shed = Counter::default();
        registry.register(
            "sa_lookups_shed",
            "Cache misses answered without a GET because the cap of concurrent GETs was reached",
            sa_lookups_shed.clone(),
        );
        let sa_cache_entries = Gauge::default();
        registry.register(
            "sa_cache_entries",
            "ServiceAccounts known to the cache",
            sa_cache_entries.clone(),
        );
        let sa_cache_annotated = Gauge::default();
        registry.register(
            "sa_cache_annotated_entries",
            "ServiceAccounts in the cache that carry relevant annotations",
            sa_cache_annotated.clone(),
        );
        let sa_watch_errors = Counter::default();
        registry.register(
            "sa_watch_errors",
            "Errors of the ServiceAccount watch (it retries with backoff)",
            sa_watch_errors.clone(),
        );
        let association_watch_errors = Counter::default();
        registry.register(
            "association_watch_errors",
            "Errors of the PodIdentityAssociation watch (--pod-identity-associations; it retries with backoff)",
            association_watch_errors.clone(),
        );
        let cert_reloads = Counter::default();
        registry.register(
            "cert_reloads",
            "Serving certificates loaded (startup and rotations)",
            cert_reloads.clone(),
        );
        let cert_reload_errors = Counter::default();
        registry.register(
            "cert_reload_errors",
            "Changed certificate/key pairs rejected (the previous pair stays in use)",
            cert_reload_errors.clone(),
        );
        let certificate_expiry = Gauge::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When the serving certificate in use expires (Unix time)",
            certificate_expiry.clone(),
        );
        let tls_rotations = Family::<Label, Counter>::default();
        registry.register(
            "tls_rotations",
            "Self-managed TLS (--tls-mode self): CAs created or dropped and serving certificates issued, by kind",
            tls_rotations.clone(),
        );
        let tls_repairs = Counter::default();
        registry.register(
            "tls_ca_bundle_repairs",
            "Self-managed TLS: webhook caBundles found changed by someone else and restored",
            tls_repairs.clone(),
        );
        let tls_check_errors = Counter::default();
        registry.register(
            "tls_check_errors",
            "Self-managed TLS: checks that failed (the certificate in use stays)",
            tls_check_errors.clone(),
        );
        let identities_reloads = Counter::default();
        registry.register(
            "identities_reloads",
            "Container-credentials identities files loaded",
            identities_reloads.clone(),
        );
        let identities_reload_errors = Counter::default();
        registry.register(
            "identities_reload_errors",
            "Identities files rejected (the previous set stays in use)",
            identities_reload_errors.clone(),
        );
        Self {
            registry,
            requests,
            request_duration,
            mutations,
            warnings,
            sa_cache_misses,
            sa_lookups,
            sa_not_found,
            sa_invalid_names,
            sa_lookups_shed,
            sa_cache_entries,
            sa_cache_annotated,
            sa_watch_errors,
            association_watch_errors,
            cert_reloads,
            cert_reload_errors,
            certificate_expiry,
            tls_rotations,
            tls_repairs,
            tls_check_errors,
            identities_reloads,
            identities_reload_errors,
        }
    }

    pub fn request(&self, outcome: Outcome) {
        self.requests
            .get_or_create(&[("result", outcome.as_str())])
            .inc();
    }

    pub fn warning(&self, kind: &'static str) {
        self.warnings.get_or_create(&[("kind", kind)]).inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        crate::metrics::encode(&self.registry)
    }

    /// The `GET /metrics` answer.
    pub fn response(&self) -> axum::response::Response {
        crate::metrics::response(&self.registry)
    }
}
