//! Placeholder until its issue lands.

pub async fn run(_args: crate::cli::WebhookArgs) -> anyhow::Result<std::process::ExitCode> {
    crate::error::not_implemented("webhook")
}
