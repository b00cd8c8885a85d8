//! Each subcommand from its flags (the only modules besides `cli` that see clap's types). The
//! offline ones read files, call the pure modules and print; `webhook`, `controller`, `agent`
//! and `doctor` turn their flags into their modules' plain options.

pub mod agent;
pub mod controller;
pub mod crd;
pub mod doctor;
pub mod issuer;
pub mod mutate;
pub mod trust_policy;
pub mod webhook;

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
