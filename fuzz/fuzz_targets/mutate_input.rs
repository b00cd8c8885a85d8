//! `irsa mutate`'s input: a YAML or JSON manifest, then the engine on it as a Pod and the
//! patch applied, as the command does. Also asserts that the engine's patch applies to the
//! pod it was computed for.
#![no_main]

use irsa::{
    commands::mutate::parse_manifest,
    mutate::{self, Identities, MutationConfig, ServiceAccountInfo},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(pod) = parse_manifest(text) else {
        return;
    };
    let sa = ServiceAccountInfo {
        namespace: "default".into(),
        name: mutate::pod_service_account_name(&pod).to_string(),
        annotations: [(
            "eks.amazonaws.com/role-arn".to_string(),
            "arn:aws:iam::111122223333:role/app".to_string(),
        )]
        .into(),
    };
    let cfg = MutationConfig::default();
    let Ok(mutation) = mutate::mutate(
        &cfg,
        &Identities::default(),
        "default",
        &sa,
        &pod,
        &mut rand::rng(),
    ) else {
        return;
    };
    let mut patched = pod;
    if let Err(err) = json_patch::patch(&mut patched, &mutation.patch) {
        panic!("the engine's patch does not apply to its own pod: {err}");
    }
});
