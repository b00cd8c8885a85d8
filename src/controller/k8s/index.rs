//! Secondary indexes over the reflector stores: which objects carry a key (a binding's
//! ServiceAccounts and roles, an association's role, the binding that annotated a
//! ServiceAccount). kube-runtime's
//! stores are looked up by name only, and a scan of a store per event or per reconcile grows
//! with bindings × ServiceAccounts. An index is fed the same watch events as its store
//! ([`Index::apply_watcher_event`]), re-lists included: it swaps its table on `InitDone`, as the
//! store does.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::ResourceExt;
use kube::runtime::watcher;

use crate::controller::policy::annotate;
use crate::controller::policy::desired::Key;
use crate::crd::{IAMRoleBinding, PodIdentityAssociation};

/// Objects (by namespace and name) under each key that `keys` gives them.
pub struct Index<K> {
    keys: fn(&K) -> Vec<String>,
    tables: Arc<RwLock<Tables>>,
}

impl<K> Clone for Index<K> {
    fn clone(&self) -> Self {
        Self {
            keys: self.keys,
            tables: self.tables.clone(),
        }
    }
}

#[derive(Default)]
struct Tables {
    live: Table,
    /// Filled during a (re-)list; replaces `live` when it is complete.
    building: Option<Table>,
}

#[derive(Default)]
struct Table {
    by_key: HashMap<String, BTreeSet<Key>>,
    keys_of: HashMap<Key, Vec<String>>,
}

impl Table {
    fn insert(&mut self, object: Key, keys: Vec<String>) {
        self.remove(&object);
        if keys.is_empty() {
            return;
        }
        for k in &keys {
            self.by_key
                .entry(k.clone())
                .or_default()
                .insert(object.clone());
        }
        self.keys_of.insert(object, keys);
    }

    fn remove(&mut self, object: &Key) {
        for k in self.keys_of.remove(object).unwrap_or_default() {
            if let Entry::Occupied(mut e) = self.by_key.entry(k) {
                e.get_mut().remove(object);
                if e.get().is_empty() {
                    e.remove();
                }
            }
        }
    }
}

fn key_of<K: ResourceExt>(object: &K) -> Key {
    Key::new(&object.namespace().unwrap_or_default(), &object.name_any())
}

impl<K: ResourceExt> Index<K> {
    pub fn new(keys: fn(&K) -> Vec<String>) -> Self {
        Self {
            keys,
            tables: Arc::default(),
        }
    }

    /// Follows one watch event, as the reflector's writer does for the store.
    pub fn apply_watcher_event(&self, event: &watcher::Event<K>) {
        let Ok(mut t) = self.tables.write() else {
            return;
        };
        match event {
            watcher::Event::Apply(o) => t.live.insert(key_of(o), (self.keys)(o)),
            watcher::Event::Delete(o) => t.live.remove(&key_of(o)),
            watcher::Event::Init => t.building = Some(Table::default()),
            watcher::Event::InitApply(o) => {
                if let Some(b) = t.building.as_mut() {
                    b.insert(key_of(o), (self.keys)(o));
                }
            }
            watcher::Event::InitDone => {
                if let Some(b) = t.building.take() {
                    t.live = b;
                }
            }
        }
    }

    /// A watch-stream inspector feeding every event to this index.
    pub fn updater(&self) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) + use<K> {
        let index = self.clone();
        move |event| {
            if let Ok(event) = event {
                index.apply_watcher_event(event);
            }
        }
    }

    /// The objects under `key`.
    pub fn get(&self, key: &str) -> Vec<Key> {
        self.tables
            .read()
            .ok()
            .and_then(|t| t.live.by_key.get(key).map(|s| s.iter().cloned().collect()))
            .unwrap_or_default()
    }
}

/// `namespace/name`, the form of the keys below.
pub fn namespaced(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Bindings by the ServiceAccounts they list (`namespace/name`).
pub fn bindings_by_service_account() -> Index<IAMRoleBinding> {
    Index::new(|b| {
        let ns = b.namespace().unwrap_or_default();
        b.spec
            .service_accounts
            .iter()
            .map(|sa| namespaced(&ns, sa))
            .collect()
    })
}

/// Bindings by role: the spec's, and the previous one of a move (status.roleArn).
pub fn bindings_by_role() -> Index<IAMRoleBinding> {
    Index::new(|b| {
        let mut roles = vec![b.spec.role_arn.clone()];
        if let Some(previous) = b.status.as_ref().and_then(|s| s.role_arn.clone())
            && previous != b.spec.role_arn
        {
            roles.push(previous);
        }
        roles
    })
}

/// Associations by the role they name (`spec.roleArn`).
pub fn associations_by_role() -> Index<PodIdentityAssociation> {
    Index::new(|a| vec![a.spec.role_arn.clone()])
}

/// ServiceAccounts by the binding that annotated them (`namespace/binding`).
pub fn service_accounts_by_owner() -> Index<ServiceAccount> {
    Index::new(|sa| {
        sa.annotations()
            .get(annotate::OWNER)
            .map(|owner| namespaced(&sa.namespace().unwrap_or_default(), owner))
            .into_iter()
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn sa(name: &str, owner: Option<&str>) -> ServiceAccount {
        let mut sa = ServiceAccount::default();
        sa.metadata.namespace = Some("team-a".into());
        sa.metadata.name = Some(name.into());
        sa.metadata.annotations =
            owner.map(|o| BTreeMap::from([(annotate::OWNER.to_string(), o.to_string())]));
        sa
    }

    fn names(keys: Vec<Key>) -> Vec<String> {
        keys.into_iter().map(|k| k.name).collect()
    }

    #[test]
    fn an_index_follows_changes_deletions_and_relists() {
        let index = service_accounts_by_owner();
        index.apply_watcher_event(&watcher::Event::Apply(sa("app", Some("b"))));
        index.apply_watcher_event(&watcher::Event::Apply(sa("web", Some("b"))));
        index.apply_watcher_event(&watcher::Event::Apply(sa("db", None)));
        assert_eq!(names(index.get("team-a/b")), ["app", "web"]);

        // Released by its binding, then deleted.
        index.apply_watcher_event(&watcher::Event::Apply(sa("web", None)));
        assert_eq!(names(index.get("team-a/b")), ["app"]);
        index.apply_watcher_event(&watcher::Event::Delete(sa("app", Some("b"))));
        assert!(index.get("team-a/b").is_empty());

        // A re-list replaces everything once complete (a deletion missed while away).
        index.apply_watcher_event(&watcher::Event::Apply(sa("gone", Some("c"))));
        index.apply_watcher_event(&watcher::Event::Init);
        index.apply_watcher_event(&watcher::Event::InitApply(sa("new", Some("c"))));
        assert_eq!(names(index.get("team-a/c")), ["gone"], "until InitDone");
        index.apply_watcher_event(&watcher::Event::InitDone);
        assert_eq!(names(index.get("team-a/c")), ["new"]);
    }
}
