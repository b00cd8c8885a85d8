//! The offline subcommands: they read files, call the pure modules and print.

pub mod crd;
pub mod issuer;
pub mod mutate;
pub mod trust_policy;

use std::{io::Read, path::Path};

use anyhow::Context;

use crate::error::UsageError;

/// The text of `path`, or of stdin for `-`; an unreadable file is a usage error naming
/// `what` (the flag it came from).
pub fn read_input(path: &Path, what: &str) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read stdin")?;
        return Ok(s);
    }
    std::fs::read_to_string(path)
        .map_err(|e| UsageError::new(format!("cannot read {what}{}: {e}", path.display())).into())
}
