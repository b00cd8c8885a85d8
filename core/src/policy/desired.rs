//! PURE: from a snapshot of the cluster (bindings, annotated ServiceAccounts, grants) and a
//! role's tags, what this cluster wants that role to trust (docs/design.md §4.3).
//!
//! Rules, decided here once so the reconcilers and the status agree:
//! - A binding is one request: it is authorized only when every ServiceAccount it lists is
//!   (by a grant or the role's tags). A partly authorized binding contributes nothing and
//!   reports which ServiceAccounts were refused — trusting half a request silently is worse
//!   than trusting none of it and saying why.
//! - A binding being deleted (`deletionTimestamp` set) contributes nothing: that is how its
//!   finalizer removes its subjects.
//! - An annotated ServiceAccount (`<prefix>/role-arn`) contributes on its own only with
//!   `--manage-annotated-serviceaccounts` and when no binding wrote that annotation (those
//!   count as the binding's, so deleting the binding removes them even before the
//!   annotation is gone).
//! - A namespace may collapse to `ns:*` only when every contributor in it was authorized by
//!   a grant with `allowNamespaceWildcardTrust` (collapsing trusts the whole namespace).
//! - A `PodIdentityAssociation` counts only when the controller knows the agent's role
//!   (`--pod-identity-agent-role-arn`), and only when grants allow its role and its
//!   `targetRoleArn` ([`pod_identity::authorize`]: role tags are not consulted, as the agent
//!   cannot read them). It asks the role to trust the agent's role for its namespace and
//!   ServiceAccount, or, with `disableSessionTags`, without tag conditions.

use std::collections::{BTreeMap, BTreeSet};

use crate::pod_identity;
use crate::policy::authz::{self, Decision, GrantSpec, Request, Via};
use crate::trust::{PodIdentityTrust, Subject};

/// The part of an `IAMRoleBinding` the decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingInfo {
    pub namespace: String,
    pub name: String,
    /// `metadata.generation`: a role report records which generation it saw, so the binding
    /// reconciler knows whether the role already reflects its latest spec.
    pub generation: i64,
    pub role_arn: String,
    pub service_accounts: Vec<String>,
    pub audience: Option<String>,
    pub deleting: bool,
    /// `status.roleArn` when it differs from the spec: the role to clean after a move.
    pub previous_role_arn: Option<String>,
}

/// A ServiceAccount carrying `<prefix>/role-arn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotatedSa {
    pub namespace: String,
    pub name: String,
    pub role_arn: String,
    pub audience: Option<String>,
    /// The binding that wrote the annotation (`irsa.dev/role-binding`), if one did.
    pub managed_by: Option<String>,
}

/// The part of a `PodIdentityAssociation` the decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssociationInfo {
    pub namespace: String,
    pub name: String,
    /// `metadata.generation`, recorded in the role report as for bindings.
    pub generation: i64,
    pub service_account: String,
    pub role_arn: String,
    pub target_role_arn: Option<String>,
    pub disable_session_tags: bool,
}

/// Everything the computation reads; built from the reflector stores (or by hand in tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub bindings: Vec<BindingInfo>,
    pub service_accounts: Vec<AnnotatedSa>,
    pub grants: Vec<(String, GrantSpec)>,
    pub associations: Vec<AssociationInfo>,
}

/// The controller settings the computation depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `--cluster-name` (matched against the role's `irsa.dev/cluster` tag).
    pub cluster: String,
    /// `--token-audience`: the audience of bindings and SAs that name none.
    pub default_audience: String,
    /// `--manage-annotated-serviceaccounts`.
    pub manage_annotated: bool,
    /// `--pod-identity-agent-role-arn`: without it, associations are not considered.
    pub pod_identity_agent: Option<String>,
}

/// `namespace/name` of a binding or ServiceAccount.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The authorization outcome of one binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every listed ServiceAccount is allowed; `via` names the grant(s) / tag.
    Authorized { via: Vec<String>, tag: bool },
    /// At least one is refused: nothing of this binding is trusted.
    Denied { reason: String },
    /// The spec cannot be turned into subjects (an invalid ServiceAccount name).
    Invalid { reason: String },
}

impl Verdict {
    pub fn is_authorized(&self) -> bool {
        matches!(self, Verdict::Authorized { .. })
    }
}

/// What this cluster wants one role to trust.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleDesired {
    /// Subjects per audience (the compiler's `desired`).
    pub desired: BTreeMap<String, BTreeSet<Subject>>,
    /// Namespaces the compiler may collapse to `ns:*`.
    pub wildcard_namespaces: BTreeSet<String>,
    /// Authorized bindings whose subjects are in `desired`, with the generation seen.
    pub bindings: BTreeMap<Key, i64>,
    /// Authorized annotated ServiceAccounts (without a binding) in `desired`.
    pub service_accounts: BTreeSet<Key>,
    /// Every non-deleting binding pointing at the role, with its verdict and generation.
    pub verdicts: BTreeMap<Key, (i64, Verdict)>,
    /// Annotated ServiceAccounts pointing at the role that were refused (for logs/events).
    pub denied_service_accounts: BTreeMap<Key, String>,
    /// What the Pod Identity agent's role should be trusted for.
    pub pod_identity: PodIdentityTrust,
    /// Every association naming the role (when the agent's role is known), with its verdict
    /// and generation.
    pub association_verdicts: BTreeMap<Key, (i64, Verdict)>,
}

impl RoleDesired {
    /// Number of (audience, subject) pairs wanted.
    pub fn subject_count(&self) -> usize {
        self.desired.values().map(BTreeSet::len).sum()
    }

    /// The audiences with at least one subject.
    pub fn audiences(&self) -> impl Iterator<Item = &str> {
        self.desired
            .iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(a, _)| a.as_str())
    }
}

/// Every role the snapshot refers to (by a live binding or an annotated SA).
pub fn roles(snapshot: &Snapshot, settings: &Settings) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = snapshot
        .bindings
        .iter()
        .flat_map(|b| {
            let current = (!b.deleting).then(|| b.role_arn.clone());
            current.into_iter().chain(b.previous_role_arn.clone())
        })
        .collect();
    if settings.manage_annotated {
        out.extend(
            snapshot
                .service_accounts
                .iter()
                .filter(|s| s.managed_by.is_none())
                .map(|s| s.role_arn.clone()),
        );
    }
    if settings.pod_identity_agent.is_some() {
        out.extend(snapshot.associations.iter().map(|a| a.role_arn.clone()));
    }
    out
}

/// Tracks, per namespace, whether every contributor there allows collapsing.
#[derive(Default)]
struct Wildcards(BTreeMap<String, bool>);

impl Wildcards {
    fn note(&mut self, namespace: &str, allowed: bool) {
        let e = self.0.entry(namespace.to_string()).or_insert(true);
        *e = *e && allowed;
    }

    fn allowed(self) -> BTreeSet<String> {
        self.0
            .into_iter()
            .filter(|(_, ok)| *ok)
            .map(|(ns, _)| ns)
            .collect()
    }
}

/// What `role_arn` should trust, given its tags (as IAM returned them with the role).
pub fn for_role(
    snapshot: &Snapshot,
    settings: &Settings,
    role_arn: &str,
    role_tags: &BTreeMap<String, String>,
) -> RoleDesired {
    let mut out = RoleDesired::default();
    let mut wildcards = Wildcards::default();
    let decide = |namespace: &str, sa: &str| {
        authz::authorize(
            &Request {
                namespace,
                service_account: sa,
                role_arn,
                cluster: &settings.cluster,
            },
            &snapshot.grants,
            role_tags,
        )
    };

    for b in snapshot
        .bindings
        .iter()
        .filter(|b| !b.deleting && b.role_arn == role_arn)
    {
        let key = Key::new(&b.namespace, &b.name);
        let audience = b
            .audience
            .clone()
            .unwrap_or_else(|| settings.default_audience.clone());
        let mut subjects = Vec::new();
        let mut invalid = Vec::new();
        for sa in &b.service_accounts {
            match Subject::new(&b.namespace, sa) {
                Ok(s) => subjects.push(s),
                Err(e) => invalid.push(e.to_string()),
            }
        }
        if !invalid.is_empty() {
            let reason = format!(
                "IAMRoleBinding {key}: {}; fix spec.serviceAccounts",
                invalid.join("; ")
            );
            out.verdicts
                .insert(key, (b.generation, Verdict::Invalid { reason }));
            continue;
        }
        let mut via = BTreeSet::new();
        let mut tag = false;
        let mut denied = Vec::new();
        let mut wildcard_ok = true;
        for s in &subjects {
            match decide(&s.namespace, &s.name) {
                Decision::Authorized {
                    via: v,
                    wildcard_allowed,
                } => {
                    wildcard_ok &= wildcard_allowed;
                    match v {
                        Via::Grant(g) => {
                            via.insert(g);
                        }
                        Via::RoleTag => tag = true,
                    }
                }
                Decision::Denied { reason } => denied.push(reason),
            }
        }
        let verdict = if denied.is_empty() {
            wildcards.note(&b.namespace, wildcard_ok);
            out.desired.entry(audience).or_default().extend(subjects);
            out.bindings.insert(key.clone(), b.generation);
            Verdict::Authorized {
                via: via.into_iter().collect(),
                tag,
            }
        } else {
            Verdict::Denied {
                reason: denied.join("; "),
            }
        };
        out.verdicts.insert(key, (b.generation, verdict));
    }

    if settings.manage_annotated {
        for sa in snapshot
            .service_accounts
            .iter()
            .filter(|s| s.managed_by.is_none() && s.role_arn == role_arn)
        {
            let key = Key::new(&sa.namespace, &sa.name);
            let Ok(subject) = Subject::new(&sa.namespace, &sa.name) else {
                continue; // the API server only stores valid names; nothing to trust otherwise
            };
            match decide(&sa.namespace, &sa.name) {
                Decision::Authorized {
                    wildcard_allowed, ..
                } => {
                    wildcards.note(&sa.namespace, wildcard_allowed);
                    let audience = sa
                        .audience
                        .clone()
                        .unwrap_or_else(|| settings.default_audience.clone());
                    out.desired.entry(audience).or_default().insert(subject);
                    out.service_accounts.insert(key);
                }
                Decision::Denied { reason } => {
                    out.denied_service_accounts.insert(key, reason);
                }
            }
        }
    }
    out.wildcard_namespaces = wildcards.allowed();
    if settings.pod_identity_agent.is_some() {
        associations_for_role(snapshot, settings, role_arn, &mut out);
    }
    out
}

/// The Pod Identity part of [`for_role`].
fn associations_for_role(
    snapshot: &Snapshot,
    settings: &Settings,
    role_arn: &str,
    out: &mut RoleDesired,
) {
    let mut wildcards = Wildcards::default();
    for a in snapshot
        .associations
        .iter()
        .filter(|a| a.role_arn == role_arn)
    {
        let key = Key::new(&a.namespace, &a.name);
        let mut roles = vec![a.role_arn.as_str()];
        roles.extend(a.target_role_arn.as_deref());
        let decision = pod_identity::authorize(
            &a.namespace,
            &a.service_account,
            &roles,
            &settings.cluster,
            &snapshot.grants,
        );
        let verdict = match decision {
            Decision::Authorized {
                via,
                wildcard_allowed,
            } => {
                let trust = &mut out.pod_identity;
                if a.disable_session_tags {
                    trust.untagged = true;
                } else {
                    wildcards.note(&a.namespace, wildcard_allowed);
                    trust
                        .service_accounts
                        .entry(a.namespace.clone())
                        .or_default()
                        .insert(a.service_account.clone());
                }
                match via {
                    Via::Grant(grant) => Verdict::Authorized {
                        via: vec![grant],
                        tag: false,
                    },
                    Via::RoleTag => Verdict::Authorized {
                        via: vec![],
                        tag: true,
                    },
                }
            }
            Decision::Denied { reason } => Verdict::Denied {
                reason: format!("PodIdentityAssociation {key}: {reason}"),
            },
        };
        out.association_verdicts
            .insert(key, (a.generation, verdict));
    }
    out.pod_identity.wildcard_namespaces = wildcards.allowed();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::binding;

    const ROLE: &str = "arn:aws:iam::111122223333:role/team-a-s3";
    const OTHER: &str = "arn:aws:iam::111122223333:role/other";
    const STS: &str = "sts.amazonaws.com";

    fn settings() -> Settings {
        Settings {
            cluster: "blue".into(),
            default_audience: STS.into(),
            manage_annotated: true,
            pod_identity_agent: None,
        }
    }

    fn sa(ns: &str, name: &str, role: &str, managed_by: Option<&str>) -> AnnotatedSa {
        AnnotatedSa {
            namespace: ns.into(),
            name: name.into(),
            role_arn: role.into(),
            audience: None,
            managed_by: managed_by.map(str::to_string),
        }
    }

    fn grant(name: &str, ns: &[&str], sas: Option<&[&str]>, wildcard: bool) -> (String, GrantSpec) {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        (
            name.into(),
            GrantSpec {
                namespaces: v(ns),
                role_arns: vec!["arn:aws:iam::111122223333:role/team-a-*".into()],
                service_accounts: sas.map(v),
                allow_namespace_wildcard_trust: wildcard,
            },
        )
    }

    fn subs(desired: &RoleDesired, aud: &str) -> Vec<String> {
        desired
            .desired
            .get(aud)
            .map(|s| {
                s.iter()
                    .map(|x| format!("{}:{}", x.namespace, x.name))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn no_tags() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    #[test]
    fn table() {
        struct Case {
            what: &'static str,
            snapshot: Snapshot,
            tags: BTreeMap<String, String>,
            want_sts: &'static [&'static str],
            want_authorized: &'static [(&'static str, bool)],
            want_wildcard: &'static [&'static str],
        }
        let tagged: BTreeMap<String, String> = [(
            authz::ALLOWED_NAMESPACES_TAG.to_string(),
            "team-b".to_string(),
        )]
        .into();
        let mut deleting = binding("team-a", "gone", ROLE, &["old"]);
        deleting.deleting = true;
        let mut other_aud = binding("team-a", "aud", ROLE, &["x"]);
        other_aud.audience = Some("vault".into());
        let cases = vec![
            Case {
                what: "granted binding contributes its SAs, sorted and deduplicated",
                snapshot: Snapshot {
                    bindings: vec![
                        binding("team-a", "b1", ROLE, &["worker", "app"]),
                        binding("team-a", "b2", ROLE, &["app"]),
                        binding("team-a", "elsewhere", OTHER, &["zzz"]),
                    ],
                    grants: vec![grant("g", &["team-a"], None, false)],
                    ..Default::default()
                },
                tags: no_tags(),
                want_sts: &["team-a:app", "team-a:worker"],
                want_authorized: &[("team-a/b1", true), ("team-a/b2", true)],
                want_wildcard: &[],
            },
            Case {
                what: "no grant, no tag: denied, contributes nothing",
                snapshot: Snapshot {
                    bindings: vec![binding("team-x", "b", ROLE, &["app"])],
                    grants: vec![grant("g", &["team-a"], None, false)],
                    ..Default::default()
                },
                tags: no_tags(),
                want_sts: &[],
                want_authorized: &[("team-x/b", false)],
                want_wildcard: &[],
            },
            Case {
                what: "one refused SA refuses the whole binding",
                snapshot: Snapshot {
                    bindings: vec![binding("team-a", "b", ROLE, &["app", "admin"])],
                    grants: vec![grant("g", &["team-a"], Some(&["app"]), false)],
                    ..Default::default()
                },
                tags: no_tags(),
                want_sts: &[],
                want_authorized: &[("team-a/b", false)],
                want_wildcard: &[],
            },
            Case {
                what: "role tag authorizes; deleting binding is dropped",
                snapshot: Snapshot {
                    bindings: vec![binding("team-b", "b", ROLE, &["app"]), deleting],
                    grants: vec![],
                    ..Default::default()
                },
                tags: tagged,
                want_sts: &["team-b:app"],
                want_authorized: &[("team-b/b", true)],
                want_wildcard: &[],
            },
            Case {
                what: "annotated SAs: own ones count, binding-managed ones only via the binding",
                snapshot: Snapshot {
                    bindings: vec![],
                    service_accounts: vec![
                        sa("team-a", "annotated", ROLE, None),
                        sa("team-a", "by-binding", ROLE, Some("deleted-binding")),
                        sa("team-z", "refused", ROLE, None),
                    ],
                    grants: vec![grant("g", &["team-a"], None, false)],
                    ..Default::default()
                },
                tags: no_tags(),
                want_sts: &["team-a:annotated"],
                want_authorized: &[],
                want_wildcard: &[],
            },
            Case {
                what: "audiences are kept apart; wildcard only where every grant allows it",
                snapshot: Snapshot {
                    bindings: vec![
                        binding("team-a", "b", ROLE, &["app"]),
                        other_aud,
                        binding("team-a-dev", "b", ROLE, &["app"]),
                    ],
                    grants: vec![
                        grant("narrow", &["team-a"], None, false),
                        grant("wide", &["team-a-*"], None, true),
                    ],
                    ..Default::default()
                },
                tags: no_tags(),
                want_sts: &["team-a:app", "team-a-dev:app"],
                want_authorized: &[
                    ("team-a/aud", true),
                    ("team-a/b", true),
                    ("team-a-dev/b", true),
                ],
                want_wildcard: &["team-a-dev"],
            },
        ];
        for c in cases {
            let d = for_role(&c.snapshot, &settings(), ROLE, &c.tags);
            assert_eq!(subs(&d, STS), c.want_sts, "{}", c.what);
            let got: Vec<(String, bool)> = d
                .verdicts
                .iter()
                .map(|(k, (_, v))| (k.to_string(), v.is_authorized()))
                .collect();
            let want: Vec<(String, bool)> = c
                .want_authorized
                .iter()
                .map(|(k, a)| (k.to_string(), *a))
                .collect();
            assert_eq!(got, want, "{}", c.what);
            let wild: Vec<&str> = d.wildcard_namespaces.iter().map(String::as_str).collect();
            assert_eq!(wild, c.want_wildcard, "{}", c.what);
            // Contributors are exactly the authorized bindings.
            assert!(
                d.bindings.keys().all(|k| d.verdicts[k].1.is_authorized()),
                "{}",
                c.what
            );
        }
    }

    #[test]
    fn denial_names_the_fix_and_audiences_split() {
        let mut b = binding("team-a", "b", ROLE, &["app"]);
        b.audience = Some("vault".into());
        let snapshot = Snapshot {
            bindings: vec![b, binding("team-q", "q", ROLE, &["app"])],
            grants: vec![grant("g", &["team-a"], None, false)],
            ..Default::default()
        };
        let d = for_role(&snapshot, &settings(), ROLE, &no_tags());
        assert_eq!(subs(&d, "vault"), ["team-a:app"]);
        assert!(subs(&d, STS).is_empty());
        let Verdict::Denied { reason } = &d.verdicts[&Key::new("team-q", "q")].1 else {
            panic!("team-q must be denied")
        };
        assert!(reason.contains("add an IAMRoleGrant"), "{reason}");
        assert_eq!(d.audiences().collect::<Vec<_>>(), ["vault"]);
        assert_eq!(d.subject_count(), 1);
    }

    #[test]
    fn unmanaged_annotations_are_ignored_when_switched_off() {
        let snapshot = Snapshot {
            service_accounts: vec![sa("team-a", "annotated", ROLE, None)],
            grants: vec![grant("g", &["team-a"], None, false)],
            ..Default::default()
        };
        let mut s = settings();
        s.manage_annotated = false;
        assert!(for_role(&snapshot, &s, ROLE, &no_tags()).desired.is_empty());
        assert!(roles(&snapshot, &s).is_empty());
        assert_eq!(roles(&snapshot, &settings()).len(), 1);
    }

    #[test]
    fn invalid_names_are_reported_not_trusted() {
        let snapshot = Snapshot {
            bindings: vec![binding("team-a", "b", ROLE, &["Bad_Name"])],
            grants: vec![grant("g", &["team-a"], None, false)],
            ..Default::default()
        };
        let d = for_role(&snapshot, &settings(), ROLE, &no_tags());
        assert!(d.desired.is_empty());
        assert!(matches!(
            d.verdicts[&Key::new("team-a", "b")].1,
            Verdict::Invalid { .. }
        ));
    }

    fn association(ns: &str, name: &str, sa: &str, role: &str) -> AssociationInfo {
        AssociationInfo {
            namespace: ns.into(),
            name: name.into(),
            generation: 3,
            service_account: sa.into(),
            role_arn: role.into(),
            target_role_arn: None,
            disable_session_tags: false,
        }
    }

    #[test]
    fn granted_associations_ask_for_the_agent_role_per_namespace() {
        let mut untagged = association("team-a-dev", "quiet", "batch", ROLE);
        untagged.disable_session_tags = true;
        let mut chained = association("team-a", "chain", "worker", ROLE);
        chained.target_role_arn = Some("arn:aws:iam::444455556666:role/shared".into());
        let snapshot = Snapshot {
            associations: vec![
                association("team-a", "web", "web", ROLE),
                association("team-a", "api", "api", ROLE),
                association("team-a-dev", "web", "web", ROLE),
                association("team-x", "web", "web", ROLE),
                association("team-a", "elsewhere", "zzz", OTHER),
                untagged,
                chained,
            ],
            grants: vec![
                grant("narrow", &["team-a"], None, false),
                grant("wide", &["team-a-*"], None, true),
            ],
            ..Default::default()
        };
        // Without the agent's role nothing of Pod Identity is considered.
        assert!(roles(&snapshot, &settings()).is_empty());
        let off = for_role(&snapshot, &settings(), ROLE, &no_tags());
        assert_eq!(off.pod_identity, PodIdentityTrust::default());
        assert!(off.association_verdicts.is_empty());

        let mut s = settings();
        s.pod_identity_agent = Some("arn:aws:iam::111122223333:role/irsa-agent".into());
        assert_eq!(roles(&snapshot, &s).len(), 2);
        let d = for_role(&snapshot, &s, ROLE, &no_tags());
        let want: BTreeMap<String, BTreeSet<String>> =
            [("team-a", vec!["api", "web"]), ("team-a-dev", vec!["web"])]
                .into_iter()
                .map(|(ns, sas)| (ns.to_string(), sas.into_iter().map(String::from).collect()))
                .collect();
        assert_eq!(d.pod_identity.service_accounts, want);
        assert!(d.pod_identity.untagged, "the association without tags");
        // The SA condition may go only where every association's grant allows it.
        assert_eq!(
            d.pod_identity.wildcard_namespaces,
            BTreeSet::from(["team-a-dev".to_string()])
        );
        let verdict = |ns: &str, name: &str| d.association_verdicts[&Key::new(ns, name)].clone();
        assert_eq!(
            verdict("team-a", "web"),
            (
                3,
                Verdict::Authorized {
                    via: vec!["narrow".into()],
                    tag: false
                }
            )
        );
        let Verdict::Denied { reason } = verdict("team-x", "web").1 else {
            panic!("team-x has no grant")
        };
        assert!(
            reason.starts_with("PodIdentityAssociation team-x/web: "),
            "{reason}"
        );
        // The target role needs a grant too; refused, it contributes nothing.
        let Verdict::Denied { reason } = verdict("team-a", "chain").1 else {
            panic!("the target role has no grant")
        };
        assert!(reason.contains("444455556666:role/shared"), "{reason}");
        assert!(!d.pod_identity.service_accounts["team-a"].contains("worker"));
        // Role tags open bindings, never associations (the agent cannot read them).
        let tagged: BTreeMap<String, String> = [(
            authz::ALLOWED_NAMESPACES_TAG.to_string(),
            "team-x".to_string(),
        )]
        .into();
        let d = for_role(&snapshot, &s, ROLE, &tagged);
        assert!(
            !d.association_verdicts[&Key::new("team-x", "web")]
                .1
                .is_authorized()
        );
        // Bindings' subjects are not mixed in.
        assert!(d.desired.is_empty());
    }
}
