//! `irsa doctor`'s token and issuer checks: a JWT (unverified peek, then verification against
//! the JWKS) and the discovery document / JWKS as served by an issuer.
//! Input: `<token>\n<JWKS JSON>\n<discovery JSON>`.
#![no_main]

use irsa::doctor::checks;
use jsonwebtoken::jwk::JwkSet;
use libfuzzer_sys::fuzz_target;

const ISSUER: &str = "https://oidc.example.com/id/1";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\n');
    let token = parts.next().unwrap_or("");
    let jwks_text = parts.next().unwrap_or("");
    let discovery_text = parts.next().unwrap_or("");

    let _ = checks::peek(token);
    let Ok(jwks) = serde_json::from_str::<JwkSet>(jwks_text) else {
        return;
    };
    let _ = checks::token(
        token,
        &jwks,
        ISSUER,
        "sts.amazonaws.com",
        Some("system:serviceaccount:team-a:app"),
        1_700_000_000,
    );
    let discovery = serde_json::from_str::<serde_json::Value>(discovery_text);
    let kid = checks::peek(token).ok().and_then(|(_, kid)| kid);
    let _ = checks::issuer(
        ISSUER,
        discovery.as_ref().map_err(|_| "unavailable"),
        Ok(&jwks),
        kid.as_deref(),
    );
});
