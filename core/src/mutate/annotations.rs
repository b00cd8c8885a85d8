//! Reading the ServiceAccount and Pod annotations into the settings of one mutation.
//!
//! An invalid value never crashes and never silently vanishes: it falls back to the default,
//! as the reference webhook does, and leaves a [`Warning`] naming the object, the annotation
//! and the value.

use std::collections::{BTreeMap, HashSet};

use super::{
    Annotations, ServiceAccountInfo, Warning, WarningKind,
    config::{IRSA_PREFIX, MAX_EXPIRATION, MIN_EXPIRATION, MutationConfig},
};
use crate::arn::RoleArn;

/// Everything the annotations decide for one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// Empty or absent annotation: no IRSA.
    pub role_arn: Option<String>,
    pub audience: String,
    pub regional_sts: bool,
    pub expiration: i64,
    pub region: Option<String>,
    pub session_name: Option<String>,
    pub skip_containers: HashSet<String>,
}

pub(crate) fn resolve(
    cfg: &MutationConfig,
    sa: &ServiceAccountInfo,
    pod_name: &str,
    pod_annotations: &BTreeMap<String, String>,
    warnings: &mut Vec<Warning>,
) -> Settings {
    let p = &cfg.annotation_prefix;
    let sa_ctx = Ctx {
        object: format!("ServiceAccount {}/{}", sa.namespace, sa.name),
        annotations: Source::ServiceAccount(&sa.annotations),
    };
    let pod_ctx = Ctx {
        object: format!("Pod {}/{}", sa.namespace, pod_name),
        annotations: Source::Pod(pod_annotations),
    };

    let role_arn = sa_ctx.get(&format!("{p}/role-arn")).map(str::to_string);
    if let Some(arn) = &role_arn
        && let Err(err) = RoleArn::parse(arn)
    {
        warnings.push(Warning {
            kind: WarningKind::InvalidRoleArn,
            message: format!(
                "{}: annotation {p}/role-arn={arn:?} is not a valid IAM role ARN ({err}); \
                 injecting it anyway, but AssumeRoleWithWebIdentity will fail",
                sa_ctx.object
            ),
        });
    }

    let audience = sa_ctx
        .get(&format!("{p}/audience"))
        .unwrap_or(&cfg.audience)
        .to_string();

    let regional_sts = sa_ctx.boolean(
        &format!("{p}/sts-regional-endpoints"),
        cfg.sts_regional_endpoints,
        warnings,
    );

    let key = format!("{p}/token-expiration");
    let sa_expiration = sa_ctx.seconds(
        &key,
        cfg.expiration.clamp(MIN_EXPIRATION, MAX_EXPIRATION),
        warnings,
    );
    let expiration = pod_ctx.seconds(&key, sa_expiration, warnings);

    let region = sa_ctx
        .get(&format!("{IRSA_PREFIX}/region"))
        .map(str::to_string)
        .or_else(|| cfg.region.clone().filter(|r| !r.is_empty()));
    let session_name = sa_ctx
        .get(&format!("{IRSA_PREFIX}/role-session-name"))
        .map(str::to_string);

    let skip_containers = pod_annotations
        .get(&format!("{p}/skip-containers"))
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();

    Settings {
        role_arn,
        audience,
        regional_sts,
        expiration,
        region,
        session_name,
        skip_containers,
    }
}

/// One annotated object, for lookups that report problems under its name.
struct Ctx<'a> {
    object: String,
    annotations: Source<'a>,
}

/// Where the annotations come from: the ServiceAccount's (cached) table or the pod's map.
enum Source<'a> {
    ServiceAccount(&'a Annotations),
    Pod(&'a BTreeMap<String, String>),
}

impl Ctx<'_> {
    /// The trimmed value, `None` when absent or blank.
    fn get(&self, key: &str) -> Option<&str> {
        let raw = match self.annotations {
            Source::ServiceAccount(table) => table.get(key),
            Source::Pod(map) => map.get(key).map(String::as_str),
        };
        raw.map(str::trim).filter(|v| !v.is_empty())
    }

    fn boolean(&self, key: &str, default: bool, warnings: &mut Vec<Warning>) -> bool {
        let Some(raw) = self.get(key) else {
            return default;
        };
        // Go's strconv.ParseBool, which the reference webhook uses, accepts exactly these.
        match raw {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
            "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
            _ => {
                warnings.push(Warning {
                    kind: WarningKind::InvalidBoolean,
                    message: format!(
                        "{}: annotation {key}={raw:?} is not a boolean (true/false); using {default}",
                        self.object
                    ),
                });
                default
            }
        }
    }

    /// A token lifetime in seconds, raised to the API server's minimum; one over its maximum
    /// (or not an integer) is invalid, as the API server would refuse the pod.
    fn seconds(&self, key: &str, default: i64, warnings: &mut Vec<Warning>) -> i64 {
        let Some(raw) = self.get(key) else {
            return default;
        };
        match raw.parse::<i64>() {
            Ok(n) if n <= MAX_EXPIRATION => n.max(MIN_EXPIRATION),
            Ok(_) => {
                warnings.push(Warning {
                    kind: WarningKind::InvalidExpiration,
                    message: format!(
                        "{}: annotation {key}={raw:?} is over the API server's maximum token \
                         lifetime ({MAX_EXPIRATION} seconds); using {default}",
                        self.object
                    ),
                });
                default
            }
            Err(_) => {
                warnings.push(Warning {
                    kind: WarningKind::InvalidExpiration,
                    message: format!(
                        "{}: annotation {key}={raw:?} is not an integer; using {default}",
                        self.object
                    ),
                });
                default
            }
        }
    }
}
