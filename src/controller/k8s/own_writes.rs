//! The ServiceAccount writes the binding reconciler made itself, so that the watch event each
//! one causes does not reconcile the binding that made it once more: that reconcile already
//! counted the annotation in the status it wrote. Matched by resource version, so a change
//! anyone else makes afterwards is never mistaken for ours; and the binding's generation is
//! kept, so a binding whose spec changed since its write is reconciled as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::controller::policy::desired::Key;

/// The last write of ours per ServiceAccount.
#[derive(Clone, Default)]
pub struct OwnWrites(Arc<Mutex<HashMap<Key, Write>>>);

/// One write: the ServiceAccount's resource version after it, and who made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub resource_version: String,
    pub binding: String,
    /// The binding's generation when it wrote.
    pub generation: i64,
}

impl OwnWrites {
    pub fn record(&self, sa: Key, write: Write) {
        if let Ok(mut w) = self.0.lock() {
            w.insert(sa, write);
        }
    }

    /// Our write that made `sa` what it is at `resource_version`, if it was ours. Any event
    /// of `sa` consumes the record: a later version is someone else's (or a deletion).
    pub fn writer_of(&self, sa: &Key, resource_version: Option<&str>) -> Option<Write> {
        let write = self.0.lock().ok()?.remove(sa)?;
        (resource_version == Some(write.resource_version.as_str())).then_some(write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_version_written_is_ours_and_only_once() {
        let writes = OwnWrites::default();
        let sa = Key::new("team-a", "app");
        let write = |v: &str| Write {
            resource_version: v.into(),
            binding: "b".into(),
            generation: 1,
        };
        writes.record(sa.clone(), write("41"));
        assert_eq!(writes.writer_of(&sa, Some("41")), Some(write("41")));
        assert_eq!(writes.writer_of(&sa, Some("41")), None, "consumed");

        writes.record(sa.clone(), write("42"));
        assert_eq!(writes.writer_of(&sa, Some("43")), None, "someone else's");
        assert_eq!(
            writes.writer_of(&sa, Some("42")),
            None,
            "the record went with it"
        );
    }
}
