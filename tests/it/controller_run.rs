//! The whole controller wiring (`run_reconcilers`: watches, stores, IAM worker, binding
//! Controller, re-triggers, events) against moto for IAM and a small in-memory API server for
//! Kubernetes: list + streaming watch for bindings, grants and ServiceAccounts; JSON patch
//! (finalizers) and merge patch (status, annotations) applied to the stored objects; Events
//! accepted. It stands in for a cluster only to show the pieces meet; the e2e tests do the
//! same against a real one.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use irsa_e2e::moto::{self, ACCOUNT};
use irsa_e2e::wait::wait_for;

use crate::common::WAIT;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use irsa::aws::ConvergeOptions;
use irsa::controller::iam::reconcile::RoleSettings;
use irsa::controller::iam::worker::WorkerOptions;
use irsa::controller::metrics::{Aws, Metrics};
use irsa::controller::policy::desired;
use irsa::issuer::IssuerUrl;
use serde_json::{Value, json};
use tokio::sync::broadcast;

const FOREIGN: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"HumansViaSaml","Effect":"Allow","Principal":{"Federated":"arn:aws:iam::123456789012:saml-provider/Corp"},"Action":"sts:AssumeRoleWithSAML"}]}"#;
const P: &str = "eks.amazonaws.com";

/// One resource collection of the fake API server.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
enum Kind {
    Binding,
    Grant,
    Sa,
    Association,
}

impl Kind {
    fn list_kind(self) -> &'static str {
        match self {
            Kind::Binding => "IAMRoleBindingList",
            Kind::Grant => "IAMRoleGrantList",
            Kind::Sa => "ServiceAccountList",
            Kind::Association => "PodIdentityAssociationList",
        }
    }
    fn api_version(self) -> &'static str {
        match self {
            Kind::Sa => "v1",
            _ => "irsa.dev/v1alpha1",
        }
    }
}

#[derive(Default)]
struct Objects {
    rv: u64,
    /// (kind, namespace/name) → object
    items: BTreeMap<(Kind, String), Value>,
    events: Vec<Value>,
}

struct Fake {
    objects: Mutex<Objects>,
    tx: broadcast::Sender<(Kind, String)>,
}

impl Fake {
    fn new() -> Arc<Self> {
        let (tx, _) = broadcast::channel(1024);
        Arc::new(Self {
            objects: Mutex::new(Objects::default()),
            tx,
        })
    }

    fn key(obj: &Value) -> String {
        format!(
            "{}/{}",
            obj["metadata"]["namespace"].as_str().unwrap_or(""),
            obj["metadata"]["name"].as_str().unwrap()
        )
    }

    /// Stores `obj` (new resourceVersion, generation 1 when new) and announces it.
    fn put(&self, kind: Kind, mut obj: Value, type_: &str) -> Value {
        let mut o = self.objects.lock().unwrap();
        o.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(o.rv.to_string());
        if obj["metadata"]["generation"].is_null() {
            obj["metadata"]["generation"] = json!(1);
        }
        if obj["metadata"]["uid"].is_null() {
            obj["metadata"]["uid"] = json!(format!("uid-{}", o.rv));
        }
        let key = Self::key(&obj);
        if type_ == "DELETED" {
            o.items.remove(&(kind, key));
        } else {
            o.items.insert((kind, key), obj.clone());
        }
        let line = json!({"type": type_, "object": obj}).to_string();
        let _ = self.tx.send((kind, line));
        obj
    }

    fn get(&self, kind: Kind, key: &str) -> Option<Value> {
        self.objects
            .lock()
            .unwrap()
            .items
            .get(&(kind, key.to_string()))
            .cloned()
    }

    fn list(&self, kind: Kind) -> Value {
        let o = self.objects.lock().unwrap();
        let items: Vec<Value> = o
            .items
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|(_, v)| v.clone())
            .collect();
        json!({"apiVersion": kind.api_version(), "kind": kind.list_kind(),
               "metadata": {"resourceVersion": o.rv.to_string()}, "items": items})
    }

    /// Applies a patch to a stored object like the API server would (finalizer semantics
    /// included: an object being deleted goes when its last finalizer does).
    fn patch(&self, kind: Kind, key: &str, body: &Value, status_only: bool) -> Option<Value> {
        let mut obj = self.get(kind, key)?;
        if body.is_array() {
            // The API server's JSON patch `test` sees an absent list as null (kube's
            // finalizer helper tests `/metadata/finalizers` == null before adding one).
            if obj["metadata"].get("finalizers").is_none() {
                obj["metadata"]["finalizers"] = Value::Null;
            }
            let p: json_patch::Patch = serde_json::from_value(body.clone()).unwrap();
            json_patch::patch(&mut obj, &p).ok()?;
        } else if status_only {
            json_patch::merge(&mut obj["status"], &body["status"]);
        } else {
            json_patch::merge(&mut obj, body);
        }
        let finalizers_gone = obj["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty());
        if !obj["metadata"]["deletionTimestamp"].is_null() && finalizers_gone {
            return Some(self.put(kind, obj, "DELETED"));
        }
        Some(self.put(kind, obj, "MODIFIED"))
    }
}

async fn list_or_watch(fake: Arc<Fake>, kind: Kind, uri: Uri) -> Response {
    let watch = uri
        .query()
        .unwrap_or("")
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    if watch {
        let rx = fake.tx.subscribe();
        let stream = futures::stream::unfold(rx, move |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok((k, line)) if k == kind => {
                        return Some((Ok::<_, Infallible>(Bytes::from(line + "\n")), rx));
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from_stream(stream))
            .unwrap();
    }
    axum::Json(fake.list(kind)).into_response()
}

fn router(fake: Arc<Fake>) -> Router {
    let not_found = || {
        (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404})),
        )
            .into_response()
    };
    Router::new()
        .route(
            "/apis/irsa.dev/v1alpha1/iamrolebindings",
            get(|State(f): State<Arc<Fake>>, uri: Uri| async move {
                list_or_watch(f, Kind::Binding, uri).await
            }),
        )
        .route(
            "/apis/irsa.dev/v1alpha1/iamrolegrants",
            get(|State(f): State<Arc<Fake>>, uri: Uri| async move {
                list_or_watch(f, Kind::Grant, uri).await
            }),
        )
        .route(
            "/apis/irsa.dev/v1alpha1/podidentityassociations",
            get(|State(f): State<Arc<Fake>>, uri: Uri| async move {
                list_or_watch(f, Kind::Association, uri).await
            }),
        )
        .route(
            "/api/v1/serviceaccounts",
            get(|State(f): State<Arc<Fake>>, uri: Uri| async move {
                list_or_watch(f, Kind::Sa, uri).await
            }),
        )
        .route(
            "/apis/irsa.dev/v1alpha1/namespaces/{ns}/iamrolebindings/{name}",
            patch(
                move |State(f): State<Arc<Fake>>,
                      Path((ns, name)): Path<(String, String)>,
                      axum::Json(body): axum::Json<Value>| async move {
                    match f.patch(Kind::Binding, &format!("{ns}/{name}"), &body, false) {
                        Some(o) => axum::Json(o).into_response(),
                        None => not_found(),
                    }
                },
            ),
        )
        .route(
            "/apis/irsa.dev/v1alpha1/namespaces/{ns}/iamrolebindings/{name}/status",
            patch(
                move |State(f): State<Arc<Fake>>,
                      Path((ns, name)): Path<(String, String)>,
                      axum::Json(body): axum::Json<Value>| async move {
                    match f.patch(Kind::Binding, &format!("{ns}/{name}"), &body, true) {
                        Some(o) => axum::Json(o).into_response(),
                        None => not_found(),
                    }
                },
            ),
        )
        .route(
            "/api/v1/namespaces/{ns}/serviceaccounts/{name}",
            patch(
                move |State(f): State<Arc<Fake>>,
                      Path((ns, name)): Path<(String, String)>,
                      axum::Json(body): axum::Json<Value>| async move {
                    match f.patch(Kind::Sa, &format!("{ns}/{name}"), &body, false) {
                        Some(o) => axum::Json(o).into_response(),
                        None => not_found(),
                    }
                },
            ),
        )
        .route(
            "/apis/events.k8s.io/v1/namespaces/{ns}/events",
            post(
                |State(f): State<Arc<Fake>>, axum::Json(body): axum::Json<Value>| async move {
                    f.objects.lock().unwrap().events.push(body.clone());
                    axum::Json(body)
                },
            ),
        )
        .with_state(fake)
}

fn condition(obj: &Value, type_: &str) -> Option<(String, String)> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap().to_string(),
                c["reason"].as_str().unwrap().to_string(),
            )
        })
}

struct Harness {
    aws: moto::TestAws,
    fake: Arc<Fake>,
    role: String,
    role_name: String,
    controller: tokio::task::JoinHandle<anyhow::Result<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.controller.abort();
        self.server.abort();
    }
}

/// The role settings and worker options every test here runs with.
fn settings(max_chars: usize) -> (RoleSettings, WorkerOptions) {
    let issuer = format!("https://oidc.test.example/id/{}", moto::unique("c"));
    let settings = RoleSettings {
        issuer: IssuerUrl::parse(&issuer).unwrap(),
        provider_arn: format!(
            "arn:aws:iam::{ACCOUNT}:oidc-provider/{}",
            issuer.strip_prefix("https://").unwrap()
        ),
        max_chars,
        desired: desired::Settings {
            cluster: "blue".into(),
            default_audience: "sts.amazonaws.com".into(),
            manage_annotated: true,
            pod_identity_agent: None,
        },
        converge: ConvergeOptions::default(),
    };
    let options = WorkerOptions {
        debounce: Duration::from_millis(200),
        resync: Duration::from_secs(3600),
        ..WorkerOptions::default()
    };
    (settings, options)
}

/// A shutdown that comes before the caches ever synced (a SIGTERM right after winning the
/// Lease) still ends `run_reconcilers`: kube-runtime's runner, waiting for its store's first
/// list, would otherwise wait forever and the Lease would never be released.
#[tokio::test]
async fn shutdown_before_the_first_list_still_returns() {
    irsa::install_crypto_provider();
    let aws = moto::test_aws().await;
    // An API server that accepts connections (the kernel's backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let (settings, options) = settings(2048);
    let run = irsa::controller::wiring::run_reconcilers(
        client,
        Aws::new(aws.sdk_config(), Metrics::default()),
        settings,
        options,
        P.into(),
        Metrics::default(),
        Arc::new(AtomicBool::new(false)),
        None,
        std::future::ready(()),
    );
    let ended = tokio::time::timeout(Duration::from_secs(60), run).await;
    assert!(
        matches!(ended, Ok(Ok(()))),
        "run_reconcilers returns after a shutdown even before any list: {ended:?}"
    );
    drop(silent);
}

/// moto with one role (FOREIGN trust), the fake API server with a grant for team-a and the
/// ServiceAccount team-a/app, and `run_reconcilers` running against both, caches synced.
async fn start(max_chars: usize) -> Harness {
    irsa::install_crypto_provider();
    irsa::telemetry::init(irsa::telemetry::LogFormat::Text);
    let aws = moto::test_aws().await;
    let role_name = moto::unique("role");
    let role = aws
        .iam_direct()
        .create_role()
        .role_name(&role_name)
        .assume_role_policy_document(FOREIGN)
        .send()
        .await
        .unwrap()
        .role()
        .unwrap()
        .arn()
        .to_string();

    let fake = Fake::new();
    fake.put(
        Kind::Grant,
        json!({"apiVersion":"irsa.dev/v1alpha1","kind":"IAMRoleGrant","metadata":{"name":"team-a"},
               "spec":{"namespaces":["team-a"],"roleArns":[format!("arn:aws:iam::{ACCOUNT}:role/*")]}}),
        "ADDED",
    );
    fake.put(
        Kind::Sa,
        json!({"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"app","namespace":"team-a","annotations":{"team":"x"}}}),
        "ADDED",
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, router(fake.clone())).into_future());

    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let metrics = Metrics::default();
    let iam = Aws::new(aws.sdk_config(), metrics.clone());
    let (settings, options) = settings(max_chars);
    let ready = Arc::new(AtomicBool::new(false));
    let controller = tokio::spawn(irsa::controller::wiring::run_reconcilers(
        client,
        iam,
        settings,
        options,
        P.into(),
        metrics.clone(),
        ready.clone(),
        None,
        std::future::pending(),
    ));
    wait_for("caches synced", WAIT, async || {
        ready.load(Ordering::Relaxed)
    })
    .await;
    Harness {
        aws,
        fake,
        role,
        role_name,
        controller,
        server,
    }
}

#[tokio::test]
async fn bind_annotate_status_then_delete_cleans_everything() {
    let h = start(2048).await;
    let (aws, fake, role, role_name) = (&h.aws, &h.fake, &h.role, &h.role_name);

    // An app team applies a binding.
    fake.put(
        Kind::Binding,
        json!({"apiVersion":"irsa.dev/v1alpha1","kind":"IAMRoleBinding",
               "metadata":{"name":"s3","namespace":"team-a"},
               "spec":{"roleArn": role, "serviceAccounts":["app", "late"]}}),
        "ADDED",
    );
    // `late` does not exist yet: trusted (IAM does not care), reported as not annotated.
    wait_for("TrustPolicyApplied=True", WAIT, async || {
        fake.get(Kind::Binding, "team-a/s3")
            .and_then(|b| condition(&b, "TrustPolicyApplied"))
            .is_some_and(|(s, _)| s == "True")
    })
    .await;
    let b = fake.get(Kind::Binding, "team-a/s3").unwrap();
    assert_eq!(
        condition(&b, "ServiceAccountsAnnotated").unwrap(),
        ("False".to_string(), "ServiceAccountNotFound".to_string())
    );
    assert_eq!(condition(&b, "Ready").unwrap().0, "False");
    // It appears: annotated, and the binding becomes Ready.
    fake.put(
        Kind::Sa,
        json!({"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"late","namespace":"team-a"}}),
        "ADDED",
    );
    wait_for("Ready=True", WAIT, async || {
        fake.get(Kind::Binding, "team-a/s3")
            .and_then(|b| condition(&b, "Ready"))
            .is_some_and(|(s, _)| s == "True")
    })
    .await;
    let b = fake.get(Kind::Binding, "team-a/s3").unwrap();
    assert_eq!(
        b["metadata"]["finalizers"],
        json!(["irsa.dev/trust-policy"])
    );
    assert_eq!(b["status"]["roleArn"], json!(role));
    assert_eq!(b["status"]["observedGeneration"], 1);
    let sa = fake.get(Kind::Sa, "team-a/app").unwrap();
    assert_eq!(
        sa["metadata"]["annotations"][format!("{P}/role-arn")],
        json!(role)
    );
    assert_eq!(sa["metadata"]["annotations"]["irsa.dev/role-binding"], "s3");
    let doc = aws.trust_of(role_name).await;
    assert!(doc.contains("system:serviceaccount:team-a:app"), "{doc}");
    assert!(doc.contains("system:serviceaccount:team-a:late"), "{doc}");
    let late = fake.get(Kind::Sa, "team-a/late").unwrap();
    assert_eq!(
        late["metadata"]["annotations"][format!("{P}/role-arn")],
        json!(role)
    );
    assert!(doc.contains("HumansViaSaml"));
    assert!(
        fake.objects
            .lock()
            .unwrap()
            .events
            .iter()
            .any(|e| e["reason"] == "TrustPolicyUpdated"),
        "an Event for the IAM write"
    );
    assert_eq!(aws.faults().forwarded("UpdateAssumeRolePolicy"), 1);

    // Deleted: the finalizer holds it until IAM and the SA are clean.
    let mut deleting = fake.get(Kind::Binding, "team-a/s3").unwrap();
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    fake.put(Kind::Binding, deleting, "MODIFIED");
    wait_for("binding gone", WAIT, async || {
        fake.get(Kind::Binding, "team-a/s3").is_none()
    })
    .await;
    let doc = aws.trust_of(role_name).await;
    assert!(!doc.contains("system:serviceaccount"), "{doc}");
    assert!(doc.contains("HumansViaSaml"));
    let sa = fake.get(Kind::Sa, "team-a/app").unwrap();
    assert_eq!(sa["metadata"]["annotations"], json!({"team": "x"}));
    let late = fake.get(Kind::Sa, "team-a/late").unwrap();
    let left = &late["metadata"]["annotations"];
    assert!(left.is_null() || *left == json!({}), "{left}");
}

#[tokio::test]
async fn fifty_bindings_applied_at_once_cost_a_handful_of_iam_writes() {
    // 50 subjects need IAM's raised quota (4096).
    let h = start(4096).await;
    let (aws, fake, role, role_name) = (&h.aws, &h.fake, &h.role, &h.role_name);
    for i in 0..50 {
        fake.put(
            Kind::Sa,
            json!({"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":format!("sa-{i}"),"namespace":"team-a"}}),
            "ADDED",
        );
    }
    aws.faults().reset_counts();
    // `kubectl apply -f` of 50 bindings on one role.
    for i in 0..50 {
        fake.put(
            Kind::Binding,
            json!({"apiVersion":"irsa.dev/v1alpha1","kind":"IAMRoleBinding",
                   "metadata":{"name":format!("b-{i}"),"namespace":"team-a"},
                   "spec":{"roleArn": role, "serviceAccounts":[format!("sa-{i}")],
                           "annotateServiceAccounts": false}}),
            "ADDED",
        );
    }
    wait_for("50 bindings Ready", WAIT, async || {
        (0..50).all(|i| {
            fake.get(Kind::Binding, &format!("team-a/b-{i}"))
                .and_then(|b| condition(&b, "Ready"))
                .is_some_and(|(s, _)| s == "True")
        })
    })
    .await;
    let writes = aws.faults().forwarded("UpdateAssumeRolePolicy");
    eprintln!(
        "50 bindings: {writes} UpdateAssumeRolePolicy, {} GetRole",
        aws.faults().forwarded("GetRole")
    );
    assert!(
        (1..=3).contains(&writes),
        "{writes} trust writes for 50 bindings"
    );
    let doc = aws.trust_of(role_name).await;
    assert_eq!(
        doc.matches("system:serviceaccount:team-a:sa-").count(),
        50,
        "{doc}"
    );
}
