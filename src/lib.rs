//! irsa: IAM Roles for Service Accounts for Kubernetes.
//!
//! The product's logic lives in the `irsa-core` crate ([`mutate`], [`trust`], [`arn`], the
//! controller's [`controller::policy`]), which does no I/O and depends on no client; this
//! crate's [`webhook`], [`controller`] and [`doctor`] translate between the world and it.

// Index and slice only through checked APIs (`get`, `strip_prefix`, `split_once`, ...): a byte
// index into request or issuer data is a panic waiting for a multi-byte character. Denied
// here rather than in Cargo.toml's [lints], which would hold every test crate to it as well;
// `#[cfg(test)]` code is exempt through clippy.toml.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

// The pure core, under the paths the rest of this crate (and its tests) name it by.
pub use irsa_core::{arn, mutate, names, trust};

pub mod admin;
pub mod agent;
pub mod aws;
pub mod backoff;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod controller;
pub mod crd;
pub mod doctor;
pub mod error;
pub mod index;
pub mod issuer;
pub mod metrics;
pub mod shutdown;
pub mod supervise;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tls_probe;
pub mod webhook;

/// Installs aws-lc-rs as the process-wide rustls provider. kube, axum-server, reqwest and the
/// AWS SDK all share one rustls; with no provider installed (or two compiled in) rustls panics
/// at the first handshake, so this runs first in `main` and in every test that does TLS.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is exactly the state we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
