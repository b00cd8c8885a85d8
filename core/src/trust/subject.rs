//! Service-account subjects: `system:serviceaccount:<namespace>:<name>`.

use std::{fmt, str::FromStr};

use crate::names::{is_dns1123_label, is_dns1123_subdomain};

/// The `sub` claim prefix of every Kubernetes service-account token.
pub const SUBJECT_PREFIX: &str = "system:serviceaccount:";

/// A ServiceAccount as it appears in a token's `sub` claim. Ordered by namespace, then name,
/// which is the order subjects appear in compiled policies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subject {
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("{0:?} is not `namespace:serviceaccount` (or `system:serviceaccount:namespace:name`)")]
    Shape(String),
    #[error(
        "{0:?}: namespace {1:?} is not a Kubernetes namespace name (1-63 of a-z, 0-9, `-`, starting and ending alphanumeric)"
    )]
    Namespace(String, String),
    #[error(
        "{0:?}: {1:?} is not a ServiceAccount name (1-253 of a-z, 0-9, `-`, `.`, starting and ending alphanumeric)"
    )]
    Name(String, String),
}

impl Subject {
    /// Validates both parts as Kubernetes names. Besides catching typos, this guarantees a
    /// subject never contains `*` or `?`, so it means the same under StringEquals and
    /// StringLike (compaction relies on that).
    pub fn new(namespace: &str, name: &str) -> Result<Self, SubjectError> {
        let whole = format!("{namespace}:{name}");
        if !is_dns1123_label(namespace) {
            return Err(SubjectError::Namespace(whole, namespace.into()));
        }
        if !is_dns1123_subdomain(name) {
            return Err(SubjectError::Name(whole, name.into()));
        }
        Ok(Self {
            namespace: namespace.into(),
            name: name.into(),
        })
    }

    /// The `sub` claim value.
    pub fn sub(&self) -> String {
        format!("{SUBJECT_PREFIX}{}:{}", self.namespace, self.name)
    }

    /// The StringLike pattern trusting every ServiceAccount of a namespace.
    pub fn namespace_wildcard(namespace: &str) -> String {
        format!("{SUBJECT_PREFIX}{namespace}:*")
    }
}

impl FromStr for Subject {
    type Err = SubjectError;

    /// Accepts `ns:name` (the CLI's form) and the full `system:serviceaccount:ns:name`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let short = s.strip_prefix(SUBJECT_PREFIX).unwrap_or(s);
        match short.split_once(':') {
            Some((ns, name)) if !name.contains(':') => Self::new(ns, name),
            _ => Err(SubjectError::Shape(s.into())),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SUBJECT_PREFIX}{}:{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_short_and_full_forms() {
        let s: Subject = "team-a:app".parse().unwrap();
        assert_eq!(s.sub(), "system:serviceaccount:team-a:app");
        assert_eq!(s, "system:serviceaccount:team-a:app".parse().unwrap());
        assert_eq!(s.to_string(), s.sub());
        assert_eq!(
            "a:my.sa-1".parse::<Subject>().unwrap().name,
            "my.sa-1".to_string()
        );
    }

    #[test]
    fn rejects_non_kubernetes_names() {
        assert!(matches!(
            "app".parse::<Subject>(),
            Err(SubjectError::Shape(_))
        ));
        assert!(matches!(
            "a:b:c".parse::<Subject>(),
            Err(SubjectError::Shape(_))
        ));
        assert!(matches!(
            ":app".parse::<Subject>(),
            Err(SubjectError::Namespace(..))
        ));
        assert!(matches!(
            "Team:app".parse::<Subject>(),
            Err(SubjectError::Namespace(..))
        ));
        assert!(matches!(
            "a.b:app".parse::<Subject>(),
            Err(SubjectError::Namespace(..))
        ));
        assert!(matches!(
            "team:*".parse::<Subject>(),
            Err(SubjectError::Name(..))
        ));
        assert!(matches!(
            "team:ap?".parse::<Subject>(),
            Err(SubjectError::Name(..))
        ));
        assert!(matches!(
            "team:-x".parse::<Subject>(),
            Err(SubjectError::Name(..))
        ));
        let long = format!("{}:x", "a".repeat(64));
        assert!(matches!(
            long.parse::<Subject>(),
            Err(SubjectError::Namespace(..))
        ));
    }
}
