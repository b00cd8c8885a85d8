//! PURE: may this cluster make role R trust ServiceAccount ns/sa? (docs/design.md §3.2)
//!
//! Editing a trust policy is a privilege, so the answer is "no" unless one of:
//! - an `IAMRoleGrant` (cluster-scoped, so only cluster admins write them) whose namespace,
//!   role-ARN and ServiceAccount globs all match; or
//! - the role itself opts in (IAM admins' side): tag `irsa.dev/allowed-namespaces` =
//!   comma-separated namespace globs, and, when the role also has `irsa.dev/cluster`, that tag
//!   equals this cluster's name (so one tagged role is not claimable by every cluster).
//!
//! Globs are `wildmatch`'s: `*` any run of characters, `?` one character, case-sensitive
//! (namespaces, ServiceAccount names and ARNs are case-sensitive). Denials name every check
//! that failed, since that text lands in the binding's `Authorized=False` condition.

use std::collections::BTreeMap;

use wildmatch::WildMatch;

use crate::names::CLUSTER_TAG;

/// Role tag listing the namespaces (globs, comma-separated) allowed to bind the role.
pub const ALLOWED_NAMESPACES_TAG: &str = "irsa.dev/allowed-namespaces";
/// How many non-matching grants a denial explains before summarising the rest.
const MAX_EXPLAINED_GRANTS: usize = 5;

/// The part of an `IAMRoleGrant` spec the decision needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantSpec {
    pub namespaces: Vec<String>,
    pub role_arns: Vec<String>,
    /// `None`: every ServiceAccount of the matched namespaces.
    pub service_accounts: Option<Vec<String>>,
    pub allow_namespace_wildcard_trust: bool,
}

/// Who wants to be trusted by which role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub namespace: &'a str,
    pub service_account: &'a str,
    pub role_arn: &'a str,
    /// This cluster's `--cluster-name`.
    pub cluster: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// The name of the `IAMRoleGrant` that allowed it.
    Grant(String),
    /// The role's `irsa.dev/allowed-namespaces` tag.
    RoleTag,
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Via::Grant(name) => write!(f, "IAMRoleGrant {name}"),
            Via::RoleTag => write!(f, "role tag {ALLOWED_NAMESPACES_TAG}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Authorized {
        via: Via,
        /// A matching grant lets the compiler collapse this namespace to `ns:*`.
        wildcard_allowed: bool,
    },
    Denied {
        reason: String,
    },
}

impl Decision {
    pub fn is_authorized(&self) -> bool {
        matches!(self, Decision::Authorized { .. })
    }
}

fn any_match(globs: &[String], value: &str) -> bool {
    globs.iter().any(|g| WildMatch::new(g).matches(value))
}

/// Why `grant` does not cover `req`, or `None` when it does.
fn grant_mismatch(grant: &GrantSpec, req: &Request<'_>) -> Option<String> {
    if !any_match(&grant.namespaces, req.namespace) {
        return Some(format!(
            "namespace {} not in {:?}",
            req.namespace, grant.namespaces
        ));
    }
    if !any_match(&grant.role_arns, req.role_arn) {
        return Some(format!("role not in {:?}", grant.role_arns));
    }
    match &grant.service_accounts {
        Some(sas) if !any_match(sas, req.service_account) => Some(format!(
            "ServiceAccount {} not in {sas:?}",
            req.service_account
        )),
        _ => None,
    }
}

/// Looks a tag up the way IAM treats keys: case-insensitively.
fn tag<'t>(tags: &'t BTreeMap<String, String>, key: &str) -> Option<&'t str> {
    tags.get(key)
        .or_else(|| {
            tags.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v)
        })
        .map(String::as_str)
}

/// Why the role's tags do not allow `req`, or `None` when they do.
fn tag_mismatch(tags: &BTreeMap<String, String>, req: &Request<'_>) -> Option<String> {
    let Some(allowed) = tag(tags, ALLOWED_NAMESPACES_TAG) else {
        return Some(format!("the role has no {ALLOWED_NAMESPACES_TAG} tag"));
    };
    let globs: Vec<String> = allowed
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect();
    if !any_match(&globs, req.namespace) {
        return Some(format!(
            "the role's {ALLOWED_NAMESPACES_TAG} tag ({allowed:?}) does not include namespace {}",
            req.namespace
        ));
    }
    match tag(tags, CLUSTER_TAG) {
        Some(cluster) if cluster != req.cluster => Some(format!(
            "the role's {CLUSTER_TAG} tag is {cluster:?}, this cluster is {:?}",
            req.cluster
        )),
        _ => None,
    }
}

/// The decision for `req`, given every grant (name, spec) and the role's tags (empty when the
/// role could not be read). Deterministic: grants are considered in name order, and a grant
/// that allows namespace-wildcard trust wins over one that does not.
pub fn authorize(
    req: &Request<'_>,
    grants: &[(String, GrantSpec)],
    role_tags: &BTreeMap<String, String>,
) -> Decision {
    let mut sorted: Vec<&(String, GrantSpec)> = grants.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut matching = Vec::new();
    let mut misses = Vec::new();
    for (name, spec) in sorted {
        match grant_mismatch(spec, req) {
            None => matching.push((name, spec)),
            Some(why) => misses.push(format!("{name}: {why}")),
        }
    }
    if let Some((name, spec)) = matching
        .iter()
        .find(|(_, s)| s.allow_namespace_wildcard_trust)
        .or_else(|| matching.first())
    {
        return Decision::Authorized {
            via: Via::Grant((*name).clone()),
            wildcard_allowed: spec.allow_namespace_wildcard_trust,
        };
    }
    let tag_why = match tag_mismatch(role_tags, req) {
        None => {
            return Decision::Authorized {
                via: Via::RoleTag,
                wildcard_allowed: false,
            };
        }
        Some(why) => why,
    };
    let grants_why = if misses.is_empty() {
        "no IAMRoleGrant exists".to_string()
    } else {
        let more = misses.len().saturating_sub(MAX_EXPLAINED_GRANTS);
        let mut s = format!(
            "no IAMRoleGrant matches ({})",
            misses
                .iter()
                .take(MAX_EXPLAINED_GRANTS)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        );
        if more > 0 {
            s.push_str(&format!(" and {more} more"));
        }
        s
    };
    Decision::Denied {
        reason: format!(
            "ServiceAccount {}/{} may not assume {}: {grants_why}, and {tag_why}; add an \
             IAMRoleGrant covering it, or tag the role {ALLOWED_NAMESPACES_TAG}",
            req.namespace, req.service_account, req.role_arn
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "arn:aws:iam::111122223333:role/team-a-s3";

    fn grant(ns: &[&str], roles: &[&str], sas: Option<&[&str]>, wildcard: bool) -> GrantSpec {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        GrantSpec {
            namespaces: v(ns),
            role_arns: v(roles),
            service_accounts: sas.map(v),
            allow_namespace_wildcard_trust: wildcard,
        }
    }

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req<'a>(ns: &'a str, sa: &'a str, role: &'a str) -> Request<'a> {
        Request {
            namespace: ns,
            service_account: sa,
            role_arn: role,
            cluster: "blue",
        }
    }

    fn team_a() -> (String, GrantSpec) {
        (
            "team-a".into(),
            grant(
                &["team-a", "team-a-*"],
                &["arn:aws:iam::111122223333:role/team-a-*"],
                Some(&["*"]),
                false,
            ),
        )
    }

    /// (what, request, grants, expected `(via, wildcard_allowed)` or `None` for a denial)
    type Case<'a> = (
        &'a str,
        Request<'a>,
        Vec<(String, GrantSpec)>,
        Option<(Via, bool)>,
    );

    #[test]
    fn grant_table() {
        let no_tags = BTreeMap::new();
        let cases: Vec<Case> = vec![
            (
                "exact namespace",
                req("team-a", "app", ROLE),
                vec![team_a()],
                Some((Via::Grant("team-a".into()), false)),
            ),
            (
                "namespace glob",
                req("team-a-dev", "app", ROLE),
                vec![team_a()],
                Some((Via::Grant("team-a".into()), false)),
            ),
            (
                "other namespace",
                req("team-b", "app", ROLE),
                vec![team_a()],
                None,
            ),
            (
                "glob is not a prefix match",
                req("team-ab", "app", ROLE),
                vec![team_a()],
                None,
            ),
            (
                "role outside the grant",
                req("team-a", "app", "arn:aws:iam::111122223333:role/team-b-s3"),
                vec![team_a()],
                None,
            ),
            (
                "other account",
                req("team-a", "app", "arn:aws:iam::999999999999:role/team-a-s3"),
                vec![team_a()],
                None,
            ),
            ("no grants at all", req("team-a", "app", ROLE), vec![], None),
            (
                "sa globs absent = any sa",
                req("team-a", "anything", ROLE),
                vec![("g".into(), grant(&["team-a"], &[ROLE], None, false))],
                Some((Via::Grant("g".into()), false)),
            ),
            (
                "sa not listed",
                req("team-a", "worker", ROLE),
                vec![(
                    "g".into(),
                    grant(&["team-a"], &[ROLE], Some(&["app", "web-*"]), false),
                )],
                None,
            ),
            (
                "sa glob",
                req("team-a", "web-1", ROLE),
                vec![(
                    "g".into(),
                    grant(&["team-a"], &[ROLE], Some(&["app", "web-?"]), false),
                )],
                Some((Via::Grant("g".into()), false)),
            ),
            (
                "case matters",
                req("Team-A", "app", ROLE),
                vec![team_a()],
                None,
            ),
            (
                "empty namespace list grants nothing",
                req("team-a", "app", ROLE),
                vec![("g".into(), grant(&[], &["*"], None, true))],
                None,
            ),
            (
                "wildcard grant preferred",
                req("team-a", "app", ROLE),
                vec![
                    team_a(),
                    ("z-wild".into(), grant(&["*"], &["*"], None, true)),
                ],
                Some((Via::Grant("z-wild".into()), true)),
            ),
            (
                "first grant by name when none allows wildcard",
                req("team-a", "app", ROLE),
                vec![
                    ("b".into(), grant(&["*"], &["*"], None, false)),
                    ("a".into(), grant(&["*"], &["*"], None, false)),
                ],
                Some((Via::Grant("a".into()), false)),
            ),
        ];
        for (name, r, grants, want) in cases {
            let got = authorize(&r, &grants, &no_tags);
            match (&got, want) {
                (
                    Decision::Authorized {
                        via,
                        wildcard_allowed,
                    },
                    Some((wv, ww)),
                ) => {
                    assert_eq!((via, *wildcard_allowed), (&wv, ww), "{name}");
                }
                (Decision::Denied { .. }, None) => {}
                _ => panic!("{name}: got {got:?}"),
            }
        }
    }

    #[test]
    fn role_tag_table() {
        let r = req("team-a", "app", ROLE);
        let cases: Vec<(&str, BTreeMap<String, String>, bool)> = vec![
            ("no tags", tags(&[]), false),
            ("listed", tags(&[(ALLOWED_NAMESPACES_TAG, "team-a")]), true),
            (
                "glob with spaces",
                tags(&[(ALLOWED_NAMESPACES_TAG, "infra, team-* ,x")]),
                true,
            ),
            (
                "not listed",
                tags(&[(ALLOWED_NAMESPACES_TAG, "team-b,team-c")]),
                false,
            ),
            ("empty value", tags(&[(ALLOWED_NAMESPACES_TAG, "")]), false),
            (
                "this cluster",
                tags(&[(ALLOWED_NAMESPACES_TAG, "team-a"), (CLUSTER_TAG, "blue")]),
                true,
            ),
            (
                "other cluster",
                tags(&[(ALLOWED_NAMESPACES_TAG, "team-a"), (CLUSTER_TAG, "green")]),
                false,
            ),
            (
                "key case-insensitive like IAM",
                tags(&[("IRSA.dev/Allowed-Namespaces", "team-a")]),
                true,
            ),
            (
                "cluster tag alone allows nothing",
                tags(&[(CLUSTER_TAG, "blue")]),
                false,
            ),
        ];
        for (name, t, allowed) in cases {
            let got = authorize(&r, &[], &t);
            assert_eq!(got.is_authorized(), allowed, "{name}: {got:?}");
            if allowed {
                assert_eq!(
                    got,
                    Decision::Authorized {
                        via: Via::RoleTag,
                        wildcard_allowed: false
                    },
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn a_grant_wins_over_the_role_tag() {
        let t = tags(&[(ALLOWED_NAMESPACES_TAG, "*")]);
        let got = authorize(&req("team-a", "app", ROLE), &[team_a()], &t);
        assert_eq!(
            got,
            Decision::Authorized {
                via: Via::Grant("team-a".into()),
                wildcard_allowed: false
            }
        );
    }

    #[test]
    fn denial_names_what_was_checked() {
        let t = tags(&[(ALLOWED_NAMESPACES_TAG, "team-a"), (CLUSTER_TAG, "green")]);
        let Decision::Denied { reason } = authorize(&req("team-b", "app", ROLE), &[team_a()], &t)
        else {
            panic!("expected a denial");
        };
        for needle in [
            "team-b/app",
            ROLE,
            "team-a: namespace team-b not in",
            "irsa.dev/allowed-namespaces",
            "add an IAMRoleGrant",
        ] {
            assert!(reason.contains(needle), "{needle:?} missing from {reason}");
        }
        let Decision::Denied { reason } = authorize(
            &req("team-a", "app", ROLE),
            &[],
            &tags(&[(ALLOWED_NAMESPACES_TAG, "team-a"), (CLUSTER_TAG, "green")]),
        ) else {
            panic!("expected a denial");
        };
        assert!(reason.contains("no IAMRoleGrant exists"), "{reason}");
        assert!(
            reason.contains(r#"irsa.dev/cluster tag is "green", this cluster is "blue""#),
            "{reason}"
        );
    }

    #[test]
    fn long_denials_stay_bounded() {
        let grants: Vec<(String, GrantSpec)> = (0..20)
            .map(|i| (format!("g{i:02}"), grant(&["other"], &["*"], None, false)))
            .collect();
        let Decision::Denied { reason } =
            authorize(&req("team-a", "app", ROLE), &grants, &BTreeMap::new())
        else {
            panic!("expected a denial");
        };
        assert!(
            reason.contains("g04:") && !reason.contains("g05:"),
            "{reason}"
        );
        assert!(reason.contains("and 15 more"), "{reason}");
    }
}
