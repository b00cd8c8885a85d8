//! Trust policies: parse a document, evaluate it for a token, and compile this cluster's
//! statements into it. Input: `<issuer>\n<sub>\n<aud>\n<policy document>`.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use irsa::issuer::issuer_host_path;
use irsa::trust::{
    Claims, CompileInput, DEFAULT_MAX_CHARS, PolicyDocument, Subject, compile, evaluate,
};
use libfuzzer_sys::fuzz_target;

const PROVIDER: &str =
    "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(4, '\n');
    let (Some(issuer), Some(sub), Some(aud), Some(document)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let _ = issuer_host_path(issuer);
    let Ok(policy) = PolicyDocument::parse(document) else {
        return;
    };
    let decision = evaluate(&policy, PROVIDER, &Claims::new(sub, aud));
    if let Some(index) = decision.matched_index {
        assert!(index < policy.statements().len());
    }
    let subjects: BTreeSet<Subject> =
        [Subject::new("team-a", "app"), Subject::new("team-b", "web")]
            .into_iter()
            .flatten()
            .collect();
    let desired = BTreeMap::from([(aud.to_string(), subjects)]);
    let wildcard = BTreeSet::from(["team-b".to_string()]);
    let _ = compile(&CompileInput {
        current: Some(&policy),
        issuer,
        provider_arn: PROVIDER,
        desired: &desired,
        max_chars: DEFAULT_MAX_CHARS,
        wildcard_namespaces: &wildcard,
        pod_identity: None,
    });
});
