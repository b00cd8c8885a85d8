//! Shared by the webhook integration tests: certificates, a started server, AdmissionReview
//! bodies, and a mocked Kubernetes API (the controller-rs `ApiServerVerifier` pattern).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::http::{Response, StatusCode};
use irsa::{
    mutate::{Identities, MutationConfig, ServiceAccountInfo},
    testing::kube_api::{ApiHandle, json_response},
    webhook::{
        AppState, Associations, CertSource, ConnectionLimits, Metrics, Options, Running,
        ServiceAccountCache, identities::WatchedIdentities, tls::TlsVersion,
    },
};
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub const ROLE: &str = "arn:aws:iam::111122223333:role/app";

pub fn init() {
    irsa::install_crypto_provider();
}

/// A fresh directory under the system temp dir, unique per test, removed when dropped.
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn temp_dir(name: &str) -> TempDir {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "irsa-webhook-test-{}-{name}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// A self-signed certificate for `localhost` / 127.0.0.1: (cert PEM, key PEM).
pub fn self_signed() -> (String, String) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    (ck.cert.pem(), ck.signing_key.serialize_pem())
}

pub fn write_pair(dir: &Path, (cert, key): &(String, String)) -> (PathBuf, PathBuf) {
    let (c, k) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key).unwrap();
    (c, k)
}

pub fn sa(namespace: &str, name: &str, annotations: &[(&str, &str)]) -> ServiceAccountInfo {
    ServiceAccountInfo {
        namespace: namespace.into(),
        name: name.into(),
        annotations: annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

pub fn options(cert: PathBuf, key: PathBuf) -> Options {
    Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        tls: CertSource::Files { cert, key },
        tls_min_version: TlsVersion::V1_2,
        reload_interval: Duration::from_millis(50),
        shutdown_grace: Duration::from_secs(30),
        sa_lookup_timeout: Duration::from_secs(30),
        mutation: MutationConfig::default(),
        identities_file: None,
        limits: ConnectionLimits::ADMISSION,
        admin_limits: ConnectionLimits::ADMIN,
    }
}

/// A server with a fixed ServiceAccount set: `team-a/app` has a role, `team-a/plain` none,
/// `team-a/broken` an invalid expiration.
pub async fn start_fixed(opts: Options) -> Running {
    let metrics = Arc::new(Metrics::new());
    let cache = ServiceAccountCache::fixed(
        [
            sa("team-a", "app", &[("eks.amazonaws.com/role-arn", ROLE)]),
            sa("team-a", "plain", &[]),
            sa(
                "team-a",
                "broken",
                &[
                    ("eks.amazonaws.com/role-arn", ROLE),
                    ("eks.amazonaws.com/token-expiration", "soon"),
                ],
            ),
        ],
        "eks.amazonaws.com",
        metrics.clone(),
    );
    irsa::webhook::start(opts, cache, Associations::disabled(), metrics)
        .await
        .unwrap()
}

/// A client that trusts exactly `cert_pem` and reaches `localhost` at `addr`.
pub fn client(cert_pem: &str, addr: SocketAddr) -> reqwest::Client {
    client_builder(cert_pem, addr).build().unwrap()
}

pub fn client_builder(cert_pem: &str, addr: SocketAddr) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap()])
        .resolve("localhost", addr)
        .timeout(Duration::from_secs(60))
}

pub fn url(addr: SocketAddr) -> String {
    format!("https://localhost:{}/mutate", addr.port())
}

pub fn pod(service_account: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "web-", "namespace": "team-a", "x-vendor": {"keep": true}},
        "spec": {
            "serviceAccountName": service_account,
            "containers": [{"name": "app", "image": "nginx", "x-unknown-field": [1, 2, 3]}],
        }
    })
}

pub fn review(api_version: &str, uid: &str, object: Value) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "team-a",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": object,
            "oldObject": null,
            "dryRun": false,
        }
    })
}

/// Decodes `response.patch` (base64 JSON patch) and applies it to `pod`.
pub fn apply_patch(response: &Value, pod: &Value) -> Value {
    let patch: k8s_openapi::ByteString =
        serde_json::from_value(response["response"]["patch"].clone()).unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch.0).unwrap();
    let mut out = pod.clone();
    json_patch::patch(&mut out, &patch).unwrap();
    out
}

pub fn env_names(pod: &Value) -> Vec<String> {
    pod["spec"]["containers"][0]["env"]
        .as_array()
        .map(|env| {
            env.iter()
                .map(|e| e["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

// ---- the mocked Kubernetes API ----

/// How the mocked API server answers `GET /api/v1/namespaces/{ns}/serviceaccounts/{name}`.
pub enum GetBehaviour {
    /// 200 with this ServiceAccount's annotations.
    Found(Vec<(String, String)>),
    /// 200 once the sender fires (or is dropped).
    FoundAfter(Vec<(String, String)>, Mutex<Option<oneshot::Receiver<()>>>),
    NotFound,
    /// Never answers.
    Hang,
}

/// A ServiceAccount of the initial list: namespace, name, annotations.
pub type ListedSa<'a> = (&'a str, &'a str, Vec<(String, String)>);

/// Asserts every call the webhook makes: only the ServiceAccount list, watch and GET, all
/// with method GET; anything else is recorded in `unexpected`.
#[derive(Clone)]
pub struct ApiServerVerifier {
    pub gets: Arc<AtomicUsize>,
    pub get_paths: Arc<Mutex<Vec<String>>>,
    pub unexpected: Arc<Mutex<Vec<String>>>,
}

fn partial_meta(namespace: &str, name: &str, annotations: &[(String, String)]) -> Value {
    let annotations: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": "5", "uid": format!("uid-{name}"), "annotations": annotations}
    })
}

impl ApiServerVerifier {
    /// Serves `list` (namespace, name, annotations) as the initial ServiceAccount list, parks
    /// watches (they stay open) and answers GETs with `get`.
    pub fn spawn(handle: ApiHandle, list: Vec<ListedSa<'_>>, get: GetBehaviour) -> Self {
        Self::spawn_with_watch(handle, list, Vec::new(), get)
    }

    /// Like [`Self::spawn`], but the first watch streams `events` (`(type, namespace, name,
    /// annotations)`) and ends; later watches stay open.
    pub fn spawn_with_watch(
        mut handle: ApiHandle,
        list: Vec<ListedSa<'_>>,
        events: Vec<(&str, ListedSa<'_>)>,
        get: GetBehaviour,
    ) -> Self {
        let verifier = Self {
            gets: Arc::default(),
            get_paths: Arc::default(),
            unexpected: Arc::default(),
        };
        let items: Vec<Value> = list
            .iter()
            .map(|(ns, name, ann)| partial_meta(ns, name, ann))
            .collect();
        let mut watch_body: Vec<u8> = Vec::new();
        for (i, (kind, (ns, name, ann))) in events.iter().enumerate() {
            let mut object = partial_meta(ns, name, ann);
            object["metadata"]["resourceVersion"] = json!((11 + i).to_string());
            watch_body
                .extend(serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap());
            watch_body.push(b'\n');
        }
        let mut watch_body = (!watch_body.is_empty()).then_some(watch_body);
        let v = verifier.clone();
        let get = Arc::new(get);
        tokio::spawn(async move {
            let mut parked = Vec::new();
            while let Some((request, send)) = handle.next_request().await {
                let uri = request.uri().clone();
                let (path, query) = (uri.path(), uri.query().unwrap_or(""));
                if request.method() != "GET" {
                    v.unexpected
                        .lock()
                        .unwrap()
                        .push(format!("{} {uri}", request.method()));
                    continue;
                }
                if path == "/api/v1/serviceaccounts" && query.contains("watch=true") {
                    match watch_body.take() {
                        Some(body) => send.send_response(
                            Response::builder()
                                .status(StatusCode::OK)
                                .header("content-type", "application/json")
                                .body(Body::from(body))
                                .unwrap(),
                        ),
                        None => parked.push(send),
                    }
                } else if path == "/api/v1/serviceaccounts" {
                    send.send_response(json_response(
                        StatusCode::OK,
                        json!({
                            "apiVersion": "meta.k8s.io/v1",
                            "kind": "PartialObjectMetadataList",
                            "metadata": {"resourceVersion": "10"},
                            "items": items,
                        }),
                    ));
                } else if let Some(rest) = path.strip_prefix("/api/v1/namespaces/")
                    && let [ns, "serviceaccounts", name] =
                        rest.split('/').collect::<Vec<_>>().as_slice()
                {
                    v.get_paths.lock().unwrap().push(path.to_string());
                    v.gets.fetch_add(1, Ordering::SeqCst);
                    let (ns, name) = (ns.to_string(), name.to_string());
                    match &*get {
                        GetBehaviour::Found(ann) => send.send_response(json_response(
                            StatusCode::OK,
                            partial_meta(&ns, &name, ann),
                        )),
                        GetBehaviour::FoundAfter(ann, gate) => {
                            let gate = gate.lock().unwrap().take();
                            let body = partial_meta(&ns, &name, ann);
                            tokio::spawn(async move {
                                if let Some(gate) = gate {
                                    let _ = gate.await;
                                }
                                send.send_response(json_response(StatusCode::OK, body));
                            });
                        }
                        GetBehaviour::NotFound => send.send_response(json_response(
                            StatusCode::NOT_FOUND,
                            json!({
                                "kind": "Status", "apiVersion": "v1", "metadata": {},
                                "status": "Failure", "reason": "NotFound", "code": 404,
                                "message": format!("serviceaccounts \"{name}\" not found"),
                                "details": {"name": name, "kind": "serviceaccounts"},
                            }),
                        )),
                        GetBehaviour::Hang => parked.push(send),
                    }
                } else {
                    v.unexpected.lock().unwrap().push(format!("GET {uri}"));
                }
            }
        });
        verifier
    }

    pub fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }

    pub fn assert_no_unexpected_calls(&self) {
        let unexpected = self.unexpected.lock().unwrap();
        assert!(
            unexpected.is_empty(),
            "unexpected API calls: {unexpected:?}"
        );
    }
}

/// An in-process app state over a given cache (no TLS), for router `oneshot` tests.
pub fn app_state(
    cache: ServiceAccountCache,
    metrics: Arc<Metrics>,
    config: MutationConfig,
    timeout: Duration,
) -> Arc<AppState> {
    Arc::new(AppState {
        config,
        identities: Arc::new(WatchedIdentities::fixed(Identities::default())),
        associations: Associations::disabled(),
        cache,
        metrics,
        sa_lookup_timeout: timeout,
    })
}

pub fn annotations(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
