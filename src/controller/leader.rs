//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several controller replicas
//! exactly one writes to IAM (docs/design.md §4.5). kube-runtime has no elector, so this is a small port
//! of client-go's `leaderelection` package with the same semantics:
//!
//! - A candidate takes the Lease when it does not exist, when its holder released it (empty
//!   `holderIdentity`), or when the holder has not renewed it for `leaseDurationSeconds` —
//!   measured on *our* monotonic clock from the moment we first saw the current record, never
//!   by comparing the holder's `renewTime` with our wall clock (clocks of two nodes differ).
//! - Every write is a `create` or a `resourceVersion`-guarded `replace`: when two candidates
//!   race for an expired Lease, the API server accepts one write and answers 409 to the other.
//! - The leader renews every `retry_period`. When it has not managed to renew for
//!   `renew_deadline` (< `lease_duration`), it stops its work and [`run_elected`] returns an
//!   error so the process exits: it stops writing before any standby may consider the Lease
//!   expired, so there are never two writers.
//! - On normal shutdown the leader releases the Lease (empty holder, duration 1 s) so a
//!   standby takes over at its next retry instead of waiting out the lease duration.
//!
//! Only `get`, `create` and `update` are used on Leases: that is all the chart's RBAC grants.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;

use crate::backoff::{Backoff, Jitter};

/// Timings and identity of one candidate. Defaults are client-go's (15 s / 10 s / 2 s).
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    pub namespace: String,
    pub lease_name: String,
    /// Unique per process: two replicas with one identity would both believe they lead.
    pub identity: String,
    /// How long a standby waits after the last observed renewal before taking over.
    pub lease_duration: Duration,
    /// How long the leader keeps working without a successful renewal before it gives up.
    pub renew_deadline: Duration,
    /// Interval between acquisition attempts and between renewals.
    pub retry_period: Duration,
}

impl LeaderConfig {
    pub fn new(
        namespace: impl Into<String>,
        lease_name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            lease_name: lease_name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// The controller's election: Lease `lease_name` (`--leader-election-lease-name`, default
    /// [`crate::cli::DEFAULT_LEASE_NAME`]) in `namespace` (the `--leader-election-namespace`
    /// flag) or else the client's default namespace (in a pod, the pod's own), with a
    /// [`default_identity`] and client-go's timings.
    pub fn for_controller(
        client: &kube::Client,
        namespace: Option<&str>,
        lease_name: &str,
    ) -> Self {
        let namespace = namespace
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or(client.default_namespace());
        Self::new(namespace, lease_name, default_identity())
    }

    /// client-go's invariants: the leader must give up (renew_deadline) before a standby may
    /// take over (lease_duration), and must get several renewal attempts before giving up.
    fn validate(&self) -> Result<(), Error> {
        let problem = if self.identity.is_empty() {
            Some("the identity is empty".to_string())
        } else if self.lease_duration <= self.renew_deadline {
            Some(format!(
                "lease duration {:?} must be longer than the renew deadline {:?}",
                self.lease_duration, self.renew_deadline
            ))
        } else if self.renew_deadline <= self.retry_period.mul_f64(JITTER_FACTOR) {
            Some(format!(
                "renew deadline {:?} must be longer than {JITTER_FACTOR} x the retry period {:?}",
                self.renew_deadline, self.retry_period
            ))
        } else if self.lease_duration.as_secs() < 1 {
            Some("the lease duration must be at least 1s (leaseDurationSeconds)".to_string())
        } else {
            None
        };
        match problem {
            Some(reason) => Err(Error::Config {
                lease: self.lease_ref(),
                reason,
            }),
            None => Ok(()),
        }
    }

    fn lease_ref(&self) -> String {
        format!("Lease {}/{}", self.namespace, self.lease_name)
    }
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

/// Acquisition retries are spread like client-go's `wait.JitterUntil(retryPeriod, 1.2)`, so
/// standbys that started together do not hit the API server in lockstep.
const JITTER_FACTOR: f64 = 1.2;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{lease}: invalid leader-election settings: {reason}")]
    Config { lease: String, reason: String },
    #[error(
        "{lease}: {action} failed: {source}; check that the namespace exists and that the \
         controller may get/create/update coordination.k8s.io leases in it (the chart's \
         leader-election Role grants exactly that)"
    )]
    Api {
        lease: String,
        action: &'static str,
        source: kube::Error,
    },
    #[error(
        "{lease}: lost leadership as {identity}: {reason}; stopping so that only one replica \
         writes to IAM (the process exits and restarts as a standby)"
    )]
    Lost {
        lease: String,
        identity: String,
        reason: String,
    },
}

/// [`run_elected`] for a whole process: what a replica does while it waits and when it is
/// told to stop.
///
/// - A standby sets `ready`: it is healthy and waiting. Were it not ready, a rolling update
///   (which waits for the new pod to be Ready before stopping an old one) would wait forever
///   behind the current leader. On becoming leader `ready` drops back to false, for `work`
///   to raise once its caches have synced.
/// - `shutdown` (SIGTERM) on a standby returns at once, without touching the Lease.
/// - `shutdown` on the leader waits for `work`, which must watch the same signal and return;
///   [`run_elected`] then releases the Lease so a standby takes over within a retry period.
pub async fn run_until_shutdown<F, Fut, S>(
    client: kube::Client,
    cfg: LeaderConfig,
    is_leader: Gauge,
    ready: std::sync::Arc<std::sync::atomic::AtomicBool>,
    shutdown: S,
    work: F,
) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
    S: Future<Output = ()>,
{
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };
    ready.store(true, Ordering::Relaxed);
    // Not the gauge: run_elected clears it before releasing, and a shutdown seen in that
    // window must still wait for the release.
    let led = Arc::new(AtomicBool::new(false));
    let elected = run_elected(client, cfg, is_leader, {
        let led = led.clone();
        move || {
            led.store(true, Ordering::SeqCst);
            ready.store(false, Ordering::Relaxed);
            work()
        }
    });
    tokio::pin!(elected);
    tokio::select! {
        result = &mut elected => result,
        () = shutdown => {
            if led.load(Ordering::SeqCst) {
                elected.await
            } else {
                tracing::info!("shutdown while standing by; the Lease was never held");
                Ok(())
            }
        }
    }
}

/// Runs `work` only while this process holds the Lease described by `cfg`.
///
/// Waits (indefinitely) until the Lease is acquired, sets `metrics_is_leader` to 1, then runs
/// `work` while renewing in the background. Returns `work`'s result after releasing the Lease
/// when `work` finishes (normal shutdown). If leadership is lost — renewal failing for
/// `renew_deadline`, or another holder found in the Lease — `work` is dropped (cancelled at its
/// next `.await`) and an error is returned: the caller must exit, not retry, because tasks
/// `work` spawned itself are not stopped by dropping it.
pub async fn run_elected<F, Fut>(
    client: kube::Client,
    cfg: LeaderConfig,
    metrics_is_leader: Gauge,
    work: F,
) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    cfg.validate()?;
    metrics_is_leader.set(0);
    let mut elector = Elector::new(client, cfg);
    elector.acquire().await;
    metrics_is_leader.set(1);

    let work = work();
    tokio::pin!(work);
    let outcome = tokio::select! {
        result = &mut work => Ok(result),
        lost = elector.keep_renewing() => Err(lost),
    };
    metrics_is_leader.set(0);
    match outcome {
        Ok(result) => {
            elector.release().await;
            result
        }
        Err(lost) => {
            tracing::error!(lease = %elector.cfg.lease_ref(), "{lost}");
            Err(lost.into())
        }
    }
}

/// Result of one acquire-or-renew attempt that reached the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attempt {
    /// We hold the Lease (just created, taken over or renewed).
    Leading,
    /// Someone else holds a Lease that has not expired by our clock.
    HeldBy(String),
    /// Another writer changed or created the Lease between our read and our write (409).
    Conflict,
}

struct Elector {
    api: Api<Lease>,
    cfg: LeaderConfig,
    /// The Lease's spec as last observed and when (our clock) it last changed: the basis of
    /// expiry, as client-go's `observedRecord`/`observedTime`.
    observed: Option<(LeaseSpec, Instant)>,
    /// The Lease as we last wrote it, for the release (its resourceVersion guards the write).
    ours: Option<Lease>,
}

impl Elector {
    fn new(client: kube::Client, cfg: LeaderConfig) -> Self {
        Self {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            observed: None,
            ours: None,
        }
    }

    fn api_error(&self, action: &'static str, source: kube::Error) -> Error {
        Error::Api {
            lease: self.cfg.lease_ref(),
            action,
            source,
        }
    }

    /// Loops until the Lease is ours.
    async fn acquire(&mut self) {
        let lease = self.cfg.lease_ref();
        let identity = self.cfg.identity.clone();
        tracing::info!(%lease, %identity, "waiting to acquire the leader-election lease");
        let mut last_seen_holder: Option<String> = None;
        loop {
            // Bounded so a hung API server cannot stall the candidate forever.
            match tokio::time::timeout(self.cfg.renew_deadline, self.try_acquire_or_renew()).await {
                Ok(Ok(Attempt::Leading)) => {
                    tracing::info!(%lease, %identity, "acquired the lease; this replica is now the leader");
                    return;
                }
                Ok(Ok(Attempt::HeldBy(holder))) => {
                    if last_seen_holder.as_deref() != Some(holder.as_str()) {
                        tracing::info!(%lease, leader = %holder, "another replica leads; standing by");
                        last_seen_holder = Some(holder);
                    }
                }
                Ok(Ok(Attempt::Conflict)) => {
                    tracing::info!(%lease, "another candidate wrote the lease first; standing by");
                }
                Ok(Err(e)) => tracing::warn!(%lease, "{e}"),
                Err(_) => tracing::warn!(
                    %lease,
                    "no answer from the API server within {:?} while acquiring the lease",
                    self.cfg.renew_deadline
                ),
            }
            let period = Backoff {
                base: self.cfg.retry_period,
                max: self.cfg.retry_period,
                jitter: Jitter::Over(JITTER_FACTOR - 1.0),
            };
            tokio::time::sleep(period.delay(1)).await;
        }
    }

    /// Renews every `retry_period`; returns only when leadership is lost.
    async fn keep_renewing(&mut self) -> Error {
        let mut last_renewed = Instant::now();
        loop {
            tokio::time::sleep(self.cfg.retry_period).await;
            let deadline = last_renewed + self.cfg.renew_deadline;
            let reason = match tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await
            {
                Ok(Ok(Attempt::Leading)) => {
                    last_renewed = Instant::now();
                    continue;
                }
                // Someone took the Lease over (we were cut off for longer than the lease
                // duration): stop at once rather than wait for the deadline.
                Ok(Ok(Attempt::HeldBy(holder))) => {
                    return self.lost(format!("the lease is now held by {holder}"));
                }
                Ok(Ok(Attempt::Conflict)) => {
                    "the lease was modified concurrently (409 Conflict)".to_string()
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "the API server did not answer in time".to_string(),
            };
            if Instant::now() >= deadline {
                return self.lost(format!(
                    "could not renew for {:?} (last error: {reason})",
                    self.cfg.renew_deadline
                ));
            }
            tracing::warn!(lease = %self.cfg.lease_ref(), "renewing the lease failed, will retry: {reason}");
        }
    }

    fn lost(&self, reason: String) -> Error {
        Error::Lost {
            lease: self.cfg.lease_ref(),
            identity: self.cfg.identity.clone(),
            reason,
        }
    }

    /// One round of client-go's `tryAcquireOrRenew`: read, decide, write guarded by the
    /// resourceVersion we read.
    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, Error> {
        let name = self.cfg.lease_name.clone();
        let now = Instant::now();
        let existing = match self.api.get_opt(&name).await {
            Ok(lease) => lease,
            Err(e) => return Err(self.api_error("get", e)),
        };
        let Some(mut lease) = existing else {
            let fresh = Lease {
                metadata: ObjectMeta {
                    name: Some(name),
                    namespace: Some(self.cfg.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(next_spec(None, &self.cfg, wall_now())),
            };
            return match self.api.create(&PostParams::default(), &fresh).await {
                Ok(created) => Ok(self.wrote(created)),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Conflict),
                Err(e) => Err(self.api_error("create", e)),
            };
        };

        let spec = lease.spec.clone().unwrap_or_default();
        let observed_at = match &self.observed {
            Some((seen, at)) if *seen == spec => *at,
            _ => now,
        };
        self.observed = Some((spec.clone(), observed_at));
        if let Some(holder) = held_by_other(&spec, &self.cfg, observed_at, now) {
            return Ok(Attempt::HeldBy(holder));
        }

        lease.spec = Some(next_spec(Some(&spec), &self.cfg, wall_now()));
        match self
            .api
            .replace(&self.cfg.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => Ok(self.wrote(written)),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Conflict),
            Err(e) => Err(self.api_error("update", e)),
        }
    }

    fn wrote(&mut self, lease: Lease) -> Attempt {
        self.observed = Some((lease.spec.clone().unwrap_or_default(), Instant::now()));
        self.ours = Some(lease);
        Attempt::Leading
    }

    /// Gives the Lease up so a standby need not wait out the lease duration. Best effort: a
    /// failure only delays the takeover by one lease duration.
    async fn release(&mut self) {
        let lease_ref = self.cfg.lease_ref();
        let outcome = tokio::time::timeout(self.cfg.renew_deadline, self.try_release()).await;
        match outcome {
            Ok(Ok(true)) => tracing::info!(lease = %lease_ref, "released the lease"),
            Ok(Ok(false)) => tracing::info!(
                lease = %lease_ref,
                "the lease has another holder already; nothing to release"
            ),
            Ok(Err(e)) => tracing::warn!(
                lease = %lease_ref,
                "releasing the lease failed ({e}); a standby takes over once it expires"
            ),
            Err(_) => tracing::warn!(
                lease = %lease_ref,
                "releasing the lease timed out; a standby takes over once it expires"
            ),
        }
    }

    /// Writes the release over the Lease as we last wrote it. The work may have finished while
    /// a renewal was in flight (its answer then never reached us), so on a conflict the Lease is
    /// read again and released if it is still ours.
    async fn try_release(&mut self) -> Result<bool, Error> {
        let pp = PostParams::default();
        let mut lease = match self.ours.take() {
            Some(lease) => lease,
            None => return Ok(false),
        };
        for _ in 0..2 {
            let Some(spec) = lease.spec.as_ref() else {
                return Ok(false);
            };
            if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
                return Ok(false);
            }
            lease.spec = Some(released_spec(spec, wall_now()));
            match self.api.replace(&self.cfg.lease_name, &pp, &lease).await {
                Ok(_) => return Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(self.api_error("update", e)),
            }
            lease = match self.api.get_opt(&self.cfg.lease_name).await {
                Ok(Some(current)) => current,
                Ok(None) => return Ok(false),
                Err(e) => return Err(self.api_error("get", e)),
            };
        }
        Ok(false)
    }
}

fn wall_now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// The holder, if the Lease belongs to someone else and has not expired by our clock.
fn held_by_other(
    spec: &LeaseSpec,
    cfg: &LeaderConfig,
    observed_at: Instant,
    now: Instant,
) -> Option<String> {
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() || holder == cfg.identity {
        return None;
    }
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(cfg.lease_duration, Duration::from_secs);
    (now < observed_at + duration).then(|| holder.to_string())
}

/// The spec we write to acquire (`old` held by someone else or absent) or renew (`old` ours).
fn next_spec(old: Option<&LeaseSpec>, cfg: &LeaderConfig, now: MicroTime) -> LeaseSpec {
    let duration = i32::try_from(cfg.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let transitions = old.and_then(|o| o.lease_transitions).unwrap_or(0);
    match old {
        Some(o) if o.holder_identity.as_deref() == Some(cfg.identity.as_str()) => LeaseSpec {
            holder_identity: Some(cfg.identity.clone()),
            lease_duration_seconds: Some(duration),
            acquire_time: o.acquire_time.clone().or_else(|| Some(now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..o.clone()
        },
        _ => LeaseSpec {
            holder_identity: Some(cfg.identity.clone()),
            lease_duration_seconds: Some(duration),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            // client-go counts every change of holder, including from "nobody".
            lease_transitions: Some(if old.is_some() { transitions + 1 } else { 0 }),
            ..old.cloned().unwrap_or_default()
        },
    }
}

/// client-go's release record: no holder, 1 s duration, so any standby acquires at once.
fn released_spec(ours: &LeaseSpec, now: MicroTime) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(String::new()),
        lease_duration_seconds: Some(1),
        acquire_time: Some(now.clone()),
        renew_time: Some(now),
        ..ours.clone()
    }
}

#[cfg(test)]
mod tests;
