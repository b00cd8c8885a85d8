//! The token side of a self-managed cluster: the OpenID discovery document and JWKS that STS
//! reads at the issuer URL to verify a pod's token. Pure: PEM keys in, documents out.

pub mod documents;
pub mod keys;
pub mod retention;

pub use documents::{DISCOVERY_PATH, JWKS_PATH, discovery, jwks};
pub use keys::{Jwk, KeyError, from_pem, key_id};
