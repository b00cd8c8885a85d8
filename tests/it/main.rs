//! The one integration-test binary: every module links the library, kube and the AWS SDK once
//! instead of once per file. Test names carry their module (`doctor::…`, `e2e::controller::…`),
//! which is what `.config/nextest.toml` and `make e2e` filter on.
//!
//! `e2e` holds the cluster tests (`#[ignore]`d unless run with `--run-ignored all`); the other
//! modules need at most the local IAM emulator (moto) and the tools `make deps` installs.

// Test code: a helper fails its test by panicking, like the test functions that call it
// (clippy.toml only exempts `#[test]` functions themselves).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod cli_doctor;
mod cli_mutate;
mod cli_trust_policy;
mod controller_aws;
mod controller_reconcile;
mod controller_run;
mod docs_links;
mod doctor;
mod doctor_limits;
mod e2e;
mod packaging;
mod webhook_cli;
mod webhook_limits;
mod webhook_sa_cache;
mod webhook_server;
