//! Helpers of the in-process integration tests alone: an HTTPS issuer and the webhook's test
//! server with its mocked API. What the cluster journeys share with them (the IAM emulator,
//! waiting, metric reads, child processes, the Helm-style merge) is the `irsa_e2e` library
//! (`e2e/src/`). The mocked API server and the OIDC token helpers live in `irsa::testing`,
//! shared with the unit tests.

pub mod issuer;
pub mod webhook;

/// How long an in-process test waits for what it expects ([`irsa_e2e::wait::wait_for`]): a
/// hang guard, never reached unless the behaviour under test is broken.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(60);
