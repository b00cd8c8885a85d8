//! `irsa agent`: its flags turned into the agent's [`Options`], then the agent run until
//! SIGTERM or a part of it fails.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::agent::{self, Options};
use crate::cli::AgentArgs;

pub async fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let client = kube::Client::try_default()
        .await
        .context("cannot build a Kubernetes client (in-cluster service account or KUBECONFIG)")?;
    let options = Options {
        listen: args.listen,
        metrics_listen: args.metrics_listen,
        node_name: args.node_name,
        cluster_name: args.cluster_name,
        audience: args.audience,
        aws_endpoint_url: args.aws_endpoint_url,
        session_duration: args.session_duration,
        refresh_margin: args.refresh_margin,
        token_review_cache: args.token_review_cache,
    };
    agent::run(options, client).await?;
    Ok(ExitCode::SUCCESS)
}
