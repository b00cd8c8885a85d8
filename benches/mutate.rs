//! Pure mutation of a typical 3-container pod (init sidecar + app + proxy), as the webhook
//! does it on every admission.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use irsa::mutate::{Identities, MutationConfig, ServiceAccountInfo, mutate};
use rand::{SeedableRng, rngs::StdRng};
use serde_json::json;

fn typical_pod() -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-7d9f8b6c5-", "namespace": "team-a",
                     "labels": {"app": "web", "pod-template-hash": "7d9f8b6c5"},
                     "annotations": {"eks.amazonaws.com/skip-containers": "istio-proxy"}},
        "spec": {
            "serviceAccountName": "app",
            "initContainers": [{"name": "log-shipper", "image": "fluent-bit:3.2", "restartPolicy": "Always",
                                "volumeMounts": [{"name": "logs", "mountPath": "/logs"}]}],
            "containers": [
                {"name": "app", "image": "app:1.4.2", "ports": [{"containerPort": 8080}],
                 "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                 "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
                 "volumeMounts": [{"name": "logs", "mountPath": "/logs"}]},
                {"name": "istio-proxy", "image": "proxyv2:1.24.0"},
                {"name": "metrics", "image": "exporter:0.9"},
            ],
            "volumes": [{"name": "logs", "emptyDir": {}}],
        }
    })
}

fn bench(c: &mut Criterion) {
    let pod = typical_pod();
    let cfg = MutationConfig {
        region: Some("eu-west-1".into()),
        sts_regional_endpoints: true,
        ..Default::default()
    };
    let ids = Identities::default();
    let sa = ServiceAccountInfo {
        namespace: "team-a".into(),
        name: "app".into(),
        annotations: [(
            "eks.amazonaws.com/role-arn",
            "arn:aws:iam::111122223333:role/team-a-s3-reader",
        )]
        .into_iter()
        .collect(),
    };
    let mut rng = StdRng::seed_from_u64(1);
    c.bench_function("mutate_typical_3_container_pod", |b| {
        b.iter(|| mutate(&cfg, &ids, "team-a", &sa, black_box(&pod), &mut rng))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
