//! The ServiceAccount cache against a mocked Kubernetes API (tower-test + ApiServerVerifier):
//! hit, miss → GET → mutate, miss → 404 → unmutated, concurrent misses → one GET, and a GET
//! slower than `--sa-lookup-timeout` → answered in time, unmutated.

use std::{sync::Arc, time::Duration};

use crate::common::WAIT;
use crate::common::webhook::*;
use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use http_body_util::BodyExt;
use irsa::testing::kube_api::mock_client;
use irsa::{
    mutate::MutationConfig,
    webhook::{Metrics, ServiceAccountCache, admin_router, router},
};
use irsa_e2e::metrics::metric;
use irsa_e2e::wait::wait_for;
use serde_json::Value;
use tower::ServiceExt;

const PREFIX: &str = "eks.amazonaws.com";

fn role() -> Vec<(String, String)> {
    annotations(&[
        ("eks.amazonaws.com/role-arn", ROLE),
        ("unrelated.example.com/owner", "team-a"),
    ])
}

struct Fixture {
    cache: ServiceAccountCache,
    metrics: Arc<Metrics>,
    api: ApiServerVerifier,
    app: axum::Router,
    admin: axum::Router,
    /// The webhook's client to the mocked API server.
    client: kube::Client,
    _watch: Option<tokio::task::JoinHandle<()>>,
}

async fn fixture(
    list: Vec<ListedSa<'_>>,
    get: GetBehaviour,
    timeout: Duration,
    config: MutationConfig,
) -> Fixture {
    let (client, handle) = mock_client();
    let metrics = Arc::new(Metrics::new());
    let cache = ServiceAccountCache::kube(client.clone(), PREFIX, timeout, metrics.clone());
    let watch = cache.start_watch();
    let state = app_state(cache.clone(), metrics.clone(), config, timeout);
    let admin = admin_router(state.clone());
    // Not ready before the API server has answered the list.
    assert_eq!(
        status(&admin, "/readyz").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let api = ApiServerVerifier::spawn(handle, list, get);
    wait_for("the ServiceAccount cache syncs", WAIT, async || {
        cache.is_synced()
    })
    .await;
    assert_eq!(status(&admin, "/readyz").await, StatusCode::OK);
    Fixture {
        app: router(state),
        admin,
        cache,
        metrics,
        api,
        client,
        _watch: watch,
    }
}

async fn status(app: &axum::Router, path: &str) -> StatusCode {
    app.clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap()
        .status()
}

async fn admit(app: &axum::Router, sa: &str) -> Value {
    let body = serde_json::to_vec(&review("admission.k8s.io/v1", "u", pod(sa))).unwrap();
    let resp = app
        .clone()
        .oneshot(
            Request::post("/mutate")
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

fn metrics_text(m: &Metrics) -> String {
    m.encode().unwrap()
}

#[tokio::test]
async fn hit_is_answered_from_the_watch_without_a_get() {
    init();
    let f = fixture(
        vec![("team-a", "app", role()), ("team-a", "plain", vec![])],
        GetBehaviour::NotFound,
        Duration::from_secs(5),
        MutationConfig::default(),
    )
    .await;
    let body = admit(&f.app, "app").await;
    assert_eq!(
        env_names(&apply_patch(&body, &pod("app")))[0],
        "AWS_ROLE_ARN"
    );
    // An unannotated ServiceAccount is a hit too: known, nothing to inject.
    let body = admit(&f.app, "plain").await;
    assert!(body["response"].get("patch").is_none());
    assert_eq!(f.api.gets(), 0);
    // Only the relevant annotations are kept, and both ServiceAccounts are counted.
    assert_eq!(f.cache.len(), (2, 1));
    let text = metrics_text(&f.metrics);
    assert_eq!(metric(&text, "irsa_webhook_sa_cache_misses_total"), 0.0);
    assert_eq!(
        metric(&text, "irsa_webhook_sa_cache_annotated_entries"),
        1.0
    );
    assert_eq!(status(&f.admin, "/healthz").await, StatusCode::OK);
    f.api.assert_no_unexpected_calls();
}

#[tokio::test]
async fn miss_is_fetched_with_a_get_then_mutated_and_cached() {
    init();
    let f = fixture(
        vec![],
        GetBehaviour::Found(role()),
        Duration::from_secs(30),
        MutationConfig::default(),
    )
    .await;
    let body = admit(&f.app, "created-with-the-pod").await;
    assert_eq!(body["response"]["patchType"], "JSONPatch");
    assert_eq!(
        *f.api.get_paths.lock().unwrap(),
        ["/api/v1/namespaces/team-a/serviceaccounts/created-with-the-pod"]
    );
    // The next pod of that ServiceAccount is a hit.
    admit(&f.app, "created-with-the-pod").await;
    assert_eq!(f.api.gets(), 1);
    let text = metrics_text(&f.metrics);
    assert_eq!(metric(&text, "irsa_webhook_sa_cache_misses_total"), 1.0);
    assert_eq!(
        metric(&text, "irsa_webhook_sa_lookups_total{result=\"found\"}"),
        1.0
    );
    f.api.assert_no_unexpected_calls();
}

#[tokio::test]
async fn miss_then_404_is_admitted_unmutated_and_counted() {
    init();
    let f = fixture(
        vec![],
        GetBehaviour::NotFound,
        Duration::from_secs(30),
        MutationConfig::default(),
    )
    .await;
    let body = admit(&f.app, "ghost").await;
    assert_eq!(body["response"]["allowed"], true);
    assert!(body["response"].get("patch").is_none());
    assert!(body["response"].get("patchType").is_none());
    let text = metrics_text(&f.metrics);
    assert_eq!(metric(&text, "irsa_webhook_sa_not_found_total"), 1.0);
    assert_eq!(
        metric(&text, "irsa_webhook_sa_lookups_total{result=\"not_found\"}"),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "irsa_webhook_requests_total{result=\"no_service_account\"}"
        ),
        1.0
    );
    f.api.assert_no_unexpected_calls();
}

#[tokio::test]
async fn concurrent_misses_of_one_service_account_share_one_get() {
    init();
    let (release, gate) = tokio::sync::oneshot::channel();
    let f = fixture(
        vec![],
        GetBehaviour::FoundAfter(role(), std::sync::Mutex::new(Some(gate))),
        Duration::from_secs(60),
        MutationConfig::default(),
    )
    .await;
    let pods: Vec<_> = (0..8)
        .map(|_| {
            let app = f.app.clone();
            tokio::spawn(async move { admit(&app, "burst").await })
        })
        .collect();
    // All eight are waiting on the shared lookup before the API server answers.
    wait_for("eight misses are registered", WAIT, async || {
        metric(
            &metrics_text(&f.metrics),
            "irsa_webhook_sa_cache_misses_total",
        ) == 8.0
    })
    .await;
    release.send(()).unwrap();
    for p in pods {
        let body = p.await.unwrap();
        assert_eq!(body["response"]["patchType"], "JSONPatch");
    }
    assert_eq!(f.api.gets(), 1);
    f.api.assert_no_unexpected_calls();
}

#[tokio::test]
async fn get_slower_than_the_timeout_is_answered_in_time_unmutated() {
    init();
    let f = fixture(
        vec![],
        GetBehaviour::Hang,
        Duration::from_millis(100),
        MutationConfig::default(),
    )
    .await;
    let body = admit(&f.app, "slow").await;
    assert_eq!(body["response"]["allowed"], true);
    assert!(body["response"].get("patch").is_none());
    let warning = body["response"]["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains("team-a/slow") && warning.contains("WITHOUT IAM credentials"),
        "{warning}"
    );
    let text = metrics_text(&f.metrics);
    assert_eq!(
        metric(
            &text,
            "irsa_webhook_warnings_total{kind=\"sa_lookup_timeout\"}"
        ),
        1.0
    );

    // With --strict the pod is denied instead, so that its controller retries.
    let strict = fixture(
        vec![],
        GetBehaviour::Hang,
        Duration::from_millis(100),
        MutationConfig {
            strict: true,
            ..MutationConfig::default()
        },
    )
    .await;
    let body = admit(&strict.app, "slow").await;
    assert_eq!(body["response"]["allowed"], false);
    f.api.assert_no_unexpected_calls();
}

#[tokio::test]
async fn watch_events_add_update_and_delete_cached_service_accounts() {
    init();
    let (client, handle) = mock_client();
    let metrics = Arc::new(Metrics::new());
    let cache = ServiceAccountCache::kube(client, PREFIX, Duration::from_secs(30), metrics.clone());
    let _watch = cache.start_watch();
    let api = ApiServerVerifier::spawn_with_watch(
        handle,
        vec![],
        vec![
            ("ADDED", ("team-a", "a", vec![])),
            ("ADDED", ("team-a", "b", vec![])),
            ("MODIFIED", ("team-a", "a", role())),
            ("MODIFIED", ("team-a", "b", role())),
            ("DELETED", ("team-a", "a", role())),
        ],
        GetBehaviour::NotFound,
    );
    // (entries, annotated) goes (1,0) (2,0) (2,1) (2,2) (1,1): (1,1) is only the final state.
    wait_for("every watch event is applied", WAIT, async || {
        cache.len() == (1, 1)
    })
    .await;
    let app = router(app_state(
        cache.clone(),
        metrics.clone(),
        MutationConfig::default(),
        Duration::from_secs(30),
    ));
    let body = admit(&app, "b").await;
    assert_eq!(body["response"]["patchType"], "JSONPatch");
    assert_eq!(api.gets(), 0);
    // The deleted one is a miss now: GET, 404, admitted unmutated.
    let body = admit(&app, "a").await;
    assert!(body["response"].get("patch").is_none());
    assert_eq!(api.gets(), 1);
    let text = metrics_text(&metrics);
    assert_eq!(metric(&text, "irsa_webhook_sa_cache_entries"), 1.0);
    assert_eq!(
        metric(&text, "irsa_webhook_sa_cache_annotated_entries"),
        1.0
    );
    api.assert_no_unexpected_calls();
}

async fn admit_review(app: &axum::Router, review: &Value) -> Value {
    let resp = app
        .clone()
        .oneshot(
            Request::post("/mutate")
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(review).unwrap()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

#[tokio::test]
async fn names_that_cannot_exist_are_answered_without_the_api() {
    init();
    // Every GET would find a role: a lookup would show as a patch (and in `gets`).
    let f = fixture(
        vec![],
        GetBehaviour::Found(role()),
        Duration::from_secs(5),
        MutationConfig::default(),
    )
    .await;
    let huge = "a".repeat(300_000) + "/";
    let bad_names = [
        "../../secrets/x",
        "x?watch=true",
        "x#frag",
        "App",
        "a\nforged log line",
        &huge,
    ];
    for name in bad_names {
        let body = admit(&f.app, name).await;
        assert_eq!(body["response"]["allowed"], true, "{name:.40}");
        assert!(body["response"].get("patch").is_none(), "{name:.40}");
        let warning = body["response"]["warnings"][0].as_str().unwrap();
        assert!(
            warning.contains("is not a valid ServiceAccount name") && warning.len() < 400,
            "{warning}"
        );
    }
    let mut bad_namespace = review("admission.k8s.io/v1", "u", pod("app"));
    bad_namespace["request"]["namespace"] = "team-a?dryRun=All".into();
    let body = admit_review(&f.app, &bad_namespace).await;
    assert!(body["response"].get("patch").is_none());
    assert!(
        body["response"]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("is not a valid namespace name")
    );
    // Not one GET, and nothing cached under those names.
    assert_eq!(f.api.gets(), 0);
    assert_eq!(f.cache.len(), (0, 0));
    let text = metrics_text(&f.metrics);
    assert_eq!(
        metric(&text, "irsa_webhook_sa_invalid_names_total"),
        (bad_names.len() + 1) as f64
    );
    assert_eq!(metric(&text, "irsa_webhook_sa_cache_misses_total"), 0.0);
    // A valid name still goes to the API.
    let body = admit(&f.app, "app").await;
    assert_eq!(body["response"]["patchType"], "JSONPatch");
    assert_eq!(f.api.gets(), 1);
    f.api.assert_no_unexpected_calls();
}

#[tokio::test]
async fn background_gets_are_capped_and_the_rest_counted() {
    use irsa::webhook::cache::MAX_CONCURRENT_FETCHES;
    init();
    // GETs that never answer hold their slot for the whole fetch timeout (10s).
    let f = fixture(
        vec![],
        GetBehaviour::Hang,
        Duration::from_millis(50),
        MutationConfig::default(),
    )
    .await;
    let extra = 5;
    let answers = futures::future::join_all((0..MAX_CONCURRENT_FETCHES + extra).map(|i| {
        let app = f.app.clone();
        async move { admit(&app, &format!("sa-{i}")).await }
    }))
    .await;
    for body in &answers {
        assert_eq!(body["response"]["allowed"], true);
        assert!(body["response"].get("patch").is_none());
    }
    let busy = answers
        .iter()
        .filter(|b| {
            b["response"]["warnings"][0]
                .as_str()
                .is_some_and(|w| w.contains("lookups are already in flight"))
        })
        .count();
    assert_eq!(busy, extra);
    wait_for("the capped GETs reach the API server", WAIT, async || {
        f.api.gets() == MAX_CONCURRENT_FETCHES
    })
    .await;
    let text = metrics_text(&f.metrics);
    assert_eq!(
        metric(&text, "irsa_webhook_sa_lookups_shed_total"),
        extra as f64
    );
    assert_eq!(
        metric(
            &text,
            "irsa_webhook_warnings_total{kind=\"sa_lookup_busy\"}"
        ),
        extra as f64
    );
    // No GET was started for the shed misses, not even later: a marker GET sent through the
    // webhook's client after every answer reaches the API server with only the capped GETs
    // before it.
    let marker = "/api/v1/namespaces/team-a/serviceaccounts/marker";
    let client = f.client.clone();
    let sent = tokio::spawn(async move {
        let request = http::Request::get(marker).body(Vec::new()).unwrap();
        let _ = client.request_text(request).await;
    });
    wait_for("the marker GET reaches the API server", WAIT, async || {
        f.api.get_paths.lock().unwrap().iter().any(|p| p == marker)
    })
    .await;
    sent.abort();
    assert_eq!(f.api.gets(), MAX_CONCURRENT_FETCHES + 1);
    f.api.assert_no_unexpected_calls();
}
