//! The Pod Identity statements of a role's trust policy: the agent's role may assume the role
//! for the pods of one namespace of one cluster (see the module docs of [`crate::trust`]).
//! The compiler ([`super::compile`]) places them next to the web-identity statements; this
//! module says what they look like, reads them back and recognises them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::pod_identity::tag;

use super::compile::{owned_shape, single_string, string_list};
use super::document::{pod_identity_sid, pod_identity_untagged_sid};

/// The action the agent calls.
pub const ASSUME_ROLE_ACTION: &str = "sts:AssumeRole";
/// Needed by the agent to pass its session tags.
pub const TAG_SESSION_ACTION: &str = "sts:TagSession";

/// What this cluster wants one role to grant the Pod Identity agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodIdentityTrust {
    /// ServiceAccounts per namespace whose granted associations (with session tags) name
    /// the role. A namespace with an empty set (or absent) gets no statement.
    pub service_accounts: BTreeMap<String, BTreeSet<String>>,
    /// A granted association with `disableSessionTags` names the role: the statement
    /// without tag conditions is written (see [`Model::Untagged`]).
    pub untagged: bool,
    /// Namespaces whose ServiceAccount condition may be dropped when the document would not
    /// fit otherwise (every association there was allowed by a grant with
    /// `allowNamespaceWildcardTrust`).
    pub wildcard_namespaces: BTreeSet<String>,
}

impl PodIdentityTrust {
    /// Namespaces with at least one ServiceAccount.
    pub fn namespaces(&self) -> impl Iterator<Item = (&str, &BTreeSet<String>)> {
        self.service_accounts
            .iter()
            .filter(|(_, sas)| !sas.is_empty())
            .map(|(ns, sas)| (ns.as_str(), sas))
    }

    /// (namespace, ServiceAccount) pairs wanted.
    pub fn count(&self) -> usize {
        self.namespaces().map(|(_, sas)| sas.len()).sum()
    }
}

/// The Pod Identity part of a compile: whose statements these are, and what they should say.
#[derive(Debug, Clone, Copy)]
pub struct PodIdentityInput<'a> {
    /// The agent's own role (`--pod-identity-agent-role-arn`): `Principal.AWS`.
    pub agent_role_arn: &'a str,
    /// This cluster's name: the `irsa-cluster-name` session tag the agent sends.
    pub cluster: &'a str,
    pub desired: &'a PodIdentityTrust,
}

/// Which Pod Identity statement: of an agent role (the current one, or one replaced by a
/// changed flag) for a namespace, or the one without tag conditions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Owner {
    pub agent: String,
    /// `None`: the statement without tag conditions.
    pub namespace: Option<String>,
}

impl Owner {
    pub fn sid(&self, cluster: &str) -> String {
        match &self.namespace {
            Some(ns) => pod_identity_sid(&self.agent, cluster, ns),
            None => pod_identity_untagged_sid(&self.agent, cluster),
        }
    }

    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("Pod Identity, namespace {ns}"),
            None => "Pod Identity without session tags".into(),
        }
    }
}

/// A Pod Identity statement in a form where semantic equality is `==`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Model {
    /// The agent's role may assume the role, passing tags, for ServiceAccounts of one
    /// namespace of one cluster:
    /// `{"Sid": "IrsaPod…", "Effect": "Allow", "Principal": {"AWS": <agent role>},
    ///   "Action": ["sts:AssumeRole", "sts:TagSession"],
    ///   "Condition": {"StringEquals": {"aws:RequestTag/irsa-cluster-name": <cluster>,
    ///     "aws:RequestTag/kubernetes-namespace": <ns>,
    ///     "aws:RequestTag/kubernetes-service-account": [<sa>, ...]}}}`.
    /// One statement per namespace lists exactly the pairs wanted, which one statement for
    /// several namespaces could not (the two lists would multiply), and is smaller than one
    /// statement per association.
    Tagged {
        agent: String,
        cluster: String,
        namespace: String,
        /// `None`: the condition on the ServiceAccount is dropped (a collapsed namespace).
        service_accounts: Option<BTreeSet<String>>,
    },
    /// An association with `disableSessionTags` sends no tags, so any tag condition would
    /// refuse it. Such a role trusts the agent's role for `sts:AssumeRole` alone, without
    /// conditions — what EKS Pod Identity's trust policy is (its service principal, no
    /// condition): the agent's grant check is then the only guard, as EKS's is. Written
    /// only while a granted association with `disableSessionTags` names the role.
    Untagged { agent: String, cluster: String },
}

fn request_tag(key: &str) -> String {
    format!("aws:RequestTag/{key}")
}

/// The statements `input` asks for, with the namespaces in `collapsed` without their
/// ServiceAccount condition.
pub fn desired_models(
    input: &PodIdentityInput<'_>,
    collapsed: &BTreeSet<String>,
) -> Vec<(Owner, Model)> {
    let agent = input.agent_role_arn.to_string();
    let mut out: Vec<(Owner, Model)> = input
        .desired
        .namespaces()
        .map(|(ns, sas)| {
            let owner = Owner {
                agent: agent.clone(),
                namespace: Some(ns.to_string()),
            };
            let model = Model::Tagged {
                agent: agent.clone(),
                cluster: input.cluster.to_string(),
                namespace: ns.to_string(),
                service_accounts: (!collapsed.contains(ns)).then(|| sas.clone()),
            };
            (owner, model)
        })
        .collect();
    if input.desired.untagged {
        let owner = Owner {
            agent: agent.clone(),
            namespace: None,
        };
        let cluster = input.cluster.to_string();
        out.push((owner, Model::Untagged { agent, cluster }));
    }
    out
}

/// The statement for `model`.
pub fn render(model: &Model) -> Value {
    match model {
        Model::Tagged {
            agent,
            cluster,
            namespace,
            service_accounts,
        } => {
            let mut equals = Map::new();
            equals.insert(request_tag(tag::CLUSTER), json!(cluster));
            equals.insert(request_tag(tag::NAMESPACE), json!(namespace));
            if let Some(sas) = service_accounts {
                // One value as a string, as for subjects: the brackets cost quota.
                let value = match sas.len() {
                    1 => json!(sas.first()),
                    _ => json!(sas),
                };
                equals.insert(request_tag(tag::SERVICE_ACCOUNT), value);
            }
            json!({
                "Sid": pod_identity_sid(agent, cluster, namespace),
                "Effect": "Allow",
                "Principal": {"AWS": agent},
                "Action": [ASSUME_ROLE_ACTION, TAG_SESSION_ACTION],
                "Condition": {"StringEquals": equals},
            })
        }
        Model::Untagged { agent, cluster } => json!({
            "Sid": pod_identity_untagged_sid(agent, cluster),
            "Effect": "Allow",
            "Principal": {"AWS": agent},
            "Action": ASSUME_ROLE_ACTION,
        }),
    }
}

/// The owner of a statement whose Sid is not one of the desired ones: a Pod Identity
/// statement of this cluster is recognised by its Sid being the one its own principal and
/// namespace condition give under `cluster` (so a namespace no longer wanted, or an agent
/// role replaced, is found and removed; another cluster's statements hash differently).
pub fn owner_by_content(statement: &Value, sid: &str, cluster: &str) -> Option<Owner> {
    let agent = statement
        .get("Principal")
        .and_then(|p| p.get("AWS"))
        .and_then(single_string)?;
    let namespace = statement
        .get("Condition")
        .and_then(|c| c.get("StringEquals"))
        .and_then(|e| e.get(request_tag(tag::NAMESPACE)))
        .and_then(single_string);
    [namespace, None]
        .into_iter()
        .map(|namespace| Owner {
            agent: agent.clone(),
            namespace,
        })
        .find(|owner| owner.sid(cluster) == sid)
}

/// Reads one of our Pod Identity statements back into a [`Model`]; `Err` says how it differs
/// from what [`render`] writes (which makes it a hand edit).
pub fn parse(statement: &Value, owner: &Owner, cluster: &str) -> Result<Model, String> {
    let keys: &[&str] = match owner.namespace {
        Some(_) => &["Sid", "Effect", "Principal", "Action", "Condition"],
        None => &["Sid", "Effect", "Principal", "Action"],
    };
    let (obj, agent) = owned_shape(statement, keys, "AWS", "AWS principal")?;
    if agent != owner.agent {
        return Err(format!(
            "its principal is {agent:?}, the Sid is for {:?}",
            owner.agent
        ));
    }
    let actions: BTreeSet<String> = obj
        .get("Action")
        .and_then(string_list)
        .unwrap_or_default()
        .into_iter()
        .collect();
    let Some(namespace) = &owner.namespace else {
        if actions != BTreeSet::from([ASSUME_ROLE_ACTION.to_string()]) {
            return Err(format!("Action is not {ASSUME_ROLE_ACTION} alone"));
        }
        return Ok(Model::Untagged {
            agent,
            cluster: cluster.to_string(),
        });
    };
    let both = BTreeSet::from([
        ASSUME_ROLE_ACTION.to_string(),
        TAG_SESSION_ACTION.to_string(),
    ]);
    if actions != both {
        return Err(format!(
            "Action is not {ASSUME_ROLE_ACTION} and {TAG_SESSION_ACTION}"
        ));
    }
    let condition = obj
        .get("Condition")
        .and_then(Value::as_object)
        .ok_or("no Condition")?;
    let equals = match condition.get("StringEquals").and_then(Value::as_object) {
        Some(e) if condition.len() == 1 => e,
        _ => return Err("its Condition is not a single StringEquals block".into()),
    };
    let value = |key: &str| equals.get(&request_tag(key));
    if value(tag::CLUSTER).and_then(single_string).as_deref() != Some(cluster) {
        return Err(format!(
            "its {} condition is not {cluster:?}",
            request_tag(tag::CLUSTER)
        ));
    }
    if value(tag::NAMESPACE).and_then(single_string).as_ref() != Some(namespace) {
        return Err(format!(
            "its {} condition is not {namespace:?}",
            request_tag(tag::NAMESPACE)
        ));
    }
    let service_accounts = match value(tag::SERVICE_ACCOUNT) {
        None => None,
        Some(v) => Some(
            string_list(v)
                .ok_or("its ServiceAccount condition is not a list of names")?
                .into_iter()
                .collect(),
        ),
    };
    let expected = 2 + usize::from(service_accounts.is_some());
    if equals.len() != expected {
        return Err("condition keys besides the cluster, namespace and ServiceAccount tags".into());
    }
    Ok(Model::Tagged {
        agent,
        cluster: cluster.to_string(),
        namespace: namespace.clone(),
        service_accounts,
    })
}

#[cfg(test)]
mod tests;
