//! Who this cluster is to IAM (docs/design.md §4.1): its service-account issuer, discovered
//! from the API server unless `--issuer-url` names it, and the account and partition the
//! controller's credentials belong to, which STS tells.

use crate::aws::{Aws, CallObserver, Error};
use crate::issuer::IssuerUrl;
use crate::issuer::discover::{self, Issuer};

/// Everything the reconcilers need to know about "this cluster" (docs/design.md §4.1): its issuer, and
/// the account and partition the controller's credentials belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterIdentity {
    pub cluster_name: String,
    pub issuer: Issuer,
    pub account: String,
    pub partition: String,
}

impl ClusterIdentity {
    /// The ARN of this cluster's OIDC provider (whether or not it exists yet).
    pub fn provider_arn(&self) -> String {
        self.issuer.url.provider_arn(&self.partition, &self.account)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("--cluster-name is empty; give this cluster a name (it tags the OIDC provider)")]
    NoClusterName,
    #[error(transparent)]
    Issuer(#[from] discover::Error),
    #[error(transparent)]
    Aws(#[from] Error),
}

/// Resolves the issuer ([`discover::issuer`]) and asks STS who we are.
pub async fn resolve<O: CallObserver>(
    client: &kube::Client,
    issuer_flag: Option<&IssuerUrl>,
    cluster_name: &str,
    aws: &Aws<O>,
) -> std::result::Result<ClusterIdentity, IdentityError> {
    if cluster_name.trim().is_empty() {
        return Err(IdentityError::NoClusterName);
    }
    let issuer = discover::issuer(client, issuer_flag).await?;
    // Legal but often unintended spellings (upper-case host, trailing `/`).
    for w in issuer.url.warnings() {
        tracing::warn!("{w}");
    }
    let me = aws.caller_identity().await?;
    Ok(ClusterIdentity {
        cluster_name: cluster_name.to_string(),
        issuer,
        account: me.account,
        partition: me.partition,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issuer::discover::IssuerSource;

    #[test]
    fn provider_arn_uses_partition_and_host_path() {
        let id = ClusterIdentity {
            cluster_name: "blue".into(),
            issuer: Issuer {
                url: IssuerUrl::parse("https://oidc.eks.cn-north-1.amazonaws.com.cn/id/X").unwrap(),
                source: IssuerSource::Flag,
            },
            account: "111122223333".into(),
            partition: "aws-cn".into(),
        };
        assert_eq!(
            id.provider_arn(),
            "arn:aws-cn:iam::111122223333:oidc-provider/oidc.eks.cn-north-1.amazonaws.com.cn/id/X"
        );
    }
}
