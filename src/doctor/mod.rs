//! `irsa doctor`: explains, step by step, why a pod or ServiceAccount can or cannot assume
//! its role. [`checks`] decides (pure), [`report`] prints; the rest fetches the facts.

pub mod checks;
pub mod report;
pub mod sources;

pub async fn run(_args: crate::cli::DoctorArgs) -> anyhow::Result<std::process::ExitCode> {
    crate::error::not_implemented("doctor")
}
