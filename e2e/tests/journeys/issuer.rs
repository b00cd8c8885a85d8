//! `irsa issuer render` against the real API server: from the API server's public signing key
//! it renders the same JWKS (same `kid`, same key) and the same discovery document the API
//! server serves at its issuer.

use serde_json::Value;

use irsa_e2e::support::{self, run};

async fn served(client: &kube::Client, path: &str) -> Value {
    serde_json::from_str(&support::api_text(client, path).await).unwrap()
}

/// `irsa issuer render --issuer ISSUER --public-key KEY EXTRA...`; panics unless it succeeds.
fn render(issuer: &str, key: &str, extra: &[&str]) -> String {
    let args = [
        &["issuer", "render", "--issuer", issuer, "--public-key", key],
        extra,
    ]
    .concat();
    let (ok, stdout, stderr) = run(&irsa_e2e::irsa_bin().to_string_lossy(), &args, "");
    assert!(ok, "irsa {}: {stderr}", args.join(" "));
    stdout
}

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn rendered_documents_equal_what_the_api_server_serves() {
    support::settings();
    let key = std::env::var("IRSA_E2E_SA_PUBLIC_KEY").unwrap_or_else(|_| {
        panic!(
            "set IRSA_E2E_SA_PUBLIC_KEY to the API server's --service-account-key-file \
             (scripts/control-plane.sh sets it; on kind: docker cp <node>:/etc/kubernetes/pki/sa.pub)"
        )
    });
    let client = support::client().await;
    let served_discovery = served(&client, "/.well-known/openid-configuration").await;
    let served_jwks = served(&client, "/openid/v1/jwks").await;
    let issuer = served_discovery["issuer"].as_str().unwrap().to_string();

    let stdout = render(&issuer, &key, &[]);
    let rendered: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        rendered["jwks"], served_jwks,
        "the rendered JWKS is the API server's (kid computed the same way)"
    );
    assert_eq!(rendered["discovery"], served_discovery);

    // --out-dir writes exactly the served bytes' JSON at the served paths.
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(support::unique("issuer"));
    render(&issuer, &key, &["--out-dir", dir.to_str().unwrap()]);
    let file = |rel: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(rel)).unwrap()).unwrap()
    };
    assert_eq!(file(".well-known/openid-configuration"), served_discovery);
    assert_eq!(file("openid/v1/jwks"), served_jwks);
}
