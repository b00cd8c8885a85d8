//! What the engine reads of a ServiceAccount, in the shape the webhook's cache keeps per
//! ServiceAccount.

use std::{fmt, sync::Arc};

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

use super::config::IRSA_PREFIX;

/// What the engine needs of a ServiceAccount.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceAccountInfo {
    pub namespace: String,
    pub name: String,
    pub annotations: Annotations,
}

/// A ServiceAccount's annotations, sorted by key, in one allocation shared by its clones.
///
/// Not a map: the webhook's cache holds one of these per annotated ServiceAccount, which
/// carries one to three annotations the engine reads. A `BTreeMap` allocates a node sized for
/// eleven entries (about 550 bytes) even for one, and a sorted slice of boxed strings costs
/// an allocation per key and per value: measured with 10,000 annotated ServiceAccounts, 57
/// bytes more per ServiceAccount than this (docs/benchmarks.md). Here the entries are written
/// one after the other into a single string, each key and value as `<byte length>:<text>`, so
/// a ServiceAccount's annotations are one allocation, a cache hit clones them by a reference
/// count, and a lookup walks the one to three entries.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Annotations(Arc<str>);

impl Annotations {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// In key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut rest = &*self.0;
        std::iter::from_fn(move || Some((take(&mut rest)?, take(&mut rest)?)))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|(k, _)| k)
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The next `<byte length>:<text>` of an `Annotations` string; `None` at its end. Lengths are
/// those of whole strings, so `get` never falls inside a character.
fn take<'a>(rest: &mut &'a str) -> Option<&'a str> {
    let (len, tail) = rest.split_once(':')?;
    let len = len.parse().ok()?;
    let text = tail.get(..len)?;
    *rest = tail.get(len..)?;
    Some(text)
}

impl fmt::Debug for Annotations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Like collecting into a map: a key given twice keeps its last value.
impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Annotations {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut entries: Vec<(K, V)> = iter.into_iter().collect();
        // Reversed, then a stable sort: the last value of a repeated key comes first, and
        // `dedup_by` keeps the first of a run.
        entries.reverse();
        entries.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
        entries.dedup_by(|a, b| a.0.as_ref() == b.0.as_ref());
        let mut text = String::new();
        for part in entries.iter().flat_map(|(k, v)| [k.as_ref(), v.as_ref()]) {
            push_part(&mut text, part);
        }
        Self(text.into())
    }
}

/// Appends `part` as `<byte length>:<text>`, as [`take`] reads it.
fn push_part(text: &mut String, part: &str) {
    text.push_str(&part.len().to_string());
    text.push(':');
    text.push_str(part);
}

/// From a JSON/YAML mapping of strings (`metadata.annotations`), without an intermediate map.
impl<'de> Deserialize<'de> for Annotations {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Annotations;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of strings to strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Annotations, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(entry) = map.next_entry::<String, String>()? {
                    entries.push(entry);
                }
                Ok(entries.into_iter().collect())
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

/// The annotations under the prefixes the engine reads (`prefix/` and `irsa.dev/`): what a
/// ServiceAccount cache keeps.
pub fn relevant_annotations<'a>(
    annotations: impl IntoIterator<Item = (&'a str, &'a str)>,
    prefix: &str,
) -> Annotations {
    annotations
        .into_iter()
        .filter(|(k, _)| {
            k.split_once('/')
                .is_some_and(|(p, _)| p == prefix || p == IRSA_PREFIX)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_order_and_repeated_keys() {
        let a: Annotations = [("b", "1"), ("a", "2"), ("b", "3"), ("c", "4")]
            .into_iter()
            .collect();
        assert_eq!(
            a.get("b"),
            Some("3"),
            "the last value of a repeated key wins"
        );
        assert_eq!(a.get("a"), Some("2"));
        assert_eq!(a.get("c"), Some("4"));
        assert_eq!(a.get("d"), None);
        assert_eq!(a.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(a.len(), 3);
        assert!(Annotations::default().is_empty());
        assert_eq!(Annotations::default().get("a"), None);
        assert_eq!(format!("{a:?}"), r#"{"a": "2", "b": "3", "c": "4"}"#);
    }

    #[test]
    fn any_text_survives_the_encoding() {
        let entries = [
            ("", ""),
            ("12:ab", "3:x:y"),
            ("irsa.dev/region", ""),
            ("k\u{e9}\u{1f600}", "v\u{0}\n\u{e9}"),
            ("z", &"long ".repeat(300)),
        ];
        let a: Annotations = entries.into_iter().collect();
        assert_eq!(a.iter().collect::<Vec<_>>(), entries);
        assert_eq!(a.len(), entries.len());
        for (k, v) in entries {
            assert_eq!(a.get(k), Some(v), "{k:?}");
        }
    }

    #[test]
    fn deserializes_from_a_mapping_only() {
        let a: Annotations = serde_json::from_str(r#"{"z":"1","y":"2","z":"3"}"#).unwrap();
        assert_eq!(a.iter().collect::<Vec<_>>(), [("y", "2"), ("z", "3")]);
        let err = serde_json::from_str::<Annotations>(r#"{"a":1}"#).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
        let err = serde_json::from_str::<Annotations>(r#"["a"]"#).unwrap_err();
        assert!(err.to_string().contains("a mapping of strings"), "{err}");
    }
}
