//! `irsa controller --publish-issuer` against the real API server and moto's S3: the objects
//! equal the API server's documents byte for byte, with the right headers; a steady state
//! writes nothing; drift is repaired; an issuer that is not the public URL publishes nothing.
//!
//! The local API server's issuer is its own URL, so the test names that URL as
//! `--issuer-public-url` (the check passes) and reads the objects back from moto's S3
//! (`--issuer-verify-url`), as STS would read them from the bucket.

use std::time::Duration;

use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

use crate::identity::RELEASE_NAMESPACE;
use crate::support::{self, ControllerProcess, WAIT, wait_for};

const STATE: &str = "irsa-issuer-keys";

async fn api_text(client: &kube::Client, path: &str) -> String {
    let request = http::Request::get(path).body(Vec::new()).unwrap();
    client.request_text(request).await.unwrap()
}

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

async fn state_status(client: &kube::Client) -> Option<String> {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), RELEASE_NAMESPACE)
        .get_opt(STATE)
        .await
        .ok()??;
    cm.data?.get("status").cloned()
}

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn publishes_the_api_servers_documents_and_refuses_a_wrong_issuer() {
    let cluster = support::controller_cluster().await;
    let client = cluster.client.clone();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&cluster.aws_env.sdk)
            .force_path_style(true)
            .build(),
    );
    let bucket = support::unique("irsa-e2e");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
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
    // Anyone may read exactly the two objects, through the shipped bucket policy (never ACLs).
    let policy = include_str!("../config/iam/issuer-bucket-policy.json")
        .replace("BUCKET", &bucket)
        .replace("PREFIX", "cluster");
    s3.put_bucket_policy()
        .bucket(&bucket)
        .policy(policy)
        .send()
        .await
        .unwrap();
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
    let verify = format!("{}/{bucket}/cluster", crate::moto::moto().endpoint());
    let controller = ControllerProcess::start_with(
        &cluster,
        None,
        "publisher",
        &[
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
        ],
    );

    let keys = [
        "cluster/.well-known/openid-configuration",
        "cluster/openid/v1/jwks",
    ];
    for (key, want) in keys.iter().zip([&discovery, &jwks]) {
        let (body, content_type, cache) = wait_for(
            &format!("s3://{bucket}/{key}"),
            WAIT,
            Some(&controller),
            || object(&s3, &bucket, key),
        )
        .await;
        assert_eq!(
            &body, want,
            "{key} is the API server's document, byte for byte"
        );
        assert_eq!(content_type.as_deref(), Some("application/json"));
        assert_eq!(cache.as_deref(), Some("max-age=300"));
    }
    let status = wait_for("the publisher's status", WAIT, Some(&controller), || {
        state_status(&client)
    })
    .await;
    assert!(
        status.starts_with("published 1 key(s)") && !status.contains("did not match"),
        "published, and the anonymous read-back matched: {status}"
    );

    // Steady state: several passes (1 s apart) write nothing (every PutObject is a version).
    assert_eq!(versions(&s3, &bucket).await, 2);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(versions(&s3, &bucket).await, 2, "no write at steady state");

    // Drift made by someone else is repaired.
    s3.put_object()
        .bucket(&bucket)
        .key(keys[1])
        .body(b"{\"keys\":[]}".to_vec().into())
        .send()
        .await
        .unwrap();
    wait_for(
        "the JWKS to be repaired",
        WAIT,
        Some(&controller),
        || async {
            let (body, ..) = object(&s3, &bucket, keys[1]).await?;
            (body == jwks).then_some(())
        },
    )
    .await;
    controller.assert_running();
    drop(controller);

    // An issuer that is not the public URL: nothing is published, and the reason is kept
    // where the doctor and an operator can read it.
    let wrong = ControllerProcess::start_with(
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
    let status = wait_for("the refusal in the status", WAIT, Some(&wrong), || async {
        state_status(&client)
            .await
            .filter(|s| s.starts_with("refused:"))
    })
    .await;
    assert!(
        status.contains(&issuer) && status.contains("https://oidc.example.com/wrong"),
        "the refusal names both URLs: {status}"
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
}
