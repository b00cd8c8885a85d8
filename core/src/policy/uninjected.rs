//! PURE: pods that should carry web-identity credentials and do not (docs/controller.md,
//! "Pods that were not injected"): what the pod watch keeps of a Pod ([`PodFacts`]), whether
//! it is uninjected ([`uninjected`]), and the [`Tracker`] of the pods reported so far, which
//! is the only per-pod state (so memory follows the uninjected count, not the pod count).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use crate::mutate::{self, config};
use crate::policy::desired::Key;

/// What the pod watch keeps of a Pod while it decides; dropped right after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFacts {
    pub pod: Key,
    pub uid: String,
    pub service_account: String,
    /// [`mutate::has_credentials`], the doctor's rule too.
    pub credentials: bool,
    /// [`mutate::opted_out`], the webhook's rule.
    pub opted_out: bool,
    /// Succeeded, Failed or being deleted: nothing left to warn about.
    pub finished: bool,
    pub created: Option<Timestamp>,
}

impl PodFacts {
    pub fn from_pod(pod: &Pod) -> Self {
        let meta = &pod.metadata;
        let spec = pod.spec.as_ref();
        let volumes = spec.and_then(|s| s.volumes.as_deref()).unwrap_or_default();
        let env = spec
            .map(|s| s.init_containers.iter().flatten().chain(&s.containers))
            .into_iter()
            .flatten()
            .flat_map(|c| c.env.iter().flatten())
            .map(|e| e.name.as_str());
        let credentials = mutate::has_credentials(volumes.iter().map(|v| v.name.as_str()), env);
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        Self {
            pod: Key::new(
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default(),
            ),
            uid: meta.uid.clone().unwrap_or_default(),
            // The API server fills in `default`; a pod seen before that still runs as it.
            service_account: spec
                .and_then(|s| s.service_account_name.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".to_string()),
            credentials,
            opted_out: meta
                .labels
                .as_ref()
                .is_some_and(|l| mutate::opted_out(l).is_some()),
            finished: matches!(phase, Some("Succeeded" | "Failed"))
                || meta.deletion_timestamp.is_some(),
            created: meta.creation_timestamp.as_ref().map(|t| t.0),
        }
    }
}

/// The role the pod should have and does not: `role` is its ServiceAccount's `role-arn`.
pub fn uninjected<'a>(pod: &PodFacts, role: Option<&'a str>) -> Option<&'a str> {
    if pod.credentials || pod.opted_out || pod.finished {
        return None;
    }
    role.map(str::trim).filter(|r| !r.is_empty())
}

/// Why the pod lacks its credentials, as far as the controller can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Found when the role appeared on a ServiceAccount: its pods predate the annotation.
    CreatedBeforeRole,
    /// Created while the controller watched and its ServiceAccount had the role: the webhook
    /// was not called or did not answer, and `failurePolicy: Ignore` admitted it.
    AdmittedUnmutated,
    /// Already there when the controller started: either of the above.
    Unknown,
}

impl Cause {
    /// For a pod seen by the watch: created after `watching_since`, it met the role.
    /// Creation times are whole seconds (rounded down), so the start is too: a pod created
    /// after it is never taken for an older one.
    pub fn of_watched(created: Option<Timestamp>, watching_since: Timestamp) -> Self {
        let since_second = watching_since.as_second();
        match created {
            Some(created) if created.as_second() >= since_second => Cause::AdmittedUnmutated,
            _ => Cause::Unknown,
        }
    }
}

/// A newly reported pod: the Event, the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub pod: Key,
    pub uid: String,
    pub service_account: String,
    pub role: String,
    pub cause: Cause,
}

impl Report {
    /// The Event's note: the pod, its ServiceAccount and role, the likely cause, the fix.
    pub fn note(&self) -> String {
        let Report {
            pod,
            service_account: sa,
            role,
            ..
        } = self;
        let subject = format!(
            "Pod {pod} carries no AWS credentials (no {} volume, no AWS_ROLE_ARN) although its \
             ServiceAccount {}/{sa} has role {role}",
            config::TOKEN_VOLUME_NAME,
            pod.namespace
        );
        let restart = "delete the pod (or `kubectl rollout restart` its owner) so it is recreated";
        match self.cause {
            Cause::CreatedBeforeRole => format!(
                "{subject}: it was created before the ServiceAccount got the role; {restart}"
            ),
            Cause::AdmittedUnmutated => format!(
                "{subject}: the webhook was not called or did not answer when it was created \
                 (failurePolicy Ignore admits such pods unmutated); check the webhook with \
                 `irsa doctor`, then {restart}"
            ),
            Cause::Unknown => format!(
                "{subject}: it was created before the ServiceAccount got the role, or while the \
                 webhook was unreachable (failurePolicy Ignore admits such pods unmutated); \
                 once `irsa doctor` shows the webhook healthy, {restart}"
            ),
        }
    }
}

/// What an observation changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Newly uninjected: publish, log, count.
    Reported(Report),
    /// Was reported and no longer is (injected, finished, role gone): uncount.
    Forgotten,
    Unchanged,
}

/// A reported pod: enough to re-judge it when its ServiceAccount changes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reported {
    service_account: String,
}

/// The pods reported so far and the roles of the ServiceAccounts the watch has seen.
#[derive(Debug, Default)]
pub struct Tracker {
    pods: HashMap<Key, Reported>,
    per_namespace: BTreeMap<String, i64>,
    roles: HashMap<Key, String>,
}

impl Tracker {
    /// Judges `pod` as seen now, `role` being its ServiceAccount's.
    pub fn observe(&mut self, pod: &PodFacts, role: Option<&str>, cause: Cause) -> Change {
        match (uninjected(pod, role), self.pods.contains_key(&pod.pod)) {
            (Some(role), false) => {
                self.add(&pod.pod, &pod.service_account);
                Change::Reported(Report {
                    pod: pod.pod.clone(),
                    uid: pod.uid.clone(),
                    service_account: pod.service_account.clone(),
                    role: role.to_string(),
                    cause,
                })
            }
            (None, true) => {
                self.forget(&pod.pod);
                Change::Forgotten
            }
            _ => Change::Unchanged,
        }
    }

    /// The pod is gone; true when it was reported.
    pub fn forget(&mut self, pod: &Key) -> bool {
        if self.pods.remove(pod).is_none() {
            return false;
        }
        if let Some(n) = self.per_namespace.get_mut(&pod.namespace) {
            *n -= 1;
            if *n <= 0 {
                self.per_namespace.remove(&pod.namespace);
            }
        }
        true
    }

    /// The ServiceAccount `sa` now has `role` (`None`: no role, or deleted). Returns the
    /// reported pods this un-reports, and whether its pods must be listed and judged again
    /// (the role is new or changed: pods created before it lack it).
    pub fn service_account(&mut self, sa: &Key, role: Option<&str>) -> (Vec<Key>, bool) {
        let role = role.map(str::trim).filter(|r| !r.is_empty());
        let changed = match role {
            Some(role) => self.roles.insert(sa.clone(), role.to_string()).as_deref() != Some(role),
            None => self.roles.remove(sa).is_some(),
        };
        if !changed || role.is_some() {
            return (Vec::new(), changed);
        }
        let gone: Vec<Key> = self
            .pods
            .iter()
            .filter(|(pod, r)| pod.namespace == sa.namespace && r.service_account == sa.name)
            .map(|(pod, _)| pod.clone())
            .collect();
        for pod in &gone {
            self.forget(pod);
        }
        (gone, false)
    }

    /// After a re-list: forgets the reported pods that were not in it (deleted meanwhile).
    pub fn retain(&mut self, listed: impl Fn(&Key) -> bool) -> Vec<Key> {
        let gone: Vec<Key> = self.pods.keys().filter(|k| !listed(k)).cloned().collect();
        for pod in &gone {
            self.forget(pod);
        }
        gone
    }

    fn add(&mut self, pod: &Key, service_account: &str) {
        self.pods.insert(
            pod.clone(),
            Reported {
                service_account: service_account.to_string(),
            },
        );
        *self.per_namespace.entry(pod.namespace.clone()).or_default() += 1;
    }

    /// Reported pods in `namespace`.
    pub fn count(&self, namespace: &str) -> i64 {
        self.per_namespace.get(namespace).copied().unwrap_or(0)
    }

    pub fn is_reported(&self, pod: &Key) -> bool {
        self.pods.contains_key(pod)
    }

    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ROLE: &str = "arn:aws:iam::111122223333:role/app";

    fn pod(extra: serde_json::Value) -> Pod {
        let mut v = json!({
            "metadata": {"name": "p", "namespace": "team-a", "uid": "u1",
                         "creationTimestamp": "2026-12-03T10:00:00Z"},
            "spec": {"serviceAccountName": "app", "containers": [{"name": "app"}]}
        });
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    /// `extra`'s objects merged into `v`'s, anything else replacing.
    fn merge(v: &mut serde_json::Value, extra: serde_json::Value) {
        match (v, extra) {
            (serde_json::Value::Object(v), serde_json::Value::Object(extra)) => {
                for (k, e) in extra {
                    merge(v.entry(k).or_insert(serde_json::Value::Null), e);
                }
            }
            (v, extra) => *v = extra,
        }
    }

    fn facts(extra: serde_json::Value) -> PodFacts {
        PodFacts::from_pod(&pod(extra))
    }

    #[test]
    fn a_bare_pod_of_a_role_is_uninjected() {
        let f = facts(json!({}));
        assert_eq!(f.pod, Key::new("team-a", "p"));
        assert_eq!(f.service_account, "app");
        assert!(!f.credentials && !f.opted_out && !f.finished);
        assert_eq!(uninjected(&f, Some(ROLE)), Some(ROLE));
        assert_eq!(uninjected(&f, None), None);
        assert_eq!(uninjected(&f, Some("  ")), None);
    }

    #[test]
    fn the_service_account_defaults_to_default() {
        let f = facts(json!({"spec": {"serviceAccountName": null}}));
        assert_eq!(f.service_account, "default");
    }

    #[test]
    fn any_injected_credential_counts() {
        for extra in [
            json!({"spec": {"volumes": [{"name": "aws-iam-token", "emptyDir": {}}]}}),
            json!({"spec": {"volumes": [{"name": "eks-pod-identity-token", "emptyDir": {}}]}}),
            json!({"spec": {"containers": [{"name": "app", "env": [{"name": "AWS_ROLE_ARN", "value": ROLE}]}]}}),
            json!({"spec": {"initContainers": [{"name": "init", "env": [{"name": "AWS_CONTAINER_CREDENTIALS_FULL_URI", "value": "x"}]}]}}),
        ] {
            let f = facts(extra.clone());
            assert!(f.credentials, "{extra}");
            assert_eq!(uninjected(&f, Some(ROLE)), None, "{extra}");
        }
        let other = facts(
            json!({"spec": {"containers": [{"name": "app", "env": [{"name": "AWS_REGION", "value": "x"}]}]}}),
        );
        assert!(!other.credentials);
    }

    #[test]
    fn opted_out_and_finished_pods_are_not_reported() {
        for extra in [
            json!({"metadata": {"labels": {"irsa.dev/skip": "true"}}}),
            json!({"metadata": {"labels": {"eks.amazonaws.com/skip-pod-identity-webhook": ""}}}),
            json!({"status": {"phase": "Succeeded"}}),
            json!({"status": {"phase": "Failed"}}),
            json!({"metadata": {"deletionTimestamp": "2026-12-03T11:00:00Z"}}),
        ] {
            assert_eq!(
                uninjected(&facts(extra.clone()), Some(ROLE)),
                None,
                "{extra}"
            );
        }
        // The webhook's own rule: only "true" opts out with irsa.dev/skip.
        let f = facts(
            json!({"metadata": {"labels": {"irsa.dev/skip": "false"}}, "status": {"phase": "Running"}}),
        );
        assert_eq!(uninjected(&f, Some(ROLE)), Some(ROLE));
    }

    #[test]
    fn pods_created_after_the_watch_started_met_the_role() {
        let since: Timestamp = "2026-12-03T10:00:00.700Z".parse().unwrap();
        let before: Timestamp = "2026-12-03T09:59:59Z".parse().unwrap();
        assert_eq!(
            Cause::of_watched(Some(since), since),
            Cause::AdmittedUnmutated
        );
        // Created 0.3 s after the start, stored as 10:00:00.
        let same_second: Timestamp = "2026-12-03T10:00:00Z".parse().unwrap();
        assert_eq!(
            Cause::of_watched(Some(same_second), since),
            Cause::AdmittedUnmutated
        );
        assert_eq!(Cause::of_watched(Some(before), since), Cause::Unknown);
        assert_eq!(Cause::of_watched(None, since), Cause::Unknown);
    }

    #[test]
    fn a_pod_is_reported_once_and_uncounted_when_fixed_or_gone() {
        let mut t = Tracker::default();
        let f = facts(json!({}));
        let Change::Reported(r) = t.observe(&f, Some(ROLE), Cause::Unknown) else {
            panic!("reported");
        };
        assert_eq!(r.role, ROLE);
        assert_eq!(r.uid, "u1");
        assert_eq!(t.observe(&f, Some(ROLE), Cause::Unknown), Change::Unchanged);
        assert_eq!(t.count("team-a"), 1);
        let mut finished = f.clone();
        finished.finished = true;
        assert_eq!(
            t.observe(&finished, Some(ROLE), Cause::Unknown),
            Change::Forgotten
        );
        assert_eq!(t.count("team-a"), 0);
        assert!(t.is_empty());

        assert!(matches!(
            t.observe(&f, Some(ROLE), Cause::Unknown),
            Change::Reported(_)
        ));
        assert!(t.forget(&f.pod));
        assert!(!t.forget(&f.pod));
        assert_eq!(t.count("team-a"), 0);
        // A pod never reported costs nothing.
        let mut injected = f.clone();
        injected.credentials = true;
        assert_eq!(
            t.observe(&injected, Some(ROLE), Cause::Unknown),
            Change::Unchanged
        );
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn service_account_changes_relist_or_unreport() {
        let mut t = Tracker::default();
        let sa = Key::new("team-a", "app");
        assert_eq!(t.service_account(&sa, Some(ROLE)), (vec![], true));
        assert_eq!(t.service_account(&sa, Some(ROLE)), (vec![], false));
        let f = facts(json!({}));
        assert!(matches!(
            t.observe(&f, Some(ROLE), Cause::Unknown),
            Change::Reported(_)
        ));
        let mut other =
            facts(json!({"metadata": {"name": "q"}, "spec": {"serviceAccountName": "other"}}));
        other.uid = "u2".into();
        assert!(matches!(
            t.observe(&other, Some(ROLE), Cause::Unknown),
            Change::Reported(_)
        ));
        // A new role: still reported, and its pods are judged again.
        assert_eq!(
            t.service_account(&sa, Some("arn:aws:iam::1:role/b")),
            (vec![], true)
        );
        assert!(t.is_reported(&f.pod));
        // The role removed: its pods are no longer uninjected; other SAs' pods stay.
        assert_eq!(t.service_account(&sa, None), (vec![f.pod.clone()], false));
        assert_eq!(t.count("team-a"), 1);
        assert!(t.is_reported(&other.pod));
    }

    #[test]
    fn a_relist_forgets_what_it_did_not_see() {
        let mut t = Tracker::default();
        let f = facts(json!({}));
        t.observe(&f, Some(ROLE), Cause::Unknown);
        assert!(t.retain(|k| *k == f.pod).is_empty());
        assert_eq!(t.retain(|_| false), vec![f.pod.clone()]);
        assert_eq!(t.count("team-a"), 0);
    }

    #[test]
    fn the_note_names_the_pod_the_service_account_the_role_and_the_fix() {
        let report = |cause| Report {
            pod: Key::new("team-a", "p"),
            uid: "u1".into(),
            service_account: "app".into(),
            role: ROLE.into(),
            cause,
        };
        for cause in [
            Cause::CreatedBeforeRole,
            Cause::AdmittedUnmutated,
            Cause::Unknown,
        ] {
            let note = report(cause).note();
            for part in [
                "Pod team-a/p",
                "ServiceAccount team-a/app",
                ROLE,
                "delete the pod",
            ] {
                assert!(note.contains(part), "{cause:?}: {note}");
            }
            assert!(note.len() < 1000, "{note}");
        }
        assert!(
            report(Cause::AdmittedUnmutated)
                .note()
                .contains("failurePolicy Ignore")
        );
        assert!(
            report(Cause::CreatedBeforeRole)
                .note()
                .contains("before the ServiceAccount got the role")
        );
        let either = report(Cause::Unknown).note();
        assert!(
            either.contains("before the ServiceAccount got the role")
                && either.contains("failurePolicy Ignore")
        );
    }
}
