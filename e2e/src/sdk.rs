//! The AWS SDKs the journeys run as a pod's process ([`crate::kubelet::Container::run`]).

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use std::sync::OnceLock;

/// `e2e/tests/journeys/sdk_probe.py`: boto3's default credential chain, then
/// `sts get-caller-identity` and an S3 put and get (usage: `sdk_probe.py BUCKET KEY`).
pub const SDK_PROBE_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/journeys/sdk_probe.py");

/// The interpreter behind `python3` on PATH (pyenv's shim needs an environment the container
/// does not have), asked once.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let (ok, out, err) = crate::support::run(
                "python3",
                &["-c", "import sys, boto3; print(sys.executable)"],
                "",
            );
            assert!(ok, "python3 with boto3 (make deps installs it): {err}");
            PathBuf::from(out.trim())
        })
        .clone()
}

/// `examples/aws_sdk_probe.rs`, which cargo builds beside this test binary
/// (`target/<profile>/examples/`).
pub fn rust_probe() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("examples").join("aws_sdk_probe"))
        .unwrap();
    assert!(
        path.is_file(),
        "{} is missing: cargo builds examples with the tests (cargo build --example aws_sdk_probe)",
        path.display()
    );
    path
}

/// The one-line JSON report a probe prints last: `{arn, account, object}`, or
/// `{stage, code, error}` when the SDK failed.
pub fn probe_report(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "the SDK probe printed no report ({}):\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })
}
