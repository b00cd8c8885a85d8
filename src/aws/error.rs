//! What can go wrong talking to IAM and STS, sorted by what the caller can do about it.

use aws_sdk_iam::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{resource} does not exist ({service}:{operation}); create it or fix the reference")]
    NotFound {
        service: &'static str,
        operation: &'static str,
        resource: String,
    },
    #[error(
        "role {requested}: IAM's role of that name is {actual}; fix the roleArn's account or path \
         (the controller manages roles of the account its credentials belong to)"
    )]
    RoleMismatch { requested: String, actual: String },
    #[error(
        "{service}:{operation} on {resource} was denied: {message}; give the controller the IAM \
         policy in config/ (README: Controller: IAM permissions)"
    )]
    AccessDenied {
        service: &'static str,
        operation: &'static str,
        resource: String,
        message: String,
    },
    #[error("IAM rejected the trust policy of {resource} ({operation}): {message}")]
    MalformedPolicy {
        operation: &'static str,
        resource: String,
        message: String,
    },
    #[error(
        "{service}:{operation} on {resource} hit an IAM quota: {message}; raise the quota \
         (Service Quotas) or bind fewer subjects to it"
    )]
    LimitExceeded {
        service: &'static str,
        operation: &'static str,
        resource: String,
        message: String,
    },
    #[error("{resource} already exists ({service}:{operation})")]
    AlreadyExists {
        service: &'static str,
        operation: &'static str,
        resource: String,
    },
    #[error(
        "{service}:{operation} on {resource} is still throttled after the SDK's retries: \
         {message}; retrying later with backoff"
    )]
    Throttled {
        service: &'static str,
        operation: &'static str,
        resource: String,
        message: String,
    },
    #[error(
        "{service}:{operation} on {resource} timed out after the SDK's retries; check the network \
         path to the AWS endpoint (--aws-endpoint-url)"
    )]
    Timeout {
        service: &'static str,
        operation: &'static str,
        resource: String,
    },
    #[error(
        "could not reach AWS for {service}:{operation} on {resource}: {message}; check the \
         network path and --aws-endpoint-url"
    )]
    Transport {
        service: &'static str,
        operation: &'static str,
        resource: String,
        message: String,
    },
    #[error(
        "{service}:{operation} on {resource} failed on AWS's side ({code}): {message}; retrying \
         later with backoff"
    )]
    ServerError {
        service: &'static str,
        operation: &'static str,
        resource: String,
        code: String,
        message: String,
    },
    #[error("{service}:{operation} on {resource} failed: {code}: {message}")]
    Api {
        service: &'static str,
        operation: &'static str,
        resource: String,
        code: String,
        message: String,
    },
    #[error(
        "the trust policy of role {role} was changed by another writer after each of our {writes} \
         writes; retrying later with backoff (is a second controller or a Terraform run also \
         managing this role's statement for this issuer?)"
    )]
    Contended { role: String, writes: u32 },
    #[error("unexpected answer from {service}:{operation} on {resource}: {detail}")]
    Unexpected {
        service: &'static str,
        operation: &'static str,
        resource: String,
        detail: String,
    },
}

impl Error {
    /// The `outcome` label of `irsa_controller_iam_calls_total` and of error metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not_found",
            Error::RoleMismatch { .. } => "role_mismatch",
            Error::AccessDenied { .. } => "access_denied",
            Error::MalformedPolicy { .. } => "malformed_policy",
            Error::LimitExceeded { .. } => "limit_exceeded",
            Error::AlreadyExists { .. } => "already_exists",
            Error::Throttled { .. } => "throttled",
            Error::Timeout { .. } => "timeout",
            Error::Transport { .. } => "transport",
            Error::ServerError { .. } => "server_error",
            Error::Api { .. } => "api_error",
            Error::Contended { .. } => "contended",
            Error::Unexpected { .. } => "unexpected",
        }
    }

    /// Worth retrying later unchanged (the SDK already retried these a few times).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Throttled { .. }
                | Error::Timeout { .. }
                | Error::Transport { .. }
                | Error::ServerError { .. }
                | Error::Contended { .. }
        )
    }
}

/// Maps an SDK error to [`Error`] by what the caller can do about it.
pub(super) fn classify<E>(
    service: &'static str,
    operation: &'static str,
    resource: &str,
    err: SdkError<E>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let resource = resource.to_string();
    match &err {
        SdkError::TimeoutError(_) => {
            return Error::Timeout {
                service,
                operation,
                resource,
            };
        }
        SdkError::DispatchFailure(f) if f.is_timeout() => {
            return Error::Timeout {
                service,
                operation,
                resource,
            };
        }
        SdkError::DispatchFailure(_) => {
            return Error::Transport {
                service,
                operation,
                resource,
                message: DisplayErrorContext(&err).to_string(),
            };
        }
        _ => {}
    }
    let code = err.code().unwrap_or_default().to_string();
    let message = err.message().unwrap_or_default().to_string();
    let status = err.raw_response().map(|r| r.status().as_u16());
    match code.as_str() {
        "NoSuchEntity" => Error::NotFound {
            service,
            operation,
            resource,
        },
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" => Error::AccessDenied {
            service,
            operation,
            resource,
            message,
        },
        "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "TooManyRequests" => {
            Error::Throttled {
                service,
                operation,
                resource,
                message,
            }
        }
        "MalformedPolicyDocument" => Error::MalformedPolicy {
            operation,
            resource,
            message,
        },
        "LimitExceeded" | "PackedPolicyTooLarge" => Error::LimitExceeded {
            service,
            operation,
            resource,
            message,
        },
        "EntityAlreadyExists" => Error::AlreadyExists {
            service,
            operation,
            resource,
        },
        _ if status.is_some_and(|s| s >= 500) || code == "ServiceFailure" => Error::ServerError {
            service,
            operation,
            resource,
            code,
            message,
        },
        "" => Error::Unexpected {
            service,
            operation,
            resource,
            detail: DisplayErrorContext(&err).to_string(),
        },
        _ => Error::Api {
            service,
            operation,
            resource,
            code,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_stable_metric_labels_and_retryability() {
        let e = Error::Throttled {
            service: "iam",
            operation: "GetRole",
            resource: "role x".into(),
            message: "Rate exceeded".into(),
        };
        assert_eq!(e.metric_label(), "throttled");
        assert!(e.is_retryable());
        let e = Error::AccessDenied {
            service: "iam",
            operation: "UpdateAssumeRolePolicy",
            resource: "role arn:aws:iam::111122223333:role/app".into(),
            message: "not authorized".into(),
        };
        assert_eq!(e.metric_label(), "access_denied");
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("arn:aws:iam::111122223333:role/app"));
        assert!(e.to_string().contains("config/"));
    }
}
