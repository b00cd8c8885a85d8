//! End-to-end tests against a real cluster (`KUBECONFIG`) and an AWS endpoint
//! (`AWS_ENDPOINT_URL`, e.g. `moto_server`). See e2e/README.md for how to run them.
//!
//! Without `KUBECONFIG` and `IRSA_E2E=1` every cluster test prints why it skipped and passes:
//! `make test` runs this target too, and it must stay green on machines without a cluster.
//! The assertion helpers the cluster tests rely on are unit-tested here unconditionally
//! ([`trust_check`]), so a wrong check cannot hide behind a skip.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod controller;
mod leader;
mod support;
mod trust_check;
mod webhook;
