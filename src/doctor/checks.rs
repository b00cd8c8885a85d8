//! PURE: each diagnosis step as a function from gathered facts to a [`Check`].
//!
//! The I/O half of the doctor fetches the facts (ServiceAccount, IAM role and providers,
//! discovery document, JWKS, a fresh token); everything that decides PASS/FAIL lives here so
//! every branch is unit-tested without a cluster or AWS.

use jsonwebtoken::{DecodingKey, Validation, jwk::JwkSet};
use serde::Deserialize;
use serde_json::Value;

pub mod pod_identity;
pub mod webhook;

use super::report::{Check, Status};
use crate::{
    arn::RoleArn,
    aws::{Error as AwsError, ProviderLookup, RoleTrust},
    crd::{IAMRoleBinding, condition},
    issuer::{DISCOVERY_PATH, document_url, issuer_host_path, retention::REFUSED_PREFIX},
    mutate::{self, Identities, MutationConfig, ServiceAccountInfo},
    trust::{Claims as IamClaims, PolicyDocument, evaluate, provider_host_path},
};

pub const STS_NO_PROVIDER: &str =
    "InvalidIdentityToken: No OpenIDConnect provider found in your account for";
pub const STS_BAD_AUDIENCE: &str = "InvalidIdentityToken: Incorrect token audience";
pub const STS_ACCESS_DENIED: &str =
    "AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity";
pub const STS_EXPIRED: &str = "ExpiredTokenException: Token expired: current date/time must be before the expiration date/time";
pub const STS_NO_KEY: &str =
    "InvalidIdentityToken: Couldn't retrieve verification key from your identity provider";
pub const STS_BAD_SIGNATURE: &str =
    "InvalidIdentityToken: The web identity token that was passed could not be validated by AWS";
/// Not an STS error: without the webhook's injection no STS call happens at all.
pub const STS_NO_WEB_IDENTITY: &str =
    "none: the SDK finds no web-identity token and falls back to the node's credentials";

/// What the ServiceAccount step learned, for the later steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaFacts {
    pub role_arn: RoleArn,
    pub audience: String,
    /// `system:serviceaccount:<ns>:<name>`, the token's `sub`.
    pub subject: String,
}

/// Step 1: the ServiceAccount exists and its annotations are valid.
pub fn service_account(
    namespace: &str,
    name: &str,
    sa: Option<&ServiceAccountInfo>,
    prefix: &str,
    default_audience: &str,
) -> (Check, Option<SaFacts>) {
    const ID: &str = "service-account";
    const TITLE: &str = "ServiceAccount";
    let Some(sa) = sa else {
        return (
            Check::fail(
                ID,
                TITLE,
                format!("ServiceAccount {namespace}/{name} does not exist"),
                format!(
                    "create it (kubectl create serviceaccount -n {namespace} {name}) or fix the pod's serviceAccountName"
                ),
            ),
            None,
        );
    };
    let key = format!("{prefix}/role-arn");
    let Some(raw) = sa
        .annotations
        .get(&key)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
    else {
        // A `role-arn` under another prefix (`eks.amazon.com/role-arn`, a typo users of the
        // reference webhook often make) looks right to a human and is ignored by the webhook.
        let misspelt = sa
            .annotations
            .iter()
            .find(|(k, _)| *k != key && k.rsplit_once('/').is_some_and(|(_, s)| s == "role-arn"));
        let check = match misspelt {
            Some((other, value)) => Check::fail(
                ID,
                TITLE,
                format!(
                    "{namespace}/{name} has {other}, which the webhook ignores: it reads {key} (prefix {prefix}), so its pods get no web-identity credentials (the SDK falls back to the node's role)"
                ),
                format!(
                    "kubectl annotate serviceaccount -n {namespace} {name} {other}- {key}={value}, then recreate its pods"
                ),
            ),
            None => Check::fail(
                ID,
                TITLE,
                format!(
                    "{namespace}/{name} has no {key} annotation, so its pods get no web-identity credentials (the SDK falls back to the node's role)"
                ),
                format!(
                    "kubectl annotate serviceaccount -n {namespace} {name} {key}=arn:aws:iam::<account>:role/<name>, or bind it with an IAMRoleBinding"
                ),
            ),
        };
        return (check.with_sts_error(STS_NO_WEB_IDENTITY), None);
    };
    let role_arn = match RoleArn::parse(raw) {
        Ok(arn) => arn,
        Err(err) => {
            return (
                Check::fail(
                    ID,
                    TITLE,
                    format!("{key}={raw:?} is not a valid IAM role ARN: {err}"),
                    format!("set {key} to arn:<partition>:iam::<12-digit account>:role/<name>"),
                )
                .with_sts_error("ValidationError: Request ARN is invalid"),
                None,
            );
        }
    };
    let audience = sa
        .annotations
        .get(&format!("{prefix}/audience"))
        .map(|a| a.trim())
        .filter(|a| !a.is_empty())
        .unwrap_or(default_audience)
        .to_string();
    let facts = SaFacts {
        role_arn,
        audience,
        subject: format!("system:serviceaccount:{namespace}:{name}"),
    };
    // The engine reports bad expiration/boolean values exactly as the webhook would.
    let cfg = MutationConfig {
        annotation_prefix: prefix.to_string(),
        ..Default::default()
    };
    let probe = serde_json::json!({"spec": {"containers": []}});
    let warnings = mutate::mutate(
        &cfg,
        &Identities::default(),
        namespace,
        sa,
        &probe,
        &mut rand::rng(),
    )
    .map(|m| m.warnings)
    .unwrap_or_default();
    let evidence = format!(
        "{namespace}/{name}: {key}={raw}, audience {}",
        facts.audience
    );
    let check = if warnings.is_empty() {
        Check::pass(ID, TITLE, evidence)
    } else {
        let messages: Vec<_> = warnings.into_iter().map(|w| w.message).collect();
        Check::warn(ID, TITLE, format!("{evidence}; {}", messages.join("; ")))
            .with_fix("fix the annotation values (the webhook falls back to defaults)")
    };
    (check, Some(facts))
}

/// For `--pod`: the pod carries what the webhook would inject today. The classic failure is a
/// pod created before its ServiceAccount was annotated (or while the webhook was down). Opted
/// out and "has no credentials" are the webhook's and the controller's own rules, so the
/// doctor never contradicts the injection or the controller's `PodNotInjected` Event.
pub fn pod_mutated(
    pod: &Value,
    namespace: &str,
    sa: &ServiceAccountInfo,
    cfg: &MutationConfig,
    identities: &Identities,
) -> Check {
    const ID: &str = "pod";
    const TITLE: &str = "Pod injected";
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>");
    // A pod that does not parse is refused by `missing_injection` below, with the reason.
    let view = mutate::Pod::deserialize(pod).unwrap_or_default();
    if let Some(label) = mutate::opted_out(view.labels()) {
        let value = view.labels().get(label).map_or("", String::as_str);
        return Check::warn(
            ID,
            TITLE,
            format!("pod {namespace}/{name} opts out of injection with label {label}={value:?}"),
        )
        .with_fix(format!(
            "remove the {label} label from the pod template if it should get credentials"
        ));
    }
    // With no role (and no Pod Identity), the webhook injects nothing: an untouched pod is
    // then "complete" without having anything, which is no reason to say PASS.
    match webhook::missing_injection(cfg, identities, namespace, sa, pod) {
        None => Check::skip(
            ID,
            TITLE,
            format!(
                "the webhook injects nothing for ServiceAccount {namespace}/{} as it is annotated now, so pod {namespace}/{name} has nothing to lack",
                sa.name
            ),
        ),
        Some(Err(err)) => Check::fail(ID, TITLE, err, "check the pod manifest"),
        Some(Ok(missing)) if missing.is_empty() => Check::pass(
            ID,
            TITLE,
            format!(
                "pod {namespace}/{name} has the token volume, mount and AWS variables in every container"
            ),
        ),
        Some(Ok(missing)) if !mutate::has_credentials(view.volume_names(), view.env_names()) => Check::fail(
            ID,
            TITLE,
            format!("pod {namespace}/{name} lacks what the webhook injects ({} missing: {}) and carries no AWS credentials", missing.len(), missing.join(", ")),
            "the pod was created before its ServiceAccount was annotated or while the webhook was unavailable: \
             recreate it (kubectl rollout restart deployment/<name>, or delete the pod)",
        )
        .with_sts_error(STS_NO_WEB_IDENTITY),
        // Credentials of some kind, yet not all of today's injection: a container added after
        // admission, a Pod Identity pod judged in IRSA mode, or variables set by hand. The
        // controller does not report such a pod, and its containers may well work.
        Some(Ok(missing)) => Check::warn(
            ID,
            TITLE,
            format!("pod {namespace}/{name} carries AWS credentials but not all the webhook injects today ({} missing: {})", missing.len(), missing.join(", ")),
        )
        .with_fix(
            "if a container lacks the variables or the mount (one added after admission by a later webhook, or the pod injected under other settings), recreate the pod (kubectl rollout restart deployment/<name>, or delete it)",
        ),
    }
}

/// The `--pod` check, its evidence completed with the controller's `PodNotInjected` Event on
/// the pod (`event`: its note, or why the Events could not be read) when the pod lacks its
/// credentials: the operator sees whether the controller noticed, and what it concluded.
pub fn with_controller_event(mut check: Check, event: Result<Option<String>, String>) -> Check {
    if check.status != Status::Fail {
        return check;
    }
    let reason = crate::names::POD_NOT_INJECTED;
    let detail = match event {
        Ok(Some(note)) => format!("the controller reported it (Event {reason}): {note}"),
        Ok(None) => format!(
            "no {reason} Event from the controller on it (its pod detection off, or not run yet)"
        ),
        Err(err) => format!("the controller's {reason} Events could not be read: {err}"),
    };
    check.evidence = format!("{}; {detail}", check.evidence);
    check
}

/// Step 5: an IAM OIDC provider exists for the exact issuer and lists the audience.
/// `lookup` is the IAM adapter's answer: the byte-exact provider and the near misses.
pub fn oidc_provider(issuer_url: &str, lookup: &ProviderLookup, audience: &str) -> Check {
    const ID: &str = "oidc-provider";
    const TITLE: &str = "OIDC provider";
    let wanted = issuer_host_path(issuer_url);
    let Some(provider) = &lookup.provider else {
        let (evidence, fix) = match lookup.near_misses.first() {
            Some(near) => (
                format!(
                    "no provider for {wanted}; {near} differs only in case or a trailing slash — IAM compares byte for byte"
                ),
                format!(
                    "create a provider for exactly https://{wanted} (or fix --issuer-url / the API server's --service-account-issuer to match)"
                ),
            ),
            None => (
                format!("no IAM OIDC provider for {wanted}"),
                format!(
                    "create it: aws iam create-open-id-connect-provider --url https://{wanted} --client-id-list {audience} (or run irsa controller with --manage-oidc-provider)"
                ),
            ),
        };
        return Check::fail(ID, TITLE, evidence, fix)
            .with_sts_error(format!("{STS_NO_PROVIDER} {issuer_url}"));
    };
    if provider.client_ids.iter().any(|c| c == audience) {
        Check::pass(
            ID,
            TITLE,
            format!("{} lists audience {audience}", provider.arn),
        )
    } else {
        Check::fail(
            ID,
            TITLE,
            format!(
                "{} client IDs are {:?}; the token's audience {audience} is not among them",
                provider.arn, provider.client_ids
            ),
            format!(
                "aws iam add-client-id-to-open-id-connect-provider --open-id-connect-provider-arn {} --client-id {audience}",
                provider.arn
            ),
        )
        .with_sts_error(STS_BAD_AUDIENCE)
    }
}

/// Why the IAMRoleBindings of a namespace could not be listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingsUnlisted {
    /// The API server does not serve them (404): irsa's CRDs are not installed.
    NotInstalled,
    /// Any other failure, as the client reported it.
    Error(String),
}

/// Step 2: the IAMRoleBindings naming this ServiceAccount, as the controller reported them.
pub fn bindings(
    namespace: &str,
    name: &str,
    role_arn: &RoleArn,
    bindings: Result<&[IAMRoleBinding], &BindingsUnlisted>,
) -> Check {
    const ID: &str = "binding";
    const TITLE: &str = "IAMRoleBinding";
    let all = match bindings {
        Ok(all) => all,
        // Without the CRDs the role can only come from the annotation, which the other steps
        // check: nothing failed, but a user who meant to use bindings learns why none counts.
        Err(BindingsUnlisted::NotInstalled) => {
            return Check::skip(
                ID,
                TITLE,
                format!(
                    "irsa's CRDs are not installed (the API server does not serve iamrolebindings.{}), so no IAMRoleBinding can list {namespace}/{name}: its role comes from the annotation alone",
                    crate::crd::GROUP
                ),
            )
            .with_fix(format!(
                "to manage the role with IAMRoleBindings, install the CRDs ({} from a checkout of irsa, or irsa crd | kubectl apply -f -) and run irsa controller",
                crate::crd::INSTALL_COMMAND
            ));
        }
        Err(BindingsUnlisted::Error(err)) => {
            return Check::skip(
                ID,
                TITLE,
                format!("cannot list IAMRoleBindings in {namespace}: {err}"),
            );
        }
    };
    let mine: Vec<&IAMRoleBinding> = all
        .iter()
        .filter(|b| b.spec.service_accounts.iter().any(|sa| sa == name))
        .collect();
    let Some(binding) = mine.first() else {
        return Check::skip(
            ID,
            TITLE,
            format!("no IAMRoleBinding lists {namespace}/{name} (annotation only)"),
        );
    };
    let binding_name = format!(
        "IAMRoleBinding {namespace}/{}",
        binding.metadata.name.as_deref().unwrap_or("")
    );
    let condition = |t: &str| {
        binding
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == t))
    };
    if let Some(c) = condition(condition::AUTHORIZED).filter(|c| c.status == "False") {
        return Check::fail(
            ID,
            TITLE,
            format!("{binding_name}: Authorized=False ({}): {}", c.reason, c.message),
            format!("ask the platform team for an IAMRoleGrant covering namespace {namespace} and {}, or an irsa.dev/allowed-namespaces tag on the role", binding.spec.role_arn),
        )
        .with_sts_error(STS_ACCESS_DENIED);
    }
    match condition(condition::READY) {
        None => Check::warn(
            ID,
            TITLE,
            format!("{binding_name} has no status yet: is irsa controller running?"),
        ),
        Some(c) if c.status == "True" => {
            let check = Check::pass(
                ID,
                TITLE,
                format!("{binding_name}: Ready ({}) {}", c.reason, c.message),
            );
            if binding.spec.role_arn != role_arn.to_string() {
                Check::warn(ID, TITLE, format!("{binding_name} binds {}, but the ServiceAccount is annotated with {role_arn}", binding.spec.role_arn))
                    .with_fix("make the binding and the annotation name the same role")
            } else {
                check
            }
        }
        Some(c) => {
            let check = Check::fail(
                ID,
                TITLE,
                format!("{binding_name}: Ready=False ({}): {}", c.reason, c.message),
                format!(
                    "kubectl describe iamrolebinding -n {namespace} {}",
                    binding.metadata.name.as_deref().unwrap_or("")
                ),
            );
            // With the trust statement written, what is left undone (a ServiceAccount
            // annotation in conflict, say) does not stop STS: the trust-policy step decides.
            match condition(condition::TRUST_POLICY_APPLIED).is_some_and(|t| t.status == "True") {
                true => check,
                false => check.with_sts_error(STS_ACCESS_DENIED),
            }
        }
    }
}

/// Step 3: the role exists and lives in the provider's account (a web-identity principal
/// can only be trusted by roles of the account that holds the provider).
pub fn role(
    role_arn: &RoleArn,
    found: Result<&RoleTrust, &AwsError>,
    provider_account: &str,
) -> Check {
    const ID: &str = "role";
    const TITLE: &str = "IAM role";
    match found {
        Err(err @ AwsError::NotFound { .. }) => Check::fail(
            ID,
            TITLE,
            format!("{role_arn}: {err}"),
            "create the role, or fix the role-arn annotation (account, path and name must match exactly)",
        )
        .with_sts_error(STS_ACCESS_DENIED),
        Err(err) => Check::warn(
            ID,
            TITLE,
            format!("could not read {role_arn} with the doctor's own AWS credentials: {err}"),
        )
        .with_fix("run the doctor with credentials allowed iam:GetRole and iam:ListOpenIDConnectProviders"),
        Ok(_) if role_arn.account != provider_account => Check::fail(
            ID,
            TITLE,
            format!(
                "{role_arn} is in account {}, the OIDC provider in {provider_account}",
                role_arn.account
            ),
            format!("create the OIDC provider in account {} too", role_arn.account),
        )
        .with_sts_error(STS_NO_PROVIDER),
        Ok(role) => Check::pass(ID, TITLE, format!("{} exists (id {})", role.arn, role.role_id)),
    }
}

/// The role's trust policy, or the trust-policy step's failure when it cannot be read.
pub fn parse_trust(document: &str) -> Result<PolicyDocument, Check> {
    PolicyDocument::parse(document).map_err(|err| {
        Check::fail(
            "trust-policy",
            "Trust policy",
            format!("the trust policy cannot be read: {err}"),
            "fix the role's trust policy JSON",
        )
        .with_sts_error(STS_ACCESS_DENIED)
    })
}

/// Step 4: IAM's verdict on the trust policy for this token's `sub` and `aud`.
pub fn trust_policy(document: &str, provider_arn: &str, sub: &str, aud: &str) -> Check {
    const ID: &str = "trust-policy";
    const TITLE: &str = "Trust policy";
    let policy = match parse_trust(document) {
        Ok(p) => p,
        Err(unreadable) => return unreadable,
    };
    let decision = evaluate(&policy, provider_arn, &IamClaims::new(sub, aud));
    if decision.allowed {
        // Named as the failure reasons name it (`#1` is the first statement), so a statement
        // has one number whether it passes or fails.
        let by = decision
            .matched_label()
            .map_or_else(|| "a statement".into(), |l| format!("statement {l}"));
        return Check::pass(ID, TITLE, format!("{by} allows {sub} with aud {aud}"));
    }
    let evidence = if decision.reasons.is_empty() {
        format!("no statement trusts {provider_arn}")
    } else {
        decision.reasons.join("; ")
    };
    let host = provider_host_path(provider_arn).unwrap_or(provider_arn);
    // The evaluator words an audience failure as "aud is <value>": that fix is elsewhere.
    let fix = if evidence.contains(&format!("aud is {aud}")) {
        format!(
            "the trust policy's {host}:aud condition must name the token's audience {aud}: fix the policy, or the ServiceAccount's audience annotation if {aud} is not what the pods should use"
        )
    } else if !names_provider(&policy, provider_arn) {
        // Adding the subject would not help: no statement is about this cluster's provider
        // (a provider ARN with a trailing slash, another cluster's, a typo).
        format!(
            "no statement trusts this cluster's provider: name {provider_arn} as Principal.Federated and use {host}:sub / {host}:aud as the condition keys (or kubectl apply an IAMRoleBinding: the controller writes the statement)"
        )
    } else {
        format!(
            "trust {sub}: kubectl apply an IAMRoleBinding for it (the controller edits the trust policy), or add it to the role's StringEquals on {host}:sub"
        )
    };
    Check::fail(ID, TITLE, evidence, fix).with_sts_error(STS_ACCESS_DENIED)
}

/// Does any statement name `provider_arn` as its federated principal (alone or in a list)?
fn names_provider(policy: &PolicyDocument, provider_arn: &str) -> bool {
    policy
        .statements()
        .iter()
        .any(|s| match s.pointer("/Principal/Federated") {
            Some(Value::String(one)) => one == provider_arn,
            Some(Value::Array(all)) => all.iter().any(|f| f.as_str() == Some(provider_arn)),
            _ => false,
        })
}

/// Step 6: the discovery document names the issuer and the JWKS holds the token's key.
pub fn issuer(
    issuer_url: &str,
    discovery: Result<&Value, &str>,
    jwks: Result<&JwkSet, &str>,
    token_kid: Option<&str>,
) -> Check {
    const ID: &str = "issuer";
    const TITLE: &str = "Issuer discovery";
    let discovery_url = document_url(issuer_url, DISCOVERY_PATH);
    let doc = match discovery {
        Ok(doc) => doc,
        Err(err) => {
            return Check::fail(
                ID,
                TITLE,
                format!("GET {discovery_url} failed: {err}"),
                "STS fetches this document over public HTTPS: publish the issuer's discovery document and JWKS (S3 bucket or public API server endpoint)",
            )
            .with_sts_error(STS_NO_KEY);
        }
    };
    let published = doc
        .get("issuer")
        .and_then(Value::as_str)
        .unwrap_or("<missing>");
    if published != issuer_url {
        return Check::fail(
            ID,
            TITLE,
            format!("discovery document says issuer {published:?}, tokens are issued by {issuer_url:?}"),
            "make the API server's --service-account-issuer and the published discovery document agree byte for byte",
        )
        .with_sts_error(STS_NO_KEY);
    }
    let keys = match jwks {
        Ok(keys) => keys,
        Err(err) => {
            let jwks_uri = doc
                .get("jwks_uri")
                .and_then(Value::as_str)
                .unwrap_or("<missing jwks_uri>");
            return Check::fail(
                ID,
                TITLE,
                format!("JWKS {jwks_uri} unusable: {err}"),
                "publish the service-account signing keys at jwks_uri",
            )
            .with_sts_error(STS_NO_KEY);
        }
    };
    match token_kid {
        Some(kid) if keys.find(kid).is_none() => Check::fail(
            ID,
            TITLE,
            format!(
                "the token's key id {kid:?} is not in the JWKS ({} keys)",
                keys.keys.len()
            ),
            "re-publish the JWKS after rotating the service-account signing key",
        )
        .with_sts_error(STS_NO_KEY),
        Some(kid) => Check::pass(
            ID,
            TITLE,
            format!("{discovery_url} names the issuer; JWKS has key {kid}"),
        ),
        None => Check::pass(
            ID,
            TITLE,
            format!(
                "{discovery_url} names the issuer; JWKS has {} key(s)",
                keys.keys.len()
            ),
        ),
    }
}

/// The id and title of the [`published_keys`] step (also when it is skipped).
pub const KEYS_ID: &str = "issuer-keys";
pub const KEYS_TITLE: &str = "Published keys";

/// What the doctor found of the issuer publisher (`irsa controller --publish-issuer`): the
/// status it keeps in its state ConfigMap (`configmap` is `namespace/name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublisherStatus {
    /// The ConfigMap holds this status (`None`: no pass has finished yet).
    Reported {
        configmap: String,
        status: Option<String>,
    },
    /// No such ConfigMap: the issuer's documents are published some other way.
    NotInUse { configmap: String },
    /// The ConfigMap could not be read (often RBAC: the doctor's user may not get it).
    Unreadable { configmap: String, error: String },
}

impl PublisherStatus {
    /// One clause for a check's evidence.
    pub fn describe(&self) -> String {
        match self {
            Self::Reported {
                configmap,
                status: Some(status),
            } => format!("the issuer publisher's status (ConfigMap {configmap}): {status}"),
            Self::Reported {
                configmap,
                status: None,
            } => format!(
                "the issuer publisher's ConfigMap {configmap} has no status yet (no pass finished)"
            ),
            Self::NotInUse { configmap } => format!(
                "no issuer publisher in use (no ConfigMap {configmap}; pass --irsa-namespace if \
                 irsa controller runs elsewhere)"
            ),
            Self::Unreadable { configmap, error } => format!(
                "the issuer publisher's status is unknown: cannot read ConfigMap {configmap} \
                 ({error})"
            ),
        }
    }

    fn refused(&self) -> bool {
        matches!(self, Self::Reported { status: Some(s), .. } if s.starts_with(REFUSED_PREFIX))
    }
}

/// Every key the API server publishes is also in the JWKS at the issuer URL. After a
/// signing-key rotation a stale public copy makes STS refuse every token the new key signs.
/// The publisher's status only explains: whether it runs or not, the keys decide.
pub fn published_keys(api: &JwkSet, public: &JwkSet, publisher: &PublisherStatus) -> Check {
    const ID: &str = KEYS_ID;
    const TITLE: &str = KEYS_TITLE;
    let missing: Vec<&str> = api
        .keys
        .iter()
        .filter_map(|k| k.common.key_id.as_deref())
        .filter(|kid| public.find(kid).is_none())
        .collect();
    if missing.is_empty() {
        let current = format!(
            "the public JWKS has every key the API server publishes ({})",
            api.keys.len()
        );
        // Current today, but the next rotation will not be published: worth a line, not a
        // warning (the public copy may rightly come from elsewhere).
        return Check::pass(
            ID,
            TITLE,
            if publisher.refused() {
                format!("{current}; {}", publisher.describe())
            } else {
                current
            },
        );
    }
    let fix = match publisher {
        _ if publisher.refused() => {
            "the publisher refuses to publish: fix what its status says (it publishes on its \
             next pass)"
        }
        PublisherStatus::Reported { .. } => {
            "check that irsa controller (--publish-issuer) runs and is the leader, and that the \
             public URL serves what it writes (a CDN may cache the old JWKS)"
        }
        PublisherStatus::NotInUse { .. } | PublisherStatus::Unreadable { .. } => {
            "re-publish the JWKS: `irsa controller --publish-issuer` keeps it in step, or upload \
             `irsa issuer render` with every --public-key"
        }
    };
    Check::fail(
        ID,
        TITLE,
        format!(
            "stale publish: the public JWKS lacks the API server's key(s) {missing:?}; tokens \
             they sign are refused; {}",
            publisher.describe()
        ),
        fix,
    )
    .with_sts_error(STS_NO_KEY)
}

/// The claims the doctor reads from a service-account token.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    #[serde(default)]
    pub sub: String,
    #[serde(default, deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    pub exp: Option<i64>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Aud {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Aud::deserialize(d)? {
        Aud::One(a) => vec![a],
        Aud::Many(a) => a,
    })
}

/// Reads a token's claims and key id without verifying anything (to know what to check).
pub fn peek(token: &str) -> Result<(Claims, Option<String>), String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| format!("not a JWT: {e}"))?;
    let claims = jsonwebtoken::dangerous::insecure_decode::<Claims>(token)
        .map_err(|e| format!("unreadable claims: {e}"))?
        .claims;
    Ok((claims, header.kid))
}

/// Step 7: the token verifies against the JWKS (signature), and its `iss`, `aud`, `exp`
/// are what STS will require. `now` is seconds since the epoch.
pub fn token(
    token: &str,
    jwks: &JwkSet,
    issuer_url: &str,
    audience: &str,
    subject: Option<&str>,
    now: i64,
) -> Check {
    const ID: &str = "token";
    const TITLE: &str = "Token";
    let (claims, kid) = match peek(token) {
        Ok(parts) => parts,
        Err(err) => {
            return Check::fail(
                ID,
                TITLE,
                err,
                "pass a service-account token (kubectl create token ...)",
            )
            .with_sts_error(STS_BAD_SIGNATURE);
        }
    };
    let key = kid
        .as_deref()
        .and_then(|k| jwks.find(k))
        .or_else(|| match jwks.keys.as_slice() {
            [only] if kid.is_none() => Some(only),
            _ => None,
        });
    let Some(jwk) = key else {
        return Check::fail(
            ID,
            TITLE,
            format!("no JWKS key for kid {kid:?}"),
            "re-publish the JWKS with the current signing key",
        )
        .with_sts_error(STS_NO_KEY);
    };
    let verified = DecodingKey::from_jwk(jwk)
        .map_err(|e| e.to_string())
        .and_then(|key| {
            let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
            // Signature only here; the claims are compared below to say exactly which is off.
            let mut v = Validation::new(header.alg);
            v.validate_exp = false;
            v.validate_aud = false;
            v.required_spec_claims.clear();
            jsonwebtoken::decode::<Value>(token, &key, &v).map_err(|e| e.to_string())
        });
    if let Err(err) = verified {
        return Check::fail(
            ID,
            TITLE,
            format!("signature does not verify with the published key: {err}"),
            "the JWKS does not match the API server's signing key: re-publish it",
        )
        .with_sts_error(STS_BAD_SIGNATURE);
    }
    if claims.iss != issuer_url {
        return Check::fail(
            ID,
            TITLE,
            format!("iss is {:?}, the IAM provider is for {issuer_url:?}", claims.iss),
            "create the OIDC provider for the token's issuer, or fix the API server's --service-account-issuer",
        )
        .with_sts_error(format!("{STS_NO_PROVIDER} {}", claims.iss));
    }
    if !claims.aud.iter().any(|a| a == audience) {
        return Check::fail(
            ID,
            TITLE,
            format!("aud is {:?}, expected {audience}", claims.aud),
            format!("request the token with audience {audience} (the SA's audience annotation)"),
        )
        .with_sts_error(STS_BAD_AUDIENCE);
    }
    if let Some(want) = subject
        && claims.sub != want
    {
        return Check::fail(
            ID,
            TITLE,
            format!("sub is {:?}, expected {want}", claims.sub),
            "use a token of this ServiceAccount",
        )
        .with_sts_error(STS_ACCESS_DENIED);
    }
    match claims.exp {
        Some(exp) if exp <= now => Check::fail(
            ID,
            TITLE,
            format!("expired {}s ago (exp {exp})", now - exp),
            "the kubelet refreshes projected tokens: a stale file means the pod is not using the projected volume; request a fresh token",
        )
        .with_sts_error(STS_EXPIRED),
        Some(exp) => Check::pass(ID, TITLE, format!("signature, iss, aud verified; sub {}; expires in {}s", claims.sub, exp - now)),
        None => Check::warn(ID, TITLE, "verified, but the token has no exp; STS rejects tokens without expiry")
            .with_sts_error(STS_BAD_SIGNATURE),
    }
}

#[cfg(test)]
mod tests;
