//! The webhook's AdmissionReview path on arbitrary bytes: decode, the size limits, the parse,
//! then the engine against a ServiceAccount with a role and one in container-credentials
//! mode. Everything but the ServiceAccount lookup, which is a map read.
#![no_main]

use std::sync::{Arc, LazyLock};

use irsa::{
    mutate::{Identities, MutationConfig, ServiceAccountInfo},
    webhook::{
        AppState, Associations, Metrics, ServiceAccountCache, decide::Step, identities::WatchedIdentities,
        review,
    },
};
use libfuzzer_sys::fuzz_target;

const ROLE: &str = "arn:aws:iam::111122223333:role/app";

fn service_account(name: &str, annotations: &[(&str, &str)]) -> ServiceAccountInfo {
    ServiceAccountInfo {
        namespace: "team-a".into(),
        name: name.into(),
        annotations: annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

struct World {
    state: AppState,
    accounts: Vec<ServiceAccountInfo>,
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let metrics = Arc::new(Metrics::new());
    let accounts = vec![
        service_account(
            "app",
            &[
                ("eks.amazonaws.com/role-arn", ROLE),
                ("eks.amazonaws.com/token-expiration", "3600"),
                ("irsa.dev/region", "eu-west-1"),
            ],
        ),
        service_account("pod-identity", &[]),
    ];
    let identities = Identities::parse(
        r#"{"identities": [{"namespace": "team-a", "serviceAccount": "pod-identity"}]}"#,
    )
    .unwrap_or_default();
    let state = AppState {
        config: MutationConfig::default(),
        identities: Arc::new(WatchedIdentities::fixed(identities)),
        associations: Associations::disabled(),
        cache: ServiceAccountCache::fixed(accounts.clone(), "eks.amazonaws.com", metrics.clone()),
        metrics,
        sa_lookup_timeout: std::time::Duration::from_millis(1),
    };
    World { state, accounts }
});

fuzz_target!(|data: &[u8]| {
    let world = &*WORLD;
    let Ok((api_version, request)) = review::decode(data) else {
        return;
    };
    let uid = request.uid.clone();
    let Step::Pod(pod) = world.state.decider().prepare(request) else {
        return;
    };
    for sa in &world.accounts {
        let answer = world.state.decider().finish(&pod, sa);
        let _ = review::encode(&api_version, &uid, &answer);
    }
});
