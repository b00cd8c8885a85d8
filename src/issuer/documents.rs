//! The two documents an OIDC issuer serves, in the shape and field order kube-apiserver
//! serves them (`/.well-known/openid-configuration` and `/openid/v1/jwks`).

use serde_json::{Value, json};

use super::keys::Jwk;

/// Where the discovery document lives below the issuer URL (what STS fetches first).
pub const DISCOVERY_PATH: &str = ".well-known/openid-configuration";
/// Where the keys live below the issuer URL (the discovery document's `jwks_uri`).
pub const JWKS_PATH: &str = "openid/v1/jwks";

/// The URL of `document` ([`DISCOVERY_PATH`], [`JWKS_PATH`]) served below `base` (an issuer,
/// or where its copy is read back): one `/` between them, whether `base` ends with one or not.
pub fn document_url(base: &str, document: &str) -> String {
    format!("{}/{document}", base.trim_end_matches('/'))
}

/// The discovery document for `issuer` (used verbatim: it must equal the tokens' `iss` byte
/// for byte) whose keys are `keys`.
pub fn discovery(issuer: &str, keys: &[Jwk]) -> Value {
    let mut algs: Vec<&str> = keys.iter().map(|k| k.alg).collect();
    algs.sort_unstable();
    algs.dedup();
    json!({
        "issuer": issuer,
        "jwks_uri": document_url(issuer, JWKS_PATH),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
    })
}

/// The JWKS holding `keys` in the given order, without duplicates (the same key given twice,
/// e.g. as a public key and inside a certificate, is published once).
pub fn jwks(keys: &[Jwk]) -> Value {
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<&Value> = keys
        .iter()
        .filter(|k| seen.insert(k.kid.as_str()))
        .map(|k| &k.json)
        .collect();
    json!({ "keys": unique })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issuer::from_pem;

    fn key() -> Jwk {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        from_pem("k", pair.public_key_pem().as_bytes())
            .unwrap()
            .remove(0)
    }

    #[test]
    fn discovery_names_the_issuer_verbatim_and_the_jwks_below_it() {
        let doc = discovery("https://example.com/cluster/a", &[key()]);
        assert_eq!(doc["issuer"], "https://example.com/cluster/a");
        assert_eq!(
            doc["jwks_uri"],
            "https://example.com/cluster/a/openid/v1/jwks"
        );
        assert_eq!(
            doc["id_token_signing_alg_values_supported"],
            json!(["ES256"])
        );
        let order: Vec<&String> = doc.as_object().unwrap().keys().collect();
        assert_eq!(
            order,
            [
                "issuer",
                "jwks_uri",
                "response_types_supported",
                "subject_types_supported",
                "id_token_signing_alg_values_supported"
            ]
        );
        // A trailing slash stays in the issuer (it is compared byte for byte) but does not
        // double the slash of the JWKS URL.
        let slash = discovery("https://example.com/", &[]);
        assert_eq!(slash["issuer"], "https://example.com/");
        assert_eq!(slash["jwks_uri"], "https://example.com/openid/v1/jwks");
    }

    #[test]
    fn jwks_keeps_order_and_drops_duplicates() {
        let (a, b) = (key(), key());
        let doc = jwks(&[a.clone(), b.clone(), a.clone()]);
        let kids: Vec<&str> = doc["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, [a.kid.as_str(), b.kid.as_str()]);
    }
}
