//! `irsa agent`: the node-local container-credentials endpoint of Pod Identity, answering
//! AWS SDKs (`AWS_CONTAINER_CREDENTIALS_FULL_URI`, `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`)
//! on `GET /v1/credentials` as EKS's agent does, for any cluster.
//!
//! A request's token is reviewed by the API server ([`caller::review`]); the pod, the
//! association and the grants come from watched stores ([`stores`], [`caller::association`]); the
//! credentials from STS through the cache of [`credentials::Issuer`]. The admin port (its own
//! address) serves `/healthz`, `/readyz` (the stores have synced) and `/metrics`.

pub mod caller;
pub mod credentials;
pub mod metrics;
pub mod refusal;
pub mod stores;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
    routing::get,
};
use futures::FutureExt as _;
use kube::ResourceExt;

use irsa_core::pod_identity;

use self::credentials::{Issuer, Key, Request};
pub use self::metrics::Metrics;
use self::refusal::{Refusal, reason};
use self::stores::Stores;

/// Where SDKs ask.
pub const CREDENTIALS_PATH: &str = "/v1/credentials";

#[derive(Debug, Clone)]
pub struct Options {
    /// The credentials endpoint's addresses (EKS's agent answers on two).
    pub listen: Vec<SocketAddr>,
    pub metrics_listen: SocketAddr,
    /// The node this agent serves (pods of other nodes are refused).
    pub node_name: String,
    pub cluster_name: String,
    /// The audience the pods' tokens must be for.
    pub audience: String,
    pub aws_endpoint_url: Option<String>,
    /// Duration of the sessions asked of STS.
    pub session_duration: Duration,
    /// Credentials are handed out until this long before they expire.
    pub refresh_margin: Duration,
    /// How long a verified token is remembered (zero: every request is reviewed).
    pub token_review_cache: Duration,
}

#[derive(Clone)]
struct Agent {
    reviews: caller::Reviews,
    stores: Stores,
    synced: Arc<AtomicBool>,
    issuer: Issuer,
    metrics: Metrics,
    node: Arc<str>,
    cluster: Arc<str>,
}

/// Runs the agent until SIGTERM or a part of it fails.
pub async fn run(options: Options, client: kube::Client) -> anyhow::Result<()> {
    let metrics = Metrics::default();
    let sdk = crate::aws::load_sdk_config(options.aws_endpoint_url.as_deref()).await;
    let issuer = Issuer::new(
        sdk,
        options.session_duration,
        options.refresh_margin,
        metrics.clone(),
    );
    let (stores, writers) = Stores::new();
    let watches = stores.watch(&client, &options.node_name, writers);
    let synced = Arc::new(AtomicBool::new(false));
    {
        let (stores, synced) = (stores.clone(), synced.clone());
        tokio::spawn(async move {
            stores.synced().await;
            synced.store(true, Ordering::Release);
            tracing::info!("pods, associations and grants synced; serving credentials");
        });
    }
    let agent = Agent {
        reviews: caller::Reviews::new(
            client,
            &options.audience,
            options.token_review_cache,
            metrics.clone(),
        ),
        stores,
        synced: synced.clone(),
        issuer,
        metrics: metrics.clone(),
        node: options.node_name.as_str().into(),
        cluster: options.cluster_name.as_str().into(),
    };

    let admin_listener = crate::admin::bind(options.metrics_listen)?;
    let admin_app = crate::admin::router(Arc::new(metrics.registry()), move || {
        if synced.load(Ordering::Acquire) {
            Ok("ok\n")
        } else {
            Err("the pod, association and grant watches have not synced yet\n")
        }
    });
    let admin = crate::admin::serve(
        admin_listener,
        admin_app,
        crate::webhook::ConnectionLimits::ADMIN,
    )?;
    let listeners = bind(&options.listen).await?;
    tracing::info!(
        listen = ?options.listen,
        node = %options.node_name,
        audience = %options.audience,
        "irsa agent started"
    );
    let server = serve(listeners, router(agent));
    tokio::select! {
        served = server => served,
        done = admin => done,
        _ = watches => anyhow::bail!("the watches ended"),
    }
}

/// Binds every `--listen` address: one that cannot be bound fails at startup, naming it.
async fn bind(addresses: &[SocketAddr]) -> anyhow::Result<Vec<tokio::net::TcpListener>> {
    let mut listeners = Vec::with_capacity(addresses.len());
    for address in addresses {
        listeners.push(
            tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on --listen {address}"))?,
        );
    }
    Ok(listeners)
}

/// Serves `app` on every listener until SIGTERM; ends early if one server fails.
async fn serve(listeners: Vec<tokio::net::TcpListener>, app: Router) -> anyhow::Result<()> {
    let servers = listeners.into_iter().map(|listener| {
        let address = listener.local_addr().ok();
        axum::serve(listener, app.clone())
            .with_graceful_shutdown(crate::shutdown::signal())
            .into_future()
            .map(move |served| {
                served.with_context(|| format!("the credentials server on {address:?} stopped"))
            })
    });
    futures::future::try_join_all(servers).await.map(drop)
}

fn router(agent: Agent) -> Router {
    Router::new()
        .route(CREDENTIALS_PATH, get(credentials))
        .with_state(agent)
}

async fn credentials(State(agent): State<Agent>, headers: HeaderMap) -> Response {
    match issue(&agent, &headers).await {
        Ok(issued) => {
            agent.metrics.request(200, "Issued");
            Json(&*issued).into_response()
        }
        Err(refusal) => {
            agent
                .metrics
                .request(refusal.status.as_u16(), refusal.reason);
            tracing::info!(
                status = refusal.status.as_u16(),
                reason = refusal.reason,
                message = %refusal.message,
                "credentials refused"
            );
            refusal.into_response()
        }
    }
}

async fn issue(agent: &Agent, headers: &HeaderMap) -> Result<Arc<credentials::Issued>, Refusal> {
    if !agent.synced.load(Ordering::Acquire) {
        return Err(Refusal::unavailable(
            reason::NOT_READY,
            "the agent has not synced its pods, associations and grants yet",
        ));
    }
    // SDKs send the token file's content as is; a `Bearer ` prefix is accepted too.
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Refusal::unauthorized(
                reason::MISSING_TOKEN,
                "no token in the Authorization header (AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE)",
            )
        })?;
    let caller = agent.reviews.caller(token).await?;
    let association = caller::association(&agent.stores, &caller, &agent.node, &agent.cluster)?;
    let spec = &association.spec;
    let pod = caller.pod_ref();
    let tags = pod_identity::session_tags(
        &pod,
        &agent.cluster,
        &spec.session_tags,
        spec.disable_session_tags,
    )
    .map_err(|why| Refusal::forbidden(reason::INVALID_ASSOCIATION, why))?;
    let request = Request {
        role_arn: spec.role_arn.clone(),
        target_role_arn: spec.target_role_arn.clone(),
        session_name: pod_identity::session_name(spec.role_session_name.as_deref(), &pod),
        tags,
    };
    let key = Key {
        pod_uid: caller.pod_uid.clone(),
        association_uid: association.uid().unwrap_or_default(),
        association_generation: association.metadata.generation.unwrap_or_default(),
    };
    agent.issuer.get(key, request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An agent whose stores never sync: every request gets 503 NotReady, enough to tell
    /// which listener answered.
    fn unsynced_agent() -> Agent {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let metrics = Metrics::default();
        Agent {
            reviews: caller::Reviews::new(
                kube::Client::try_from(config).unwrap(),
                "pods.eks.amazonaws.com",
                Duration::from_secs(300),
                metrics.clone(),
            ),
            stores: Stores::new().0,
            synced: Arc::default(),
            issuer: Issuer::new(
                sdk,
                Duration::from_secs(3600),
                Duration::from_secs(1200),
                metrics.clone(),
            ),
            metrics,
            node: "node-a".into(),
            cluster: "c".into(),
        }
    }

    #[tokio::test]
    async fn every_listen_address_answers() {
        let addresses: Vec<SocketAddr> = vec![
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.2:0".parse().unwrap(),
        ];
        let listeners = bind(&addresses).await.unwrap();
        let bound: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let agent = unsynced_agent();
        let metrics = agent.metrics.clone();
        let server = tokio::spawn(serve(listeners, router(agent)));
        for address in &bound {
            let response = reqwest::get(format!("http://{address}{CREDENTIALS_PATH}"))
                .await
                .unwrap_or_else(|e| panic!("{address} does not answer: {e}"));
            assert_eq!(response.status(), 503, "{address}");
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["reason"], reason::NOT_READY, "{address}: {body}");
        }
        assert_eq!(
            metrics
                .requests
                .get_or_create(&metrics::RequestLabels {
                    code: 503,
                    reason: reason::NOT_READY
                })
                .get(),
            2
        );
        server.abort();

        // An address that cannot be bound is named.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = bind(&[addresses[0], taken.local_addr().unwrap()])
            .await
            .expect_err("a taken address");
        assert!(
            err.to_string()
                .contains(&format!("--listen {}", taken.local_addr().unwrap())),
            "{err}"
        );
    }
}
