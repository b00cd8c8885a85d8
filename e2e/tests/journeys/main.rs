//! The journeys: irsa against a real cluster and IAM/STS. See docs/development.md.
//!
//! Every journey is `#[ignore = "needs a cluster: ..."]`: a plain `cargo nextest run` reports
//! them as skipped, never as passed. `make test` starts a local control plane
//! (scripts/control-plane.sh) and runs them with `--run-ignored all`; `make e2e` does the same
//! against the cluster in `KUBECONFIG`. A journey that runs without a cluster fails.
//! Their harness is this package's library (`irsa_e2e`, `e2e/src/`).

// Test code: a helper fails its test by panicking, like the test functions that call it
// (clippy.toml only exempts `#[test]` functions themselves).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agent;
mod alerts;
mod chaos;
mod controller;
mod crd;
mod doctor;
mod doctor_webhook;
mod faults;
mod install;
mod issuer;
mod leader;
mod opt_out;
mod pod_identity;
mod pod_identity_trust;
mod publish;
mod rbac;
mod restart;
mod selftls;
mod trip;
mod uninjected;
mod webhook;
