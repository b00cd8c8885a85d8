//! `irsa mutate` as a user runs it: the built binary, real files, stdin, exit codes.

use std::{
    io::Write,
    process::{Command, Output, Stdio},
};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_irsa");
const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/samples");

fn irsa(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn sample(name: &str) -> String {
    format!("{SAMPLES}/{name}")
}

#[test]
fn samples_mutate_to_the_documented_pod() {
    let out = irsa(
        &[
            "mutate",
            "-f",
            &sample("pod.yaml"),
            "--service-account",
            &sample("serviceaccount.yaml"),
            "-o",
            "json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let pod: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let app = &pod["spec"]["containers"][0];
    let env: Vec<(&str, &str)> = app["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .collect();
    assert_eq!(
        env,
        [
            ("LOG_LEVEL", "info"),
            ("AWS_STS_REGIONAL_ENDPOINTS", "regional"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_REGION", "eu-west-1"),
            (
                "AWS_ROLE_ARN",
                "arn:aws:iam::111122223333:role/team-a-s3-reader"
            ),
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"
            ),
        ]
    );
    assert_eq!(app["resizePolicy"][0]["resourceName"], "cpu");
    assert_eq!(
        pod["spec"]["containers"][1].get("env"),
        None,
        "istio-proxy is skipped"
    );
    assert_eq!(
        pod["spec"]["initContainers"][0]["volumeMounts"][0]["name"],
        "aws-iam-token"
    );
    assert_eq!(
        pod["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
        3600
    );
}

#[test]
fn yaml_output_from_stdin_and_role_flag() {
    let pod = std::fs::read_to_string(sample("pod.yaml")).unwrap();
    let out = irsa(
        &[
            "mutate",
            "-f",
            "-",
            "--role-arn",
            "arn:aws:iam::111122223333:role/x",
        ],
        Some(&pod),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mutated: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(
        mutated["spec"]["containers"][0]["env"][1]["value"],
        "arn:aws:iam::111122223333:role/x"
    );
}

#[test]
fn patch_output_is_add_only_and_empty_on_a_mutated_pod() {
    let args = |file: &str| {
        vec![
            "mutate".to_string(),
            "-f".into(),
            file.into(),
            "--service-account".into(),
            sample("serviceaccount.yaml"),
        ]
    };
    let mut patch_args = args(&sample("pod.yaml"));
    patch_args.extend(["-o".into(), "patch".into()]);
    let out = irsa(
        &patch_args.iter().map(String::as_str).collect::<Vec<_>>(),
        None,
    );
    let patch: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(patch.as_array().unwrap().iter().all(|op| op["op"] == "add"));

    // Feed the mutated pod back in: nothing left to add.
    let first = irsa(
        &args(&sample("pod.yaml"))
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        None,
    );
    let mut again = args("-");
    again.extend(["-o".into(), "patch".into()]);
    let out = irsa(
        &again.iter().map(String::as_str).collect::<Vec<_>>(),
        Some(&stdout(&first)),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&out)).unwrap(),
        serde_json::json!([])
    );
}

#[test]
fn a_file_that_is_not_a_pod_exits_2_with_the_reason() {
    let out = irsa(
        &[
            "mutate",
            "-f",
            "-",
            "--role-arn",
            "arn:aws:iam::111122223333:role/x",
        ],
        Some("kind: Service\nspec: {}\n"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a usable Pod: kind is \"Service\""),
        "{}",
        stderr(&out)
    );

    let out = irsa(&["mutate", "-f", "-"], Some("{not json"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not valid YAML/JSON"),
        "{}",
        stderr(&out)
    );

    let out = irsa(&["mutate", "-f", "/nonexistent/pod.yaml"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot read /nonexistent/pod.yaml"),
        "{}",
        stderr(&out)
    );

    let out = irsa(
        &[
            "mutate",
            "-f",
            &sample("pod.yaml"),
            "--service-account",
            &sample("pod.yaml"),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not a ServiceAccount"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn warnings_go_to_stderr_and_strict_exits_1() {
    let pod = std::fs::read_to_string(sample("pod.yaml")).unwrap();
    let out = irsa(
        &[
            "mutate",
            "-f",
            "-",
            "--role-arn",
            "not-an-arn",
            "-o",
            "json",
        ],
        Some(&pod),
    );
    assert!(out.status.success());
    assert!(stderr(&out).contains("warning: ServiceAccount team-a/app: annotation eks.amazonaws.com/role-arn=\"not-an-arn\" is not a valid IAM role ARN"), "{}", stderr(&out));
    assert!(
        serde_json::from_str::<Value>(&stdout(&out)).is_ok(),
        "stdout is only the pod"
    );

    let out = irsa(
        &["mutate", "-f", "-", "--role-arn", "not-an-arn", "--strict"],
        Some(&pod),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("denied by irsa (--strict)"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());
}

#[test]
fn container_credentials_identities_file_and_seeded_jitter() {
    let dir = std::env::temp_dir().join(format!("irsa-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ids = dir.join("identities.json");
    std::fs::write(
        &ids,
        r#"{"identities":[{"namespace":"team-a","serviceAccount":"app"}]}"#,
    )
    .unwrap();
    let run = || {
        let out = irsa(
            &[
                "mutate",
                "-f",
                &sample("pod.yaml"),
                "-o",
                "json",
                "--jitter-seed",
                "42",
                "--container-credentials-config",
                ids.to_str().unwrap(),
            ],
            None,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str::<Value>(&stdout(&out)).unwrap()
    };
    let (a, b) = (run(), run());
    assert_eq!(a, b, "a fixed seed gives a reproducible pod");
    assert_eq!(
        a["metadata"]["labels"]["eks.amazonaws.com/pod-identity"],
        "enabled"
    );
    let exp = a["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"]
        .as_i64()
        .unwrap();
    assert!((79200..=86400).contains(&exp));

    std::fs::write(&ids, "{broken").unwrap();
    let out = irsa(
        &[
            "mutate",
            "-f",
            &sample("pod.yaml"),
            "--container-credentials-config",
            ids.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("identities file"), "{}", stderr(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unimplemented_or_bad_usage_exits_2() {
    let out = irsa(&["mutate"], None);
    assert_eq!(out.status.code(), Some(2));
    let out = irsa(&["--help"], None);
    assert!(out.status.success());
    for cmd in [
        "webhook",
        "controller",
        "doctor",
        "mutate",
        "trust-policy",
        "crd",
    ] {
        assert!(stdout(&out).contains(cmd), "--help lists {cmd}");
    }
}
