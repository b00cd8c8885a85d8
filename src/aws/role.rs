//! A role's trust policy: read it, write it, and converge it against a planner.

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::{debug, info};

use super::error::{Error, Result, classify};
use super::{Aws, CallObserver, tags_to_map};
use crate::arn::RoleArn;
use crate::backoff::{Backoff, Jitter};
use crate::trust::decode_policy_document;

/// A role as GetRole returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleTrust {
    pub arn: RoleArn,
    pub role_id: String,
    /// The trust policy exactly as IAM stores it (URL-decoded, never re-serialized).
    pub document: String,
    pub tags: BTreeMap<String, String>,
}

/// Bounds of [`Aws::converge_trust`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvergeOptions {
    /// Writes per call before giving up with [`Error::Contended`].
    pub max_writes: u32,
    /// The n-th rewrite waits a random time in `[0, base_backoff * 2^(n-1)]` (full jitter), so
    /// two writers that keep undoing each other drift apart instead of alternating in step.
    pub base_backoff: Duration,
}

impl ConvergeOptions {
    /// No cap of its own: `max_writes` bounds the attempts.
    fn backoff(&self) -> Backoff {
        Backoff {
            base: self.base_backoff,
            max: Duration::MAX,
            jitter: Jitter::Full,
        }
    }
}

impl Default for ConvergeOptions {
    fn default() -> Self {
        Self {
            max_writes: 4,
            base_backoff: Duration::from_millis(500),
        }
    }
}

/// What [`Aws::converge_trust`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustOutcome {
    /// UpdateAssumeRolePolicy calls made (0 when the role already matched).
    pub writes: u32,
    /// The role as last read, on which `plan` asked for no change.
    pub trust: RoleTrust,
}

impl<O: CallObserver> Aws<O> {
    /// iam:GetRole → the role's trust policy (exact text) and tags.
    pub async fn get_role_trust(&self, role: &RoleArn) -> Result<RoleTrust> {
        const OP: &str = "GetRole";
        let resource = format!("role {role}");
        let result = self
            .iam
            .get_role()
            .role_name(&role.name)
            .send()
            .await
            .map_err(|e| classify("iam", OP, &resource, e))
            .and_then(|out| {
                let unexpected = |detail: String| Error::Unexpected {
                    service: "iam",
                    operation: OP,
                    resource: resource.clone(),
                    detail,
                };
                let r = out.role().ok_or_else(|| unexpected("no Role".into()))?;
                let arn = RoleArn::parse(r.arn())
                    .map_err(|e| unexpected(format!("role ARN {:?} {e}", r.arn())))?;
                if arn != *role {
                    return Err(Error::RoleMismatch {
                        requested: role.to_string(),
                        actual: arn.to_string(),
                    });
                }
                let raw = r
                    .assume_role_policy_document()
                    .ok_or_else(|| unexpected("no AssumeRolePolicyDocument".into()))?;
                Ok(RoleTrust {
                    arn,
                    role_id: r.role_id().to_string(),
                    document: decode_policy_document(raw)
                        .map_err(|e| unexpected(format!("trust policy {e}")))?,
                    tags: tags_to_map(r.tags()),
                })
            });
        self.count(OP, &result);
        result
    }

    /// iam:ListRoleTags, all pages.
    pub async fn list_role_tags(&self, role: &RoleArn) -> Result<BTreeMap<String, String>> {
        const OP: &str = "ListRoleTags";
        let resource = format!("role {role}");
        let mut tags = BTreeMap::new();
        let mut marker: Option<String> = None;
        loop {
            let result = self
                .iam
                .list_role_tags()
                .role_name(&role.name)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| classify("iam", OP, &resource, e));
            self.count(OP, &result);
            let out = result?;
            tags.extend(tags_to_map(out.tags()));
            match out.marker() {
                Some(m) if out.is_truncated() => marker = Some(m.to_string()),
                _ => return Ok(tags),
            }
        }
    }

    /// iam:UpdateAssumeRolePolicy with `document` sent exactly as given. Callers read the role
    /// with [`Self::get_role_trust`] first, which checks the ARN (UpdateAssumeRolePolicy
    /// addresses the role by name only).
    pub async fn update_trust(&self, role: &RoleArn, document: &str) -> Result<()> {
        const OP: &str = "UpdateAssumeRolePolicy";
        let result = self
            .iam
            .update_assume_role_policy()
            .role_name(&role.name)
            .policy_document(document)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("iam", OP, &format!("role {role}"), e));
        self.count(OP, &result);
        if result.is_ok() {
            info!(%role, chars = document.len(), "updated trust policy");
        }
        result
    }

    /// Read → plan → write → read again, until `plan` is satisfied with what IAM holds.
    ///
    /// `plan` gets the role as IAM has it now and returns the document to write, `None` when
    /// nothing needs to change, or its own error (e.g. the policy would exceed the quota),
    /// which is handed back as the inner `Err` with nothing written. Every write is followed by
    /// a re-read on which `plan` must return `None`: IAM has no conditional write, so this is
    /// how another writer's interference is noticed; then the write is redone after a
    /// jittered backoff, up to `options.max_writes`, and [`Error::Contended`] after that.
    /// Another writer's change that lands between our read and our write is overwritten;
    /// reading immediately before writing keeps that window to one round trip.
    pub async fn converge_trust<E>(
        &self,
        role: &RoleArn,
        options: ConvergeOptions,
        mut plan: impl FnMut(&RoleTrust) -> std::result::Result<Option<String>, E>,
    ) -> Result<std::result::Result<TrustOutcome, E>> {
        let mut writes = 0u32;
        loop {
            let trust = self.get_role_trust(role).await?;
            let document = match plan(&trust) {
                Err(e) => return Ok(Err(e)),
                Ok(None) => return Ok(Ok(TrustOutcome { writes, trust })),
                Ok(Some(d)) => d,
            };
            if writes >= options.max_writes {
                return Err(Error::Contended {
                    role: role.to_string(),
                    writes,
                });
            }
            if writes > 0 {
                let wait = options.backoff().delay(writes);
                debug!(%role, writes, wait_ms = wait.as_millis(), "trust policy changed under us; rewriting");
                tokio::time::sleep(wait).await;
            }
            self.update_trust(role, &document).await?;
            writes += 1;
        }
    }
}
