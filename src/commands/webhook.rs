//! `irsa webhook`: its flags checked and turned into the webhook's [`Options`], then the
//! server run until SIGTERM or a part of it fails.

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::Context as _;

use crate::{
    cli::{SelfTlsArgs, TlsMode, WebhookArgs},
    error::UsageError,
    webhook::{
        Associations, CertSource, ConnectionLimits, Metrics, Options, SHUTDOWN_GRACE, SelfTls,
        ServiceAccountCache,
        selftls::{self, material, plan::Policy},
        service_accounts_file, start,
    },
};

/// The certificate source the flags ask for.
enum TlsChoice {
    Files { cert: PathBuf, key: PathBuf },
    SelfManaged(selftls::Config),
}

/// Checked before anything starts: clap's `required_if_eq` does not see `--tls-mode`'s default.
fn tls_choice(args: &WebhookArgs) -> Result<TlsChoice, UsageError> {
    match (args.tls_mode, &args.tls_cert_file, &args.tls_key_file) {
        (TlsMode::File, Some(cert), Some(key)) => Ok(TlsChoice::Files {
            cert: cert.clone(),
            key: key.clone(),
        }),
        (TlsMode::File, ..) => Err(UsageError::new(
            "--tls-cert-file and --tls-key-file are required (or --tls-mode self)",
        )),
        (TlsMode::SelfManaged, None, None) => {
            self_tls_config(&args.self_tls).map(TlsChoice::SelfManaged)
        }
        (TlsMode::SelfManaged, ..) => Err(UsageError::new(
            "--tls-cert-file/--tls-key-file are for --tls-mode file; with --tls-mode self the certificate lives in --tls-secret",
        )),
    }
}

pub async fn run(args: WebhookArgs) -> anyhow::Result<ExitCode> {
    let tls = tls_choice(&args)?;
    let mutation = args.mutation.config();
    let metrics = Arc::new(Metrics::new());
    // Built once, by the first part that needs it (the cache, self-managed TLS, or both).
    let client = tokio::sync::OnceCell::new();
    let client = || async {
        client
            .get_or_try_init(|| async {
                kube::Client::try_default().await.context(
                    "cannot build a Kubernetes client (in-cluster service account or KUBECONFIG)",
                )
            })
            .await
            .cloned()
    };
    let cache = match &args.service_accounts_file {
        Some(path) => {
            let cache =
                ServiceAccountCache::fixed([], &mutation.annotation_prefix, metrics.clone());
            let count = service_accounts_file::read(path, |sa| cache.put(&sa))?;
            tracing::warn!(
                file = %path.display(),
                count,
                "TEST/BENCH MODE: ServiceAccounts come from --service-accounts-file; no Kubernetes connection"
            );
            cache
        }
        None => ServiceAccountCache::kube(
            client().await?,
            &mutation.annotation_prefix,
            args.sa_lookup_timeout,
            metrics.clone(),
        ),
    };
    let associations = if args.pod_identity_associations {
        Associations::kube(client().await?)
    } else {
        Associations::disabled()
    };
    let (tls, self_tls) = match tls {
        TlsChoice::Files { cert, key } => (CertSource::Files { cert, key }, None),
        TlsChoice::SelfManaged(config) => {
            let managed = SelfTls::new(client().await?, config, metrics.clone());
            // No certificate, no server: wait for the first one (or for SIGTERM).
            let cert = tokio::select! {
                cert = managed.bootstrap() => cert,
                () = crate::shutdown::signal() => return Ok(ExitCode::SUCCESS),
            };
            (CertSource::Managed(cert.clone()), Some(managed.run(cert)))
        }
    };
    let opts = Options {
        listen: args.listen,
        metrics_listen: args.metrics_listen,
        tls,
        tls_min_version: args.tls_min_version,
        reload_interval: args.reload_interval,
        shutdown_grace: SHUTDOWN_GRACE,
        sa_lookup_timeout: args.sa_lookup_timeout,
        identities_file: args.mutation.container_credentials_config.clone(),
        mutation,
        limits: ConnectionLimits::ADMISSION,
        admin_limits: ConnectionLimits::ADMIN,
    };
    let mut running = start(opts, cache, associations, metrics).await?;
    // The self-managed TLS loop runs beside the server; like its background tasks, it only
    // ends on a failure.
    let self_tls = async {
        match self_tls {
            Some(managed) => match managed.await {
                Ok(()) => anyhow::anyhow!("the self-managed TLS loop stopped"),
                Err(err) => err,
            },
            None => std::future::pending().await,
        }
    };
    let failure = tokio::select! {
        () = crate::shutdown::signal() => None,
        err = running.failed() => Some(err),
        err = self_tls => Some(err),
    };
    if let Some(err) = &failure {
        tracing::error!(
            error = format!("{err:#}"),
            "a part of the webhook stopped; exiting so that it is restarted"
        );
    }
    running.shutdown();
    running.wait().await?;
    match failure {
        // Non-zero: Kubernetes restarts the pod.
        Some(err) => Err(err),
        None => {
            tracing::info!("irsa webhook stopped");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `--tls-mode self`'s flags, checked.
pub fn self_tls_config(args: &SelfTlsArgs) -> Result<selftls::Config, UsageError> {
    let missing = |flag: &str| UsageError::new(format!("--tls-mode self needs {flag}"));
    let policy = Policy {
        ca_validity: args.tls_ca_validity,
        leaf_validity: args.tls_cert_validity,
        overlap: args.tls_ca_overlap,
    };
    if policy.leaf_validity > policy.ca_validity {
        return Err(UsageError::new(
            "--tls-cert-validity must not exceed --tls-ca-validity (a certificate never outlives its CA)",
        ));
    }
    if policy.overlap >= policy.ca_validity / 3 {
        return Err(UsageError::new(
            "--tls-ca-overlap must be shorter than a third of --tls-ca-validity: a new CA is added at 2/3 of the old one's life and must be trusted before the old one expires",
        ));
    }
    let names = material::normalise_names(args.tls_dns_names.iter().map(String::as_str));
    if names.is_empty() {
        return Err(missing("--tls-dns-name"));
    }
    Ok(selftls::Config {
        namespace: args
            .tls_secret_namespace
            .clone()
            .ok_or_else(|| missing("--tls-secret-namespace"))?,
        secret: args
            .tls_secret
            .clone()
            .ok_or_else(|| missing("--tls-secret"))?,
        configuration: args
            .webhook_configuration
            .clone()
            .ok_or_else(|| missing("--webhook-configuration"))?,
        names,
        policy,
        interval: args.tls_check_interval,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use std::time::Duration;

    use super::*;
    use crate::cli::{Cli, Command};

    fn choice(flags: &[&str]) -> Result<TlsChoice, String> {
        let argv = ["irsa", "webhook"].iter().chain(flags);
        let Command::Webhook(args) = Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .command
        else {
            unreachable!("parsed as `irsa webhook`")
        };
        tls_choice(&args).map_err(|e| e.to_string())
    }

    const SELF: [&str; 10] = [
        "--tls-mode",
        "self",
        "--tls-secret",
        "s",
        "--tls-secret-namespace",
        "ns",
        "--webhook-configuration",
        "w",
        "--tls-dns-name",
        "svc.ns.svc,127.0.0.1",
    ];

    #[test]
    fn the_tls_flags_are_checked_before_anything_starts() {
        let files = ["--tls-cert-file", "c", "--tls-key-file", "k"];
        assert!(matches!(choice(&files), Ok(TlsChoice::Files { .. })));
        let err = choice(&[]).err().unwrap_or_default();
        assert!(err.contains("--tls-cert-file"), "{err}");

        let Ok(TlsChoice::SelfManaged(config)) = choice(&SELF) else {
            panic!("{:?}", choice(&SELF).err())
        };
        assert_eq!(config.names, vec!["127.0.0.1", "svc.ns.svc"]);
        assert_eq!(config.interval, Duration::from_secs(10));
        let with_files: Vec<&str> = SELF.iter().chain(&files).copied().collect();
        assert!(choice(&with_files).is_err(), "files with --tls-mode self");
        let short_ca: Vec<&str> = SELF
            .iter()
            .chain(&["--tls-ca-validity", "1h", "--tls-cert-validity", "2h"])
            .copied()
            .collect();
        let err = choice(&short_ca).err().unwrap_or_default();
        assert!(err.contains("--tls-cert-validity"), "{err}");
        let err = choice(&SELF[..8]).err().unwrap_or_default();
        assert!(err.contains("--tls-dns-name"), "{err}");
    }
}
