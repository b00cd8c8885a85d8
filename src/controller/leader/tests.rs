//! The elector against a scripted API server (tower-test mock pair): every request the elector
//! makes is checked (method, path, body) and answered by the test. Time is tokio's paused
//! clock, which jumps to the next timer whenever every task waits, so lease expiry costs no
//! real time and nothing depends on the machine's speed.

use super::*;
use crate::cli::DEFAULT_LEASE_NAME;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use crate::testing::kube_api::{ApiHandle as Handle, json_response, mock_client};

type Reply = tower_test::mock::SendResponse<Response<Body>>;

const LEASE_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/irsa/leases/irsa-controller";
const LEASES_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/irsa/leases";

fn cfg() -> LeaderConfig {
    LeaderConfig::new("irsa", DEFAULT_LEASE_NAME, "me")
}

/// One request as the API server saw it.
struct Call {
    method: Method,
    path: String,
    body: Value,
    send: Reply,
}

async fn next_call(handle: &mut Handle) -> Call {
    let (req, send) = handle
        .next_request()
        .await
        .expect("the elector made a request");
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let bytes = req.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    Call {
        method,
        path,
        body,
        send,
    }
}

fn respond(send: Reply, status: StatusCode, body: &Value) {
    send.send_response(json_response(status, body.clone()));
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
           "reason": reason, "code": code, "message": format!("scripted {reason}")})
}

fn lease(holder: &str, resource_version: u32, renew_time: &str, transitions: i32) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "irsa-controller", "namespace": "irsa",
                     "resourceVersion": resource_version.to_string()},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                 "acquireTime": "2026-11-23T07:00:00.000000Z",
                 "renewTime": renew_time, "leaseTransitions": transitions}
    })
}

/// What the API server would store after a successful write of `body`.
fn stored(mut body: Value, resource_version: u32) -> Value {
    body["metadata"]["resourceVersion"] = json!(resource_version.to_string());
    body
}

fn expect(call: &Call, method: Method, path: &str) {
    assert_eq!(
        (&call.method, call.path.as_str()),
        (&method, path),
        "{}",
        call.body
    );
}

/// Observations of the work closure, for asserting what ran and how it ended.
#[derive(Clone, Default)]
struct Probe {
    started: Arc<AtomicBool>,
    dropped: Arc<AtomicBool>,
    gauge_seen: Arc<AtomicI64>,
}

/// Sets its flag when dropped: proves the work future was cancelled, not just abandoned.
struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Runs the elector in a task; `finish` decides when the work returns (never, if it never
/// resolves).
fn spawn_elected(
    client: kube::Client,
    gauge: Gauge,
    probe: Probe,
    finish: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let seen = gauge.clone();
    tokio::spawn(run_elected(client, cfg(), gauge, move || async move {
        let _flag = DropFlag(probe.dropped.clone());
        probe.started.store(true, Ordering::SeqCst);
        probe.gauge_seen.store(seen.get(), Ordering::SeqCst);
        let _ = finish.await;
        Ok(())
    }))
}

/// Answers the GET with 404 and the create with success; returns the created Lease.
async fn serve_create(handle: &mut Handle) -> Value {
    let get = next_call(handle).await;
    expect(&get, Method::GET, LEASE_PATH);
    respond(get.send, StatusCode::NOT_FOUND, &status(404, "NotFound"));

    let create = next_call(handle).await;
    expect(&create, Method::POST, LEASES_PATH);
    let spec = &create.body["spec"];
    assert_eq!(spec["holderIdentity"], "me");
    assert_eq!(spec["leaseDurationSeconds"], 15);
    assert_eq!(spec["leaseTransitions"], 0);
    assert!(spec["acquireTime"].is_string() && spec["renewTime"].is_string());
    assert_eq!(create.body["metadata"]["name"], "irsa-controller");
    let created = stored(create.body.clone(), 1);
    respond(create.send, StatusCode::CREATED, &created);
    created
}

/// Expects the release: the Lease we wrote last, guarded by its resourceVersion, with no holder.
async fn serve_release(handle: &mut Handle, ours: &Value) {
    let release = next_call(handle).await;
    expect(&release, Method::PUT, LEASE_PATH);
    assert_eq!(
        release.body["metadata"]["resourceVersion"],
        ours["metadata"]["resourceVersion"]
    );
    assert_eq!(release.body["spec"]["holderIdentity"], "");
    assert_eq!(release.body["spec"]["leaseDurationSeconds"], 1);
    assert_eq!(
        release.body["spec"]["leaseTransitions"],
        ours["spec"]["leaseTransitions"]
    );
    let rv: u32 = ours["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    respond(
        release.send,
        StatusCode::OK,
        &stored(release.body.clone(), rv + 1),
    );
}

#[tokio::test(start_paused = true)]
async fn creates_the_lease_when_absent_and_releases_it_on_shutdown() {
    let (client, mut handle) = mock_client();
    let gauge = Gauge::default();
    let probe = Probe::default();
    let (finish, finished) = tokio::sync::oneshot::channel();
    let elected = spawn_elected(client, gauge.clone(), probe.clone(), finished);

    let created = serve_create(&mut handle).await;
    tokio::task::yield_now().await;
    finish.send(()).unwrap();
    serve_release(&mut handle, &created).await;

    elected.await.unwrap().unwrap();
    assert!(probe.started.load(Ordering::SeqCst));
    assert_eq!(
        probe.gauge_seen.load(Ordering::SeqCst),
        1,
        "leader while working"
    );
    assert_eq!(gauge.get(), 0, "not leader after release");
}

#[tokio::test(start_paused = true)]
async fn waits_while_another_holder_keeps_its_lease_fresh() {
    let (client, mut handle) = mock_client();
    let gauge = Gauge::default();
    let probe = Probe::default();
    let (_finish, finished) = tokio::sync::oneshot::channel();
    let start = Instant::now();
    let elected = spawn_elected(client, gauge.clone(), probe.clone(), finished);

    // The other leader renews between every two reads: its record keeps changing, so by our
    // clock its lease never gets old, however long we watch.
    for i in 0..20u32 {
        let get = next_call(&mut handle).await;
        expect(&get, Method::GET, LEASE_PATH);
        let renewed = format!("2026-11-23T07:00:{:02}.000000Z", i * 2);
        respond(
            get.send,
            StatusCode::OK,
            &lease("other", 100 + i, &renewed, 4),
        );
    }
    assert!(
        start.elapsed() > cfg().lease_duration * 2,
        "watched for several lease durations"
    );
    // The 21st request is another read, never a write.
    let get = next_call(&mut handle).await;
    expect(&get, Method::GET, LEASE_PATH);

    elected.abort();
    assert!(!probe.started.load(Ordering::SeqCst), "work never ran");
    assert_eq!(gauge.get(), 0);
}

/// Serves the same (frozen) Lease of a dead holder until the elector writes; returns the write.
async fn serve_frozen_until_write(handle: &mut Handle, frozen: &Value) -> (Call, usize) {
    let mut reads = 0;
    loop {
        let call = next_call(handle).await;
        if call.method != Method::GET {
            return (call, reads);
        }
        expect(&call, Method::GET, LEASE_PATH);
        reads += 1;
        respond(call.send, StatusCode::OK, frozen);
    }
}

#[tokio::test(start_paused = true)]
async fn takes_over_a_lease_its_holder_stopped_renewing() {
    let (client, mut handle) = mock_client();
    let gauge = Gauge::default();
    let probe = Probe::default();
    let (finish, finished) = tokio::sync::oneshot::channel();
    let start = Instant::now();
    let elected = spawn_elected(client, gauge.clone(), probe.clone(), finished);

    let frozen = lease("dead-pod_1234", 7, "2026-11-23T06:59:00.000000Z", 2);
    let (takeover, reads) = serve_frozen_until_write(&mut handle, &frozen).await;
    expect(&takeover, Method::PUT, LEASE_PATH);
    // Expiry is measured from our first sight of the record: one full lease duration.
    assert!(
        start.elapsed() >= cfg().lease_duration,
        "waited out the lease"
    );
    assert!(reads >= 2, "re-read before taking over ({reads} reads)");
    assert_eq!(
        takeover.body["metadata"]["resourceVersion"], "7",
        "guarded write"
    );
    assert_eq!(takeover.body["spec"]["holderIdentity"], "me");
    assert_eq!(takeover.body["spec"]["leaseTransitions"], 3);
    assert_ne!(
        takeover.body["spec"]["acquireTime"], frozen["spec"]["acquireTime"],
        "a new holder has a new acquireTime"
    );
    let ours = stored(takeover.body.clone(), 8);
    respond(takeover.send, StatusCode::OK, &ours);

    tokio::task::yield_now().await;
    finish.send(()).unwrap();
    serve_release(&mut handle, &ours).await;
    elected.await.unwrap().unwrap();
    assert!(probe.started.load(Ordering::SeqCst));
    assert_eq!(probe.gauge_seen.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_conflict_on_takeover_means_another_candidate_won() {
    let (client, mut handle) = mock_client();
    let gauge = Gauge::default();
    let probe = Probe::default();
    let (_finish, finished) = tokio::sync::oneshot::channel();
    let elected = spawn_elected(client, gauge.clone(), probe.clone(), finished);

    let frozen = lease("dead-pod_1234", 7, "2026-11-23T06:59:00.000000Z", 2);
    let (takeover, _) = serve_frozen_until_write(&mut handle, &frozen).await;
    expect(&takeover, Method::PUT, LEASE_PATH);
    respond(
        takeover.send,
        StatusCode::CONFLICT,
        &status(409, "Conflict"),
    );

    // The winner now holds it and renews; we only read from here on.
    for i in 0..15u32 {
        let get = next_call(&mut handle).await;
        expect(&get, Method::GET, LEASE_PATH);
        let renewed = format!("2026-11-23T07:01:{:02}.000000Z", i * 2);
        respond(
            get.send,
            StatusCode::OK,
            &lease("winner", 8 + i, &renewed, 3),
        );
    }
    let get = next_call(&mut handle).await;
    expect(&get, Method::GET, LEASE_PATH);

    elected.abort();
    assert!(
        !probe.started.load(Ordering::SeqCst),
        "the loser never works"
    );
    assert_eq!(gauge.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_conflict_on_create_means_another_candidate_won() {
    let (client, mut handle) = mock_client();
    let probe = Probe::default();
    let (_finish, finished) = tokio::sync::oneshot::channel();
    let elected = spawn_elected(client, Gauge::default(), probe.clone(), finished);

    let get = next_call(&mut handle).await;
    respond(get.send, StatusCode::NOT_FOUND, &status(404, "NotFound"));
    let create = next_call(&mut handle).await;
    expect(&create, Method::POST, LEASES_PATH);
    respond(
        create.send,
        StatusCode::CONFLICT,
        &status(409, "AlreadyExists"),
    );
    let get = next_call(&mut handle).await;
    expect(&get, Method::GET, LEASE_PATH);
    respond(
        get.send,
        StatusCode::OK,
        &lease("winner", 1, "2026-11-23T07:00:00.000000Z", 0),
    );
    let get = next_call(&mut handle).await;
    expect(&get, Method::GET, LEASE_PATH);

    elected.abort();
    assert!(!probe.started.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn renewal_keeps_the_holder_and_the_acquire_time() {
    let (client, mut handle) = mock_client();
    let gauge = Gauge::default();
    let probe = Probe::default();
    let (finish, finished) = tokio::sync::oneshot::channel();
    let elected = spawn_elected(client, gauge.clone(), probe.clone(), finished);

    let mut ours = serve_create(&mut handle).await;
    let acquired = ours["spec"]["acquireTime"].clone();
    for _ in 0..10 {
        let get = next_call(&mut handle).await;
        expect(&get, Method::GET, LEASE_PATH);
        respond(get.send, StatusCode::OK, &ours);
        let renew = next_call(&mut handle).await;
        expect(&renew, Method::PUT, LEASE_PATH);
        assert_eq!(
            renew.body["metadata"]["resourceVersion"],
            ours["metadata"]["resourceVersion"]
        );
        let spec = &renew.body["spec"];
        assert_eq!(spec["holderIdentity"], "me");
        assert_eq!(
            spec["acquireTime"], acquired,
            "renewal is not a new acquisition"
        );
        assert_eq!(spec["leaseTransitions"], 0);
        let rv: u32 = ours["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        ours = stored(renew.body.clone(), rv + 1);
        respond(renew.send, StatusCode::OK, &ours);
    }
    // Ten renewals (20 s) outlast the lease duration: the work is still running.
    assert!(probe.started.load(Ordering::SeqCst));
    assert!(!probe.dropped.load(Ordering::SeqCst), "work still running");
    assert_eq!(gauge.get(), 1);

    // The next renewal's read proves the last write was taken in; shut down while it hangs.
    let pending = next_call(&mut handle).await;
    expect(&pending, Method::GET, LEASE_PATH);
    finish.send(()).unwrap();
    serve_release(&mut handle, &ours).await;
    elected.await.unwrap().unwrap();
    assert_eq!(gauge.get(), 0);
    drop(pending);
}

#[tokio::test(start_paused = true)]
async fn a_release_racing_a_renewal_rereads_the_lease() {
    let (client, mut handle) = mock_client();
    let probe = Probe::default();
    let (finish, finished) = tokio::sync::oneshot::channel();
    let elected = spawn_elected(client, Gauge::default(), probe.clone(), finished);

    let created = serve_create(&mut handle).await;
    // A renewal is written by the API server, but the work finishes before its answer arrives.
    let get = next_call(&mut handle).await;
    respond(get.send, StatusCode::OK, &created);
    let renew = next_call(&mut handle).await;
    expect(&renew, Method::PUT, LEASE_PATH);
    let renewed = stored(renew.body.clone(), 2);
    finish.send(()).unwrap();
    drop(renew.send);

    let stale = next_call(&mut handle).await;
    expect(&stale, Method::PUT, LEASE_PATH);
    assert_eq!(stale.body["metadata"]["resourceVersion"], "1");
    respond(stale.send, StatusCode::CONFLICT, &status(409, "Conflict"));
    let reread = next_call(&mut handle).await;
    expect(&reread, Method::GET, LEASE_PATH);
    respond(reread.send, StatusCode::OK, &renewed);
    serve_release(&mut handle, &renewed).await;
    elected.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn failing_renewal_stops_the_work_before_the_lease_expires() {
    let (client, mut handle) = mock_client();
    let gauge = Gauge::default();
    let probe = Probe::default();
    let (_finish, finished) = tokio::sync::oneshot::channel();
    let elected = spawn_elected(client, gauge.clone(), probe.clone(), finished);

    serve_create(&mut handle).await;
    let acquired = Instant::now();
    // From now on the API server fails every request; a write would fail the test.
    let server = tokio::spawn(async move {
        loop {
            let call = next_call(&mut handle).await;
            expect(&call, Method::GET, LEASE_PATH);
            respond(
                call.send,
                StatusCode::INTERNAL_SERVER_ERROR,
                &status(500, "InternalError"),
            );
        }
    });

    let err = elected.await.unwrap().unwrap_err().to_string();
    let stopped_after = acquired.elapsed();
    server.abort();
    assert!(err.contains("Lease irsa/irsa-controller"), "{err}");
    assert!(err.contains("lost leadership as me"), "{err}");
    assert!(err.contains("could not renew for 10s"), "{err}");
    assert!(probe.dropped.load(Ordering::SeqCst), "work was stopped");
    assert_eq!(gauge.get(), 0);
    // Stopped after the renew deadline, before any standby may take the lease over.
    assert!(stopped_after >= cfg().renew_deadline, "{stopped_after:?}");
    assert!(stopped_after < cfg().lease_duration, "{stopped_after:?}");
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_renewal_stops_the_work_at_the_deadline() {
    let (client, mut handle) = mock_client();
    let gauge = Gauge::default();
    let probe = Probe::default();
    let (_finish, finished) = tokio::sync::oneshot::channel();
    let elected = spawn_elected(client, gauge.clone(), probe.clone(), finished);

    serve_create(&mut handle).await;
    let acquired = Instant::now();
    // The API server accepts the renewal's GET and never answers it.
    let hung = next_call(&mut handle).await;
    expect(&hung, Method::GET, LEASE_PATH);

    let err = elected.await.unwrap().unwrap_err().to_string();
    assert!(err.contains("did not answer"), "{err}");
    assert!(probe.dropped.load(Ordering::SeqCst));
    assert_eq!(gauge.get(), 0);
    assert!(acquired.elapsed() >= cfg().renew_deadline);
    assert!(acquired.elapsed() < cfg().lease_duration);
    drop(hung);
}

#[tokio::test(start_paused = true)]
async fn finding_another_holder_on_renewal_stops_the_work_at_once() {
    let (client, mut handle) = mock_client();
    let probe = Probe::default();
    let (_finish, finished) = tokio::sync::oneshot::channel();
    let elected = spawn_elected(client, Gauge::default(), probe.clone(), finished);

    serve_create(&mut handle).await;
    let get = next_call(&mut handle).await;
    expect(&get, Method::GET, LEASE_PATH);
    respond(
        get.send,
        StatusCode::OK,
        &lease("usurper", 9, "2026-11-23T07:05:00.000000Z", 1),
    );

    let err = elected.await.unwrap().unwrap_err().to_string();
    assert!(err.contains("now held by usurper"), "{err}");
    assert!(probe.dropped.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn a_released_lease_is_taken_at_once() {
    let (client, mut handle) = mock_client();
    let probe = Probe::default();
    let (finish, finished) = tokio::sync::oneshot::channel();
    let start = Instant::now();
    let elected = spawn_elected(client, Gauge::default(), probe.clone(), finished);

    let get = next_call(&mut handle).await;
    let mut released = lease("", 5, "2026-11-23T07:00:00.000000Z", 1);
    released["spec"]["leaseDurationSeconds"] = json!(1);
    respond(get.send, StatusCode::OK, &released);
    let takeover = next_call(&mut handle).await;
    expect(&takeover, Method::PUT, LEASE_PATH);
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "no waiting for a released lease"
    );
    assert_eq!(takeover.body["spec"]["holderIdentity"], "me");
    assert_eq!(takeover.body["spec"]["leaseTransitions"], 2);
    assert_eq!(takeover.body["spec"]["leaseDurationSeconds"], 15);
    let ours = stored(takeover.body.clone(), 6);
    respond(takeover.send, StatusCode::OK, &ours);

    tokio::task::yield_now().await;
    finish.send(()).unwrap();
    serve_release(&mut handle, &ours).await;
    elected.await.unwrap().unwrap();
}

#[test]
fn settings_that_allow_two_writers_are_refused() {
    let mut c = cfg();
    c.renew_deadline = c.lease_duration;
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("Lease irsa/irsa-controller"), "{err}");
    assert!(err.contains("longer than the renew deadline"), "{err}");

    let mut c = cfg();
    c.retry_period = c.renew_deadline;
    assert!(c.validate().is_err());

    let c = LeaderConfig::new("irsa", "l", "");
    assert!(c.validate().is_err());
    assert!(cfg().validate().is_ok());
}

#[test]
fn default_identity_is_the_pod_name_plus_a_random_suffix() {
    let a = default_identity();
    let b = default_identity();
    assert_ne!(a, b, "two processes in one pod never share an identity");
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "irsa-controller".into());
    if !host.is_empty() {
        assert!(a.starts_with(&format!("{host}_")), "{a}");
    }
}

#[tokio::test]
async fn the_controller_elects_in_the_flag_namespace_else_its_own() {
    let (svc, _handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "irsa-system");
    let own = LeaderConfig::for_controller(&client, None, DEFAULT_LEASE_NAME);
    assert_eq!(
        (own.namespace.as_str(), own.lease_name.as_str()),
        ("irsa-system", "irsa-controller")
    );
    assert!(!own.identity.is_empty());
    assert!(own.validate().is_ok());
    let flagged = LeaderConfig::for_controller(&client, Some("ops"), "irsa-controller-b");
    assert_eq!(
        (flagged.namespace.as_str(), flagged.lease_name.as_str()),
        ("ops", "irsa-controller-b")
    );
    assert_ne!(own.identity, flagged.identity);
}

/// A stateful stand-in for the API server's Lease storage, shared by several candidates (each
/// has its own client): create fails when the Lease exists, update fails unless it carries the
/// current resourceVersion — the two properties the election's safety rests on.
#[derive(Default)]
struct LeaseStore {
    lease: Option<Value>,
    version: u32,
    /// When each holder last wrote the Lease as its holder (our clock).
    last_write_by: std::collections::HashMap<String, Instant>,
}

fn serve_store(
    mut handle: Handle,
    store: Arc<std::sync::Mutex<LeaseStore>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().clone();
            let path = req.uri().path().to_string();
            let bytes = req.into_body().collect().await.unwrap().to_bytes();
            let mut s = store.lock().unwrap();
            let (code, body) = match (method, path.as_str()) {
                (Method::GET, LEASE_PATH) => match &s.lease {
                    Some(l) => (StatusCode::OK, l.clone()),
                    None => (StatusCode::NOT_FOUND, status(404, "NotFound")),
                },
                (Method::POST, LEASES_PATH) if s.lease.is_some() => {
                    (StatusCode::CONFLICT, status(409, "AlreadyExists"))
                }
                (Method::PUT, LEASE_PATH)
                    if s.lease.as_ref().map(|l| &l["metadata"]["resourceVersion"])
                        != Some(
                            &serde_json::from_slice::<Value>(&bytes).unwrap()["metadata"]["resourceVersion"],
                        ) =>
                {
                    (StatusCode::CONFLICT, status(409, "Conflict"))
                }
                (Method::POST, LEASES_PATH) | (Method::PUT, LEASE_PATH) => {
                    s.version += 1;
                    let written = stored(serde_json::from_slice(&bytes).unwrap(), s.version);
                    let holder = written["spec"]["holderIdentity"].as_str().unwrap_or("");
                    s.last_write_by.insert(holder.to_string(), Instant::now());
                    s.lease = Some(written.clone());
                    (StatusCode::OK, written)
                }
                (m, p) => panic!("unexpected {m} {p}"),
            };
            drop(s);
            respond(send, code, &body);
        }
    })
}

/// When a candidate's work ran, by the paused clock.
type Shifts = Arc<std::sync::Mutex<Vec<(String, Instant, Instant)>>>;

/// A candidate on its own client against `store`; its work asserts nobody else works, then
/// works for `work_for` and records its shift.
fn candidate(
    identity: &str,
    store: &Arc<std::sync::Mutex<LeaseStore>>,
    working: &Arc<AtomicI64>,
    shifts: &Shifts,
    work_for: Duration,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let (client, handle) = mock_client();
    serve_store(handle, store.clone());
    let (working, shifts, name) = (working.clone(), shifts.clone(), identity.to_string());
    let cfg = LeaderConfig::new("irsa", DEFAULT_LEASE_NAME, identity);
    tokio::spawn(run_elected(
        client,
        cfg,
        Gauge::default(),
        move || async move {
            assert_eq!(
                working.fetch_add(1, Ordering::SeqCst),
                0,
                "two leaders at once"
            );
            let start = Instant::now();
            tokio::time::sleep(work_for).await;
            working.fetch_sub(1, Ordering::SeqCst);
            shifts.lock().unwrap().push((name, start, Instant::now()));
            Ok(())
        },
    ))
}

#[tokio::test(start_paused = true)]
async fn two_candidates_never_lead_at_once_and_hand_over_on_release() {
    let store = Arc::new(std::sync::Mutex::new(LeaseStore::default()));
    let working = Arc::new(AtomicI64::new(0));
    let shifts = Shifts::default();
    let work_for = Duration::from_secs(40);
    // Both start at the same instant: both find no Lease, both create, one gets 409.
    let a = candidate("a", &store, &working, &shifts, work_for);
    let b = candidate("b", &store, &working, &shifts, work_for);
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();

    let shifts = shifts.lock().unwrap().clone();
    assert_eq!(shifts.len(), 2, "both worked, one after the other");
    let (first, second) = (&shifts[0], &shifts[1]);
    assert_ne!(first.0, second.0);
    assert!(second.1 >= first.2, "no overlap: {shifts:?}");
    // The first released the Lease: the second did not wait out a lease duration.
    assert!(
        second.1 - first.2 <= cfg().retry_period.mul_f64(JITTER_FACTOR),
        "handover took {:?}",
        second.1 - first.2
    );
    let s = store.lock().unwrap();
    let lease = s.lease.as_ref().unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "", "released at the end");
    assert_eq!(
        lease["spec"]["leaseTransitions"], 1,
        "created (0), then taken over once"
    );
}

#[tokio::test(start_paused = true)]
async fn a_standby_takes_over_when_the_leader_dies() {
    let store = Arc::new(std::sync::Mutex::new(LeaseStore::default()));
    let working = Arc::new(AtomicI64::new(0));
    let shifts = Shifts::default();
    let leader = candidate("a", &store, &working, &shifts, Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let standby = candidate("b", &store, &working, &shifts, Duration::from_secs(5));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        working.load(Ordering::SeqCst),
        1,
        "a still leads after a minute"
    );

    // The leader's process dies: no release, no more renewals.
    leader.abort();
    let died = Instant::now();
    let _ = leader.await;
    working.store(0, Ordering::SeqCst);
    standby.await.unwrap().unwrap();

    let shifts = shifts.lock().unwrap().clone();
    let (name, took_over, _) = &shifts[0];
    assert_eq!(name, "b");
    let last_renewal = store.lock().unwrap().last_write_by["a"];
    // Safety: not before the dead leader's last renewal plus a lease duration (by then the
    // leader, had it been alive but cut off, would have stopped at its renew deadline).
    assert!(*took_over >= last_renewal + cfg().lease_duration);
    // Liveness: within a lease duration and two retry periods of the death.
    assert!(
        *took_over <= died + cfg().lease_duration + cfg().retry_period.mul_f64(2.0 * JITTER_FACTOR),
        "took over {:?} after the death",
        *took_over - died
    );
}

// ---- run_until_shutdown: the process-level policy ----

#[tokio::test(start_paused = true)]
async fn a_standby_is_ready_and_leaves_on_shutdown_without_writing() {
    let (client, mut handle) = mock_client();
    let gauge = Gauge::default();
    let ready = Arc::new(AtomicBool::new(false));
    let worked = Arc::new(AtomicBool::new(false));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = {
        let (ready, worked) = (ready.clone(), worked.clone());
        tokio::spawn(run_until_shutdown(
            client,
            cfg(),
            gauge.clone(),
            ready,
            async move {
                let _ = stopped.await;
            },
            move || async move {
                worked.store(true, Ordering::SeqCst);
                Ok(())
            },
        ))
    };
    // Another replica holds a fresh Lease: we only ever read it.
    for i in 0..3u32 {
        let get = next_call(&mut handle).await;
        expect(&get, Method::GET, LEASE_PATH);
        let renewed = format!("2026-11-23T07:00:{:02}.000000Z", i * 2);
        respond(
            get.send,
            StatusCode::OK,
            &lease("other", 100 + i, &renewed, 4),
        );
    }
    assert!(ready.load(Ordering::SeqCst), "a standby reports ready");
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert!(!worked.load(Ordering::SeqCst));
    assert_eq!(gauge.get(), 0);
    // Nothing else reached the API server: no write, no release of a Lease never held (the
    // elector, and with it the client, is gone).
    assert!(handle.next_request().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn the_leader_is_ready_only_when_its_work_says_so_and_releases_after_shutdown() {
    let (client, mut handle) = mock_client();
    let gauge = Gauge::default();
    let ready = Arc::new(AtomicBool::new(false));
    let ready_at_start = Arc::new(AtomicBool::new(true));
    // One "SIGTERM" seen by both the process and the work, as tokio delivers signals.
    let (signal, _) = tokio::sync::broadcast::channel::<()>(1);
    let (mut for_process, mut for_work) = (signal.subscribe(), signal.subscribe());
    let task = {
        let (ready, seen) = (ready.clone(), ready_at_start.clone());
        tokio::spawn(run_until_shutdown(
            client,
            cfg(),
            gauge.clone(),
            ready.clone(),
            async move {
                let _ = for_process.recv().await;
            },
            move || async move {
                seen.store(ready.load(Ordering::SeqCst), Ordering::SeqCst);
                ready.store(true, Ordering::SeqCst); // caches synced
                let _ = for_work.recv().await;
                Ok(())
            },
        ))
    };
    let created = serve_create(&mut handle).await;
    tokio::task::yield_now().await;
    assert_eq!(gauge.get(), 1);
    assert!(
        !ready_at_start.load(Ordering::SeqCst),
        "not ready before the work syncs"
    );
    assert!(ready.load(Ordering::SeqCst));
    signal.send(()).unwrap();
    serve_release(&mut handle, &created).await;
    task.await.unwrap().unwrap();
    assert_eq!(gauge.get(), 0);
}
