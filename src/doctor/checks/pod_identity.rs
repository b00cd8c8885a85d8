//! PURE: the steps of a Pod Identity diagnosis (a ServiceAccount with a
//! `PodIdentityAssociation`, served by `irsa agent`): the association, the grant, the role's
//! trust in the agent's role with the pod's session tags, and the agent on the pod's node.

use serde_json::Value;

use irsa_core::pod_identity::{self, PodRef};

use super::{STS_ACCESS_DENIED, parse_trust};
use crate::{
    controller::policy::authz::{Decision, GrantSpec},
    crd::{PodIdentityAssociation, condition},
    doctor::report::Check,
    trust::evaluate_assume_role,
};

pub const ASSOCIATION_ID: &str = "association";
pub const ASSOCIATION_TITLE: &str = "PodIdentityAssociation";
pub const GRANT_ID: &str = "grant";
pub const GRANT_TITLE: &str = "IAMRoleGrant";
pub const AGENT_ID: &str = "agent";
pub const AGENT_TITLE: &str = "Pod Identity agent";
/// What the pod's SDK gets from the agent when no association is usable.
pub const AGENT_FORBIDDEN: &str = "403 from the agent: the SDK gets no credentials";

/// The one association of `namespace/service_account`, or why there is none to use.
pub fn association<'a>(
    namespace: &str,
    service_account: &str,
    listed: Result<&'a [PodIdentityAssociation], &str>,
) -> (Check, Option<&'a PodIdentityAssociation>) {
    let fail = |evidence: String, fix: &str| {
        Check::fail(ASSOCIATION_ID, ASSOCIATION_TITLE, evidence, fix)
            .with_sts_error(AGENT_FORBIDDEN)
    };
    let all = match listed {
        Ok(all) => all,
        Err(err) => {
            return (
                fail(
                    err.to_string(),
                    "the doctor needs list on podidentityassociations.irsa.dev",
                ),
                None,
            );
        }
    };
    let mine: Vec<&PodIdentityAssociation> = all
        .iter()
        .filter(|a| a.spec.service_account_name == service_account)
        .collect();
    let association = match mine.as_slice() {
        [] => {
            return (
                fail(
                    format!(
                        "no PodIdentityAssociation in {namespace} names ServiceAccount {service_account}, yet its pods use container credentials"
                    ),
                    "kubectl apply a PodIdentityAssociation for it (on EKS with EKS's own agent: aws eks list-pod-identity-associations)",
                ),
                None,
            );
        }
        [one] => *one,
        several => {
            let names: Vec<String> = several
                .iter()
                .map(|a| a.metadata.name.clone().unwrap_or_default())
                .collect();
            return (
                fail(
                    format!(
                        "{} PodIdentityAssociations in {namespace} name ServiceAccount {service_account} ({}): the agent cannot choose and refuses",
                        names.len(),
                        names.join(", ")
                    ),
                    "keep one association per ServiceAccount",
                ),
                None,
            );
        }
    };
    let name = association.metadata.name.as_deref().unwrap_or_default();
    let roles = match &association.spec.target_role_arn {
        Some(target) => format!("{} then {target}", association.spec.role_arn),
        None => association.spec.role_arn.clone(),
    };
    let ready = association
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == condition::READY));
    let check = match ready {
        Some(ready) if ready.status == "True" => Check::pass(
            ASSOCIATION_ID,
            ASSOCIATION_TITLE,
            format!("{namespace}/{name}: role {roles}, Ready"),
        ),
        Some(ready) => Check::fail(
            ASSOCIATION_ID,
            ASSOCIATION_TITLE,
            format!(
                "{namespace}/{name} (role {roles}) is not Ready: {}: {}",
                ready.reason, ready.message
            ),
            "fix what the condition says; the controller retries on its own",
        )
        .with_sts_error(STS_ACCESS_DENIED),
        None => Check::warn(
            ASSOCIATION_ID,
            ASSOCIATION_TITLE,
            format!(
                "{namespace}/{name} (role {roles}) has no Ready condition: no controller has reconciled it"
            ),
        )
        .with_fix(
            "run irsa controller with --pod-identity-agent-role-arn (the chart sets it from agent.iamRoleArn)",
        ),
    };
    (check, Some(association))
}

/// The grants allow every role of the association for this ServiceAccount (the rule the
/// agent applies on every request).
pub fn grant(
    namespace: &str,
    service_account: &str,
    association: &PodIdentityAssociation,
    grants: Result<&[(String, GrantSpec)], &str>,
) -> Check {
    let grants = match grants {
        Ok(g) => g,
        Err(err) => {
            return Check::warn(GRANT_ID, GRANT_TITLE, err.to_string())
                .with_fix("the doctor needs list on iamrolegrants.irsa.dev");
        }
    };
    let mut roles = vec![association.spec.role_arn.as_str()];
    roles.extend(association.spec.target_role_arn.as_deref());
    match pod_identity::authorize(namespace, service_account, &roles, "", grants) {
        Decision::Authorized { via, .. } => Check::pass(
            GRANT_ID,
            GRANT_TITLE,
            format!("{} allowed by {via}", roles.join(" and ")),
        ),
        Decision::Denied { reason } => Check::fail(
            GRANT_ID,
            GRANT_TITLE,
            reason,
            format!(
                "ask the platform team for an IAMRoleGrant allowing {} for namespace {namespace}",
                roles.join(" and ")
            ),
        )
        .with_sts_error(AGENT_FORBIDDEN),
    }
}

/// The role trusts the agent's role for this pod's session tags (`sts:AssumeRole` +
/// `sts:TagSession`, conditions on `aws:RequestTag/...`).
pub fn trust(
    document: &str,
    agent_role_arn: &str,
    pod: &PodRef<'_>,
    cluster: &str,
    association: &PodIdentityAssociation,
) -> Check {
    const ID: &str = "trust-policy";
    const TITLE: &str = "Trust policy";
    let policy = match parse_trust(document) {
        Ok(p) => p,
        Err(unreadable) => return unreadable,
    };
    let spec = &association.spec;
    let tags = match pod_identity::session_tags(
        pod,
        cluster,
        &spec.session_tags,
        spec.disable_session_tags,
    ) {
        Ok(tags) => tags,
        Err(err) => {
            return Check::fail(ID, TITLE, err, "fix the association's sessionTags");
        }
    };
    let decision = evaluate_assume_role(&policy, agent_role_arn, &tags);
    let who = format!("{}/{}", pod.namespace, pod.service_account);
    if decision.allowed {
        let by = decision
            .matched_label()
            .map_or_else(|| "a statement".into(), |l| format!("statement {l}"));
        return Check::pass(
            ID,
            TITLE,
            format!("{by} lets the agent's role {agent_role_arn} assume it for {who}"),
        );
    }
    Check::fail(
        ID,
        TITLE,
        decision.reasons.join("; "),
        "the controller writes this statement for a Ready association: check the association's TrustPolicyApplied condition, and that the agent's role is the controller's --pod-identity-agent-role-arn",
    )
    .with_sts_error(format!(
        "AccessDenied: {agent_role_arn} is not authorized to perform sts:AssumeRole (the agent answers 503 or 403)"
    ))
}

/// What the agent answered the doctor, asking with a token bound to the pod.
pub fn agent_answer(url: &str, answer: Result<(u16, Value), String>) -> Check {
    match answer {
        Ok((200, body)) => Check::pass(
            AGENT_ID,
            AGENT_TITLE,
            format!(
                "{url} answered with credentials for account {}, expiring {}",
                body.get("AccountId").and_then(Value::as_str).unwrap_or("?"),
                body.get("Expiration")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
            ),
        ),
        Ok((status, body)) => {
            let reason = match (
                body.get("reason").and_then(Value::as_str),
                body.get("message").and_then(Value::as_str),
            ) {
                (Some(reason), Some(message)) => format!("{reason}: {message}"),
                (Some(one), None) | (None, Some(one)) => one.to_string(),
                (None, None) => body.to_string(),
            };
            Check::fail(
                AGENT_ID,
                AGENT_TITLE,
                format!("{url} answered {status}: {reason}"),
                "fix what the agent says (its log on that node has the same line)",
            )
            .with_sts_error(format!("{status} from the agent: {reason}"))
        }
        Err(err) => Check::fail(
            AGENT_ID,
            AGENT_TITLE,
            format!("{url}: {err}"),
            "is irsa agent running on the pod's node and listening there?",
        ),
    }
}

/// Without `--agent-url`: is an agent pod Ready on the pod's node?
pub fn agent_pod(node: Option<&str>, agents: Result<&[Value], &str>) -> Check {
    let Some(node) = node else {
        return Check::skip(AGENT_ID, AGENT_TITLE, "the pod is not scheduled yet");
    };
    let agents = match agents {
        Ok(a) => a,
        Err(err) => {
            return Check::warn(AGENT_ID, AGENT_TITLE, err.to_string())
                .with_fix("the doctor needs list on pods in the release namespace");
        }
    };
    let ready = |p: &&Value| {
        p.pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|c| {
                c.iter().any(|c| {
                    c.get("type").and_then(Value::as_str) == Some("Ready")
                        && c.get("status").and_then(Value::as_str) == Some("True")
                })
            })
    };
    match agents.iter().find(ready) {
        Some(agent) => Check::pass(
            AGENT_ID,
            AGENT_TITLE,
            format!(
                "agent pod {} is Ready on node {node} (pass --agent-url to ask it for this pod's credentials)",
                agent.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("?")
            ),
        ),
        None if agents.is_empty() => Check::fail(
            AGENT_ID,
            AGENT_TITLE,
            format!("no irsa agent pod on node {node}"),
            "install the chart with agent.enabled=true, and check the DaemonSet's nodeSelector and tolerations",
        )
        .with_sts_error("connection refused at 169.254.170.23: the SDK gets no credentials"),
        None => Check::fail(
            AGENT_ID,
            AGENT_TITLE,
            format!("the irsa agent pod on node {node} is not Ready"),
            "kubectl logs it: it is Ready once its pods, associations and grants are listed",
        ),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use serde_json::json;

    use super::*;
    use crate::crd::{PodIdentityAssociationSpec, PodIdentityAssociationStatus};
    use crate::doctor::report::Status;

    const ROLE: &str = "arn:aws:iam::111122223333:role/team-a-app";
    const AGENT: &str = "arn:aws:iam::111122223333:role/irsa-agent";
    const POD: PodRef<'static> = PodRef {
        namespace: "team-a",
        service_account: "app",
        pod_name: "web-1",
        pod_uid: "uid-1",
    };

    fn associated(name: &str, sa: &str, ready: Option<(&str, &str)>) -> PodIdentityAssociation {
        let mut a = PodIdentityAssociation::new(
            name,
            PodIdentityAssociationSpec {
                service_account_name: sa.into(),
                role_arn: ROLE.into(),
                target_role_arn: None,
                disable_session_tags: false,
                session_tags: Default::default(),
                role_session_name: None,
            },
        );
        a.status = ready.map(|(status, reason)| PodIdentityAssociationStatus {
            observed_generation: Some(1),
            conditions: vec![Condition {
                type_: condition::READY.into(),
                status: status.into(),
                reason: reason.into(),
                message: format!("{reason} says why"),
                last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                observed_generation: Some(1),
            }],
        });
        a
    }

    #[test]
    fn the_one_ready_association_passes_and_every_other_case_says_why() {
        let ready = [associated("app", "app", Some(("True", "Ready")))];
        let (check, found) = association_check(&ready);
        assert_eq!(
            (check.status, found.is_some()),
            (Status::Pass, true),
            "{check:?}"
        );

        let denied = [associated("app", "app", Some(("False", "NotAuthorized")))];
        let (check, _) = association_check(&denied);
        assert_eq!(check.status, Status::Fail);
        assert!(
            check
                .evidence
                .contains("NotAuthorized: NotAuthorized says why"),
            "{check:?}"
        );

        let (check, _) = association_check(&[associated("app", "app", None)]);
        assert_eq!(check.status, Status::Warn);
        assert!(check.fix.unwrap().contains("--pod-identity-agent-role-arn"));

        let two = [associated("a", "app", None), associated("b", "app", None)];
        let (check, found) = association_check(&two);
        assert_eq!((check.status, found.is_none()), (Status::Fail, true));
        assert!(check.evidence.contains("(a, b)"), "{check:?}");

        let (check, _) = association_check(&[associated("other", "web", None)]);
        assert_eq!(check.status, Status::Fail);
        assert!(
            check.evidence.contains("no PodIdentityAssociation"),
            "{check:?}"
        );
    }

    fn association_check(
        all: &[PodIdentityAssociation],
    ) -> (Check, Option<&PodIdentityAssociation>) {
        association("team-a", "app", Ok(all))
    }

    #[test]
    fn the_grant_rule_is_the_agents() {
        let a = associated("app", "app", None);
        let grant = GrantSpec {
            namespaces: vec!["team-a".into()],
            role_arns: vec!["arn:aws:iam::111122223333:role/team-a-*".into()],
            service_accounts: None,
            allow_namespace_wildcard_trust: false,
        };
        let grants = [("team-a".to_string(), grant)];
        assert_eq!(grant_check(&a, &grants).status, Status::Pass);
        let check = grant_check(&a, &[]);
        assert_eq!(check.status, Status::Fail);
        assert_eq!(check.sts_error.as_deref(), Some(AGENT_FORBIDDEN));
    }

    fn grant_check(a: &PodIdentityAssociation, grants: &[(String, GrantSpec)]) -> Check {
        grant("team-a", "app", a, Ok(grants))
    }

    #[test]
    fn the_trust_check_evaluates_the_pods_tags() {
        let a = associated("app", "app", None);
        let policy = |namespace: &str| {
            json!({"Version": "2012-10-17", "Statement": [{
                "Sid": "IrsaPod1", "Effect": "Allow", "Principal": {"AWS": AGENT},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
                "Condition": {"StringEquals": {
                    "aws:RequestTag/kubernetes-namespace": namespace,
                    "aws:RequestTag/kubernetes-service-account": "app",
                    "aws:RequestTag/irsa-cluster-name": "prod"}}}]})
            .to_string()
        };
        let check = trust(&policy("team-a"), AGENT, &POD, "prod", &a);
        assert_eq!(check.status, Status::Pass, "{check:?}");
        let check = trust(&policy("team-b"), AGENT, &POD, "prod", &a);
        assert_eq!(check.status, Status::Fail);
        assert!(
            check
                .evidence
                .contains("tag kubernetes-namespace is team-a"),
            "{check:?}"
        );
        let check = trust(&policy("team-a"), AGENT, &POD, "staging", &a);
        assert!(
            check.evidence.contains("tag irsa-cluster-name is staging"),
            "{check:?}"
        );
    }

    #[test]
    fn the_agents_answer_is_reported_without_credentials() {
        let url = "http://127.0.0.1:1/v1/credentials";
        let ok = json!({"AccountId": "111122223333", "Expiration": "2026-12-07T23:00:00Z"});
        let check = agent_answer(url, Ok((200, ok)));
        assert_eq!(check.status, Status::Pass);
        assert!(check.evidence.contains("111122223333"), "{check:?}");
        let refused = json!({"reason": "PodNotOnThisNode", "message": "pod runs on node-b"});
        let check = agent_answer(url, Ok((403, refused)));
        assert_eq!(check.status, Status::Fail);
        assert!(
            check
                .evidence
                .contains("403: PodNotOnThisNode: pod runs on node-b"),
            "{check:?}"
        );
        assert_eq!(
            agent_answer(url, Err("connection refused".into())).status,
            Status::Fail
        );
    }

    #[test]
    fn an_agent_pod_must_be_ready_on_the_node() {
        let pod = |ready: &str| {
            json!({"metadata": {"name": "irsa-agent-x"},
                   "status": {"conditions": [{"type": "Ready", "status": ready}]}})
        };
        assert_eq!(
            agent_pod(Some("n"), Ok(&[pod("True")])).status,
            Status::Pass
        );
        assert_eq!(
            agent_pod(Some("n"), Ok(&[pod("False")])).status,
            Status::Fail
        );
        let none = agent_pod(Some("n"), Ok(&[]));
        assert!(
            none.evidence.contains("no irsa agent pod on node n"),
            "{none:?}"
        );
        assert_eq!(agent_pod(None, Ok(&[])).status, Status::Skip);
    }
}
