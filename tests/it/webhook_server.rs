//! `irsa webhook` over a real TLS socket on 127.0.0.1: round trips, malformed input, HTTP/2,
//! certificate rotation, identities reload and graceful shutdown.

use std::{sync::Arc, time::Duration};

use crate::common::WAIT;
use crate::common::webhook::*;
use irsa::testing::kube_api::mock_client;
use irsa::webhook::{Associations, Metrics, Options, ServiceAccountCache};
use irsa_e2e::metrics::metric;
use irsa_e2e::metrics::scrape_addr;
use irsa_e2e::wait::wait_for;
use reqwest::{StatusCode, Version};
use serde_json::{Value, json};

async fn post(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    body: &Value,
) -> reqwest::Response {
    client
        .post(url(addr))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn v1_round_trip_mutates_and_echoes_the_envelope() {
    init();
    let dir = temp_dir("v1");
    let pair = self_signed();
    let (c, k) = write_pair(&dir, &pair);
    let server = start_fixed(options(c, k)).await;
    let client = client(&pair.0, server.addr);

    let pod = pod("app");
    let resp = post(
        &client,
        server.addr,
        &review("admission.k8s.io/v1", "uid-1", pod.clone()),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["kind"], "AdmissionReview");
    assert_eq!(body["response"]["uid"], "uid-1");
    assert_eq!(body["response"]["allowed"], true);
    assert_eq!(body["response"]["patchType"], "JSONPatch");
    assert!(body["response"].get("warnings").is_none(), "{body}");

    let mutated = apply_patch(&body, &pod);
    assert_eq!(
        env_names(&mutated),
        ["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"]
    );
    assert_eq!(mutated["spec"]["volumes"][0]["name"], "aws-iam-token");
    // Fields the webhook does not know survive.
    assert_eq!(
        mutated["spec"]["containers"][0]["x-unknown-field"],
        json!([1, 2, 3])
    );
    assert_eq!(mutated["metadata"]["x-vendor"], json!({"keep": true}));

    // Its own output yields no patch (reinvocationPolicy: IfNeeded).
    let again: Value = post(
        &client,
        server.addr,
        &review("admission.k8s.io/v1", "uid-2", mutated),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(again["response"]["allowed"], true);
    assert!(again["response"].get("patch").is_none(), "{again}");
    assert!(again["response"].get("patchType").is_none(), "{again}");

    let text = scrape_addr(server.metrics_addr).await;
    assert_eq!(
        metric(&text, "irsa_webhook_requests_total{result=\"mutated\"}"),
        1.0
    );
    assert_eq!(
        metric(&text, "irsa_webhook_requests_total{result=\"unchanged\"}"),
        1.0
    );
    assert_eq!(
        metric(&text, "irsa_webhook_mutations_total{mode=\"irsa\"}"),
        1.0
    );
    assert!(text.contains("irsa_webhook_request_duration_seconds_bucket"));
}

#[tokio::test]
async fn v1beta1_round_trip_answers_in_v1beta1() {
    init();
    let dir = temp_dir("v1beta1");
    let pair = self_signed();
    let (c, k) = write_pair(&dir, &pair);
    let server = start_fixed(options(c, k)).await;
    let client = client(&pair.0, server.addr);

    let pod = pod("app");
    let body: Value = post(
        &client,
        server.addr,
        &review("admission.k8s.io/v1beta1", "b-1", pod.clone()),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1beta1");
    assert_eq!(body["response"]["uid"], "b-1");
    assert_eq!(body["response"]["patchType"], "JSONPatch");
    assert_eq!(env_names(&apply_patch(&body, &pod))[0], "AWS_ROLE_ARN");

    // An unannotated ServiceAccount: allowed, no patch, no patchType.
    let plain: Value = post(
        &client,
        server.addr,
        &review("admission.k8s.io/v1beta1", "b-2", pod_for("plain")),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(plain["response"], json!({"uid": "b-2", "allowed": true}));
}

fn pod_for(sa: &str) -> Value {
    pod(sa)
}

#[tokio::test]
async fn malformed_bodies_get_400_and_wrong_content_type_415() {
    init();
    let dir = temp_dir("malformed");
    let pair = self_signed();
    let (c, k) = write_pair(&dir, &pair);
    let server = start_fixed(options(c, k)).await;
    let client = client(&pair.0, server.addr);

    let send = |body: &'static str, content_type: Option<&'static str>| {
        let mut req = client.post(url(server.addr)).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        async move {
            let resp = req.send().await.unwrap();
            (resp.status(), resp.text().await.unwrap())
        }
    };

    let (status, text) = send("{not json", Some("application/json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("not a JSON AdmissionReview"), "{text}");

    let (status, text) = send(
        r#"{"apiVersion":"v1","kind":"Pod"}"#,
        Some("application/json"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("admission.k8s.io/v1 or v1beta1"), "{text}");

    let (status, text) = send(
        r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"object":{}}}"#,
        Some("application/json; charset=utf-8"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("no uid"), "{text}");

    let (status, text) = send("{}", Some("application/yaml")).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(text.contains("application/json"), "{text}");
    let (status, _) = send("{}", None).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let text = scrape_addr(server.metrics_addr).await;
    assert_eq!(
        metric(&text, "irsa_webhook_requests_total{result=\"bad_request\"}"),
        3.0
    );
    assert_eq!(
        metric(
            &text,
            "irsa_webhook_requests_total{result=\"unsupported_media_type\"}"
        ),
        2.0
    );
}

#[tokio::test]
async fn non_pods_are_allowed_unpatched_with_a_warning() {
    init();
    let dir = temp_dir("nonpod");
    let pair = self_signed();
    let (c, k) = write_pair(&dir, &pair);
    let server = start_fixed(options(c, k)).await;
    let client = client(&pair.0, server.addr);

    // A Deployment sent by a misconfigured webhook rule.
    let mut deployment = review(
        "admission.k8s.io/v1",
        "d-1",
        json!({"kind": "Deployment", "spec": {}}),
    );
    deployment["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    let body: Value = post(&client, server.addr, &deployment)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["response"]["allowed"], true);
    assert!(body["response"].get("patch").is_none());
    assert!(
        body["response"]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("apps/v1/Deployment")
    );

    // A "Pod" whose spec.containers is not a list.
    let broken =
        json!({"kind": "Pod", "spec": {"serviceAccountName": "app", "containers": "nginx"}});
    let body: Value = post(
        &client,
        server.addr,
        &review("admission.k8s.io/v1", "d-2", broken),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["response"]["allowed"], true);
    assert!(body["response"].get("patchType").is_none());
    let warning = body["response"]["warnings"][0].as_str().unwrap();
    assert!(warning.contains("spec.containers"), "{warning}");

    let text = scrape_addr(server.metrics_addr).await;
    assert_eq!(
        metric(&text, "irsa_webhook_requests_total{result=\"not_a_pod\"}"),
        2.0
    );
    assert_eq!(
        metric(&text, "irsa_webhook_warnings_total{kind=\"not_a_pod\"}"),
        2.0
    );
}

#[tokio::test]
async fn invalid_annotations_warn_by_default_and_deny_with_strict() {
    init();
    let dir = temp_dir("strict");
    let pair = self_signed();
    let (c, k) = write_pair(&dir, &pair);
    let lenient = start_fixed(options(c.clone(), k.clone())).await;
    let mut strict_opts = options(c, k);
    strict_opts.mutation.strict = true;
    let strict = start_fixed(strict_opts).await;

    let client_l = client(&pair.0, lenient.addr);
    let body: Value = post(
        &client_l,
        lenient.addr,
        &review("admission.k8s.io/v1", "s-1", pod("broken")),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["response"]["allowed"], true);
    assert_eq!(body["response"]["patchType"], "JSONPatch");
    let warning = body["response"]["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains("token-expiration") && warning.contains("soon"),
        "{warning}"
    );

    let client_s = client(&pair.0, strict.addr);
    let body: Value = post(
        &client_s,
        strict.addr,
        &review("admission.k8s.io/v1", "s-2", pod("broken")),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["response"]["uid"], "s-2");
    assert_eq!(body["response"]["allowed"], false);
    assert!(body["response"].get("patch").is_none());
    let message = body["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("ServiceAccount team-a/broken")
            && message.contains("eks.amazonaws.com/token-expiration")
            && message.contains("soon"),
        "{message}"
    );
    assert_eq!(body["response"]["status"]["code"], 403);

    let text = scrape_addr(strict.metrics_addr).await;
    assert_eq!(
        metric(&text, "irsa_webhook_requests_total{result=\"denied\"}"),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "irsa_webhook_warnings_total{kind=\"invalid_expiration\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn http2_is_negotiated_with_alpn_and_http1_still_works() {
    init();
    let dir = temp_dir("h2");
    let pair = self_signed();
    let (c, k) = write_pair(&dir, &pair);
    let server = start_fixed(options(c, k)).await;

    let h2 = client(&pair.0, server.addr);
    let resp = post(
        &h2,
        server.addr,
        &review("admission.k8s.io/v1", "h-1", pod("app")),
    )
    .await;
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);

    let h1 = client_builder(&pair.0, server.addr)
        .http1_only()
        .build()
        .unwrap();
    let resp = post(
        &h1,
        server.addr,
        &review("admission.k8s.io/v1", "h-2", pod("app")),
    )
    .await;
    assert_eq!(resp.version(), Version::HTTP_11);
    assert_eq!(resp.status(), StatusCode::OK);

    // TLS 1.3 only: a client capped at TLS 1.2 is refused.
    let dir13 = temp_dir("h2-13");
    let (c, k) = write_pair(&dir13, &pair);
    let mut opts = options(c, k);
    opts.tls_min_version = irsa::webhook::tls::TlsVersion::V1_3;
    let tls13 = start_fixed(opts).await;
    let old = client_builder(&pair.0, tls13.addr)
        .tls_version_max(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    assert!(old.post(url(tls13.addr)).send().await.is_err());
    let new = client(&pair.0, tls13.addr);
    assert_eq!(
        post(
            &new,
            tls13.addr,
            &review("admission.k8s.io/v1", "h-3", pod("app"))
        )
        .await
        .status(),
        StatusCode::OK
    );
}

/// Can a fresh client that trusts only `cert` complete a request?
async fn trusted_by(cert: &str, addr: std::net::SocketAddr) -> bool {
    client(cert, addr)
        .post(url(addr))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&review("admission.k8s.io/v1", "r", pod("app"))).unwrap())
        .send()
        .await
        .is_ok_and(|r| r.status() == StatusCode::OK)
}

#[tokio::test]
async fn certificate_rotation_reaches_new_connections_and_a_broken_pair_keeps_the_old() {
    init();
    let dir = temp_dir("rotation");
    let first = self_signed();
    let (cert_path, key_path) = write_pair(&dir, &first);
    let server = start_fixed(options(cert_path.clone(), key_path.clone())).await;
    let addr = server.addr;
    assert!(trusted_by(&first.0, addr).await);
    // A connection opened before the rotation.
    let old_conn = client(&first.0, addr);
    assert_eq!(
        post(
            &old_conn,
            addr,
            &review("admission.k8s.io/v1", "o-1", pod("app"))
        )
        .await
        .status(),
        StatusCode::OK
    );

    // 1. Plain rewrite of both files.
    let second = self_signed();
    write_pair(&dir, &second);
    wait_for(
        "new connections see the second certificate",
        WAIT,
        async || trusted_by(&second.0, addr).await,
    )
    .await;
    assert!(!trusted_by(&first.0, addr).await);
    // The connection opened before the rotation keeps working.
    assert_eq!(
        post(
            &old_conn,
            addr,
            &review("admission.k8s.io/v1", "o-2", pod("app"))
        )
        .await
        .status(),
        StatusCode::OK
    );

    // 2. A broken pair (third certificate, second key): rejected, the second stays.
    let third = self_signed();
    std::fs::write(&cert_path, &third.0).unwrap();
    wait_for("the broken pair is counted", WAIT, async || {
        metric(
            &scrape_addr(server.metrics_addr).await,
            "irsa_webhook_cert_reload_errors_total",
        ) >= 1.0
    })
    .await;
    assert!(trusted_by(&second.0, addr).await);
    assert!(!trusted_by(&third.0, addr).await);
    // Garbage is rejected too.
    std::fs::write(&key_path, "not a key").unwrap();
    wait_for("the garbage key is counted", WAIT, async || {
        metric(
            &scrape_addr(server.metrics_addr).await,
            "irsa_webhook_cert_reload_errors_total",
        ) >= 2.0
    })
    .await;
    assert!(trusted_by(&second.0, addr).await);

    // 3. Kubernetes Secret volume style: files are symlinks into a `..data` dir that is swapped.
    let secret = temp_dir("rotation-secret");
    let fourth = self_signed();
    let v1 = secret.join("..v1");
    std::fs::create_dir(&v1).unwrap();
    write_pair(&v1, &third);
    std::os::unix::fs::symlink("..v1", secret.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/tls.crt", secret.join("tls.crt")).unwrap();
    std::os::unix::fs::symlink("..data/tls.key", secret.join("tls.key")).unwrap();
    let server2 = start_fixed(options(secret.join("tls.crt"), secret.join("tls.key"))).await;
    assert!(trusted_by(&third.0, server2.addr).await);
    let v2 = secret.join("..v2");
    std::fs::create_dir(&v2).unwrap();
    write_pair(&v2, &fourth);
    std::os::unix::fs::symlink("..v2", secret.join("..data_tmp")).unwrap();
    std::fs::rename(secret.join("..data_tmp"), secret.join("..data")).unwrap();
    wait_for("the swapped Secret is served", WAIT, async || {
        trusted_by(&fourth.0, server2.addr).await
    })
    .await;
    assert_eq!(
        metric(
            &scrape_addr(server2.metrics_addr).await,
            "irsa_webhook_cert_reloads_total"
        ),
        2.0
    );
}

#[tokio::test]
async fn identities_file_is_watched_and_a_broken_file_keeps_the_previous_set() {
    init();
    let dir = temp_dir("identities");
    let pair = self_signed();
    let (c, k) = write_pair(&dir, &pair);
    let ids = dir.join("identities.json");
    std::fs::write(&ids, r#"{"identities":[]}"#).unwrap();
    let mut opts = options(c, k);
    opts.identities_file = Some(ids.clone());
    let server = start_fixed(opts).await;
    let client = client(&pair.0, server.addr);
    let volume = async |client: &reqwest::Client| -> String {
        let pod = pod("app");
        let body: Value = post(
            client,
            server.addr,
            &review("admission.k8s.io/v1", "i", pod.clone()),
        )
        .await
        .json()
        .await
        .unwrap();
        apply_patch(&body, &pod)["spec"]["volumes"][0]["name"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(volume(&client).await, "aws-iam-token");

    std::fs::write(
        &ids,
        r#"{"identities":[{"namespace":"team-a","serviceAccount":"app"}]}"#,
    )
    .unwrap();
    wait_for("container-credentials mode applies", WAIT, async || {
        volume(&client).await == "eks-pod-identity-token"
    })
    .await;

    std::fs::write(&ids, "{ broken").unwrap();
    wait_for("the broken file is counted", WAIT, async || {
        metric(
            &scrape_addr(server.metrics_addr).await,
            "irsa_webhook_identities_reload_errors_total",
        ) >= 1.0
    })
    .await;
    assert_eq!(volume(&client).await, "eks-pod-identity-token");
}

#[tokio::test]
async fn graceful_shutdown_finishes_the_request_in_flight() {
    init();
    let dir = temp_dir("shutdown");
    let pair = self_signed();
    let (c, k) = write_pair(&dir, &pair);
    let (kube, handle) = mock_client();
    let (release, gate) = tokio::sync::oneshot::channel();
    let api = ApiServerVerifier::spawn(
        handle,
        vec![],
        GetBehaviour::FoundAfter(
            annotations(&[("eks.amazonaws.com/role-arn", ROLE)]),
            std::sync::Mutex::new(Some(gate)),
        ),
    );
    let metrics = Arc::new(Metrics::new());
    let cache = ServiceAccountCache::kube(
        kube,
        "eks.amazonaws.com",
        Duration::from_secs(60),
        metrics.clone(),
    );
    let server = irsa::webhook::start(options(c, k), cache, Associations::disabled(), metrics)
        .await
        .unwrap();
    let addr = server.addr;
    let client = client(&pair.0, addr);

    let pod = pod("new-sa");
    let in_flight = tokio::spawn({
        let (client, pod) = (client.clone(), pod.clone());
        async move {
            let resp = post(&client, addr, &review("admission.k8s.io/v1", "g-1", pod)).await;
            (resp.status(), resp.json::<Value>().await.unwrap())
        }
    });
    // The request is now waiting on the ServiceAccount GET inside the webhook.
    wait_for("the webhook asks the API server", WAIT, async || {
        api.gets() == 1
    })
    .await;

    server.shutdown();
    let stopped = tokio::spawn(server.wait());
    tokio::task::yield_now().await;
    assert!(
        !stopped.is_finished(),
        "the server stopped with a request in flight"
    );

    release.send(()).unwrap();
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"]["uid"], "g-1");
    assert_eq!(env_names(&apply_patch(&body, &pod))[0], "AWS_ROLE_ARN");
    stopped.await.unwrap().unwrap();
    api.assert_no_unexpected_calls();
}

#[tokio::test]
async fn health_ready_and_metrics_on_the_plain_port() {
    init();
    let dir = temp_dir("admin");
    let pair = self_signed();
    let (c, k) = write_pair(&dir, &pair);
    let server = start_fixed(options(c, k)).await;
    let get = async |path: &str| {
        let resp = reqwest::get(format!("http://{}{path}", server.metrics_addr))
            .await
            .unwrap();
        (resp.status(), resp.text().await.unwrap())
    };
    assert_eq!(get("/healthz").await.0, StatusCode::OK);
    assert_eq!(get("/readyz").await.0, StatusCode::OK);
    let (status, text) = get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(metric(&text, "irsa_webhook_sa_cache_entries"), 3.0);
    assert_eq!(
        metric(&text, "irsa_webhook_sa_cache_annotated_entries"),
        2.0
    );
    assert_eq!(metric(&text, "irsa_webhook_cert_reloads_total"), 1.0);
}

#[tokio::test]
async fn a_background_task_that_dies_is_reported_naming_it() {
    init();
    let dir = temp_dir("task-dies");
    let pair = self_signed();
    let (cert, key) = write_pair(&dir, &pair);
    // A zero period panics `tokio::time::interval` inside the certificate-reload task; the
    // CLI refuses it now, but any task ending must still be seen: the webhook used to stay
    // up with its reload task dead.
    let mut running = start_fixed(Options {
        reload_interval: Duration::ZERO,
        ..options(cert, key)
    })
    .await;
    let err = tokio::time::timeout(Duration::from_secs(10), running.failed())
        .await
        .expect("the dead task is noticed");
    let msg = format!("{err:#}");
    assert!(msg.contains("`certificate reload` panicked"), "{msg}");
    running.shutdown();
    running.wait().await.unwrap();
}
