//! The issuer layer: the issuer URL and its one `host/path` rule (`irsa_core::issuer`), the token
//! side of a self-managed cluster — the OpenID discovery document and JWKS that STS reads at
//! the issuer URL to verify a pod's token ([`documents`], [`keys`], [`retention`]: pure, PEM
//! keys in, documents out) — the API server's own view of them ([`discover`], I/O), and the
//! thumbprint IAM keeps of the issuer's TLS certificate ([`thumbprint`], I/O).

pub mod discover;
pub mod documents;
pub mod keys;
pub mod retention;
pub mod thumbprint;

pub use irsa_core::issuer::{InvalidIssuerUrl, IssuerUrl, is_issuer_host_path, issuer_host_path};

pub use documents::{DISCOVERY_PATH, JWKS_PATH, discovery, document_url, jwks};
pub use keys::{Jwk, KeyError, from_pem, key_id};
