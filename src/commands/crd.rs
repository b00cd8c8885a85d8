//! `irsa crd`: print the CustomResourceDefinitions (the source of `crds/irsa.dev.yaml`).

use std::{io::Write, process::ExitCode};

use anyhow::Context;

pub fn run(_args: crate::cli::CrdArgs) -> anyhow::Result<ExitCode> {
    let yaml = crate::crd::crds_yaml().context("serializing the CRDs to YAML (a bug)")?;
    std::io::stdout()
        .write_all(yaml.as_bytes())
        .context("writing the CRDs to stdout")?;
    Ok(ExitCode::SUCCESS)
}
