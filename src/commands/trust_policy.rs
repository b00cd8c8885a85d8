//! `irsa trust-policy`: the trust policy the controller would write, offline.
//!
//! stdout: the resulting document (pretty JSON). stderr: `chars: N / quota` and notes.
//! Exit 0 when a document results, 1 when it cannot fit (or would be empty), 2 on bad input.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::ExitCode,
};

use crate::{
    cli::TrustPolicyArgs,
    error::UsageError,
    issuer::{is_issuer_host_path, issuer_host_path},
    trust::{self, CompileInput, Compiled, PolicyDocument, Subject},
};

pub fn run(args: TrustPolicyArgs) -> anyhow::Result<ExitCode> {
    let host = issuer_host_path(&args.issuer);
    if !is_issuer_host_path(host) {
        return Err(UsageError::new(format!(
            "--issuer {:?} is not an issuer URL like https://oidc.eks.eu-west-1.amazonaws.com/id/ABC",
            args.issuer
        ))
        .into());
    }
    match trust::provider_host_path(&args.provider_arn) {
        None => {
            return Err(UsageError::new(format!(
                "--provider-arn {:?} is not an IAM OIDC provider ARN \
                 (arn:aws:iam::<12-digit account>:oidc-provider/{host})",
                args.provider_arn
            ))
            .into());
        }
        // Not fatal (the user may be exploring), but IAM would never match such a token.
        Some(provider_host) if provider_host != host => eprintln!(
            "warning: --provider-arn is the provider of {provider_host}, not of the issuer \
             {host}; tokens from {host} will not be trusted through it"
        ),
        Some(_) => {}
    }
    if args.audience.trim().is_empty() {
        return Err(UsageError::new("--audience must not be empty").into());
    }
    if args.max_chars == 0 {
        return Err(
            UsageError::new("--max-chars must be at least 1 (IAM's default is 2048)").into(),
        );
    }
    let subjects = args
        .subjects
        .iter()
        .map(|s| s.trim().parse::<Subject>())
        .collect::<Result<BTreeSet<_>, _>>()
        .map_err(|e| UsageError::new(format!("--subject {e}")))?;
    let current = args.current.as_deref().map(read_document).transpose()?;
    if subjects.is_empty() && current.is_none() {
        return Err(UsageError::new(
            "nothing to compile: give at least one --subject namespace:serviceaccount, or \
             --current to see the policy without this cluster's statement",
        )
        .into());
    }
    let desired = BTreeMap::from([(args.audience.clone(), subjects)]);
    let wildcards: BTreeSet<String> = args
        .allow_namespace_wildcard
        .iter()
        .map(|ns| ns.trim().to_string())
        .filter(|ns| !ns.is_empty())
        .collect();

    let quota = args.max_chars;
    let compiled = trust::compile(&CompileInput {
        current: current.as_ref(),
        issuer: &args.issuer,
        provider_arn: &args.provider_arn,
        desired: &desired,
        max_chars: quota,
        wildcard_namespaces: &wildcards,
        pod_identity: None,
    });
    match compiled {
        // Nothing to change, but the document as it stands does not fit the quota given: the
        // answer is "it cannot fit", not "unchanged" (IAM would refuse this very document).
        Ok(Compiled::Unchanged { chars, .. }) if chars > quota => {
            eprintln!(
                "error: the current document already says this, but it is {chars} characters, \
                 over the quota of {quota} (raise the role's trust-policy quota or --max-chars, \
                 or remove statements)"
            );
            eprintln!("chars: {chars} / {quota}");
            Ok(ExitCode::from(1))
        }
        Ok(Compiled::Unchanged { chars, collapsed }) => {
            // `current` is Some here: without a current document nothing is "unchanged".
            if let Some(doc) = &current {
                println!("{}", doc.to_pretty());
            }
            note_collapsed(&collapsed);
            eprintln!(
                "chars: {chars} / {quota} (unchanged: the current document already says this)"
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(Compiled::Changed {
            document,
            chars,
            collapsed,
            hand_edited,
            removed_audiences,
        }) => {
            println!("{}", document.to_pretty());
            for edit in &hand_edited {
                eprintln!("warning: {edit}");
            }
            for aud in &removed_audiences {
                eprintln!("note: the statement for audience {aud} is removed (no subject left)");
            }
            note_collapsed(&collapsed);
            eprintln!("chars: {chars} / {quota}");
            Ok(ExitCode::SUCCESS)
        }
        Ok(Compiled::NoStatementLeft { .. }) => {
            eprintln!(
                "error: without this cluster's statement the trust policy has no statement \
                 left, and IAM rejects an empty trust policy; keep a subject or delete the role"
            );
            Ok(ExitCode::from(1))
        }
        Err(refusal) => {
            eprintln!("error: {refusal}");
            eprintln!("chars: {} / {quota}", refusal.chars);
            Ok(ExitCode::from(1))
        }
    }
}

fn note_collapsed(collapsed: &[String]) {
    for ns in collapsed {
        eprintln!(
            "note: namespace {ns} collapsed to system:serviceaccount:{ns}:* to fit the quota \
             (every ServiceAccount of {ns} is trusted)"
        );
    }
}

/// A policy document from a file (or stdin for `-`), plain JSON or URL-encoded.
fn read_document(path: &Path) -> anyhow::Result<PolicyDocument> {
    let text = super::read_input(path, "--current ")?;
    PolicyDocument::parse(&text).map_err(|e| {
        UsageError::new(format!(
            "--current {} {e}; expected the role's trust policy as JSON or as GetRole's \
             URL-encoded AssumeRolePolicyDocument",
            path.display()
        ))
        .into()
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use crate::issuer::{is_issuer_host_path, issuer_host_path};
    use crate::trust::{self, CompileInput, Subject};

    proptest::proptest! {
        /// What `run` does with `--issuer`, on any string: never a panic, and an accepted
        /// issuer compiles to a document whose condition keys start with its host.
        #[test]
        fn any_issuer_is_refused_or_compiled(
            issuer in proptest::prop_oneof![
                "\\PC{0,24}",
                "(?i:https?):/{0,3}\\PC{0,12}",
                "[ \t]*https://[a-zé.:/-]{0,16}[ \t]*",
            ],
        ) {
            let host = issuer_host_path(&issuer);
            if is_issuer_host_path(host) {
                let desired = BTreeMap::from([(
                    "sts.amazonaws.com".to_string(),
                    BTreeSet::from([Subject::new("a", "b").unwrap()]),
                )]);
                let provider = format!("arn:aws:iam::111122223333:oidc-provider/{host}");
                let compiled = trust::compile(&CompileInput {
                    current: None,
                    issuer: &issuer,
                    provider_arn: &provider,
                    desired: &desired,
                    max_chars: 2048,
                    wildcard_namespaces: &BTreeSet::new(),
                    pod_identity: None,
                });
                if let Ok(trust::Compiled::Changed { document, .. }) = compiled {
                    let key = format!("{host}:sub");
                    proptest::prop_assert!(document.to_compact().contains(&key));
                }
            }
        }
    }

    #[test]
    fn an_issuer_needs_a_host() {
        for ok in [
            "oidc.example.com",
            "oidc.example.com/id/X",
            "oidc.exé.com/id/1",
            "h:8443/x",
        ] {
            assert!(is_issuer_host_path(ok), "{ok:?}");
        }
        for bad in [
            "",
            "/id/X",
            "https:/",
            "https:/é",
            "HTTPS:x",
            "http:",
            "a b",
            "x\ny",
            "a/https://b",
            "x\\y",
            "x\"y",
            "x?q",
            "x#f",
        ] {
            assert!(!is_issuer_host_path(bad), "{bad:?}");
        }
    }
}
