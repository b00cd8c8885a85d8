//! `--service-accounts-file`: the ServiceAccounts of a test or benchmark run without a cluster.
//!
//! The file is streamed, not collected: each ServiceAccount is handed on as soon as it is
//! parsed, so its parse garbage (the strings of its manifest) is freed before the next one is
//! read and that next one reuses it. Collected first, 10,000 ServiceAccounts left about
//! 0.8 MiB of freed parse heap beneath the cache's long-lived entries, where glibc cannot give
//! it back, and it stayed in the webhook's RSS (docs/benchmarks.md).

use std::{fmt, path::Path};

use anyhow::Context as _;
use serde::{
    Deserialize, Deserializer as _,
    de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor},
};

use crate::mutate::{Annotations, ServiceAccountInfo};

/// Reads `path`, a YAML/JSON list of ServiceAccount manifests, a `List`
/// (`kubectl get sa -A -o yaml`) or a single ServiceAccount, calls `each` with every
/// ServiceAccount in file order, and returns how many there were. A ServiceAccount without a
/// namespace is in `default`. Large lists should be JSON: the YAML parser caps the number of
/// nodes per document.
pub fn read(path: &Path, each: impl FnMut(ServiceAccountInfo)) -> anyhow::Result<usize> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --service-accounts-file {}", path.display()))?;
    let mut sink = Sink { each, count: 0 };
    let parsed = if text.trim_start().starts_with(['{', '[']) {
        let mut json = serde_json::Deserializer::from_str(&text);
        json.deserialize_any(Top(&mut sink))
            .and_then(|()| json.end())
            .map_err(|e| e.to_string())
    } else {
        serde_saphyr::with_deserializer_from_str(&text, |yaml| yaml.deserialize_any(Top(&mut sink)))
            .map_err(|e| e.to_string())
    };
    parsed.map_err(|msg| anyhow::anyhow!("--service-accounts-file {}: {msg}", path.display()))?;
    Ok(sink.count)
}

#[derive(Deserialize)]
struct Item {
    metadata: Option<Meta>,
}

#[derive(Deserialize)]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    annotations: Option<Annotations>,
}

/// Where parsed ServiceAccounts go, counted: the count is also the index in error messages.
struct Sink<F> {
    each: F,
    count: usize,
}

impl<F: FnMut(ServiceAccountInfo)> Sink<F> {
    fn take<E: de::Error>(&mut self, meta: Option<Meta>) -> Result<(), E> {
        let i = self.count;
        let meta = meta.ok_or_else(|| E::custom(format!("item {i} has no metadata")))?;
        let name = meta
            .name
            .ok_or_else(|| E::custom(format!("item {i} has no metadata.name")))?;
        (self.each)(ServiceAccountInfo {
            name,
            namespace: meta.namespace.unwrap_or_else(|| "default".into()),
            annotations: meta.annotations.unwrap_or_default(),
        });
        self.count += 1;
        Ok(())
    }
}

/// The file's top level: a sequence of items, or a mapping (a `List` with `items`, or one
/// ServiceAccount).
struct Top<'s, F>(&'s mut Sink<F>);

impl<'de, F: FnMut(ServiceAccountInfo)> Visitor<'de> for Top<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of ServiceAccounts, a List, or one ServiceAccount")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        Items(self.0).visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (mut listed, mut metadata) = (false, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "items" => {
                    map.next_value_seed(Items(&mut *self.0))?;
                    listed = true;
                }
                "metadata" => metadata = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        // A List's own metadata (`resourceVersion`) is not a ServiceAccount.
        if !listed {
            self.0.take(metadata)?;
        }
        Ok(())
    }
}

/// A sequence of ServiceAccount manifests.
struct Items<'s, F>(&'s mut Sink<F>);

impl<'de, F: FnMut(ServiceAccountInfo)> Visitor<'de> for Items<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of ServiceAccounts")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(item) = seq.next_element::<Item>()? {
            self.0.take(item.metadata)?;
        }
        Ok(())
    }
}

impl<'de, F: FnMut(ServiceAccountInfo)> DeserializeSeed<'de> for Items<'_, F> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str, text: &str) -> anyhow::Result<Vec<ServiceAccountInfo>> {
        let path = std::env::temp_dir().join(format!("irsa-sa-file-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let mut all = Vec::new();
        let result = read(&path, |sa| all.push(sa));
        let _ = std::fs::remove_file(&path);
        assert_eq!(result?, all.len(), "the count is the number handed on");
        Ok(all)
    }

    #[test]
    fn service_accounts_file_shapes() {
        let list = load(
            "list.yaml",
            "kind: List\nitems:\n- metadata: {name: a, namespace: x, annotations: {k: v}}\n- metadata: {name: b}\nmetadata: {resourceVersion: \"\"}\n",
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].annotations.get("k"), Some("v"));
        assert_eq!(list[1].namespace, "default");

        let json_list = load(
            "list.json",
            r#"{"metadata":{"resourceVersion":""},"kind":"List","items":[{"kind":"ServiceAccount","metadata":{"name":"a","namespace":"x","annotations":{"k":"v"}}}]}"#,
        )
        .unwrap();
        assert_eq!(json_list, list[..1]);

        let array = load(
            "array.json",
            r#"[{"metadata":{"name":"a","namespace":"x"}}]"#,
        )
        .unwrap();
        assert_eq!(array[0].name, "a");
        let seq = load("seq.yaml", "- metadata: {name: a}\n").unwrap();
        assert_eq!(seq[0].name, "a");
        let one = load(
            "one.yaml",
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: solo}\n",
        )
        .unwrap();
        assert_eq!(one[0].name, "solo");
        assert!(
            load("empty-list.json", r#"{"items":[]}"#)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn bad_files_say_what_and_where() {
        for (name, text, wanted) in [
            (
                "no-name.json",
                r#"{"items":[{"metadata":{"name":"a"}},{"metadata":{"namespace":"x"}}]}"#,
                "item 1 has no metadata.name",
            ),
            (
                "no-metadata.yaml",
                "- metadata: {name: a}\n- kind: ServiceAccount\n",
                "item 1 has no metadata",
            ),
            (
                "one-without-metadata.yaml",
                "kind: ServiceAccount\n",
                "item 0 has no metadata",
            ),
            ("scalar.json", "[1]", "invalid type"),
            (
                "items-not-a-list.json",
                r#"{"items":{"metadata":{"name":"a"}}}"#,
                "expected a list of ServiceAccounts",
            ),
            ("trailing.json", r#"[] []"#, "trailing characters"),
            (
                "truncated.json",
                r#"{"items":[{"metadata":{"name":"a""#,
                "EOF",
            ),
            (
                "bad-annotation.yaml",
                "- metadata: {name: a, annotations: {k: [1]}}\n",
                "expected string scalar",
            ),
        ] {
            let err = load(name, text).unwrap_err().to_string();
            assert!(err.starts_with("--service-accounts-file "), "{name}: {err}");
            assert!(err.contains(wanted), "{name}: {err}");
        }
        let missing = read(Path::new("/nonexistent/irsa-sa.json"), |_| ()).unwrap_err();
        assert!(
            format!("{missing:#}")
                .contains("cannot read --service-accounts-file /nonexistent/irsa-sa.json"),
            "{missing:#}"
        );
    }
}
