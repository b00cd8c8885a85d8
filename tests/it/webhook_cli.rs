//! The `irsa webhook` binary itself: flags, bench mode (`--service-accounts-file`), and exit 0
//! after SIGTERM.

use std::{net::SocketAddr, process::Command};

use crate::common::WAIT;
use crate::common::webhook::*;
use irsa_e2e::process::Process;
use serde_json::Value;

/// No environment beyond the test's own.
const NO_ENV: [(&str, &str); 0] = [];

#[tokio::test]
async fn binary_serves_from_a_service_accounts_file_and_exits_0_on_sigterm() {
    init();
    let dir = temp_dir("cli");
    let pair = self_signed();
    let (cert, key) = write_pair(&dir, &pair);
    let sas = dir.join("sas.yaml");
    std::fs::write(
        &sas,
        format!(
            "apiVersion: v1\nkind: List\nitems:\n- metadata:\n    namespace: team-a\n    name: app\n    annotations:\n      eks.amazonaws.com/role-arn: {ROLE}\n"
        ),
    )
    .unwrap();
    let (listen, metrics) = (
        SocketAddr::from(([127, 0, 0, 1], irsa_e2e::free_port())),
        SocketAddr::from(([127, 0, 0, 1], irsa_e2e::free_port())),
    );
    let (listen_arg, metrics_arg) = (listen.to_string(), metrics.to_string());
    let args: [&std::ffi::OsStr; 13] = [
        "webhook".as_ref(),
        "--listen".as_ref(),
        listen_arg.as_ref(),
        "--metrics-listen".as_ref(),
        metrics_arg.as_ref(),
        "--tls-cert-file".as_ref(),
        cert.as_os_str(),
        "--tls-key-file".as_ref(),
        key.as_os_str(),
        "--service-accounts-file".as_ref(),
        sas.as_os_str(),
        "--aws-default-region".as_ref(),
        "eu-west-1".as_ref(),
    ];
    let webhook = Process::irsa("cli", args, NO_ENV, Some(metrics_arg.clone()));
    webhook.wait_ready(WAIT).await;
    let pod = pod("app");
    let body: Value = client(&pair.0, listen)
        .post(url(listen))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&review("admission.k8s.io/v1", "c-1", pod.clone())).unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        env_names(&apply_patch(&body, &pod)),
        [
            "AWS_DEFAULT_REGION",
            "AWS_REGION",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE"
        ]
    );

    webhook.terminate();
    assert_eq!(webhook.exited(WAIT).await.code(), Some(0));
}

/// `irsa <args>` with no IRSA_* variable from the caller's environment.
fn irsa(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_irsa"));
    for (key, _) in std::env::vars() {
        if key.starts_with("IRSA_") {
            cmd.env_remove(key);
        }
    }
    cmd.args(args).output().unwrap()
}

/// `--service-accounts-file` is for benchmarks and tests: `--help` does not list it (the test
/// above runs it).
#[test]
fn help_does_not_list_the_bench_and_test_flag() {
    let out = irsa(&["webhook", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    assert!(help.contains("--sa-lookup-timeout"), "{help}");
    assert!(!help.contains("service-accounts-file"), "{help}");
    assert!(!help.contains("SERVICE_ACCOUNTS_FILE"), "{help}");
}

#[test]
fn zero_and_absurd_durations_are_usage_errors() {
    let webhook = ["webhook", "--tls-cert-file", "/c", "--tls-key-file", "/k"];
    let controller = ["controller", "--cluster-name", "c"];
    for (base, flag, value, want) in [
        (&webhook[..], "--reload-interval", "0", "more than zero"),
        (&webhook[..], "--reload-interval", "0ms", "more than zero"),
        (
            &webhook[..],
            "--reload-interval",
            "99999999999999h",
            "too long",
        ),
        (&webhook[..], "--sa-lookup-timeout", "0", "more than zero"),
        (&webhook[..], "--sa-lookup-timeout", "1h", "too long"),
        (&controller[..], "--resync-interval", "0s", "more than zero"),
        (
            &controller[..],
            "--resync-interval",
            "99999999999999999999",
            "too large",
        ),
        (
            &controller[..],
            "--resync-interval",
            "soon",
            "not a duration",
        ),
    ] {
        let mut args = base.to_vec();
        args.extend([flag, value]);
        let out = irsa(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(
            err.contains(flag) && err.contains(want),
            "{flag} {value}: {err}"
        );
    }
}

/// A private issuer CA that cannot be used stops the controller before it contacts anything
/// (no cluster, no AWS here), naming the flag and the file.
#[test]
fn an_unusable_issuer_ca_file_is_a_usage_error() {
    let dir = temp_dir("issuer-ca");
    let not_pem = dir.join("not-pem.crt");
    std::fs::write(&not_pem, "just text\n").unwrap();
    let missing = dir.join("missing.crt");
    for (file, want) in [
        (&not_pem, "holds no PEM certificate"),
        (&missing, "No such file"),
    ] {
        let file = file.to_str().unwrap();
        let out = irsa(&[
            "controller",
            "--cluster-name",
            "c",
            "--issuer-ca-file",
            file,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file}: {err}");
        assert!(
            err.contains("--issuer-ca-file") && err.contains(file) && err.contains(want),
            "{file}: {err}"
        );
    }
}
