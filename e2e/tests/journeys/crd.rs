//! The CRDs as the real API server enforces them: what a user who types a wrong ARN, an
//! empty or invalid ServiceAccount list, an out-of-range token lifetime or a misspelt field
//! is told by `kubectl apply`, and what `kubectl get` prints. No controller runs here: every
//! verdict is the API server's own, from the schema and CEL rules in `crds/irsa.dev.yaml`.

use irsa::crd::{FINALIZER, IAMRoleBinding, IAMRoleGrant};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::core::Status;
use serde_json::{Value, json};

use irsa_e2e::support::kubectl;
use irsa_e2e::support::{self, WAIT};
use irsa_e2e::wait::wait_for;

const API: &str = "/apis/irsa.dev/v1alpha1";
const ROLE: &str = "arn:aws:iam::111122223333:role/team-a/s3-reader";

/// Creates `object` at `path` exactly as `kubectl create` does: a POST with
/// `fieldValidation=Strict`. The API server's refusal is returned as its `Status`.
async fn create(client: &kube::Client, path: &str, object: &Value) -> Result<Value, Box<Status>> {
    let request = http::Request::post(format!("{path}?fieldValidation=Strict"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(object).unwrap())
        .unwrap();
    match client.request::<Value>(request).await {
        Ok(created) => Ok(created),
        Err(kube::Error::Api(status)) => Err(status),
        Err(e) => panic!("POST {path}: {e}"),
    }
}

/// The settings checked, a client, the CRDs installed and a fresh namespace.
async fn cluster_with_crds() -> (kube::Client, String) {
    support::settings();
    let client = support::client().await;
    support::install_crds(&client).await;
    let ns = support::create_namespace(&client, "irsa-e2e-crd").await;
    (client, ns)
}

fn binding(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "irsa.dev/v1alpha1", "kind": "IAMRoleBinding",
           "metadata": {"name": name}, "spec": spec})
}

fn grant(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "irsa.dev/v1alpha1", "kind": "IAMRoleGrant",
           "metadata": {"name": name, "labels": {support::E2E_LABEL: "true"}}, "spec": spec})
}

/// One invalid object and every error the API server must report for it: the field path and
/// a fragment of the reason, both as the user reads them (`<field>: Invalid value: ...`) and
/// as a structured cause.
struct Invalid {
    what: &'static str,
    spec: Value,
    errors: &'static [(&'static str, &'static str)],
}

/// Creates each invalid object and checks the API server refuses it with 422 Invalid, naming
/// each expected field with its reason. Any object accepted by mistake is deleted again.
async fn assert_refused(client: &kube::Client, path: &str, cases: &[Invalid], kind: &str) {
    for (i, case) in cases.iter().enumerate() {
        let name = support::unique(&format!("irsa-e2e-invalid-{i}"));
        let object = match kind {
            "IAMRoleBinding" => binding(&name, case.spec.clone()),
            _ => grant(&name, case.spec.clone()),
        };
        let status = match create(client, path, &object).await {
            Ok(created) => {
                let _ = client
                    .request::<Value>(
                        http::Request::delete(format!("{path}/{name}"))
                            .body(Vec::new())
                            .unwrap(),
                    )
                    .await;
                panic!(
                    "{kind} with {}: the API server accepted it: {created}",
                    case.what
                )
            }
            Err(status) => status,
        };
        println!("{kind} with {}: {}", case.what, status.message);
        assert_eq!(
            (status.code, status.reason.as_str()),
            (422, "Invalid"),
            "{kind} with {}: {status:?}",
            case.what
        );
        assert!(
            status
                .message
                .starts_with(&format!("{kind}.irsa.dev \"{name}\" is invalid")),
            "{kind} with {}: the message names the object: {}",
            case.what,
            status.message
        );
        let causes = status
            .details
            .as_ref()
            .map(|d| d.causes.clone())
            .unwrap_or_default();
        for (field, reason) in case.errors {
            assert!(
                status.message.contains(&format!("{field}: ")) && status.message.contains(reason),
                "{kind} with {}: the message names {field} and says {reason:?}: {}",
                case.what,
                status.message
            );
            assert!(
                causes
                    .iter()
                    .any(|c| c.field == *field && c.message.contains(reason)),
                "{kind} with {}: a cause for {field} saying {reason:?}: {causes:?}",
                case.what
            );
        }
        // When the schema already refused a field, the API server skips the CEL rules and
        // says so in one more cause (on no field); anything else is noise.
        let skipped = causes
            .iter()
            .filter(|c| c.message.contains("some validation rules were not checked"))
            .count();
        assert_eq!(
            causes.len() - skipped,
            case.errors.len(),
            "{kind} with {}: exactly the expected errors, no noise: {causes:?}",
            case.what
        );
    }
}

const NOT_A_ROLE_ARN: &str =
    "must be an IAM role ARN: arn:<partition>:iam::<12-digit account>:role/<optional path/><name>";
const NOT_A_NAME: &str = "a ServiceAccount name must be a lowercase RFC 1123 subdomain";

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn invalid_bindings_are_refused_with_the_field_and_the_reason() {
    let (client, ns) = cluster_with_crds().await;
    let path = format!("{API}/namespaces/{ns}/iamrolebindings");
    let cases = [
        Invalid {
            what: "a user ARN",
            spec: json!({"roleArn": "arn:aws:iam::111122223333:user/bob", "serviceAccounts": ["app"]}),
            errors: &[("spec.roleArn", NOT_A_ROLE_ARN)],
        },
        Invalid {
            what: "a role name instead of its ARN",
            spec: json!({"roleArn": "s3-reader", "serviceAccounts": ["app"]}),
            errors: &[("spec.roleArn", NOT_A_ROLE_ARN)],
        },
        Invalid {
            what: "an 11-digit account",
            spec: json!({"roleArn": "arn:aws:iam::11112222333:role/app", "serviceAccounts": ["app"]}),
            errors: &[("spec.roleArn", NOT_A_ROLE_ARN)],
        },
        Invalid {
            what: "no serviceAccounts",
            spec: json!({"roleArn": ROLE}),
            errors: &[("spec.serviceAccounts", "Required value")],
        },
        Invalid {
            what: "an empty serviceAccounts",
            spec: json!({"roleArn": ROLE, "serviceAccounts": []}),
            errors: &[("spec.serviceAccounts", "should have at least 1 items")],
        },
        Invalid {
            what: "ServiceAccount names Kubernetes would refuse",
            spec: json!({"roleArn": ROLE, "serviceAccounts": ["app", "App_1", "-app", "app.", ""]}),
            errors: &[
                ("spec.serviceAccounts[1]", NOT_A_NAME),
                ("spec.serviceAccounts[2]", NOT_A_NAME),
                ("spec.serviceAccounts[3]", NOT_A_NAME),
                ("spec.serviceAccounts[4]", NOT_A_NAME),
            ],
        },
        Invalid {
            what: "a ServiceAccount listed twice",
            spec: json!({"roleArn": ROLE, "serviceAccounts": ["app", "worker", "app"]}),
            errors: &[("spec.serviceAccounts[2]", "Duplicate value: \"app\"")],
        },
        Invalid {
            what: "a negative tokenExpirationSeconds",
            spec: json!({"roleArn": ROLE, "serviceAccounts": ["app"], "tokenExpirationSeconds": -1}),
            errors: &[(
                "spec.tokenExpirationSeconds",
                "should be greater than or equal to 600",
            )],
        },
        Invalid {
            what: "a tokenExpirationSeconds under the webhook's minimum of 600",
            spec: json!({"roleArn": ROLE, "serviceAccounts": ["app"], "tokenExpirationSeconds": 599}),
            errors: &[(
                "spec.tokenExpirationSeconds",
                "should be greater than or equal to 600",
            )],
        },
        Invalid {
            what: "a tokenExpirationSeconds over the API server's maximum of 2^32",
            spec: json!({"roleArn": ROLE, "serviceAccounts": ["app"], "tokenExpirationSeconds": (1_i64 << 32) + 1}),
            errors: &[(
                "spec.tokenExpirationSeconds",
                "should be less than or equal to 4294967296",
            )],
        },
        Invalid {
            what: "annotation settings but annotateServiceAccounts: false",
            spec: json!({"roleArn": ROLE, "serviceAccounts": ["app"],
                         "annotateServiceAccounts": false, "tokenExpirationSeconds": 3600}),
            errors: &[(
                "spec",
                "stsRegionalEndpoints and tokenExpirationSeconds are written as ServiceAccount annotations: they need annotateServiceAccounts: true",
            )],
        },
    ];
    assert_refused(&client, &path, &cases, "IAMRoleBinding").await;
    support::delete_namespace(&client, &ns).await;
}

#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn invalid_grants_are_refused_with_the_field_and_the_reason() {
    let (client, ns) = cluster_with_crds().await;
    let path = format!("{API}/iamrolegrants");
    let roles = json!(["arn:aws:iam::111122223333:role/team-a-*"]);
    let cases = [
        Invalid {
            what: "no namespaces",
            spec: json!({"namespaces": [], "roleArns": roles}),
            errors: &[("spec.namespaces", "should have at least 1 items")],
        },
        Invalid {
            what: "an S3 ARN among the roles",
            spec: json!({"namespaces": ["team-a"], "roleArns": ["arn:aws:s3:::bucket"]}),
            errors: &[(
                "spec.roleArns[0]",
                "must be an IAM role ARN or a glob of one (* and ? allowed)",
            )],
        },
        Invalid {
            what: "every role in every account",
            spec: json!({"namespaces": ["team-a"], "roleArns": ["arn:*:iam::*:role/*"]}),
            errors: &[(
                "spec.roleArns",
                "a grant for every role in every account is almost certainly a mistake; name the account",
            )],
        },
        Invalid {
            what: "an empty serviceAccounts (omit it for every ServiceAccount)",
            spec: json!({"namespaces": ["team-a"], "roleArns": roles, "serviceAccounts": []}),
            errors: &[("spec.serviceAccounts", "should have at least 1 items")],
        },
        Invalid {
            what: "a namespace listed twice",
            spec: json!({"namespaces": ["team-a", "team-a"], "roleArns": roles}),
            errors: &[("spec.namespaces[1]", "Duplicate value: \"team-a\"")],
        },
    ];
    assert_refused(&client, &path, &cases, "IAMRoleGrant").await;
    support::delete_namespace(&client, &ns).await;
}

/// A misspelt field is an error, not a silently ignored setting, both for `kubectl create`
/// (POST, `fieldValidation=Strict`) and `kubectl apply --server-side` (apply patch, Strict).
#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn unknown_fields_are_refused_with_strict_field_validation() {
    let (client, ns) = cluster_with_crds().await;

    // `roleARN` for `roleArn`: the classic one.
    let name = support::unique("typo");
    let typo = binding(
        &name,
        json!({"roleARN": ROLE, "roleArn": ROLE, "serviceAccounts": ["app"]}),
    );
    let status = create(
        &client,
        &format!("{API}/namespaces/{ns}/iamrolebindings"),
        &typo,
    )
    .await
    .expect_err("a binding with spec.roleARN is refused");
    println!("create with spec.roleARN: {}", status.message);
    assert_eq!((status.code, status.reason.as_str()), (400, "BadRequest"));
    assert!(
        status
            .message
            .contains(r#"strict decoding error: unknown field "spec.roleARN""#),
        "{}",
        status.message
    );

    let name = support::unique("irsa-e2e-typo");
    let typo = grant(
        &name,
        json!({"namespace": ["team-a"], "namespaces": ["team-a"],
               "roleArns": ["arn:aws:iam::111122223333:role/team-a-*"]}),
    );
    let grants: Api<IAMRoleGrant> = Api::all(client.clone());
    let err = grants
        .patch(
            &name,
            &PatchParams::apply("irsa-e2e").validation_strict(),
            &Patch::Apply(&typo),
        )
        .await
        .expect_err("a grant with spec.namespace is refused");
    let kube::Error::Api(status) = err else {
        panic!("expected the API server's refusal, got {err}")
    };
    println!("server-side apply with spec.namespace: {}", status.message);
    // The code is the API server's choice (500 for an apply patch it cannot type); the
    // message is what `kubectl apply --server-side` prints.
    assert!(
        status
            .message
            .contains(".spec.namespace: field not declared in schema"),
        "{}",
        status.message
    );
    assert!(
        grants.get_opt(&name).await.unwrap().is_none(),
        "nothing was stored"
    );
    support::delete_namespace(&client, &ns).await;
}

/// Deletes a binding a controller of a concurrent test may have put its finalizer on (no
/// controller cleans it once that test is over), so the namespace can go.
async fn delete_binding(client: &kube::Client, ns: &str, name: &str) {
    let api: Api<IAMRoleBinding> = Api::namespaced(client.clone(), ns);
    let _ = api.delete(name, &DeleteParams::default()).await;
    if let Ok(Some(b)) = api.get_opt(name).await
        && b.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FINALIZER)
    {
        let _ = api
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": null}})),
            )
            .await;
    }
}

async fn delete_grant(client: &kube::Client, name: &str) {
    let _ = Api::<IAMRoleGrant>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
}

/// The objects of the README and docs/design.md, at the edges of what the schema allows, are accepted
/// as they are, with the schema's defaults filled in.
#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn valid_objects_are_accepted_with_their_defaults() {
    let (client, ns) = cluster_with_crds().await;

    let full = binding(
        "s3-reader",
        json!({"roleArn": "arn:aws-cn:iam::111122223333:role/team-a/s3-reader",
               "serviceAccounts": ["app", "worker.v2", "a"],
               "audience": "sts.amazonaws.com", "stsRegionalEndpoints": true,
               "tokenExpirationSeconds": 600}),
    );
    let minimal = binding(
        "minimal",
        json!({"roleArn": ROLE, "serviceAccounts": ["app"], "tokenExpirationSeconds": 1_i64 << 32}),
    );
    let path = format!("{API}/namespaces/{ns}/iamrolebindings");
    for object in [&full, &minimal] {
        let created = create(&client, &path, object)
            .await
            .unwrap_or_else(|s| panic!("{object} is refused: {}", s.message));
        let mut want = object["spec"].clone();
        want["annotateServiceAccounts"] = json!(true);
        assert_eq!(
            created["spec"], want,
            "stored as sent, annotateServiceAccounts defaulted to true"
        );
        let typed: IAMRoleBinding = serde_json::from_value(created).unwrap();
        assert!(typed.spec.annotate_service_accounts);
    }

    let name = support::unique("irsa-e2e-valid");
    let spec = json!({"namespaces": ["team-a", "team-a-*"],
                      "roleArns": ["arn:aws:iam::111122223333:role/team-a-*", "arn:aws:iam::1111222233?3:role/x"],
                      "serviceAccounts": ["*"]});
    let result = create(
        &client,
        &format!("{API}/iamrolegrants"),
        &grant(&name, spec.clone()),
    )
    .await;
    delete_grant(&client, &name).await;
    let created = result.unwrap_or_else(|s| panic!("the grant is refused: {}", s.message));
    let mut want = spec;
    want["allowNamespaceWildcardTrust"] = json!(false);
    assert_eq!(created["spec"], want);

    for name in ["s3-reader", "minimal"] {
        delete_binding(&client, &ns, name).await;
    }
    support::delete_namespace(&client, &ns).await;
}

/// Splits kubectl's table output into rows of cells (columns are separated by 3+ spaces or
/// aligned; no cell here contains a space).
fn table(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

fn ready_condition(binding: &IAMRoleBinding) -> Option<(String, String)> {
    binding
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// `kubectl get irb` (the short name resolved through discovery) prints ROLE,
/// SERVICEACCOUNTS, READY, REASON, AGE as docs/design.md documents; `kubectl get iamrolegrants`
/// prints NAMESPACES, ROLES, AGE. The table is the API server's (additionalPrinterColumns).
#[tokio::test]
#[ignore = "needs a cluster: make test starts one, make e2e uses KUBECONFIG"]
async fn kubectl_get_prints_the_documented_columns() {
    let (client, ns) = cluster_with_crds().await;
    let bindings: Api<IAMRoleBinding> = Api::namespaced(client.clone(), &ns);

    let created = create(
        &client,
        &format!("{API}/namespaces/{ns}/iamrolebindings"),
        &binding(
            "s3-reader",
            json!({"roleArn": ROLE, "serviceAccounts": ["app", "worker"]}),
        ),
    )
    .await
    .unwrap_or_else(|s| panic!("{}", s.message));
    assert_eq!(created["metadata"]["name"], "s3-reader");

    // Before any status: the status columns are empty, the rest is there.
    let (ok, stdout, stderr) = kubectl(&["-n", &ns, "get", "irb"], "");
    assert!(ok, "kubectl get irb: {stderr}");
    println!("{stdout}");
    let rows = table(&stdout);
    assert_eq!(
        rows[0],
        ["NAME", "ROLE", "SERVICEACCOUNTS", "READY", "REASON", "AGE"],
        "{stdout}"
    );
    assert_eq!(rows.len(), 2, "{stdout}");
    assert_eq!(
        rows[1][..3],
        ["s3-reader", ROLE, r#"["app","worker"]"#],
        "{stdout}"
    );

    // The status a controller writes. Another test's controller may be running (each watches
    // the whole cluster) and write its own verdict, so every row is compared with the status
    // read just before and just after it.
    let status = json!({"status": {"observedGeneration": 1, "conditions": [{
        "type": "Ready", "status": "True", "reason": "TrustPolicyApplied",
        "message": "2 subjects trusted", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    bindings
        .patch_status("s3-reader", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let (row, (ready, reason)) = wait_for(
        "kubectl get irb to show the Ready condition of a status that held still",
        WAIT,
        || async {
            let before = ready_condition(&bindings.get("s3-reader").await.ok()?)?;
            let (ok, stdout, stderr) =
                kubectl(&["-n", &ns, "get", "irb", "s3-reader", "--no-headers"], "");
            assert!(ok, "kubectl get irb: {stderr}");
            let after = ready_condition(&bindings.get("s3-reader").await.ok()?)?;
            let row = table(&stdout).pop()?;
            (before == after).then_some((row, before))
        },
    )
    .await;
    println!("{row:?}");
    assert_eq!(row.len(), 6, "{row:?}");
    assert_eq!(
        row[..3],
        ["s3-reader", ROLE, r#"["app","worker"]"#],
        "{row:?}"
    );
    assert_eq!(
        row[3..5],
        [ready, reason],
        "READY and REASON are the Ready condition's"
    );
    assert!(
        row[5].ends_with('s') || row[5].ends_with('m'),
        "AGE is a duration: {row:?}"
    );

    let name = support::unique("irsa-e2e-columns");
    create(
        &client,
        &format!("{API}/iamrolegrants"),
        &grant(
            &name,
            json!({"namespaces": ["team-a", "team-a-*"],
                   "roleArns": ["arn:aws:iam::111122223333:role/team-a-*"]}),
        ),
    )
    .await
    .unwrap_or_else(|s| panic!("{}", s.message));
    let (ok, stdout, stderr) = kubectl(&["get", "iamrolegrants", &name], "");
    delete_grant(&client, &name).await;
    assert!(ok, "kubectl get iamrolegrants: {stderr}");
    println!("{stdout}");
    let rows = table(&stdout);
    assert_eq!(rows[0], ["NAME", "NAMESPACES", "ROLES", "AGE"], "{stdout}");
    assert_eq!(
        rows[1][..3],
        [
            name.as_str(),
            r#"["team-a","team-a-*"]"#,
            r#"["arn:aws:iam::111122223333:role/team-a-*"]"#
        ],
        "{stdout}"
    );

    delete_binding(&client, &ns, "s3-reader").await;
    support::delete_namespace(&client, &ns).await;
}
