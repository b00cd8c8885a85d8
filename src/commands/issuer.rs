//! `irsa issuer render`: the discovery document and JWKS of a self-managed cluster's issuer,
//! offline, from the API server's public signing keys (what the reference webhook's
//! SELF_HOSTED_SETUP.md builds by hand, and `azwi jwks` does for Azure).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use super::UsageError;
use crate::cli::{IssuerArgs, IssuerCommand, IssuerRenderArgs};
use crate::issuer;

pub fn run(args: IssuerArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        IssuerCommand::Render(args) => render(&args),
    }
}

fn render(args: &IssuerRenderArgs) -> anyhow::Result<ExitCode> {
    let url = args.issuer.as_str();
    let mut keys = Vec::new();
    for path in &args.public_keys {
        let text = std::fs::read(path).map_err(|e| {
            UsageError::new(format!("cannot read --public-key {}: {e}", path.display()))
        })?;
        keys.extend(
            issuer::from_pem(&path.display().to_string(), &text)
                .map_err(|e| UsageError::new(format!("--public-key {e}")))?,
        );
    }
    let discovery = issuer::discovery(url, &keys);
    let jwks = issuer::jwks(&keys);
    match &args.out_dir {
        None => {
            let both = json!({"discovery": discovery, "jwks": jwks});
            println!("{}", serde_json::to_string_pretty(&both)?);
        }
        Some(dir) => {
            write(dir, issuer::DISCOVERY_PATH, &discovery)?;
            write(dir, issuer::JWKS_PATH, &jwks)?;
            eprintln!(
                "wrote {dir}/{} and {dir}/{}: upload them so that they are served at {url}/...",
                issuer::DISCOVERY_PATH,
                issuer::JWKS_PATH,
                dir = dir.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The documents exactly as the API server serves them: compact JSON.
fn write(dir: &Path, rel: &str, doc: &serde_json::Value) -> anyhow::Result<()> {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&path, doc.to_string()).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    use clap::Parser as _;

    use crate::cli::Cli;
    use crate::issuer::IssuerUrl;

    fn args(issuer: &str, key: &Path) -> IssuerRenderArgs {
        IssuerRenderArgs {
            issuer: IssuerUrl::parse(issuer).unwrap(),
            public_keys: vec![key.to_path_buf()],
            out_dir: None,
        }
    }

    fn usage_error(result: anyhow::Result<ExitCode>) -> String {
        let err = result.expect_err("a usage error");
        assert!(err.downcast_ref::<UsageError>().is_some(), "{err:#}");
        err.to_string()
    }

    #[test]
    fn bad_issuers_and_keys_are_refused_naming_the_input() {
        let dir = std::env::temp_dir().join(format!("irsa-issuer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let (public, private) = (dir.join("sa.pub"), dir.join("sa.key"));
        std::fs::write(&public, pair.public_key_pem()).unwrap();
        std::fs::write(&private, pair.serialize_pem()).unwrap();

        for issuer in [
            "http://example.com",
            "https://",
            "https:/é",
            "example.com",
            "https://a?b",
        ] {
            let argv = [
                "irsa",
                "issuer",
                "render",
                "--public-key",
                "k",
                "--issuer",
                issuer,
            ];
            let msg = Cli::try_parse_from(argv).unwrap_err().to_string();
            assert!(
                msg.contains("--issuer") && msg.contains("cannot be an IAM OIDC provider URL"),
                "{msg}"
            );
        }
        let msg = usage_error(render(&args("https://example.com", &private)));
        assert!(msg.contains("sa.key") && msg.contains("-pubout"), "{msg}");
        let msg = usage_error(render(&args(
            "https://example.com",
            &PathBuf::from("/nope"),
        )));
        assert!(msg.contains("/nope"), "{msg}");

        let out = dir.join("out");
        let ok = IssuerRenderArgs {
            out_dir: Some(out.clone()),
            ..args("https://example.com/c", &public)
        };
        assert_eq!(render(&ok).unwrap(), ExitCode::SUCCESS);
        let jwks: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(issuer::JWKS_PATH)).unwrap()).unwrap();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
