//! Helpers shared by the integration tests and the cluster tests of `e2e`: the IAM emulator
//! (moto) behind a fault-injecting proxy, an HTTPS issuer, the webhook's test server, and the
//! JSON merge the chart values are built with. The mocked API server and the OIDC token helpers
//! live in `irsa::testing`, shared with the unit tests.

pub mod issuer;
pub mod moto;
pub mod verifier;
pub mod webhook;

use serde_json::Value;

/// Merges `from` into `into` as Helm merges values: objects key by key, recursively; anything
/// else (arrays included) replaces what was there.
pub fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}
