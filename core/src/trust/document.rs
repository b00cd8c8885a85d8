//! IAM policy documents as IAM stores them: raw JSON, parsed from plain or URL-encoded text,
//! measured the way IAM measures them.

use std::fmt;

use serde_json::{Map, Value};

use crate::issuer::issuer_host_path;

/// The policy language version every document we create declares.
pub const POLICY_VERSION: &str = "2012-10-17";

/// IAM's default quota for a role trust policy (raisable to 4096, then 8192).
pub const DEFAULT_MAX_CHARS: usize = 2048;

/// A policy document, kept as the JSON IAM gave us.
///
/// Statements stay raw [`Value`]s (with `serde_json`'s `preserve_order`), so a statement
/// this crate does not own is written back with the same keys, key order and values.
/// Only the compact serialization can differ from the input: insignificant whitespace is
/// dropped and string escapes are normalised (`"\u0041"` becomes `"A"`) — IAM itself
/// returns documents normalised, and neither change alters meaning or IAM's size count.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDocument {
    root: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("is not valid JSON: {0}")]
    Json(String),
    #[error("is URL-encoded but does not decode to UTF-8")]
    UrlEncoding,
    #[error(
        "is not a JSON object (a policy document is `{{\"Version\": ..., \"Statement\": [...]}}`)"
    )]
    NotAnObject,
    #[error("has no `Statement`")]
    NoStatement,
    #[error("`Statement` must be an object or an array of objects; element {0} is not an object")]
    StatementNotObject(usize),
}

impl PolicyDocument {
    /// A new document with the given statements and the current policy version.
    pub fn new(statements: Vec<Value>) -> Self {
        let mut root = Map::new();
        root.insert("Version".into(), Value::String(POLICY_VERSION.into()));
        root.insert("Statement".into(), Value::Array(statements));
        Self { root }
    }

    /// Parses a document as a human writes it (JSON) or as `GetRole` returns it
    /// (`AssumeRolePolicyDocument` is URL-encoded, RFC 3986: `%7B%22Version%22...`).
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let trimmed = text.trim();
        let decoded = decode_policy_document(trimmed)?;
        match Self::from_json(decoded.trim()) {
            // Form encoding (`+` for a space) is not what IAM emits, but tools that re-encode
            // the document with a form encoder do: a `+` can only stand for whitespace where
            // it breaks the JSON, so retrying with spaces cannot change a parseable document.
            Err(ParseError::Json(_)) if !is_plain_json(trimmed) && trimmed.contains('+') => {
                Self::from_json(&decode_policy_document(&trimmed.replace('+', "%20"))?)
            }
            other => other,
        }
    }

    fn from_json(text: &str) -> Result<Self, ParseError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| ParseError::Json(e.to_string()))?;
        Self::from_value(value)
    }

    /// Validates the shape IAM requires: an object whose `Statement` is an object or an array
    /// of objects. Everything inside statements is left to the evaluator, which reads leniently.
    pub fn from_value(value: Value) -> Result<Self, ParseError> {
        let Value::Object(root) = value else {
            return Err(ParseError::NotAnObject);
        };
        match root.get("Statement") {
            None => return Err(ParseError::NoStatement),
            Some(Value::Object(_)) => {}
            Some(Value::Array(items)) => {
                if let Some(i) = items.iter().position(|s| !s.is_object()) {
                    return Err(ParseError::StatementNotObject(i));
                }
            }
            Some(_) => return Err(ParseError::StatementNotObject(0)),
        }
        Ok(Self { root })
    }

    /// The statements in document order (a single-object `Statement` is one statement).
    pub fn statements(&self) -> Vec<&Value> {
        match self.root.get("Statement") {
            Some(Value::Array(items)) => items.iter().collect(),
            Some(one @ Value::Object(_)) => vec![one],
            _ => Vec::new(),
        }
    }

    /// The same document (top-level keys and their order kept) with new statements.
    pub fn with_statements(&self, statements: Vec<Value>) -> Self {
        let mut statements = Some(Value::Array(statements));
        // Rebuilt key by key rather than cloned whole: the old statements are not copied.
        let root = self
            .root
            .iter()
            .map(|(k, v)| match k.as_str() {
                "Statement" => (k.clone(), statements.take().unwrap_or(Value::Null)),
                _ => (k.clone(), v.clone()),
            })
            .collect();
        Self { root }
    }

    pub fn as_value(&self) -> Value {
        Value::Object(self.root.clone())
    }

    /// The minified form IAM stores and measures.
    pub fn to_compact(&self) -> String {
        // Serializing a `Value` cannot fail: its map keys are always strings.
        serde_json::to_string(&self.root).unwrap_or_default()
    }

    pub fn to_pretty(&self) -> String {
        // Serializing a `Value` cannot fail: its map keys are always strings.
        serde_json::to_string_pretty(&self.root).unwrap_or_else(|_| self.to_compact())
    }

    /// The size IAM counts against the trust-policy quota. See [`iam_chars`].
    pub fn chars(&self) -> usize {
        // Counted while serializing, without building the string (the compiler measures
        // every candidate document).
        let mut counter = CharCounter(0);
        match serde_json::to_writer(&mut counter, &self.root) {
            Ok(()) => counter.0,
            Err(_) => iam_chars(&self.to_compact()),
        }
    }
}

impl fmt::Display for PolicyDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_compact())
    }
}

/// A policy document's JSON text from plain JSON or from GetRole's URL-encoded
/// `AssumeRolePolicyDocument` (RFC 3986: `%20` for a space, `+` stays `+`; the SDK hands it
/// over as received). Decoded exactly once: a document is a JSON object, so plain text starts
/// with `{` (after whitespace), and an encoded one never does (`{` is always escaped). Text
/// that some emulator or proxy already decoded is therefore returned as it is — the exact
/// bytes, so a `%41` inside a string stays `%41`.
pub fn decode_policy_document(text: &str) -> Result<String, ParseError> {
    if is_plain_json(text) {
        return Ok(text.to_string());
    }
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ParseError::UrlEncoding)
}

fn is_plain_json(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

/// IAM's size rule: "IAM doesn't count white space when calculating the size of a policy".
/// We count the Unicode scalar values (characters, not bytes — IAM's quota is in characters)
/// of the compact JSON serialization that are not JSON whitespace (space, tab, LF, CR). The
/// compact form has no whitespace between tokens, so only spaces inside string values are
/// skipped; they are skipped too, as IAM's count excludes all white space. Escapes count as
/// written (`\"` is two characters).
pub fn iam_chars(compact_json: &str) -> usize {
    compact_json
        .chars()
        .filter(|c| !matches!(c, ' ' | '\t' | '\n' | '\r'))
        .count()
}

/// Counts what [`iam_chars`] counts, from the UTF-8 bytes serde_json writes: a character
/// starts at every byte that is not a continuation byte (`10xxxxxx`).
struct CharCounter(usize);

impl std::io::Write for CharCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf
            .iter()
            .filter(|&&b| b & 0xC0 != 0x80 && !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .count();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The `Sid` of the statement this crate owns for (issuer, audience): `Irsa` followed by the
/// 16 hex digits of the 64-bit FNV-1a hash of `<issuer-host-path> NUL <audience>`.
///
/// IAM allows only `[A-Za-z0-9]` in a Sid, so the issuer cannot appear in it verbatim. The
/// hash needs stability across versions and machines, not secrecy: FNV-1a is fixed by its
/// spec and tiny. The issuer is taken through [`issuer_host_path`] first, so `https://x` and
/// `x` give the same Sid.
pub fn statement_sid(issuer: &str, audience: &str) -> String {
    let mut hash = Fnv1a::new();
    hash.write(issuer_host_path(issuer).as_bytes());
    hash.write(&[0]);
    hash.write(audience.as_bytes());
    format!("Irsa{:016x}", hash.0)
}

/// The `Sid` prefix of the Pod Identity statements: distinct from [`statement_sid`]'s by
/// length too (23 characters against 20), so neither scheme can claim the other's.
pub const POD_IDENTITY_SID_PREFIX: &str = "IrsaPod";

/// The `Sid` of the Pod Identity statement this crate owns for (agent role, cluster,
/// namespace): `IrsaPod` followed by the 16 hex digits of FNV-1a-64 over
/// `<agent role ARN> NUL <cluster> NUL <namespace>`. The cluster is in the hash, so two
/// clusters sharing one agent role each own their own statements on a role.
pub fn pod_identity_sid(agent_role_arn: &str, cluster: &str, namespace: &str) -> String {
    pod_identity_hash(agent_role_arn, cluster, namespace)
}

/// The `Sid` of the one Pod Identity statement without session-tag conditions (for
/// associations with `disableSessionTags`): as [`pod_identity_sid`] with `*` in place of the
/// namespace, which no namespace name can be.
pub fn pod_identity_untagged_sid(agent_role_arn: &str, cluster: &str) -> String {
    pod_identity_hash(agent_role_arn, cluster, "*")
}

fn pod_identity_hash(agent_role_arn: &str, cluster: &str, namespace: &str) -> String {
    let mut hash = Fnv1a::new();
    hash.write(agent_role_arn.as_bytes());
    hash.write(&[0]);
    hash.write(cluster.as_bytes());
    hash.write(&[0]);
    hash.write(namespace.as_bytes());
    format!("{POD_IDENTITY_SID_PREFIX}{:016x}", hash.0)
}

struct Fnv1a(u64);

impl Fnv1a {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Self {
        Self(Self::OFFSET)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }
}

/// The provider's host/path from an OIDC provider ARN
/// (`arn:aws:iam::111122223333:oidc-provider/<host-path>`), if it is one.
pub fn provider_host_path(provider_arn: &str) -> Option<&str> {
    let (head, host_path) = provider_arn.split_once(":oidc-provider/")?;
    let fields: Vec<&str> = head.split(':').collect();
    match fields[..] {
        ["arn", partition, "iam", "", account]
            if !partition.is_empty()
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && !host_path.is_empty() =>
        {
            Some(host_path)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        // Test vectors from the FNV spec (draft-eastlake-fnv): the Sid scheme is stable only
        // if the hash is exactly FNV-1a 64.
        for (input, want) in [
            ("", 0xcbf2_9ce4_8422_2325_u64),
            ("a", 0xaf63_dc4c_8601_ec8c),
            ("foobar", 0x8594_4171_f739_67e8),
        ] {
            let mut h = Fnv1a::new();
            h.write(input.as_bytes());
            assert_eq!(h.0, want, "{input:?}");
        }
    }

    #[test]
    fn sid_is_deterministic_alphanumeric_and_distinct() {
        let a = statement_sid(
            "oidc.eks.eu-west-1.amazonaws.com/id/ABC",
            "sts.amazonaws.com",
        );
        assert_eq!(
            a,
            statement_sid(
                "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC",
                "sts.amazonaws.com"
            )
        );
        assert!(a.starts_with("Irsa") && a.len() == 20);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        // Pinned: a change here orphans every statement already written to IAM.
        assert_eq!(statement_sid("example.com", "sts.amazonaws.com"), {
            let mut h = Fnv1a::new();
            h.write(b"example.com\0sts.amazonaws.com");
            format!("Irsa{:016x}", h.0)
        });
        assert_ne!(
            a,
            statement_sid("oidc.eks.eu-west-1.amazonaws.com/id/ABC", "other")
        );
        assert_ne!(
            a,
            statement_sid(
                "oidc.eks.eu-west-1.amazonaws.com/id/ABD",
                "sts.amazonaws.com"
            )
        );
        // The separator keeps (issuer, audience) pairs apart.
        assert_ne!(statement_sid("ab", "c"), statement_sid("a", "bc"));
    }

    #[test]
    fn pod_identity_sids_are_pinned_and_apart() {
        const AGENT: &str = "arn:aws:iam::111122223333:role/irsa-agent";
        let sid = pod_identity_sid(AGENT, "prod-1", "team-a");
        // Pinned: a change here orphans every Pod Identity statement already written to IAM.
        assert_eq!(sid, {
            let mut h = Fnv1a::new();
            h.write(b"arn:aws:iam::111122223333:role/irsa-agent\0prod-1\0team-a");
            format!("IrsaPod{:016x}", h.0)
        });
        assert!(sid.len() == 23 && sid.bytes().all(|b| b.is_ascii_alphanumeric()));
        let untagged = pod_identity_untagged_sid(AGENT, "prod-1");
        assert!(untagged.starts_with(POD_IDENTITY_SID_PREFIX) && untagged.len() == 23);
        assert_ne!(sid, untagged);
        assert_ne!(sid, pod_identity_sid(AGENT, "prod-2", "team-a"));
        assert_ne!(sid, pod_identity_sid(AGENT, "prod-1", "team-b"));
        assert_ne!(untagged, pod_identity_untagged_sid(AGENT, "prod-2"));
        assert_ne!(
            pod_identity_sid(AGENT, "a", "bc"),
            pod_identity_sid(AGENT, "ab", "c")
        );
        // Never one of the web-identity Sids (20 characters).
        assert_ne!(sid.len(), statement_sid("x", "y").len());
    }

    proptest::proptest! {
        #[test]
        fn issuer_host_path_takes_any_string(s in "\\PC{0,24}", prefix in "(?i:https?:/{0,2})?") {
            let issuer = format!("{prefix}{s}");
            let host = issuer_host_path(&issuer);
            // A suffix of the trimmed input, whatever the input.
            proptest::prop_assert!(issuer.trim().ends_with(host));
            let _ = statement_sid(&issuer, "sts.amazonaws.com");
        }
    }

    #[test]
    fn policy_documents_are_url_decoded_exactly_once() {
        let plain = r#"{"Version":"2012-10-17","Statement":[{"Sid":"a+b %41 é"}]}"#;
        // RFC 3986 encoding as IAM does it: `+` and `%` escaped, `/` kept.
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Sid%22%3A%22a%2Bb%20%2541%20%C3%A9%22%7D%5D%7D";
        assert_eq!(decode_policy_document(encoded).unwrap(), plain);
        // Already plain (an emulator or proxy decoded it): untouched, `%41` stays.
        assert_eq!(decode_policy_document(plain).unwrap(), plain);
        assert!(decode_policy_document("%7B%FF%7D").is_err());
    }

    proptest::proptest! {
        /// Whatever a policy contains, IAM's RFC 3986 encoding (Python's `quote`, which keeps
        /// only unreserved characters and `/`) decodes back to the same bytes.
        #[test]
        fn any_encoded_document_decodes_to_itself(body in "\\PC*") {
            const IAM: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
                .remove(b'/')
                .remove(b'-')
                .remove(b'_')
                .remove(b'.')
                .remove(b'~');
            let doc = format!("{{\"Statement\":[{{\"Sid\":{body:?}}}]}}");
            let encoded = percent_encoding::utf8_percent_encode(&doc, IAM).to_string();
            proptest::prop_assert_eq!(decode_policy_document(&encoded).unwrap(), doc.clone());
            proptest::prop_assert_eq!(decode_policy_document(&doc).unwrap(), doc);
        }
    }

    #[test]
    fn provider_host_path_reads_oidc_provider_arns_only() {
        assert_eq!(
            provider_host_path("arn:aws:iam::111122223333:oidc-provider/oidc.example.com/id/X"),
            Some("oidc.example.com/id/X")
        );
        assert_eq!(
            provider_host_path("arn:aws-cn:iam::111122223333:oidc-provider/x"),
            Some("x")
        );
        assert_eq!(provider_host_path("arn:aws:iam::111122223333:role/x"), None);
        assert_eq!(
            provider_host_path("arn:aws:iam::1111:oidc-provider/x"),
            None
        );
        assert_eq!(provider_host_path("oidc.example.com"), None);
    }

    #[test]
    fn size_excludes_whitespace_and_counts_characters() {
        assert_eq!(iam_chars(r#"{"a":"b c"}"#), 10);
        assert_eq!(iam_chars("{\n  \"a\": \"é\"\n}"), 9);
        let pretty = PolicyDocument::parse(
            r#"{ "Version": "2012-10-17",
                 "Statement": [ { "Effect": "Allow", "Action": "sts:AssumeRole" } ] }"#,
        )
        .unwrap();
        let compact = pretty.to_compact();
        assert_eq!(pretty.chars(), compact.len());
        assert_eq!(pretty.chars(), iam_chars(&pretty.to_pretty()));
        // The streaming count agrees with the rule on multi-byte characters, spaces inside
        // strings and escapes.
        let odd = PolicyDocument::parse(r#"{"Statement":[{"Sid":"a b\tçé€𝄞\"x\u0041"}]}"#).unwrap();
        assert_eq!(odd.chars(), iam_chars(&odd.to_compact()));
        assert_eq!(
            odd.to_compact(),
            r#"{"Statement":[{"Sid":"a b\tçé€𝄞\"xA"}]}"#
        );
        assert_eq!(odd.chars(), 38);
    }

    #[test]
    fn parses_plain_url_encoded_and_form_encoded() {
        let plain = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}}"#;
        let encoded: String =
            percent_encoding::utf8_percent_encode(plain, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        assert!(encoded.starts_with("%7B%22Version%22"));
        let a = PolicyDocument::parse(plain).unwrap();
        let b = PolicyDocument::parse(&encoded).unwrap();
        assert_eq!(a, b);
        assert_eq!(b.to_compact(), plain);
        assert_eq!(b.statements().len(), 1);
        let form = "%7B%22Version%22%3A+%222012-10-17%22%2C+%22Statement%22%3A+%5B%5D%7D";
        assert_eq!(PolicyDocument::parse(form).unwrap().statements().len(), 0);
    }

    #[test]
    fn rejects_what_is_not_a_policy() {
        assert!(matches!(
            PolicyDocument::parse("nope"),
            Err(ParseError::Json(_))
        ));
        assert!(matches!(
            PolicyDocument::parse("%FF%FE"),
            Err(ParseError::UrlEncoding)
        ));
        assert_eq!(PolicyDocument::parse("[1]"), Err(ParseError::NotAnObject));
        assert_eq!(
            PolicyDocument::parse(r#"{"Version":"x"}"#),
            Err(ParseError::NoStatement)
        );
        assert_eq!(
            PolicyDocument::parse(r#"{"Statement":[{},"x"]}"#),
            Err(ParseError::StatementNotObject(1))
        );
    }
}
