//! A service-account token issuer made in the test: an ES256 signing key, its JWKS, and
//! tokens with whatever claims a test needs (valid, wrong aud/iss, expired, unknown kid).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub struct SigningKey {
    pub kid: String,
    encoding: EncodingKey,
    pub jwk: Value,
}

impl SigningKey {
    pub fn generate(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let encoding = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        // Uncompressed SEC1 point: 0x04 || x (32 bytes) || y (32 bytes).
        let point = pair.public_key_raw();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        Self {
            kid: kid.to_string(),
            encoding,
            jwk,
        }
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    pub fn jwks(keys: &[&SigningKey]) -> Value {
        json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The claims the API server puts in a projected service-account token.
pub fn sa_claims(issuer: &str, namespace: &str, name: &str, audience: &str, exp: i64) -> Value {
    json!({
        "iss": issuer,
        "sub": format!("system:serviceaccount:{namespace}:{name}"),
        "aud": [audience],
        "exp": exp,
        "iat": exp - 3600,
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": "0000"}},
    })
}
