//! Which keys to publish through a signing-key rotation: every key the API server publishes
//! now, plus every key it published before, each kept until every token it could have signed
//! has expired (last seen + retention). Pure: the state (when each key was first and last
//! seen) comes in and goes out; the caller persists it so a restart neither forgets a key
//! early nor keeps one forever.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One key the API server published, and when (unix seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRecord {
    pub kid: String,
    pub jwk: Value,
    pub first_seen: i64,
    pub last_seen: i64,
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
    /// The state to persist.
    pub state: KeyState,
    /// The JWKS to publish: the API server's keys in its order, then retired keys, most
    /// recently seen first.
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
            last_seen: now,
        });
    }
    let mut old: Vec<&KeyRecord> = previous
        .keys
        .iter()
        .filter(|k| !keys.iter().any(|c| c.kid == k.kid))
        .collect();
    old.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(a.kid.cmp(&b.kid)));
    let (mut retired, mut dropped) = (Vec::new(), Vec::new());
    for record in old {
        let remove_at = record.last_seen.saturating_add(retention_secs);
        if now < remove_at {
            retired.push(Retired {
                kid: record.kid.clone(),
                remove_at,
            });
            keys.push(record.clone());
        } else {
            dropped.push(record.kid.clone());
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

    const HOUR: i64 = 3600;

    #[test]
    fn a_rotation_keeps_the_old_key_exactly_until_its_tokens_expired() {
        let retention = 25 * HOUR;
        let p0 = plan(&KeyState::default(), &[key("a")], 0, retention);
        assert_eq!(kids(&p0.jwks), ["a"]);
        // The API server adds b (both verify), then drops a (b signs alone).
        let p1 = plan(&p0.state, &[key("a"), key("b")], HOUR, retention);
        assert_eq!(kids(&p1.jwks), ["a", "b"]);
        let p2 = plan(&p1.state, &[key("b")], 2 * HOUR, retention);
        assert_eq!(kids(&p2.jwks), ["b", "a"], "a is still published");
        assert_eq!(
            p2.retired,
            [Retired {
                kid: "a".into(),
                remove_at: HOUR + retention
            }],
            "a was last seen at 1h"
        );
        // Just before the end of the retention: kept; at it: dropped.
        let p3 = plan(&p2.state, &[key("b")], HOUR + retention - 1, retention);
        assert_eq!(kids(&p3.jwks), ["b", "a"]);
        let p4 = plan(&p3.state, &[key("b")], HOUR + retention, retention);
        assert_eq!(kids(&p4.jwks), ["b"]);
        assert_eq!(p4.dropped, ["a"]);
        assert!(p4.retired.is_empty());
    }

    #[test]
    fn the_state_survives_a_restart_and_a_key_that_returns_is_current_again() {
        let retention = 10;
        let p0 = plan(&KeyState::default(), &[key("a")], 100, retention);
        let p1 = plan(&p0.state, &[key("b")], 105, retention);
        // A restart: the state went through JSON (a ConfigMap).
        let text = serde_json::to_string(&p1.state).unwrap();
        let restored: KeyState = serde_json::from_str(&text).unwrap();
        assert_eq!(restored, p1.state);
        let p2 = plan(&restored, &[key("b")], 109, retention);
        assert_eq!(kids(&p2.jwks), ["b", "a"], "not forgotten early");
        let p3 = plan(&p2.state, &[key("a"), key("b")], 111, retention);
        assert_eq!(kids(&p3.jwks), ["a", "b"]);
        assert!(p3.retired.is_empty() && p3.dropped.is_empty());
        assert_eq!(p3.state.keys[0].first_seen, 100, "first seen is kept");
    }

    #[test]
    fn steady_state_plans_the_same_document() {
        let p0 = plan(&KeyState::default(), &[key("a"), key("b")], 0, 5);
        let p1 = plan(&p0.state, &[key("a"), key("b")], 1000, 5);
        assert_eq!(p0.jwks, p1.jwks);
        let dup = plan(&KeyState::default(), &[key("a"), key("a")], 0, 5);
        assert_eq!(kids(&dup.jwks), ["a"]);
    }
}
