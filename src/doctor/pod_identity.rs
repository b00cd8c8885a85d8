//! The doctor for Pod Identity: a pod or ServiceAccount whose credentials come from
//! `irsa agent` through a `PodIdentityAssociation` (or a pod that was injected for it). The
//! IRSA steps (OIDC provider, issuer, web-identity token) do not apply; these do:
//! ServiceAccount, pod injected, association, grant, role, trust policy (the agent's role with
//! the pod's session tags), and the agent on the pod's node.

use serde_json::Value;

use super::{
    checks::{self, pod_identity as pi},
    diagnose::{Env, Options, Target},
    report::{Check, Report},
    sources,
};
use crate::{
    arn::RoleArn,
    aws::Aws,
    mutate::{self, Identities, MutationConfig},
};
use irsa_core::pod_identity::PodRef;

/// The report when `target` uses Pod Identity, `None` when it does not (or cannot be read:
/// the IRSA sequence then reports why).
pub async fn diagnose(env: &Env, target: &Target, opts: &Options) -> Option<Report> {
    let kube = env.kube.as_ref()?;
    let (label, namespace, pod) = match target {
        Target::Pod { namespace, name } => {
            let pod = sources::pod(kube, namespace, name).await.ok()??;
            (format!("Pod {namespace}/{name}"), namespace, Some(pod))
        }
        Target::ServiceAccount { namespace, name } => (
            format!("ServiceAccount {namespace}/{name}"),
            namespace,
            None,
        ),
        Target::Token { .. } => return None,
    };
    let sa_name = match (target, &pod) {
        (_, Some(pod)) => mutate::pod_service_account_name(pod).to_string(),
        (Target::ServiceAccount { name, .. }, None) => name.clone(),
        _ => return None,
    };
    let associations = sources::associations(kube, namespace).await;
    let associated = associations
        .as_ref()
        .is_ok_and(|all| all.iter().any(|a| a.spec.service_account_name == sa_name));
    if !associated && !pod.as_ref().is_some_and(uses_container_credentials) {
        return None;
    }

    let mut checks = Vec::new();
    let sa = sources::service_account(kube, namespace, &sa_name).await;
    checks.push(match &sa {
        Ok(Some(_)) => Check::pass(
            "service-account",
            "ServiceAccount",
            format!(
                "{namespace}/{sa_name} exists; Pod Identity: its role comes from its association"
            ),
        ),
        Ok(None) => Check::fail(
            "service-account",
            "ServiceAccount",
            format!("ServiceAccount {namespace}/{sa_name} does not exist"),
            "create it (kubectl create serviceaccount)",
        ),
        Err(err) => Check::fail(
            "service-account",
            "ServiceAccount",
            err.clone(),
            "the doctor needs get on serviceaccounts",
        ),
    });
    if let (Some(pod), Ok(Some(sa))) = (&pod, &sa) {
        let cfg = MutationConfig {
            annotation_prefix: opts.annotation_prefix.clone(),
            ..Default::default()
        };
        let file = Identities::from_pairs([(namespace.as_str(), sa_name.as_str())]);
        checks.push(checks::pod_mutated(pod, namespace, sa, &cfg, &file));
    }

    let (check, association) = pi::association(
        namespace,
        &sa_name,
        associations.as_deref().map_err(String::as_str),
    );
    checks.push(check);
    let Some(association) = association else {
        return Some(Report::new(label, None, checks));
    };
    let grants = sources::grants(kube).await;
    checks.push(pi::grant(
        namespace,
        &sa_name,
        association,
        grants.as_deref().map_err(String::as_str),
    ));

    // The agent on the pod's node says which role it runs as and which cluster it names.
    let node = pod
        .as_ref()
        .and_then(|p| p.pointer("/spec/nodeName"))
        .and_then(Value::as_str);
    let agents = sources::agent_pods(kube, &opts.irsa_namespace, node).await;
    let agent_fact = |pick: fn(&Value) -> Option<String>| {
        agents
            .as_ref()
            .ok()
            .and_then(|pods| pods.iter().find_map(pick))
    };
    let agent_role = opts
        .agent_role_arn
        .clone()
        .or_else(|| agent_fact(agent_role_arn));
    let cluster = opts
        .cluster_name
        .clone()
        .or_else(|| agent_fact(agent_cluster));

    let role_arn = RoleArn::parse(&association.spec.role_arn);
    let client = env.aws.as_ref().map(|sdk| Aws::new(sdk, ()));
    let document = match (&role_arn, &client) {
        (Ok(role_arn), Some(aws)) => {
            let found = aws.get_role_trust(role_arn).await;
            checks.push(checks::role(role_arn, found.as_ref(), &role_arn.account));
            found.ok().map(|r| r.document)
        }
        (Err(err), _) => {
            checks.push(Check::fail(
                "role",
                "IAM role",
                format!("{}: {err}", association.spec.role_arn),
                "fix the association's roleArn",
            ));
            None
        }
        (_, None) => {
            checks.push(Check::skip("role", "IAM role", "no AWS configuration"));
            None
        }
    };
    let pod_name = pod
        .as_ref()
        .and_then(|p| p.pointer("/metadata/name"))
        .and_then(Value::as_str)
        .unwrap_or("any-pod");
    let pod_uid = pod
        .as_ref()
        .and_then(|p| p.pointer("/metadata/uid"))
        .and_then(Value::as_str)
        .unwrap_or("any-uid");
    let pod_ref = PodRef {
        namespace,
        service_account: &sa_name,
        pod_name,
        pod_uid,
    };
    checks.push(match (&document, &agent_role, &cluster) {
        (Some(doc), Some(agent), Some(cluster)) => {
            pi::trust(doc, agent, &pod_ref, cluster, association)
        }
        (None, ..) => Check::skip("trust-policy", "Trust policy", "the role could not be read"),
        (_, None, _) => Check::skip(
            "trust-policy",
            "Trust policy",
            "the agent's role is unknown: pass --agent-role-arn (no agent pod found to read it from)",
        ),
        (_, _, None) => Check::skip(
            "trust-policy",
            "Trust policy",
            "the cluster name is unknown: pass --cluster-name (no agent pod found to read it from)",
        ),
    });

    checks.push(match (&opts.agent_url, &pod) {
        (Some(url), Some(_)) => {
            let answer = match sources::fresh_token(
                kube,
                namespace,
                &sa_name,
                &opts.pod_identity_audience,
                Some((pod_name, pod_uid)),
            )
            .await
            {
                Ok(token) => sources::ask_agent(url, &token).await,
                Err(err) => Err(err),
            };
            pi::agent_answer(url, answer)
        }
        (Some(_), None) => Check::skip(
            pi::AGENT_ID,
            pi::AGENT_TITLE,
            "the agent answers for a pod: use --pod",
        ),
        (None, _) => pi::agent_pod(node, agents.as_deref().map_err(String::as_str)),
    });
    Some(Report::new(
        label,
        Some(association.spec.role_arn.clone()),
        checks,
    ))
}

fn uses_container_credentials(pod: &Value) -> bool {
    containers(pod).any(|c| !env_values(c, "AWS_CONTAINER_CREDENTIALS_FULL_URI").is_empty())
}

fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    ["containers", "initContainers"]
        .into_iter()
        .filter_map(|k| pod.pointer(&format!("/spec/{k}")).and_then(Value::as_array))
        .flatten()
}

fn env_values<'a>(container: &'a Value, name: &str) -> Vec<&'a str> {
    container
        .get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| e.get("name").and_then(Value::as_str) == Some(name))
        .filter_map(|e| e.get("value").and_then(Value::as_str))
        .collect()
}

/// `AWS_ROLE_ARN` of the agent container (the chart injects its own IRSA role).
fn agent_role_arn(agent: &Value) -> Option<String> {
    containers(agent)
        .flat_map(|c| env_values(c, "AWS_ROLE_ARN"))
        .next()
        .map(str::to_string)
}

/// `--cluster-name=` of the agent container.
fn agent_cluster(agent: &Value) -> Option<String> {
    containers(agent)
        .filter_map(|c| c.get("args").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .find_map(|a| a.strip_prefix("--cluster-name="))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_agents_role_and_cluster_are_read_from_its_pod() {
        let agent = json!({"spec": {"containers": [{
            "name": "agent",
            "args": ["agent", "--node-name=$(NODE_NAME)", "--cluster-name=prod-1"],
            "env": [{"name": "AWS_ROLE_ARN", "value": "arn:aws:iam::111122223333:role/irsa-agent"}],
        }]}});
        assert_eq!(
            agent_role_arn(&agent).as_deref(),
            Some("arn:aws:iam::111122223333:role/irsa-agent")
        );
        assert_eq!(agent_cluster(&agent).as_deref(), Some("prod-1"));
        assert!(uses_container_credentials(
            &json!({"spec": {"containers": [{
                "env": [{"name": "AWS_CONTAINER_CREDENTIALS_FULL_URI", "value": "http://169.254.170.23/v1/credentials"}]
            }]}})
        ));
        assert!(!uses_container_credentials(&agent));
    }
}
