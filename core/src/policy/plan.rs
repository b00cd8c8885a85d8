//! PURE: the plan for one role's trust policy — from IAM's current document and what the
//! cluster wants ([`RoleDesired`]), the document to write (if any) and its [`Outcome`].
//!
//! # When no statement is left
//! IAM refuses a trust policy without statements. When our statement was the role's only one
//! and its last subject goes, the statement is replaced by [`PLACEHOLDER_SID`], a `Deny` of
//! `sts:AssumeRole` to every AWS principal: the role then trusts nobody, which is what
//! "unbind" means, and keeping our last statement would leave a removed ServiceAccount able to
//! assume the role. The placeholder is ours: it is dropped again when subjects come back.

use serde_json::json;

use crate::policy::desired::RoleDesired;
use crate::policy::report::Outcome;
use crate::trust::{self, CompileInput, Compiled, PodIdentityInput, PolicyDocument, Refusal};

/// Sid of the statement written when our last subject goes and nothing else is left.
pub const PLACEHOLDER_SID: &str = "IrsaNoSubjects";

/// What the plan needs to know about this cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings<'a> {
    /// The issuer URL, exactly as tokens carry it.
    pub issuer: &'a str,
    /// This issuer's IAM OIDC provider ARN.
    pub provider_arn: &'a str,
    /// `--trust-policy-max-chars`.
    pub max_chars: usize,
    /// `--cluster-name`: the Pod Identity statements' cluster condition.
    pub cluster: &'a str,
    /// `--pod-identity-agent-role-arn`: without it, Pod Identity statements are left as
    /// they are.
    pub pod_identity_agent: Option<&'a str>,
}

/// Why no plan could be made (nothing is written).
#[derive(Debug)]
pub enum PlanError {
    TooLarge(Refusal),
    Unparseable(String),
}

/// Strips our placeholder from `doc`; tells whether there was one.
fn without_placeholder(doc: &PolicyDocument) -> (PolicyDocument, bool) {
    let statements: Vec<serde_json::Value> = doc.statements().into_iter().cloned().collect();
    let before = statements.len();
    let kept: Vec<serde_json::Value> = statements
        .into_iter()
        .filter(|s| s.get("Sid").and_then(|v| v.as_str()) != Some(PLACEHOLDER_SID))
        .collect();
    let had = kept.len() != before;
    (doc.with_statements(kept), had)
}

fn placeholder_statement() -> serde_json::Value {
    json!({
        "Sid": PLACEHOLDER_SID,
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": "sts:AssumeRole",
    })
}

/// What one plan step decided (the document to write, if any).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub write: Option<String>,
    pub outcome: Outcome,
}

/// PURE: the plan for one role given IAM's current document and what the cluster wants.
pub fn plan(settings: &Settings<'_>, current: &str, want: &RoleDesired) -> Result<Plan, PlanError> {
    let doc = PolicyDocument::parse(current).map_err(|e| PlanError::Unparseable(e.to_string()))?;
    let (stripped, had_placeholder) = without_placeholder(&doc);
    let compiled = trust::compile(&CompileInput {
        current: Some(&stripped),
        issuer: settings.issuer,
        provider_arn: settings.provider_arn,
        desired: &want.desired,
        max_chars: settings.max_chars,
        wildcard_namespaces: &want.wildcard_namespaces,
        pod_identity: settings.pod_identity_agent.map(|agent| PodIdentityInput {
            agent_role_arn: agent,
            cluster: settings.cluster,
            desired: &want.pod_identity,
        }),
    })
    .map_err(PlanError::TooLarge)?;
    Ok(match compiled {
        Compiled::Unchanged { chars, collapsed } => {
            if had_placeholder && !stripped.statements().is_empty() {
                // Others' statements arrived next to our placeholder: it is not needed.
                let text = stripped.to_compact();
                Plan {
                    outcome: Outcome::Applied {
                        writes: 0,
                        chars: stripped.chars(),
                        collapsed,
                        hand_edited: vec![],
                    },
                    write: Some(text),
                }
            } else if had_placeholder {
                Plan {
                    write: None,
                    outcome: Outcome::NoSubjects {
                        writes: 0,
                        chars: doc.chars(),
                    },
                }
            } else {
                Plan {
                    write: None,
                    outcome: Outcome::Applied {
                        writes: 0,
                        chars,
                        collapsed,
                        hand_edited: vec![],
                    },
                }
            }
        }
        Compiled::Changed {
            document,
            chars,
            collapsed,
            hand_edited,
            ..
        } => Plan {
            write: Some(document.to_compact()),
            outcome: Outcome::Applied {
                writes: 0,
                chars,
                collapsed,
                hand_edited: hand_edited.iter().map(ToString::to_string).collect(),
            },
        },
        Compiled::NoStatementLeft { .. } => {
            let only = stripped.with_statements(vec![placeholder_statement()]);
            Plan {
                write: Some(only.to_compact()),
                outcome: Outcome::NoSubjects {
                    writes: 0,
                    chars: only.chars(),
                },
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::trust::Subject;

    const ISSUER: &str = "https://oidc.example/id/blue";
    const PROVIDER: &str = "arn:aws:iam::111122223333:oidc-provider/oidc.example/id/blue";

    fn settings() -> Settings<'static> {
        Settings {
            issuer: ISSUER,
            provider_arn: PROVIDER,
            max_chars: 2048,
            cluster: "blue",
            pod_identity_agent: None,
        }
    }

    fn want(subjects: &[&str]) -> RoleDesired {
        let set: BTreeSet<Subject> = subjects.iter().map(|s| s.parse().unwrap()).collect();
        let mut d = RoleDesired::default();
        if !set.is_empty() {
            d.desired.insert("sts.amazonaws.com".into(), set);
        }
        d
    }

    const FOREIGN: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Saml","Effect":"Allow","Principal":{"Federated":"arn:aws:iam::111122223333:saml-provider/x"},"Action":"sts:AssumeRoleWithSAML"}]}"#;

    #[test]
    fn last_subject_gone_leaves_a_deny_placeholder_then_recovers() {
        let s = settings();
        let empty = r#"{"Version":"2012-10-17","Statement":[]}"#;
        let first = plan(&s, empty, &want(&["a:b"])).unwrap();
        let with_ours = first.write.unwrap();
        // Unbind: nothing else in the policy → placeholder.
        let gone = plan(&s, &with_ours, &want(&[])).unwrap();
        assert!(matches!(gone.outcome, Outcome::NoSubjects { .. }));
        let placeholder = gone.write.unwrap();
        assert!(placeholder.contains(PLACEHOLDER_SID));
        assert!(!placeholder.contains("system:serviceaccount"));
        // Steady: nothing to write.
        assert_eq!(plan(&s, &placeholder, &want(&[])).unwrap().write, None);
        // Rebind: the placeholder goes.
        let back = plan(&s, &placeholder, &want(&["a:b"]))
            .unwrap()
            .write
            .unwrap();
        assert!(!back.contains(PLACEHOLDER_SID));
        assert!(back.contains("system:serviceaccount:a:b"));
    }

    #[test]
    fn with_foreign_statements_ours_is_simply_removed() {
        let s = settings();
        let bound = plan(&s, FOREIGN, &want(&["a:b"])).unwrap().write.unwrap();
        let unbound = plan(&s, &bound, &want(&[])).unwrap().write.unwrap();
        assert_eq!(
            PolicyDocument::parse(&unbound).unwrap(),
            PolicyDocument::parse(FOREIGN).unwrap()
        );
        // Unauthorized / nothing wanted on a role we never touched: no write.
        assert_eq!(plan(&s, FOREIGN, &want(&[])).unwrap().write, None);
    }

    #[test]
    fn over_quota_is_refused() {
        let mut s = settings();
        s.max_chars = 300;
        let many: Vec<String> = (0..40).map(|i| format!("team-a:sa-{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(matches!(
            plan(&s, FOREIGN, &want(&refs)),
            Err(PlanError::TooLarge(_))
        ));
    }
}
