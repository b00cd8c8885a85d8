//! What the agent watches, and the lookups a request makes in it without scanning: the pods
//! of this node (by name), the associations by the ServiceAccount they name (the controller's
//! [`Index`], fed the same watch events as the store, re-lists included), and the grants as
//! the authorizer reads them, rebuilt when a grant changes rather than per request (every
//! grant is consulted: their namespaces and roles are patterns, there is no key to index).

use std::sync::Arc;

use arc_swap::ArcSwap;
use futures::{Stream, StreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, ResourceExt};

use irsa_core::policy::authz::GrantSpec;

use crate::crd::{IAMRoleGrant, PodIdentityAssociation};
use crate::index::{Index, associations_by_service_account, namespaced};

/// The grants as the authorizer takes them: (name, spec).
pub type Grants = Arc<Vec<(String, GrantSpec)>>;

/// What fills [`Stores`]: the reflectors' writers.
pub struct Writers {
    pods: Writer<Pod>,
    associations: Writer<PodIdentityAssociation>,
    grants: Writer<IAMRoleGrant>,
}

#[derive(Clone)]
pub struct Stores {
    /// The pods of this node only (a field selector on `spec.nodeName`).
    pub pods: Store<Pod>,
    associations: Store<PodIdentityAssociation>,
    by_service_account: Index<PodIdentityAssociation>,
    grant_store: Store<IAMRoleGrant>,
    grants: Arc<ArcSwap<Vec<(String, GrantSpec)>>>,
}

impl Stores {
    /// Empty stores, and the writers that fill them.
    pub fn new() -> (Self, Writers) {
        let (pods, pod_writer) = reflector::store::<Pod>();
        let (associations, association_writer) = reflector::store::<PodIdentityAssociation>();
        let (grant_store, grant_writer) = reflector::store::<IAMRoleGrant>();
        let stores = Self {
            pods,
            associations,
            by_service_account: associations_by_service_account(),
            grant_store,
            grants: Arc::default(),
        };
        let writers = Writers {
            pods: pod_writer,
            associations: association_writer,
            grants: grant_writer,
        };
        (stores, writers)
    }

    /// The watches that fill the stores through `writers`: the pods of `node`, every
    /// association and grant. The future ends only if a watch does.
    pub fn watch(
        &self,
        client: &kube::Client,
        node: &str,
        writers: Writers,
    ) -> impl Future<Output = ()> + use<> {
        let Writers {
            pods: pod_writer,
            associations: association_writer,
            grants: grant_writer,
        } = writers;
        let node_pods = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
        let pod_stream = watcher(Api::<Pod>::all(client.clone()), node_pods).reflect(pod_writer);
        let association_stream = self.follow_associations(
            watcher(
                Api::<PodIdentityAssociation>::all(client.clone()),
                watcher::Config::default(),
            ),
            association_writer,
        );
        let grant_stream = self.follow_grants(
            watcher(
                Api::<IAMRoleGrant>::all(client.clone()),
                watcher::Config::default(),
            ),
            grant_writer,
        );
        async move {
            futures::future::join3(
                drain(pod_stream),
                drain(association_stream),
                drain(grant_stream),
            )
            .await;
        }
    }

    /// `events` into the association store and its index.
    fn follow_associations<S>(
        &self,
        events: S,
        writer: Writer<PodIdentityAssociation>,
    ) -> impl Stream<Item = S::Item> + use<S>
    where
        S: Stream<Item = Result<watcher::Event<PodIdentityAssociation>, watcher::Error>>,
    {
        events
            .inspect(self.by_service_account.updater())
            .reflect(writer)
    }

    /// `events` into the grant store, the authorizer's list rebuilt after each change.
    fn follow_grants<S>(
        &self,
        events: S,
        writer: Writer<IAMRoleGrant>,
    ) -> impl Stream<Item = S::Item> + use<S>
    where
        S: Stream<Item = Result<watcher::Event<IAMRoleGrant>, watcher::Error>>,
    {
        let stores = self.clone();
        events.reflect(writer).inspect(move |event| {
            if let Ok(
                watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone,
            ) = event
            {
                stores.rebuild_grants();
            }
        })
    }

    /// Until each store has its first complete list.
    pub async fn synced(&self) {
        let _ = futures::future::join3(
            self.pods.wait_until_ready(),
            self.associations.wait_until_ready(),
            self.grant_store.wait_until_ready(),
        )
        .await;
    }

    /// The associations in `namespace` naming ServiceAccount `service_account`, by name.
    pub fn associations_of(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> Vec<Arc<PodIdentityAssociation>> {
        self.by_service_account
            .get(&namespaced(namespace, service_account))
            .into_iter()
            .filter_map(|k| {
                self.associations
                    .get(&ObjectRef::new(&k.name).within(&k.namespace))
            })
            // The store may hold a newer version than the index saw: keep what still matches.
            .filter(|a| a.spec.service_account_name == service_account)
            .collect()
    }

    pub fn grants(&self) -> Grants {
        self.grants.load_full()
    }

    /// Stores holding exactly these objects, as after a first complete list.
    #[cfg(test)]
    pub fn listed(
        pods: Vec<Pod>,
        associations: Vec<PodIdentityAssociation>,
        grants: Vec<IAMRoleGrant>,
    ) -> Self {
        fn list<K: kube::Resource + Clone>(
            writer: &mut Writer<K>,
            objects: Vec<K>,
            also: impl Fn(&watcher::Event<K>),
        ) where
            K::DynamicType: Eq + std::hash::Hash + Clone,
        {
            let events = std::iter::once(watcher::Event::Init)
                .chain(objects.into_iter().map(watcher::Event::InitApply))
                .chain(std::iter::once(watcher::Event::InitDone));
            for event in events {
                also(&event);
                writer.apply_watcher_event(&event);
            }
        }
        let (stores, mut writers) = Self::new();
        list(&mut writers.pods, pods, |_| {});
        list(&mut writers.associations, associations, |e| {
            stores.by_service_account.apply_watcher_event(e);
        });
        list(&mut writers.grants, grants, |_| {});
        stores.rebuild_grants();
        stores
    }

    fn rebuild_grants(&self) {
        let grants = self
            .grant_store
            .state()
            .iter()
            .map(|g| (g.name_any(), GrantSpec::from(&g.spec)))
            .collect();
        self.grants.store(Arc::new(grants));
    }
}

async fn drain<S: Stream<Item = Result<T, watcher::Error>>, T>(stream: S) {
    let stream = stream.default_backoff();
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        if let Err(e) = event {
            tracing::warn!(error = %e, "watch error; retrying");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use futures::channel::mpsc;
    use watcher::Event::{Apply, Delete, Init, InitApply, InitDone};

    use super::*;
    use crate::crd::{IAMRoleGrantSpec, PodIdentityAssociationSpec};

    /// An association of namespace team-a with role `app`.
    pub(crate) fn association(name: &str, service_account: &str) -> PodIdentityAssociation {
        let mut a = PodIdentityAssociation::new(
            name,
            PodIdentityAssociationSpec {
                service_account_name: service_account.into(),
                role_arn: "arn:aws:iam::123456789012:role/app".into(),
                target_role_arn: None,
                disable_session_tags: false,
                session_tags: Default::default(),
                role_session_name: None,
            },
        );
        a.metadata.namespace = Some("team-a".into());
        a
    }

    fn grant(name: &str, namespace: &str) -> IAMRoleGrant {
        IAMRoleGrant::new(
            name,
            IAMRoleGrantSpec {
                namespaces: vec![namespace.into()],
                role_arns: vec!["arn:aws:iam::123456789012:role/*".into()],
                service_accounts: None,
                allow_namespace_wildcard_trust: false,
            },
        )
    }

    type Events<K> = mpsc::UnboundedSender<Result<watcher::Event<K>, watcher::Error>>;

    /// Sends `events` down a stores' pipeline and takes each out the other end, as a watch does.
    async fn feed<K, S>(
        tx: &Events<K>,
        pipeline: &mut std::pin::Pin<&mut S>,
        events: Vec<watcher::Event<K>>,
    ) where
        S: Stream,
    {
        for event in events {
            tx.unbounded_send(Ok(event)).unwrap();
            pipeline
                .next()
                .await
                .expect("the pipeline passes every event on");
        }
    }

    fn names(found: Vec<Arc<PodIdentityAssociation>>) -> Vec<String> {
        found.iter().map(|a| a.name_any()).collect()
    }

    #[tokio::test]
    async fn the_association_index_follows_changes_deletions_and_relists() {
        let (stores, writers) = Stores::new();
        let (tx, rx) = mpsc::unbounded();
        let pipeline = stores.follow_associations(rx, writers.associations);
        futures::pin_mut!(pipeline);
        let web = association("web", "app");
        feed(
            &tx,
            &mut pipeline,
            vec![Init, InitApply(web.clone()), InitDone],
        )
        .await;
        feed(
            &tx,
            &mut pipeline,
            vec![
                Apply(association("db", "app")),
                Apply(association("cron", "batch")),
            ],
        )
        .await;
        assert_eq!(
            names(stores.associations_of("team-a", "app")),
            ["db", "web"]
        );
        assert_eq!(names(stores.associations_of("team-a", "batch")), ["cron"]);
        assert!(stores.associations_of("team-b", "app").is_empty());

        // Moved to another ServiceAccount, then deleted.
        feed(&tx, &mut pipeline, vec![Apply(association("db", "batch"))]).await;
        assert_eq!(names(stores.associations_of("team-a", "app")), ["web"]);
        assert_eq!(
            names(stores.associations_of("team-a", "batch")),
            ["cron", "db"]
        );
        feed(&tx, &mut pipeline, vec![Delete(web)]).await;
        assert!(stores.associations_of("team-a", "app").is_empty());
        // The index itself, not only the store lookup behind it, lets go of the deleted one.
        assert!(stores.by_service_account.get("team-a/app").is_empty());

        // A re-list drops what was deleted while the watch was away.
        feed(
            &tx,
            &mut pipeline,
            vec![Init, InitApply(association("db", "batch")), InitDone],
        )
        .await;
        assert_eq!(names(stores.associations_of("team-a", "batch")), ["db"]);
        assert_eq!(stores.by_service_account.get("team-a/batch").len(), 1);
    }

    #[tokio::test]
    async fn the_grants_are_rebuilt_on_changes_deletions_and_relists() {
        let (stores, writers) = Stores::new();
        let (tx, rx) = mpsc::unbounded();
        let pipeline = stores.follow_grants(rx, writers.grants);
        futures::pin_mut!(pipeline);
        let namespaces = |stores: &Stores| {
            let mut all: Vec<String> = stores
                .grants()
                .iter()
                .map(|(name, spec)| format!("{name}:{}", spec.namespaces.join(",")))
                .collect();
            all.sort();
            all
        };
        feed(
            &tx,
            &mut pipeline,
            vec![Init, InitApply(grant("a", "team-a")), InitDone],
        )
        .await;
        assert_eq!(namespaces(&stores), ["a:team-a"]);
        feed(
            &tx,
            &mut pipeline,
            vec![Apply(grant("a", "team-x")), Apply(grant("b", "team-b"))],
        )
        .await;
        assert_eq!(namespaces(&stores), ["a:team-x", "b:team-b"]);
        feed(&tx, &mut pipeline, vec![Delete(grant("a", "team-x"))]).await;
        assert_eq!(namespaces(&stores), ["b:team-b"]);
        feed(
            &tx,
            &mut pipeline,
            vec![Init, InitApply(grant("c", "team-c"))],
        )
        .await;
        assert_eq!(
            namespaces(&stores),
            ["b:team-b"],
            "until the re-list is complete"
        );
        feed(&tx, &mut pipeline, vec![InitDone]).await;
        assert_eq!(namespaces(&stores), ["c:team-c"]);
    }
}
