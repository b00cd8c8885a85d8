use std::process::ExitCode;

use clap::Parser;
use irsa::{
    cli::{Cli, Command},
    commands, controller, doctor,
    error::UsageError,
    telemetry, webhook,
};

fn main() -> ExitCode {
    irsa::install_crypto_provider();
    let cli = Cli::parse(); // exits 2 on usage errors, 0 on --help/--version
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
            Command::Webhook(args) => webhook::run(args).await,
            Command::Controller(args) => controller::run(args).await,
            Command::Doctor(args) => doctor::run(args).await,
            Command::Mutate(args) => commands::mutate::run(args),
            Command::TrustPolicy(args) => commands::trust_policy::run(args),
            Command::Crd(args) => commands::crd::run(args),
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
