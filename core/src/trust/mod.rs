//! PURE: IAM policy documents, the trust-policy compiler and the condition evaluator
//! (docs/design.md §4.3 and §5). No I/O: the controller and the doctor bring the documents and claims.
//!
//! # The API
//!
//! - [`PolicyDocument::parse`] reads a document as JSON or in `GetRole`'s URL-encoded form
//!   ([`decode_policy_document`], which the AWS layer also uses to keep IAM's exact text).
//!   Statements stay raw JSON, so statements we do not own are written back unchanged.
//!   [`PolicyDocument::chars`] is IAM's size ([`iam_chars`]: characters of the minified
//!   form, whitespace excluded).
//! - [`compile`] takes a [`CompileInput`] (current document, this cluster's issuer and
//!   provider ARN, desired [`Subject`]s grouped by audience, the quota, the namespaces
//!   allowed to collapse to `ns:*`, and the Pod Identity statements wanted,
//!   [`PodIdentityInput`]) and returns [`Compiled`]:
//!   `Unchanged` (write nothing), `Changed { document, chars, .. }` (write it) or
//!   `NoStatementLeft` (removing our statements would leave an empty policy, which IAM
//!   rejects: the caller decides) — or `Err(`[`Refusal`]`)` with the numbers when the
//!   subjects cannot fit.
//! - [`evaluate`] answers "would IAM let `sts:AssumeRoleWithWebIdentity` through for a token
//!   with these [`Claims`] from this provider?" as a [`Decision`] `{ allowed, matched_sid,
//!   reasons }`, and [`evaluate_assume_role`] the same for `sts:AssumeRole` with session tags
//!   by the Pod Identity agent's role; the reasons are worded for humans (`sub is system:serviceaccount:team-a:app,
//!   trust allows only system:serviceaccount:team-a:api (StringEquals on <issuer>:sub)`).
//! - [`provider_host_path`] (provider ARN → `host/path`), [`statement_sid`]; the issuer
//!   URL → `host/path` rule is [`crate::issuer`]'s.
//!
//! # The statements we own
//!
//! One statement per (issuer, audience), identified by [`statement_sid`] — `Irsa` + 16 hex
//! digits of FNV-1a-64 over `host/path NUL audience` (IAM allows only alphanumerics in a
//! Sid). Every statement without such a Sid (other clusters, humans, SAML, services) is
//! foreign and kept exactly where it is. A statement with our Sid but another shape is a
//! hand edit: reported (`hand_edited` of [`Compiled::Changed`]), then replaced.
//!
//! ```json
//! {"Sid": "Irsa…", "Effect": "Allow",
//!  "Principal": {"Federated": "arn:aws:iam::111122223333:oidc-provider/<host/path>"},
//!  "Action": "sts:AssumeRoleWithWebIdentity",
//!  "Condition": {"StringEquals": {"<host/path>:aud": "sts.amazonaws.com",
//!                                 "<host/path>:sub": ["system:serviceaccount:ns:a", ...]}}}
//! ```
//!
//! With Pod Identity (`--pod-identity-agent-role-arn`), one statement per (agent role,
//! cluster, namespace), identified by [`pod_identity_sid`] — `IrsaPod` + 16 hex digits of
//! FNV-1a-64 over `agent-role NUL cluster NUL namespace` — trusts the agent's role for that
//! namespace's ServiceAccounts of this cluster, by the session tags the agent sends:
//!
//! ```json
//! {"Sid": "IrsaPod…", "Effect": "Allow",
//!  "Principal": {"AWS": "arn:aws:iam::111122223333:role/irsa-agent"},
//!  "Action": ["sts:AssumeRole", "sts:TagSession"],
//!  "Condition": {"StringEquals": {"aws:RequestTag/irsa-cluster-name": "<cluster>",
//!                                 "aws:RequestTag/kubernetes-namespace": "<ns>",
//!                                 "aws:RequestTag/kubernetes-service-account": ["sa1", ...]}}}
//! ```
//!
//! and, while an association with `disableSessionTags` names the role, one statement
//! ([`pod_identity_untagged_sid`]) trusting the agent's role for `sts:AssumeRole` without
//! conditions (see `pod::Model::Untagged` for why). A Pod Identity statement of this cluster
//! that is no longer wanted (its namespace, or an agent role replaced) is recognised by its
//! Sid matching its own principal and namespace, and removed; another cluster's hash
//! differently and are foreign. Without the agent's role, Pod Identity statements are left
//! as they are.
//!
//! Subjects are sorted; a single subject is written as a string. Comparison with the current
//! document is semantic (subject order, key order, whitespace, string-vs-list do not count),
//! so at steady state nothing is written.
//!
//! # Compaction
//!
//! When the document exceeds the quota, allowed namespaces are collapsed one at a time,
//! largest (most subjects) first, to `system:serviceaccount:<ns>:*`, until it fits. As soon
//! as one namespace is collapsed, the statement's whole `sub` list moves under `StringLike`
//! (exact subjects mean the same there: [`Subject`] rejects `*` and `?`): keeping exact
//! subjects under `StringEquals` and patterns under `StringLike` in one statement would AND
//! them, trusting nobody. A Pod Identity namespace whose associations' grants allow it is a
//! candidate too (by its number of ServiceAccounts): its statement loses the ServiceAccount
//! condition. A document no larger than the current one is always accepted (IAM
//! already holds that size). Otherwise the compiler refuses, listing the subjects beyond
//! the longest prefix (by audience, then subject) that fits.

mod compile;
mod document;
mod evaluate;
pub mod glob;
mod pod;
mod subject;

pub use self::{
    compile::{
        CompileInput, Compiled, HandEdit, POD_IDENTITY_LABEL, Refusal, WEB_IDENTITY_ACTION, compile,
    },
    document::{
        DEFAULT_MAX_CHARS, POD_IDENTITY_SID_PREFIX, POLICY_VERSION, ParseError, PolicyDocument,
        decode_policy_document, iam_chars, pod_identity_sid, pod_identity_untagged_sid,
        provider_host_path, statement_sid,
    },
    evaluate::{Claims, Decision, evaluate, evaluate_assume_role},
    pod::{ASSUME_ROLE_ACTION, PodIdentityInput, PodIdentityTrust, TAG_SESSION_ACTION},
    subject::{SUBJECT_PREFIX, Subject, SubjectError},
};

#[cfg(test)]
mod tests;
