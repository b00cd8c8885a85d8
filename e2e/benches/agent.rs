//! `make bench-agent`: `irsa agent` (the release binary, `IRSA_E2E_BIN`) under the load of
//! many pods of its node, against the local control plane (TokenReview, watched pods,
//! associations, grants) and moto's STS behind the call-counting proxy, all on 127.0.0.1. Not
//! a test: it prints numbers, and one summary line last.
//!
//! The pods are real API objects bound to one Node object (created here; no kubelet: the agent
//! reads only a pod's name, uid and node, and the API server binds tokens to a Pending pod),
//! tolerating every taint, so neither the pod GC nor a NoExecute taint removes them. Each
//! pod's token comes from a TokenRequest bound to it, as the kubelet's. One ServiceAccount,
//! with its association, per ten pods; one grant.
//!
//! The load: every pod asks at once (the burst: a node's pods starting together), then again
//! every round (`BENCH_ROUND_INTERVAL`, "every minute" by default; compress it to shorten the
//! run, the output says so), all at once again. Three agents, one after the other on the same
//! pods and tokens: the default one (credentials cached per pod until 20 minutes before they
//! expire, a verified token remembered for 5 minutes), and two baselines of the same binary,
//! each without one cache: `--token-review-cache 0` (a TokenReview per request), and
//! `--refresh-margin` equal to `--session-duration` (no credentials ever reused: an STS call
//! per request).
//!
//! Knobs (env): `BENCH_SCALE` (`full`: 1,000 pods, 3 rounds a minute apart; `small`: 100 pods,
//! 2 rounds 5 s apart), `BENCH_PODS`, `BENCH_ROUNDS`, `BENCH_ROUND_INTERVAL` (seconds),
//! `IRSA_CONTROL_PLANE_DIR` (for the API server's CPU time).

// Harness code, like the e2e library: a failed step ends the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{StreamExt as _, TryStreamExt as _};
use irsa::crd::{
    IAMRoleGrant, IAMRoleGrantSpec, PodIdentityAssociation, PodIdentityAssociationSpec,
};
use irsa::mutate::config::DEFAULT_CC_AUDIENCE;
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;

use irsa_e2e::moto::{self, ACCOUNT, TestAws};
use irsa_e2e::process::Process;
use irsa_e2e::support::{self, WAIT, unique};

/// Kubernetes API calls made at once while setting up.
const SETUP_CONCURRENCY: usize = 16;
const PODS_PER_SERVICE_ACCOUNT: usize = 10;
/// The agents measured, one after the other: the default first (the summary line's), then
/// each with one cache turned off.
const CONFIGURATIONS: [(&str, &[&str]); 3] = [
    ("default (both caches)", &[]),
    (
        "TokenReview per request (--token-review-cache 0)",
        &["--token-review-cache", "0"],
    ),
    (
        "credentials never reused (margin = session)",
        &["--session-duration", "1h", "--refresh-margin", "1h"],
    ),
];

struct Scale {
    pods: usize,
    rounds: usize,
    interval: Duration,
}

fn scale() -> Scale {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (pods, rounds, interval) = match env("BENCH_SCALE").as_deref().unwrap_or("full") {
        "full" => (1000, 3, Duration::from_secs(60)),
        "small" => (100, 2, Duration::from_secs(5)),
        other => panic!("BENCH_SCALE is full or small, not {other}"),
    };
    let number = |name: &str, default: usize| {
        env(name).map_or(default, |v| {
            v.parse().unwrap_or_else(|e| panic!("{name}={v}: {e}"))
        })
    };
    Scale {
        pods: number("BENCH_PODS", pods),
        rounds: number("BENCH_ROUNDS", rounds),
        interval: env("BENCH_ROUND_INTERVAL").map_or(interval, |_| {
            Duration::from_secs(number("BENCH_ROUND_INTERVAL", 60) as u64)
        }),
    }
}

/// A pod of the benchmark: its token, bound to it.
struct Caller {
    token: String,
}

/// One agent's run.
struct Run {
    burst: Vec<Duration>,
    rounds: Vec<Duration>,
    sts_calls: usize,
    token_reviews: f64,
    apiserver_cpu: Duration,
    rss_peak_kib: u64,
}

#[tokio::main]
async fn main() {
    support::settings();
    let scale = scale();
    let client = support::client().await;
    support::install_crds(&client).await;
    let ns = support::create_namespace(&client, "bench-agent").await;
    let node = unique("bench-node");
    let started = Instant::now();
    create_node(&client, &node).await;
    let role = unique("bench-agent-role");
    moto::test_aws()
        .await
        .iam_direct()
        .create_role()
        .role_name(&role)
        .assume_role_policy_document(r#"{"Version":"2012-10-17","Statement":[]}"#)
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating role {role} in moto: {e:?}"));
    let callers = create_pods(&client, &ns, &node, &role, scale.pods).await;
    println!(
        "{} pods, their ServiceAccounts, associations and tokens created in {:.0?}",
        callers.len(),
        started.elapsed()
    );

    let mut runs = Vec::new();
    for (name, flags) in CONFIGURATIONS {
        runs.push((
            name,
            run_agent(&client, &node, &callers, &scale, flags).await,
        ));
    }

    support::delete_namespace(&client, &ns).await;
    let _ = Api::<Node>::all(client.clone())
        .delete(&node, &DeleteParams::default())
        .await;
    let _ = Api::<IAMRoleGrant>::all(client)
        .delete(&ns, &DeleteParams::default())
        .await;

    let pods = callers.len();
    let compressed = if scale.interval == Duration::from_secs(60) {
        String::new()
    } else {
        " (compressed from a minute: BENCH_ROUND_INTERVAL)".to_string()
    };
    println!();
    println!(
        "irsa agent, {pods} pods of one node asking at once, then {} rounds {:?} apart{compressed}; load {}",
        scale.rounds,
        scale.interval,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    for (name, run) in &runs {
        let all: Vec<Duration> = run.burst.iter().chain(&run.rounds).copied().collect();
        println!(
            "{name:<44} burst p50/p99 {} / {} ms, rounds p50/p99 {} / {} ms, all p50/p99 {} / {} ms; \
             sts_calls {}, token_reviews {:.0}, API-server CPU {:.2?} ({:.2} ms per request), peak RSS {:.1} MiB",
            ms(percentile(&run.burst, 50)),
            ms(percentile(&run.burst, 99)),
            ms(percentile(&run.rounds, 50)),
            ms(percentile(&run.rounds, 99)),
            ms(percentile(&all, 50)),
            ms(percentile(&all, 99)),
            run.sts_calls,
            run.token_reviews,
            run.apiserver_cpu,
            run.apiserver_cpu.as_secs_f64() * 1000.0 / all.len() as f64,
            run.rss_peak_kib as f64 / 1024.0,
        );
    }
    let default = &runs[0].1;
    let requests = default.burst.len() + default.rounds.len();
    let all: Vec<Duration> = default
        .burst
        .iter()
        .chain(&default.rounds)
        .copied()
        .collect();
    if default.sts_calls > pods {
        eprintln!(
            "more STS calls ({}) than pods ({pods}) within one credential lifetime",
            default.sts_calls
        );
        std::process::exit(1);
    }
    println!(
        "pods {pods} requests {requests} sts_calls {} p50_ms {} p99_ms {} rss_mib {:.1}",
        default.sts_calls,
        ms(percentile(&all, 50)),
        ms(percentile(&all, 99)),
        default.rss_peak_kib as f64 / 1024.0
    );
}

async fn create_node(client: &kube::Client, name: &str) {
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
    }))
    .unwrap();
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap_or_else(|e| panic!("creating node {name}: {e}"));
}

/// `pods` pods on `node`, one ServiceAccount (and its association with `role`) per ten, a
/// grant for the namespace; a token bound to each pod.
async fn create_pods(
    client: &kube::Client,
    ns: &str,
    node: &str,
    role: &str,
    pods: usize,
) -> Vec<Caller> {
    let role_arn = format!("arn:aws:iam::{ACCOUNT}:role/{role}");
    Api::<IAMRoleGrant>::all(client.clone())
        .create(
            &PostParams::default(),
            &IAMRoleGrant::new(
                ns,
                IAMRoleGrantSpec {
                    namespaces: vec![ns.to_string()],
                    role_arns: vec![role_arn.clone()],
                    service_accounts: None,
                    allow_namespace_wildcard_trust: false,
                },
            ),
        )
        .await
        .expect("creating the grant");
    let service_accounts = pods.div_ceil(PODS_PER_SERVICE_ACCOUNT);
    let sa_api = Api::<ServiceAccount>::namespaced(client.clone(), ns);
    let pia_api = Api::<PodIdentityAssociation>::namespaced(client.clone(), ns);
    futures::stream::iter(0..service_accounts)
        .map(|i| {
            let (sa_api, pia_api, role_arn) = (sa_api.clone(), pia_api.clone(), role_arn.clone());
            async move {
                let name = format!("sa-{i}");
                let sa: ServiceAccount = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name},
                }))
                .unwrap();
                sa_api.create(&PostParams::default(), &sa).await?;
                let spec = PodIdentityAssociationSpec {
                    service_account_name: name.clone(),
                    role_arn,
                    target_role_arn: None,
                    disable_session_tags: false,
                    session_tags: BTreeMap::new(),
                    role_session_name: None,
                };
                pia_api
                    .create(
                        &PostParams::default(),
                        &PodIdentityAssociation::new(&name, spec),
                    )
                    .await
                    .map(drop)
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await
        .expect("creating the ServiceAccounts and associations");
    let pod_api = Api::<Pod>::namespaced(client.clone(), ns);
    let source = json!({"audience": DEFAULT_CC_AUDIENCE, "expirationSeconds": 3600});
    futures::stream::iter(0..pods)
        .map(|j| {
            let (pod_api, source) = (pod_api.clone(), source.clone());
            async move {
                let name = format!("pod-{j}");
                let sa = format!("sa-{}", j / PODS_PER_SERVICE_ACCOUNT);
                let pod: Pod = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                    "spec": {
                        "nodeName": node,
                        "serviceAccountName": sa,
                        "tolerations": [{"operator": "Exists"}],
                        "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}],
                    },
                }))
                .unwrap();
                let stored = pod_api
                    .create(&PostParams::default(), &pod)
                    .await
                    .unwrap_or_else(|e| panic!("creating pod {name}: {e}"));
                let uid = stored.metadata.uid.expect("a stored pod has a uid");
                let token =
                    irsa_e2e::kubelet::request_token(client, ns, &sa, &name, &uid, &source).await;
                Caller { token }
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect()
        .await
}

/// Starts an agent for `node` (with `extra` flags), waits until it is ready, runs the load,
/// stops it.
async fn run_agent(
    client: &kube::Client,
    node: &str,
    callers: &[Caller],
    scale: &Scale,
    extra: &[&str],
) -> Run {
    let aws: TestAws = moto::test_aws().await;
    let endpoint = aws.faults().endpoint();
    let (agent, url) = Process::agent(
        "bench-agent",
        node,
        "bench",
        &endpoint,
        extra,
        &[("RUST_LOG", "warn")],
    );
    agent.wait_ready(WAIT).await;
    // One connection per pod, as each pod's SDK has its own.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(callers.len())
        .build()
        .unwrap();
    let reviews0 = token_reviews(client).await;
    let cpu0 = apiserver_cpu();

    let burst = ask_all(&http, &url, callers).await;
    let start = Instant::now();
    let mut rounds = Vec::new();
    for round in 1..=scale.rounds {
        let at = start + scale.interval * u32::try_from(round).unwrap();
        tokio::time::sleep_until(at.into()).await;
        rounds.extend(ask_all(&http, &url, callers).await);
    }

    let run = Run {
        burst,
        rounds,
        sts_calls: aws.faults().calls("AssumeRole"),
        token_reviews: token_reviews(client).await - reviews0,
        apiserver_cpu: apiserver_cpu().saturating_sub(cpu0),
        rss_peak_kib: proc_status_kib(agent.pid(), "VmHWM"),
    };
    agent.terminate();
    agent.exited(WAIT).await;
    run
}

/// Every caller asks once, all at once; each request's time. Any answer but 200 ends the run.
async fn ask_all(http: &reqwest::Client, url: &str, callers: &[Caller]) -> Vec<Duration> {
    let mut tasks = tokio::task::JoinSet::new();
    for caller in callers {
        let request = http.get(url).header("Authorization", &caller.token);
        tasks.spawn(async move {
            let sent = Instant::now();
            let response = request.send().await.expect("the agent answers");
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            let took = sent.elapsed();
            assert!(status.is_success(), "the agent answered {status}: {body}");
            took
        });
    }
    tasks.join_all().await
}

/// TokenReviews the API server has answered so far.
async fn token_reviews(client: &kube::Client) -> f64 {
    let text = client
        .request_text(http::Request::get("/metrics").body(Vec::new()).unwrap())
        .await
        .expect("the API server's /metrics");
    text.lines()
        .filter(|l| {
            l.starts_with("apiserver_request_total{")
                && l.contains("resource=\"tokenreviews\"")
                && l.contains("verb=\"POST\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The API server's CPU time so far (user + system), from its pid file of
/// scripts/control-plane.sh; zero when that is not found.
fn apiserver_cpu() -> Duration {
    let dir = std::env::var("IRSA_CONTROL_PLANE_DIR")
        .unwrap_or_else(|_| "/tmp/irsa-control-plane".into());
    let Some(stat) = std::fs::read_to_string(format!("{dir}/pids/kube-apiserver"))
        .ok()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).ok())
    else {
        return Duration::ZERO;
    };
    // After the command's closing parenthesis: field 3 is the state; 14 and 15 (utime, stime)
    // are the 12th and 13th from there, in clock ticks (100 per second on Linux).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks: u64 = fields
        .get(11..13)
        .map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    Duration::from_millis(ticks * 10)
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

fn percentile(times: &[Duration], p: usize) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let i = (sorted.len() * p / 100).min(sorted.len().saturating_sub(1));
    sorted.get(i).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}
