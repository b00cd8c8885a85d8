//! Public signing keys as the API server publishes them: PEM in, JWK out, with the `kid` the
//! API server computes (base64url of the SHA-256 of the key's PKIX DER, kube-apiserver's
//! `keyIDFromPublicKey`), so a JWKS rendered here names keys exactly as tokens do. Pure.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use x509_parser::oid_registry::{OID_EC_P256, OID_NIST_EC_P384, OID_NIST_EC_P521};
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("{0}: no PEM block (expected -----BEGIN PUBLIC KEY-----)")]
    NoPem(String),
    #[error("{0}: invalid PEM: {1}")]
    BadPem(String, String),
    #[error("{0}: a {1} is not a public key; give the public half (openssl pkey -in KEY -pubout)")]
    NotPublic(String, String),
    #[error("{0}: invalid public key: {1}")]
    BadKey(String, String),
    #[error("{0}: unsupported key type {1} (the API server signs with RSA or ECDSA P-256/384/521)")]
    Unsupported(String, String),
}

/// One verification key, as a JWK object with the API server's field order.
#[derive(Debug, Clone, PartialEq)]
pub struct Jwk {
    pub kid: String,
    pub alg: &'static str,
    pub json: Value,
}

/// Every key in a PEM file (`origin` names it in errors): `PUBLIC KEY` blocks and the public
/// keys of `CERTIFICATE` blocks, as `--service-account-key-file` accepts them.
pub fn from_pem(origin: &str, text: &[u8]) -> Result<Vec<Jwk>, KeyError> {
    let mut keys = Vec::new();
    for block in Pem::iter_from_buffer(text) {
        let block = block.map_err(|e| KeyError::BadPem(origin.into(), e.to_string()))?;
        let spki_der = match block.label.as_str() {
            "PUBLIC KEY" => block.contents.clone(),
            "CERTIFICATE" => {
                let cert = block
                    .parse_x509()
                    .map_err(|e| KeyError::BadKey(origin.into(), e.to_string()))?;
                cert.public_key().raw.to_vec()
            }
            other => return Err(KeyError::NotPublic(origin.into(), other.to_string())),
        };
        keys.push(from_spki_der(origin, &spki_der)?);
    }
    if keys.is_empty() {
        return Err(KeyError::NoPem(origin.into()));
    }
    Ok(keys)
}

/// The `kid` kube-apiserver gives a key: base64url(SHA-256(PKIX DER)), unpadded.
pub fn key_id(spki_der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki_der);
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn from_spki_der(origin: &str, der: &[u8]) -> Result<Jwk, KeyError> {
    let bad = |e: String| KeyError::BadKey(origin.into(), e);
    let (_, spki) = SubjectPublicKeyInfo::from_der(der).map_err(|e| bad(e.to_string()))?;
    let kid = key_id(der);
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    match spki.parsed().map_err(|e| bad(e.to_string()))? {
        PublicKey::RSA(rsa) => {
            let (n, e) = (strip_zeros(rsa.modulus), strip_zeros(rsa.exponent));
            if n.is_empty() || e.is_empty() {
                return Err(bad("empty RSA modulus or exponent".into()));
            }
            Ok(Jwk {
                json: json!({"use": "sig", "kty": "RSA", "kid": kid, "alg": "RS256", "n": b64(n), "e": b64(e)}),
                kid,
                alg: "RS256",
            })
        }
        PublicKey::EC(point) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .ok_or_else(|| bad("an EC key without its curve".into()))?;
            let (crv, alg, size) = if curve == OID_EC_P256 {
                ("P-256", "ES256", 32)
            } else if curve == OID_NIST_EC_P384 {
                ("P-384", "ES384", 48)
            } else if curve == OID_NIST_EC_P521 {
                ("P-521", "ES512", 66)
            } else {
                return Err(KeyError::Unsupported(
                    origin.into(),
                    format!("EC curve {curve}"),
                ));
            };
            // An uncompressed point: 0x04 || X || Y, each coordinate `size` bytes.
            let data = point.data();
            let coords = data
                .strip_prefix(&[4u8])
                .filter(|c| c.len() == 2 * size)
                .ok_or_else(|| bad(format!("not an uncompressed {crv} point")))?;
            let (x, y) = coords.split_at(size);
            Ok(Jwk {
                json: json!({"use": "sig", "kty": "EC", "kid": kid, "crv": crv, "alg": alg, "x": b64(x), "y": b64(y)}),
                kid,
                alg,
            })
        }
        _ => Err(KeyError::Unsupported(
            origin.into(),
            spki.algorithm.algorithm.to_id_string(),
        )),
    }
}

/// DER integers carry a leading zero when the top bit is set; a JWK's big-endian values do not.
fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_and_ec_keys_become_the_api_servers_jwks() {
        let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let keys = from_pem("ec.pub", ec.public_key_pem().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        let jwk = &keys[0];
        assert_eq!(jwk.alg, "ES256");
        assert_eq!(
            jwk.kid,
            key_id(&rcgen::PublicKeyData::subject_public_key_info(&ec))
        );
        assert_eq!(jwk.json["crv"], "P-256");
        let x = URL_SAFE_NO_PAD
            .decode(jwk.json["x"].as_str().unwrap())
            .unwrap();
        assert_eq!(x.len(), 32);
        let order: Vec<&String> = jwk.json.as_object().unwrap().keys().collect();
        assert_eq!(order, ["use", "kty", "kid", "crv", "alg", "x", "y"]);
        let keys = from_pem("rsa.pub", rsa.public_key_pem().as_bytes()).unwrap();
        assert_eq!(keys[0].alg, "RS256");
        assert_eq!(keys[0].json["e"], "AQAB");
        let n = URL_SAFE_NO_PAD
            .decode(keys[0].json["n"].as_str().unwrap())
            .unwrap();
        assert_ne!(n[0], 0, "no leading zero in n");
        assert_eq!(n.len(), 256, "a 2048-bit modulus");
    }

    #[test]
    fn several_blocks_and_certificates_are_read() {
        let a = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let b = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".into()])
            .unwrap()
            .self_signed(&a)
            .unwrap();
        let text = format!("{}{}{}", a.public_key_pem(), b.public_key_pem(), cert.pem());
        let keys = from_pem("keys.pem", text.as_bytes()).unwrap();
        let kids: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids.len(), 3);
        assert_eq!(kids[0], kids[2], "a certificate's key has its key's kid");
        assert_ne!(kids[0], kids[1]);
        assert_eq!(keys[1].alg, "ES384");
    }

    #[test]
    fn private_keys_garbage_and_empty_input_are_clear_errors() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let err = from_pem("sa.key", key.serialize_pem().as_bytes()).unwrap_err();
        assert!(matches!(err, KeyError::NotPublic(..)), "{err}");
        assert!(err.to_string().contains("-pubout"), "{err}");
        assert!(matches!(
            from_pem("x", b"hello").unwrap_err(),
            KeyError::NoPem(_)
        ));
        let junk = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert!(matches!(
            from_pem("x", junk.as_bytes()).unwrap_err(),
            KeyError::BadKey(..)
        ));
    }
}
