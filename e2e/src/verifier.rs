//! The verifying STS of the whole-trip tests: SeaweedFS (`weed mini`, built and started by
//! `scripts/verifying-sts.sh`, which `scripts/with-control-plane.sh` runs beside the control
//! plane). It serves S3, an IAM API and an STS whose `AssumeRoleWithWebIdentity` checks the
//! token for real: the signature against the JWKS it fetches through the issuer's discovery
//! document, the audience against the OIDC provider's client IDs, the expiry, and the role's
//! trust policy with its own evaluator. moto checks none of these.
//!
//! SeaweedFS evaluates trust policies in its own dialect; irsa's controller and doctor reach
//! it through `scripts/verifier-dialect.py` (`IRSA_E2E_VERIFIER_IRSA_ENDPOINT`), which keeps a
//! twin of each statement irsa owns in that dialect and hides the twins from irsa: see that
//! file and docs/development.md, "The verifying STS". The pods' SDKs reach the verifier
//! directly (`IRSA_E2E_VERIFIER_ENDPOINT`).

use std::path::PathBuf;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_iam::config::Credentials;

pub const REGION: &str = "us-east-1";

/// The running verifier, as `scripts/verifying-sts.sh env` describes it.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// `http://127.0.0.1:PORT`: S3, IAM and STS, as the pods' SDKs reach them.
    pub endpoint: String,
    /// The same through the dialect proxy: what irsa's controller and doctor are given.
    pub irsa_endpoint: String,
    /// `https://127.0.0.1:PORT`: the same S3 over TLS, where a self-managed issuer lives.
    pub https: String,
    /// The CA of that TLS certificate.
    pub ca: PathBuf,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// The account of the ARNs irsa builds (its IAM answers role ARNs without one).
    pub account: String,
}

impl Verifier {
    /// The verifier `make test` started; fails (never skips) when there is none.
    pub fn from_env() -> Self {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| {
                    panic!(
                        "{name} is not set: the whole-trip tests need the verifying STS \
                     (make test starts it; by hand: scripts/verifying-sts.sh up and source its env)"
                    )
                })
        };
        Self {
            endpoint: var("IRSA_E2E_VERIFIER_ENDPOINT"),
            irsa_endpoint: var("IRSA_E2E_VERIFIER_IRSA_ENDPOINT"),
            https: var("IRSA_E2E_VERIFIER_HTTPS"),
            ca: var("IRSA_E2E_VERIFIER_CA").into(),
            access_key_id: var("IRSA_E2E_VERIFIER_ACCESS_KEY_ID"),
            secret_access_key: var("IRSA_E2E_VERIFIER_SECRET_ACCESS_KEY"),
            account: var("IRSA_E2E_VERIFIER_ACCOUNT"),
        }
    }

    /// The admin's SDK configuration, straight to the verifier (no proxy, no dialect).
    pub async fn sdk(&self) -> SdkConfig {
        self.sdk_for(&self.endpoint).await
    }

    /// The admin's SDK configuration for `endpoint` (the verifier or a proxy in front of it).
    pub async fn sdk_for(&self, endpoint: &str) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .empty_test_environment()
            .region(Region::new(REGION))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new(
                &self.access_key_id,
                &self.secret_access_key,
                None,
                None,
                "irsa-e2e-verifier",
            ))
            .load()
            .await
    }

    /// The admin's credentials as a child process's environment.
    pub fn child_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.access_key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_access_key.clone()),
            ("AWS_REGION", REGION.to_string()),
        ]
    }
}

/// The dialect translation's own checks (`scripts/verifier-dialect.py --self-test`).
#[test]
fn the_dialect_translation_keeps_subjects_and_hides_its_twins() {
    let script = crate::repo().join("scripts/verifier-dialect.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg("--self-test")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
