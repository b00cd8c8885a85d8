//! What to do with one admission request: the cheap checks, the ServiceAccount lookup, the
//! pure engine ([`crate::mutate`]), as an [`Answer`]. Narrow dependencies and no HTTP: the server
//! calls it, and so can a fuzzer or a test.

use std::time::Duration;

use super::{
    associations::{Associations, Either},
    cache::{Lookup, MAX_CONCURRENT_FETCHES, ServiceAccountCache},
    identities::WatchedIdentities,
    metrics::Metrics,
    review::{AdmissionRequest, Answer, Outcome},
};
use crate::mutate::{self, Mode, MutationConfig, Pod, Refusal, ServiceAccountInfo, TooLarge};

/// What deciding a request reads, borrowed from whoever holds it (the server's state).
#[derive(Debug, Clone, Copy)]
pub struct Decider<'a> {
    pub config: &'a MutationConfig,
    pub identities: &'a WatchedIdentities,
    pub associations: &'a Associations,
    pub cache: &'a ServiceAccountCache,
    pub metrics: &'a Metrics,
    /// The cache enforces it; here it only names the limit in the warning.
    pub sa_lookup_timeout: Duration,
}

/// A Pod CREATE that passed the cheap checks: what the lookup and the engine need.
#[derive(Debug)]
pub struct PodRequest {
    pub namespace: String,
    pub service_account: String,
    pub pod: Pod,
}

/// Where [`Decider::prepare`] left a request.
#[derive(Debug)]
pub enum Step {
    /// Answered without a ServiceAccount (not a pod, not a CREATE, too large...).
    Answered(Answer),
    /// A Pod to look up the ServiceAccount for, then [`Decider::finish`]. Boxed: the typed
    /// view of the pod is a few hundred bytes, moved across the lookup's await.
    Pod(Box<PodRequest>),
}

impl Decider<'_> {
    /// The CPU half before the lookup: kind and operation, the size limits
    /// ([`mutate::limits`]) on the raw object, then the parse. Synchronous so that the server can
    /// run it off the async workers; its cost is bounded by [`mutate::limits::MAX_OBJECT_BYTES`].
    pub fn prepare(&self, request: AdmissionRequest) -> Step {
        if let Some(kind) = &request.kind
            && !(kind.group.is_empty() && kind.kind == "Pod")
        {
            let what = if kind.group.is_empty() {
                format!("{}/{}", kind.version, kind.kind)
            } else {
                format!("{}/{}/{}", kind.group, kind.version, kind.kind)
            };
            return Step::Answered(self.not_a_pod(format!(
                "irsa only mutates Pods; this {what} was admitted unchanged (check the rules of \
                     the MutatingWebhookConfiguration)"
            )));
        }
        if request
            .operation
            .as_deref()
            .is_some_and(|op| op != "CREATE")
            || request
                .sub_resource
                .as_deref()
                .is_some_and(|s| !s.is_empty())
        {
            // Credentials can only be injected at creation; nothing to say about the rest.
            return Step::Answered(Answer::allow(Outcome::Skipped));
        }
        let Some(raw) = request.object else {
            return Step::Answered(self.not_a_pod(
                "irsa: the AdmissionReview carries no object; admitted unchanged".into(),
            ));
        };
        if let Err(too_large) = mutate::limits::check_raw(raw.get()) {
            return Step::Answered(self.too_large_answer(&too_large));
        }
        let pod: Pod = match serde_json::from_str(raw.get()) {
            Ok(pod) => pod,
            // Already valid JSON; only serde's nesting limit, or a key repeated among the fields
            // the engine reads, can refuse it here.
            Err(err) => {
                return Step::Answered(self.not_a_pod(format!(
                    "irsa: the object cannot be read ({err}); admitted unchanged"
                )));
            }
        };
        drop(raw);
        // Objects too small for check_raw to count their containers are counted here.
        if let Err(too_large) = mutate::limits::check_containers(pod.container_count()) {
            return Step::Answered(self.too_large_answer(&too_large));
        }
        let namespace = request
            .namespace
            .filter(|ns| !ns.is_empty())
            .or_else(|| pod.namespace().map(str::to_string))
            .unwrap_or_else(|| "default".to_string());
        let service_account = pod.service_account_name().to_string();
        Step::Pod(Box::new(PodRequest {
            namespace,
            service_account,
            pod,
        }))
    }

    /// The ServiceAccount of the pod, or the answer when there is none to use.
    pub async fn lookup(&self, req: &PodRequest) -> Result<ServiceAccountInfo, Answer> {
        let (namespace, sa_name) = (&req.namespace, &req.service_account);
        match self.cache.lookup(namespace, sa_name).await {
            Lookup::Found(sa) => Ok(sa),
            // The API server's ServiceAccount admission rejects such a pod anyway.
            Lookup::NotFound => Err(Answer::allow(Outcome::NoServiceAccount)),
            Lookup::TimedOut => Err(self.lookup_trouble(
                "sa_lookup_timeout",
                format!(
                    "ServiceAccount {namespace}/{sa_name} could not be read within {:?}",
                    self.sa_lookup_timeout
                ),
            )),
            Lookup::Failed(err) => Err(self.lookup_trouble(
                "sa_lookup_failed",
                format!("ServiceAccount {namespace}/{sa_name} could not be read: {err}"),
            )),
            Lookup::Busy => Err(self.lookup_trouble(
                "sa_lookup_busy",
                format!(
                    "ServiceAccount {namespace}/{sa_name} is not cached and {MAX_CONCURRENT_FETCHES} \
                     lookups are already in flight"
                ),
            )),
            // Like an unknown ServiceAccount (the API server refuses such a pod anyway), but said
            // in the answer: neither the name nor a lookup reaches the logs or the API.
            Lookup::InvalidName(why) => {
                self.metrics.warning("invalid_service_account_name");
                Err(
                    Answer::allow(Outcome::NoServiceAccount).with_warning(format!(
                        "irsa: {why}; no such ServiceAccount can exist, the pod was admitted without \
                     IAM credentials"
                    )),
                )
            }
        }
    }

    /// The CPU half after the lookup: run the engine, serialize the patch.
    pub fn finish(&self, req: &PodRequest, sa: &ServiceAccountInfo) -> Answer {
        let (namespace, sa_name) = (&req.namespace, &req.service_account);
        let file = self.identities.current();
        let identities = Either {
            file: &file,
            associations: self.associations,
        };
        let mutation = match mutate::mutate_pod(
            self.config,
            &identities,
            namespace,
            sa,
            &req.pod,
            &mut rand::rng(),
        ) {
            Ok(m) => m,
            Err(Refusal::NotAPod(err)) => {
                return self.not_a_pod(format!("irsa: {err}; admitted without IAM credentials"));
            }
            Err(Refusal::TooLarge(err)) => return self.too_large_answer(&err),
        };

        let mut answer = Answer::allow(Outcome::Unchanged);
        for warning in mutation.warnings {
            self.metrics.warning(warning.kind.as_str());
            tracing::warn!(%namespace, service_account = %sa_name, kind = warning.kind.as_str(), "{}", warning.message);
            answer.warnings.push(warning.message);
        }
        if let Some(denial) = mutation.denial {
            answer.outcome = Outcome::Denied;
            answer.denial = Some(denial);
            return answer;
        }
        if mutation.mode != Mode::None && !mutation.patch.0.is_empty() {
            match serde_json::to_vec(&mutation.patch) {
                Ok(bytes) => {
                    answer.patch = Some(bytes);
                    answer.outcome = Outcome::Mutated;
                    self.metrics
                        .mutations
                        .get_or_create(&[("mode", mutation.mode.as_str())])
                        .inc();
                }
                // Serializing a Vec of JSON values cannot fail; admit unchanged rather than panic.
                Err(err) => tracing::error!(error = %err, "cannot serialize the patch"),
            }
        }
        answer
    }

    /// More than irsa handles ([`mutate::limits`]): admitted unmutated with a warning, or denied
    /// under `--strict`. Nothing of the object reaches the log.
    fn too_large_answer(&self, too_large: &TooLarge) -> Answer {
        self.metrics.warning(too_large.as_str());
        tracing::warn!(reason = %too_large, "admission request over irsa's limits");
        if self.config.strict {
            let mut answer = Answer::allow(Outcome::Denied);
            answer.denial = Some(format!("denied by irsa (--strict): {too_large}"));
            return answer;
        }
        Answer::allow(Outcome::TooLarge).with_warning(format!(
            "irsa: {too_large}; the pod was admitted WITHOUT IAM credentials"
        ))
    }

    fn not_a_pod(&self, warning: String) -> Answer {
        self.metrics.warning("not_a_pod");
        tracing::warn!("{warning}");
        Answer::allow(Outcome::NotAPod).with_warning(warning)
    }

    /// Our own trouble reading the ServiceAccount: admit without credentials and say so — or,
    /// with `--strict`, deny so that the controller creating the pod retries.
    fn lookup_trouble(&self, kind: &'static str, problem: String) -> Answer {
        self.metrics.warning(kind);
        tracing::warn!("{problem}");
        if self.config.strict {
            let mut answer = Answer::allow(Outcome::Denied);
            answer.denial = Some(format!(
                "denied by irsa (--strict): {problem}; retry the pod creation"
            ));
            return answer;
        }
        Answer::allow(Outcome::NoServiceAccount).with_warning(format!(
            "irsa: {problem}; the pod was admitted WITHOUT IAM credentials (recreate it to get them)"
        ))
    }
}
