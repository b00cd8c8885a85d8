//! Building an RFC 6902 patch of `add` operations only: the webhook appends what is missing
//! and never replaces an array or object it did not create, so every field it does not
//! understand survives byte-for-byte.

use json_patch::{AddOperation, Patch, PatchOperation, jsonptr::PointerBuf};
use serde_json::Value;

#[derive(Debug, Default)]
pub(crate) struct PatchBuilder {
    ops: Vec<PatchOperation>,
}

impl PatchBuilder {
    /// `add` at the path made of `tokens` (each escaped per RFC 6901, so `a/b` keys work).
    pub fn add<'t>(&mut self, tokens: impl IntoIterator<Item = &'t str>, value: Value) {
        self.ops.push(PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(tokens),
            value,
        }));
    }

    /// Appends `values` to the list at `tokens`: one `add .../-` each when the list exists,
    /// else one `add` creating it (adding to a missing parent would fail the whole patch).
    pub fn append<'t>(
        &mut self,
        tokens: impl IntoIterator<Item = &'t str> + Clone,
        exists: bool,
        values: Vec<Value>,
    ) {
        if values.is_empty() {
            return;
        }
        if exists {
            for value in values {
                self.add(tokens.clone().into_iter().chain(["-"]), value);
            }
        } else {
            self.add(tokens, Value::Array(values));
        }
    }

    pub fn build(self) -> Patch {
        Patch(self.ops)
    }
}
