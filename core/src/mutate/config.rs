//! What the mutation is configured with: flags (defaults shared with the CLI) and the set of
//! ServiceAccounts that use container credentials (EKS Pod Identity).

use std::collections::HashSet;

use serde::Deserialize;

pub const DEFAULT_ANNOTATION_PREFIX: &str = "eks.amazonaws.com";
/// Prefix of irsa's own extensions (`irsa.dev/region`, `irsa.dev/skip`, ...).
pub const IRSA_PREFIX: &str = "irsa.dev";
pub const DEFAULT_AUDIENCE: &str = "sts.amazonaws.com";
pub const DEFAULT_TOKEN_MOUNT_PATH: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount";
pub const DEFAULT_EXPIRATION: i64 = 86400;
/// The API server refuses projected tokens shorter than 10 minutes.
pub const MIN_EXPIRATION: i64 = 600;
/// The API server refuses projected tokens longer than 2^32 seconds (the pod fails to create).
pub const MAX_EXPIRATION: i64 = 1 << 32;
pub const TOKEN_VOLUME_NAME: &str = "aws-iam-token";
pub const TOKEN_FILE_NAME: &str = "token";

pub const DEFAULT_CC_AUDIENCE: &str = "pods.eks.amazonaws.com";
pub const DEFAULT_CC_MOUNT_PATH: &str = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount";
pub const DEFAULT_CC_VOLUME_NAME: &str = "eks-pod-identity-token";
pub const DEFAULT_CC_TOKEN_PATH: &str = "eks-pod-identity-token";
pub const DEFAULT_CC_FULL_URI: &str = "http://169.254.170.23/v1/credentials";
/// Container-credentials tokens of exactly one day are spread over [22h, 24h] so that a fleet
/// of pods started together does not refresh together (as the reference webhook does).
pub const CC_JITTER_MIN: i64 = 79200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutationConfig {
    pub annotation_prefix: String,
    pub audience: String,
    pub mount_path: String,
    pub expiration: i64,
    /// Injected as AWS_DEFAULT_REGION/AWS_REGION; an SA's `irsa.dev/region` wins.
    pub region: Option<String>,
    pub sts_regional_endpoints: bool,
    pub container_credentials: ContainerCredentialsConfig,
    /// Invalid annotations deny the pod instead of falling back with a warning.
    pub strict: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCredentialsConfig {
    pub audience: String,
    pub mount_path: String,
    pub volume_name: String,
    pub token_path: String,
    pub full_uri: String,
}

impl Default for MutationConfig {
    fn default() -> Self {
        Self {
            annotation_prefix: DEFAULT_ANNOTATION_PREFIX.into(),
            audience: DEFAULT_AUDIENCE.into(),
            mount_path: DEFAULT_TOKEN_MOUNT_PATH.into(),
            expiration: DEFAULT_EXPIRATION,
            region: None,
            sts_regional_endpoints: false,
            container_credentials: ContainerCredentialsConfig::default(),
            strict: false,
        }
    }
}

impl Default for ContainerCredentialsConfig {
    fn default() -> Self {
        Self {
            audience: DEFAULT_CC_AUDIENCE.into(),
            mount_path: DEFAULT_CC_MOUNT_PATH.into(),
            volume_name: DEFAULT_CC_VOLUME_NAME.into(),
            token_path: DEFAULT_CC_TOKEN_PATH.into(),
            full_uri: DEFAULT_CC_FULL_URI.into(),
        }
    }
}

/// Which ServiceAccounts use container credentials (Pod Identity) instead of IRSA: those of
/// the identities file ([`Identities`]), and in the webhook also those with a
/// `PodIdentityAssociation`.
pub trait ContainerCredentialsAccounts {
    fn contains(&self, namespace: &str, service_account: &str) -> bool;
}

impl ContainerCredentialsAccounts for Identities {
    fn contains(&self, namespace: &str, service_account: &str) -> bool {
        Identities::contains(self, namespace, service_account)
    }
}

/// The ServiceAccounts listed in the container-credentials identities file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identities(HashSet<(String, String)>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentitiesFile {
    identities: Vec<IdentityEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct IdentityEntry {
    namespace: String,
    service_account: String,
}

impl Identities {
    /// Parses `{"identities":[{"namespace":"ns","serviceAccount":"sa"}, ...]}`.
    pub fn parse(json: &str) -> Result<Self, serde_json::Error> {
        let file: IdentitiesFile = serde_json::from_str(json)?;
        Ok(Self(
            file.identities
                .into_iter()
                .map(|e| (e.namespace, e.service_account))
                .collect(),
        ))
    }

    pub fn from_pairs<I, S>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (S, S)>,
        S: Into<String>,
    {
        Self(
            pairs
                .into_iter()
                .map(|(ns, sa)| (ns.into(), sa.into()))
                .collect(),
        )
    }

    pub fn contains(&self, namespace: &str, service_account: &str) -> bool {
        // Allocation-free lookup would need a borrowed tuple key; the set is small and this
        // runs once per admission, so the two short Strings are not worth more machinery.
        self.0
            .contains(&(namespace.to_string(), service_account.to_string()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_file_round_trip() {
        let ids = Identities::parse(
            r#"{"identities":[{"namespace":"a","serviceAccount":"x"},{"namespace":"b","serviceAccount":"y"}]}"#,
        )
        .unwrap();
        assert_eq!(ids.len(), 2);
        assert!(ids.contains("a", "x"));
        assert!(!ids.contains("a", "y"));
    }

    #[test]
    fn identities_file_errors_are_specific() {
        let err = Identities::parse(r#"{"identities":[{"namespace":"a"}]}"#).unwrap_err();
        assert!(err.to_string().contains("serviceAccount"), "{err}");
        assert!(Identities::parse("not json").is_err());
    }
}
