//! The chart's alerts and dashboard in a real Prometheus: it scrapes the journey's
//! `irsa webhook` and `irsa controller` under the job names the chart's ServiceMonitors give
//! them, loads the rule file rendered from the chart and evaluates it every second. The three
//! alerts the journey makes fire are rendered with a `for:` of a few seconds
//! (`metrics.prometheusRule.for`; their default minutes are the promtool unit tests' of
//! `tests/it/alerts.rs`), so that the journey sees them fire, not only become pending.
//!
//! - A healthy run (both targets up, a leader, a binding made Ready through IAM, pods
//!   mutated): no alert is pending or firing at any evaluation, every rule evaluates without
//!   error, and every dashboard panel shows data: every query returns some, but the issuer
//!   publish age, which this install (no `--publish-issuer`) has none of.
//! - An IAM fault (the moto proxy fails one `UpdateAssumeRolePolicy` through all of the SDK's
//!   attempts): `IrsaControllerIamErrors` fires for that operation and outcome (the failure's
//!   series is born at 1: that first failure counts).
//! - The webhook killed (registered with `failurePolicy: Ignore`) and a pod admitted unmutated:
//!   `IrsaWebhookDown` fires, and `IrsaUninjectedPods` for the pod's namespace.
//!
//! Runs in the `e2e-controller` group (its controller watches the whole cluster).

use std::collections::BTreeMap;

use irsa::crd::{IAMRoleGrant, IAMRoleGrantSpec};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};

use irsa_e2e::identity;
use irsa_e2e::moto::Fault;
use irsa_e2e::process::Process;
use irsa_e2e::prometheus::{
    PUBLISHED_AT, Prometheus, dashboard_queries, rule_file, service_monitor_jobs,
};
use irsa_e2e::support::{self, WAIT};
use irsa_e2e::webhook::{
    assert_injected, assert_untouched, create_pod, create_service_account, pod, serve_namespace,
    unregister,
};

/// Attempts the controller's SDK makes per IAM call (`MAX_ATTEMPTS` of src/aws/mod.rs): this
/// many injected failures make exactly one call fail.
const SDK_ATTEMPTS: usize = 8;

/// The `for:` of the alerts the journey makes fire: a few rule evaluations (one a second).
const FOR: &str = "3s";

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn the_chart_alerts_stay_quiet_when_healthy_and_fire_when_irsa_breaks() {
    let cluster = support::controller_cluster().await;
    let client = cluster.client.clone();
    let prefix = cluster.settings.annotation_prefix.clone();
    let ns = support::create_namespace(&client, "irsa-e2e-alerts").await;

    // The chart as a release `irsa` with its rules, ServiceMonitors and dashboard.
    let docs = support::helm_template(
        "irsa",
        identity::RELEASE_NAMESPACE,
        &json!({"metrics": {
            "prometheusRule": {"enabled": true, "for": {
                "IrsaWebhookDown": FOR,
                "IrsaUninjectedPods": FOR,
                "IrsaControllerIamErrors": FOR,
            }},
            "serviceMonitor": {"enabled": true},
            "grafanaDashboard": {"enabled": true},
        }}),
    );
    let jobs = service_monitor_jobs(&docs);
    assert_eq!(
        jobs.keys().map(String::as_str).collect::<Vec<_>>(),
        ["controller", "webhook"],
        "{jobs:?}"
    );

    // The IAM side: a role in the emulator, a grant, a binding of ServiceAccount `reader`.
    let aws = cluster
        .aws_env
        .local
        .as_ref()
        .expect("the IAM fault needs the local emulator (unset IRSA_E2E_AWS)");
    let role = aws
        .seed_role("/", r#"{"Version":"2012-10-17","Statement":[]}"#, &[])
        .await;
    let grant = IAMRoleGrant::new(
        &support::unique("irsa-e2e-alerts"),
        IAMRoleGrantSpec {
            namespaces: vec![ns.clone()],
            role_arns: vec![role.clone()],
            service_accounts: None,
            allow_namespace_wildcard_trust: false,
        },
    );
    let grants: Api<IAMRoleGrant> = Api::all(client.clone());
    grants.create(&PostParams::default(), &grant).await.unwrap();
    for sa in ["reader", "writer"] {
        create_service_account(&client, &ns, sa, json!({})).await;
    }
    // `app` carries the role itself (an existing one: a role IAM does not know is an IAM error).
    let annotation = format!("{prefix}/role-arn");
    create_service_account(&client, &ns, "app", json!({annotation: role})).await;

    // The webhook, registered the chart's way with Ignore; the controller (annotated
    // ServiceAccounts without a binding, `app`, left to themselves).
    let (webhook, registration) = serve_namespace(&client, &ns, "alerts", "Ignore").await;
    let controller = Process::controller_with(
        &cluster,
        None,
        "alerts",
        &["--manage-annotated-serviceaccounts", "false"],
    );
    controller.wait_ready(WAIT).await;
    let prometheus = Prometheus::start(
        "alerts",
        &rule_file(&docs),
        &[
            (&jobs["webhook"], webhook.admin()),
            (&jobs["controller"], controller.admin()),
        ],
    )
    .await;

    // ---- Healthy: once Prometheus scrapes all three targets, a binding made Ready through
    // IAM and a pod mutated (admissions Prometheus sees happen, not only their totals).
    prometheus
        .wait_for("Prometheus to scrape its three targets", WAIT, async || {
            !prometheus.samples("count(up == 1) == 3").await.is_empty()
        })
        .await;
    support::create_binding(&client, &ns, "reader", &role, &["reader"]).await;
    support::wait_bound(
        &client,
        &ns,
        "reader",
        (&prefix, &role),
        &["reader"],
        Some(&controller),
    )
    .await;
    let stored = create_pod(&client, &ns, &pod("web-0", "app", json!({})))
        .await
        .unwrap();
    assert_injected(&stored, "app", &role);

    // From when Prometheus has seen all of that (earlier evaluations may predate the first
    // scrape), ten more evaluations of every group.
    let since = prometheus
        .wait_for(
            "Prometheus to scrape both targets up, a leader, IAM successes and mutations",
            WAIT,
            async || healthy_since(&prometheus).await,
        )
        .await;
    let iterations =
        |at_least: f64| format!("min(prometheus_rule_group_iterations_total) >= {at_least}");
    let start = scalar(&prometheus, "min(prometheus_rule_group_iterations_total)").await;
    prometheus
        .wait_for(
            "ten more evaluations of every rule group",
            WAIT,
            async || {
                !prometheus
                    .samples(&iterations(start + 10.0))
                    .await
                    .is_empty()
            },
        )
        .await;
    let window = (scalar(&prometheus, "time()").await - since).floor();
    let active = prometheus
        .samples(&format!("count_over_time(ALERTS[{window}s])"))
        .await;
    assert!(
        active.is_empty(),
        "alerts pending or firing during the healthy run ({window}s): {active:#?}"
    );
    assert_rules_healthy(&prometheus).await;
    assert_dashboard_has_data(&prometheus, &docs).await;

    // ---- An IAM fault: one UpdateAssumeRolePolicy fails through all of the SDK's attempts.
    cluster
        .aws_env
        .calls()
        .inject_for("UpdateAssumeRolePolicy", Fault::ServerError, SDK_ATTEMPTS);
    support::create_binding(&client, &ns, "writer", &role, &["writer"]).await;
    let iam = wait_alert(
        &prometheus,
        "IrsaControllerIamErrors",
        &[
            ("operation", "UpdateAssumeRolePolicy"),
            ("outcome", "server_error"),
        ],
    )
    .await;
    assert_eq!(iam["labels"]["severity"], "warning", "{iam:#}");
    assert_eq!(
        iam["annotations"]["description"],
        "UpdateAssumeRolePolicy fails with server_error: trust policies are not updated. \
         Check the controller's IAM role (config/iam/controller-policy.json).",
        "{iam:#}"
    );
    // The fault was transient: the binding gets there.
    support::wait_bound(
        &client,
        &ns,
        "writer",
        (&prefix, &role),
        &["writer"],
        Some(&controller),
    )
    .await;

    // ---- The webhook killed: pods are admitted unmutated (failurePolicy Ignore).
    webhook.kill();
    let stored = create_pod(&client, &ns, &pod("web-1", "app", json!({})))
        .await
        .unwrap();
    assert_untouched(&stored);
    let down = wait_alert(&prometheus, "IrsaWebhookDown", &[]).await;
    assert_eq!(down["labels"]["severity"], "critical", "{down:#}");
    let uninjected = wait_alert(&prometheus, "IrsaUninjectedPods", &[("namespace", &ns)]).await;
    let description = uninjected["annotations"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(
        description.starts_with(&format!("1 pods in {ns} carry no credentials"))
            && description.contains(&format!(
                "kubectl get events -n {ns} --field-selector reason=PodNotInjected"
            )),
        "{uninjected:#}"
    );
    // The dashboard's panel of the same gauge shows the namespace (not its healthy 0).
    let (_, panel) = dashboard_queries(&docs)
        .into_iter()
        .find(|(title, _)| title == "Pods not injected, by namespace")
        .expect("the dashboard's uninjected-pods panel");
    let shown = prometheus.samples(&panel).await;
    assert!(
        shown
            .iter()
            .any(|s| s["metric"]["namespace"] == ns.as_str() && s["value"][1] == "1"),
        "{panel}: {shown:?}"
    );
    assert_rules_healthy(&prometheus).await;

    controller.assert_running();
    unregister(&client, &registration).await;
    support::delete_namespace(&client, &ns).await;
    let _ = grants
        .delete(&grant.name_any(), &DeleteParams::default())
        .await;
    drop(controller);
}

/// Prometheus' time once it sees the healthy run: both irsa targets up, a leader, successful
/// IAM calls and mutations while it scraped; `None` before.
async fn healthy_since(prometheus: &Prometheus) -> Option<f64> {
    for query in [
        "count(up == 1) == 3",
        "irsa_controller_is_leader == 1",
        r#"irsa_controller_iam_calls_total{outcome="success"}"#,
        "sum(rate(irsa_webhook_mutations_total[5m])) > 0",
    ] {
        if prometheus.samples(query).await.is_empty() {
            return None;
        }
    }
    Some(scalar(prometheus, "time()").await)
}

/// The value of a query that returns one number (a scalar or a one-sample vector).
async fn scalar(prometheus: &Prometheus, query: &str) -> f64 {
    let result = prometheus
        .query(query)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    let value = match &result {
        // A scalar: [time, "value"].
        Value::Array(pair) if pair.first().is_some_and(Value::is_number) => &pair[1],
        Value::Array(samples) if samples.len() == 1 => &samples[0]["value"][1],
        _ => panic!("{query}: not one number: {result}"),
    };
    value
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{query}: not a number: {result}"))
}

/// Waits (bounded) until the alert `name` with `labels` fires; it.
async fn wait_alert(prometheus: &Prometheus, name: &str, labels: &[(&str, &str)]) -> Value {
    prometheus
        .wait_for(
            &format!("alert {name} {labels:?} to fire"),
            WAIT,
            async || {
                prometheus.alerts().await.into_iter().find(|a| {
                    a["state"] == "firing"
                        && a["labels"]["alertname"] == name
                        && labels.iter().all(|(k, v)| a["labels"][k] == *v)
                })
            },
        )
        .await
}

/// Every rule loaded, evaluated and without an evaluation error.
async fn assert_rules_healthy(prometheus: &Prometheus) {
    let mut problems = Vec::new();
    let mut count = 0;
    for group in prometheus.rule_groups().await {
        for rule in group["rules"].as_array().into_iter().flatten() {
            count += 1;
            if rule["health"] != "ok" {
                problems.push(format!(
                    "{}: {} {}",
                    rule["name"], rule["health"], rule["lastError"]
                ));
            }
        }
    }
    assert_eq!(count, 11, "the default chart's 11 rules are loaded");
    assert!(
        problems.is_empty(),
        "rules that fail to evaluate: {problems:#?}"
    );
    let failures = scalar(prometheus, "sum(prometheus_rule_evaluation_failures_total)").await;
    assert_eq!(failures, 0.0, "rule evaluation failures");
}

/// Every query of the dashboard parses and returns data (a number, not NaN) now: a panel that
/// shows "No data" on a working install is a bug. But the issuer publish age: this install
/// does not publish, its gauge says so (0) and the query has no line rather than a 56-year age
/// (`tests/it/alerts.rs` checks its age after a publish); its panel shows the keys and errors.
async fn assert_dashboard_has_data(prometheus: &Prometheus, docs: &[Value]) {
    let queries = dashboard_queries(docs);
    assert!(queries.len() >= 15, "{queries:?}");
    let mut problems: BTreeMap<String, String> = BTreeMap::new();
    let mut panels_with_data = BTreeMap::new();
    for (title, expr) in queries {
        let what = format!("{title}: {expr}");
        let result = prometheus.query(&expr).await;
        let has_data = matches!(&result, Ok(Value::Array(samples)) if !samples.is_empty());
        *panels_with_data.entry(title.clone()).or_insert(false) |= has_data;
        if expr.contains(PUBLISHED_AT) {
            let never = prometheus.samples(&format!("{PUBLISHED_AT} == 0")).await;
            if has_data || never.len() != 1 {
                problems.insert(
                    what,
                    format!("without publishing, no age ({result:?}), the gauge at 0 ({never:?})"),
                );
            }
            continue;
        }
        match result {
            Err(e) => {
                problems.insert(what, e);
            }
            Ok(Value::Array(samples)) if samples.is_empty() => {
                problems.insert(what, "no data".into());
            }
            Ok(Value::Array(samples)) => {
                if samples.iter().any(|s| s["value"][1] == "NaN") {
                    problems.insert(what, format!("NaN: {samples:?}"));
                }
            }
            Ok(other) => {
                problems.insert(what, format!("not a vector: {other}"));
            }
        }
    }
    let empty: Vec<&String> = panels_with_data
        .iter()
        .filter(|(_, data)| !**data)
        .map(|(title, _)| title)
        .collect();
    assert!(
        problems.is_empty() && empty.is_empty(),
        "dashboard queries without data on a healthy install: {problems:#?}; panels: {empty:?}"
    );
}
