//! The status half of irsa's custom resources: the condition types and reasons the controller
//! writes, `IAMRoleBinding.status` and `PodIdentityAssociation.status`. Here rather than beside the resources' specs (the
//! irsa crate's `crd` module) because the pure status computation ([`crate::policy::status`])
//! builds them, and the specs' `CustomResource` derive needs kube.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Condition types written on `IAMRoleBinding.status.conditions` (and the first three on
/// `PodIdentityAssociation`'s).
pub mod condition {
    /// Summary: True when every other condition is True.
    pub const READY: &str = "Ready";
    /// A grant or a role tag allows this namespace/SA/role combination.
    pub const AUTHORIZED: &str = "Authorized";
    /// The role's trust policy holds exactly the subjects this binding asks for.
    pub const TRUST_POLICY_APPLIED: &str = "TrustPolicyApplied";
    /// `annotateServiceAccounts`: the listed SAs carry the role annotations.
    pub const SERVICE_ACCOUNTS_ANNOTATED: &str = "ServiceAccountsAnnotated";
}

/// `reason` values of those conditions (CamelCase, as Kubernetes requires).
pub mod reason {
    pub const TRUST_POLICY_APPLIED: &str = "TrustPolicyApplied";
    pub const GRANT_MATCHED: &str = "GrantMatched";
    pub const ROLE_TAG_MATCHED: &str = "RoleTagMatched";
    pub const NOT_AUTHORIZED: &str = "NotAuthorized";
    pub const TRUST_POLICY_TOO_LARGE: &str = "TrustPolicyTooLarge";
    pub const INVALID_ROLE_ARN: &str = "InvalidRoleArn";
    pub const ROLE_NOT_FOUND: &str = "RoleNotFound";
    pub const OIDC_PROVIDER_MISSING: &str = "OIDCProviderMissing";
    pub const IAM_ERROR: &str = "IAMError";
    pub const ANNOTATED: &str = "Annotated";
    pub const ANNOTATION_DISABLED: &str = "AnnotationDisabled";
    pub const SERVICE_ACCOUNT_NOT_FOUND: &str = "ServiceAccountNotFound";
    /// An SA already carries a different `role-arn` the controller did not write.
    pub const CONFLICT: &str = "Conflict";
    pub const RECONCILING: &str = "Reconciling";
    pub const DELETING: &str = "Deleting";
    /// The controller runs without `--pod-identity-agent-role-arn`: it writes no Pod
    /// Identity trust statement.
    pub const AGENT_ROLE_NOT_CONFIGURED: &str = "AgentRoleNotConfigured";
}

/// What the controller observed and did for one binding.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IAMRoleBindingStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, Authorized, TrustPolicyApplied, ServiceAccountsAnnotated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,

    /// The role whose trust policy holds this binding's subjects (kept until cleaned, so a
    /// changed `spec.roleArn` lets the controller clean the old role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,

    /// The IAM OIDC provider the trust statement names as `Principal.Federated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_provider_arn: Option<String>,

    /// Size of the role's trust policy, whitespace excluded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_policy_chars: Option<i64>,

    /// The trust-policy size quota the controller enforces (`--trust-policy-max-chars`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_policy_limit: Option<i64>,
}

/// What the controller observed and did for one `PodIdentityAssociation`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodIdentityAssociationStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, Authorized, TrustPolicyApplied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// `metav1.Condition` as the API server validates it, keyed by `type` so server-side apply
/// merges conditions one by one. Hand-written: k8s-openapi's `Condition` has no `JsonSchema`
/// impl without its `schemars` feature, which rebuilds the crate.
pub fn conditions_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "type": "object",
            "required": ["type", "status", "lastTransitionTime", "reason", "message"],
            "properties": {
                "type": {"type": "string", "maxLength": 316},
                "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
                "lastTransitionTime": {"type": "string", "format": "date-time"},
                "reason": {"type": "string", "maxLength": 1024, "minLength": 1},
                "message": {"type": "string", "maxLength": 32768},
            },
        },
    })
}
