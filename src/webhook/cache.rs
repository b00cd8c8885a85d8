//! The ServiceAccount cache: what the mutation needs of every ServiceAccount, kept current by
//! a kube-runtime watch, with a bounded, deduplicated direct GET on a miss.
//!
//! Why not `kube::runtime::reflector::Store`: it keeps a whole `K` per object keyed by a full
//! `ObjectRef` (name, namespace, resourceVersion, uid), about half a kilobyte per
//! ServiceAccount even with the object stripped. Most ServiceAccounts of a large cluster carry
//! no IAM annotation, and for those the webhook only needs to know that they exist. This store
//! is the same reflector pattern (the watcher's Init/InitApply/InitDone events buffered and
//! swapped atomically) over a per-namespace map from name to relevant annotations: an
//! unannotated ServiceAccount costs its name and a slot, so memory grows with *annotated*
//! ServiceAccounts (docs/design.md §7).

use std::{
    collections::{HashMap, HashSet},
    hash::{BuildHasher, RandomState},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use super::metrics::Metrics;
use crate::{
    mutate::{Annotations, ServiceAccountInfo, relevant_annotations},
    names::{is_dns1123_label, is_dns1123_subdomain, preview},
};
use futures::{
    FutureExt, StreamExt,
    future::{BoxFuture, Shared},
};
use k8s_openapi::{api::core::v1::ServiceAccount, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use kube::{
    Api, Client,
    core::PartialObjectMeta,
    runtime::{WatchStreamExt, watcher},
};

/// `None`: the ServiceAccount exists but has no annotation the engine reads.
type Entry = Option<Annotations>;
type Store = HashMap<Box<str>, HashMap<Box<str>, Entry>>;
type Key = (String, String);

/// How long a background GET may run. The admission request only waits
/// `--sa-lookup-timeout`; the GET itself continues so that the pods that follow find the
/// ServiceAccount in the cache even when the API server is slow.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound of the "already logged this missing ServiceAccount" set (of 8-byte hashes: 80 KB
/// at most, whatever the names).
const MAX_REPORTED_MISSING: usize = 10_000;
/// ServiceAccounts per page of the initial list (kube-runtime's default is 500). Each page is
/// parsed whole (metadata with `managedFields`) between long-lived cache entries, and glibc
/// keeps the freed pages' heap: with 10,000 annotated ServiceAccounts, pages of 100 leave the
/// webhook's heap at 5.6 MiB instead of 9.5 MiB, and it is ready as fast (0.3–0.5 s on the
/// local control plane; docs/benchmarks.md).
const LIST_PAGE_SIZE: u32 = 100;
/// At most this many direct GETs in flight; a miss past it is answered without a GET
/// ([`Lookup::Busy`]). Each GET lives up to [`FETCH_TIMEOUT`], so without a cap a stream of
/// distinct unknown names holds thousands of API connections.
pub const MAX_CONCURRENT_FETCHES: usize = 64;

/// The answer for one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(ServiceAccountInfo),
    NotFound,
    /// The GET did not answer within `--sa-lookup-timeout`.
    TimedOut,
    /// The GET failed (RBAC, API server down, ...).
    Failed(String),
    /// The namespace (DNS-1123 label) or the name (DNS-1123 subdomain) cannot exist, so it
    /// was neither looked up nor logged; the text says which, with a short escaped preview.
    InvalidName(String),
    /// Not cached, and [`MAX_CONCURRENT_FETCHES`] GETs are already in flight: no GET made.
    Busy,
}

#[derive(Debug, Clone)]
enum Fetched {
    Found(Entry),
    NotFound,
    Failed(Arc<str>),
}

type PendingFetch = Shared<BoxFuture<'static, Fetched>>;

#[derive(Debug, Clone)]
pub struct ServiceAccountCache {
    inner: Arc<Inner>,
}

struct Inner {
    prefix: String,
    store: RwLock<Store>,
    synced: AtomicBool,
    client: Option<Client>,
    lookup_timeout: Duration,
    pending: Mutex<HashMap<Key, PendingFetch>>,
    fetch_permits: Arc<tokio::sync::Semaphore>,
    /// Hashes (random keys: not steerable) of the missing ServiceAccounts already logged.
    reported_missing: Mutex<HashSet<u64>>,
    missing_hasher: RandomState,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountCache")
            .field("prefix", &self.prefix)
            .field("synced", &self.synced.load(Ordering::Relaxed))
            .field("kube", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

/// Locks even if another thread panicked while holding the lock: every critical section
/// here leaves the maps consistent, so the data is still good.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ServiceAccountCache {
    /// A cache backed by the API server. Call [`Self::start_watch`] to fill it.
    pub fn kube(
        client: Client,
        prefix: &str,
        lookup_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self::new(Some(client), prefix, lookup_timeout, metrics, false)
    }

    /// A fixed set of ServiceAccounts and no Kubernetes connection (tests, benchmarks): a
    /// miss is "not found".
    pub fn fixed(
        accounts: impl IntoIterator<Item = ServiceAccountInfo>,
        prefix: &str,
        metrics: Arc<Metrics>,
    ) -> Self {
        let cache = Self::new(None, prefix, Duration::ZERO, metrics, true);
        for sa in accounts {
            cache.put(&sa);
        }
        cache
    }

    /// Adds (or replaces) one ServiceAccount of a [`Self::fixed`] cache, keeping only its
    /// relevant annotations.
    pub fn put(&self, sa: &ServiceAccountInfo) {
        let entry = entry(sa.annotations.iter(), &self.inner.prefix);
        self.inner.put(&sa.namespace, &sa.name, entry);
    }

    fn new(
        client: Option<Client>,
        prefix: &str,
        lookup_timeout: Duration,
        metrics: Arc<Metrics>,
        synced: bool,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                prefix: prefix.to_string(),
                store: RwLock::new(Store::new()),
                synced: AtomicBool::new(synced),
                client,
                lookup_timeout,
                pending: Mutex::new(HashMap::new()),
                fetch_permits: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_FETCHES)),
                reported_missing: Mutex::new(HashSet::new()),
                missing_hasher: RandomState::new(),
                metrics,
            }),
        }
    }

    /// True once the first full list has been stored (`/readyz`).
    pub fn is_synced(&self) -> bool {
        self.inner.synced.load(Ordering::Acquire)
    }

    /// Number of ServiceAccounts known, and how many of them carry relevant annotations.
    pub fn len(&self) -> (usize, usize) {
        count(&self.read_store())
    }

    pub fn is_empty(&self) -> bool {
        self.len().0 == 0
    }

    fn read_store(&self) -> std::sync::RwLockReadGuard<'_, Store> {
        self.inner.store.read().unwrap_or_else(|p| p.into_inner())
    }

    fn cached(&self, namespace: &str, name: &str) -> Option<ServiceAccountInfo> {
        let annotations = self.read_store().get(namespace)?.get(name)?.clone();
        Some(info(namespace, name, annotations))
    }

    /// The ServiceAccount `namespace/name`: from the cache, else from one GET shared by every
    /// concurrent caller and awaited at most `--sa-lookup-timeout`.
    pub async fn lookup(&self, namespace: &str, name: &str) -> Lookup {
        // First: nothing below (cache key, API path, log line) sees a name that cannot exist.
        if let Some(why) = invalid_name(namespace, name) {
            self.inner.metrics.sa_invalid_names.inc();
            return Lookup::InvalidName(why);
        }
        if let Some(info) = self.cached(namespace, name) {
            return Lookup::Found(info);
        }
        let Some(client) = &self.inner.client else {
            self.inner.metrics.sa_cache_misses.inc();
            return self.not_found(namespace, name);
        };
        let fetch = {
            let mut pending = lock(&self.inner.pending);
            // Counted under the lock: once the counter shows N misses, all N callers share
            // one fetch (the concurrency test relies on this ordering).
            self.inner.metrics.sa_cache_misses.inc();
            let key = (namespace.to_string(), name.to_string());
            match pending.get(&key) {
                Some(fetch) => fetch.clone(),
                None => {
                    let Ok(permit) = self.inner.fetch_permits.clone().try_acquire_owned() else {
                        self.inner.metrics.sa_lookups_shed.inc();
                        return Lookup::Busy;
                    };
                    let fetch = self.spawn_fetch(client.clone(), namespace, name, permit);
                    pending.insert(key, fetch.clone());
                    fetch
                }
            }
        };
        match tokio::time::timeout(self.inner.lookup_timeout, fetch).await {
            Ok(Fetched::Found(entry)) => Lookup::Found(info(namespace, name, entry)),
            Ok(Fetched::NotFound) => self.not_found(namespace, name),
            Ok(Fetched::Failed(message)) => Lookup::Failed(message.to_string()),
            Err(_) => Lookup::TimedOut,
        }
    }

    fn not_found(&self, namespace: &str, name: &str) -> Lookup {
        self.inner.metrics.sa_not_found.inc();
        let hash = self.inner.missing_hasher.hash_one((namespace, name));
        let mut reported = lock(&self.inner.reported_missing);
        if reported.len() >= MAX_REPORTED_MISSING {
            reported.clear();
        }
        if reported.insert(hash) {
            tracing::warn!(
                namespace,
                service_account = name,
                "ServiceAccount {namespace}/{name} not found; its pods are admitted without IAM \
                 credentials (create the ServiceAccount before the pods)"
            );
        }
        Lookup::NotFound
    }

    fn spawn_fetch(
        &self,
        client: Client,
        namespace: &str,
        name: &str,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> PendingFetch {
        let inner = self.inner.clone();
        let (ns, name) = (namespace.to_string(), name.to_string());
        let task = tokio::spawn(async move {
            let api: Api<ServiceAccount> = Api::namespaced(client, &ns);
            let result = tokio::time::timeout(FETCH_TIMEOUT, api.get_metadata_opt(&name)).await;
            let (fetched, label) = match result {
                Ok(Ok(Some(sa))) => {
                    let entry = entry_of(&sa.metadata, &inner.prefix);
                    inner.put(&ns, &name, entry.clone());
                    (Fetched::Found(entry), "found")
                }
                Ok(Ok(None)) => (Fetched::NotFound, "not_found"),
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "GET ServiceAccount {ns}/{name} failed (check the webhook's RBAC: get/list/watch serviceaccounts)");
                    (Fetched::Failed(err.to_string().into()), "error")
                }
                Err(_) => (
                    Fetched::Failed(format!("no answer within {FETCH_TIMEOUT:?}").into()),
                    "timeout",
                ),
            };
            inner
                .metrics
                .sa_lookups
                .get_or_create(&[("result", label)])
                .inc();
            lock(&inner.pending).remove(&(ns, name));
            drop(permit);
            fetched
        });
        task.map(|joined| {
            joined.unwrap_or_else(|e| Fetched::Failed(format!("lookup task failed: {e}").into()))
        })
        .boxed()
        .shared()
    }

    /// [`Self::watch`] spawned on its own (tests).
    pub fn start_watch(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.watch().map(tokio::spawn)
    }

    /// The ServiceAccount watch (metadata only: the webhook reads no other field), `None`
    /// without a Kubernetes client. Runs until dropped: errors are retried with
    /// [`crate::backoff::watch`], so the future only ends if the watch stream does.
    pub fn watch(&self) -> Option<impl Future<Output = ()> + Send + 'static> {
        let client = self.inner.client.clone()?;
        let inner = self.inner.clone();
        Some(async move {
            // `PartialObjectMeta`: the API server sends metadata only (PartialObjectMetadataList).
            let api: Api<PartialObjectMeta<ServiceAccount>> = Api::all(client);
            let config = watcher::Config::default().page_size(LIST_PAGE_SIZE);
            let stream = watcher::watcher(api, config).backoff(crate::backoff::watch());
            let mut stream = std::pin::pin!(stream);
            let mut buffer: Option<Store> = None;
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Init) => buffer = Some(Store::new()),
                    Ok(watcher::Event::InitApply(sa)) => {
                        if let (Some(buf), Some((ns, name))) = (&mut buffer, key_of(&sa.metadata)) {
                            insert(buf, ns, name, entry_of(&sa.metadata, &inner.prefix));
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        let mut store = inner.write_store();
                        if let Some(buf) = buffer.take() {
                            *store = buf;
                        }
                        inner.update_gauges(&store);
                        drop(store);
                        if !inner.synced.swap(true, Ordering::AcqRel) {
                            tracing::info!("ServiceAccount cache synced");
                        }
                    }
                    Ok(watcher::Event::Apply(sa)) => {
                        if let Some((ns, name)) = key_of(&sa.metadata) {
                            let entry = entry_of(&sa.metadata, &inner.prefix);
                            inner.put(ns, name, entry);
                        }
                    }
                    Ok(watcher::Event::Delete(sa)) => {
                        if let Some((ns, name)) = key_of(&sa.metadata) {
                            let delta = remove(&mut inner.write_store(), ns, name);
                            inner.apply_delta(delta);
                        }
                    }
                    Err(err) => {
                        inner.metrics.sa_watch_errors.inc();
                        tracing::warn!(error = %err, "ServiceAccount watch failed; retrying (the webhook needs list/watch on serviceaccounts)");
                    }
                }
            }
        })
    }
}

/// Why `namespace`/`name` cannot be a ServiceAccount, if it cannot.
fn invalid_name(namespace: &str, name: &str) -> Option<String> {
    if !is_dns1123_label(namespace) {
        return Some(format!(
            "namespace {} is not a valid namespace name (DNS-1123 label)",
            preview(namespace)
        ));
    }
    if !is_dns1123_subdomain(name) {
        return Some(format!(
            "serviceAccountName {} is not a valid ServiceAccount name (DNS-1123 subdomain)",
            preview(name)
        ));
    }
    None
}

impl Inner {
    fn write_store(&self) -> std::sync::RwLockWriteGuard<'_, Store> {
        self.store.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores one ServiceAccount's entry (a fetch, a watch event, the file), keeping the gauges
    /// current without a recount.
    fn put(&self, namespace: &str, name: &str, entry: Entry) {
        let delta = insert(&mut self.write_store(), namespace, name, entry);
        self.apply_delta(delta);
    }

    /// Full recount, after a relist replaced the whole store.
    fn update_gauges(&self, store: &Store) {
        let (all, annotated) = count(store);
        self.metrics.sa_cache_entries.set(all as i64);
        self.metrics.sa_cache_annotated.set(annotated as i64);
    }

    /// Incremental update after one watch event: no walk over 100k entries per event.
    fn apply_delta(&self, (all, annotated): Delta) {
        self.metrics.sa_cache_entries.inc_by(all);
        self.metrics.sa_cache_annotated.inc_by(annotated);
    }
}

fn count(store: &Store) -> (usize, usize) {
    store.values().fold((0, 0), |(all, annotated), ns| {
        (
            all + ns.len(),
            annotated + ns.values().filter(|entry| entry.is_some()).count(),
        )
    })
}

fn key_of(meta: &ObjectMeta) -> Option<(&str, &str)> {
    Some((meta.namespace.as_deref()?, meta.name.as_deref()?))
}

fn entry_of(meta: &ObjectMeta, prefix: &str) -> Entry {
    let all = meta.annotations.iter().flatten();
    entry(all.map(|(k, v)| (k.as_str(), v.as_str())), prefix)
}

/// The entry of a ServiceAccount with these annotations: only those the engine reads, if any.
fn entry<'a>(annotations: impl IntoIterator<Item = (&'a str, &'a str)>, prefix: &str) -> Entry {
    let kept = relevant_annotations(annotations, prefix);
    (!kept.is_empty()).then_some(kept)
}

/// The engine's view of the cached ServiceAccount `namespace/name`.
fn info(namespace: &str, name: &str, entry: Entry) -> ServiceAccountInfo {
    ServiceAccountInfo {
        namespace: namespace.to_string(),
        name: name.to_string(),
        annotations: entry.unwrap_or_default(),
    }
}

/// Change of (entries, annotated entries) caused by one store operation.
type Delta = (i64, i64);

fn weight(entry: Option<&Entry>) -> Delta {
    match entry {
        None => (0, 0),
        Some(entry) => (1, entry.is_some().into()),
    }
}

fn insert(store: &mut Store, namespace: &str, name: &str, entry: Entry) -> Delta {
    let new = weight(Some(&entry));
    let old = match store.get_mut(namespace) {
        Some(ns) => ns.insert(name.into(), entry),
        None => {
            store.insert(namespace.into(), HashMap::from([(name.into(), entry)]));
            None
        }
    };
    let old = weight(old.as_ref());
    (new.0 - old.0, new.1 - old.1)
}

fn remove(store: &mut Store, namespace: &str, name: &str) -> Delta {
    let Some(ns) = store.get_mut(namespace) else {
        return (0, 0);
    };
    let old = ns.remove(name);
    if ns.is_empty() {
        store.remove(namespace);
    }
    let old = weight(old.as_ref());
    (-old.0, -old.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reported_missing_is_bounded_in_entries_and_bytes() {
        let cache = ServiceAccountCache::fixed([], "eks.amazonaws.com", Arc::new(Metrics::new()));
        // Distinct, valid, maximal names: the set keeps 8-byte hashes, not the names.
        for i in 0..MAX_REPORTED_MISSING + 10 {
            let name = format!("{i}{}", "a".repeat(240));
            assert_eq!(cache.lookup("team-a", &name).await, Lookup::NotFound);
        }
        {
            let reported = lock(&cache.inner.reported_missing);
            assert!(reported.len() <= MAX_REPORTED_MISSING);
            assert!(reported.capacity() * std::mem::size_of::<u64>() < 1 << 20);
        }
        // A name that cannot exist is not even counted as a miss.
        assert!(matches!(
            cache.lookup("team-a", "../../secrets/x").await,
            Lookup::InvalidName(_)
        ));
        assert!(matches!(
            cache.lookup("Team-A", "app").await,
            Lookup::InvalidName(_)
        ));
    }

    #[test]
    fn fixed_cache_keeps_only_relevant_annotations_and_counts() {
        let metrics = Arc::new(Metrics::new());
        let cache = ServiceAccountCache::fixed(
            [
                ServiceAccountInfo {
                    namespace: "x".into(),
                    name: "a".into(),
                    annotations: [
                        ("eks.amazonaws.com/role-arn", "r"),
                        ("other.io/owner", "me"),
                    ]
                    .into_iter()
                    .collect(),
                },
                ServiceAccountInfo {
                    namespace: "x".into(),
                    name: "b".into(),
                    annotations: [("other.io/owner", "me")].into_iter().collect(),
                },
            ],
            "eks.amazonaws.com",
            metrics,
        );
        assert_eq!(cache.len(), (2, 1));
        let a = cache.cached("x", "a").unwrap();
        assert_eq!(
            a.annotations.keys().collect::<Vec<_>>(),
            ["eks.amazonaws.com/role-arn"]
        );
        assert!(cache.cached("x", "b").unwrap().annotations.is_empty());
        assert!(cache.cached("x", "c").is_none());
    }
}
