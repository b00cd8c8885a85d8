//! Errors shared by the command-line edges. Each I/O area has its own `thiserror` enum in its
//! module; this file holds what `main` needs to pick an exit code.

/// A mistake in what the user asked for (bad flag value, a file that is not a Pod, ...):
/// `main` exits with status 2 when an error chain contains one.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl UsageError {
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// The answer for a subcommand that is not implemented yet.
pub fn not_implemented(command: &str) -> anyhow::Result<std::process::ExitCode> {
    Err(UsageError::new(format!("`irsa {command}` is not implemented yet")).into())
}
