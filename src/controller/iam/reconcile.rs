//! One role's reconcile: [`reconcile_role`] makes the role's trust policy say what the
//! cluster wants. It reads the role (document + tags) and, inside [`Aws::converge_trust`]'s
//! read→plan→write→re-read loop, decides authorization ([`desired::for_role`], the tags come
//! with the role) and plans the document ([`plan::plan`]). Nothing is written unless the
//! compiled document differs semantically from IAM's, so a resync at steady state costs one
//! GetRole per role and zero writes.

use std::collections::BTreeMap;

use crate::arn::RoleArn;
use crate::aws::ConvergeOptions;
use crate::controller::metrics::Aws;
use crate::controller::policy::desired::{self, RoleDesired, Snapshot};
use crate::controller::policy::plan::{self, PlanError};
use crate::controller::policy::report::{Outcome, RoleReport};
use crate::issuer::IssuerUrl;

/// What every role reconcile needs to know about this cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSettings {
    /// The issuer URL, exactly as tokens carry it.
    pub issuer: IssuerUrl,
    /// This issuer's IAM OIDC provider ARN.
    pub provider_arn: String,
    /// `--trust-policy-max-chars`.
    pub max_chars: usize,
    pub desired: desired::Settings,
    pub converge: ConvergeOptions,
}

impl RoleSettings {
    /// The part of these settings the pure planner needs.
    fn plan(&self) -> plan::Settings<'_> {
        plan::Settings {
            issuer: &self.issuer,
            provider_arn: &self.provider_arn,
            max_chars: self.max_chars,
            cluster: &self.desired.cluster,
            pod_identity_agent: self.desired.pod_identity_agent.as_deref(),
        }
    }
}

/// Reconciles one role against IAM (see the module docs). Never panics on IAM's answers;
/// every failure is an [`Outcome::Failed`].
pub async fn reconcile_role(
    aws: &Aws,
    settings: &RoleSettings,
    role: &str,
    snapshot: &Snapshot,
) -> RoleReport {
    let report = |desired: RoleDesired, with_tags: bool, outcome: Outcome| RoleReport {
        role: role.to_string(),
        desired,
        authorized_with_tags: with_tags,
        outcome,
        provider_arn: settings.provider_arn.clone(),
        limit: settings.max_chars,
        pass: 0,
    };
    let arn = match RoleArn::parse(role) {
        Ok(a) => a,
        Err(e) => {
            let desired = desired::for_role(snapshot, &settings.desired, role, &BTreeMap::new());
            return report(
                desired,
                false,
                Outcome::Failed {
                    label: "invalid_role_arn",
                    message: format!("role ARN {role:?} {e}; fix spec.roleArn"),
                    retryable: false,
                },
            );
        }
    };
    let mut last_desired = None;
    let mut last_outcome = None;
    let result = aws
        .converge_trust(&arn, settings.converge, |trust| {
            let want = desired::for_role(snapshot, &settings.desired, role, &trust.tags);
            let planned = plan::plan(&settings.plan(), &trust.document, &want);
            last_desired = Some(want);
            let p = planned?;
            last_outcome = Some(p.outcome);
            Ok(p.write)
        })
        .await;
    match result {
        Ok(Ok(done)) => {
            let mut outcome = last_outcome.unwrap_or(Outcome::Applied {
                writes: 0,
                chars: 0,
                collapsed: vec![],
                hand_edited: vec![],
            });
            match &mut outcome {
                Outcome::Applied { writes, .. } | Outcome::NoSubjects { writes, .. } => {
                    *writes = done.writes
                }
                _ => {}
            }
            report(last_desired.unwrap_or_default(), true, outcome)
        }
        Ok(Err(PlanError::TooLarge(refusal))) => report(
            last_desired.unwrap_or_default(),
            true,
            Outcome::TooLarge(refusal),
        ),
        Ok(Err(PlanError::Unparseable(why))) => report(
            last_desired.unwrap_or_default(),
            true,
            Outcome::Failed {
                label: "unparseable_policy",
                message: format!(
                    "the trust policy of role {role} {why}; fix it in IAM (the controller never \
                     rewrites a document it cannot read)"
                ),
                retryable: false,
            },
        ),
        Err(e) => {
            // Without the role's tags a tag-based authorization cannot be decided; report
            // grant-based verdicts so the status still says something useful.
            let desired = last_desired.unwrap_or_else(|| {
                desired::for_role(snapshot, &settings.desired, role, &BTreeMap::new())
            });
            report(
                desired,
                false,
                Outcome::Failed {
                    label: e.metric_label(),
                    message: e.to_string(),
                    retryable: e.is_retryable(),
                },
            )
        }
    }
}
