//! PURE: the two webhook steps (`--webhook-configuration`): is the API server able to call the
//! webhook (configuration, caBundle against the certificate served now, ready endpoints), and
//! does a dry-run pod of the ServiceAccount come back mutated. The second is the verdict; the
//! first says why when it does not.

use serde::Deserialize;
use serde_json::Value;

use crate::doctor::report::Check;
use crate::mutate::{self, Identities, MutationConfig, ServiceAccountInfo};

pub const WEBHOOK_ID: &str = "webhook";
pub const WEBHOOK_TITLE: &str = "Webhook";
pub const DRY_RUN_ID: &str = "dry-run";
pub const DRY_RUN_TITLE: &str = "Dry-run pod";

/// One webhook of the MutatingWebhookConfiguration, as the doctor found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEntry {
    pub name: String,
    pub failure_policy: String,
    /// Where the API server calls it: `service NS/NAME:PORT` or the URL.
    pub calls: String,
    /// Certificates in the caBundle, or why it is unusable (empty, not PEM).
    pub ca_bundle: Result<usize, String>,
    /// The TLS handshake with the webhook, verified against that caBundle.
    pub served: Served,
    /// Ready endpoints of the service; `None` for a URL.
    pub ready_endpoints: Option<Result<usize, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// The certificate served now verifies against the caBundle.
    Verified,
    /// It does not: the API server's calls fail the same way.
    Rejected(String),
    /// Not reachable from where the doctor runs (a service outside the cluster network), so
    /// not checked.
    Unreachable(String),
}

/// The configuration `name`: read, missing, or its webhooks.
pub fn webhook(name: &str, config: &Result<Option<Vec<WebhookEntry>>, String>) -> Check {
    let entries = match config {
        Err(err) => {
            return Check::warn(
                WEBHOOK_ID,
                WEBHOOK_TITLE,
                format!("cannot read MutatingWebhookConfiguration {name}: {err}"),
            )
            .with_fix("the doctor needs get on mutatingwebhookconfigurations");
        }
        Ok(Some(entries)) if !entries.is_empty() => entries,
        Ok(_) => {
            return Check::fail(
                WEBHOOK_ID,
                WEBHOOK_TITLE,
                format!(
                    "MutatingWebhookConfiguration {name} does not exist or has no webhooks: no pod is mutated through it"
                ),
                "install the webhook (helm install irsa charts/irsa), or pass the name of the configuration that injects (kubectl get mutatingwebhookconfigurations)",
            );
        }
    };
    let mut failures = Vec::new();
    let mut warnings = Vec::new();
    let mut facts = Vec::new();
    for e in entries {
        let who = format!("webhook {} ({})", e.name, e.calls);
        match &e.ca_bundle {
            Err(why) => failures.push(format!("{who}: caBundle {why}")),
            Ok(n) => facts.push(format!(
                "{who}: failurePolicy {}, caBundle {n} certificate(s)",
                e.failure_policy
            )),
        }
        match &e.served {
            Served::Verified => facts.push(format!("{who}: the certificate it serves verifies against the caBundle")),
            Served::Rejected(why) => failures.push(format!(
                "{who}: the certificate it serves does not verify against the caBundle ({why}); the API server's calls fail the same way{}",
                ignore_note(&e.failure_policy)
            )),
            Served::Unreachable(why) => warnings.push(format!("{who}: not reachable from here, certificate not checked ({why})")),
        }
        match &e.ready_endpoints {
            Some(Ok(0)) => failures.push(format!(
                "{who}: the service has no ready endpoints{}",
                ignore_note(&e.failure_policy)
            )),
            Some(Ok(n)) => facts.push(format!("{who}: {n} ready endpoint(s)")),
            Some(Err(err)) => warnings.push(format!("{who}: endpoints not checked ({err})")),
            None => {}
        }
    }
    if !failures.is_empty() {
        return Check::fail(
            WEBHOOK_ID,
            WEBHOOK_TITLE,
            failures.join("; "),
            "restore the caBundle to the CA that signed the webhook's certificate (tls.mode self repairs it itself; otherwise helm upgrade re-renders it) and check the webhook pods (kubectl -n <irsa namespace> get pods,endpointslices)",
        );
    }
    let evidence = facts
        .into_iter()
        .chain(warnings.iter().cloned())
        .collect::<Vec<_>>()
        .join("; ");
    match warnings.is_empty() {
        true => Check::pass(WEBHOOK_ID, WEBHOOK_TITLE, evidence),
        false => Check::warn(WEBHOOK_ID, WEBHOOK_TITLE, evidence)
            .with_fix("run the doctor inside the cluster network (kubectl run, or a Job) to check the served certificate"),
    }
}

/// Why a failed call is silent: Ignore admits the pod unmutated.
fn ignore_note(failure_policy: &str) -> &'static str {
    match failure_policy {
        "Ignore" => " (failurePolicy Ignore: pods are admitted unmutated, silently)",
        _ => " (failurePolicy Fail: pod creation is refused)",
    }
}

/// What the API server answered to the dry-run create of a pod of the ServiceAccount.
#[derive(Debug, Clone)]
pub enum DryRun {
    /// The pod as admission left it (mutating webhooks included; nothing stored).
    Created(Value),
    /// The create was refused (a webhook with failurePolicy Fail that failed, a policy).
    Refused(String),
    /// The doctor may not create pods there.
    Forbidden(String),
}

/// The dry-run pod carries what the webhook injects for this ServiceAccount.
pub fn dry_run(
    namespace: &str,
    sa: &ServiceAccountInfo,
    cfg: &MutationConfig,
    identities: &Identities,
    answer: &DryRun,
) -> Check {
    let who = format!("a dry-run pod of ServiceAccount {namespace}/{}", sa.name);
    let pod = match answer {
        DryRun::Forbidden(err) => {
            return Check::warn(
                DRY_RUN_ID,
                DRY_RUN_TITLE,
                format!("{who} could not be created: {err}"),
            )
            .with_fix(
                "the doctor needs create on pods in the namespace (dry-run: nothing is stored)",
            );
        }
        DryRun::Refused(err) => {
            return Check::fail(
                DRY_RUN_ID,
                DRY_RUN_TITLE,
                format!("{who} was refused: {err}"),
                "a webhook with failurePolicy Fail could not be called (see the webhook step), or a policy refuses the pod",
            );
        }
        DryRun::Created(pod) => pod,
    };
    // It carries the `--pod` pod's labels: opted out, it is left alone by design.
    let view = mutate::Pod::deserialize(pod).unwrap_or_default();
    if let Some(label) = mutate::opted_out(view.labels()) {
        return Check::skip(
            DRY_RUN_ID,
            DRY_RUN_TITLE,
            format!(
                "{who} carries the pod's label {label}, which opts it out: the webhook leaves it alone"
            ),
        );
    }
    match missing_injection(cfg, identities, namespace, sa, pod) {
        None => Check::skip(
            DRY_RUN_ID,
            DRY_RUN_TITLE,
            format!(
                "the webhook injects nothing for ServiceAccount {namespace}/{} as it is annotated now",
                sa.name
            ),
        ),
        Some(Ok(missing)) if missing.is_empty() => Check::pass(
            DRY_RUN_ID,
            DRY_RUN_TITLE,
            format!("{who} came back with the token volume, mount and AWS variables"),
        ),
        Some(Ok(missing)) => Check::fail(
            DRY_RUN_ID,
            DRY_RUN_TITLE,
            format!(
                "{who} came back unmutated ({} missing: {}): pods created now run without the role",
                missing.len(),
                missing.join(", ")
            ),
            "the API server did not call the webhook or the call failed open: see the webhook step; also check the configuration's namespaceSelector/objectSelector and the API server's log (\"failed calling webhook\")",
        ),
        Some(Err(err)) => Check::fail(
            DRY_RUN_ID,
            DRY_RUN_TITLE,
            format!("{who}: {err}"),
            "check the pod manifest",
        ),
    }
}

/// What the webhook would still add to `pod` for this ServiceAccount (JSON-patch paths; empty:
/// the pod is mutated), or `None` when it injects nothing for it at all (no role, no Pod
/// Identity), so an untouched pod lacks nothing.
pub fn missing_injection(
    cfg: &MutationConfig,
    identities: &Identities,
    namespace: &str,
    sa: &ServiceAccountInfo,
    pod: &Value,
) -> Option<Result<Vec<String>, String>> {
    let probe = serde_json::json!({"spec": {"containers": [{"name": "probe"}]}});
    let injects = mutate::mutate(cfg, identities, namespace, sa, &probe, &mut rand::rng())
        .is_ok_and(|m| !m.patch.0.is_empty());
    if !injects {
        return None;
    }
    Some(
        mutate::mutate(cfg, identities, namespace, sa, pod, &mut rand::rng())
            .map(|m| m.patch.0.iter().map(|op| op.path().to_string()).collect())
            .map_err(|e| e.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::report::Status;
    use crate::testing::fixtures::service_account as sa;
    use serde_json::json;

    fn entry(served: Served, ready: Option<Result<usize, String>>) -> WebhookEntry {
        WebhookEntry {
            name: "pods.irsa.dev".into(),
            failure_policy: "Ignore".into(),
            calls: "service irsa-system/irsa-webhook:443".into(),
            ca_bundle: Ok(1),
            served,
            ready_endpoints: ready,
        }
    }

    fn cfg() -> MutationConfig {
        MutationConfig {
            annotation_prefix: "eks.amazonaws.com".into(),
            ..Default::default()
        }
    }

    const ROLE: (&str, &str) = (
        "eks.amazonaws.com/role-arn",
        "arn:aws:iam::111122223333:role/app",
    );

    #[test]
    fn a_healthy_webhook_passes_with_the_facts() {
        let c = webhook(
            "irsa-webhook",
            &Ok(Some(vec![entry(Served::Verified, Some(Ok(2)))])),
        );
        assert_eq!(c.status, Status::Pass, "{c:?}");
        assert!(
            c.evidence
                .contains("failurePolicy Ignore, caBundle 1 certificate(s)"),
            "{c:?}"
        );
        assert!(c.evidence.contains("2 ready endpoint(s)"), "{c:?}");
    }

    #[test]
    fn every_way_the_api_server_cannot_call_it_fails_and_says_ignore_is_silent() {
        let rejected = entry(Served::Rejected("UnknownIssuer".into()), Some(Ok(1)));
        let c = webhook("irsa-webhook", &Ok(Some(vec![rejected])));
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.evidence
                .contains("does not verify against the caBundle (UnknownIssuer)")
        );
        assert!(c.evidence.contains("admitted unmutated, silently"), "{c:?}");

        let no_endpoints = WebhookEntry {
            failure_policy: "Fail".into(),
            ..entry(Served::Verified, Some(Ok(0)))
        };
        let c = webhook("irsa-webhook", &Ok(Some(vec![no_endpoints])));
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.evidence
                .contains("no ready endpoints (failurePolicy Fail: pod creation is refused)"),
            "{c:?}"
        );

        let empty = WebhookEntry {
            ca_bundle: Err("is empty".into()),
            ..entry(Served::Verified, None)
        };
        let c = webhook("irsa-webhook", &Ok(Some(vec![empty])));
        assert_eq!(c.status, Status::Fail);
        assert!(c.evidence.contains("caBundle is empty"), "{c:?}");

        for missing in [Ok(None), Ok(Some(vec![]))] {
            let c = webhook("irsa-webhook", &missing);
            assert_eq!(c.status, Status::Fail);
            assert!(c.evidence.contains("irsa-webhook does not exist"), "{c:?}");
        }
    }

    #[test]
    fn what_cannot_be_checked_from_here_is_a_warning() {
        let c = webhook(
            "irsa-webhook",
            &Ok(Some(vec![entry(
                Served::Unreachable("dns".into()),
                Some(Err("forbidden".into())),
            )])),
        );
        assert_eq!(c.status, Status::Warn, "{c:?}");
        assert!(
            c.evidence.contains("not reachable from here")
                && c.evidence.contains("endpoints not checked (forbidden)")
        );
        let c = webhook("irsa-webhook", &Err("forbidden".into()));
        assert_eq!(c.status, Status::Warn);
    }

    #[test]
    fn the_dry_run_verdict() {
        let identities = Identities::default();
        let bare = json!({"metadata": {"name": "irsa-doctor-x"}, "spec": {"containers": [{"name": "app"}]}});
        let c = dry_run(
            "team-a",
            &sa(&[ROLE]),
            &cfg(),
            &identities,
            &DryRun::Created(bare.clone()),
        );
        assert_eq!(c.status, Status::Fail, "{c:?}");
        assert!(c.evidence.contains("came back unmutated"), "{c:?}");

        // What the webhook returns for it is what a mutated pod looks like.
        let m = mutate::mutate(
            &cfg(),
            &identities,
            "team-a",
            &sa(&[ROLE]),
            &bare,
            &mut rand::rng(),
        )
        .unwrap();
        let mut mutated = bare.clone();
        json_patch::patch(&mut mutated, &m.patch).unwrap();
        let c = dry_run(
            "team-a",
            &sa(&[ROLE]),
            &cfg(),
            &identities,
            &DryRun::Created(mutated),
        );
        assert_eq!(c.status, Status::Pass, "{c:?}");

        let c = dry_run(
            "team-a",
            &sa(&[]),
            &cfg(),
            &identities,
            &DryRun::Created(bare.clone()),
        );
        assert_eq!(c.status, Status::Skip, "no role, nothing to inject: {c:?}");

        // With the `--pod` pod's labels: opted out by the webhook's rule, left alone by design;
        // `irsa.dev/skip: "false"` opts nothing out, so the unmutated pod is the failure.
        for (labels, want) in [
            (json!({"irsa.dev/skip": "true"}), Status::Skip),
            (
                json!({"eks.amazonaws.com/skip-pod-identity-webhook": ""}),
                Status::Skip,
            ),
            (json!({"irsa.dev/skip": "false"}), Status::Fail),
            (
                json!({"eks.amazonaws.com/skip-pod-identity-webhook": "false"}),
                Status::Fail,
            ),
        ] {
            let mut labelled = bare.clone();
            labelled["metadata"]["labels"] = labels.clone();
            let c = dry_run(
                "team-a",
                &sa(&[ROLE]),
                &cfg(),
                &identities,
                &DryRun::Created(labelled),
            );
            assert_eq!(c.status, want, "{labels}: {c:?}");
        }

        let c = dry_run(
            "team-a",
            &sa(&[ROLE]),
            &cfg(),
            &identities,
            &DryRun::Refused("failed calling webhook".into()),
        );
        assert_eq!(c.status, Status::Fail);
        let c = dry_run(
            "team-a",
            &sa(&[ROLE]),
            &cfg(),
            &identities,
            &DryRun::Forbidden("cannot create pods".into()),
        );
        assert_eq!(c.status, Status::Warn);
    }
}
