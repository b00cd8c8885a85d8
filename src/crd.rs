//! IAMRoleBinding / IAMRoleGrant / PodIdentityAssociation custom resources (group `irsa.dev`, version `v1alpha1`).
//!
//! The schema carries every check the API server can make on its own (ARN pattern, non-empty
//! and unique ServiceAccount names, CEL rules), so a typo is refused at `kubectl apply` time;
//! everything else (authorization, IAM state, quota) is reported in `status`, never by a crash.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use irsa_core::crd_status::conditions_schema;
pub use irsa_core::crd_status::{
    IAMRoleBindingStatus, PodIdentityAssociationStatus, condition, reason,
};

use irsa_core::pod_identity::{
    MAX_SESSION_NAME, MAX_TAG_KEY, MAX_TAG_VALUE, SESSION_NAME_TEMPLATE_PATTERN,
};

use crate::{
    arn::ROLE_ARN_PATTERN,
    controller::policy::authz::GrantSpec,
    mutate::config::{MAX_EXPIRATION, MIN_EXPIRATION},
};

pub const GROUP: &str = "irsa.dev";
pub const VERSION: &str = "v1alpha1";
/// The finalizer the controller puts on bindings so it can clean the trust policy first.
pub const FINALIZER: &str = "irsa.dev/trust-policy";

/// A ServiceAccount name as Kubernetes validates it (a DNS-1123 subdomain, at most 253
/// characters). Deliberately not the stricter DNS label: the API server accepts dotted
/// ServiceAccount names, and a binding must be able to name every SA that can exist.
pub const SERVICE_ACCOUNT_NAME_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// These ServiceAccounts of this namespace may assume this role.
// clippy reads the repeated `type_` of kube's printcolumn(...) entries as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "irsa.dev",
    version = "v1alpha1",
    kind = "IAMRoleBinding",
    plural = "iamrolebindings",
    singular = "iamrolebinding",
    shortname = "irb",
    category = "irsa",
    namespaced,
    status = "IAMRoleBindingStatus",
    derive = "PartialEq",
    doc = "Lets the listed ServiceAccounts of this namespace assume an IAM role: the controller adds them to the role's trust policy (when an IAMRoleGrant or the role's tags allow it).",
    printcolumn(name = "Role", type_ = "string", json_path = ".spec.roleArn"),
    printcolumn(
        name = "ServiceAccounts",
        type_ = "string",
        json_path = ".spec.serviceAccounts"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.annotateServiceAccounts || (!has(self.stsRegionalEndpoints) && !has(self.tokenExpirationSeconds))",
        "message": "stsRegionalEndpoints and tokenExpirationSeconds are written as ServiceAccount annotations: they need annotateServiceAccounts: true"
    }
]))]
pub struct IAMRoleBindingSpec {
    /// The IAM role, `arn:<partition>:iam::<account>:role/<path/><name>`.
    #[schemars(schema_with = "role_arn_schema")]
    pub role_arn: String,

    /// Names of ServiceAccounts in this namespace (at least one, no duplicates).
    #[schemars(schema_with = "service_account_names_schema")]
    pub service_accounts: Vec<String>,

    /// Token audience trusted for these ServiceAccounts (default: the controller's
    /// `--token-audience`, normally `sts.amazonaws.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub audience: Option<String>,

    /// Write `<prefix>/role-arn` (and the optional annotations below) on the listed
    /// ServiceAccounts so the webhook injects credentials into their pods.
    #[serde(default = "default_true")]
    pub annotate_service_accounts: bool,

    /// Written as the `<prefix>/sts-regional-endpoints` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts_regional_endpoints: Option<bool>,

    /// Written as the `<prefix>/token-expiration` annotation (seconds, at least 600 and at
    /// most 2^32, the bounds the webhook and the API server accept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = MIN_EXPIRATION, max = MAX_EXPIRATION))]
    pub token_expiration_seconds: Option<i64>,
}

fn default_true() -> bool {
    true
}

/// Who may bind what: the controller trusts a subject only if a grant (or the role's
/// `irsa.dev/allowed-namespaces` tag) allows it. Default deny.
// clippy reads the repeated `type_` of kube's printcolumn(...) entries as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "irsa.dev",
    version = "v1alpha1",
    kind = "IAMRoleGrant",
    plural = "iamrolegrants",
    singular = "iamrolegrant",
    category = "irsa",
    status = "IAMRoleGrantStatus",
    derive = "PartialEq",
    doc = "Allows IAMRoleBindings and annotated ServiceAccounts in matching namespaces to be trusted by matching IAM roles. Cluster-scoped: editing a role's trust policy is a privilege.",
    printcolumn(name = "Namespaces", type_ = "string", json_path = ".spec.namespaces"),
    printcolumn(name = "Roles", type_ = "string", json_path = ".spec.roleArns"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct IAMRoleGrantSpec {
    /// Namespace globs (`team-a`, `team-a-*`).
    #[schemars(schema_with = "glob_list_schema")]
    pub namespaces: Vec<String>,

    /// Role ARN globs (`arn:aws:iam::111122223333:role/team-a-*`).
    #[schemars(schema_with = "role_arn_glob_list_schema")]
    pub role_arns: Vec<String>,

    /// ServiceAccount name globs (default: every ServiceAccount, `*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_glob_list_schema")]
    pub service_accounts: Option<Vec<String>>,

    /// May the trust compiler collapse a namespace's subjects to
    /// `system:serviceaccount:<ns>:*` when the policy would exceed its size quota?
    #[serde(default)]
    pub allow_namespace_wildcard_trust: bool,
}

/// What the pure authorization reads of a grant.
impl From<&IAMRoleGrantSpec> for GrantSpec {
    fn from(g: &IAMRoleGrantSpec) -> Self {
        Self {
            namespaces: g.namespaces.clone(),
            role_arns: g.role_arns.clone(),
            service_accounts: g.service_accounts.clone(),
            allow_namespace_wildcard_trust: g.allow_namespace_wildcard_trust,
        }
    }
}

/// This namespace's ServiceAccount gets this role through `irsa agent` (Pod Identity).
// clippy reads the repeated `type_` of kube's printcolumn(...) entries as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "irsa.dev",
    version = "v1alpha1",
    kind = "PodIdentityAssociation",
    plural = "podidentityassociations",
    singular = "podidentityassociation",
    shortname = "pia",
    category = "irsa",
    namespaced,
    status = "PodIdentityAssociationStatus",
    derive = "PartialEq",
    doc = "Pods of this namespace running as the ServiceAccount get credentials for the role from `irsa agent`, the node-local container-credentials endpoint (when an IAMRoleGrant allows the role for the namespace).",
    printcolumn(
        name = "ServiceAccount",
        type_ = "string",
        json_path = ".spec.serviceAccountName"
    ),
    printcolumn(name = "Role", type_ = "string", json_path = ".spec.roleArn"),
    printcolumn(name = "Target", type_ = "string", json_path = ".spec.targetRoleArn"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.targetRoleArn) || self.targetRoleArn != self.roleArn",
        "message": "targetRoleArn is the role assumed with roleArn's credentials; it must differ from roleArn (leave it out to use roleArn directly)"
    },
    {
        "rule": "!(has(self.disableSessionTags) && self.disableSessionTags && has(self.sessionTags) && size(self.sessionTags) > 0)",
        "message": "sessionTags are added to the agent's session tags; they cannot be set with disableSessionTags: true"
    }
]))]
pub struct PodIdentityAssociationSpec {
    /// The ServiceAccount (in this namespace) whose pods get the role.
    #[schemars(schema_with = "service_account_name_schema")]
    pub service_account_name: String,

    /// The role the agent assumes with its own credentials. Its trust policy must trust the
    /// agent's role (`sts:AssumeRole` and `sts:TagSession`).
    #[schemars(schema_with = "role_arn_schema")]
    pub role_arn: String,

    /// Role chaining: assumed with `roleArn`'s credentials, and what the pod gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_role_arn_schema")]
    pub target_role_arn: Option<String>,

    /// Assume the role without session tags (the role then cannot condition on them).
    #[serde(default)]
    pub disable_session_tags: bool,

    /// Session tags added to the agent's own (`kubernetes-namespace`,
    /// `kubernetes-service-account`, `kubernetes-pod-name`, `kubernetes-pod-uid`,
    /// `irsa-cluster-name`), transitive like them; they cannot replace those.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "session_tags_schema")]
    pub session_tags: BTreeMap<String, String>,

    /// The STS session name, with placeholders `{namespace}`, `{serviceAccount}`,
    /// `{podName}`, `{podUid}` (default `{namespace}-{podName}`), cut to 64 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "session_name_template_schema")]
    pub role_session_name: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IAMRoleGrantStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

// Hand-written schemas where schemars' derive cannot say what the API server should enforce
// (list semantics, item rules) or where the type is foreign (k8s-openapi's Condition has
// no JsonSchema impl without turning on its `schemars` feature, which rebuilds the crate).
//
// Formats are CEL `matches` rules with a message rather than OpenAPI `pattern`s: for a
// `pattern` the API server can only answer "should match '<the regex>'", for a rule it
// answers with our sentence (the value and the field path are printed either way).

/// A CEL rule matching a whole string against `pattern` (RE2, the same syntax as the
/// OpenAPI `pattern`s this replaces). A raw CEL string, so backslashes pass through.
fn matches(pattern: &str) -> String {
    format!("self.matches(r'{pattern}')")
}

fn role_arn_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "maxLength": 2048,
        "x-kubernetes-validations": [{
            "rule": matches(ROLE_ARN_PATTERN),
            "message": "must be an IAM role ARN: arn:<partition>:iam::<12-digit account>:role/<optional path/><name>, e.g. arn:aws:iam::111122223333:role/app",
        }],
    })
}

fn optional_role_arn_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = role_arn_schema(generator);
    schema.insert("nullable".into(), true.into());
    schema
}

fn service_account_name_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        // No minLength: the rule refuses "" with its own message, not a second one.
        "type": "string",
        "maxLength": 253,
        "x-kubernetes-validations": [{
            "rule": matches(SERVICE_ACCOUNT_NAME_PATTERN),
            // Kubernetes' own wording for a name that is not a DNS subdomain.
            "message": "a ServiceAccount name must be a lowercase RFC 1123 subdomain: lower case alphanumeric characters, '-' or '.', starting and ending with an alphanumeric character (e.g. 'app' or 'app.v2')",
        }],
    })
}

fn service_account_names_schema(generator: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "minItems": 1,
        "maxItems": 500,
        "x-kubernetes-list-type": "set",
        "items": service_account_name_schema(generator),
    })
}

fn session_tags_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        // STS takes 50 session tags; the agent sets 5 of them.
        "maxProperties": 45,
        "additionalProperties": {"type": "string", "maxLength": MAX_TAG_VALUE},
        "x-kubernetes-validations": [
            {
                "rule": format!("self.all(k, size(k) <= {MAX_TAG_KEY})"),
                "message": format!("a session tag key has at most {MAX_TAG_KEY} characters"),
            },
            {
                "rule": "self.all(k, !k.lowerAscii().startsWith('aws:') && !(k.lowerAscii() in ['kubernetes-namespace', 'kubernetes-service-account', 'kubernetes-pod-name', 'kubernetes-pod-uid', 'irsa-cluster-name']))",
                "message": "sessionTags cannot use the aws: prefix or the agent's own tags (kubernetes-namespace, kubernetes-service-account, kubernetes-pod-name, kubernetes-pod-uid, irsa-cluster-name)",
            },
        ],
    })
}

fn session_name_template_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "nullable": true,
        "minLength": 1,
        "maxLength": 4 * MAX_SESSION_NAME,
        "x-kubernetes-validations": [{
            "rule": matches(SESSION_NAME_TEMPLATE_PATTERN),
            "message": "a session name template holds the characters STS accepts ([A-Za-z0-9_+=,.@-]) and the placeholders {namespace}, {serviceAccount}, {podName}, {podUid}",
        }],
    })
}

fn glob_items(max_len: u32) -> serde_json::Value {
    serde_json::json!({"type": "string", "minLength": 1, "maxLength": max_len})
}

fn glob_list_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "minItems": 1,
        "maxItems": 256,
        "x-kubernetes-list-type": "set",
        "items": glob_items(253),
    })
}

fn optional_glob_list_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "nullable": true,
        "minItems": 1,
        "maxItems": 256,
        "x-kubernetes-list-type": "set",
        "items": glob_items(253),
    })
}

fn role_arn_glob_list_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "minItems": 1,
        "maxItems": 256,
        "x-kubernetes-list-type": "set",
        "items": {
            "type": "string",
            "minLength": 1,
            "maxLength": 2048,
            // A glob, so only its fixed head can be checked: it must at least be a role ARN
            // shape (`arn:*` alone would let a grant hand out every role in every account).
            "x-kubernetes-validations": [{
                "rule": matches(r"^arn:[a-z*-]+:iam::[0-9*?]+:role/.+$"),
                "message": "must be an IAM role ARN or a glob of one (* and ? allowed): arn:<partition>:iam::<account>:role/<name>, e.g. arn:aws:iam::111122223333:role/team-a-*",
            }],
        },
        "x-kubernetes-validations": [{
            "rule": "self.all(a, a != 'arn:*:iam::*:role/*')",
            "message": "a grant for every role in every account is almost certainly a mistake; name the account",
        }],
    })
}

/// How a user installs the CRDs, in the messages that find them missing (the controller at
/// startup, the doctor): from a checkout, `crds/` holds nothing else `kubectl apply -f` reads
/// (its kustomization is the extension-less `Kustomization`).
pub const INSTALL_COMMAND: &str = "kubectl apply -f crds/";

/// The CRDs as one multi-document YAML, grant first (it is what an admin creates first).
/// This is `irsa crd`'s output and the content of `crds/irsa.dev.yaml`.
pub fn crds_yaml() -> Result<String, serde_saphyr::ser_error::Error> {
    use kube::CustomResourceExt;
    let mut out = String::from("# Generated by `irsa crd` (make crds). Do not edit by hand.\n");
    for crd in [
        IAMRoleGrant::crd(),
        IAMRoleBinding::crd(),
        PodIdentityAssociation::crd(),
    ] {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;
    use serde_json::json;

    use super::*;

    #[test]
    fn binding_crd_shape() {
        let crd = IAMRoleBinding::crd();
        assert_eq!(crd.spec.group, GROUP);
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["irb".to_string()]));
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, VERSION);
        assert!(v.subresources.as_ref().unwrap().status.is_some());
        let cols: Vec<_> = v
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.to_uppercase())
            .collect();
        assert_eq!(
            cols,
            ["ROLE", "SERVICEACCOUNTS", "READY", "REASON", "AGE"].map(String::from)
        );
        let schema = serde_json::to_value(&v.schema).unwrap();
        let spec = &schema["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(
            spec["properties"]["roleArn"]["x-kubernetes-validations"][0]["rule"],
            json!(format!("self.matches(r'{ROLE_ARN_PATTERN}')"))
        );
        assert_eq!(spec["properties"]["serviceAccounts"]["minItems"], json!(1));
        assert_eq!(spec["required"], json!(["roleArn", "serviceAccounts"]));
        let conditions =
            &schema["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
    }

    #[test]
    fn association_crd_shape() {
        let crd = PodIdentityAssociation::crd();
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["pia".to_string()]));
        let v = &crd.spec.versions[0];
        assert!(v.subresources.as_ref().unwrap().status.is_some());
        let schema = serde_json::to_value(&v.schema).unwrap();
        let spec = &schema["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["required"], json!(["roleArn", "serviceAccountName"]));
        assert_eq!(
            spec["x-kubernetes-validations"].as_array().unwrap().len(),
            2
        );
        let a: PodIdentityAssociation = serde_saphyr::from_str(
            "apiVersion: irsa.dev/v1alpha1\nkind: PodIdentityAssociation\nmetadata: {name: app, namespace: team-a}\nspec:\n  serviceAccountName: app\n  roleArn: arn:aws:iam::111122223333:role/team-a-app\n  sessionTags: {team: payments}\n",
        )
        .unwrap();
        assert!(!a.spec.disable_session_tags);
        assert_eq!(a.spec.session_tags["team"], "payments");
    }

    #[test]
    fn grant_is_cluster_scoped() {
        let crd = IAMRoleGrant::crd();
        assert_eq!(crd.spec.scope, "Cluster");
        assert_eq!(crd.metadata.name.as_deref(), Some("iamrolegrants.irsa.dev"));
    }

    #[test]
    fn spec_example_round_trips() {
        let yaml = r#"
apiVersion: irsa.dev/v1alpha1
kind: IAMRoleBinding
metadata: {name: s3-reader, namespace: team-a}
spec:
  roleArn: arn:aws:iam::111122223333:role/team-a-s3-reader
  serviceAccounts: [app, worker]
  audience: sts.amazonaws.com
  stsRegionalEndpoints: true
  tokenExpirationSeconds: 86400
"#;
        let b: IAMRoleBinding = serde_saphyr::from_str(yaml).unwrap();
        assert!(b.spec.annotate_service_accounts, "defaults to true");
        assert_eq!(b.spec.service_accounts, ["app", "worker"]);
        let g: IAMRoleGrant = serde_saphyr::from_str(
            "apiVersion: irsa.dev/v1alpha1\nkind: IAMRoleGrant\nmetadata: {name: team-a}\nspec:\n  namespaces: [team-a]\n  roleArns: ['arn:aws:iam::111122223333:role/team-a-*']\n",
        )
        .unwrap();
        assert_eq!(g.spec.service_accounts, None);
        assert!(!g.spec.allow_namespace_wildcard_trust);
    }

    #[test]
    fn crds_yaml_is_three_documents() {
        let yaml = crds_yaml().unwrap();
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&yaml).unwrap();
        let names: Vec<_> = docs
            .iter()
            .map(|d| d["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "iamrolegrants.irsa.dev",
                "iamrolebindings.irsa.dev",
                "podidentityassociations.irsa.dev"
            ]
        );
    }
}
