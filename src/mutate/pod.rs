//! Read-only views of a Pod kept as raw JSON, so that fields this crate does not know (new
//! Kubernetes fields, vendor extensions) are never parsed away and never re-serialized.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{
    NotAPod, Refusal,
    limits::{MAX_CONTAINERS, TooLarge},
};

/// The container lists the webhook injects into, in patch order. Ephemeral containers are
/// never touched: they cannot get new volume mounts after the pod exists.
pub(crate) const CONTAINER_LISTS: [&str; 2] = ["initContainers", "containers"];

/// A Pod whose shape has been checked enough that patches built against it apply.
pub(crate) struct PodView<'a> {
    pub metadata: Option<&'a Map<String, Value>>,
    pub spec: &'a Map<String, Value>,
}

impl<'a> PodView<'a> {
    pub fn new(pod: &'a Value) -> Result<Self, Refusal> {
        let obj = pod
            .as_object()
            .ok_or_else(|| NotAPod::new("the object is not a JSON object"))?;
        if let Some(kind) = obj.get("kind")
            && kind != "Pod"
        {
            return Err(NotAPod::new(format!("kind is {kind}, not \"Pod\"")).into());
        }
        let metadata = match obj.get("metadata") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => return Err(NotAPod::new("metadata is not an object").into()),
        };
        let spec = obj
            .get("spec")
            .and_then(Value::as_object)
            .ok_or_else(|| NotAPod::new("spec is missing or not an object"))?;
        match spec.get("containers") {
            Some(Value::Array(_)) => {}
            _ => return Err(NotAPod::new("spec.containers is missing or not a list").into()),
        }
        check_list(spec, "volumes", "spec.volumes")?;
        let containers = CONTAINER_LISTS
            .iter()
            .map(|list| items(spec.get(*list)).len())
            .sum::<usize>();
        if containers > MAX_CONTAINERS {
            return Err(TooLarge::Containers(containers).into());
        }
        for list in CONTAINER_LISTS {
            check_list(spec, list, &format!("spec.{list}"))?;
            for (i, c) in items(spec.get(list)).iter().enumerate() {
                let c = c
                    .as_object()
                    .ok_or_else(|| NotAPod::new(format!("spec.{list}[{i}] is not an object")))?;
                check_list(c, "env", &format!("spec.{list}[{i}].env"))?;
                check_list(c, "volumeMounts", &format!("spec.{list}[{i}].volumeMounts"))?;
            }
        }
        Ok(Self { metadata, spec })
    }

    /// `name`, else `generateName*` (pods of a ReplicaSet have no name at admission).
    pub fn display_name(&self) -> String {
        let field = |k| {
            self.metadata
                .and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        match (field("name"), field("generateName")) {
            (Some(name), _) => name.to_string(),
            (None, Some(prefix)) => format!("{prefix}*"),
            (None, None) => "<unnamed>".to_string(),
        }
    }

    pub fn string_map(&self, key: &str) -> BTreeMap<String, String> {
        string_map(self.metadata.and_then(|m| m.get(key)))
    }

    pub fn list(&self, key: &str) -> &'a [Value] {
        items(self.spec.get(key))
    }

    /// True when every node this pod may run on is a Windows node.
    pub fn is_windows(&self) -> bool {
        const OS_LABELS: [&str; 2] = ["kubernetes.io/os", "beta.kubernetes.io/os"];
        let node_selector = string_map(self.spec.get("nodeSelector"));
        if OS_LABELS
            .iter()
            .any(|l| node_selector.get(*l).map(String::as_str) == Some("windows"))
        {
            return true;
        }
        let terms = self
            .spec
            .get("affinity")
            .and_then(|a| a.get("nodeAffinity"))
            .and_then(|a| a.get("requiredDuringSchedulingIgnoredDuringExecution"))
            .and_then(|r| r.get("nodeSelectorTerms"));
        let terms = items(terms);
        // Terms are ORed: the pod is Windows-only if every term pins the OS to windows.
        !terms.is_empty()
            && terms.iter().all(|term| {
                items(term.get("matchExpressions")).iter().any(|expr| {
                    let key = expr.get("key").and_then(Value::as_str).unwrap_or("");
                    let values = items(expr.get("values"));
                    OS_LABELS.contains(&key)
                        && expr.get("operator").and_then(Value::as_str) == Some("In")
                        && !values.is_empty()
                        && values.iter().all(|v| v == "windows")
                })
            })
    }
}

/// The names of a container's `env` entries (entries without a name are ignored).
pub(crate) fn names<'a>(container: &'a Value, list: &str) -> Vec<&'a str> {
    items(container.get(list))
        .iter()
        .filter_map(|e| e.get("name").and_then(Value::as_str))
        .collect()
}

pub(crate) fn items(v: Option<&Value>) -> &[Value] {
    match v {
        Some(Value::Array(a)) => a,
        _ => &[],
    }
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Absent and `null` are fine (a patch `add` creates the list); anything but a list is not.
fn check_list(obj: &Map<String, Value>, key: &str, what: &str) -> Result<(), NotAPod> {
    match obj.get(key) {
        None | Some(Value::Null) | Some(Value::Array(_)) => Ok(()),
        Some(_) => Err(NotAPod::new(format!("{what} is not a list"))),
    }
}
