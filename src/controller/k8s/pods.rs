//! The pod watch (the leader's, `--detect-uninjected-pods`): every pod is stripped to
//! [`PodFacts`] as it arrives and judged against the ServiceAccount store; only the pods
//! reported as uninjected are remembered ([`Tracker`]). Each gets one Warning Event, one log
//! line and a place in `irsa_controller_uninjected_pods`. The decisions are in
//! [`policy::uninjected`](crate::controller::policy::uninjected).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, ServiceAccount};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::controller::k8s::events::publish_on;
use crate::controller::metrics::Metrics;
use crate::controller::policy::desired::Key;
use crate::controller::policy::uninjected::{Cause, Change, PodFacts, Report, Tracker};
use crate::names::POD_NOT_INJECTED;

/// Pods per page of the initial list and of a ServiceAccount's re-list: the most the watch
/// holds whole at any time.
const PAGE: u32 = 500;

/// Where the pod watch looks.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Namespaces the webhook never sees (the chart excludes `kube-system` and its own): their
    /// pods are not injected on purpose. Left out by the watch's field selector, so the API
    /// server never even sends them.
    pub excluded_namespaces: Vec<String>,
}

impl Settings {
    /// `kube-system` and `own` (the controller's namespace, the chart's release namespace).
    pub fn excluding(own: &str) -> Self {
        let mut excluded_namespaces = vec!["kube-system".to_string()];
        if own != "kube-system" {
            excluded_namespaces.push(own.to_string());
        }
        Self {
            excluded_namespaces,
        }
    }

    fn field_selector(&self) -> String {
        self.excluded_namespaces
            .iter()
            .map(|ns| format!("metadata.namespace!={ns}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The pod watch and what it reads and writes.
pub struct PodWatch {
    pub client: Client,
    pub settings: Settings,
    /// The controller's ServiceAccount store (the same the IAM side reads).
    pub service_accounts: Store<ServiceAccount>,
    /// `--annotation-prefix`.
    pub prefix: String,
    pub metrics: Metrics,
    pub recorder: Recorder,
}

/// Clears the gauge when the watch stops (a lost Lease): only the leader reports.
struct ClearOnDrop(Metrics);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.uninjected_pods.clear();
    }
}

impl PodWatch {
    /// Watches until dropped. Starts once the ServiceAccount store has its first list (a pod
    /// judged against an empty store would look fine); `changes` names every ServiceAccount
    /// the controller's watch saw change.
    pub async fn run(
        self,
        sa_synced: Arc<AtomicBool>,
        mut changes: mpsc::UnboundedReceiver<Key>,
    ) -> anyhow::Result<()> {
        let _clear = ClearOnDrop(self.metrics.clone());
        while !sa_synced.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The initial ServiceAccount list named every one of them: the roles are read here.
        while changes.try_recv().is_ok() {}
        let mut tracker = Tracker::default();
        let role_key = format!("{}/role-arn", self.prefix);
        for sa in self.service_accounts.state() {
            let key = Key::new(&sa.namespace().unwrap_or_default(), &sa.name_any());
            tracker.service_account(&key, sa.annotations().get(&role_key).map(String::as_str));
        }
        let since = Timestamp::now();
        let stream = watcher(
            Api::<Pod>::all(self.client.clone()),
            watcher::Config::default()
                .fields(&self.settings.field_selector())
                .page_size(PAGE),
        )
        .default_backoff();
        futures::pin_mut!(stream);
        // During a (re-)list: the reported pods it contained, to forget the others after.
        let mut listed: Option<HashSet<Key>> = None;
        loop {
            tokio::select! {
                event = stream.next() => match event {
                    None => return Ok(()),
                    Some(Err(e)) => warn!(error = %e, "Pod watch error; retrying"),
                    Some(Ok(watcher::Event::Init)) => listed = Some(HashSet::new()),
                    Some(Ok(watcher::Event::InitApply(pod))) => {
                        let facts = PodFacts::from_pod(&pod);
                        drop(pod);
                        let cause = Cause::of_watched(facts.created, since);
                        self.judge(&mut tracker, &facts, cause).await;
                        if let Some(listed) = &mut listed
                            && tracker.is_reported(&facts.pod)
                        {
                            listed.insert(facts.pod);
                        }
                    }
                    Some(Ok(watcher::Event::InitDone)) => {
                        let listed = listed.take().unwrap_or_default();
                        for pod in tracker.retain(|k| listed.contains(k)) {
                            self.count(&tracker, &pod);
                        }
                        info!(uninjected = tracker.len(), "pod watch synced");
                    }
                    Some(Ok(watcher::Event::Apply(pod))) => {
                        let facts = PodFacts::from_pod(&pod);
                        drop(pod);
                        let cause = Cause::of_watched(facts.created, since);
                        self.judge(&mut tracker, &facts, cause).await;
                    }
                    Some(Ok(watcher::Event::Delete(pod))) => {
                        let key = Key::new(&pod.namespace().unwrap_or_default(), &pod.name_any());
                        if tracker.forget(&key) {
                            debug!(pod = %key, "uninjected pod deleted");
                            self.count(&tracker, &key);
                        }
                    }
                },
                Some(sa) = changes.recv() => self.service_account_changed(&mut tracker, &sa).await,
            }
        }
    }

    /// The role annotation of the ServiceAccount `namespace/name`, from the store.
    fn role_of(&self, namespace: &str, name: &str) -> Option<String> {
        let sa = self
            .service_accounts
            .get(&ObjectRef::new(name).within(namespace))?;
        sa.annotations()
            .get(&format!("{}/role-arn", self.prefix))
            .cloned()
    }

    async fn judge(&self, tracker: &mut Tracker, facts: &PodFacts, cause: Cause) {
        let role = self.role_of(&facts.pod.namespace, &facts.service_account);
        match tracker.observe(facts, role.as_deref(), cause) {
            Change::Reported(report) => {
                self.count(tracker, &report.pod);
                self.publish(&report).await;
            }
            Change::Forgotten => {
                info!(pod = %facts.pod, "pod no longer reported as uninjected (it has credentials, finished, or opted out)");
                self.count(tracker, &facts.pod);
            }
            Change::Unchanged => {}
        }
    }

    /// The ServiceAccount's role may have changed: its reported pods are re-judged, and when
    /// the role is new, its pods are listed (those created before the role lack it).
    async fn service_account_changed(&self, tracker: &mut Tracker, sa: &Key) {
        let role = self.role_of(&sa.namespace, &sa.name);
        let (gone, relist) = tracker.service_account(sa, role.as_deref());
        for pod in &gone {
            info!(pod = %pod, service_account = %sa, "pod no longer reported as uninjected: its ServiceAccount has no role now");
            self.count(tracker, pod);
        }
        if !relist || self.settings.excluded_namespaces.contains(&sa.namespace) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &sa.namespace);
        let mut lp = ListParams::default()
            .fields(&format!("spec.serviceAccountName={}", sa.name))
            .limit(PAGE);
        loop {
            let page = match api.list(&lp).await {
                Ok(page) => page,
                Err(e) => {
                    warn!(service_account = %sa, error = %e, "cannot list the pods of a ServiceAccount that got a role; they are judged when they next change");
                    return;
                }
            };
            for pod in &page.items {
                let facts = PodFacts::from_pod(pod);
                self.judge(tracker, &facts, Cause::CreatedBeforeRole).await;
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => lp = lp.continue_token(&token),
                None => return,
            }
        }
    }

    fn count(&self, tracker: &Tracker, pod: &Key) {
        self.metrics
            .set_uninjected(&pod.namespace, tracker.count(&pod.namespace));
    }

    /// The log line and the Warning Event on the pod.
    async fn publish(&self, report: &Report) {
        let note = report.note();
        warn!(pod = %report.pod, service_account = %report.service_account, role = %report.role,
              cause = ?report.cause, "{note}");
        let regarding = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(report.pod.namespace.clone()),
            name: Some(report.pod.name.clone()),
            uid: Some(report.uid.clone()),
            ..ObjectReference::default()
        };
        publish_on(
            &self.recorder,
            &regarding,
            EventType::Warning,
            POD_NOT_INJECTED,
            "Inject",
            &note,
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_excluded_namespaces_become_a_field_selector() {
        assert_eq!(
            Settings::excluding("irsa-system").field_selector(),
            "metadata.namespace!=kube-system,metadata.namespace!=irsa-system"
        );
        assert_eq!(
            Settings::excluding("kube-system").field_selector(),
            "metadata.namespace!=kube-system"
        );
    }
}
