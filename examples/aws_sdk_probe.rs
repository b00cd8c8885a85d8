//! What an application does with the credentials irsa set up, through the AWS SDK for Rust's
//! default credential chain and nothing else: `sts get-caller-identity`, then an S3 put and
//! get of one object. The cluster tests run it as a pod's process (e2e/src/kubelet.rs),
//! with exactly the container's environment plus the endpoint override, beside its boto3 twin
//! (e2e/tests/journeys/sdk_probe.py).
//!
//! Usage: `aws_sdk_probe BUCKET KEY`. Prints one JSON line, `{"arn", "account", "object"}`
//! (the text read back) or `{"stage", "code", "error"}` (the first call that failed, the
//! service's error code if it gave one, and the error with its causes), and exits 1 on error.

use aws_config::BehaviorVersion;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sts::error::{DisplayErrorContext, ProvideErrorMetadata};
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bucket, key] = args.as_slice() else {
        eprintln!("usage: aws_sdk_probe BUCKET KEY");
        std::process::exit(2);
    };
    match probe(bucket, key).await {
        Ok(report) => println!("{report}"),
        Err(report) => {
            println!("{report}");
            std::process::exit(1);
        }
    }
}

async fn probe(bucket: &str, key: &str) -> Result<serde_json::Value, serde_json::Value> {
    let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let identity = aws_sdk_sts::Client::new(&config)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| failure("sts:GetCallerIdentity", e.code(), &e))?;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let body = format!(
        "written by aws_sdk_probe as {}",
        identity.arn().unwrap_or("?")
    );
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.into_bytes()))
        .send()
        .await
        .map_err(|e| failure("s3:PutObject", e.code(), &e))?;
    let read = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| failure("s3:GetObject", e.code(), &e))?;
    let bytes = read
        .body
        .collect()
        .await
        .map_err(|e| failure("s3:GetObject", None, &e))?
        .into_bytes();
    Ok(json!({
        "arn": identity.arn(),
        "account": identity.account(),
        "object": String::from_utf8_lossy(&bytes),
    }))
}

fn failure(
    stage: &str,
    code: Option<&str>,
    error: &(dyn std::error::Error + 'static),
) -> serde_json::Value {
    json!({"stage": stage, "code": code, "error": DisplayErrorContext(error).to_string()})
}
