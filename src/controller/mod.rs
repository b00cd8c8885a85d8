//! The controller: reconciles the IAM OIDC provider and role trust policies (SPEC §4).
//!
//! I/O adapters live here ([`aws`], [`identity`], [`thumbprint`]); decisions that need no I/O
//! are pure ([`authz`]) so they can be table-tested.

pub mod authz;
pub mod aws;
pub mod identity;
pub mod leader;
pub mod metrics;
pub mod thumbprint;

pub async fn run(_args: crate::cli::ControllerArgs) -> anyhow::Result<std::process::ExitCode> {
    crate::error::not_implemented("controller")
}
