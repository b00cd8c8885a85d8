//! Kubernetes Events on the bindings concerned by each role report (refusals when they start,
//! every IAM write), and [`publish_on`] for any other object (the issuer publisher's).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use tracing::warn;

use crate::controller::policy::desired::{Key, Verdict};
use crate::controller::policy::report::{Outcome, RoleReport};
use crate::crd::IAMRoleBinding;

/// Kubernetes Events for what a role reconcile did or refused, on the bindings concerned.
/// Refusals are published when they start (not on every resync); IAM writes every time.
///
/// Each report's Events go through a [`Recorder`] of their own, as kube-runtime intends (one
/// per reconcile): a Recorder keeps every Event it published for six minutes, to count
/// repeats into a series, and one for the controller's lifetime held tens of megabytes at ten
/// thousand bindings. Repeats across reports are rare: the notes carry the numbers.
pub struct EventPublisher {
    client: Client,
    reporter: Reporter,
    bindings: Store<IAMRoleBinding>,
    /// Last outcome kind per role, and last verdict per binding, to publish changes only.
    last_role: HashMap<String, &'static str>,
    last_verdict: HashMap<Key, bool>,
}

/// One Event about `regarding`, its note cut to 1000 characters; a failure is only logged.
pub async fn publish_on(
    recorder: &Recorder,
    regarding: &ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, regarding).await {
        let kind = regarding.kind.as_deref().unwrap_or_default();
        let namespace = regarding.namespace.as_deref().unwrap_or_default();
        let name = regarding.name.as_deref().unwrap_or_default();
        warn!(object = %format_args!("{kind} {namespace}/{name}"), error = %e, "could not publish an Event");
    }
}

/// At most this many bindings get an Event per role reconcile (a role with 500 bindings
/// would otherwise cost 500 Event writes per IAM write).
const MAX_EVENTS_PER_REPORT: usize = 20;

impl EventPublisher {
    pub fn new(client: Client, reporter: Reporter, bindings: Store<IAMRoleBinding>) -> Self {
        Self {
            client,
            reporter,
            bindings,
            last_role: HashMap::new(),
            last_verdict: HashMap::new(),
        }
    }

    async fn publish(
        &self,
        recorder: &Recorder,
        key: &Key,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let Some(b) = self
            .bindings
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
        else {
            return;
        };
        publish_on(recorder, &b.object_ref(&()), type_, reason, action, &note).await;
    }

    pub async fn on_report(&mut self, r: &RoleReport) {
        use crate::crd::reason;
        let kind = match &r.outcome {
            Outcome::Applied { .. } => "applied",
            Outcome::NoSubjects { .. } => "no_subjects",
            Outcome::TooLarge(_) => "too_large",
            Outcome::Failed { .. } => "failed",
        };
        let changed = self.last_role.insert(r.role.clone(), kind) != Some(kind);
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        let targets: Vec<&Key> = r
            .desired
            .verdicts
            .keys()
            .take(MAX_EVENTS_PER_REPORT)
            .collect();
        for (key, (_, verdict)) in r.desired.verdicts.iter().take(MAX_EVENTS_PER_REPORT) {
            let authorized = verdict.is_authorized();
            let was = self.last_verdict.insert(key.clone(), authorized);
            if !authorized
                && was != Some(false)
                && let Verdict::Denied { reason: why } | Verdict::Invalid { reason: why } = verdict
            {
                self.publish(
                    &recorder,
                    key,
                    EventType::Warning,
                    reason::NOT_AUTHORIZED,
                    "Authorize",
                    why.clone(),
                )
                .await;
            }
        }
        match &r.outcome {
            Outcome::Applied {
                writes,
                chars,
                hand_edited,
                ..
            } if *writes > 0 => {
                let note = format!(
                    "role {}: trust policy updated ({} subjects of this cluster, {chars}/{} characters){}",
                    r.role,
                    r.desired.subject_count(),
                    r.limit,
                    if hand_edited.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", hand_edited.join("; "))
                    }
                );
                // The bindings whose subjects the write is about (refused ones got theirs).
                let trusted: Vec<&Key> = r
                    .desired
                    .bindings
                    .keys()
                    .take(MAX_EVENTS_PER_REPORT)
                    .collect();
                for key in trusted {
                    self.publish(
                        &recorder,
                        key,
                        EventType::Normal,
                        "TrustPolicyUpdated",
                        "UpdateAssumeRolePolicy",
                        note.clone(),
                    )
                    .await;
                }
            }
            Outcome::TooLarge(refusal) if changed => {
                for key in &targets {
                    self.publish(
                        &recorder,
                        key,
                        EventType::Warning,
                        reason::TRUST_POLICY_TOO_LARGE,
                        "UpdateAssumeRolePolicy",
                        format!("role {}: {refusal}", r.role),
                    )
                    .await;
                }
            }
            Outcome::Failed { message, .. } if changed => {
                for key in &targets {
                    self.publish(
                        &recorder,
                        key,
                        EventType::Warning,
                        reason::IAM_ERROR,
                        "UpdateAssumeRolePolicy",
                        message.clone(),
                    )
                    .await;
                }
            }
            _ => {}
        }
    }
}
