//! End-to-end tests against a real cluster and IAM/STS. See docs/development.md.
//!
//! Every cluster test is `#[ignore = "needs a cluster: ..."]`: a plain `cargo nextest run`
//! reports them as skipped, never as passed. `make test` starts a local control plane
//! (scripts/control-plane.sh) and runs them with `--run-ignored all`; `make e2e` does the same
//! against the cluster in `KUBECONFIG`. A cluster test that runs without a cluster fails.
//! The assertion helpers the cluster tests rely on are unit-tested here unconditionally
//! ([`trust_check`]).

mod controller;
mod crd;
mod doctor;
mod doctor_webhook;
mod identity;
mod install;
mod issuer;
mod kubelet;
mod leader;
mod opt_out;
mod publish;
mod rbac;
mod selftls;
mod support;
mod trip;
mod trust_check;
mod uninjected;
mod webhook;
mod webhook_support;
