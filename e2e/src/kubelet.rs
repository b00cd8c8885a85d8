//! A kubelet stand-in: the local control plane has no kubelet, so this does the two things a
//! kubelet does for a pod's AWS credentials, from the pod the API server *stored* (what
//! admission, and so the webhook, made of it):
//!
//! - every projected `serviceAccountToken` source of the pod's volumes is requested exactly as
//!   the kubelet requests it: a TokenRequest for the pod's ServiceAccount with the source's
//!   audience and `expirationSeconds`, bound to the pod (`boundObjectRef`: kind, name, uid),
//!   written to the source's `path` in a directory standing for the volume;
//! - a container's process runs with exactly the container's `env` (literal values; the
//!   stand-in resolves no `valueFrom`/`envFrom` and says so) and each projected volume
//!   bind-mounted at the container's `mountPath`, in a private mount namespace
//!   (`unshare --mount`, as root), so `AWS_WEB_IDENTITY_TOKEN_FILE` names a file that exists
//!   for that process only. The mount points are created on the host if missing (empty
//!   directories such as `/var/run/secrets/eks.amazonaws.com/serviceaccount`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::PostParams;
use serde_json::Value;

use crate::support::unique;

/// One container of a pod, its projected volumes written as the kubelet would.
pub struct Container {
    /// Holds one directory per projected volume; removed on drop.
    dir: PathBuf,
    /// (name, value) of the container's `env`, in order.
    pub env: Vec<(String, String)>,
    /// (host directory, the container's mountPath).
    mounts: Vec<(PathBuf, String)>,
    /// The tokens written, by the mountPath/path they sit at in the container.
    pub tokens: Vec<(String, String)>,
}

impl Container {
    /// Projects the tokens of `pod` (as stored) for its container `name`.
    pub async fn start(client: &kube::Client, pod: &Value, name: &str) -> Self {
        let ns = pod["metadata"]["namespace"].as_str().expect("a stored pod");
        let pod_name = pod["metadata"]["name"].as_str().unwrap();
        let uid = pod["metadata"]["uid"]
            .as_str()
            .expect("a stored pod has a uid");
        let sa = pod["spec"]["serviceAccountName"]
            .as_str()
            .unwrap_or("default");
        let container = pod["spec"]["containers"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == name))
            .unwrap_or_else(|| panic!("pod {ns}/{pod_name} has no container {name}"));
        let dir = crate::target_tmp().join(unique("kubelet"));
        let mut this = Self {
            dir,
            env: literal_env(container),
            mounts: Vec::new(),
            tokens: Vec::new(),
        };
        let empty = Vec::new();
        let volumes = pod["spec"]["volumes"].as_array().unwrap_or(&empty);
        let mounts = container["volumeMounts"].as_array().unwrap_or(&empty);
        for mount in mounts {
            let Some(volume) = volumes.iter().find(|v| v["name"] == mount["name"]) else {
                panic!("mount {mount} names no volume of pod {ns}/{pod_name}");
            };
            let Some(sources) = volume["projected"]["sources"].as_array() else {
                continue;
            };
            let host = this.dir.join(volume["name"].as_str().unwrap());
            std::fs::create_dir_all(&host).unwrap();
            let mount_path = mount["mountPath"].as_str().unwrap().to_string();
            for source in sources {
                let token_source = &source["serviceAccountToken"];
                if token_source.is_null() {
                    continue;
                }
                let token = request_token(client, ns, sa, pod_name, uid, token_source).await;
                let path = token_source["path"]
                    .as_str()
                    .expect("a token source has a path");
                std::fs::write(host.join(path), &token).unwrap();
                this.tokens.push((
                    format!("{}/{path}", mount_path.trim_end_matches('/')),
                    token,
                ));
            }
            this.mounts.push((host, mount_path));
        }
        this
    }

    /// The token the container finds at `path` (e.g. `AWS_WEB_IDENTITY_TOKEN_FILE`).
    pub fn token_at(&self, path: &str) -> &str {
        self.tokens
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, t)| t.as_str())
            .unwrap_or_else(|| panic!("no projected token at {path}: {:?}", self.paths()))
    }

    /// The same container with the token at `path` replaced by `token` (what a kubelet never
    /// writes: an expired or forged token, to see what STS makes of it).
    pub fn with_token(&self, path: &str, token: &str) -> Self {
        self.token_at(path);
        let dir = crate::target_tmp().join(unique("kubelet"));
        let mut mounts = Vec::new();
        for (host, mount_path) in &self.mounts {
            let copy = dir.join(host.file_name().unwrap());
            std::fs::create_dir_all(&copy).unwrap();
            for file in std::fs::read_dir(host).unwrap() {
                let file = file.unwrap();
                std::fs::copy(file.path(), copy.join(file.file_name())).unwrap();
            }
            if let Some(name) = path.strip_prefix(mount_path.trim_end_matches('/')) {
                std::fs::write(copy.join(name.trim_start_matches('/')), token).unwrap();
            }
            mounts.push((copy, mount_path.clone()));
        }
        let tokens = self
            .tokens
            .iter()
            .map(|(p, t)| {
                (
                    p.clone(),
                    if p == path {
                        token.to_string()
                    } else {
                        t.clone()
                    },
                )
            })
            .collect();
        Self {
            dir,
            env: self.env.clone(),
            mounts,
            tokens,
        }
    }

    fn paths(&self) -> Vec<&str> {
        self.tokens.iter().map(|(p, _)| p.as_str()).collect()
    }

    /// The value of the container's env var `name`.
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Runs `program args` as the container's process: exactly its env plus `extra` (the
    /// endpoint override), its projected volumes mounted where it says.
    pub fn run(&self, program: &Path, args: &[&str], extra: &[(&str, &str)]) -> Output {
        // The shell runs in the new mount namespace, mounts, then replaces itself with `env -i`,
        // which starts the program with nothing but the listed variables.
        const SCRIPT: &str = r#"n=$1; shift
while [ "$n" -gt 0 ]; do
  mkdir -p "$2" && mount --bind "$1" "$2" || exit 125
  shift 2; n=$((n - 1))
done
exec env -i "$@""#;
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            SCRIPT,
            "sh",
        ])
        .arg(self.mounts.len().to_string());
        for (host, path) in &self.mounts {
            cmd.arg(host).arg(path);
        }
        for (name, value) in &self.env {
            cmd.arg(format!("{name}={value}"));
        }
        for (name, value) in extra {
            cmd.arg(format!("{name}={value}"));
        }
        cmd.arg(program).args(args);
        let out = cmd
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "running unshare (util-linux) for {}: {e}",
                    program.display()
                )
            });
        assert_ne!(
            out.status.code(),
            Some(125),
            "the stand-in could not mount the pod's volumes (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The container's env as (name, value); anything but a literal value fails the test, since
/// the stand-in would otherwise run the process with another environment than the pod's.
fn literal_env(container: &Value) -> Vec<(String, String)> {
    assert!(
        container["envFrom"].is_null(),
        "the kubelet stand-in does not resolve envFrom: {container}"
    );
    container["env"]
        .as_array()
        .map(|env| {
            env.iter()
                .map(|e| {
                    let value = e["value"].as_str().unwrap_or_else(|| {
                        panic!("the kubelet stand-in resolves only literal env values: {e}")
                    });
                    (e["name"].as_str().unwrap().to_string(), value.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The kubelet's TokenRequest for one projected `serviceAccountToken` source.
pub async fn request_token(
    client: &kube::Client,
    ns: &str,
    sa: &str,
    pod: &str,
    uid: &str,
    source: &Value,
) -> String {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: source["audience"]
                .as_str()
                .map(|a| vec![a.to_string()])
                .unwrap_or_default(),
            expiration_seconds: source["expirationSeconds"].as_i64(),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.into()),
                uid: Some(uid.into()),
            }),
        },
        ..TokenRequest::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request(sa, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {ns}/{sa} bound to pod {pod}: {e}"))
        .status
        .expect("a TokenRequest answer has a status")
        .token
}
