//! `irsa doctor`: its flags turned into what to diagnose and how, the diagnosis run, and
//! the report printed (exit 1 when a step failed).

use std::{io::IsTerminal, process::ExitCode};

use anyhow::Context;

use super::read_input;
use crate::{
    aws::load_sdk_config,
    cli::{DoctorArgs, ReportFormat},
    doctor::{
        diagnose::{self, Env, Options, Target},
        sources,
    },
    error::UsageError,
};

pub async fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let target = target(&args).await?;
    let extra_ca = match &args.issuer_ca_file {
        Some(path) => Some(std::fs::read(path).map_err(|e| {
            UsageError::new(format!(
                "cannot read --issuer-ca-file {}: {e}",
                path.display()
            ))
        })?),
        None => None,
    };
    let kube = match &target {
        Target::Token { .. } => None,
        _ => Some(
            kube::Client::try_default()
                .await
                .context("cannot connect to Kubernetes (KUBECONFIG or in-cluster config)")?,
        ),
    };
    let offline_policy = matches!(
        &target,
        Target::Token {
            trust_policy: Some(_),
            ..
        }
    );
    let aws = match offline_policy && !args.assume {
        true => None,
        false => Some(load_sdk_config(args.aws_endpoint_url.as_deref()).await),
    };
    let env = Env {
        kube,
        aws,
        http: sources::http_client(extra_ca.as_deref()).map_err(anyhow::Error::msg)?,
        now: now(),
    };
    let opts = Options {
        annotation_prefix: args.annotation_prefix.clone(),
        default_audience: args.token_audience.clone(),
        issuer_url: args.issuer_url.clone(),
        assume: args.assume,
        irsa_namespace: args.irsa_namespace.clone(),
        issuer_state_configmap: args.issuer_state_configmap.clone(),
        webhook_configuration: args.webhook_configuration.clone(),
        agent_url: args.agent_url.clone(),
        agent_role_arn: args.agent_role_arn.clone(),
        cluster_name: args.cluster_name.clone(),
        pod_identity_audience: args.container_credentials_audience.clone(),
    };
    let report = diagnose::diagnose(&env, &target, &opts).await;
    match args.output {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        ReportFormat::Text => print!("{}", report.render_text(std::io::stdout().is_terminal())),
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn target(args: &DoctorArgs) -> anyhow::Result<Target> {
    if let Some(path) = &args.token {
        let token = read_input(path, "--token ")?.trim().to_string();
        let trust_policy = match &args.trust_policy {
            Some(p) => Some((read_input(p, "--trust-policy ")?, p.display().to_string())),
            None => None,
        };
        let role_arn = args
            .role_arn
            .clone()
            .ok_or_else(|| UsageError::new("--token needs --role-arn"))?;
        return Ok(Target::Token {
            token,
            role_arn,
            trust_policy,
        });
    }
    let namespace = match &args.namespace {
        Some(ns) => ns.clone(),
        None => kube::Config::infer()
            .await
            .map(|c| c.default_namespace)
            .unwrap_or_else(|_| "default".to_string()),
    };
    match (&args.service_account, &args.pod) {
        (Some(name), None) => Ok(Target::ServiceAccount { namespace, name: name.clone() }),
        (None, Some(name)) => Ok(Target::Pod { namespace, name: name.clone() }),
        _ => Err(UsageError::new(
            "say what to diagnose: --service-account SA or --pod POD (with -n NS), or --token FILE --role-arn ARN",
        )
        .into()),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
