//! The API server stopped for [`OUTAGE`] and started again (etcd and its data kept), under a
//! running `irsa controller` and `irsa webhook`, on a control plane of the test's own (the
//! suite's is shared by every journey). Neither process is restarted: the webhook honours a
//! ServiceAccount annotated right after the API server returns within [`HONOURED_WITHIN`] (its
//! watch reconnects with a backoff at most 5 s apart: docs/webhook.md), the
//! controller's watches resume (a binding created then becomes Ready), and the drift made in
//! IAM during the outage (our statement removed by hand) is repaired by its resync.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use irsa_e2e::converge::World;
use irsa_e2e::identity::{self, Component};
use irsa_e2e::process::Process;
use irsa_e2e::support::{self, OwnPlane, WAIT};
use irsa_e2e::wait::wait_for;
use irsa_e2e::webhook::{self, Registration, WebhookProcess};

const OUTAGE: Duration = Duration::from_secs(20);
/// The documented bound (docs/webhook.md): the watch's tries, up to 5 s apart, the one that
/// finds the API server back, and the re-list.
const HONOURED_WITHIN: Duration = Duration::from_secs(30);

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn the_controller_and_the_webhook_outlive_an_api_server_outage() {
    let started = Instant::now();
    let plane = OwnPlane::up();
    let cluster = support::controller_cluster_at(&plane.kubeconfig()).await;
    let client = cluster.client.clone();
    let world = World::on(cluster, "irsa-restart", 2, 2).await;
    let (r0, r1) = (world.roles[0].clone(), world.roles[1].clone());
    let ns = world.ns.clone();
    support::create_binding(&client, &ns, "b0", &r0.arn, &["sa-0"]).await;
    // A short resync: the drift made in IAM meanwhile is repaired by it (nothing in the
    // cluster changes to trigger a pass).
    let controller = Process::controller_with(
        &world.cluster,
        None,
        "controller-outage",
        &["--resync-interval", "10s"],
    );
    world.wait_converged(&controller, "b0 to converge").await;

    let kubeconfig =
        identity::kubeconfig_in(&client, &plane.kubeconfig(), Component::Webhook).await;
    let hook = WebhookProcess::start(&kubeconfig, "webhook-outage", &[]).await;
    let registration = Registration::new(&[&ns]);
    webhook::register(
        &client,
        &webhook::chart_registration(&registration, &hook.url, &hook.cert),
    )
    .await;
    // In the webhook's cache before the outage, without the role: what it must not keep.
    webhook::create_service_account(&client, &ns, "late", json!({})).await;
    webhook::wait_until_mutating(&client, &ns, "sa-0", json!({})).await;

    plane.script(&["apiserver", "stop"]);
    let stopped = Instant::now();
    // Drift: someone with IAM access puts the role back to its foreign statements alone.
    let foreign_only = json!({"Version": "2012-10-17", "Statement": r0.foreign});
    world
        .aws()
        .iam_direct()
        .update_assume_role_policy()
        .role_name(&r0.name)
        .policy_document(foreign_only.to_string())
        .send()
        .await
        .unwrap();
    controller
        .wait_for("the outage to last its time", WAIT, || async {
            hook.assert_running();
            stopped.elapsed() >= OUTAGE
        })
        .await;
    plane.script(&["apiserver", "start"]);
    let back = Instant::now();

    // A role outside the grant: the webhook injects any annotation, the controller trusts
    // only what a grant allows, so the convergence check below stays about the bindings.
    let other_role = format!("arn:aws:iam::{}:role/not-granted", irsa_e2e::moto::ACCOUNT);
    let prefix = &world.cluster.settings.annotation_prefix;
    let patch = json!({"metadata": {"annotations": {format!("{prefix}/role-arn"): other_role}}});
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .patch("late", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let annotated = Instant::now();
    let probe: Pod =
        serde_json::from_value(webhook::pod(&support::unique("late"), "late", json!({}))).unwrap();
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let injected = wait_for(
        "a pod of the ServiceAccount annotated after the outage to be injected",
        WAIT,
        || async {
            hook.assert_running();
            let pod = serde_json::to_value(pods.create(&dry_run, &probe).await.ok()?).unwrap();
            webhook::has_token_volume(&pod).then_some(pod)
        },
    )
    .await;
    let honoured = annotated.elapsed();
    webhook::assert_injected(&injected, "app", &other_role);
    println!("the annotation was honoured {honoured:.1?} after it was made");
    assert!(
        honoured <= HONOURED_WITHIN,
        "the webhook honoured an annotation made after the API server returned only after \
         {honoured:?} (documented: {HONOURED_WITHIN:?})"
    );

    support::create_binding(&client, &ns, "b1", &r1.arn, &["sa-1"]).await;
    world
        .wait_converged(
            &controller,
            "the drift repaired and b1 converged after the outage",
        )
        .await;
    println!(
        "converged {:.1?} after the API server returned; test took {:.0?}",
        back.elapsed(),
        started.elapsed()
    );
    controller.assert_running();
    hook.assert_running();
    drop((controller, hook));
    world.cleanup().await;
    drop(plane);
}
