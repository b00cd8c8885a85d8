#![deny(clippy::indexing_slicing, clippy::string_slice)] // as in src/lib.rs

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use irsa::{
    cli::{Cli, Command},
    commands,
    error::UsageError,
    telemetry,
};

fn main() -> ExitCode {
    irsa::install_crypto_provider();
    // Installed as `kubectl-irsa` (a symlink), kubectl runs it as a plugin: `kubectl irsa doctor`.
    let as_plugin = std::env::args_os()
        .next()
        .and_then(|argv0| {
            std::path::Path::new(&argv0)
                .file_name()
                .map(|n| n == "kubectl-irsa")
        })
        .unwrap_or(false);
    let mut command = Cli::command();
    if as_plugin {
        command = command.bin_name("kubectl irsa");
    }
    // Both exit 2 on usage errors and 0 on --help/--version.
    let cli = Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit());
    telemetry::init(cli.log_format);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Webhook(args) => commands::webhook::run(args).await,
            Command::Controller(args) => commands::controller::run(args).await,
            Command::Doctor(args) => commands::doctor::run(args).await,
            Command::Mutate(args) => commands::mutate::run(args),
            Command::TrustPolicy(args) => commands::trust_policy::run(args),
            Command::Crd(args) => commands::crd::run(args),
            Command::Issuer(args) => commands::issuer::run(args),
            Command::Agent(args) => commands::agent::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            if err.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
