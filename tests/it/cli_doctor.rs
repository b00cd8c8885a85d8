//! `irsa doctor` as a user runs it: exit codes, offline mode, JSON output, and the
//! `kubectl-irsa` plugin name.

use std::process::Command;

use irsa::testing::oidc::{SigningKey, now, sa_claims};
use serde_json::{Value, json};

use crate::common::issuer;

const BIN: &str = env!("CARGO_BIN_EXE_irsa");

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("irsa-cli-doctor-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn nothing_to_diagnose_is_a_usage_error() {
    let out = Command::new(BIN)
        .args(["doctor", "-n", "team-a"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--service-account SA or --pod POD"));
    let out = Command::new(BIN)
        .args([
            "doctor",
            "--token",
            "/nonexistent",
            "--role-arn",
            "arn:aws:iam::111122223333:role/x",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read --token /nonexistent"));
}

#[tokio::test(flavor = "multi_thread")]
async fn offline_check_prints_json_and_exits_by_the_verdict() {
    let key = SigningKey::generate("k");
    let iss = issuer::start(SigningKey::jwks(&[&key]), None).await;
    let host = iss.url.trim_start_matches("https://");
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Federated": format!("arn:aws:iam::111122223333:oidc-provider/{host}")},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {format!("{host}:aud"): "sts.amazonaws.com"}}}]});
    let (ca, policy_file) = (tmp("ca.pem"), tmp("trust.json"));
    std::fs::write(&ca, &iss.ca_pem).unwrap();
    std::fs::write(&policy_file, policy.to_string()).unwrap();
    let args = |aud: &str| {
        let token = tmp(&format!("token-{aud}"));
        std::fs::write(
            &token,
            key.sign(&sa_claims(&iss.url, "team-a", "app", aud, now() + 600)),
        )
        .unwrap();
        let args: Vec<String> = vec![
            "doctor".into(),
            "--token".into(),
            token.display().to_string(),
            "--role-arn".into(),
            "arn:aws:iam::111122223333:role/app".into(),
            "--trust-policy".into(),
            policy_file.display().to_string(),
            "--issuer-ca-file".into(),
            ca.display().to_string(),
            "-o".into(),
            "json".into(),
        ];
        args
    };
    // The issuer runs on this test's runtime: wait for the binary off its worker threads.
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || Command::new(BIN).args(args).output().unwrap())
    };
    let out = run(args("sts.amazonaws.com")).await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["checks"].as_array().unwrap().len(), 9);

    let out = run(args("wrong-aud")).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let trust = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "trust-policy")
        .unwrap();
    assert_eq!(trust["status"], "FAIL");
    assert!(
        trust["evidence"]
            .as_str()
            .unwrap()
            .contains("aud is wrong-aud")
    );
}

#[test]
fn works_as_a_kubectl_plugin() {
    let link = tmp("kubectl-irsa");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    let out = Command::new(&link)
        .args(["doctor", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: kubectl irsa doctor"));
}

#[test]
fn a_multibyte_issuer_in_the_trust_policy_is_a_verdict_not_a_panic() {
    // Byte 7 of `https:/é` is inside `é`: the evaluator sliced there (exit 101).
    let key = SigningKey::generate("k");
    let token = tmp("token-multibyte");
    std::fs::write(
        &token,
        key.sign(&sa_claims(
            "https://127.0.0.1:9/id/X",
            "team-a",
            "app",
            "sts.amazonaws.com",
            now() + 600,
        )),
    )
    .unwrap();
    for (i, policy) in [
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"Federated": "https:/é"},
            "Action": "sts:AssumeRoleWithWebIdentity"}]}),
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"Federated": "arn:aws:iam::111122223333:oidc-provider/127.0.0.1:9/id/X"},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {"https:/é:sub": "system:serviceaccount:team-a:app"}}}]}),
    ]
    .into_iter()
    .enumerate()
    {
        let policy_file = tmp(&format!("trust-multibyte-{i}.json"));
        std::fs::write(&policy_file, policy.to_string()).unwrap();
        let out = Command::new(BIN)
            .args(["doctor", "--token"])
            .arg(&token)
            .args(["--role-arn", "arn:aws:iam::111122223333:role/app"])
            .arg("--trust-policy")
            .arg(&policy_file)
            .args(["-o", "json"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "policy {i}: {stderr}");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let trust = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "trust-policy")
            .unwrap();
        assert_eq!(trust["status"], "FAIL", "policy {i}: {trust}");
    }
}
