//! The controller's Prometheus metrics (prefix `irsa_controller_`).
//!
//! Cheap to clone (every metric is an `Arc` inside), so the AWS client (which reports its
//! calls here as a [`CallObserver`]), the reconcilers and the HTTP handler that encodes them
//! share one set.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::aws::CallObserver;

/// The AWS client as the controller holds it: every IAM/STS call counted in [`Metrics`].
pub type Aws = crate::aws::Aws<Metrics>;

/// Labels of `irsa_controller_iam_calls_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IamCallLabels {
    /// The IAM/STS API action, e.g. `UpdateAssumeRolePolicy`.
    pub operation: &'static str,
    /// `success`, or the error's [`crate::aws::Error::metric_label`].
    pub outcome: &'static str,
}

/// Labels of `irsa_controller_reconciles_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `binding` (an IAMRoleBinding) or `role` (one role's trust policy).
    pub kind: &'static str,
}

/// Labels of `irsa_controller_reconcile_errors_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: &'static str,
    pub error: &'static str,
}

/// Labels of `irsa_controller_trust_policy_chars`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabels {
    pub role: String,
}

/// Labels of `irsa_controller_uninjected_pods`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    pub namespace: String,
}

#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// IAM/STS calls as the controller made them (one per API call after the SDK's own
    /// retries), by operation and final outcome.
    pub iam_calls: Family<IamCallLabels, Counter>,
    pub reconciles: Family<KindLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    /// Size of each role's trust policy as last reconciled (whitespace excluded).
    pub trust_policy_chars: Family<RoleLabels, Gauge>,
    /// 1 while this replica is the one writing to IAM (the leader, or alone).
    pub is_leader: Gauge,
    /// `--publish-issuer`: unix time of the last pass that published (or found current)
    /// both documents.
    pub issuer_last_publish: Gauge,
    pub issuer_keys_published: Gauge,
    /// Retired keys still published until their tokens expired.
    pub issuer_keys_pending_removal: Gauge,
    pub issuer_writes: Counter,
    /// Passes whose anonymous read of the public copy did not match what was published.
    pub issuer_drift: Counter,
    pub issuer_publish_errors: Family<ErrorLabels, Counter>,
    /// Pods whose ServiceAccount has a role but that carry no credentials, by namespace; only
    /// the leader counts (a namespace without any has no series).
    pub uninjected_pods: Family<NamespaceLabels, Gauge>,
}

impl Metrics {
    /// Registers every metric under its full name, so pass an unprefixed registry.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "irsa_controller_iam_calls",
            "IAM and STS API calls made by the controller, by operation and outcome",
            self.iam_calls.clone(),
        );
        registry.register(
            "irsa_controller_reconciles",
            "Reconciles run, by kind (binding, role)",
            self.reconciles.clone(),
        );
        registry.register(
            "irsa_controller_reconcile_errors",
            "Reconciles that failed, by kind and error",
            self.reconcile_errors.clone(),
        );
        registry.register(
            "irsa_controller_trust_policy_chars",
            "Size of each role's trust policy (whitespace excluded) as last reconciled",
            self.trust_policy_chars.clone(),
        );
        registry.register(
            "irsa_controller_is_leader",
            "1 while this replica reconciles (holds the leader-election Lease, or runs without election)",
            self.is_leader.clone(),
        );
        registry.register(
            "irsa_controller_issuer_last_publish_timestamp_seconds",
            "Unix time of the last successful issuer publishing pass (--publish-issuer)",
            self.issuer_last_publish.clone(),
        );
        registry.register(
            "irsa_controller_issuer_keys_published",
            "Keys in the published JWKS",
            self.issuer_keys_published.clone(),
        );
        registry.register(
            "irsa_controller_issuer_keys_pending_removal",
            "Retired signing keys still published until every token they signed has expired",
            self.issuer_keys_pending_removal.clone(),
        );
        registry.register(
            "irsa_controller_issuer_writes",
            "Issuer documents written to S3",
            self.issuer_writes.clone(),
        );
        registry.register(
            "irsa_controller_issuer_drift",
            "Publishing passes whose anonymous read of the public copy did not match",
            self.issuer_drift.clone(),
        );
        registry.register(
            "irsa_controller_issuer_publish_errors",
            "Issuer publishing passes that failed, by error",
            self.issuer_publish_errors.clone(),
        );
        registry.register(
            "irsa_controller_uninjected_pods",
            "Pods whose ServiceAccount has a role but that carry no AWS credentials (the webhook did not mutate them), by namespace",
            self.uninjected_pods.clone(),
        );
    }

    /// Sets the uninjected count of `namespace`; zero removes the series.
    pub fn set_uninjected(&self, namespace: &str, count: i64) {
        let labels = NamespaceLabels {
            namespace: namespace.to_string(),
        };
        if count == 0 {
            self.uninjected_pods.remove(&labels);
        } else {
            self.uninjected_pods.get_or_create(&labels).set(count);
        }
    }

    pub fn issuer_publish_failed(&self, error: &'static str) {
        self.issuer_publish_errors
            .get_or_create(&ErrorLabels {
                kind: "issuer",
                error,
            })
            .inc();
    }

    pub fn reconciled(&self, kind: &'static str) {
        self.reconciles.get_or_create(&KindLabels { kind }).inc();
    }

    pub fn reconcile_failed(&self, kind: &'static str, error: &'static str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels { kind, error })
            .inc();
    }

    pub fn set_trust_chars(&self, role: &str, chars: usize) {
        self.trust_policy_chars
            .get_or_create(&RoleLabels {
                role: role.to_string(),
            })
            .set(i64::try_from(chars).unwrap_or(i64::MAX));
    }

    pub fn count_iam_call(&self, operation: &'static str, outcome: &'static str) {
        self.iam_calls
            .get_or_create(&IamCallLabels { operation, outcome })
            .inc();
    }

    /// Calls counted so far for one operation and outcome (for tests).
    pub fn iam_call_count(&self, operation: &'static str, outcome: &'static str) -> u64 {
        self.iam_calls
            .get(&IamCallLabels { operation, outcome })
            .map_or(0, |c| c.get())
    }
}

impl CallObserver for Metrics {
    fn observe(&self, operation: &'static str, outcome: &'static str) {
        self.count_iam_call(operation, outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_calls_are_exposed_with_operation_and_outcome() {
        let metrics = Metrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.count_iam_call("GetRole", "success");
        metrics.count_iam_call("GetRole", "success");
        metrics.count_iam_call("UpdateAssumeRolePolicy", "throttled");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                r#"irsa_controller_iam_calls_total{operation="GetRole",outcome="success"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"irsa_controller_iam_calls_total{operation="UpdateAssumeRolePolicy",outcome="throttled"} 1"#
        ));
        assert_eq!(metrics.iam_call_count("GetRole", "success"), 2);
        assert_eq!(metrics.iam_call_count("GetRole", "timeout"), 0);
    }
}
