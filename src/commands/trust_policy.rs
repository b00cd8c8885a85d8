pub fn run(_args: crate::cli::TrustPolicyArgs) -> anyhow::Result<std::process::ExitCode> {
    crate::error::not_implemented("trust-policy")
}
