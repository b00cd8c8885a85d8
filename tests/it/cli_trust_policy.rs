//! `irsa trust-policy` end to end: the built binary, its stdout/stderr and exit codes.

use std::{
    path::PathBuf,
    process::{Command, Output},
};

use irsa::trust::{Claims, PolicyDocument, evaluate, statement_sid};

const ISSUER: &str = "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC";
const PROVIDER: &str =
    "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC";

fn irsa(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_irsa"));
    // Every flag has an IRSA_* env var: keep the caller's environment out of the test.
    for (key, _) in std::env::vars() {
        if key.starts_with("IRSA_") {
            cmd.env_remove(key);
        }
    }
    cmd.args([
        "trust-policy",
        "--issuer",
        ISSUER,
        "--provider-arn",
        PROVIDER,
    ])
    .args(args)
    .output()
    .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn temp_file(name: &str, content: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cli-trust-{}-{name}", std::process::id()));
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn prints_the_document_and_its_size() {
    let out = irsa(&["--subject", "team-a:app", "--subject", "team-a:api"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc = PolicyDocument::parse(&stdout(&out)).unwrap();
    assert_eq!(doc.statements().len(), 1);
    assert_eq!(
        doc.statements()[0]["Sid"],
        statement_sid(ISSUER, "sts.amazonaws.com")
    );
    assert_eq!(stderr(&out), format!("chars: {} / 2048\n", doc.chars()));
    for sa in ["app", "api"] {
        let claims = Claims::new(
            format!("system:serviceaccount:team-a:{sa}"),
            "sts.amazonaws.com",
        );
        assert!(evaluate(&doc, PROVIDER, &claims).allowed);
    }
}

#[test]
fn current_document_url_encoded_is_merged_and_steady_state_is_unchanged() {
    let foreign = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Ec2","Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let encoded =
        percent_encoding::utf8_percent_encode(foreign, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    let current = temp_file("current.txt", &encoded);
    let current = current.to_str().unwrap();
    let out = irsa(&[
        "--subject",
        "team-a:app",
        "--audience",
        "vault",
        "--current",
        current,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let merged = stdout(&out);
    let doc = PolicyDocument::parse(&merged).unwrap();
    assert_eq!(doc.statements().len(), 2);
    assert_eq!(
        doc.statements()[0].to_string(),
        r#"{"Sid":"Ec2","Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}"#
    );

    let again = temp_file("merged.json", &merged);
    let out = irsa(&[
        "--subject",
        "team-a:app",
        "--audience",
        "vault",
        "--current",
        again.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("(unchanged"), "{}", stderr(&out));
    assert_eq!(PolicyDocument::parse(&stdout(&out)).unwrap(), doc);
}

fn many_subjects() -> Vec<String> {
    (0..40)
        .map(|i| format!("--subject=team-a:service-{i:02}"))
        .chain(["--subject=team-b:one".to_string()])
        .collect()
}

#[test]
fn over_quota_exits_1_with_the_numbers() {
    let args = many_subjects();
    let mut refs: Vec<&str> = args.iter().map(String::as_str).collect();
    refs.push("--max-chars=1000");
    let out = irsa(&refs);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(err.contains("over the quota of 1000"), "{err}");
    assert!(err.contains("of 41 subjects do not fit"), "{err}");
    assert!(err.contains("chars: "), "{err}");
    assert!(err.contains(" / 1000"), "{err}");
}

#[test]
fn allowed_namespace_wildcard_makes_it_fit() {
    let args = many_subjects();
    let mut refs: Vec<&str> = args.iter().map(String::as_str).collect();
    refs.extend([
        "--max-chars",
        "1000",
        "--allow-namespace-wildcard",
        "team-a",
    ]);
    let out = irsa(&refs);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("namespace team-a collapsed"), "{err}");
    let doc = PolicyDocument::parse(&stdout(&out)).unwrap();
    assert!(doc.chars() <= 1000);
    assert!(
        err.ends_with(&format!("chars: {} / 1000\n", doc.chars())),
        "{err}"
    );
    assert!(stdout(&out).contains("system:serviceaccount:team-a:*"));
}

#[test]
fn bad_input_is_a_usage_error() {
    let out = irsa(&["--subject", "team-a"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("\"team-a\" is not `namespace:serviceaccount`"));

    let out = irsa(&["--subject", "Team_A:app"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is not a Kubernetes namespace name"));

    let bad = temp_file("bad.json", "{\"Statement\": ");
    let out = irsa(&["--subject", "a:b", "--current", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not valid JSON"),
        "{}",
        stderr(&out)
    );

    let out = irsa(&["--subject", "a:b", "--current", "/nonexistent/policy.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read --current /nonexistent/policy.json"));

    let out = Command::new(env!("CARGO_BIN_EXE_irsa"))
        .args(["trust-policy", "--issuer", ISSUER, "--subject", "a:b"])
        .args(["--provider-arn", "arn:aws:iam::111122223333:role/x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is not an IAM OIDC provider ARN"));
}

/// `irsa trust-policy` with only the given issuer (no default one from [`irsa`]).
fn trust_policy_with_issuer(issuer: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_irsa"))
        .env_remove("IRSA_ISSUER_URL")
        .args(["trust-policy", "--issuer", issuer, "--subject", "a:b"])
        .args([
            "--provider-arn",
            "arn:aws:iam::111122223333:oidc-provider/x",
        ])
        .output()
        .unwrap()
}

#[test]
fn a_multibyte_or_hostless_issuer_is_a_usage_error_not_a_panic() {
    // Byte 7 of `https:/é` falls inside `é`: this used to panic (exit 101).
    for issuer in [
        "https:/é",
        "https:/",
        "HTTPS:/",
        "https:x",
        "https:///id/X",
        "é",
    ] {
        let out = trust_policy_with_issuer(issuer);
        let err = stderr(&out);
        assert_ne!(out.status.code(), Some(101), "{issuer:?} panicked: {err}");
        if issuer == "é" {
            // A (strange) host: compiled, with the provider-mismatch warning.
            assert_eq!(out.status.code(), Some(0), "{issuer:?}: {err}");
        } else {
            assert_eq!(out.status.code(), Some(2), "{issuer:?}: {err}");
            assert!(err.contains("is not an issuer URL"), "{issuer:?}: {err}");
        }
    }
    // An IDN issuer is a host like any other.
    let out = trust_policy_with_issuer("https://oidc.exé.com/id/1");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("oidc.exé.com/id/1:sub"));
}

#[test]
fn unchanged_but_over_the_quota_exits_1_with_the_numbers() {
    let out = irsa(&["--subject", "team-a:app"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc = PolicyDocument::parse(&stdout(&out)).unwrap();
    let current = temp_file("unchanged-over.json", &stdout(&out));
    let quota = (doc.chars() - 1).to_string();
    let out = irsa(&[
        "--subject",
        "team-a:app",
        "--current",
        current.to_str().unwrap(),
        "--max-chars",
        &quota,
    ]);
    let err = stderr(&out);
    // It used to exit 0 saying "unchanged".
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("(unchanged"), "{err}");
    assert!(err.contains(&format!("over the quota of {quota}")), "{err}");
    assert!(
        err.ends_with(&format!("chars: {} / {quota}\n", doc.chars())),
        "{err}"
    );
}
