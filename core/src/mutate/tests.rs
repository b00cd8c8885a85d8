//! One case per rule of docs/design.md §2.1–2.4, each asserting the resulting pod; then properties.

use proptest::prelude::*;
use rand::{SeedableRng, rngs::StdRng};
use serde_json::{Value, json};

use super::*;
use crate::fixtures::service_account as sa;

const ARN: &str = "arn:aws:iam::111122223333:role/app";
const TOKEN_FILE: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token";

fn with_role() -> ServiceAccountInfo {
    sa(&[("eks.amazonaws.com/role-arn", ARN)])
}

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": spec})
}

fn one_container() -> Value {
    pod(json!({"serviceAccountName": "app", "containers": [{"name": "app", "image": "nginx"}]}))
}

struct Run {
    mutation: Mutation,
    patched: Value,
}

fn run_with(cfg: &MutationConfig, ids: &Identities, sa: &ServiceAccountInfo, pod: &Value) -> Run {
    let mutation = mutate(cfg, ids, "team-a", sa, pod, &mut StdRng::seed_from_u64(7)).unwrap();
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &mutation.patch).unwrap();
    // Idempotency is a rule of every case: the output needs nothing more.
    let again = mutate(
        cfg,
        ids,
        "team-a",
        sa,
        &patched,
        &mut StdRng::seed_from_u64(8),
    )
    .unwrap();
    assert!(
        again.patch.0.is_empty(),
        "second run patched: {:?}",
        again.patch
    );
    Run { mutation, patched }
}

fn run(sa: &ServiceAccountInfo, pod: &Value) -> Run {
    run_with(&MutationConfig::default(), &Identities::default(), sa, pod)
}

fn irsa_volume(audience: &str, expiration: i64) -> Value {
    json!({"name": "aws-iam-token", "projected": {"sources": [{"serviceAccountToken":
        {"audience": audience, "expirationSeconds": expiration, "path": "token"}}]}})
}

fn irsa_mount() -> Value {
    json!({"name": "aws-iam-token", "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount", "readOnly": true})
}

/// The items of a list in a patched pod (`[]` when it is not a list).
fn items(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn env_names(c: &Value) -> Vec<&str> {
    items(c.get("env"))
        .iter()
        .filter_map(|e| e.get("name").and_then(Value::as_str))
        .collect()
}

fn env_value<'a>(c: &'a Value, name: &str) -> Option<&'a str> {
    items(c.get("env"))
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
}

#[test]
fn basic_irsa_injection_matches_the_reference() {
    let r = run(&with_role(), &one_container());
    assert_eq!(r.mutation.mode, Mode::Irsa);
    assert!(r.mutation.warnings.is_empty());
    let want = pod(json!({
        "serviceAccountName": "app",
        "containers": [{
            "name": "app", "image": "nginx",
            "env": [
                {"name": "AWS_ROLE_ARN", "value": ARN},
                {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": TOKEN_FILE},
            ],
            "volumeMounts": [irsa_mount()],
        }],
        "volumes": [irsa_volume("sts.amazonaws.com", 86400)],
    }));
    assert_eq!(r.patched, want);
}

#[test]
fn env_order_is_sts_then_regions_then_identity() {
    let cfg = MutationConfig {
        region: Some("eu-west-1".into()),
        sts_regional_endpoints: true,
        ..Default::default()
    };
    let r = run_with(&cfg, &Identities::default(), &with_role(), &one_container());
    let c = &r.patched["spec"]["containers"][0];
    assert_eq!(
        env_names(c),
        [
            "AWS_STS_REGIONAL_ENDPOINTS",
            "AWS_DEFAULT_REGION",
            "AWS_REGION",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE"
        ]
    );
    assert_eq!(env_value(c, "AWS_STS_REGIONAL_ENDPOINTS"), Some("regional"));
    assert_eq!(env_value(c, "AWS_REGION"), Some("eu-west-1"));
}

#[test]
fn fully_configured_container_is_left_completely_alone() {
    let container = json!({"name": "app", "env": [
        {"name": "AWS_ROLE_ARN", "value": "arn:aws:iam::999999999999:role/own"},
        {"name": "AWS_DEFAULT_REGION", "value": "us-east-1"},
        {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "legacy"},
    ]});
    let p = pod(json!({"containers": [container.clone()]}));
    let r = run(&with_role(), &p);
    // No mount either: the user opted into managing this container themselves.
    assert_eq!(r.patched["spec"]["containers"][0], container);
    assert_eq!(r.patched["spec"]["volumes"][0]["name"], "aws-iam-token");
}

#[test]
fn existing_values_are_never_overwritten_and_the_pair_rule_holds() {
    let cfg = MutationConfig {
        region: Some("eu-west-1".into()),
        ..Default::default()
    };
    let p = pod(json!({"containers": [
        {"name": "own-region", "env": [{"name": "AWS_REGION", "value": "us-east-1"}]},
        {"name": "own-token", "env": [{"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/mine"}]},
    ]}));
    let r = run_with(&cfg, &Identities::default(), &with_role(), &p);
    let c0 = &r.patched["spec"]["containers"][0];
    assert_eq!(
        env_names(c0),
        ["AWS_REGION", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"]
    );
    assert_eq!(env_value(c0, "AWS_REGION"), Some("us-east-1"));
    let c1 = &r.patched["spec"]["containers"][1];
    // One of the pair present: neither is added, the user's file stays.
    assert_eq!(
        env_names(c1),
        [
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_DEFAULT_REGION",
            "AWS_REGION"
        ]
    );
    assert_eq!(env_value(c1, "AWS_WEB_IDENTITY_TOKEN_FILE"), Some("/mine"));
}

#[test]
fn init_containers_and_native_sidecars_are_injected_ephemeral_never() {
    let p = pod(json!({
        "initContainers": [
            {"name": "init", "image": "busybox"},
            {"name": "sidecar", "image": "envoy", "restartPolicy": "Always"},
        ],
        "containers": [{"name": "app"}],
        "ephemeralContainers": [{"name": "debug"}],
    }));
    let r = run(&with_role(), &p);
    for c in items(r.patched["spec"].get("initContainers")) {
        assert_eq!(env_value(c, "AWS_ROLE_ARN"), Some(ARN), "{c}");
        assert_eq!(c["volumeMounts"], json!([irsa_mount()]));
    }
    assert_eq!(
        r.patched["spec"]["initContainers"][1]["restartPolicy"],
        "Always"
    );
    assert_eq!(
        r.patched["spec"]["ephemeralContainers"],
        json!([{"name": "debug"}])
    );
}

#[test]
fn skip_containers_are_untouched() {
    let mut p =
        pod(json!({"containers": [{"name": "app"}, {"name": "istio-proxy"}, {"name": "log"}]}));
    p["metadata"]["annotations"] = json!({"eks.amazonaws.com/skip-containers": "istio-proxy, log"});
    let r = run(&with_role(), &p);
    assert!(r.patched["spec"]["containers"][0].get("env").is_some());
    assert_eq!(
        r.patched["spec"]["containers"][1],
        json!({"name": "istio-proxy"})
    );
    assert_eq!(r.patched["spec"]["containers"][2], json!({"name": "log"}));
}

#[test]
fn volume_is_prepended_and_same_names_are_respected() {
    let p = pod(json!({
        "containers": [
            {"name": "a", "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
            {"name": "b", "volumeMounts": [{"name": "aws-iam-token", "mountPath": "/custom"}]},
        ],
        "volumes": [{"name": "data", "emptyDir": {}}],
    }));
    let r = run(&with_role(), &p);
    let volumes = &r.patched["spec"]["volumes"];
    assert_eq!(volumes[0], irsa_volume("sts.amazonaws.com", 86400));
    assert_eq!(volumes[1], json!({"name": "data", "emptyDir": {}}));
    assert_eq!(
        r.patched["spec"]["containers"][0]["volumeMounts"],
        json!([{"name": "data", "mountPath": "/data"}, irsa_mount()])
    );
    assert_eq!(
        r.patched["spec"]["containers"][1]["volumeMounts"],
        json!([{"name": "aws-iam-token", "mountPath": "/custom"}])
    );

    let own = json!({"name": "aws-iam-token", "secret": {"secretName": "mine"}});
    let p = pod(json!({"containers": [{"name": "a"}], "volumes": [own.clone()]}));
    assert_eq!(
        run(&with_role(), &p).patched["spec"]["volumes"],
        json!([own])
    );
}

#[test]
fn token_expiration_precedence_minimum_and_bad_values() {
    let expiration_of = |sa_value: Option<&str>, pod_value: Option<&str>| {
        let mut annotations = vec![("eks.amazonaws.com/role-arn", ARN)];
        if let Some(v) = sa_value {
            annotations.push(("eks.amazonaws.com/token-expiration", v));
        }
        let mut p = one_container();
        if let Some(v) = pod_value {
            p["metadata"]["annotations"] = json!({"eks.amazonaws.com/token-expiration": v});
        }
        let r = run(&sa(&annotations), &p);
        let exp = r.patched["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]
            ["expirationSeconds"]
            .as_i64()
            .unwrap();
        (exp, r.mutation.warnings)
    };
    assert_eq!(expiration_of(None, None).0, 86400);
    assert_eq!(expiration_of(Some("3600"), None).0, 3600);
    assert_eq!(expiration_of(Some("3600"), Some("7200")).0, 7200);
    assert_eq!(expiration_of(Some("60"), None).0, 600);
    assert_eq!(expiration_of(None, Some("-5")).0, 600);

    let (exp, warnings) = expiration_of(Some("soon"), None);
    assert_eq!(exp, 86400);
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].kind, WarningKind::InvalidExpiration);
    assert_eq!(
        warnings[0].message,
        "ServiceAccount team-a/app: annotation eks.amazonaws.com/token-expiration=\"soon\" \
         is not an integer; using 86400"
    );
    // Over the API server's 2^32 s maximum: the pod would fail to create, so it is invalid
    // like a non-integer (it used to be injected verbatim).
    for huge in ["9223372036854775807", "4294967297", "99999999999999999999"] {
        let (exp, warnings) = expiration_of(Some(huge), None);
        assert_eq!(exp, 86400, "{huge}");
        assert_eq!(warnings.len(), 1, "{huge}: {warnings:?}");
        assert_eq!(warnings[0].kind, WarningKind::InvalidExpiration);
    }
    assert_eq!(expiration_of(Some("4294967296"), None).0, 4_294_967_296);
    let (exp, warnings) = expiration_of(Some("3600"), Some("9223372036854775807"));
    assert_eq!(exp, 3600);
    assert!(warnings[0].message.contains("maximum"), "{warnings:?}");
    // A bad pod value falls back to the SA's value, not the global default.
    let (exp, warnings) = expiration_of(Some("3600"), Some("1h"));
    assert_eq!(exp, 3600);
    assert!(
        warnings[0]
            .message
            .starts_with("Pod team-a/web: annotation"),
        "{warnings:?}"
    );
}

#[test]
fn windows_pods_get_a_windows_token_path() {
    let windows_file = r"C:\var\run\secrets\eks.amazonaws.com\serviceaccount\token";
    let token_file_of = |extra: Value| {
        let mut spec = json!({"containers": [{"name": "app"}]});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let r = run(&with_role(), &pod(spec));
        env_value(
            &r.patched["spec"]["containers"][0],
            "AWS_WEB_IDENTITY_TOKEN_FILE",
        )
        .map(str::to_string)
    };
    let affinity = |values: Value| {
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/os", "operator": "In", "values": values}]}]}}}})
    };
    let sel = |label: &str| json!({"nodeSelector": {label: "windows"}});
    assert_eq!(
        token_file_of(sel("kubernetes.io/os")).as_deref(),
        Some(windows_file)
    );
    assert_eq!(
        token_file_of(sel("beta.kubernetes.io/os")).as_deref(),
        Some(windows_file)
    );
    assert_eq!(
        token_file_of(affinity(json!(["windows"]))).as_deref(),
        Some(windows_file)
    );
    assert_eq!(
        token_file_of(affinity(json!(["linux", "windows"]))).as_deref(),
        Some(TOKEN_FILE)
    );
    assert_eq!(
        token_file_of(json!({"nodeSelector": {"kubernetes.io/os": "linux"}})).as_deref(),
        Some(TOKEN_FILE)
    );
}

#[test]
fn container_credentials_mode_wins_over_role_arn() {
    let ids = Identities::from_pairs([("team-a", "app")]);
    let cfg = MutationConfig {
        sts_regional_endpoints: true,
        ..Default::default()
    };
    let r = run_with(&cfg, &ids, &with_role(), &one_container());
    assert_eq!(r.mutation.mode, Mode::ContainerCredentials);
    assert_eq!(
        r.patched["metadata"]["labels"],
        json!({POD_IDENTITY_LABEL: "enabled"})
    );
    let volume = &r.patched["spec"]["volumes"][0];
    assert_eq!(volume["name"], "eks-pod-identity-token");
    let token = &volume["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(token["audience"], "pods.eks.amazonaws.com");
    assert_eq!(token["path"], "eks-pod-identity-token");
    let exp = token["expirationSeconds"].as_i64().unwrap();
    assert!((79200..=86400).contains(&exp), "{exp}");
    let c = &r.patched["spec"]["containers"][0];
    assert_eq!(
        env_names(c),
        [
            "AWS_STS_REGIONAL_ENDPOINTS",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
        ]
    );
    assert_eq!(
        env_value(c, "AWS_CONTAINER_CREDENTIALS_FULL_URI"),
        Some("http://169.254.170.23/v1/credentials")
    );
    assert_eq!(
        env_value(c, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
        Some("/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token")
    );
    assert_eq!(
        c["volumeMounts"],
        json!([{"name": "eks-pod-identity-token",
                "mountPath": "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount",
                "readOnly": true}])
    );
}

#[test]
fn container_credentials_jitter_is_seeded_and_only_for_one_day() {
    let ids = Identities::from_pairs([("team-a", "app")]);
    let cfg = MutationConfig::default();
    let exp = |seed: u64, sa: &ServiceAccountInfo| {
        let m = mutate(
            &cfg,
            &ids,
            "team-a",
            sa,
            &one_container(),
            &mut StdRng::seed_from_u64(seed),
        )
        .unwrap();
        let mut p = one_container();
        json_patch::patch(&mut p, &m.patch).unwrap();
        p["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]
            ["expirationSeconds"]
            .as_i64()
            .unwrap()
    };
    let plain = sa(&[]);
    assert_eq!(exp(1, &plain), exp(1, &plain), "same seed, same value");
    let spread: std::collections::BTreeSet<i64> = (0..20).map(|s| exp(s, &plain)).collect();
    assert!(spread.len() > 1 && spread.iter().all(|e| (79200..=86400).contains(e)));
    let custom = sa(&[("eks.amazonaws.com/token-expiration", "3600")]);
    assert_eq!(exp(1, &custom), 3600);
}

#[test]
fn labels_are_added_under_existing_metadata_with_escaped_keys() {
    let ids = Identities::from_pairs([("team-a", "app")]);
    let mut p = one_container();
    p["metadata"]["labels"] = json!({"app": "web"});
    let r = run_with(&MutationConfig::default(), &ids, &sa(&[]), &p);
    assert_eq!(
        r.patched["metadata"]["labels"],
        json!({"app": "web", POD_IDENTITY_LABEL: "enabled"})
    );
    let ops = serde_json::to_value(&r.mutation.patch).unwrap();
    assert_eq!(
        ops[0]["path"],
        "/metadata/labels/eks.amazonaws.com~1pod-identity"
    );

    let bare = json!({"spec": {"containers": [{"name": "a"}]}});
    let r = run_with(&MutationConfig::default(), &ids, &sa(&[]), &bare);
    assert_eq!(
        r.patched["metadata"],
        json!({"labels": {POD_IDENTITY_LABEL: "enabled"}})
    );
}

#[test]
fn invalid_role_arn_is_injected_with_a_warning_and_strict_denies() {
    let bad = sa(&[("eks.amazonaws.com/role-arn", "arn:aws:iam::123:role/app")]);
    let r = run(&bad, &one_container());
    assert_eq!(r.mutation.mode, Mode::Irsa);
    assert_eq!(
        env_value(&r.patched["spec"]["containers"][0], "AWS_ROLE_ARN"),
        Some("arn:aws:iam::123:role/app")
    );
    assert_eq!(r.mutation.warnings[0].kind, WarningKind::InvalidRoleArn);
    assert!(
        r.mutation.warnings[0]
            .message
            .contains("account \"123\" is not 12 digits")
    );
    assert_eq!(r.mutation.denial, None);

    let strict = MutationConfig {
        strict: true,
        ..Default::default()
    };
    let m = mutate(
        &strict,
        &Identities::default(),
        "team-a",
        &bad,
        &one_container(),
        &mut StdRng::seed_from_u64(1),
    )
    .unwrap();
    let denial = m.denial.unwrap();
    assert!(
        denial.contains("ServiceAccount team-a/app") && denial.contains("role-arn"),
        "{denial}"
    );
}

#[test]
fn booleans_accept_go_spellings_and_warn_otherwise() {
    let sts_of = |value: &str| {
        let r = run(
            &sa(&[
                ("eks.amazonaws.com/role-arn", ARN),
                ("eks.amazonaws.com/sts-regional-endpoints", value),
            ]),
            &one_container(),
        );
        let c = &r.patched["spec"]["containers"][0];
        (
            env_value(c, "AWS_STS_REGIONAL_ENDPOINTS").is_some(),
            r.mutation.warnings.len(),
        )
    };
    assert_eq!(sts_of("true"), (true, 0));
    assert_eq!(sts_of("1"), (true, 0));
    assert_eq!(sts_of("false"), (false, 0));
    assert_eq!(sts_of("0"), (false, 0));
    assert_eq!(sts_of("yes"), (false, 1));
}

#[test]
fn audience_region_and_session_name_annotations() {
    let r = run(
        &sa(&[
            ("eks.amazonaws.com/role-arn", ARN),
            ("eks.amazonaws.com/audience", "sts.amazonaws.com.cn"),
            ("irsa.dev/region", "cn-north-1"),
            ("irsa.dev/role-session-name", "app-session"),
        ]),
        &one_container(),
    );
    assert_eq!(
        r.patched["spec"]["volumes"][0],
        irsa_volume("sts.amazonaws.com.cn", 86400)
    );
    let c = &r.patched["spec"]["containers"][0];
    assert_eq!(
        env_names(c),
        [
            "AWS_DEFAULT_REGION",
            "AWS_REGION",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_ROLE_SESSION_NAME"
        ]
    );
    assert_eq!(env_value(c, "AWS_REGION"), Some("cn-north-1"));
}

#[test]
fn custom_prefix_and_mount_path() {
    let cfg = MutationConfig {
        annotation_prefix: "example.com".into(),
        mount_path: "/aws/".into(),
        ..Default::default()
    };
    let r = run_with(
        &cfg,
        &Identities::default(),
        &sa(&[("example.com/role-arn", ARN)]),
        &one_container(),
    );
    let c = &r.patched["spec"]["containers"][0];
    assert_eq!(
        env_value(c, "AWS_WEB_IDENTITY_TOKEN_FILE"),
        Some("/aws/token")
    );
    // The default prefix means nothing under a custom one.
    assert_eq!(
        run_with(&cfg, &Identities::default(), &with_role(), &one_container())
            .mutation
            .mode,
        Mode::None
    );
}

#[test]
fn nothing_to_do_means_no_patch() {
    for annotations in [&[][..], &[("eks.amazonaws.com/role-arn", "  ")][..]] {
        let r = run(&sa(annotations), &one_container());
        assert_eq!((r.mutation.mode, r.mutation.patch.0.len()), (Mode::None, 0));
    }
    for (label, value) in [
        (SKIP_LABEL, "true"),
        (EKS_SKIP_LABEL, "true"),
        (EKS_SKIP_LABEL, ""),
    ] {
        let mut p = one_container();
        p["metadata"]["labels"] = json!({label: value});
        assert!(
            run(&with_role(), &p).mutation.patch.0.is_empty(),
            "{label}={value}"
        );
    }
}

/// The opt-out rule for each label's values, alone and together: values are compared as
/// written (`True` is not `true`). The engine leaves exactly these pods untouched.
#[test]
fn opt_out_rule_for_each_label_value() {
    const SKIP: Option<&str> = Some(SKIP_LABEL);
    const EKS: Option<&str> = Some(EKS_SKIP_LABEL);
    let table: [(Option<&str>, Option<&str>, Option<&str>); 18] = [
        (None, None, None),
        (Some("true"), None, SKIP),
        (Some("false"), None, None),
        (Some(""), None, None),
        (Some("yes"), None, None),
        (Some("True"), None, None),
        (None, Some("true"), EKS),
        (None, Some("false"), None),
        (None, Some(""), EKS),
        (None, Some("yes"), EKS),
        (None, Some("False"), EKS),
        (Some("false"), Some("false"), None),
        (Some("false"), Some("true"), EKS),
        (Some("true"), Some("false"), SKIP),
        (Some("true"), Some("true"), SKIP),
        (Some(""), Some(""), EKS),
        (Some("yes"), Some("false"), None),
        (Some("false"), Some("yes"), EKS),
    ];
    for (skip, eks, want) in table {
        let labels: BTreeMap<String, String> = [(SKIP_LABEL, skip), (EKS_SKIP_LABEL, eks)]
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_string(), v?.to_string())))
            .collect();
        assert_eq!(opted_out(&labels), want, "{labels:?}");
        let mut p = one_container();
        p["metadata"]["labels"] = json!(labels);
        let untouched = run(&with_role(), &p).mutation.patch.0.is_empty();
        assert_eq!(untouched, want.is_some(), "the engine on {labels:?}");
    }
}

/// The "has credentials" rule: a token volume or an identity variable of either mode, nothing
/// else (region, static keys, the session name alone).
#[test]
fn has_credentials_rule_for_each_volume_and_variable() {
    let table: [(&[&str], &[&str], bool); 11] = [
        (&[], &[], false),
        (&["kube-api-access-x", "data"], &[], false),
        (&["aws-iam-token"], &[], true),
        (&["eks-pod-identity-token"], &[], true),
        (&[], &["AWS_ROLE_ARN"], true),
        (&[], &["AWS_WEB_IDENTITY_TOKEN_FILE"], true),
        (&[], &["AWS_CONTAINER_CREDENTIALS_FULL_URI"], true),
        (&[], &["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"], true),
        (&[], &["AWS_REGION", "AWS_DEFAULT_REGION"], false),
        (&[], &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"], false),
        (
            &["data"],
            &["AWS_ROLE_SESSION_NAME", "AWS_STS_REGIONAL_ENDPOINTS"],
            false,
        ),
    ];
    for (volumes, env, want) in table {
        assert_eq!(
            has_credentials(volumes.iter().copied(), env.iter().copied()),
            want,
            "volumes {volumes:?}, env {env:?}"
        );
    }
}

/// What the rules read of a Pod: string labels, volume names, and the variables of init
/// containers and containers alike (not ephemeral containers, which the webhook never
/// injects). The engine's own output carries credentials.
#[test]
fn the_pod_view_feeds_the_rules() {
    let raw = json!({"metadata": {"labels": {EKS_SKIP_LABEL: "false", "n": 1}}, "spec": {
        "volumes": [{"name": "data"}, {"name": "aws-iam-token"}],
        "initContainers": [{"name": "init", "env": [{"name": "AWS_ROLE_ARN"}]}],
        "containers": [{"name": "app", "env": [{"name": "A"}]}],
        "ephemeralContainers": [{"name": "debug", "env": [{"name": "B"}]}],
    }});
    let p = Pod::deserialize(&raw).unwrap();
    assert_eq!(p.labels().len(), 1, "{:?}", p.labels());
    assert_eq!(opted_out(p.labels()), None);
    assert_eq!(p.volume_names(), ["data", "aws-iam-token"]);
    assert_eq!(p.env_names(), ["AWS_ROLE_ARN", "A"]);

    let bare = one_container();
    let p = Pod::deserialize(&bare).unwrap();
    assert!(!has_credentials(p.volume_names(), p.env_names()));
    let injected = run(&with_role(), &bare).patched;
    let p = Pod::deserialize(&injected).unwrap();
    assert!(has_credentials(p.volume_names(), p.env_names()));
}

#[test]
fn objects_that_are_not_pods_are_rejected_with_the_reason() {
    let cases = [
        (json!([]), "not a JSON object"),
        (
            json!({"kind": "Service", "spec": {}}),
            "kind is \"Service\"",
        ),
        (json!({"kind": "Pod"}), "spec is missing"),
        (
            json!({"spec": {"containers": {}}}),
            "spec.containers is missing or not a list",
        ),
        (
            json!({"spec": {"containers": [], "volumes": 3}}),
            "spec.volumes is not a list",
        ),
        (
            json!({"spec": {"containers": ["x"]}}),
            "spec.containers[0] is not an object",
        ),
        (
            json!({"spec": {"containers": [{"env": {}}]}}),
            "spec.containers[0].env is not a list",
        ),
    ];
    for (input, want) in cases {
        let err = mutate(
            &MutationConfig::default(),
            &Identities::default(),
            "ns",
            &with_role(),
            &input,
            &mut StdRng::seed_from_u64(1),
        )
        .unwrap_err();
        assert!(err.to_string().contains(want), "{input}: {err}");
    }
}

#[test]
fn unknown_and_future_fields_survive() {
    let container = json!({
        "name": "app",
        "image": "app:1",
        "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}],
        "livenessProbe": {"grpc": {"port": 9000, "service": "health"}},
        "x-vendor-extension": {"nested": [1, 2, {"deep": null}]},
        "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "volumeMounts": [{"name": "d", "mountPath": "/d", "recursiveReadOnly": "Enabled"}],
    });
    let p = pod(json!({
        "containers": [container.clone()],
        "initContainers": [{"name": "sidecar", "restartPolicy": "Always", "futureField": true}],
        "volumes": [{"name": "d", "image": {"reference": "data:1", "pullPolicy": "IfNotPresent"}}],
        "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "gpu"}],
        "schedulingGates": [{"name": "wait"}],
    }));
    let r = run(&with_role(), &p);
    let c = &r.patched["spec"]["containers"][0];
    for key in [
        "resizePolicy",
        "livenessProbe",
        "x-vendor-extension",
        "image",
    ] {
        assert_eq!(c[key], container[key], "{key}");
    }
    assert_eq!(c["env"][0], container["env"][0]);
    assert_eq!(c["volumeMounts"][0], container["volumeMounts"][0]);
    assert_eq!(r.patched["spec"]["volumes"][1], p["spec"]["volumes"][0]);
    for key in ["resourceClaims", "schedulingGates"] {
        assert_eq!(r.patched["spec"][key], p["spec"][key]);
    }
    assert_eq!(r.patched["spec"]["initContainers"][0]["futureField"], true);
    // Only adds, never a replace of something that was there.
    let ops = serde_json::to_value(&r.mutation.patch).unwrap();
    assert!(ops.as_array().unwrap().iter().all(|op| op["op"] == "add"));
}

#[test]
fn service_account_name_and_cache_filter() {
    assert_eq!(pod_service_account_name(&one_container()), "app");
    assert_eq!(pod_service_account_name(&json!({"spec": {}})), "default");
    let all: BTreeMap<String, String> = [
        ("eks.amazonaws.com/role-arn", "x"),
        ("irsa.dev/region", "y"),
        ("kubectl.kubernetes.io/last-applied-configuration", "{...}"),
        ("eks.amazonaws.com.evil/role-arn", "z"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let kept = relevant_annotations(
        all.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        "eks.amazonaws.com",
    );
    assert_eq!(
        kept.keys().collect::<Vec<_>>(),
        ["eks.amazonaws.com/role-arn", "irsa.dev/region"]
    );
}

// ---- properties ----

fn arb_env() -> impl Strategy<Value = Vec<Value>> {
    let names = prop_oneof![
        Just("AWS_ROLE_ARN"),
        Just("AWS_WEB_IDENTITY_TOKEN_FILE"),
        Just("AWS_REGION"),
        Just("AWS_DEFAULT_REGION"),
        Just("AWS_STS_REGIONAL_ENDPOINTS"),
        Just("OTHER"),
    ];
    proptest::collection::vec((names, "[a-z]{0,4}"), 0..4).prop_map(|vars| {
        vars.into_iter()
            .map(|(n, v)| json!({"name": n, "value": v, "x-extra": v}))
            .collect()
    })
}

fn arb_container() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("app"), Just("side"), Just("skip")],
        proptest::option::of(arb_env()),
        proptest::option::of(proptest::collection::vec(
            prop_oneof![Just("aws-iam-token"), Just("data")],
            0..2,
        )),
        any::<bool>(),
    )
        .prop_map(|(name, env, mounts, extra)| {
            let mut c = json!({"name": name});
            if let Some(env) = env {
                c["env"] = json!(env);
            }
            if let Some(m) = mounts {
                c["volumeMounts"] = m
                    .iter()
                    .map(|n| json!({"name": n, "mountPath": format!("/{n}")}))
                    .collect();
            }
            if extra {
                c["resizePolicy"] =
                    json!([{"resourceName": "memory", "restartPolicy": "RestartContainer"}]);
            }
            c
        })
}

fn arb_pod() -> impl Strategy<Value = Value> {
    (
        proptest::collection::vec(arb_container(), 0..3),
        proptest::collection::vec(arb_container(), 1..4),
        proptest::option::of(proptest::collection::vec(
            prop_oneof![Just("aws-iam-token"), Just("data"), Just("eks-pod-identity-token")],
            0..3,
        )),
        any::<bool>(),
    )
        .prop_map(|(init, containers, volumes, skip)| {
            let mut p = json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}});
            if !init.is_empty() {
                p["spec"]["initContainers"] = json!(init);
            }
            if let Some(v) = volumes {
                p["spec"]["volumes"] = v.iter().map(|n| json!({"name": n, "emptyDir": {}})).collect();
            }
            if skip {
                p["metadata"]["annotations"] = json!({"eks.amazonaws.com/skip-containers": "skip"});
            }
            p
        })
}

/// True when everything in `before` is still in `after` unchanged (lists may only grow at
/// the end, except `spec.volumes`, which may gain our volume in front).
fn preserved(before: &Value, after: &Value) -> bool {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => b
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| preserved(v, av))),
        (Value::Array(b), Value::Array(a)) => {
            if a.len() < b.len() {
                return false;
            }
            let offset = a.len() - b.len();
            let tail_matches = b.iter().zip(&a[offset..]).all(|(x, y)| preserved(x, y));
            let head_matches = b.iter().zip(a).all(|(x, y)| preserved(x, y));
            head_matches || tail_matches
        }
        _ => before == after,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn patch_preserves_everything_and_is_idempotent(
        p in arb_pod(),
        cc in any::<bool>(),
        region in proptest::option::of(Just("eu-west-1".to_string())),
        sts in any::<bool>(),
    ) {
        let cfg = MutationConfig { region, sts_regional_endpoints: sts, ..Default::default() };
        let ids = if cc { Identities::from_pairs([("team-a", "app")]) } else { Identities::default() };
        let m = mutate(&cfg, &ids, "team-a", &with_role(), &p, &mut StdRng::seed_from_u64(3)).unwrap();
        let mut patched = p.clone();
        json_patch::patch(&mut patched, &m.patch).unwrap();
        prop_assert!(preserved(&p, &patched), "{p}\n=> {patched}");
        let again = mutate(&cfg, &ids, "team-a", &with_role(), &patched, &mut StdRng::seed_from_u64(4)).unwrap();
        prop_assert!(again.patch.0.is_empty(), "{:?}", again.patch);
        // Every container not skipped ends up with credentials configured one way or another.
        for list in ["initContainers", "containers"] {
            for c in items(patched["spec"].get(list)) {
                if c["name"] == "skip" { continue; }
                let names = env_names(c);
                let configured = if cc {
                    names.contains(&"AWS_CONTAINER_CREDENTIALS_FULL_URI")
                        || names.contains(&"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
                } else {
                    names.contains(&"AWS_ROLE_ARN") || names.contains(&"AWS_WEB_IDENTITY_TOKEN_FILE")
                };
                prop_assert!(configured, "{c}");
            }
        }
    }

    /// The fuzz property: no JSON input makes the engine panic; a patch it returns applies.
    #[test]
    fn arbitrary_json_never_panics(v in arb_json(), annotate in any::<bool>()) {
        let mut input = json!({"kind": "Pod", "metadata": {}, "spec": v.clone()});
        if annotate {
            input["metadata"] = json!({"annotations": {"eks.amazonaws.com/token-expiration": v.to_string()}, "labels": v.clone()});
        }
        for candidate in [v, input] {
            if let Ok(m) = mutate(&MutationConfig::default(), &Identities::from_pairs([("team-a", "app")]), "team-a", &with_role(), &candidate, &mut StdRng::seed_from_u64(5)) {
                let mut patched = candidate.clone();
                prop_assert!(json_patch::patch(&mut patched, &m.patch).is_ok());
            }
        }
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-zA-Z_/ ]{0,8}".prop_map(Value::from),
        prop_oneof![
            Just("containers"),
            Just("env"),
            Just("volumes"),
            Just("name")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("containers".to_string()),
                    Just("initContainers".to_string()),
                    Just("env".to_string()),
                    Just("volumeMounts".to_string()),
                    Just("volumes".to_string()),
                    Just("name".to_string()),
                    Just("nodeSelector".to_string()),
                    Just("affinity".to_string()),
                    "[a-z]{1,5}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The engine's price per pod is bounded ([`limits`]).
mod size_limits {
    use super::*;

    fn containers(n: usize) -> Vec<Value> {
        (0..n)
            .map(|i| json!({"name": format!("c{i}"), "image": "x", "env": []}))
            .collect()
    }

    fn refusal(sa: &ServiceAccountInfo, pod: &Value) -> Refusal {
        let cfg = MutationConfig::default();
        mutate(
            &cfg,
            &Identities::default(),
            "team-a",
            sa,
            pod,
            &mut rand::rng(),
        )
        .unwrap_err()
    }

    #[test]
    fn the_most_containers_allowed_are_mutated_and_one_more_is_refused() {
        let half = limits::MAX_CONTAINERS / 2;
        let at_limit =
            pod(json!({"containers": containers(half), "initContainers": containers(half)}));
        let run = run_with(
            &MutationConfig::default(),
            &Identities::default(),
            &with_role(),
            &at_limit,
        );
        assert_eq!(run.mutation.mode, Mode::Irsa);
        let bytes = serde_json::to_vec(&run.mutation.patch).unwrap().len();
        assert!(
            bytes < limits::MAX_PATCH_BYTES / 2,
            "patch of {bytes} bytes"
        );

        let over =
            pod(json!({"containers": containers(half + 1), "initContainers": containers(half)}));
        assert_eq!(
            refusal(&with_role(), &over),
            Refusal::TooLarge(TooLarge::Containers(limits::MAX_CONTAINERS + 1))
        );
    }

    #[test]
    fn a_long_skip_containers_annotation_is_refused_before_it_is_split() {
        let list = vec!["a"; limits::MAX_SKIP_CONTAINERS_BYTES].join(",");
        let mut p = one_container();
        p["metadata"]["annotations"] = json!({"eks.amazonaws.com/skip-containers": list});
        assert!(matches!(
            refusal(&with_role(), &p),
            Refusal::TooLarge(TooLarge::SkipContainers { key, .. }) if key == "eks.amazonaws.com/skip-containers"
        ));
    }

    #[test]
    fn a_patch_over_the_cap_is_refused_before_it_is_built() {
        // 1000 containers each getting a 4 KB session name: about 4 MB of patch.
        let long = "s".repeat(4096);
        let sa = sa(&[
            ("eks.amazonaws.com/role-arn", ARN),
            ("irsa.dev/role-session-name", &long),
        ]);
        let p = pod(json!({"containers": containers(limits::MAX_CONTAINERS)}));
        assert!(matches!(
            refusal(&sa, &p),
            Refusal::TooLarge(TooLarge::Patch(n)) if n > limits::MAX_PATCH_BYTES
        ));
    }
}
