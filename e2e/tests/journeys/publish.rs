//! `irsa controller --publish-issuer` against the real API server and moto's S3: the objects
//! equal the API server's documents byte for byte, with the right headers; a steady state
//! writes nothing (to S3 nor to the state ConfigMap); drift is repaired; an issuer that is
//! not the public URL publishes nothing and is reported (status, one Warning Event), and
//! the first publish after that says so (one Normal Event).
//!
//! The local API server's issuer is its own URL, so the test names that URL as
//! `--issuer-public-url` (the check passes) and reads the objects back from moto's S3
//! (`--issuer-verify-url`), as STS would read them from the bucket.

use std::time::Duration;

use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use irsa::controller::publish::{REFUSED_REASON, RESUMED_REASON};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::Api;

use irsa_e2e::identity::RELEASE_NAMESPACE;
use irsa_e2e::metrics;
use irsa_e2e::process::Process;
use irsa_e2e::support::{self, OwnPlane, WAIT, api_text};

const STATE: &str = "irsa-issuer-keys";

async fn object(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Option<(String, Option<String>, Option<String>)> {
    let out = s3.get_object().bucket(bucket).key(key).send().await.ok()?;
    let (content_type, cache) = (
        out.content_type().map(String::from),
        out.cache_control().map(String::from),
    );
    let body = out.body.collect().await.ok()?.into_bytes();
    Some((
        String::from_utf8(body.to_vec()).unwrap(),
        content_type,
        cache,
    ))
}

async fn versions(s3: &aws_sdk_s3::Client, bucket: &str) -> usize {
    let out = s3
        .list_object_versions()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    out.versions().len()
}

async fn state(client: &kube::Client) -> Option<ConfigMap> {
    Api::<ConfigMap>::namespaced(client.clone(), RELEASE_NAMESPACE)
        .get_opt(STATE)
        .await
        .ok()?
}

async fn state_status(client: &kube::Client) -> Option<String> {
    state(client).await?.data?.get("status").cloned()
}

/// The state ConfigMap's resourceVersion: it changes with every write.
async fn state_version(client: &kube::Client) -> String {
    state(client)
        .await
        .and_then(|cm| cm.metadata.resource_version)
        .expect("the state ConfigMap exists")
}

/// The Events with `reason` on this state ConfigMap (by uid: not an earlier run's).
async fn state_events(client: &kube::Client, reason: &str) -> Vec<Event> {
    let uid = state(client).await.and_then(|cm| cm.metadata.uid);
    let events = Api::<Event>::namespaced(client.clone(), RELEASE_NAMESPACE)
        .list(&Default::default())
        .await
        .unwrap();
    events
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.uid.clone()) == uid
        })
        .collect()
}

/// An issuer bucket ([`support::issuer_bucket`], objects below `cluster/`), versioned: every
/// PutObject is a version, so writes can be counted.
async fn public_bucket(sdk: &aws_config::SdkConfig) -> (aws_sdk_s3::Client, String) {
    let s3 = support::s3_client(sdk);
    let bucket = support::issuer_bucket(&s3, "cluster").await;
    s3.put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    (s3, bucket)
}

/// The last pass that published or found everything current (unix seconds).
const LAST_PUBLISH: &str = "irsa_controller_issuer_last_publish_timestamp_seconds";
/// Passes refused because the API server's issuer is not the public URL.
const REFUSED_PASSES: &str =
    "irsa_controller_issuer_publish_errors_total{kind=\"issuer\",error=\"issuer_mismatch\"}";

/// Waits until `series` of the publisher's metrics has grown by `by` from its value now (its
/// first value once it appears): that many more passes (1 s apart) ran.
async fn passes(controller: &Process, series: &str, by: f64) {
    let what = format!("{series} to grow by {by}");
    let from = controller
        .wait_for(&what, WAIT, async || {
            metrics::find(&controller.metrics().await, series)
        })
        .await;
    controller
        .wait_for(&what, WAIT, async || {
            metrics::metric(&controller.metrics().await, series) >= from + by
        })
        .await;
}

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn publishes_the_api_servers_documents_and_refuses_a_wrong_issuer() {
    let cluster = support::controller_cluster().await;
    let client = cluster.client.clone();
    let (s3, bucket) = public_bucket(&cluster.aws_env.sdk).await;
    let _ = Api::<ConfigMap>::namespaced(client.clone(), RELEASE_NAMESPACE)
        .delete(STATE, &Default::default())
        .await;

    let discovery = api_text(&client, "/.well-known/openid-configuration").await;
    let jwks = api_text(&client, "/openid/v1/jwks").await;
    let issuer = serde_json::from_str::<serde_json::Value>(&discovery).unwrap()["issuer"]
        .as_str()
        .unwrap()
        .to_string();
    let target = format!("s3://{bucket}/cluster");
    // The emulator itself (anonymous reads), not the counting proxy in front of it.
    let verify = format!("{}/{bucket}/cluster", irsa_e2e::moto::moto().endpoint());
    let publisher_args = [
        "--publish-issuer",
        &target,
        "--issuer-public-url",
        &issuer,
        "--issuer-verify-url",
        &verify,
        "--issuer-publish-interval",
        "1s",
        "--issuer-key-retention",
        "1h",
    ];
    let controller = Process::controller_with(&cluster, None, "publisher", &publisher_args);

    let keys = [
        "cluster/.well-known/openid-configuration",
        "cluster/openid/v1/jwks",
    ];
    for (key, want) in keys.iter().zip([&discovery, &jwks]) {
        let (body, content_type, cache) = controller
            .wait_for(&format!("s3://{bucket}/{key}"), WAIT, || {
                object(&s3, &bucket, key)
            })
            .await;
        assert_eq!(
            &body, want,
            "{key} is the API server's document, byte for byte"
        );
        assert_eq!(content_type.as_deref(), Some("application/json"));
        assert_eq!(cache.as_deref(), Some("max-age=300"));
    }
    let status = controller
        .wait_for("the publisher's status", WAIT, || state_status(&client))
        .await;
    assert!(
        status.starts_with("published 1 key(s)") && !status.contains("did not match"),
        "published, and the anonymous read-back matched: {status}"
    );

    // Steady state: several passes (1 s apart) write nothing (every PutObject is a version),
    // and leave the state ConfigMap alone (its resourceVersion would move with a patch).
    assert_eq!(versions(&s3, &bucket).await, 2);
    let state_before = state_version(&client).await;
    passes(&controller, LAST_PUBLISH, 3.0).await;
    assert_eq!(versions(&s3, &bucket).await, 2, "no write at steady state");
    assert_eq!(
        state_version(&client).await,
        state_before,
        "no ConfigMap write at steady state"
    );

    // Drift made by someone else is repaired.
    s3.put_object()
        .bucket(&bucket)
        .key(keys[1])
        .body(b"{\"keys\":[]}".to_vec().into())
        .send()
        .await
        .unwrap();
    controller
        .wait_for("the JWKS to be repaired", WAIT, || async {
            let (body, ..) = object(&s3, &bucket, keys[1]).await?;
            (body == jwks).then_some(())
        })
        .await;
    controller.assert_running();
    drop(controller);

    // An issuer that is not the public URL: nothing is published, and the reason is kept
    // where the doctor and an operator can read it.
    let wrong = Process::controller_with(
        &cluster,
        None,
        "publisher-wrong",
        &[
            "--publish-issuer",
            &format!("s3://{bucket}/wrong"),
            "--issuer-public-url",
            "https://oidc.example.com/wrong",
            "--issuer-publish-interval",
            "1s",
        ],
    );
    let status = wrong
        .wait_for("the refusal in the status", WAIT, || async {
            state_status(&client)
                .await
                .filter(|s| s.starts_with("refused:"))
        })
        .await;
    assert!(
        status.contains(&issuer) && status.contains("https://oidc.example.com/wrong"),
        "the refusal names both URLs: {status}"
    );
    let events = wrong
        .wait_for("the refusal Event", WAIT, || async {
            Some(state_events(&client, REFUSED_REASON).await).filter(|e| !e.is_empty())
        })
        .await;
    let note = events[0].note.clone().unwrap_or_default();
    assert_eq!(events[0].type_.as_deref(), Some("Warning"));
    assert!(
        note.contains(&issuer) && note.contains("https://oidc.example.com/wrong"),
        "the Event names both URLs: {note}"
    );
    // Further refused passes (1 s apart) neither rewrite the status nor repeat the Event (a
    // repeat would be a second Event or a series on this one).
    let refused_version = state_version(&client).await;
    passes(&wrong, REFUSED_PASSES, 3.0).await;
    assert_eq!(state_version(&client).await, refused_version);
    let events = state_events(&client, REFUSED_REASON).await;
    assert_eq!(events.len(), 1, "one Event per refusal: {events:?}");
    assert!(
        events[0].series.is_none(),
        "published once: {:?}",
        events[0].series
    );
    // The doctor reads that status: the public JWKS here is the API server's own (current), so
    // the step passes, naming the refusal that will leave the next rotation unpublished.
    let keys_step = doctor_keys_step(&cluster).await;
    assert_eq!(keys_step["status"], "PASS", "{keys_step:#}");
    assert!(
        keys_step["evidence"]
            .as_str()
            .is_some_and(|e| e.contains(&format!(
                "(ConfigMap {RELEASE_NAMESPACE}/{STATE}): {status}"
            ))),
        "the doctor names the publisher's status: {keys_step:#}"
    );
    let listed = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("wrong/")
        .send()
        .await
        .unwrap();
    assert_eq!(
        listed.key_count(),
        Some(0),
        "nothing published for a wrong issuer"
    );
    drop(wrong);

    // Set right again: the first publish after the refusal says so (a Normal Event), so the
    // Warning is not the last word, and the status is no longer a refusal.
    let fixed = Process::controller_with(&cluster, None, "publisher-fixed", &publisher_args);
    let resumed = fixed
        .wait_for("the resume Event", WAIT, || async {
            Some(state_events(&client, RESUMED_REASON).await).filter(|e| !e.is_empty())
        })
        .await;
    assert_eq!(resumed.len(), 1, "{resumed:?}");
    assert_eq!(resumed[0].type_.as_deref(), Some("Normal"));
    let status = state_status(&client).await.unwrap_or_default();
    assert!(status.starts_with("published 1 key(s)"), "{status}");
    drop(fixed);
}

/// `irsa doctor` (the built binary) for a ServiceAccount of a role that need not exist: its
/// "Published keys" step, which compares the JWKS at the issuer URL with the API server's.
async fn doctor_keys_step(cluster: &support::ControllerCluster) -> serde_json::Value {
    let sa = support::unique("publish-doctor");
    irsa_e2e::webhook::create_service_account(
        &cluster.client,
        "default",
        &sa,
        serde_json::json!({"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/none"}),
    )
    .await;
    let (_, report) = cluster.aws_env.doctor(&[
        "-n",
        "default",
        "--service-account",
        &sa,
        "--irsa-namespace",
        RELEASE_NAMESPACE,
    ]);
    support::doctor_step(&report, "issuer-keys").clone()
}

/// A control plane of this test's own (scripts/control-plane.sh in a directory of its own),
/// because its API server restarts; stopped on drop.
fn kids_of(jwks: &str) -> Vec<String> {
    let doc: serde_json::Value = serde_json::from_str(jwks).unwrap_or_default();
    doc["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .filter_map(|k| k["kid"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Rotation on a real API server: restarted with a second verification key (which then
/// signs), then with the new key alone. The published JWKS holds both, then keeps the old key
/// until the retention after it was retired (the first pass that missed it, so never before
/// the retention after the API server dropped it), also across a controller restart, and then
/// drops it.
#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn a_rotated_key_stays_published_until_its_tokens_expired() {
    const RETENTION: Duration = Duration::from_secs(60);
    let settings = support::settings();
    let plane = OwnPlane::up();
    let client = support::client_for(&plane.kubeconfig()).await;
    support::install_crds(&client).await;
    let issuer = irsa::issuer::discover::issuer(&client, None).await.unwrap();
    let kubeconfig = irsa_e2e::identity::kubeconfig_in(
        &client,
        &plane.kubeconfig(),
        irsa_e2e::identity::Component::Controller,
    )
    .await;
    let aws_env = support::aws_env().await;
    let (s3, bucket) = public_bucket(&aws_env.sdk).await;
    let target = format!("s3://{bucket}/cluster");
    let verify = format!("{}/{bucket}/cluster", irsa_e2e::moto::moto().endpoint());
    let public = issuer.url.clone();
    let cluster = support::ControllerCluster {
        settings,
        client: client.clone(),
        issuer,
        aws_env,
        kubeconfig,
    };
    let retention = format!("{}s", RETENTION.as_secs());
    let args = [
        "--publish-issuer",
        target.as_str(),
        "--issuer-public-url",
        public.as_str(),
        "--issuer-verify-url",
        verify.as_str(),
        "--issuer-publish-interval",
        "1s",
        "--issuer-key-retention",
        retention.as_str(),
    ];
    let api_kids = || async { kids_of(&api_text(&client, "/openid/v1/jwks").await) };
    let published = || async {
        object(&s3, &bucket, "cluster/openid/v1/jwks")
            .await
            .map_or_else(Vec::new, |(body, ..)| kids_of(&body))
    };

    let controller = Process::controller_with(&cluster, None, "rotation", &args);
    let old = api_kids().await;
    assert_eq!(old.len(), 1, "{old:?}");
    controller
        .wait_for("the first key to be published", WAIT, || async {
            (published().await == old).then_some(())
        })
        .await;

    plane.script(&["rotate-key", "add"]);
    let both = api_kids().await;
    assert_eq!(
        both.len(),
        2,
        "the API server publishes both keys: {both:?}"
    );
    let new: Vec<String> = both.iter().filter(|k| !old.contains(k)).cloned().collect();
    controller
        .wait_for("both keys to be published", WAIT, || async {
            let mut got = published().await;
            got.sort();
            let mut want = both.clone();
            want.sort();
            (got == want).then_some(())
        })
        .await;

    // The old key leaves the API server; the first pass after this retires it, so its
    // retention runs from no earlier than now. The controller's own token was signed by that key and is now refused (in a pod the kubelet
    // refreshes it): it restarts with a fresh token, which is also the restart in between
    // that must not drop the retired key early (its state is in the ConfigMap).
    let dropped_before = std::time::Instant::now();
    plane.script(&["rotate-key", "drop"]);
    assert_eq!(
        api_kids().await,
        new,
        "the API server publishes only the new key"
    );
    drop(controller);
    let cluster = support::ControllerCluster {
        kubeconfig: irsa_e2e::identity::kubeconfig_in(
            &client,
            &plane.kubeconfig(),
            irsa_e2e::identity::Component::Controller,
        )
        .await,
        ..cluster
    };
    let controller = Process::controller_with(&cluster, None, "rotation-2", &args);
    let retained: Vec<String> = new.iter().chain(&old).cloned().collect();
    controller
        .wait_for("the new key first, the old one retained", WAIT, || async {
            (published().await == retained).then_some(())
        })
        .await;
    let elapsed = dropped_before.elapsed();
    assert!(
        elapsed < RETENTION,
        "the restarted controller kept the retired key ({elapsed:?} after the API server dropped it)"
    );

    controller
        .wait_for(
            "the old key to be dropped after the retention",
            WAIT,
            || async { (published().await == new).then_some(()) },
        )
        .await;
    let elapsed = dropped_before.elapsed();
    assert!(
        elapsed + Duration::from_secs(3) >= RETENTION,
        "dropped only after the retention ({RETENTION:?}), not after {elapsed:?}"
    );
    drop(controller);
}
