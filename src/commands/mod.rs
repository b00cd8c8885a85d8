//! The offline subcommands: they read files, call the pure modules and print.

pub mod crd;
pub mod mutate;
pub mod trust_policy;
