//! PURE: the status of an `IAMRoleBinding` (docs/design.md §3.1) and of a
//! `PodIdentityAssociation`, from the role's latest report (and, for a binding, the
//! ServiceAccount annotation result). Both read the report the same way ([`trust_conditions`]);
//! only where their verdict sits in it and how success is worded differ.
//!
//! `lastTransitionTime` moves only when a condition's `status` changes, so recomputing an
//! unchanged situation yields an identical status and the reconciler skips the patch (no
//! write → no watch event → no reconcile loop).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd_status::{IAMRoleBindingStatus, PodIdentityAssociationStatus, condition, reason};
use crate::policy::desired::{Key, Verdict};
use crate::policy::report::{Outcome, RoleReport};

/// What happened to the listed ServiceAccounts' annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnnotationSummary {
    /// `annotateServiceAccounts: false`.
    pub disabled: bool,
    pub annotated: Vec<String>,
    /// Listed but not (yet) existing: annotated when they appear.
    pub missing: Vec<String>,
    /// `name: key is "theirs", not "ours"` for each conflict.
    pub conflicts: Vec<String>,
}

pub struct Input<'a> {
    pub key: &'a Key,
    pub generation: i64,
    pub role_arn: &'a str,
    pub current: Option<&'a IAMRoleBindingStatus>,
    /// The spec role's latest report.
    pub report: Option<&'a RoleReport>,
    /// `status.roleArn` when it differs from the spec and still trusts this binding.
    pub old_role_pending: Option<&'a str>,
    pub annotations: &'a AnnotationSummary,
    pub now: Time,
}

/// What the status of a `PodIdentityAssociation` is computed from.
pub struct AssociationInput<'a> {
    pub key: &'a Key,
    pub generation: i64,
    pub role_arn: &'a str,
    pub current: Option<&'a PodIdentityAssociationStatus>,
    /// The role's latest report.
    pub report: Option<&'a RoleReport>,
    /// `--pod-identity-agent-role-arn`; `None` when the controller runs without it.
    pub agent_role_arn: Option<&'a str>,
    pub now: Time,
}

type C = (&'static str, &'static str, &'static str, String);

/// How one object (binding or association) reads its role's report.
struct Trust<'a> {
    role_arn: &'a str,
    generation: i64,
    report: Option<&'a RoleReport>,
    /// The object's verdict in that report, with the generation it was decided for.
    verdict: Option<&'a (i64, Verdict)>,
    old_role_pending: Option<&'a str>,
    /// The reason when IAM refuses the statement's principal: our OIDC provider for a
    /// binding, the agent's role for an association.
    principal_missing: &'static str,
    /// TrustPolicyApplied's message when the role holds what the object asks.
    applied: &'a dyn Fn(&RoleReport) -> String,
}

/// Authorized and TrustPolicyApplied.
fn trust_conditions(t: &Trust<'_>) -> (C, C) {
    let unknown = |why: String| {
        (
            (
                condition::AUTHORIZED,
                "Unknown",
                reason::RECONCILING,
                why.clone(),
            ),
            (
                condition::TRUST_POLICY_APPLIED,
                "Unknown",
                reason::RECONCILING,
                why,
            ),
        )
    };
    let seen = t
        .report
        .zip(t.verdict)
        .filter(|(_, (generation, _))| *generation >= t.generation);
    let Some((report, (_, verdict))) = seen else {
        return unknown(format!(
            "waiting for the trust policy of {} to be reconciled",
            t.role_arn
        ));
    };
    let authorized = match verdict {
        Verdict::Authorized { via, tag } => {
            let mut how: Vec<String> = via.iter().map(|g| format!("IAMRoleGrant {g}")).collect();
            if *tag {
                how.push(format!(
                    "role tag {}",
                    crate::policy::authz::ALLOWED_NAMESPACES_TAG
                ));
            }
            let reason = if via.is_empty() {
                reason::ROLE_TAG_MATCHED
            } else {
                reason::GRANT_MATCHED
            };
            (
                condition::AUTHORIZED,
                "True",
                reason,
                format!("allowed by {}", how.join(", ")),
            )
        }
        Verdict::Denied { reason: why } => {
            let why = if report.authorized_with_tags {
                why.clone()
            } else {
                format!("{why} (the role's tags could not be read)")
            };
            let c = (condition::AUTHORIZED, "False", reason::NOT_AUTHORIZED, why);
            let t = (
                condition::TRUST_POLICY_APPLIED,
                "False",
                reason::NOT_AUTHORIZED,
                "not authorized: nothing was written to IAM".to_string(),
            );
            return (c, t);
        }
        Verdict::Invalid { reason: why } => {
            let c = (
                condition::AUTHORIZED,
                "False",
                reason::NOT_AUTHORIZED,
                why.clone(),
            );
            let t = (
                condition::TRUST_POLICY_APPLIED,
                "False",
                reason::NOT_AUTHORIZED,
                "invalid spec: nothing was written to IAM".to_string(),
            );
            return (c, t);
        }
    };
    let applied = match &report.outcome {
        Outcome::Applied { .. } => match t.old_role_pending {
            Some(old) => (
                condition::TRUST_POLICY_APPLIED,
                "Unknown",
                reason::RECONCILING,
                format!("removing this binding's subjects from the previous role {old}"),
            ),
            None => (
                condition::TRUST_POLICY_APPLIED,
                "True",
                reason::TRUST_POLICY_APPLIED,
                (t.applied)(report),
            ),
        },
        Outcome::NoSubjects { .. } => (
            condition::TRUST_POLICY_APPLIED,
            "Unknown",
            reason::RECONCILING,
            "the role trusts no subject of this cluster yet".to_string(),
        ),
        Outcome::TooLarge(refusal) => (
            condition::TRUST_POLICY_APPLIED,
            "False",
            reason::TRUST_POLICY_TOO_LARGE,
            refusal.to_string(),
        ),
        Outcome::Failed { label, message, .. } => {
            let reason = match *label {
                "not_found" => reason::ROLE_NOT_FOUND,
                "invalid_role_arn" | "role_mismatch" => reason::INVALID_ROLE_ARN,
                "malformed_policy" if message.contains("rincipal") => t.principal_missing,
                _ => reason::IAM_ERROR,
            };
            (
                condition::TRUST_POLICY_APPLIED,
                "False",
                reason,
                message.clone(),
            )
        }
    };
    (authorized, applied)
}

fn annotation_condition(a: &AnnotationSummary) -> C {
    if a.disabled {
        return (
            condition::SERVICE_ACCOUNTS_ANNOTATED,
            "True",
            reason::ANNOTATION_DISABLED,
            "annotateServiceAccounts is false".into(),
        );
    }
    if !a.conflicts.is_empty() {
        return (
            condition::SERVICE_ACCOUNTS_ANNOTATED,
            "False",
            reason::CONFLICT,
            format!(
                "not overwritten (set by someone else; remove it or point it at this role): {}",
                a.conflicts.join("; ")
            ),
        );
    }
    if !a.missing.is_empty() {
        return (
            condition::SERVICE_ACCOUNTS_ANNOTATED,
            "False",
            reason::SERVICE_ACCOUNT_NOT_FOUND,
            format!(
                "ServiceAccount(s) {} do not exist yet; they are annotated when created",
                a.missing.join(", ")
            ),
        );
    }
    (
        condition::SERVICE_ACCOUNTS_ANNOTATED,
        "True",
        reason::ANNOTATED,
        format!("annotated: {}", a.annotated.join(", ")),
    )
}

/// The conditions to write: `Ready` (True when every part is, else the first part that is
/// not, with its reason) and `parts`, each keeping its `lastTransitionTime` from `current`
/// while its status is unchanged.
fn conditions(parts: Vec<C>, current: &[Condition], generation: i64, now: &Time) -> Vec<Condition> {
    let ready = match parts.iter().find(|(_, s, _, _)| *s != "True") {
        None => (
            condition::READY,
            "True",
            reason::TRUST_POLICY_APPLIED,
            parts
                .iter()
                .find(|(t, ..)| *t == condition::TRUST_POLICY_APPLIED)
                .map(|(.., message)| message.clone())
                .unwrap_or_default(),
        ),
        Some((_, status, reason, message)) => (
            condition::READY,
            if *status == "Unknown" {
                "Unknown"
            } else {
                "False"
            },
            *reason,
            message.clone(),
        ),
    };
    std::iter::once(ready)
        .chain(parts)
        .map(|c| to_condition(c, current, generation, now))
        .collect()
}

fn to_condition(c: C, current: &[Condition], generation: i64, now: &Time) -> Condition {
    let (type_, status, reason, message) = c;
    let previous = current.iter().find(|p| p.type_ == type_);
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => now.clone(),
    };
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: Some(generation),
        last_transition_time,
    }
}

/// The status to write on a binding.
pub fn compute(input: &Input<'_>) -> IAMRoleBindingStatus {
    let applied_message = |report: &RoleReport| {
        let n = report.desired.subject_count();
        let provider =
            crate::trust::provider_host_path(&report.provider_arn).unwrap_or(&report.provider_arn);
        format!(
            "{n} subject{} trusted via oidc-provider/{provider}",
            if n == 1 { "" } else { "s" }
        )
    };
    let (authorized, applied) = trust_conditions(&Trust {
        role_arn: input.role_arn,
        generation: input.generation,
        report: input.report,
        verdict: input.report.and_then(|r| r.desired.verdicts.get(input.key)),
        old_role_pending: input.old_role_pending,
        principal_missing: reason::OIDC_PROVIDER_MISSING,
        applied: &applied_message,
    });
    let annotated = annotation_condition(input.annotations);
    let current = input.current.map_or(&[][..], |s| &s.conditions[..]);
    let conditions = conditions(
        vec![authorized, applied, annotated],
        current,
        input.generation,
        &input.now,
    );

    let report = input.report;
    let applied_here = report.is_some_and(|r| r.trusts_binding(input.key) && r.outcome.is_ok());
    let role_arn = match input.old_role_pending {
        Some(old) => Some(old.to_string()),
        None if applied_here => Some(input.role_arn.to_string()),
        None => input.current.and_then(|s| s.role_arn.clone()),
    };
    IAMRoleBindingStatus {
        observed_generation: Some(input.generation),
        conditions,
        role_arn,
        oidc_provider_arn: report.map(|r| r.provider_arn.clone()),
        trust_policy_chars: report
            .and_then(|r| r.outcome.chars())
            .and_then(|c| i64::try_from(c).ok())
            .or_else(|| input.current.and_then(|s| s.trust_policy_chars)),
        trust_policy_limit: report.and_then(|r| i64::try_from(r.limit).ok()),
    }
}

/// The status to write on a `PodIdentityAssociation`: Ready, Authorized, TrustPolicyApplied.
/// Without the agent's role the controller writes nothing for it, and says so.
pub fn compute_association(input: &AssociationInput<'_>) -> PodIdentityAssociationStatus {
    let current = input.current.map_or(&[][..], |s| &s.conditions[..]);
    let Some(agent) = input.agent_role_arn else {
        let why = "the controller runs without --pod-identity-agent-role-arn (chart: \
                   agent.iamRoleArn), so it writes no Pod Identity trust statement; the role's \
                   trust policy is left as it is"
            .to_string();
        let parts = [
            (condition::READY, "False"),
            (condition::AUTHORIZED, "Unknown"),
            (condition::TRUST_POLICY_APPLIED, "False"),
        ];
        return PodIdentityAssociationStatus {
            observed_generation: Some(input.generation),
            conditions: parts
                .into_iter()
                .map(|(type_, status)| {
                    let c = (
                        type_,
                        status,
                        reason::AGENT_ROLE_NOT_CONFIGURED,
                        why.clone(),
                    );
                    to_condition(c, current, input.generation, &input.now)
                })
                .collect(),
        };
    };
    let applied_message =
        |_: &RoleReport| format!("the role trusts the Pod Identity agent's role {agent}");
    let (authorized, applied) = trust_conditions(&Trust {
        role_arn: input.role_arn,
        generation: input.generation,
        report: input.report,
        verdict: input
            .report
            .and_then(|r| r.desired.association_verdicts.get(input.key)),
        old_role_pending: None,
        principal_missing: reason::IAM_ERROR,
        applied: &applied_message,
    });
    PodIdentityAssociationStatus {
        observed_generation: Some(input.generation),
        conditions: conditions(
            vec![authorized, applied],
            current,
            input.generation,
            &input.now,
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::policy::desired::RoleDesired;

    const ROLE: &str = "arn:aws:iam::111122223333:role/r";

    fn report(verdict: Verdict, outcome: Outcome) -> RoleReport {
        let key = Key::new("team-a", "b");
        let mut desired = RoleDesired::default();
        if verdict.is_authorized() {
            desired.bindings.insert(key.clone(), 1);
            desired
                .desired
                .entry("sts.amazonaws.com".into())
                .or_default()
                .insert("team-a:app".parse().unwrap());
        }
        desired.verdicts.insert(key, (1, verdict));
        RoleReport {
            role: ROLE.into(),
            desired,
            authorized_with_tags: true,
            outcome,
            provider_arn: "arn:aws:iam::111122223333:oidc-provider/oidc.example/id/X".into(),
            limit: 2048,
            pass: 1,
        }
    }

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap())
    }

    fn compute_with(
        r: Option<&RoleReport>,
        a: &AnnotationSummary,
        cur: Option<&IAMRoleBindingStatus>,
    ) -> IAMRoleBindingStatus {
        compute(&Input {
            key: &Key::new("team-a", "b"),
            generation: 1,
            role_arn: ROLE,
            current: cur,
            report: r,
            old_role_pending: None,
            annotations: a,
            now: now(),
        })
    }

    fn get<'a>(conditions: &'a [Condition], t: &str) -> &'a Condition {
        conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn applied_and_annotated_is_ready() {
        let r = report(
            Verdict::Authorized {
                via: vec!["g".into()],
                tag: false,
            },
            Outcome::Applied {
                writes: 1,
                chars: 400,
                collapsed: vec![],
                hand_edited: vec![],
            },
        );
        let a = AnnotationSummary {
            annotated: vec!["app".into()],
            ..Default::default()
        };
        let s = compute_with(Some(&r), &a, None);
        let ready = get(&s.conditions, condition::READY);
        assert_eq!(ready.status, "True");
        assert_eq!(
            ready.message,
            "1 subject trusted via oidc-provider/oidc.example/id/X"
        );
        assert_eq!(ready.observed_generation, Some(1));
        assert_eq!(s.role_arn.as_deref(), Some(ROLE));
        assert_eq!(s.trust_policy_chars, Some(400));
        assert_eq!(s.trust_policy_limit, Some(2048));
        // Recomputing the same situation later gives the identical status (no patch).
        let mut later = Input {
            key: &Key::new("team-a", "b"),
            generation: 1,
            role_arn: ROLE,
            current: Some(&s),
            report: Some(&r),
            old_role_pending: None,
            annotations: &a,
            now: now(),
        };
        later.now = Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap());
        assert_eq!(compute(&later), s);
    }

    #[test]
    fn refusals_and_conflicts_explain_themselves() {
        let denied = report(
            Verdict::Denied {
                reason: "no IAMRoleGrant exists".into(),
            },
            Outcome::Applied {
                writes: 0,
                chars: 100,
                collapsed: vec![],
                hand_edited: vec![],
            },
        );
        let s = compute_with(Some(&denied), &AnnotationSummary::default(), None);
        assert_eq!(get(&s.conditions, condition::AUTHORIZED).status, "False");
        assert_eq!(
            get(&s.conditions, condition::READY).reason,
            reason::NOT_AUTHORIZED
        );
        assert_eq!(s.role_arn, None, "nothing was applied for this binding");

        let a = AnnotationSummary {
            conflicts: vec!["app: eks.amazonaws.com/role-arn is \"x\"".into()],
            ..Default::default()
        };
        let ok = report(
            Verdict::Authorized {
                via: vec![],
                tag: true,
            },
            Outcome::Applied {
                writes: 0,
                chars: 100,
                collapsed: vec![],
                hand_edited: vec![],
            },
        );
        let s = compute_with(Some(&ok), &a, None);
        assert_eq!(
            get(&s.conditions, condition::AUTHORIZED).reason,
            reason::ROLE_TAG_MATCHED
        );
        assert_eq!(
            get(&s.conditions, condition::SERVICE_ACCOUNTS_ANNOTATED).reason,
            reason::CONFLICT
        );
        assert_eq!(get(&s.conditions, condition::READY).status, "False");

        // No report yet: Unknown, Reconciling.
        let s = compute_with(None, &AnnotationSummary::default(), None);
        assert_eq!(get(&s.conditions, condition::READY).status, "Unknown");
        let _ = BTreeMap::<(), ()>::new();
    }

    fn association_report(verdict: Verdict, outcome: Outcome) -> RoleReport {
        let mut r = report(
            Verdict::Authorized {
                via: vec![],
                tag: true,
            },
            outcome,
        );
        r.desired
            .association_verdicts
            .insert(Key::new("team-a", "pia"), (2, verdict));
        r
    }

    fn association_status(
        r: Option<&RoleReport>,
        agent: Option<&str>,
        current: Option<&PodIdentityAssociationStatus>,
    ) -> PodIdentityAssociationStatus {
        compute_association(&AssociationInput {
            key: &Key::new("team-a", "pia"),
            generation: 2,
            role_arn: ROLE,
            current,
            report: r,
            agent_role_arn: agent,
            now: now(),
        })
    }

    #[test]
    fn an_association_reads_its_own_verdict_and_says_when_the_agent_is_unknown() {
        const AGENT: &str = "arn:aws:iam::111122223333:role/irsa-agent";
        let applied = Outcome::Applied {
            writes: 1,
            chars: 500,
            collapsed: vec![],
            hand_edited: vec![],
        };
        let ok = association_report(
            Verdict::Authorized {
                via: vec!["g".into()],
                tag: false,
            },
            applied.clone(),
        );
        let s = association_status(Some(&ok), Some(AGENT), None);
        let types: Vec<&str> = s.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Ready", "Authorized", "TrustPolicyApplied"]);
        let ready = get(&s.conditions, condition::READY);
        assert_eq!(
            (ready.status.as_str(), ready.observed_generation),
            ("True", Some(2))
        );
        assert!(ready.message.contains(AGENT), "{}", ready.message);
        assert_eq!(
            get(&s.conditions, condition::AUTHORIZED).message,
            "allowed by IAMRoleGrant g"
        );
        assert_eq!(s.observed_generation, Some(2));
        // Unchanged situation later: the identical status (no patch).
        let later = compute_association(&AssociationInput {
            now: Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap()),
            key: &Key::new("team-a", "pia"),
            generation: 2,
            role_arn: ROLE,
            current: Some(&s),
            report: Some(&ok),
            agent_role_arn: Some(AGENT),
        });
        assert_eq!(later, s);

        // Its own verdict, not the binding's of the same name space.
        let denied = association_report(
            Verdict::Denied {
                reason: "PodIdentityAssociation team-a/pia: no IAMRoleGrant exists".into(),
            },
            applied.clone(),
        );
        let s = association_status(Some(&denied), Some(AGENT), None);
        let authorized = get(&s.conditions, condition::AUTHORIZED);
        assert_eq!(authorized.status, "False");
        assert!(authorized.message.contains("no IAMRoleGrant"));
        assert_eq!(
            get(&s.conditions, condition::READY).reason,
            reason::NOT_AUTHORIZED
        );

        // A report of an older generation is not an answer yet.
        let mut old = ok.clone();
        old.desired.association_verdicts.insert(
            Key::new("team-a", "pia"),
            (1, Verdict::Denied { reason: "x".into() }),
        );
        let s = association_status(Some(&old), Some(AGENT), None);
        assert_eq!(get(&s.conditions, condition::READY).status, "Unknown");

        // No agent role: Ready=False with the reason, whatever the report says.
        let s = association_status(Some(&ok), None, None);
        let ready = get(&s.conditions, condition::READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", reason::AGENT_ROLE_NOT_CONFIGURED)
        );
        assert!(ready.message.contains("--pod-identity-agent-role-arn"));
    }
}
