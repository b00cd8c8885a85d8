//! The I/O half of the webhook steps (`--webhook-configuration`): the configuration, a TLS
//! handshake with what each webhook calls verified against its caBundle, the service's ready
//! endpoints, and a dry-run create of a pod of the ServiceAccount. The verdicts are in
//! [`super::checks::webhook`].

use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, MutatingWebhookConfiguration};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

use super::checks::webhook::{DryRun, Served, WebhookEntry};
use crate::tls_probe::{self, ProbeError, Roots};

/// Each webhook of the MutatingWebhookConfiguration `name` (`None`: it does not exist).
pub async fn entries(client: &Client, name: &str) -> Result<Option<Vec<WebhookEntry>>, String> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let Some(config) = api.get_opt(name).await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for webhook in config.webhooks.unwrap_or_default() {
        out.push(entry(client, &webhook).await);
    }
    Ok(Some(out))
}

async fn entry(client: &Client, webhook: &MutatingWebhook) -> WebhookEntry {
    let cc = &webhook.client_config;
    let certs = ca_bundle(cc.ca_bundle.as_ref().map(|b| b.0.as_slice()));
    let roots = Roots::Only(certs.clone().unwrap_or_default());
    let (calls, served, ready_endpoints) = match (&cc.service, &cc.url) {
        (Some(svc), _) => {
            let port = u16::try_from(svc.port.unwrap_or(443)).unwrap_or(443);
            // The name the API server verifies; it resolves only inside the cluster network.
            let host = format!("{}.{}.svc", svc.name, svc.namespace);
            (
                format!("service {}/{}:{port}", svc.namespace, svc.name),
                served(&host, port, &host, &roots).await,
                Some(ready_endpoints(client, &svc.namespace, &svc.name).await),
            )
        }
        (None, Some(url)) => {
            let served = match reqwest::Url::parse(url) {
                Ok(u) => match u.host_str() {
                    Some(host) => {
                        let port = u.port_or_known_default().unwrap_or(443);
                        served(host, port, host, &roots).await
                    }
                    None => Served::Rejected(format!("{url} has no host")),
                },
                Err(e) => Served::Rejected(format!("{url} is not a URL: {e}")),
            };
            (url.clone(), served, None)
        }
        (None, None) => (
            "nothing (no service, no url)".into(),
            Served::Rejected("the webhook names no service and no url".into()),
            None,
        ),
    };
    WebhookEntry {
        name: webhook.name.clone(),
        failure_policy: webhook
            .failure_policy
            .clone()
            .unwrap_or_else(|| "Fail".into()),
        calls,
        ca_bundle: certs.map(|c| c.len()),
        served,
        ready_endpoints,
    }
}

/// The caBundle's certificates; an empty or unparsable one is the failure itself.
fn ca_bundle(pem: Option<&[u8]>) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = pem.filter(|p| !p.is_empty()).ok_or("is empty")?;
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("is not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certs)
}

async fn served(host: &str, port: u16, server_name: &str, roots: &Roots) -> Served {
    let attempt = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tls_probe::handshake(host, port, server_name, roots),
    )
    .await;
    match attempt {
        Ok(Ok(_)) => Served::Verified,
        Ok(Err(ProbeError::Connect(why))) => Served::Unreachable(why),
        Ok(Err(e)) => Served::Rejected(e.to_string()),
        Err(_) => Served::Unreachable(format!("no TLS handshake with {host}:{port} within 5s")),
    }
}

/// Endpoints of the service's EndpointSlices not marked unready.
async fn ready_endpoints(client: &Client, namespace: &str, service: &str) -> Result<usize, String> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let slices = api
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .map_err(|e| format!("cannot list EndpointSlices in {namespace}: {e}"))?;
    Ok(slices
        .items
        .iter()
        .flat_map(|s| &s.endpoints)
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
        .count())
}

/// Creates (dry run: admission runs, nothing is stored) a pod of the ServiceAccount, with
/// `labels` so that object selectors see what the real pod shows them.
pub async fn dry_run_pod(
    client: &Client,
    namespace: &str,
    service_account: &str,
    labels: Option<&Value>,
) -> DryRun {
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "irsa-doctor-", "labels": labels.cloned().unwrap_or(json!({}))},
        "spec": {
            "serviceAccountName": service_account,
            "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]
        }
    });
    let pod: Pod = match serde_json::from_value(pod) {
        Ok(pod) => pod,
        Err(e) => return DryRun::Refused(format!("the probe pod: {e}")),
    };
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    match Api::<Pod>::namespaced(client.clone(), namespace)
        .create(&params, &pod)
        .await
    {
        Ok(created) => match serde_json::to_value(created) {
            Ok(v) => DryRun::Created(v),
            Err(e) => DryRun::Refused(e.to_string()),
        },
        // RBAC's refusal, not a webhook's (which may also answer 403).
        Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("cannot create") => {
            DryRun::Forbidden(s.message)
        }
        Err(e) => DryRun::Refused(e.to_string()),
    }
}
