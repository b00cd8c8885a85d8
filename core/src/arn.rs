//! PURE: parsing IAM role ARNs (`arn:<partition>:iam::<12 digits>:role/<path/><name>`).
//!
//! Shared by the webhook (warn on a bad annotation), the controller (which role to write) and
//! the doctor (what the user got wrong), so all three agree on what a valid role ARN is.

use std::fmt;

/// IAM's limits: a role name is at most 64 characters, a path at most 512.
const MAX_ROLE_NAME: usize = 64;
const MAX_ROLE_PATH: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoleArn {
    pub partition: String,
    pub account: String,
    /// `/` or `/some/path/`, as IAM reports it.
    pub path: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArnError {
    #[error("does not start with `arn:`")]
    NotAnArn,
    #[error("has {0} `:`-separated fields, expected arn:<partition>:iam::<account>:role/<name>")]
    WrongShape(usize),
    #[error("partition {0:?} is not an AWS partition (aws, aws-cn, aws-us-gov, ...)")]
    Partition(String),
    #[error("service {0:?} is not `iam`")]
    Service(String),
    #[error("has a region ({0:?}); IAM ARNs have none")]
    Region(String),
    #[error("account {0:?} is not 12 digits")]
    Account(String),
    #[error("resource {0:?} is not `role/<name>`")]
    NotARole(String),
    #[error(
        "role name {0:?} is empty, longer than 64 characters or has characters outside [A-Za-z0-9+=,.@_-]"
    )]
    RoleName(String),
    #[error("role path {0:?} is longer than 512 characters or has invalid characters")]
    RolePath(String),
}

impl RoleArn {
    pub fn parse(s: &str) -> Result<Self, ArnError> {
        let rest = s.strip_prefix("arn:").ok_or(ArnError::NotAnArn)?;
        let fields: Vec<&str> = rest.splitn(5, ':').collect();
        let [partition, service, region, account, resource] = fields[..] else {
            return Err(ArnError::WrongShape(fields.len() + 1));
        };
        if !is_partition(partition) {
            return Err(ArnError::Partition(partition.to_string()));
        }
        if service != "iam" {
            return Err(ArnError::Service(service.to_string()));
        }
        if !region.is_empty() {
            return Err(ArnError::Region(region.to_string()));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ArnError::Account(account.to_string()));
        }
        let path_and_name = resource
            .strip_prefix("role/")
            .ok_or_else(|| ArnError::NotARole(resource.to_string()))?;
        let (path, name) = match path_and_name.rsplit_once('/') {
            Some((dir, name)) => (format!("/{dir}/"), name),
            None => ("/".to_string(), path_and_name),
        };
        if name.is_empty() || name.len() > MAX_ROLE_NAME || !name.bytes().all(is_name_byte) {
            return Err(ArnError::RoleName(name.to_string()));
        }
        if path.len() > MAX_ROLE_PATH
            || path.contains("//")
            || !path.bytes().all(|b| b == b'/' || is_name_byte(b))
        {
            return Err(ArnError::RolePath(path));
        }
        Ok(Self {
            partition: partition.to_string(),
            account: account.to_string(),
            path,
            name: name.to_string(),
        })
    }
}

impl fmt::Display for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:iam::{}:role{}{}",
            self.partition, self.account, self.path, self.name
        )
    }
}

impl std::str::FromStr for RoleArn {
    type Err = ArnError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn is_partition(p: &str) -> bool {
    p == "aws"
        || p.strip_prefix("aws-").is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .split('-')
                    .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        })
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b)
}

/// The JSON-schema pattern the CRDs use for `roleArn` (same rules as [`RoleArn::parse`],
/// minus the length limits, which the API server cannot express in one regex cheaply).
pub const ROLE_ARN_PATTERN: &str =
    r"^arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/([A-Za-z0-9+=,.@_-]+/)*[A-Za-z0-9+=,.@_-]{1,64}$";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_pathed_roles() {
        let a = RoleArn::parse("arn:aws:iam::111122223333:role/app").unwrap();
        assert_eq!(
            (
                a.partition.as_str(),
                a.account.as_str(),
                a.path.as_str(),
                a.name.as_str()
            ),
            ("aws", "111122223333", "/", "app")
        );
        let b = RoleArn::parse("arn:aws-us-gov:iam::111122223333:role/team/a/s3-reader").unwrap();
        assert_eq!(
            (b.path.as_str(), b.name.as_str()),
            ("/team/a/", "s3-reader")
        );
        assert_eq!(
            b.to_string(),
            "arn:aws-us-gov:iam::111122223333:role/team/a/s3-reader"
        );
    }

    #[test]
    fn rejects_what_iam_rejects() {
        let cases = [
            ("role/app", ArnError::NotAnArn),
            ("arn:aws:iam::111122223333", ArnError::WrongShape(5)),
            (
                "arn:gcp:iam::111122223333:role/app",
                ArnError::Partition("gcp".into()),
            ),
            (
                "arn:aws:s3::111122223333:role/app",
                ArnError::Service("s3".into()),
            ),
            (
                "arn:aws:iam:eu-west-1:111122223333:role/app",
                ArnError::Region("eu-west-1".into()),
            ),
            (
                "arn:aws:iam::11112222333:role/app",
                ArnError::Account("11112222333".into()),
            ),
            (
                "arn:aws:iam::111122223333:user/app",
                ArnError::NotARole("user/app".into()),
            ),
            (
                "arn:aws:iam::111122223333:role/",
                ArnError::RoleName("".into()),
            ),
            (
                "arn:aws:iam::111122223333:role/a b",
                ArnError::RoleName("a b".into()),
            ),
            (
                "arn:aws:iam::111122223333:role/a//b",
                ArnError::RolePath("/a//".into()),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(RoleArn::parse(input), Err(want), "{input}");
        }
        let long = format!("arn:aws:iam::111122223333:role/{}", "x".repeat(65));
        assert!(matches!(RoleArn::parse(&long), Err(ArnError::RoleName(_))));
    }
}
