//! STS: who the credentials are, and the web-identity AssumeRole a pod's SDK makes.

use aws_sdk_sts::error::ProvideErrorMetadata;

use super::error::{Error, Result, classify};
use super::{Aws, CallObserver};
use crate::arn::RoleArn;

/// Who the controller's credentials are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    pub account: String,
    /// `aws`, `aws-cn`, `aws-us-gov`, ...: the first field of the caller's ARN.
    pub partition: String,
    pub arn: String,
}

/// Temporary credentials STS handed out (their secrets are not kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumedRole {
    /// The assumed-role user's ARN (`arn:aws:sts::<account>:assumed-role/<role>/<session>`).
    pub arn: String,
    /// When the credentials expire, as STS wrote it.
    pub expires: String,
}

/// STS's refusal of a web-identity AssumeRole, verbatim: exactly what the pod's SDK gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct StsRejection {
    pub code: String,
    pub message: String,
}

impl<O: CallObserver> Aws<O> {
    /// sts:GetCallerIdentity → account and partition.
    pub async fn caller_identity(&self) -> Result<CallerIdentity> {
        const OP: &str = "GetCallerIdentity";
        let result = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| classify("sts", OP, "the controller's credentials", e))
            .and_then(|out| {
                let unexpected = |detail: &str| Error::Unexpected {
                    service: "sts",
                    operation: OP,
                    resource: "the controller's credentials".into(),
                    detail: detail.to_string(),
                };
                let arn = out.arn().ok_or_else(|| unexpected("no Arn"))?;
                let partition = arn
                    .strip_prefix("arn:")
                    .and_then(|r| r.split(':').next())
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| unexpected(&format!("Arn {arn:?} is not an ARN")))?;
                let account = out.account().ok_or_else(|| unexpected("no Account"))?;
                Ok(CallerIdentity {
                    account: account.to_string(),
                    partition: partition.to_string(),
                    arn: arn.to_string(),
                })
            });
        self.count(OP, &result);
        result
    }

    /// sts:AssumeRoleWithWebIdentity with `token` for `role`, as a pod's SDK calls it (900 s
    /// session). Not counted by the observer and not classified: the doctor shows STS's own
    /// code and message, which is what the pod would see.
    pub async fn assume_role_with_web_identity(
        &self,
        role: &RoleArn,
        token: &str,
        session_name: &str,
    ) -> std::result::Result<AssumedRole, StsRejection> {
        match self
            .sts
            .assume_role_with_web_identity()
            .role_arn(role.to_string())
            .role_session_name(session_name)
            .web_identity_token(token)
            .duration_seconds(900)
            .send()
            .await
        {
            Ok(out) => Ok(AssumedRole {
                arn: out
                    .assumed_role_user()
                    .map(|u| u.arn().to_string())
                    .unwrap_or_else(|| role.to_string()),
                expires: out
                    .credentials()
                    .map(|c| c.expiration().to_string())
                    .unwrap_or_else(|| "unknown".into()),
            }),
            Err(err) => Err(StsRejection {
                code: err.code().unwrap_or("error").to_string(),
                message: err
                    .message()
                    .map(str::to_string)
                    .unwrap_or_else(|| err.to_string()),
            }),
        }
    }
}
