//! PURE: Kubernetes object names (DNS-1123), as the API server validates them (a name that
//! fails these can exist in no cluster, so no lookup or log line needs it), and the names
//! irsa itself puts on objects that several modules share.

/// Tag naming the cluster (its `--cluster-name`): put on the OIDC providers the controller
/// creates, which is how it recognises them as its own, and read from roles, where it
/// restricts `irsa.dev/allowed-namespaces` to one cluster. Here because both the AWS layer and
/// the controller's authorization read it, and the AWS layer imports nothing from controller/.
pub const CLUSTER_TAG: &str = "irsa.dev/cluster";

/// Reason of the controller's Warning Event on a pod whose ServiceAccount has a role but that
/// carries no credentials; the doctor looks for it.
pub const POD_NOT_INJECTED: &str = "PodNotInjected";

/// A DNS-1123 label (namespaces): 1 to 63 of `[a-z0-9-]`, starting and ending alphanumeric.
pub fn is_dns1123_label(s: &str) -> bool {
    s.len() <= 63 && is_label_chars(s)
}

/// A DNS-1123 subdomain (ServiceAccount names): at most 253 characters, dot-separated
/// labels (each `[a-z0-9-]`, starting and ending alphanumeric; no empty label).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label_chars)
}

fn is_label_chars(s: &str) -> bool {
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let b = s.as_bytes();
    b.first().is_some_and(alnum)
        && b.last().is_some_and(alnum)
        && b.iter().all(|c| alnum(c) || *c == b'-')
}

/// `s` for a message: Debug-escaped, cut to 64 characters (the rest counted), so that a
/// hostile value cannot make an answer or a log line large or multi-line.
pub fn preview(s: &str) -> String {
    const MAX: usize = 64;
    let count = s.chars().count();
    if count <= MAX {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head:?}... ({} more characters)", count - MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains() {
        for ok in ["a", "team-a", "0", "a-b-c", &"a".repeat(63)] {
            assert!(is_dns1123_label(ok), "{ok}");
            assert!(is_dns1123_subdomain(ok), "{ok}");
        }
        for ok in ["my.sa-1", "a.b.c", &format!("{}.b", "a".repeat(100))] {
            assert!(!is_dns1123_label(ok), "{ok}");
            assert!(is_dns1123_subdomain(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a_b",
            "../../secrets/x",
            "x?watch=true",
            "x#frag",
            "a..b",
            ".a",
            "a.",
            "a.-b",
            "é",
            "a b",
            "a\nb",
            "team-a?dryRun=All",
            "a/b",
        ] {
            assert!(!is_dns1123_label(bad), "{bad:?}");
            assert!(!is_dns1123_subdomain(bad), "{bad:?}");
        }
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_subdomain(&"a".repeat(253)));
        assert!(!is_dns1123_subdomain(&"a".repeat(254)));
    }

    #[test]
    fn preview_is_short_and_one_line() {
        assert_eq!(preview("a\nb"), r#""a\nb""#);
        let long = preview(&"x".repeat(7_000_000));
        assert!(long.len() < 120, "{long}");
        assert!(long.ends_with("(6999936 more characters)"), "{long}");
    }
}
