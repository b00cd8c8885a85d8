//! Placeholder until its issue lands.

pub async fn run(_args: crate::cli::ControllerArgs) -> anyhow::Result<std::process::ExitCode> {
    crate::error::not_implemented("controller")
}
