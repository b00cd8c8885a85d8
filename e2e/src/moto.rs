//! A real IAM/STS emulator for integration tests: one `moto_server` per test process, plus a
//! small fault-injecting, call-counting HTTP proxy in front of it per test.
//!
//! ```ignore
//! use crate::moto::{self, Fault};
//!
//! #[tokio::test]
//! async fn survives_throttling() {
//!     let aws = moto::test_aws().await;          // moto (started once) + a fresh proxy
//!     aws.faults().inject_for("GetRole", Fault::Throttle, 2); // the next 2 GetRole calls
//!     let client = aws_sdk_iam::Client::new(aws.sdk_config());
//!     // ... exercise the code under test ...
//!     assert_eq!(aws.faults().writes(), 1);
//! }
//! ```
//!
//! Lifecycle. The emulator is started lazily by the first [`moto()`] / [`test_aws()`] call of
//! a process and kept in a `static OnceLock`. Rust never runs destructors of statics, so the
//! process is not killed from here; instead `e2e/src/moto_server.py` (which runs moto's
//! own server, see that file for the one operation it adds) exits when its stdin reaches EOF,
//! and its stdin is a pipe whose write end only this process holds. Whenever the test process ends
//! (success, panic, SIGKILL), the kernel closes the pipe and the emulator exits with it.
//! nextest runs every test in its own process, so there it is one emulator per test; under
//! `cargo test` all tests of a binary share one, and must therefore use unique names
//! ([`unique`]) instead of resetting moto.
//!
//! Proxy. Each [`TestAws`] owns a proxy on its own port, so fault queues and counters are
//! per test even when tests share the emulator. The proxies run on a dedicated runtime thread,
//! not on the test's runtime (`#[tokio::test]` makes one runtime per test, which dies with it).
//! Operations are recognised from the `Action=` field of the AWS query protocol (IAM and STS).
//!
//! Faults come two ways: queued for the next calls of one operation ([`FaultProxy::inject_for`]),
//! or standing — every request (or every request naming one role) gets the fault until the test
//! changes it ([`FaultProxy::set_standing`]): the per-test schedule of the fault journeys. Every
//! request is logged with its time, operation, role and fault ([`FaultProxy::log`]), so a test
//! can bound the rate of calls while IAM fails. Every answer closes its connection, so a
//! connection reset (done when a connection is accepted) hits the next request, not a pooled
//! connection that predates it.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_iam::config::Credentials;
use aws_sdk_iam::config::retry::RetryConfig;
use aws_sdk_iam::config::timeout::TimeoutConfig;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The account moto's IAM and STS answer for.
pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
/// How long one SDK attempt may take before the SDK gives up on it and retries. Small enough
/// that an injected timeout costs a few seconds, large enough that a busy 2-core machine
/// running moto (Python) does not time out by accident.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the proxy sits on a request it was told to time out: longer than an attempt.
const HANG: Duration = Duration::from_secs(30);
const STARTUP_DEADLINE: Duration = Duration::from_secs(90);

/// The process-wide emulator.
pub struct Moto {
    endpoint: String,
    runtime: tokio::runtime::Handle,
    // Held, never read: dropping the child or its stdin would stop the emulator (see module
    // docs); they live as long as the process.
    _child: Mutex<Child>,
    _stdin: Mutex<ChildStdin>,
}

static MOTO: OnceLock<Moto> = OnceLock::new();

/// The emulator, started on first use. Blocks (a few seconds) until it answers HTTP.
pub fn moto() -> &'static Moto {
    MOTO.get_or_init(start)
}

impl Moto {
    /// `http://127.0.0.1:PORT` of moto itself (no proxy, no faults, not counted).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

fn start() -> Moto {
    irsa::install_crypto_provider();
    let runtime = proxy_runtime();
    let mut last_error = String::new();
    // A free port is picked by binding :0 and releasing it; another process can grab it in
    // between, so a failed start is retried on a new port.
    for _ in 0..3 {
        let port = crate::free_port();
        // target/tmp: kept for post-mortems, gone with `cargo clean`.
        let log = crate::target_tmp().join(format!("moto-{}-{port}.log", std::process::id()));
        match spawn_moto(port, &log) {
            Ok((child, stdin)) => {
                return Moto {
                    endpoint: format!("http://127.0.0.1:{port}"),
                    runtime,
                    _child: Mutex::new(child),
                    _stdin: Mutex::new(stdin),
                };
            }
            Err(e) => last_error = e,
        }
    }
    panic!("could not start moto_server: {last_error}");
}

fn spawn_moto(port: u16, log: &std::path::Path) -> Result<(Child, ChildStdin), String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/src/moto_server.py");
    let out = std::fs::File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    // Output goes to a file, never to our stdout/stderr: nextest treats a child that keeps the
    // test's pipes open as a leak.
    let mut child = Command::new("python3")
        .arg(script)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| {
            format!("spawning python3 {script}: {e}; run `make deps` (installs moto[server])")
        })?;
    let stdin = child.stdin.take().ok_or("child has no stdin pipe")?;
    let deadline = Instant::now() + STARTUP_DEADLINE;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log_text = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!(
                "moto exited with {status} on port {port}; log:\n{log_text}"
            ));
        }
        // Our server's own banner first: another process that grabbed the port in between
        // would answer HTTP too, and we must not adopt (and outlive) someone else's emulator.
        let banner = format!("Running on http://127.0.0.1:{port}");
        let ours = std::fs::read_to_string(log).is_ok_and(|l| l.contains(&banner));
        if ours && answers_http(port) {
            return Ok((child, stdin));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!(
                "moto did not answer on port {port} within {STARTUP_DEADLINE:?}; log in {}",
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn answers_http(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req =
        format!("GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

fn proxy_runtime() -> tokio::runtime::Handle {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("moto-proxies".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("building the proxy runtime");
            tx.send(rt.handle().clone())
                .expect("handing out the runtime");
            rt.block_on(std::future::pending::<()>());
        })
        .expect("spawning the proxy thread");
    rx.recv().expect("proxy runtime handle")
}

/// Names that do not collide between tests sharing one emulator.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// What the proxy does to a request instead of (or after) forwarding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 400 with IAM's `Throttling` error; not forwarded.
    Throttle,
    /// HTTP 500 with IAM's `ServiceFailure` error; not forwarded.
    ServerError,
    /// Never answers (until the client's attempt timeout fires); not forwarded.
    Timeout,
    /// Forwarded (moto applies it) but the answer is withheld: the client sees a timeout for
    /// a write that happened — the case that catches non-idempotent retries.
    TimeoutAfterForward,
    /// The connection is reset (RST) as soon as it is accepted, before a byte is read: only as
    /// a standing fault for every request ([`FaultProxy::set_standing`] with no role).
    Reset,
    /// Forwarded after this long; the answer is moto's.
    Latency(Duration),
}

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub at: Instant,
    /// The IAM/STS action, or `(reset)` for a connection reset before its request was read.
    pub operation: String,
    /// The `RoleName` the request names, if any.
    pub role: Option<String>,
    pub fault: Option<Fault>,
}

#[derive(Default)]
struct ProxyState {
    /// (operation, fault) consumed front to back, one per request for that operation.
    queue: Mutex<VecDeque<(String, Fault)>>,
    received: Mutex<BTreeMap<String, usize>>,
    forwarded: Mutex<BTreeMap<String, usize>>,
    injected: AtomicUsize,
    /// The query-protocol parameters of every request received, in order, by operation.
    params: Mutex<Vec<(String, BTreeMap<String, String>)>>,
    /// Requests to hold after forwarding: (operation, where to hand the test its Release).
    holds: Mutex<Vec<(String, tokio::sync::oneshot::Sender<Release>)>>,
    /// Standing faults: for every request (`None`) or every request naming that role.
    standing: Mutex<BTreeMap<Option<String>, Fault>>,
    log: Mutex<Vec<Call>>,
}

impl ProxyState {
    /// The standing fault for a request naming `role`: the role's own, else the global one.
    fn standing_for(&self, role: Option<&str>) -> Option<Fault> {
        let standing = self.standing.lock().unwrap();
        role.and_then(|r| standing.get(&Some(r.to_string())))
            .or_else(|| standing.get(&None))
            .copied()
    }

    fn record(&self, operation: String, role: Option<String>, fault: Option<Fault>) {
        self.log.lock().unwrap().push(Call {
            at: Instant::now(),
            operation,
            role,
            fault,
        });
    }
}

/// Handed to a test while a held request waits between moto and the client; the answer goes
/// out when this is released (or dropped).
pub struct Release(tokio::sync::oneshot::Sender<()>);

impl Release {
    pub fn release(self) {
        let _ = self.0.send(());
    }
}

/// The per-test proxy: fault queue and call counters.
#[derive(Clone)]
pub struct FaultProxy {
    state: Arc<ProxyState>,
    addr: SocketAddr,
}

impl FaultProxy {
    /// The next `n` requests for `operation` (e.g. `"UpdateAssumeRolePolicy"`) get `fault`.
    pub fn inject_for(&self, operation: &str, fault: Fault, n: usize) {
        let mut q = self.state.queue.lock().unwrap();
        q.extend(std::iter::repeat_n((operation.to_string(), fault), n));
    }

    /// The next `operation` request is forwarded to moto, then held until the test releases
    /// it: the test can act "between another client's write and its re-read", e.g. play a
    /// concurrent writer. Await the receiver to learn the request reached moto. Release within
    /// [`ATTEMPT_TIMEOUT`], or the client times out and retries. Several holds queue up.
    pub fn hold_after(&self, operation: &str) -> tokio::sync::oneshot::Receiver<Release> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.state
            .holds
            .lock()
            .unwrap()
            .push((operation.to_string(), tx));
        rx
    }

    /// From now on every request naming `role` (a role name; `None`: every request) gets
    /// `fault`, until changed; `None` clears it. A role's own fault wins over the global one.
    pub fn set_standing(&self, role: Option<&str>, fault: Option<Fault>) {
        assert!(
            !(role.is_some() && fault == Some(Fault::Reset)),
            "a reset happens before the request (and its role) is read: set it for every request"
        );
        let mut standing = self.state.standing.lock().unwrap();
        let key = role.map(str::to_string);
        match fault {
            Some(f) => standing.insert(key, f),
            None => standing.remove(&key),
        };
    }

    /// Every request so far, in order.
    pub fn log(&self) -> Vec<Call> {
        self.state.log.lock().unwrap().clone()
    }

    /// Faults queued but not yet served.
    pub fn pending_faults(&self) -> usize {
        self.state.queue.lock().unwrap().len()
    }

    /// Faults served so far.
    pub fn injected(&self) -> usize {
        self.state.injected.load(Ordering::SeqCst)
    }

    /// Requests received for `operation`, faulted ones included (= SDK attempts).
    pub fn calls(&self, operation: &str) -> usize {
        self.state
            .received
            .lock()
            .unwrap()
            .get(operation)
            .copied()
            .unwrap_or(0)
    }

    /// The parameters of every request received for `operation`, in order (decoded from the
    /// query protocol's form body: `RoleArn`, `Tags.member.1.Key`, ...). Moto keeps no record
    /// of what it was asked beyond its state, e.g. not AssumeRole's session tags.
    pub fn requests(&self, operation: &str) -> Vec<BTreeMap<String, String>> {
        self.state
            .params
            .lock()
            .unwrap()
            .iter()
            .filter(|(op, _)| op == operation)
            .map(|(_, params)| params.clone())
            .collect()
    }

    /// The query protocol's list `name` of a recorded request (`name.member.1`, `name.member.2`,
    /// ... of [`Self::requests`]), e.g. `TransitiveTagKeys`.
    pub fn members<'a>(params: &'a BTreeMap<String, String>, name: &str) -> Vec<&'a str> {
        (1..)
            .map_while(|i| {
                params
                    .get(&format!("{name}.member.{i}"))
                    .map(String::as_str)
            })
            .collect()
    }

    /// The session tags (key, value) of a recorded `AssumeRole`, in the order sent.
    pub fn session_tags(params: &BTreeMap<String, String>) -> Vec<(String, String)> {
        (1..)
            .map_while(|i| {
                Some((
                    params.get(&format!("Tags.member.{i}.Key"))?.clone(),
                    params.get(&format!("Tags.member.{i}.Value"))?.clone(),
                ))
            })
            .collect()
    }

    /// Requests for `operation` that reached moto (= what IAM actually saw).
    pub fn forwarded(&self, operation: &str) -> usize {
        self.state
            .forwarded
            .lock()
            .unwrap()
            .get(operation)
            .copied()
            .unwrap_or(0)
    }

    /// Every operation that reached moto, with its count.
    pub fn forwarded_counts(&self) -> BTreeMap<String, usize> {
        self.state.forwarded.lock().unwrap().clone()
    }

    /// Mutating requests that reached moto: every operation but `Get*`/`List*`.
    pub fn writes(&self) -> usize {
        self.forwarded_counts()
            .iter()
            .filter(|(op, _)| !is_read_only(op))
            .map(|(_, n)| n)
            .sum()
    }

    /// Zero the counters (not the fault queue), e.g. after seeding.
    pub fn reset_counts(&self) {
        self.state.received.lock().unwrap().clear();
        self.state.forwarded.lock().unwrap().clear();
        self.state.injected.store(0, Ordering::SeqCst);
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// `Get*`, `List*` and STS's `GetCallerIdentity` change nothing.
pub fn is_read_only(operation: &str) -> bool {
    operation.starts_with("Get") || operation.starts_with("List")
}

/// One test's view of AWS: the shared emulator behind its own proxy.
pub struct TestAws {
    sdk: SdkConfig,
    direct: SdkConfig,
    proxy: FaultProxy,
}

impl TestAws {
    /// Region us-east-1, static test credentials, endpoint = this test's proxy, standard
    /// retries with short backoff (the code under test may switch the mode to adaptive, as
    /// `irsa::aws` does) and [`ATTEMPT_TIMEOUT`].
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.sdk
    }

    pub fn faults(&self) -> &FaultProxy {
        &self.proxy
    }

    /// An IAM client straight to moto: no faults, not counted, no retries. For seeding and
    /// inspecting state.
    pub fn iam_direct(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.direct)
    }

    /// Creates a role (unique name) straight in moto: not counted, no faults. Its ARN.
    pub async fn seed_role(&self, path: &str, trust: &str, tags: &[(&str, &str)]) -> String {
        let mut req = self
            .iam_direct()
            .create_role()
            .role_name(unique("role"))
            .path(path)
            .assume_role_policy_document(trust);
        for (k, v) in tags {
            req = req.tags(
                aws_sdk_iam::types::Tag::builder()
                    .key(*k)
                    .value(*v)
                    .build()
                    .unwrap(),
            );
        }
        let out = req.send().await.unwrap();
        out.role().unwrap().arn().to_string()
    }

    /// A role's trust policy as IAM holds it (GetRole's URL-encoding undone), straight from
    /// moto. `role` is a role name or ARN.
    pub async fn trust_of(&self, role: &str) -> String {
        let name = role.rsplit('/').next().unwrap_or(role);
        let out = self
            .iam_direct()
            .get_role()
            .role_name(name)
            .send()
            .await
            .unwrap();
        let raw = out.role().unwrap().assume_role_policy_document().unwrap();
        percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .unwrap()
            .to_string()
    }
}

/// Starts the emulator if needed and a fresh proxy for this test.
pub async fn test_aws() -> TestAws {
    let moto = moto();
    let proxy = start_proxy(moto);
    let retry = RetryConfig::standard()
        .with_max_attempts(6)
        .with_initial_backoff(Duration::from_millis(20))
        .with_max_backoff(Duration::from_millis(500));
    let sdk = sdk_config_for(&proxy.endpoint(), retry).await;
    let direct = sdk_config_for(moto.endpoint(), RetryConfig::disabled()).await;
    TestAws { sdk, direct, proxy }
}

/// An `SdkConfig` for `endpoint` that ignores the host's AWS environment and profile files.
pub async fn sdk_config_for(endpoint: &str, retry: RetryConfig) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .empty_test_environment()
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            "AKIAIOSFODNN7EXAMPLE",
            "moto-test-secret",
            None,
            None,
            "irsa-tests",
        ))
        .retry_config(retry)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(Duration::from_secs(90))
                .build(),
        )
        .load()
        .await
}

fn start_proxy(moto: &'static Moto) -> FaultProxy {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy port");
    listener
        .set_nonblocking(true)
        .expect("non-blocking proxy socket");
    let addr = listener.local_addr().expect("proxy address");
    let state = Arc::new(ProxyState::default());
    let app_state = (state.clone(), moto.endpoint.clone(), reqwest::Client::new());
    moto.runtime.spawn(async move {
        let listener = ResettingListener {
            inner: tokio::net::TcpListener::from_std(listener).expect("adopting the proxy socket"),
            state: app_state.0.clone(),
        };
        let app = axum::Router::new().fallback(handle).with_state(app_state);
        axum::serve(listener, app).await.expect("proxy server");
    });
    FaultProxy { state, addr }
}

/// Resets the connections it accepts while a global [`Fault::Reset`] stands.
struct ResettingListener {
    inner: tokio::net::TcpListener,
    state: Arc<ProxyState>,
}

impl axum::serve::Listener for ResettingListener {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            if self.state.standing_for(None) != Some(Fault::Reset) {
                return (stream, addr);
            }
            // Zero linger: closing sends RST, what the client sees as "connection reset".
            let _ = stream.set_zero_linger();
            drop(stream);
            self.state.injected.fetch_add(1, Ordering::SeqCst);
            self.state
                .record("(reset)".to_string(), None, Some(Fault::Reset));
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

type AppState = (Arc<ProxyState>, String, reqwest::Client);

async fn handle(State((state, upstream, client)): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, 16 << 20).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let operation = operation_of(&parts.headers, &body);
    *state
        .received
        .lock()
        .unwrap()
        .entry(operation.clone())
        .or_default() += 1;
    let params = form_params(&body);
    let role = params.get("RoleName").cloned();
    state
        .params
        .lock()
        .unwrap()
        .push((operation.clone(), params));
    let fault = {
        let mut q = state.queue.lock().unwrap();
        let pos = q.iter().position(|(op, _)| *op == operation);
        pos.and_then(|i| q.remove(i)).map(|(_, f)| f)
    }
    .or_else(|| state.standing_for(role.as_deref()));
    if fault.is_some() {
        state.injected.fetch_add(1, Ordering::SeqCst);
    }
    state.record(operation.clone(), role, fault);
    let mut out = answer(&state, fault, operation, parts, body, upstream, client).await;
    // One request per connection: a reset then reaches the very next request.
    out.headers_mut()
        .insert("connection", HeaderValue::from_static("close"));
    out
}

async fn answer(
    state: &ProxyState,
    fault: Option<Fault>,
    operation: String,
    parts: axum::http::request::Parts,
    body: axum::body::Bytes,
    upstream: String,
    client: reqwest::Client,
) -> Response {
    match fault {
        Some(Fault::Throttle) => {
            return error_xml(StatusCode::BAD_REQUEST, "Throttling", "Rate exceeded");
        }
        Some(Fault::ServerError) => {
            return error_xml(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceFailure",
                "injected by the test proxy",
            );
        }
        Some(Fault::Timeout) => {
            tokio::time::sleep(HANG).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        Some(Fault::Latency(delay)) => tokio::time::sleep(delay).await,
        // A reset stands at the listener; one that started while this request was in flight
        // lets it through.
        Some(Fault::TimeoutAfterForward | Fault::Reset) | None => {}
    }
    let url = format!(
        "{upstream}{}",
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut upstream_req = client.request(parts.method, url).body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            upstream_req = upstream_req.header(name, value);
        }
    }
    let resp = match upstream_req.send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("moto: {e}")).into_response(),
    };
    *state
        .forwarded
        .lock()
        .unwrap()
        .entry(operation.clone())
        .or_default() += 1;
    let hold = {
        let mut holds = state.holds.lock().unwrap();
        let pos = holds.iter().position(|(op, _)| *op == operation);
        pos.map(|i| holds.remove(i).1)
    };
    if let Some(to_test) = hold {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if to_test.send(Release(tx)).is_ok() {
            let _ = rx.await;
        }
    }
    if fault == Some(Fault::TimeoutAfterForward) {
        tokio::time::sleep(HANG).await;
        return StatusCode::GATEWAY_TIMEOUT.into_response();
    }
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap_or_default();
    let mut out = Response::new(Body::from(bytes));
    *out.status_mut() = status;
    for (name, value) in &headers {
        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
            out.headers_mut().insert(name, value.clone());
        }
    }
    out
}

/// The operation of an AWS query-protocol request (`Action=GetRole&...`), or of a JSON-protocol
/// one (`X-Amz-Target: Service.Operation`).
fn operation_of(headers: &axum::http::HeaderMap, body: &[u8]) -> String {
    if let Some(op) = std::str::from_utf8(body)
        .ok()
        .and_then(|b| b.split('&').find_map(|kv| kv.strip_prefix("Action=")))
    {
        return op.to_string();
    }
    headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("unknown")
        .to_string()
}

/// `a=1&b=x%20y` as a map (`+` is a space, as in HTML forms).
fn form_params(body: &[u8]) -> BTreeMap<String, String> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn error_xml(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error>\
         <Type>{}</Type><Code>{code}</Code><Message>{message}</Message></Error>\
         <RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>",
        if status.is_server_error() {
            "Receiver"
        } else {
            "Sender"
        }
    );
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/xml"));
    resp
}
