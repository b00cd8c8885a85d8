//! Helpers shared by the integration tests. Each test binary compiles this module and uses
//! only part of it, hence the `dead_code` allowance. This is test code: a panic is how it
//! fails a test, so `unwrap`/`expect` are allowed here as in test functions.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod issuer;
pub mod kube_api;
pub mod moto;
pub mod oidc;
