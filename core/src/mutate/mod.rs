//! PURE: what the webhook injects into a Pod (docs/design.md §2.1–2.4), as a JSON patch. No I/O.
//!
//! The Pod stays raw JSON from input to patch: the engine only reads it and emits `add`
//! operations, so unknown fields survive, and a second run over its own output finds
//! nothing missing and returns an empty patch.

mod annotations;
pub mod config;
pub mod limits;
mod patch;
mod pod;
mod service_account;

use std::collections::BTreeMap;

use json_patch::Patch;
use rand::{Rng, RngExt};
use serde::Deserialize;
use serde_json::{Value, json};

use self::{
    annotations::Settings,
    config::{CC_JITTER_MIN, DEFAULT_EXPIRATION, TOKEN_FILE_NAME, TOKEN_VOLUME_NAME},
    patch::PatchBuilder,
    pod::{Container, PodView},
};
pub use self::{
    config::{
        ContainerCredentialsAccounts, ContainerCredentialsConfig, Identities, MutationConfig,
    },
    limits::TooLarge,
    pod::Pod,
    service_account::{Annotations, ServiceAccountInfo, relevant_annotations},
};

/// Pod label set in container-credentials mode.
pub const POD_IDENTITY_LABEL: &str = "eks.amazonaws.com/pod-identity";
/// Pod labels that opt a pod out; which values do is [`opted_out`]'s to say.
pub const SKIP_LABEL: &str = "irsa.dev/skip";
pub const EKS_SKIP_LABEL: &str = "eks.amazonaws.com/skip-pod-identity-webhook";
/// The variables that make a container "already configured" in IRSA mode, and in
/// container-credentials mode: a container with any of them carries credentials.
pub const IRSA_IDENTITY_ENV: [&str; 2] = ["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"];
pub const CC_IDENTITY_ENV: [&str; 2] = [
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];

/// The opt-out rule, the one the webhook, the controller's uninjected-pod watch and the doctor
/// all apply: the label that opts the pod out, or `None`. `irsa.dev/skip` opts out only when
/// `"true"`; the EKS label opts out with any value but `"false"` (EKS's own webhook
/// configuration skips a pod on the label's mere presence, so its users set it to anything).
/// No label selector can say "any value but false": the chart's objectSelector only
/// pre-filters this (docs/webhook.md), and the webhook decides.
pub fn opted_out(labels: &BTreeMap<String, String>) -> Option<&'static str> {
    if labels.get(SKIP_LABEL).is_some_and(|v| v == "true") {
        Some(SKIP_LABEL)
    } else if labels.get(EKS_SKIP_LABEL).is_some_and(|v| v != "false") {
        Some(EKS_SKIP_LABEL)
    } else {
        None
    }
}

/// The "already has credentials" rule of the controller's uninjected-pod watch and the doctor:
/// the pod has the token volume of either mode, or a container (init containers included)
/// with the identity variables of either mode. Either mode counts because neither judge knows
/// which one the webhook chose for the pod. `volumes`: the names of `spec.volumes`; `env`: the
/// names of every container's variables.
pub fn has_credentials<'a>(
    volumes: impl IntoIterator<Item = &'a str>,
    env: impl IntoIterator<Item = &'a str>,
) -> bool {
    const VOLUMES: [&str; 2] = [TOKEN_VOLUME_NAME, config::DEFAULT_CC_VOLUME_NAME];
    volumes.into_iter().any(|v| VOLUMES.contains(&v))
        || env
            .into_iter()
            .any(|e| IRSA_IDENTITY_ENV.contains(&e) || CC_IDENTITY_ENV.contains(&e))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing to inject (no role, opted out) — or everything was already there.
    None,
    Irsa,
    ContainerCredentials,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Irsa => "irsa",
            Mode::ContainerCredentials => "container-credentials",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WarningKind {
    InvalidRoleArn,
    InvalidExpiration,
    InvalidBoolean,
}

impl WarningKind {
    /// The Prometheus label.
    pub fn as_str(self) -> &'static str {
        match self {
            WarningKind::InvalidRoleArn => "invalid_role_arn",
            WarningKind::InvalidExpiration => "invalid_expiration",
            WarningKind::InvalidBoolean => "invalid_boolean",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub kind: WarningKind,
    pub message: String,
}

/// The object under review cannot be treated as a Pod; the webhook admits it unmutated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a usable Pod: {0}")]
pub struct NotAPod(pub String);

impl NotAPod {
    fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// Why the engine did not look at a Pod: the webhook admits it unmutated with a warning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    NotAPod(#[from] NotAPod),
    /// More than [`limits`] allow: also denied under `--strict`.
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    /// The mode that applied (`None` when the patch is empty).
    pub mode: Mode,
    /// Only `add` operations; empty when nothing changes.
    pub patch: Patch,
    pub warnings: Vec<Warning>,
    /// Set in `strict` mode when there are warnings: the caller must deny the pod.
    pub denial: Option<String>,
}

/// Computes what to add to `pod` (raw JSON, as in the AdmissionReview) created in `namespace`
/// under the ServiceAccount `sa`. `rng` draws the container-credentials expiration jitter.
pub fn mutate<R: Rng + ?Sized>(
    cfg: &MutationConfig,
    identities: &(impl ContainerCredentialsAccounts + ?Sized),
    namespace: &str,
    sa: &ServiceAccountInfo,
    pod: &Value,
    rng: &mut R,
) -> Result<Mutation, Refusal> {
    // A `Value` has no duplicate keys, the one thing the typed view refuses to parse.
    let pod = Pod::deserialize(pod).map_err(|err| NotAPod::new(err.to_string()))?;
    mutate_pod(cfg, identities, namespace, sa, &pod, rng)
}

/// [`mutate`] of a [`Pod`] parsed straight from the object's JSON (the webhook's way: only the
/// fields the engine reads are built).
pub fn mutate_pod<R: Rng + ?Sized>(
    cfg: &MutationConfig,
    identities: &(impl ContainerCredentialsAccounts + ?Sized),
    namespace: &str,
    sa: &ServiceAccountInfo,
    pod: &Pod,
    rng: &mut R,
) -> Result<Mutation, Refusal> {
    let view = PodView::new(pod)?;
    let labels = view.labels();
    let mut warnings = Vec::new();
    if opted_out(labels).is_some() {
        return Ok(Mutation::unchanged(warnings));
    }

    let pod_annotations = view.annotations();
    let skip_key = format!("{}/skip-containers", cfg.annotation_prefix);
    if let Some(skip) = pod_annotations.get(&skip_key)
        && skip.len() > limits::MAX_SKIP_CONTAINERS_BYTES
    {
        return Err(TooLarge::SkipContainers {
            key: skip_key,
            bytes: skip.len(),
        }
        .into());
    }
    let settings = annotations::resolve(
        cfg,
        sa,
        &view.display_name(),
        pod_annotations,
        &mut warnings,
    );

    let plan = if identities.contains(namespace, &sa.name) {
        Plan::container_credentials(cfg, &settings, &view, rng)
    } else if let Some(role_arn) = &settings.role_arn {
        Plan::irsa(cfg, &settings, &view, role_arn)
    } else {
        // Nothing is injected, so problems in the other annotations do not matter yet.
        return Ok(Mutation::unchanged(Vec::new()));
    };

    let patch = plan.patch(&view, &settings, labels)?;
    let denial = (cfg.strict && !warnings.is_empty()).then(|| {
        let reasons: Vec<&str> = warnings.iter().map(|w| w.message.as_str()).collect();
        format!("denied by irsa (--strict): {}", reasons.join("; "))
    });
    Ok(Mutation {
        mode: if patch.0.is_empty() {
            Mode::None
        } else {
            plan.mode
        },
        patch,
        warnings,
        denial,
    })
}

impl Mutation {
    fn unchanged(warnings: Vec<Warning>) -> Self {
        Self {
            mode: Mode::None,
            patch: Patch(Vec::new()),
            warnings,
            denial: None,
        }
    }
}

/// What one mode injects; the per-container rules are the same for both modes.
struct Plan<'a> {
    mode: Mode,
    volume_name: &'a str,
    volume: Value,
    mount_path: &'a str,
    /// The variables that make a container "already configured" in this mode.
    identity_names: [&'static str; 2],
    identity_env: Vec<(&'static str, String)>,
    /// A pod label this mode sets.
    label: Option<(&'static str, &'static str)>,
}

impl<'a> Plan<'a> {
    fn irsa(cfg: &'a MutationConfig, s: &Settings, view: &PodView<'_>, role_arn: &str) -> Self {
        let mut identity_env = vec![
            ("AWS_ROLE_ARN", role_arn.to_string()),
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                token_file(&cfg.mount_path, TOKEN_FILE_NAME, view.is_windows()),
            ),
        ];
        if let Some(name) = &s.session_name {
            identity_env.push(("AWS_ROLE_SESSION_NAME", name.clone()));
        }
        Self {
            mode: Mode::Irsa,
            volume_name: TOKEN_VOLUME_NAME,
            volume: token_volume(
                TOKEN_VOLUME_NAME,
                &s.audience,
                s.expiration,
                TOKEN_FILE_NAME,
            ),
            mount_path: &cfg.mount_path,
            identity_names: IRSA_IDENTITY_ENV,
            identity_env,
            label: None,
        }
    }

    fn container_credentials<R: Rng + ?Sized>(
        cfg: &'a MutationConfig,
        s: &Settings,
        view: &PodView<'_>,
        rng: &mut R,
    ) -> Self {
        let cc = &cfg.container_credentials;
        let expiration = if s.expiration == DEFAULT_EXPIRATION {
            rng.random_range(CC_JITTER_MIN..=DEFAULT_EXPIRATION)
        } else {
            s.expiration
        };
        Self {
            mode: Mode::ContainerCredentials,
            volume_name: &cc.volume_name,
            volume: token_volume(&cc.volume_name, &cc.audience, expiration, &cc.token_path),
            mount_path: &cc.mount_path,
            identity_names: CC_IDENTITY_ENV,
            identity_env: vec![
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", cc.full_uri.clone()),
                (
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                    token_file(&cc.mount_path, &cc.token_path, view.is_windows()),
                ),
            ],
            label: Some((POD_IDENTITY_LABEL, "enabled")),
        }
    }

    fn patch(
        &self,
        view: &PodView<'_>,
        s: &Settings,
        labels: &BTreeMap<String, String>,
    ) -> Result<Patch, TooLarge> {
        self.check_patch_size(view, s)?;
        let mut patch = PatchBuilder::default();

        if let Some((key, value)) = self.label
            && !labels.contains_key(key)
        {
            match view.metadata.and_then(|m| m.labels.get()) {
                Some(_) => patch.add(["metadata", "labels", key], json!(value)),
                _ if view.metadata.is_some() => {
                    patch.add(["metadata", "labels"], json!({ key: value }))
                }
                _ => patch.add(["metadata"], json!({ "labels": { key: value } })),
            }
        }

        if !view.has_volume(self.volume_name) {
            if !view.has_volumes() {
                patch.add(["spec", "volumes"], json!([self.volume]));
            } else {
                // First in the list, like the reference webhook.
                patch.add(["spec", "volumes", "0"], self.volume.clone());
            }
        }

        for (list, i, container) in view.containers() {
            if s.skip_containers.contains(container.name()) {
                continue;
            }
            let index = i.to_string();
            let base = ["spec", list, index.as_str()];
            let (env, mounts) = self.container_additions(container, s);
            patch.append(
                base.iter().copied().chain(["env"]),
                container.env.get().is_some(),
                env,
            );
            patch.append(
                base.iter().copied().chain(["volumeMounts"]),
                container.volume_mounts.get().is_some(),
                mounts,
            );
        }
        Ok(patch.build())
    }

    /// Refuses before building when the patch could exceed [`limits::MAX_PATCH_BYTES`]: every
    /// container that is not skipped may get the full additions of a bare container.
    fn check_patch_size(&self, view: &PodView<'_>, s: &Settings) -> Result<(), TooLarge> {
        let (env, mounts) = self.container_additions(&Container::default(), s);
        let size = |values: &[Value]| {
            values.iter().fold(0usize, |sum, v| {
                let bytes = serde_json::to_string(v).map_or(0, |v| v.len());
                sum.saturating_add(bytes)
                    .saturating_add(limits::OP_OVERHEAD)
            })
        };
        let per_container = size(&env).saturating_add(size(&mounts));
        let targets = view
            .containers()
            .filter(|(_, _, c)| !s.skip_containers.contains(c.name()))
            .count();
        let bound = per_container
            .saturating_mul(targets)
            .saturating_add(size(std::slice::from_ref(&self.volume)))
            .saturating_add(limits::OP_OVERHEAD);
        if bound > limits::MAX_PATCH_BYTES {
            return Err(TooLarge::Patch(bound));
        }
        Ok(())
    }

    /// The env vars and mounts to append to one container (docs/design.md §2.2).
    fn container_additions(&self, container: &Container, s: &Settings) -> (Vec<Value>, Vec<Value>) {
        let env = pod::names(&container.env);
        let has = |n: &str| env.contains(&n);
        let identity = self.identity_names.iter().any(|n| has(n));
        let region = has("AWS_REGION") || has("AWS_DEFAULT_REGION");
        let sts = has("AWS_STS_REGIONAL_ENDPOINTS");
        if identity && region && sts {
            return (Vec::new(), Vec::new());
        }

        let mut add = Vec::new();
        if !sts && s.regional_sts {
            add.push(env_var("AWS_STS_REGIONAL_ENDPOINTS", "regional"));
        }
        if let (false, Some(r)) = (region, &s.region) {
            add.push(env_var("AWS_DEFAULT_REGION", r));
            add.push(env_var("AWS_REGION", r));
        }
        if !identity {
            for (name, value) in &self.identity_env {
                // Extras beyond the pair (session name) still never overwrite.
                if !has(name) {
                    add.push(env_var(name, value));
                }
            }
        }

        let mounts = if pod::names(&container.volume_mounts).contains(&self.volume_name) {
            Vec::new()
        } else {
            vec![json!({
                "name": self.volume_name,
                "mountPath": self.mount_path,
                "readOnly": true,
            })]
        };
        (add, mounts)
    }
}

fn env_var(name: &str, value: &str) -> Value {
    json!({ "name": name, "value": value })
}

fn token_volume(name: &str, audience: &str, expiration: i64, path: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "sources": [{
                "serviceAccountToken": {
                    "audience": audience,
                    "expirationSeconds": expiration,
                    "path": path,
                }
            }]
        }
    })
}

/// `<mount>/<file>`; on Windows nodes the kubelet maps the mount under `C:` with backslashes.
fn token_file(mount_path: &str, file: &str, windows: bool) -> String {
    let path = format!("{}/{}", mount_path.trim_end_matches('/'), file);
    if windows {
        format!("C:{}", path.replace('/', "\\"))
    } else {
        path
    }
}

/// The ServiceAccount a pod runs as (`default` when unset, as the API server does).
pub fn pod_service_account_name(pod: &Value) -> &str {
    pod.get("spec")
        .and_then(|s| s.get("serviceAccountName"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_SERVICE_ACCOUNT)
}

/// What a pod without `spec.serviceAccountName` runs as.
pub(crate) const DEFAULT_SERVICE_ACCOUNT: &str = "default";

#[cfg(test)]
mod tests;
