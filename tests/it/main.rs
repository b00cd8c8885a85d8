//! The one integration-test binary: every module links the library, kube and the AWS SDK once
//! instead of once per file. Test names carry their module (`doctor::…`, `webhook_server::…`).
//!
//! Every module runs in-process and needs at most the local IAM emulator (moto) and the tools
//! `make deps` installs; the cluster journeys are the `journeys` binary of `e2e/`, whose
//! library (`irsa_e2e`) is the harness these tests share with them.

// Test code: a helper fails its test by panicking, like the test functions that call it
// (clippy.toml only exempts `#[test]` functions themselves).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod alerts;
mod cli_doctor;
mod cli_mutate;
mod cli_trust_policy;
mod controller_aws;
mod controller_reconcile;
mod controller_run;
mod docs_links;
mod doctor;
mod doctor_limits;
mod packaging;
mod webhook_cli;
mod webhook_limits;
mod webhook_sa_cache;
mod webhook_server;
