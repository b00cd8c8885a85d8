//! Placeholder until its issue lands.

pub async fn run(_args: crate::cli::DoctorArgs) -> anyhow::Result<std::process::ExitCode> {
    crate::error::not_implemented("doctor")
}
