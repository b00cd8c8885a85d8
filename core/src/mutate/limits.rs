//! How much one Pod may cost: the engine refuses work whose size the API server would never
//! store, before spending memory on it, so a single review has a bounded price.
//!
//! The numbers are generous for real pods and small against a webhook's memory limit:
//! - the object: the API server refuses request bodies over 3 MiB and etcd refuses objects
//!   over 1.5 MiB, so a bigger Pod can never be created, whatever the webhook answers;
//! - containers: Kubernetes has no hard limit, real pods have a handful and the largest seen
//!   in the wild a few hundred; each one costs a few hundred bytes of patch;
//! - `skip-containers`: at most one container name (63 bytes) per container;
//! - the patch: what is added must fit, with the pod, under etcd's 1.5 MiB.

use serde::{Deserialize, Deserializer, de::IgnoredAny};

/// The largest object (the Pod's JSON in the review) the webhook parses.
pub const MAX_OBJECT_BYTES: usize = 3 * 1024 * 1024;
/// The most `initContainers` + `containers` the webhook injects into.
pub const MAX_CONTAINERS: usize = 1000;
/// The longest `skip-containers` annotation value the webhook reads.
pub const MAX_SKIP_CONTAINERS_BYTES: usize = 64 * 1024;
/// The largest JSON patch the webhook returns (before base64).
pub const MAX_PATCH_BYTES: usize = 2 * 1024 * 1024;

/// Bytes a patch operation adds around its value at most:
/// `{"op":"add","path":"/spec/initContainers/999/volumeMounts/-","value":},`
pub(crate) const OP_OVERHEAD: usize = 72;

/// The Pod is bigger than irsa handles; the webhook admits it unmutated with a warning (the
/// API server refuses most such pods anyway), or denies it under `--strict`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TooLarge {
    #[error("the object is {0} bytes, more than the {MAX_OBJECT_BYTES} bytes irsa reads")]
    Object(usize),
    #[error(
        "the pod has {0} containers and init containers, more than the {MAX_CONTAINERS} irsa \
         injects into"
    )]
    Containers(usize),
    #[error(
        "annotation {key} is {bytes} bytes, more than the {MAX_SKIP_CONTAINERS_BYTES} bytes irsa \
         reads"
    )]
    SkipContainers { key: String, bytes: usize },
    #[error(
        "the patch would be up to {0} bytes, more than the {MAX_PATCH_BYTES} bytes irsa returns"
    )]
    Patch(usize),
}

impl TooLarge {
    /// The Prometheus label of the warning.
    pub fn as_str(&self) -> &'static str {
        "too_large"
    }
}

/// Objects up to this size have their containers counted after the parse
/// ([`crate::mutate::Pod::container_count`]) rather than in a scan of their own before it: even
/// 64 KiB of `{},{},...` gives a typed view of a few MiB at most, and this saves ordinary pods
/// a second pass over their JSON.
pub const COUNT_AFTER_PARSE_BYTES: usize = 64 * 1024;

/// The cheap check on the object's JSON before it is parsed: its size and, for objects over
/// [`COUNT_AFTER_PARSE_BYTES`] whose shape is readable, its container count (counted without
/// building anything). A shape that does not read (`spec` not an object...) passes: the engine
/// refuses it later.
pub fn check_raw(object_json: &str) -> Result<(), TooLarge> {
    if object_json.len() > MAX_OBJECT_BYTES {
        return Err(TooLarge::Object(object_json.len()));
    }
    if object_json.len() <= COUNT_AFTER_PARSE_BYTES {
        return Ok(());
    }
    match serde_json::from_str::<Shape>(object_json) {
        Ok(shape) => check_containers(
            shape
                .spec
                .containers
                .0
                .saturating_add(shape.spec.init_containers.0),
        ),
        Err(_) => Ok(()),
    }
}

/// At most [`MAX_CONTAINERS`] containers and init containers together.
pub fn check_containers(containers: usize) -> Result<(), TooLarge> {
    if containers > MAX_CONTAINERS {
        return Err(TooLarge::Containers(containers));
    }
    Ok(())
}

#[derive(Deserialize)]
struct Shape {
    #[serde(default)]
    spec: SpecShape,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecShape {
    #[serde(default)]
    containers: Count,
    #[serde(default)]
    init_containers: Count,
}

/// The length of a list, read without keeping its items; 0 for anything else.
#[derive(Default)]
struct Count(usize);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Count;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Count, A::Error> {
                let mut n = 0usize;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n = n.saturating_add(1);
                }
                Ok(Count(n))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Count, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Count(0))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Count, E> {
                Ok(Count(0))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Count, E> {
                Ok(Count(0))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Count, E> {
                Ok(Count(0))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Count, E> {
                Ok(Count(0))
            }
            fn visit_str<E>(self, _: &str) -> Result<Count, E> {
                Ok(Count(0))
            }
            fn visit_unit<E>(self) -> Result<Count, E> {
                Ok(Count(0))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pod of `containers` + `init` containers, padded over [`COUNT_AFTER_PARSE_BYTES`].
    fn pod(containers: usize, init: usize) -> String {
        let c = |n| vec![serde_json::json!({"name": "c", "env": []}); n];
        let pad = "p".repeat(COUNT_AFTER_PARSE_BYTES);
        serde_json::json!({"metadata": {"annotations": {"pad": pad}},
            "spec": {"containers": c(containers), "initContainers": c(init)}})
        .to_string()
    }

    #[test]
    fn counts_containers_and_init_containers_together() {
        assert_eq!(check_raw(&pod(MAX_CONTAINERS - 1, 1)), Ok(()));
        assert_eq!(
            check_raw(&pod(MAX_CONTAINERS, 1)),
            Err(TooLarge::Containers(MAX_CONTAINERS + 1))
        );
    }

    #[test]
    fn small_objects_are_counted_after_the_parse() {
        let small = serde_json::json!({"spec": {"containers": vec![serde_json::json!({}); 1001]}});
        let small = small.to_string();
        assert!(small.len() <= COUNT_AFTER_PARSE_BYTES);
        assert_eq!(check_raw(&small), Ok(()));
        let pod: crate::mutate::Pod = serde_json::from_str(&small).unwrap();
        assert_eq!(
            check_containers(pod.container_count()),
            Err(TooLarge::Containers(1001))
        );
    }

    #[test]
    fn unreadable_shapes_pass_to_the_engine_and_big_objects_do_not() {
        for odd in [
            r#"{"spec": 1}"#,
            r#"{"spec": {"containers": {"a": [1]}}}"#,
            "[]",
            "null",
        ] {
            assert_eq!(check_raw(odd), Ok(()), "{odd}");
        }
        let big = format!(
            r#"{{"spec": {{}}, "x": "{}"}}"#,
            "a".repeat(MAX_OBJECT_BYTES)
        );
        assert_eq!(check_raw(&big), Err(TooLarge::Object(big.len())));
    }
}
