//! Test doubles shared by the unit tests under `src/` and the integration tests in `tests/it`:
//! the one scripted Kubernetes API server ([`kube_api`]), [`fixtures`] many tests build alike, and a service-account token issuer
//! made in the test ([`oidc`]). Compiled only for tests: `cfg(test)` for the unit tests, the
//! `testing` feature (turned on by the crate's dev-dependency on itself) for `tests/it`, so
//! the release binary carries none of it.

// Test code: a panic is how a helper fails the test, and a fixture is clearer indexed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub use irsa_core::fixtures;
pub mod kube_api;
pub mod oidc;
