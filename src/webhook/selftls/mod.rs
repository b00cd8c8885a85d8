//! `--tls-mode self`: the webhook keeps its own CA, serving certificate and caBundle.
//!
//! Every check reads the Secret and the MutatingWebhookConfiguration through the API (not a
//! mounted volume: kubelet syncs those late, and a webhook run outside the cluster has none),
//! asks the pure [`plan`] what to change, carries it out with [`material`], writes the Secret
//! and then the caBundles, and hands the serving pair to the TLS resolver. Checks run every
//! `--tls-check-interval` and whenever the configuration changes (a watch on it), so a
//! caBundle someone else changed is restored within seconds.
//!
//! Every replica runs the same loop, without leader election: each write is a create or a
//! replace carrying the resourceVersion that was read, so of two replicas acting on the same
//! state one wins and the other gets 409 Conflict, re-reads and finds nothing left to do. The
//! plan depends only on what it reads and the clock, so replicas agree on what to do, and a
//! lost race costs one extra read, not a wrong certificate.

pub mod material;
pub mod plan;

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures::StreamExt as _;
use k8s_openapi::{
    ByteString, api::admissionregistration::v1::MutatingWebhookConfiguration, api::core::v1::Secret,
};
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
    runtime::{WatchStreamExt as _, watcher},
};

use self::{
    material::{IssueError, Material, PUBLISHED_ANNOTATION},
    plan::{Plan, Policy},
};
use super::{
    metrics::Metrics,
    tls::{Contents, Origin, ReloadingCert, TlsError},
};

/// How often a check that lost a race is retried at once before waiting for the next tick.
const CONFLICT_RETRIES: usize = 3;

/// What the loop manages.
#[derive(Debug, Clone)]
pub struct Config {
    pub namespace: String,
    pub secret: String,
    pub configuration: String,
    /// The serving certificate's names, normalised ([`material::normalise_names`]).
    pub names: Vec<String>,
    pub policy: Policy,
    pub interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Secret {secret}: {source} (the webhook needs get and update on it)")]
    Secret { secret: String, source: kube::Error },
    #[error(
        "Secret {secret} does not exist and cannot be created: {source} (the chart creates it \
         empty; recreate it with `helm upgrade`, or create it with `kubectl create secret generic`)"
    )]
    CreateSecret { secret: String, source: kube::Error },
    #[error(
        "MutatingWebhookConfiguration {name}: {source} (the webhook needs get, update, list and \
         watch on it)"
    )]
    Configuration { name: String, source: kube::Error },
    #[error("{0}")]
    Issue(#[from] IssueError),
    #[error("the serving certificate in the Secret does not load: {0}")]
    Tls(#[from] TlsError),
    #[error("the check left no serving certificate in the Secret")]
    NoServing,
    #[error("{0} was changed by someone else (another replica) since it was read")]
    Conflict(String),
}

/// The error of a write to `object`: 409 Conflict (it changed since it was read or, on create,
/// exists by now) is [`Error::Conflict`], to re-read; anything else is `other(source)`.
fn write_error(
    object: String,
    source: kube::Error,
    other: impl FnOnce(kube::Error) -> Error,
) -> Error {
    match source {
        kube::Error::Api(status) if status.code == 409 => Error::Conflict(object),
        source => other(source),
    }
}

/// The self-managed TLS loop of one replica.
#[derive(Debug, Clone)]
pub struct SelfTls {
    config: Config,
    secrets: Api<Secret>,
    configurations: Api<MutatingWebhookConfiguration>,
    metrics: Arc<Metrics>,
}

impl SelfTls {
    pub fn new(client: kube::Client, config: Config, metrics: Arc<Metrics>) -> Self {
        Self {
            secrets: Api::namespaced(client.clone(), &config.namespace),
            configurations: Api::all(client),
            config,
            metrics,
        }
    }

    fn secret_name(&self) -> String {
        format!("{}/{}", self.config.namespace, self.config.secret)
    }

    fn origin(&self) -> Origin {
        let secret = self.secret_name();
        Origin {
            cert: format!("Secret {secret} key {}", material::TLS_CRT),
            key: format!("Secret {secret} key {}", material::TLS_KEY),
        }
    }

    /// The first serving pair, before the server starts: checks until one exists, logging
    /// each failure (the pod is not ready meanwhile).
    pub async fn bootstrap(&self) -> Arc<ReloadingCert> {
        loop {
            match self.check_settled().await {
                Ok(contents) => match ReloadingCert::new(self.origin(), contents) {
                    Ok(cert) => return Arc::new(cert),
                    Err(err) => self.failed(&Error::Tls(err)),
                },
                Err(err) => self.failed(&err),
            }
            tokio::time::sleep(self.config.interval).await;
        }
    }

    /// Checks every interval and on every change of the configuration, installing the
    /// serving pair into `cert`; a failed check keeps the pair in use. Ends only if the
    /// configuration's watch does.
    pub async fn run(self, cert: Arc<ReloadingCert>) -> anyhow::Result<()> {
        let selector = format!("metadata.name={}", self.config.configuration);
        let mut changes = std::pin::pin!(
            watcher(
                self.configurations.clone(),
                watcher::Config::default().fields(&selector),
            )
            .default_backoff()
        );
        let mut tick = tokio::time::interval(self.config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                event = changes.next() => match event {
                    Some(Ok(_)) => {}
                    Some(Err(err)) => {
                        // The watch retries with backoff; the ticks go on meanwhile.
                        tracing::warn!(
                            configuration = %self.config.configuration,
                            error = %err,
                            "watch of the MutatingWebhookConfiguration failed; retrying"
                        );
                        continue;
                    }
                    None => anyhow::bail!("the watch of MutatingWebhookConfiguration {} ended", self.config.configuration),
                },
            }
            match self.check_settled().await {
                Ok(contents) => {
                    cert.offer(contents, &self.metrics);
                }
                Err(err) => self.failed(&err),
            }
        }
    }

    fn failed(&self, err: &Error) {
        self.metrics.tls_check_errors.inc();
        tracing::error!(
            secret = %self.secret_name(),
            error = %err,
            "self-managed TLS check failed; the certificate in use stays"
        );
    }

    /// [`SelfTls::check`], repeated at once after a lost race.
    async fn check_settled(&self) -> Result<Contents, Error> {
        let mut attempt = 0;
        loop {
            match self.check(SystemTime::now()).await {
                Err(Error::Conflict(what)) if attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                    tracing::debug!(%what, "lost a race with another writer; reading again");
                }
                other => return other,
            }
        }
    }

    /// One check at `now`: read, plan, write. Returns the serving pair in force after it.
    pub async fn check(&self, now: SystemTime) -> Result<Contents, Error> {
        let secret_name = self.secret_name();
        // The configuration first: writes go to the Secret first, so a configuration that
        // already shows another replica's new bundle is never paired with the Secret from
        // before it (which would look like someone else's change and be reverted).
        let configuration = self
            .configurations
            .get_opt(&self.config.configuration)
            .await
            .map_err(|source| Error::Configuration {
                name: self.config.configuration.clone(),
                source,
            })?;
        let secret = self
            .secrets
            .get_opt(&self.config.secret)
            .await
            .map_err(|source| Error::Secret {
                secret: secret_name.clone(),
                source,
            })?;
        if configuration.is_none() {
            tracing::debug!(
                configuration = %self.config.configuration,
                "MutatingWebhookConfiguration not found; managing the Secret only"
            );
        }

        let data = secret
            .as_ref()
            .and_then(|s| s.data.as_ref())
            .map(|d| d.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
            .unwrap_or_default();
        let published = secret
            .as_ref()
            .and_then(|s| s.metadata.annotations.as_ref())
            .and_then(|a| a.get(PUBLISHED_ANNOTATION))
            .map(String::as_str);
        let (material, problems) = Material::from_secret(&data, published);
        for problem in problems {
            tracing::warn!(secret = %secret_name, %problem, "replacing what the Secret holds");
        }
        let bundles: Vec<Option<Vec<u8>>> = configuration
            .iter()
            .flat_map(|c| c.webhooks.iter().flatten())
            .map(|w| w.client_config.ca_bundle.as_ref().map(|b| b.0.clone()))
            .collect();
        let current = material.current(&bundles, &self.config.names, now);
        let plan = plan::plan(&current, &self.config.policy, now);

        let material = if plan.secret_changes(&current) {
            let next = material.apply(&plan, &self.config.policy, &self.config.names, now)?;
            self.write_secret(secret, &next).await?;
            self.report_rotation(&plan, &material, &next);
            next
        } else {
            material
        };
        if let (false, Some(configuration)) = (plan.patch.is_empty(), configuration) {
            self.patch_configuration(configuration, &plan, &material.bundle())
                .await?;
        }
        // The plan issues a serving certificate whenever there is none.
        let serving = material.serving.ok_or(Error::NoServing)?;
        Ok(Contents {
            cert: serving.cert_pem.into_bytes(),
            key: serving.key_pem.into_bytes(),
        })
    }

    async fn write_secret(&self, existing: Option<Secret>, next: &Material) -> Result<(), Error> {
        let data = next
            .to_data()
            .into_iter()
            .map(|(k, v)| (k, ByteString(v)))
            .collect();
        let secret_name = self.secret_name();
        let conflict = |source| {
            write_error(format!("Secret {secret_name}"), source, |source| {
                Error::Secret {
                    secret: secret_name.clone(),
                    source,
                }
            })
        };
        match existing {
            Some(mut secret) => {
                secret.data = Some(data);
                let annotations = secret.metadata.annotations.get_or_insert_default();
                match next.published_annotation() {
                    Some(at) => annotations.insert(PUBLISHED_ANNOTATION.to_string(), at),
                    None => annotations.remove(PUBLISHED_ANNOTATION),
                };
                // Carries the resourceVersion it was read with: a concurrent writer wins.
                self.secrets
                    .replace(&self.config.secret, &PostParams::default(), &secret)
                    .await
                    .map_err(conflict)?;
            }
            None => {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(self.config.secret.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        annotations: next
                            .published_annotation()
                            .map(|at| [(PUBLISHED_ANNOTATION.to_string(), at)].into()),
                        ..ObjectMeta::default()
                    },
                    data: Some(data),
                    ..Secret::default()
                };
                // 409 here: another replica created it first.
                self.secrets
                    .create(&PostParams::default(), &secret)
                    .await
                    .map_err(|source| {
                        write_error(format!("Secret {secret_name}"), source, |source| {
                            Error::CreateSecret {
                                secret: secret_name.clone(),
                                source,
                            }
                        })
                    })?;
            }
        }
        Ok(())
    }

    async fn patch_configuration(
        &self,
        mut configuration: MutatingWebhookConfiguration,
        plan: &Plan,
        bundle: &str,
    ) -> Result<(), Error> {
        let name = self.config.configuration.clone();
        let mut repaired = Vec::new();
        for (i, webhook) in configuration.webhooks.iter_mut().flatten().enumerate() {
            if plan.patch.contains(&i) {
                webhook.client_config.ca_bundle = Some(ByteString(bundle.as_bytes().to_vec()));
                repaired.push(webhook.name.clone());
            }
        }
        self.configurations
            .replace(&name, &PostParams::default(), &configuration)
            .await
            .map_err(|source| {
                write_error(
                    format!("MutatingWebhookConfiguration {name}"),
                    source,
                    |source| Error::Configuration {
                        name: name.clone(),
                        source,
                    },
                )
            })?;
        if plan.repairs > 0 {
            self.metrics.tls_repairs.inc_by(plan.repairs as u64);
            tracing::warn!(
                configuration = %name,
                webhooks = ?repaired,
                repairs = plan.repairs,
                "caBundle changed by someone else; restored the webhook's CA bundle"
            );
        } else {
            tracing::info!(configuration = %name, webhooks = ?repaired, "caBundle set to the CA bundle");
        }
        Ok(())
    }

    fn report_rotation(&self, plan: &Plan, before: &Material, after: &Material) {
        let secret = self.secret_name();
        let count = |kind: &'static str, n: usize| {
            if n > 0 {
                self.metrics
                    .tls_rotations
                    .get_or_create(&[("kind", kind)])
                    .inc_by(n as u64);
            }
        };
        let dropped = before.cas.len() - plan.keep.len();
        if dropped > 0 {
            tracing::info!(%secret, dropped, "expired CAs removed from the bundle");
        }
        count("ca_dropped", dropped);
        if let (true, Some(ca)) = (plan.new_ca, after.cas.last()) {
            tracing::info!(
                %secret,
                not_after = %humantime::format_rfc3339_seconds(ca.validity.not_after),
                trusted_cas = after.cas.len(),
                "created a CA and added it to the bundle"
            );
        }
        count("ca_created", usize::from(plan.new_ca));
        if let (Some((_, reason)), Some(serving)) = (plan.issue, &after.serving) {
            tracing::info!(
                %secret,
                reason = reason.as_str(),
                not_after = %humantime::format_rfc3339_seconds(serving.leaf.validity.not_after),
                "issued a serving certificate"
            );
        }
        count("certificate_issued", usize::from(plan.issue.is_some()));
    }
}
