//! The trust-policy compiler: the role's current document + this cluster's desired subjects
//! → the document to write (or "unchanged", or a refusal with the numbers).

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use serde_json::{Map, Value, json};

use crate::issuer::issuer_host_path;

use super::{
    document::{PolicyDocument, pod_identity_untagged_sid, statement_sid},
    pod::{self, PodIdentityInput},
    subject::Subject,
};

/// What [`Refusal::not_fitting`] names instead of an audience for a Pod Identity pair.
pub const POD_IDENTITY_LABEL: &str = "Pod Identity";

/// The action every statement we write allows.
pub const WEB_IDENTITY_ACTION: &str = "sts:AssumeRoleWithWebIdentity";

/// What the compiler needs. Borrowed, so a controller can compile from its caches without
/// cloning them.
#[derive(Debug, Clone, Copy)]
pub struct CompileInput<'a> {
    /// The role's trust policy as IAM has it now; `None` for a role being created.
    pub current: Option<&'a PolicyDocument>,
    /// This cluster's issuer, with or without `https://` (see [`issuer_host_path`]).
    pub issuer: &'a str,
    /// The IAM OIDC provider of that issuer: `Principal.Federated` of our statements.
    pub provider_arn: &'a str,
    /// Desired subjects per audience. An audience with an empty set (or absent) gets no
    /// statement: one we wrote earlier for it is removed.
    pub desired: &'a BTreeMap<String, BTreeSet<Subject>>,
    /// The size quota, in IAM characters ([`super::iam_chars`]).
    pub max_chars: usize,
    /// Namespaces whose subjects may be collapsed to `system:serviceaccount:<ns>:*` when the
    /// document would not fit otherwise (an `IAMRoleGrant` with
    /// `allowNamespaceWildcardTrust`). Collapsing trusts every ServiceAccount of the
    /// namespace, present and future, so it is never done for other namespaces.
    pub wildcard_namespaces: &'a BTreeSet<String>,
    /// The Pod Identity statements wanted (`None`: the agent's role is not configured, and
    /// every Pod Identity statement is left as it is, like a foreign one).
    pub pod_identity: Option<PodIdentityInput<'a>>,
}

/// The compiler's answer when the desired state can be expressed within the quota.
#[derive(Debug, Clone, PartialEq)]
pub enum Compiled {
    /// Our statements already say exactly this (subject order, whitespace and key order do
    /// not matter): write nothing.
    Unchanged {
        /// Size of the current document.
        chars: usize,
        /// Namespaces collapsed to `ns:*` (or, in a Pod Identity statement, without their
        /// ServiceAccount condition) in the (unchanged) statements.
        collapsed: Vec<String>,
    },
    /// Write `document`.
    Changed {
        document: PolicyDocument,
        chars: usize,
        collapsed: Vec<String>,
        /// Statements carrying one of our Sids whose content was edited by someone else:
        /// they are replaced; report them so the editor learns why their change vanished.
        hand_edited: Vec<HandEdit>,
        /// Audiences whose statement was removed because nothing desires them any more.
        removed_audiences: Vec<String>,
    },
    /// Removing our statements would leave a document with no statement at all, which IAM
    /// rejects for a role's trust policy. The caller decides (keep the last statement,
    /// delete the role, report).
    NoStatementLeft {
        /// Audiences whose statement would have been removed.
        removed_audiences: Vec<String>,
    },
}

impl Compiled {
    /// Size of the document IAM will hold afterwards (0 for [`Compiled::NoStatementLeft`]).
    pub fn chars(&self) -> usize {
        match self {
            Compiled::Unchanged { chars, .. } | Compiled::Changed { chars, .. } => *chars,
            Compiled::NoStatementLeft { .. } => 0,
        }
    }

    /// The document to write, if there is one.
    pub fn document(&self) -> Option<&PolicyDocument> {
        match self {
            Compiled::Changed { document, .. } => Some(document),
            _ => None,
        }
    }
}

/// A statement with one of our Sids that does not have the shape we write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandEdit {
    pub sid: String,
    /// Which of our statements: `audience <aud>`, or the Pod Identity one it is.
    pub statement: String,
    /// What differs from the generated form, in words.
    pub reason: String,
}

impl fmt::Display for HandEdit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "statement {} ({}) was edited outside irsa ({}); it is replaced by the generated statement",
            self.sid, self.statement, self.reason
        )
    }
}

/// The desired subjects do not fit the quota, even after every allowed collapse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Refusal {
    /// Size of the smallest document the compiler could build with every subject.
    pub chars: usize,
    pub quota: usize,
    /// Size of the role's current document, if it has one.
    pub current_chars: Option<usize>,
    /// Namespaces collapsed in that smallest document.
    pub collapsed: Vec<String>,
    /// How many (audience, subject) pairs were desired, Pod Identity ServiceAccounts
    /// included.
    pub desired: usize,
    /// The (audience, subject) pairs beyond what fits: taking subjects in order (audience,
    /// then subject; then the Pod Identity ServiceAccounts, by namespace, under
    /// [`POD_IDENTITY_LABEL`]), everything before these fits within the quota.
    pub not_fitting: Vec<(String, Subject)>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the trust policy would be {} characters (whitespace excluded), over the quota of {}",
            self.chars, self.quota
        )?;
        if !self.collapsed.is_empty() {
            write!(
                f,
                " even with namespaces {} collapsed to ns:*",
                self.collapsed.join(", ")
            )?;
        }
        if let Some(current) = self.current_chars {
            write!(f, " (currently {current})")?;
        }
        write!(
            f,
            "; {} of {} subjects do not fit",
            self.not_fitting.len(),
            self.desired
        )?;
        const SHOWN: usize = 10;
        let shown: Vec<String> = self
            .not_fitting
            .iter()
            .take(SHOWN)
            .map(|(aud, s)| format!("{}:{} ({aud})", s.namespace, s.name))
            .collect();
        if !shown.is_empty() {
            write!(f, ": {}", shown.join(", "))?;
            if self.not_fitting.len() > SHOWN {
                write!(f, " and {} more", self.not_fitting.len() - SHOWN)?;
            }
        }
        write!(
            f,
            ". Fix: raise the role trust policy quota in Service Quotas (up to 8192) and irsa's \
             max-chars setting with it, allow namespace wildcard trust for these namespaces, \
             or split the ServiceAccounts across roles"
        )
    }
}

/// Compiles the trust policy for this cluster's issuer. See the module documentation of
/// [`crate::trust`] for the statement format and the rules.
pub fn compile(input: &CompileInput<'_>) -> Result<Compiled, Refusal> {
    let host = issuer_host_path(input.issuer);
    let current = Current::classify(input, host);

    let want: BTreeMap<&str, &BTreeSet<Subject>> = input
        .desired
        .iter()
        .filter(|(_, subjects)| !subjects.is_empty())
        .map(|(aud, subjects)| (aud.as_str(), subjects))
        .collect();
    let removed_audiences: Vec<String> = current
        .owned
        .keys()
        .filter_map(|owner| match owner {
            Owner::Audience(aud) if !want.contains_key(aud.as_str()) => Some(aud.clone()),
            _ => None,
        })
        .collect();
    let builder = Builder {
        input,
        host,
        current: &current,
        base: input
            .current
            .cloned()
            .unwrap_or_else(|| PolicyDocument::new(Vec::new())),
    };

    // Largest namespaces first: collapsing them saves the most characters per trust widened.
    let mut candidates: BTreeMap<Collapse<'_>, usize> = BTreeMap::new();
    for subject in want.values().flat_map(|set| set.iter()) {
        if input.wildcard_namespaces.contains(&subject.namespace) {
            *candidates
                .entry(Collapse::Web(subject.namespace.as_str()))
                .or_default() += 1;
        }
    }
    if let Some(pod) = &input.pod_identity {
        for (ns, sas) in pod.desired.namespaces() {
            if pod.desired.wildcard_namespaces.contains(ns) {
                candidates.insert(Collapse::Pod(ns), sas.len());
            }
        }
    }
    let mut order: Vec<(Collapse<'_>, usize)> = candidates.into_iter().collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));

    let mut collapsed = Collapsed::default();
    let steps = std::iter::once(None).chain(order.iter().map(|(c, _)| Some(*c)));
    let mut last_chars = 0;
    for step in steps {
        match step {
            Some(Collapse::Web(ns)) => collapsed.web.insert(ns.to_string()),
            Some(Collapse::Pod(ns)) => collapsed.pod.insert(ns.to_string()),
            None => false,
        };
        let models = desired_models(&want, input, &collapsed);
        if let Some(chars) = current.unchanged(&models) {
            return Ok(Compiled::Unchanged {
                chars,
                collapsed: collapsed.namespaces(),
            });
        }
        let statements = builder.statements(&models);
        if statements.is_empty() {
            return Ok(Compiled::NoStatementLeft { removed_audiences });
        }
        let document = builder.base.with_statements(statements);
        let chars = document.chars();
        // A document no larger than the current one always fits: IAM already holds one that
        // size (its quota was raised, or the flag lowered). Removing subjects from an
        // over-quota role must never be refused.
        if chars <= input.max_chars || current.chars().is_some_and(|c| chars <= c) {
            return Ok(Compiled::Changed {
                document,
                chars,
                collapsed: collapsed.namespaces(),
                hand_edited: current.hand_edited.clone(),
                removed_audiences,
            });
        }
        last_chars = chars;
    }
    Err(builder.refusal(&want, &collapsed, last_chars))
}

/// One compaction step: a namespace of the web-identity subjects to `ns:*`, or a Pod
/// Identity namespace without its ServiceAccount condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Collapse<'a> {
    Web(&'a str),
    Pod(&'a str),
}

#[derive(Debug, Default)]
struct Collapsed {
    web: BTreeSet<String>,
    pod: BTreeSet<String>,
}

impl Collapsed {
    fn namespaces(&self) -> Vec<String> {
        self.web.union(&self.pod).cloned().collect()
    }
}

/// Which of our statements a statement is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Owner {
    /// The web-identity statement of an audience.
    Audience(String),
    Pod(pod::Owner),
}

impl Owner {
    fn describe(&self) -> String {
        match self {
            Owner::Audience(aud) => format!("audience {aud}"),
            Owner::Pod(owner) => owner.describe(),
        }
    }
}

/// One of our statements, in a form where semantic equality is `==`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Model {
    Web(WebModel),
    Pod(pod::Model),
}

/// Our web-identity statement for one audience.
#[derive(Debug, Clone, PartialEq, Eq)]
struct WebModel {
    provider_arn: String,
    audience: String,
    /// StringLike when any namespace is collapsed (then every `sub` value moves there: a
    /// second operator would be ANDed, not ORed, with StringEquals).
    like: bool,
    subs: BTreeSet<String>,
}

fn desired_models(
    want: &BTreeMap<&str, &BTreeSet<Subject>>,
    input: &CompileInput<'_>,
    collapsed: &Collapsed,
) -> BTreeMap<Owner, Model> {
    let mut models: BTreeMap<Owner, Model> = want
        .iter()
        .map(|(aud, subjects)| {
            let mut like = false;
            let subs = subjects
                .iter()
                .map(|s| {
                    if collapsed.web.contains(&s.namespace) {
                        like = true;
                        Subject::namespace_wildcard(&s.namespace)
                    } else {
                        s.sub()
                    }
                })
                .collect();
            let model = WebModel {
                provider_arn: input.provider_arn.to_string(),
                audience: aud.to_string(),
                like,
                subs,
            };
            (Owner::Audience(aud.to_string()), Model::Web(model))
        })
        .collect();
    if let Some(pod) = &input.pod_identity {
        models.extend(
            pod::desired_models(pod, &collapsed.pod)
                .into_iter()
                .map(|(owner, model)| (Owner::Pod(owner), Model::Pod(model))),
        );
    }
    models
}

/// A statement slot of the current document: foreign (kept verbatim) or ours.
enum Slot<'a> {
    Foreign(&'a Value),
    Owned(Owner),
}

struct Current<'a> {
    slots: Vec<Slot<'a>>,
    /// Our statements (the first one when a Sid is duplicated), parsed.
    owned: BTreeMap<Owner, Option<Model>>,
    hand_edited: Vec<HandEdit>,
    doc: Option<&'a PolicyDocument>,
}

impl<'a> Current<'a> {
    fn classify(input: &CompileInput<'a>, host: &str) -> Self {
        let mut this = Current {
            slots: Vec::new(),
            owned: BTreeMap::new(),
            hand_edited: Vec::new(),
            doc: input.current,
        };
        let Some(doc) = input.current else {
            return this;
        };
        let mut desired_sids: BTreeMap<String, Owner> = input
            .desired
            .keys()
            .map(|aud| (statement_sid(host, aud), Owner::Audience(aud.clone())))
            .collect();
        if let Some(pod) = &input.pod_identity {
            for ns in pod.desired.service_accounts.keys() {
                let owner = pod::Owner {
                    agent: pod.agent_role_arn.to_string(),
                    namespace: Some(ns.clone()),
                };
                desired_sids.insert(owner.sid(pod.cluster), Owner::Pod(owner));
            }
            let untagged = pod::Owner {
                agent: pod.agent_role_arn.to_string(),
                namespace: None,
            };
            desired_sids.insert(
                pod_identity_untagged_sid(pod.agent_role_arn, pod.cluster),
                Owner::Pod(untagged),
            );
        }
        for statement in doc.statements() {
            let Some(sid) = statement.get("Sid").and_then(Value::as_str) else {
                this.slots.push(Slot::Foreign(statement));
                continue;
            };
            // Ours if the Sid is derived from a desired audience or namespace, or from what
            // the statement itself names (how we find statements no longer desired).
            let owner = desired_sids
                .get(sid)
                .cloned()
                .or_else(|| {
                    audiences_in(statement)
                        .into_iter()
                        .find(|aud| statement_sid(host, aud) == sid)
                        .map(Owner::Audience)
                })
                .or_else(|| {
                    let pod = input.pod_identity.as_ref()?;
                    pod::owner_by_content(statement, sid, pod.cluster).map(Owner::Pod)
                });
            let Some(owner) = owner else {
                this.slots.push(Slot::Foreign(statement));
                continue;
            };
            if this.owned.contains_key(&owner) {
                this.hand_edited.push(HandEdit {
                    sid: sid.to_string(),
                    statement: owner.describe(),
                    reason: "a second statement with the same Sid; it is dropped".into(),
                });
                continue;
            }
            let parsed = match &owner {
                Owner::Audience(aud) => parse_web(statement, host, aud).map(Model::Web),
                Owner::Pod(pod_owner) => {
                    // Only reachable with Pod Identity input (the owner came from it).
                    let cluster = input.pod_identity.as_ref().map_or("", |p| p.cluster);
                    pod::parse(statement, pod_owner, cluster).map(Model::Pod)
                }
            };
            let model = match parsed {
                Ok(model) => Some(model),
                Err(reason) => {
                    this.hand_edited.push(HandEdit {
                        sid: sid.to_string(),
                        statement: owner.describe(),
                        reason,
                    });
                    None
                }
            };
            this.owned.insert(owner.clone(), model);
            this.slots.push(Slot::Owned(owner));
        }
        this
    }

    /// `Some(current size)` when our statements already say exactly `models`.
    fn unchanged(&self, models: &BTreeMap<Owner, Model>) -> Option<usize> {
        let doc = self.doc?;
        let same = self.hand_edited.is_empty()
            && self.owned.len() == models.len()
            && models.iter().all(|(owner, model)| {
                self.owned
                    .get(owner)
                    .is_some_and(|m| m.as_ref() == Some(model))
            });
        same.then(|| doc.chars())
    }

    fn chars(&self) -> Option<usize> {
        self.doc.map(PolicyDocument::chars)
    }
}

/// Every string value under a `...:aud` condition key of a statement.
fn audiences_in(statement: &Value) -> Vec<String> {
    let Some(Value::Object(operators)) = statement.get("Condition") else {
        return Vec::new();
    };
    operators
        .values()
        .filter_map(Value::as_object)
        .flat_map(|keys| keys.iter())
        .filter(|(key, _)| key.to_ascii_lowercase().ends_with(":aud"))
        .flat_map(|(_, v)| string_list(v).unwrap_or_default())
        .collect()
}

/// A string or a non-empty list of strings, as IAM allows for most statement values.
pub(super) fn string_list(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => None,
    }
}

/// What every statement we own has, whatever its kind: only the fields in `keys`, `Effect:
/// Allow`, and a `Principal` of exactly one `kind` (`what` names it in the error). Returns the
/// statement's fields and that principal.
pub(super) fn owned_shape<'a>(
    statement: &'a Value,
    keys: &[&str],
    kind: &str,
    what: &str,
) -> Result<(&'a Map<String, Value>, String), String> {
    let obj = statement.as_object().ok_or("not an object")?;
    let extra: Vec<&str> = obj
        .keys()
        .map(String::as_str)
        .filter(|k| !keys.contains(k))
        .collect();
    if !extra.is_empty() {
        return Err(format!("unexpected {}", extra.join(", ")));
    }
    if obj.get("Effect").and_then(Value::as_str) != Some("Allow") {
        return Err("Effect is not Allow".into());
    }
    let principal = match obj.get("Principal").and_then(Value::as_object) {
        Some(p) if p.len() == 1 => p.get(kind).and_then(single_string),
        _ => None,
    }
    .ok_or_else(|| format!("Principal is not a single {what}"))?;
    Ok((obj, principal))
}

pub(super) fn single_string(v: &Value) -> Option<String> {
    match string_list(v)?.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

/// Reads one of our web-identity statements back into a [`WebModel`]; `Err` says how it
/// differs from the shape [`render_web`] produces (which makes it a hand edit).
fn parse_web(statement: &Value, host: &str, audience: &str) -> Result<WebModel, String> {
    const KEYS: [&str; 5] = ["Sid", "Effect", "Principal", "Action", "Condition"];
    let (obj, provider_arn) = owned_shape(statement, &KEYS, "Federated", "Federated provider")?;
    if obj.get("Action").and_then(single_string).as_deref() != Some(WEB_IDENTITY_ACTION) {
        return Err(format!("Action is not {WEB_IDENTITY_ACTION}"));
    }
    let condition = obj
        .get("Condition")
        .and_then(Value::as_object)
        .ok_or("no Condition")?;
    let (aud_key, sub_key) = (format!("{host}:aud"), format!("{host}:sub"));
    let equals = condition
        .get("StringEquals")
        .and_then(Value::as_object)
        .ok_or("no StringEquals condition")?;
    let like_block = condition.get("StringLike").and_then(Value::as_object);
    let operators = 1 + usize::from(like_block.is_some());
    if condition.len() != operators {
        return Err("condition operators other than StringEquals/StringLike".into());
    }
    let stated_aud = equals
        .get(&aud_key)
        .and_then(single_string)
        .ok_or_else(|| format!("StringEquals has no single {aud_key}"))?;
    if stated_aud != audience {
        return Err(format!(
            "its audience condition is {stated_aud:?} but the Sid is for {audience:?}"
        ));
    }
    let (subs_block, like) = match like_block {
        Some(block) => {
            if equals.len() != 1 {
                return Err("StringEquals has keys besides the audience".into());
            }
            (block, true)
        }
        None => (equals, false),
    };
    let expected_keys = if like { 1 } else { 2 };
    if subs_block.len() != expected_keys {
        return Err("condition keys besides the issuer's aud and sub".into());
    }
    let subs = subs_block
        .get(&sub_key)
        .and_then(string_list)
        .ok_or_else(|| format!("no list of subjects under {sub_key}"))?;
    Ok(WebModel {
        provider_arn,
        audience: audience.to_string(),
        like,
        subs: subs.into_iter().collect(),
    })
}

fn render(host: &str, model: &Model) -> Value {
    match model {
        Model::Web(web) => render_web(host, web),
        Model::Pod(pod) => pod::render(pod),
    }
}

/// The one statement we write per (issuer, audience).
fn render_web(host: &str, model: &WebModel) -> Value {
    let (aud_key, sub_key) = (format!("{host}:aud"), format!("{host}:sub"));
    // One subject is written as a string: IAM accepts both and the list brackets would
    // cost two characters of quota.
    let subs = match model.subs.len() {
        1 => json!(model.subs.first()),
        _ => json!(model.subs),
    };
    let mut condition = Map::new();
    if model.like {
        condition.insert("StringEquals".into(), json!({ aud_key: model.audience }));
        condition.insert("StringLike".into(), json!({ sub_key: subs }));
    } else {
        condition.insert(
            "StringEquals".into(),
            json!({ aud_key: model.audience, sub_key: subs }),
        );
    }
    json!({
        "Sid": statement_sid(host, &model.audience),
        "Effect": "Allow",
        "Principal": {"Federated": model.provider_arn},
        "Action": WEB_IDENTITY_ACTION,
        "Condition": condition,
    })
}

struct Builder<'a> {
    input: &'a CompileInput<'a>,
    host: &'a str,
    current: &'a Current<'a>,
    base: PolicyDocument,
}

/// A step of the refusal's search: one subject (or one collapsed namespace) of an audience,
/// or one Pod Identity ServiceAccount (or one namespace without its ServiceAccount
/// condition).
enum Unit<'a> {
    Web {
        audience: &'a str,
        value: String,
        subjects: Vec<&'a Subject>,
    },
    Pod {
        namespace: &'a str,
        /// `None`: the collapsed namespace.
        service_account: Option<&'a str>,
        names: Vec<&'a str>,
    },
}

impl Builder<'_> {
    /// Foreign statements stay where they were; ours replace our old ones in place (so a
    /// diff of the document shows only what changed); new ones are appended in order.
    fn statements(&self, models: &BTreeMap<Owner, Model>) -> Vec<Value> {
        let mut out = Vec::with_capacity(self.current.slots.len() + models.len());
        let mut placed = BTreeSet::new();
        for slot in &self.current.slots {
            match slot {
                Slot::Foreign(v) => out.push((*v).clone()),
                Slot::Owned(owner) => {
                    if let Some(model) = models.get(owner) {
                        out.push(render(self.host, model));
                        placed.insert(owner);
                    }
                }
            }
        }
        for (owner, model) in models {
            if !placed.contains(owner) {
                out.push(render(self.host, model));
            }
        }
        out
    }

    fn chars_with(&self, models: &BTreeMap<Owner, Model>) -> usize {
        self.base.with_statements(self.statements(models)).chars()
    }

    /// The units of the most collapsed form, in order: web-identity subjects by audience,
    /// then Pod Identity ServiceAccounts by namespace.
    fn units<'w>(
        &self,
        want: &BTreeMap<&'w str, &'w BTreeSet<Subject>>,
        collapsed: &Collapsed,
    ) -> Vec<Unit<'w>>
    where
        Self: 'w,
    {
        let mut units = Vec::new();
        for (aud, subjects) in want {
            let mut by_value: BTreeMap<String, Vec<&Subject>> = BTreeMap::new();
            for s in subjects.iter() {
                let value = if collapsed.web.contains(&s.namespace) {
                    Subject::namespace_wildcard(&s.namespace)
                } else {
                    s.sub()
                };
                by_value.entry(value).or_default().push(s);
            }
            units.extend(by_value.into_iter().map(|(value, subjects)| Unit::Web {
                audience: aud,
                value,
                subjects,
            }));
        }
        if let Some(pod) = &self.input.pod_identity {
            for (ns, sas) in pod.desired.namespaces() {
                let names: Vec<&str> = sas.iter().map(String::as_str).collect();
                if collapsed.pod.contains(ns) {
                    units.push(Unit::Pod {
                        namespace: ns,
                        service_account: None,
                        names,
                    });
                } else {
                    units.extend(names.into_iter().map(|sa| Unit::Pod {
                        namespace: ns,
                        service_account: Some(sa),
                        names: vec![sa],
                    }));
                }
            }
        }
        units
    }

    /// The statements of the first `k` units (and the untagged Pod Identity statement, when
    /// wanted: it is one statement whatever the associations).
    fn prefix_models(&self, units: &[Unit<'_>], k: usize) -> BTreeMap<Owner, Model> {
        let mut web: BTreeMap<&str, WebModel> = BTreeMap::new();
        let mut pods: BTreeMap<&str, Option<BTreeSet<String>>> = BTreeMap::new();
        for unit in units.iter().take(k) {
            match unit {
                Unit::Web {
                    audience, value, ..
                } => {
                    let model = web.entry(audience).or_insert_with(|| WebModel {
                        provider_arn: self.input.provider_arn.to_string(),
                        audience: audience.to_string(),
                        like: false,
                        subs: BTreeSet::new(),
                    });
                    model.subs.insert(value.clone());
                }
                Unit::Pod {
                    namespace,
                    service_account,
                    ..
                } => {
                    let entry = pods.entry(namespace).or_insert(Some(BTreeSet::new()));
                    match (service_account, entry.as_mut()) {
                        (Some(sa), Some(set)) => {
                            set.insert(sa.to_string());
                        }
                        _ => *entry = None,
                    }
                }
            }
        }
        let mut models: BTreeMap<Owner, Model> = web
            .into_values()
            .map(|mut model| {
                model.like = model.subs.iter().any(|v| v.ends_with(":*"));
                (Owner::Audience(model.audience.clone()), Model::Web(model))
            })
            .collect();
        if let Some(pod) = &self.input.pod_identity {
            let agent = pod.agent_role_arn.to_string();
            for (ns, service_accounts) in pods {
                let owner = pod::Owner {
                    agent: agent.clone(),
                    namespace: Some(ns.to_string()),
                };
                let model = pod::Model::Tagged {
                    agent: agent.clone(),
                    cluster: pod.cluster.to_string(),
                    namespace: ns.to_string(),
                    service_accounts,
                };
                models.insert(Owner::Pod(owner), Model::Pod(model));
            }
            if pod.desired.untagged {
                let owner = pod::Owner {
                    agent: agent.clone(),
                    namespace: None,
                };
                let model = pod::Model::Untagged {
                    agent,
                    cluster: pod.cluster.to_string(),
                };
                models.insert(Owner::Pod(owner), Model::Pod(model));
            }
        }
        models
    }

    /// Finds which subjects do not fit: take the [`Unit`]s of the most collapsed form in
    /// order and binary-search the longest prefix within the quota — the size only grows as
    /// units are added.
    fn refusal(
        &self,
        want: &BTreeMap<&str, &BTreeSet<Subject>>,
        collapsed: &Collapsed,
        chars: usize,
    ) -> Refusal {
        let units = self.units(want, collapsed);
        let fits =
            |k: usize| self.chars_with(&self.prefix_models(&units, k)) <= self.input.max_chars;
        // The longest fitting prefix. The full list is known not to fit; the empty one may
        // not either (foreign statements alone over the quota).
        let fitting = if fits(0) {
            // Search the first length in 1..=len that does not fit.
            let (mut lo, mut hi) = (1, units.len());
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if fits(mid) {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            lo - 1
        } else {
            0
        };
        let not_fitting = units
            .iter()
            .skip(fitting)
            .flat_map(|unit| match unit {
                Unit::Web {
                    audience, subjects, ..
                } => subjects
                    .iter()
                    .map(|s| (audience.to_string(), (*s).clone()))
                    .collect::<Vec<_>>(),
                Unit::Pod {
                    namespace, names, ..
                } => names
                    .iter()
                    .filter_map(|sa| Subject::new(namespace, sa).ok())
                    .map(|s| (POD_IDENTITY_LABEL.to_string(), s))
                    .collect(),
            })
            .collect();
        let pod_count = self
            .input
            .pod_identity
            .as_ref()
            .map_or(0, |p| p.desired.count());
        Refusal {
            chars,
            quota: self.input.max_chars,
            current_chars: self.current.chars(),
            collapsed: collapsed.namespaces(),
            desired: want.values().map(|s| s.len()).sum::<usize>() + pod_count,
            not_fitting,
        }
    }
}
