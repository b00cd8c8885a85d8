//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several controller replicas
//! one writes to IAM (docs/design.md §4.5). `kube-lease-manager` takes, renews and releases the
//! Lease; this module holds what the controller promises on top of it
//! (docs/controller.md#leader-election):
//!
//! - **No two writers.** The crate renews [`GRACE`] before the Lease expires and, when that
//!   fails, keeps reporting leadership while it backs off; a standby may take the Lease over
//!   meanwhile. So the first failed renewal ends the work here and the process exits (and
//!   restarts as a standby). The Lease has a client of its own whose requests give up after
//!   [`REQUEST_TIMEOUT`], so an API server that stops answering is a failed renewal too, well
//!   within the grace.
//! - **Release on shutdown.** The crate releases only when asked: the leader does so once its
//!   work has stopped.
//! - **Quick takeover.** A standby of the crate looks at a held Lease again only when it
//!   expires, so a released Lease would wait out the duration; here a standby starts a fresh
//!   look every [`RETRY_PERIOD`] instead (two GETs).
//! - **No two writers among three or more replicas.** Taking over an expired Lease, the crate
//!   clears its holder without a precondition before it applies its own; a standby that saw
//!   the Lease expired can thus clear the Lease another standby has just taken. So a new
//!   leader waits [`SETTLE`] and reads the Lease again before it starts its work.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseParams};
use prometheus_client::metrics::gauge::Gauge;

/// Name of the controller's Lease (in the namespace given by `--leader-election-namespace`).
pub const DEFAULT_LEASE_NAME: &str = "irsa-controller";

/// How long a Lease stays valid after its last renewal: client-go's default.
pub const DURATION: Duration = Duration::from_secs(15);
/// How long before expiry the leader renews. A renewal that fails stops the leader before
/// the Lease expires, by this minus the time the renewal took to fail (at most two
/// [`REQUEST_TIMEOUT`]s): the node clock skew tolerated, as the crate compares the holder's
/// `renewTime` with the standby's wall clock.
pub const GRACE: Duration = Duration::from_secs(5);
/// How often a standby looks at the Lease.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);
/// Connect, read and write timeouts of the Lease's client. A renewal is two requests (the
/// patch and a read-back), so two of these stay under [`GRACE`].
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a new leader waits before reading the Lease back: a standby that decided to clear
/// the expired Lease before we took it has sent that write by then (a look gives up after
/// [`RETRY_PERIOD`], a request after [`REQUEST_TIMEOUT`]).
pub const SETTLE: Duration = RETRY_PERIOD.saturating_add(REQUEST_TIMEOUT);
/// How long the leader tries to release the Lease on shutdown.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// The controller's candidacy: which Lease, who we are, and the client that talks about it.
#[derive(Clone)]
pub struct Election {
    pub namespace: String,
    pub lease_name: String,
    /// Unique per process: two replicas with one identity would both believe they lead.
    pub identity: String,
    client: kube::Client,
}

impl std::fmt::Debug for Election {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Election")
            .field("namespace", &self.namespace)
            .field("lease_name", &self.lease_name)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Election {
    /// Lease `lease_name` in `namespace` (`--leader-election-namespace`) or else the
    /// configuration's default namespace (in a pod, the pod's own), with a
    /// [`default_identity`] and a client of its own built from `config`.
    pub fn for_controller(
        config: &kube::Config,
        namespace: Option<&str>,
        lease_name: &str,
    ) -> anyhow::Result<Self> {
        let namespace = namespace
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or(&config.default_namespace);
        let client = kube::Client::try_from(lease_config(config))
            .context("cannot build the Kubernetes client of the leader-election Lease")?;
        Ok(Self::new(client, namespace, lease_name, default_identity()))
    }

    pub fn new(
        client: kube::Client,
        namespace: impl Into<String>,
        lease_name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            lease_name: lease_name.into(),
            identity: identity.into(),
            client,
        }
    }

    fn lease_ref(&self) -> String {
        format!("Lease {}/{}", self.namespace, self.lease_name)
    }

    /// A manager that has not looked at the Lease yet (it creates it when missing). Each
    /// standby round builds a new one: the crate re-reads a held Lease only once it expires.
    async fn manager(&self) -> anyhow::Result<LeaseManager> {
        let params = LeaseParams::new(&self.identity, DURATION.as_secs(), GRACE.as_secs())
            // Unique per candidate: server-side apply refuses a second manager's claim on
            // `holderIdentity`, which is what settles two standbys racing for a free Lease.
            .with_field_manager(format!("irsa-controller-{}", self.identity));
        LeaseManagerBuilder::new(self.client.clone(), &self.lease_name)
            .with_namespace(&self.namespace)
            .with_parameters(params)
            .build()
            .await
            .with_context(|| {
                format!(
                    "{}: cannot read or create it; check that the namespace exists and that the \
                     controller may get/create/patch coordination.k8s.io leases in it (the \
                     chart's leader-election Role grants exactly that)",
                    self.lease_ref()
                )
            })
    }

    /// Returns a manager holding the Lease; tries every [`RETRY_PERIOD`] until then.
    async fn acquire(&self) -> LeaseManager {
        tracing::info!(lease = %self.lease_ref(), identity = %self.identity, "waiting to acquire the leader-election lease");
        loop {
            match self.manager().await {
                Ok(manager) => match tokio::time::timeout(RETRY_PERIOD, manager.changed()).await {
                    Ok(Ok(true)) if self.still_ours_after_settling().await => {
                        tracing::info!(lease = %self.lease_ref(), identity = %self.identity, "acquired the lease; this replica is now the leader");
                        return manager;
                    }
                    Ok(Ok(true)) => {
                        tracing::info!(lease = %self.lease_ref(), "another standby cleared the lease as this one took it; standing by");
                        continue;
                    }
                    // Still held by another replica (the crate waits for its expiry).
                    Ok(Ok(false)) | Err(_) => continue,
                    Ok(Err(e)) => {
                        tracing::warn!(lease = %self.lease_ref(), error = %e, "reading or taking the lease failed");
                    }
                },
                Err(e) => tracing::warn!("{e:#}"),
            }
            tokio::time::sleep(RETRY_PERIOD).await;
        }
    }

    /// Whether the Lease, just taken, is still ours once the writes of other standbys that saw
    /// it expired have landed.
    async fn still_ours_after_settling(&self) -> bool {
        tokio::time::sleep(SETTLE).await;
        self.is_ours().await
    }

    async fn is_ours(&self) -> bool {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), &self.namespace);
        match leases.get_opt(&self.lease_name).await {
            Ok(lease) => {
                let holder = lease.and_then(|l| l.spec).and_then(|s| s.holder_identity);
                holder.as_deref() == Some(self.identity.as_str())
            }
            Err(e) => {
                tracing::warn!(lease = %self.lease_ref(), error = %e, "reading the lease failed");
                false
            }
        }
    }

    /// A shutdown while standing by: the Lease is released only if this replica took it
    /// meanwhile (the shutdown came as it was taking it, or during [`SETTLE`]); a standby
    /// never writes to another's Lease.
    async fn release_if_ours(&self) {
        if !self.is_ours().await {
            tracing::info!("shutdown while standing by; the Lease was never held");
            return;
        }
        match self.manager().await {
            Ok(manager) => self.release(&manager).await,
            Err(e) => tracing::warn!("{e:#}"),
        }
    }

    /// Resolves when `manager` no longer holds the Lease, or cannot tell: a failed renewal,
    /// the Lease taken by another.
    async fn lost(&self, manager: &LeaseManager) -> anyhow::Error {
        let reason = loop {
            match manager.changed().await {
                Ok(true) => continue,
                Ok(false) => break "another replica holds it now".to_string(),
                Err(e) => break format!("renewing it failed: {e}"),
            }
        };
        anyhow::anyhow!(
            "{}: lost leadership as {}: {reason}; stopping so that only one replica writes to \
             IAM (the process exits and restarts as a standby)",
            self.lease_ref(),
            self.identity
        )
    }

    /// Gives the Lease up so a standby need not wait for it to expire. Best effort: a failure
    /// only delays the takeover until the Lease expires.
    async fn release(&self, manager: &LeaseManager) {
        match tokio::time::timeout(RELEASE_TIMEOUT, manager.release()).await {
            Ok(Ok(())) => tracing::info!(lease = %self.lease_ref(), "released the lease"),
            Ok(Err(e)) => tracing::warn!(lease = %self.lease_ref(), error = %e,
                "releasing the lease failed; a standby takes over once it expires"),
            Err(_) => tracing::warn!(lease = %self.lease_ref(),
                "releasing the lease timed out; a standby takes over once it expires"),
        }
    }
}

/// `config` with request timeouts short enough for a renewal to fail inside [`GRACE`].
fn lease_config(config: &kube::Config) -> kube::Config {
    let mut config = config.clone();
    config.connect_timeout = Some(REQUEST_TIMEOUT);
    config.read_timeout = Some(REQUEST_TIMEOUT);
    config.write_timeout = Some(REQUEST_TIMEOUT);
    config
}

/// A unique identity for this process: the pod name (`HOSTNAME`, which Kubernetes sets to the
/// pod name) plus a random suffix, so a restarted container never mistakes its predecessor's
/// still-valid Lease for its own.
pub fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "irsa-controller".to_string());
    format!("{host}_{:08x}", rand::random::<u32>())
}

/// Runs `work` only while this process holds the Lease, until `shutdown`.
///
/// - A standby sets `ready`: it is healthy and waiting. Were it not ready, a rolling update
///   (which waits for the new pod to be Ready before stopping an old one) would wait forever
///   behind the current leader. On becoming leader `ready` drops back to false, for `work`
///   to raise once its caches have synced.
/// - `shutdown` (SIGTERM) on a standby returns at once, without touching the Lease.
/// - `shutdown` on the leader waits for `work`, which must watch the same signal and return;
///   the Lease is then released.
/// - Losing the Lease drops `work` (cancelled at its next `.await`) and returns an error: the
///   caller must exit, not retry, because tasks `work` spawned itself are not stopped by
///   dropping it.
pub async fn run_until_shutdown<F, Fut, S>(
    election: Election,
    is_leader: Gauge,
    ready: Arc<AtomicBool>,
    shutdown: S,
    work: F,
) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
    S: Future<Output = ()>,
{
    is_leader.set(0);
    ready.store(true, Ordering::Relaxed);
    let manager = tokio::select! {
        manager = election.acquire() => manager,
        () = shutdown => {
            election.release_if_ours().await;
            return Ok(());
        }
    };
    is_leader.set(1);
    ready.store(false, Ordering::Relaxed);
    let outcome = tokio::select! {
        result = work() => Ok(result),
        lost = election.lost(&manager) => Err(lost),
    };
    is_leader.set(0);
    match outcome {
        Ok(result) => {
            election.release(&manager).await;
            result
        }
        Err(lost) => {
            tracing::error!("{lost:#}");
            Err(lost)
        }
    }
}

#[cfg(test)]
mod tests;
