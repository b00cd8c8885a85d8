//! The condition evaluator: would IAM let `sts:AssumeRoleWithWebIdentity` through for this
//! token, and if not, why — in words the doctor can print.

use std::{collections::BTreeMap, fmt};

use serde_json::Value;

use crate::issuer::issuer_host_path;

use super::{
    compile::WEB_IDENTITY_ACTION,
    document::{PolicyDocument, provider_host_path},
    glob,
    pod::{ASSUME_ROLE_ACTION, TAG_SESSION_ACTION},
    subject::SUBJECT_PREFIX,
};

const REQUEST_TAG: &str = "RequestTag/";

/// What the token contributes to IAM's request context.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// `sub`, e.g. `system:serviceaccount:team-a:app`.
    pub sub: String,
    /// The audience STS matched against the provider's client IDs (`sts.amazonaws.com`).
    pub aud: String,
    /// Any other context key, by its full name (`aws:SourceIp`, `<issuer>:amr`, ...).
    /// Multi-valued keys are what `ForAnyValue:`/`ForAllValues:` are for.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl Claims {
    pub fn new(sub: impl Into<String>, aud: impl Into<String>) -> Self {
        Self {
            sub: sub.into(),
            aud: aud.into(),
            extra: BTreeMap::new(),
        }
    }
}

/// IAM's verdict on the trust policy alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The statement that decided: the Allow that matched, or the explicit Deny that won.
    /// `None` for an implicit deny (no statement matched).
    pub matched_sid: Option<String>,
    /// Index in `Statement` of that statement (statements need no Sid).
    pub matched_index: Option<usize>,
    /// Why: for a deny, one line per statement for this provider that did not match (each
    /// failed condition, with the token's value, what the policy allows, and a hint for the
    /// classic mistakes); for an explicit deny, the Deny statement.
    pub reasons: Vec<String>,
}

/// How a statement is named to people: its Sid, else `#N` counted from 1 in `Statement`.
pub fn statement_label(sid: Option<&str>, index: usize) -> String {
    sid.map_or_else(|| format!("#{}", index + 1), str::to_string)
}

impl Decision {
    /// The deciding statement as the reasons name it (see [`statement_label`]).
    pub fn matched_label(&self) -> Option<String> {
        self.matched_index
            .map(|i| statement_label(self.matched_sid.as_deref(), i))
            .or_else(|| self.matched_sid.clone())
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.allowed { "allowed" } else { "denied" };
        match &self.matched_sid {
            Some(sid) => write!(f, "{verdict} by statement {sid}")?,
            None => f.write_str(verdict)?,
        }
        for reason in &self.reasons {
            write!(f, "\n  - {reason}")?;
        }
        Ok(())
    }
}

/// Evaluates `policy` for `sts:AssumeRoleWithWebIdentity` by a token from the OIDC provider
/// `provider_arn` with `claims`, the way IAM does for a role trust policy: an applicable
/// explicit Deny wins; otherwise an Allow applies when its Principal, Action and every
/// condition match; otherwise the request is implicitly denied.
///
/// Conditions: operators are ANDed, keys within an operator are ANDed, the values of a key
/// are ORed (for negated operators: the context value must match none of them). Condition
/// key names are case-insensitive, values follow the operator. A key absent from the
/// request fails a positive operator and satisfies a negated one, `...IfExists` and
/// `ForAllValues:`; `ForAnyValue:` needs it. Supported: `String*`, `Arn*`, `Bool`,
/// `Numeric*`, `Null`; any other operator is reported and treated as not matching.
pub fn evaluate(policy: &PolicyDocument, provider_arn: &str, claims: &Claims) -> Decision {
    let Some(host) = provider_host_path(provider_arn) else {
        return Decision {
            allowed: false,
            matched_sid: None,
            matched_index: None,
            reasons: vec![format!(
                "{provider_arn} is not an OIDC provider ARN \
                 (arn:aws:iam::<account>:oidc-provider/<issuer host/path>)"
            )],
        };
    };
    let ctx = Context::new(
        Caller::WebIdentity {
            host,
            provider_arn,
            claims,
        },
        claims
            .extra
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain([
                (format!("{host}:sub"), vec![claims.sub.clone()]),
                (format!("{host}:aud"), vec![claims.aud.clone()]),
                (
                    "aws:FederatedProvider".into(),
                    vec![provider_arn.to_string()],
                ),
            ]),
    );
    let nobody = format!(
        "no statement trusts the OIDC provider {provider_arn}: add one with \
         Principal.Federated = {provider_arn} and Action = {WEB_IDENTITY_ACTION}"
    );
    decide(policy, &ctx, nobody)
}

/// Evaluates `policy` for `sts:AssumeRole` by the IAM role `principal_arn` (the Pod Identity
/// agent's) passing session `tags` (then `sts:TagSession` must be allowed too), with the
/// same rules as [`evaluate`]. The context has `aws:RequestTag/<key>`, `aws:TagKeys` and
/// `aws:PrincipalArn`. A statement for other principals (a service, an OIDC provider) is
/// not a reason.
pub fn evaluate_assume_role(
    policy: &PolicyDocument,
    principal_arn: &str,
    tags: &[(String, String)],
) -> Decision {
    let keys = tags
        .iter()
        .map(|(k, v)| (format!("aws:RequestTag/{k}"), vec![v.clone()]))
        .chain([
            (
                "aws:TagKeys".to_string(),
                tags.iter().map(|(k, _)| k.clone()).collect(),
            ),
            ("aws:PrincipalArn".into(), vec![principal_arn.to_string()]),
        ]);
    let ctx = Context::new(
        Caller::Role {
            principal_arn,
            tagging: !tags.is_empty(),
        },
        keys,
    );
    let mut actions = vec![ASSUME_ROLE_ACTION];
    if !tags.is_empty() {
        actions.push(TAG_SESSION_ACTION);
    }
    let nobody = format!(
        "no statement trusts {principal_arn}: add one with Principal.AWS = {principal_arn} \
         and Action = {}",
        actions.join(" + ")
    );
    decide(policy, &ctx, nobody)
}

/// IAM's algorithm over the statements, for either kind of caller.
fn decide(policy: &PolicyDocument, ctx: &Context<'_>, nobody: String) -> Decision {
    let mut allow: Option<(usize, Option<String>)> = None;
    let mut reasons = Vec::new();
    let mut considered = 0;
    for (index, statement) in policy.statements().into_iter().enumerate() {
        let sid = statement
            .get("Sid")
            .and_then(Value::as_str)
            .map(str::to_string);
        let label = statement_label(sid.as_deref(), index);
        let effect = statement.get("Effect").and_then(Value::as_str);
        let applies = ctx.applies(statement);
        match (effect, applies) {
            (_, Applies::OtherPrincipal) => {}
            (Some("Deny"), Applies::Yes) => {
                return Decision {
                    allowed: false,
                    matched_sid: sid,
                    matched_index: Some(index),
                    reasons: vec![format!(
                        "statement {label}: an explicit Deny matches this request, and a Deny \
                         always wins over any Allow"
                    )],
                };
            }
            // A Deny that does not apply is not a reason for anything.
            (Some("Deny"), Applies::No(_)) => {}
            (Some("Allow"), Applies::Yes) => {
                considered += 1;
                allow.get_or_insert((index, sid));
            }
            (Some("Allow"), Applies::No(why)) => {
                considered += 1;
                reasons.extend(why.into_iter().map(|w| format!("statement {label}: {w}")));
            }
            (other, _) => {
                considered += 1;
                reasons.push(format!(
                    "statement {label}: Effect is {}, neither Allow nor Deny; IAM rejects such a policy",
                    other.map_or_else(|| "missing".to_string(), |e| format!("{e:?}"))
                ));
            }
        }
    }
    if let Some((index, sid)) = allow {
        return Decision {
            allowed: true,
            matched_sid: sid,
            matched_index: Some(index),
            reasons: Vec::new(),
        };
    }
    if considered == 0 {
        reasons.push(nobody);
    }
    Decision {
        allowed: false,
        matched_sid: None,
        matched_index: None,
        reasons,
    }
}

enum Applies {
    Yes,
    /// Not applicable, with every reason (principal, action, each failed condition).
    No(Vec<String>),
    /// For another kind of principal (a service, an AWS account, SAML): not worth a reason.
    OtherPrincipal,
}

/// Who asks STS for the role.
enum Caller<'a> {
    /// A token of the OIDC provider `provider_arn` (`sts:AssumeRoleWithWebIdentity`).
    WebIdentity {
        host: &'a str,
        provider_arn: &'a str,
        claims: &'a Claims,
    },
    /// An IAM role session (`sts:AssumeRole`, with `sts:TagSession` when `tagging`).
    Role {
        principal_arn: &'a str,
        tagging: bool,
    },
}

/// IAM's request context for the call. Keys are stored lower-cased because condition key
/// names are case-insensitive.
struct Context<'a> {
    caller: Caller<'a>,
    keys: BTreeMap<String, Vec<String>>,
}

impl<'a> Context<'a> {
    fn new(caller: Caller<'a>, keys: impl IntoIterator<Item = (String, Vec<String>)>) -> Self {
        Self {
            caller,
            keys: keys
                .into_iter()
                .map(|(k, v)| (k.to_lowercase(), v))
                .collect(),
        }
    }

    fn applies(&self, statement: &Value) -> Applies {
        let mut why = Vec::new();
        match self.principal(statement) {
            PrincipalMatch::Yes => {}
            PrincipalMatch::No(reason) => why.push(reason),
            PrincipalMatch::Other => return Applies::OtherPrincipal,
        }
        let actions: &[&str] = match self.caller {
            Caller::WebIdentity { .. } => &[WEB_IDENTITY_ACTION],
            Caller::Role { tagging: false, .. } => &[ASSUME_ROLE_ACTION],
            Caller::Role { tagging: true, .. } => &[ASSUME_ROLE_ACTION, TAG_SESSION_ACTION],
        };
        if let Err(reason) = action_matches(statement, actions) {
            why.push(reason);
        }
        if let Some(condition) = statement.get("Condition") {
            why.extend(self.conditions(condition));
        }
        if why.is_empty() {
            Applies::Yes
        } else {
            Applies::No(why)
        }
    }

    fn principal(&self, statement: &Value) -> PrincipalMatch {
        match self.caller {
            Caller::WebIdentity { provider_arn, .. } => Self::federated(statement, provider_arn),
            Caller::Role { principal_arn, .. } => role_principal(statement, principal_arn),
        }
    }

    fn federated(statement: &Value, provider_arn: &str) -> PrincipalMatch {
        let (value, negated) = match (statement.get("Principal"), statement.get("NotPrincipal")) {
            (Some(p), _) => (p, false),
            (None, Some(p)) => (p, true),
            (None, None) => return PrincipalMatch::No("has no Principal".into()),
        };
        let mut federated = Vec::new();
        let matched = match value {
            Value::String(s) => s == "*",
            Value::Object(types) => types.iter().any(|(kind, ids)| {
                let ids = value_strings(ids);
                match kind.as_str() {
                    // `{"AWS": "*"}` means everyone, like `"*"`.
                    "AWS" => ids.iter().any(|id| id == "*"),
                    "Federated" => {
                        let hit = ids.iter().any(|id| id == provider_arn);
                        federated.extend(ids);
                        hit
                    }
                    _ => false,
                }
            }),
            _ => false,
        };
        match (matched, negated) {
            (true, false) | (false, true) => PrincipalMatch::Yes,
            (true, true) => PrincipalMatch::No(format!(
                "NotPrincipal excludes the OIDC provider {provider_arn}"
            )),
            (false, false) if federated.is_empty() => PrincipalMatch::Other,
            (false, false) => {
                PrincipalMatch::No(Self::principal_mismatch(provider_arn, &federated))
            }
        }
    }

    fn principal_mismatch(want: &str, federated: &[String]) -> String {
        let mut hints = Vec::new();
        for id in federated {
            if id.eq_ignore_ascii_case(want) {
                hints.push(format!("{id} differs from it only in letter case"));
            } else if id.trim_end_matches('/') == want.trim_end_matches('/') {
                hints.push(format!(
                    "{id} differs from it only by a trailing slash; IAM compares the issuer byte for byte"
                ));
            } else if !id.starts_with("arn:") && issuer_host_path(id).contains('/') {
                hints.push(format!(
                    "{id} is an issuer URL, but Principal.Federated must be the provider ARN"
                ));
            }
        }
        let mut msg = format!(
            "Principal.Federated is {}, not this token's provider {want}",
            federated.join(" or ")
        );
        if !hints.is_empty() {
            msg.push_str(&format!(" ({})", hints.join("; ")));
        }
        msg
    }

    /// Every failed condition, in words (empty: all conditions hold).
    fn conditions(&self, condition: &Value) -> Vec<String> {
        let Some(operators) = condition.as_object() else {
            return vec!["Condition is not an object".into()];
        };
        let mut failures = Vec::new();
        for (operator, keys) in operators {
            let Some(keys) = keys.as_object() else {
                failures.push(format!("condition {operator} is not an object of keys"));
                continue;
            };
            for (key, values) in keys {
                if let Err(reason) = self.condition(operator, key, &value_strings(values)) {
                    failures.push(reason);
                }
            }
        }
        failures
    }

    fn condition(&self, operator: &str, key: &str, policy: &[String]) -> Result<(), String> {
        let op = Operator::parse(operator);
        let context = self
            .keys
            .get(&key.to_lowercase())
            .filter(|values| !values.is_empty());
        if op.base == Base::Null {
            // `"Null": {"k": "true"}` means "k is absent".
            let absent = context.is_none();
            if policy
                .iter()
                .any(|p| p.eq_ignore_ascii_case("true") == absent)
            {
                return Ok(());
            }
            return Err(format!(
                "Null on {key} requires the key to be {}, but the request {} it",
                if absent { "present" } else { "absent" },
                if absent { "lacks" } else { "has" }
            ));
        }
        if op.base == Base::Unsupported {
            return Err(format!(
                "condition operator {operator} is not evaluated by irsa; treated as not \
                 matching (IAM may decide otherwise)"
            ));
        }
        let Some(values) = context else {
            let holds = op.if_exists
                || match op.set {
                    Set::All => true,
                    Set::Any => false,
                    Set::Single => op.negated,
                };
            return if holds {
                Ok(())
            } else {
                Err(self.absent_key(operator, key))
            };
        };
        let value_ok = |v: &String| {
            let hit = policy.iter().any(|p| op.base.matches(v, p));
            hit != op.negated
        };
        let holds = match op.set {
            Set::All => values.iter().all(value_ok),
            Set::Any => values.iter().any(value_ok),
            Set::Single if op.negated => values.iter().all(value_ok),
            Set::Single => values.iter().any(value_ok),
        };
        if holds {
            Ok(())
        } else {
            Err(self.mismatch(operator, &op, key, values, policy))
        }
    }

    /// The key is missing from the request: usually the key is spelled for another issuer.
    fn absent_key(&self, operator: &str, key: &str) -> String {
        let Caller::WebIdentity { host, .. } = self.caller else {
            return format!("{operator} on {key} cannot match: the request has no such key");
        };
        let (prefix, claim) = key.rsplit_once(':').unwrap_or(("", key));
        let ours = format!("{host}:{claim}");
        let normalized = normalize_issuer(prefix);
        let same = normalized.eq_ignore_ascii_case(host);
        let slash_only = !same
            && normalized
                .trim_end_matches('/')
                .eq_ignore_ascii_case(host.trim_end_matches('/'));
        let hint = if !prefix.is_empty() && (same || slash_only) {
            let mut what = Vec::new();
            if prefix.contains("://") {
                what.push("includes the URL scheme");
            }
            if prefix.starts_with("arn:") {
                what.push("is built from the provider ARN");
            }
            if slash_only {
                what.push(
                    "differs from the issuer by a trailing slash (IAM compares it byte for byte)",
                );
            }
            format!("the key {}; IAM's key is {ours}", what.join(" and "))
        } else if matches!(claim, "sub" | "aud" | "amr" | "azp" | "oaud") && prefix.contains('.') {
            format!("this condition is for the issuer {prefix}, but the token comes from {host}")
        } else {
            "the request has no such key".into()
        };
        format!("{operator} on {key} cannot match: {hint}")
    }

    fn mismatch(
        &self,
        operator: &str,
        op: &Operator,
        key: &str,
        values: &[String],
        policy: &[String],
    ) -> String {
        let claim = self.claim_name(key);
        let shown = values.join(", ");
        let allowed = policy.join(" or ");
        let mut msg = if op.negated {
            format!("{claim} is {shown}, which the trust excludes ({operator} {allowed} on {key})")
        } else {
            format!("{claim} is {shown}, trust allows only {allowed} ({operator} on {key})")
        };
        let mut hints = Vec::new();
        if !op.negated {
            for v in values {
                if matches!(op.base, Base::Equals | Base::EqualsIgnoreCase)
                    && policy
                        .iter()
                        .any(|p| glob::has_wildcards(p) && glob::matches(p, v))
                {
                    hints.push(format!(
                        "{} compares `*` and `?` literally: use StringLike for a pattern",
                        op.base.name()
                    ));
                }
                let case_sensitive = matches!(op.base, Base::Equals | Base::Like);
                if case_sensitive
                    && policy.iter().any(|p| {
                        p.to_lowercase() == v.to_lowercase()
                            || glob::matches(&p.to_lowercase(), &v.to_lowercase())
                    })
                {
                    hints.push(format!(
                        "the values differ only in letter case, and {} is case-sensitive",
                        op.base.name()
                    ));
                }
            }
            let looks_swapped = match (&self.caller, claim.as_str()) {
                (Caller::WebIdentity { claims, .. }, "sub") => policy.contains(&claims.aud),
                (Caller::WebIdentity { .. }, "aud") => {
                    policy.iter().any(|p| p.starts_with(SUBJECT_PREFIX))
                }
                _ => false,
            };
            if looks_swapped {
                hints.push(
                    "the aud and sub conditions look swapped: aud takes the audience \
                     (sts.amazonaws.com), sub the system:serviceaccount:<ns>:<name> subject"
                        .into(),
                );
            }
        }
        if !hints.is_empty() {
            msg.push_str(" — ");
            msg.push_str(&hints.join("; "));
        }
        msg
    }

    /// `sub`/`aud` for this issuer's keys (what users recognise), the key otherwise.
    fn claim_name(&self, key: &str) -> String {
        match (&self.caller, key.rsplit_once(':')) {
            (Caller::WebIdentity { host, .. }, Some((prefix, claim)))
                if prefix.eq_ignore_ascii_case(host) =>
            {
                claim.to_string()
            }
            // `aws:RequestTag/kubernetes-namespace` → `tag kubernetes-namespace`.
            (Caller::Role { .. }, Some((_, rest))) => rest
                .get(..REQUEST_TAG.len())
                .filter(|p| p.eq_ignore_ascii_case(REQUEST_TAG))
                .and_then(|_| rest.get(REQUEST_TAG.len()..))
                .map_or_else(|| key.to_string(), |tag| format!("tag {tag}")),
            _ => key.to_string(),
        }
    }
}

enum PrincipalMatch {
    Yes,
    No(String),
    Other,
}

/// The issuer part of a condition key as a user may have mistyped it: scheme and
/// provider-ARN prefix removed (the trailing slash is kept: it matters to IAM).
fn normalize_issuer(prefix: &str) -> &str {
    let s = match prefix.split_once(":oidc-provider/") {
        Some((arn, rest)) if arn.starts_with("arn:") => rest,
        _ => prefix,
    };
    issuer_host_path(s)
}

/// Every action of `wanted` must be allowed by the statement (STS checks `sts:TagSession`
/// beside `sts:AssumeRole` when session tags are passed).
fn action_matches(statement: &Value, wanted: &[&str]) -> Result<(), String> {
    // Action names are case-insensitive and may use wildcards (`sts:*`, `sts:AssumeRole*`).
    let hit = |actions: &[String], wanted: &str| {
        let wanted = wanted.to_lowercase();
        actions
            .iter()
            .any(|a| glob::matches(&a.to_lowercase(), &wanted))
    };
    let why = |action: &str| match action {
        WEB_IDENTITY_ACTION => "the action STS checks for a web-identity token",
        TAG_SESSION_ACTION => "STS checks it when the caller passes session tags",
        _ => "the action STS checks for a role session",
    };
    match (statement.get("Action"), statement.get("NotAction")) {
        (Some(a), _) => {
            let actions = value_strings(a);
            match wanted.iter().find(|w| !hit(&actions, w)) {
                None => Ok(()),
                // "not" for the one action a call needs, "without" for the second of two.
                Some(missing) => Err(format!(
                    "Action is {}, {} {missing} ({})",
                    actions.join(", "),
                    if wanted.len() > 1 { "without" } else { "not" },
                    why(missing)
                )),
            }
        }
        (None, Some(a)) => {
            let actions = value_strings(a);
            match wanted.iter().find(|w| hit(&actions, w)) {
                Some(excluded) => Err(format!("NotAction excludes {excluded}")),
                None => Ok(()),
            }
        }
        (None, None) => Err("has no Action".into()),
    }
}

/// `Principal.AWS` naming the role, its account (`arn:…:root` or the bare id) or everyone.
fn role_principal(statement: &Value, principal_arn: &str) -> PrincipalMatch {
    let (value, negated) = match (statement.get("Principal"), statement.get("NotPrincipal")) {
        (Some(p), _) => (p, false),
        (None, Some(p)) => (p, true),
        (None, None) => return PrincipalMatch::No("has no Principal".into()),
    };
    // The account trusts the role through its root or its bare id.
    let (root, account) = match crate::arn::RoleArn::parse(principal_arn) {
        Ok(arn) => (
            format!("arn:{}:iam::{}:root", arn.partition, arn.account),
            arn.account,
        ),
        Err(_) => (String::new(), String::new()),
    };
    let mut aws = Vec::new();
    let matched = match value {
        Value::String(s) => s == "*",
        Value::Object(types) => types.iter().any(|(kind, ids)| {
            let ids = value_strings(ids);
            let hit = kind == "AWS"
                && ids.iter().any(|id| {
                    id == "*"
                        || id == principal_arn
                        || (!account.is_empty() && (*id == root || *id == account))
                });
            if kind == "AWS" {
                aws.extend(ids);
            }
            hit
        }),
        _ => false,
    };
    match (matched, negated) {
        (true, false) | (false, true) => PrincipalMatch::Yes,
        (true, true) => PrincipalMatch::No(format!("NotPrincipal excludes {principal_arn}")),
        (false, false) if aws.is_empty() => PrincipalMatch::Other,
        (false, false) => PrincipalMatch::No(format!(
            "Principal.AWS is {}, not {principal_arn} (the Pod Identity agent's role)",
            aws.join(" or ")
        )),
    }
}

/// A policy value as the list of strings IAM compares: strings, booleans and numbers, alone
/// or in a list.
fn value_strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Bool(b) => vec![b.to_string()],
        Value::Number(n) => vec![n.to_string()],
        Value::Array(items) => items.iter().flat_map(value_strings).collect(),
        _ => Vec::new(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Set {
    Single,
    Any,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    Equals,
    EqualsIgnoreCase,
    Like,
    Bool,
    Numeric(NumericOp),
    Null,
    Unsupported,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumericOp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Base {
    fn matches(self, context: &str, policy: &str) -> bool {
        match self {
            Base::Equals => context == policy,
            Base::EqualsIgnoreCase => context.to_lowercase() == policy.to_lowercase(),
            Base::Like => glob::matches(policy, context),
            Base::Bool => context.eq_ignore_ascii_case(policy),
            Base::Numeric(op) => match (context.parse::<f64>(), policy.parse::<f64>()) {
                (Ok(c), Ok(p)) => match op {
                    NumericOp::Eq => c == p,
                    NumericOp::Lt => c < p,
                    NumericOp::Le => c <= p,
                    NumericOp::Gt => c > p,
                    NumericOp::Ge => c >= p,
                },
                _ => false,
            },
            Base::Null | Base::Unsupported => false,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Base::Equals => "StringEquals",
            Base::EqualsIgnoreCase => "StringEqualsIgnoreCase",
            Base::Like => "StringLike",
            Base::Bool => "Bool",
            Base::Numeric(_) => "Numeric",
            Base::Null => "Null",
            Base::Unsupported => "unsupported",
        }
    }
}

struct Operator {
    base: Base,
    negated: bool,
    if_exists: bool,
    set: Set,
}

impl Operator {
    fn parse(raw: &str) -> Self {
        let (set, rest) = if let Some(rest) = strip_prefix_ci(raw, "ForAnyValue:") {
            (Set::Any, rest)
        } else if let Some(rest) = strip_prefix_ci(raw, "ForAllValues:") {
            (Set::All, rest)
        } else {
            (Set::Single, raw)
        };
        let (name, if_exists) = match rest
            .len()
            .checked_sub("IfExists".len())
            .and_then(|at| rest.split_at_checked(at))
        {
            Some((name, suffix)) if suffix.eq_ignore_ascii_case("IfExists") => (name, true),
            _ => (rest, false),
        };
        let (base, negated) = match name.to_ascii_lowercase().as_str() {
            "stringequals" => (Base::Equals, false),
            "stringnotequals" => (Base::Equals, true),
            "stringequalsignorecase" => (Base::EqualsIgnoreCase, false),
            "stringnotequalsignorecase" => (Base::EqualsIgnoreCase, true),
            "stringlike" => (Base::Like, false),
            "stringnotlike" => (Base::Like, true),
            // IAM treats ArnEquals like ArnLike: both accept wildcards.
            "arnequals" | "arnlike" => (Base::Like, false),
            "arnnotequals" | "arnnotlike" => (Base::Like, true),
            "bool" => (Base::Bool, false),
            "numericequals" => (Base::Numeric(NumericOp::Eq), false),
            "numericnotequals" => (Base::Numeric(NumericOp::Eq), true),
            "numericlessthan" => (Base::Numeric(NumericOp::Lt), false),
            "numericlessthanequals" => (Base::Numeric(NumericOp::Le), false),
            "numericgreaterthan" => (Base::Numeric(NumericOp::Gt), false),
            "numericgreaterthanequals" => (Base::Numeric(NumericOp::Ge), false),
            "null" => (Base::Null, false),
            _ => (Base::Unsupported, false),
        };
        Self {
            base,
            negated,
            if_exists,
            set,
        }
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let (head, rest) = s.split_at_checked(prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then_some(rest)
}

#[cfg(test)]
mod assume_role_tests {
    use super::*;

    const AGENT: &str = "arn:aws:iam::111122223333:role/irsa-agent";

    fn tags(ns: &str, sa: &str) -> Vec<(String, String)> {
        [
            ("kubernetes-namespace", ns),
            ("kubernetes-service-account", sa),
            ("irsa-cluster-name", "prod"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn policy(statement: Value) -> PolicyDocument {
        PolicyDocument::parse(
            &serde_json::json!({"Version": "2012-10-17", "Statement": [statement]}).to_string(),
        )
        .unwrap()
    }

    fn pod_statement(principal: &str, actions: Value) -> PolicyDocument {
        policy(serde_json::json!({
            "Sid": "IrsaPodX", "Effect": "Allow",
            "Principal": {"AWS": principal},
            "Action": actions,
            "Condition": {"StringEquals": {
                "aws:RequestTag/kubernetes-namespace": "team-a",
                "aws:RequestTag/kubernetes-service-account": ["app", "web"],
                "aws:RequestTag/irsa-cluster-name": "prod"
            }}
        }))
    }

    #[test]
    fn the_agent_with_the_pods_tags_is_allowed() {
        let doc = pod_statement(
            AGENT,
            serde_json::json!(["sts:AssumeRole", "sts:TagSession"]),
        );
        let d = evaluate_assume_role(&doc, AGENT, &tags("team-a", "web"));
        assert!(d.allowed, "{d}");
        assert_eq!(d.matched_sid.as_deref(), Some("IrsaPodX"));
        // The account's root and a wildcard action trust the role too.
        let doc = pod_statement("arn:aws:iam::111122223333:root", serde_json::json!("sts:*"));
        assert!(evaluate_assume_role(&doc, AGENT, &tags("team-a", "app")).allowed);
    }

    #[test]
    fn each_refusal_says_what_differs() {
        let doc = pod_statement(
            AGENT,
            serde_json::json!(["sts:AssumeRole", "sts:TagSession"]),
        );
        let d = evaluate_assume_role(&doc, AGENT, &tags("team-b", "app"));
        assert!(!d.allowed);
        assert!(
            d.reasons[0].contains("tag kubernetes-namespace is team-b, trust allows only team-a"),
            "{d}"
        );

        let other = "arn:aws:iam::111122223333:role/someone";
        let d = evaluate_assume_role(&doc, other, &tags("team-a", "app"));
        assert!(
            d.reasons[0].contains("Principal.AWS is arn:aws:iam::111122223333:role/irsa-agent"),
            "{d}"
        );

        // Tags need sts:TagSession in the same statement.
        let doc = pod_statement(AGENT, serde_json::json!("sts:AssumeRole"));
        let d = evaluate_assume_role(&doc, AGENT, &tags("team-a", "app"));
        assert!(d.reasons[0].contains("without sts:TagSession"), "{d}");

        // Untagged (disableSessionTags): the tag conditions cannot hold.
        let doc = pod_statement(
            AGENT,
            serde_json::json!(["sts:AssumeRole", "sts:TagSession"]),
        );
        let d = evaluate_assume_role(&doc, AGENT, &[]);
        assert!(
            d.reasons
                .iter()
                .any(|r| r.contains("aws:RequestTag/kubernetes-namespace cannot match")),
            "{d}"
        );
    }

    #[test]
    fn statements_for_other_principals_are_not_reasons() {
        let doc = policy(serde_json::json!({
            "Effect": "Allow",
            "Principal": {"Federated": "arn:aws:iam::111122223333:oidc-provider/example.com"},
            "Action": "sts:AssumeRoleWithWebIdentity"
        }));
        let d = evaluate_assume_role(&doc, AGENT, &tags("team-a", "app"));
        assert!(!d.allowed);
        assert_eq!(d.reasons.len(), 1, "{d}");
        assert!(
            d.reasons[0]
                .starts_with("no statement trusts arn:aws:iam::111122223333:role/irsa-agent"),
            "{d}"
        );
    }
}
