//! IAM failing under a running `irsa controller`, through the fault proxy in front of moto
//! (`irsa_e2e::moto`), on a schedule: throttling (IAM's `Throttling` error, HTTP 400) on one
//! role and 5xx on another for [`FAILING`], then connection resets for everything, then 2 s of
//! latency on every call. While IAM fails, the controller backs off (the calls the proxy logged
//! stay under a bound computed from the worker's backoff) and the bindings' conditions and
//! Events say what is wrong; once IAM answers, every role trusts exactly what the bindings ask
//! for, and the statements someone else put in the roles are byte-identical.
//!
//! The controller runs with `AWS_MAX_ATTEMPTS=2`: the SDK's own retries (8 attempts over
//! tens of seconds by default) would otherwise hide the worker's backoff inside one failing
//! pass, and the test would last minutes.

use std::time::{Duration, Instant};

use irsa::crd::IAMRoleBinding;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;

use irsa_e2e::converge::{Role, World};
use irsa_e2e::moto::{Call, Fault, FaultProxy};
use irsa_e2e::process::Process;
use irsa_e2e::support::{self, WAIT};

/// SDK attempts per IAM call of the controller under test.
const ATTEMPTS: usize = 2;
/// How long throttling and 5xx stand: long enough for several retries of the worker.
const FAILING: Duration = Duration::from_secs(20);
/// The worker's first retry waits at least half its base (equal jitter), then doubling.
const FIRST_RETRY_MIN: f64 = 1.0;
const LATENCY: Duration = Duration::from_secs(2);

/// The condition `type_` of binding `name`, once it is `status` with a message containing
/// `needle`: (reason, message).
async fn condition_says(
    bindings: &Api<IAMRoleBinding>,
    name: &str,
    (type_, status): (&str, &str),
    needle: &str,
) -> Option<(String, String)> {
    let b = bindings.get(name).await.ok()?;
    let c = b
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_ && c.status == status)?;
    c.message.contains(needle).then_some((c.reason, c.message))
}

/// The Warning Events on binding `name` whose note contains `needle`.
async fn warnings(client: &kube::Client, ns: &str, name: &str, needle: &str) -> Vec<Event> {
    let about = ListParams::default().fields(&format!("regarding.name={name},type=Warning"));
    let mut events = Api::<Event>::namespaced(client.clone(), ns)
        .list(&about)
        .await
        .unwrap_or_else(|e| panic!("listing the Events on {ns}/{name}: {e}"))
        .items;
    events.retain(|e| e.note.as_deref().is_some_and(|n| n.contains(needle)));
    events
}

/// The calls naming `role` that got `fault`.
fn faulted(log: &[Call], role: &Role, fault: Fault) -> Vec<Instant> {
    log.iter()
        .filter(|c| c.role.as_deref() == Some(role.name.as_str()) && c.fault == Some(fault))
        .map(|c| c.at)
        .collect()
}

/// The most calls a controller that backs off makes to a role failing for `window`: the
/// first pass, then retries whose waits are at least 1, 2, 4, ... s (the worker's backoff:
/// 2 s·2ⁿ, equal jitter), each pass [`ATTEMPTS`] calls, plus one pass of slack (a change of
/// the cluster also starts a pass).
fn call_bound(window: Duration) -> usize {
    let retries = (window.as_secs_f64() / FIRST_RETRY_MIN + 1.0)
        .log2()
        .floor() as usize;
    ATTEMPTS * (1 + retries + 1)
}

/// Asserts the calls for `role` while `fault` stood (from its first hit until `cleared`)
/// stayed under [`call_bound`]; prints them.
fn assert_backed_off(proxy: &FaultProxy, role: &Role, fault: Fault, cleared: Instant) {
    let calls = faulted(&proxy.log(), role, fault);
    let first = calls[0];
    let window = cleared - first;
    let bound = call_bound(window);
    let offsets: Vec<String> = calls
        .iter()
        .map(|t| format!("{:.1}", (*t - first).as_secs_f64()))
        .collect();
    println!(
        "{fault:?} on {}: {} calls in {window:.1?} ({:.2}/s), bound {bound}; at s {offsets:?}",
        role.name,
        calls.len(),
        calls.len() as f64 / window.as_secs_f64().max(1.0)
    );
    assert!(
        calls.len() <= bound,
        "the controller did not back off: {} calls for {} in {window:?} while IAM answered \
         {fault:?} (bound {bound}), at s {offsets:?}",
        calls.len(),
        role.name
    );
}

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn iam_faults_are_backed_off_reported_and_survived() {
    let started = Instant::now();
    let mut world = World::new("irsa-faults", 3, 4).await;
    world
        .cluster
        .aws_env
        .child_env
        .push(("AWS_MAX_ATTEMPTS", ATTEMPTS.to_string()));
    let (r0, r1, r2) = (
        world.roles[0].clone(),
        world.roles[1].clone(),
        world.roles[2].clone(),
    );
    let client = world.cluster.client.clone();
    let ns = world.ns.clone();
    let bindings = world.bindings();
    let proxy = world.aws().faults().clone();
    support::create_binding(&client, &ns, "b0", &r0.arn, &["sa-0"]).await;
    let controller = Process::controller(&world.cluster, None, "controller-faults");
    world
        .wait_converged(&controller, "the first binding to converge")
        .await;

    // Throttling on one role, 5xx on another, while bindings ask for both.
    proxy.set_standing(Some(&r0.name), Some(Fault::Throttle));
    proxy.set_standing(Some(&r1.name), Some(Fault::ServerError));
    support::create_binding(&client, &ns, "b1", &r0.arn, &["sa-1"]).await;
    support::create_binding(&client, &ns, "b2", &r1.arn, &["sa-2"]).await;
    for (name, needle) in [("b1", "throttled"), ("b2", "ServiceFailure")] {
        let (reason, message) = controller
            .wait_for(
                &format!("binding {name}'s TrustPolicyApplied to say {needle:?}"),
                WAIT,
                || condition_says(&bindings, name, ("TrustPolicyApplied", "False"), needle),
            )
            .await;
        assert_eq!(reason, "IAMError", "{message}");
        controller
            .wait_for(&format!("binding {name}'s Ready to be False"), WAIT, || {
                condition_says(&bindings, name, ("Ready", "False"), "")
            })
            .await;
        let events = controller
            .wait_for(
                &format!("a Warning Event on {name} saying {needle:?}"),
                WAIT,
                || async {
                    Some(warnings(&client, &ns, name, needle).await).filter(|e| !e.is_empty())
                },
            )
            .await;
        assert_eq!(events[0].reason.as_deref(), Some("IAMError"), "{events:?}");
    }
    // The faults stand for FAILING after their first hit: the schedule, not a wait for the
    // controller (which is only ever observed through the proxy's log).
    let first_hit = faulted(&proxy.log(), &r0, Fault::Throttle)[0];
    controller
        .wait_for("the throttling window to pass", WAIT, || async {
            first_hit.elapsed() >= FAILING
        })
        .await;
    proxy.set_standing(Some(&r0.name), None);
    proxy.set_standing(Some(&r1.name), None);
    let cleared = Instant::now();
    assert_backed_off(&proxy, &r0, Fault::Throttle, cleared);
    assert_backed_off(&proxy, &r1, Fault::ServerError, cleared);
    world
        .wait_converged(&controller, "convergence once IAM answers again")
        .await;

    // Every connection reset: the binding says AWS is unreachable, then converges.
    proxy.set_standing(None, Some(Fault::Reset));
    support::create_binding(&client, &ns, "b3", &r2.arn, &["sa-3"]).await;
    let (reason, message) = controller
        .wait_for("binding b3 to say AWS is unreachable", WAIT, || {
            condition_says(
                &bindings,
                "b3",
                ("TrustPolicyApplied", "False"),
                "could not reach AWS",
            )
        })
        .await;
    assert_eq!(reason, "IAMError", "{message}");
    proxy.set_standing(None, None);
    world
        .wait_converged(&controller, "convergence after connection resets")
        .await;

    // 2 s on every call: a move and a delete still converge, nothing fails.
    proxy.set_standing(None, Some(Fault::Latency(LATENCY)));
    let patch = json!({"spec": {"roleArn": r2.arn}});
    bindings
        .patch("b1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    bindings
        .delete("b2", &DeleteParams::default())
        .await
        .unwrap();
    world
        .wait_converged(&controller, "convergence under 2 s of latency")
        .await;
    let slow = proxy
        .log()
        .iter()
        .filter(|c| {
            c.fault == Some(Fault::Latency(LATENCY)) && c.operation == "UpdateAssumeRolePolicy"
        })
        .count();
    assert!(
        slow >= 2,
        "both moved-between roles were written under latency ({slow} slow writes)"
    );
    proxy.set_standing(None, None);

    let log = proxy.log();
    let faulted_calls = log.iter().filter(|c| c.fault.is_some()).count();
    println!(
        "{} IAM/STS requests, {faulted_calls} faulted; test took {:.0?}",
        log.len(),
        started.elapsed()
    );
    controller.assert_running();
    drop(controller);
    world.cleanup().await;
}
