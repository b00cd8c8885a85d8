//! The Pod as the engine reads it: a typed view of only the fields it looks at, parsed straight
//! from the review's JSON. Every other field (probes, resources, env values, new Kubernetes
//! fields, vendor extensions) is skipped by the parser without being built, and the Pod is never
//! re-serialized, so what the engine does not read cannot be changed by it.
//!
//! Each field read keeps its JSON type ([`Shaped`]) instead of failing the parse, so that a
//! field of the wrong type is refused with the message naming it ([`PodView::new`]) rather than
//! with a serde error, exactly as when the Pod was read from a `serde_json::Value`.

use std::{collections::BTreeMap, marker::PhantomData};

use serde::{
    Deserialize, Deserializer,
    de::{
        self, IgnoredAny, MapAccess, SeqAccess,
        value::{MapAccessDeserializer, SeqAccessDeserializer},
    },
};
use serde_json::Value;

use super::{DEFAULT_SERVICE_ACCOUNT, NotAPod, Refusal, limits::check_containers};

/// What the engine reads of a Pod. Parse it from the object's JSON (`serde_json::from_str`) or
/// from a `serde_json::Value` (`Pod::deserialize(&value)`); a JSON object with a duplicate key
/// among the fields read is a parse error (the API server never sends one).
#[derive(Debug, Default, Deserialize)]
#[serde(transparent)]
pub struct Pod(Shaped<PodFields>);

impl Pod {
    /// `metadata.namespace`, when set.
    pub fn namespace(&self) -> Option<&str> {
        self.metadata()
            .and_then(|m| m.namespace.get())
            .map(String::as_str)
            .filter(|ns| !ns.is_empty())
    }

    /// The ServiceAccount the pod runs as (`default` when unset, as the API server does); the
    /// same as [`super::pod_service_account_name`] of the pod's `Value`.
    pub fn service_account_name(&self) -> &str {
        self.spec()
            .and_then(|s| s.service_account_name.get())
            .map(String::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_SERVICE_ACCOUNT)
    }

    /// `initContainers` and `containers` together; 0 when `spec` is not an object. The same
    /// count as [`super::limits::check_raw`]'s for big objects.
    pub fn container_count(&self) -> usize {
        self.spec().map_or(0, Spec::container_count)
    }

    /// The labels with a string value, as the webhook reads them (for [`super::opted_out`]).
    pub fn labels(&self) -> &BTreeMap<String, String> {
        string_map(self.metadata().map(|m| &m.labels))
    }

    /// The names of `spec.volumes` (for [`super::has_credentials`]).
    pub fn volume_names(&self) -> Vec<&str> {
        self.spec().map_or_else(Vec::new, |s| names(&s.volumes))
    }

    /// The names of the variables of every init container and container (for
    /// [`super::has_credentials`]).
    pub fn env_names(&self) -> Vec<&str> {
        let Some(spec) = self.spec() else {
            return Vec::new();
        };
        spec.container_lists()
            .into_iter()
            .flat_map(|(_, list)| items(list))
            .filter_map(Shaped::get)
            .flat_map(|c| names(&c.env))
            .collect()
    }

    fn metadata(&self) -> Option<&Metadata> {
        self.0.get().and_then(|p| p.metadata.get())
    }

    fn spec(&self) -> Option<&Spec> {
        self.0.get().and_then(|p| p.spec.get())
    }
}

/// A field the engine reads, with the JSON type it was found with.
#[derive(Debug, Default)]
pub(crate) enum Shaped<T> {
    /// Absent or `null`.
    #[default]
    Null,
    /// Of the type the engine reads.
    Is(T),
    /// Of any other JSON type.
    Other,
}

impl<T> Shaped<T> {
    pub fn get(&self) -> Option<&T> {
        match self {
            Shaped::Is(value) => Some(value),
            Shaped::Null | Shaped::Other => None,
        }
    }
}

/// The JSON type a [`Shaped`] field is read as; the other types are skipped unbuilt.
pub(crate) trait Expect<'de>: Sized {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn from_seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn from_str(_: &str) -> Option<Self> {
        None
    }
}

impl<'de, T: Expect<'de>> Deserialize<'de> for Shaped<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor<T>(PhantomData<T>);
        impl<'de, T: Expect<'de>> de::Visitor<'de> for Visitor<T> {
            type Value = Shaped<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Shaped::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Shaped::Null)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Ok(T::from_map(map)?.map_or(Shaped::Other, Shaped::Is))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Ok(T::from_seq(seq)?.map_or(Shaped::Other, Shaped::Is))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(T::from_str(v).map_or(Shaped::Other, Shaped::Is))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Shaped::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Shaped::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Shaped::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Shaped::Other)
            }
        }
        d.deserialize_any(Visitor(PhantomData))
    }
}

impl Expect<'_> for String {
    fn from_str(v: &str) -> Option<Self> {
        Some(v.to_owned())
    }
}

impl<'de, T: Deserialize<'de>> Expect<'de> for Vec<T> {
    fn from_seq<A: SeqAccess<'de>>(seq: A) -> Result<Option<Self>, A::Error> {
        Vec::deserialize(SeqAccessDeserializer::new(seq)).map(Some)
    }
}

/// The string entries of an object (labels, annotations, nodeSelector); others are left out.
#[derive(Debug, Default)]
pub(crate) struct StringMap(BTreeMap<String, String>);

impl<'de> Expect<'de> for StringMap {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        let mut strings = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            // A repeated key counts once, with its last value, as in a `serde_json::Value`.
            match map.next_value::<Shaped<String>>()? {
                Shaped::Is(value) => strings.insert(key, value),
                Shaped::Null | Shaped::Other => strings.remove(&key),
            };
        }
        Ok(Some(Self(strings)))
    }
}

/// Objects: the derived `Deserialize` of their fields.
macro_rules! objects {
    ($($ty:ty),*) => {$(
        impl<'de> Expect<'de> for $ty {
            fn from_map<A: MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error> {
                <$ty>::deserialize(MapAccessDeserializer::new(map)).map(Some)
            }
        }
    )*};
}
objects!(
    PodFields,
    Metadata,
    Spec,
    Container,
    Named,
    Affinity,
    NodeAffinity,
    NodeSelector,
    NodeSelectorTerm,
    Requirement
);

/// `kind` as written, kept whole only to be quoted when it is not `"Pod"`.
#[derive(Debug, Default)]
enum Kind {
    #[default]
    Absent,
    Is(Value),
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(Kind::Is)
    }
}

#[derive(Debug, Default, Deserialize)]
struct PodFields {
    #[serde(default)]
    kind: Kind,
    #[serde(default)]
    metadata: Shaped<Metadata>,
    #[serde(default)]
    spec: Shaped<Spec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Metadata {
    #[serde(default)]
    name: Shaped<String>,
    #[serde(default)]
    generate_name: Shaped<String>,
    #[serde(default)]
    namespace: Shaped<String>,
    #[serde(default)]
    pub labels: Shaped<StringMap>,
    #[serde(default)]
    annotations: Shaped<StringMap>,
}

type List<T> = Shaped<Vec<Shaped<T>>>;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Spec {
    #[serde(default)]
    service_account_name: Shaped<String>,
    #[serde(default)]
    init_containers: List<Container>,
    #[serde(default)]
    containers: List<Container>,
    #[serde(default)]
    volumes: List<Named>,
    #[serde(default)]
    node_selector: Shaped<StringMap>,
    #[serde(default)]
    affinity: Shaped<Affinity>,
}

impl Spec {
    /// The container lists the webhook injects into, in patch order, with their JSON keys.
    /// Ephemeral containers are never touched: they cannot get new volume mounts after the pod
    /// exists.
    fn container_lists(&self) -> [(&'static str, &List<Container>); 2] {
        [
            ("initContainers", &self.init_containers),
            ("containers", &self.containers),
        ]
    }

    fn container_count(&self) -> usize {
        self.container_lists()
            .iter()
            .map(|(_, list)| items(list).len())
            .sum()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Container {
    #[serde(default)]
    name: Shaped<String>,
    #[serde(default)]
    pub env: List<Named>,
    #[serde(default)]
    pub volume_mounts: List<Named>,
}

impl Container {
    /// The name, `""` when unset.
    pub fn name(&self) -> &str {
        self.name.get().map_or("", String::as_str)
    }
}

/// An entry of a list whose items the engine knows by name (env, volumeMounts, volumes).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Named {
    #[serde(default)]
    name: Shaped<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Affinity {
    #[serde(default)]
    node_affinity: Shaped<NodeAffinity>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeAffinity {
    #[serde(default)]
    required_during_scheduling_ignored_during_execution: Shaped<NodeSelector>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeSelector {
    #[serde(default)]
    node_selector_terms: List<NodeSelectorTerm>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeSelectorTerm {
    #[serde(default)]
    match_expressions: List<Requirement>,
}

#[derive(Debug, Default, Deserialize)]
struct Requirement {
    #[serde(default)]
    key: Shaped<String>,
    #[serde(default)]
    operator: Shaped<String>,
    #[serde(default)]
    values: List<String>,
}

/// A Pod whose shape has been checked enough that patches built against it apply.
pub(crate) struct PodView<'a> {
    pub metadata: Option<&'a Metadata>,
    pub spec: &'a Spec,
}

impl<'a> PodView<'a> {
    pub fn new(pod: &'a Pod) -> Result<Self, Refusal> {
        let fields = pod
            .0
            .get()
            .ok_or_else(|| NotAPod::new("the object is not a JSON object"))?;
        if let Kind::Is(kind) = &fields.kind
            && kind != "Pod"
        {
            return Err(NotAPod::new(format!("kind is {kind}, not \"Pod\"")).into());
        }
        let metadata = match &fields.metadata {
            Shaped::Null => None,
            Shaped::Is(m) => Some(m),
            Shaped::Other => return Err(NotAPod::new("metadata is not an object").into()),
        };
        let spec = fields
            .spec
            .get()
            .ok_or_else(|| NotAPod::new("spec is missing or not an object"))?;
        if spec.containers.get().is_none() {
            return Err(NotAPod::new("spec.containers is missing or not a list").into());
        }
        check_list(&spec.volumes, "spec.volumes")?;
        check_containers(spec.container_count())?;
        for (list, containers) in spec.container_lists() {
            check_list(containers, &format!("spec.{list}"))?;
            for (i, c) in items(containers).iter().enumerate() {
                let c = c
                    .get()
                    .ok_or_else(|| NotAPod::new(format!("spec.{list}[{i}] is not an object")))?;
                check_list(&c.env, &format!("spec.{list}[{i}].env"))?;
                check_list(&c.volume_mounts, &format!("spec.{list}[{i}].volumeMounts"))?;
            }
        }
        Ok(Self { metadata, spec })
    }

    /// `name`, else `generateName*` (pods of a ReplicaSet have no name at admission).
    pub fn display_name(&self) -> String {
        let field = |f: fn(&Metadata) -> &Shaped<String>| {
            self.metadata
                .and_then(|m| f(m).get())
                .filter(|s| !s.is_empty())
        };
        match (field(|m| &m.name), field(|m| &m.generate_name)) {
            (Some(name), _) => name.to_string(),
            (None, Some(prefix)) => format!("{prefix}*"),
            (None, None) => "<unnamed>".to_string(),
        }
    }

    pub fn labels(&self) -> &'a BTreeMap<String, String> {
        string_map(self.metadata.map(|m| &m.labels))
    }

    pub fn annotations(&self) -> &'a BTreeMap<String, String> {
        string_map(self.metadata.map(|m| &m.annotations))
    }

    /// Whether the pod has a volume of this name.
    pub fn has_volume(&self, name: &str) -> bool {
        names(&self.spec.volumes).contains(&name)
    }

    /// Whether `spec.volumes` has an entry (so that a new one goes first in the list).
    pub fn has_volumes(&self) -> bool {
        !items(&self.spec.volumes).is_empty()
    }

    /// The containers of both lists with their list's JSON key and their index in it: all of
    /// them, as [`PodView::new`] checked that every item is an object.
    pub fn containers(&self) -> impl Iterator<Item = (&'static str, usize, &'a Container)> {
        self.spec
            .container_lists()
            .into_iter()
            .flat_map(|(list, containers)| {
                items(containers)
                    .iter()
                    .enumerate()
                    .filter_map(move |(i, c)| c.get().map(|c| (list, i, c)))
            })
    }

    /// True when every node this pod may run on is a Windows node.
    pub fn is_windows(&self) -> bool {
        const OS_LABELS: [&str; 2] = ["kubernetes.io/os", "beta.kubernetes.io/os"];
        let node_selector = string_map(Some(&self.spec.node_selector));
        if OS_LABELS
            .iter()
            .any(|l| node_selector.get(*l).map(String::as_str) == Some("windows"))
        {
            return true;
        }
        let terms = self
            .spec
            .affinity
            .get()
            .and_then(|a| a.node_affinity.get())
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.get())
            .map_or(&[][..], |r| items(&r.node_selector_terms));
        // Terms are ORed: the pod is Windows-only if every term pins the OS to windows.
        !terms.is_empty()
            && terms.iter().all(|term| {
                let expressions = term.get().map_or(&[][..], |t| items(&t.match_expressions));
                expressions.iter().filter_map(Shaped::get).any(|expr| {
                    let key = expr.key.get().map_or("", String::as_str);
                    let values = items(&expr.values);
                    OS_LABELS.contains(&key)
                        && expr.operator.get().map(String::as_str) == Some("In")
                        && !values.is_empty()
                        && values
                            .iter()
                            .all(|v| v.get().is_some_and(|v| v == "windows"))
                })
            })
    }
}

/// The names of a list's entries (entries without a name are ignored).
pub(crate) fn names(list: &List<Named>) -> Vec<&str> {
    items(list)
        .iter()
        .filter_map(|e| e.get().and_then(|e| e.name.get()))
        .map(String::as_str)
        .collect()
}

fn items<T>(list: &Shaped<Vec<T>>) -> &[T] {
    list.get().map_or(&[], Vec::as_slice)
}

fn string_map(map: Option<&Shaped<StringMap>>) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    map.and_then(Shaped::get).map_or(&EMPTY, |m| &m.0)
}

/// Absent and `null` are fine (a patch `add` creates the list); anything but a list is not.
fn check_list<T>(list: &Shaped<T>, what: &str) -> Result<(), NotAPod> {
    match list {
        Shaped::Null | Shaped::Is(_) => Ok(()),
        Shaped::Other => Err(NotAPod::new(format!("{what} is not a list"))),
    }
}
