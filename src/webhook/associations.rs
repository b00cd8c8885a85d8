//! `--pod-identity-associations`: the ServiceAccounts that have a `PodIdentityAssociation`.
//! Their pods get container credentials (served by `irsa agent`) instead of IRSA's web
//! identity, as if they were listed in the identities file.
//!
//! Watched, never fetched per admission: the webhook is ready only once the first list is in
//! (see [`super::server::admin_router`]), so a pod admitted through it is never given IRSA
//! just because the association was not read yet.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use futures::StreamExt as _;
use kube::{
    Api, Client,
    runtime::{WatchStreamExt as _, watcher},
};

use super::metrics::Metrics;
use crate::{
    crd::PodIdentityAssociation,
    index::{self, Index},
    mutate::{ContainerCredentialsAccounts, Identities},
};

/// The associations' ServiceAccounts, or nothing when the flag is off.
#[derive(Clone)]
pub struct Associations {
    watched: Option<Watched>,
}

#[derive(Clone)]
struct Watched {
    client: Client,
    index: Index<PodIdentityAssociation>,
    synced: Arc<AtomicBool>,
}

impl std::fmt::Debug for Associations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Associations")
            .field("enabled", &self.watched.is_some())
            .finish()
    }
}

impl Associations {
    /// Associations are not consulted (the default: the CRD may not be installed).
    pub fn disabled() -> Self {
        Self { watched: None }
    }

    /// Associations watched through `client` once [`Self::watch`] runs.
    pub fn kube(client: Client) -> Self {
        Self {
            watched: Some(Watched {
                client,
                index: index::associations_by_service_account(),
                synced: Arc::default(),
            }),
        }
    }

    /// Whether `namespace/service_account` has an association (false when disabled).
    pub fn contains(&self, namespace: &str, service_account: &str) -> bool {
        self.watched.as_ref().is_some_and(|w| {
            w.index
                .contains(&index::namespaced(namespace, service_account))
        })
    }

    /// Listed at least once (always true when disabled).
    pub fn is_synced(&self) -> bool {
        self.watched
            .as_ref()
            .is_none_or(|w| w.synced.load(Ordering::Acquire))
    }

    /// The watch, `None` when disabled. Runs until dropped: errors are retried with
    /// [`crate::backoff::watch`], like the ServiceAccount watch.
    pub fn watch(
        &self,
        metrics: Arc<Metrics>,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let w = self.watched.clone()?;
        Some(async move {
            let api: Api<PodIdentityAssociation> = Api::all(w.client.clone());
            let stream =
                watcher::watcher(api, watcher::Config::default()).backoff(crate::backoff::watch());
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match &event {
                    Ok(event) => {
                        w.index.apply_watcher_event(event);
                        if matches!(event, watcher::Event::InitDone)
                            && !w.synced.swap(true, Ordering::AcqRel)
                        {
                            tracing::info!("PodIdentityAssociations synced");
                        }
                    }
                    Err(err) => {
                        metrics.association_watch_errors.inc();
                        tracing::warn!(error = %err, "PodIdentityAssociation watch failed; retrying (the webhook needs list/watch on podidentityassociations.irsa.dev, and the CRD installed)");
                    }
                }
            }
        })
    }
}

/// The identities file and the associations together: what the engine asks.
pub struct Either<'a> {
    pub file: &'a Identities,
    pub associations: &'a Associations,
}

impl ContainerCredentialsAccounts for Either<'_> {
    fn contains(&self, namespace: &str, service_account: &str) -> bool {
        self.file.contains(namespace, service_account)
            || self.associations.contains(namespace, service_account)
    }
}
