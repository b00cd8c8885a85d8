//! The chart's alert rules under Prometheus' own tools (the convention of the Prometheus
//! ecosystem: rule unit tests with `promtool`). The rules are rendered by the chart renderer of
//! `packaging.rs`, written as a plain rule file, and
//! - `promtool check rules --lint-fatal` parses every expression, template and duration, for
//!   the rendered variants (every optional rule on, the controller off, changed thresholds);
//! - `promtool test rules` runs the unit tests of `charts/irsa/tests/rules/`: per alert, the
//!   input series of the situation it is for, the alert expected firing at the time its `for:`
//!   says with its labels and annotations, and healthy series for which it stays silent; the
//!   thresholds and `for:` durations that are chart values at their defaults and at changed
//!   values; the counters of failures start at their first failure (series born at 1), which
//!   counts;
//! - the dashboard's issuer publish-age query, which a Prometheus of an install without
//!   publishing cannot show (the journey's is one), through `promtool test rules`' query tests.
//!
//! A missing promtool fails (saying to run `make deps`); nothing here is skipped. The same
//! rules run in a real Prometheus against the journeys' processes in
//! `e2e/tests/journeys/alerts.rs`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use irsa_e2e::prometheus::{PUBLISHED_AT, dashboard_queries, promtool, rule_file};

use super::packaging::{helm, render_checked, values};

/// Where the promtool unit tests live; each names `rules.yaml`, written beside it.
const TESTS: &str = "charts/irsa/tests/rules";

/// Every optional rule on: the two issuer-publishing rules need `publishIssuer.s3Url`, the
/// agent's the agent.
fn all_rules_on() -> Value {
    json!({
        "metrics": {"prometheusRule": {"enabled": true}},
        "controller": {"publishIssuer": {"s3Url": "s3://bucket/cluster"}},
        "agent": {"enabled": true, "clusterName": "c"},
    })
}

/// The thresholds and `for:` durations that are chart values, changed from their defaults
/// (0.5 s, 2048; 5m, 10m, 15m and 0s).
fn changed_thresholds() -> Value {
    let mut v = all_rules_on();
    irsa_e2e::merge(
        &mut v,
        json!({
            "metrics": {"prometheusRule": {
                "webhookLatencySeconds": 2,
                "for": {
                    "IrsaWebhookDown": "1m",
                    "IrsaWebhookBadRequests": "0s",
                    "IrsaControllerIamErrors": "0s",
                    "IrsaControllerReconcileErrors": "2m",
                },
            }},
            "controller": {"trustPolicyMaxChars": 4096},
        }),
    );
    v
}

/// Each unit-test file and the values its rules are rendered with.
fn unit_tests() -> Vec<(&'static str, Value)> {
    vec![
        ("irsa-webhook.yaml", all_rules_on()),
        ("irsa-controller.yaml", all_rules_on()),
        ("irsa-agent.yaml", all_rules_on()),
        ("thresholds.yaml", changed_thresholds()),
        ("counts.yaml", all_rules_on()),
    ]
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The rule file of the chart rendered with `extra` values.
fn rendered_rules(extra: Value) -> String {
    rule_file(&render_checked(&values(extra)))
}

/// A fresh scratch directory for one promtool run.
fn scratch(name: &str) -> PathBuf {
    let dir = irsa_e2e::target_tmp().join(irsa_e2e::support::unique(&format!("promtool-{name}")));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `promtool ARGS` in `dir`: Ok(output) or Err(output), stdout and stderr together.
fn run_promtool(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running promtool: {e} (`make deps` builds it)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// The alert names of a rule file.
fn alerts_in(rules: &str) -> BTreeSet<String> {
    let file: Value = serde_json::from_str(rules).unwrap();
    file["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .map(|r| r["alert"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn promtool_check_rules_accepts_every_rendered_variant() {
    let variants = [
        (
            "the defaults",
            json!({"metrics": {"prometheusRule": {"enabled": true}}}),
            11,
        ),
        ("every optional rule on", all_rules_on(), 14),
        (
            "the controller off",
            json!({"metrics": {"prometheusRule": {"enabled": true}}, "controller": {"enabled": false}}),
            6,
        ),
        ("changed thresholds", changed_thresholds(), 14),
    ];
    let mut failures = Vec::new();
    for (what, extra, count) in variants {
        let rules = rendered_rules(extra);
        assert_eq!(alerts_in(&rules).len(), count, "{what}: {rules}");
        let dir = scratch("check");
        std::fs::write(dir.join("rules.yaml"), &rules).unwrap();
        match run_promtool(&dir, &["check", "rules", "--lint-fatal", "rules.yaml"]) {
            Ok(out) => assert!(
                out.contains(&format!("SUCCESS: {count} rules found")),
                "{out}"
            ),
            Err(out) => failures.push(format!("promtool check rules, {what}:\n{out}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn promtool_unit_tests_fire_each_alert_on_time_and_keep_it_silent_when_healthy() {
    let mut failures = Vec::new();
    for (file, extra) in unit_tests() {
        let dir = scratch("test");
        std::fs::write(dir.join("rules.yaml"), rendered_rules(extra)).unwrap();
        std::fs::copy(repo().join(TESTS).join(file), dir.join(file)).unwrap();
        match run_promtool(&dir, &["test", "rules", file]) {
            Ok(out) => println!("{file}:\n{out}"),
            Err(out) => failures.push(format!("promtool test rules {TESTS}/{file}:\n{out}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The unit tests cover every alert both ways (at least one test expects it firing, one
/// expects it silent), and every test file in the directory runs.
#[test]
fn every_alert_has_a_firing_and_a_silent_unit_test() {
    let files: BTreeSet<String> = std::fs::read_dir(repo().join(TESTS))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let run: BTreeSet<String> = unit_tests().iter().map(|(f, _)| f.to_string()).collect();
    assert_eq!(
        files, run,
        "every file of {TESTS} is listed in unit_tests()"
    );

    let (mut firing, mut silent) = (BTreeSet::new(), BTreeSet::new());
    for file in &files {
        let text = std::fs::read_to_string(repo().join(TESTS).join(file)).unwrap();
        let tests: Value = serde_saphyr::from_str(&text)
            .unwrap_or_else(|e| panic!("{TESTS}/{file} is not YAML: {e}"));
        for test in tests["tests"].as_array().into_iter().flatten() {
            for case in test["alert_rule_test"].as_array().into_iter().flatten() {
                let alert = case["alertname"].as_str().unwrap_or_default().to_string();
                let expected = case["exp_alerts"].as_array().map_or(0, Vec::len);
                if expected == 0 {
                    silent.insert(alert);
                } else {
                    firing.insert(alert);
                }
            }
        }
    }
    let all = alerts_in(&rendered_rules(all_rules_on()));
    let never_fired: Vec<&String> = all.difference(&firing).collect();
    let never_silent: Vec<&String> = all.difference(&silent).collect();
    assert!(
        never_fired.is_empty() && never_silent.is_empty(),
        "alerts no unit test expects firing: {never_fired:?}; expects silent: {never_silent:?}"
    );
}

/// The dashboard's publish age: no line before the first publish (the gauge is 0 then, and
/// `time() - 0` would be 56 years), the seconds since the last pass after it.
#[test]
fn the_dashboards_publish_age_is_absent_until_the_first_publish_then_its_age() {
    let docs = render_checked(&values(
        json!({"metrics": {"grafanaDashboard": {"enabled": true}}}),
    ));
    let (_, age) = dashboard_queries(&docs)
        .into_iter()
        .find(|(_, expr)| expr.contains(PUBLISHED_AT))
        .unwrap_or_else(|| panic!("a dashboard query of {PUBLISHED_AT}"));
    let check =
        |at: &str, samples: Value| json!({"expr": age, "eval_time": at, "exp_samples": samples});
    let tests = json!({
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            // The controller starts (0), publishes at 2m and never again.
            "input_series": [{
                "series": format!("{PUBLISHED_AT}{{instance=\"10.0.0.2:9091\"}}"),
                "values": "0 0 120x10",
            }],
            "promql_expr_test": [
                check("1m", json!([])),
                check("5m", json!([{"labels": "{}", "value": 180}])),
            ],
        }],
    });
    let dir = scratch("dashboard");
    std::fs::write(dir.join("dashboard.yaml"), tests.to_string()).unwrap();
    if let Err(out) = run_promtool(&dir, &["test", "rules", "dashboard.yaml"]) {
        panic!("the dashboard's publish age {age:?}:\n{out}");
    }
}

/// A `for:` of an alert the chart does not have, or that is not a Prometheus duration, is
/// refused by the values schema (not rendered into a rule Prometheus would reject, or ignored).
#[test]
fn the_for_values_refuse_an_unknown_alert_and_a_non_duration() {
    for (bad, mentions) in [
        (json!({"IrsaWebhookDwn": "1m"}), "IrsaWebhookDwn"),
        (json!({"IrsaWebhookDown": "5 minutes"}), "IrsaWebhookDown"),
    ] {
        let vals = values(json!({"metrics": {"prometheusRule": {"enabled": true, "for": bad}}}));
        let err = helm("render", &vals).expect_err(&format!("{bad} was accepted"));
        assert!(
            err.contains(mentions),
            "{bad}: error does not name {mentions}:\n{err}"
        );
    }
}
