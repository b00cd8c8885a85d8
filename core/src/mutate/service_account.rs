//! What the engine reads of a ServiceAccount, in the shape the webhook's cache keeps per
//! ServiceAccount.

use std::{
    borrow::Borrow,
    fmt,
    hash::{Hash, Hasher},
    sync::Arc,
};

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
/// eleven entries (about 550 bytes) even for one, and a table of boxed strings still costs an
/// allocation per key and per value. Here the entries are written one after the other into a
/// single string, each key and value as `<byte length>:<text>`, so a ServiceAccount's
/// annotations are one allocation, a cache hit clones them by a reference count, and a
/// lookup walks the one to three entries (docs/design.md §7).
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

/// A ServiceAccount as the webhook's cache keeps it: its name, then the annotations the engine
/// reads, in one allocation written as [`Annotations`] are. It hashes and compares as its name,
/// so a set of them per namespace is the map from name to annotations, without a second
/// allocation for the key: about 110 bytes for a ServiceAccount with a role ARN, instead of
/// 150 with the name boxed apart (docs/design.md §7).
pub struct CachedServiceAccount(Box<str>);

impl CachedServiceAccount {
    pub fn new(name: &str, annotations: Option<&Annotations>) -> Self {
        let entries = annotations.map_or("", |a| &*a.0);
        let mut text = String::with_capacity(name.len() + entries.len() + 4);
        push_part(&mut text, name);
        text.push_str(entries);
        Self(text.into())
    }

    pub fn name(&self) -> &str {
        self.split().0
    }

    pub fn is_annotated(&self) -> bool {
        !self.split().1.is_empty()
    }

    /// A copy of its annotations (a cache hit hands them to the engine), `None` without any.
    pub fn annotations(&self) -> Option<Annotations> {
        let entries = self.split().1;
        (!entries.is_empty()).then(|| Annotations(entries.into()))
    }

    /// The name and the written annotations after it.
    fn split(&self) -> (&str, &str) {
        let mut rest = &*self.0;
        let name = take(&mut rest).unwrap_or_default();
        (name, rest)
    }
}

impl Borrow<str> for CachedServiceAccount {
    fn borrow(&self) -> &str {
        self.name()
    }
}

/// As its name, which `Borrow<str>` requires.
impl Hash for CachedServiceAccount {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl PartialEq for CachedServiceAccount {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for CachedServiceAccount {}

impl fmt::Debug for CachedServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedServiceAccount")
            .field("name", &self.name())
            .field("annotations", &self.annotations())
            .finish()
    }
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
    fn a_cached_service_account_is_its_name_in_a_set() {
        let annotations: Annotations = [("eks.amazonaws.com/role-arn", "arn:1"), ("x/y", "")]
            .into_iter()
            .collect();
        let annotated = CachedServiceAccount::new("12:app", Some(&annotations));
        assert_eq!(annotated.name(), "12:app");
        assert!(annotated.is_annotated());
        assert_eq!(annotated.annotations(), Some(annotations.clone()));
        let plain = CachedServiceAccount::new("web", None);
        assert_eq!((plain.name(), plain.is_annotated()), ("web", false));
        assert_eq!(plain.annotations(), None);
        let empty = CachedServiceAccount::new("", Some(&Annotations::default()));
        assert_eq!((empty.name(), empty.annotations()), ("", None));

        let mut set = std::collections::HashSet::from([annotated, plain]);
        assert_eq!(
            set.get("12:app").and_then(|a| a.annotations()),
            Some(annotations)
        );
        let old = set.replace(CachedServiceAccount::new(
            "web",
            Some(&Annotations::default()),
        ));
        assert!(
            old.is_some_and(|old| !old.is_annotated()),
            "replaced by name"
        );
        assert_eq!(set.len(), 2);
        assert!(set.take("web").is_some() && !set.contains("web"));
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
