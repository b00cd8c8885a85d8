pub fn run(_args: crate::cli::CrdArgs) -> anyhow::Result<std::process::ExitCode> {
    crate::error::not_implemented("crd")
}
