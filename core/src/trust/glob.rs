//! IAM's `*`/`?` wildcard matching (StringLike, ArnLike, Action names).
//!
//! IAM's semantics: `*` matches any run of characters (including `/` and `:`, which
//! path-style globs treat specially), `?` exactly one character, everything else literally
//! and case-sensitively; no escape character and no `[...]` class. `wildmatch` implements
//! exactly that (linear time, no backtracking blow-up); the tests below pin the semantics
//! so a crate upgrade that changes them fails here.

use wildmatch::WildMatch;

/// Does `text` match the IAM wildcard `pattern`? Case-sensitive; callers lowercase both
/// sides for the case-insensitive uses (action names).
pub fn matches(pattern: &str, text: &str) -> bool {
    WildMatch::new(pattern).matches(text)
}

/// Whether a policy value uses wildcard characters at all.
pub fn has_wildcards(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_wildcard_semantics() {
        let cases = [
            (
                "system:serviceaccount:team-a:*",
                "system:serviceaccount:team-a:app",
                true,
            ),
            (
                "system:serviceaccount:team-a:*",
                "system:serviceaccount:team-b:app",
                false,
            ),
            // `*` crosses `:` and `/`, unlike path globs.
            ("system:serviceaccount:*", "system:serviceaccount:a:b", true),
            (
                "arn:aws:iam::*:oidc-provider/*",
                "arn:aws:iam::1:oidc-provider/x/id/Y",
                true,
            ),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a?c", "abbc", false),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("**a", "bba", true),
            // Case-sensitive, like StringLike.
            ("System:*", "system:x", false),
            // Multi-byte characters count as one for `?`.
            ("é?", "éa", true),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(matches(pattern, text), want, "{pattern:?} vs {text:?}");
        }
    }

    #[test]
    fn no_exponential_blowup() {
        let text = "a".repeat(5000);
        let pattern = format!("{}b", "*a".repeat(50));
        assert!(!matches(&pattern, &text));
    }
}
