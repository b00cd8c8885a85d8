//! PURE: the issuer URL, and the one rule that turns it into IAM's `host/path` (the provider's
//! URL, the prefix of the trust-policy condition keys, the tail of the provider ARN).
//!
//! Two entry points, one rule:
//! - [`IssuerUrl::parse`] is strict, for what is written to IAM or compared with tokens (the
//!   controller's issuer, the OIDC provider calls, the doctor's provider ARN, `irsa issuer
//!   render`): exactly `https://` (lower-case: IAM rejects `HTTPS://`), a host, no query or
//!   fragment, no whitespace, quote, backslash or second scheme, at most 255 characters.
//!   Nothing is normalised: STS compares a token's `iss` with the provider's URL byte for
//!   byte, so a "helpful" trailing slash or lower-casing would make a provider no token
//!   matches. Legal oddities (trailing `/`, upper-case host) are [`IssuerUrl::warnings`].
//! - [`issuer_host_path`] is lenient, for text a person typed or a policy holds (`irsa
//!   trust-policy --issuer`, `Principal.Federated` values, Sids): it trims, and strips an
//!   `https://` or `http://` in any case, or none. On a parsed [`IssuerUrl`] both give the
//!   same `host/path`, so the Sids and condition keys of the trust compiler match the
//!   provider the AWS layer creates.

use std::fmt;
use std::ops::Deref;

/// IAM's limit on an OIDC provider URL.
const MAX_LEN: usize = 255;

/// A validated issuer URL, exactly as tokens carry it in `iss` (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IssuerUrl(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("issuer {url:?} cannot be an IAM OIDC provider URL: {why}")]
pub struct InvalidIssuerUrl {
    pub url: String,
    /// What is wrong, worded to follow "it" (`it does not start with https://`).
    pub why: String,
}

impl IssuerUrl {
    /// Validates `url` as IAM takes an OIDC provider URL; nothing is trimmed or normalised.
    pub fn parse(url: &str) -> Result<Self, InvalidIssuerUrl> {
        let invalid = |why: &str| InvalidIssuerUrl {
            url: url.to_string(),
            why: why.to_string(),
        };
        // Checked on the raw text: the URL parser would lower-case the scheme and accept
        // `HTTPS://`, which IAM does not.
        let Some(host_path) = url.strip_prefix("https://") else {
            return Err(invalid("it does not start with https://"));
        };
        let parsed = url::Url::parse(url).map_err(|e| invalid(&format!("not a URL ({e})")))?;
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(invalid("it has no host"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() || url.contains(['?', '#']) {
            return Err(invalid(
                "it has a query or fragment, which OIDC issuers may not have",
            ));
        }
        if url.len() > MAX_LEN {
            return Err(invalid("it is longer than IAM's 255 characters"));
        }
        if !is_issuer_host_path(host_path) {
            return Err(invalid(
                "it has whitespace, a control character, a quote, a backslash or a second \
                 scheme in it",
            ));
        }
        Ok(Self(url.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// IAM's form of the URL (no `https://`): the provider's URL and the prefix of the
    /// trust-policy condition keys (`<host/path>:sub`).
    pub fn host_path(&self) -> &str {
        issuer_host_path(&self.0)
    }

    /// The ARN IAM gives this issuer's OIDC provider in `account` (whether or not it exists).
    pub fn provider_arn(&self, partition: &str, account: &str) -> String {
        format!(
            "arn:{partition}:iam::{account}:oidc-provider/{}",
            self.host_path()
        )
    }

    /// Legal but often unintended details, for a log line or an Event.
    pub fn warnings(&self) -> Vec<String> {
        let url = &self.0;
        let mut warnings = Vec::new();
        let raw_host = self
            .host_path()
            .split(['/', ':'])
            .next()
            .unwrap_or_default();
        if raw_host.bytes().any(|b| b.is_ascii_uppercase()) {
            warnings.push(format!(
                "issuer {url:?} has upper-case letters in its host; IAM and STS compare it \
                 byte-for-byte, so tokens must carry exactly this spelling"
            ));
        }
        if url.ends_with('/') {
            warnings.push(format!(
                "issuer {url:?} ends with '/'; IAM and STS compare it byte-for-byte, so tokens \
                 must carry the slash too (check the API server's --service-account-issuer)"
            ));
        }
        warnings
    }
}

/// Reads as the URL itself: it is one, with an invariant.
impl Deref for IssuerUrl {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IssuerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The issuer as IAM's condition keys and provider ARNs spell it: the URL without its
/// `https://` scheme (`oidc.eks.eu-west-1.amazonaws.com/id/ABC`). Nothing else is changed:
/// a trailing slash or upper-case letters are part of the issuer IAM compares byte-for-byte,
/// so normalising them here would hide exactly the mismatch users need to see.
pub fn issuer_host_path(issuer: &str) -> &str {
    let s = issuer.trim();
    for scheme in ["https://", "http://"] {
        // `get` and `split_at_checked`, not `s[..n]`: byte `n` of an arbitrary issuer can
        // fall inside a multi-byte character (`https:/é`), where slicing panics.
        if let Some((head, rest)) = s.split_at_checked(scheme.len())
            && head.eq_ignore_ascii_case(scheme)
        {
            return rest;
        }
    }
    s
}

/// Whether `host_path` (the issuer without its scheme) names a host: not empty, no
/// whitespace, control character, quote or backslash, no query or fragment (an OIDC issuer
/// has neither), no second scheme, and not a mangled scheme such as `https:/x` or `https:x`
/// (which would put `https:` where IAM expects the host).
pub fn is_issuer_host_path(host_path: &str) -> bool {
    let host = host_path.split('/').next().unwrap_or_default();
    let lower = host_path.to_ascii_lowercase();
    !host.is_empty()
        && !host_path
            .contains(|c: char| c.is_whitespace() || c.is_control() || "\"\\?#".contains(c))
        && !host_path.contains("://")
        && !lower.starts_with("https:")
        && !lower.starts_with("http:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_check_table() {
        let ok: &[(&str, usize)] = &[
            ("https://oidc.eks.us-east-1.amazonaws.com/id/ABC", 0),
            ("https://s3.amazonaws.com/bucket/cluster", 0),
            ("https://issuer.example:8443", 0),
            ("https://Issuer.example/x", 1),
            ("https://issuer.example/", 1),
        ];
        for (url, warnings) in ok {
            assert_eq!(
                IssuerUrl::parse(url).unwrap().warnings().len(),
                *warnings,
                "{url}"
            );
        }
        let long = format!("https://x.example/{}", "a".repeat(250));
        let bad = [
            "http://issuer.example",
            "HTTPS://issuer.example",
            "issuer.example",
            "https://",
            "https://issuer.example/?a=b",
            "https://issuer.example/#frag",
            long.as_str(),
        ];
        for url in bad {
            assert!(IssuerUrl::parse(url).is_err(), "{url}");
        }
    }

    #[test]
    fn provider_url_only_strips_the_scheme() {
        let host_path = |url: &str| IssuerUrl::parse(url).unwrap().host_path().to_string();
        assert_eq!(
            host_path("https://oidc.eks.eu-west-1.amazonaws.com/id/ABC"),
            "oidc.eks.eu-west-1.amazonaws.com/id/ABC"
        );
        // Trailing slash and case are kept: IAM compares them.
        assert_eq!(host_path("https://Issuer.example/"), "Issuer.example/");
        for bad in [
            "http://issuer.example",
            "issuer.example",
            "https://",
            "HTTPS://x",
        ] {
            assert!(IssuerUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            IssuerUrl::parse("https://k8s.example/x")
                .unwrap()
                .provider_arn("aws-cn", "123456789012"),
            "arn:aws-cn:iam::123456789012:oidc-provider/k8s.example/x"
        );
    }

    #[test]
    fn what_the_host_path_check_adds_to_the_url_parser() {
        for bad in [
            "https://issuer.example/a b",
            "https://issuer.example/a\"b",
            "https://issuer.example/a\\b",
            "https://issuer.example/x/https://y",
            "https://issuer.example ",
        ] {
            assert!(IssuerUrl::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn issuer_host_path_strips_only_the_scheme() {
        assert_eq!(
            issuer_host_path("https://oidc.example.com/id/X"),
            "oidc.example.com/id/X"
        );
        assert_eq!(
            issuer_host_path("HTTPS://oidc.example.com"),
            "oidc.example.com"
        );
        assert_eq!(
            issuer_host_path("oidc.example.com/id/X/"),
            "oidc.example.com/id/X/"
        );
        assert_eq!(
            issuer_host_path(" https://Oidc.Example.com "),
            "Oidc.Example.com"
        );
    }

    #[test]
    fn issuer_host_path_never_splits_a_character() {
        // Byte 7 or 8 of these falls inside `é` (two bytes): slicing there used to panic.
        assert_eq!(issuer_host_path("https:/é"), "https:/é");
        assert_eq!(issuer_host_path("http://é"), "é");
        assert_eq!(issuer_host_path("oidc.exé.com/id/1"), "oidc.exé.com/id/1");
        assert_eq!(issuer_host_path("https://oidc.exé.com"), "oidc.exé.com");
        assert_eq!(issuer_host_path("ééééé"), "ééééé");
    }

    proptest::proptest! {
        /// Whatever the strict parser accepts, the lenient rule reads the same way.
        #[test]
        fn a_parsed_url_has_the_lenient_host_path(s in "[a-zA-Z0-9.:/é -]{0,24}") {
            let url = format!("https://{s}");
            if let Ok(parsed) = IssuerUrl::parse(&url) {
                proptest::prop_assert_eq!(parsed.host_path(), s.as_str());
            }
        }
    }
}
