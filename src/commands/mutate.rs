//! `irsa mutate`: exactly what the webhook would do to a Pod, offline.

use std::{path::Path, process::ExitCode};

use anyhow::Context;
use rand::{SeedableRng, rngs::StdRng};
use serde_json::Value;

use crate::{
    cli::{MutateArgs, MutateOutput},
    error::UsageError,
    mutate::{self, Identities, ServiceAccountInfo},
    webhook::identities::{self, IdentitiesFileError},
};

pub fn run(args: MutateArgs) -> anyhow::Result<ExitCode> {
    let pod = read_manifest(&args.filename)?;
    let cfg = args.mutation.config();
    let identities = match &args.mutation.container_credentials_config {
        Some(path) => identities::read(path).map_err(|err| match err {
            IdentitiesFileError::Read { .. } => anyhow::Error::new(err),
            // There but wrong: the user's input to fix, like a Pod that is not YAML (exit 2).
            IdentitiesFileError::NotUtf8 { .. } | IdentitiesFileError::Invalid { .. } => {
                UsageError::new(err.to_string()).into()
            }
        })?,
        None => Identities::default(),
    };
    let sa_manifest = args
        .service_account
        .as_deref()
        .map(read_manifest)
        .transpose()?;
    let namespace = args
        .namespace
        .clone()
        .or_else(|| str_at(&pod, &["metadata", "namespace"]))
        .or_else(|| {
            sa_manifest
                .as_ref()
                .and_then(|sa| str_at(sa, &["metadata", "namespace"]))
        })
        .unwrap_or_else(|| "default".to_string());
    let sa = match &sa_manifest {
        Some(manifest) => service_account(manifest, &namespace, &cfg.annotation_prefix)?,
        None => {
            let p = &cfg.annotation_prefix;
            let annotations = [
                (format!("{p}/role-arn"), args.role_arn.clone()),
                (format!("{p}/audience"), args.audience.clone()),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
            ServiceAccountInfo {
                namespace: namespace.clone(),
                name: mutate::pod_service_account_name(&pod).to_string(),
                annotations,
            }
        }
    };

    let mut rng = match args.jitter_seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_rng(&mut rand::rng()),
    };
    let mutation = mutate::mutate(&cfg, &identities, &namespace, &sa, &pod, &mut rng)
        .map_err(|e| UsageError::new(format!("{}: {e}", args.filename.display())))?;
    for warning in &mutation.warnings {
        eprintln!("warning: {}", warning.message);
    }
    if let Some(denial) = &mutation.denial {
        eprintln!("{denial}");
        return Ok(ExitCode::from(1));
    }

    let out = match args.output {
        MutateOutput::Patch => serde_json::to_string_pretty(&mutation.patch)? + "\n",
        MutateOutput::Json | MutateOutput::Yaml => {
            let mut mutated = pod;
            json_patch::patch(&mut mutated, &mutation.patch)
                .context("the engine produced a patch that does not apply (a bug)")?;
            if args.output == MutateOutput::Json {
                serde_json::to_string_pretty(&mutated)? + "\n"
            } else {
                serde_saphyr::to_string(&mutated)?
            }
        }
    };
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// A YAML or JSON manifest from a file, or stdin for `-`.
fn read_manifest(path: &Path) -> anyhow::Result<Value> {
    let text = super::read_input(path, "")?;
    parse_manifest(&text).map_err(|e| {
        UsageError::new(format!("{} is not valid YAML/JSON: {e}", path.display())).into()
    })
}

/// A manifest's text as JSON (when it starts with `{`) or YAML: `irsa mutate`'s input
/// parsing, public for the fuzz target.
pub fn parse_manifest(text: &str) -> Result<Value, String> {
    // JSON is YAML, but serde_json gives better messages for JSON input.
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| e.to_string())
    } else {
        serde_saphyr::from_str(text).map_err(|e| e.to_string())
    }
}

fn service_account(
    manifest: &Value,
    namespace: &str,
    prefix: &str,
) -> anyhow::Result<ServiceAccountInfo> {
    if manifest.get("kind").and_then(Value::as_str) != Some("ServiceAccount") {
        return Err(UsageError::new(
            "the --service-account file is not a ServiceAccount (kind must be ServiceAccount)",
        )
        .into());
    }
    let annotations = manifest
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)));
    Ok(ServiceAccountInfo {
        namespace: namespace.to_string(),
        name: str_at(manifest, &["metadata", "name"]).unwrap_or_else(|| "default".into()),
        annotations: mutate::relevant_annotations(annotations, prefix),
    })
}

fn str_at(v: &Value, path: &[&str]) -> Option<String> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
        .map(str::to_string)
}
