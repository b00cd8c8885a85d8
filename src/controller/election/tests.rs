//! The glue against an in-memory Lease (tower-test mock pair standing in for the API server):
//! it stores what the crate creates and patches, so the tests hold whatever sequence of
//! requests the crate makes, and can refuse writes or hand the Lease to someone else. Time is
//! tokio's paused clock: the crate's waits cost no real time.

use super::*;
use crate::testing::kube_api::{ApiHandle, json_response, mock_client};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use serde_json::{Value, json};
use std::sync::Mutex;

const LEASE_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/irsa/leases/irsa-controller";

/// The API server's side: the stored Lease (`None`: absent), whether writes fail, and the
/// methods seen.
#[derive(Default)]
struct Server {
    lease: Option<Value>,
    refuse_writes: bool,
    methods: Vec<Method>,
}

type Shared = Arc<Mutex<Server>>;

fn lease_held_by(holder: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "irsa-controller", "namespace": "irsa", "resourceVersion": "1"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                 "acquireTime": MicroTime(k8s_openapi::jiff::Timestamp::now()),
                 "renewTime": MicroTime(k8s_openapi::jiff::Timestamp::now())}
    })
}

fn holder(server: &Shared) -> Option<String> {
    let s = server.lock().unwrap();
    s.lease.as_ref()?["spec"]["holderIdentity"]
        .as_str()
        .map(str::to_string)
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
           "reason": reason, "code": code, "message": format!("scripted {reason}")})
}

/// Answers like the API server for one Lease: create, get, and patches merged into `spec`
/// (a `null` removes the field), which is what both the crate's apply and merge patches do
/// to a Lease no other manager writes.
fn serve(mut handle: ApiHandle, server: Shared) {
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().clone();
            let path = req.uri().path().to_string();
            let bytes = req.into_body().collect().await.unwrap().to_bytes();
            let mut s = server.lock().unwrap();
            s.methods.push(method.clone());
            let (code, body) = match (method, path.as_str()) {
                (Method::GET, LEASE_PATH) => match &s.lease {
                    Some(lease) => (StatusCode::OK, lease.clone()),
                    None => (StatusCode::NOT_FOUND, status(404, "NotFound")),
                },
                (Method::POST, _) if s.lease.is_some() => {
                    (StatusCode::CONFLICT, status(409, "AlreadyExists"))
                }
                (Method::POST, _) => {
                    let mut lease: Value = serde_json::from_slice(&bytes).unwrap();
                    lease["metadata"]["namespace"] = json!("irsa");
                    s.lease = Some(lease.clone());
                    (StatusCode::CREATED, lease)
                }
                (Method::PATCH, LEASE_PATH) if s.refuse_writes => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    status(500, "InternalError"),
                ),
                (Method::PATCH, LEASE_PATH) => {
                    let patch: Value = serde_json::from_slice(&bytes).unwrap();
                    let Some(lease) = s.lease.as_mut() else {
                        send.send_response(json_response(
                            StatusCode::NOT_FOUND,
                            status(404, "NotFound"),
                        ));
                        continue;
                    };
                    if !lease["spec"].is_object() {
                        lease["spec"] = json!({});
                    }
                    for (field, value) in patch["spec"].as_object().unwrap() {
                        let spec = lease["spec"].as_object_mut().unwrap();
                        match value {
                            Value::Null => spec.remove(field),
                            v => spec.insert(field.clone(), v.clone()),
                        };
                    }
                    (StatusCode::OK, lease.clone())
                }
                (method, path) => panic!("unexpected {method} {path}"),
            };
            send.send_response(json_response(code, body));
        }
    });
}

fn election(server: &Shared) -> Election {
    let (client, handle) = mock_client();
    serve(handle, server.clone());
    Election::new(client, "irsa", super::DEFAULT_LEASE_NAME, "me")
}

/// A replica running the election until `stop` (which its work, once started, waits for too).
struct Candidate {
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    stop: tokio::sync::watch::Sender<bool>,
    gauge: Gauge,
    ready: Arc<AtomicBool>,
    worked: Arc<AtomicBool>,
}

fn candidate(server: &Shared) -> Candidate {
    let (gauge, ready, worked) = (
        Gauge::default(),
        Arc::<AtomicBool>::default(),
        Arc::<AtomicBool>::default(),
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut work_stopped = stopped.clone();
    let task = tokio::spawn(run_until_shutdown(
        election(server),
        gauge.clone(),
        ready.clone(),
        async move {
            let _ = { stopped }.wait_for(|s| *s).await;
        },
        {
            let worked = worked.clone();
            move || async move {
                worked.store(true, Ordering::SeqCst);
                let _ = work_stopped.wait_for(|s| *s).await;
                Ok(())
            }
        },
    ));
    Candidate {
        task,
        stop,
        gauge,
        ready,
        worked,
    }
}

impl Candidate {
    async fn leading(&self) {
        while !self.worked.load(Ordering::SeqCst) {
            run_for(Duration::from_millis(50)).await;
        }
    }
}

/// Lets the election and the server run `d` of (paused) time.
async fn run_for(d: Duration) {
    tokio::time::sleep(d).await;
}

/// The error a leader that lost its Lease fails with, within `limit` (paused time).
async fn stops_within(
    limit: Duration,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
) -> anyhow::Error {
    match tokio::time::timeout(limit, task).await {
        Ok(joined) => joined.unwrap().unwrap_err(),
        Err(_) => panic!("the leader kept working {limit:?} after losing its Lease"),
    }
}

#[test]
fn a_failed_renewal_stops_the_leader_before_the_lease_expires() {
    // LeaseParams::new panics unless 0 < grace < duration.
    assert!(!GRACE.is_zero() && GRACE < DURATION);
    assert!(
        REQUEST_TIMEOUT * 2 < GRACE,
        "a renewal is a patch and a read-back"
    );
    assert!(RETRY_PERIOD < DURATION - GRACE);
    assert!(
        SETTLE + REQUEST_TIMEOUT < DURATION - GRACE,
        "a new leader starts well before its first renewal"
    );
}

#[test]
fn the_lease_client_gives_up_on_a_silent_api_server_within_the_request_timeout() {
    let config = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
    let config = lease_config(&config);
    for timeout in [
        config.connect_timeout,
        config.read_timeout,
        config.write_timeout,
    ] {
        assert_eq!(timeout, Some(REQUEST_TIMEOUT));
    }
}

#[tokio::test(start_paused = true)]
async fn a_standby_is_ready_and_leaves_on_shutdown_without_writing() {
    let server = Shared::default();
    server.lock().unwrap().lease = Some(lease_held_by("other"));
    let c = candidate(&server);
    run_for(RETRY_PERIOD * 3).await;
    assert!(c.ready.load(Ordering::SeqCst), "a standby reports ready");
    assert_eq!(c.gauge.get(), 0);
    c.stop.send(true).unwrap();
    c.task.await.unwrap().unwrap();
    assert!(!c.worked.load(Ordering::SeqCst));
    let s = server.lock().unwrap();
    assert!(
        s.methods.iter().all(|m| m == Method::GET),
        "a standby of a live Lease only reads it: {:?}",
        s.methods
    );
}

#[tokio::test(start_paused = true)]
async fn a_released_lease_is_taken_over_within_a_retry_period_not_at_its_expiry() {
    let server = Shared::default();
    server.lock().unwrap().lease = Some(lease_held_by("other"));
    let c = candidate(&server);
    run_for(RETRY_PERIOD).await;
    assert_eq!(c.gauge.get(), 0);
    // The leader releases: the crate's own standby would sleep until the old expiry.
    let released = tokio::time::Instant::now();
    if let Some(lease) = server.lock().unwrap().lease.as_mut() {
        lease["spec"] = json!({});
    }
    c.leading().await;
    assert!(
        released.elapsed() <= RETRY_PERIOD * 2 + SETTLE,
        "took {:?}",
        released.elapsed()
    );
    assert_eq!(holder(&server).as_deref(), Some("me"));
    assert_eq!(c.gauge.get(), 1);
    c.task.abort();
}

#[tokio::test(start_paused = true)]
async fn the_leader_is_ready_only_when_its_work_says_so_and_releases_after_shutdown() {
    let server = Shared::default();
    let gauge = Gauge::default();
    let ready = Arc::new(AtomicBool::new(false));
    let ready_at_start = Arc::new(AtomicBool::new(true));
    // One "SIGTERM" seen by both the process and the work, as tokio delivers signals.
    let (signal, _) = tokio::sync::broadcast::channel::<()>(1);
    let (mut for_process, mut for_work) = (signal.subscribe(), signal.subscribe());
    let task = tokio::spawn(run_until_shutdown(
        election(&server),
        gauge.clone(),
        ready.clone(),
        async move {
            let _ = for_process.recv().await;
        },
        {
            let (ready, seen) = (ready.clone(), ready_at_start.clone());
            move || async move {
                seen.store(ready.load(Ordering::SeqCst), Ordering::SeqCst);
                ready.store(true, Ordering::SeqCst); // caches synced
                let _ = for_work.recv().await;
                Ok(())
            }
        },
    ));
    // Past a few renewals: the leader keeps the Lease.
    run_for(DURATION * 3).await;
    assert_eq!(gauge.get(), 1);
    assert_eq!(holder(&server).as_deref(), Some("me"));
    assert!(
        !ready_at_start.load(Ordering::SeqCst),
        "not ready before the work syncs"
    );
    assert!(ready.load(Ordering::SeqCst));
    signal.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(gauge.get(), 0);
    assert_eq!(holder(&server), None, "released on shutdown");
}

#[tokio::test(start_paused = true)]
async fn a_failed_renewal_stops_the_work_before_the_lease_expires_and_fails_the_process() {
    let server = Shared::default();
    let gauge = Gauge::default();
    let (started, mut running) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(run_until_shutdown(
        election(&server),
        gauge.clone(),
        Arc::new(AtomicBool::new(false)),
        std::future::pending(),
        move || async move {
            // Writes until dropped.
            let _ = started.send(true);
            std::future::pending::<()>().await;
            Ok(())
        },
    ));
    let _ = running.wait_for(|r| *r).await;
    let acquired = tokio::time::Instant::now();
    server.lock().unwrap().refuse_writes = true;
    let err = stops_within(DURATION, task).await;
    assert!(
        acquired.elapsed() < DURATION,
        "stopped only after {:?}, when a standby may already lead",
        acquired.elapsed()
    );
    assert!(err.to_string().contains("lost leadership as me"), "{err:#}");
    assert_eq!(gauge.get(), 0);
    assert!(running.has_changed().is_err(), "the work was dropped");
}

#[tokio::test(start_paused = true)]
async fn a_leader_whose_lease_was_taken_stops_at_its_next_renewal() {
    let server = Shared::default();
    let c = candidate(&server);
    c.leading().await;
    server.lock().unwrap().lease = Some(lease_held_by("other"));
    let err = stops_within(DURATION, c.task).await;
    assert!(
        err.to_string().contains("another replica holds it"),
        "{err:#}"
    );
    assert_eq!(c.gauge.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_lease_cleared_by_another_standby_as_it_was_taken_is_not_led() {
    let server = Shared::default();
    let mut expired = lease_held_by("old");
    expired["spec"]["renewTime"] = json!("2026-01-01T00:00:00.000000Z");
    server.lock().unwrap().lease = Some(expired);
    let gauge = Gauge::default();
    let worked = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(run_until_shutdown(
        election(&server),
        gauge.clone(),
        Arc::new(AtomicBool::new(false)),
        std::future::pending(),
        {
            let worked = worked.clone();
            move || async move {
                worked.store(true, Ordering::SeqCst);
                std::future::pending().await
            }
        },
    ));
    while holder(&server).as_deref() != Some("me") {
        run_for(Duration::from_millis(50)).await;
    }
    // The other standby's clearing write lands, then its claim.
    server.lock().unwrap().lease = Some(lease_held_by("other"));
    run_for(SETTLE * 3).await;
    assert!(!worked.load(Ordering::SeqCst), "both replicas would write");
    assert_eq!(gauge.get(), 0);
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_while_taking_the_lease_still_releases_it() {
    let server = Shared::default();
    let c = candidate(&server);
    // Taken, and not yet started: the new leader is settling.
    while holder(&server).as_deref() != Some("me") {
        run_for(Duration::from_millis(50)).await;
    }
    c.stop.send(true).unwrap();
    c.task.await.unwrap().unwrap();
    assert!(!c.worked.load(Ordering::SeqCst));
    assert_eq!(holder(&server), None, "released on shutdown");
}
