//! The doctor's reads from Kubernetes and the issuer. It never writes, except the
//! TokenRequest, which only mints a short-lived token (what the kubelet does for every pod).

use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use k8s_openapi::api::{
    authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec},
    core::v1::{ConfigMap, Event, Pod, ServiceAccount},
};
use kube::{
    Api, Client,
    api::{ListParams, PostParams},
};
use serde_json::Value;

use super::checks::{BindingsUnlisted, PublisherStatus};
use crate::controller::policy::authz::GrantSpec;
use crate::crd::{IAMRoleBinding, IAMRoleGrant, PodIdentityAssociation};
use crate::issuer::discover::api_server_document;
use crate::issuer::retention::STATUS_KEY;
use crate::issuer::{DISCOVERY_PATH, JWKS_PATH, document_url};
use crate::mutate::ServiceAccountInfo;
use crate::names::POD_NOT_INJECTED;

/// Shortest lifetime the API server grants a TokenRequest.
const TOKEN_SECONDS: i64 = 600;

pub async fn service_account(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<ServiceAccountInfo>, String> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(sa) => Ok(sa.map(|sa| ServiceAccountInfo {
            namespace: namespace.to_string(),
            name: name.to_string(),
            annotations: sa.metadata.annotations.into_iter().flatten().collect(),
        })),
        Err(err) => Err(format!(
            "cannot read ServiceAccount {namespace}/{name}: {err}"
        )),
    }
}

pub async fn pod(client: &Client, namespace: &str, name: &str) -> Result<Option<Value>, String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod = api
        .get_opt(name)
        .await
        .map_err(|e| format!("cannot read Pod {namespace}/{name}: {e}"))?;
    pod.map(|p| serde_json::to_value(p).map_err(|e| e.to_string()))
        .transpose()
}

/// The IAMRoleBindings of `namespace`; a 404 means the API server does not serve the kind.
pub async fn bindings(
    client: &Client,
    namespace: &str,
) -> Result<Vec<IAMRoleBinding>, BindingsUnlisted> {
    match Api::<IAMRoleBinding>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
    {
        Ok(list) => Ok(list.items),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(BindingsUnlisted::NotInstalled),
        Err(e) => Err(BindingsUnlisted::Error(e.to_string())),
    }
}

/// The PodIdentityAssociations of `namespace`; none when the API server does not serve the
/// kind (the CRD is not installed).
pub async fn associations(
    client: &Client,
    namespace: &str,
) -> Result<Vec<PodIdentityAssociation>, String> {
    match Api::<PodIdentityAssociation>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
    {
        Ok(list) => Ok(list.items),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Vec::new()),
        Err(e) => Err(format!(
            "cannot list PodIdentityAssociations in {namespace}: {e}"
        )),
    }
}

/// Every IAMRoleGrant, as the grant rule reads them.
pub async fn grants(client: &Client) -> Result<Vec<(String, GrantSpec)>, String> {
    Api::<IAMRoleGrant>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|list| {
            list.items
                .iter()
                .map(|g| {
                    (
                        g.metadata.name.clone().unwrap_or_default(),
                        GrantSpec::from(&g.spec),
                    )
                })
                .collect()
        })
        .map_err(|e| format!("cannot list IAMRoleGrants: {e}"))
}

/// The `irsa agent` pods in `namespace` (the chart's labels), on `node` when given.
pub async fn agent_pods(
    client: &Client,
    namespace: &str,
    node: Option<&str>,
) -> Result<Vec<Value>, String> {
    let mut params = ListParams::default()
        .labels("app.kubernetes.io/name=irsa,app.kubernetes.io/component=agent");
    if let Some(node) = node {
        params = params.fields(&format!("spec.nodeName={node}"));
    }
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&params)
        .await
        .map_err(|e| format!("cannot list the agent's pods in {namespace}: {e}"))?;
    pods.items
        .into_iter()
        .map(|p| serde_json::to_value(p).map_err(|e| e.to_string()))
        .collect()
}

/// Asks the agent at `url` for credentials with `token`, as an SDK would. Only the answer's
/// status and non-secret fields are kept: the credentials never leave this function.
pub async fn ask_agent(url: &str, token: &str) -> Result<(u16, Value), String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let response = http
        .get(url)
        .header(reqwest::header::AUTHORIZATION, token)
        .send()
        .await
        .map_err(|e| format!("{e:#}"))?;
    let status = response.status().as_u16();
    let body = read_capped(response, url, 64 * 1024).await?;
    let mut value: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    if let Some(object) = value.as_object_mut() {
        object.retain(|k, _| {
            matches!(
                k.as_str(),
                "AccountId" | "Expiration" | "reason" | "message" | "code"
            )
        });
    }
    Ok((status, value))
}

/// The note of the newest `PodNotInjected` Event the controller published on the pod `uid`.
pub async fn pod_not_injected_event(
    client: &Client,
    namespace: &str,
    uid: &str,
) -> Result<Option<String>, String> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let fields = format!("involvedObject.uid={uid},reason={POD_NOT_INJECTED}");
    let events = api
        .list(&ListParams::default().fields(&fields))
        .await
        .map_err(|e| format!("cannot list Events in {namespace}: {e}"))?;
    let newest = events.items.into_iter().max_by_key(|e| {
        e.event_time
            .as_ref()
            .map(|t| t.0)
            .or(e.last_timestamp.as_ref().map(|t| t.0))
    });
    Ok(newest.and_then(|e| e.message))
}

/// A fresh token for the ServiceAccount with the given audience (TokenRequest API), bound
/// to `pod` (name, uid) when given, as the kubelet's projected tokens are.
pub async fn fresh_token(
    client: &Client,
    namespace: &str,
    name: &str,
    audience: &str,
    pod: Option<(&str, &str)>,
) -> Result<String, String> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![audience.to_string()],
            expiration_seconds: Some(TOKEN_SECONDS),
            bound_object_ref: pod.map(|(name, uid)| BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name.into()),
                uid: Some(uid.into()),
            }),
        },
        ..Default::default()
    };
    let response = api
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .map_err(|e| format!("TokenRequest for {namespace}/{name} failed: {e}"))?;
    response
        .status
        .map(|s| s.token)
        .ok_or_else(|| format!("TokenRequest for {namespace}/{name} returned no token"))
}

/// An HTTPS client for the issuer. `extra_ca` (PEM) adds a private root, for self-managed
/// issuers behind an internal CA (STS itself needs a publicly trusted one).
pub fn http_client(extra_ca: Option<&[u8]>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .https_only(true);
    if let Some(pem) = extra_ca {
        for cert in
            reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("bad CA bundle: {e}"))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTPS client: {e}"))
}

/// The issuer's discovery document and JWKS, each with its own error.
pub async fn issuer_documents(
    http: &reqwest::Client,
    issuer_url: &str,
) -> (Result<Value, String>, Result<JwkSet, String>) {
    let url = document_url(issuer_url, DISCOVERY_PATH);
    let discovery = get_json::<Value>(http, &url).await;
    let jwks = match &discovery {
        Ok(doc) => match doc.get("jwks_uri").and_then(Value::as_str) {
            Some(uri) => get_json::<JwkSet>(http, uri).await,
            None => Err("the discovery document has no jwks_uri".to_string()),
        },
        Err(_) => Err("discovery document unavailable".to_string()),
    };
    (discovery, jwks)
}

/// The most `irsa doctor` reads of a discovery document or a JWKS: both are a few KiB (a
/// JWKS holds a handful of public keys), and a hostile or broken issuer serving an endless
/// body must not take the doctor's memory with it.
pub const MAX_ISSUER_DOCUMENT: usize = 1024 * 1024;

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, String> {
    let response = http.get(url).send().await.map_err(|e| format!("{e:#}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    let body = read_capped(response, url, MAX_ISSUER_DOCUMENT).await?;
    serde_json::from_slice(&body).map_err(|e| format!("not the expected JSON: {e}"))
}

/// The body, refused as soon as it is known to exceed `cap` (announced or received).
async fn read_capped(
    mut response: reqwest::Response,
    url: &str,
    cap: usize,
) -> Result<Vec<u8>, String> {
    let too_large = || {
        format!(
            "the response of {url} is larger than {} KiB, the most irsa doctor reads from an \
             issuer (discovery documents and JWKS are a few KiB)",
            cap / 1024
        )
    };
    if response
        .content_length()
        .is_some_and(|n| n > u64::try_from(cap).unwrap_or(u64::MAX))
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len().saturating_add(chunk.len()) > cap {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The JWKS the API server itself serves (through the API, so external signers count): what
/// the public copy at the issuer URL must contain.
pub async fn api_server_jwks(client: &Client) -> Result<JwkSet, String> {
    let text = api_server_document(client, JWKS_PATH)
        .await
        .map_err(|e| format!("GET /{JWKS_PATH} from the API server: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("the API server's JWKS is not JSON: {e}"))
}

/// The issuer publisher's status from its state ConfigMap `name` in `namespace`. Never an
/// error: a missing or forbidden ConfigMap is itself what the doctor reports.
pub async fn publisher_status(client: &Client, namespace: &str, name: &str) -> PublisherStatus {
    let configmap = format!("{namespace}/{name}");
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(cm)) => PublisherStatus::Reported {
            configmap,
            status: cm.data.and_then(|mut data| data.remove(STATUS_KEY)),
        },
        Ok(None) => PublisherStatus::NotInUse { configmap },
        Err(err) => PublisherStatus::Unreadable {
            configmap,
            error: err.to_string(),
        },
    }
}
