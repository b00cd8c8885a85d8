//! The chart's alert rules and dashboard against Prometheus' own tools: `promtool` and a real
//! `prometheus`, both built from their Go module by `scripts/prometheus.sh` (`make deps`) and
//! found through `IRSA_PROMTOOL` / `IRSA_E2E_PROMETHEUS` (`scripts/with-control-plane.sh`
//! exports them). What the rendered chart gives them: the rule file ([`rule_file`]), the job
//! names its ServiceMonitors produce ([`service_monitor_jobs`]) and the dashboard's queries
//! ([`dashboard_queries`]); a Prometheus process scraping static targets under those job names
//! and evaluating the rules every second ([`Prometheus`]), read through its HTTP API.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::process::Process;

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

/// `prometheus`, for the journeys.
pub fn prometheus() -> PathBuf {
    tool("IRSA_E2E_PROMETHEUS", "prometheus")
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

/// The job label of each component's targets (`app.kubernetes.io/component` → job), as the
/// Prometheus Operator names them for the rendered ServiceMonitors: the name of the Service the
/// ServiceMonitor selects (the chart sets no `jobLabel`).
pub fn service_monitor_jobs(docs: &[Value]) -> BTreeMap<String, String> {
    let component = |d: &Value| {
        d["metadata"]["labels"]["app.kubernetes.io/component"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let mut jobs = BTreeMap::new();
    for monitor in docs.iter().filter(|d| d["kind"] == "ServiceMonitor") {
        assert!(
            monitor["spec"]["jobLabel"].is_null(),
            "a jobLabel changes the job names the alerts match: {monitor}"
        );
        let selector = monitor["spec"]["selector"]["matchLabels"]
            .as_object()
            .unwrap_or_else(|| panic!("ServiceMonitor without matchLabels: {monitor}"));
        let services: Vec<&Value> = docs
            .iter()
            .filter(|d| d["kind"] == "Service")
            .filter(|d| {
                selector
                    .iter()
                    .all(|(k, v)| d["metadata"]["labels"][k] == *v)
            })
            .collect();
        assert_eq!(
            services.len(),
            1,
            "ServiceMonitor {} selects exactly one Service: {services:?}",
            monitor["metadata"]["name"]
        );
        let name = services[0]["metadata"]["name"].as_str().unwrap_or_default();
        jobs.insert(component(monitor), name.to_string());
    }
    jobs
}

/// The controller's gauge of its last successful publishing pass (unix seconds; 0 until the
/// first, and always without `--publish-issuer`): the dashboard's publish-age query reads it.
pub const PUBLISHED_AT: &str = "irsa_controller_issuer_last_publish_timestamp_seconds";

/// Every query of the rendered dashboard (`<name>-dashboard` ConfigMap): (panel title, expr).
pub fn dashboard_queries(docs: &[Value]) -> Vec<(String, String)> {
    let map = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["labels"]["grafana_dashboard"] == "1")
        .unwrap_or_else(|| {
            panic!("no dashboard ConfigMap rendered (metrics.grafanaDashboard.enabled?)")
        });
    let text = map["data"]["irsa.json"].as_str().unwrap_or_default();
    let dashboard: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("the dashboard is not JSON: {e}"));
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            queries.push((title.to_string(), expr.to_string()));
        }
    }
    queries
}

/// A Prometheus on a free 127.0.0.1 port: static targets under the given job names (and itself
/// as job `prometheus`), scraped every second, the rules evaluated every second, its TSDB in a fresh directory. Killed on
/// drop (it is a [`Process`]), its log printed when the test fails.
pub struct Prometheus {
    process: Process,
    url: String,
    http: reqwest::Client,
}

impl std::ops::Deref for Prometheus {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.process
    }
}

impl Prometheus {
    /// Starts it with the rule file `rules` and `targets` (job name, `host:port` of an admin
    /// port serving `/metrics`) and waits until it is ready.
    pub async fn start(name: &str, rules: &str, targets: &[(&str, &str)]) -> Self {
        let dir = crate::target_tmp().join(crate::support::unique(&format!("prometheus-{name}")));
        std::fs::create_dir_all(&dir).unwrap();
        let rule_path = dir.join("rules.yaml");
        std::fs::write(&rule_path, rules).unwrap();
        let listen = format!("127.0.0.1:{}", crate::free_port());
        // Itself too, as job `prometheus`: its rule-evaluation metrics (iterations, failures).
        let scrape_configs: Vec<Value> = targets
            .iter()
            .copied()
            .chain([("prometheus", listen.as_str())])
            .map(|(job, addr)| json!({"job_name": job, "static_configs": [{"targets": [addr]}]}))
            .collect();
        let config = json!({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [rule_path],
            "scrape_configs": scrape_configs,
        });
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let args: Vec<std::ffi::OsString> = vec![
            "--config.file".into(),
            config_path.into(),
            "--storage.tsdb.path".into(),
            dir.join("data").into(),
            "--web.listen-address".into(),
            listen.clone().into(),
        ];
        let process = Process::program(
            &format!("prometheus {name}"),
            prometheus(),
            args,
            std::iter::empty::<(&str, &str)>(),
        );
        let prometheus = Self {
            process,
            url: format!("http://{listen}"),
            http: reqwest::Client::new(),
        };
        let ready = format!("{}/-/ready", prometheus.url);
        prometheus
            .wait_for(
                &format!("Prometheus to be ready ({ready})"),
                crate::support::WAIT,
                async || {
                    prometheus
                        .http
                        .get(&ready)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success())
                },
            )
            .await;
        prometheus
    }

    /// `GET /api/v1/<path>`: the `data` of a successful answer, or Prometheus' error (e.g. a
    /// query that does not parse: `bad_data: ...`).
    async fn api(&self, path: &str) -> Result<Value, String> {
        let url = format!("{}/api/v1/{path}", self.url);
        let response = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let body: Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: no JSON: {e}"));
        if body["status"] == "success" {
            Ok(body["data"].clone())
        } else {
            Err(format!("{}: {}", body["errorType"], body["error"]))
        }
    }

    /// The instant query `query` now: its result (a vector's samples, or a scalar's
    /// `[time, value]`), or Prometheus' error.
    pub async fn query(&self, query: &str) -> Result<Value, String> {
        let q = utf8_percent_encode(query, NON_ALPHANUMERIC);
        self.api(&format!("query?query={q}"))
            .await
            .map(|data| data["result"].clone())
    }

    /// The samples of the instant vector query `query` now; panics on an error.
    pub async fn samples(&self, query: &str) -> Vec<Value> {
        match self.query(query).await {
            Ok(Value::Array(samples)) => samples,
            Ok(other) => panic!("{query:?} is not a vector: {other}"),
            Err(e) => panic!("{query:?}: {e}"),
        }
    }

    /// `/api/v1/alerts`: every pending or firing alert (labels, annotations, state, activeAt).
    pub async fn alerts(&self) -> Vec<Value> {
        let data = self.api("alerts").await.unwrap_or_else(|e| panic!("{e}"));
        data["alerts"].as_array().cloned().unwrap_or_default()
    }

    /// `/api/v1/rules`: the rule groups as loaded, each rule with its health and last error.
    pub async fn rule_groups(&self) -> Vec<Value> {
        let data = self.api("rules").await.unwrap_or_else(|e| panic!("{e}"));
        data["groups"].as_array().cloned().unwrap_or_default()
    }
}
