//! The trust-policy compiler on a role shared with a service statement and another
//! cluster's statement, for 1, 40 and 400 ServiceAccounts (10 namespaces, quota 8192, the
//! maximum IAM grants). 400 subjects do not fit, so that case includes compaction (the
//! namespaces collapse largest first). `unchanged/40` is the controller's steady state:
//! the same subjects over the document it wrote before.

use std::{
    collections::{BTreeMap, BTreeSet},
    hint::black_box,
};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use irsa::trust::{CompileInput, Compiled, PolicyDocument, Subject, compile};

const ISSUER: &str = "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";
const PROVIDER: &str = "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";
const CURRENT: &str = r#"{"Version":"2012-10-17","Statement":[
 {"Sid":"Ec2","Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"},
 {"Sid":"OtherCluster","Effect":"Allow","Principal":{"Federated":"arn:aws:iam::111122223333:oidc-provider/oidc.other.example/id/Z"},
  "Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEquals":{"oidc.other.example/id/Z:aud":"sts.amazonaws.com","oidc.other.example/id/Z:sub":"system:serviceaccount:x:y"}}}]}"#;

fn desired(n: usize) -> BTreeMap<String, BTreeSet<Subject>> {
    let subjects = (0..n)
        .map(|i| Subject::new(&format!("team-{:02}", i % 10), &format!("service-{i:03}")))
        .collect::<Result<BTreeSet<_>, _>>()
        .unwrap_or_default();
    BTreeMap::from([("sts.amazonaws.com".to_string(), subjects)])
}

fn bench(c: &mut Criterion) {
    let Ok(current) = PolicyDocument::parse(CURRENT) else {
        panic!("bench fixture is not a policy");
    };
    let wildcards: BTreeSet<String> = (0..10).map(|i| format!("team-{i:02}")).collect();
    let mut group = c.benchmark_group("trust_compile");
    for n in [1, 40, 400] {
        let desired = desired(n);
        let input = CompileInput {
            current: Some(&current),
            issuer: ISSUER,
            provider_arn: PROVIDER,
            desired: &desired,
            max_chars: 8192,
            wildcard_namespaces: &wildcards,
            pod_identity: None,
        };
        assert!(matches!(compile(&input), Ok(Compiled::Changed { .. })));
        group.bench_with_input(BenchmarkId::new("changed", n), &input, |b, input| {
            b.iter(|| compile(black_box(input)))
        });
        if n == 40 {
            let Ok(Compiled::Changed { document, .. }) = compile(&input) else {
                panic!("40 subjects must compile");
            };
            let steady = CompileInput {
                current: Some(&document),
                ..input
            };
            assert!(matches!(compile(&steady), Ok(Compiled::Unchanged { .. })));
            group.bench_with_input(BenchmarkId::new("unchanged", n), &steady, |b, input| {
                b.iter(|| compile(black_box(input)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
