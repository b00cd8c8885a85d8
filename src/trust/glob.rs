//! IAM's `*`/`?` wildcard matching (StringLike, ArnLike, Action names).
//!
//! Written here rather than taken from `wildmatch` so the semantics are exactly IAM's and
//! visible in one place: `*` matches any run of characters (including `/` and `:`, which
//! path-style globs treat specially), `?` exactly one character, everything else literally
//! and case-sensitively. There is no escape character and no `[...]` class in IAM.

/// Does `text` match the IAM wildcard `pattern`? Case-sensitive; callers lowercase both
/// sides for the case-insensitive uses (action names).
///
/// Classic linear-time two-pointer algorithm: on a mismatch, backtrack only to the most
/// recent `*` (earlier stars can never be needed again), so no pattern is exponential.
pub fn matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Position of the last `*` seen in the pattern and the text index it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            // Let the last `*` swallow one more character and retry from there.
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
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
