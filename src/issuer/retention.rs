//! Which keys to publish through a signing-key rotation: every key the API server publishes
//! now, plus every key it published before, each kept until every token it could have signed
//! has expired. Pure: the state comes in and goes out; the caller persists it so a restart
//! neither forgets a key early nor keeps one forever.
//!
//! The state records facts that change only when the API server's keys do: when each key was
//! first seen and, once the API server stops publishing it, when it was retired (the first
//! pass that missed it; the key may have signed until then). A retired key is dropped at
//! `retired_at + retention`; one that reappears is current again. A pass with nothing new
//! therefore plans the very same state, and the caller writes nothing.
//!
//! The previous version stored `lastSeen` (advanced on every pass) instead of `retiredAt`.
//! Such a record reads as retired at its `lastSeen`: still served, it is current again; no
//! longer served, it is dropped at `lastSeen + retention`, as that version would have done.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The state ConfigMap's default name (`--issuer-state-configmap`), where `irsa doctor` looks.
/// Its layout is here, beside the state it holds, because the publisher writes it and the
/// doctor reads it.
pub const STATE_CONFIGMAP: &str = "irsa-issuer-keys";
/// The state ConfigMap's key holding the [`KeyState`] as JSON.
pub const STATE_KEY: &str = "keys.json";
/// The state ConfigMap's key holding the last pass's outcome, for the doctor and an operator.
pub const STATUS_KEY: &str = "status";
/// How that status starts when the publisher refused to publish.
pub const REFUSED_PREFIX: &str = "refused: ";

/// One key the API server published, and when (unix seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "StoredRecord")]
pub struct KeyRecord {
    pub kid: String,
    pub jwk: Value,
    pub first_seen: i64,
    /// The first pass that found the key no longer published; `None` while it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<i64>,
}

/// A [`KeyRecord`] as stored, by this version or the previous one (`lastSeen`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredRecord {
    kid: String,
    jwk: Value,
    first_seen: i64,
    #[serde(default)]
    retired_at: Option<i64>,
    #[serde(default)]
    last_seen: Option<i64>,
}

impl From<StoredRecord> for KeyRecord {
    fn from(r: StoredRecord) -> Self {
        Self {
            kid: r.kid,
            jwk: r.jwk,
            first_seen: r.first_seen,
            // An old record: retired at its lastSeen unless the API server still serves it
            // (then `plan` makes it current again, as any key that reappears).
            retired_at: r.retired_at.or(r.last_seen),
        }
    }
}

/// Every key seen and not yet expired.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyState {
    pub keys: Vec<KeyRecord>,
}

/// A key kept although the API server no longer publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retired {
    pub kid: String,
    /// Unix seconds from which it is dropped.
    pub remove_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The state to persist: equal to the previous one when nothing changed.
    pub state: KeyState,
    /// The JWKS to publish: the API server's keys in its order, then retired keys, most
    /// recently retired first.
    pub jwks: Value,
    pub retired: Vec<Retired>,
    /// Keys whose retention ended in this pass.
    pub dropped: Vec<String>,
}

/// A key's identity: its `kid`, or its whole JSON for a key without one.
fn kid_of(jwk: &Value) -> String {
    jwk.get("kid")
        .and_then(Value::as_str)
        .map_or_else(|| jwk.to_string(), str::to_string)
}

/// The keys to publish at `now`, given what the API server serves now (`current`, its JWKS
/// `keys`) and what was seen before.
pub fn plan(previous: &KeyState, current: &[Value], now: i64, retention_secs: i64) -> Plan {
    let mut keys = Vec::new();
    for jwk in current {
        let kid = kid_of(jwk);
        if keys.iter().any(|k: &KeyRecord| k.kid == kid) {
            continue;
        }
        let first_seen = previous
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .map_or(now, |k| k.first_seen.min(now));
        keys.push(KeyRecord {
            kid,
            jwk: jwk.clone(),
            first_seen,
            retired_at: None,
        });
    }
    let mut old: Vec<KeyRecord> = previous
        .keys
        .iter()
        .filter(|k| !keys.iter().any(|c| c.kid == k.kid))
        .map(|k| KeyRecord {
            retired_at: Some(k.retired_at.unwrap_or(now)),
            ..k.clone()
        })
        .collect();
    old.sort_by(|a, b| b.retired_at.cmp(&a.retired_at).then(a.kid.cmp(&b.kid)));
    let (mut retired, mut dropped) = (Vec::new(), Vec::new());
    for record in old {
        let remove_at = record
            .retired_at
            .unwrap_or(now)
            .saturating_add(retention_secs);
        if now < remove_at {
            retired.push(Retired {
                kid: record.kid.clone(),
                remove_at,
            });
            keys.push(record);
        } else {
            dropped.push(record.kid);
        }
    }
    let jwks = json!({"keys": keys.iter().map(|k| &k.jwk).collect::<Vec<_>>()});
    Plan {
        state: KeyState { keys },
        jwks,
        retired,
        dropped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str) -> Value {
        json!({"use": "sig", "kty": "RSA", "kid": kid, "alg": "RS256", "n": "x", "e": "AQAB"})
    }

    fn kids(jwks: &Value) -> Vec<&str> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect()
    }

    /// Through JSON, as the ConfigMap stores it.
    fn restart(state: &KeyState) -> KeyState {
        serde_json::from_str(&serde_json::to_string(state).unwrap()).unwrap()
    }

    const HOUR: i64 = 3600;

    #[test]
    fn a_steady_state_plans_the_identical_state() {
        let p0 = plan(&KeyState::default(), &[key("a"), key("b")], 0, 5);
        let p1 = plan(&p0.state, &[key("a"), key("b")], 1000, 5);
        assert_eq!(p1.state, p0.state, "nothing in the state moves with time");
        assert_eq!(p1.jwks, p0.jwks);
        // Also while a retired key waits for its removal.
        let r0 = plan(&p0.state, &[key("b")], 2000, HOUR);
        let r1 = plan(&restart(&r0.state), &[key("b")], 2500, HOUR);
        assert_eq!(r1.state, r0.state);
        assert_eq!(r1.jwks, r0.jwks);
        assert_eq!(r1.retired, r0.retired);
        let dup = plan(&KeyState::default(), &[key("a"), key("a")], 0, 5);
        assert_eq!(kids(&dup.jwks), ["a"]);
    }

    #[test]
    fn a_rotation_keeps_the_old_key_until_retention_after_it_was_retired() {
        let retention = 25 * HOUR;
        let p0 = plan(&KeyState::default(), &[key("a")], 0, retention);
        assert_eq!(kids(&p0.jwks), ["a"]);
        // The API server adds b (both verify), then drops a (b signs alone).
        let p1 = plan(&p0.state, &[key("a"), key("b")], HOUR, retention);
        assert_eq!(kids(&p1.jwks), ["a", "b"]);
        assert_eq!(p1.state.keys[1].first_seen, HOUR);
        let p2 = plan(&p1.state, &[key("b")], 2 * HOUR, retention);
        assert_eq!(kids(&p2.jwks), ["b", "a"], "a is still published");
        assert_eq!(
            p2.retired,
            [Retired {
                kid: "a".into(),
                remove_at: 2 * HOUR + retention
            }],
            "a was retired by the first pass that missed it, at 2h"
        );
        assert_eq!(p2.state.keys[1].retired_at, Some(2 * HOUR));
        assert_eq!(p2.state.keys[1].first_seen, 0);
    }

    #[test]
    fn a_retired_key_goes_exactly_at_the_end_of_its_retention() {
        let retention = 10;
        let p0 = plan(&KeyState::default(), &[key("a")], 100, retention);
        let p1 = plan(&p0.state, &[key("b")], 105, retention);
        // A restart in between: the state went through the ConfigMap.
        let kept = plan(&restart(&p1.state), &[key("b")], 114, retention);
        assert_eq!(kids(&kept.jwks), ["b", "a"], "one second before: kept");
        assert_eq!(kept.state, p1.state);
        let gone = plan(&kept.state, &[key("b")], 115, retention);
        assert_eq!(
            kids(&gone.jwks),
            ["b"],
            "at retired_at + retention: dropped"
        );
        assert_eq!(gone.dropped, ["a"]);
        assert!(gone.retired.is_empty());
        assert_eq!(gone.state.keys.len(), 1);
    }

    #[test]
    fn a_key_that_reappears_is_current_again_and_retired_anew_later() {
        let retention = 10;
        let p0 = plan(&KeyState::default(), &[key("a")], 100, retention);
        let p1 = plan(&p0.state, &[key("b")], 105, retention);
        let back = plan(&p1.state, &[key("a"), key("b")], 108, retention);
        assert_eq!(kids(&back.jwks), ["a", "b"]);
        assert!(back.retired.is_empty() && back.dropped.is_empty());
        assert_eq!(back.state.keys[0].first_seen, 100, "first seen is kept");
        assert_eq!(back.state.keys[0].retired_at, None, "un-retired");
        // Gone again: its retention starts over from this retirement.
        let again = plan(&back.state, &[key("b")], 200, retention);
        assert_eq!(
            again.retired,
            [Retired {
                kid: "a".into(),
                remove_at: 210
            }]
        );
    }

    #[test]
    fn a_state_of_the_previous_version_neither_drops_nor_keeps_a_key_wrongly() {
        // Written by the version that stored lastSeen (advanced on every pass): a still
        // served, b retired at 1000 (its last pass), c long expired.
        let old = r#"{"keys":[
            {"kid":"a","jwk":{"kid":"a","kty":"RSA"},"firstSeen":500,"lastSeen":1000},
            {"kid":"b","jwk":{"kid":"b","kty":"RSA"},"firstSeen":100,"lastSeen":900},
            {"kid":"c","jwk":{"kid":"c","kty":"RSA"},"firstSeen":10,"lastSeen":20}]}"#;
        let loaded: KeyState = serde_json::from_str(old).unwrap();
        let retention = 200;
        let p = plan(&loaded, &[json!({"kid":"a","kty":"RSA"})], 1001, retention);
        assert_eq!(kids(&p.jwks), ["a", "b"]);
        assert_eq!(p.state.keys[0].retired_at, None, "a is served: current");
        assert_eq!(p.state.keys[0].first_seen, 500);
        assert_eq!(
            p.retired,
            [Retired {
                kid: "b".into(),
                remove_at: 900 + retention
            }],
            "b: retired at its lastSeen"
        );
        assert_eq!(p.dropped, ["c"]);
        // Written back in the new format (no lastSeen), then stable.
        let text = serde_json::to_string(&p.state).unwrap();
        assert!(
            !text.contains("lastSeen") && text.contains("\"retiredAt\":900"),
            "{text}"
        );
        let next = plan(
            &restart(&p.state),
            &[json!({"kid":"a","kty":"RSA"})],
            1050,
            retention,
        );
        assert_eq!(next.state, p.state);
        let later = plan(
            &next.state,
            &[json!({"kid":"a","kty":"RSA"})],
            1100,
            retention,
        );
        assert_eq!(kids(&later.jwks), ["a"], "b goes at lastSeen + retention");
    }
}
