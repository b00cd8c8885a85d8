//! A single review has a bounded price, heavy reviews do not starve `/healthz`, and slow or
//! surplus connections are closed by the server.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::common::webhook::*;
use irsa::{
    mutate::limits::{MAX_CONTAINERS, MAX_SKIP_CONTAINERS_BYTES},
    webhook::{ConnectionLimits, Running},
};
use irsa_e2e::metrics::metric;
use irsa_e2e::metrics::scrape_addr;
use irsa_e2e::wait::wait_for;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A pod of `app` (which has a role) with `n` containers `{"name", "image", "env": []}`.
fn pod_with_containers(n: usize) -> Value {
    let containers: Vec<Value> = (0..n)
        .map(|i| json!({"name": format!("c{i}"), "image": "x", "env": []}))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "big-", "namespace": "team-a"},
        "spec": {"serviceAccountName": "app", "containers": containers},
    })
}

/// Small in bytes, huge in work: 65,000 containers, 2.85 MB, within the API server's body limit.
fn huge_review() -> Vec<u8> {
    serde_json::to_vec(&review(
        "admission.k8s.io/v1",
        "big",
        pod_with_containers(65_000),
    ))
    .unwrap()
}

async fn post_bytes(
    client: &reqwest::Client,
    addr: SocketAddr,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    let resp = client
        .post(url(addr))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.bytes().await.unwrap().to_vec())
}

async fn started(limits: ConnectionLimits, strict: bool) -> (Running, reqwest::Client, TempDir) {
    init();
    let dir = temp_dir("limits");
    let pair = self_signed();
    let (c, k) = write_pair(&dir, &pair);
    let mut opts = options(c, k);
    opts.limits = limits;
    opts.admin_limits = limits;
    opts.mutation.strict = strict;
    let server = start_fixed(opts).await;
    let client = client(&pair.0, server.addr);
    (server, client, dir)
}

#[tokio::test]
async fn a_review_with_65000_containers_is_admitted_with_a_warning_and_a_small_answer() {
    let (server, client, _dir) = started(ConnectionLimits::ADMISSION, false).await;
    let (status, body) = post_bytes(&client, server.addr, huge_review()).await;
    assert_eq!(status, StatusCode::OK);
    // Before the limits: a 40 MB patch. Now: no patch, one warning, a few hundred bytes.
    assert!(body.len() < 4096, "answer of {} bytes", body.len());
    let answer: Value = serde_json::from_slice(&body).unwrap();
    let response = &answer["response"];
    assert_eq!(response["uid"], "big");
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none(), "{response}");
    let warning = response["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains("65000 containers") && warning.contains(&MAX_CONTAINERS.to_string()),
        "{warning}"
    );

    let text = scrape_addr(server.metrics_addr).await;
    assert_eq!(
        metric(&text, r#"irsa_webhook_warnings_total{kind="too_large"}"#),
        1.0
    );
    assert_eq!(
        metric(&text, r#"irsa_webhook_requests_total{result="too_large"}"#),
        1.0
    );

    // The largest pod allowed is still mutated.
    let (status, body) = post_bytes(
        &client,
        server.addr,
        serde_json::to_vec(&review(
            "admission.k8s.io/v1",
            "max",
            pod_with_containers(MAX_CONTAINERS),
        ))
        .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
}

#[tokio::test]
async fn with_strict_an_over_limit_pod_is_denied_with_the_reason() {
    let (server, client, _dir) = started(ConnectionLimits::ADMISSION, true).await;
    let mut pod = pod_with_containers(1);
    pod["metadata"]["annotations"] = json!({
        "eks.amazonaws.com/skip-containers": vec!["c"; MAX_SKIP_CONTAINERS_BYTES].join(","),
    });
    let body = serde_json::to_vec(&review("admission.k8s.io/v1", "skip", pod)).unwrap();
    let (status, body) = post_bytes(&client, server.addr, body).await;
    assert_eq!(status, StatusCode::OK);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["response"]["allowed"], false);
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("--strict") && message.contains("eks.amazonaws.com/skip-containers"),
        "{message}"
    );
}

#[tokio::test]
async fn a_body_over_the_http_limit_gets_413() {
    let (server, client, _dir) = started(ConnectionLimits::ADMISSION, false).await;
    let body = vec![b' '; irsa::webhook::server::MAX_BODY + 1];
    let (status, _) = post_bytes(&client, server.addr, body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

/// The kubelet's default `timeoutSeconds` for a probe: a `/healthz` slower than this restarts
/// the pod. Not a latency target; the health check must simply keep answering.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_while_big_reviews_are_in_flight() {
    let (server, client, _dir) = started(ConnectionLimits::ADMISSION, false).await;
    let huge = huge_review();
    // Big but within the limits: fully parsed and mutated.
    let mut near_limit = pod_with_containers(MAX_CONTAINERS);
    for c in near_limit["spec"]["containers"].as_array_mut().unwrap() {
        c["env"] = json!([{"name": "PAD", "value": "p".repeat(2500)}]);
    }
    let near_limit =
        serde_json::to_vec(&review("admission.k8s.io/v1", "near", near_limit)).unwrap();

    let busy = Arc::new(AtomicBool::new(true));
    let mut reviews = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (client, addr) = (client.clone(), server.addr);
        let body = if i % 2 == 0 {
            huge.clone()
        } else {
            near_limit.clone()
        };
        reviews.spawn(async move {
            for _ in 0..3 {
                let (status, _) = post_bytes(&client, addr, body.clone()).await;
                assert_eq!(status, StatusCode::OK);
            }
        });
    }
    let probes = {
        let (busy, addr) = (busy.clone(), server.metrics_addr);
        tokio::spawn(async move {
            let probe = reqwest::Client::builder()
                .timeout(PROBE_TIMEOUT)
                .build()
                .unwrap();
            let mut answered_while_busy = 0;
            while busy.load(Ordering::Relaxed) {
                let resp = probe
                    .get(format!("http://{addr}/healthz"))
                    .send()
                    .await
                    .expect("/healthz did not answer within the probe timeout");
                assert_eq!(resp.status(), StatusCode::OK);
                answered_while_busy += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            answered_while_busy
        })
    };
    while let Some(done) = reviews.join_next().await {
        done.unwrap();
    }
    busy.store(false, Ordering::Relaxed);
    let answered = probes.await.unwrap();
    assert!(
        answered > 0,
        "no probe ran while the reviews were in flight"
    );
}

/// Test limits: short enough that a slow client is cut off within seconds.
const SHORT: ConnectionLimits = ConnectionLimits {
    handshake_timeout: Duration::from_secs(2),
    header_read_timeout: Duration::from_secs(2),
    h2_keep_alive: Duration::from_secs(2),
    max_connections: 4,
};

/// The generous deadline of these tests: far above the 2s limits, far below "never".
const DEADLINE: Duration = Duration::from_secs(30);

/// Dribbles a request head one byte a second on `stream` until the server closes it; panics
/// when the deadline passes first.
async fn dribble_until_closed<S>(stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut read, mut write) = tokio::io::split(stream);
    let head = b"POST /mutate HTTP/1.1\r\nhost: localhost\r\nx-slow: ".to_vec();
    let writing = async move {
        for byte in head.iter().chain(std::iter::repeat(&b'a')) {
            if write.write_all(&[*byte]).await.is_err() || write.flush().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        std::future::pending::<()>().await;
    };
    let closed = async move {
        let mut buf = [0u8; 1024];
        // Whatever the server says (a 408, nothing), it ends with EOF or a reset.
        while matches!(read.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    tokio::time::timeout(DEADLINE, async {
        tokio::select! {
            () = writing => {}
            () = closed => {}
        }
    })
    .await
    .expect("the server kept a connection that sends one header byte a second");
}

#[tokio::test]
async fn a_slow_header_on_the_admin_port_is_cut_off() {
    let (server, _client, _dir) = started(SHORT, false).await;
    let stream = TcpStream::connect(server.metrics_addr).await.unwrap();
    dribble_until_closed(stream).await;
}

#[tokio::test]
async fn a_slow_header_inside_tls_on_the_admission_port_is_cut_off() {
    init();
    let dir = temp_dir("slow-tls");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (c, k) = write_pair(&dir, &(ck.cert.pem(), ck.signing_key.serialize_pem()));
    let mut opts = options(c, k);
    opts.limits = SHORT;
    let server = start_fixed(opts).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    dribble_until_closed(tls).await;
}

#[tokio::test]
async fn a_silent_client_is_cut_off_before_the_tls_handshake() {
    let (server, _client, _dir) = started(SHORT, false).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
        .await
        .expect("the server kept a connection that never starts TLS");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_and_freed_slots_are_reused() {
    let (server, _client, _dir) = started(SHORT, false).await;
    let addr = server.metrics_addr;
    let mut held = Vec::new();
    for _ in 0..SHORT.max_connections {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // The server has accepted them all (each holds a slot) once each got an answer; they
    // stay open (keep-alive) until the header-read timeout.
    for stream in &mut held {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200", "{}", String::from_utf8_lossy(&head));
    }
    let mut surplus = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(DEADLINE, surplus.read(&mut buf))
        .await
        .expect("a connection over the cap stayed open");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    // Closed by the client, the slots come back as the server sees the ends.
    drop(held);
    wait_for("a freed slot to serve /healthz", DEADLINE, async || {
        reqwest::get(format!("http://{addr}/healthz"))
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
}
