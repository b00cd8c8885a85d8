//! The chart's alert rules against Prometheus' own tools: `promtool`, built from its Go module
//! by `scripts/prometheus.sh` (`make deps`) and found through `IRSA_PROMTOOL`
//! (`scripts/with-control-plane.sh` exports it), and the rule file it reads, rendered from the
//! chart ([`rule_file`]).

use std::path::PathBuf;

use serde_json::{Value, json};

/// A tool `scripts/prometheus.sh` built, named by the environment variable `var` (its `env`
/// verb prints them); panics saying how to get it, never skips.
fn tool(var: &str, name: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "{var} is not set: run `make deps` (scripts/prometheus.sh build), then the tests \
                 under scripts/with-control-plane.sh (`make test`), or `source <(scripts/prometheus.sh env)`"
            )
        });
    assert!(
        path.is_file(),
        "{name} is missing at {} ({var}): run `make deps` (scripts/prometheus.sh build)",
        path.display()
    );
    path
}

/// `promtool`, for `check rules` and `test rules`.
pub fn promtool() -> PathBuf {
    tool("IRSA_PROMTOOL", "promtool")
}

/// The rendered chart's PrometheusRule as a plain Prometheus rule file (`groups:`, in JSON,
/// which is YAML): what the Prometheus Operator hands its Prometheus.
pub fn rule_file(docs: &[Value]) -> String {
    let rule = docs
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .unwrap_or_else(|| panic!("no PrometheusRule rendered (metrics.prometheusRule.enabled?)"));
    json!({"groups": rule["spec"]["groups"]}).to_string()
}
