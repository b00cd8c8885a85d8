//! IAM OIDC identity providers: find the one of an issuer, create it, add client IDs and
//! thumbprints. Only ever adds: a provider is never deleted, nothing is removed from one.

use std::collections::BTreeMap;

use tracing::{debug, info};

use super::error::{Error, Result, classify};
use super::{Aws, CallObserver, tags_to_map};
use crate::issuer::IssuerUrl;
use crate::names::CLUSTER_TAG;
use crate::trust::provider_host_path;

/// IAM accepts at most 5 thumbprints per provider.
const MAX_THUMBPRINTS: usize = 5;

/// An IAM OIDC identity provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcProvider {
    pub arn: String,
    /// IAM's URL: the issuer without `https://`.
    pub url: String,
    pub client_ids: Vec<String>,
    pub thumbprints: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

impl OidcProvider {
    /// Created by this controller for `cluster` (only those carry our tag).
    pub fn created_by(&self, cluster: &str) -> bool {
        self.tags.get(CLUSTER_TAG).is_some_and(|v| v == cluster)
    }
}

/// The result of looking for the provider of one issuer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderLookup {
    /// The provider whose URL is byte-for-byte the issuer's (minus `https://`).
    pub provider: Option<OidcProvider>,
    /// ARNs of providers whose URL differs only in case or a trailing `/`: almost certainly
    /// meant for this issuer, but IAM compares exactly, so tokens will not match them.
    pub near_misses: Vec<String>,
}

/// What the OIDC provider must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSpec {
    /// The issuer URL, exactly as in the tokens' `iss`.
    pub issuer: IssuerUrl,
    /// Every audience in use; added when missing, never removed.
    pub client_ids: Vec<String>,
    /// SHA-1 hex of the top CA certificate of the issuer host and of the JWKS host (see
    /// [`crate::issuer::thumbprint::issuer_thumbprints`]), those that could be computed.
    pub thumbprints: Vec<String>,
    /// `--cluster-name`, the value of the `irsa.dev/cluster` tag on a created provider.
    pub cluster: String,
}

/// What [`Aws::ensure_oidc_provider`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderOutcome {
    /// The provider as it now is in IAM.
    pub provider: OidcProvider,
    pub created: bool,
    pub added_client_ids: Vec<String>,
    pub thumbprint_updated: bool,
    pub near_misses: Vec<String>,
}

impl ProviderOutcome {
    /// How many IAM writes the ensure made (0 at steady state).
    pub fn writes(&self) -> usize {
        usize::from(self.created)
            + self.added_client_ids.len()
            + usize::from(self.thumbprint_updated)
    }
}

impl<O: CallObserver> Aws<O> {
    /// The provider for `issuer` (byte-exact URL), plus near misses.
    pub async fn find_oidc_provider(&self, issuer: &IssuerUrl) -> Result<ProviderLookup> {
        const OP: &str = "ListOpenIDConnectProviders";
        let url = issuer.host_path();
        let result = self
            .iam
            .list_open_id_connect_providers()
            .send()
            .await
            .map_err(|e| classify("iam", OP, "the account's OIDC providers", e));
        self.count(OP, &result);
        let mut exact = None;
        let mut near_misses = Vec::new();
        for arn in result?
            .open_id_connect_provider_list()
            .iter()
            .filter_map(|p| p.arn())
        {
            let Some(their_url) = provider_host_path(arn) else {
                continue;
            };
            if their_url == url {
                exact = Some(arn.to_string());
            } else if their_url
                .trim_end_matches('/')
                .eq_ignore_ascii_case(url.trim_end_matches('/'))
            {
                near_misses.push(arn.to_string());
            }
        }
        let provider = match exact {
            Some(arn) => Some(self.get_oidc_provider(&arn).await?),
            None => None,
        };
        Ok(ProviderLookup {
            provider,
            near_misses,
        })
    }

    /// iam:GetOpenIDConnectProvider.
    pub async fn get_oidc_provider(&self, arn: &str) -> Result<OidcProvider> {
        const OP: &str = "GetOpenIDConnectProvider";
        let result = self
            .iam
            .get_open_id_connect_provider()
            .open_id_connect_provider_arn(arn)
            .send()
            .await
            .map_err(|e| classify("iam", OP, &format!("OIDC provider {arn}"), e))
            .map(|out| OidcProvider {
                arn: arn.to_string(),
                url: out.url().unwrap_or_default().to_string(),
                client_ids: out.client_id_list().to_vec(),
                thumbprints: out.thumbprint_list().to_vec(),
                tags: tags_to_map(out.tags()),
            });
        self.count(OP, &result);
        result
    }

    /// iam:CreateOpenIDConnectProvider tagged `irsa.dev/cluster=<cluster>`.
    pub async fn create_oidc_provider(&self, spec: &ProviderSpec) -> Result<String> {
        const OP: &str = "CreateOpenIDConnectProvider";
        let resource = format!("OIDC provider for {}", spec.issuer);
        let tag = aws_sdk_iam::types::Tag::builder()
            .key(CLUSTER_TAG)
            .value(&spec.cluster)
            .build()
            .map_err(|e| Error::Unexpected {
                service: "iam",
                operation: OP,
                resource: resource.clone(),
                detail: e.to_string(),
            })?;
        let result = self
            .iam
            .create_open_id_connect_provider()
            .url(spec.issuer.as_str())
            .set_client_id_list(Some(sorted_unique(&spec.client_ids)))
            .set_thumbprint_list(merged_thumbprints(&[], &spec.thumbprints))
            .tags(tag)
            .send()
            .await
            .map_err(|e| classify("iam", OP, &resource, e))
            .and_then(|out| {
                out.open_id_connect_provider_arn()
                    .map(str::to_string)
                    .ok_or_else(|| Error::Unexpected {
                        service: "iam",
                        operation: OP,
                        resource: resource.clone(),
                        detail: "no OpenIDConnectProviderArn".into(),
                    })
            });
        self.count(OP, &result);
        result
    }

    /// iam:AddClientIDToOpenIDConnectProvider for each wanted ID the provider lacks; returns
    /// those added. Never removes one: others (eksctl, Terraform, humans) may rely on them.
    pub async fn add_client_ids(
        &self,
        provider: &OidcProvider,
        wanted: &[String],
    ) -> Result<Vec<String>> {
        const OP: &str = "AddClientIDToOpenIDConnectProvider";
        let mut added = Vec::new();
        for id in sorted_unique(wanted) {
            if provider.client_ids.contains(&id) {
                continue;
            }
            let result = self
                .iam
                .add_client_id_to_open_id_connect_provider()
                .open_id_connect_provider_arn(&provider.arn)
                .client_id(&id)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify("iam", OP, &format!("OIDC provider {}", provider.arn), e));
            self.count(OP, &result);
            result?;
            added.push(id);
        }
        Ok(added)
    }

    /// Puts the wanted thumbprints the provider lacks first in its list, keeping the others
    /// (up to IAM's 5): they may be pins someone else relies on. Returns the list when it
    /// wrote one.
    pub async fn update_thumbprints(
        &self,
        provider: &OidcProvider,
        wanted: &[String],
    ) -> Result<Option<Vec<String>>> {
        const OP: &str = "UpdateOpenIDConnectProviderThumbprint";
        let Some(list) = merged_thumbprints(&provider.thumbprints, wanted) else {
            return Ok(None);
        };
        let result = self
            .iam
            .update_open_id_connect_provider_thumbprint()
            .open_id_connect_provider_arn(&provider.arn)
            .set_thumbprint_list(Some(list.clone()))
            .send()
            .await
            .map(|_| Some(list))
            .map_err(|e| classify("iam", OP, &format!("OIDC provider {}", provider.arn), e));
        self.count(OP, &result);
        result
    }

    /// Makes the provider for `spec.issuer` exist with every client ID and the thumbprint.
    /// Reads first and writes only what is missing: at steady state this is two reads, zero
    /// writes. Safe to repeat after any failure: a create whose answer was lost (timeout after
    /// IAM applied it) comes back as EntityAlreadyExists and is continued as an update.
    pub async fn ensure_oidc_provider(&self, spec: &ProviderSpec) -> Result<ProviderOutcome> {
        let lookup = self.find_oidc_provider(&spec.issuer).await?;
        let (mut provider, created) = match lookup.provider {
            Some(p) => (p, false),
            None => match self.create_oidc_provider(spec).await {
                Ok(arn) => (self.get_oidc_provider(&arn).await?, true),
                Err(Error::AlreadyExists { .. }) => {
                    debug!(issuer = %spec.issuer, "provider appeared meanwhile; updating it instead");
                    let again = self.find_oidc_provider(&spec.issuer).await?;
                    match again.provider {
                        Some(p) => (p, false),
                        None => {
                            return Err(Error::Unexpected {
                                service: "iam",
                                operation: "CreateOpenIDConnectProvider",
                                resource: format!("OIDC provider for {}", spec.issuer),
                                detail: "EntityAlreadyExists, but no provider has that URL".into(),
                            });
                        }
                    }
                }
                Err(e) => return Err(e),
            },
        };
        let added_client_ids = self.add_client_ids(&provider, &spec.client_ids).await?;
        provider.client_ids.extend(added_client_ids.iter().cloned());
        let updated = self
            .update_thumbprints(&provider, &spec.thumbprints)
            .await?;
        let thumbprint_updated = updated.is_some();
        if let Some(list) = updated {
            provider.thumbprints = list;
        }
        if created {
            info!(arn = %provider.arn, "created OIDC provider");
        }
        Ok(ProviderOutcome {
            provider,
            created,
            added_client_ids,
            thumbprint_updated,
            near_misses: lookup.near_misses,
        })
    }
}

/// The provider's thumbprint list with every `wanted` one in it, or `None` when it already
/// has them all (compared without case: IAM stores what it was given). Wanted ones go first
/// so that IAM's limit of 5 drops someone else's oldest pin rather than ours.
fn merged_thumbprints(current: &[String], wanted: &[String]) -> Option<Vec<String>> {
    let has = |list: &[String], t: &str| list.iter().any(|c| c.eq_ignore_ascii_case(t));
    if wanted.iter().all(|t| has(current, t)) {
        return None;
    }
    let mut list: Vec<String> = Vec::new();
    for t in wanted.iter().chain(current) {
        if !has(&list, t) {
            list.push(t.to_ascii_lowercase());
        }
    }
    list.truncate(MAX_THUMBPRINTS);
    Some(list)
}

fn sorted_unique(ids: &[String]) -> Vec<String> {
    let mut v = ids.to_vec();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn thumbprints_are_added_first_and_never_removed_below_the_limit() {
        let (a, b, c) = ("a".repeat(40), "b".repeat(40), "c".repeat(40));
        // Nothing wanted, or all present in any case: no write.
        assert_eq!(merged_thumbprints(&strings(&[&a]), &[]), None);
        assert_eq!(
            merged_thumbprints(&strings(&[&a, &b]), &strings(&[&b.to_uppercase(), &a])),
            None
        );
        // The issuer host's and the JWKS host's, new: both first, the old pin kept.
        assert_eq!(
            merged_thumbprints(&strings(&[&c]), &strings(&[&a, &b])),
            Some(strings(&[&a, &b, &c]))
        );
        // One of two missing: added, nothing duplicated.
        assert_eq!(
            merged_thumbprints(&strings(&[&a, &c]), &strings(&[&a, &b])),
            Some(strings(&[&a, &b, &c]))
        );
        // Created with none.
        assert_eq!(merged_thumbprints(&[], &[]), None);
        // At IAM's limit the oldest foreign pin goes, never a wanted one.
        let full: Vec<String> = (0..5).map(|i| format!("{i}").repeat(40)).collect();
        let merged = merged_thumbprints(&full, &strings(&[&a, &b])).unwrap();
        assert_eq!(merged.len(), MAX_THUMBPRINTS);
        assert_eq!(&merged[..2], &strings(&[&a, &b])[..]);
        assert_eq!(&merged[2..], &full[..3]);
    }

    #[test]
    fn ownership_is_the_cluster_tag() {
        let mut p = OidcProvider {
            arn: "arn:aws:iam::123456789012:oidc-provider/x".into(),
            url: "x".into(),
            client_ids: vec![],
            thumbprints: vec![],
            tags: BTreeMap::new(),
        };
        assert!(!p.created_by("blue"));
        p.tags.insert(CLUSTER_TAG.into(), "blue".into());
        assert!(p.created_by("blue"));
        assert!(!p.created_by("green"));
    }
}
