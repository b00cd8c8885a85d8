//! irsa: IAM Roles for Service Accounts for Kubernetes.
//!
//! The pure modules ([`mutate`], [`trust`], [`arn`]) hold the product's logic and do no I/O;
//! [`webhook`], [`controller`] and [`doctor`] translate between the world and them.

// Index and slice only through checked APIs (`get`, `strip_prefix`, `split_once`, ...): a byte
// index into request or issuer data is a panic waiting for a multi-byte character. Denied
// here rather than in Cargo.toml's [lints], which would hold every test crate to it as well;
// `#[cfg(test)]` code is exempt through clippy.toml.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

pub mod admin;
pub mod arn;
pub mod aws;
pub mod backoff;
pub mod cli;
pub mod commands;
pub mod controller;
pub mod crd;
pub mod doctor;
pub mod error;
pub mod issuer;
pub mod metrics;
pub mod mutate;
pub mod names;
pub mod shutdown;
pub mod supervise;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tls_probe;
pub mod trust;
pub mod webhook;

/// Installs aws-lc-rs as the process-wide rustls provider. kube, axum-server, reqwest and the
/// AWS SDK all share one rustls; with no provider installed (or two compiled in) rustls panics
/// at the first handshake, so this runs first in `main` and in every test that does TLS.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is exactly the state we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
